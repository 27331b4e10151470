"""Variable groups: SWAVariableGroup (one handle for a list of resource variables) and the
<Op>Group ops that take it in place of the list.

A group looks its members up once and keeps them, so these tests check that it still behaves as
a lookup by handle would at every update: a member deleted later is an error naming it, one
re-created under its handle is found again, one assigned another shape is refused, and nothing
is written when any member is bad. Results are checked bit for bit against a float32 NumPy model
of the SPEC's update (avg <- avg - (avg - value) * w, w = 1 / (n + 1), each operation rounded
to float32, as the op computes it).
"""
import tempfile

import numpy as np
import pytest
import tensorflow as tf

import swa_ops
from swa_ops import _ops
from conftest import run_in_threads, swa_float32_oracle

library = _ops.library
SHAPES = [(3,), (), (0,), (2, 5)]


def _group(variables):
  return library.swa_variable_group([v.handle for v in variables])


def _swa(group, step, **attrs):
  return library.swa_assign_group(group, [], tf.constant(step, tf.int64), [], T=tf.float32,
                                  **attrs)


def _pairs(rng):
  averages = [tf.Variable(rng.normal(size=shape).astype(np.float32), name="avg%d" % i)
              for i, shape in enumerate(SHAPES)]
  values = [tf.Variable(rng.normal(size=shape).astype(np.float32), name="val%d" % i)
            for i, shape in enumerate(SHAPES)]
  return averages, values


def _read(variables):
  return [v.numpy().copy() for v in variables]


@pytest.mark.parametrize("mode", ["eager", "function"])
def test_group_updates_match_the_float32_model(mode):
  rng = np.random.default_rng(3)
  averages, values = _pairs(rng)
  group = _group(averages + values)
  step = tf.Variable(0, dtype=tf.int64)
  def update():
    library.swa_assign_group(group, [], step, [], T=tf.float32)

  if mode == "function":
    update = tf.function(update)
  expected = _read(averages)
  for n in range(7):
    step.assign(n)
    for value in values:
      value.assign(rng.normal(size=value.shape).astype(np.float32))
    expected = [swa_float32_oracle(a, v, n) for a, v in zip(expected, _read(values))]
    update()
    for average, want in zip(averages, expected):
      np.testing.assert_array_equal(average.numpy(), want)


def test_group_with_value_tensors_matches_the_model():
  rng = np.random.default_rng(4)
  averages, _ = _pairs(rng)
  group = _group(averages)
  tensors = [rng.normal(size=shape).astype(np.float32) for shape in SHAPES]
  expected = [swa_float32_oracle(a, v, 2) for a, v in zip(_read(averages), tensors)]
  library.swa_assign_group(group, [tf.constant(t) for t in tensors], tf.constant(2), [],
                           T=tf.float32)
  for average, want in zip(averages, expected):
    np.testing.assert_array_equal(average.numpy(), want)


def _shared_variable(name, value):
  """A variable handle in the resource manager (a TF1-style shared name): unlike a TF2 eager
  variable's handle, which owns its variable, it can be deleted and created again."""
  handle = tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=value.shape, shared_name=name)
  tf.raw_ops.AssignVariableOp(resource=handle, value=value)
  return handle


def _read_handle(handle):
  return tf.raw_ops.ReadVariableOp(resource=handle, dtype=tf.float32).numpy()


def _shared_group(prefix, count):
  """`count` shared-name averages (member i: i) and values (10 + i), their group, used once."""
  averages = [_shared_variable("%s_avg%d" % (prefix, i), np.full(3, i, np.float32))
              for i in range(count)]
  values = [_shared_variable("%s_val%d" % (prefix, i), np.full(3, 10.0 + i, np.float32))
            for i in range(count)]
  group = library.swa_variable_group(averages + values)
  _swa(group, 1)
  return averages, values, group


def test_a_member_deleted_after_first_use_is_an_error_naming_it():
  averages, values, group = _shared_group("deleted", 3)
  before = [_read_handle(h) for h in averages]
  tf.raw_ops.DestroyResourceOp(resource=values[2])
  for _ in range(2):  # Not cached as found: the error repeats.
    with pytest.raises((tf.errors.FailedPreconditionError, tf.errors.NotFoundError),
                       match=r"value variable 'deleted_val2.*does not exist"):
      _swa(group, 2)
  for handle, want in zip(averages, before):
    np.testing.assert_array_equal(_read_handle(handle), want)


