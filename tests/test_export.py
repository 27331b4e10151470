"""swa_ops.export_averaged: a SavedModel for serving whose variables hold the averages.

Checked against independent oracles:
* the exported variables hold the averager's averages (bit for bit) and the serving output is
  the float64 NumPy model evaluated with the float64 mean of the training snapshots;
* the live variables and the averages are bit-identical before and after the export;
* saved_model.pb (graph and function library) holds no op type of the swa_ops library;
* `tf.saved_model.load` and a signature call work in a fresh subprocess that never imports
  swa_ops (and, as a control, the same subprocess cannot load a plain tf.saved_model.save of
  the module, whose training function holds swa_ops ops);
* the Keras path: `model.export()` after the SWA callback serves the averages.
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

import swa_ops
from swa_ops import export as swa_export

STEPS = 5
X = np.array([[1.0, -2.0, 0.5], [0.25, 3.0, -1.0]], np.float32)

# Loads a SavedModel, calls a signature on X, prints JSON; never imports swa_ops.
LOADER = textwrap.dedent("""
    import json, sys
    sys.modules["swa_ops"] = None  # Any import of swa_ops now fails.
    import numpy as np
    import tensorflow as tf
    path, signature, key = sys.argv[1:4]
    x = np.array(json.loads(sys.argv[4]), np.float32)
    loaded = tf.saved_model.load(path)
    function = loaded.signatures[signature]
    output = function(tf.constant(x))[key].numpy()
    variables = {v.name: v.numpy().tolist() for v in function.variables}
    assert sys.modules["swa_ops"] is None, "swa_ops imported"
    print(json.dumps({"output": output.tolist(), "variables": variables}))
""")


def _load_elsewhere(path, signature="serving_default", key="output_0", x=X):
  """Runs LOADER in a fresh Python process without swa_ops; returns its result or raises
  RuntimeError with its stderr."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  env.pop("PYTHONPATH", None)  # Nothing of the source tree: swa_ops must not be needed.
  proc = subprocess.run([sys.executable, "-c", LOADER, str(path), signature, key,
                         json.dumps(x.tolist())], capture_output=True, text=True, timeout=120,
                        env=env, cwd="/")
  if proc.returncode != 0:
    raise RuntimeError(proc.stderr[-4000:])
  return json.loads(proc.stdout.strip().splitlines()[-1])


def _same_bits(a, b):
  a, b = np.asarray(a), np.asarray(b)
  return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(
      np.atleast_1d(a).view(np.uint8), np.atleast_1d(b).view(np.uint8))


def _saved_op_types(path):
  saved = saved_model_pb2.SavedModel()
  with open(os.path.join(path, "saved_model.pb"), "rb") as f:
    saved.ParseFromString(f.read())
  types = set()
  for meta_graph in saved.meta_graphs:
    types.update(node.op for node in meta_graph.graph_def.node)
    for function in meta_graph.graph_def.library.function:
      types.update(node.op for node in function.node_def)
  return types


class Linear(tf.Module):
  """y = x @ kernel + bias + offset; kernel and bias averaged, offset (like a BN statistic)
  not; the averager is an attribute and the training step applies it."""

  def __init__(self, average_dtype=None):
    super().__init__()
    self.kernel = tf.Variable(tf.zeros([3, 2]), name="kernel")
    self.bias = tf.Variable(tf.zeros([2]), name="bias")
    self.offset = tf.Variable(tf.zeros([2]), name="offset")
    self.step = tf.Variable(0, dtype=tf.int64, name="step")
    self.averager = swa_ops.SWAMovingAverage(self.step, average_dtype=average_dtype)

  @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
  def __call__(self, x):
    return tf.matmul(x, self.kernel) + self.bias + self.offset

  @tf.function
  def train(self, kernel, bias, offset):
    self.kernel.assign(kernel)
    self.bias.assign(bias)
    self.offset.assign(offset)
    self.averager.apply([self.kernel, self.bias])
    self.step.assign_add(1)


