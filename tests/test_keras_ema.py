"""swa_ops.keras.EMA against Keras 3's own optimizer EMA (`use_ema=True`) and a float64 NumPy
oracle of the recursion on the recorded weights; the tf_keras (Keras 2) scenarios run in a
subprocess (keras2_ema_worker.py, TF_USE_LEGACY_KERAS=1) and are checked against the oracle.

Two identical models (same seed, data, unshuffled batches, SGD) are trained: one with
`SGD(use_ema=True, ema_momentum=m, ema_overwrite_frequency=f)`, one with a plain SGD and the
callback. After every step a recorder compares the averages (Keras': the optimizer's
`_model_variables_moving_average`) and the model's weights (the overwrites).
"""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import swa_ops
from swa_ops import _errors

keras = pytest.importorskip("keras")

MOMENTUM = 0.9
BATCH = 16
SAMPLES = 80   # 5 steps per epoch.
EPOCHS = 3
EPS32 = np.finfo(np.float32).eps
WORKER = str(Path(__file__).with_name("keras2_ema_worker.py"))


def _data():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(SAMPLES, 6)).astype(np.float32)
  y = rng.normal(size=(SAMPLES, 3)).astype(np.float32)
  return x, y


def _model(optimizer, run_eagerly, jit_compile=False):
  keras.utils.set_random_seed(7)
  model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="tanh"),
                            keras.layers.Dense(3)])
  model.compile(optimizer, "mse", run_eagerly=run_eagerly, jit_compile=jit_compile)
  return model


class _Recorder(keras.callbacks.Callback):
  """Records, after every training step, the model's weights and what `averages()` returns."""

  def __init__(self, averages=lambda: []):
    super().__init__()
    self._averages = averages
    self.weights, self.averages = [], []

  def on_train_batch_end(self, batch, logs=None):
    self.weights.append([w.numpy() for w in self.model.trainable_weights])
    self.averages.append([np.array(a) for a in self._averages()])


def _train_keras_ema(frequency, run_eagerly, fits=1, jit_compile=False):
  optimizer = keras.optimizers.SGD(0.1, use_ema=True, ema_momentum=MOMENTUM,
                                   ema_overwrite_frequency=frequency)
  model = _model(optimizer, run_eagerly, jit_compile)
  recorder = _Recorder(lambda: [a.numpy() for a in optimizer._model_variables_moving_average])
  x, y = _data()
  for _ in range(fits):
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
              callbacks=[recorder])
  return model, recorder


def _train_callback(frequency, run_eagerly, fits=1, jit_compile=False):
  model = _model(keras.optimizers.SGD(0.1), run_eagerly, jit_compile)
  ema = swa_ops.keras.EMA(momentum=MOMENTUM, overwrite_frequency=frequency)
  before = _Recorder()  # The weights each EMA update sees (after the optimizer's step).
  after = _Recorder(lambda: [a.numpy() for a in ema.averages])
  x, y = _data()
  for _ in range(fits):
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
              callbacks=[before, ema, after])
  return model, ema, before, after


def _assert_float32_close(got, expected, ulps=8):
  """|got - expected| <= `ulps` float32 spacings at the array's scale."""
  for g, e in zip(got, expected):
    scale = max(1.0, float(np.abs(e).max()))
    np.testing.assert_allclose(g, e, rtol=0, atol=ulps * EPS32 * scale)


def _numpy_ema(weights_per_step, momentum):
  """The float64 oracle: a_1 = w_1, a_n = m a_{n-1} + (1 - m) w_n (m rounded to float32)."""
  m = float(np.float32(momentum))
  averages, current = [], None
  for weights in weights_per_step:
    weights = [w.astype(np.float64) for w in weights]
    current = weights if current is None else [m * a + (1 - m) * w
                                               for a, w in zip(current, weights)]
    averages.append(current)
  return averages


CASES = [(f, eager) for f in (None, 1, 3) for eager in (False, True)]


@pytest.mark.parametrize("frequency,run_eagerly", CASES)
def test_same_averages_overwrites_and_final_weights_as_keras_use_ema(frequency, run_eagerly):
  reference_model, reference = _train_keras_ema(frequency, run_eagerly)
  model, ema, before, after = _train_callback(frequency, run_eagerly)
  steps = EPOCHS * SAMPLES // BATCH
  assert len(reference.averages) == len(after.averages) == steps
  assert ema.num_updates == steps
  for n in range(steps):
    _assert_float32_close(after.averages[n], reference.averages[n])
    _assert_float32_close(after.weights[n], reference.weights[n])
  for got, expected in zip(model.trainable_weights, reference_model.trainable_weights):
    _assert_float32_close([got.numpy()], [expected.numpy()])


