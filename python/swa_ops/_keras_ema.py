"""`swa_ops.keras.EMA`: the exponential moving average of Keras 3's optimizer option
`use_ema=True` as a callback, for Keras 3 (TensorFlow backend) and tf_keras (Keras 2) models,
with one fused `EMAAssignGroup` op per training step for all trainable weights."""
import collections
import contextlib
import numbers
import warnings

import tensorflow as tf

from swa_ops import _errors
from swa_ops import _groups
from swa_ops import _keras_compat
from swa_ops import _ops
from swa_ops import _state

_WHERE = "swa_ops.keras.EMA"


def _check_momentum(momentum):
  if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real):
    raise TypeError("%s: momentum must be a float in [0, 1], got %r" % (_WHERE, momentum))
  if not 0.0 <= float(momentum) <= 1.0:
    raise _errors.ArgumentError("%s: momentum must be in [0, 1], got %r" % (_WHERE, momentum))


def _check_overwrite_frequency(frequency):
  if frequency is None:
    return
  if isinstance(frequency, bool) or not isinstance(frequency, numbers.Integral):
    raise TypeError("%s: overwrite_frequency must be None or an int >= 1, got %r"
                    % (_WHERE, frequency))
  if frequency < 1:
    raise _errors.ArgumentError("%s: overwrite_frequency must be None or an int >= 1, got %d"
                                % (_WHERE, frequency))


def _trainable_variables(model):
  """The model's trainable weights as plain tf.Variables (ArgumentError for none, or for
  distributed ones)."""
  variables = [_state.unwrap(v) for v in model.trainable_weights]
  if not variables:
    raise _errors.ArgumentError("%s: the model has no trainable weights" % _WHERE)
  for var in variables:
    if isinstance(var, tf.distribute.DistributedValues) or not isinstance(var, tf.Variable):
      raise _errors.ArgumentError(
          "%s: weight %r is a %s, not a plain tf.Variable (distribution strategies are not "
          "supported)" % (_WHERE, getattr(var, "name", var), type(var).__name__))
  return variables


def _average_name(var, name):
  return "%s/%s" % (_state.op_name(var).replace(":", "_"), name)


def _new_average(var, name):
  """A zero variable shaped and typed like `var`, on its device (not trainable)."""
  with tf.init_scope(), tf.device(var.device):
    return tf.Variable(tf.zeros(var.shape, var.dtype), trainable=False,
                       name=_average_name(var, name))


def _by_dtype_and_device(variables, averages):
  """{(dtype, device): (averages, variables)}: the lists one grouped op can update."""
  groups = collections.OrderedDict()
  for var, average in zip(variables, averages):
    key = (var.dtype.base_dtype, var.device)
    groups.setdefault(key, ([], []))
    groups[key][0].append(average)
    groups[key][1].append(var)
  return {key: (tuple(a), tuple(v)) for key, (a, v) in groups.items()}


class EMAState(tf.Module):
  """What a checkpoint of an `EMA` callback holds: the averages (one per trainable weight of the
  model, in `model.trainable_weights` order) and the number of updates. Restoring it into a new
  callback before `fit()` (`tf.train.Checkpoint(ema=callback.state).restore(path)`) continues the
  same averages: they are restored when the callback creates them, at the start of `fit()`
  (keep the `tf.train.Checkpoint` object alive until then: it holds the pending restore)."""

  def __init__(self, num_updates):
    super().__init__(name="ema_state")
    self.num_updates = num_updates
    self.averages = []


