"""swa_ops.keras.SWA with Keras 3 model.fit (TensorFlow backend), eager and compiled.

Oracles: a recorder callback snapshots the weights at every epoch end (or step end), reading
the epoch index from Keras and the step from the optimizer itself; the expected averages are the
float64 means of the snapshots the schedule picks. BatchNormalization statistics are checked
against NumPy over the same batches, validation with swapped weights against a separate model
holding the averages.
"""
import importlib.util
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import swa_ops
from swa_ops.keras import SWA, update_bn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EAGER = pytest.mark.parametrize("run_eagerly", [True, False], ids=["eager", "compiled"])


def _data(n=64, features=4, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(1.5, 2.0, size=(n, features)).astype(np.float32)
  y = (x @ rng.normal(size=(features, 1)) + 0.1 * rng.normal(size=(n, 1))).astype(np.float32)
  return x, y


def _model(run_eagerly, batch_norm=False, lr=0.05, seed=3, **compile_args):
  keras.utils.set_random_seed(seed)
  layers = [keras.Input((4,)), keras.layers.Dense(3, activation="tanh")]
  if batch_norm:
    layers.append(keras.layers.BatchNormalization(momentum=0.9))
  layers.append(keras.layers.Dense(1))
  model = keras.Sequential(layers)
  model.compile(keras.optimizers.SGD(lr, momentum=0.5), "mse", metrics=["mae"],
                run_eagerly=run_eagerly, **compile_args)
  return model


def _weights(variables):
  return [np.array(v.numpy(), copy=True) for v in variables]


class Recorder(keras.callbacks.Callback):
  """Snapshots the trainable weights at every epoch end ({epoch: weights}) and after every
  training step ({step: weights}, the step read from the optimizer's own counter)."""

  def __init__(self):
    super().__init__()
    self.epochs, self.steps = {}, {}

  def on_train_batch_end(self, batch, logs=None):
    step = int(self.model.optimizer.iterations.numpy()) - 1
    self.steps[step] = _weights(self.model.trainable_weights)

  def on_epoch_end(self, epoch, logs=None):
    self.epochs[epoch] = _weights(self.model.trainable_weights)


def _expected_mean(snapshots, indices):
  assert indices, "the schedule picks no snapshot"
  return [np.mean([np.asarray(snapshots[i][j], np.float64) for i in indices], axis=0)
          for j in range(len(snapshots[indices[0]]))]


def _assert_close(actual, expected, rel=1e-6):
  for a, e in zip(actual, expected):
    scale = max(1.0, float(np.max(np.abs(e))))
    np.testing.assert_allclose(np.asarray(a, np.float64), e, rtol=0, atol=rel * scale)


def _averages(callback, model):
  return [callback.averager.average(v).numpy() for v in model.trainable_weights]


@EAGER
@pytest.mark.parametrize("unit, start, period, epochs", [
    ("epoch", 0, 1, 4), ("epoch", 2, 2, 7), ("step", 3, 5, 4)])
def test_the_averages_are_the_mean_of_the_scheduled_snapshots(run_eagerly, unit, start, period,
                                                              epochs):
  x, y = _data()
  model = _model(run_eagerly)
  recorder = Recorder()
  swa = SWA(start=start, period=period, unit=unit, assign_at_end=False)
  model.fit(x, y, batch_size=16, epochs=epochs, verbose=0, shuffle=False,
            callbacks=[recorder, swa])
  snapshots = recorder.epochs if unit == "epoch" else recorder.steps
  assert sorted(snapshots) == list(range(epochs if unit == "epoch" else 4 * epochs))
  scheduled = [n for n in sorted(snapshots) if n >= start and (n - start) % period == 0]
  assert swa.num_averaged == len(scheduled)
  assert len(swa.averaging_times) == len(scheduled) and swa.averaging_seconds > 0
  _assert_close(_averages(swa, model), _expected_mean(snapshots, scheduled))
  # Not the mean of every snapshot (the schedule matters), and the model keeps its weights.
  if scheduled != sorted(snapshots):
    every = _expected_mean(snapshots, sorted(snapshots))
    assert any(not np.allclose(a, e, rtol=0, atol=1e-5)
               for a, e in zip(_averages(swa, model), every))
  last = snapshots[max(snapshots)]
  for var, value in zip(model.trainable_weights, last):
    np.testing.assert_array_equal(var.numpy(), value)


@pytest.mark.parametrize("run_eagerly, jit_compile", [(True, False), (False, False),
                                                     (False, True)],
                         ids=["eager", "compiled", "xla"])
def test_assign_at_end_puts_the_averages_into_the_model(run_eagerly, jit_compile):
  x, y = _data()
  model = _model(run_eagerly, jit_compile=jit_compile)
  recorder = Recorder()
  swa = SWA(start=1)
  model.fit(x, y, batch_size=16, epochs=4, verbose=0, callbacks=[recorder, swa])
  expected = _expected_mean(recorder.epochs, [1, 2, 3])
  _assert_close(_weights(model.trainable_weights), expected)
  for var, average in zip(model.trainable_weights, _averages(swa, model)):
    np.testing.assert_array_equal(var.numpy(), average)


@pytest.mark.parametrize("unit", ["epoch", "step"])
def test_averaging_continues_across_fit_calls_and_resumed_epochs(unit):
  x, y = _data()
  model = _model(False)
  recorder = Recorder()
  swa = SWA(start=2, period=3, unit=unit, assign_at_end=False)
  model.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False, callbacks=[recorder, swa])
  model.fit(x, y, batch_size=16, initial_epoch=3, epochs=6, verbose=0, shuffle=False,
            callbacks=[recorder, swa])
  snapshots = recorder.epochs if unit == "epoch" else recorder.steps
  scheduled = [n for n in sorted(snapshots) if n >= 2 and (n - 2) % 3 == 0]
  assert scheduled == ([2, 5] if unit == "epoch" else list(range(2, 24, 3)))
  assert swa.num_averaged == len(scheduled)
  _assert_close(_averages(swa, model), _expected_mean(snapshots, scheduled))


