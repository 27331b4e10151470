"""`swa_ops.keras`: Stochastic Weight Averaging for Keras `model.fit`: Keras 3 (TensorFlow
backend) and Keras 2 (`tf_keras`, `tf.keras` under `TF_USE_LEGACY_KERAS=1`).

    import swa_ops
    swa = swa_ops.keras.SWA(start=10, period=1, bn_refresh_data=train_ds,
                            swa_validation_data=(x_val, y_val))
    model.fit(train_ds, epochs=20, callbacks=[swa])   # the model ends with the SWA weights

`SWA` averages the model's trainable weights with `swa_ops.SWAMovingAverage` (one grouped
`SWAAssignGroup` op per update for all of them), `update_bn` recomputes BatchNormalization
statistics for a set of weights with one pass over a dataset (PyTorch's `update_bn`), and `EMA`
keeps the exponential moving average of Keras 3's optimizer option `use_ema=True` (one
`EMAAssignGroup` op per step for all weights).
"""
import contextlib
import numbers
import time
import warnings

import numpy as np
import tensorflow as tf

from swa_ops import _errors
from swa_ops import _keras_compat
from swa_ops._keras_ema import EMA, EMAState  # noqa: F401  (swa_ops.keras.EMA)
from swa_ops import _state
from swa_ops.averager import SWAMovingAverage

keras = _keras_compat.keras3()  # The Keras 3 package (not this module); None without it.

__all__ = ["SWA", "EMA", "update_bn"]

_UNITS = ("epoch", "step")
_DEFAULT = object()  # "The callback's bn_refresh_data".


def _is_array(value):
  if isinstance(value, dict):
    return bool(value) and all(_is_array(v) for v in value.values())
  return isinstance(value, (np.ndarray, tf.Tensor))


def _is_array_data(data):
  """An array, a dict of arrays or a tuple (x[, y[, sample_weight]]) of them."""
  if isinstance(data, tuple):
    return 1 <= len(data) <= 3 and all(_is_array(v) for v in data)
  return _is_array(data)


def _is_py_dataset(data):
  return _keras_compat.is_batch_sequence(data)


def _check_data(data, what, reusable):
  """Raises TypeError unless `data` is something `_batches` can iterate (more than once, if
  `reusable`)."""
  if data is None or isinstance(data, (tf.data.Dataset,)) or _is_array_data(data) or \
      _is_py_dataset(data):
    return
  if isinstance(data, (str, bytes, numbers.Number)) or not hasattr(data, "__iter__"):
    raise TypeError("%s must be a tf.data.Dataset, a keras.utils.PyDataset, an array, a dict of "
                    "arrays, a tuple (x, y[, sample_weight]) of arrays or an iterable of "
                    "batches, got %s" % (what, type(data).__name__))
  if isinstance(data, tuple):
    raise TypeError("%s: a tuple must be (x[, y[, sample_weight]]) of NumPy arrays or Tensors "
                    "(or dicts of them); pass batches as a list or a tf.data.Dataset" % what)
  if reusable and iter(data) is data:
    raise TypeError("%s is a one-shot iterator (%s), but it is used more than once: pass a "
                    "tf.data.Dataset, a keras.utils.PyDataset, arrays or a list of batches"
                    % (what, type(data).__name__))


def _batches(data, batch_size):
  """The batches of `data` (see `_check_data`): arrays are split into batches of `batch_size`."""
  infinite = False
  if isinstance(data, tf.data.Dataset):
    infinite = int(data.cardinality()) == int(tf.data.INFINITE_CARDINALITY)
  elif _is_py_dataset(data):
    infinite = _keras_compat.num_batches(data) is None
  if infinite:
    raise _errors.ArgumentError(
        "swa_ops.keras: the BatchNormalization refresh data is infinite (or does not say how "
        "many batches it has): pass a finite one, e.g. dataset.take(n)")
  if _is_array_data(data):
    return tf.data.Dataset.from_tensor_slices(data).batch(batch_size or 32)
  return data


def _flat_layers(model):
  if hasattr(model, "_flatten_layers"):
    return list(model._flatten_layers(include_self=True, recursive=True))
  layers, stack = [], [model]
  while stack:
    layer = stack.pop()
    layers.append(layer)
    stack.extend(reversed(getattr(layer, "layers", [])))
  return layers


