"""`swa_ops.ExponentialMovingAverage` against `tf.train.ExponentialMovingAverage`, both in a
tf.function, side by side over bench.py's workloads W1-W3, with the memory-bandwidth floor.

Run by `bench.py --tf-ema` (after its own report) or on its own:
  python benchmarks/tf_ema_bench.py [--quick] [--workloads W1,W2,W3] [--xla] [--json PATH]

For each workload (bench.py's: float32 tf.Variables of random values, named) the paths are

  swa_ops EMA tf.function   `swa_ops.ExponentialMovingAverage(0.99).apply(vars)` in a
                            tf.function (autograph off, as in bench.py): one grouped fused op
                            per (device, dtype) on one captured variable-group handle.
  tf.train EMA tf.function  `tf.train.ExponentialMovingAverage(0.99).apply(vars)`, the same way
                            (bench.py's "EMA tf.function" path).
  with --xla, both again in tf.function(jit_compile=True) (swa_ops emits plain TF ops there).

and bench.py's bandwidth kernel as one more path of the same rounds. bench.py's method: every
path is warmed up (traced, shadows created), then timed in batches of about `target_s` seconds,
the paths interleaved round robin (so that the drifts of a shared machine hit them alike);
reported: the median and the min of ms per apply() over the rounds, the floor (12 bytes per
float32 value at the best bandwidth measured) and each path's ratio to it, and the speedup
tf.train median / swa_ops median against the issue's targets (W1 >= 2.5x, W2 >= 15x). The load
average before and after the run is printed: on a shared machine it says how busy it was.
"""
import argparse
import gc
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402  (imports TensorFlow and swa_ops, in-tree if not installed)
from bench import swa_ops, tf  # noqa: E402

DECAY = bench.EMA_DECAY
TARGETS = {"W1": 2.5, "W2": 15.0}  # tf.train EMA median / swa_ops EMA median, at least.
PAIRS = (("swa_ops_ema_tf_function", "tf_ema_tf_function"),
         ("swa_ops_ema_xla", "tf_ema_xla"))


def ema_step_function(ema_class, variables, **tf_function_kwargs):
  ema = ema_class(DECAY)

  @tf.function(autograph=False, **tf_function_kwargs)
  def apply():
    ema.apply(variables)

  return apply


PATHS = [  # (key, label, builder)
    ("swa_ops_ema_tf_function", "swa_ops.ExponentialMovingAverage tf.function",
     lambda v: ema_step_function(swa_ops.ExponentialMovingAverage, v)),
    ("tf_ema_tf_function", "tf.train.ExponentialMovingAverage tf.function",
     lambda v: ema_step_function(tf.train.ExponentialMovingAverage, v)),
    ("swa_ops_ema_xla", "swa_ops.ExponentialMovingAverage tf.function(jit_compile=True)",
     lambda v: ema_step_function(swa_ops.ExponentialMovingAverage, v, jit_compile=True)),
    ("tf_ema_xla", "tf.train.ExponentialMovingAverage tf.function(jit_compile=True)",
     lambda v: ema_step_function(tf.train.ExponentialMovingAverage, v, jit_compile=True)),
]
XLA_PATHS = ("swa_ops_ema_xla", "tf_ema_xla")
LABELS = {key: label for key, label, _ in PATHS}


def run_workload(name, settings, kernel, xla):
  description, shapes_fn = bench.WORKLOADS[name]
  shapes = shapes_fn()
  variables = bench.make_variables(shapes, "ema_" + name)
  functions = {key: builder(variables) for key, _, builder in PATHS
               if xla or key not in XLA_PATHS}
  functions[bench.BANDWIDTH_KEY] = kernel
  measured = bench.measure_paths(functions, settings)
  bandwidth_samples = measured.pop(bench.BANDWIDTH_KEY)[0]
  del functions, variables
  gc.collect()
  return {
      "description": description,
      "num_variables": len(shapes),
      "num_values": int(sum(int(bench.np.prod(shape, dtype=bench.np.int64)) for shape in shapes)),
      "bandwidth_gb_per_s_best_in_rounds": kernel.gbps(min(bandwidth_samples)),
      "bandwidth_gb_per_s_median_in_rounds": kernel.gbps(statistics.median(bandwidth_samples)),
      "paths": {key: bench.summarize(*result) for key, result in measured.items()},
  }


