"""swa_ops.keras with Keras 2 (tf_keras), run in a subprocess by tests/test_keras2.py.

TF_USE_LEGACY_KERAS=1 must be set before TensorFlow is imported (it decides what `tf.keras`
is), so these scenarios run here and save what they see (np.savez) for the test to compare
with float64 NumPy oracles:

  python keras2_worker.py OUT_DIR

- epoch_<mode>.npz, mode in MODES: a Dense model trained with SWA(start=2) for EPOCHS epochs;
  the weights at every epoch end (recorded by a plain tf_keras callback), the model's weights
  after fit (the averages, assign_at_end), the averager's averages, and val_swa_loss.
- step.npz: SWA(unit="step", start=3, period=2); the weights after every training step.
- update_bn.npz: update_bn on a model whose first layer is BatchNormalization; the inputs of
  each batch and the layer's statistics afterwards.
- update_bn_fused.npz: the same on 4-D inputs (tf_keras' fused BatchNormalization).
- swap.npz: the weights before, inside and after `callback.averaged_weights()`.
- export.npz and the SavedModels export_averaged/ (swa_ops.export_averaged) and
  saved_after_callback/ (tf.saved_model.save after assign_averages): the epoch snapshots and
  the live weights before and after export_averaged.
"""
import os
import sys

if __name__ == "__main__":  # Not when test_keras2.py imports the constants below.
  os.environ["TF_USE_LEGACY_KERAS"] = "1"
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import swa_ops  # noqa: E402

MODES = ("compiled", "run_eagerly", "jit_compile")
EPOCHS = 5
START = 2
BATCH = 16
SAMPLES = 64
STEP_START, STEP_PERIOD, STEP_EPOCHS = 3, 2, 2


def data(seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(SAMPLES, 4)).astype(np.float32)
  y = (x @ np.array([[1.0], [-2.0], [0.5], [3.0]], np.float32) + 0.3).astype(np.float32)
  return x, y


def dense_model(mode):
  tf.keras.utils.set_random_seed(0)
  model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(1)])
  model.compile(tf.keras.optimizers.SGD(0.05), "mse", run_eagerly=mode == "run_eagerly",
                jit_compile=mode == "jit_compile")
  return model


class Recorder(tf.keras.callbacks.Callback):
  """A plain tf_keras callback: the trainable weights at every epoch end (or step end)."""

  def __init__(self, per_step=False):
    super().__init__()
    self.per_step = per_step
    self.snapshots = []

  def _record(self):
    self.snapshots.append([w.numpy() for w in self.model.trainable_weights])

  def on_epoch_end(self, epoch, logs=None):
    if not self.per_step:
      self._record()

  def on_train_batch_end(self, batch, logs=None):
    if self.per_step:
      self._record()


def stack(snapshots, results, prefix):
  for i in range(len(snapshots[0])):
    results["%s_%d" % (prefix, i)] = np.stack([s[i] for s in snapshots])


def epoch_run(mode, out):
  x, y = data()
  model = dense_model(mode)
  recorder = Recorder()
  swa = swa_ops.keras.SWA(start=START, swa_validation_data=(x[:32], y[:32]))
  history = model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, callbacks=[recorder, swa],
                      verbose=0, shuffle=False)
  results = {"val_swa_loss": np.array(history.history["val_swa_loss"]),
             "num_averaged": swa.num_averaged,
             "is_tf_keras": isinstance(model, sys.modules["tf_keras"].Model)}
  stack(recorder.snapshots, results, "snapshot")
  for i, weight in enumerate(model.trainable_weights):
    results["final_%d" % i] = weight.numpy()
    results["average_%d" % i] = swa.averager.average(weight).numpy()
  np.savez(os.path.join(out, "epoch_%s.npz" % mode), **results)


def step_run(out):
  x, y = data(1)
  model = dense_model("compiled")
  recorder = Recorder(per_step=True)
  swa = swa_ops.keras.SWA(start=STEP_START, period=STEP_PERIOD, unit="step")
  model.fit(x, y, batch_size=BATCH, epochs=STEP_EPOCHS, callbacks=[recorder, swa], verbose=0,
            shuffle=False)
  results = {"num_averaged": swa.num_averaged}
  stack(recorder.snapshots, results, "snapshot")
  for i, weight in enumerate(model.trainable_weights):
    results["final_%d" % i] = weight.numpy()
  np.savez(os.path.join(out, "step.npz"), **results)


