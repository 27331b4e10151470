"""Shared test harness: the same test body runs in each execution mode.

Without TensorFlow installed, only tests/kernels/ is collected.

Modes: `eager` (TF2 eager), `function` (inside tf.function, traced once), `graph_resource`
(TF1 graph + Session, resource variables) and `graph_ref` (TF1 graph + Session, reference
variables as `tf.compat.v1.disable_v2_behavior()` makes them).
"""
import threading

import numpy as np
import pytest

try:
  import tensorflow as tf
except ImportError:
  # Without TensorFlow only the kernels tests (tests/kernels/: swa_ops.kernels on NumPy and
  # DLPack arrays) run; the TensorFlow tests here are not collected.
  tf = None
  collect_ignore_glob = ["test_*.py"]
else:
  import swa_ops  # noqa: F401  (fails loudly if the installed package cannot load)

MODES = ("eager", "function", "graph_resource", "graph_ref")
DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64) if tf is not None else ()


class Harness:
  """Creates variables, builds an update once and runs it repeatedly, in one mode."""

  def __init__(self, mode):
    self.mode = mode
    self.graph_mode = mode.startswith("graph")
    self._assigners = {}
    if self.graph_mode:
      self.graph = tf.Graph()
      self._graph_context = self.graph.as_default()
      self._graph_context.__enter__()
      self.session = tf.compat.v1.Session(graph=self.graph)

  def close(self):
    if self.graph_mode:
      self.session.close()
      self._graph_context.__exit__(None, None, None)

  def variable(self, value, dtype=None, name="v"):
    dtype = tf.float32 if dtype is None else dtype
    value = np.asarray(value, dtype=np.float64)
    if self.graph_mode:
      var = tf.compat.v1.Variable(tf.cast(value, dtype), name=name,
                                  use_resource=self.mode == "graph_resource")
      self.session.run(var.initializer)
      return var
    return tf.Variable(tf.cast(value, dtype), name=name)

  def build(self, update):
    """Returns `run()`, which performs `update()` (built once in graph modes and tf.function)."""
    if self.mode == "eager":
      return update
    if self.mode == "function":
      def traced():
        result = update()
        return result if isinstance(result, tf.Tensor) else None  # Ops can't be returned.
      return tf.function(traced)
    op = update()
    self.session.run(tf.compat.v1.variables_initializer(
        [v for v in tf.compat.v1.global_variables() if not self._is_initialized(v)]))
    return lambda: self.session.run(op)

  def _is_initialized(self, var):
    return self.session.run(tf.compat.v1.is_variable_initialized(var))

  def assign(self, var, value):
    value = np.asarray(value, dtype=np.float64)
    if not self.graph_mode:
      var.assign(tf.cast(value, var.dtype))
      return
    key = var.ref()
    if key not in self._assigners:
      placeholder = tf.compat.v1.placeholder(tf.float64, var.shape)
      self._assigners[key] = (placeholder, tf.compat.v1.assign(var, tf.cast(placeholder, var.dtype)))
    placeholder, op = self._assigners[key]
    self.session.run(op, {placeholder: value})

  def read(self, var):
    value = self.session.run(var) if self.graph_mode else var.numpy()
    return np.asarray(value, dtype=np.float64)


@pytest.fixture(params=MODES)
def harness(request):
  h = Harness(request.param)
  yield h
  h.close()


def tolerance(dtype, steps=1):
  """Absolute tolerance, relative to max|value|, of an average after `steps` updates."""
  eps = {tf.float16: 2.0**-11, tf.bfloat16: 2.0**-8, tf.float32: 2.0**-24, tf.float64: 2.0**-53}[dtype]
  if dtype == tf.float32:
    return 1e-6  # The SPEC's bound: 1e-6 * max|value| after hundreds of steps.
  return 4 * eps * np.sqrt(max(steps, 1)) + 2 * eps


def swa_float32_oracle(average, value, num_updates):
  """One SWA update of float32 `average` toward `value` as the SPEC defines it and the op rounds
  it: weight 1 / (num_updates + 1) in float32, each operation rounded to float32, no FMA."""
  weight = np.float32(1.0 / (num_updates + 1.0))
  return (average - (average - value) * weight).astype(np.float32)


def rounded(values, dtype):
  """Values as stored in `dtype`, back in float64 (the oracle is fed exactly these)."""
  return np.asarray(values, np.float64).astype(dtype.as_numpy_dtype).astype(np.float64)


def session_ancestors(fetches):
  """Every op that running `fetches` (tensors or ops) in a TF1 session executes: the transitive
  data and control inputs."""
  seen, stack = set(), [f.op if isinstance(f, tf.Tensor) else f for f in fetches]
  while stack:
    op = stack.pop()
    if op in seen:
      continue
    seen.add(op)
    stack.extend(t.op for t in op.inputs)
    stack.extend(op.control_inputs)
  return seen


def run_in_threads(tasks, timeout=120.0):
  """Calls each of `tasks` (callables without arguments) in a thread of its own, all at once,
  and waits up to `timeout` seconds for each. Returns (how many threads are still running: a
  deadlock, the exceptions the tasks raised)."""
  errors = []

  def run(task):
    try:
      task()
    except Exception as error:  # pylint: disable=broad-except
      errors.append(error)

  threads = [threading.Thread(target=run, args=(task,)) for task in tasks]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join(timeout=timeout)
  return sum(thread.is_alive() for thread in threads), errors
