"""The first call against the number of variables: swa_ops (eager, tf.function) against
tf.train.ExponentialMovingAverage (tf.function) and Keras' `use_ema`, one process per path and
size, with the steady state after it.

Run by `bench.py --first-call` (or on its own: `python benchmarks/first_call.py [--variables
1000,3000,10000] [--limit SECONDS] [--plot PATH]`). Each point is N float32 variables of 100
values, unnamed (`tf.Variable(...)`: they all share the name "Variable", the worst case for
unique names). A child process creates them, times the first call (shadows or slots created,
checks, grouping, tracing), then the median of `STEADY_CALLS` calls (fewer for a slow path). A path whose first call is
predicted (log-log, from its last two points) above the limit is not run at that size. The
growth exponent of each path is the least-squares slope of log(first call) against log(N).
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
VALUES_PER_VARIABLE = 100
STEADY_CALLS = 100
STEADY_BUDGET_S = 10.0  # Fewer calls (at least 5) for a path slower than 0.1 s per call.
DEFAULT_VARIABLES = (1000, 3000, 10000)
DEFAULT_LIMIT_S = 60.0
PATHS = ("swa_ops_eager", "swa_ops_tf_function", "ema_tf_function", "keras_use_ema",
         "floor")
LABELS = {
    "swa_ops_eager": "swa_ops eager",
    "swa_ops_tf_function": "swa_ops tf.function",
    "ema_tf_function": "tf.train.ExponentialMovingAverage tf.function",
    "keras_use_ema": "Keras optimizer use_ema (apply_gradients in tf.function)",
    "floor": ("TensorFlow: N tf.Variables named as shadows, one by one / one SWAAssign of the "
              "same bytes (the memory floor)"),
}
# Targets at 10,000 variables (issue 18): first call s, steady ms.
TARGETS = {"swa_ops_eager": (5.0, 3.0), "swa_ops_tf_function": (8.0, 2.0)}
TARGET_GROWTH_1K_TO_10K = 15.0


def _build(path, variables):
  """A zero-argument callable doing one update of `variables` on `path`."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  if path.startswith("swa_ops") or path == "floor":
    try:
      import swa_ops  # pylint: disable=import-outside-toplevel
    except ImportError:  # Not installed: the in-tree package.
      sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))
      import swa_ops  # pylint: disable=import-outside-toplevel
  if path == "floor":
    return _floor(variables)
  if path.startswith("swa_ops"):
    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    averager = swa_ops.SWAMovingAverage(step)

    def apply():
      step.assign_add(1)
      averager.apply(variables)

    return apply if path == "swa_ops_eager" else tf.function(apply, autograph=False)
  if path == "ema_tf_function":
    ema = tf.train.ExponentialMovingAverage(decay=0.99)

    def apply_ema():
      ema.apply(variables)

    return tf.function(apply_ema, autograph=False)
  import keras  # pylint: disable=import-outside-toplevel
  optimizer = keras.optimizers.SGD(learning_rate=0.0, use_ema=True)
  gradients = [tf.zeros_like(v) for v in variables]

  @tf.function
  def train_step():  # As model.fit runs it: in a tf.function.
    optimizer.apply_gradients(zip(gradients, variables))

  return train_step