def test_a_checkpointed_state_continues_the_average_in_a_new_callback(tmp_path):
  x, y = _data()
  model = _model(False)
  recorder = Recorder()
  first = SWA(start=1, assign_at_end=False)
  model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[recorder, first])
  path = tf.train.Checkpoint(swa=first.state).save(str(tmp_path / "swa"))
  second = SWA(start=1, assign_at_end=False)
  tf.train.Checkpoint(swa=second.state).restore(path).assert_existing_objects_matched()
  assert second.num_averaged == 2
  model.fit(x, y, batch_size=16, initial_epoch=3, epochs=5, verbose=0,
            callbacks=[recorder, second])
  assert second.num_averaged == 4
  _assert_close(_averages(second, model), _expected_mean(recorder.epochs, [1, 2, 3, 4]))


def test_training_that_ends_before_start_leaves_the_model_and_warns():
  x, y = _data()
  model = _model(False)
  recorder = Recorder()
  swa = SWA(start=5)
  with pytest.warns(UserWarning, match="no snapshot was averaged"):
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[recorder, swa])
  assert swa.num_averaged == 0
  for var, value in zip(model.trainable_weights, recorder.epochs[1]):
    np.testing.assert_array_equal(var.numpy(), value)
  with pytest.raises(swa_ops.ArgumentError, match="no snapshot has been averaged"):
    with swa.averaged_weights():
      pass


class _Poison(keras.callbacks.Callback):
  """Puts a NaN into the first kernel at epoch `epoch` (before SWA averages), and restores it
  afterwards (`restore`, placed after SWA)."""

  def __init__(self, epoch, saved=None):
    super().__init__()
    self.epoch, self.saved = epoch, saved if saved is not None else {}

  def on_epoch_end(self, epoch, logs=None):
    if epoch != self.epoch:
      return
    var = self.model.trainable_weights[0]
    if "value" not in self.saved:
      self.saved["value"] = var.numpy()
      poisoned = var.numpy()
      poisoned[0, 0] = np.nan
      var.assign(poisoned)
    else:
      var.assign(self.saved.pop("value"))


