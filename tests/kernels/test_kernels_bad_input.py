"""Bad arguments to swa_ops.kernels: ValueError or TypeError naming the list index and the
problem, and nothing written (every array checked byte for byte after the error)."""
import re

import numpy as np
import pytest

from swa_ops import kernels

from kernels_oracle import dtype

F32 = np.float32


def arrays(n=3, size=4, dt=F32, fill=0.0):
  return [np.full(size, fill + i, dt) for i in range(n)]


def read_only(array):
  array.flags.writeable = False
  return array


class Case:
  """One bad call: `call(args)` on the arrays `make()` returns, which must raise `error` with a
  message matching `match`."""

  def __init__(self, name, function, make, error, match):
    self.name, self.function, self.make, self.error, self.match = name, function, make, error, match


def swa(averages, values, step=3, **kwargs):
  return lambda: kernels.swa_assign(averages, values, step, **kwargs)


def ema(averages, values, decay=0.5):
  return lambda: kernels.ema_assign(averages, values, decay)


def debiased(averages=None, biased=None, local_steps=None, values=None, decay=0.5):
  averages = arrays() if averages is None else averages
  biased = arrays(fill=5.0) if biased is None else biased
  local_steps = np.zeros(3, np.int64) if local_steps is None else local_steps
  values = arrays(fill=10.0) if values is None else values
  return lambda: kernels.debiased_ema(averages, biased, local_steps, values, decay)


def swap(a, b):
  return lambda: kernels.swap(a, b)


def with_at(items, index, item):
  items = list(items)
  items[index] = item
  return items


def shared():
  a = arrays()
  return a, a