def _floor(variables):
  """TensorFlow's cost of creating the shadows one by one, and the memory traffic of an update:
  the first call creates one variable per variable from its value (in init_scope, each named
  uniquely as a shadow is: TensorFlow makes a VarHandleOp kernel per name, which swa_ops'
  batched creation avoids), later calls update one variable holding all the values with one
  SWAAssign (in a tf.function): the floor of a steady-state update."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from swa_ops import _ops  # pylint: disable=import-outside-toplevel
  size = sum(int(v.shape.num_elements()) for v in variables)
  average, value = tf.Variable(tf.zeros([size])), tf.Variable(tf.zeros([size]))
  step = tf.constant(1, tf.int64)

  @tf.function(autograph=False)
  def update():
    _ops.swa_assign(average, value, step)

  update()
  created = []

  def call():
    if created:
      update()
      return
    with tf.init_scope():
      created.extend(tf.Variable(v.read_value(), trainable=False,
                                 name="Variable/SWAMovingAverage_%d" % i)
                     for i, v in enumerate(variables))

  return call


def child(path, num_variables):
  """Measures one point in this process; returns its record."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  started = time.perf_counter()
  variables = [tf.Variable(tf.zeros([VALUES_PER_VARIABLE])) for _ in range(num_variables)]
  create_s = time.perf_counter() - started
  update = _build(path, variables)
  started = time.perf_counter()
  update()
  first_call_s = time.perf_counter() - started
  for _ in range(5):
    update()
  times = []
  deadline = time.perf_counter() + STEADY_BUDGET_S
  while len(times) < STEADY_CALLS and (len(times) < 5 or time.perf_counter() < deadline):
    started = time.perf_counter()
    update()
    times.append(time.perf_counter() - started)
  return {"first_call_s": first_call_s, "create_variables_s": create_s,
          "steady_median_ms": 1e3 * statistics.median(times), "steady_min_ms": 1e3 * min(times)}


def _run_child(path, num_variables):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  result = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", path,
                           str(num_variables)], env=env, capture_output=True, text=True)
  if result.returncode != 0:
    return {"error": result.stderr.strip().splitlines()[-1:]}
  return json.loads(result.stdout.strip().splitlines()[-1])


def _predict(history, num_variables):
  """Log-log extrapolation from the last two measured points (slope at least 1)."""
  if len(history) < 2:
    return None
  (n_a, t_a), (n_b, t_b) = history[-2:]
  slope = max(1.0, math.log(t_b / t_a) / math.log(n_b / n_a))
  return t_b * (num_variables / n_b) ** slope


def growth_exponent(points):
  """Least-squares slope of log(seconds) against log(variables); None below two points."""
  if len(points) < 2:
    return None
  xs = [math.log(n) for n, _ in points]
  ys = [math.log(t) for _, t in points]
  mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
  return (sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) /
          sum((x - mean_x) ** 2 for x in xs))


def run(variable_counts, limit_s, paths=PATHS):
  """Every path at every size (smallest first), skipping predicted slow points."""
  report = {"values_per_variable": VALUES_PER_VARIABLE, "limit_s": limit_s, "paths": {}}
  for path in paths:
    history, points = [], []
    for num_variables in sorted(variable_counts):
      predicted = _predict(history, num_variables)
      if predicted is not None and predicted > limit_s:
        points.append({"num_variables": num_variables, "skipped": True,
                       "predicted_first_call_s": predicted})
        continue
      print("first call: %s, %d variables ..." % (path, num_variables), file=sys.stderr,
            flush=True)
      record = dict(_run_child(path, num_variables), num_variables=num_variables)
      points.append(record)
      if "first_call_s" in record:
        history.append((num_variables, record["first_call_s"]))
    report["paths"][path] = {"points": points, "growth_exponent": growth_exponent(history)}
  return report


def _cell(point):
  if point.get("skipped"):
    return "skipped (predicted %.0f s)" % point["predicted_first_call_s"]
  if "error" in point:
    return "failed"
  return "%.2f s / %.2f ms" % (point["first_call_s"], point["steady_median_ms"])


def format_report(report):
  counts = sorted({p["num_variables"] for path in report["paths"].values()
                   for p in path["points"]})
  header = "| path | " + " | ".join("%d variables" % n for n in counts) + " | growth exponent |"
  lines = ["First call / steady-state median per update, N float32 variables of %d values "
           "(one process per point):" % report["values_per_variable"], "", header,
           "|---|" + "---:|" * (len(counts) + 1)]
  for path, record in report["paths"].items():
    by_count = {p["num_variables"]: p for p in record["points"]}
    exponent = record["growth_exponent"]
    lines.append("| %s | %s | %s |" % (
        LABELS[path], " | ".join(_cell(by_count[n]) if n in by_count else "" for n in counts),
        "%.2f" % exponent if exponent is not None else "-"))
  lines += ["", "Growth exponent: least-squares slope of log(first call) against "
            "log(variables) over the measured points (1 = linear)."]
  lines += _format_targets(report)
  return "\n".join(lines)