def test_a_member_created_again_under_its_handle_is_found_again():
  averages, values, group = _shared_group("again", 2)
  tf.raw_ops.DestroyResourceOp(resource=averages[0])
  fresh = np.array([10.0, 20.0, 30.0], np.float32)
  tf.raw_ops.AssignVariableOp(resource=averages[0], value=fresh)
  expected = [swa_float32_oracle(fresh, _read_handle(values[0]), 3),
              swa_float32_oracle(_read_handle(averages[1]), _read_handle(values[1]), 3)]
  _swa(group, 3)
  for handle, want in zip(averages, expected):
    np.testing.assert_array_equal(_read_handle(handle), want)


def test_a_member_assigned_another_shape_is_refused_and_nothing_changes():
  average = tf.Variable(np.ones(3, np.float32), name="flexible_avg",
                        shape=tf.TensorShape(None))
  other, values = tf.Variable(np.ones(2, np.float32)), _pairs(np.random.default_rng(7))[1][:2]
  values[0].assign(np.full(3, 5.0, np.float32))
  group = _group([average, other, values[0], tf.Variable(np.zeros(2, np.float32))])
  _swa(group, 1)
  average.assign(np.ones(4, np.float32))
  before = [average.numpy(), other.numpy()]
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"average variable 'flexible_avg.*shape \[4\].*value has shape \[3\]"):
    _swa(group, 2)
  np.testing.assert_array_equal(average.numpy(), before[0])
  np.testing.assert_array_equal(other.numpy(), before[1])


def test_the_same_variable_twice_is_refused_at_every_update():
  a, b = tf.Variable([1.0]), tf.Variable([2.0])
  group = _group([a, b, a, tf.Variable([3.0]), tf.Variable([4.0]), tf.Variable([5.0])])
  for _ in range(2):
    with pytest.raises(tf.errors.InvalidArgumentError, match="appears twice"):
      _swa(group, 1)
  np.testing.assert_array_equal([a.numpy(), b.numpy()], [[1.0], [2.0]])


def test_a_value_that_is_an_average_is_refused_at_every_update():
  a, b = tf.Variable([1.0]), tf.Variable([2.0])
  group = _group([a, b, tf.Variable([3.0]), a])
  for _ in range(2):
    with pytest.raises(tf.errors.InvalidArgumentError, match="own average"):
      _swa(group, 1)


@pytest.mark.parametrize("op, size, message", [
    ("swa_assign_group", 3, "holds 3 variables; this op takes 2 lists"),
    ("debiased_ema_group", 6, "holds 6 variables; this op takes 4 lists"),
])
def test_a_group_of_the_wrong_size_for_the_op(op, size, message):
  group = _group([tf.Variable([float(i)]) for i in range(size)])
  scalar = tf.constant(1, tf.int64) if op == "swa_assign_group" else tf.constant(0.5)
  with pytest.raises(tf.errors.InvalidArgumentError, match=message):
    getattr(library, op)(group, [], scalar, [], T=tf.float32)


def test_value_tensors_must_match_the_group():
  group = _group([tf.Variable([1.0]), tf.Variable([2.0])])
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"one per value tensor"):
    library.swa_assign_group(group, [tf.constant([1.0])], tf.constant(1), [], T=tf.float32)


def test_a_variable_handle_is_not_a_group():
  v = tf.Variable([1.0])
  with pytest.raises(tf.errors.InvalidArgumentError, match="must be a variable group"):
    library.swa_assign_group(v.handle, [], tf.constant(1), [], T=tf.float32)


def test_a_group_is_not_a_member():
  group = _group([tf.Variable([1.0]), tf.Variable([2.0])])
  with pytest.raises(tf.errors.InvalidArgumentError, match="is a group, not a variable"):
    library.swa_variable_group([group, tf.Variable([3.0]).handle])


def test_all_finite_reads_a_groups_members():
  variables = [tf.Variable(np.ones(shape, np.float32)) for shape in SHAPES]
  group = _group(variables)
  assert library.all_finite([group]).numpy()
  variables[3].assign(np.full((2, 5), np.inf, np.float32))
  assert not library.all_finite([group]).numpy()
  with pytest.raises(tf.errors.InvalidArgumentError, match="only input"):
    library.all_finite([group, tf.constant([1.0])])