CASES = [
    # Lists.
    ("lengths", lambda: swa(arrays(3), arrays(2, fill=9)), ValueError,
     r"averages has 3 arrays but values has 2"),
    ("debiased lengths", lambda: debiased(biased=arrays(2)), ValueError,
     r"averages has 3 arrays but biased has 2"),
    ("not a list", lambda: swa(np.zeros((3, 4), F32), arrays(fill=9)), TypeError,
     r"averages must be a list or tuple of arrays, got ndarray"),
    ("not an array", lambda: swa(with_at(arrays(), 2, [0.0] * 4), arrays(fill=9)), TypeError,
     r"averages\[2\] is a list, not an array"),
    # Shapes.
    ("shape", lambda: swa(arrays(), with_at(arrays(fill=9), 1, np.ones(5, F32))), ValueError,
     r"values\[1\] has shape \(5,\) but averages\[1\] has shape \(4,\)"),
    ("shape 2-d", lambda: swa(with_at(arrays(), 2, np.zeros((2, 2), F32)), arrays(fill=9)),
     ValueError, r"values\[2\] has shape \(4,\) but averages\[2\] has shape \(2, 2\)"),
    ("biased shape", lambda: debiased(biased=with_at(arrays(), 1, np.zeros(5, F32))), ValueError,
     r"biased\[1\] has shape \(5,\) but averages\[1\] has shape \(4,\)"),
    # Dtypes.
    ("value wider", lambda: swa(arrays(), arrays(dt=np.float64, fill=9)), TypeError,
     r"values\[0\] has dtype float64, which averages\[0\] \(float32\) cannot take"),
    ("bfloat16 into float16", lambda: swa(arrays(dt=np.float16), arrays(dt=dtype("bfloat16"))),
     TypeError, r"values\[0\] has dtype bfloat16, which averages\[0\] \(float16\) cannot take"),
    ("integer average", lambda: swa(with_at(arrays(), 1, np.zeros(4, np.int32)), arrays(fill=9)),
     TypeError, r"averages\[1\] has dtype int32; arrays are float16, bfloat16, float32 or float64"),
    ("integer value", lambda: swa(arrays(), with_at(arrays(fill=9), 2, np.ones(4, np.int64))),
     TypeError, r"values\[2\] has dtype int64; arrays are"),
    ("mixed average dtypes", lambda: swa(with_at(arrays(), 1, np.zeros(4)), arrays(fill=9)),
     TypeError, r"averages\[1\] has dtype float64 but averages\[0\] has float32"),
    ("big-endian", lambda: swa(arrays(), with_at(arrays(fill=9), 0, np.ones(4, ">f4"))),
     TypeError, r"values\[0\] has dtype >f4 \(big-endian\)"),
    ("biased dtype", lambda: debiased(biased=with_at(arrays(), 2, np.zeros(4, np.float16))),
     TypeError, r"biased\[2\] has dtype float16 but averages\[2\] has dtype float32"),
    # Writability and layout.
    ("read-only average", lambda: swa(with_at(arrays(), 1, read_only(np.zeros(4, F32))),
                                      arrays(fill=9)), ValueError, r"averages\[1\] is read-only"),
    ("read-only biased", lambda: debiased(biased=with_at(arrays(), 0, read_only(np.zeros(4, F32)))),
     ValueError, r"biased\[0\] is read-only"),
    ("strided average", lambda: swa(with_at(arrays(), 2, np.zeros(8, F32)[::2]), arrays(fill=9)),
     ValueError, r"averages\[2\] is not C-contiguous"),
    ("fortran value", lambda: swa(with_at(arrays(), 1, np.zeros((3, 2), F32)),
                                  with_at(arrays(fill=9), 1, np.ones((2, 3), F32).T)),
     ValueError, r"values\[1\] is not C-contiguous"),
    # Aliasing.
    ("own value", lambda: (lambda a: swa(a, with_at(arrays(fill=9), 1, a[1])))(arrays()),
     ValueError, r"averages\[1\] is also its value values\[1\]"),
    ("twice", lambda: (lambda a: swa(with_at(a, 2, a[0]), arrays(fill=9)))(arrays()),
     ValueError, r"averages\[0\] and averages\[2\] share memory"),
    ("overlapping views", lambda: (lambda big: swa([big[:6], big[4:]], arrays(2, 6, fill=9)))(
        np.zeros(10, F32)), ValueError, r"averages\[0\] and averages\[1\] share memory"),
    ("value is another average", lambda: (lambda a: swa(a, with_at(arrays(fill=9), 0, a[2])))(
        arrays()), ValueError, r"values\[0\] shares memory with averages\[2\]"),
    ("biased is its average", lambda: (lambda a: debiased(averages=a, biased=with_at(
        arrays(fill=5.0), 1, a[1])))(arrays()), ValueError,
     r"averages\[1\] and biased\[1\] share memory|biased\[1\] and averages\[1\] share memory"),
    ("local_steps inside an average", lambda: (lambda big: debiased(
        averages=with_at(arrays(dt=np.float64), 0, big[:4]), biased=arrays(dt=np.float64, fill=5),
        values=arrays(dt=np.float64, fill=9), local_steps=big[3:6].view(np.int64)))(
        np.zeros(8, np.float64)), ValueError,
     r"averages\[0\] and local_steps share memory|local_steps and averages\[0\] share memory"),
    # Scalars.
    ("negative step", lambda: swa(arrays(), arrays(fill=9), -1), ValueError,
     r"step must be finite and >= 0, got -1"),
    ("nan step", lambda: swa(arrays(), arrays(fill=9), float("nan")), ValueError,
     r"step must be finite and >= 0"),
    ("fractional step with schedule", lambda: swa(arrays(), arrays(fill=9), 2.5, start=1),
     ValueError, r"step must be a whole number with start/period"),
    ("negative start", lambda: swa(arrays(), arrays(fill=9), 2, start=-1), ValueError,
     r"start must be >= 0 and period >= 1"),
    ("zero period", lambda: swa(arrays(), arrays(fill=9), 2, period=0), ValueError,
     r"start must be >= 0 and period >= 1"),
    ("decay below 0", lambda: ema(arrays(), arrays(fill=9), -0.1), ValueError,
     r"decay must be in \[0, 1\], got -0.1"),
    ("decay above 1", lambda: ema(arrays(), arrays(fill=9), 1.5), ValueError,
     r"decay must be in \[0, 1\], got 1.5"),
    ("nan decay", lambda: ema(arrays(), arrays(fill=9), float("nan")), ValueError,
     r"decay must be in \[0, 1\]"),
    ("debiased decay 1", lambda: debiased(decay=1.0), ValueError, r"needs decay < 1"),
    ("debiased decay above 1", lambda: debiased(decay=2.0), ValueError, r"decay must be in"),
    # local_steps.
    ("local_steps dtype", lambda: debiased(local_steps=np.zeros(3, np.int32)), TypeError,
     r"local_steps has dtype int32; it must be int64"),
    ("local_steps shape", lambda: debiased(local_steps=np.zeros(4, np.int64)), ValueError,
     r"local_steps has shape \(4,\) but there are 3 values"),
    ("local_steps read-only", lambda: debiased(local_steps=read_only(np.zeros(3, np.int64))),
     ValueError, r"local_steps is read-only"),
    ("negative local step", lambda: debiased(local_steps=np.array([0, 2, -1], np.int64)),
     ValueError, r"local_steps\[2\] is -1"),
    # swap.
    ("swap lengths", lambda: swap(arrays(3), arrays(2, fill=9)), ValueError,
     r"a has 3 arrays but b has 2"),
    ("swap dtypes", lambda: swap(arrays(), with_at(arrays(fill=9), 1, np.ones(4))), TypeError,
     r"b\[1\] has dtype float64 but a\[1\] has dtype float32"),
    ("swap shapes", lambda: swap(arrays(), with_at(arrays(fill=9), 2, np.ones(3, F32))),
     ValueError, r"b\[2\] has shape \(3,\) but a\[2\] has shape \(4,\)"),
    ("swap same array", lambda: (lambda a: swap(a, with_at(arrays(fill=9), 1, a[1])))(arrays()),
     ValueError, r"share memory"),
    ("swap read-only", lambda: swap(arrays(), with_at(arrays(fill=9), 0, read_only(np.ones(4, F32)))),
     ValueError, r"b\[0\] is read-only"),
    ("swap integers", lambda: swap(with_at(arrays(), 0, np.zeros(4, np.int64)),
                                   with_at(arrays(fill=9), 0, np.ones(4, np.int64))),
     TypeError, r"a\[0\] has dtype int64"),
]


