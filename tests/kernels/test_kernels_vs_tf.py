"""swa_ops.kernels and the TensorFlow ops (SWAAssignN, EMAAssignN, DebiasedEMAN,
SwapVariablesN) on the same inputs give bit-identical results on the CPU. Skipped without
TensorFlow."""
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from swa_ops import _ops, kernels  # noqa: E402

import kernels_oracle as oracle  # noqa: E402
from kernels_oracle import PAIRS, bits, dtype  # noqa: E402

SHAPES = [(), (3, 5), (1000,), (257, 129), (1 << 19,)]


def tf_dtype(name):
  return tf.as_dtype(name)


def inputs(seed, pair):
  rng = np.random.default_rng(seed)
  averages = oracle.random_arrays(rng, SHAPES, pair[0])
  values = oracle.random_arrays(rng, SHAPES, pair[1], -3.0, 3.0)
  return averages, values


def variables(arrays):
  with tf.device("/cpu:0"):
    return [tf.Variable(a, dtype=tf_dtype(a.dtype.name)) for a in arrays]


def assert_bits_equal(tf_variables, arrays):
  for variable, array in zip(tf_variables, arrays):
    np.testing.assert_array_equal(bits(np.asarray(variable.numpy())), bits(array))


@pytest.mark.parametrize("pair", PAIRS, ids="-".join)
@pytest.mark.parametrize("step,start,period", [(0, 0, 1), (7, 0, 1), (12345, 0, 1), (9, 3, 2),
                                               (10, 3, 2)])
def test_swa_assign_matches_swa_assign_n(pair, step, start, period):
  averages, values = inputs(1, pair)
  tf_averages = variables(averages)
  with tf.device("/cpu:0"):
    _ops.swa_assign_n(tf_averages, [tf.constant(v) for v in values],
                      tf.constant(step, tf.int64), start=start, period=period)
  kernels.swa_assign(averages, values, step, start=start, period=period)
  assert_bits_equal(tf_averages, averages)


@pytest.mark.parametrize("pair", PAIRS, ids="-".join)
@pytest.mark.parametrize("decay", [0.0, 0.9, 0.999, 1.0 / 3, 1.0])
def test_ema_assign_matches_ema_assign_n(pair, decay):
  averages, values = inputs(2, pair)
  tf_averages = variables(averages)
  with tf.device("/cpu:0"):
    _ops.ema_assign_n(tf_averages, [tf.constant(v) for v in values],
                      tf.constant(decay, tf.float64))
  kernels.ema_assign(averages, values, decay)
  assert_bits_equal(tf_averages, averages)


@pytest.mark.parametrize("pair", PAIRS, ids="-".join)
@pytest.mark.parametrize("decay", [0.0, 0.9, 0.999, 1.0 / 3])
def test_debiased_ema_matches_debiased_ema_n(pair, decay):
  averages, values = inputs(3, pair)
  biased, _ = inputs(4, pair)
  # The TF op keeps each local step in the average's dtype: counts it represents exactly.
  steps = np.array([0, 1, 5, 100, 200][:len(SHAPES)], np.int64)  # bfloat16: exact to 256.
  tf_averages, tf_biased = variables(averages), variables(biased)
  with tf.device("/cpu:0"):
    tf_steps = [tf.Variable(tf.constant(s, tf_dtype(pair[0]))) for s in steps]
  for _ in range(3):  # Three updates: the local steps count on.
    with tf.device("/cpu:0"):
      _ops.debiased_ema_n(tf_averages, tf_biased, tf_steps, [tf.constant(v) for v in values],
                          tf.constant(decay, tf.float64))
    kernels.debiased_ema(averages, biased, steps, values, decay)
  assert_bits_equal(tf_averages, averages)
  assert_bits_equal(tf_biased, biased)
  np.testing.assert_array_equal([float(s.numpy()) for s in tf_steps], steps)


@pytest.mark.parametrize("name", oracle.FLOAT_NAMES)
def test_swap_matches_swap_variables_n(name):
  rng = np.random.default_rng(5)
  a = oracle.random_arrays(rng, SHAPES, name)
  b = oracle.random_arrays(rng, SHAPES, name)
  tf_a, tf_b = variables(a), variables(b)
  _ops.swap_variables(tf_a, tf_b)
  kernels.swap(a, b)
  assert_bits_equal(tf_a, a)
  assert_bits_equal(tf_b, b)


def test_bfloat16_is_ml_dtypes_bfloat16():
  """TensorFlow's bfloat16 NumPy type and ml_dtypes' are one layout: the parity tests above
  feed the same bits to both."""
  assert dtype("bfloat16").itemsize == tf.bfloat16.as_numpy_dtype(0).itemsize
