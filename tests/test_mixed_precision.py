"""`average_dtype`: float32/float64 averages of narrower variables, computed inside the same op.

Oracles: float32/float64 NumPy arithmetic that rounds every operation as the op must (the
weight 1 / (k + 1) computed in float64, then rounded to the average's dtype), and the mean of
the snapshots in float64."""
import numpy as np
import pytest
import tensorflow as tf

import swa_ops
from conftest import rounded

NARROW_WIDE = [(tf.float16, tf.float32), (tf.bfloat16, tf.float32), (tf.float16, tf.float64),
               (tf.bfloat16, tf.float64), (tf.float32, tf.float64)]
RESOURCE_MODES = ("eager", "function", "graph_resource")


def swa_oracle(snapshots, average_dtype):
  """The SWA average of `snapshots` (float64 arrays already rounded to the variable's dtype)
  with every operation rounded to average_dtype, as the kernel computes it."""
  wide = average_dtype.as_numpy_dtype
  average = snapshots[0].astype(wide)  # The shadow starts as the variable's value...
  for k, value in enumerate(snapshots):  # ...and is then updated at steps 0, 1, ...
    weight = wide(1.0 / (k + 1.0))
    average = (average - (average - value.astype(wide)) * weight).astype(wide)
  return average


@pytest.fixture(params=RESOURCE_MODES)
def mode(request):
  from conftest import Harness
  h = Harness(request.param)
  yield h
  h.close()


def run_average(mode, dtypes, average_dtype, snapshots_per_var, grouped):
  """Averages one variable per dtype over the snapshots; returns the averages' values and
  dtypes."""
  step = mode.variable(0.0, tf.int64, name="step")
  variables = [mode.variable(snaps[0], dtype, name="v%d" % i)
               for i, (dtype, snaps) in enumerate(zip(dtypes, snapshots_per_var))]
  swa = swa_ops.SWAMovingAverage(step, average_dtype=average_dtype, grouped=grouped)
  apply = mode.build(lambda: swa.apply(variables))
  for k in range(len(snapshots_per_var[0])):
    for var, snaps in zip(variables, snapshots_per_var):
      mode.assign(var, snaps[k])
    mode.assign(step, k)
    apply()
  averages = [swa.average(var) for var in variables]
  return [mode.read(a) for a in averages], [a.dtype.base_dtype for a in averages]


@pytest.mark.parametrize("narrow,wide", NARROW_WIDE, ids=lambda d: d.name)
@pytest.mark.parametrize("grouped", [True, False], ids=["grouped", "per_variable"])
def test_wide_average_of_narrow_variable_rounds_as_the_oracle(mode, narrow, wide, grouped):
  rng = np.random.default_rng(3)
  steps = 40
  snapshots = [[rounded(rng.normal(size=shape) * 3, narrow) for _ in range(steps)]
               for shape in [(7, 5), (), (0,), (130,)]]
  values, dtypes = run_average(mode, [narrow] * 4, wide, snapshots, grouped)
  for got, dtype, snaps in zip(values, dtypes, snapshots):
    assert dtype == wide
    want = swa_oracle(snaps, wide)
    np.testing.assert_array_equal(got, want.astype(np.float64))
    mean = np.mean(np.stack(snaps), axis=0)  # The float64 mean of what was averaged.
    np.testing.assert_allclose(got, mean, rtol=0, atol=1e-5 * max(1.0, np.max(np.abs(mean),
                                                                               initial=0)))


def test_mixed_dtypes_in_one_apply_group_by_value_dtype():
  """Two variables of each dtype, all with float32 averages: one grouped op per value dtype."""
  rng = np.random.default_rng(4)
  dtypes = [tf.float16, tf.bfloat16, tf.float32] * 2
  snapshots = [[rounded(rng.normal(size=(9,)), d) for _ in range(12)] for d in dtypes]
  step = tf.Variable(0, dtype=tf.int64)
  variables = [tf.Variable(tf.cast(s[0], d)) for s, d in zip(snapshots, dtypes)]
  swa = swa_ops.SWAMovingAverage(step, average_dtype=tf.float32)

  @tf.function
  def apply():
    swa.apply(variables)

  for k in range(12):
    for var, snaps in zip(variables, snapshots):
      var.assign(tf.cast(snaps[k], var.dtype))
    step.assign(k)
    apply()
  for var, snaps in zip(variables, snapshots):
    np.testing.assert_array_equal(swa.average(var).numpy(), swa_oracle(snaps, tf.float32))
  graph = apply.get_concrete_function().graph
  update_ops = [op for op in graph.get_operations() if op.type.startswith("SWAAssign")]
  assert [op.type for op in update_ops] == ["SWAAssignGroup"] * 3
  assert sorted(op.get_attr("T").name for op in update_ops) == ["bfloat16", "float16", "float32"]