def _batch_norm_layers(model):
  """The BatchNormalization layers whose statistics a training-mode pass updates (trainable)."""
  layers = []
  for layer in _flat_layers(model):
    if _keras_compat.is_batch_norm(layer) and layer.trainable:
      if getattr(layer, "renorm", False):
        raise _errors.ArgumentError(
            "swa_ops.keras.update_bn: BatchNormalization layer '%s' uses renorm=True, whose "
            "statistics cannot be refreshed this way" % layer.name)
      layers.append(layer)
  return layers


class _BatchNormRefresher:
  """Recomputes the moving statistics of a model's BatchNormalization layers as the plain mean,
  over the batches of one pass, of the batch statistics (each batch weighs the same).

  During the pass every layer's momentum is 0 and its statistics are zeroed before each batch,
  so a training-mode forward pass leaves exactly the batch's mean and variance in
  `moving_mean`/`moving_variance` (Keras 3 computes `old * momentum + new * (1 - momentum)`,
  tf_keras `old - (old - new) * (1 - momentum)`: exact for both from zero); they are summed in
  float64 after each batch (inside the same tf.function unless the model runs eagerly) and the
  means are assigned at the end. The momenta are restored afterwards, and the original statistics too
  if the pass fails or is empty.
  """

  def __init__(self, model):
    self.model = model
    self.layers = _batch_norm_layers(model)
    self._sums = [(tf.Variable(tf.zeros(layer.moving_mean.shape, tf.float64), trainable=False),
                   tf.Variable(tf.zeros(layer.moving_variance.shape, tf.float64), trainable=False))
                  for layer in self.layers]
    self._function = tf.function(self._step, reduce_retracing=True)

  def _step(self, x):
    for layer in self.layers:
      for statistic in (layer.moving_mean, layer.moving_variance):
        statistic.assign(tf.zeros(statistic.shape, statistic.dtype))
    self.model(x, training=True)
    for layer, (mean_sum, variance_sum) in zip(self.layers, self._sums):
      mean_sum.assign_add(tf.cast(_state.unwrap(layer.moving_mean), tf.float64))
      variance_sum.assign_add(tf.cast(_state.unwrap(layer.moving_variance), tf.float64))

  def __call__(self, data, batch_size=None, run_eagerly=False):
    """Refreshes the statistics with one pass over `data`; returns the number of batches."""
    if not self.layers:
      return 0
    saved = [(layer.momentum, layer.moving_mean.numpy(), layer.moving_variance.numpy())
             for layer in self.layers]
    count = 0
    try:
      for layer in self.layers:
        layer.momentum = 0.0
        layer.moving_mean.assign(tf.zeros(layer.moving_mean.shape, layer.moving_mean.dtype))
        layer.moving_variance.assign(
            tf.ones(layer.moving_variance.shape, layer.moving_variance.dtype))
      for sums in self._sums:
        for total in sums:
          total.assign(tf.zeros_like(total))
      step = self._step if run_eagerly else self._function
      for batch in _batches(data, batch_size):
        step(tf.nest.map_structure(tf.convert_to_tensor, _keras_compat.inputs_of(batch)))
        count += 1
      if count == 0:
        raise _errors.ArgumentError("swa_ops.keras.update_bn: the data has no batches")
      for layer, (mean_sum, variance_sum) in zip(self.layers, self._sums):
        layer.moving_mean.assign(tf.cast(mean_sum / count, layer.moving_mean.dtype))
        layer.moving_variance.assign(tf.cast(variance_sum / count, layer.moving_variance.dtype))
    except BaseException:
      for layer, (_, mean, variance) in zip(self.layers, saved):
        layer.moving_mean.assign(mean)
        layer.moving_variance.assign(variance)
      raise
    finally:
      for layer, (momentum, _, _) in zip(self.layers, saved):
        layer.momentum = momentum
    return count