@pytest.mark.parametrize("frequency", [None, 3])
def test_same_as_keras_use_ema_in_models_compiled_with_xla(frequency):
  """jit_compile=True: Keras's EMA runs inside the XLA-compiled train step, the callback's
  after it; the averages and the weights agree step by step to float32 rounding."""
  _, reference = _train_keras_ema(frequency, False, jit_compile=True)
  model, ema, _, after = _train_callback(frequency, False, jit_compile=True)
  assert ema.num_updates == len(reference.averages) == EPOCHS * SAMPLES // BATCH
  for n, averages in enumerate(after.averages):
    _assert_float32_close(averages, reference.averages[n])
    _assert_float32_close(after.weights[n], reference.weights[n])


@pytest.mark.parametrize("frequency,run_eagerly", CASES)
def test_averages_follow_the_float64_recursion_and_overwrites_are_exact(frequency, run_eagerly):
  model, ema, before, after = _train_callback(frequency, run_eagerly)
  oracle = _numpy_ema(before.weights, MOMENTUM)
  for n, (averages, weights) in enumerate(zip(after.averages, after.weights)):
    _assert_float32_close(averages, oracle[n])
    if frequency is not None and (n + 1) % frequency == 0:  # Overwritten: the averages.
      for weight, average in zip(weights, averages):
        assert np.array_equal(weight, average)
    else:  # Not overwritten: the weights the optimizer left.
      for weight, value in zip(weights, before.weights[n]):
        assert np.array_equal(weight, value)
  assert np.array_equal(after.averages[0][0], before.weights[0][0])  # The first update copies.
  for weight, average in zip(model.trainable_weights, ema.averages):
    assert np.array_equal(weight.numpy(), average.numpy())  # Assigned at the end of fit().


def test_a_second_fit_continues_the_average_as_keras_does():
  reference_model, reference = _train_keras_ema(3, False, fits=2)
  model, ema, before, after = _train_callback(3, False, fits=2)
  assert len(after.averages) == len(reference.averages) == 2 * EPOCHS * SAMPLES // BATCH
  for got, expected in zip(after.averages, reference.averages):
    _assert_float32_close(got, expected)
  for got, expected in zip(model.trainable_weights, reference_model.trainable_weights):
    _assert_float32_close([got.numpy()], [expected.numpy()])


def test_one_fused_op_per_step_updates_every_average():
  model, ema, _, _ = _train_callback(None, False)
  update = ema._functions[1]  # pylint: disable=protected-access
  graph = update.get_concrete_function().graph
  types = [op.type for op in graph.get_operations()]
  assert types.count("EMAAssignGroup") == 1
  assert not any(t in ("AssignVariableOp", "AssignSubVariableOp") for t in types)


def test_averaged_weights_swaps_bit_exactly(monkeypatch):
  from swa_ops import _ops  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(_ops.library, "swap_variables_n", None)  # On a group: SwapVariablesGroup.
  model, ema, _, _ = _train_callback(None, False)
  for weight in model.trainable_weights:  # Make the weights differ from the averages.
    weight.assign(weight * 2.0 + 1.0)
  trained = [w.numpy() for w in model.trainable_weights]
  averages = [a.numpy() for a in ema.averages]
  with ema.averaged_weights():
    for weight, average in zip(model.trainable_weights, averages):
      assert np.array_equal(weight.numpy(), average)
  for weight, value in zip(model.trainable_weights, trained):
    assert np.array_equal(weight.numpy(), value)
  for average, value in zip(ema.averages, averages):
    assert np.array_equal(average.numpy(), value)
  assert ema.average(model.trainable_weights[0]) is ema.averages[0]


