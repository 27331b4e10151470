"""Variable groups: one `SWAVariableGroup` handle for a list of resource variables of one
device, which the `...Group` ops take in place of the list.

A tf.function that updates a group captures one tensor (the group's handle) instead of one per
variable, and the op looks the variables up once, in the group, instead of at every update.
In a TF1 graph, a `SWAVariableGroupByName` op names the variables (as their VarHandleOps do) and
makes the group at its first run: a session then runs two ops per update, not a VarHandleOp per
variable as well.

The op's only resource input is then the group, so TensorFlow's automatic control dependencies
would not order it with the other ops of the function that use its variables (an optimizer's
update before it, an assignment after it). `_order_with_members`, registered with them, makes
every op that takes a group (directly, or through a cond, loop or call) count as writing each
member variable that the same function graph uses elsewhere.
"""
import copy
import weakref

import tensorflow as tf
from tensorflow.python.framework import auto_control_deps
from tensorflow.python.framework import func_graph
from tensorflow.python.framework import ops as tf_ops
from tensorflow.python.trackable import resource

from swa_ops import _ops


class _VariableGroup(resource.CapturableResource):
  """A group handle as a resource a tf.function can capture, and SavedModel recreate from the
  (tracked) variables when it exports such a function."""

  def __init__(self, variables):
    super().__init__(device=variables[0].device)
    self.members = list(variables)

  def _create_resource(self):
    return make_group([variable.handle for variable in self.members])

  def _deserialization_dependencies(self, children):
    # Saved and restored after the variables, which _export_to_saved_model_graph maps.
    return {"member_%d" % i: variable for i, variable in enumerate(self.members)}

  def _export_to_saved_model_graph(self, object_map, tensor_map, **unused_kwargs):
    exported = copy.copy(self)
    exported.members = [object_map[variable] for variable in self.members]
    exported._resource_handle = exported._create_resource()  # pylint: disable=protected-access
    object_map[self] = exported
    tensor_map[self.resource_handle] = exported._resource_handle  # pylint: disable=protected-access
    return [self.resource_handle]


def make_group(handles):
  """The SWAVariableGroup of the variable handles `handles` (of one device): made of groups of
  at most _ops.MAX_VARIABLES_PER_EAGER_OP, joined by SWAVariableGroupConcat."""
  chunk = _ops.MAX_VARIABLES_PER_EAGER_OP
  groups = [_ops.library.swa_variable_group(handles[start:start + chunk])
            for start in range(0, len(handles), chunk)]
  while len(groups) > 1:
    groups = [_ops.library.swa_variable_group_concat(groups[start:start + chunk])
              for start in range(0, len(groups), chunk)]
  return groups[0]


def swap(groups, first, second):
  """One op exchanging first[i] and second[i] (lists of resource variables of one dtype and
  device): SwapVariablesGroup on their group from `groups` (a VariableGroups) in eager code and
  tf.function, made once per list (eager execution would build a SwapVariablesN kernel for each
  number of pairs, at a cost that grows faster than that number); else SwapVariablesN."""
  group = groups.get(first, second)  # Lists: not remembered by identity.
  if group is None:
    return _ops.swap_variables(first, second)
  return _ops.swap_variables_group(group, first[0].dtype.base_dtype)


_MAX_RECENT = 64


