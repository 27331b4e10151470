"""Using the averages: assign_average_vars, swap_weights (bit-exact), averaged_weights."""
import collections

import numpy as np
import pytest
import tensorflow as tf

import swa_ops
from conftest import DTYPES

EXTREMES = np.array([1e-30, 1e30, -3.5, 0.0, 1.0 + 2.0**-20])


def _bits(x):
  return np.atleast_1d(np.asarray(x)).view(np.uint8).copy()


def test_swap_twice_restores_both_bit_for_bit(harness):
  model = harness.variable(EXTREMES, tf.float32, name="w")
  other = harness.variable(np.arange(4.0), tf.float64, name="b")
  swa = swa_ops.SWAMovingAverage(0)
  run_apply = harness.build(lambda: swa.apply([model, other]))
  run_apply()
  harness.assign(swa.average(model), EXTREMES[::-1])
  harness.assign(swa.average(other), -np.arange(4.0))
  before = [_bits(harness.read(x)) for x in (model, swa.average(model), other, swa.average(other))]
  swap = harness.build(lambda: swa.swap_weights([model, other]))
  swap()
  after = [_bits(harness.read(x)) for x in (model, swa.average(model), other, swa.average(other))]
  assert np.array_equal(after[0], before[1]) and np.array_equal(after[1], before[0])
  assert np.array_equal(after[2], before[3]) and np.array_equal(after[3], before[2])
  swap()
  again = [_bits(harness.read(x)) for x in (model, swa.average(model), other, swa.average(other))]
  for a, b in zip(again, before):
    assert np.array_equal(a, b)


def test_the_add_sub_swap_would_not_be_exact():
  """The Keras/Addons swap (a += b; b = a - b; a -= b) loses 1e-30 next to 1e30: the reason for
  swapping buffers instead."""
  a, b = np.float32(1e-30), np.float32(1e30)
  a = a + b
  b = a - b
  a = a - b
  assert (a, b) != (np.float32(1e30), np.float32(1e-30))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_swap_is_one_op_per_dtype(dtype):
  variables = [tf.Variable(tf.cast(tf.fill([i + 1], float(i)), dtype)) for i in range(20)]
  variables += [tf.Variable(tf.zeros([3], tf.float64 if dtype != tf.float64 else tf.float32))]
  swa = swa_ops.SWAMovingAverage(0)
  swa.apply(variables)

  @tf.function
  def swap():
    swa.swap_weights(variables)

  types = collections.Counter(op.type for op in swap.get_concrete_function().graph.get_operations())
  assert types["SwapVariablesGroup"] == 2, types  # On a group: one captured handle per dtype.
  assert set(types) <= {"SwapVariablesGroup", "Placeholder", "NoOp"}, types


def test_assign_average_vars_and_averaged_weights():
  v = tf.Variable([1.0, 2.0])
  step = tf.Variable(0)
  swa = swa_ops.SWAMovingAverage(step)
  for value in ([1.0, 2.0], [3.0, 6.0], [5.0, 10.0]):
    v.assign(value)
    swa.apply([v])
    step.assign_add(1)
  np.testing.assert_array_equal(swa.average(v).numpy(), [3.0, 6.0])
  with swa.averaged_weights([v]):
    np.testing.assert_array_equal(v.numpy(), [3.0, 6.0])
  np.testing.assert_array_equal(v.numpy(), [5.0, 10.0])
  swa.assign_average_vars([v])
  np.testing.assert_array_equal(v.numpy(), [3.0, 6.0])
  np.testing.assert_array_equal(swa.average(v).numpy(), [3.0, 6.0])


def test_tensors_read_before_a_swap_or_a_later_update_do_not_change():
  v = tf.Variable([1.0, 2.0, 3.0])
  swa = swa_ops.SWAMovingAverage(tf.constant(1))
  swa.apply([v])
  swa.average(v).assign([7.0, 8.0, 9.0])
  model_before, average_before = v.read_value(), swa.average(v).read_value()
  swa.swap_weights([v])
  swa.apply([v])  # Updates the shadow, which now holds the model's old buffer.
  np.testing.assert_array_equal(model_before.numpy(), [1.0, 2.0, 3.0])
  np.testing.assert_array_equal(average_before.numpy(), [7.0, 8.0, 9.0])
  np.testing.assert_array_equal(v.numpy(), [7.0, 8.0, 9.0])
  np.testing.assert_array_equal(swa.average(v).numpy(), [4.0, 5.0, 6.0])


def test_swapping_a_variable_without_average_is_an_error():
  averaged, other = tf.Variable([1.0]), tf.Variable([2.0])
  swa = swa_ops.SWAMovingAverage(0)
  swa.apply([averaged])
  with pytest.raises(swa_ops.ArgumentError, match="no average"):
    swa.swap_weights([averaged, other])
  np.testing.assert_array_equal(averaged.numpy(), [1.0])


def test_the_swap_op_rejects_a_variable_twice_and_shape_mismatches():
  from swa_ops import _ops
  a, b, c = tf.Variable([1.0]), tf.Variable([2.0]), tf.Variable([3.0, 4.0])
  with pytest.raises(tf.errors.InvalidArgumentError, match="appears twice"):
    _ops.swap_variables([a, b], [b, a])
  with pytest.raises(tf.errors.InvalidArgumentError, match="different shapes"):
    _ops.swap_variables([a, b], [c, tf.Variable([5.0])])
  np.testing.assert_array_equal([a.numpy(), b.numpy()], [[1.0], [2.0]])
