"""Graph structure, TF1 names, variables_to_restore / Saver, and agreement with the reference.

* One op per variable: a traced `apply()` (tf.function, TF1 graph mode with resource and with
  reference variables) holds, with grouped=False, exactly one SWAAssignVariable (SWAAssignRef) op per variable and no
  other per-variable work; see `_check_only_bounded_overhead` for exactly what else is allowed.
* TF1 names of shadows and debias state, as SPEC.md states them.
* `variables_to_restore()` and a `tf.compat.v1.train.Saver` round trip.
* The ORIGINAL reference (../shared/reference/swa_moving_average.py beside the repo), run in a
  subprocess (it needs tf.compat.v1.disable_v2_behavior(), which is process-global), gives the
  same names and, to 1e-6 relative, the same values as swa_ops on the same model.

Numbers are checked against float64 NumPy oracles written from SPEC.md.
"""
import collections
import json
import os
from pathlib import Path
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import swa_ops  # noqa: E402
from swa_ops import _ops  # noqa: E402
from conftest import session_ancestors  # noqa: E402

REFERENCE_PATH = Path(__file__).resolve().parents[2] / "shared" / "reference" / "swa_moving_average.py"

# --------------------------------------------------------------------------------------------
# Helpers (kept in this file on purpose: conftest.py belongs to other work).
# --------------------------------------------------------------------------------------------

# Besides the one update op per variable, a traced apply() may contain only ops of these types,
# and only a bounded number of them (the same for 5 and for 50 variables): reading and casting
# the step once, a NoOp grouping the updates, constants, identities.
BOUNDED_OVERHEAD_TYPES = {"Const", "Placeholder", "NoOp", "ReadVariableOp", "Identity", "Cast"}
MAX_OVERHEAD_OPS = 8


def _check_only_bounded_overhead(counter, update_type, n):
  """`counter`: op type -> count of the ops doing the work of one apply(), without the
  Placeholders of captured handles and without the variables themselves. Exactly n update ops;
  the rest of allowed types and at most MAX_OVERHEAD_OPS of them. Returns the overhead."""
  assert counter[update_type] == n, counter
  overhead = {t: c for t, c in counter.items() if t != update_type}
  assert set(overhead) <= BOUNDED_OVERHEAD_TYPES, (
      "ops other than %s and bounded overhead: %s" % (update_type, overhead))
  assert sum(overhead.values()) <= MAX_OVERHEAD_OPS, overhead
  return overhead


def _values(i, shape=(2, 3), dtype=np.float32):
  rng = np.random.default_rng(1000 + i)
  return rng.normal(size=shape).astype(dtype)


# --------------------------------------------------------------------------------------------
# One op per variable
# --------------------------------------------------------------------------------------------


def _trace_apply_in_tf_function(n):
  variables = [tf.Variable(_values(i), name="fn/w%d" % i) for i in range(n)]
  step = tf.Variable(0, dtype=tf.int64, name="fn/step")
  swa = swa_ops.SWAMovingAverage(step, grouped=False)

  @tf.function
  def update():
    swa.apply(variables)

  graph = update.get_concrete_function().graph
  return variables, step, swa, update, graph


