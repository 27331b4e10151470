"""The variables an averager keeps beside the ones it averages: shadows and debias state."""
import weakref

import tensorflow as tf
from tensorflow.python.eager.polymorphic_function import polymorphic_function
from tensorflow.python.framework import ops as tf_ops
from tensorflow.python.ops import control_flow_util
from tensorflow.python.ops import gen_resource_variable_ops
from tensorflow.python.ops import handle_data_util
from tensorflow.python.ops import resource_variable_ops
from tensorflow.python.training import slot_creator

from swa_ops import _ops
from swa_ops import _scopes

_VARIABLE_OP_TYPES = ("Variable", "VariableV2", "VarHandleOp")


def unwrap(value):
  """The tf.Variable behind a Keras 3 variable (TensorFlow backend); anything else as it is."""
  if not isinstance(value, (tf.Variable, tf.Tensor)):
    inner = getattr(value, "value", None)
    if isinstance(inner, tf.Variable):
      return inner
  return value


def op_name(value):
  """The name of the op behind a Variable or graph Tensor (its name without ':0')."""
  name = value.name
  return name.rpartition(":")[0] if ":" in name else name


def _value_for_shadow(variable):
  """The variable's initial value in graph mode (its current value once initialised); in eager
  code and tf.function, where TensorFlow keeps no initial value, its current value."""
  if tf.executing_eagerly():
    return variable.read_value()  # Already a copy of the value (an Identity of the read).
  if _ops.is_ref_variable(variable) and control_flow_util.EnableControlFlowV2(
      tf.compat.v1.get_default_graph()):
    # A v2 cond reads a reference variable's input before choosing a branch, so it would fail on
    # an uninitialised variable: take the initial value.
    return variable.initial_value
  return tf.cond(tf.compat.v1.is_variable_initialized(variable), variable.read_value,
                 lambda: variable.initial_value)


def create_shadow(value, name, dtype=None):
  """Creates the average of `value` (a Variable or a Tensor): `<value op name>/<name>`,
  non-trainable, on the Variable's device, of `dtype` (default: the value's); initialised to
  the Variable's value or to zeros. Named as `slot_creator.create_slot` names it."""
  with tf.init_scope():
    if isinstance(value, tf.Variable):
      with tf.device(value.device):
        initial = _value_for_shadow(value)
        if dtype is not None and dtype != initial.dtype:
          initial = tf.cast(initial, dtype)
      return _create_slot(value, initial, name, colocate=True)
    dtype = dtype or value.dtype
    colocate = value.op.type in _VARIABLE_OP_TYPES
    if value.shape.is_fully_defined():
      return _create_slot(value, tf.compat.v1.zeros_initializer(), name, colocate,
                          shape=value.shape, dtype=dtype)
    return _create_slot(value, tf.zeros(tf.shape(value), dtype), name, colocate)


def _create_slot(primary, initial, name, colocate, shape=None, dtype=None):
  """`slot_creator.create_slot` (`initial` a Tensor) or `create_slot_with_initializer`
  (`initial` an initializer, with `shape` and `dtype`), in the same variable scope, opened
  without TensorFlow's quadratic unique-name search (`_scopes`)."""
  validate_shape = (initial.shape if shape is None else shape).is_fully_defined()
  # pylint: disable=protected-access
  prefix = primary._shared_name if isinstance(primary, tf.Variable) else primary.op.name
  with _scopes.open_scope(prefix + "/" + name, unique=True):
    if not colocate:
      return slot_creator._create_slot_var(primary, initial, "", validate_shape, shape, dtype)
    with tf.distribute.get_strategy().extended.colocate_vars_with(primary):
      return slot_creator._create_slot_var(primary, initial, "", validate_shape, shape, dtype)


def _is_function_variable_creator(creator):
  """Whether `creator` is the one tf.function installs to record the variables its first call
  creates (in eager code under init_scope it creates a plain ResourceVariable)."""
  return (getattr(creator, "__name__", None) == "variable_capturing_scope" and
          getattr(creator, "__module__", None) == polymorphic_function.__name__)


