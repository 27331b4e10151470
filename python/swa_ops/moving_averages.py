"""`assign_moving_average` and `weighted_moving_average`, as in the reference, on the fused ops;
and `ExponentialMovingAverage`, so that this module can stand in for TensorFlow's
`tensorflow.python.training.moving_averages` (the same three names and signatures)."""
import numbers

import tensorflow as tf

from swa_ops import _backends
from swa_ops import _errors
from swa_ops import _ops
from swa_ops import _state


def check_float(value, what):
  """Raises DtypeError naming `value` unless it is a float16/bfloat16/float32/float64 value."""
  if value.dtype.base_dtype not in _ops.SUPPORTED_DTYPES:
    raise _errors.DtypeError(
        "%s: %s has dtype %s; averages need float16, bfloat16, float32 or float64"
        % (what, _errors.describe(value), value.dtype.base_dtype.name))


def _to_tensor(value, what, argument, dtype_hint=None):
  """`value` as a Tensor; ArgumentError naming `argument` if it cannot be one (None, ...)."""
  try:
    return tf.convert_to_tensor(value, dtype_hint=dtype_hint)
  except (TypeError, ValueError) as error:
    raise _errors.ArgumentError("%s: %s cannot be converted to a Tensor: %s"
                                % (what, argument, error)) from error


def as_value(average, value, what):
  """`value` ready to be averaged into `average`: a resource Variable as it is (the fused op
  reads it itself), anything else as a Tensor; dtype and static shape checked, naming both."""
  if not _ops.is_resource_variable(value):
    value = _to_tensor(value, what, "the value averaged into %s" % _errors.describe(average),
                       average.dtype.base_dtype)
  if value.dtype.base_dtype != average.dtype.base_dtype:
    raise _errors.DtypeError("%s: %s has dtype %s but the value averaged into it, %s, has dtype %s"
                             % (what, _errors.describe(average), average.dtype.base_dtype.name,
                                _errors.describe(value), value.dtype.base_dtype.name))
  if not average.shape.is_compatible_with(value.shape):
    raise _errors.ShapeError("%s: %s has shape %s but the value averaged into it, %s, has shape %s"
                             % (what, _errors.describe(average), average.shape,
                                _errors.describe(value), value.shape))
  return value


def as_decay(decay, what):
  """`decay` as a scalar float Tensor (a Python number as float64, so that `1 - decay` is exact);
  a Python number must lie in [0, 1] (the ops check Tensors when they run)."""
  if isinstance(decay, numbers.Real) and not 0.0 <= decay <= 1.0:
    raise _errors.ArgumentError("%s: decay must be in [0, 1], got %r" % (what, decay))
  if isinstance(decay, numbers.Real):
    return tf.constant(decay, tf.float64)  # Exact: the op computes 1 - decay in float64.
  decay = _to_tensor(decay, what, "decay")
  if not (decay.dtype.is_integer or decay.dtype.is_floating):
    raise _errors.DtypeError("%s: decay must be a real number, got dtype %s"
                             % (what, decay.dtype.base_dtype.name))
  if decay.dtype.base_dtype not in _ops.SUPPORTED_DTYPES:
    decay = tf.cast(decay, tf.float64)
  if decay.shape.rank not in (None, 0):
    raise _errors.ArgumentError("%s: decay must be a scalar, got shape %s" % (what, decay.shape))
  return decay


def updated_value(variable, update):
  """The value of `variable` after `update`."""
  if isinstance(update, tf.Tensor):  # A Ref op's output or the reference's assign result.
    return update
  if tf.executing_eagerly():
    return variable.read_value()
  with tf.control_dependencies([update]):
    return variable.read_value()