def _tf_function_overhead(n):
  """Checks the traced graph of apply() over n variables and returns its overhead counter."""
  variables, step, swa, update, graph = _trace_apply_in_tf_function(n)
  ops = graph.get_operations()
  counter = collections.Counter(op.type for op in ops)

  # Placeholders: exactly the captured handles (n variables, n shadows, the step) -- captures,
  # not work. Nothing else is a Placeholder, and every capture is a resource handle.
  captures = graph.captures
  internal_of = {id(external): internal for external, internal in captures}
  placeholders = [op for op in ops if op.type == "Placeholder"]
  assert {op.name for op in placeholders} == {internal.op.name for _, internal in captures}
  assert len(placeholders) == 2 * n + 1
  assert all(internal.dtype == tf.resource for _, internal in captures)

  # Each variable has exactly one SWAAssignVariable, and it consumes the variable's handle and
  # its shadow's handle directly (no per-variable ReadVariableOp of the value).
  updates = [op for op in ops if op.type == "SWAAssignVariable"]
  by_inputs = collections.Counter((op.inputs[0].name, op.inputs[1].name) for op in updates)
  for v in variables:
    shadow = swa.average(v)
    key = (internal_of[id(shadow.handle)].name, internal_of[id(v.handle)].name)
    assert by_inputs[key] == 1, (v.name, by_inputs)
  step_inputs = {op.inputs[2].name for op in updates}
  assert len(step_inputs) == 1  # One step read, shared by all updates.

  counter["Placeholder"] -= len(placeholders)
  overhead = _check_only_bounded_overhead(+counter, "SWAAssignVariable", n)

  # And the traced function computes the SPEC's numbers (n = 0: the shadow becomes the value).
  update()
  for v in variables[:3]:
    np.testing.assert_array_equal(swa.average(v).numpy(), v.numpy())
  step.assign(1)
  for i, v in enumerate(variables[:3]):
    v.assign(_values(100 + i))
  update()
  for i, v in enumerate(variables[:3]):
    expected = (_values(i).astype(np.float64) + _values(100 + i)) / 2
    np.testing.assert_allclose(swa.average(v).numpy(), expected, rtol=1e-6, atol=1e-7)
  return overhead


def test_tf_function_apply_is_one_op_per_variable():
  """A traced apply() over 50 variables inside tf.function contains exactly 50
  SWAAssignVariable ops, one per variable, and otherwise only: one Placeholder per captured
  handle (variable, shadow, step: captures, not work) and a bounded number (the same for 5 and
  50 variables, at most MAX_OVERHEAD_OPS) of Const/NoOp/ReadVariableOp/Identity/Cast."""
  overhead_50 = _tf_function_overhead(50)
  overhead_5 = _tf_function_overhead(5)
  assert overhead_50 == overhead_5


def _graph_mode_apply(n, use_resource):
  """TF1 graph mode: counts the ops that each of two apply() calls adds to the graph.

  Returns the bounded overhead of the first and of the second apply()."""
  update_type = "SWAAssignVariable" if use_resource else "SWAAssignRef"
  variable_type = "VarHandleOp" if use_resource else "VariableV2"
  with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as sess:
    variables = [tf.compat.v1.Variable(_values(i), name="g/w%d" % i, use_resource=use_resource)
                 for i in range(n)]
    step = tf.compat.v1.train.get_or_create_global_step()
    swa = swa_ops.SWAMovingAverage(step, grouped=False)

    before = set(graph.get_operations())
    update = swa.apply(variables)
    created = set(graph.get_operations()) - before
    shadows = [swa.average(v) for v in variables]
    shadow_ops = {s.op for s in shadows}
    assert len(shadow_ops) == n and shadow_ops <= created
    assert all(op.type == variable_type for op in shadow_ops)

    # What running `update` executes, among the ops apply() created: the update ops and the
    # bounded overhead (the shadows themselves are state, not work).
    per_step = (session_ancestors([update]) & created) - shadow_ops
    counter_first = collections.Counter(op.type for op in per_step)
    # Everything else apply() created is never run by the update: the shadows' initialisers
    # (and the helper ops TF adds beside every variable). No update op hides there.
    not_run = created - per_step - shadow_ops
    assert not any(op.type == update_type for op in not_run)
    assert {s.initializer for s in shadows} <= not_run

    # A second apply() of the same variables creates no variable and only the update ops.
    before = set(graph.get_operations())
    update_2 = swa.apply(variables)
    created_2 = set(graph.get_operations()) - before
    assert created_2 <= session_ancestors([update_2])
    counter_second = collections.Counter(op.type for op in created_2)
    assert not any(op.type == variable_type for op in created_2)
    assert len(tf.compat.v1.global_variables()) == 2 * n + 1

    # Each update op writes its own shadow and reads its variable: the resource handle itself,
    # or for a reference variable its snapshot '<var>/read' (the Identity every TF1 reference
    # variable has from its creation: not created by apply(), it only forwards the buffer).
    updates = [op for op in per_step if op.type == update_type]
    pairs = {(op.inputs[0].op.name, op.inputs[1].op.name) for op in updates}
    value_op = (lambda v: v.op) if use_resource else (lambda v: v.value().op)
    assert pairs == {(s.op.name, value_op(v).name) for s, v in zip(shadows, variables)}
    # Of the ops that existed before apply(), the update runs only the variables (and those
    # snapshots) and the step variable.
    pre_existing = session_ancestors([update]) - created
    allowed = {v.op for v in variables} | {step.op} | {value_op(v) for v in variables}
    assert pre_existing <= allowed, sorted(op.name for op in pre_existing - allowed)

    # It computes the SPEC's numbers.
    sess.run(tf.compat.v1.variables_initializer(variables + [step]))
    sess.run([s.initializer for s in shadows])
    sess.run(update)  # n = 0
    sess.run(step.assign(1))
    sess.run([v.assign(_values(100 + i)) for i, v in enumerate(variables[:3])])
    sess.run(update_2)  # n = 1
    for i, s in enumerate(shadows[:3]):
      expected = (_values(i).astype(np.float64) + _values(100 + i)) / 2
      np.testing.assert_allclose(sess.run(s), expected, rtol=1e-6, atol=1e-7)
  return (_check_only_bounded_overhead(counter_first, update_type, n),
          _check_only_bounded_overhead(counter_second, update_type, n))


