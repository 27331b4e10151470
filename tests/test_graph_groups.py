"""Grouped updates in TF1 graphs (Session): SWAVariableGroupByName names the group's resource
variables, so that a session runs two ops per update (the group and the update), not one
VarHandleOp per variable as well."""
import collections

import numpy as np
import pytest
import tensorflow as tf

import swa_ops
from swa_ops import _ops
from conftest import DTYPES, rounded, session_ancestors

MIXED_SHAPES = [(), (0,), (1,), (3, 4), (5,), (2, 0, 3), (17, 3)]


def _ops_run_for(fetch):
  """The op types, counted, that a session runs for `fetch`."""
  return collections.Counter(op.type for op in session_ancestors([fetch]))


def test_a_session_update_runs_no_op_per_variable():
  with tf.Graph().as_default():
    variables = [tf.compat.v1.Variable(tf.zeros([3]), use_resource=True) for _ in range(300)]
    update = swa_ops.SWAMovingAverage(tf.constant(2, tf.int64)).apply(variables)
    run = _ops_run_for(update)
  assert run["SWAAssignGroup"] == 1 and run["SWAVariableGroupByName"] == 1, run
  assert sum(run.values()) <= 6, run  # None per variable: no VarHandleOp, ReadVariableOp, ...


def test_a_zero_debiased_session_update_reads_only_the_tensors():
  """Zero-debiased averages of Tensors: the three state variables of each are named by the
  group; only the tensors' own ops run per value."""
  with tf.Graph().as_default():
    variables = [tf.compat.v1.Variable(tf.zeros([3]), use_resource=True) for _ in range(100)]
    tensors = [v.read_value() * 2.0 for v in variables]
    update = swa_ops.SWAMovingAverage(tf.constant(2, tf.int64), zero_debias=True).apply(tensors)
    run = _ops_run_for(update)
  assert run["DebiasedEMAGroup"] == 1 and run["SWAVariableGroupByName"] == 1, run
  assert run["VarHandleOp"] == 100, run  # The values' variables only, not 300 more.


@pytest.mark.parametrize("zero_debias", [False, True])
def test_graph_mode_grouped_and_per_variable_are_bit_identical(zero_debias):
  """Mixed shapes (empty and scalar among them) and all four dtypes, the values changing at each
  of 6 steps: the by-name groups give the per-variable ops' averages bit for bit, and for
  float64 the SPEC's mean (SWA) or its debiased average."""
  rng = np.random.default_rng(3)
  specs = [(shape, dtype) for dtype in DTYPES for shape in MIXED_SHAPES]
  steps = 6
  history = [[rounded(rng.normal(size=shape), dtype) for _ in range(steps)]
             for shape, dtype in specs]
  results = []
  for grouped in (True, False):
    with tf.Graph().as_default() as graph, tf.compat.v1.Session() as sess:
      variables = [tf.compat.v1.Variable(tf.cast(h[0], dtype), use_resource=True)
                   for h, (_, dtype) in zip(history, specs)]
      # Zero-debiasing applies to Tensors (a Variable's average starts at its value).
      values = [tf.identity(v) for v in variables] if zero_debias else variables
      step = tf.compat.v1.placeholder(tf.int64, [])
      swa = swa_ops.SWAMovingAverage(step, zero_debias=zero_debias, grouped=grouped)
      update = swa.apply(values)
      types = collections.Counter(op.type for op in graph.get_operations())
      assert (types["SWAVariableGroupByName"] > 0) == grouped, types
      feeds = [tf.compat.v1.placeholder(dtype, shape) for shape, dtype in specs]
      assigns = [v.assign(f) for v, f in zip(variables, feeds)]
      sess.run(tf.compat.v1.global_variables_initializer())
      for n in range(steps):
        sess.run(assigns, {f: h[n] for f, h in zip(feeds, history)})
        sess.run(update, {step: n})
      results.append(sess.run([swa.average(v) for v in values]))
  for (shape, dtype), grouped, single in zip(specs, *results):
    assert grouped.dtype == single.dtype and grouped.shape == shape
    np.testing.assert_array_equal(np.atleast_1d(grouped).view(np.uint8),
                                  np.atleast_1d(single).view(np.uint8), err_msg=str(dtype))
  for (_, dtype), h, got in zip(specs, history, results[0]):
    if dtype != tf.float64:
      continue
    mean = np.mean(h, axis=0)
    if zero_debias:  # decay = (steps - 1) / steps at the last step, local_step = steps.
      mean = mean / (1.0 - ((steps - 1.0) / steps) ** steps)
    np.testing.assert_allclose(got, mean, rtol=1e-12, atol=1e-15)