def test_bfloat16_average_stalls_where_float32_average_follows_the_mean():
  """A bfloat16 weight drifting slowly upwards: from some step on, 1 / (k + 1) of the gap to
  the new value is below half a bfloat16 ulp, so a bfloat16 average stops moving; a float32
  average of the same bfloat16 values stays on the float64 mean."""
  steps = 3000
  drift = rounded(1.0 + np.arange(steps) * 2.0 ** -9, tf.bfloat16)  # From 1 to about 6.9.
  mean = np.cumsum(drift) / np.arange(1, steps + 1)
  step = tf.Variable(0, dtype=tf.int64)
  weight = tf.Variable(tf.constant(drift[0], tf.bfloat16))
  narrow = swa_ops.SWAMovingAverage(step, name="narrow")
  wide = swa_ops.SWAMovingAverage(step, name="wide", average_dtype=tf.float32)

  @tf.function
  def apply(value, k):
    weight.assign(value)
    step.assign(k)
    narrow.apply([weight])
    wide.apply([weight])

  for k in range(steps):
    apply(tf.constant(drift[k], tf.bfloat16), tf.constant(k, tf.int64))
  narrow_error = abs(float(narrow.average(weight).numpy()) - mean[-1])
  wide_error = abs(float(wide.average(weight).numpy()) - mean[-1])
  assert wide_error <= 1e-6 * mean[-1], wide_error
  assert narrow_error > 0.25, narrow_error  # Stalled far below the mean (about 3.9).
  assert narrow_error > 1e4 * wide_error


def test_reference_backend_with_average_dtype_matches_within_float32():
  rng = np.random.default_rng(5)
  snapshots = [rounded(rng.normal(size=(6,)), tf.bfloat16) for _ in range(30)]
  results = []
  for module in (swa_ops, swa_ops.reference):
    step = tf.Variable(0, dtype=tf.int64)
    var = tf.Variable(tf.constant(snapshots[0], tf.bfloat16))
    swa = module.SWAMovingAverage(step, average_dtype=tf.float32)
    for k, snap in enumerate(snapshots):
      var.assign(tf.constant(snap, tf.bfloat16))
      step.assign(k)
      swa.apply([var])
    assert swa.average(var).dtype == tf.float32
    results.append(swa.average(var).numpy().astype(np.float64))
  np.testing.assert_allclose(results[0], np.mean(snapshots, axis=0), atol=1e-6)
  np.testing.assert_allclose(results[1], np.mean(snapshots, axis=0), atol=1e-5)


def test_zero_debiased_tensor_with_wide_average_equals_the_wide_path_bit_for_bit():
  """A float16 Tensor averaged in float32 equals the float32 path fed the same values (the
  conversion is exact): the mixed op computes exactly what the single-dtype op does."""
  rng = np.random.default_rng(6)
  snapshots = [rounded(rng.normal(size=(5,)), tf.float16) for _ in range(10)]
  results = []
  for value_dtype, average_dtype in ((tf.float16, tf.float32), (tf.float32, None)):
    step = tf.Variable(0, dtype=tf.int64)
    var = tf.Variable(tf.zeros([5], value_dtype))
    swa = swa_ops.SWAMovingAverage(step, zero_debias=True, average_dtype=average_dtype)

    @tf.function
    def apply():
      swa.apply([var * tf.constant(2.0, value_dtype)])

    for k, snap in enumerate(snapshots):
      var.assign(tf.constant(snap, value_dtype))
      step.assign(k + 1)
      apply()
    (average,) = swa.variables[:1]
    assert average.dtype == tf.float32
    results.append(average.numpy())
  np.testing.assert_array_equal(results[0], results[1])


