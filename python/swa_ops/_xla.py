"""The updates inside an XLA cluster (`tf.function(jit_compile=True)`, Keras `jit_compile=True`).

Pip TensorFlow lets a custom op register no XLA kernel, so XLA cannot compile swa_ops' fused
ops. Inside a function compiled by XLA the backend methods emit plain TF ops instead, which
XLA fuses into one loop per variable. The math is the fused kernels' (cc/core/swa_math.h,
cc/core/cpu_updates.cc), step for step:

  - the scalars in float64: the SWA weight 1 / (k + 1), or 1 - decay; the zero-debias
    denominator 1 - decay ** local_step (computed on the device, then rounded);
  - the weight rounded once to the compute type C: the average's dtype, float32 for
    float16/bfloat16 averages; the value converted exactly to C;
  - average - (average - value) * weight in C, rounded once to the average's dtype (the
    product rounded before the difference, although XLA contracts a - b * c: see
    `_opaque_one`);
  - the schedule (start, period) and the non-finite guard (`apply_if`) as a select on the
    device: a skipped update writes the old values back; no host sync.

The run-time checks of the fused ops (a negative step, a decay outside [0, 1]) have no XLA
counterpart: an XLA function does not raise them. `use_locking` has no effect under XLA.
"""
import tensorflow as tf
from tensorflow.python.ops import control_flow_util


def in_xla_context():
  """Whether ops created now are compiled by XLA: the default graph, or a graph it is nested
  in (a nested tf.function, a tf.cond branch), is a function traced with jit_compile=True."""
  if tf.executing_eagerly():
    return False
  return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def compute_dtype(dtype):
  """The dtype the kernels compute an average of `dtype` in."""
  return tf.float32 if dtype in (tf.float16, tf.bfloat16) else dtype


def _read(value):
  """A Variable's value, or the Tensor as it is."""
  return value.read_value() if isinstance(value, tf.Variable) else tf.convert_to_tensor(value)


def _applies(*conditions):
  """The conjunction of the boolean scalars given (None: no condition); None if none."""
  conditions = [condition for condition in conditions if condition is not None]
  if not conditions:
    return None
  return tf.reduce_all(tf.stack(conditions)) if len(conditions) > 1 else conditions[0]


def moving_average_step(average, value, weight64):
  """average - (average - value) * weight in the compute type, rounded to average's dtype;
  `weight64` a float64 scalar, rounded once."""
  dtype = average.dtype.base_dtype
  compute = compute_dtype(dtype)
  weight = tf.cast(weight64, compute)
  average = tf.cast(average, compute)
  one = _opaque_ones(average)
  value = tf.cast(_rounded(value), compute) * one  # `value` may be a product (value * weight).
  product = (average - value) * weight
  return tf.cast(average - product * one, dtype)


def _rounded(value):
  """`value` rounded to its dtype: XLA evaluates float16/bfloat16 expressions in float32 and
  drops the rounding between them; a round trip through the bits keeps it."""
  value = tf.convert_to_tensor(value)
  if value.dtype not in (tf.float16, tf.bfloat16):
    return value
  return tf.bitcast(tf.bitcast(value, tf.uint16), value.dtype)


def _opaque_ones(average):
  """Ones (NaN where `average` is NaN) that XLA cannot fold away: known only at run time.

  XLA's CPU backend contracts `a - p * w` into one fused multiply-add (one rounding, where the
  kernels, built with -ffp-contract=off, round the product and the difference separately), and
  sees through casts, optimization barriers and constant scalars. `a - (p * w) * one` still
  contracts, but into fma(-(p * w), one, a), which rounds `p * w` on its own and then
  `a - p * w` exactly as the kernels do. Likewise for a value that is itself a product
  (weighted_moving_average's value * weight). sign(|a| + 1) is 1 for every a but NaN, where the
  update gives NaN anyway."""
  return tf.math.sign(tf.abs(average) + 1.0)