def test_the_averager_makes_one_group_per_list_and_keeps_it():
  variables = [tf.Variable(tf.fill([4], float(i))) for i in range(6)]
  step = tf.Variable(0, dtype=tf.int64)
  swa = swa_ops.SWAMovingAverage(step, skip_nonfinite=True)
  traced = tf.function(lambda: (swa.apply(variables), None)[1])
  for _ in range(3):
    swa.apply(variables)
    traced()
    step.assign_add(1)
  # One for the update (shadows + values), one for AllFinite (values): eager and traced alike.
  assert len(swa._variable_groups._groups) == 2  # pylint: disable=protected-access
  for i, var in enumerate(variables):
    np.testing.assert_array_equal(swa.average(var).numpy(), np.full(4, float(i), np.float32))


def _ordering_case(variables, swa, where):
  """A tf.function that adds 1 to every variable, averaging before or after (or inside a cond or
  a loop): the update must see the variables as the program order says."""

  @tf.function
  def step_function():
    if where == "before":
      swa.apply(variables)
    for v in variables:
      v.assign_add(tf.ones_like(v))
    if where == "after":
      swa.apply(variables)
    elif where == "cond":
      tf.cond(tf.constant(True), lambda: (swa.apply(variables), tf.constant(0))[1],
              lambda: tf.constant(0))
    elif where == "loop":
      tf.while_loop(lambda i: i < 1, lambda i: (swa.apply(variables), i + 1)[1],
                    [tf.constant(0)])
    for v in variables:
      v.assign_add(tf.ones_like(v))

  return step_function


@pytest.mark.parametrize("where", ["before", "after", "cond", "loop"])
def test_the_update_is_ordered_with_the_functions_other_uses_of_its_variables(where):
  """The group op's only resource input is the group: its ordering with the assignments to its
  members in the same tf.function comes from the registered resolver. 3 steps; the variables
  start at 0 and gain 1 before and 1 after the averaging point."""
  variables = [tf.Variable(tf.zeros([64])) for _ in range(40)]
  step = tf.Variable(0, dtype=tf.int64)
  swa = swa_ops.SWAMovingAverage(step)
  step_function = _ordering_case(variables, swa, where)
  seen = []
  for n in range(3):
    step_function()
    step.assign_add(1)
    seen.append(2.0 * n + (0.0 if where == "before" else 1.0))
  for v in variables:
    np.testing.assert_array_equal(swa.average(v).numpy(), np.full(64, np.mean(seen), np.float32))


def test_a_saved_model_of_a_function_applying_the_averager_updates_its_own_averages():
  class Model(tf.Module):

    def __init__(self):
      super().__init__()
      self.weights = [tf.Variable(tf.fill([3], float(i)), name="w%d" % i) for i in range(3)]
      self.step = tf.Variable(0, dtype=tf.int64)
      self.swa = swa_ops.SWAMovingAverage(self.step)

    @tf.function(input_signature=[])
    def train(self):
      for w in self.weights:
        w.assign_add(tf.ones([3]))
      self.swa.apply(self.weights)
      self.step.assign_add(1)
      return self.step.read_value()

  model = Model()
  model.train()
  model.train()
  with tempfile.TemporaryDirectory() as directory:
    tf.saved_model.save(model, directory)
    loaded = tf.saved_model.load(directory)
  loaded.train()
  model.train()
  for i, w in enumerate(model.weights):
    # Weights i+1, i+2, i+3 averaged, in both the model and its loaded copy.
    np.testing.assert_array_equal(getattr(loaded.swa, "w%d" % i).numpy(), np.full(3, i + 2.0))
    np.testing.assert_array_equal(model.swa.average(w).numpy(), np.full(3, i + 2.0))


def test_threads_sharing_one_group_with_locking_equal_a_serial_order():
  """4 threads x 200 locked updates through one group, each averaging a constant value: every
  interleaving of equal-weight updates with value c leaves c, exactly."""
  averages = [tf.Variable(tf.fill([500], 7.0)) for _ in range(4)]
  values = [tf.Variable(tf.fill([500], 7.0)) for _ in range(4)]
  group = _group(averages + values)

  def work(seed):
    for n in range(200):
      _swa(group, (n + seed) % 50, use_locking=True)

  hung, errors = run_in_threads([lambda seed=seed: work(seed) for seed in range(4)])
  assert not hung and not errors
  for average in averages:
    np.testing.assert_array_equal(average.numpy(), np.full(500, 7.0, np.float32))


