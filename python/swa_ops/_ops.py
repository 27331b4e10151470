"""Loads the op library once and wraps its raw ops.

Attribute `T` is the dtype of the value(s). The variables updated have that dtype or a wider
float (float32/float64 averages of float16/bfloat16 values, float64 of float32): the op reads
their dtype from the variables and computes in the averages' precision.

Each update has six raw variants (see cc/tf/swa_ops.cc); the single-variable wrappers pick the one
that fits the variables passed: resource variables are passed as handles (the value too when it
is a resource variable, so the op reads it itself), TF1 reference variables through the `*Ref`
ops. The grouped wrappers take lists of handles (`*_n`) or one variable group (`*_group`, see
_groups.py).
"""
import os

import tensorflow as tf
from tensorflow.python.framework import ops as tf_ops
from tensorflow.python.ops import resource_variable_ops

from swa_ops import _errors, _version

def library_file_name(tensorflow_version):
  """The op library built for TensorFlow `tensorflow_version`: _swa_ops_tf2_21.so for 2.21.x."""
  return "_swa_ops_tf%s.so" % "_".join(tensorflow_version.split(".")[:2])


def supported_tensorflow_versions():
  """The TensorFlow major.minor versions this installation has op libraries for."""
  from swa_ops import _build_info
  series = {".".join(v.split(".")[:2]) for v in _build_info.TENSORFLOW_VERSIONS}
  return tuple(sorted(series, key=_series_key))


def _library_path():
  path = os.environ.get("SWA_OPS_LIBRARY") or _installed_library_path()
  if not os.path.exists(path):
    raise ImportError("swa_ops: the op library %s is missing: build and install the package "
                      "(see README.md) instead of importing it from the source tree" % path)
  return path


def _installed_library_path():
  try:
    supported = supported_tensorflow_versions()
  except ImportError:
    raise ImportError("swa_ops: _build_info.py is missing: build and install the package (see "
                      "README.md) instead of importing it from the source tree") from None
  running = ".".join(tf.__version__.split(".")[:2])
  if running not in supported:
    raise ImportError(
        "swa_ops %s supports TensorFlow %s, but TensorFlow %s is installed. Install one of "
        "those (e.g. `pip install \"tensorflow-cpu>=2.16,<2.22\"`), or build swa_ops from source "
        "against the installed TensorFlow: `pip install --no-build-isolation .` in a checkout "
        "(a TensorFlow outside %s to %s needs changes to the C++ code first)."
        % (_version.__version__, ", ".join(supported), tf.__version__,
           _version.SUPPORTED_TENSORFLOW[0], _version.SUPPORTED_TENSORFLOW[-1]))
  return os.path.join(os.path.dirname(__file__), library_file_name(tf.__version__))


def _series_key(series):
  return tuple(int(part) for part in series.split("."))


def _load_library():
  path = _library_path()
  try:
    return tf.load_op_library(path)
  except (tf.errors.NotFoundError, OSError) as error:
    raise ImportError("swa_ops: could not load the op library %s into TensorFlow %s: %s"
                      % (path, tf.__version__, error)) from error


library = _load_library()

UPDATE_OPS = ("SWAAssign", "EMAAssign", "DebiasedEMA")
RAW_OP_NAMES = tuple(name + variant for name in UPDATE_OPS
                     for variant in ("", "Variable", "Ref", "N", "NVariable", "Group")) + (
                         "SwapVariablesN", "SwapVariablesGroup", "AllFinite", "SWAVariableGroup",
                         "SWAVariableGroupConcat", "SWANewVariables")
for _name in RAW_OP_NAMES:
  tf_ops.NotDifferentiable(_name)

# Eager execution builds a kernel for each distinct number of inputs or outputs an op runs with,
# at a cost that grows faster than that number (over a second for one op of 10,000 inputs): the
# ops that take or make many variables at once (SWAVariableGroup, SWAVariableGroupConcat,
# SWANewVariables) are given at most this many at a time.
MAX_VARIABLES_PER_EAGER_OP = 256

SUPPORTED_DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64)
STEP_DTYPES = (tf.int32, tf.int64, tf.float32, tf.float64)


