"""SWAMovingAverage under tf.distribute: MirroredStrategy over two logical CPUs (replica context
in tf.function and eagerly, cross-replica context in the scope and in plain tf.function code) and
MultiWorkerMirroredStrategy with two worker processes.

The scenarios run in subprocesses (distribute_worker.py: logical devices must be configured
before TensorFlow initialises); each saves the model's value at every apply() and the averages'
components. Here they are checked against a float64 oracle (the plain mean) and, bit for bit,
against the single-device SWAMovingAverage replaying the same values.
"""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import swa_ops
from distribute_worker import MODES, NAN_AT, SHAPES, STEPS

WORKER = str(Path(__file__).with_name("distribute_worker.py"))
TIMEOUT = 120  # Seconds: a hang (a collective waiting for a dead worker) fails the test.
CPU0 = "/job:localhost/replica:0/task:0/device:CPU:0"
CPU1 = "/job:localhost/replica:0/task:0/device:CPU:1"


def _env(**extra):
  return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **extra)


def _check_finished(name, returncode, out, err):
  assert returncode == 0 and "DONE" in out, "%s failed (rc %s):\n%s\n%s" % (
      name, returncode, out[-3000:], err[-6000:])


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
  out = tmp_path_factory.mktemp("mirrored")
  proc = subprocess.run([sys.executable, WORKER, "mirrored", str(out)], capture_output=True,
                        text=True, timeout=TIMEOUT, env=_env())
  _check_finished("mirrored worker", proc.returncode, proc.stdout, proc.stderr)
  return out


def _same_bits(a, b):
  a, b = np.asarray(a), np.asarray(b)
  return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(
      np.atleast_1d(a).view(np.uint8), np.atleast_1d(b).view(np.uint8))


def _single_device(results):
  """The single-device SWAMovingAverage (eager, grouped op) fed the values the distributed run
  averaged, in the same order and at the same steps: its averages and skipped count."""
  snapshots = [results["snapshot_%d" % i] for i in range(len(SHAPES))]
  variables = [tf.Variable(s[0]) for s in snapshots]
  step = tf.Variable(0, dtype=tf.int64)
  swa = swa_ops.SWAMovingAverage(step, skip_nonfinite=True)
  for k in range(STEPS):
    for variable, values in zip(variables, snapshots):
      variable.assign(values[k])
    if k == NAN_AT:
      variables[1].assign(tf.fill(variables[1].shape, np.nan))
      swa.apply(variables)
      variables[1].assign(snapshots[1][k])
    swa.apply(variables)
    step.assign_add(1)
  return [swa.average(v).numpy() for v in variables], int(swa.skipped_updates.numpy())


def _check_averages(results, replicas):
  """Every shadow is a MirroredVariable whose components are bit-identical, equal bit for bit to
  the single-device result, and the plain float64 mean of the values (the NaN update skipped)."""
  expected, skipped = _single_device(results)
  for i in range(len(SHAPES)):
    assert str(results["average_type_%d" % i]) == "MirroredVariable"
    components = [results["average_%d_%d" % (i, c)] for c in range(replicas)]
    assert "average_%d_%d" % (i, replicas) not in results
    for c, component in enumerate(components):
      assert _same_bits(component, expected[i]), (i, c, component, expected[i])
    snapshots = results["snapshot_%d" % i].astype(np.float64)
    oracle = snapshots.mean(axis=0)
    np.testing.assert_allclose(components[0], oracle, rtol=0,
                               atol=1e-6 * np.abs(snapshots).max())
  assert skipped == 1
  return expected


@pytest.mark.parametrize("mode", MODES)
def test_mirrored_averages_equal_the_oracle_and_the_single_device_result(mirrored, mode):
  results = np.load(mirrored / (mode + ".npz"))
  _check_averages(results, replicas=2)
  # skipped_updates: a MirroredVariable counting on each replica when the averager was made in
  # the scope; a plain variable counted once otherwise (cross_function).
  expected_skipped = [1] if mode == "cross_function" else [1, 1]
  assert results["skipped"].tolist() == expected_skipped


@pytest.mark.parametrize("mode, per_device", [
    ("replica_function", ["AllFinite", "SWAAssignGroup"]),
    # One op for the three variables, one for the Tensor (a group of its own).
    ("cross_function", ["AllFinite", "SWAAssign", "SWAAssignGroup"]),
])
def test_one_grouped_update_op_per_replica_device(mirrored, mode, per_device):
  ops = np.load(mirrored / (mode + ".npz"))["ops"].tolist()
  assert sorted(ops) == sorted("%s@%s" % (kind, device) for kind in per_device
                               for device in (CPU0, CPU1)), ops


def test_a_tensor_is_averaged_into_every_component_in_cross_replica_context(mirrored):
  results = np.load(mirrored / "cross_function.npz")
  expected = _single_device(results)[0][0] * 2.0  # Exact: scaling by 2 commutes with rounding.
  for c in range(2):
    assert _same_bits(results["tensor_average_%d" % c], expected)