def test_two_sessions_on_one_graph_keep_their_own_groups():
  """Each session has its own variables (its own resource manager); the group op of each finds
  that session's."""
  with tf.Graph().as_default():
    variables = [tf.compat.v1.Variable([1.0, 2.0], use_resource=True),
                 tf.compat.v1.Variable([3.0], use_resource=True)]
    step = tf.compat.v1.placeholder(tf.int64, [])
    swa = swa_ops.SWAMovingAverage(step)
    update = swa.apply(variables)
    averages = [swa.average(v) for v in variables]
    init = tf.compat.v1.global_variables_initializer()
    with tf.compat.v1.Session() as first, tf.compat.v1.Session() as second:
      first.run(init)
      second.run(init)
      first.run(variables[0].assign([5.0, 6.0]))
      first.run(update, {step: 0})
      first.run(update, {step: 1})
      second.run(variables[1].assign([7.0]))
      second.run(update, {step: 0})
      np.testing.assert_array_equal(first.run(averages[0]), [5.0, 6.0])
      np.testing.assert_array_equal(first.run(averages[1]), [3.0])
      np.testing.assert_array_equal(second.run(averages[0]), [1.0, 2.0])
      np.testing.assert_array_equal(second.run(averages[1]), [7.0])


def test_a_variable_reassigned_with_a_new_buffer_is_read_afresh():
  """The group holds the variables, not their buffers: an assignment that replaces a value's
  buffer (a new shape, validate_shape=False) between updates is seen by the next one."""
  with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
    value = tf.compat.v1.Variable([1.0, 1.0], use_resource=True, shape=tf.TensorShape(None))
    other = tf.compat.v1.Variable([0.0], use_resource=True)
    step = tf.compat.v1.placeholder(tf.int64, [])
    swa = swa_ops.SWAMovingAverage(step)
    update = swa.apply([value, other])
    sess.run(tf.compat.v1.global_variables_initializer())
    sess.run(update, {step: 0})
    sess.run(value.assign([3.0, 5.0]))
    sess.run(update, {step: 1})
    np.testing.assert_array_equal(sess.run(swa.average(value)), [2.0, 3.0])
    sess.run(tf.compat.v1.assign(value, [1.0, 2.0, 3.0], validate_shape=False))
    before = sess.run([swa.average(value), swa.average(other)])
    with pytest.raises(tf.errors.InvalidArgumentError, match="shape"):
      sess.run(update, {step: 2})
    after = sess.run([swa.average(value), swa.average(other)])
    for b, a in zip(before, after):
      np.testing.assert_array_equal(a, b)


def test_an_uninitialised_member_is_named_and_nothing_is_updated():
  with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
    values = [tf.compat.v1.Variable(tf.fill([2], 5.0), name="val%d" % i, use_resource=True)
              for i in range(3)]
    swa = swa_ops.SWAMovingAverage(tf.constant(1, tf.int64))
    update = swa.apply(values)
    averages = [swa.average(v) for v in values]
    sess.run([a.initializer for a in averages] + [values[0].initializer, values[2].initializer])
    with pytest.raises(tf.errors.FailedPreconditionError, match="val1.*uninitialized"):
      sess.run(update)
    np.testing.assert_array_equal(sess.run(averages), np.full((3, 2), 5.0))
    sess.run(values[1].initializer)
    sess.run(values[1].assign([7.0, 7.0]))
    sess.run(update)  # Once initialised, the same op finds it.
    np.testing.assert_array_equal(sess.run(averages[1]), [6.0, 6.0])