@pytest.mark.parametrize("use_resource", [True, False], ids=["resource", "reference"])
def test_graph_mode_apply_is_one_op_per_variable(use_resource):
  """TF1 graph mode, with resource variables (SWAAssignVariable) and TF1 reference variables
  (SWAAssignRef): among the ops apply() adds to the graph, what the update executes is exactly
  one update op per variable plus a bounded overhead (same for 5 and 50 variables); all other
  new ops are the shadows and their initialisers, which the update never runs."""
  first_50, second_50 = _graph_mode_apply(50, use_resource)
  first_5, second_5 = _graph_mode_apply(5, use_resource)
  assert first_50 == first_5
  assert second_50 == second_5


# --------------------------------------------------------------------------------------------
# TF1 names
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("use_resource", [True, False], ids=["resource", "reference"])
def test_tf1_shadow_names(use_resource):
  with tf.Graph().as_default():
    kernel = tf.compat.v1.Variable(_values(0), name="dense/kernel", use_resource=use_resource)
    swa = swa_ops.SWAMovingAverage(0)
    assert swa.average(kernel) is None
    assert swa.average_name(kernel) == "dense/kernel/SWAMovingAverage"
    assert swa.average_name(kernel) == "dense/kernel/SWAMovingAverage"  # Not reserved.
    custom = swa_ops.SWAMovingAverage(0, name="MyAverage")
    assert custom.average_name(kernel) == "dense/kernel/MyAverage"

    swa.apply([kernel])
    custom.apply([kernel])
    shadow, custom_shadow = swa.average(kernel), custom.average(kernel)
    assert shadow.name == "dense/kernel/SWAMovingAverage:0"
    assert swa.average_name(kernel) == "dense/kernel/SWAMovingAverage"
    assert custom_shadow.name == "dense/kernel/MyAverage:0"
    assert custom.average_name(kernel) == "dense/kernel/MyAverage"
    for s in (shadow, custom_shadow):
      assert not s.trainable
      assert s.shape == kernel.shape and s.dtype == kernel.dtype
      assert _is_resource(s) == use_resource
    assert [v.name for v in tf.compat.v1.trainable_variables()] == ["dense/kernel:0"]
    mav = tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.MOVING_AVERAGE_VARIABLES)
    assert any(v is kernel for v in mav)
    assert not any(v is shadow or v is custom_shadow for v in mav)
    assert {v.name for v in tf.compat.v1.global_variables()} == {
        "dense/kernel:0", "dense/kernel/SWAMovingAverage:0", "dense/kernel/MyAverage:0"}


def _is_resource(variable):
  return _ops.is_resource_variable(variable)