def update_bn(model, data, batch_size=None, run_eagerly=None):
  """Recomputes the moving statistics of `model`'s BatchNormalization layers for its current
  weights with one pass over `data` (PyTorch's `torch.optim.swa_utils.update_bn`).

  Every trainable BatchNormalization layer (a frozen one, `trainable=False`, keeps its
  statistics, as Keras training does) gets

      moving_mean     = (1/B) * sum_b mean_b
      moving_variance = (1/B) * sum_b var_b

  over the B batches of the pass, where mean_b and var_b are the batch statistics the layer
  computes in training mode (Keras' biased variance): each batch weighs the same, as with
  PyTorch's `momentum=None`. Sums are kept in float64. The model runs in training mode (dropout
  active, as during training); its trainable weights are not changed.

  Args:
    model: a Keras 3 model (TensorFlow backend) or a tf_keras (Keras 2) model.
    data: a tf.data.Dataset, keras.utils.PyDataset (tf_keras: keras.utils.Sequence) of
      batches, an iterable of batches, an
      array / dict of arrays / tuple (x[, y[, sample_weight]]) of arrays (split into batches of
      `batch_size`). Only the inputs x of each batch are used.
    batch_size: the batch size for array data (default 32).
    run_eagerly: run the forward passes eagerly (default: `model.run_eagerly`); otherwise one
      tf.function.

  Returns:
    The number of batches of the pass (0 if the model has no BatchNormalization layer to
    refresh).
  """
  _keras_compat.check_model(model, "swa_ops.keras.update_bn")
  _check_data(data, "update_bn: data", reusable=False)
  if data is None:
    raise _errors.ArgumentError("swa_ops.keras.update_bn: data is None")
  _check_batch_size(batch_size, "update_bn")
  if run_eagerly is None:
    run_eagerly = bool(getattr(model, "run_eagerly", False))
  return _BatchNormRefresher(model)(data, batch_size, run_eagerly)


def _check_batch_size(batch_size, where):
  if batch_size is None:
    return
  if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
    raise TypeError("swa_ops.keras.%s: batch_size must be an int or None, got %r"
                    % (where, batch_size))
  if batch_size < 1:
    raise _errors.ArgumentError("swa_ops.keras.%s: batch_size must be >= 1, got %d"
                                % (where, batch_size))


class SWAState(tf.Module):
  """What a checkpoint of an `SWA` callback holds: the averager (the averages) and the number
  of snapshots averaged so far. `tf.train.Checkpoint(swa=callback.state)` saves it; restoring it
  into a new callback before `fit()` continues the same average."""

  def __init__(self, averager, num_averaged):
    super().__init__(name="swa_state")
    self.averager = averager
    self.num_averaged = num_averaged