def update_bn_run(out):
  rng = np.random.default_rng(2)
  x = (rng.normal(size=(40, 3)) * [1.0, 4.0, 0.1] + [0.5, -3.0, 10.0]).astype(np.float32)
  batches = [x[i:i + 16] for i in range(0, 40, 16)]  # Batches of 16, 16 and 8.
  model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.BatchNormalization(
      momentum=0.9), tf.keras.layers.Dense(2)])
  bn = model.layers[0]
  kernel_before = model.layers[1].kernel.numpy()
  count = swa_ops.keras.update_bn(model, tf.data.Dataset.from_tensor_slices(x).batch(16))
  np.savez(os.path.join(out, "update_bn.npz"), count=count, momentum=bn.momentum,
           mean=bn.moving_mean.numpy(), variance=bn.moving_variance.numpy(),
           kernel_before=kernel_before, kernel_after=model.layers[1].kernel.numpy(),
           **{"batch_%d" % i: b for i, b in enumerate(batches)})


def update_bn_fused_run(out):
  """A BatchNormalization on 4-D inputs: tf_keras uses TensorFlow's fused kernel."""
  rng = np.random.default_rng(4)
  x = (rng.normal(size=(12, 2, 2, 3)) * 3.0 + 1.0).astype(np.float32)
  model = tf.keras.Sequential([tf.keras.Input((2, 2, 3)), tf.keras.layers.BatchNormalization()])
  count = swa_ops.keras.update_bn(model, x, batch_size=4)
  bn = model.layers[0]
  np.savez(os.path.join(out, "update_bn_fused.npz"), count=count, fused=bool(bn.fused), x=x,
           mean=bn.moving_mean.numpy(), variance=bn.moving_variance.numpy())


def swap_run(out):
  x, y = data(3)
  model = dense_model("compiled")
  swa = swa_ops.keras.SWA(start=0, assign_at_end=False)
  model.fit(x, y, batch_size=BATCH, epochs=3, callbacks=[swa], verbose=0)
  results = {}
  for i, weight in enumerate(model.trainable_weights):
    results["before_%d" % i] = weight.numpy()
    results["average_%d" % i] = swa.averager.average(weight).numpy()
  with swa.averaged_weights():
    for i, weight in enumerate(model.trainable_weights):
      results["inside_%d" % i] = weight.numpy()
  for i, weight in enumerate(model.trainable_weights):
    results["after_%d" % i] = weight.numpy()
  np.savez(os.path.join(out, "swap.npz"), **results)


def export_run(out):
  """Serving a tf_keras model's averages: export_averaged (live weights untouched), and the
  documented path for tf_keras, tf.saved_model.save after the callback assigned the averages."""
  x, y = data(4)
  model = dense_model("compiled")
  recorder = Recorder()
  swa = swa_ops.keras.SWA(start=START, assign_at_end=False)
  model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, callbacks=[recorder, swa], verbose=0,
            shuffle=False)
  serve = tf.function(lambda inputs: model(inputs, training=False),
                      input_signature=[tf.TensorSpec([None, 4], tf.float32)])
  results = {"live_before_%d" % i: w.numpy() for i, w in enumerate(model.trainable_weights)}
  swa_ops.export_averaged(model, os.path.join(out, "export_averaged"), swa.averager,
                          signatures=serve)
  results.update({"live_after_%d" % i: w.numpy() for i, w in enumerate(model.trainable_weights)})
  swa.assign_averages()
  tf.saved_model.save(model, os.path.join(out, "saved_after_callback"), signatures=serve)
  stack(recorder.snapshots, results, "snapshot")
  np.savez(os.path.join(out, "export.npz"), **results)


def main(out):
  for mode in MODES:
    epoch_run(mode, out)
  step_run(out)
  update_bn_run(out)
  update_bn_fused_run(out)
  swap_run(out)
  export_run(out)
  print("DONE")


if __name__ == "__main__":
  main(sys.argv[1])
