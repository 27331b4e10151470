"""The averager's other calls against the number of variables (issue 18, item 4): the time of
each, first and second call, at N float32 variables of 100 values, one process per N, eager
code, and the growth exponent from the smallest to the largest N (1 = linear).

Usage: python benchmarks/other_calls.py [--variables 1000,10000] [--json PATH]

Calls (after a first `apply()` made the shadows, and one more update):
  apply                      a steady-state eager apply() (median of 20)
  assign_average_vars        the averages copied into the variables
  swap_weights               the variables and their averages exchanged (one op per dtype)
  averaged_weights           entering and leaving the context (two swaps)
  checkpoint save            tf.train.Checkpoint(averager=...).write
  checkpoint restore         read into a new averager whose shadows exist (apply() first)
  deferred restore           read into a new averager, then its first apply() (shadows
                             created and restored from the checkpoint)
  keras SWA: first average   swa_ops.keras.SWA on a model holding the N variables as its
                             trainable weights (its train_step does nothing): the first
                             epoch-end average (shadows, tracing), then a later one, then the
                             assignment of the averages at the end of fit()
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
VALUES_PER_VARIABLE = 100
DEFAULT_VARIABLES = (1000, 10000)


def _import_swa_ops():
  try:
    import swa_ops  # pylint: disable=import-outside-toplevel
  except ImportError:  # Not installed: the in-tree package.
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))
    import swa_ops  # pylint: disable=import-outside-toplevel
  return swa_ops


def _timed(function):
  started = time.perf_counter()
  function()
  return time.perf_counter() - started


def _keras_times(num_variables):
  import keras  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  swa_ops = _import_swa_ops()

  class ManyWeights(keras.layers.Layer):

    def build(self, input_shape):
      self.many = [self.add_weight(shape=(VALUES_PER_VARIABLE,), initializer="zeros",
                                   name="w%d" % i) for i in range(num_variables)]

    def call(self, inputs):
      return inputs * self.many[0][0]

  class IdleModel(keras.Model):

    def train_step(self, data):  # The averaging alone: no gradients of 10,000 weights.
      return {"idle": tf.constant(0.0)}

  inputs = keras.Input(shape=(1,))
  model = IdleModel(inputs, ManyWeights()(inputs))
  model.compile()
  callback = swa_ops.keras.SWA(start=0)
  fit_s = _timed(lambda: model.fit(tf.zeros([1, 1]), tf.zeros([1, 1]), epochs=3, verbose=0,
                                   callbacks=[callback]))
  first, later = callback.averaging_times[0], statistics.median(callback.averaging_times[1:])
  return {"keras SWA: first average": first, "keras SWA: later average": later,
          "keras SWA: fit() of 3 epochs in all": fit_s}


def child(num_variables):
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  swa_ops = _import_swa_ops()
  variables = [tf.Variable(tf.fill([VALUES_PER_VARIABLE], float(i))) for i in range(num_variables)]
  step = tf.Variable(0, dtype=tf.int64)
  swa = swa_ops.SWAMovingAverage(step)
  times = {"first apply": _timed(lambda: swa.apply(variables))}
  step.assign_add(1)
  swa.apply(variables)
  steady = []
  for _ in range(20):
    step.assign_add(1)
    steady.append(_timed(lambda: swa.apply(variables)))
  times["apply (steady state)"] = statistics.median(steady)

  def enter_and_leave():
    with swa.averaged_weights(variables):
      pass

  for name, call in (("assign_average_vars", lambda: swa.assign_average_vars(variables)),
                     ("swap_weights", lambda: swa.swap_weights(variables)),
                     ("averaged_weights", enter_and_leave)):
    times[name + " (first)"] = _timed(call)
    times[name + " (second)"] = _timed(call)
  with tempfile.TemporaryDirectory() as directory:
    path = os.path.join(directory, "ckpt")
    times["checkpoint save"] = _timed(lambda: tf.train.Checkpoint(averager=swa).write(path))
    restored = swa_ops.SWAMovingAverage(step)
    restored.apply(variables)
    times["checkpoint restore"] = _timed(
        lambda: tf.train.Checkpoint(averager=restored).read(path).assert_consumed())
    deferred = swa_ops.SWAMovingAverage(step)

    def deferred_restore():
      status = tf.train.Checkpoint(averager=deferred).read(path)
      deferred.apply(variables)
      status.assert_consumed()

    times["deferred restore (read, then the first apply)"] = _timed(deferred_restore)
  times.update(_keras_times(num_variables))
  return times


def _run_child(num_variables):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  result = subprocess.run([sys.executable, os.path.abspath(__file__), "--child",
                           str(num_variables)], env=env, capture_output=True, text=True)
  if result.returncode != 0:
    raise RuntimeError("%d variables failed:\n%s" % (num_variables, result.stderr[-3000:]))
  return json.loads(result.stdout.strip().splitlines()[-1])


def format_report(report):
  counts = sorted(report, key=int)
  small, large = counts[0], counts[-1]
  lines = ["Other calls at N float32 variables of %d values, eager, one process per N (seconds; "
           "exponent: log(t_large / t_small) / log(N_large / N_small)):" % VALUES_PER_VARIABLE,
           "", "| call | " + " | ".join("%s variables" % n for n in counts) + " | exponent |",
           "|---|" + "---:|" * (len(counts) + 1)]
  for name in report[small]:
    cells = ["%.4f" % report[n][name] for n in counts]
    exponent = (math.log(report[large][name] / report[small][name]) /
                math.log(int(large) / int(small)))
    lines.append("| %s | %s | %.2f |" % (name, " | ".join(cells), exponent))
  return "\n".join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
  parser.add_argument("--variables", default=",".join(map(str, DEFAULT_VARIABLES)))
  parser.add_argument("--json", default=os.path.join(HERE, "results", "other_calls.json"))
  args = parser.parse_args(argv)
  if args.child:
    print(json.dumps(child(args.child)))
    return
  report = {}
  for count in (int(part) for part in args.variables.split(",") if part):
    print("other calls: %d variables ..." % count, file=sys.stderr, flush=True)
    report[str(count)] = _run_child(count)
  print(format_report(report))
  os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
  with open(args.json, "w") as f:
    json.dump(report, f, indent=1)


if __name__ == "__main__":
  main()
