"""swa_ops.kernels on NumPy arrays (CPU) against the float64 and the rounded oracles."""
import numpy as np
import pytest

from swa_ops import kernels

import kernels_oracle as oracle
from kernels_oracle import PAIRS, as64, bits, dtype

# Shapes of one call: scalars, empty arrays, small arrays (run inline) and one large enough
# (1M elements) for the parallel path, whose blocks split arrays mid-way.
SHAPES = [(), (0,), (3, 5), (1,), (7, 0, 2), (1000,), (64, 33), (1 << 20,)]


def make_update(rng, pair, shapes=SHAPES):
  average_name, value_name = pair
  averages = oracle.random_arrays(rng, shapes, average_name)
  values = oracle.random_arrays(rng, shapes, value_name, -2.0, 2.0)
  return averages, values


@pytest.mark.parametrize("pair", PAIRS, ids="-".join)
def test_swa_is_the_running_mean(pair):
  rng = np.random.default_rng(1)
  shapes = [(4, 3), (1000,), (300, 1000)]
  averages, _ = make_update(rng, pair, shapes)
  expected = [np.zeros(s) for s in shapes]
  steps = 20
  for step in range(steps):
    values = oracle.random_arrays(rng, shapes, pair[1], -2.0, 2.0)
    kernels.swa_assign(averages, values, step)
    expected = [oracle.moving_average64(e, as64(v), 1.0 / (step + 1)) for e, v in zip(expected, values)]
  for average, e in zip(averages, expected):
    np.testing.assert_allclose(as64(average), e, rtol=0,
                               atol=2 * oracle.tolerance(pair[0], steps))


@pytest.mark.parametrize("pair", PAIRS, ids="-".join)
def test_ema_and_debiased_follow_the_float64_oracle(pair):
  rng = np.random.default_rng(2)
  shapes = [(5,), (2000,), (512, 600)]
  averages, _ = make_update(rng, pair, shapes)
  debiased = [np.zeros_like(a) for a in averages]
  biased = [np.zeros_like(a) for a in averages]
  local_steps = np.array([0, 3, 0], np.int64)
  expected = [as64(a) for a in averages]
  expected_debiased = [np.zeros(s) for s in shapes]
  expected_biased = [np.zeros(s) for s in shapes]
  decay = 0.9
  steps = 30
  for step in range(steps):
    values = oracle.random_arrays(rng, shapes, pair[1], -2.0, 2.0)
    kernels.ema_assign(averages, values, decay)
    kernels.debiased_ema(debiased, biased, local_steps, values, decay)
    for i, v in enumerate(values):
      expected[i] = oracle.moving_average64(expected[i], as64(v), 1 - decay)
      expected_debiased[i], expected_biased[i] = oracle.debiased64(
          expected_biased[i], as64(v), decay, [0, 3, 0][i] + step + 1)
  np.testing.assert_array_equal(local_steps, [steps, steps + 3, steps])
  atol = 4 * oracle.tolerance(pair[0], steps)
  for got, want in zip(averages + debiased + biased, expected + expected_debiased + expected_biased):
    np.testing.assert_allclose(as64(got), want, rtol=0, atol=atol)


@pytest.mark.parametrize("pair", PAIRS, ids="-".join)
@pytest.mark.parametrize("step", [0, 1, 6, 12345678])
def test_swa_rounds_like_the_spec(pair, step):
  rng = np.random.default_rng(3)
  averages, values = make_update(rng, pair)
  expected = [oracle.moving_average_rounded(a, v, 1.0 / (step + 1)) for a, v in zip(averages, values)]
  kernels.swa_assign(averages, values, step)
  for got, want in zip(averages, expected):
    np.testing.assert_array_equal(bits(got), bits(want))


