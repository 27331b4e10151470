"""`export_averaged`: a SavedModel for serving whose variables hold an averager's averages.

The SavedModel holds the serving signatures and the variables they read, nothing else: no
training function, no averager, so no swa_ops op and no swa_ops resource. It loads with
`tf.saved_model.load` where swa_ops is not installed, and in TF Serving.

How the averages get in without touching the live variables: the SavedModel is first written
as usual (its variables checkpoint then holds the live values), and its variables checkpoint is
then rewritten, the same keys and object graph, with each averaged variable's entry replaced by
its average (rounded to the variable's dtype for a wider `average_dtype`).
"""
import os
import shutil
import tempfile

import tensorflow as tf
from tensorflow.python.framework import op_def_registry

from swa_ops import _errors
from swa_ops import _ops
from swa_ops import _state

_WHAT = "swa_ops.export_averaged"
_VARIABLES_ATTRIBUTE = "model_variables"  # The exported root's list of variables.
_DEFAULT_SIGNATURE = "serving_default"


def swa_op_names():
  """The op types the swa_ops library registers."""
  return frozenset(name for name in dir(_ops.library)
                   if name[:1].isupper() and op_def_registry.get(name) is not None)


def _concrete(function, name):
  """`function` (a tf.function with an input_signature, or a ConcreteFunction) as a
  ConcreteFunction; ArgumentError naming the signature otherwise."""
  if isinstance(function, tf.types.experimental.ConcreteFunction):
    return function
  if isinstance(function, tf.types.experimental.PolymorphicFunction):
    if function.input_signature is None:
      raise _errors.ArgumentError(
          "%s: signature '%s' is a tf.function without an input_signature: give it one, or "
          "pass function.get_concrete_function(...)" % (_WHAT, name))
    return function.get_concrete_function()
  raise _errors.ArgumentError(
      "%s: signature '%s' must be a tf.function with an input_signature or a ConcreteFunction, "
      "got %s" % (_WHAT, name, type(function).__name__))


def _default_signature(module):
  """The module's `__call__`, if it is a tf.function with an input_signature."""
  call = getattr(module, "__call__", None)
  if isinstance(call, tf.types.experimental.PolymorphicFunction) and call.input_signature:
    return call
  if _is_keras_model(module):
    raise _errors.ArgumentError(
        "%s: pass `signatures` for a Keras model, e.g. tf.function(lambda x: model(x), "
        "input_signature=[tf.TensorSpec(...)]); or put the averages into the model "
        "(swa_ops.keras.SWA(assign_at_end=True), or within `with callback.averaged_weights():`) "
        "and use model.export(path)" % _WHAT)
  raise _errors.ArgumentError(
      "%s: no signatures given and %s has no __call__ tf.function with an input_signature: "
      "pass signatures={name: tf.function or ConcreteFunction}" % (_WHAT, type(module).__name__))


def _is_keras_model(module):
  return any(cls.__module__.split(".")[0] in ("keras", "tf_keras")
             for cls in type(module).__mro__)


def _signatures(module, signatures):
  """The serving signatures as {name: ConcreteFunction}."""
  if signatures is None:
    signatures = _default_signature(module)
  if not isinstance(signatures, dict):
    signatures = {_DEFAULT_SIGNATURE: signatures}
  if not signatures:
    raise _errors.ArgumentError("%s: signatures is empty" % _WHAT)
  return {name: _concrete(function, name) for name, function in signatures.items()}


def _function_op_types(concrete):
  """The op types of a ConcreteFunction's graph and of every function it calls."""
  graph_def = concrete.graph.as_graph_def()
  types = {node.op for node in graph_def.node}
  for function in graph_def.library.function:
    types.update(node.op for node in function.node_def)
  return types


def _check_no_swa_ops(signatures):
  """ArgumentError naming the signature and the op if a signature runs a swa_ops op."""
  swa_ops_types = swa_op_names()
  for name, concrete in signatures.items():
    found = sorted(_function_op_types(concrete) & swa_ops_types)
    if found:
      raise _errors.ArgumentError(
          "%s: signature '%s' runs swa_ops op(s) %s: a SavedModel for serving must not need "
          "swa_ops; export an inference function (the training step stays out of it)"
          % (_WHAT, name, ", ".join(found)))


def _variables_to_save(module, averager, signatures):
  """The variables the signatures read, then the module's other averaged variables (not the
  averager's own), without duplicates; checked to be plain resource variables."""
  averager_variables = {v.ref() for v in averager.variables}
  skipped = getattr(averager, "skipped_updates", None)
  if skipped is not None:
    averager_variables.add(skipped.ref())
  candidates = [v for concrete in signatures.values() for v in concrete.variables]
  candidates += [_state.unwrap(v) for v in getattr(module, "variables", ())
                 if averager.average(v) is not None]
  result, seen = [], set()
  for variable in candidates:
    if variable.ref() in seen or variable.ref() in averager_variables:
      continue
    seen.add(variable.ref())
    if not _ops.is_resource_variable(variable) or isinstance(variable,
                                                            tf.distribute.DistributedValues):
      raise _errors.ArgumentError(
          "%s: %s is a %s; only plain resource variables (TF2) can be exported"
          % (_WHAT, _errors.describe(variable), type(variable).__name__))
    result.append(variable)
  return result