class VariableGroups:
  """The groups of one averager: made once per list of variables and kept with them.

  Used where the variables' handles are eager (TF2: eager code and tf.function), and, with
  `in_graph`, in TF1 graph mode (`_group_by_name`)."""

  def __init__(self):
    self._groups = {}  # tuple of variable ids -> _VariableGroup (which keeps the variables alive)
    self._recent = {}  # (id(variables), id(values)) -> (variables, values, group or None)

  def get(self, variables, values=(), usable=None, in_graph=False):
    """The group handle of `variables` followed by `values` (resource variables of one
    device), to pass to one `...Group` op built right after (`_note_use` records it for that
    op's ordering); None if `usable(members)`, asked before a group is made, is false, and in TF1
    graph mode unless `in_graph` and `_group_by_name` can name the variables. Tuples are
    remembered by identity: passed again, they find their group without a look at each member."""
    if not tf.compat.v1.executing_eagerly_outside_functions():
      members = list(variables) + list(values)
      if not in_graph or (usable is not None and not usable(members)):
        return None
      return _group_by_name(members)
    recent = self._recent.get((id(variables), id(values)))
    if recent is not None and recent[0] is variables and recent[1] is values:
      group = recent[2]
    else:
      group = self._group(list(variables) + list(values), usable)
      if isinstance(variables, tuple) and isinstance(values, tuple):
        self._remember(variables, values, group)
    if group is None:
      return None
    _note_use(group)
    return group.resource_handle

  def _group(self, members, usable):
    key = tuple(map(id, members))
    group = self._groups.get(key)
    if group is None:
      if usable is not None and not usable(members):
        return None
      group = _VariableGroup(members)
      with tf.init_scope():
        group.resource_handle  # pylint: disable=pointless-statement
      self._groups[key] = group
    return group

  def _remember(self, variables, values, group):
    if len(self._recent) >= _MAX_RECENT:
      self._recent.pop(next(iter(self._recent)))
    # Holding the tuples keeps their ids theirs.
    self._recent[(id(variables), id(values))] = (variables, values, group)

  def trackables(self):
    """The groups, as SavedModel children: {name: resource}."""
    return {"variable_group_%d" % i: group for i, group in enumerate(self._groups.values())}


# The shared_name of an anonymous (eager-only) VarHandleOp: ResourceHandle::ANONYMOUS_NAME.
_ANONYMOUS_NAME = "cd2c89b7-88b7-44c8-ad83-06c2a9158347"


def _group_by_name(variables):
  """A `SWAVariableGroupByName` handle for `variables` in a TF1 graph, placed with the first of
  them; None unless each is a resource variable whose handle a named VarHandleOp of this graph
  makes (not in a function graph, where handles are captured)."""
  graph = tf.compat.v1.get_default_graph()
  if isinstance(graph, func_graph.FuncGraph):
    return None
  containers, shared_names = [], []
  for variable in variables:
    handle_op = variable.handle.op
    if handle_op.type != "VarHandleOp" or handle_op.graph is not graph:
      return None
    shared_name = handle_op.get_attr("shared_name").decode()
    if not shared_name or shared_name == _ANONYMOUS_NAME:
      return None
    containers.append(handle_op.get_attr("container").decode())
    shared_names.append(shared_name)
  with tf.compat.v1.colocate_with(variables[0].handle.op):
    return _ops.library.swa_variable_group_by_name(containers=containers,
                                                   shared_names=shared_names)


# Function graph -> {tensor id of the tensor standing for a group's handle there: the group}.
_GROUP_USES = weakref.WeakKeyDictionary()


def _captured(graph, tensor):
  """The placeholder standing for eager `tensor` in function graph `graph` (nested function
  graphs capture eager tensors directly too), or None if `graph` has not captured it."""
  captures = graph._function_captures  # pylint: disable=protected-access
  return captures.by_val_internal.get(id(tensor))


def _note_use(group):
  """Captures `group`'s handle in the default graph and each function graph around it (those
  would, for the cond, loop or call that the op ends up in), and records the placeholders."""
  graph = tf.compat.v1.get_default_graph()
  while isinstance(graph, func_graph.FuncGraph):
    with graph.as_default():
      internal = graph.capture(group.resource_handle)
    _GROUP_USES.setdefault(graph, {})[tf_ops.tensor_id(internal)] = group
    graph = graph.outer_graph


@auto_control_deps.register_acd_resource_resolver
def _order_with_members(op, reads, writes):
  """An op using a group's handle writes (for ordering) every member variable that its graph
  has captured: ordered after the ops before it that use one, and before those after it."""
  uses = _GROUP_USES.get(op.graph)
  if not uses:
    return False
  added = False
  for handle in list(reads) + list(writes):
    group = uses.get(tf_ops.tensor_id(handle))
    if group is None:
      continue
    for member in group.members:
      internal = _captured(op.graph, member.handle)
      if internal is not None and internal not in writes:
        writes.add(internal)
        added = True
  return added
