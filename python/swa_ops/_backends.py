"""How an update is carried out: by the fused swa_ops ops, or by the reference's plain TF ops.

The public API (averager.py, moving_averages.py) is written once against this interface;
`swa_ops.reference` binds it to `REFERENCE`, the rest of the package to `FUSED`. Every method
gets Variables (`average`, `biased`, `local_step`), a Variable or Tensor `value` of the same
dtype, and a scalar Tensor `step` or `decay`; it returns the update (an op or a tensor). The
`*_group` methods (where `grouped`) take lists of resource Variables of one dtype and device.
"""
import tensorflow as tf

from swa_ops import _ops


class FusedBackend:
  """One swa_ops op per update, or per group of updates; the SWA weight 1 / (n + 1) is computed
  in float64."""

  grouped = True

  def swa_group(self, averages, values, step, use_locking, schedule=(0, 1)):
    return _ops.swa_assign_n(averages, values, step, use_locking=use_locking,
                             start=schedule[0], period=schedule[1])

  def ema_group(self, averages, values, decay, use_locking):
    return _ops.ema_assign_n(averages, values, decay, use_locking=use_locking)

  def debiased_group(self, averages, biased, local_steps, values, decay, use_locking):
    return _ops.debiased_ema_n(averages, biased, local_steps, values, decay,
                               use_locking=use_locking)

  def swa(self, average, value, step, use_locking, schedule=(0, 1)):
    return _ops.swa_assign(average, value, step, use_locking=use_locking, start=schedule[0],
                           period=schedule[1])

  def swa_decay(self, step):
    step = tf.cast(step, tf.float64)
    return step / (step + 1.0)

  def ema(self, average, value, decay, use_locking):
    return _ops.ema_assign(average, value, decay, use_locking=use_locking)

  def debiased(self, average, biased, local_step, value, decay, use_locking):
    return _ops.debiased_ema(average, biased, local_step, value, decay, use_locking=use_locking)


class ReferenceBackend:
  """The reference's math in plain TF ops: decay = n / (1 + n) in float32, `1 - decay` cast to
  the variable's dtype, and 3 (EMA) to 10 (zero-debiased) ops per update. No grouped updates."""

  grouped = False

  def swa(self, average, value, step, use_locking, schedule=(0, 1)):
    if schedule == (0, 1):
      return self.ema(average, value, self.swa_decay(step), use_locking)
    start, period = schedule
    since_start = tf.cast(step, tf.float32) - start
    selected = (since_start >= 0) & tf.equal(tf.math.floormod(since_start, period), 0.0)
    k = tf.maximum(since_start, 0.0) / period
    return self.ema(average, value, tf.where(selected, k / (k + 1.0), 1.0), use_locking)

  def swa_decay(self, step):
    step = tf.cast(step, tf.float32)
    return step / (1.0 + step)

  def ema(self, average, value, decay, use_locking):
    weight = tf.cast(1.0 - decay, average.dtype.base_dtype)
    return tf.compat.v1.assign_sub(average, (average - value) * weight, use_locking=use_locking)

  def debiased(self, average, biased, local_step, value, decay, use_locking):
    weight = tf.cast(1.0 - decay, average.dtype.base_dtype)
    update_biased = tf.compat.v1.assign_sub(biased, (biased - value) * weight,
                                            use_locking=use_locking)
    update_local_step = tf.compat.v1.assign_add(local_step, tf.ones([], local_step.dtype.base_dtype),
                                                use_locking=use_locking)
    with tf.control_dependencies([update_biased, update_local_step]):
      debiased = biased.read_value() / (1 - tf.pow(1.0 - weight, local_step.read_value()))
      return tf.compat.v1.assign_sub(average, average - debiased, use_locking=use_locking)


FUSED = FusedBackend()
REFERENCE = ReferenceBackend()
