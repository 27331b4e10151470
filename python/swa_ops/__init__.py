"""swa_ops: stochastic weight averaging and moving averages of TensorFlow variables, as fused
C++/CUDA ops (one op per variable update, or one per list of variables).

`import swa_ops` imports TensorFlow (2.16 to 2.21) and loads the op library built for it, once.
`swa_ops.kernels` (the same updates on NumPy and DLPack arrays) needs no TensorFlow: where
TensorFlow is not installed, `from swa_ops import kernels` still works, and the TensorFlow API
raises an ImportError that says so.
"""
import importlib.util

from swa_ops._version import __version__

_TENSORFLOW_API = (
    "SWAMovingAverage", "ExponentialMovingAverage", "assign_moving_average",
    "weighted_moving_average", "reference", "keras",
    "ArgumentError", "DtypeError", "ShapeError", "supported_tensorflow_versions",
    "export_averaged")

if importlib.util.find_spec("tensorflow") is None:

  def __getattr__(name):
    if name in _TENSORFLOW_API:
      raise ImportError(
          "swa_ops.%s needs TensorFlow 2.16 to 2.21, which is not installed (pip install "
          "\"tensorflow-cpu>=2.16,<2.22\"); only swa_ops.kernels works without it" % name)
    raise AttributeError("module 'swa_ops' has no attribute %r" % name)

  __all__ = ["__version__"]
else:
  import tensorflow as tf  # noqa: F401  (the op library needs TensorFlow loaded)

  from swa_ops import _ops  # noqa: F401  (loads the op library, or raises ImportError)
  from swa_ops._errors import ArgumentError, DtypeError, ShapeError
  from swa_ops._ops import supported_tensorflow_versions
  from swa_ops.averager import SWAMovingAverage
  from swa_ops.exponential_moving_average import ExponentialMovingAverage
  from swa_ops.export import export_averaged
  from swa_ops.moving_averages import assign_moving_average, weighted_moving_average
  from swa_ops import reference  # noqa: F401
  from swa_ops import keras  # noqa: F401  (the Keras SWA callback: swa_ops.keras.SWA)

  __all__ = ["__version__"] + list(_TENSORFLOW_API)
