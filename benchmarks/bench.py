"""Milliseconds per `apply()` of swa_ops and its alternatives, measured side by side.

Usage:
  python benchmarks/bench.py [--quick] [--json PATH] [--workloads W1,W2,W3]
                             [--sweep | --no-sweep] [--sweep-variables 10,30,...]
                             [--sweep-values N] [--sweep-trace-limit SECONDS] [--plot PATH]
                             [--reference PATH | --no-tf1] [--first-call [N,N,...]]
                             [--keras-ema] [--tf-ema]

A run has two parts: the workloads W1-W3 and the sweep (`--sweep`: the sweep only;
`--no-sweep`: the workloads only; default: both, in quick and full runs alike).

Workloads: in one process, for each workload (a list of float32 tf.Variables filled with random
values), these paths:

  swa_ops tf.function    `swa_ops.SWAMovingAverage(step).apply(vars)` inside a tf.function that
                         also increments `step` (an int64 tf.Variable); shadows are created at
                         the first trace. This is the default, grouped path: one
                         `SWAAssignGroup` op per (device, dtype) group of variables, on one
                         captured group handle (not one captured handle per variable).
  swa_ops per-variable tf.function
                         the same with `SWAMovingAverage(step, grouped=False)`: one
                         `SWAAssignVariable` op per variable (the path before grouping).
  swa_ops eager          the default (grouped) averager, its two lines called eagerly from a
                         Python loop.
  swa_ops XLA            the default averager in `tf.function(jit_compile=True)`: inside XLA
                         swa_ops emits the same update as plain TF ops, which XLA fuses.
  reference tf.function  `swa_ops.reference.SWAMovingAverage` (the same math in plain TF ops),
                         as in the first row.
  EMA tf.function        `tf.train.ExponentialMovingAverage(decay=0.99).apply(vars)` in a
                         tf.function.
  EMA XLA                the same with `tf.function(jit_compile=True)`.
  memory floor           12 bytes per float32 value (read the average, read the variable,
                         write the average) / the memory bandwidth measured below.

The speedup table gives reference / swa_ops (median ms) for the grouped and the per-variable
path.

TF1 graph mode, against the ORIGINAL reference: after each workload's paths (their variables
freed), a child process (benchmarks/bench_tf1.py; the reference needs TF1 reference variables,
`tf.compat.v1.disable_v2_behavior()`, for the whole process) times `Session.run` of the original
`SWAMovingAverage` loaded from --reference (default: ../shared/reference/swa_moving_average.py
beside the repository), swa_ops on the same reference variables, and swa_ops grouped on
resource variables, interleaved like the paths above and with the bandwidth kernel, so their
floor is the child's own (its best bandwidth in those rounds). Their table gives each median, the
grouped path's ratio to that floor, and the speedups over the original reference.
Skipped, with a note, if the reference file is missing (or with --no-tf1).

How: every path is built and warmed up (traced, compiled, shadows created and touched) first;
the first call's seconds are recorded. Then each path's cost of one call is estimated and
turned into a batch of calls that lasts about `target_s` seconds; the repeats are interleaved
across paths (round robin: path 1's batch, path 2's batch, ..., then again) so that the slow
drifts of a noisy, shared machine hit all paths alike. Reported: the median and the min over
repeats of (batch wall time / calls in the batch). CPU execution is synchronous (checked at
start-up), so a call has finished its work when it returns and wall time is the right clock.
The tf.functions use autograph=False (see `swa_step_function`); it changes tracing time only.

Memory bandwidth: `np.add(a, b, out=a)` (reads a and b, writes a: 12 bytes per float32
element, the update's access pattern) over float32 arrays that together are at least 4x the
last-level cache (and at least 64M floats each), one slice per core, each slice run by its own
Python thread (numpy ufuncs release the GIL). It is measured at start-up (best of several) and
again as one more path in every workload's rounds; the bandwidth used for the floor is the
best of all of these, so the floor is a lower bound for the whole run. As the paths' figures are
medians and the floor's a best, the table also gives "x median floor": a path's median over the
floor at the median bandwidth of the same workload's rounds, where the kernel took turns with
the paths (like for like on a machine whose bandwidth drifts).

Huge pages: numpy puts large arrays on transparent huge pages (2 MiB) by itself; TF's CPU
allocator (glibc malloc) does so only with GLIBC_TUNABLES=glibc.malloc.hugetlb=1, which
benchmarks/run.sh sets for the whole run (all paths alike, so the floor and the paths stream
through the same page size). Without it, TF's buffers take a TLB miss every 4 KiB, which costs
most where the update streams large tensors or touches thousands of small ones. The output's
second line says which it was; the JSON's machine has both settings.

Sweep: ms per update against the number of variables at a fixed total size (`--sweep-values`,
default 4M = 4 * 2**20 float32 values, split equally: each variable gets total // count
values), for 10, 30, 100, 300, 1000, 3000 and 10000 variables (quick run: 10, 100, 300).
Paths: swa_ops tf.function (grouped), swa_ops per-variable tf.function, swa_ops.reference
tf.function and EMA tf.function (EMA XLA is left out: its compile time, like the others'
first call, grows faster than linearly with the number of variables). Each point is timed like
a workload (interleaved rounds; fewer and shorter batches, see SWEEP_SETTINGS), without the
bandwidth kernel: its floor uses the run's best bandwidth. The 32 MiB of averages and variables
can stay in the last-level cache, so there the floor is no strict lower bound (the output says
so when sysfs reports a larger cache).

The first call of thousands of variables is slow and grows faster than linearly (3000
variables: 12-35 s; 10000: 40-80 s for the swa_ops paths, much of the grouped path's in
Grappler's dependency optimizer, which is quadratic in the 20000 inputs of its one op). So
before each point, every path's first call is predicted from its last measured points (log-log
extrapolation, see `predict_first_call_s`); a path predicted above `--sweep-trace-limit`
(default 60 s) is not run at that point (nor, as the prediction only grows, at larger ones), and
the tables, the JSON ("skipped", "reason", "predicted_first_call_s") and the plot's legend say
so. The plot
(log-log: ms per update against the number of variables, one line per path, the memory floor
as a horizontal line) goes to benchmarks/results/sweep.png (`--plot`) when matplotlib is
installed; otherwise the run prints and writes everything else and says that it skipped the
plot.

Run time on the 2-core development machine: the quick run (the default of benchmarks/run.sh)
stays within 5 minutes: it leaves out FULL_RUN_ONLY_PATHS and sweeps 10, 100 and 300
variables. The full run (--full in run.sh) takes 12 minutes or more, most of it first calls
(tracing and variable creation) at thousands of variables. `--sweep --sweep-variables 10000 --sweep-trace-limit 1000`
measures every path at 10000 variables (about 6 minutes there: first calls 40-125 s).

First calls (`--first-call [1000,3000,10000]`, off by default): the first apply() of N unnamed
float32 variables of 100 values (shadows, checks, grouping, tracing) and the steady state after
it, for swa_ops eager and tf.function, tf.train.ExponentialMovingAverage in a tf.function and a
Keras optimizer with `use_ema=True`, one process per path and size (benchmarks/first_call.py);
a path predicted above --sweep-trace-limit is skipped with its prediction. It prints each
path's growth exponent (least-squares slope on log-log axes), the issue-18 targets beside the
measurements, and plots first_call.png beside the sweep plot. About 3 minutes for swa_ops up to
10000 variables here; the peers are skipped where they would take over a minute.

Keras EMA (`--keras-ema`, off by default): ms per Keras 3 `fit()` step of a model of 200
Dense(16) layers (400 variables) with `SGD(use_ema=True)`, with a plain SGD and
`swa_ops.keras.EMA`, and with no EMA, interleaved (benchmarks/keras_ema_bench.py); the EMA cost
of each is its step minus the plain step of the same round (median).

TF EMA (`--tf-ema`, off by default): `swa_ops.ExponentialMovingAverage` against
`tf.train.ExponentialMovingAverage`, both in tf.function, over the same workloads, interleaved,
with the floor and the speedup targets (benchmarks/tf_ema_bench.py; XLA paths in full runs).

Results are printed as markdown tables and written as JSON (default
benchmarks/results/latest.json) with machine information.
"""
import argparse
import concurrent.futures
import functools
import gc
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
try:
  import swa_ops  # noqa: E402