@tf.autograph.experimental.do_not_convert
def assign_with(backend, variable, value, decay, zero_debias=True, name=None,
                use_locking=False, skip_nonfinite=False):
  what = "assign_moving_average"
  variable, value = _state.unwrap(variable), _state.unwrap(value)
  if not isinstance(variable, tf.Variable):
    raise _errors.ArgumentError("%s: `variable` must be a tf.Variable, got %s"
                                % (what, _errors.describe(variable)))
  check_float(variable, what)
  value = as_value(variable, value, what)
  decay = as_decay(decay, what)
  with tf.name_scope(name or "AssignMovingAvg"):
    with tf.compat.v1.colocate_with(variable):
      options = _backends.Options(use_locking)
      if skip_nonfinite:
        options = options._replace(apply_if=backend.all_finite([value], options))
      if zero_debias:
        biased, local_step = _state.debias_state(variable)
        update = backend.debiased(variable, biased, local_step, value, decay, options)
      else:
        update = backend.ema(variable, value, decay, options)
  return updated_value(variable, update)


def assign_moving_average(variable, value, decay, zero_debias=True, name=None,
                          use_locking=False, skip_nonfinite=False):
  """Updates `variable` towards `value` and returns its new value.

  `variable <- variable - (variable - value) * (1 - decay)`, as one fused op. With
  `zero_debias=True` (the default, as in the reference) the update goes through two more
  variables created beside `variable`, `biased` and `local_step`:

      biased     <- biased - (biased - value) * (1 - decay)
      local_step <- local_step + 1
      variable   <- biased / (1 - decay ** local_step)

  which removes the bias towards the zero initial value for a constant `decay`.

  Args:
    variable: a float16/bfloat16/float32/float64 `tf.Variable` (resource or TF1 reference).
    value: a Variable or Tensor of the same dtype and shape.
    decay: a scalar in [0, 1] (a Python number or a float Tensor); with zero_debias, < 1.
    zero_debias: whether to zero-debias (see above).
    name: name scope of the update, default "AssignMovingAvg".
    use_locking: hold the variables' locks exclusively during the update.
    skip_nonfinite: if `value` holds a NaN or Inf, change nothing (decided inside the op).

  Returns:
    The updated value of `variable` (in graph mode, a tensor that runs the update).

  Raises:
    TypeError (also tf.errors.InvalidArgumentError): dtype not a float or dtypes differ.
    ValueError (also tf.errors.InvalidArgumentError): shapes differ, or decay out of [0, 1].
  """
  return assign_with(_backends.FUSED, variable, value, decay, zero_debias, name, use_locking,
                     skip_nonfinite)


# Eager code and tf.function: the variables of each `weighted_moving_average` name, created once.
_WEIGHTED_STATE = {}


def _weighted_state_eager(name, value, weight):
  key = (name, tuple(value.shape), value.dtype, tuple(weight.shape))
  if key not in _WEIGHTED_STATE:
    with tf.init_scope():
      _WEIGHTED_STATE[key] = tuple(
          tf.Variable(tf.zeros(like.shape, like.dtype), trainable=False,
                      name="%s/%s" % (name, var_name))
          for var_name, like in (("value_x_weight", value), ("weight", weight)))
  return _WEIGHTED_STATE[key]


def _weighted_update(backend, value_x_weight, weight_average, value, weight, decay, truediv,
                     name, skip_nonfinite):
  """Updates both averages (one grouped op where the backend has them) and divides."""
  if backend.grouped and _ops.is_resource_variable(value_x_weight) and _ops.is_resource_variable(
      weight_average):
    what = "weighted_moving_average"
    values = [as_value(value_x_weight, value * weight, what), as_value(weight_average, weight, what)]
    options = _backends.Options()
    if skip_nonfinite:
      options = options._replace(apply_if=backend.all_finite(values, options))
    update = backend.ema_group([value_x_weight, weight_average], values, as_decay(decay, what),
                               options)
    numerator = updated_value(value_x_weight, update)
    denominator = updated_value(weight_average, update)
  else:
    if skip_nonfinite:
      raise _errors.ArgumentError("weighted_moving_average: skip_nonfinite needs resource "
                                  "variables and swa_ops' grouped ops")
    numerator = assign_with(backend, value_x_weight, value * weight, decay, zero_debias=False)
    denominator = assign_with(backend, weight_average, weight, decay, zero_debias=False)
  if truediv:
    return tf.truediv(numerator, denominator, name=name)
  return tf.compat.v1.div(numerator, denominator, name=name)


