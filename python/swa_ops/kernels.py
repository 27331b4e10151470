"""swa_ops.kernels: the fused SWA/EMA updates on NumPy and DLPack arrays, without TensorFlow."""
from swa_ops._kernels import *  # noqa: F401,F403
