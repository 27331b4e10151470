"""`ExponentialMovingAverage`: a drop-in for `tf.train.ExponentialMovingAverage` on swa_ops'
fused (grouped) EMA ops.

It is `SWAMovingAverage`'s machinery (shadow creation and naming, grouping by device and dtype,
variable groups, checkpoint dependencies, tf.distribute, the XLA fallback) with TensorFlow's
EMA semantics in place of SWA's: the scalar every update op takes is the decay (read at every
`apply()`), not the step count.
"""
import numbers

import tensorflow as tf
try:
  from tensorflow.python.compiler.xla.experimental import xla_sharding
except ImportError:  # Not in every TensorFlow build: no sharding to copy then.
  xla_sharding = None
from tensorflow.python.trackable import data_structures

from swa_ops import _errors
from swa_ops import _state
from swa_ops import averager
from swa_ops import moving_averages

_WHAT = "ExponentialMovingAverage"


def _has_real_dtype(value):
  """Whether `value` (a Tensor, Variable, NumPy value, ...) has a float or integer dtype."""
  dtype = getattr(value, "dtype", None)
  try:
    dtype = None if dtype is None else tf.as_dtype(dtype).base_dtype
  except TypeError:
    return False
  return dtype is not None and (dtype.is_floating or dtype.is_integer)


def _check_decay(decay):
  """Raises unless `decay` is a Python/NumPy real number in [0, 1] (ArgumentError) or a Tensor
  or Variable of a float or integer dtype (DtypeError); a Tensor's range is checked by the ops
  when they run."""
  if isinstance(decay, numbers.Real) and not isinstance(decay, bool):
    if not 0.0 <= float(decay) <= 1.0:
      raise _errors.ArgumentError("%s: decay must be in [0, 1], got %r" % (_WHAT, decay))
    return
  if not _has_real_dtype(decay):
    raise _errors.DtypeError("%s: decay must be a real number or a float Tensor or Variable, "
                             "got %r" % (_WHAT, decay))


def _check_num_updates(num_updates):
  """Raises DtypeError unless `num_updates` is None, a real number, or an integer or float
  Tensor or Variable."""
  if num_updates is None or (isinstance(num_updates, numbers.Real)
                              and not isinstance(num_updates, bool)):
    return
  if not _has_real_dtype(num_updates):
    raise _errors.DtypeError("%s: num_updates must be None, a real number or an integer or "
                             "float Tensor or Variable, got %r" % (_WHAT, num_updates))


def _decay_for_weight_in(decay, dtype):
  """The decay to pass to the ops for shadows of `dtype`, so that their weight (the ops form
  `1 - decay` in float64 and round it once to the compute type) is TensorFlow's:
  `1 - decay` computed in the decay's dtype (float32), then rounded to `dtype`.

  Where `dtype` is the decay's own, the decay itself does (`1 - decay` in float64, rounded
  once, is the subtraction in `dtype`). Otherwise the weight `w` is formed as TensorFlow forms
  it and the ops get `1 - w` in float64, so that their `1 - (1 - w)` is `w` again. That is
  exact for a float32 decay (`w` then has at most 24 significant bits and is 0 or at least
  2**-24); for a float64 decay and float32 shadows it is exact unless `w` < 2**-29."""
  if decay.dtype.base_dtype == dtype:
    return decay
  weight = tf.cast(1.0 - decay, dtype)
  return 1.0 - tf.cast(weight, tf.float64)


