"""The averager is a tf.Module: tf.train.Checkpoint saves and restores its shadows and debias
state, also when restored before the first apply() (deferred restoration)."""
import numpy as np
import pytest
import tensorflow as tf

import swa_ops


def _model():
  return [tf.Variable(tf.zeros([3, 2]), name="dense/kernel"),
          tf.Variable(tf.zeros([2], tf.float64), name="dense/bias")]


def _values(step, var):
  rng = np.random.default_rng(step * 10 + len(var.shape))
  return rng.normal(size=var.shape).astype(var.dtype.as_numpy_dtype)


def _train(swa, variables, step, steps, update):
  for _ in range(steps):
    for var in variables:
      var.assign(_values(int(step.numpy()), var))
    update()
    step.assign_add(1)


@pytest.mark.parametrize("mode", ["eager", "function"])
@pytest.mark.parametrize("restore_before_apply", [True, False], ids=["deferred", "immediate"])
def test_checkpoint_round_trip_continues_identically(tmp_path, mode, restore_before_apply):
  def make():
    variables, step = _model(), tf.Variable(0, dtype=tf.int64)
    swa = swa_ops.SWAMovingAverage(step)
    update = (lambda: swa.apply(variables)) if mode == "eager" else tf.function(
        lambda: (swa.apply(variables), None)[1])
    return variables, step, swa, update

  # Uninterrupted: 10 steps.
  variables, step, swa, update = make()
  _train(swa, variables, step, 10, update)
  expected = [swa.average(v).numpy() for v in variables]

  # Interrupted: 6 steps, save, a fresh process-like start, restore, 4 more steps.
  variables, step, swa, update = make()
  _train(swa, variables, step, 6, update)
  path = tf.train.Checkpoint(averager=swa, model=variables, step=step).save(str(tmp_path / "ckpt"))
  saved = [swa.average(v).numpy() for v in variables]

  variables, step, swa, update = make()
  checkpoint = tf.train.Checkpoint(averager=swa, model=variables, step=step)
  if restore_before_apply:
    status = checkpoint.restore(path)
    assert swa.average(variables[0]) is None
    for var in variables:
      var.assign(_values(int(step.numpy()), var))
    update()  # First apply after the restore: shadows created, restored, then updated.
    step.assign_add(1)
    status.assert_consumed()
    _train(swa, variables, step, 3, update)
  else:
    swa.apply(variables) if mode == "eager" else update()  # Shadows exist before the restore.
    checkpoint.restore(path).assert_consumed()
    np.testing.assert_array_equal(swa.average(variables[0]).numpy(), saved[0])
    _train(swa, variables, step, 4, update)
  for var, want in zip(variables, expected):
    np.testing.assert_array_equal(swa.average(var).numpy(), want)


def test_saved_averages_are_the_shadows_under_the_variable_names(tmp_path):
  variables = _model()
  swa = swa_ops.SWAMovingAverage(0)
  swa.apply(variables)
  path = tf.train.Checkpoint(averager=swa).save(str(tmp_path / "ckpt"))
  names = [name for name, _ in tf.train.list_variables(path)]
  # Checkpoint keys escape "/" in a dependency name as ".S".
  assert "averager/dense.Skernel/.ATTRIBUTES/VARIABLE_VALUE" in names, names
  assert "averager/dense.Sbias/.ATTRIBUTES/VARIABLE_VALUE" in names, names
  assert {v.ref() for v in swa.variables} == {swa.average(v).ref() for v in variables}
  assert swa.trainable_variables == ()