def _plain_eager_context():
  """Whether `slot_creator` would create shadows of resource variables here as plain eager
  ResourceVariables: eager, no distribution strategy, no variable creator but tf.function's, and
  nothing in the variable scope that `get_variable` applies (custom getter, caching device,
  regularizer, constraint)."""
  if not tf.executing_eagerly() or tf.distribute.has_strategy():
    return False
  creators = tf_ops.get_default_graph()._variable_creator_stack  # pylint: disable=protected-access
  if not all(_is_function_variable_creator(creator) for _, creator in creators):
    return False
  scope = tf.compat.v1.get_variable_scope()
  return (scope.custom_getter is None and scope.caching_device is None and
          scope.regularizer is None and scope.constraint is None)


def create_eager_shadows(variables, name, dtype=None):
  """The shadows of `variables` (distinct), as `create_shadow` makes them one by one, made by one
  SWANewVariables op per _ops.MAX_VARIABLES_PER_EAGER_OP; None (none made) unless each would be
  a plain eager ResourceVariable on one CPU device (`_plain_eager_context`). Call under
  tf.init_scope().

  The shadows are what `slot_creator` makes, named alike (the same scope names, claimed in the
  same order), their handles named as TensorFlow names an eager variable's (the shadow's name
  and a number), without TensorFlow's kernel per name (VarHandleOp's debug name is an
  attribute): most of the time of making thousands of shadows one by one."""
  if not variables or not _plain_eager_context():
    return None
  device = variables[0].device
  # pylint: disable=protected-access
  if (tf.DeviceSpec.from_string(device).device_type not in (None, "CPU") or
      any(not isinstance(v, resource_variable_ops.BaseResourceVariable) or v._save_slice_info
          or v.device != device for v in variables)):
    return None
  dtypes = [dtype or v.dtype.base_dtype for v in variables]
  if any(d not in _ops.SUPPORTED_DTYPES for d in dtypes):
    return None
  names = [_scopes.claim_unique_scope(v._shared_name + "/" + name) for v in variables]
  handle_data = {}
  shadows = []
  with tf.device(device):
    for start in range(0, len(variables), _ops.MAX_VARIABLES_PER_EAGER_OP):
      chunk = range(start, min(start + _ops.MAX_VARIABLES_PER_EAGER_OP, len(variables)))
      initial = []
      for i in chunk:
        value = gen_resource_variable_ops.read_variable_op(variables[i].handle,
                                                           variables[i].dtype)
        initial.append(value if dtypes[i] == value.dtype else tf.cast(value, dtypes[i]))
      # The debug names VarHandleOp gets (the name scope, with its "/"): the handle names are
      # then "<shadow name>/<number>", as TensorFlow's.
      handles = _ops.library.swa_new_variables(
          initial, [n + "/" for n in names[chunk.start:chunk.stop]], N=len(chunk))
      for i, value, handle in zip(chunk, initial, handles):
        key = (value.shape, value.dtype)
        if key not in handle_data:
          handle_data[key] = handle_data_util.create_handle_data(*key)
        shadows.append(_variable_of_handle(handle, handle_data[key], *key, names[i]))
  return shadows


def _variable_of_handle(handle, handle_data, shape, dtype, handle_name):
  """The eager ResourceVariable `handle_name` of `handle` (non-trainable), as `tf.Variable`
  makes it around the handle of a new variable."""
  # pylint: disable=protected-access
  resource_variable_ops._set_handle_shapes_and_types(handle, handle_data, graph_mode=False)
  variable = resource_variable_ops.ResourceVariable.__new__(
      resource_variable_ops.ResourceVariable)
  unique_id = "%s_%d" % (handle_name, tf_ops.uid())
  handle._parent_trackable = weakref.ref(variable)
  handle._name = handle_name + ":0"
  handle._unique_id = unique_id
  resource_variable_ops.BaseResourceVariable.__init__(
      variable, trainable=False, shape=shape, dtype=dtype, handle=handle,
      name=handle_name + "/", unique_id=unique_id, handle_name=handle_name, in_graph_mode=False)
  return variable


