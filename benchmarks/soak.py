"""Soak test: many apply() calls on W2 (2000 variables of 1000 float32), RSS printed as it goes.

Usage: python benchmarks/soak.py [--steps 100000] [--limit-mb 5]

Runs `--steps` eager apply() calls, then `--steps` calls of apply() inside tf.function, each
phase on fresh variables, and prints the process's resident set size (VmRSS) every
steps/20 calls. The growth of a phase is its final RSS minus its RSS after warm-up (the first
10% of its calls); the script exits 1 if a phase grows by more than --limit-mb.
"""
import argparse
import gc
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402

try:
  import swa_ops  # noqa: E402
except ImportError:
  sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                  "python"))
  import swa_ops  # noqa: E402


def rss_mb():
  with open("/proc/self/status") as status:
    for line in status:
      if line.startswith("VmRSS:"):
        return int(line.split()[1]) / 1024.0
  raise RuntimeError("no VmRSS in /proc/self/status")


def soak(label, steps, make_update):
  """Runs `steps` updates; returns (RSS after warm-up, final RSS) in MB."""
  update = make_update()
  warm_up = max(steps // 10, 1)
  report_every = max(steps // 20, 1)
  start = time.perf_counter()
  warm_rss = None
  for i in range(1, steps + 1):
    update()
    if i == warm_up:
      gc.collect()
      warm_rss = rss_mb()
    if i % report_every == 0 or i == steps:
      print("%-12s step %7d  RSS %8.1f MB  %6.1f s" % (label, i, rss_mb(),
                                                       time.perf_counter() - start), flush=True)
  gc.collect()
  return warm_rss, rss_mb()


def w2_update(in_function):
  def make():
    variables = [tf.Variable(tf.random.normal([1000])) for _ in range(2000)]
    step = tf.Variable(0, dtype=tf.int64)
    swa = swa_ops.SWAMovingAverage(step)

    def update():
      swa.apply(variables)
      step.assign_add(1)

    return tf.function(update, autograph=False) if in_function else update
  return make


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=100000)
  parser.add_argument("--limit-mb", type=float, default=5.0)
  args = parser.parse_args()
  print("TensorFlow %s, swa_ops %s, W2 = 2000 x 1000 float32, %d steps per phase"
        % (tf.__version__, swa_ops.__version__, args.steps))
  failed = False
  for label, in_function in (("eager", False), ("tf.function", True)):
    warm, final = soak(label, args.steps, w2_update(in_function))
    growth = final - warm
    ok = growth < args.limit_mb
    failed |= not ok
    print("%s: RSS after warm-up %.1f MB, final %.1f MB, growth %.2f MB (limit %.1f): %s"
          % (label, warm, final, growth, args.limit_mb, "ok" if ok else "TOO MUCH"), flush=True)
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
