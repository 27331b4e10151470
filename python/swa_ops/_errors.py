"""Errors raised before any op runs, naming the variable and the problem.

They are TensorFlow errors (so code written for the ops' run-time errors catches them) and also
the Python exception a TF user expects for the problem (TypeError for dtypes, ValueError for
shapes and values).
"""
import tensorflow as tf


class DtypeError(tf.errors.InvalidArgumentError, TypeError):
  """A variable or value has a dtype the update does not accept."""

  def __init__(self, message):
    tf.errors.InvalidArgumentError.__init__(self, None, None, message)


class ShapeError(tf.errors.InvalidArgumentError, ValueError):
  """A variable and the value averaged into it have different shapes."""

  def __init__(self, message):
    tf.errors.InvalidArgumentError.__init__(self, None, None, message)


class ArgumentError(tf.errors.InvalidArgumentError, ValueError):
  """An argument (decay, step, a Tensor where a Variable is needed, ...) is invalid."""

  def __init__(self, message):
    tf.errors.InvalidArgumentError.__init__(self, None, None, message)


def describe(value):
  """A name for `value` in messages."""
  if isinstance(value, tf.Variable):
    return "variable '%s'" % value.name
  name = getattr(value, "name", None)
  try:
    return "tensor '%s'" % name if name else "tensor of shape %s" % value.shape
  except AttributeError:  # Eager tensors have no name.
    return "tensor of shape %s" % value.shape