@pytest.mark.parametrize("pair", PAIRS, ids="-".join)
@pytest.mark.parametrize("decay", [0.0, 0.5, 0.999, 1.0 / 3])
def test_ema_and_debiased_round_like_the_spec(pair, decay):
  rng = np.random.default_rng(4)
  averages, values = make_update(rng, pair)
  biased, _ = make_update(rng, pair)
  debiased = [np.zeros_like(a) for a in averages]
  local_steps = np.arange(len(values), dtype=np.int64) * 7
  expected = [oracle.moving_average_rounded(a, v, 1.0 - decay) for a, v in zip(averages, values)]
  expected_debiased = [oracle.debiased_rounded(b, v, decay, s + 1)
                       for b, v, s in zip(biased, values, local_steps)]
  steps_before = local_steps.copy()
  kernels.ema_assign(averages, values, decay)
  if decay < 1:
    kernels.debiased_ema(debiased, biased, local_steps, values, decay)
  for got, want in zip(averages, expected):
    np.testing.assert_array_equal(bits(got), bits(want))
  for got_average, got_biased, (want_average, want_biased) in zip(debiased, biased,
                                                                  expected_debiased):
    np.testing.assert_array_equal(bits(got_biased), bits(want_biased))
    np.testing.assert_array_equal(bits(got_average), bits(want_average))
  np.testing.assert_array_equal(local_steps, steps_before + 1)


@pytest.mark.parametrize("start,period", [(0, 1), (3, 1), (0, 4), (5, 3)])
def test_swa_schedule(start, period):
  rng = np.random.default_rng(5)
  average = np.zeros(10, np.float32)
  seen = []
  for step in range(20):
    value = rng.uniform(-1, 1, 10).astype(np.float32)
    before = average.copy()
    kernels.swa_assign([average], [value], step, start=start, period=period)
    weight = oracle.swa_weight(step, start, period)
    if weight is None:
      np.testing.assert_array_equal(bits(average), bits(before))
    else:
      seen.append(value)
      np.testing.assert_array_equal(
          bits(average), bits(oracle.moving_average_rounded(before, value, weight)))
  np.testing.assert_allclose(average, np.mean(seen, axis=0), atol=1e-6)


def test_float_steps_and_numpy_scalars():
  average, value = np.zeros(4), np.ones(4)
  kernels.swa_assign([average], [value], np.int64(3))  # weight 1/4
  np.testing.assert_array_equal(average, 0.25)
  kernels.swa_assign([average], [value], 2.5)  # weight 1/3.5, as SWAAssign reads a float step
  np.testing.assert_allclose(average, 0.25 + 0.75 / 3.5, rtol=1e-15)


@pytest.mark.parametrize("name", oracle.FLOAT_NAMES)
def test_swap_is_bit_exact(name):
  rng = np.random.default_rng(6)
  shapes = [(), (0,), (17,), (1 << 19,), (3, 4)]
  a = oracle.random_arrays(rng, shapes, name)
  b = oracle.random_arrays(rng, shapes, name)
  # Special values survive: NaN payloads, -0.0, infinities.
  a[2].view("u%d" % a[2].dtype.itemsize)[:3] = bits(np.array([np.nan], dtype(name)))[0] | 1
  b[2][3:6] = np.array([-0.0, np.inf, -np.inf]).astype(dtype(name))
  a_bits, b_bits = [bits(x).copy() for x in a], [bits(x).copy() for x in b]
  kernels.swap(a, b)
  for x, want in zip(a, b_bits):
    np.testing.assert_array_equal(bits(x), want)
  for x, want in zip(b, a_bits):
    np.testing.assert_array_equal(bits(x), want)


def test_arguments_read_only_values_tuples_and_empty_lists():
  value = np.arange(6, dtype=np.float32).reshape(2, 3)
  value.flags.writeable = False
  average = np.zeros((2, 3), np.float32)
  kernels.swa_assign((average,), (value,), 0)
  np.testing.assert_array_equal(average, value)
  kernels.swa_assign([], [], 0)
  kernels.ema_assign([], [], 0.5)
  kernels.debiased_ema([], [], np.zeros(0, np.int64), [], 0.5)
  kernels.swap([], [])


