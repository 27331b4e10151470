"""Stochastic Weight Averaging with swa_ops.keras.SWA on scikit-learn's digits.

Trains the same small Keras MLP (with BatchNormalization) twice from the same seed: once plain,
once with the SWA callback averaging the weights of the last epochs (then assigned to the model,
with the BatchNormalization statistics refreshed over the training set). The callback does not
change the training trajectory, so the two runs differ only in the averaging. Prints both test
accuracies and the time spent in averaging.

    python examples/digits_swa.py              # 40 epochs: well under a minute on 2 CPU cores
    python examples/digits_swa.py --quick      # 4 epochs (the test suite runs this)
    python examples/digits_swa.py --epochs 60 --swa-start 30

Needs scikit-learn (`pip install scikit-learn`) and swa_ops.
"""
import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import swa_ops  # noqa: E402
import swa_ops.keras  # noqa: E402,F401


def build_model(seed, lr):
  keras.utils.set_random_seed(seed)
  model = keras.Sequential([
      keras.Input((64,)),
      keras.layers.Dense(128),
      keras.layers.BatchNormalization(),
      keras.layers.ReLU(),
      keras.layers.Dropout(0.2),
      keras.layers.Dense(10),
  ])
  model.compile(optimizer=keras.optimizers.SGD(lr, momentum=0.9),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])
  return model


def train(model, data, epochs, batch_size, callbacks=()):
  (x_train, y_train), _ = data
  begin = time.perf_counter()
  model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, verbose=0,
            callbacks=list(callbacks))
  return time.perf_counter() - begin


def evaluate(model, data):
  _, (x_test, y_test) = data
  results = model.evaluate(x_test, y_test, batch_size=256, verbose=0, return_dict=True)
  return results["accuracy"], results["loss"]


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--epochs", type=int, default=40)
  parser.add_argument("--quick", action="store_true", help="4 epochs (a smoke test)")
  parser.add_argument("--swa-start", type=int, default=None,
                      help="first averaged epoch (default: 3/4 of the epochs)")
  parser.add_argument("--lr", type=float, default=0.05)
  parser.add_argument("--batch-size", type=int, default=32)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  epochs = 4 if args.quick else args.epochs
  start = (3 * epochs) // 4 if args.swa_start is None else args.swa_start
  if not 0 <= start < epochs:
    parser.error("--swa-start must be in [0, epochs)")

  digits = load_digits()
  x = (digits.data / 16.0).astype(np.float32)
  x_train, x_test, y_train, y_test = train_test_split(
      x, digits.target, test_size=0.2, random_state=0, stratify=digits.target)
  data = (x_train, y_train), (x_test, y_test)
  print("digits: %d train / %d test samples; MLP 64-128-10 with BatchNormalization and "
        "dropout; SGD lr %g momentum 0.9, batch %d, %d epochs"
        % (len(x_train), len(x_test), args.lr, args.batch_size, epochs))

  plain = build_model(args.seed, args.lr)
  plain_seconds = train(plain, data, epochs, args.batch_size)
  plain_accuracy, plain_loss = evaluate(plain, data)

  model = build_model(args.seed, args.lr)
  swa = swa_ops.keras.SWA(start=start, period=1, unit="epoch", assign_at_end=True,
                          bn_refresh_data=x_train, batch_size=args.batch_size)
  swa_seconds = train(model, data, epochs, args.batch_size, [swa])
  swa_accuracy, swa_loss = evaluate(model, data)

  times_ms = np.asarray(swa.averaging_times) * 1e3
  print("test accuracy without SWA: %.4f  (test loss %.4f; %.1f ms per epoch)"
        % (plain_accuracy, plain_loss, 1e3 * plain_seconds / epochs))
  print("test accuracy with SWA:    %.4f  (test loss %.4f; %.1f ms per epoch with averaging and "
        "the refresh; the average of epochs %d..%d, %d snapshot(s) of %d weights)"
        % (swa_accuracy, swa_loss, 1e3 * swa_seconds / epochs, start, epochs - 1,
           swa.num_averaged, len(model.trainable_weights)))
  later = ("; the others median %.3f ms" % np.median(times_ms[1:])) if len(times_ms) > 1 else ""
  print("averaging: %.3f ms per epoch (%.2f ms in %d update(s): the first, which traces the "
        "tf.function, %.2f ms%s)"
        % (1e3 * swa.averaging_seconds / epochs, times_ms.sum(), len(times_ms), times_ms[0],
           later))
  print("BatchNormalization refresh at the end: %.1f ms (one pass over the training set)"
        % (1e3 * swa.bn_refresh_seconds))


if __name__ == "__main__":
  main()