def test_zero_debias_tensor_in_cross_replica_context(mirrored):
  results = np.load(mirrored / "cross_function.npz")
  values = results["snapshot_2"]
  variable = tf.Variable(values[0])
  step = tf.Variable(0, dtype=tf.int64)
  debiased = swa_ops.SWAMovingAverage(step, zero_debias=True, name="Debiased")

  @tf.function(autograph=False)
  def apply():
    debiased.apply([variable * 0.5])

  for k in range(STEPS):
    variable.assign(values[k])
    for _ in range(2 if k == NAN_AT else 1):  # The worker applied twice at NAN_AT.
      apply()
    step.assign_add(1)
  for role, expected in zip(("average", "biased", "local_step"), debiased.variables):
    for c in range(2):
      assert _same_bits(results["debiased_%s_%d" % (role, c)], expected.numpy()), (role, c)


def test_swap_weights_and_assign_average_vars_per_component(mirrored):
  r = np.load(mirrored / "swap.npz")
  for i in range(len(SHAPES)):
    for c in range(2):
      var, avg = r["before_var_%d_%d" % (i, c)], r["before_avg_%d_%d" % (i, c)]
      assert not np.array_equal(var, avg)
      for swapped in ("swapped", "replica_swapped", "inside_averaged_weights"):
        assert _same_bits(r["%s_var_%d_%d" % (swapped, i, c)], avg), (swapped, i, c)
        assert _same_bits(r["%s_avg_%d_%d" % (swapped, i, c)], var), (swapped, i, c)
      for restored in ("swapped_twice", "replica_swapped_twice", "after_averaged_weights"):
        assert _same_bits(r["%s_var_%d_%d" % (restored, i, c)], var), (restored, i, c)
        assert _same_bits(r["%s_avg_%d_%d" % (restored, i, c)], avg), (restored, i, c)
      # assign_average_vars([first variable]) in replica context, then of all in cross-replica.
      assert _same_bits(r["replica_assigned_var_%d_%d" % (i, c)], avg if i == 0 else var)
      assert _same_bits(r["assigned_var_%d_%d" % (i, c)], avg)
      assert _same_bits(r["assigned_avg_%d_%d" % (i, c)], avg)


def test_checkpoint_of_mirrored_shadows(mirrored):
  r = np.load(mirrored / "swap.npz")
  # Restored into mirrored shadows, before (deferred) and after their creation.
  for name in ("deferred", "immediate"):
    for i in range(len(SHAPES)):
      assert str(r["%s_type_%d" % (name, i)]) == "MirroredVariable"
      for c in range(2):
        assert _same_bits(r["%s_%d_%d" % (name, i, c)], r["before_avg_%d_0" % i]), (name, i, c)
  # The same checkpoint restores into a single-device averager.
  variables = [tf.Variable(tf.zeros(shape), name="w%d" % i) for i, shape in enumerate(SHAPES)]
  swa = swa_ops.SWAMovingAverage(0, start=10**6)  # apply() creates the shadows, changes nothing.
  tf.train.Checkpoint(averager=swa).restore(str(r["checkpoint"])).expect_partial()
  swa.apply(variables)
  for i, variable in enumerate(variables):
    assert _same_bits(swa.average(variable).numpy(), r["before_avg_%d_0" % i])


def test_unsupported_inputs_are_clear_errors(mirrored):
  with open(mirrored / "errors.json") as f:
    messages = json.load(f)
  assert "replica context" in messages["tensor_in_replica_context"]
  assert "'mul:0'" in messages["tensor_in_replica_context"]
  for case in ("plain_variable_in_replica_context", "plain_variable_in_scope"):
    assert "'plain:0' is not a distributed variable" in messages[case], messages[case]


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_multi_worker_mirrored_strategy_two_workers(tmp_path):
  cluster = {"worker": ["127.0.0.1:%d" % _free_port() for _ in range(2)]}
  workers = []
  try:
    for index in range(2):
      config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
      workers.append(subprocess.Popen(
          [sys.executable, WORKER, "multiworker", str(tmp_path)], stdout=subprocess.PIPE,
          stderr=subprocess.PIPE, text=True, env=_env(TF_CONFIG=config)))
    for index, worker in enumerate(workers):
      out, err = worker.communicate(timeout=TIMEOUT)
      _check_finished("worker %d" % index, worker.returncode, out, err)
  finally:
    for worker in workers:
      if worker.poll() is None:
        worker.kill()
        worker.wait()
  results = [np.load(tmp_path / ("worker%d.npz" % index)) for index in range(2)]
  averages = []
  for r in results:
    assert int(r["num_replicas"]) == 2
    averages.append(_check_averages(r, replicas=1))  # One local replica per worker.
    assert r["skipped"].tolist() == [1]
  for i in range(len(SHAPES)):
    assert _same_bits(results[0]["snapshot_%d" % i], results[1]["snapshot_%d" % i])
    assert _same_bits(results[0]["average_%d_0" % i], results[1]["average_%d_0" % i])