@EAGER
@pytest.mark.parametrize("poisoned", [1, 0], ids=["later", "first"])
def test_skip_nonfinite_leaves_a_nan_snapshot_out_of_the_mean_and_the_count(run_eagerly,
                                                                            poisoned):
  x, y = _data()
  model = _model(run_eagerly)
  recorder = Recorder()
  saved = {}
  swa = SWA(start=0, assign_at_end=False, skip_nonfinite=True)
  model.fit(x, y, batch_size=16, epochs=4, verbose=0,
            callbacks=[recorder, _Poison(poisoned, saved), swa, _Poison(poisoned, saved)])
  assert int(swa.averager.skipped_updates.numpy()) == 1
  assert swa.num_averaged == 3
  kept = [epoch for epoch in range(4) if epoch != poisoned]
  _assert_close(_averages(swa, model), _expected_mean(recorder.epochs, kept))


def _batch_stats(h, batch_size):
  batches = [h[i:i + batch_size] for i in range(0, len(h), batch_size)]
  return (np.mean([b.mean(axis=0) for b in batches], axis=0),
          np.mean([b.var(axis=0) for b in batches], axis=0))


def _hidden(model, x):
  """The BatchNormalization input, in float64: the first Dense layer (tanh) in NumPy."""
  kernel, bias = (np.asarray(v.numpy(), np.float64) for v in model.layers[0].weights)
  return np.tanh(np.asarray(x, np.float64) @ kernel + bias)


@EAGER
def test_bn_refresh_recomputes_the_statistics_for_the_averaged_weights(run_eagerly):
  x, y = _data(n=70)   # Batches of 16: four of 16 and one of 6; each batch weighs the same.
  model = _model(run_eagerly, batch_norm=True)
  recorder = Recorder()
  swa = SWA(start=1, bn_refresh_data=x, batch_size=16)
  model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[recorder, swa])
  _assert_close(_weights(model.trainable_weights), _expected_mean(recorder.epochs, [1, 2]))
  bn = model.layers[1]
  assert bn.momentum == 0.9  # Restored.
  mean, variance = _batch_stats(_hidden(model, x), 16)
  np.testing.assert_allclose(bn.moving_mean.numpy(), mean, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(bn.moving_variance.numpy(), variance, rtol=1e-4, atol=1e-6)
  # Not the statistics of the whole set: the short last batch weighs as much as the others.
  assert not np.allclose(_hidden(model, x).var(axis=0), variance, rtol=1e-4, atol=0)


@EAGER
def test_update_bn_on_the_inputs_takes_any_batches_and_leaves_other_weights(run_eagerly):
  keras.utils.set_random_seed(0)
  model = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization(momentum=0.7),
                            keras.layers.Dropout(0.5), keras.layers.Dense(2)])
  model.run_eagerly = run_eagerly
  x, _ = _data(n=50, seed=7)
  batches = [x[:20], x[20:45], x[45:]]
  trainable = _weights(model.trainable_weights)
  dataset = tf.data.Dataset.from_tensor_slices((x, x[:, :1])).batch(20)
  for data in (batches, dataset):
    assert update_bn(model, data) == 3
    bn = model.layers[0]
    mean = np.mean([np.asarray(b, np.float64).mean(0) for b in batches], axis=0)
    variance = np.mean([np.asarray(b, np.float64).var(0) for b in batches], axis=0)
    if data is dataset:  # Batches of 20, 20, 10.
      mean, variance = _batch_stats(np.asarray(x, np.float64), 20)
    np.testing.assert_allclose(bn.moving_mean.numpy(), mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.numpy(), variance, rtol=1e-5, atol=1e-6)
    assert bn.momentum == 0.7
  for var, value in zip(model.trainable_weights, trainable):
    np.testing.assert_array_equal(var.numpy(), value)
  saved = _weights(model.non_trainable_weights)
  with pytest.raises(swa_ops.ArgumentError, match="no batches"):
    update_bn(model, [])
  for var, value in zip(model.non_trainable_weights, saved):  # A failed pass restores them.
    np.testing.assert_array_equal(var.numpy(), value)


