"""A Keras 3 `fit()` step with the optimizer's `use_ema=True` against the same step with a plain
optimizer and `swa_ops.keras.EMA` (and, for the cost of the EMA itself, with no EMA at all).

Run by `bench.py --keras-ema` (or on its own: `python benchmarks/keras_ema_bench.py [--layers
200] [--steps 40] [--rounds 7]`). The model is a stack of `layers` Dense(16) layers (2 weights
each: many small variables, where per-variable ops cost most). Each path gets its own model
(same initial weights) and SGD, compiled (not eager), traced by a warm-up fit(); then `rounds`
rounds each run one fit() of `steps` steps per path, the paths interleaved (round robin), so
that the drifts of a shared machine hit them alike. Reported: the median over rounds of
ms per step (fit wall time / steps), and for the two EMA paths their median cost over the plain
step (per round, EMA path minus the plain path of the same round).
"""
import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import keras  # noqa: E402

try:
  import swa_ops  # noqa: E402
except ImportError:  # Not installed: the in-tree package.
  sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                  "python"))
  import swa_ops  # noqa: E402

PATHS = ("plain", "keras_use_ema", "swa_ops_EMA")
LABELS = {"plain": "no EMA (plain SGD)", "keras_use_ema": "Keras SGD(use_ema=True)",
          "swa_ops_EMA": "SGD + swa_ops.keras.EMA"}
WIDTH = 16
BATCH = 32
MOMENTUM = 0.99


def _model(layers, optimizer):
  keras.utils.set_random_seed(0)
  model = keras.Sequential([keras.Input((WIDTH,))] +
                           [keras.layers.Dense(WIDTH, activation="tanh") for _ in range(layers)])
  model.compile(optimizer, "mse")
  return model


def _paths(layers):
  """{path: (model, callbacks)}."""
  return {
      "plain": (_model(layers, keras.optimizers.SGD(0.01)), []),
      "keras_use_ema": (_model(layers, keras.optimizers.SGD(0.01, use_ema=True,
                                                            ema_momentum=MOMENTUM)), []),
      "swa_ops_EMA": (_model(layers, keras.optimizers.SGD(0.01)),
                      [swa_ops.keras.EMA(momentum=MOMENTUM, assign_at_end=False)]),
  }


def _fit_ms_per_step(model, callbacks, x, y, steps):
  begin = time.perf_counter()
  model.fit(x, y, batch_size=BATCH, epochs=1, steps_per_epoch=steps, shuffle=False, verbose=0,
            callbacks=callbacks)
  return (time.perf_counter() - begin) * 1e3 / steps


def run(layers=200, steps=40, rounds=7):
  """{"layers", "variables", "steps", "rounds", "ms_per_step": {path: [per round]},
  "median_ms": {path: ms}, "ema_overhead_ms": {path: median ms over the plain step}}."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(BATCH * steps, WIDTH)).astype(np.float32)
  y = rng.normal(size=(BATCH * steps, WIDTH)).astype(np.float32)
  paths = _paths(layers)
  for model, callbacks in paths.values():  # Warm-up: traces the train step (and the EMA).
    _fit_ms_per_step(model, callbacks, x, y, 2)
  samples = {path: [] for path in PATHS}
  for _ in range(rounds):
    for path in PATHS:
      model, callbacks = paths[path]
      samples[path].append(_fit_ms_per_step(model, callbacks, x, y, steps))
  overhead = {path: statistics.median(a - b for a, b in zip(samples[path], samples["plain"]))
              for path in ("keras_use_ema", "swa_ops_EMA")}
  return {"layers": layers, "variables": len(paths["plain"][0].trainable_weights),
          "steps": steps, "rounds": rounds, "ms_per_step": samples,
          "median_ms": {path: statistics.median(samples[path]) for path in PATHS},
          "ema_overhead_ms": overhead}


def format_report(result):
  lines = ["Keras fit() step with EMA: %d Dense(%d) layers (%d variables), %d steps x %d "
           "rounds, interleaved; median ms per step" % (
               result["layers"], WIDTH, result["variables"], result["steps"], result["rounds"]),
           "  %-28s %10s %16s" % ("path", "ms/step", "EMA cost (ms)")]
  for path in PATHS:
    cost = result["ema_overhead_ms"].get(path)
    lines.append("  %-28s %10.2f %16s" % (LABELS[path], result["median_ms"][path],
                                          "" if cost is None else "%.2f" % cost))
  keras_cost, ours = result["ema_overhead_ms"]["keras_use_ema"], result["ema_overhead_ms"][
      "swa_ops_EMA"]
  if ours > 0:
    lines.append("  EMA cost, Keras use_ema / swa_ops EMA: %.1fx" % (keras_cost / ours))
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--layers", type=int, default=200)
  parser.add_argument("--steps", type=int, default=40)
  parser.add_argument("--rounds", type=int, default=7)
  args = parser.parse_args()
  print(format_report(run(args.layers, args.steps, args.rounds)))


if __name__ == "__main__":
  main()