def _format_targets(report):
  lines = ["", "Targets at 10000 variables (issue 18): first call / steady state / first-call "
           "growth from 1000 to 10000:", ""]
  for path, (first_s, steady_ms) in TARGETS.items():
    by_count = {p["num_variables"]: p for p in report["paths"].get(path, {}).get("points", [])}
    large, small = by_count.get(10000, {}), by_count.get(1000, {})
    if "first_call_s" not in large:
      lines.append("- %s: not measured at 10000 variables" % LABELS[path])
      continue
    growth = (large["first_call_s"] / small["first_call_s"]
              if "first_call_s" in small else float("nan"))
    lines.append("- %s: %.2f s (target <= %g s), %.2f ms (target <= %g ms), %.1fx (target <= "
                 "%gx)" % (LABELS[path], large["first_call_s"], first_s,
                           large["steady_median_ms"], steady_ms, growth,
                           TARGET_GROWTH_1K_TO_10K))
  floor = {p["num_variables"]: p for p in report["paths"].get("floor", {}).get("points", [])}
  if "first_call_s" in floor.get(10000, {}):
    lines.append("- %s: %.2f s, %.2f ms" % (LABELS["floor"], floor[10000]["first_call_s"],
                                             floor[10000]["steady_median_ms"]))
  return lines


def plot(report, path):
  """Log-log plot of the first call against the number of variables; None, or why not."""
  try:
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  except ImportError:
    return "matplotlib is not installed"
  figure, axes = plt.subplots(figsize=(9, 7.5))
  for key, record in report["paths"].items():
    measured = [(p["num_variables"], p["first_call_s"]) for p in record["points"]
                if "first_call_s" in p]
    if measured:
      exponent = record["growth_exponent"]
      label = LABELS[key] + ("" if exponent is None else " (N^%.2f)" % exponent)
      axes.plot(*zip(*measured), marker="o", label=label)
  axes.set_xscale("log")
  axes.set_yscale("log")
  axes.set_xlabel("number of float32 variables of %d values" % report["values_per_variable"])
  axes.set_ylabel("first call, s")
  axes.set_title("First apply() (shadows, checks, tracing) vs number of variables")
  axes.grid(True, which="both", alpha=0.3)
  axes.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.12))
  figure.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  figure.savefig(path, dpi=120)
  plt.close(figure)
  return None


def _parse_counts(text):
  return tuple(int(part) for part in text.split(",") if part)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--child", nargs=2, metavar=("PATH", "N"), help=argparse.SUPPRESS)
  parser.add_argument("--variables", type=_parse_counts, default=DEFAULT_VARIABLES)
  parser.add_argument("--limit", type=float, default=DEFAULT_LIMIT_S)
  parser.add_argument("--paths", type=lambda text: tuple(text.split(",")), default=PATHS)
  parser.add_argument("--plot", default=os.path.join(HERE, "results", "first_call.png"))
  parser.add_argument("--json", default=os.path.join(HERE, "results", "first_call.json"))
  args = parser.parse_args(argv)
  if args.child:
    print(json.dumps(child(args.child[0], int(args.child[1]))))
    return
  report = run(args.variables, args.limit, args.paths)
  print(format_report(report))
  why_not = plot(report, args.plot)
  print("First-call plot: %s" % (why_not or args.plot))
  os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
  with open(args.json, "w") as f:
    json.dump(report, f, indent=1)


if __name__ == "__main__":
  main()