def widens(value_dtype, average_dtype):
  """Whether an op averages values of `value_dtype` into averages of `average_dtype` (a wider
  float: float32/float64 for float16/bfloat16, float64 for float32)."""
  return average_dtype in (tf.float32, tf.float64) and value_dtype.size < average_dtype.size


def is_resource_variable(value):
  return resource_variable_ops.is_resource_variable(value)


def is_ref_variable(value):
  return isinstance(value, tf.Variable) and not is_resource_variable(value)


def _guards(apply_if):
  """The `apply_if` input list: empty, or the one boolean (an update with a false one changes
  nothing)."""
  return [] if apply_if is None else [apply_if]


def _run(raw_op, state, value, scalar, use_locking, name, apply_if=None, **attrs):
  """Calls the variant of `raw_op` that fits `state` (the variables updated) and `value`."""
  dtype = state[0].dtype.base_dtype
  attrs["apply_if"] = _guards(apply_if)
  if is_resource_variable(state[0]):
    handles = [variable.handle for variable in state]
    if is_resource_variable(value):
      op = getattr(library, raw_op + "_variable")
      return op(*handles, value.handle, scalar, T=value.dtype.base_dtype,
                use_locking=use_locking, name=name, **attrs)
    op = getattr(library, raw_op)
    value = tf.convert_to_tensor(value, dtype_hint=dtype)
    return op(*handles, value, scalar, use_locking=use_locking, name=name, **attrs)
  value = tf.convert_to_tensor(value, dtype_hint=dtype)
  op = getattr(library, raw_op + "_ref")
  return op(*state, value, scalar, use_locking=use_locking, name=name, **attrs)


def _check_lists(op_name, lists):
  """ArgumentError unless the lists of a grouped op are non-empty and of one length."""
  lengths = [len(items) for items in lists]
  if not lengths[0] or len(set(lengths)) != 1:
    raise _errors.ArgumentError("%s: the lists must be non-empty and of one length, got lengths %s"
                                % (op_name, lengths))


def _run_grouped(raw_op, state_lists, values, scalar, use_locking, name, apply_if=None, **attrs):
  """Calls the grouped `raw_op` (resource variables only) on lists of equal length."""
  _check_lists(raw_op, list(state_lists) + [values])
  dtype = state_lists[0][0].dtype.base_dtype
  attrs["apply_if"] = _guards(apply_if)
  handles = [[variable.handle for variable in state] for state in state_lists]
  if all(is_resource_variable(value) for value in values):
    op = getattr(library, raw_op + "_variable")
    return op(*handles, [value.handle for value in values], scalar,
              T=values[0].dtype.base_dtype, use_locking=use_locking, name=name, **attrs)
  values = [tf.convert_to_tensor(value, dtype_hint=dtype) for value in values]
  return getattr(library, raw_op)(*handles, values, scalar, use_locking=use_locking, name=name,
                                  **attrs)


def _run_group(raw_op, group, values, scalar, value_dtype, use_locking, name, apply_if=None,
               **attrs):
  """Calls the `...Group` variant of `raw_op` on `group` (a group handle, see _groups.py);
  `values`: the value tensors, or empty when the values are the group's last members."""
  values = [tf.convert_to_tensor(value, dtype_hint=value_dtype) for value in values]
  return getattr(library, raw_op + "_group")(group, values, scalar, _guards(apply_if),
                                             T=value_dtype, use_locking=use_locking, name=name,
                                             **attrs)


def swa_assign(average, value, step, use_locking=False, name=None, start=0, period=1,
               apply_if=None):
  """average <- average - (average - value) / (k + 1); the weight computed in float64; k = step,
  or with a schedule k = (step - start) / period at the steps it selects (others: no change)."""
  return _run("swa_assign", [average], value, step, use_locking, name, apply_if, start=start,
              period=period)


def ema_assign(average, value, decay, use_locking=False, name=None, apply_if=None):
  """average <- average - (average - value) * (1 - decay)."""
  return _run("ema_assign", [average], value, decay, use_locking, name, apply_if)


def debiased_ema(average, biased, local_step, value, decay, use_locking=False, name=None,
                 apply_if=None):
  """biased <- biased - (biased - value) * (1 - decay); local_step += 1;
  average <- biased / (1 - decay ** local_step)."""
  return _run("debiased_ema", [average, biased, local_step], value, decay, use_locking, name,
              apply_if)


