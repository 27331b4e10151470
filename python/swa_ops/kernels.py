"""swa_ops.kernels: the fused SWA/EMA updates of swa_ops on NumPy and DLPack arrays, without
TensorFlow.

The same C++/CUDA core as the TensorFlow ops (SWAAssignN, EMAAssignN, DebiasedEMAN,
SwapVariablesN), called on arrays: NumPy arrays (any buffer NumPy can view without a copy) on
the CPU, and arrays with ``__dlpack__`` (CuPy, PyTorch, JAX) on the CPU or a CUDA device. This
module imports neither TensorFlow nor anything but NumPy.

Every function updates its arrays in place and returns None.

Arguments
  Lists (or tuples) of C-contiguous arrays, index i of each list belonging together. The arrays
  updated (``averages``, ``biased``, both lists of ``swap``) must be writable; ``values`` may be
  read-only. Dtypes: float16, bfloat16 (``ml_dtypes.bfloat16`` for NumPy), float32, float64;
  all averages of a call have one dtype, all values one dtype, and an average has its value's
  dtype or a wider float: float32 or float64 averages of float16/bfloat16 values, float64
  averages of float32 values (the values are converted exactly). ``values[i]`` has the shape of
  ``averages[i]``. No array may be updated twice in a call or be read while it is updated
  (an average that is its own value, the same array twice, overlapping views).

Bad input
  Everything is checked before anything is written: a bad argument raises ``ValueError``
  (lengths, shapes, read-only or non-contiguous arrays, shared memory, step, decay, devices) or
  ``TypeError`` (not an array, integer or other dtypes, a value wider than its average), naming
  the list index and the problem, and leaves every array unchanged.

Arithmetic
  That of the TensorFlow ops, bit for bit on the CPU: the weight is computed in float64 from the
  step or decay, rounded once to the compute type (float32 for float16/bfloat16 averages, else
  the average's dtype), each element computed as ``average - (average - value) * weight`` with
  every operation rounded (no FMA), and float16/bfloat16 rounded once when stored.

Threads and devices
  On the CPU one call is one parallel pass over all the arrays, split by bytes (not by array)
  over OpenMP threads (``OMP_NUM_THREADS``, default every core; ``cpu_threads()`` says how
  many); small updates run on the calling thread. The GIL is released during the update.
  Importing this module sets OMP_WAIT_POLICY=PASSIVE unless it is set (idle OpenMP threads
  sleep rather than spin between updates; see below the imports).
  On a CUDA device one call is one kernel launch (more only past about a thousand arrays),
  asynchronous on ``stream``. All arrays of a call must be on one device: CPU and CUDA arrays
  mixed, or arrays on two GPUs, are a ``ValueError``.

Streams
  ``stream`` (CUDA arrays only; ignored on the CPU): None (the default) or 0 is the legacy
  default stream, which is also CuPy's and PyTorch's default; pass the stream you work on
  otherwise: a ``cupy.cuda.Stream``, a ``torch.cuda.Stream`` or a raw ``cudaStream_t`` integer
  (DLPack's numbering: 1 legacy default, 2 per-thread default). The arrays are exported with
  ``__dlpack__(stream=...)`` for that stream, so their producer orders its pending work before
  the update.
"""
import numbers
import os

# OpenMP's idle threads sleep instead of spinning (libgomp reads this once, when it loads): an
# update runs once per training step, between other work, and spinning threads would take the
# cores that work needs (on a machine shared with other processes, measured ~10x slower with
# spinning). A short spin before sleeping (GOMP_SPINCOUNT=10000 with PASSIVE) did not pay either:
# W2 back to back 1.5 ms against 0.9 ms (medians), no gain with 2 ms between calls; waking a
# sleeping thread costs little next to W2's ~0.5 ms pass. Set OMP_WAIT_POLICY=ACTIVE before
# importing to keep libgomp's default.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from swa_ops import _kernels  # noqa: E402

WITH_CUDA = _kernels.WITH_CUDA

__all__ = ["swa_assign", "ema_assign", "debiased_ema", "swap", "cpu_threads", "WITH_CUDA"]