except ImportError:  # Not on PYTHONPATH and not installed: use the in-tree package.
  sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))
  import swa_ops  # noqa: E402
from swa_ops import reference  # noqa: E402

sys.path.insert(0, HERE)
import first_call  # noqa: E402  pylint: disable=wrong-import-position

BYTES_PER_VALUE = 12  # float32: read the average, read the variable, write the average.
MIN_BANDWIDTH_FLOATS = 64 * 2**20
EMA_DECAY = 0.99
BANDWIDTH_KEY = "bandwidth"
DEFAULT_REFERENCE = os.path.normpath(
    os.path.join(HERE, "..", "..", "shared", "reference", "swa_moving_average.py"))
TF1_CHILD = os.path.join(HERE, "bench_tf1.py")

SETTINGS = {
    # repeats: batches per path; target_s: wall time of one batch; path_budget_s: cap on one
    # path's total timed seconds (the slow eager path gets fewer repeats, never below
    # min_repeats); bandwidth_repeats: start-up runs of the bandwidth kernel.
    "full": dict(repeats=21, target_s=0.3, path_budget_s=10.0, min_repeats=5,
                 bandwidth_repeats=7, all_paths=True),
    "quick": dict(repeats=5, target_s=0.1, path_budget_s=2.5, min_repeats=3,
                  bandwidth_repeats=3, all_paths=False),
}
# The sweep's timing (same meaning as above) and its numbers of variables.
SWEEP_SETTINGS = {
    "full": dict(repeats=5, target_s=0.15, path_budget_s=2.0, min_repeats=3,
                 variables=(10, 30, 100, 300, 1000, 3000, 10000)),
    "quick": dict(repeats=3, target_s=0.1, path_budget_s=1.0, min_repeats=3,
                  variables=(10, 100, 300)),
}
SWEEP_TOTAL_VALUES = 4 * 2**20
SWEEP_TRACE_LIMIT_S = 60.0


# ---------------------------------------------------------------------------------------------
# Machine

def progress(total, description):
  """A progress bar on stderr (tqdm), or a stand-in that prints each step's description where
  tqdm is not installed."""
  try:
    from tqdm import tqdm
  except ImportError:
    return _PrintedProgress()
  return tqdm(total=total, desc=description, file=sys.stderr, unit="step", leave=True,
              bar_format="{desc}: {bar} {n_fmt}/{total_fmt} [{elapsed}<{remaining}] {postfix}")


class _PrintedProgress:
  def set_postfix_str(self, text):
    print(text + " ...", file=sys.stderr, flush=True)

  def update(self, steps=1):
    pass

  def close(self):
    pass


def cpu_model():
  """The CPU model name from /proc/cpuinfo, or platform.processor()."""
  try:
    with open("/proc/cpuinfo") as cpuinfo:
      for line in cpuinfo:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


def usable_cores():
  """Cores this process may run on."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count() or 1


def parse_size(text):
  """'491520K' -> bytes."""
  units = {"K": 2**10, "M": 2**20, "G": 2**30}
  text = text.strip()
  return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


def last_level_cache_bytes():
  """Size of cpu0's highest-level cache from sysfs, or None."""
  base = "/sys/devices/system/cpu/cpu0/cache"
  best_level, best_size = -1, None
  try:
    for index in sorted(os.listdir(base)):
      if not index.startswith("index"):
        continue
      with open(os.path.join(base, index, "level")) as f:
        level = int(f.read())
      with open(os.path.join(base, index, "size")) as f:
        size = parse_size(f.read())
      if level > best_level:
        best_level, best_size = level, size
  except (OSError, ValueError):
    return None
  return best_size


def available_memory_bytes():
  """MemAvailable from /proc/meminfo, or None."""
  try:
    with open("/proc/meminfo") as meminfo:
      for line in meminfo:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return None


def transparent_huge_pages_mode():
  """The kernel's transparent huge page mode ("always", "madvise", "never"), or None."""
  try:
    with open("/sys/kernel/mm/transparent_hugepage/enabled") as modes:
      return re.search(r"\[(\w+)\]", modes.read()).group(1)
  except (OSError, AttributeError):
    return None