def _averages_by_key(variables, averager):
  """{checkpoint key of the variable: its average, in the variable's dtype} of the averaged
  ones (the root lists the variables under _VARIABLES_ATTRIBUTE, in order)."""
  averages = {}
  for index, variable in enumerate(variables):
    average = averager.average(variable)
    if average is not None:
      key = "%s/%d/.ATTRIBUTES/VARIABLE_VALUE" % (_VARIABLES_ATTRIBUTE, index)
      averages[key] = (variable, tf.cast(average.read_value(), variable.dtype.base_dtype))
  return averages


def _rewrite_checkpoint(prefix, replacements):
  """Rewrites the checkpoint at `prefix` with the tensors of `replacements` (key -> (variable,
  value)) in place of the saved ones; every other entry is kept as it is."""
  reader = tf.train.load_checkpoint(prefix)
  dtypes = reader.get_variable_to_dtype_map()
  shapes = reader.get_variable_to_shape_map()
  names, tensors = [], []
  for key in sorted(dtypes):
    if key in replacements:
      variable, value = replacements[key]
      if dtypes[key] != value.dtype or list(shapes[key]) != value.shape.as_list():
        raise _errors.ArgumentError(  # Would mean the saved layout is not the one expected.
            "%s: the SavedModel's entry %s (%s %s) does not fit %s's average (%s %s)"
            % (_WHAT, key, dtypes[key].name, shapes[key], _errors.describe(variable),
               value.dtype.name, value.shape))
    else:
      value = tf.constant(reader.get_tensor(key), dtype=dtypes[key])
    names.append(key)
    tensors.append(value)
  missing = sorted(set(replacements) - set(dtypes))
  if missing:
    raise _errors.ArgumentError("%s: the SavedModel has no entry %s for %s"
                                % (_WHAT, missing[0], _errors.describe(replacements[missing[0]][0])))
  directory = os.path.dirname(prefix)
  staging = tempfile.mkdtemp(dir=directory)
  try:
    with tf.device("/cpu:0"):
      tf.raw_ops.SaveV2(prefix=os.path.join(staging, os.path.basename(prefix)),
                        tensor_names=names, shape_and_slices=[""] * len(names), tensors=tensors)
    for old in tf.io.gfile.glob(prefix + ".*"):
      tf.io.gfile.remove(old)
    for new in os.listdir(staging):
      os.replace(os.path.join(staging, new), os.path.join(directory, new))
  finally:
    shutil.rmtree(staging, ignore_errors=True)


def export_averaged(module, path, averager, signatures=None, options=None):
  """Writes a SavedModel of `module`'s serving `signatures` with the averages in its variables.

  The SavedModel holds the signatures and the variables they read (plus the module's other
  averaged variables): each variable that `averager` averages holds its average (rounded to the
  variable's dtype when `average_dtype` is wider), every other variable its current value. The
  module's own variables and the averages are not changed. The SavedModel contains no swa_ops
  op, so `tf.saved_model.load` and TF Serving load it where swa_ops is not installed; a
  signature that would need one (a training step calling `apply()`) is an error.

  Args:
    module: the model (a tf.Module, Keras model, ...): the default signature is its `__call__`
      if that is a tf.function with an input_signature; its variables with an average are
      saved too.
    path: the SavedModel directory.
    averager: the `SWAMovingAverage` whose averages are exported.
    signatures: a tf.function with an input_signature, a ConcreteFunction, or a dict
      {signature name: either} (as `tf.saved_model.save`); default: `module.__call__`.
    options: `tf.saved_model.SaveOptions`, passed on.

  Raises:
    swa_ops.ArgumentError: graph (TF1) mode; no usable signature; a signature that runs a
      swa_ops op; none of the saved variables has an average; a variable that is not a plain
      resource variable (TF1 reference or distributed variables).
  """
  if not tf.executing_eagerly():
    raise _errors.ArgumentError(
        "%s needs eager execution (TF2). In TF1 graph code restore the averages into the "
        "model with tf.compat.v1.train.Saver(averager.variables_to_restore()) and write the "
        "SavedModel with tf.compat.v1.saved_model.Builder" % _WHAT)
  signatures = _signatures(module, signatures)
  _check_no_swa_ops(signatures)
  variables = _variables_to_save(module, averager, signatures)
  averages = _averages_by_key(variables, averager)
  if not averages:
    raise _errors.ArgumentError(
        "%s: none of the variables the signatures read (%s) has an average in %s: apply() "
        "the averager to them first" % (_WHAT, ", ".join(v.name for v in variables) or "none",
                                        averager.name))
  root = tf.Module()
  setattr(root, _VARIABLES_ATTRIBUTE, variables)
  tf.saved_model.save(root, path, signatures=signatures, options=options)
  _rewrite_checkpoint(os.path.join(path, "variables", "variables"), averages)