def _assign_where(variable, applies, new_value):
  """Assigns `new_value`, or where `applies` is false the variable's old value (a select on the
  device, no host sync)."""
  if applies is not None:
    new_value = tf.where(applies, new_value, variable.read_value())
  return variable.assign(new_value, read_value=False)


def swa_weight(step, schedule):
  """(weight 1 / (k + 1) in float64, whether the step is averaged or None), from the step and
  the schedule (start, period): steps n >= start with (n - start) % period == 0 are averaged,
  the k-th of them (k = (n - start) / period)."""
  step = tf.cast(step, tf.float64)
  start, period = schedule
  if (start, period) == (0, 1):
    return 1.0 / (step + 1.0), None
  since_start = step - float(start)
  selected = tf.logical_and(since_start >= 0.0,
                            tf.equal(tf.math.floormod(since_start, float(period)), 0.0))
  k = tf.where(selected, since_start / float(period), tf.zeros_like(since_start))
  return 1.0 / (k + 1.0), selected


def debias_denominator(decay64, local_step, compute):
  """1 - decay ** local_step in float64 (local_step read in the compute type, as the kernel
  does), rounded to `compute`."""
  local_step64 = tf.cast(tf.cast(local_step, compute), tf.float64)
  return tf.cast(1.0 - tf.pow(decay64, local_step64), compute)


class XlaBackend:
  """The fused backend's updates (see _backends.py) in plain TF ops that XLA compiles, reached
  only through its methods marked _plain_ops_under_xla. The grouped methods update each variable
  in turn (XLA fuses them into one computation); `options.groups` and `use_locking` are not
  used."""

  def swa(self, average, value, step, options):
    weight, selected = swa_weight(step, options.schedule)
    new_average = moving_average_step(average.read_value(), _read(value), weight)
    return _assign_where(average, _applies(selected, options.apply_if), new_average)

  def swa_group(self, averages, values, step, options):
    return tf.group(*(self.swa(average, value, step, options)
                      for average, value in zip(averages, values)))

  def ema(self, average, value, decay, options):
    weight = 1.0 - tf.cast(decay, tf.float64)
    new_average = moving_average_step(average.read_value(), _read(value), weight)
    return _assign_where(average, options.apply_if, new_average)

  def ema_group(self, averages, values, decay, options):
    return tf.group(*(self.ema(average, value, decay, options)
                      for average, value in zip(averages, values)))

  def debiased(self, average, biased, local_step, value, decay, options):
    dtype = average.dtype.base_dtype
    compute = compute_dtype(dtype)
    decay64 = tf.cast(decay, tf.float64)
    new_biased = moving_average_step(biased.read_value(), _read(value), 1.0 - decay64)
    new_local_step = tf.cast(tf.cast(local_step.read_value(), compute) + 1.0, dtype)
    denominator = debias_denominator(decay64, new_local_step, compute)
    new_average = tf.cast(tf.cast(new_biased, compute) / denominator, dtype)
    applies = options.apply_if
    return tf.group(_assign_where(biased, applies, new_biased),
                    _assign_where(local_step, applies, new_local_step),
                    _assign_where(average, applies, new_average))

  def debiased_group(self, averages, biased, local_steps, values, decay, options):
    return tf.group(*(self.debiased(*args, decay, options)
                      for args in zip(averages, biased, local_steps, values)))

  def all_finite(self, values, options):
    del options
    flags = [tf.reduce_all(tf.math.is_finite(_read(value))) for value in values]
    return tf.reduce_all(tf.stack(flags))


def swap(first, second):
  """Exchanges the values of first[i] and second[i] with plain reads and assigns (both read
  before either is written): a bit-exact copy."""
  pairs = [(a, b, a.read_value(), b.read_value()) for a, b in zip(first, second)]
  assigns = []
  for a, b, value_a, value_b in pairs:
    assigns.append(a.assign(value_b, read_value=False))
    assigns.append(b.assign(value_a, read_value=False))
  return tf.group(*assigns)


BACKEND = XlaBackend()