def gather_arrays(call):
  """Every NumPy array a call's closure holds (through lists and nested closures)."""
  found, stack, seen = [], [call], set()
  while stack:
    item = stack.pop()
    if id(item) in seen:
      continue
    seen.add(id(item))
    if isinstance(item, np.ndarray):
      found.append(item)
    elif isinstance(item, (list, tuple)):
      stack.extend(item)
    elif callable(item) and getattr(item, "__closure__", None):
      stack.extend(cell.cell_contents for cell in item.__closure__)
  return found


@pytest.mark.parametrize("make,error,match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_and_nothing_is_written(make, error, match):
  call = make()
  held = gather_arrays(call)
  assert held, "the case holds no arrays to check"
  before = [a.tobytes() for a in held]
  with pytest.raises(error, match=match):
    call()
  for array, snapshot in zip(held, before):
    assert array.tobytes() == snapshot


def test_a_valid_call_after_refusals_still_updates():
  averages, values = arrays(), arrays(fill=9)
  kernels.swa_assign(averages, values, 0)
  for average, value in zip(averages, values):
    np.testing.assert_array_equal(average, value)


def scrambled_views(rng, count, size):
  """`count` disjoint views of `size` floats into one buffer, listed in an order that runs up and
  down in places (some ascending runs, some single views out of place), as arrays allocated at
  different times come: the disjointness check sorts them by address."""
  buffer = np.zeros(count * size + size, F32)
  starts = np.arange(count) * size
  order = np.concatenate([rng.permutation(starts[:count // 3]), starts[count // 3:]])
  cut = rng.integers(1, count - 1)
  order = np.concatenate([order[cut:], order[:cut]])
  return buffer, [buffer[s:s + size] for s in order], list(order)


def overlapping_pairs(starts, size):
  """The index pairs of views [s, s + size) that overlap, by brute force."""
  return {(i, j) for i in range(len(starts)) for j in range(len(starts))
          if i != j and starts[i] < starts[j] + size and starts[j] < starts[i] + size}


@pytest.mark.parametrize("seed", range(6))
def test_an_overlap_anywhere_among_many_scrambled_arrays_is_found(seed):
  rng = np.random.default_rng(seed)
  size = 8
  buffer, views, starts = scrambled_views(rng, 300, size)
  victim = int(rng.integers(len(views)))
  shift = int(rng.integers(1, size))  # A view half over the next one (or past the last).
  views[victim] = buffer[starts[victim] + shift:starts[victim] + shift + size]
  starts[victim] += shift
  pairs = overlapping_pairs(starts, size)
  assert pairs
  values = arrays(len(views), size, fill=9)
  before = buffer.tobytes()
  with pytest.raises(ValueError, match=r"share memory") as raised:
    kernels.swa_assign(views, values, 1)
  named = tuple(int(i) for i in re.findall(r"averages\[(\d+)\]", str(raised.value)))
  assert named in pairs
  assert buffer.tobytes() == before


@pytest.mark.parametrize("seed", range(3))
def test_many_scrambled_disjoint_arrays_are_updated(seed):
  rng = np.random.default_rng(seed)
  _, views, _ = scrambled_views(rng, 300, 8)
  for view in views:
    view[:] = rng.random(8, dtype=F32)
  values = [rng.random(8, dtype=F32) for _ in views]
  expected = [v - (v - x) * F32(0.5) for v, x in zip(views, values)]
  kernels.swa_assign(views, values, 1)
  for view, want in zip(views, expected):
    np.testing.assert_array_equal(view, want)
