"""Many variables: the first apply() is linear in their number, and shadows keep their names.

The work is measured in operation counts, not wall time: Python function calls during the first
apply() (sys.setprofile), and the calls into TensorFlow's unique-name search, its subscope reset
and the averager's dependency lookup, which made it quadratic before.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.ops import variable_scope as tf_variable_scope
from tensorflow.python.trackable import base as trackable_base

import swa_ops

_HERE = os.path.dirname(os.path.abspath(__file__))
_OLD_CHECKPOINT = os.path.join(_HERE, "data", "checkpoint_13ff881", "ckpt")


# --------------------------------------------------------------------------------------------
# Names: those commit 13ff881 gave
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["eager", "function", "graph_resource", "graph_ref"])
def test_names_are_those_of_commit_13ff881(mode, tmp_path):
  """Duplicate variable names, unnamed variables, name and variable scopes, partitioned
  variables, a Keras layer, two averagers of one name, zero-debiased tensors: shadows, debias
  state, checkpoint dependencies and keys, variables_to_restore, as before."""
  with open(os.path.join(_HERE, "data", "shadow_names.json")) as f:
    expected = json.load(f)[mode]
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
  output = subprocess.run(
      [sys.executable, os.path.join(_HERE, "naming_scenarios.py"), mode, str(tmp_path)],
      env=env, check=True, capture_output=True, text=True).stdout
  assert json.loads(output) == expected


def _variables_as_in_the_old_checkpoint():
  """The variables naming_scenarios.py averaged (in that order) when it wrote the checkpoint,
  with other values."""
  variables = [tf.Variable(tf.fill([3], 50.0 + i), name="v") for i in range(3)]
  variables += [tf.Variable(tf.fill([2], 60.0 + i)) for i in range(3)]
  with tf.name_scope("outer"):
    variables.append(tf.Variable(tf.fill([2], 70.0), name="w"))
  variables.append(tf.Variable(tf.fill([2], tf.constant(80.0, tf.float64)), name="w"))
  variables.append(tf.Variable(tf.fill([3, 2], 90.0), name="dense/kernel"))
  variables.append(tf.Variable(tf.fill([2], 95.0), name="dense/bias"))
  return variables


@pytest.mark.parametrize("deferred", [True, False], ids=["deferred", "immediate"])
def test_a_checkpoint_written_by_commit_13ff881_restores_into_the_same_shadows(deferred):
  reader = tf.train.load_checkpoint(_OLD_CHECKPOINT)
  variables = _variables_as_in_the_old_checkpoint()
  # Never selected by the schedule: apply() creates the shadows and changes nothing.
  swa = swa_ops.SWAMovingAverage(0, start=10**9)
  checkpoint = tf.train.Checkpoint(averager=swa)
  if deferred:
    status = checkpoint.read(_OLD_CHECKPOINT)
    swa.apply(variables)
  else:
    swa.apply(variables)
    status = checkpoint.read(_OLD_CHECKPOINT)
  status.assert_consumed()  # Every saved average went into a shadow.
  dependencies = ["v", "v_1", "v_2", "Variable", "Variable_1", "Variable_2", "outer/w", "w",
                  "dense/kernel", "dense/bias"]
  for var, dependency in zip(variables, dependencies):
    key = "averager/%s/.ATTRIBUTES/VARIABLE_VALUE" % dependency.replace("/", ".S")
    np.testing.assert_array_equal(swa.average(var).numpy(), reader.get_tensor(key))
  # The three "v"s were saved with their own averages 0, 1, 2, in apply() order.
  for i in range(3):
    np.testing.assert_array_equal(swa.average(variables[i]).numpy(), np.full([3], float(i)))


# --------------------------------------------------------------------------------------------
# Operation counts
# --------------------------------------------------------------------------------------------


class _Counts:
  """Counts, while active, Python function calls and the calls (and, for the subscope reset,
  the scope names walked) of the searches that were quadratic."""

  def __init__(self, monkeypatch):
    self.reset()
    store = tf_variable_scope._VariableScopeStore  # pylint: disable=protected-access
    count, close = store.variable_scope_count, store.close_variable_subscopes
    lookup = trackable_base.Trackable._lookup_dependency  # pylint: disable=protected-access

    def counted_count(store_self, name):
      self.scope_searches += 1
      return count(store_self, name)

    def counted_close(store_self, name):
      self.scopes_walked += len(store_self.variable_scopes_count)
      return close(store_self, name)

    def counted_lookup(trackable, *args, **kwargs):
      self.lookups += 1
      return lookup(trackable, *args, **kwargs)

    monkeypatch.setattr(store, "variable_scope_count", counted_count)
    monkeypatch.setattr(store, "close_variable_subscopes", counted_close)
    monkeypatch.setattr(trackable_base.Trackable, "_lookup_dependency", counted_lookup)

  def _profile(self, unused_frame, event, unused_arg):
    if event == "call":
      self.calls += 1

  def reset(self):
    self.calls = self.scope_searches = self.scopes_walked = self.lookups = 0

  def __enter__(self):
    self.reset()
    sys.setprofile(self._profile)
    return self

  def __exit__(self, *unused_exception):
    sys.setprofile(None)

  def as_tuple(self):
    return self.calls, self.scope_searches, self.scopes_walked, self.lookups


@pytest.fixture
def counts(monkeypatch):
  return _Counts(monkeypatch)


def _first_apply_counts(counts, mode, n):
  """The counts of the first apply() of n variables sharing one name (the worst case before)."""
  if mode == "graph":
    graph = tf.Graph()
    with graph.as_default():
      variables = [tf.compat.v1.get_variable("v%d" % i, [4]) for i in range(n)]
      swa = swa_ops.SWAMovingAverage(tf.compat.v1.train.get_or_create_global_step())
      with counts:
        swa.apply(variables)
    return counts.as_tuple()
  variables = [tf.Variable(tf.zeros([4]), name="same") for _ in range(n)]
  swa = swa_ops.SWAMovingAverage(tf.Variable(0, dtype=tf.int64))
  update = (lambda: swa.apply(variables)) if mode == "eager" else tf.function(
      lambda: (swa.apply(variables), None)[1])
  with counts:
    update()
  return counts.as_tuple()


@pytest.mark.parametrize("mode", ["eager", "function", "graph"])
def test_the_first_apply_does_linear_work(counts, mode):
  small = _first_apply_counts(counts, mode, 100)
  large = _first_apply_counts(counts, mode, 1000)
  calls, searches, walked, lookups = large
  assert calls <= 11 * small[0], (small, large)  # 10x the variables: at most 11x the calls.
  assert searches <= 2 * 1000, (small, large)  # Before: about n^2 / 2 with shared names.
  assert walked <= 50 * 1000, (small, large)   # Before: about n^2 / 2.
  assert lookups <= 4 * 1000, (small, large)   # Before: about n^2 / 2 with shared names.


def _later_apply_calls(counts, n, make_list):
  variables = make_list(tf.Variable(tf.zeros([4])) for _ in range(n))
  swa = swa_ops.SWAMovingAverage(tf.Variable(0, dtype=tf.int64), skip_nonfinite=True)
  swa.apply(variables)
  with counts:
    swa.apply(variables)
  return counts.calls


@pytest.mark.parametrize("make_list", [list, tuple])
def test_a_later_eager_apply_of_the_same_list_makes_no_python_call_per_variable(counts,
                                                                                 make_list):
  assert _later_apply_calls(counts, 1000, make_list) == _later_apply_calls(counts, 100, make_list)


def test_the_eager_list_check_reads_no_element():
  """The same list again is recognised by comparing item pointers in C++ (swa_ops._sequences),
  not by a Python loop that takes a reference to each of thousands of variables."""
  from swa_ops import _sequences, averager  # pylint: disable=import-outside-toplevel
  assert averager._same_elements is _sequences.same_objects


def test_same_objects_compares_identity_not_values():
  from swa_ops._sequences import same_objects  # pylint: disable=import-outside-toplevel
  arrays = [np.zeros(3), np.zeros(3), np.ones(2)]
  assert same_objects(arrays, tuple(arrays))
  assert same_objects([], ())
  assert not same_objects(arrays, [np.zeros(3)] + arrays[1:])  # Equal, not the same.
  assert not same_objects(arrays, arrays[:2])
  assert not same_objects(arrays, arrays[::-1])
  for not_a_sequence in (iter(arrays), {id(a): a for a in arrays}, arrays[0]):
    with pytest.raises(TypeError, match="lists or tuples"):
      same_objects(arrays, not_a_sequence)


def test_import_swa_ops_loads_not_the_kernels_module():
  """The TensorFlow side's C++ helper is not in the kernels module, whose OpenMP runtime reads
  its wait policy once, when it loads (swa_ops.kernels sets it first, unless the user has)."""
  code = ("import os, sys, swa_ops\n"
          "maps = open('/proc/self/maps').read()\n"
          "assert 'swa_ops/_sequences' in maps, 'the helper is not loaded'\n"
          "assert 'swa_ops/_kernels' not in maps and 'swa_ops.kernels' not in sys.modules\n"
          "assert 'OMP_WAIT_POLICY' not in os.environ\n")
  env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
  env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
  subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)


def test_a_list_changed_in_place_between_eager_applies_is_averaged_as_it_is_now():
  variables = [tf.Variable(tf.fill([2], float(i))) for i in range(4)]
  step = tf.Variable(0, dtype=tf.int64)
  swa = swa_ops.SWAMovingAverage(step)
  var_list = variables[:2]
  swa.apply(var_list)
  var_list[1] = variables[2]  # Same list object, same length, another element.
  var_list.append(variables[3])
  swa.apply(var_list)
  assert swa.average(variables[3]) is not None
  for v in variables:
    v.assign_add(tf.fill([2], 10.0))
  var_list[0] = variables[1]
  swa.apply(var_list[:0] + var_list)  # Step 0: each average listed becomes its value.
  swa.apply(var_list)
  want = [0.0, 11.0, 12.0, 13.0]
  for v, value in zip(variables, want):
    np.testing.assert_array_equal(swa.average(v).numpy(), [value, value])


def _zero_debiased_graph_apply_calls(counts, n):
  """The Python calls of a TF1 apply() that zero-debiases n tensors (each gets a debias state
  whose name is made unique among the graph's global variables)."""
  graph = tf.Graph()
  with graph.as_default():
    variables = [tf.compat.v1.get_variable("v%d" % i, [4]) for i in range(n)]
    tensors = [v * 2.0 for v in variables]
    swa = swa_ops.SWAMovingAverage(tf.compat.v1.train.get_or_create_global_step(),
                                   zero_debias=True)
    with counts:
      swa.apply(tensors)
  return counts.calls


def test_zero_debiasing_tensors_in_a_graph_does_linear_work(counts):
  small = _zero_debiased_graph_apply_calls(counts, 100)
  large = _zero_debiased_graph_apply_calls(counts, 1000)
  assert large <= 11 * small, (small, large)  # Before: a name per global variable per tensor.


def _checkpoint_readers_opened_by_a_deferred_restore(monkeypatch, tmp_path, n):
  """How many times the checkpoint is opened (its whole index read) when the shadows of n
  variables are created by apply() after a checkpoint of them was read; checks the values."""
  from tensorflow.python.training import py_checkpoint_reader  # pylint: disable=import-outside-toplevel
  variables = [tf.Variable(tf.fill([2], float(i))) for i in range(n)]
  saved = swa_ops.SWAMovingAverage(0)
  saved.apply(variables)
  path = tf.train.Checkpoint(averager=saved).write(str(tmp_path / ("ckpt%d" % n)))
  for v in variables:
    v.assign_add(tf.fill([2], 100.0))
  opened = []
  new_reader = py_checkpoint_reader.NewCheckpointReader
  monkeypatch.setattr(py_checkpoint_reader, "NewCheckpointReader",
                      lambda *args: opened.append(args) or new_reader(*args))
  restored = swa_ops.SWAMovingAverage(0, start=10**9)  # apply() creates shadows, changes nothing.
  status = tf.train.Checkpoint(averager=restored).read(path)
  restored.apply(variables)
  status.assert_consumed()
  monkeypatch.undo()
  for i, v in enumerate(variables):
    np.testing.assert_array_equal(restored.average(v).numpy(), [float(i)] * 2)
  return len(opened)


def test_a_deferred_restore_opens_the_checkpoint_once_not_once_per_shadow(monkeypatch, tmp_path):
  assert (_checkpoint_readers_opened_by_a_deferred_restore(monkeypatch, tmp_path, 100) ==
          _checkpoint_readers_opened_by_a_deferred_restore(monkeypatch, tmp_path, 10))


# --------------------------------------------------------------------------------------------
# TensorFlow's per-kernel costs: eager execution builds a kernel per distinct set of attributes
# --------------------------------------------------------------------------------------------


def _variable_creating_ops(monkeypatch, update, n, prefix):
  """The VarHandleOps (their debug names) and the SWANewVariables ops (their sizes) that
  `update`, the first apply() of n variables of distinct names, runs: eager code builds a kernel
  for each distinct debug name, or number of inputs."""
  from tensorflow.python.ops import gen_resource_variable_ops  # pylint: disable=import-outside-toplevel
  from swa_ops import _ops  # pylint: disable=import-outside-toplevel
  debug_names, batches = [], []
  var_handle_op = gen_resource_variable_ops.var_handle_op
  new_variables = _ops.library.swa_new_variables

  def recorded_handle(*args, **kwargs):
    debug_names.append(kwargs.get("debug_name"))
    return var_handle_op(*args, **kwargs)

  def recorded_batch(initial_values, names, **kwargs):
    batches.append(len(initial_values))
    return new_variables(initial_values, names, **kwargs)

  variables = [tf.Variable(tf.fill([3], float(i)), name="%s%d" % (prefix, i)) for i in range(n)]
  swa = swa_ops.SWAMovingAverage(tf.Variable(0, dtype=tf.int64))
  monkeypatch.setattr(gen_resource_variable_ops, "var_handle_op", recorded_handle)
  monkeypatch.setattr(_ops.library, "swa_new_variables", recorded_batch)
  update(swa, variables)
  monkeypatch.undo()
  for i, v in enumerate(variables):
    assert swa.average(v).name == "%s%d/SWAMovingAverage:0" % (prefix, i)
    np.testing.assert_array_equal(swa.average(v).numpy(), [float(i)] * 3)
  return debug_names, batches


@pytest.mark.parametrize("mode", ["eager", "function"])
def test_eager_shadows_are_made_in_batches_not_one_kernel_per_name(monkeypatch, mode):
  if mode == "eager":
    update = lambda swa, variables: swa.apply(variables)
  else:
    update = lambda swa, variables: tf.function(lambda: (swa.apply(variables), None)[1])()
  debug_names, batches = _variable_creating_ops(monkeypatch, update, 600, "kernel_" + mode)
  assert not debug_names, debug_names  # Before: one VarHandleOp (and kernel) per shadow name.
  assert batches == [256, 256, 88], batches


def test_an_error_names_a_shadow_made_in_a_batch():
  variable = tf.Variable(tf.zeros([3]), name="batch_named")
  swa = swa_ops.SWAMovingAverage(tf.Variable(0, dtype=tf.int64))
  swa.apply([variable])
  from swa_ops import _ops  # pylint: disable=import-outside-toplevel
  with pytest.raises(tf.errors.InvalidArgumentError, match="'batch_named/SWAMovingAverage"):
    _ops.swa_assign(swa.average(variable), tf.zeros([4]), 1)


def _shadow_attributes(shadow):
  """What a shadow is, as a user sees it and TensorFlow keeps it (not its handle or id)."""
  attributes = {key: value for key, value in vars(shadow).items()
                if key not in ("_handle", "_unique_id", "_handle_name")
                and not key.startswith("_self_")}  # Trackable's state: set once tracked.
  return type(shadow), shadow.name, shadow.device, repr(attributes)


def test_an_eager_shadow_is_what_slot_creator_makes(monkeypatch):
  from tensorflow.python.training import slot_creator  # pylint: disable=import-outside-toplevel
  for dtype, average_dtype in [(tf.float32, None), (tf.float16, tf.float32)]:
    variable = tf.Variable(tf.constant([1.5, -2.0], dtype), name="w")
    swa = swa_ops.SWAMovingAverage(tf.Variable(0, dtype=tf.int64), average_dtype=average_dtype,
                                   name="Avg%s" % dtype.name)
    swa.apply([variable])
    ours = swa.average(variable)
    initial = tf.cast(variable, average_dtype or dtype)
    theirs = slot_creator.create_slot(variable, initial, "Avg%s" % dtype.name)
    assert ours.name == "w/Avg%s:0" % dtype.name and theirs.name == "w/Avg%s_1:0" % dtype.name
    assert _shadow_attributes(ours)[0] is _shadow_attributes(theirs)[0]
    assert _shadow_attributes(ours)[2:] == _shadow_attributes(theirs)[2:]
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    assert ours.trainable is False and ours.dtype == (average_dtype or dtype)


def test_a_variable_creator_or_custom_getter_still_sees_every_shadow():
  created, got = [], []

  def creator(next_creator, **kwargs):
    created.append(kwargs["name"])
    return next_creator(**kwargs)

  def custom_getter(getter, name, *args, **kwargs):
    got.append(name)
    return getter(name, *args, **kwargs)

  variables = [tf.Variable(tf.zeros([2]), name="c%d" % i) for i in range(4)]
  swa = swa_ops.SWAMovingAverage(tf.Variable(0, dtype=tf.int64))
  with tf.variable_creator_scope(creator):
    swa.apply(variables[:2])
  with tf.compat.v1.variable_scope("outer", custom_getter=custom_getter):
    swa.apply(variables[2:3])
  with tf.compat.v1.variable_scope("plain"):  # Named alike without a getter.
    swa.apply(variables[3:])
  assert len(created) == 2 and len(got) == 1, (created, got)
  assert [swa.average(v).name for v in variables] == [
      "c0/SWAMovingAverage:0", "c1/SWAMovingAverage:0", "outer/c2/SWAMovingAverage:0",
      "plain/c3/SWAMovingAverage:0"]


@pytest.mark.parametrize("mode", ["eager", "function"])
def test_a_group_of_many_variables_is_made_of_ops_of_few_inputs(monkeypatch, mode):
  from swa_ops import _ops  # pylint: disable=import-outside-toplevel
  n = 2 * _ops.MAX_VARIABLES_PER_EAGER_OP + 7
  inputs = []
  for op in ("swa_variable_group", "swa_variable_group_concat"):
    made = getattr(_ops.library, op)
    monkeypatch.setattr(_ops.library, op,
                        lambda handles, made=made: inputs.append(len(handles)) or made(handles))
  rng = np.random.default_rng(7)
  start = [rng.standard_normal(3) for _ in range(n)]
  variables = [tf.Variable(value, dtype=tf.float64) for value in start]
  step = tf.Variable(0, dtype=tf.int64)
  swa = swa_ops.SWAMovingAverage(step)
  update = (lambda: swa.apply(variables)) if mode == "eager" else tf.function(
      lambda: (swa.apply(variables), None)[1])
  update()
  later = [rng.standard_normal(3) for _ in range(n)]
  for v, value in zip(variables, later):
    v.assign(value)
  step.assign(1)
  update()
  assert inputs and max(inputs) <= _ops.MAX_VARIABLES_PER_EAGER_OP, inputs
  for v, first, second in zip(variables, start, later):
    np.testing.assert_allclose(swa.average(v).numpy(), first + (second - first) / 2.0,
                               rtol=0, atol=1e-15)


@pytest.mark.parametrize("mode", ["eager", "function"])
def test_swapping_many_variables_is_one_op_of_one_input(monkeypatch, mode):
  """swap_weights and averaged_weights run SwapVariablesGroup on a group made once, not
  SwapVariablesN with two inputs per pair (a kernel per number of pairs in eager code)."""
  from swa_ops import _ops  # pylint: disable=import-outside-toplevel
  n = 2 * _ops.MAX_VARIABLES_PER_EAGER_OP + 7
  calls = {"groups": [], "swaps": 0}
  made = _ops.library.swa_variable_group
  monkeypatch.setattr(_ops.library, "swa_variable_group",
                      lambda handles: calls["groups"].append(len(handles)) or made(handles))
  monkeypatch.setattr(_ops.library, "swap_variables_n", None)  # Not called.
  variables = [tf.Variable([float(i), -i]) for i in range(n)]
  swa = swa_ops.SWAMovingAverage(0)
  swa.apply(variables)
  for i, v in enumerate(variables):
    v.assign([i + 0.5, 7.0])
  swap = (lambda: swa.swap_weights(variables)) if mode == "eager" else tf.function(
      lambda: (swa.swap_weights(variables), None)[1])
  groups_before = len(calls["groups"])
  swap()
  made_for_swap = calls["groups"][groups_before:]
  assert sum(made_for_swap) == 2 * n and max(made_for_swap) <= _ops.MAX_VARIABLES_PER_EAGER_OP
  for i, v in enumerate(variables):
    np.testing.assert_array_equal(v.numpy(), [float(i), -i])
    np.testing.assert_array_equal(swa.average(v).numpy(), [i + 0.5, 7.0])
  swap()
  with swa.averaged_weights(variables):
    np.testing.assert_array_equal(variables[-1].numpy(), [n - 1.0, 1.0 - n])
  assert len(calls["groups"]) == groups_before + len(made_for_swap)  # The group made once.
  for i, v in enumerate(variables):
    np.testing.assert_array_equal(v.numpy(), [i + 0.5, 7.0])
    np.testing.assert_array_equal(swa.average(v).numpy(), [float(i), -i])


def test_joining_groups_refuses_what_is_not_a_group():
  from swa_ops import _ops  # pylint: disable=import-outside-toplevel
  variable = tf.Variable(tf.zeros([2]))
  group = _ops.library.swa_variable_group([variable.handle])
  with pytest.raises(tf.errors.InvalidArgumentError, match="input 1 must be a variable group"):
    _ops.library.swa_variable_group_concat([group, variable.handle])


def test_making_variables_refuses_names_of_another_length():
  from swa_ops import _ops  # pylint: disable=import-outside-toplevel
  with pytest.raises(tf.errors.InvalidArgumentError, match="names must be a vector of 2 names"):
    _ops.library.swa_new_variables([tf.zeros([2]), tf.zeros([3])], ["a/"], N=2)


def test_a_shadow_made_in_a_batch_is_an_ordinary_variable():
  """Assigned, read, looked up by name (AssignVariableOp), updated copy-on-write."""
  variable = tf.Variable([1.0, 2.0], name="ordinary")
  swa = swa_ops.SWAMovingAverage(tf.Variable(1, dtype=tf.int64))
  swa.apply([variable])
  shadow = swa.average(variable)
  shadow.assign([5.0, 7.0])
  before = shadow.read_value()
  swa.apply([variable])  # Weight 1/2.
  np.testing.assert_array_equal(before.numpy(), [5.0, 7.0])
  np.testing.assert_array_equal(shadow.numpy(), [3.0, 4.5])
