"""SWAMovingAverage.apply() inside `strategy.run` in a function scheduled by a ClusterCoordinator
of tf.distribute.ParameterServerStrategy (an in-process cluster of 2 workers and 2 parameter
servers on loopback ports, in a subprocess: ps_strategy_worker.py).

Checked: the averages live on the parameter servers, beside their variables; they equal the
float64 mean of the values the steps set (oracle) and, bit for bit, the single-device
SWAMovingAverage fed the same values.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import swa_ops
from ps_strategy_worker import SHAPES, STEPS, snapshot

WORKER = str(Path(__file__).with_name("ps_strategy_worker.py"))
TIMEOUT = 180  # Seconds: a hung cluster fails the test.


@pytest.fixture(scope="module")
def results(tmp_path_factory):
  out = tmp_path_factory.mktemp("ps")
  proc = subprocess.run([sys.executable, WORKER, str(out)], capture_output=True, text=True,
                        timeout=TIMEOUT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  assert proc.returncode == 0 and "DONE" in proc.stdout, (
      "parameter server worker failed (rc %s):\n%s\n%s"
      % (proc.returncode, proc.stdout[-3000:], proc.stderr[-6000:]))
  return np.load(out / "ps.npz")


def _same_bits(a, b):
  a, b = np.asarray(a), np.asarray(b)
  return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(
      np.atleast_1d(a).view(np.uint8), np.atleast_1d(b).view(np.uint8))


def test_averages_live_on_the_parameter_servers(results):
  assert int(results["step"]) == STEPS
  devices = [str(results["average_device_%d" % i]) for i in range(len(SHAPES))]
  for i, device in enumerate(devices):
    assert device.startswith("/job:ps/"), device
    assert device == str(results["variable_device_%d" % i])
  assert len(set(devices)) == 2  # Both parameter servers hold averages.


def test_averages_are_the_mean_of_the_steps_values(results):
  for i, shape in enumerate(SHAPES):
    values = np.stack([snapshot(i, shape, k) for k in range(STEPS)])
    assert _same_bits(results["value_%d" % i], values[-1])  # The worker computed the same.
    oracle = values.astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(results["average_%d" % i], oracle, rtol=0,
                               atol=1e-6 * np.abs(values).max())


def test_averages_equal_the_single_device_result_bit_for_bit(results):
  variables = [tf.Variable(snapshot(i, shape, 0)) for i, shape in enumerate(SHAPES)]
  step = tf.Variable(0, dtype=tf.int64)
  swa = swa_ops.SWAMovingAverage(step)
  for k in range(STEPS):
    for i, (variable, shape) in enumerate(zip(variables, SHAPES)):
      variable.assign(snapshot(i, shape, k))
    swa.apply(variables)
    step.assign_add(1)
  for i, variable in enumerate(variables):
    assert _same_bits(results["average_%d" % i], swa.average(variable).numpy()), i
