"""`SWAMovingAverage`: the reference's class, one fused op per variable."""
import collections
import contextlib
import inspect
import operator

import numpy as np
import tensorflow as tf
from tensorflow.python.checkpoint import restore as tf_restore
from tensorflow.python.trackable import base
from tensorflow.python.training import py_checkpoint_reader
from tensorflow.python.trackable import data_structures

from swa_ops import _backends
from swa_ops import _distribute
from swa_ops import _errors
from swa_ops import _groups
from swa_ops import _ops
from swa_ops import _scopes
from swa_ops import _state
from swa_ops import _xla
from swa_ops import moving_averages


# values: the list averaged; groups: (debiased, averages, debias states, values) per update op
# (or per variable); given, elements: for an eager plan, the var_list object as passed and its
# elements then (the keys: id(given) and the elements' ids).
_Plan = collections.namedtuple("_Plan", ["values", "groups", "given", "elements"],
                               defaults=[None, None])
_MAX_EAGER_PLANS = 16
# CheckpointPosition.restore takes a reader to share (TensorFlow 2.16 to 2.21 do).
_RESTORE_TAKES_READER = "reader" in inspect.signature(
    tf_restore.CheckpointPosition.restore).parameters


def _same_elements_in_python(first, second):
  return len(first) == len(second) and all(map(operator.is_, first, second))


try:  # The same check in C++, without touching each element (10,000 variables: ~1 ms less).
  from swa_ops._sequences import same_objects as _same_elements
except ImportError:  # A build without the pybind11 modules (-DSWA_OPS_KERNELS=OFF).
  _same_elements = _same_elements_in_python


def _step_tensor(num_updates):
  """`num_updates` as a scalar int32/int64/float32/float64 Tensor (Python ints as int64)."""
  if isinstance(num_updates, int):
    return tf.constant(num_updates, tf.int64)
  step = tf.convert_to_tensor(num_updates)
  if step.dtype.base_dtype not in _ops.STEP_DTYPES:
    step = tf.cast(step, tf.float64)
  if step.shape.rank not in (None, 0):
    raise _errors.ArgumentError(
        "SWAMovingAverage: num_updates must be a scalar, got shape %s" % step.shape)
  return step


def _check_num_updates(num_updates):
  """Raises DtypeError unless `num_updates` is a real number: a Python or NumPy number, or a
  Tensor or Variable of an integer or float dtype (checked when the averager is built, so that
  a bad one fails with a clear error before any shadow is created)."""
  try:
    dtype = getattr(num_updates, "dtype", None)
    dtype = tf.as_dtype(np.asarray(num_updates).dtype if dtype is None else dtype).base_dtype
  except (TypeError, ValueError):
    dtype = None
  if dtype is None or not (dtype.is_integer or dtype.is_floating):
    raise _errors.DtypeError(
        "SWAMovingAverage: num_updates (the step count) must be a real number: a Python number "
        "or an integer or float Tensor or Variable, got %r" % (num_updates,))


def _key(value):
  """The key of `value`'s shadow. A Tensor inside tf.function is keyed by its name: each trace
  (tf.function traces twice when it creates variables) makes a new Tensor object for it."""
  value = _state.unwrap(value)
  if not isinstance(value, tf.Variable) and getattr(value.graph, "building_function", False):
    return ("function tensor", value.name)
  return value.ref()


