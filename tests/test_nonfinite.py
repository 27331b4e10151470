"""The non-finite guard: skip_nonfinite skips a whole apply() when any value is NaN or Inf,
decided inside the ops, and counts the skipped updates."""
import collections

import numpy as np
import pytest
import tensorflow as tf

import swa_ops

BAD_STEPS = {3: np.nan, 6: np.inf, 7: -np.inf}


def _snapshots(steps, shape, seed, bad_index):
  rng = np.random.default_rng(seed)
  history = [rng.normal(size=shape) for _ in range(steps)]
  for step, bad in BAD_STEPS.items():
    if bad_index is not None:
      history[step].flat[bad_index] = bad
  return history


def _oracle(histories, steps):
  """SWA from the SPEC, skipping every step at which any value is non-finite."""
  averages = [h[0].copy() for h in histories]
  for n in range(steps):
    if not all(np.all(np.isfinite(h[n])) for h in histories):
      continue
    averages = [a - (a - h[n]) / (n + 1.0) for a, h in zip(averages, histories)]
  return averages


@pytest.mark.parametrize("grouped", [True, False], ids=["grouped", "per_variable"])
def test_apply_skips_whole_updates_with_non_finite_values(harness, grouped):
  steps = 10
  # The bad values sit in one variable only; the others must be skipped as well.
  specs = [((3,), tf.float64, 1), ((2, 2), tf.float64, None), ((4,), tf.float32, None)]
  histories = [_snapshots(steps, shape, i, bad) for i, (shape, _, bad) in enumerate(specs)]
  variables = [harness.variable(np.nan_to_num(h[0]), dtype, name="x%d" % i)
               for i, (h, (_, dtype, _)) in enumerate(zip(histories, specs))]
  step = harness.variable(0, tf.float64, name="global_step")
  swa = swa_ops.SWAMovingAverage(step, skip_nonfinite=True, grouped=grouped)
  run = harness.build(lambda: swa.apply(variables))
  for n in range(steps):
    harness.assign(step, n)
    for var, h in zip(variables, histories):
      harness.assign(var, h[n])
    run()
  for var, want, (_, dtype, _) in zip(variables, _oracle(histories, steps), specs):
    got = harness.read(swa.average(var))
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == tf.float32 else 1e-13,
                               atol=1e-6 if dtype == tf.float32 else 0)
  assert harness.read(swa.skipped_updates) == len(BAD_STEPS)


def test_without_the_guard_nan_propagates_as_in_the_reference():
  var = tf.Variable([1.0, 2.0])
  for module in (swa_ops, swa_ops.reference):
    swa = module.SWAMovingAverage(1)
    swa.apply([var])
    var.assign([np.nan, 0.0])
    swa.apply([var])
    assert np.isnan(swa.average(var).numpy()[0]), module.__name__
    var.assign([1.0, 2.0])


def test_one_all_finite_op_guards_every_update_op():
  variables = [tf.Variable(tf.zeros([3], dtype)) for dtype in (tf.float32, tf.float64) * 2]
  swa = swa_ops.SWAMovingAverage(0, skip_nonfinite=True)

  @tf.function
  def update():
    swa.apply(variables)

  ops = update.get_concrete_function().graph.get_operations()
  types = collections.Counter(op.type for op in ops)
  assert types["AllFinite"] == 1 and types["SWAAssignGroup"] == 2, types
  finite = next(op for op in ops if op.type == "AllFinite").outputs[0]
  for op in ops:
    if op.type == "SWAAssignGroup":
      assert op.inputs[-1] is finite


def test_assign_moving_average_and_weighted_skip_non_finite_values():
  average = tf.Variable([1.0, 1.0])
  swa_ops.assign_moving_average(average, [3.0, np.inf], 0.5, zero_debias=False,
                                skip_nonfinite=True)
  np.testing.assert_array_equal(average.numpy(), [1.0, 1.0])
  swa_ops.assign_moving_average(average, [3.0, 5.0], 0.5, zero_debias=False, skip_nonfinite=True)
  np.testing.assert_array_equal(average.numpy(), [2.0, 3.0])
  first = swa_ops.weighted_moving_average(tf.constant([2.0]), 0.5, tf.constant(1.0),
                                          name="guarded", skip_nonfinite=True)
  second = swa_ops.weighted_moving_average(tf.constant([np.nan]), 0.5, tf.constant(1.0),
                                           name="guarded", skip_nonfinite=True)
  np.testing.assert_array_equal(second.numpy(), first.numpy())


def test_skipped_updates_is_checkpointed(tmp_path):
  var = tf.Variable([1.0])
  swa = swa_ops.SWAMovingAverage(0, skip_nonfinite=True)
  swa.apply([var])
  var.assign([np.nan])
  swa.apply([var])
  assert swa.skipped_updates.numpy() == 1
  path = tf.train.Checkpoint(averager=swa).save(str(tmp_path / "ckpt"))
  restored = swa_ops.SWAMovingAverage(0, skip_nonfinite=True)
  tf.train.Checkpoint(averager=restored).restore(path)
  assert restored.skipped_updates.numpy() == 1


def test_the_reference_has_no_guard():
  with pytest.raises(swa_ops.ArgumentError, match="non-finite"):
    swa_ops.reference.SWAMovingAverage(0, skip_nonfinite=True).apply([tf.Variable([1.0])])


def test_large_finite_doubles_are_finite():
  from swa_ops import _ops
  assert bool(_ops.all_finite([tf.constant([1e300, -1e308], tf.float64)]).numpy())
  assert not bool(_ops.all_finite([tf.constant([1e300, np.nan], tf.float64)]).numpy())
  assert not bool(_ops.all_finite([tf.constant([np.inf], tf.bfloat16),
                                   tf.constant([1.0], tf.float16)]).numpy())