class _Snapshot(keras.callbacks.Callback):
  """Every weight (trainable and not), bit for bit, at each epoch end."""

  def __init__(self):
    super().__init__()
    self.epochs = {}

  def on_epoch_end(self, epoch, logs=None):
    self.epochs[epoch] = _weights(self.model.weights)


@EAGER
def test_swa_validation_reports_the_averaged_model_and_restores_every_weight_bit_exactly(
    run_eagerly):
  x, y = _data()
  x_val, y_val = _data(n=40, seed=5)
  model = _model(run_eagerly, batch_norm=True)
  before, after, recorder = _Snapshot(), _Snapshot(), Recorder()
  swa = SWA(start=1, assign_at_end=False, bn_refresh_data=x, batch_size=16,
            swa_validation_data=(x_val, y_val))
  history = model.fit(x, y, batch_size=16, epochs=3, verbose=0,
                      validation_data=(x_val, y_val),
                      callbacks=[recorder, before, swa, after])
  for epoch in range(3):
    for b, a in zip(before.epochs[epoch], after.epochs[epoch]):
      assert b.tobytes() == a.tobytes()
  logs = history.history
  assert len(logs["val_swa_loss"]) == len(logs["val_swa_mae"]) == 2  # Epochs 1 and 2.
  assert len(logs["val_loss"]) == 3
  # Oracle: a separate model holding the averages, its statistics refreshed on its own.
  oracle = _model(True, batch_norm=True)
  for var, value in zip(oracle.trainable_weights, _expected_mean(recorder.epochs, [1, 2])):
    var.assign(value.astype(np.float32))
  mean, variance = _batch_stats(_hidden(oracle, x), 16)
  oracle.layers[1].moving_mean.assign(mean.astype(np.float32))
  oracle.layers[1].moving_variance.assign(variance.astype(np.float32))
  expected = oracle.evaluate(x_val, y_val, batch_size=32, verbose=0, return_dict=True)
  np.testing.assert_allclose(logs["val_swa_loss"][-1], expected["loss"], rtol=1e-4)
  np.testing.assert_allclose(logs["val_swa_mae"][-1], expected["mae"], rtol=1e-4)


def test_averaged_weights_swaps_in_and_out_bit_exactly():
  x, y = _data()
  model = _model(False)
  swa = SWA(start=0, assign_at_end=False)
  model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[swa])
  own = _weights(model.trainable_weights)
  averages = _averages(swa, model)
  with swa.averaged_weights() as inside:
    assert inside is model
    for var, value in zip(model.trainable_weights, averages):
      assert var.numpy().tobytes() == value.tobytes()
  for var, value in zip(model.trainable_weights, own):
    assert var.numpy().tobytes() == value.tobytes()
  for a, b in zip(_averages(swa, model), averages):
    assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(start=-1), swa_ops.ArgumentError, "start must be >= 0"),
    (dict(start=1.5), TypeError, "start must be an int"),
    (dict(start=True), TypeError, "start must be an int"),
    (dict(period=0), swa_ops.ArgumentError, "period must be >= 1"),
    (dict(period="2"), TypeError, "period must be an int"),
    (dict(unit="batch"), swa_ops.ArgumentError, "unit must be 'epoch' or 'step'"),
    (dict(assign_at_end="yes"), TypeError, "assign_at_end must be a bool"),
    (dict(skip_nonfinite=1), TypeError, "skip_nonfinite must be a bool"),
    (dict(verbose=2), swa_ops.ArgumentError, "verbose must be 0 or 1"),
    (dict(batch_size=0), swa_ops.ArgumentError, "batch_size must be >= 1"),
    (dict(batch_size=2.0), TypeError, "batch_size must be an int"),
    (dict(name=""), TypeError, "name must be a non-empty str"),
    (dict(bn_refresh_data=3), TypeError, "bn_refresh_data must be a tf.data.Dataset"),
    (dict(bn_refresh_data=iter([np.zeros((2, 4))])), TypeError, "one-shot iterator"),
    (dict(bn_refresh_data=("a", "b")), TypeError, "a tuple must be"),
    (dict(swa_validation_data=np.zeros((4, 4))), TypeError, "swa_validation_data must be"),
    (dict(swa_validation_data=[np.zeros((4, 4))]), TypeError, "swa_validation_data must be"),
])
def test_bad_arguments_raise_naming_the_problem(kwargs, error, match):
  with pytest.raises(error, match=match):
    SWA(**kwargs)


