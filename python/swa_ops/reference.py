"""The reference's math in plain TensorFlow ops, with swa_ops' API (TF2-compatible).

Same classes, functions and names as `swa_ops`, but each update is the reference's chain of TF
ops: `decay = n / (1 + n)` in float32, `(1 - decay)` cast to the variable's dtype,
`assign_sub(avg, (avg - value) * (1 - decay))`, and the zero-debias chain. Tests and benchmarks
compare swa_ops against it; so can users.
"""
from swa_ops import _backends
from swa_ops import averager
from swa_ops import moving_averages


class SWAMovingAverage(averager.SWAMovingAverage):
  __doc__ = averager.SWAMovingAverage.__doc__
  _backend = _backends.REFERENCE


def assign_moving_average(variable, value, decay, zero_debias=True, name=None,
                          use_locking=False):
  """`swa_ops.assign_moving_average` with the reference's plain TF ops."""
  return moving_averages.assign_with(_backends.REFERENCE, variable, value, decay, zero_debias,
                                     name, use_locking)


def weighted_moving_average(value, decay, weight, truediv=True, collections=None, name=None):
  """`swa_ops.weighted_moving_average` with the reference's plain TF ops."""
  return moving_averages.weighted_with(_backends.REFERENCE, value, decay, weight, truediv,
                                       collections, name)