def test_checkpoint_restores_into_a_new_callback(tmp_path):
  x, y = _data()
  model = _model(keras.optimizers.SGD(0.1), False)
  ema = swa_ops.keras.EMA(momentum=MOMENTUM, assign_at_end=False)
  model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[ema])
  path = tf.train.Checkpoint(ema=ema.state).save(str(tmp_path / "ema"))
  saved = [a.numpy().astype(np.float64) for a in ema.averages]

  restored = swa_ops.keras.EMA(momentum=MOMENTUM, assign_at_end=False)
  checkpoint = tf.train.Checkpoint(ema=restored.state)  # Kept: it restores the averages
  checkpoint.restore(path)                               # when fit() creates them.
  probe = _Recorder(lambda: [a.numpy() for a in restored.averages])
  model.fit(x[:BATCH], y[:BATCH], batch_size=BATCH, epochs=1, shuffle=False, verbose=0,
            callbacks=[restored, probe])
  assert restored.num_updates == SAMPLES // BATCH + 1
  # The restored averages go on with the momentum (no first-step copy); no overwrite, so the
  # probe's weights are those averaged.
  m = float(np.float32(MOMENTUM))
  weights = [w.astype(np.float64) for w in probe.weights[0]]
  _assert_float32_close(probe.averages[0], [m * s + (1 - m) * w for s, w in zip(saved, weights)])


@pytest.mark.parametrize("kwargs,error", [
    (dict(momentum=1.5), _errors.ArgumentError),
    (dict(momentum=-0.1), _errors.ArgumentError),
    (dict(momentum="0.9"), TypeError),
    (dict(momentum=True), TypeError),
    (dict(overwrite_frequency=0), _errors.ArgumentError),
    (dict(overwrite_frequency=2.0), TypeError),
    (dict(overwrite_frequency=True), TypeError),
    (dict(assign_at_end=1), TypeError),
    (dict(name=""), TypeError),
])
def test_bad_arguments_raise_clear_errors(kwargs, error):
  with pytest.raises(error, match="swa_ops.keras.EMA"):
    swa_ops.keras.EMA(**kwargs)


def test_steps_per_execution_above_one_is_refused():
  x, y = _data()
  model = _model(keras.optimizers.SGD(0.1), False)
  model.compile(keras.optimizers.SGD(0.1), "mse", steps_per_execution=2)
  with pytest.raises(_errors.ArgumentError, match="steps_per_execution"):
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[swa_ops.keras.EMA()])


def test_a_fit_without_steps_warns_and_leaves_the_model():
  x, y = _data()
  model = _model(keras.optimizers.SGD(0.1), False)
  weights = model.get_weights()
  with pytest.warns(UserWarning, match="no training step"):
    model.fit(x, y, batch_size=BATCH, epochs=1, initial_epoch=1, verbose=0,
              callbacks=[swa_ops.keras.EMA()])
  for got, expected in zip(model.get_weights(), weights):
    assert np.array_equal(got, expected)


# tf_keras (Keras 2).

@pytest.fixture(scope="module")
def keras2_results(tmp_path_factory):
  if importlib.util.find_spec("tf_keras") is None:
    pytest.skip("tf_keras is not installed (pip install --no-deps 'tf-keras==2.21.*')")
  out = tmp_path_factory.mktemp("keras2_ema")
  env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
  proc = subprocess.run([sys.executable, WORKER, str(out)], capture_output=True, text=True,
                        timeout=300, env=env)
  assert proc.returncode == 0 and "DONE" in proc.stdout, (
      "keras2 EMA worker failed (rc %s):\n%s\n%s" % (proc.returncode, proc.stdout[-3000:],
                                                      proc.stderr[-6000:]))
  return out


def _per_step(results, key, steps, count):
  return [[results["%s_%d_%d" % (key, n, i)] for i in range(count)] for n in range(steps)]


@pytest.mark.parametrize("frequency,run_eagerly", CASES)
def test_tf_keras_averages_overwrites_and_final_weights(keras2_results, frequency, run_eagerly):
  r = np.load(keras2_results / ("f%s_eager%d.npz" % (frequency, run_eagerly)))
  assert bool(r["is_tf_keras"])
  steps, count = int(r["steps"]), int(r["count"])
  assert int(r["num_updates"]) == steps
  before = _per_step(r, "before", steps, count)
  averages = _per_step(r, "average", steps, count)
  weights = _per_step(r, "weight", steps, count)
  oracle = _numpy_ema(before, float(r["momentum"]))
  for n in range(steps):
    _assert_float32_close(averages[n], oracle[n])
    if frequency is not None and (n + 1) % frequency == 0:
      for weight, average in zip(weights[n], averages[n]):
        assert np.array_equal(weight, average)
    else:
      for weight, value in zip(weights[n], before[n]):
        assert np.array_equal(weight, value)
  for i in range(count):
    assert np.array_equal(r["final_%d" % i], averages[-1][i])