def _stream_handle(stream):
  """The integer handle of `stream`: None, an int, a cupy.cuda.Stream (.ptr) or a
  torch.cuda.Stream (.cuda_stream)."""
  if stream is None or isinstance(stream, numbers.Integral):
    return None if stream is None else int(stream)
  for attribute in ("cuda_stream", "ptr"):
    handle = getattr(stream, attribute, None)
    if isinstance(handle, numbers.Integral):
      return int(handle)
  raise TypeError("stream must be None, an int (cudaStream_t), a cupy.cuda.Stream or a "
                  "torch.cuda.Stream, got %s" % type(stream).__name__)


def swa_assign(averages, values, step, *, start=0, period=1, stream=None):
  """Stochastic weight averaging: ``averages[i] <- averages[i] - (averages[i] - values[i]) * w``.

  ``w = 1 / (k + 1)`` in float64, with ``k = step``: applied at steps 0, 1, ..., K each average
  is the mean of the K + 1 values seen. With a schedule (``start``, ``period``), as
  ``SWAAssign``'s attributes: only steps ``step >= start`` with ``(step - start) % period == 0``
  are averaged, the k-th of them (``k = (step - start) / period``) with ``w = 1 / (k + 1)``;
  other steps change nothing (the arguments are still checked).

  Args:
    averages: list of writable arrays, updated in place.
    values: list of arrays, one per average, of its shape.
    step: a number >= 0 (int or float; a whole number with a schedule).
    start: int >= 0. period: int >= 1.
    stream: CUDA stream (see the module's docstring).
  """
  _kernels.swa_assign(averages, values, step, start=start, period=period,
                      stream=_stream_handle(stream))


def ema_assign(averages, values, decay, *, stream=None):
  """Exponential moving average: ``averages[i] <- averages[i] - (averages[i] - values[i]) *
  (1 - decay)``, ``1 - decay`` computed in float64.

  Args:
    averages: list of writable arrays, updated in place.
    values: list of arrays, one per average, of its shape.
    decay: a number in [0, 1].
    stream: CUDA stream (see the module's docstring).
  """
  _kernels.ema_assign(averages, values, decay, stream=_stream_handle(stream))


def debiased_ema(averages, biased, local_steps, values, decay, *, stream=None):
  """Zero-debiased exponential moving average (``DebiasedEMA``; Adam's bias correction), for
  each i in this order::

      biased[i]      <- biased[i] - (biased[i] - values[i]) * (1 - decay)
      local_steps[i] <- local_steps[i] + 1
      averages[i]    <- biased[i] / (1 - decay ** local_steps[i])

  ``1 - decay ** local_steps[i]`` is computed in float64 (``std::pow``) and rounded once to the
  compute type. The local steps are exact int64 counts (the TensorFlow op keeps each one in its
  average's dtype, which stops counting at 2049 in float16 and 257 in bfloat16; below that the
  two agree bit for bit).

  Args:
    averages: list of writable arrays, updated in place.
    biased: list of writable arrays, the averages' dtype and shapes.
    local_steps: writable int64 array of shape ``(len(values),)``, each >= 0, on the arrays'
      device.
    values: list of arrays, one per average, of its shape.
    decay: a number in [0, 1).
    stream: CUDA stream (see the module's docstring). On a CUDA device the local steps are
      copied to the host and back, waiting for ``stream``.
  """
  _kernels.debiased_ema(averages, biased, local_steps, values, decay,
                        stream=_stream_handle(stream))


def swap(a, b, *, stream=None):
  """Exchanges the contents of ``a[i]`` and ``b[i]`` bit for bit, for every i.

  Args:
    a, b: lists of writable arrays; ``a[i]`` and ``b[i]`` have one dtype and one shape.
    stream: CUDA stream (see the module's docstring). On a CUDA device the exchange is three
      device-to-device copies per pair through a scratch buffer, in stream order.
  """
  _kernels.swap(a, b, stream=_stream_handle(stream))


def cpu_threads():
  """The OpenMP threads a CPU update uses (``OMP_NUM_THREADS``, default every core)."""
  return _kernels.cpu_threads()
