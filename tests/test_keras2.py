"""swa_ops.keras (SWA, update_bn) with Keras 2: tf_keras models under TF_USE_LEGACY_KERAS=1.

The scenarios run in a subprocess (keras2_worker.py: the variable must be set before TensorFlow
is imported) and are checked here against float64 NumPy oracles: the plain mean of the recorded
snapshots, the loss of the averaged weights, the mean of the batch statistics.

Needs tf_keras matching TensorFlow (`pip install --no-deps "tf-keras==2.21.*"`: without
--no-deps pip would install `tensorflow` over `tensorflow-cpu`); skipped without it.
"""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras2_worker import (EPOCHS, MODES, START, STEP_EPOCHS, STEP_PERIOD, STEP_START, SAMPLES,
                           BATCH, data)

WORKER = str(Path(__file__).with_name("keras2_worker.py"))
TIMEOUT = 300

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tf_keras") is None,
    reason="tf_keras is not installed (pip install --no-deps 'tf-keras==2.21.*')")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
  out = tmp_path_factory.mktemp("keras2")
  env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
  proc = subprocess.run([sys.executable, WORKER, str(out)], capture_output=True, text=True,
                        timeout=TIMEOUT, env=env)
  assert proc.returncode == 0 and "DONE" in proc.stdout, (
      "keras2 worker failed (rc %s):\n%s\n%s" % (proc.returncode, proc.stdout[-3000:],
                                                  proc.stderr[-6000:]))
  return out


def _same_bits(a, b):
  a, b = np.asarray(a), np.asarray(b)
  return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(
      np.atleast_1d(a).view(np.uint8), np.atleast_1d(b).view(np.uint8))


def _snapshots(r):
  return [r["snapshot_%d" % i].astype(np.float64) for i in range(2)]  # kernel, bias


def _close(got, oracle, scale):
  np.testing.assert_allclose(got, oracle, rtol=0, atol=2e-6 * max(1.0, np.abs(scale).max()))


@pytest.mark.parametrize("mode", MODES)
def test_epoch_averages_are_the_mean_of_the_scheduled_snapshots(results, mode):
  r = np.load(results / ("epoch_%s.npz" % mode))
  assert bool(r["is_tf_keras"])  # tf.keras is tf_keras: the model is a Keras 2 model.
  assert int(r["num_averaged"]) == EPOCHS - START
  for i, snapshots in enumerate(_snapshots(r)):
    assert len(snapshots) == EPOCHS
    oracle = snapshots[START:].mean(axis=0)
    _close(r["average_%d" % i], oracle, snapshots)
    assert _same_bits(r["final_%d" % i], r["average_%d" % i])  # assign_at_end


@pytest.mark.parametrize("mode", MODES)
def test_swa_validation_loss_is_the_loss_of_the_averages(results, mode):
  r = np.load(results / ("epoch_%s.npz" % mode))
  kernels, biases = _snapshots(r)
  x, y = (v.astype(np.float64) for v in data())
  x, y = x[:32], y[:32]
  expected = []
  for epoch in range(START, EPOCHS):
    kernel = kernels[START:epoch + 1].mean(axis=0)
    bias = biases[START:epoch + 1].mean(axis=0)
    expected.append(np.mean((x @ kernel + bias - y) ** 2))
  np.testing.assert_allclose(r["val_swa_loss"], expected, rtol=1e-5)


def test_step_schedule(results):
  r = np.load(results / "step.npz")
  steps = STEP_EPOCHS * SAMPLES // BATCH
  scheduled = [n for n in range(steps) if n >= STEP_START and (n - STEP_START) % STEP_PERIOD == 0]
  assert int(r["num_averaged"]) == len(scheduled) == 3
  for i, snapshots in enumerate(_snapshots(r)):
    assert len(snapshots) == steps  # The weights after each step.
    _close(r["final_%d" % i], snapshots[scheduled].mean(axis=0), snapshots)


def test_update_bn_statistics_are_the_mean_of_the_batch_statistics(results):
  r = np.load(results / "update_bn.npz")
  batches = [r["batch_%d" % i].astype(np.float64) for i in range(3)]
  assert int(r["count"]) == 3
  np.testing.assert_allclose(r["mean"], np.mean([b.mean(axis=0) for b in batches], axis=0),
                             rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(r["variance"], np.mean([b.var(axis=0) for b in batches], axis=0),
                             rtol=1e-5)  # Keras' biased batch variance.
  assert float(r["momentum"]) == pytest.approx(0.9)  # Restored after the pass.
  assert _same_bits(r["kernel_before"], r["kernel_after"])  # Trainable weights untouched.


def test_update_bn_fused_layer_stores_its_own_bessel_corrected_variance(results):
  """tf_keras on 4-D inputs uses TensorFlow's fused batch norm, whose stored (moving) variance
  of a batch is the unbiased one: the refresh gives the mean of those, as training would."""
  r = np.load(results / "update_bn_fused.npz")
  assert bool(r["fused"]) and int(r["count"]) == 3
  batches = [b.reshape(-1, 3).astype(np.float64) for b in np.split(r["x"], 3)]
  np.testing.assert_allclose(r["mean"], np.mean([b.mean(axis=0) for b in batches], axis=0),
                             rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(r["variance"],
                             np.mean([b.var(axis=0, ddof=1) for b in batches], axis=0), rtol=1e-5)


def test_averaged_weights_swaps_in_and_out_bit_exactly(results):
  r = np.load(results / "swap.npz")
  for i in range(2):
    assert not np.array_equal(r["before_%d" % i], r["average_%d" % i])
    assert _same_bits(r["inside_%d" % i], r["average_%d" % i])
    assert _same_bits(r["after_%d" % i], r["before_%d" % i])


@pytest.mark.parametrize("saved_model", ["export_averaged", "saved_after_callback"])
def test_a_tf_keras_model_serves_its_averages_without_swa_ops(results, saved_model):
  from test_export import _load_elsewhere  # pylint: disable=import-outside-toplevel
  r = np.load(results / "export.npz")
  kernel, bias = (r["snapshot_%d" % i][START:].astype(np.float64).mean(axis=0) for i in range(2))
  x = np.random.default_rng(6).normal(size=(5, 4)).astype(np.float32)
  served = _load_elsewhere(results / saved_model, x=x)
  np.testing.assert_allclose(served["output"], x @ kernel + bias, rtol=1e-5, atol=1e-5)
  for i in range(2):  # export_averaged left the live (trained) weights as they were.
    assert _same_bits(r["live_after_%d" % i], r["live_before_%d" % i])
    assert _same_bits(r["live_before_%d" % i], r["snapshot_%d" % i][-1])