def test_averaged_weights_rounds_into_the_variable_and_restores_it():
  step = tf.Variable(0, dtype=tf.int64)
  var = tf.Variable(tf.constant([1.0, 2.0, 3.0], tf.bfloat16))
  swa = swa_ops.SWAMovingAverage(step, average_dtype=tf.float32)
  swa.apply([var])
  for k, delta in enumerate([0.1, 0.2, 0.3], start=1):
    var.assign(tf.constant([1.0 + delta, 2.0, 3.0 - delta], tf.bfloat16))
    step.assign(k)
    swa.apply([var])
  own = var.numpy().copy()
  average = swa.average(var).numpy().copy()
  with swa.averaged_weights([var]):
    np.testing.assert_array_equal(var.numpy(), average.astype(own.dtype))
  np.testing.assert_array_equal(var.numpy(), own)
  np.testing.assert_array_equal(swa.average(var).numpy(), average)
  with pytest.raises(swa_ops.DtypeError, match="cannot be exchanged"):
    swa.swap_weights([var])
  swa.assign_average_vars([var])
  np.testing.assert_array_equal(var.numpy(), average.astype(own.dtype))


@pytest.mark.parametrize("variable_dtype,average_dtype", [
    (tf.float32, tf.float16), (tf.float32, tf.bfloat16), (tf.float64, tf.float32),
    (tf.float16, tf.bfloat16), (tf.bfloat16, tf.float16)], ids=str)
def test_an_average_narrower_than_its_variable_is_refused(variable_dtype, average_dtype):
  step = tf.Variable(0, dtype=tf.int64)
  var = tf.Variable(tf.zeros([3], variable_dtype), name="too_wide")
  swa = swa_ops.SWAMovingAverage(step, average_dtype=average_dtype)
  with pytest.raises(swa_ops.DtypeError, match="too_wide"):
    swa.apply([var])
  assert swa.average(var) is None


@pytest.mark.parametrize("average_dtype", [tf.int32, tf.complex64, "string"])
def test_average_dtype_must_be_a_float(average_dtype):
  with pytest.raises(swa_ops.DtypeError, match="average_dtype"):
    swa_ops.SWAMovingAverage(0, average_dtype=average_dtype)


def test_reference_variables_take_no_wider_average():
  with tf.Graph().as_default():
    var = tf.compat.v1.Variable(tf.zeros([2], tf.float16), use_resource=False, name="ref_var")
    swa = swa_ops.SWAMovingAverage(0, average_dtype=tf.float32)
    with pytest.raises(swa_ops.ArgumentError, match="ref_var.*reference variable"):
      swa.apply([var])


def test_raw_op_refuses_a_value_wider_than_its_average_and_changes_nothing():
  average = tf.Variable(tf.constant([1.0, 2.0], tf.float16), name="narrow_average")
  with pytest.raises(tf.errors.InvalidArgumentError, match="narrow_average.*wider float"):
    swa_ops._ops.swa_assign(average, tf.constant([5.0, 6.0], tf.float32), tf.constant(1))
  np.testing.assert_array_equal(average.numpy(), [1.0, 2.0])
  wide = tf.Variable(tf.constant([1.0, 2.0], tf.float32))
  swa_ops._ops.swa_assign(wide, tf.constant([2.0, 4.0], tf.float16), tf.constant(1))
  np.testing.assert_array_equal(wide.numpy(), [1.5, 3.0])


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_keras_mixed_precision_model(policy):
  """Keras mixed-precision models keep float32 variables (computing in float16/bfloat16): their
  averages are float32 and follow the float64 mean of the snapshots."""
  import keras
  previous = keras.config.dtype_policy()
  keras.config.set_dtype_policy(policy)
  try:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3),
                              keras.layers.Dense(2, dtype="bfloat16")])
  finally:
    keras.config.set_dtype_policy(previous)
  step = tf.Variable(0, dtype=tf.int64)
  swa = swa_ops.SWAMovingAverage(step, average_dtype=tf.float32)
  rng = np.random.default_rng(7)
  snapshots = []

  @tf.function
  def apply():
    swa.apply(model.trainable_variables)

  for k in range(6):
    for weight in model.trainable_variables:
      weight.assign(rng.normal(size=weight.shape).astype(weight.dtype))
    snapshots.append([np.asarray(w.numpy(), np.float64) for w in model.trainable_variables])
    step.assign(k)
    apply()
  for i, weight in enumerate(model.trainable_variables):
    average = swa.average(weight)
    assert average.dtype == tf.float32
    want = np.mean([snap[i] for snap in snapshots], axis=0)
    np.testing.assert_allclose(average.numpy(), want, atol=1e-6)
  dtypes = {w.dtype for w in model.trainable_variables}
  assert "bfloat16" in {str(d) for d in dtypes} and "float32" in {str(d) for d in dtypes}