class ExponentialMovingAverage(averager.SWAMovingAverage):
  """Exponential moving averages of variables, as `tf.train.ExponentialMovingAverage` keeps
  them, updated by one fused op per (device, dtype) group of variables.

  Every `apply()` reads the decay `d` (and `num_updates`, if given) and updates each shadow as

      shadow <- shadow - (shadow - value) * (1 - d)

  with `d = decay`, or with `num_updates = n`, `d = min(decay, (1 + n) / (10 + n))`. As in
  TensorFlow, `d` and the weight `1 - d` are computed in float32 (float64 if `decay` is a
  float64 Tensor or Variable) and the weight is rounded to each shadow's dtype; the op computes
  the update in the shadow's dtype (float32 for float16/bfloat16 shadows, rounded once to the
  shadow's dtype): bit-identical to TensorFlow's update for float32 and float64 shadows.
  Shadows of Variables start at the variable's (initial) value, shadows of Tensors at zeros;
  with `zero_debias=True` the shadows of Tensors (not of Variables) are zero-debiased through
  two extra variables, `<shadow>/biased` and `<shadow>/local_step`:

      biased <- biased - (biased - value) * (1 - d);  local_step <- local_step + 1
      shadow <- biased / (1 - d ** local_step)

  (`d ** local_step` with `d = 1 - w`, `w` the rounded weight, in float64.)

  The same constructor, methods, shadow names (`<variable op name>/<name>`), collections
  (`MOVING_AVERAGE_VARIABLES` holds each averaged Variable), devices and colocation as
  TensorFlow's class. Unlike TensorFlow's class it is a `tf.Module`, tracked by checkpoints:
  `tf.train.Checkpoint(ema=ema)` saves every shadow (a checkpoint restored before the first
  `apply()` is restored into each shadow when it is created).

  Args:
    decay: the decay: a Python number in [0, 1], or a scalar float Tensor or Variable (read at
      every `apply()`, so a Variable may be changed between updates).
    num_updates: None, or the count of updates (a number, Tensor or Variable, usually the
      global step), read at every `apply()`.
    zero_debias: zero-debias the shadows of Tensors (see above).
    name: the suffix of the shadows' names and the name scope of the updates.
  """

  def __init__(self, decay, num_updates=None, zero_debias=False,
               name="ExponentialMovingAverage"):
    _check_decay(decay)
    _check_num_updates(num_updates)
    super().__init__(num_updates=0, zero_debias=zero_debias, name=name)
    # Both belong to the caller (a schedule, the global step): not saved with the averager.
    self._decay = data_structures.NoDependency(decay)
    self._num_updates = data_structures.NoDependency(num_updates)

  @tf.autograph.experimental.do_not_convert
  def apply(self, var_list=None):
    """Creates the shadows that `var_list` lacks, then updates every shadow of `var_list`.

    Args:
      var_list: Variables (in graph mode and inside tf.function also Tensors) of dtype float16,
        bfloat16, float32 or float64; default: the trainable variables of the default graph.
        An empty list averages nothing (an empty group, as TensorFlow's class returns).

    Returns:
      The op that updates all shadows (graph mode, tf.function); None in eager code.

    Raises:
      TypeError (a `swa_ops.DtypeError`): an element is not a float Variable or Tensor, or is
        an eager Tensor (eager code can average Variables only). The message names it.
    """
    if var_list is None:
      var_list = tf.compat.v1.trainable_variables()
    if isinstance(var_list, (list, tuple)) and not var_list:
      # Nothing to average (e.g. the default in eager code): TensorFlow's returns an empty
      # group too, where SWAMovingAverage raises.
      with tf.name_scope(self._name) as scope:
        return tf.group(name=scope)
    if not (tf.executing_eagerly() and self._eager_plan(var_list) is not None):
      self._check_var_list(var_list)  # Not applied before: check it with TensorFlow's errors.
    return super().apply(var_list)

  @staticmethod
  def _check_var_list(var_list):
    eager = tf.executing_eagerly()
    for value in var_list:
      value = _state.unwrap(value)
      if not isinstance(value, (tf.Variable, tf.Tensor)):
        raise _errors.DtypeError("%s.apply: %r is neither a Variable nor a Tensor"
                                 % (_WHAT, value))
      if eager and not isinstance(value, tf.Variable):
        raise _errors.DtypeError(
            "%s.apply: an eager %s cannot be averaged: in eager code only Variables can (in a "
            "TF1 graph or inside tf.function Tensors can too)" % (_WHAT, _errors.describe(value)))
      moving_averages.check_float(value, _WHAT + ".apply")

  def _update_scalar(self, component):
    """The decay of this apply(): a float32 (or float64) scalar Tensor, made in the update's
    name scope as "decay" (and "num_updates")."""
    decay = _state.unwrap(component(self._decay))
    if not isinstance(decay, (tf.Tensor, tf.Variable)):  # Python and NumPy numbers: float32.
      decay = tf.convert_to_tensor(decay, tf.float32, name="decay")
    else:
      decay = tf.convert_to_tensor(decay, name="decay")
      if decay.dtype.base_dtype not in (tf.float32, tf.float64):
        decay = tf.cast(decay, tf.float32)
    if decay.shape.rank not in (None, 0):
      raise _errors.ArgumentError("%s: decay must be a scalar, got shape %s"
                                  % (_WHAT, decay.shape))
    if self._num_updates is not None:
      num_updates = tf.cast(component(self._num_updates), decay.dtype, name="num_updates")
      decay = tf.minimum(decay, (1.0 + num_updates) / (10.0 + num_updates))
    return decay

  def _update_group(self, decay, debiased, averages, states, group, options):
    """The update ops of one group (one dtype of shadows), with TensorFlow's weight."""
    with tf.name_scope("AssignMovingAvg"):
      decay = _decay_for_weight_in(decay, averages[0].dtype.base_dtype)
      if debiased:
        return self._debiased_updates(decay, averages, states, group, options)
      if len(group) == 1 or not self._backend.grouped:
        return [self._backend.ema(average, value, decay, options)
                for average, value in zip(averages, group)]
      return [self._backend.ema_group(averages, group, decay, options)]

  def _ensure_shadow(self, var, average=None):
    """Creates `var`'s shadow as SWAMovingAverage does; then, as TensorFlow does, copies the
    variable's XLA sharding to it (graph mode) and in eager code lists the variable in
    MOVING_AVERAGE_VARIABLES too."""
    key = averager._key(var)  # pylint: disable=protected-access
    if key in self._averages:
      return
    super()._ensure_shadow(var, average)
    average = self._averages[key]
    if tf.executing_eagerly():  # Inside tf.function both go to the function graph's collection.
      if isinstance(var, tf.Variable):
        tf.compat.v1.add_to_collection(tf.compat.v1.GraphKeys.MOVING_AVERAGE_VARIABLES, var)
    elif (xla_sharding is not None and not tf.inside_function() and var.shape.rank is not None
          and var.shape.rank == average.shape.rank
          and xla_sharding.get_tensor_sharding(var) is not None):
      xla_sharding.copy_sharding(var, average, use_sharding_op=False)