@tf.autograph.experimental.do_not_convert
def weighted_with(backend, value, decay, weight, truediv=True, collections=None, name=None,
                  skip_nonfinite=False):
  what = "weighted_moving_average"
  value = _to_tensor(value, what, "value")
  check_float(value, what)
  weight = _to_tensor(weight, what, "weight", value.dtype)
  if weight.dtype.base_dtype != value.dtype.base_dtype:
    raise _errors.DtypeError("%s: weight has dtype %s but value has dtype %s"
                             % (what, weight.dtype.name, value.dtype.name))
  try:
    product_shape = tf.broadcast_static_shape(value.shape, weight.shape)
  except ValueError:
    product_shape = None
  if product_shape is None or not product_shape.is_compatible_with(value.shape):
    raise _errors.ShapeError("%s: weight of shape %s does not broadcast to value's shape %s"
                             % (what, weight.shape, value.shape))
  decay = as_decay(decay, what)  # Checked before the two averages are created.
  if tf.executing_eagerly() or tf.inside_function():
    name = name or "WeightedMovingAvg"
    value_x_weight, weight_average = _weighted_state_eager(name, value, weight)
    with tf.name_scope(name):
      return _weighted_update(backend, value_x_weight, weight_average, value, weight, decay,
                              truediv, None, skip_nonfinite)
  if collections is None:
    collections = [tf.compat.v1.GraphKeys.GLOBAL_VARIABLES]
  with tf.compat.v1.variable_scope(name, "WeightedMovingAvg", [value, weight, decay]) as scope:
    value_x_weight, weight_average = (
        tf.compat.v1.get_variable(var_name, shape=like.shape, dtype=like.dtype,
                                  initializer=tf.compat.v1.zeros_initializer(),
                                  trainable=False, collections=collections)
        for var_name, like in (("value_x_weight", value), ("weight", weight)))
    return _weighted_update(backend, value_x_weight, weight_average, value, weight, decay,
                            truediv, scope.name, skip_nonfinite)


def weighted_moving_average(value, decay, weight, truediv=True, collections=None, name=None,
                            skip_nonfinite=False):
  """The moving average of `value * weight` divided by the moving average of `weight`.

  Keeps two non-trainable, zero-initialised variables, `value_x_weight` and `weight`, in variable
  scope `name` (default "WeightedMovingAvg") and in `collections` (default: global variables);
  each is updated by `assign_moving_average(..., zero_debias=False)` (one fused op each).
  In graph mode every call creates its own pair, as in the reference; in eager code and
  tf.function the pair of a scope name (and shapes, dtype) is created once and reused.

  Returns `ema(value * weight) / ema(weight)` (`truediv`; otherwise `tf.compat.v1.div`, which
  for the float dtypes supported is the same division). `skip_nonfinite=True`: if `value` or
  `weight` holds a NaN or Inf, neither average changes (decided inside the op).
  """
  return weighted_with(_backends.FUSED, value, decay, weight, truediv, collections, name,
                       skip_nonfinite)


def __getattr__(name):
  # ExponentialMovingAverage is built on averager.py, which imports this module: imported on
  # first use instead of at the top (an import cycle).
  if name == "ExponentialMovingAverage":
    # pylint: disable-next=import-outside-toplevel
    from swa_ops.exponential_moving_average import ExponentialMovingAverage
    return ExponentialMovingAverage
  raise AttributeError("module %r has no attribute %r" % (__name__, name))