def test_bad_arguments_are_value_and_type_errors():
  assert issubclass(swa_ops.ArgumentError, ValueError)
  with pytest.raises(ValueError):
    SWA(period=0)


def test_step_unit_needs_one_step_per_execution():
  x, y = _data()
  model = _model(False, steps_per_execution=2)
  with pytest.raises(swa_ops.ArgumentError, match="steps_per_execution"):
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[SWA(unit="step")])


def test_changing_the_trainable_weights_after_averaging_started_raises():
  x, y = _data()
  model = _model(False)
  swa = SWA(assign_at_end=False)
  model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[swa])
  model.layers[0].trainable = False
  model.compile(keras.optimizers.SGD(0.05), "mse")
  with pytest.raises(swa_ops.ArgumentError, match="trainable weights changed"):
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[swa])


def test_update_bn_rejects_renorm_and_bad_data():
  model = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization(renorm=True)])
  with pytest.raises(swa_ops.ArgumentError, match="renorm"):
    update_bn(model, np.zeros((8, 4), np.float32))
  plain = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization()])
  with pytest.raises(TypeError, match="must be a tf.data.Dataset"):
    update_bn(plain, 1.0)
  with pytest.raises(swa_ops.ArgumentError, match="infinite"):
    update_bn(plain, tf.data.Dataset.from_tensors(np.zeros((2, 4), np.float32)).repeat())


def test_swa_ops_keras_is_the_callback_module():
  assert swa_ops.keras.SWA is SWA
  assert issubclass(SWA, keras.callbacks.Callback)
  assert keras.__name__ == "keras"  # The module's own `import keras` is the real Keras.
  assert swa_ops.keras.keras is keras


def test_the_digits_example_runs():
  if importlib.util.find_spec("sklearn") is None:
    pytest.skip("scikit-learn is not installed (pip install scikit-learn, or the [test] extra)")
  # The subprocess imports the swa_ops this process imported (installed or in-tree).
  package_root = os.path.dirname(os.path.dirname(os.path.abspath(swa_ops.__file__)))
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
  result = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "digits_swa.py"),
                           "--quick"], env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stdout + result.stderr
  out = result.stdout
  assert "test accuracy without SWA" in out and "test accuracy with SWA" in out
  assert "averaging" in out


def test_start_epoch_alias_and_bfloat16_weights_with_float32_averages():
  """start_epoch=1 is start=1, unit="epoch"; a model with bfloat16 weights averaged in float32
  (average_dtype) ends with the float64 mean of its snapshots, rounded once to bfloat16, and
  SWA validation (the averages rounded into the weights, then the weights restored) works."""
  import keras
  rng = np.random.default_rng(21)
  x = rng.normal(size=(64, 3)).astype("float32")
  y = rng.normal(size=(64, 1)).astype("float32")
  model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, dtype="bfloat16")])
  model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
  snapshots = []

  class Recorder(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
      if epoch >= 1:
        snapshots.append([np.asarray(w.numpy(), np.float64) for w in model.trainable_weights])

  swa = swa_ops.keras.SWA(start_epoch=1, average_dtype=tf.float32, swa_validation_data=(x, y))
  history = model.fit(x, y, epochs=4, batch_size=16, verbose=0, callbacks=[Recorder(), swa])
  assert swa.start == 1 and swa.unit == "epoch" and swa.num_averaged == 3
  assert len(history.history["val_swa_loss"]) == 3
  for i, weight in enumerate(model.trainable_weights):
    average = swa.averager.average(weight)
    assert average.dtype == tf.float32
    mean = np.mean([snap[i] for snap in snapshots], axis=0)
    np.testing.assert_allclose(average.numpy(), mean, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(weight.numpy(), np.float64),
                                  average.numpy().astype("bfloat16").astype(np.float64))
  with pytest.raises(swa_ops.ArgumentError, match="start_epoch"):
    swa_ops.keras.SWA(start=2, start_epoch=1)