def test_a_meta_graph_imported_into_a_new_graph_runs():
  """The group op names the variables by their shared names, which a MetaGraph keeps."""
  with tf.Graph().as_default():
    variables = [tf.compat.v1.Variable([2.0, 4.0], use_resource=True, name="w"),
                 tf.compat.v1.Variable([1.0], use_resource=True, name="b")]
    swa = swa_ops.SWAMovingAverage(tf.constant(1, tf.int64))
    tf.compat.v1.add_to_collection("update", swa.apply(variables))
    meta_graph = tf.compat.v1.train.export_meta_graph()
  with tf.Graph().as_default() as graph, tf.compat.v1.Session() as sess:
    tf.compat.v1.train.import_meta_graph(meta_graph)
    assert any(op.type == "SWAVariableGroupByName" for op in graph.get_operations())
    imported = {v.name: v for v in tf.compat.v1.global_variables()}
    sess.run(tf.compat.v1.global_variables_initializer())
    sess.run(imported["w:0"].assign([4.0, 8.0]))
    sess.run(tf.compat.v1.get_collection("update")[0])  # Step 1: weight 1/2.
    np.testing.assert_array_equal(sess.run(imported["w/SWAMovingAverage:0"]), [3.0, 6.0])
    np.testing.assert_array_equal(sess.run(imported["b/SWAMovingAverage:0"]), [1.0])


def test_group_by_name_checks_its_attributes():
  with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
    group = _ops.library.swa_variable_group_by_name(containers=["", ""], shared_names=["a"])
    with pytest.raises(tf.errors.InvalidArgumentError, match="2 containers but 1 shared_names"):
      sess.run(group)


def test_a_function_in_a_graph_takes_the_handles():
  """Inside a function graph of a TF1 graph the handles are captured, not VarHandleOps: the
  update falls back to the `...NVariable` op on them, with the same result."""
  with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
    variables = [tf.compat.v1.Variable([float(i), 1.0], use_resource=True) for i in range(3)]
    swa = swa_ops.SWAMovingAverage(tf.constant(1, tf.int64))
    swa.apply(variables)  # Shadows made outside the function.

    @tf.function
    def update():
      swa.apply(variables)
      return tf.constant(0)  # A function runs all its stateful ops before it returns.

    update_op = update()
    function_ops = collections.Counter(
        op.type for op in update.get_concrete_function().graph.get_operations())
    assert function_ops["SWAAssignNVariable"] == 1, function_ops
    assert function_ops["SWAVariableGroupByName"] == 0, function_ops
    sess.run(tf.compat.v1.global_variables_initializer())
    sess.run(variables[2].assign([4.0, 3.0]))
    sess.run(update_op)
    np.testing.assert_array_equal(sess.run(swa.average(variables[2])), [3.0, 2.0])


def test_variables_in_a_container_are_found_there():
  with tf.Graph().as_default() as graph, tf.compat.v1.Session() as sess:
    with tf.compat.v1.container("experiment_7"):
      variables = [tf.compat.v1.Variable([float(i)], use_resource=True) for i in range(3)]
    swa = swa_ops.SWAMovingAverage(tf.constant(1, tf.int64))
    update = swa.apply(variables)
    (group,) = [op for op in graph.get_operations() if op.type == "SWAVariableGroupByName"]
    # The averages (made outside the container), then the values.
    assert group.get_attr("containers") == [b""] * 3 + [b"experiment_7"] * 3
    sess.run(tf.compat.v1.global_variables_initializer())
    sess.run(variables[1].assign([5.0]))
    sess.run(update)
    np.testing.assert_array_equal(sess.run(swa.average(variables[1])), [3.0])