@pytest.mark.parametrize("use_resource", [True, False], ids=["resource", "reference"])
def test_tf1_zero_debiased_tensor_names(use_resource):
  with tf.Graph().as_default():
    kernel = tf.compat.v1.Variable(_values(0), name="dense/kernel", use_resource=use_resource)
    x = tf.constant(_values(1, shape=(4, 2)))
    activation = tf.matmul(x, kernel, name="dense/MatMul")
    swa = swa_ops.SWAMovingAverage(0, zero_debias=True)
    swa.apply([kernel, activation])
    shadow = swa.average(activation)
    assert shadow.name == "dense/MatMul/SWAMovingAverage:0"
    assert swa.average_name(activation) == "dense/MatMul/SWAMovingAverage"
    names = {v.name: v for v in tf.compat.v1.global_variables()}
    # The Tensor's shadow is debiased: biased and local_step in scope '<avg op name>/'.
    biased = names["dense/MatMul/SWAMovingAverage/biased:0"]
    local_step = names["dense/MatMul/SWAMovingAverage/local_step:0"]
    assert biased.shape == activation.shape and biased.dtype == tf.float32
    assert local_step.shape == () and local_step.dtype == tf.float32
    assert set(names) == {
        "dense/kernel:0", "dense/kernel/SWAMovingAverage:0", "dense/MatMul/SWAMovingAverage:0",
        "dense/MatMul/SWAMovingAverage/biased:0", "dense/MatMul/SWAMovingAverage/local_step:0"}
    for v in names.values():
      assert v is kernel or not v.trainable
    # A Variable's shadow is not debiased (no state beside it); Tensors are not collected.
    mav = tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.MOVING_AVERAGE_VARIABLES)
    assert len(mav) == 1 and mav[0] is kernel


@pytest.mark.parametrize("use_resource", [True, False], ids=["resource", "reference"])
def test_tf1_assign_moving_average_debias_names(use_resource):
  """assign_moving_average(zero_debias=True) twice on one variable in TF1 graph mode:
  'biased', 'local_step', then 'biased_1', 'local_step_1', in scope '<variable op name>/'; and
  the two updates keep separate state (each is a correct debiased EMA of its own)."""
  with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
    bias = tf.compat.v1.Variable(np.zeros(3, np.float32), name="dense/bias",
                                 use_resource=use_resource)
    value = tf.compat.v1.placeholder(tf.float32, [3])
    first = swa_ops.assign_moving_average(bias, value, 0.5)
    second = swa_ops.assign_moving_average(bias, value, 0.9)
    names = [v.name for v in tf.compat.v1.global_variables()]
    assert names == ["dense/bias:0", "dense/bias/biased:0", "dense/bias/local_step:0",
                     "dense/bias/biased_1:0", "dense/bias/local_step_1:0"]
    for v in tf.compat.v1.global_variables()[1:]:
      assert not v.trainable
      assert _is_resource(v) == use_resource
    assert [v.name for v in tf.compat.v1.trainable_variables()] == ["dense/bias:0"]

    sess.run(tf.compat.v1.global_variables_initializer())
    x = np.array([1.0, -2.0, 3.0])
    got = sess.run(first, {value: x})
    np.testing.assert_allclose(got, x, rtol=1e-6)  # One debiased step gives the value itself.
    got = sess.run(second, {value: 2 * x})  # Its own (fresh) state: again the value itself.
    np.testing.assert_allclose(got, 2 * x, rtol=1e-6)
    # Second step of the first update: biased = 0.5*x*0.5 + 0.5*3x... computed by the oracle.
    biased, local_step = 0.5 * x, 1.0
    biased = biased - (biased - 3 * x) * 0.5
    local_step += 1
    np.testing.assert_allclose(sess.run(first, {value: 3 * x}), biased / (1 - 0.5 ** local_step),
                               rtol=1e-6)


# --------------------------------------------------------------------------------------------
# variables_to_restore and a Saver round trip
# --------------------------------------------------------------------------------------------


def _build_model(use_resource, seed):
  kernel = tf.compat.v1.Variable(_values(seed), name="dense/kernel", use_resource=use_resource)
  bias = tf.compat.v1.Variable(_values(seed + 1, shape=(3,)), name="dense/bias",
                               use_resource=use_resource)
  step = tf.compat.v1.train.get_or_create_global_step()
  return kernel, bias, step