def add_floors_and_speedups(workloads, bandwidth_gbps):
  for name, result in workloads.items():
    bench.add_path_floors(result, bandwidth_gbps)
    median_floor = bench.floor_ms(result["num_values"],
                                  result["bandwidth_gb_per_s_median_in_rounds"])
    result["floor_ms_at_median_bandwidth_in_rounds"] = median_floor
    for path in result["paths"].values():
      path["ratio_to_floor_at_median_bandwidth"] = path["median_ms"] / median_floor
    result["speedups"] = {}
    for ours, theirs in PAIRS:
      if ours in result["paths"] and theirs in result["paths"]:
        result["speedups"][ours] = (result["paths"][theirs]["median_ms"]
                                    / result["paths"][ours]["median_ms"])
    result["target_speedup"] = TARGETS.get(name)


def run(mode="quick", workload_names=("W1", "W2", "W3"), xla=False):
  """The report: machine, load, bandwidth, {workload: result}."""
  settings = bench.SETTINGS[mode]
  bench.check_synchronous_execution()
  machine = bench.machine_info()
  load_before = os.getloadavg()
  started = time.perf_counter()
  kernel = bench.BandwidthKernel(bench.bandwidth_array_floats(), machine["nproc"])
  start_up_gbps = kernel.best_gbps(settings["bandwidth_repeats"])
  workloads = {name: run_workload(name, settings, kernel, xla) for name in workload_names}
  kernel.close()
  best_gbps = max([start_up_gbps] + [w["bandwidth_gb_per_s_best_in_rounds"]
                                     for w in workloads.values()])
  add_floors_and_speedups(workloads, best_gbps)
  return {"mode": mode, "settings": settings, "machine": machine, "decay": DECAY,
          "load_average_before": load_before, "load_average_after": os.getloadavg(),
          "bandwidth": {"gb_per_s": best_gbps, "start_up_gb_per_s": start_up_gbps},
          "workloads": workloads, "seconds": time.perf_counter() - started}


def format_report(report):
  machine = report["machine"]
  lines = [
      "swa_ops.ExponentialMovingAverage vs tf.train.ExponentialMovingAverage (decay %.2f), "
      "both in tf.function; %s run, paths interleaved" % (report["decay"], report["mode"]),
      "Machine: %d cores, %s, TensorFlow %s; load average (1/5/15 min) before %s, after %s" % (
          machine["nproc"], machine["cpu_model"], machine["tensorflow_version"],
          "/".join("%.2f" % x for x in report["load_average_before"]),
          "/".join("%.2f" % x for x in report["load_average_after"])),
      "Memory bandwidth: %.2f GB/s (best of start-up and rounds): the floor is 12 B/value at it"
      % report["bandwidth"]["gb_per_s"],
      "",
      "| workload | path | median ms | min ms | x floor | x median floor |",
      "|---|---|---:|---:|---:|---:|"]
  for name, result in report["workloads"].items():
    where = "%s: %s" % (name, result["description"])
    for key, label, _ in PATHS:
      path = result["paths"].get(key)
      if path is None:
        continue
      lines.append("| %s | %s | %.3f | %.3f | %.2f | %.2f |" % (
          where, label, path["median_ms"], path["min_ms"], path["ratio_to_floor"],
          path["ratio_to_floor_at_median_bandwidth"]))
    lines.append("| %s | memory floor (12 B/value) | %.3f | | 1.00 | %.2f |" % (
        where, result["floor_ms"],
        result["floor_ms"] / result["floor_ms_at_median_bandwidth_in_rounds"]))
  lines += ["", "Speedup: tf.train.ExponentialMovingAverage median / swa_ops median", "",
            "| workload | variables | float32 values | tf.function speedup | target | met | "
            "XLA speedup |", "|---|---:|---:|---:|---:|---|---:|"]
  for name, result in report["workloads"].items():
    speedup = result["speedups"].get("swa_ops_ema_tf_function")
    target = result["target_speedup"]
    xla = result["speedups"].get("swa_ops_ema_xla")
    lines.append("| %s | %d | %d | %.2fx | %s | %s | %s |" % (
        name, result["num_variables"], result["num_values"], speedup,
        "-" if target is None else ">= %.1fx" % target,
        "-" if target is None else ("yes" if speedup >= target else "NO"),
        "-" if xla is None else "%.2fx" % xla))
  lines.append("")
  lines.append("Total time: %.0f s" % report["seconds"])
  return "\n".join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="bench.py's quick timing settings")
  parser.add_argument("--workloads", default="W1,W2,W3")
  parser.add_argument("--xla", action="store_true",
                      help="also both in tf.function(jit_compile=True) (XLA compiles W2's 2000 "
                      "variables for tens of seconds per path)")
  parser.add_argument("--json", default=os.path.join(HERE, "results", "tf_ema.json"))
  args = parser.parse_args(argv)
  tf.get_logger().setLevel("ERROR")
  report = run("quick" if args.quick else "full", args.workloads.split(","), args.xla)
  print(format_report(report))
  bench.write_json(args.json, report)
  print("JSON written to %s" % args.json)


if __name__ == "__main__":
  main()
