"""The two Kerases swa_ops' Keras tools work with: Keras 3 (`keras`, TensorFlow backend) and
Keras 2 (`tf_keras`, which `tf.keras` is under `TF_USE_LEGACY_KERAS=1`).

Everything that differs between them lives here, so that every swa_ops callback (`SWA`, and
later ones) and `update_bn` handle both the same way:

- `Callback`: a base class both Kerases' `fit()` accept (Keras 3's `Callback` with the hooks
  tf_keras' `CallbackList` asks every callback for);
- `check_model`: the model is a Keras 3 model on the TensorFlow backend or a tf_keras model;
- `is_batch_norm`, `is_batch_sequence`, `inputs_of`: BatchNormalization layers, PyDataset /
  Sequence batch sources and the inputs `x` of a batch, in either Keras.

tf_keras is never imported here: a tf_keras model exists only once tf_keras is imported, so it
is looked up in `sys.modules`.
"""
import sys

try:  # Absolute import: the top-level Keras package.
  import keras as _keras3
except ImportError as _error:  # pragma: no cover (TensorFlow 2.21 requires Keras 3)
  _keras3 = None
  _KERAS3_IMPORT_ERROR = _error
else:
  _KERAS3_IMPORT_ERROR = None
  if int(_keras3.__version__.split(".")[0]) < 3:  # pragma: no cover
    _KERAS3_IMPORT_ERROR = "found Keras %s at `import keras`" % _keras3.__version__
    _keras3 = None


def keras3():
  """The Keras 3 module, or None."""
  return _keras3


def tf_keras():
  """The tf_keras (Keras 2) module if it has been imported (by `tf.keras` under
  TF_USE_LEGACY_KERAS=1 or by `import tf_keras`), or None."""
  return sys.modules.get("tf_keras")


def _tf_keras_available():
  if tf_keras() is not None:
    return True
  import importlib.util  # pylint: disable=import-outside-toplevel
  return importlib.util.find_spec("tf_keras") is not None


def check_available(where):
  """Raises ImportError unless Keras 3 or tf_keras is installed."""
  if _keras3 is None and not _tf_keras_available():
    raise ImportError("%s needs Keras 3 (`pip install keras`) or, for Keras 2, tf_keras "
                      "(`pip install tf-keras` and TF_USE_LEGACY_KERAS=1): %s"
                      % (where, _KERAS3_IMPORT_ERROR))


def is_tf_keras_model(model):
  module = tf_keras()
  return module is not None and isinstance(model, module.layers.Layer)


def is_keras3_model(model):
  return _keras3 is not None and isinstance(model, _keras3.layers.Layer)


def check_model(model, where):
  """Raises unless `model` is a tf_keras model or a Keras 3 model on the TensorFlow backend:
  TypeError for anything else, RuntimeError for Keras 3 on another backend."""
  if is_tf_keras_model(model):
    return
  if not is_keras3_model(model):
    raise TypeError("%s: the model must be a Keras 3 model (TensorFlow backend) or a tf_keras "
                    "(Keras 2) model, got %s" % (where, type(model).__name__))
  if _keras3.backend.backend() != "tensorflow":
    raise RuntimeError("%s works with the TensorFlow backend of Keras 3 only; Keras is using "
                       "the %r backend (set KERAS_BACKEND=tensorflow)"
                       % (where, _keras3.backend.backend()))


def _batch_norm_classes():
  classes = []
  if _keras3 is not None:
    classes.append(_keras3.layers.BatchNormalization)
  module = tf_keras()
  if module is not None:
    base = getattr(sys.modules.get("tf_keras.src.layers.normalization.batch_normalization"),
                   "BatchNormalizationBase", None)  # Also the v1 and Sync variants.
    classes.append(base or module.layers.BatchNormalization)
  return tuple(classes)


def is_batch_norm(layer):
  """Whether `layer` is a BatchNormalization layer of either Keras."""
  return isinstance(layer, _batch_norm_classes())


def is_batch_sequence(data):
  """Whether `data` is a Keras 3 `PyDataset` or a tf_keras `Sequence` (indexable batches)."""
  if _keras3 is not None and isinstance(data, _keras3.utils.PyDataset):
    return True
  module = tf_keras()
  return module is not None and isinstance(data, module.utils.Sequence)


def num_batches(data):
  """The number of batches of a PyDataset / Sequence, or None if it does not say (infinite)."""
  if _keras3 is not None and isinstance(data, _keras3.utils.PyDataset):
    try:
      return data.num_batches
    except NotImplementedError:
      return None
  return len(data)


def inputs_of(batch):
  """The inputs `x` of a batch `x`, `(x,)`, `(x, y)` or `(x, y, sample_weight)` (a list is
  taken as a tuple), as both Kerases unpack a batch."""
  if isinstance(batch, list):
    batch = tuple(batch)
  if isinstance(batch, tuple) and 1 <= len(batch) <= 3:
    return batch[0]
  return batch


def unpack(data):
  """`(x, y, sample_weight)` of a tuple of 1 to 3 elements, as both Kerases unpack it."""
  data = tuple(data)
  return data + (None,) * (3 - len(data))


_Keras3Callback = _keras3.callbacks.Callback if _keras3 is not None else object

_TRAIN_BATCH_HOOKS = ("on_batch_begin", "on_batch_end", "on_train_batch_begin",
                      "on_train_batch_end")
_TEST_BATCH_HOOKS = ("on_test_batch_begin", "on_test_batch_end")
_PREDICT_BATCH_HOOKS = ("on_predict_batch_begin", "on_predict_batch_end")


class Callback(_Keras3Callback):
  """A callback both Kerases' `fit()` take: Keras 3's `keras.callbacks.Callback` (whose
  `set_model`/`model` tf_keras also uses), plus what tf_keras' `CallbackList` asks of each
  callback: which batch hooks it overrides (tf_keras skips the per-batch calls of callbacks that
  override none), `_supports_tf_logs` (False: logs come as NumPy values) and
  `_chief_worker_only`."""

  _supports_tf_logs = False
  _chief_worker_only = None

  def _overrides(self, hooks):
    return any(getattr(type(self), hook, None) is not getattr(_Keras3Callback, hook, None)
               for hook in hooks)

  def _implements_train_batch_hooks(self):
    return self._overrides(_TRAIN_BATCH_HOOKS)

  def _implements_test_batch_hooks(self):
    return self._overrides(_TEST_BATCH_HOOKS)

  def _implements_predict_batch_hooks(self):
    return self._overrides(_PREDICT_BATCH_HOOKS)