@pytest.mark.parametrize("use_resource", [True, False], ids=["resource", "reference"])
def test_variables_to_restore_map(use_resource):
  with tf.Graph().as_default():
    kernel, bias, step = _build_model(use_resource, 0)
    other = tf.compat.v1.Variable(1.0, name="other/counter", trainable=False,
                                  use_resource=use_resource)
    swa = swa_ops.SWAMovingAverage(step)
    # Before apply(): the names the shadows will get.
    assert swa.variables_to_restore() == {
        "dense/kernel/SWAMovingAverage": kernel, "dense/bias/SWAMovingAverage": bias,
        "global_step": step, "other/counter": other}
    swa.apply([kernel, bias])
    k_shadow, b_shadow = swa.average(kernel), swa.average(bias)
    # Default: trainable + moving-average variables map average_name(v) -> v; the shadows'
    # own names are taken by that, the other global variables map op name -> v.
    restore = swa.variables_to_restore()
    assert restore == {"dense/kernel/SWAMovingAverage": kernel,
                       "dense/bias/SWAMovingAverage": bias,
                       "global_step": step, "other/counter": other}
    assert all(restore[k] is v for k, v in [("dense/kernel/SWAMovingAverage", kernel),
                                             ("global_step", step)])
    # Only the kernel averaged: the bias, the bias's shadow itself and the step by op name.
    restore = swa.variables_to_restore([kernel])
    assert restore == {"dense/kernel/SWAMovingAverage": kernel, "dense/bias": bias,
                       "dense/bias/SWAMovingAverage": b_shadow, "global_step": step,
                       "other/counter": other}
    assert restore["dense/bias/SWAMovingAverage"] is b_shadow
    assert not any(v is k_shadow for v in restore.values())  # Its name restores the kernel.
    # Duplicates in the list are fine.
    assert swa.variables_to_restore([kernel, kernel]) == restore


