"""Shared by the swa_ops.kernels tests: dtypes, random arrays and the oracles.

Two oracles, both written from the SPEC (../shared/reference/SPEC.md), not from the code:
  * float64: the update formulas in float64 NumPy; results agree to the storage dtype's
    precision (`tolerance`).
  * rounded: the same formulas with the rounding the SPEC and the README state (weight computed
    in float64 and rounded once to the compute type, float32 for float16/bfloat16 averages,
    else the average's dtype; each operation rounded in it, no FMA; stored once). NumPy rounds
    every float32/float64 operation, so this oracle is exact and results must match it bit for
    bit.
"""
import numpy as np

try:
  import ml_dtypes
except ImportError:  # bfloat16 cases skip.
  ml_dtypes = None

BFLOAT16 = ml_dtypes.bfloat16 if ml_dtypes is not None else None
FLOAT_NAMES = ("float16", "bfloat16", "float32", "float64")
# (average dtype, value dtype): an average has its value's dtype or a wider float.
PAIRS = (("float32", "float32"), ("float64", "float64"), ("float16", "float16"),
         ("bfloat16", "bfloat16"), ("float32", "float16"), ("float32", "bfloat16"),
         ("float64", "float16"), ("float64", "bfloat16"), ("float64", "float32"))
EPS = {"float16": 2.0**-11, "bfloat16": 2.0**-8, "float32": 2.0**-24, "float64": 2.0**-53}


def dtype(name):
  """The NumPy dtype called `name` (bfloat16 from ml_dtypes)."""
  if name == "bfloat16":
    if BFLOAT16 is None:
      import pytest
      pytest.skip("bfloat16 needs ml_dtypes")
    return np.dtype(BFLOAT16)
  return np.dtype(name)


def compute_dtype(average_name):
  return np.float64 if average_name == "float64" else np.float32


def random_arrays(rng, shapes, name, low=-1.0, high=1.0):
  return [rng.uniform(low, high, shape).astype(dtype(name)) for shape in shapes]


def as64(array):
  return np.asarray(array).astype(np.float64)


def tolerance(name, steps=1):
  """Absolute tolerance relative to max|value| after `steps` updates."""
  if name == "float32":
    return 1e-6
  if name == "float64":
    return 1e-12
  return 4 * EPS[name] * np.sqrt(max(steps, 1)) + 2 * EPS[name]


def swa_weight(step, start=0, period=1):
  """SWAAssign's weight for `step`, or None for a step the schedule skips."""
  if (start, period) == (0, 1):
    return 1.0 / (step + 1.0)
  if step < start or (step - start) % period:
    return None
  return 1.0 / ((step - start) // period + 1.0)


# ---- float64 oracle ----

def moving_average64(average, value, weight):
  return average - (average - value) * weight


def debiased64(biased, value, decay, local_step):
  """(average, biased) after one update; local_step already incremented."""
  biased = biased - (biased - value) * (1.0 - decay)
  return biased / (1.0 - decay**local_step), biased


# ---- rounded oracle ----

def moving_average_rounded(average, value, weight):
  c = compute_dtype(average.dtype.name)
  a, v, w = average.astype(c), value.astype(c), c(weight)
  return (a - (a - v) * w).astype(average.dtype)


def debiased_rounded(biased, value, decay, local_step):
  """(average, biased) as stored; local_step already incremented."""
  c = compute_dtype(biased.dtype.name)
  new_biased = moving_average_rounded(biased, value, 1.0 - decay)
  denominator = c(1.0 - np.power(np.float64(decay), np.float64(local_step)))
  return (new_biased.astype(c) / denominator).astype(biased.dtype), new_biased


def bits(array):
  """The array's bytes as unsigned integers (bit-exact comparison, NaN payloads included)."""
  array = np.ascontiguousarray(array)
  return array.view("u%d" % array.dtype.itemsize)
