"""The ops and the API against a float64 NumPy oracle written from the SPEC, in every mode."""
import numpy as np
import pytest
import tensorflow as tf

import swa_ops
from conftest import DTYPES, rounded, tolerance

SHAPES = [(), (3,), (4, 5)]


def oracle_swa(snapshots):
  """SWA from the SPEC: applied at n = 0..K the average is the mean of the K + 1 values."""
  return np.mean(snapshots, axis=0)


def oracle_ema(initial, values, decay):
  average = np.array(initial, np.float64)
  for value in values:
    average = average - (average - value) * (1.0 - decay)
  return average


def oracle_debiased(values, decays):
  """The SPEC's zero-debiased average: biased EMA from zeros, divided by 1 - decay**t."""
  biased = np.zeros_like(values[0])
  for t, (value, decay) in enumerate(zip(values, decays), start=1):
    biased = biased - (biased - value) * (1.0 - decay)
    average = biased / (1.0 - decay**t)
  return average


def random_steps(rng, steps, shape, dtype):
  return [rounded(rng.uniform(-2, 2, size=shape), dtype) for _ in range(steps)]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_swa_moving_average_is_the_running_mean(harness, dtype):
  steps = 300 if dtype in (tf.float32, tf.float64) else 40
  rng = np.random.default_rng(1)
  history = [random_steps(rng, steps, shape, dtype) for shape in SHAPES]
  variables = [harness.variable(h[0], dtype, name="v%d" % i) for i, h in enumerate(history)]
  step = harness.variable(0, tf.float32, name="global_step")  # Any float step dtype works too.
  swa = swa_ops.SWAMovingAverage(step)
  run = harness.build(lambda: swa.apply(variables))
  for n in range(steps):
    harness.assign(step, n)
    for var, h in zip(variables, history):
      harness.assign(var, h[n])
    run()
  for var, h in zip(variables, history):
    expected = oracle_swa(h)
    got = harness.read(swa.average(var))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=tolerance(dtype, steps) * 2)


@pytest.mark.parametrize("step_dtype", [tf.int32, tf.int64, tf.float32, tf.float64],
                         ids=lambda d: d.name)
def test_every_step_dtype_gives_the_same_average(harness, step_dtype):
  rng = np.random.default_rng(2)
  history = random_steps(rng, 20, (7,), tf.float64)
  var = harness.variable(history[0], tf.float64)
  step = harness.variable(0, step_dtype, name="global_step") if step_dtype.is_floating else None
  if step is None:
    step = (tf.compat.v1.Variable(tf.constant(0, step_dtype), name="global_step",
                                  use_resource=harness.mode != "graph_ref")
            if harness.graph_mode else tf.Variable(tf.constant(0, step_dtype)))
    if harness.graph_mode:
      harness.session.run(step.initializer)
  swa = swa_ops.SWAMovingAverage(step)
  run = harness.build(lambda: swa.apply([var]))
  for n, value in enumerate(history):
    if harness.graph_mode:
      harness.session.run(tf.compat.v1.assign(step, n)) if n == 0 else None
    else:
      step.assign(tf.cast(n, step_dtype))
    if harness.graph_mode and n > 0:
      harness.session.run(step.assign(tf.cast(n, step_dtype)))
    harness.assign(var, value)
    run()
  np.testing.assert_allclose(harness.read(swa.average(var)), oracle_swa(history), rtol=1e-13)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_assign_moving_average_without_debias(harness, dtype):
  rng = np.random.default_rng(3)
  values = random_steps(rng, 200, (6,), dtype)
  initial = rounded(rng.uniform(-1, 1, size=(6,)), dtype)
  average = harness.variable(initial, dtype, name="average")
  value = harness.variable(values[0], dtype, name="value")
  run = harness.build(
      lambda: swa_ops.assign_moving_average(average, value, 0.75, zero_debias=False))
  for v in values:
    harness.assign(value, v)
    run()
  expected = oracle_ema(initial, values, 0.75)
  np.testing.assert_allclose(harness.read(average), expected, rtol=0,
                             atol=tolerance(dtype, 20) * 2)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_assign_moving_average_zero_debiased(harness, dtype):
  rng = np.random.default_rng(4)
  values = random_steps(rng, 30, (2, 3), dtype)
  average = harness.variable(np.zeros((2, 3)), dtype, name="average")
  source = harness.variable(values[0], dtype, name="source")
  # The value is a Tensor computed from a variable, so the Tensor path is exercised.
  run = harness.build(lambda: swa_ops.assign_moving_average(average, source * 1, 0.9))
  for v in values:
    harness.assign(source, v)
    run()
  expected = oracle_debiased(values, [0.9] * len(values))
  np.testing.assert_allclose(harness.read(average), expected, rtol=0,
                             atol=tolerance(dtype, 30) * 8)