def test_buffer_protocol_objects_are_viewed_without_copy():
  import array
  average = array.array("d", [0.0, 0.0])
  kernels.ema_assign([average], [memoryview(array.array("d", [4.0, 8.0]))], 0.75)
  assert list(average) == [1.0, 2.0]


class DLPackOnly:
  """A CPU array seen only through __dlpack__ / __dlpack_device__ (no buffer protocol), like a
  PyTorch CPU tensor."""

  def __init__(self, array):
    self.array = array

  def __dlpack__(self, **kwargs):
    return self.array.__dlpack__(**kwargs)

  def __dlpack_device__(self):
    return self.array.__dlpack_device__()


def test_cpu_dlpack_arrays():
  average, value = np.zeros(5, np.float32), np.arange(5, dtype=np.float32)
  kernels.swa_assign([DLPackOnly(average)], [DLPackOnly(value)], 0)
  np.testing.assert_array_equal(average, value)
  read_only = np.zeros(5, np.float32)
  read_only.flags.writeable = False
  with pytest.raises(ValueError, match=r"averages\[0\] is read-only"):
    kernels.swa_assign([DLPackOnly(read_only)], [DLPackOnly(value)], 0)


def test_results_do_not_depend_on_the_thread_count():
  import subprocess
  import sys
  code = ("import hashlib, numpy as np; from swa_ops import kernels\n"
          "rng = np.random.default_rng(7)\n"
          "a = [rng.random(n).astype(np.float32) for n in (3, 1 << 20, 5000, 1 << 18)]\n"
          "v = [rng.random(x.size).astype(np.float32) for x in a]\n"
          "kernels.swa_assign(a, v, 3)\n"
          "print(kernels.cpu_threads(), hashlib.sha256(b''.join(x.tobytes() for x in a)).hexdigest())\n")
  outputs = []
  for threads in ("1", "3"):
    env = dict(__import__("os").environ, OMP_NUM_THREADS=threads)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0] == threads
    outputs.append(out[1])
  assert outputs[0] == outputs[1]


GIL_PROBE = """
import threading, time
import numpy as np
from swa_ops import kernels
rng = np.random.default_rng(3)
averages = [rng.random(1 << 24, dtype=np.float32)]
values = [rng.random(1 << 24, dtype=np.float32)]
ticks, spans, done = [], [], threading.Event()

def sleeper():
  while not done.is_set():
    time.sleep(0.001)
    ticks.append(time.perf_counter())

thread = threading.Thread(target=sleeper)
thread.start()
for step in range(8):
  start = time.perf_counter()
  kernels.swa_assign(averages, values, step)
  spans.append((start, time.perf_counter()))
done.set()
thread.join()
print(len(spans), sum(1 for t in ticks for start, end in spans if start < t < end),
      min(end - start for start, end in spans))
"""


def test_the_gil_is_released_during_the_update():
  """A Python thread that sleeps 1 ms at a time keeps ticking while updates of 16M floats run
  (tens of ms each, on one OpenMP thread, so that it has a core): measured at load 5, 150-300
  ticks fell inside 8 calls. Were the GIL held, it could record ticks only at a call's edges
  (where the caller itself waits for the GIL): measured with the release taken out, 8-22.
  """
  import os
  import subprocess
  import sys
  env = dict(os.environ, OMP_NUM_THREADS="1")
  out = subprocess.run([sys.executable, "-c", GIL_PROBE], env=env, capture_output=True,
                       text=True, check=True).stdout.split()
  calls, inside, shortest_s = int(out[0]), int(out[1]), float(out[2])
  assert inside >= 6 * calls, "%d ticks in %d updates of >= %.1f ms" % (
      inside, calls, 1e3 * shortest_s)
