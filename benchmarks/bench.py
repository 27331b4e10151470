"""Milliseconds per `apply()` of swa_ops and its alternatives, measured side by side.

Usage:
  python benchmarks/bench.py [--quick] [--json PATH] [--workloads W1,W2,W3]

What it measures, in one process, for each workload (a list of float32 tf.Variables filled
with random values):

  swa_ops tf.function    `swa_ops.SWAMovingAverage(step).apply(vars)` inside a tf.function that
                         also increments `step` (an int64 tf.Variable); shadows are created at
                         the first trace.
  swa_ops eager          the same two lines called eagerly from a Python loop.
  reference tf.function  `swa_ops.reference.SWAMovingAverage` (the same math in plain TF ops),
                         as in the first row.
  EMA tf.function        `tf.train.ExponentialMovingAverage(decay=0.99).apply(vars)` in a
                         tf.function.
  EMA XLA                the same with `tf.function(jit_compile=True)`.
  memory floor           12 bytes per float32 value (read the average, read the variable,
                         write the average) / the memory bandwidth measured below.

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
best of all of these, so the floor is a lower bound for the whole run.

Results are printed as markdown tables and written as JSON (default
benchmarks/results/latest.json) with machine information.
"""
import argparse
import concurrent.futures
import gc
import json
import os
import platform
import statistics
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

BYTES_PER_VALUE = 12  # float32: read the average, read the variable, write the average.
MIN_BANDWIDTH_FLOATS = 64 * 2**20
EMA_DECAY = 0.99
BANDWIDTH_KEY = "bandwidth"

SETTINGS = {
    # repeats: batches per path; target_s: wall time of one batch; path_budget_s: cap on one
    # path's total timed seconds (the slow eager path gets fewer repeats, never below
    # min_repeats); bandwidth_repeats: start-up runs of the bandwidth kernel.
    "full": dict(repeats=21, target_s=0.3, path_budget_s=10.0, min_repeats=5,
                 bandwidth_repeats=7),
    "quick": dict(repeats=5, target_s=0.1, path_budget_s=2.5, min_repeats=3,
                  bandwidth_repeats=3),
}


# ---------------------------------------------------------------------------------------------
# Machine

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


def machine_info():
  return {
      "nproc": usable_cores(),
      "cpu_model": cpu_model(),
      "last_level_cache_bytes": last_level_cache_bytes(),
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


def make_variables(shapes, seed=0):
  """float32 tf.Variables of `shapes`, filled with uniform random values."""
  rng = np.random.default_rng(seed)
  return [tf.Variable(rng.random(shape, dtype=np.float32)) for shape in shapes]


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
    ("swa_ops_tf_function", "swa_ops tf.function", build_swa_tf_function),
    ("swa_ops_eager", "swa_ops eager", build_swa_eager),
    ("reference_tf_function", "swa_ops.reference tf.function", build_reference_tf_function),
    ("ema_tf_function", "tf.train.ExponentialMovingAverage tf.function", build_ema_tf_function),
    ("ema_xla", "tf.train.ExponentialMovingAverage tf.function(jit_compile=True)",
     build_ema_xla),
]
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
  variables = make_variables(shapes)
  functions = {key: builder(variables) for key, _, builder in PATHS}
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
      "paths": {key: summarize(*result) for key, result in measured.items()},
  }


def add_floors(workloads, bandwidth_gbps):
  """Adds each workload's floor, each path's ratio to it, and the swa_ops speedup."""
  for result in workloads.values():
    result["floor_ms"] = BYTES_PER_VALUE * result["num_values"] / (bandwidth_gbps * 1e9) * 1e3
    paths = result["paths"]
    for path in paths.values():
      path["ratio_to_floor"] = path["median_ms"] / result["floor_ms"]
    result["speedup_swa_ops_vs_reference_tf_function"] = (
        paths["reference_tf_function"]["median_ms"] / paths["swa_ops_tf_function"]["median_ms"])


# ---------------------------------------------------------------------------------------------
# Output

def format_results_table(workloads):
  lines = ["| workload | path | median ms | min ms | x floor |",
           "|---|---|---:|---:|---:|"]
  for name, result in workloads.items():
    where = "%s: %s" % (name, result["description"])
    for key, label, _ in PATHS:
      path = result["paths"][key]
      lines.append("| %s | %s | %.3f | %.3f | %.2f |" % (
          where, label, path["median_ms"], path["min_ms"], path["ratio_to_floor"]))
    lines.append("| %s | %s | %.3f | | 1.00 |" % (where, FLOOR_LABEL, result["floor_ms"]))
  return "\n".join(lines)


def format_speedup_table(workloads):
  lines = ["| workload | variables | float32 values | swa_ops vs reference (tf.function, "
           "median) |", "|---|---:|---:|---:|"]
  for name, result in workloads.items():
    lines.append("| %s | %d | %d | %.2fx |" % (
        name, result["num_variables"], result["num_values"],
        result["speedup_swa_ops_vs_reference_tf_function"]))
  return "\n".join(lines)


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

def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="fewer repeats (same sizes)")
  parser.add_argument("--json", default=os.path.join(HERE, "results", "latest.json"),
                      help="where to write the results (default: %(default)s)")
  parser.add_argument("--workloads", default=",".join(WORKLOADS),
                      help="comma-separated subset of %s" % ",".join(WORKLOADS))
  args = parser.parse_args(argv)
  args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
  unknown = [w for w in args.workloads if w not in WORKLOADS]
  if unknown:
    parser.error("unknown workloads %s (choose from %s)" % (unknown, ", ".join(WORKLOADS)))
  return args


def run_all(names, settings, machine):
  """Times the workloads `names`; returns (workloads, bandwidth) with floors added."""
  kernel = BandwidthKernel(bandwidth_array_floats(), machine["nproc"])
  start_up_gbps = kernel.best_gbps(settings["bandwidth_repeats"])
  workloads = {}
  for name in names:
    print("%s: building, warming up and timing ..." % name, file=sys.stderr, flush=True)
    workloads[name] = run_workload(name, settings, kernel)
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


def main(argv=None):
  args = parse_args(argv)
  mode = "quick" if args.quick else "full"
  settings = SETTINGS[mode]
  check_synchronous_execution()
  tf.get_logger().setLevel("ERROR")  # Each path's tf.function is new: no retracing warnings.
  started = time.perf_counter()

  machine = machine_info()
  workloads, bandwidth = run_all(args.workloads, settings, machine)
  elapsed = time.perf_counter() - started

  print("Machine: %d cores, %s, TensorFlow %s" % (
      machine["nproc"], machine["cpu_model"], machine["tensorflow_version"]))
  print(format_bandwidth(bandwidth))
  print()
  print("ms per apply() (%s run; median and min over repeats; x floor = median / floor)" % mode)
  print()
  print(format_results_table(workloads))
  print()
  print(format_speedup_table(workloads))
  print()
  print("Total time: %.0f s" % elapsed)

  write_json(args.json, {
      "mode": mode,
      "settings": settings,
      "machine": machine,
      "bandwidth": bandwidth,
      "workloads": workloads,
      "total_seconds": elapsed,
  })
  print("Results written to %s" % args.json)


if __name__ == "__main__":
  main()