def test_weighted_moving_average(harness):
  rng = np.random.default_rng(5)
  values = [rng.uniform(-1, 1, size=(4,)) for _ in range(25)]
  weights = [rng.uniform(0.5, 2.0) for _ in range(25)]
  value = harness.variable(values[0], tf.float64, name="value")
  weight = harness.variable(weights[0], tf.float64, name="weight")
  run = harness.build(lambda: swa_ops.weighted_moving_average(
      value.read_value(), 0.8, weight.read_value()))
  for v, w in zip(values, weights):
    harness.assign(value, v)
    harness.assign(weight, w)
    result = run()
  numerator = oracle_ema(np.zeros(4), [v * w for v, w in zip(values, weights)], 0.8)
  denominator = oracle_ema(0.0, weights, 0.8)
  got = result.numpy() if hasattr(result, "numpy") else result
  np.testing.assert_allclose(got, numerator / denominator, rtol=1e-12)


def test_zero_debiased_tensor_shadow_matches_the_spec(harness):
  """SWAMovingAverage(zero_debias=True) on a Tensor: the SPEC's formula with decay n/(n+1), which
  is not the mean (4/3 of it after two steps)."""
  if harness.mode == "eager":
    pytest.skip("an eager Tensor has no identity across steps (apply() raises; tested elsewhere)")
  values = [np.array([3.0, -1.5]), np.array([1.0, 2.0]), np.array([-2.0, 0.5]),
            np.array([4.0, 4.0])]
  var = harness.variable(values[0], tf.float64, name="x")
  step = harness.variable(0, tf.float64, name="global_step")
  swa = swa_ops.SWAMovingAverage(step, zero_debias=True)
  tensors = {}

  def update():
    tensors["t"] = var * 1.0
    return swa.apply([tensors["t"]])

  run = harness.build(update)
  for n, value in enumerate(values):
    harness.assign(step, n)
    harness.assign(var, value)
    run()
    if n == 1:
      shadow = swa.average(tensors["t"])
      after_two = harness.read(shadow)
      np.testing.assert_allclose(after_two, 4.0 / 3.0 * np.mean(values[:2], axis=0), rtol=1e-12)
  decays = [n / (n + 1.0) for n in range(len(values))]
  np.testing.assert_allclose(harness.read(swa.average(tensors["t"])),
                             oracle_debiased(values, decays), rtol=1e-12)


@pytest.mark.parametrize("step", [2**24, 2**24 + 7, 2**31 + 5, 2**40])
def test_no_freeze_past_2_to_the_24(step):
  """At n >= 2**24 the reference's float32 weight is 0 and the average freezes; swa_ops still
  moves it by (value - average) / (n + 1)."""
  average_value, value = 1.0, 1.0 + (step + 1)  # One update moves the average by exactly 1.
  var = tf.Variable(value, dtype=tf.float32)
  for module, expected in ((swa_ops, 2.0), (swa_ops.reference, 1.0)):
    swa = module.SWAMovingAverage(tf.constant(step, tf.int64))
    swa.apply([var])
    swa.average(var).assign(average_value)
    swa.apply([var])
    assert swa.average(var).numpy() == expected, module.__name__


@pytest.mark.parametrize("module", [swa_ops, swa_ops.reference], ids=["swa_ops", "reference"])
def test_fused_and_reference_agree_for_small_step_counts(harness, module):
  rng = np.random.default_rng(6)
  history = random_steps(rng, 50, (5,), tf.float32)
  var = harness.variable(history[0], tf.float32)
  step = harness.variable(0, tf.float32, name="global_step")
  swa = module.SWAMovingAverage(step)
  run = harness.build(lambda: swa.apply([var]))
  for n, value in enumerate(history):
    harness.assign(step, n)
    harness.assign(var, value)
    run()
  np.testing.assert_allclose(harness.read(swa.average(var)), oracle_swa(history), rtol=0,
                             atol=1e-6 * 2)