def malloc_huge_pages():
  """Whether glibc's malloc asks for transparent huge pages (GLIBC_TUNABLES
  glibc.malloc.hugetlb=1, which benchmarks/run.sh sets): then TF's CPU buffers sit on 2 MiB
  pages, as numpy's large arrays (the floor's) do by themselves."""
  tunables = os.environ.get("GLIBC_TUNABLES", "")
  return any(item.strip() == "glibc.malloc.hugetlb=1" for item in tunables.split(":"))


def machine_info():
  return {
      "nproc": usable_cores(),
      "cpu_model": cpu_model(),
      "last_level_cache_bytes": last_level_cache_bytes(),
      "transparent_huge_pages": transparent_huge_pages_mode(),
      "malloc_huge_pages": malloc_huge_pages(),
      "tensorflow_version": tf.__version__,
      "numpy_version": np.__version__,
      "python_version": platform.python_version(),
      "swa_ops_version": swa_ops.__version__,
  }


def check_synchronous_execution():
  """Wall time per call is only right if ops finish before a call returns."""
  if not tf.config.experimental.get_synchronous_execution():
    raise RuntimeError("TensorFlow is set to asynchronous execution; timings would be wrong")


# ---------------------------------------------------------------------------------------------
# Memory bandwidth

def bandwidth_array_floats():
  """Elements per array: a and b together >= 4x the LLC, each >= 64M floats, and both
  within a third of the available memory."""
  llc = last_level_cache_bytes() or 0
  floats = max(MIN_BANDWIDTH_FLOATS, -(-4 * llc // 8))
  available = available_memory_bytes()
  if available:
    floats = min(floats, max(MIN_BANDWIDTH_FLOATS, available // 3 // 8))
  return int(floats)


class BandwidthKernel:
  """`np.add(a, b, out=a)` over two float32 arrays, one slice per thread; kept allocated so
  that it can be timed beside the workloads. Call `close()` to free the arrays."""

  def __init__(self, num_floats, threads):
    self.num_floats = num_floats
    self.threads = threads
    self._a = np.full(num_floats, 1.0, np.float32)
    self._b = np.full(num_floats, 1e-7, np.float32)
    bounds = np.linspace(0, num_floats, threads + 1).astype(np.int64)
    self._slices = [slice(bounds[i], bounds[i + 1]) for i in range(threads)]
    self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=threads)
    self()  # Page faults, thread start.

  def _add(self, part):
    np.add(self._a[part], self._b[part], out=self._a[part])

  def __call__(self):
    list(self._pool.map(self._add, self._slices))

  def gbps(self, seconds):
    """GB/s of one call that took `seconds`."""
    return BYTES_PER_VALUE * self.num_floats / seconds / 1e9

  def best_gbps(self, repeats):
    return self.gbps(min(time_batch(self, 1) for _ in range(repeats)))

  def close(self):
    self._pool.shutdown()
    del self._a, self._b
    gc.collect()


# ---------------------------------------------------------------------------------------------
# Workloads

def resnet50_shapes():
  path = os.path.join(HERE, "workloads", "resnet50_trainable_shapes.json")
  with open(path) as f:
    return [tuple(shape) for shape in json.load(f)["shapes"]]


WORKLOADS = {
    "W1": ("ResNet-50 trainable variables", resnet50_shapes),
    "W2": ("2000 variables x 1000 floats", lambda: [(1000,)] * 2000),
    "W3": ("1 variable x 64M floats", lambda: [(64 * 2**20,)]),
}


def make_variables(shapes, prefix, seed=0, make=tf.Variable):
  """float32 variables of `shapes` (`make(initial_value, name=...)`: tf.Variable, or a TF1
  constructor), filled with uniform random values, named `<prefix>_<i>`.

  Distinct names, as a model's variables have: the shadows are created by TF's slot_creator,
  which makes each shadow's variable scope unique within the process by counting up through
  the names taken (`Variable/<name>`, `Variable_1/<name>`, ...), so unnamed variables would make
  every shadow's creation linear, and the first call of a path quadratic, in the number of
  variables created so far in the process, earlier workloads and paths included."""
  rng = np.random.default_rng(seed)
  return [make(rng.random(shape, dtype=np.float32), name="%s_%d" % (prefix, index))
          for index, shape in enumerate(shapes)]


# ---------------------------------------------------------------------------------------------
# Paths: each builder returns a zero-argument callable doing one apply().

# All tf.functions are built with autograph=False: apply() has no tensor-dependent Python
# control flow, so the graph is the same, but autograph would convert swa_ops' Python code at
# every trace, which doubles the tracing time (first call) of 2000 variables to ~15-40 s.
def swa_step_function(averager_class, variables, **tf_function_kwargs):
  step = tf.Variable(0, dtype=tf.int64, trainable=False)
  averager = averager_class(step)

  @tf.function(autograph=False, **tf_function_kwargs)
  def apply():
    step.assign_add(1)
    averager.apply(variables)

  return apply


def build_swa_tf_function(variables):
  return swa_step_function(swa_ops.SWAMovingAverage, variables)


def build_swa_xla(variables):
  return swa_step_function(swa_ops.SWAMovingAverage, variables, jit_compile=True)


def build_swa_per_variable_tf_function(variables):
  return swa_step_function(functools.partial(swa_ops.SWAMovingAverage, grouped=False), variables)


def build_reference_tf_function(variables):
  return swa_step_function(reference.SWAMovingAverage, variables)


def build_swa_eager(variables):
  step = tf.Variable(0, dtype=tf.int64, trainable=False)
  averager = swa_ops.SWAMovingAverage(step)

  def apply():
    step.assign_add(1)
    averager.apply(variables)

  return apply


def ema_function(variables, **tf_function_kwargs):
  ema = tf.train.ExponentialMovingAverage(decay=EMA_DECAY)

  @tf.function(autograph=False, **tf_function_kwargs)
  def apply():
    ema.apply(variables)

  return apply


def build_ema_tf_function(variables):
  return ema_function(variables)


def build_ema_xla(variables):
  return ema_function(variables, jit_compile=True)


PATHS = [  # (key, label, builder)
    ("swa_ops_tf_function", "swa_ops tf.function (grouped)", build_swa_tf_function),
    ("swa_ops_per_variable_tf_function", "swa_ops per-variable tf.function",
     build_swa_per_variable_tf_function),
    ("swa_ops_eager", "swa_ops eager", build_swa_eager),
    ("swa_ops_xla", "swa_ops tf.function(jit_compile=True) (plain TF ops)", build_swa_xla),
    ("reference_tf_function", "swa_ops.reference tf.function", build_reference_tf_function),
    ("ema_tf_function", "tf.train.ExponentialMovingAverage tf.function", build_ema_tf_function),
    ("ema_xla", "tf.train.ExponentialMovingAverage tf.function(jit_compile=True)",
     build_ema_xla),
]
# Timed in full runs only, so that the quick run (the README's main command) stays within 5
# minutes on 2 cores: XLA compiles W2's 2000 variables for tens of seconds per path, and in TF1
# graph mode swa_ops on reference variables (bench_tf1.py) costs ~45 s to build at W2.
FULL_RUN_ONLY_PATHS = ("swa_ops_xla", "ema_xla", "swa_ops_tf1_graph_ref_vars")
LABELS = {key: label for key, label, _ in PATHS}
BUILDERS = {key: builder for key, _, builder in PATHS}
SWEEP_PATH_KEYS = ("swa_ops_tf_function", "swa_ops_per_variable_tf_function",
                   "reference_tf_function", "ema_tf_function")
FLOOR_LABEL = "memory floor (12 B/value at measured bandwidth)"


# ---------------------------------------------------------------------------------------------
# Timing

def time_batch(fn, calls):
  """Seconds per call over `calls` back-to-back calls."""
  start = time.perf_counter()
  for _ in range(calls):
    fn()
  return (time.perf_counter() - start) / calls


def tracing_count(fn):
  """How many times tf.function `fn` has traced (None for a plain Python function)."""
  counter = getattr(fn, "experimental_get_tracing_count", None)
  return counter() if counter else None


def plan(fn, settings):
  """Warms `fn` up; returns (calls per batch, repeats, seconds of the first call)."""
  start = time.perf_counter()
  fn()  # Trace (twice: shadows are created at the first trace) / compile, create shadows.
  first_call_s = time.perf_counter() - start
  fn()  # Touch everything once more.
  per_call = time_batch(fn, 1)
  if per_call < settings["target_s"] / 20:  # Too short for one call to be a good estimate.
    per_call = time_batch(fn, max(1, int(settings["target_s"] / 20 / per_call)))
  calls = max(1, int(round(settings["target_s"] / per_call)))
  affordable = int(settings["path_budget_s"] / (calls * per_call))
  repeats = max(settings["min_repeats"], min(settings["repeats"], affordable))
  return calls, repeats, first_call_s


def measure_paths(functions, settings):
  """{key: (samples in seconds per call, calls per batch, first call seconds)}, the repeats
  interleaved across the functions."""
  plans = {key: plan(fn, settings) for key, fn in functions.items()}
  traces = {key: tracing_count(fn) for key, fn in functions.items()}
  samples = {key: [] for key in functions}
  for round_index in range(max(repeats for _, repeats, _ in plans.values())):
    for key, fn in functions.items():
      calls, repeats, _ = plans[key]
      if round_index < repeats:
        samples[key].append(time_batch(fn, calls))
  for key, fn in functions.items():
    if tracing_count(fn) != traces[key]:
      print("warning: %s retraced while timed; its times include tracing" % key,
            file=sys.stderr)
  return {key: (samples[key], plans[key][0], plans[key][2]) for key in functions}


def summarize(samples, calls, first_call_s):
  return {
      "median_ms": statistics.median(samples) * 1e3,
      "min_ms": min(samples) * 1e3,
      "calls_per_repeat": calls,
      "repeats": len(samples),
      "first_call_s": first_call_s,
  }


def run_workload(name, settings, kernel):
  """Builds the variables and paths of workload `name`, times them beside the bandwidth
  kernel, frees them. The floor is added later (`add_floors`), from the run's best bandwidth."""
  description, shapes_fn = WORKLOADS[name]
  shapes = shapes_fn()
  variables = make_variables(shapes, name)
  functions = {key: builder(variables) for key, _, builder in PATHS
               if settings["all_paths"] or key not in FULL_RUN_ONLY_PATHS}
  functions[BANDWIDTH_KEY] = kernel
  measured = measure_paths(functions, settings)
  bandwidth_samples = measured.pop(BANDWIDTH_KEY)[0]
  del functions, variables
  gc.collect()
  return {
      "description": description,
      "num_variables": len(shapes),
      "num_values": int(sum(np.prod(shape, dtype=np.int64) for shape in shapes)),
      "bandwidth_gb_per_s_best_in_rounds": kernel.gbps(min(bandwidth_samples)),
      "bandwidth_gb_per_s_median_in_rounds": kernel.gbps(statistics.median(bandwidth_samples)),
      "paths": {key: summarize(*result) for key, result in measured.items()},
  }


def run_tf1_workload(name, mode, reference_path):
  """bench_tf1.py's paths for workload `name` (a child process): {"paths": {path: summary},
  "bandwidth_gb_per_s_best_in_rounds": the child's own}, or {"skipped": reason}."""
  if not os.path.isfile(reference_path):
    return {"skipped": "the original reference %s is not there" % reference_path}
  started = time.perf_counter()
  proc = subprocess.run([sys.executable, TF1_CHILD, name, mode, reference_path],
                        capture_output=True, text=True)
  lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
  if proc.returncode != 0 or not lines:
    raise RuntimeError("%s %s failed (rc %d):\n%s" % (TF1_CHILD, name, proc.returncode,
                                                     proc.stderr[-4000:]))
  result = json.loads(lines[-1][len("RESULT "):])
  result.update(reference=reference_path, seconds=time.perf_counter() - started)
  return result


def floor_ms(num_values, bandwidth_gbps):
  return BYTES_PER_VALUE * num_values / (bandwidth_gbps * 1e9) * 1e3


def add_path_floors(result, bandwidth_gbps):
  """Adds `result`'s floor and each measured path's ratio to it."""
  result["floor_ms"] = floor_ms(result["num_values"], bandwidth_gbps)
  for path in result["paths"].values():
    if "median_ms" in path:
      path["ratio_to_floor"] = path["median_ms"] / result["floor_ms"]


def add_floors(workloads, bandwidth_gbps):
  """Adds each workload's floor, each path's ratio to it, and the swa_ops speedups (grouped and
  per-variable) over the reference."""
  for result in workloads.values():
    add_path_floors(result, bandwidth_gbps)
    median_floor_ms = floor_ms(result["num_values"], result["bandwidth_gb_per_s_median_in_rounds"])
    result["floor_ms_at_median_bandwidth_in_rounds"] = median_floor_ms
    for path in result["paths"].values():
      path["ratio_to_floor_at_median_bandwidth"] = path["median_ms"] / median_floor_ms
    paths = result["paths"]
    reference_ms = paths["reference_tf_function"]["median_ms"]
    result["speedup_swa_ops_vs_reference_tf_function"] = (
        reference_ms / paths["swa_ops_tf_function"]["median_ms"])
    result["speedup_swa_ops_per_variable_vs_reference_tf_function"] = (
        reference_ms / paths["swa_ops_per_variable_tf_function"]["median_ms"])
    tf1 = result.get("tf1", {})
    if "paths" in tf1:
      tf1["floor_ms"] = floor_ms(result["num_values"], tf1["bandwidth_gb_per_s_best_in_rounds"])
      for path in tf1["paths"].values():
        path["ratio_to_floor"] = path["median_ms"] / tf1["floor_ms"]
      original_ms = tf1["paths"]["reference_tf1_graph"]["median_ms"]
      for key in ("swa_ops_tf1_graph", "swa_ops_tf1_graph_ref_vars"):
        if key not in tf1["paths"]:
          continue
        tf1["speedup_%s_vs_reference_tf1_graph" % key] = (
            original_ms / tf1["paths"][key]["median_ms"])


# ---------------------------------------------------------------------------------------------
# Sweep: ms per update against the number of variables, at a fixed total size

def log_log_slope(point_a, point_b):
  (n_a, t_a), (n_b, t_b) = point_a, point_b
  return math.log(t_b / t_a) / math.log(n_b / n_a)


def predict_first_call_s(history, num_variables):
  """The first-call seconds of a path at `num_variables`, extrapolated on log-log axes from its
  measured [(num_variables, seconds), ...]: the slope of the last step plus the last increase
  in slope (the growth steepens as TF's superlinear costs take over), at least 1 (linear);
  None without history."""
  if not history:
    return None
  recent = history[-3:]
  slopes = [log_log_slope(a, b) for a, b in zip(recent, recent[1:])]
  slope = slopes[-1] + max(0.0, slopes[-1] - slopes[0]) if slopes else 1.0
  n_last, t_last = history[-1]
  return t_last * (num_variables / n_last) ** max(1.0, slope)


def skipped_path(predicted_s, limit_s):
  return {
      "skipped": True,
      "predicted_first_call_s": predicted_s,
      "reason": "predicted first call (tracing) %.1f s > limit %g s" % (predicted_s, limit_s),
  }


def run_sweep_point(num_variables, total_values, settings, history, limit_s):
  """Times the sweep paths on `num_variables` equal variables, skipping those whose predicted
  first call exceeds `limit_s`; appends each measured first call to `history[key]`."""
  values_each = total_values // num_variables
  paths = {}
  for key in SWEEP_PATH_KEYS:
    predicted = predict_first_call_s(history[key], num_variables)
    if predicted is not None and predicted > limit_s:
      paths[key] = skipped_path(predicted, limit_s)
  to_run = [key for key in SWEEP_PATH_KEYS if key not in paths]
  if to_run:
    variables = make_variables([(values_each,)] * num_variables, "sweep%d" % num_variables)
    functions = {key: BUILDERS[key](variables) for key in to_run}
    for key, result in measure_paths(functions, settings).items():
      paths[key] = summarize(*result)
      history[key].append((num_variables, paths[key]["first_call_s"]))
    del functions, variables
    gc.collect()
  return {
      "num_variables": num_variables,
      "values_per_variable": values_each,
      "num_values": values_each * num_variables,
      "paths": {key: paths[key] for key in SWEEP_PATH_KEYS},
  }


def run_sweep(variable_counts, total_values, settings, limit_s):
  """The sweep's points, in increasing number of variables (floors added later)."""
  history = {key: [] for key in SWEEP_PATH_KEYS}
  points = []
  counts = sorted(set(variable_counts))
  bar = progress(len(counts), "sweep")
  for num_variables in counts:
    bar.set_postfix_str("%d variables" % num_variables)
    points.append(run_sweep_point(num_variables, total_values, settings, history, limit_s))
    bar.update()
  bar.close()
  return points


def add_sweep_floors(sweep, bandwidth_gbps):
  sweep["floor_ms"] = floor_ms(sweep["total_values"], bandwidth_gbps)
  for point in sweep["points"]:
    add_path_floors(point, bandwidth_gbps)


# ---------------------------------------------------------------------------------------------
# Output

def format_results_table(workloads):
  lines = ["| workload | path | median ms | min ms | x floor | x median floor |",
           "|---|---|---:|---:|---:|---:|"]
  for name, result in workloads.items():
    where = "%s: %s" % (name, result["description"])
    for key, label, _ in PATHS:
      if key not in result["paths"]:
        continue
      path = result["paths"][key]
      lines.append("| %s | %s | %.3f | %.3f | %.2f | %.2f |" % (
          where, label, path["median_ms"], path["min_ms"], path["ratio_to_floor"],
          path["ratio_to_floor_at_median_bandwidth"]))
    lines.append("| %s | %s | %.3f | | 1.00 | %.2f |" % (
        where, FLOOR_LABEL, result["floor_ms"],
        result["floor_ms"] / result["floor_ms_at_median_bandwidth_in_rounds"]))
  return "\n".join(lines)


def format_speedup_table(workloads):
  lines = ["| workload | variables | float32 values | swa_ops grouped vs reference | "
           "swa_ops per-variable vs reference |", "|---|---:|---:|---:|---:|"]
  for name, result in workloads.items():
    lines.append("| %s | %d | %d | %.2fx | %.2fx |" % (
        name, result["num_variables"], result["num_values"],
        result["speedup_swa_ops_vs_reference_tf_function"],
        result["speedup_swa_ops_per_variable_vs_reference_tf_function"]))
  return "\n".join(lines)


def format_tf1_table(workloads):
  """The TF1 graph paths' table, or None if no workload has them; a skipped one says why."""
  if not any("tf1" in result for result in workloads.values()):
    return None
  lines = ["| workload | original reference | swa_ops, reference variables | swa_ops grouped "
           "(resource) | grouped x floor | grouped speedup | reference-variable speedup |",
           "|---|---:|---:|---:|---:|---:|---:|"]
  for name, result in workloads.items():
    tf1 = result.get("tf1")
    if tf1 is None:
      continue
    if "paths" not in tf1:
      lines.append("| %s | skipped: %s | | | | | |" % (name, tf1["skipped"]))
      continue
    paths = tf1["paths"]
    ref_vars = paths.get("swa_ops_tf1_graph_ref_vars")
    lines.append("| %s | %.2f | %s | %.2f | %.2f | %.1fx | %s |" % (
        name, paths["reference_tf1_graph"]["median_ms"],
        "%.2f" % ref_vars["median_ms"] if ref_vars else "full run only",
        paths["swa_ops_tf1_graph"]["median_ms"], paths["swa_ops_tf1_graph"]["ratio_to_floor"],
        tf1["speedup_swa_ops_tf1_graph_vs_reference_tf1_graph"],
        "%.1fx" % tf1["speedup_swa_ops_tf1_graph_ref_vars_vs_reference_tf1_graph"]
        if ref_vars else "-"))
  return "\n".join(lines)


def format_sweep_table(sweep, measured_cell, skipped_cell, floor_cell=None):
  """One row per point, one column per sweep path, then the floor if `floor_cell`."""
  header = [LABELS[key] for key in SWEEP_PATH_KEYS] + ([FLOOR_LABEL] if floor_cell else [])
  lines = ["| variables | floats each | %s |" % " | ".join(header),
           "|---:|---:|" + "---:|" * len(header)]
  for point in sweep["points"]:
    cells = [skipped_cell(path) if path.get("skipped") else measured_cell(path)
             for path in (point["paths"][key] for key in SWEEP_PATH_KEYS)]
    if floor_cell:
      cells.append(floor_cell(point))
    lines.append("| %d | %d | %s |" % (point["num_variables"], point["values_per_variable"],
                                       " | ".join(cells)))
  return "\n".join(lines)


def cache_note(sweep):
  """A warning when a point's data (averages and variables) fits in the last-level cache,
  where the DRAM floor is no lower bound; or None."""
  llc = sweep["last_level_cache_bytes"]
  data = 2 * 4 * sweep["total_values"]
  if not llc or data >= llc:
    return None
  return ("Note: a point's averages and variables (%d MiB) fit in the last-level cache (%d MiB "
          "per sysfs), so the floor (DRAM bandwidth) is no strict lower bound here: x floor < 1 "
          "is possible." % (data // 2**20, llc // 2**20))


def format_sweep(sweep):
  """The sweep's tables: median ms per update, and the first call's seconds."""
  title = ("Sweep: %d float32 values in total, split equally; %s run (median over %s repeats)"
           % (sweep["total_values"], sweep["mode"], sweep["settings"]["repeats"]))
  ms = format_sweep_table(
      sweep, lambda path: "%.3f (x%.1f)" % (path["median_ms"], path["ratio_to_floor"]),
      lambda path: "skipped", lambda point: "%.3f" % point["floor_ms"])
  first_call = format_sweep_table(
      sweep, lambda path: "%.2f" % path["first_call_s"],
      lambda path: "skipped (predicted %.1f)" % path["predicted_first_call_s"])
  skipped = ["- %s at %d variables: not run, %s" % (LABELS[key], point["num_variables"],
                                                    point["paths"][key]["reason"])
             for point in sweep["points"] for key in SWEEP_PATH_KEYS
             if point["paths"][key].get("skipped")]
  parts = [title, "", "ms per update (x floor = median / floor):", "", ms, ""]
  if cache_note(sweep):
    parts += [cache_note(sweep), ""]
  parts += ["First call (tracing, shadow creation, first run) in seconds; a path is not run "
            "where this is predicted above %g s:" % sweep["trace_limit_s"], "", first_call]
  if skipped:
    parts += ["", "Skipped:"] + skipped
  return "\n".join(parts)


def plot_sweep(sweep, path):
  """Writes the sweep's log-log plot to `path`; returns None, or why it was not written."""
  try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
  except ImportError:
    return "matplotlib is not installed"
  figure, axes = plt.subplots(figsize=(9, 8))
  for key in SWEEP_PATH_KEYS:
    measured = [(point["num_variables"], point["paths"][key]["median_ms"])
                for point in sweep["points"] if not point["paths"][key].get("skipped")]
    skipped = [str(point["num_variables"]) for point in sweep["points"]
               if point["paths"][key].get("skipped")]
    label = LABELS[key]
    if skipped:
      label += " (not run at %s variables: predicted first call > %g s)" % (
          ", ".join(skipped), sweep["trace_limit_s"])
    if measured:
      axes.plot(*zip(*measured), marker="o", label=label)
  axes.axhline(sweep["floor_ms"], color="black", linestyle="--",
               label="memory floor: %.2f ms (12 B/value at %.1f GB/s)" % (
                   sweep["floor_ms"], sweep["bandwidth_gb_per_s"]))
  axes.set_xscale("log")
  axes.set_yscale("log")
  axes.set_xlim(min(p["num_variables"] for p in sweep["points"]) / 1.5,
                max(p["num_variables"] for p in sweep["points"]) * 1.5)
  axes.set_xlabel("number of float32 variables (%d values in total, split equally)"
                  % sweep["total_values"])
  axes.set_ylabel("ms per update (median)")
  axes.set_title("SWA/EMA update time vs number of variables (%s run)" % sweep["mode"])
  plain = matplotlib.ticker.FuncFormatter(lambda value, _: "%g" % value)
  for axis in (axes.xaxis, axes.yaxis):
    axis.set_major_formatter(plain)
  axes.yaxis.set_minor_formatter(plain)
  axes.tick_params(axis="y", which="minor", labelsize="x-small")
  axes.grid(True, which="both", alpha=0.3)
  axes.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.12))
  figure.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  figure.savefig(path, dpi=120)
  plt.close(figure)
  return None


def format_bandwidth(bandwidth):
  per_workload = ", ".join("%s %.1f" % item for item in bandwidth["best_in_rounds"].items())
  return ("Memory bandwidth: %.2f GB/s (np.add(a, b, out=a), 2 x %dM float32, %d threads; best "
          "of start-up %.1f%s)" % (
              bandwidth["gb_per_s"], bandwidth["array_floats"] // 2**20, bandwidth["threads"],
              bandwidth["start_up_gb_per_s"],
              ", rounds " + per_workload if per_workload else ""))


def write_json(path, report):
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  with open(path, "w") as f:
    json.dump(report, f, indent=2)
    f.write("\n")


# ---------------------------------------------------------------------------------------------

def parse_counts(text):
  return tuple(int(item) for item in text.split(",") if item.strip())


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help="fewer repeats (same workload sizes; sweep at %s variables)"
                      % ",".join(map(str, SWEEP_SETTINGS["quick"]["variables"])))
  parser.add_argument("--json", default=os.path.join(HERE, "results", "latest.json"),
                      help="where to write the results (default: %(default)s)")
  parser.add_argument("--workloads", default=",".join(WORKLOADS),
                      help="comma-separated subset of %s" % ",".join(WORKLOADS))
  part = parser.add_mutually_exclusive_group()
  part.add_argument("--sweep", action="store_true", help="run the sweep only (no workloads)")
  part.add_argument("--no-sweep", action="store_true", help="run the workloads only")
  parser.add_argument("--first-call", type=parse_counts, nargs="?", const=(1000, 3000, 10000),
                      default=None, metavar="1000,3000,10000",
                      help="also the first-call sweep (benchmarks/first_call.py: swa_ops eager "
                      "and tf.function, tf.train.ExponentialMovingAverage, Keras use_ema; one "
                      "process per point; growth exponents, targets, plot first_call.png "
                      "beside --plot); paths predicted above --sweep-trace-limit are skipped")
  parser.add_argument("--keras-ema", action="store_true",
                      help="also a Keras fit() step with the optimizer's use_ema=True against "
                      "swa_ops.keras.EMA (benchmarks/keras_ema_bench.py: 200 Dense layers, "
                      "interleaved, about 1-2 minutes)")
  parser.add_argument("--tf-ema", action="store_true",
                      help="also time swa_ops.ExponentialMovingAverage against "
                      "tf.train.ExponentialMovingAverage in tf.function over the workloads "
                      "(benchmarks/tf_ema_bench.py)")
  parser.add_argument("--sweep-variables", type=parse_counts, default=None,
                      help="comma-separated numbers of variables (default: %s; quick: %s)" % (
                          ",".join(map(str, SWEEP_SETTINGS["full"]["variables"])),
                          ",".join(map(str, SWEEP_SETTINGS["quick"]["variables"]))))
  parser.add_argument("--sweep-values", type=int, default=SWEEP_TOTAL_VALUES,
                      help="float32 values in total per sweep point (default: %(default)s)")
  parser.add_argument("--sweep-trace-limit", type=float, default=SWEEP_TRACE_LIMIT_S,
                      help="skip a sweep path at a point where its first call is predicted to "
                      "take longer, in seconds (default: %(default)s)")
  parser.add_argument("--plot", default=os.path.join(HERE, "results", "sweep.png"),
                      help="where to write the sweep plot (default: %(default)s)")
  parser.add_argument("--reference", default=DEFAULT_REFERENCE,
                      help="the original reference, for the TF1 graph paths (default: "
                      "%(default)s)")
  parser.add_argument("--no-tf1", action="store_true",
                      help="leave out the TF1 graph paths against the original reference")
  args = parser.parse_args(argv)
  args.workloads = [] if args.sweep else [
      w.strip() for w in args.workloads.split(",") if w.strip()]
  unknown = [w for w in args.workloads if w not in WORKLOADS]
  if unknown:
    parser.error("unknown workloads %s (choose from %s)" % (unknown, ", ".join(WORKLOADS)))
  if args.sweep_variables is not None and (
      not args.sweep_variables or min(args.sweep_variables) < 1 or
      max(args.sweep_variables) > args.sweep_values):
    parser.error("--sweep-variables must be between 1 and --sweep-values")
  return args


def run_all(names, mode, machine, tf1_reference):
  """Times the workloads `names` (possibly none), and their TF1 graph paths against the original
  reference at `tf1_reference` unless None; returns (workloads, bandwidth) with floors added."""
  settings = SETTINGS[mode]
  kernel = BandwidthKernel(bandwidth_array_floats(), machine["nproc"])
  start_up_gbps = kernel.best_gbps(settings["bandwidth_repeats"])
  workloads = {}
  bar = progress(len(names) * (1 if tf1_reference is None else 2), "workloads")
  for name in names:
    bar.set_postfix_str("%s: building, warming up and timing" % name)
    workloads[name] = run_workload(name, settings, kernel)
    bar.update()
    if tf1_reference is not None:
      bar.set_postfix_str("%s: TF1 graph paths (child process)" % name)
      workloads[name]["tf1"] = run_tf1_workload(name, mode, tf1_reference)
      bar.update()
  bar.close()
  kernel.close()
  best_in_rounds = {name: result.pop("bandwidth_gb_per_s_best_in_rounds")
                    for name, result in workloads.items()}
  bandwidth = {
      "gb_per_s": max([start_up_gbps] + list(best_in_rounds.values())),
      "start_up_gb_per_s": start_up_gbps,
      "best_in_rounds": best_in_rounds,
      "array_floats": kernel.num_floats,
      "threads": kernel.threads,
      "bytes_per_element": BYTES_PER_VALUE,
  }
  add_floors(workloads, bandwidth["gb_per_s"])
  return workloads, bandwidth


def sweep_report(args, mode, bandwidth_gbps):
  """Runs the sweep as `args` say; returns its JSON record, floors added."""
  settings = {key: value for key, value in SWEEP_SETTINGS[mode].items() if key != "variables"}
  variable_counts = args.sweep_variables or SWEEP_SETTINGS[mode]["variables"]
  sweep = {
      "mode": mode,
      "settings": settings,
      "total_values": args.sweep_values,
      "trace_limit_s": args.sweep_trace_limit,
      "last_level_cache_bytes": last_level_cache_bytes(),
      "bandwidth_gb_per_s": bandwidth_gbps,
      "points": run_sweep(variable_counts, args.sweep_values, settings, args.sweep_trace_limit),
  }
  add_sweep_floors(sweep, bandwidth_gbps)
  return sweep


def print_workloads(mode, workloads):
  print("ms per apply() (%s run; median and min over repeats; x floor = median / floor; x median "
        "floor = median / the floor at the median bandwidth of the workload's own rounds, where "
        "the bandwidth kernel took turns with the paths)" % mode)
  print()
  print(format_results_table(workloads))
  print()
  print("Speedup: reference tf.function median / swa_ops tf.function median")
  print()
  print(format_speedup_table(workloads))
  print()
  tf1_table = format_tf1_table(workloads)
  if tf1_table:
    print("TF1 graph mode (Session.run), against the original reference; timed in a child "
          "process after the workload's other paths, with its own bandwidth rounds (ms per "
          "update, median over repeats; x floor = median / the floor at the child's best "
          "bandwidth; speedup = original reference median / swa_ops median)")
    print()
    print(tf1_table)
    print()


def print_sweep(sweep, plot_path):
  """Prints the sweep's tables, writes its plot; records the plot's path or why it is
  missing."""
  print(format_sweep(sweep))
  print()
  skipped_because = plot_sweep(sweep, plot_path)
  if skipped_because:
    sweep["plot"], sweep["plot_skipped"] = None, skipped_because
    print("Sweep plot skipped: %s" % skipped_because)
  else:
    sweep["plot"] = plot_path
    print("Sweep plot written to %s" % plot_path)
  print()


def main(argv=None):
  args = parse_args(argv)
  mode = "quick" if args.quick else "full"
  settings = SETTINGS[mode]
  check_synchronous_execution()
  tf.get_logger().setLevel("ERROR")  # Each path's tf.function is new: no retracing warnings.
  started = time.perf_counter()

  machine = machine_info()
  workloads, bandwidth = run_all(args.workloads, mode, machine,
                                 None if args.no_tf1 else args.reference)
  workloads_done = time.perf_counter()
  sweep = None if args.no_sweep else sweep_report(args, mode, bandwidth["gb_per_s"])
  elapsed = time.perf_counter() - started
  sweep_seconds = time.perf_counter() - workloads_done

  print("Machine: %d cores, %s, TensorFlow %s" % (
      machine["nproc"], machine["cpu_model"], machine["tensorflow_version"]))
  print("Transparent huge pages: %s; TF's buffers on them (glibc.malloc.hugetlb=1): %s" % (
      machine["transparent_huge_pages"], "yes" if machine["malloc_huge_pages"] else "no"))
  print(format_bandwidth(bandwidth))
  print()
  if workloads:
    print_workloads(mode, workloads)
  if sweep:
    print_sweep(sweep, args.plot)
  if args.first_call:
    first_calls = first_call.run(args.first_call, args.sweep_trace_limit)
    print(first_call.format_report(first_calls))
    plot_path = os.path.join(os.path.dirname(os.path.abspath(args.plot)), "first_call.png")
    why_not = first_call.plot(first_calls, plot_path)
    print("First-call plot: %s" % (why_not or plot_path))
    print()
  keras_ema = None
  if args.keras_ema:
    import keras_ema_bench  # pylint: disable=import-outside-toplevel (imports Keras)
    keras_ema = keras_ema_bench.run()
    print(keras_ema_bench.format_report(keras_ema))
    print()
  tf_ema = None
  if args.tf_ema:
    import tf_ema_bench  # pylint: disable=import-outside-toplevel
    tf_ema = tf_ema_bench.run(mode, args.workloads or list(WORKLOADS), xla=mode == "full")
    print(tf_ema_bench.format_report(tf_ema))
    print()
  print("Total time: %.0f s (start-up and workloads %.0f s, sweep %.0f s)" % (
      elapsed, elapsed - sweep_seconds, sweep_seconds))

  report = {
      "mode": mode,
      "settings": settings,
      "machine": machine,
      "bandwidth": bandwidth,
      "workloads": workloads,
      "total_seconds": elapsed,
  }
  if sweep:
    sweep["seconds"] = sweep_seconds
    report["sweep"] = sweep
  if args.first_call:
    report["first_call"] = first_calls
  if keras_ema is not None:
    report["keras_ema"] = keras_ema
  if tf_ema is not None:
    report["tf_ema"] = tf_ema
  write_json(args.json, report)
  print_summary(mode, workloads, sweep, args.json)


def format_summary_table(workloads):
  """One row per workload: swa_ops grouped in tf.function against the floor and the reference
  (TF2 port), and in a TF1 session against the original reference where that ran."""
  lines = ["| workload | swa_ops grouped tf.function ms | x floor | reference tf.function ms | "
           "speedup | TF1: swa_ops grouped ms | TF1: original reference ms | TF1 speedup |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
  for name, result in workloads.items():
    swa = result["paths"]["swa_ops_tf_function"]
    cells = ["%.2f" % swa["median_ms"], "%.2f" % swa["ratio_to_floor"],
             "%.2f" % result["paths"]["reference_tf_function"]["median_ms"],
             "%.1fx" % result["speedup_swa_ops_vs_reference_tf_function"]]
    tf1 = result.get("tf1") or {}
    if "paths" in tf1:
      cells += ["%.2f" % tf1["paths"]["swa_ops_tf1_graph"]["median_ms"],
                "%.2f" % tf1["paths"]["reference_tf1_graph"]["median_ms"],
                "%.1fx" % tf1["speedup_swa_ops_tf1_graph_vs_reference_tf1_graph"]]
    else:
      cells += ["-", "-", "-"]
    lines.append("| %s | %s |" % (name, " | ".join(cells)))
  return "\n".join(lines)


def print_summary(mode, workloads, sweep, json_path):
  print("Summary (%s run; ms per update, medians; the tables above have every path)" % mode)
  print()
  if workloads:
    print(format_summary_table(workloads))
    print()
  if sweep:
    print("Sweep plot: %s" % (sweep.get("plot") or "not written (%s)" % sweep.get("plot_skipped")))
  print("Results (JSON): %s" % json_path)


if __name__ == "__main__":
  main()