def _snapshots(k):
  rng = np.random.default_rng(k)
  return (rng.normal(size=(3, 2)).astype(np.float32), rng.normal(size=2).astype(np.float32),
          np.full(2, 0.1 * (k + 1), np.float32))


def _trained(average_dtype=None):
  module = Linear(average_dtype)
  for k in range(STEPS):
    module.train(*_snapshots(k))
  return module


def _oracle_output(x):
  kernels, biases, _ = zip(*(_snapshots(k) for k in range(STEPS)))
  kernel = np.mean(np.array(kernels, np.float64), axis=0)
  bias = np.mean(np.array(biases, np.float64), axis=0)
  offset = _snapshots(STEPS - 1)[2].astype(np.float64)  # Not averaged: its last value.
  return x.astype(np.float64) @ kernel + bias + offset


def _state(module):
  return [v.numpy() for v in (module.kernel, module.bias, module.offset, module.step)] + [
      module.averager.average(v).numpy() for v in (module.kernel, module.bias)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  module = _trained()
  before = _state(module)
  path = tmp_path_factory.mktemp("export") / "averaged"
  swa_ops.export_averaged(module, str(path), module.averager)
  return module, before, path


def test_live_variables_and_averages_are_unchanged(exported):
  module, before, _ = exported
  for got, expected in zip(_state(module), before):
    assert _same_bits(got, expected)
  assert not np.array_equal(module.kernel.numpy(), module.averager.average(module.kernel).numpy())


def test_saved_model_holds_no_swa_ops_op(exported):
  _, _, path = exported
  types = _saved_op_types(path)
  assert "MatMul" in types  # The serving graph is there.
  prefixes = ("SWA", "EMA", "DebiasedEMA", "SwapVariables", "AllFinite")
  assert not [t for t in types if t.startswith(prefixes)], types
  assert not types & swa_export.swa_op_names()


def test_loads_and_serves_the_averages_without_swa_ops(exported):
  module, _, path = exported
  result = _load_elsewhere(path)
  average = module.averager.average
  variables = result["variables"]
  assert _same_bits(np.array(variables["kernel:0"], np.float32), average(module.kernel).numpy())
  assert _same_bits(np.array(variables["bias:0"], np.float32), average(module.bias).numpy())
  assert _same_bits(np.array(variables["offset:0"], np.float32), module.offset.numpy())
  np.testing.assert_allclose(result["output"], _oracle_output(X), rtol=1e-6, atol=1e-6)


def test_control_a_plain_saved_model_of_the_module_needs_swa_ops(tmp_path):
  """The reason for export_averaged: tf.saved_model.save(module) keeps the training function,
  whose swa_ops ops a process without swa_ops cannot load (what the issue reported)."""
  module = _trained()
  tf.saved_model.save(module, str(tmp_path / "plain"))
  with pytest.raises(RuntimeError, match="Op type not registered 'SWA"):
    _load_elsewhere(tmp_path / "plain")


def test_wider_average_dtype_is_rounded_to_the_variable(tmp_path):
  module = _trained(average_dtype=tf.float64)
  swa_ops.export_averaged(module, str(tmp_path / "m"), module.averager,
                          signatures={"predict": module.__call__})
  result = _load_elsewhere(tmp_path / "m", signature="predict")
  expected = tf.cast(module.averager.average(module.kernel), tf.float32).numpy()
  assert _same_bits(np.array(result["variables"]["kernel:0"], np.float32), expected)
  np.testing.assert_allclose(result["output"], _oracle_output(X), rtol=1e-6, atol=1e-6)


def test_keras_model_with_explicit_signature(tmp_path):
  import keras  # pylint: disable=import-outside-toplevel
  model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
  step = tf.Variable(0, dtype=tf.int64)
  swa = swa_ops.SWAMovingAverage(step)
  snapshots = []
  for k in range(STEPS):
    kernel, bias, _ = _snapshots(k)
    model.layers[0].kernel.assign(kernel)
    model.layers[0].bias.assign(bias)
    snapshots.append((kernel, bias))
    swa.apply(model.trainable_variables)
    step.assign_add(1)
  live = [w.numpy() for w in model.weights]
  serve = tf.function(lambda x: model(x, training=False),
                      input_signature=[tf.TensorSpec([None, 3], tf.float32)])
  swa_ops.export_averaged(model, str(tmp_path / "k"), swa, signatures=serve)
  for weight, value in zip(model.weights, live):
    assert _same_bits(weight.numpy(), value)
  result = _load_elsewhere(tmp_path / "k")
  kernel = np.mean([s[0].astype(np.float64) for s in snapshots], axis=0)
  bias = np.mean([s[1].astype(np.float64) for s in snapshots], axis=0)
  np.testing.assert_allclose(result["output"], X @ kernel + bias, rtol=1e-6, atol=1e-6)


def test_keras_model_export_after_the_swa_callback(tmp_path):
  """The documented Keras path: fit with the SWA callback (assign_at_end), then model.export."""
  import keras  # pylint: disable=import-outside-toplevel
  keras.utils.set_random_seed(0)
  x = np.random.default_rng(5).normal(size=(32, 3)).astype(np.float32)
  y = x @ np.array([[1.0, 0.0], [-1.0, 2.0], [0.5, 0.5]], np.float32)
  model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
  model.compile(keras.optimizers.SGD(0.05), "mse")
  snapshots = []
  record = keras.callbacks.LambdaCallback(
      on_epoch_end=lambda epoch, logs: snapshots.append([w.numpy() for w in model.weights]))
  model.fit(x, y, batch_size=8, epochs=4, verbose=0, shuffle=False,
            callbacks=[record, swa_ops.keras.SWA(start=1)])
  model.export(str(tmp_path / "keras"), format="tf_saved_model", verbose=False)
  result = _load_elsewhere(tmp_path / "keras")
  kernel = np.mean([s[0].astype(np.float64) for s in snapshots[1:]], axis=0)
  bias = np.mean([s[1].astype(np.float64) for s in snapshots[1:]], axis=0)
  np.testing.assert_allclose(result["output"], X @ kernel + bias, rtol=1e-6, atol=1e-6)


def test_errors_are_clear(tmp_path):
  module = _trained()
  train = module.train.get_concrete_function(*(tf.TensorSpec(s.shape) for s in _snapshots(0)))
  with pytest.raises(swa_ops.ArgumentError, match="signature 'train' runs swa_ops op"):
    swa_ops.export_averaged(module, str(tmp_path / "a"), module.averager,
                            signatures={"train": train})
  assert not (tmp_path / "a").exists()  # Checked before anything is written.
  with pytest.raises(swa_ops.ArgumentError, match="without an input_signature"):
    swa_ops.export_averaged(module, str(tmp_path / "b"), module.averager,
                            signatures=tf.function(lambda x: module(x)))
  other = swa_ops.SWAMovingAverage(0)
  with pytest.raises(swa_ops.ArgumentError, match="has an average"):
    swa_ops.export_averaged(module, str(tmp_path / "c"), other)
  with pytest.raises(swa_ops.ArgumentError, match="no __call__ tf.function"):
    swa_ops.export_averaged(tf.Module(), str(tmp_path / "d"), module.averager)
  import keras  # pylint: disable=import-outside-toplevel
  model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
  with pytest.raises(swa_ops.ArgumentError, match="model.export"):
    swa_ops.export_averaged(model, str(tmp_path / "e"), module.averager)
  with tf.Graph().as_default():
    with pytest.raises(swa_ops.ArgumentError, match="eager execution"):
      swa_ops.export_averaged(module, str(tmp_path / "f"), module.averager)