def test_use_locking_gives_the_same_result(harness):
  rng = np.random.default_rng(7)
  history = random_steps(rng, 30, (3, 3), tf.float64)
  var = harness.variable(history[0], tf.float64)
  step = harness.variable(0, tf.float64, name="global_step")
  swa = swa_ops.SWAMovingAverage(step, use_locking=True)
  run = harness.build(lambda: swa.apply([var]))
  for n, value in enumerate(history):
    harness.assign(step, n)
    harness.assign(var, value)
    run()
  np.testing.assert_allclose(harness.read(swa.average(var)), oracle_swa(history), rtol=1e-13)


def test_a_tensor_read_before_an_update_does_not_change():
  """Copy-on-write: the update must not write into a buffer a live tensor still holds."""
  var = tf.Variable([1.0, 2.0, 3.0])
  swa = swa_ops.SWAMovingAverage(tf.constant(0))
  swa.apply([var])
  shadow = swa.average(var)
  before = shadow.read_value()
  snapshot = before.numpy().copy()
  var.assign([7.0, 8.0, 9.0])
  swa_ops.SWAMovingAverage(tf.constant(1)).apply  # noqa: B018 (a second averager is unrelated)
  swa._num_updates = tf.constant(1)
  swa.apply([var])
  np.testing.assert_array_equal(before.numpy(), snapshot)
  np.testing.assert_array_equal(shadow.numpy(), [4.0, 5.0, 6.0])


def test_keras_variables_are_averaged_through_their_tf_variables():
  import keras
  model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
  step = tf.Variable(0, dtype=tf.int64)
  swa = swa_ops.SWAMovingAverage(step)
  snapshots = []
  for n in range(5):
    for var in model.trainable_variables:
      var.assign(tf.random.normal(var.shape))
    snapshots.append([var.numpy().astype(np.float64) for var in model.trainable_variables])
    swa.apply(model.trainable_variables)
    step.assign_add(1)
  for i, var in enumerate(model.trainable_variables):
    assert swa.average(var) is not None
    assert swa.average(var).name == "%s/SWAMovingAverage:0" % var.path
    np.testing.assert_allclose(swa.average(var).numpy(),
                               np.mean([s[i] for s in snapshots], axis=0), rtol=0, atol=1e-6)


@pytest.mark.parametrize("module", [swa_ops, swa_ops.reference], ids=["swa_ops", "reference"])
@pytest.mark.parametrize("grouped", [True, False], ids=["grouped", "per_variable"])
def test_start_and_period_average_only_the_scheduled_snapshots(harness, module, grouped):
  rng = np.random.default_rng(12)
  history = [random_steps(rng, 21, shape, tf.float64) for shape in [(3,), (2, 2)]]
  variables = [harness.variable(h[0], tf.float64, name="s%d" % i) for i, h in enumerate(history)]
  step = harness.variable(0, tf.float64, name="global_step")
  swa = module.SWAMovingAverage(step, start=5, period=3, grouped=grouped)
  run = harness.build(lambda: swa.apply(variables))
  for n in range(21):
    harness.assign(step, n)
    for var, h in zip(variables, history):
      harness.assign(var, h[n])
    run()
  scheduled = [5, 8, 11, 14, 17, 20]
  # The reference computes its weight in float32 (cast to float64): about 1e-7 off.
  atol = 1e-13 if module is swa_ops else 2e-6
  for var, h in zip(variables, history):
    np.testing.assert_allclose(harness.read(swa.average(var)),
                               np.mean([h[n] for n in scheduled], axis=0), rtol=0, atol=atol)


def test_a_bad_schedule_is_an_argument_error():
  for kwargs in ({"start": -1}, {"period": 0}, {"period": 1.5}, {"start": 2, "zero_debias": True}):
    with pytest.raises(swa_ops.ArgumentError):
      swa_ops.SWAMovingAverage(0, **kwargs)