class _GlobalVariableNames:
  """The op names of a graph's global variables, caught up with the collection as it grows (the
  names of the variables added since the last call), and rebuilt if it changed otherwise."""

  def __init__(self):
    self._collection = None
    self._last = None  # The last variable indexed: still there if the collection only grew.
    self._indexed = 0
    self._names = set()

  def get(self, graph):
    collection = graph.get_collection_ref(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES)
    if (collection is not self._collection or len(collection) < self._indexed or
        (self._indexed and collection[self._indexed - 1] is not self._last)):
      self._collection, self._indexed, self._names = collection, 0, set()
    if len(collection) > self._indexed:
      self._names.update(op_name(v) for v in collection[self._indexed:])
      self._indexed = len(collection)
      self._last = collection[-1]
    return self._names


_GLOBAL_VARIABLE_NAMES = weakref.WeakKeyDictionary()  # Graph -> its _GlobalVariableNames.


def _unique_name(scope, name):
  """`name`, or `name_1`, `name_2`, ... if `<scope>/<name>` is taken by a global variable; in a
  reusing variable scope (`reuse=True` or `AUTO_REUSE`: TF1 towers) `name` itself, so that
  `get_variable` returns the existing variable, as the reference and TensorFlow do."""
  if tf.compat.v1.get_variable_scope().reuse:
    return name
  graph = tf.compat.v1.get_default_graph()
  names = _GLOBAL_VARIABLE_NAMES.get(graph)
  if names is None:
    names = _GLOBAL_VARIABLE_NAMES[graph] = _GlobalVariableNames()
  taken = names.get(graph)
  candidate, index = name, 0
  while "%s/%s" % (scope, candidate) in taken:
    index += 1
    candidate = "%s_%d" % (name, index)
  return candidate


_DEBIAS_STATE_ATTR = "_swa_ops_debias_state"


def debias_state(average):
  """The `biased` and `local_step` variables of the zero-debiased average `average`.

  In graph mode every call creates a new pair in variable scope `<average op name>`, named
  `biased`, `local_step` (then `biased_1`, `local_step_1`, ...), as the reference does; in a
  reusing variable scope it gets the existing `biased` and `local_step` instead. In eager
  code and tf.function the pair is created once per average and reused by later calls.
  """
  eager = tf.executing_eagerly() or tf.inside_function()
  if eager and hasattr(average, _DEBIAS_STATE_ATTR):
    return getattr(average, _DEBIAS_STATE_ATTR)
  scope = op_name(average)
  dtype = average.dtype.base_dtype
  use_resource = _ops.is_resource_variable(average)
  with tf.init_scope():
    with tf.compat.v1.colocate_with(average):
      if tf.executing_eagerly():
        state = (tf.Variable(tf.zeros(average.shape, dtype), trainable=False,
                             name=scope + "/biased"),
                 tf.Variable(tf.zeros([], dtype), trainable=False, name=scope + "/local_step"))
      else:
        with tf.compat.v1.variable_scope(scope) as full_scope:
          state = (tf.compat.v1.get_variable(
                       _unique_name(full_scope.name, "biased"), shape=average.shape, dtype=dtype,
                       initializer=tf.compat.v1.zeros_initializer(), trainable=False,
                       use_resource=use_resource),
                   tf.compat.v1.get_variable(
                       _unique_name(full_scope.name, "local_step"), shape=[], dtype=dtype,
                       initializer=tf.compat.v1.zeros_initializer(), trainable=False,
                       use_resource=use_resource))
  if eager:
    setattr(average, _DEBIAS_STATE_ATTR, state)
  return state