class EMA(_keras_compat.Callback):
  """The exponential moving average of the model's trainable weights, as Keras 3's optimizer
  computes it with `use_ema=True, ema_momentum=momentum,
  ema_overwrite_frequency=overwrite_frequency`, for any optimizer, Keras 3 (TensorFlow backend)
  and tf_keras (Keras 2) models alike.

  After training step n (n = 1, 2, ...: the optimizer's `iterations` after the step), for every
  trainable weight `w` with average `a`:

      first update:  a <- w                       (Keras: momentum 0 at iterations == 0)
      later ones:    a <- a - (a - w) * (1 - m)   (Keras: m * a + (1 - m) * w)

  with m the momentum rounded to the weight's dtype, as Keras does (so `1 - m` is Keras' value
  too). With `overwrite_frequency = f`, every step with n % f == 0 then sets the weights to their
  averages, and at the end of `fit()` the model's weights are set to the averages (Keras'
  `finalize_variable_values`). The averages agree with Keras' to float32 rounding (the two
  formulas round differently), and the overwrites happen at the same steps.

  All averages are updated by one `EMAAssignGroup` op per step (per dtype and device of the
  weights), run as a tf.function (eagerly when the model runs eagerly); Keras' `use_ema` runs
  several ops per weight. The first update is a copy.

  Unlike Keras 3, tf_keras' `use_ema=True` starts the average at the weights before the first
  step and applies the momentum from the first step on; this callback computes Keras 3's average
  for both Kerases.

  Args:
    momentum: m, a float in [0, 1] (Keras' `ema_momentum`, default 0.99).
    overwrite_frequency: None, or an int >= 1: every that many optimizer iterations the model's
      weights are set to their averages (Keras' `ema_overwrite_frequency`).
    assign_at_end: at the end of `fit()`, set the model's weights to their averages (Keras does).
    name: the suffix of the averages' names (`<weight name>/<name>`).

  Attributes:
    state: an `EMAState` (averages + update count) to checkpoint.
    num_updates: the number of updates so far (an int).
  """

  def __init__(self, momentum=0.99, overwrite_frequency=None, assign_at_end=True, name="EMA"):
    _keras_compat.check_available(_WHERE)
    super().__init__()
    _check_momentum(momentum)
    _check_overwrite_frequency(overwrite_frequency)
    if not isinstance(assign_at_end, bool):
      raise TypeError("%s: assign_at_end must be a bool, got %r" % (_WHERE, assign_at_end))
    if not isinstance(name, str) or not name:
      raise TypeError("%s: name must be a non-empty str, got %r" % (_WHERE, name))
    self.momentum = float(momentum)
    self.overwrite_frequency = None if overwrite_frequency is None else int(overwrite_frequency)
    self.assign_at_end = assign_at_end
    self.name = name
    with tf.init_scope():
      num_updates = tf.Variable(0, dtype=tf.int64, trainable=False, name=name + "_num_updates")
    self.state = EMAState(num_updates)
    self._variables = None     # The model's trainable tf.Variables, averaged.
    self._averages = None      # Their averages, in the same order.
    self._num_updates = 0      # num_updates, known without reading the variable.
    self._iterations = 0       # The optimizer's iterations after the last step.
    self._functions = None     # (initialize, update, overwrite), see _make_functions.
    self._variable_groups = _groups.VariableGroups()

  @property
  def num_updates(self):
    return int(self.state.num_updates.numpy())

  # Set-up.

  def _check_model(self, model):
    _keras_compat.check_model(model, _WHERE)
    steps = int(getattr(model, "steps_per_execution", 1) or 1)
    if steps != 1:
      raise _errors.ArgumentError(
          "%s needs steps_per_execution=1 (the model was compiled with steps_per_execution=%d: "
          "Keras calls callbacks once per execution, so the average cannot follow every step)"
          % (_WHERE, steps))

  def _track(self, variables):
    """Makes the averages of `variables` (or keeps them, if they are those already averaged)."""
    if self._variables is not None:
      if [v.ref() for v in variables] == [v.ref() for v in self._variables]:
        return
      if self._num_updates:
        raise _errors.ArgumentError(
            "%s: the model's trainable weights changed since the averaging started (%d weights "
            "then, %d now): use a new EMA callback to start a new average"
            % (_WHERE, len(self._variables), len(variables)))
    self._variables = variables
    self._averages = [_new_average(var, self.name) for var in variables]
    if len(self.state.averages):
      self.state.averages = list(self._averages)
    else:  # Appended to the tracked list, so that a pending checkpoint restore fills them.
      self.state.averages.extend(self._averages)
    self._functions = self._make_functions()

  def _make_functions(self):
    """(initialize, update, overwrite): copy the weights into the averages and count the
    update; one EMA step of all averages and count it; copy the averages into the weights."""
    groups = _by_dtype_and_device(self._variables, self._averages)
    count = self.state.num_updates

    def initialize():
      for average, var in zip(self._averages, self._variables):
        average.assign(var, read_value=False)
      count.assign_add(1, read_value=False)

    def update():
      for (dtype, _), (averages, variables) in groups.items():
        handle = self._variable_groups.get(averages, variables)
        _ops.ema_assign_group(handle, [], tf.constant(self.momentum, dtype), dtype)
      count.assign_add(1, read_value=False)

    def overwrite():
      for average, var in zip(self._averages, self._variables):
        var.assign(average, read_value=False)

    if getattr(self.model, "run_eagerly", False):
      return initialize, update, overwrite
    return tuple(tf.function(f, autograph=False) for f in (initialize, update, overwrite))

  # Keras hooks.

  def on_train_begin(self, logs=None):
    model = self.model
    self._check_model(model)
    self._track(_trainable_variables(model))
    self._num_updates = self.num_updates
    self._iterations = int(model.optimizer.iterations.numpy())

  def on_train_batch_end(self, batch, logs=None):
    initialize, update, overwrite = self._functions
    (update if self._num_updates else initialize)()
    self._num_updates += 1
    self._iterations += 1
    if self.overwrite_frequency and self._iterations % self.overwrite_frequency == 0:
      overwrite()

  def on_train_end(self, logs=None):
    if not self.assign_at_end:
      return
    if not self._num_updates:
      warnings.warn("%s: no training step was averaged: the model keeps its weights" % _WHERE)
      return
    self.assign_averages()

  # Using the averages.

  def _check_averages(self, what):
    if self._variables is None or not self.num_updates:
      raise _errors.ArgumentError("%s.%s: no training step has been averaged yet"
                                  % (_WHERE, what))

  def average(self, weight):
    """The average (a tf.Variable) of the model's trainable weight `weight`."""
    weight = _state.unwrap(weight)
    for var, average in zip(self._variables or (), self._averages or ()):
      if var is weight:
        return average
    raise _errors.ArgumentError("%s.average: %r is not a trainable weight averaged by this "
                                "callback" % (_WHERE, getattr(weight, "name", weight)))

  @property
  def averages(self):
    """The averages, in `model.trainable_weights` order (empty before `fit()`)."""
    return list(self._averages or ())

  def assign_averages(self):
    """Sets the model's trainable weights to their averages."""
    self._check_averages("assign_averages")
    self._functions[2]()

  @contextlib.contextmanager
  def averaged_weights(self):
    """Context manager: inside the block the model's trainable weights hold their averages; after
    it, exactly the values they had before (a bit-exact swap in and out, one op each way per
    dtype and device)."""
    self._check_averages("averaged_weights")
    groups = _by_dtype_and_device(self._variables, self._averages).values()

    def swap():
      for averages, variables in groups:
        _groups.swap(self._variable_groups, list(averages), list(variables))

    swap()
    try:
      yield self.model
    finally:
      swap()