def test_eager_plans_follow_the_list_and_stay_bounded():
  """Eager apply() reuses the checks and grouping of a list it has seen (keyed by its
  elements): other lists, and lists sharing elements, still average exactly their own."""
  variables = [tf.Variable(tf.fill([2], float(i))) for i in range(20)]
  step = tf.Variable(0, dtype=tf.int64)
  swa = swa_ops.SWAMovingAverage(step)
  lists = [variables[i:i + 3] for i in range(18)]  # 18 overlapping lists: more than are kept.
  for _ in range(3):
    for lst in lists:
      step.assign(0)  # Every apply() a plain assignment...
      swa.apply(list(lst))  # ...of a new list object with the same elements.
    for v in variables:
      v.assign_add(tf.fill([2], 100.0))
  # With step 0 the average is set to the value: each average holds its variable's value as
  # of the last apply() that covered it.
  for v in variables:
    np.testing.assert_array_equal(swa.average(v).numpy(), v.numpy() - 100.0)
  assert len(swa._eager_plans) <= 16  # pylint: disable=protected-access
  with pytest.raises(swa_ops.ArgumentError, match="twice"):
    swa.apply([variables[0], variables[0]])


@pytest.mark.parametrize("use_locking", [False, True])
@pytest.mark.parametrize("variant", ["NVariable", "Group"])
def test_one_value_averaged_into_two_averages_by_one_op(variant, use_locking):
  """A weight listed twice among the values of one op (locked once, shared): both averages get
  it, bit-exact, with and without use_locking."""
  weight = tf.Variable(tf.fill([64], 3.0))
  averages = [tf.Variable(tf.fill([64], float(i))) for i in range(2)]
  expected = [np.full(64, float(i), np.float32) for i in range(2)]
  for step in range(1, 21):
    if variant == "Group":
      library.swa_assign_group(_group(averages + [weight, weight]), [],
                               tf.constant(step, tf.int64), [], T=tf.float32,
                               use_locking=use_locking)
    else:
      library.swa_assign_n_variable([a.handle for a in averages], [weight.handle] * 2,
                                    tf.constant(step, tf.int64), [], T=tf.float32,
                                    use_locking=use_locking)
    expected = [swa_float32_oracle(e, np.full(64, 3.0, np.float32), step) for e in expected]
    for average, want in zip(averages, expected):
      np.testing.assert_array_equal(average.numpy(), want)


@pytest.mark.parametrize("use_locking", [False, True])
def test_threads_preparing_variables_while_others_hold_their_locks(use_locking):
  """A grouped op makes each variable it updates safe to update in place (copy-on-read mode) in
  the same visit that takes its lock, while the locks before it are held. Swaps (which leave
  copy-on-read mode) and reads (which share a buffer outside that mode) make every update
  prepare again, with other threads holding the same locks: no deadlock (bounded by a timeout),
  and, every value being 7, every variable ends at 7 whatever the interleaving."""
  averages = [tf.Variable(tf.fill([300], 7.0)) for _ in range(6)]
  values = [tf.Variable(tf.fill([300], 7.0)) for _ in range(6)]
  update_groups = [_group(averages + values), _group(averages[::-1] + values[::-1]),
                   _group(averages[:3] + values[3:])]
  swap_group = _group(averages + values)
  reads = []

  def repeat(task):
    return lambda: [task(n) for n in range(150)]

  def update_with(group):
    return lambda n: _swa(group, n % 7, use_locking=use_locking)

  def swap(_):
    _ops.swap_variables_group(swap_group, tf.float32)

  def read(n):
    reads.append(averages[n % 6].read_value())  # Keeps the buffer shared for a while.
    del reads[:-4]

  tasks = [update_with(group) for group in update_groups] + [swap, read]
  hung, errors = run_in_threads([repeat(task) for task in tasks])
  assert not hung, "deadlock: threads still running"
  assert not errors, errors
  for variable in averages + values:
    np.testing.assert_array_equal(variable.numpy(), np.full(300, 7.0, np.float32))