class SWA(_keras_compat.Callback):
  """Stochastic Weight Averaging (Izmailov et al., 2018) as a Keras callback, for Keras 3
  (TensorFlow backend) and Keras 2 (tf_keras) models alike.

  The callback keeps, for every trainable weight `w` of the model, an average `w_swa` that is
  the plain mean of the snapshots of `w` taken at the scheduled epochs (or steps):

      scheduled:  n >= start  and  (n - start) % period == 0
      k-th scheduled snapshot (k = 0, 1, ...):  w_swa <- w_swa - (w_swa - w) / (k + 1)

  so after K + 1 snapshots `w_swa = (w_0 + ... + w_K) / (K + 1)`. The weight 1 / (k + 1) is
  exact (float64 from the count k); all weights are updated by one `SWAAssignGroup` op per snapshot
  (`swa_ops.SWAMovingAverage`), run as a tf.function (eagerly when the model runs eagerly).

  With `unit="epoch"`, `n` is Keras' epoch index (0-based; it counts from `initial_epoch` when
  fit() resumes) and the snapshot is the weights at the end of epoch `n`, taken in
  `on_epoch_end`. With `unit="step"`, `n` is the 0-based index of the training step (the
  optimizer's `iterations` before the step, so it continues across fit() calls and resumed
  optimizers) and the snapshot is the weights after that step, taken in `on_train_batch_end`
  (`steps_per_execution` must then be 1).

  Only `model.trainable_weights` are averaged. BatchNormalization moving statistics are not
  averaged: they are refreshed for the averaged weights, when these go into the model, by one
  pass over `bn_refresh_data` (see `update_bn`: each batch's statistics weigh the same). Other
  non-trainable weights are left as they are.

  At the end of training (`assign_at_end=True`) the averages are assigned to the model's
  trainable weights and, if `bn_refresh_data` is given, the BatchNormalization statistics are
  refreshed; if no snapshot was averaged (training ended before `start`), the model is left
  unchanged and a warning is issued. Averaging continues across several fit() calls with the
  same callback (the model's trainable weights must stay the same ones); use a new callback to
  start a new average.

  With `swa_validation_data`, every epoch end at which at least one snapshot has been averaged
  evaluates the model with the averaged weights swapped in (a bit-exact swap in and out with
  `SWAMovingAverage.swap_weights`; with `bn_refresh_data`, BatchNormalization statistics are
  refreshed for the averages first and every non-trainable weight is restored bit-exactly
  afterwards) and adds `val_swa_loss` and `val_swa_<metric>` to the epoch's logs (so to
  `History`). The model's own weights after the evaluation are bit-identical to those before.

  Args:
    start: the first epoch (or step) averaged, an int >= 0 (default 0).
    period: average every `period`-th epoch (or step) from `start` on, an int >= 1.
    unit: "epoch" or "step": what `start` and `period` count.
    assign_at_end: at the end of fit(), put the averages into the model (and refresh the
      BatchNormalization statistics with `bn_refresh_data`).
    bn_refresh_data: None, or the data of the BatchNormalization refresh pass: a
      tf.data.Dataset or keras.utils.PyDataset, an array, a dict of arrays, a tuple (x, y[,
      sample_weight]) of arrays (split into batches of `batch_size`) or a list of batches
      (usually the training data; only x is used). Not a one-shot iterator: it may be used
      at every SWA validation and at the end.
    swa_validation_data: None, or the data for `model.evaluate` with the averaged weights: a
      tuple (x, y[, sample_weight]) of arrays (batches of `batch_size`), a tf.data.Dataset or
      a keras.utils.PyDataset.
    batch_size: the batch size used for array data (default: Keras' 32).
    verbose: 0 (silent) or 1 (a line when averages are assigned and after each SWA validation).
    skip_nonfinite: skip (and count in `averager.skipped_updates`) a snapshot holding a NaN or
      Inf instead of letting it into the averages.
    name: the averager's name (the shadows are named `<weight path>/<name>`).
    start_epoch, start_step: short for `start=..., unit="epoch"` and `start=..., unit="step"`.
    average_dtype: the averages' dtype (see `SWAMovingAverage`), e.g. tf.float32 for a model
      with bfloat16 weights; the averages are rounded to the weights' dtype when assigned.

  Attributes:
    averager: the `swa_ops.SWAMovingAverage`; `averager.average(w)` is the average of weight
      `w`.
    state: an `SWAState` (averager + count) to checkpoint.
    num_averaged: the number of snapshots averaged so far (an int).
    averaging_seconds: wall time spent in the averaging updates so far, in seconds (the first
      update includes tracing its tf.function, unless the model runs eagerly).
    averaging_times: the wall time of each averaging update, in seconds (a list).
    bn_refresh_seconds: wall time spent in BatchNormalization refresh passes so far, in seconds.
  """

  def __init__(self, start=0, period=1, unit="epoch", assign_at_end=True, bn_refresh_data=None,
               swa_validation_data=None, batch_size=None, verbose=0, skip_nonfinite=False,
               name="SWAMovingAverage", start_epoch=None, start_step=None, average_dtype=None):
    _keras_compat.check_available("swa_ops.keras.SWA")
    super().__init__()
    for alias, alias_unit in (("start_epoch", "epoch"), ("start_step", "step")):
      value = start_epoch if alias_unit == "epoch" else start_step
      if value is None:
        continue
      if start != 0 or unit != "epoch" or (start_epoch is not None and start_step is not None):
        raise _errors.ArgumentError("swa_ops.keras.SWA: %s is short for start=%r, unit=%r; "
                                    "pass it alone, not with start, unit or the other one"
                                    % (alias, value, alias_unit))
      start, unit = value, alias_unit
    for arg, value, minimum in (("start", start, 0), ("period", period, 1)):
      if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError("swa_ops.keras.SWA: %s must be an int, got %r" % (arg, value))
      if value < minimum:
        raise _errors.ArgumentError("swa_ops.keras.SWA: %s must be >= %d, got %d"
                                    % (arg, minimum, value))
    if unit not in _UNITS:
      raise _errors.ArgumentError("swa_ops.keras.SWA: unit must be 'epoch' or 'step', got %r"
                                  % (unit,))
    for arg, value in (("assign_at_end", assign_at_end), ("skip_nonfinite", skip_nonfinite)):
      if not isinstance(value, (bool, np.bool_)):
        raise TypeError("swa_ops.keras.SWA: %s must be a bool, got %r" % (arg, value))
    if verbose not in (0, 1, True, False):
      raise _errors.ArgumentError("swa_ops.keras.SWA: verbose must be 0 or 1, got %r"
                                  % (verbose,))
    if not isinstance(name, str) or not name:
      raise TypeError("swa_ops.keras.SWA: name must be a non-empty str, got %r" % (name,))
    _check_batch_size(batch_size, "SWA")
    _check_data(bn_refresh_data, "swa_ops.keras.SWA: bn_refresh_data", reusable=True)
    if swa_validation_data is not None and not (
        isinstance(swa_validation_data, tf.data.Dataset) or _is_py_dataset(swa_validation_data)
        or (isinstance(swa_validation_data, tuple) and 2 <= len(swa_validation_data) <= 3
            and _is_array_data(swa_validation_data))):
      raise TypeError("swa_ops.keras.SWA: swa_validation_data must be a tuple (x, y[, "
                      "sample_weight]) of arrays, a tf.data.Dataset or a keras.utils.PyDataset, "
                      "got %s" % type(swa_validation_data).__name__)
    self.start = int(start)
    self.period = int(period)
    self.unit = unit
    self.assign_at_end = bool(assign_at_end)
    self.bn_refresh_data = bn_refresh_data
    self.swa_validation_data = swa_validation_data
    self.batch_size = batch_size
    self.verbose = int(verbose)
    with tf.init_scope():
      count = tf.Variable(0, dtype=tf.int64, trainable=False, name="swa_num_averaged")
    self.averager = SWAMovingAverage(count, name=name, skip_nonfinite=bool(skip_nonfinite),
                                     average_dtype=average_dtype)
    self.state = SWAState(self.averager, count)
    self.averaging_times = []
    self.bn_refresh_seconds = 0.0
    self._variables = None     # The unwrapped tf.Variables averaged.
    self._update = None        # The tf.function that averages them.
    self._step = 0             # unit="step": the index of the next training step.
    self._refresher = None

  @property
  def averaging_seconds(self):
    return float(sum(self.averaging_times))

  @property
  def num_averaged(self):
    return int(self.state.num_averaged.numpy())

  def _is_scheduled(self, n):
    return n >= self.start and (n - self.start) % self.period == 0

  # Keras hooks.

  def on_train_begin(self, logs=None):
    model = self.model
    _keras_compat.check_model(model, "swa_ops.keras.SWA")
    if self.unit == "step" and int(getattr(model, "steps_per_execution", 1) or 1) != 1:
      raise _errors.ArgumentError(
          "swa_ops.keras.SWA(unit='step') needs steps_per_execution=1 (the model was compiled "
          "with steps_per_execution=%d: Keras calls callbacks once per execution, so single "
          "steps cannot be averaged); use unit='epoch' or steps_per_execution=1"
          % model.steps_per_execution)
    variables = [_state.unwrap(v) for v in model.trainable_weights]
    if not variables:
      raise _errors.ArgumentError("swa_ops.keras.SWA: the model has no trainable weights")
    for var in variables:
      if isinstance(var, tf.distribute.DistributedValues) or not isinstance(var, tf.Variable):
        raise _errors.ArgumentError(
            "swa_ops.keras.SWA: weight %r is a %s, not a plain tf.Variable (distribution "
            "strategies are not supported)" % (getattr(var, "name", var), type(var).__name__))
    if self._variables is not None and \
        [v.ref() for v in variables] != [v.ref() for v in self._variables]:
      if self.num_averaged:
        raise _errors.ArgumentError(
            "swa_ops.keras.SWA: the model's trainable weights changed since the averaging "
            "started (%d weights then, %d now): use a new SWA callback to start a new average"
            % (len(self._variables), len(variables)))
      self._update = None
    if self._update is None:
      self._variables = variables
      self._update = self._make_update()
    if self.unit == "step":
      self._step = int(model.optimizer.iterations.numpy())
    if self.bn_refresh_data is not None and self._refresher is None:
      self._refresher = _BatchNormRefresher(model)

  def _make_update(self):
    variables = self._variables
    count = self.state.num_averaged
    averager = self.averager

    def reset_shadows():
      for var in variables:
        averager.average(var).assign(var, read_value=False)

    def update():
      if getattr(averager, "skipped_updates", None) is None:
        averager.apply(variables)
        count.assign_add(1)
        return
      # A skipped (non-finite) snapshot is not counted: k stays the number averaged. A shadow
      # starts at its weight's value when created (at the first snapshot), so after a skipped
      # first snapshot it holds the non-finite value: while k == 0 the shadows are set to the
      # weights first, and the k = 0 update (weight 1) then leaves them exactly the weights.
      averager._ensure_shadows(variables)  # pylint: disable=protected-access
      if tf.executing_eagerly():
        if int(count.numpy()) == 0:
          reset_shadows()
      else:
        tf.cond(tf.equal(count, 0), reset_shadows, lambda: None)
      skipped = averager.skipped_updates.read_value()
      averager.apply(variables)
      count.assign_add(1 - (averager.skipped_updates.read_value() - skipped))

    if getattr(self.model, "run_eagerly", False):
      return update
    return tf.function(update, autograph=False)

  def _average(self):
    begin = time.perf_counter()
    self._update()
    self.averaging_times.append(time.perf_counter() - begin)

  def on_train_batch_end(self, batch, logs=None):
    if self.unit == "step":
      step, self._step = self._step, self._step + 1
      if self._is_scheduled(step):
        self._average()

  def on_epoch_end(self, epoch, logs=None):
    if self.unit == "epoch" and self._is_scheduled(epoch):
      self._average()
    if self.swa_validation_data is not None and self.num_averaged:
      results = self.evaluate()
      if logs is not None:
        logs.update(results)
      if self.verbose:
        print("SWA (%d snapshots): %s" % (self.num_averaged, " - ".join(
            "%s: %.4f" % (key, value) for key, value in results.items())))

  def on_train_end(self, logs=None):
    if not self.assign_at_end:
      return
    if not self.num_averaged:
      warnings.warn("swa_ops.keras.SWA: no snapshot was averaged (training ended before "
                    "%s %d): the model keeps its trained weights" % (self.unit, self.start))
      return
    batches = self.assign_averages()
    if self.verbose:
      print("SWA: assigned the average of %d snapshots to %d weights%s" % (
          self.num_averaged, len(self._variables),
          "; BatchNormalization statistics refreshed over %d batches" % batches
          if batches else ""))

  # Using the averages.

  def _check_averages(self, what):
    if self._variables is None or not self.num_averaged:
      raise _errors.ArgumentError("swa_ops.keras.SWA.%s: no snapshot has been averaged yet"
                                  % what)

  def _refresh_bn(self, data):
    if data is None:
      return 0
    begin = time.perf_counter()
    refresher = self._refresher
    if refresher is None or data is not self.bn_refresh_data:
      refresher = _BatchNormRefresher(self.model)
    try:
      return refresher(data, self.batch_size, bool(getattr(self.model, "run_eagerly", False)))
    finally:
      self.bn_refresh_seconds += time.perf_counter() - begin

  def assign_averages(self, bn_refresh_data=_DEFAULT):
    """Assigns the averages to the model's trainable weights, then refreshes the
    BatchNormalization statistics with one pass over `bn_refresh_data` (default: the
    callback's; None: no refresh). Returns the number of batches of that pass (0 if none)."""
    self._check_averages("assign_averages")
    if bn_refresh_data is _DEFAULT:
      bn_refresh_data = self.bn_refresh_data
    else:
      _check_data(bn_refresh_data, "SWA.assign_averages: bn_refresh_data", reusable=False)
    self.averager.assign_average_vars(self._variables)
    return self._refresh_bn(bn_refresh_data)

  @contextlib.contextmanager
  def averaged_weights(self, bn_refresh_data=_DEFAULT):
    """Context manager: inside the block the model's trainable weights hold their averages
    (swapped in and back out bit-exactly) and, with `bn_refresh_data` (default: the
    callback's; None: none), BatchNormalization statistics refreshed for them; after it, the
    trainable weights and (with a refresh) every non-trainable weight hold again exactly the
    values they had before."""
    self._check_averages("averaged_weights")
    if bn_refresh_data is _DEFAULT:
      bn_refresh_data = self.bn_refresh_data
    else:
      _check_data(bn_refresh_data, "SWA.averaged_weights: bn_refresh_data", reusable=False)
    saved = None
    if bn_refresh_data is not None:
      saved = [(v, v.numpy()) for v in self.model.non_trainable_weights]
    try:
      with self.averager.averaged_weights(self._variables):
        self._refresh_bn(bn_refresh_data)
        yield self.model
    finally:
      for var, value in saved or ():
        var.assign(value)

  def evaluate(self):
    """Evaluates `swa_validation_data` with the averaged weights (see `averaged_weights`);
    returns {"val_swa_loss": ..., "val_swa_<metric>": ...}."""
    data = self.swa_validation_data
    if data is None:
      raise _errors.ArgumentError("swa_ops.keras.SWA.evaluate: swa_validation_data is None")
    if isinstance(data, tuple):
      x, y, sample_weight = _keras_compat.unpack(data)
      kwargs = dict(x=x, y=y, sample_weight=sample_weight, batch_size=self.batch_size)
    else:
      kwargs = dict(x=data)
    with self.averaged_weights():
      results = self.model.evaluate(verbose=0, return_dict=True, **kwargs)
    return {"val_swa_" + key: value for key, value in results.items()}
