"""The grouped ops (SWAAssignN, SWAAssignGroup, DebiasedEMAN, ...): one op for a list of variables."""
import collections
import threading

import numpy as np
import pytest
import tensorflow as tf

import swa_ops
from swa_ops import _ops
from conftest import DTYPES, rounded, run_in_threads, swa_float32_oracle

MIXED_SHAPES = [(), (0,), (1,), (3, 4), (5,), (2, 0, 3), (17, 3)]


def _trace(variables, grouped):
  step = tf.Variable(0, dtype=tf.int64)
  swa = swa_ops.SWAMovingAverage(step, grouped=grouped)

  @tf.function
  def update():
    swa.apply(variables)
    step.assign_add(1)

  return swa, update


def test_traced_apply_over_200_variables_is_one_op_per_dtype():
  """In tf.function each (device, dtype) group is one SWAAssignGroup op on one captured group
  handle: nothing in the graph grows with the number of variables."""
  variables = [tf.Variable(tf.zeros([i % 7 + 1], tf.float32 if i % 2 else tf.float64))
               for i in range(200)]
  _, update = _trace(variables, grouped=True)
  ops = update.get_concrete_function().graph.get_operations()
  counter = collections.Counter(op.type for op in ops)
  assert counter["SWAAssignGroup"] == 2, counter  # float32 and float64.
  # Inputs: the group, the step (no value tensors, no guard).
  assert {len(op.inputs) for op in ops if op.type == "SWAAssignGroup"} == {2}
  assert not any(t.startswith("SWAAssign") and t != "SWAAssignGroup" for t in counter)
  # Captured: the two groups and the step variable.
  assert counter["Placeholder"] == 3, counter
  others = sum(c for t, c in counter.items() if t not in ("Placeholder", "SWAAssignGroup"))
  assert others <= 8, counter


def test_graph_mode_apply_over_200_variables_is_one_op_per_dtype():
  """In TF1 graph mode each group is one SWAAssignGroup op on a SWAVariableGroupByName op, which
  names the variables: a session runs no op per variable (see test_graph_groups.py)."""
  with tf.Graph().as_default() as graph:
    variables = [tf.compat.v1.Variable(tf.zeros([i % 7 + 1], tf.float32 if i % 2 else tf.float64),
                                       use_resource=True) for i in range(200)]
    swa_ops.SWAMovingAverage(0).apply(variables)
    ops = graph.get_operations()
  counter = collections.Counter(op.type for op in ops)
  assert counter["SWAAssignGroup"] == 2 and counter["SWAVariableGroupByName"] == 2, counter
  for op in ops:
    if op.type == "SWAVariableGroupByName":
      assert len(op.get_attr("shared_names")) == 2 * 100  # 100 averages, then 100 values.
  assert not any(t.startswith("SWAAssign") and t != "SWAAssignGroup" for t in counter)


@pytest.mark.parametrize("sizes", [
    [1_500_001, 3, 0, 600_007] + [1000] * 50,  # 2.15M values, 26 MB moved per update.
    [5_000_011, 1, 1_200_003],  # 6.2M values, 74 MB: over the op's 64 MB switch of splitting.
], ids=["under_64MB", "over_64MB"])
def test_a_large_grouped_update_split_over_threads_updates_each_value_once(sizes):
  """An update large enough to be split over the intra-op threads, by elements across variable
  boundaries, matches the float32 model of the SPEC bit for bit: no value skipped or updated
  twice."""
  rng = np.random.default_rng(5)
  variables = [tf.Variable(rng.normal(size=n).astype(np.float32)) for n in sizes]
  step = tf.Variable(0, dtype=tf.int64)
  swa = swa_ops.SWAMovingAverage(step)
  swa.apply(variables)  # num_updates 0: the averages start at the variables' values.
  expected = [v.numpy() for v in variables]
  for n in range(1, 4):
    step.assign(n)
    for i, var in enumerate(variables):
      value = rng.normal(size=var.shape).astype(np.float32)
      var.assign(value)
      expected[i] = swa_float32_oracle(expected[i], value, n)
    swa.apply(variables)
  for var, average in zip(variables, expected):
    np.testing.assert_array_equal(swa.average(var).numpy(), average)


