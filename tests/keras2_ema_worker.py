"""Runs swa_ops.keras.EMA on tf_keras (Keras 2) models for test_keras_ema.py.

Must run with TF_USE_LEGACY_KERAS=1 (set before TensorFlow is imported): `tf.keras` is then
tf_keras. For each overwrite frequency (None, 1, 3) and mode (compiled, run_eagerly) it trains a
small model with the callback and saves, per step, the weights the update saw (recorded before
the callback), the averages and the weights after it, and the final weights, to
`<out>/f<frequency>_eager<0|1>.npz`; prints DONE at the end.
"""
import os
import sys

import numpy as np

assert os.environ.get("TF_USE_LEGACY_KERAS") == "1", "run with TF_USE_LEGACY_KERAS=1"

import tensorflow as tf  # noqa: E402

import swa_ops  # noqa: E402

MOMENTUM = 0.9
BATCH = 16
SAMPLES = 80
EPOCHS = 2


class Recorder(tf.keras.callbacks.Callback):
  """Records the model's weights and `averages()` after every training step."""

  def __init__(self, averages=lambda: []):
    super().__init__()
    self._averages = averages
    self.weights, self.averages = [], []

  def on_train_batch_end(self, batch, logs=None):
    self.weights.append([w.numpy() for w in self.model.trainable_weights])
    self.averages.append([a.numpy() for a in self._averages()])


def run(frequency, run_eagerly):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(SAMPLES, 6)).astype(np.float32)
  y = rng.normal(size=(SAMPLES, 3)).astype(np.float32)
  tf.keras.utils.set_random_seed(7)
  model = tf.keras.Sequential([tf.keras.Input((6,)), tf.keras.layers.Dense(8, activation="tanh"),
                               tf.keras.layers.Dense(3)])
  model.compile(tf.keras.optimizers.SGD(0.1), "mse", run_eagerly=run_eagerly)
  ema = swa_ops.keras.EMA(momentum=MOMENTUM, overwrite_frequency=frequency)
  before, after = Recorder(), Recorder(lambda: ema.averages)
  model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
            callbacks=[before, ema, after])
  results = dict(is_tf_keras=model.__class__.__module__.startswith("tf_keras"),
                 steps=len(after.averages), count=len(model.trainable_weights),
                 num_updates=ema.num_updates, momentum=MOMENTUM)
  for n in range(len(after.averages)):
    for i in range(len(model.trainable_weights)):
      results["before_%d_%d" % (n, i)] = before.weights[n][i]
      results["average_%d_%d" % (n, i)] = after.averages[n][i]
      results["weight_%d_%d" % (n, i)] = after.weights[n][i]
  for i, weight in enumerate(model.trainable_weights):
    results["final_%d" % i] = weight.numpy()
  return results


def main(out):
  for frequency in (None, 1, 3):
    for run_eagerly in (False, True):
      np.savez(os.path.join(out, "f%s_eager%d.npz" % (frequency, run_eagerly)),
               **run(frequency, run_eagerly))
  print("DONE")


if __name__ == "__main__":
  main(sys.argv[1])