@pytest.mark.parametrize("use_resource", [True, False], ids=["resource", "reference"])
def test_saver_restores_averages_into_model(tmp_path, use_resource):
  steps = 6
  kernels = [_values(10 + i) for i in range(steps)]
  biases = [_values(50 + i, shape=(3,)) for i in range(steps)]
  mean_kernel = np.mean(np.asarray(kernels, np.float64), axis=0)
  mean_bias = np.mean(np.asarray(biases, np.float64), axis=0)
  path = str(tmp_path / "model.ckpt")

  # Session A: "train" (assign values), average at steps 0..5, save.
  with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
    kernel, bias, step = _build_model(use_resource, 0)
    swa = swa_ops.SWAMovingAverage(step)
    update = swa.apply([kernel, bias])
    increment = tf.compat.v1.assign_add(step, 1)
    kernel_in = tf.compat.v1.placeholder(tf.float32, kernel.shape)
    bias_in = tf.compat.v1.placeholder(tf.float32, bias.shape)
    assign = [kernel.assign(kernel_in), bias.assign(bias_in)]
    # Shadows start at the initial value; initialise the model first for reference variables
    # (see test_bad_input.test_shadow_initializer_does_not_need_variable).
    sess.run(tf.compat.v1.variables_initializer([kernel, bias, step]))
    sess.run(tf.compat.v1.global_variables_initializer())
    for k, b in zip(kernels, biases):
      sess.run(assign, {kernel_in: k, bias_in: b})
      sess.run(update)
      sess.run(increment)
    np.testing.assert_allclose(sess.run(swa.average(kernel)), mean_kernel, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(sess.run(swa.average(bias)), mean_bias, rtol=1e-6, atol=1e-6)
    # The model holds the last values, which differ from the averages.
    assert np.max(np.abs(sess.run(kernel) - mean_kernel)) > 0.1
    tf.compat.v1.train.Saver().save(sess, path)

  # Session B: a fresh graph with the same model, restored through variables_to_restore().
  with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
    kernel, bias, step = _build_model(use_resource, 7)
    swa = swa_ops.SWAMovingAverage(step)
    saver = tf.compat.v1.train.Saver(swa.variables_to_restore())
    saver.restore(sess, path)
    np.testing.assert_allclose(sess.run(kernel), mean_kernel, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(sess.run(bias), mean_bias, rtol=1e-6, atol=1e-6)
    assert sess.run(step) == steps


# --------------------------------------------------------------------------------------------
# Agreement with the ORIGINAL reference implementation (subprocess, TF1 behaviour)
# --------------------------------------------------------------------------------------------

_CHILD = r'''
import importlib.util, json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np
import tensorflow as tf
tf.compat.v1.disable_v2_behavior()
spec = importlib.util.spec_from_file_location("swa_reference_original", sys.argv[1])
reference = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reference)
import swa_ops

cfg = json.load(sys.stdin)


def run(module):
  graph = tf.Graph()
  with graph.as_default(), tf.compat.v1.Session(graph=graph) as sess:
    kernel = tf.compat.v1.Variable(np.array(cfg["kernel_init"], np.float32), name="dense/kernel",
                                   use_resource=False)
    bias = tf.compat.v1.Variable(np.array(cfg["bias_init"], np.float32), name="dense/bias",
                                 use_resource=False)
    step = tf.compat.v1.train.get_or_create_global_step()
    x = tf.constant(np.array(cfg["x"], np.float32))
    activation = tf.add(tf.matmul(x, kernel), bias, name="dense/act")
    averager = module.SWAMovingAverage(step, zero_debias=True)
    names_before = {v.op.name: averager.average_name(v) for v in (kernel, bias)}
    update = averager.apply([kernel, bias, activation])
    increment = tf.compat.v1.assign_add(step, 1)
    kernel_in = tf.compat.v1.placeholder(tf.float32, kernel.shape)
    bias_in = tf.compat.v1.placeholder(tf.float32, bias.shape)
    assign = [tf.compat.v1.assign(kernel, kernel_in), tf.compat.v1.assign(bias, bias_in)]
    sess.run(tf.compat.v1.global_variables_initializer())
    for k, b in zip(cfg["kernels"], cfg["biases"]):
      sess.run(assign, {kernel_in: k, bias_in: b})
      sess.run(update)
      sess.run(increment)
    variables = tf.compat.v1.global_variables()
    return {
        "global_variables": [v.name for v in variables],
        "resource": [swa_ops._ops.is_resource_variable(v) for v in variables],
        "trainable": [v.name for v in tf.compat.v1.trainable_variables()],
        "moving_average_variables": [
            v.name for v in tf.compat.v1.get_collection(
                tf.compat.v1.GraphKeys.MOVING_AVERAGE_VARIABLES)],
        "names_before": names_before,
        "average_names": {t.name: averager.average_name(t) for t in (kernel, bias, activation)},
        "shadows": {t.name: averager.average(t).name for t in (kernel, bias, activation)},
        "restore": {k: v.name for k, v in averager.variables_to_restore().items()},
        "values": {v.name: sess.run(v).tolist() for v in variables},
    }


print("RESULT " + json.dumps({"reference": run(reference), "swa_ops": run(swa_ops)}))
'''


@pytest.fixture(scope="module")
def comparison():
  """Runs the reference and swa_ops on the same model and inputs in a subprocess."""
  if not REFERENCE_PATH.is_file():
    pytest.skip("the reference implementation %s (../shared/reference beside the repo) is "
                "not there" % REFERENCE_PATH)
  steps = 20
  rng = np.random.default_rng(7)
  cfg = {
      "kernel_init": rng.normal(size=(2, 3)).astype(np.float32).tolist(),
      "bias_init": rng.normal(size=(3,)).astype(np.float32).tolist(),
      "x": rng.normal(size=(4, 2)).astype(np.float32).tolist(),
      "kernels": [rng.normal(size=(2, 3)).astype(np.float32).tolist() for _ in range(steps)],
      "biases": [rng.normal(size=(3,)).astype(np.float32).tolist() for _ in range(steps)],
  }
  package_parent = str(Path(swa_ops.__file__).resolve().parent.parent)
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(
      [package_parent] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
  env["TF_CPP_MIN_LOG_LEVEL"] = "3"
  proc = subprocess.run([sys.executable, "-c", _CHILD, str(REFERENCE_PATH)],
                        input=json.dumps(cfg), capture_output=True, text=True, env=env,
                        timeout=300)
  lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
  assert proc.returncode == 0 and lines, (
      "subprocess failed (rc %d):\n%s\n%s" % (proc.returncode, proc.stdout[-3000:],
                                              proc.stderr[-6000:]))
  result = json.loads(lines[-1][len("RESULT "):])
  return cfg, result["reference"], result["swa_ops"]


def _oracle(cfg):
  """float64 model: SWA means of kernel and bias; the reference's zero-debiased average of the
  activation Tensor with decay n / (n + 1) at step n (SPEC: not the mean, 4/3 of it at n = 1)."""
  kernels = np.asarray(cfg["kernels"], np.float64)
  biases = np.asarray(cfg["biases"], np.float64)
  x = np.asarray(cfg["x"], np.float64)
  biased, local_step, average = np.zeros((4, 3)), 0.0, None
  for n, (k, b) in enumerate(zip(kernels, biases)):
    activation = x @ k + b
    decay = n / (n + 1.0)
    biased = biased - (biased - activation) * (1.0 - decay)
    local_step += 1.0
    average = biased / (1.0 - decay ** local_step)
  return {"dense/kernel/SWAMovingAverage:0": kernels.mean(axis=0),
          "dense/bias/SWAMovingAverage:0": biases.mean(axis=0),
          "dense/act/SWAMovingAverage:0": average,
          "dense/act/SWAMovingAverage/local_step:0": np.float64(len(kernels))}


def test_reference_names_match(comparison):
  _, ref, ours = comparison
  assert ours["global_variables"] == ref["global_variables"]
  assert ref["global_variables"] == [
      "dense/kernel:0", "dense/bias:0", "global_step:0", "dense/kernel/SWAMovingAverage:0",
      "dense/bias/SWAMovingAverage:0", "dense/act/SWAMovingAverage:0",
      "dense/act/SWAMovingAverage/biased:0", "dense/act/SWAMovingAverage/local_step:0"]
  # The averages of reference variables are reference variables too, as in the reference.
  names = ours["global_variables"]
  assert [r for n, r in zip(names, ours["resource"]) if n != "global_step:0"] == \
      [r for n, r in zip(names, ref["resource"]) if n != "global_step:0"]
  for key in ("trainable", "moving_average_variables", "names_before", "average_names",
              "shadows", "restore"):
    assert ours[key] == ref[key], key
  assert ref["names_before"] == {"dense/kernel": "dense/kernel/SWAMovingAverage",
                                 "dense/bias": "dense/bias/SWAMovingAverage"}
  assert ref["shadows"]["dense/act:0"] == "dense/act/SWAMovingAverage:0"


def test_reference_values_match(comparison):
  cfg, ref, ours = comparison
  oracle = _oracle(cfg)
  assert set(ours["values"]) == set(ref["values"])
  for name in ours["values"]:
    ref_value = np.asarray(ref["values"][name], np.float64)
    our_value = np.asarray(ours["values"][name], np.float64)
    scale = max(1.0, float(np.max(np.abs(ref_value))))
    # Small n, float32: the reference's float32 decay is accurate to ~1e-7 relative.
    np.testing.assert_allclose(our_value, ref_value, rtol=1e-6, atol=1e-6 * scale, err_msg=name)
  for name, expected in oracle.items():
    our_value = np.asarray(ours["values"][name], np.float64)
    scale = max(1.0, float(np.max(np.abs(expected))))
    np.testing.assert_allclose(our_value, expected, rtol=1e-6, atol=1e-6 * scale, err_msg=name)
  # The averages differ from the last values: the test would notice a no-op averager.
  assert np.max(np.abs(np.asarray(ours["values"]["dense/kernel:0"]) -
                       oracle["dense/kernel/SWAMovingAverage:0"])) > 0.1