@pytest.mark.parametrize("mode", ["eager", "function"])
def test_grouped_and_per_variable_are_bit_identical(mode):
  rng = np.random.default_rng(11)
  specs = [(shape, dtype) for dtype in DTYPES for shape in MIXED_SHAPES]
  history = [[rounded(rng.normal(size=shape), dtype) for _ in range(12)] for shape, dtype in specs]
  results = []
  for grouped in (True, False):
    variables = [tf.Variable(tf.cast(h[0], dtype)) for h, (_, dtype) in zip(history, specs)]
    step = tf.Variable(0, dtype=tf.int64)
    swa = swa_ops.SWAMovingAverage(step, grouped=grouped)
    apply = (lambda: swa.apply(variables)) if mode == "eager" else tf.function(
        lambda: (swa.apply(variables), None)[1])
    for n in range(12):
      step.assign(n)
      for var, h, (_, dtype) in zip(variables, history, specs):
        var.assign(tf.cast(h[n], dtype))
      apply()
    results.append([swa.average(v).numpy() for v in variables])
  for (shape, dtype), grouped, single in zip(specs, *results):
    assert grouped.dtype == single.dtype and grouped.shape == shape
    np.testing.assert_array_equal(np.atleast_1d(grouped).view(np.uint8),
                                  np.atleast_1d(single).view(np.uint8), err_msg=str(dtype))
  # And they are the mean (float64 members checked against the oracle).
  for (shape, dtype), h, got in zip(specs, history, results[0]):
    if dtype == tf.float64:
      np.testing.assert_allclose(got, np.mean(h, axis=0), rtol=1e-13, atol=1e-15)


def test_grouped_zero_debiased_tensors_match_per_variable():
  values = [np.arange(6.0).reshape(2, 3), np.array([1.5, -2.0]), np.array(4.0)]
  outputs = []
  for grouped in (True, False):
    variables = [tf.Variable(v) for v in values]
    step = tf.Variable(0.0, dtype=tf.float64)
    swa = swa_ops.SWAMovingAverage(step, zero_debias=True, grouped=grouped)
    tensors = {}

    @tf.function
    def update():
      for i, v in enumerate(variables):
        tensors[i] = tf.identity(v * 2.0, name="t%d" % i)
      swa.apply([tensors[i] for i in range(len(variables))])

    for n in range(5):
      step.assign(n)
      for v, base in zip(variables, values):
        v.assign(base + n)
      update()
    graph_ops = collections.Counter(
        op.type for op in update.get_concrete_function().graph.get_operations())
    assert graph_ops["DebiasedEMAGroup" if grouped else "DebiasedEMA"] == (1 if grouped else 3)
    outputs.append([swa.average(tensors[i]).numpy() for i in range(len(variables))])
  for grouped, single in zip(*outputs):
    np.testing.assert_array_equal(grouped, single)
  # The SPEC's debiasing with decay n / (n + 1): biased is the mean, divided by 1 - decay**t.
  t = 5
  mean = np.mean([2.0 * (values[0] + n) for n in range(t)], axis=0)
  np.testing.assert_allclose(outputs[0][0], mean / (1 - ((t - 1) / t) ** t), rtol=1e-12)


def test_a_bad_member_leaves_every_average_of_the_group_unchanged():
  averages = [tf.Variable(tf.fill([3], float(i))) for i in range(4)]
  values = [tf.Variable(tf.fill([3], 10.0)) for _ in range(4)]
  values[2] = tf.Variable(tf.fill([4], 10.0))  # Wrong shape in the middle of the group.
  before = [a.numpy() for a in averages]
  with pytest.raises(tf.errors.InvalidArgumentError, match="shape"):
    _ops.swa_assign_n(averages, values, tf.constant(1, tf.int64))
  for a, b in zip(averages, before):
    np.testing.assert_array_equal(a.numpy(), b)


def test_a_bad_member_in_graph_mode_uninitialised():
  with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
    averages = [tf.compat.v1.Variable(tf.fill([2], float(i)), name="avg%d" % i, use_resource=True)
                for i in range(3)]
    values = [tf.compat.v1.Variable(tf.fill([2], 5.0), name="val%d" % i, use_resource=True)
              for i in range(3)]
    op = _ops.swa_assign_n(averages, values, tf.constant(0, tf.int64))
    sess.run([a.initializer for a in averages] + [values[0].initializer, values[2].initializer])
    with pytest.raises(tf.errors.FailedPreconditionError, match="val1.*uninitialized"):
      sess.run(op)
    np.testing.assert_array_equal(sess.run(averages), [[0, 0], [1, 1], [2, 2]])


def test_the_same_variable_twice_in_a_group_is_an_error():
  a, b = tf.Variable([1.0]), tf.Variable([2.0])
  v = tf.Variable([3.0])
  with pytest.raises(tf.errors.InvalidArgumentError, match="appears twice"):
    _ops.swa_assign_n([a, b, a], [v, v, v], tf.constant(1))
  with pytest.raises(tf.errors.InvalidArgumentError, match="own average"):
    _ops.swa_assign_n([a, b], [v, a], tf.constant(1))
  np.testing.assert_array_equal([a.numpy(), b.numpy()], [[1.0], [2.0]])
  with pytest.raises(swa_ops.ArgumentError, match="twice"):
    swa_ops.SWAMovingAverage(0).apply([a, b, a])


