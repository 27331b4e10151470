"""swa_ops: stochastic weight averaging and moving averages of TensorFlow variables, as fused
C++/CUDA ops (one op per variable update).

Import TensorFlow first (this module does); the op library is loaded once, here.
"""
import tensorflow as tf  # noqa: F401  (the op library needs TensorFlow loaded)

from swa_ops import _ops  # noqa: F401  (loads the op library, or raises ImportError)
from swa_ops._errors import ArgumentError, DtypeError, ShapeError
from swa_ops.averager import SWAMovingAverage
from swa_ops.export import export_averaged
from swa_ops.moving_averages import assign_moving_average, weighted_moving_average
from swa_ops import reference  # noqa: F401
from swa_ops import keras  # noqa: F401  (the Keras 3 SWA callback: swa_ops.keras.SWA)

__version__ = "0.1.0"

__all__ = [
    "SWAMovingAverage", "assign_moving_average", "weighted_moving_average", "reference",
    "ArgumentError", "DtypeError", "ShapeError", "export_averaged",
]
