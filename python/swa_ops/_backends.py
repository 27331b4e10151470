"""How an update is carried out: by the fused swa_ops ops, or by the reference's plain TF ops.

The public API (averager.py, moving_averages.py) is written once against this interface;
`swa_ops.reference` binds it to `REFERENCE`, the rest of the package to `FUSED`. Every method
gets Variables (`average`, `biased`, `local_step`), a Variable or Tensor `value` of the same
dtype (or, with `average_dtype`, a narrower float), a scalar Tensor `step` or `decay`, and
`Options`; it returns the update (an op or a tensor). The `*_group` methods (where `grouped`)
take lists of resource Variables of one dtype and device.
"""
import collections
import functools

import tensorflow as tf

from swa_ops import _errors
from swa_ops import _ops
from swa_ops import _xla

# use_locking: exclusive locks during the update. schedule: SWA's (start, period).
# apply_if: None, or a boolean scalar Tensor; when false the update changes nothing.
# groups: None, or the `_groups.VariableGroups` that the grouped updates take their groups from.
Options = collections.namedtuple("Options", ["use_locking", "schedule", "apply_if", "groups"],
                                 defaults=[False, (0, 1), None, None])


def _group(options, variables, values):
  """(group, value tensors) for a `...Group` op on `variables` (the variables updated) and
  `values` (all resource variables, which join the group, or all Tensors), or (None, None) where
  there is no group (the `...N` ops take the variables)."""
  if options.groups is None:
    return None, None
  if _ops.is_resource_variable(values[0]):  # A group's values are all alike (averager._groups).
    group, tensors = options.groups.get(variables, values, in_graph=True), []
  else:
    group, tensors = options.groups.get(variables, in_graph=True), values
  return (None, None) if group is None else (group, tensors)


def _plain_ops_under_xla(method):
  """`method`, or inside a function XLA compiles (which takes no custom op) the same update in
  plain TF ops (_xla.XlaBackend)."""
  @functools.wraps(method)
  def dispatch(self, *args, **kwargs):
    if _xla.in_xla_context():
      return getattr(_xla.BACKEND, method.__name__)(*args, **kwargs)
    return method(self, *args, **kwargs)
  return dispatch


class FusedBackend:
  """One swa_ops op per update, or per group of updates; the SWA weight 1 / (n + 1) is computed
  in float64. Inside an XLA cluster the same math in plain TF ops (_xla.py)."""

  grouped = True

  @_plain_ops_under_xla
  def swa(self, average, value, step, options):
    return _ops.swa_assign(average, value, step, use_locking=options.use_locking,
                           start=options.schedule[0], period=options.schedule[1],
                           apply_if=options.apply_if)

  @_plain_ops_under_xla
  def swa_group(self, averages, values, step, options):
    group, tensors = _group(options, averages, values)
    if group is not None:
      return _ops.swa_assign_group(group, tensors, step, values[0].dtype.base_dtype,
                                   use_locking=options.use_locking, start=options.schedule[0],
                                   period=options.schedule[1], apply_if=options.apply_if)
    return _ops.swa_assign_n(averages, values, step, use_locking=options.use_locking,
                             start=options.schedule[0], period=options.schedule[1],
                             apply_if=options.apply_if)

  def swa_decay(self, step):
    step = tf.cast(step, tf.float64)
    return step / (step + 1.0)

  @_plain_ops_under_xla
  def ema(self, average, value, decay, options):
    return _ops.ema_assign(average, value, decay, use_locking=options.use_locking,
                           apply_if=options.apply_if)

  @_plain_ops_under_xla
  def ema_group(self, averages, values, decay, options):
    group, tensors = _group(options, averages, values)
    if group is not None:
      return _ops.ema_assign_group(group, tensors, decay, values[0].dtype.base_dtype,
                                   use_locking=options.use_locking, apply_if=options.apply_if)
    return _ops.ema_assign_n(averages, values, decay, use_locking=options.use_locking,
                             apply_if=options.apply_if)

  @_plain_ops_under_xla
  def debiased(self, average, biased, local_step, value, decay, options):
    return _ops.debiased_ema(average, biased, local_step, value, decay,
                             use_locking=options.use_locking, apply_if=options.apply_if)

  @_plain_ops_under_xla
  def debiased_group(self, averages, biased, local_steps, values, decay, options):
    group, tensors = _group(options, list(averages) + list(biased) + list(local_steps), values)
    if group is not None:
      return _ops.debiased_ema_group(group, tensors, decay, values[0].dtype.base_dtype,
                                     use_locking=options.use_locking, apply_if=options.apply_if)
    return _ops.debiased_ema_n(averages, biased, local_steps, values, decay,
                               use_locking=options.use_locking, apply_if=options.apply_if)

  @_plain_ops_under_xla
  def all_finite(self, values, options):
    return _ops.all_finite(values, groups=options.groups)


class ReferenceBackend:
  """The reference's math in plain TF ops: decay = n / (1 + n) in float32, `1 - decay` cast to
  the variable's dtype, and 3 (EMA) to 10 (zero-debiased) ops per update. No grouped updates,
  no non-finite guard."""

  grouped = False

  def swa(self, average, value, step, options):
    if options.schedule == (0, 1):
      return self.ema(average, value, self.swa_decay(step), options)
    start, period = options.schedule
    since_start = tf.cast(step, tf.float32) - start
    selected = (since_start >= 0) & tf.equal(tf.math.floormod(since_start, period), 0.0)
    k = tf.maximum(since_start, 0.0) / period
    return self.ema(average, value, tf.where(selected, k / (k + 1.0), 1.0), options)

  def swa_decay(self, step):
    step = tf.cast(step, tf.float32)
    return step / (1.0 + step)

  def ema(self, average, value, decay, options):
    weight = tf.cast(1.0 - decay, average.dtype.base_dtype)
    value = tf.cast(value, average.dtype.base_dtype)  # A no-op unless average_dtype is wider.
    return tf.compat.v1.assign_sub(average, (average - value) * weight,
                                   use_locking=options.use_locking)

  def debiased(self, average, biased, local_step, value, decay, options):
    weight = tf.cast(1.0 - decay, average.dtype.base_dtype)
    value = tf.cast(value, average.dtype.base_dtype)
    update_biased = tf.compat.v1.assign_sub(biased, (biased - value) * weight,
                                            use_locking=options.use_locking)
    update_local_step = tf.compat.v1.assign_add(local_step, tf.ones([], local_step.dtype.base_dtype),
                                                use_locking=options.use_locking)
    with tf.control_dependencies([update_biased, update_local_step]):
      debiased = biased.read_value() / (1 - tf.pow(1.0 - weight, local_step.read_value()))
      return tf.compat.v1.assign_sub(average, average - debiased, use_locking=options.use_locking)

  def all_finite(self, values, options):
    raise _errors.ArgumentError("swa_ops.reference has no non-finite guard (skip_nonfinite): "
                                "the reference lets NaN and Inf propagate")


FUSED = FusedBackend()
REFERENCE = ReferenceBackend()