class SWAMovingAverage(tf.Module):
  """Stochastic weight averaging: equal-weight running means of variables.

  `apply()` at step `n = num_updates` updates every shadow ("average") as

      average <- average - (average - value) / (n + 1)

  (the reference's `decay = n / (1 + n)`), so that applied at n = 0, 1, ..., K the average is
  the plain mean of the K + 1 values seen. The weight 1 / (n + 1) is computed in float64 from
  the step count: exact at any step, where the reference's float32 decay drifts and, from
  n = 2**24 on, freezes the average. An `apply()` is one op per (device, dtype) group of
  variables, or one op per variable with `grouped=False`.

  Args:
    num_updates: the step count: a Python number, a scalar Tensor, or a Variable (usually the
      global step), read at every `apply()`.
    zero_debias: zero-debias the averages of Tensors (not of Variables), as the reference does.
      Note that with the changing SWA decay the reference's debiasing does not give the mean
      (4/3 of it after two steps); it is reproduced as it is.
    name: the shadows' suffix and the update's name scope.
    use_locking: hold each variable's lock exclusively during its update (default: lock-free).
    start, period: the SWA schedule, decided inside the op from the step: only steps
      n >= start with (n - start) % period == 0 are averaged, the k-th of them
      (k = (n - start) / period) with weight 1 / (k + 1); at other steps apply() changes
      nothing. A tf.function training loop needs no Python branching and no host sync.
    skip_nonfinite: if any element of any value of an `apply()` is NaN or Inf, skip that
      whole update (every shadow keeps its value) and add 1 to `skipped_updates`, an int64
      Variable saved with the averager. Decided inside the ops (one `AllFinite` op over all
      values feeds every update op): no host sync. Without it NaN and Inf propagate into the
      averages, as in the reference.
    average_dtype: the dtype of every average (default: each variable's own), e.g. tf.float32
      for float16/bfloat16 variables, whose averages would otherwise stall once 1 / (n + 1) of
      a change falls below half a unit in the last place. It must be the variable's dtype or
      a wider float (float32 or float64 for float16/bfloat16, float64 for float32): the op
      reads the narrow value and computes in the average's precision, with no cast tensor.
      Needs resource variables (TF1 reference variables take no wider average). `swap_weights`
      (a bit-exact exchange) needs equal dtypes; `assign_average_vars` rounds to the variable.
    grouped: update all variables of one (device, dtype) group with one op instead of one op
      per variable (`SWAAssign`): in eager code and tf.function `SWAAssignGroup` on a variable
      group made once per list (a tf.function captures its one handle, not one per variable),
      in TF1 graph mode `SWAAssignNVariable` on the handles. The results are bit-identical; the
      grouped op saves the per-op and per-captured-handle overhead (which dominates for many
      small variables) and checks every variable of the group before writing any. TF1
      reference variables always take the per-variable path.

  Works in TF1 graph mode (returns the update op), in eager code (performs the update) and in
  tf.function (shadows are created on the first trace). Unlike the reference, later `apply()`
  calls on the same variables update the existing shadows instead of raising.
  """

  _backend = _backends.FUSED

  def __init__(self, num_updates, zero_debias=False, name="SWAMovingAverage", use_locking=False,
               grouped=True, start=0, period=1, skip_nonfinite=False, average_dtype=None):
    if not (isinstance(start, int) and start >= 0 and isinstance(period, int) and period >= 1):
      raise _errors.ArgumentError("SWAMovingAverage: start must be an int >= 0 and period an "
                                  "int >= 1, got start=%r, period=%r" % (start, period))
    _check_num_updates(num_updates)
    if zero_debias and (start, period) != (0, 1):
      raise _errors.ArgumentError("SWAMovingAverage: start/period cannot be combined with "
                                  "zero_debias=True")
    if average_dtype is not None:
      average_dtype = tf.as_dtype(average_dtype)
      if average_dtype not in _ops.SUPPORTED_DTYPES:
        raise _errors.DtypeError("SWAMovingAverage: average_dtype must be float16, bfloat16, "
                                 "float32 or float64, got %s" % average_dtype.name)
    super().__init__()
    self._maybe_initialize_trackable()
    self._average_dtype = average_dtype
    self._name = name
    self._schedule = (start, period)
    # The step belongs to the caller (usually the global step): not saved with the averager.
    self._num_updates = data_structures.NoDependency(num_updates)
    self._grouped = grouped
    self._zero_debias = zero_debias
    self._use_locking = use_locking
    self._skip_nonfinite = skip_nonfinite
    if skip_nonfinite:
      with tf.init_scope():
        self.skipped_updates = tf.Variable(0, dtype=tf.int64, trainable=False,
                                           name=name + "/skipped_updates")
    # Keyed by variable (not checkpointable keys): each shadow is tracked by name instead.
    self._averages = data_structures.NoDependency({})  # _key(var) -> shadow Variable
    self._eager_plans = data_structures.NoDependency({})  # ids of a var_list -> its _Plan
    self._eager_plans_by_list = data_structures.NoDependency({})  # id(var_list) -> its _Plan
    self._variable_groups = _groups.VariableGroups()
    self._debias_states = data_structures.NoDependency({})  # _key(tensor) -> (biased, local_step)
    self._dependency_suffixes = data_structures.NoDependency({})  # name -> next suffix to try
    # (checkpoint read, its reader) while shadows restore from it: see _restore_deferred.
    self._checkpoint_reader = data_structures.NoDependency((None, None))

  @property
  def name(self):
    return self._name

  def _trackable_children(self, save_type=base.SaveType.CHECKPOINT, **kwargs):
    # A SavedModel of a function that applies the averager holds its variable groups (their
    # handles are captured); checkpoints have nothing to save of them.
    children = super()._trackable_children(save_type, **kwargs)
    if save_type == base.SaveType.SAVEDMODEL:
      children.update(self._variable_groups.trackables())
    return children

  @property
  def variables(self):
    """The shadows and the debias state: what a checkpoint of the averager saves."""
    debias = [v for state in self._debias_states.values() for v in state]
    return tuple(self._averages.values()) + tuple(debias)

  @property
  def trainable_variables(self):
    return ()  # Averages are never trained.

  @tf.autograph.experimental.do_not_convert
  def apply(self, var_list=None):
    """Creates the missing shadows and updates the shadows of `var_list`.

    Args:
      var_list: Variables and/or Tensors of dtype float16, bfloat16, float32 or float64;
        default: the trainable variables (of the default graph; pass it in eager code).

    Returns:
      An op that updates all shadows (graph mode, tf.function); None in eager code.

    Raises:
      TypeError: an element is not a float Variable or Tensor (names it).
    """
    if var_list is None:
      var_list = tf.compat.v1.trainable_variables()
    eager = tf.executing_eagerly()
    plan = self._eager_plan(var_list) if eager else None
    if plan is not None:  # The same list as before: checked, and every shadow exists.
      return self._update(plan.values, plan=plan)
    given = var_list
    var_list = [_state.unwrap(var) for var in var_list]
    if not var_list:
      raise _errors.ArgumentError(
          "SWAMovingAverage.apply: var_list is empty (the default, the graph's trainable "
          "variables, is empty in eager code and tf.function: pass the variables)")
    for var in var_list:
      if not isinstance(var, (tf.Variable, tf.Tensor)):
        raise _errors.DtypeError(
            "SWAMovingAverage.apply: %r is neither a Variable nor a Tensor" % (var,))
      moving_averages.check_float(var, "SWAMovingAverage.apply")
      self._check_average_dtype(var)
      if not isinstance(var, tf.Variable) and tf.executing_eagerly():
        raise _errors.ArgumentError(
            "SWAMovingAverage.apply: an eager %s cannot be averaged (it has no name to key its "
            "shadow across steps): average a Variable, or call apply() in graph mode or inside "
            "tf.function" % _errors.describe(var))
    keys = [_key(var) for var in var_list]
    if len(set(keys)) != len(keys):
      twice = next(var for i, var in enumerate(var_list) if keys[i] in keys[:i])
      raise _errors.ArgumentError("SWAMovingAverage.apply: %s appears twice in var_list"
                                  % _errors.describe(twice))
    strategy = _distribute.strategy_of(var_list)
    if strategy is not None:
      return _distribute.apply(self, strategy, var_list)
    self._ensure_shadows(var_list)
    plan = self._plan(var_list)
    if eager:
      self._keep_eager_plan(given, plan)
    return self._update(var_list, plan=plan)

  def _eager_plan(self, var_list):
    """The plan of an earlier eager apply() of the same elements: found by the list object
    (a list's elements compared by identity: it may have changed) or by the elements' ids."""
    plan = self._eager_plans_by_list.get(id(var_list))
    if plan is not None and plan.given is var_list and (
        isinstance(var_list, tuple) or _same_elements(var_list, plan.elements)):
      return plan
    return self._eager_plans.get(tuple(map(id, var_list)))

  def _keep_eager_plan(self, given, plan):
    """Eager code applies the same list at every step: keep its plan under the list object and
    its elements' ids (holding both, so that the ids stay theirs)."""
    plan = plan._replace(given=given, elements=tuple(given))
    for plans, key in ((self._eager_plans_by_list, id(given)),
                       (self._eager_plans, tuple(map(id, plan.elements)))):
      if len(plans) >= _MAX_EAGER_PLANS:
        plans.pop(next(iter(plans)))
      plans[key] = plan

  def _plan(self, var_list, component=lambda value: value):
    """The update groups of var_list (whose shadows exist), their members mapped by
    `component`."""
    # Tuples: a variable group remembers them (_groups.VariableGroups.get).
    groups = []
    for debiased, group in self._groups(var_list):
      averages = tuple(component(self._averages[_key(var)]) for var in group)
      states = [tuple(map(component, self._debias_states[_key(var)])) for var in group
                if debiased]
      groups.append((debiased, averages, states, tuple(component(var) for var in group)))
    return _Plan(tuple(component(var) for var in var_list), groups)

  def _update(self, var_list, component=None, count_skipped=True, plan=None):
    """The update of var_list's existing shadows (grouped by `plan`, if given). Under
    tf.distribute, `component` maps every distributed variable (averaged, shadow, debias state,
    counter, step) to its component on one replica's device, and the ops update that device's
    components only."""
    component = component or (lambda value: value)
    plan = plan or self._plan(var_list, component)
    with tf.name_scope(self._name) as scope:
      step = self._update_scalar(component)
      options = _backends.Options(self._use_locking, self._schedule,
                                  groups=self._variable_groups)
      if self._skip_nonfinite:
        finite = self._backend.all_finite(plan.values, options)
        options = options._replace(apply_if=finite)
      updates = []
      for debiased, averages, states, values in plan.groups:
        updates.extend(self._update_group(step, debiased, averages, states, values, options))
      if self._skip_nonfinite and count_skipped:
        updates.append(component(self.skipped_updates).assign_add(
            tf.cast(tf.logical_not(finite), tf.int64), read_value=False))
      return tf.group(*updates, name=scope)

  def _update_scalar(self, component):
    """The scalar Tensor that every update op of one apply() takes (`_update_group`'s `step`):
    here the step count. A subclass may pass another (ExponentialMovingAverage: its decay)."""
    return _step_tensor(component(self._num_updates))

  def _groups(self, var_list):
    """Splits var_list into the lists one grouped op can update: same device, dtype, kind of
    value (Variable or Tensor) and zero-debiasing. Without grouping (or for TF1 reference
    variables, which the grouped ops do not take) every element is a group of its own."""
    groups = {}
    for index, var in enumerate(var_list):
      average = self._averages[_key(var)]
      debiased = _key(var) in self._debias_states
      if self._grouped and self._backend.grouped and _ops.is_resource_variable(average):
        key = (average.device, average.dtype.base_dtype, var.dtype.base_dtype,
               _ops.is_resource_variable(var), debiased)
      else:
        key = index
      groups.setdefault(key, (debiased, []))[1].append(var)
    return groups.values()

  def _update_group(self, step, debiased, averages, states, group, options):
    """The update ops of one group: one grouped op, or one op per variable."""
    with tf.name_scope("AssignMovingAvg"):
      if debiased:
        return self._debiased_updates(self._backend.swa_decay(step), averages, states, group,
                                      options)
      if len(group) == 1 or not self._backend.grouped:
        return [self._backend.swa(average, var, step, options)
                for average, var in zip(averages, group)]
      return [self._backend.swa_group(averages, group, step, options)]

  def _debiased_updates(self, decay, averages, states, group, options):
    """The zero-debiased updates of one group with `decay`: one grouped op, or one per
    Tensor."""
    biased, local_steps = zip(*states)
    if len(group) == 1 or not self._backend.grouped:
      return [self._backend.debiased(*args, decay, options)
              for args in zip(averages, biased, local_steps, group)]
    return [self._backend.debiased_group(averages, list(biased), list(local_steps), group,
                                         decay, options)]

  def _check_average_dtype(self, var):
    """Raises DtypeError naming `var` if its average cannot have dtype average_dtype."""
    if self._average_dtype is None or self._average_dtype == var.dtype.base_dtype:
      return
    if not _ops.widens(var.dtype.base_dtype, self._average_dtype):
      raise _errors.DtypeError(
          "SWAMovingAverage.apply: %s has dtype %s, which an average of average_dtype %s cannot "
          "hold exactly: average_dtype must be the variable's dtype or a wider float"
          % (_errors.describe(var), var.dtype.base_dtype.name, self._average_dtype.name))
    if _ops.is_ref_variable(var):
      raise _errors.ArgumentError(
          "SWAMovingAverage.apply: %s is a TF1 reference variable: average_dtype (a %s average "
          "of a %s variable) needs resource variables (use_resource=True)"
          % (_errors.describe(var), self._average_dtype.name, var.dtype.base_dtype.name))

  def _unique_dependency(self, base):
    """`base`, or the first of `base_1`, `base_2`, ... that names no dependency yet; the search
    goes on where the last one for `base` stopped (dependencies are never removed)."""
    if self._lookup_dependency(base) is None:
      return base
    index = self._dependency_suffixes.get(base, 1)
    while self._lookup_dependency("%s_%d" % (base, index)) is not None:
      index += 1
    self._dependency_suffixes[base] = index  # Taken once tracked: the next search goes on.
    return "%s_%d" % (base, index)

  def _ensure_shadows(self, var_list):
    """Creates the missing shadows of var_list, in its order."""
    with tf.init_scope():
      _scopes.restart_searches()
      missing = {_key(var): var for var in var_list if _key(var) not in self._averages}
      made = _state.create_eager_shadows(list(missing.values()), self._name,
                                         self._average_dtype) if missing else None
      made = dict(zip(missing, made)) if made is not None else {}
    try:
      for var in var_list:
        self._ensure_shadow(var, made.get(_key(var)))
    finally:
      self._checkpoint_reader = data_structures.NoDependency((None, None))

  def _ensure_shadow(self, var, average=None):
    """Tracks (and registers) the shadow of `var` unless it has one: `average`, made beforehand
    (`_state.create_eager_shadows`), or one made here."""
    if _key(var) in self._averages:
      return
    if average is None:
      average = _state.create_shadow(var, self._name, self._average_dtype)
    # Checkpoint dependency "<averaged op name>": a checkpoint restored before the first apply()
    # is held back by TensorFlow and restored into the shadow when it is created here.
    # Variables sharing a name (eager code allows that) get "_1", "_2", ... in apply() order.
    dependency = self._unique_dependency(_state.op_name(var))
    deferred = self._deferred_dependencies.pop(dependency, ()) if _RESTORE_TAKES_READER else ()
    self._track_trackable(average, name=dependency)
    self._restore_deferred(deferred, average)
    if isinstance(var, tf.Variable):
      if not tf.executing_eagerly():
        tf.compat.v1.add_to_collection(tf.compat.v1.GraphKeys.MOVING_AVERAGE_VARIABLES, var)
    elif self._zero_debias:
      state = _state.debias_state(average)
      self._track_trackable(state[0], name=dependency + "/biased")
      self._track_trackable(state[1], name=dependency + "/local_step")
      self._debias_states[_key(var)] = state
    self._averages[_key(var)] = average

  def _restore_deferred(self, positions, trackable):
    """Restores into `trackable` the checkpoint positions held back for it (what
    `_track_trackable` does), with one checkpoint reader per checkpoint read, not one per
    shadow: opening one reads the checkpoint's whole index, so N shadows cost O(N^2)."""
    for position in sorted(positions, key=lambda p: p.checkpoint.restore_uid, reverse=True):
      checkpoint, reader = self._checkpoint_reader
      if checkpoint is not position.checkpoint:
        reader = py_checkpoint_reader.NewCheckpointReader(position.checkpoint.save_path_string)
        self._checkpoint_reader = data_structures.NoDependency((position.checkpoint, reader))
      position.restore(trackable, reader=reader)

  def _pairs(self, var_list, what):
    """(variable, shadow) pairs of var_list (default: every averaged Variable)."""
    if var_list is None:
      return [(var, avg) for var, avg in zip(self._variables(), self._shadows())]
    pairs = []
    for var in var_list:
      var = _state.unwrap(var)
      average = self._averages.get(_key(var)) if isinstance(var, tf.Variable) else None
      if average is None:
        raise _errors.ArgumentError("SWAMovingAverage.%s: %s has no average (apply() it first)"
                                    % (what, _errors.describe(var)))
      pairs.append((var, average))
    return pairs

  def _variables(self):
    return [key.deref() for key in self._averages if not isinstance(key, tuple)
            and isinstance(key.deref(), tf.Variable)]

  def _shadows(self):
    return [self._averages[var.ref()] for var in self._variables()]

  def assign_average_vars(self, var_list=None):
    """Copies each variable's average into the variable (default: every averaged Variable).

    An average of a wider `average_dtype` is rounded to the variable's dtype.

    Returns the assign op (graph mode) or None (eager)."""
    with tf.name_scope(self._name + "_assign_averages"):
      return tf.group(*(var.assign(tf.cast(average, var.dtype.base_dtype), read_value=False)
                        for var, average in _distribute.pairs_on_replicas(
                            self._pairs(var_list, "assign_average_vars"))))

  def swap_weights(self, var_list=None):
    """Exchanges the variables' values and their averages, bit-exactly, with one op per dtype
    (the variables and shadows trade buffers: no temporaries, no arithmetic). Swapping twice
    restores both. TF1 reference variables are swapped through one temporary copy each.
    Averages of another dtype (`average_dtype`) cannot be exchanged: DtypeError.

    Returns the swap op (graph mode) or None (eager)."""
    groups = {}
    updates = []
    for var, average in _distribute.pairs_on_replicas(self._pairs(var_list, "swap_weights")):
      if var.dtype.base_dtype != average.dtype.base_dtype:
        raise _errors.DtypeError(
            "SWAMovingAverage.swap_weights: %s has dtype %s but its average has dtype %s "
            "(average_dtype): values of different dtypes cannot be exchanged; use "
            "averaged_weights() or assign_average_vars()"
            % (_errors.describe(var), var.dtype.base_dtype.name, average.dtype.base_dtype.name))
      if _ops.is_resource_variable(var) and _ops.is_resource_variable(average):
        groups.setdefault((var.dtype.base_dtype, var.device), []).append((var, average))
      else:
        value = tf.raw_ops.DeepCopy(x=var.value())  # Identity would alias the ref's buffer.
        with tf.control_dependencies([value]):
          assigned = tf.compat.v1.assign(var, average.value())
        with tf.control_dependencies([assigned]):
          updates.append(tf.compat.v1.assign(average, value))
    with tf.name_scope(self._name + "_swap"):
      for pairs in groups.values():
        variables, averages = (list(side) for side in zip(*pairs))
        updates.append(self._swap(variables, averages))
      return tf.group(*updates)

  def _swap(self, variables, averages):
    """One op exchanging variables[i] and averages[i] (resource variables of one dtype and
    device): on their group (_groups.swap), on the lists under a distribution strategy or with
    grouped=False, in plain TF ops where XLA compiles."""
    if _xla.in_xla_context():
      return _xla.swap(variables, averages)
    if self._grouped and not tf.distribute.has_strategy():
      return _groups.swap(self._variable_groups, variables, averages)
    return _ops.swap_variables(variables, averages)

  @contextlib.contextmanager
  def averaged_weights(self, var_list=None):
    """Context manager (eager code): the variables hold their averages inside the block, and
    their own values again after it (two bit-exact swaps). A variable whose average has a wider
    `average_dtype` holds its average rounded to its dtype inside the block and gets its own
    value back from a copy kept meanwhile; the averages never change."""
    if not tf.executing_eagerly():
      raise _errors.ArgumentError(
          "SWAMovingAverage.averaged_weights is for eager code; in graph mode run "
          "swap_weights() before and after")
    pairs = self._pairs(var_list, "averaged_weights")
    same = [var for var, average in pairs if var.dtype.base_dtype == average.dtype.base_dtype]
    wider = [(var, average) for var, average in pairs
             if var.dtype.base_dtype != average.dtype.base_dtype]
    saved = [tf.identity(var.read_value()) for var, _ in wider]
    if same:
      self.swap_weights(same)
    for var, average in wider:
      var.assign(tf.cast(average, var.dtype.base_dtype), read_value=False)
    try:
      yield self
    finally:
      for (var, _), value in zip(wider, saved):
        var.assign(value, read_value=False)
      if same:
        self.swap_weights(same)

  def average(self, var):
    """The shadow Variable of `var`, or None."""
    return self._averages.get(_key(var), None)

  def average_name(self, var):
    """The name of `var`'s shadow without ':0'; before `apply()`, the name it would get
    (`<var op name>/<name>`, made unique in the default graph but not reserved)."""
    if _key(var) in self._averages:
      return _state.op_name(self._averages[_key(var)])
    return tf.compat.v1.get_default_graph().unique_name(
        _state.op_name(_state.unwrap(var)) + "/" + self._name, mark_as_used=False)

  def variables_to_restore(self, moving_avg_variables=None):
    """A dict `restore name -> Variable` that makes a `tf.compat.v1.train.Saver` restore the
    averages into the model's variables.

    `moving_avg_variables` (default: trainable + moving-average variables) map
    `average_name(v) -> v`; every other global variable whose name is not among those (the
    shadows themselves, the global step, ...) maps `op name -> v`.
    """
    if moving_avg_variables is None:
      moving_avg_variables = (tf.compat.v1.trainable_variables() +
                              tf.compat.v1.moving_average_variables())
    unique = {v.ref(): v for v in moving_avg_variables}.values()
    name_map = {self.average_name(v): v for v in unique}
    averaged_names = {v.name for v in unique}
    for v in tf.compat.v1.global_variables():
      name = _state.op_name(v)
      if v.name not in averaged_names and name not in name_map:
        name_map[name] = v
    return name_map
