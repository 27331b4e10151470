"""swa_ops.kernels on the CPU against a NumPy loop and the memory floor, side by side in one run.

Usage:
  python benchmarks/kernels_bench.py [--quick] [--workloads W1,W2,W3] [--json PATH]

Needs NumPy and swa_ops.kernels only (no TensorFlow: bench.py imports it, so its bandwidth
kernel is rewritten here the same way).

Workloads (float32 averages and values, as in bench.py): W1 the ResNet-50 trainable shapes
(214 arrays, 25.6M values), W2 2000 arrays x 1000 values, W3 one array of 64M values.

Paths, timed in interleaved rounds (round robin: each path's batch of calls, then again; the
slow drifts of a shared machine hit all alike), reported as the median over rounds of seconds
per call:
  kernels       `swa_ops.kernels.swa_assign(averages, values, step)`, step counting up: one
                parallel pass over all arrays (OpenMP, every core), the GIL released.
  numpy loop    `for a, v in zip(averages, values): a -= (a - v) * w`, w = 1 / (step + 1): the
                plain NumPy way, one array at a time (each ufunc single-threaded).
  bandwidth     `np.add(a, b, out=a)` over two float32 arrays of >= 64M values (and together
                >= 4x the last-level cache), one slice per core, each in its own Python thread
                (ufuncs release the GIL): 12 bytes per value, the update's access pattern.
The memory floor of a workload is 12 bytes per value / bandwidth. "x floor" is the median over
the floor at the best bandwidth of the whole run (a strict lower bound); "x median floor"
divides by the floor at the median bandwidth of the workload's own rounds (like for like on a
machine whose bandwidth drifts).
"""
import argparse
import concurrent.futures
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
from swa_ops import kernels  # noqa: E402

BYTES_PER_VALUE = 12
MIN_BANDWIDTH_FLOATS = 64 * 2**20
SETTINGS = {
    "full": dict(repeats=15, target_s=0.3),
    "quick": dict(repeats=5, target_s=0.1),
}


def resnet50_shapes():
  with open(os.path.join(HERE, "workloads", "resnet50_trainable_shapes.json")) as f:
    return [tuple(shape) for shape in json.load(f)["shapes"]]


WORKLOADS = {
    "W1": ("ResNet-50 trainable variables", resnet50_shapes),
    "W2": ("2000 variables x 1000 floats", lambda: [(1000,)] * 2000),
    "W3": ("1 variable x 64M floats", lambda: [(64 * 2**20,)]),
}


def usable_cores():
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count() or 1


def last_level_cache_bytes():
  base = "/sys/devices/system/cpu/cpu0/cache"
  best = (-1, 0)
  try:
    for index in os.listdir(base):
      if index.startswith("index"):
        with open(os.path.join(base, index, "level")) as f:
          level = int(f.read())
        with open(os.path.join(base, index, "size")) as f:
          text = f.read().strip()
        size = int(text[:-1]) * {"K": 2**10, "M": 2**20}.get(text[-1], 1) \
            if text[-1] in "KM" else int(text)
        best = max(best, (level, size))
  except (OSError, ValueError):
    pass
  return best[1]


def cpu_model():
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