def swa_assign_n(averages, values, step, use_locking=False, name=None, start=0, period=1,
                 apply_if=None):
  """`swa_assign` for lists of resource variables (one dtype, one device), as one op."""
  return _run_grouped("swa_assign_n", [averages], values, step, use_locking, name, apply_if,
                      start=start, period=period)


def ema_assign_n(averages, values, decay, use_locking=False, name=None, apply_if=None):
  """`ema_assign` for lists of resource variables (one dtype, one device), as one op."""
  return _run_grouped("ema_assign_n", [averages], values, decay, use_locking, name, apply_if)


def debiased_ema_n(averages, biased, local_steps, values, decay, use_locking=False, name=None,
                   apply_if=None):
  """`debiased_ema` for lists of resource variables (one dtype, one device), as one op."""
  return _run_grouped("debiased_eman", [averages, biased, local_steps], values, decay,
                      use_locking, name, apply_if)


def swa_assign_group(group, values, step, value_dtype, use_locking=False, name=None, start=0,
                     period=1, apply_if=None):
  """`swa_assign_n` on a group of averages followed by value variables (`values` empty) or of
  averages alone (`values`: one tensor per average, of dtype `value_dtype`)."""
  return _run_group("swa_assign", group, values, step, value_dtype, use_locking, name, apply_if,
                    start=start, period=period)


def ema_assign_group(group, values, decay, value_dtype, use_locking=False, name=None,
                     apply_if=None):
  """`ema_assign_n` on a group of averages followed by value variables (`values` empty) or of
  averages alone (`values`: one tensor per average, of dtype `value_dtype`)."""
  return _run_group("ema_assign", group, values, decay, value_dtype, use_locking, name, apply_if)


def debiased_ema_group(group, values, decay, value_dtype, use_locking=False, name=None,
                       apply_if=None):
  """`debiased_ema_n` on a group of averages, then biased, then local_steps, then (`values`
  empty) the value variables."""
  return _run_group("debiased_ema", group, values, decay, value_dtype, use_locking, name,
                    apply_if)


def swap_variables(first, second, name=None):
  """Exchanges the values of first[i] and second[i] (resource variables of one dtype), as one
  op: the variables trade buffers, so the swap is bit-exact and copies nothing."""
  _check_lists("swap_variables", [first, second])
  return library.swap_variables_n([v.handle for v in first], [v.handle for v in second],
                                  T=first[0].dtype.base_dtype, name=name)


def swap_variables_group(group, dtype, name=None):
  """`swap_variables` on a group of 2N variables of `dtype`: the first N with the second N."""
  return library.swap_variables_group(group, T=dtype, name=name)


def _on_one_host_device(values):
  """Whether `values` are resource variables of one device, not a GPU (AllFinite's devices)."""
  if not all(is_resource_variable(value) for value in values):
    return False
  devices = {value.device for value in values}
  return len(devices) == 1 and ":GPU:" not in devices.pop().upper()


def all_finite(values, name=None, groups=None):
  """A boolean scalar: every element of every value (Variables or Tensors) is finite; one op
  (one per device when the variables live on several: an op reads only its own device's).
  With `groups` (_groups.VariableGroups), resource variables of one host device are read
  through one group handle."""
  group_handle = None if groups is None else groups.get(values, usable=_on_one_host_device)
  if group_handle is not None:
    return library.all_finite([group_handle], name=name)
  # AllFinite has no GPU kernel: a variable on a GPU is read (and copied to the host) first.
  inputs, devices = [], []  # devices[i]: the device of handle inputs[i]; None for a Tensor.
  for value in values:
    if is_resource_variable(value) and ":GPU:" not in value.device.upper():
      inputs.append(value.handle)
      devices.append(value.device)
    else:
      inputs.append(tf.convert_to_tensor(value))
      devices.append(None)
  placed = list(dict.fromkeys(device for device in devices if device is not None))
  if len(placed) <= 1:
    return library.all_finite(inputs, name=name)
  with tf.name_scope(name or "AllFinite"):
    flags = []
    for device in placed:  # Tensors go with the first device's variables.
      group = [x for x, d in zip(inputs, devices)
               if d == device or (d is None and device == placed[0])]
      with tf.device(device):
        flags.append(library.all_finite(group))
    return tf.reduce_all(tf.stack(flags))