def test_reference_variables_take_the_per_variable_ops_automatically():
  with tf.Graph().as_default() as graph, tf.compat.v1.Session() as sess:
    variables = [tf.compat.v1.Variable(np.full(2, i, np.float32), use_resource=False)
                 for i in range(3)]
    swa = swa_ops.SWAMovingAverage(0)
    update = swa.apply(variables)
    types = collections.Counter(op.type for op in graph.get_operations())
    assert types["SWAAssignRef"] == 3 and types["SWAAssignNVariable"] == 0
    sess.run(tf.compat.v1.global_variables_initializer())
    sess.run(update)
    np.testing.assert_array_equal(sess.run(swa.average(variables[1])), [1.0, 1.0])


@pytest.mark.parametrize("use_locking", [False, True])
def test_threads_applying_to_overlapping_lists(use_locking):
  """8 threads x 1000 grouped updates to overlapping variable lists: no crash, no deadlock
  (bounded by a timeout), no NaN; every value is the same constant, so every average must end
  at that constant whatever the interleaving."""
  variables = [tf.Variable(tf.fill([1000], 3.0)) for _ in range(12)]
  swas = [swa_ops.SWAMovingAverage(tf.constant(1, tf.int64), use_locking=use_locking)
          for _ in range(8)]
  lists = [variables[i:i + 6] + variables[:i % 3] for i in range(0, 8)]
  for swa, var_list in zip(swas, lists):
    swa.apply(var_list)  # Creates the shadows (at 3.0).
    for v in var_list:
      swa.average(v).assign(tf.fill([1000], -1.0))

  def work(swa, var_list):
    update = tf.function(lambda: (swa.apply(var_list), None)[1])
    for _ in range(1000):
      update()

  hung, errors = run_in_threads(
      [lambda args=args: work(*args) for args in zip(swas, lists)])
  assert not hung, "deadlock: threads still running"
  assert not errors, errors
  for swa, var_list in zip(swas, lists):
    for v in var_list:
      np.testing.assert_allclose(swa.average(v).numpy(), 3.0, rtol=1e-6)


def test_weighted_moving_average_updates_both_averages_with_one_op():
  value, weight = tf.Variable([1.0, 2.0, 3.0]), tf.Variable(2.0)

  @tf.function
  def update():
    return swa_ops.weighted_moving_average(value.read_value(), 0.5, weight.read_value(),
                                           name="grouped_wma")

  types = collections.Counter(op.type for op in update.get_concrete_function().graph.get_operations())
  assert types["EMAAssignN"] == 1 and types["EMAAssign"] == 0, types
  np.testing.assert_allclose(update().numpy(), [1.0, 2.0, 3.0], rtol=1e-6)


def test_locked_grouped_updates_are_serialisable():
  """8 threads x 1000 grouped updates with use_locking=True over the same 12 averages, each
  thread writing its own constant (step 0: the average becomes the value). In a serial order of
  whole updates every read of an average sees one thread's constant in all its elements (an
  observer thread reads while they run), and at the end all 12 hold the constant of the same
  thread (the last update). A torn update would mix constants."""
  averages = [tf.Variable(tf.zeros([4096])) for _ in range(12)]
  values = [[tf.Variable(tf.fill([4096], float(t + 1))) for _ in range(12)] for t in range(8)]
  step = tf.constant(0, tf.int64)

  def work(thread_values):
    update = tf.function(lambda: (_ops.swa_assign_n(averages, thread_values, step,
                                                    use_locking=True), None)[1])
    for _ in range(1000):
      update()

  torn_reads = []
  workers_done = threading.Event()

  def observe():
    while not workers_done.is_set():
      for average in averages[:3]:
        seen = average.numpy()
        if not np.all(seen == seen[0]):
          torn_reads.append(np.unique(seen))

  observer = threading.Thread(target=observe)
  observer.start()
  hung, errors = run_in_threads([lambda v=v: work(v) for v in values], timeout=300)
  workers_done.set()
  observer.join(timeout=60)
  assert not hung, "deadlock: threads still running"
  assert not errors, errors
  assert not torn_reads, torn_reads[:3]
  final = np.stack([a.numpy() for a in averages])
  assert np.all(final == final[0, 0]) and 1 <= final[0, 0] <= 8, np.unique(final)