class BandwidthKernel:
  """np.add(a, b, out=a) over float32 arrays, one slice per thread."""

  def __init__(self, threads):
    self.floats = max(MIN_BANDWIDTH_FLOATS, -(-4 * last_level_cache_bytes() // 8))
    self._a = np.full(self.floats, 1.0, np.float32)
    self._b = np.full(self.floats, 1e-7, np.float32)
    bounds = np.linspace(0, self.floats, threads + 1).astype(np.int64)
    self._slices = [slice(bounds[i], bounds[i + 1]) for i in range(threads)]
    self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=threads)
    self()

  def _add(self, part):
    np.add(self._a[part], self._b[part], out=self._a[part])

  def __call__(self):
    list(self._pool.map(self._add, self._slices))

  def gbps(self, seconds):
    return BYTES_PER_VALUE * self.floats / seconds / 1e9

  def close(self):
    self._pool.shutdown()


def time_batch(fn, calls):
  start = time.perf_counter()
  for _ in range(calls):
    fn()
  return (time.perf_counter() - start) / calls


def calls_for(fn, target_s):
  fn()
  per_call = time_batch(fn, 1)
  if per_call < target_s / 20:
    per_call = time_batch(fn, max(1, int(target_s / 20 / per_call)))
  return max(1, int(round(target_s / per_call)))


def make_paths(shapes):
  rng = np.random.default_rng(0)
  kernel_averages = [rng.random(s, dtype=np.float32) for s in shapes]
  numpy_averages = [a.copy() for a in kernel_averages]
  values = [rng.random(s, dtype=np.float32) for s in shapes]
  steps = {"kernels": 0, "numpy": 0}

  def kernels_path():
    kernels.swa_assign(kernel_averages, values, steps["kernels"])
    steps["kernels"] += 1

  def numpy_path():
    weight = np.float32(1.0 / (steps["numpy"] + 1))
    for a, v in zip(numpy_averages, values):
      a -= (a - v) * weight
    steps["numpy"] += 1

  return {"kernels": kernels_path, "numpy loop": numpy_path}


def run_workload(name, settings, bandwidth):
  description, shapes_of = WORKLOADS[name]
  shapes = shapes_of()
  values = int(sum(np.prod(s, dtype=np.int64) for s in shapes))
  paths = make_paths(shapes)
  paths["bandwidth"] = bandwidth
  calls = {key: calls_for(fn, settings["target_s"]) for key, fn in paths.items()}
  samples = {key: [] for key in paths}
  for _ in range(settings["repeats"]):
    for key, fn in paths.items():
      samples[key].append(time_batch(fn, calls[key]))
  result = {
      "description": description, "arrays": len(shapes), "values": values,
      "paths": {key: {"median_ms": statistics.median(s) * 1e3, "min_ms": min(s) * 1e3,
                      "calls_per_repeat": calls[key], "repeats": len(s)}
                for key, s in samples.items() if key != "bandwidth"},
      "bandwidth_gbps": {"best": bandwidth.gbps(min(samples["bandwidth"])),
                         "median": bandwidth.gbps(statistics.median(samples["bandwidth"]))},
  }
  return result


def add_floors(results, best_gbps):
  for result in results.values():
    floor_ms = BYTES_PER_VALUE * result["values"] / (best_gbps * 1e9) * 1e3
    median_floor_ms = (BYTES_PER_VALUE * result["values"] /
                       (result["bandwidth_gbps"]["median"] * 1e9) * 1e3)
    kernel_ms = result["paths"]["kernels"]["median_ms"]
    result["floor_ms"] = floor_ms
    result["median_floor_ms"] = median_floor_ms
    result["kernels_x_floor"] = kernel_ms / floor_ms
    result["kernels_x_median_floor"] = kernel_ms / median_floor_ms
    result["numpy_loop_x_floor"] = result["paths"]["numpy loop"]["median_ms"] / floor_ms
    result["speedup_over_numpy_loop"] = result["paths"]["numpy loop"]["median_ms"] / kernel_ms


def format_table(results, best_gbps):
  lines = ["memory floor at the run's best bandwidth, %.1f GB/s (12 B/value)" % best_gbps, "",
           "| workload | arrays | values | kernels ms | numpy loop ms | floor ms | kernels x floor"
           " | kernels x median floor | numpy loop / kernels |",
           "|---|---|---|---|---|---|---|---|---|"]
  for name, r in results.items():
    lines.append("| %s | %d | %d | %.3f | %.3f | %.3f | %.2f | %.2f | %.1fx |" % (
        name, r["arrays"], r["values"], r["paths"]["kernels"]["median_ms"],
        r["paths"]["numpy loop"]["median_ms"], r["floor_ms"], r["kernels_x_floor"],
        r["kernels_x_median_floor"], r["speedup_over_numpy_loop"]))
  return "\n".join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--workloads", default="W1,W2,W3")
  parser.add_argument("--json", help="also write the results here")
  args = parser.parse_args(argv)
  mode = "quick" if args.quick else "full"
  settings = SETTINGS[mode]
  machine = {"nproc": usable_cores(), "cpu_model": cpu_model(),
             "last_level_cache_bytes": last_level_cache_bytes(),
             "kernels_cpu_threads": kernels.cpu_threads(), "numpy_version": np.__version__,
             "python_version": platform.python_version(),
             "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
             "load_average_at_start": os.getloadavg()}
  print("swa_ops.kernels CPU benchmark (%s): %s, %d cores, kernels on %d OpenMP threads, "
        "load average %.2f" % (mode, machine["cpu_model"], machine["nproc"],
                               machine["kernels_cpu_threads"], machine["load_average_at_start"][0]))
  bandwidth = BandwidthKernel(usable_cores())
  results = {}
  for name in args.workloads.split(","):
    results[name] = run_workload(name, settings, bandwidth)
    print("%s done" % name, file=sys.stderr)
  bandwidth.close()
  best_gbps = max(r["bandwidth_gbps"]["best"] for r in results.values())
  add_floors(results, best_gbps)
  machine["load_average_at_end"] = os.getloadavg()
  print(format_table(results, best_gbps))
  print("load average at the end: %.2f" % machine["load_average_at_end"][0])
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"mode": mode, "machine": machine, "settings": settings,
                 "best_bandwidth_gbps": best_gbps, "workloads": results}, f, indent=2)


if __name__ == "__main__":
  main()
