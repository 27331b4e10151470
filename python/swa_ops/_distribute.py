"""`SWAMovingAverage.apply()` under tf.distribute (MirroredStrategy, MultiWorkerMirroredStrategy).

The average of a mirrored variable is a mirrored variable of the same strategy, with one
component on each of the variable's devices, created in cross-replica context (from a replica
context through `merge_call`) and initialised to the variable's value. An update never
communicates across replicas: the components of a mirrored variable hold the same value on every
replica (the optimizer all-reduces the gradients), so each replica averages its own components
into its own components of the averages, and they stay identical. Each replica device gets one
grouped op per dtype group:

- in replica context (`strategy.run(fn)`, fn calls `apply()`): each replica updates the
  components on its device;
- in cross-replica context (inside `strategy.scope()`, or plain code given a strategy's
  variables): one op per local replica device, each updating that device's components.
"""
import functools

import tensorflow as tf
from tensorflow.python.distribute import device_util
from tensorflow.python.distribute import distribute_utils
from tensorflow.python.distribute import mirrored_strategy
from tensorflow.python.distribute import values_util

from swa_ops import _errors


def is_distributed(value):
  """Whether `value` is a distributed variable (Mirrored, SyncOnRead, ...)."""
  return distribute_utils.is_distributed_variable(value)


def strategy_of(var_list):
  """The strategy an apply() of `var_list` runs under, or None (no distribution: the plain path).

  That is the strategy of the distributed variables of `var_list`; with none, the current
  MirroredStrategy or MultiWorkerMirroredStrategy (in its scope or replica context) if it has
  several replicas. Other strategies keep the plain path.
  """
  strategies = []
  for var in var_list:
    if not is_distributed(var):
      continue
    strategy = var._distribute_strategy  # pylint: disable=protected-access
    if all(strategy is not known for known in strategies):
      strategies.append(strategy)
  if len(strategies) > 1:
    raise _errors.ArgumentError(
        "SWAMovingAverage.apply: var_list holds variables of %d different tf.distribute "
        "strategies; average each strategy's variables separately" % len(strategies))
  current = tf.distribute.get_strategy() if tf.distribute.has_strategy() else None
  if strategies:
    strategy = strategies[0]
    if current is not None and current is not strategy:
      raise _errors.ArgumentError(
          "SWAMovingAverage.apply: the variables belong to another tf.distribute strategy than "
          "the current one (%s)" % type(current).__name__)
  elif (current is not None and isinstance(current.extended, mirrored_strategy.MirroredExtended)
        and current.num_replicas_in_sync > 1):
    strategy = current
  else:
    return None
  if not isinstance(strategy.extended, mirrored_strategy.MirroredExtended):
    raise _errors.ArgumentError(
        "SWAMovingAverage.apply: tf.distribute.%s is not supported (MirroredStrategy and "
        "MultiWorkerMirroredStrategy are)" % type(strategy).__name__)
  return strategy


def _replica_context():
  """The replica context (of the strategy apply() runs under) it is called in, or None."""
  if tf.distribute.in_cross_replica_context() or not tf.distribute.has_strategy():
    return None
  return tf.distribute.get_replica_context()


def _check(var_list, in_replica_context):
  for var in var_list:
    if isinstance(var, tf.Variable):
      if not is_distributed(var):
        raise _errors.ArgumentError(
            "SWAMovingAverage.apply under tf.distribute: %s is not a distributed variable: "
            "create the variables to average under the strategy's scope" % _errors.describe(var))
      if distribute_utils.is_sync_on_read(var):
        raise _errors.ArgumentError(
            "SWAMovingAverage.apply under tf.distribute: %s is a SyncOnRead variable (its "
            "replicas hold different values), which cannot be averaged; average mirrored "
            "variables (synchronization ON_WRITE or AUTO)" % _errors.describe(var))
    elif in_replica_context:
      raise _errors.ArgumentError(
          "SWAMovingAverage.apply in a tf.distribute replica context (strategy.run) averages "
          "mirrored variables only, not the per-replica %s: average a variable, or reduce the "
          "tensor across replicas and apply() it in cross-replica context" % _errors.describe(var))


def _create_shadows(averager, strategy, var_list):
  """Creates the missing shadows (and debias state) in `strategy`'s cross-replica context."""
  with tf.init_scope(), strategy.scope():
    averager._ensure_shadows(var_list)  # pylint: disable=protected-access


def local_component(value):
  """The component of a distributed variable for the current replica (replica context)."""
  if not is_distributed(value):
    return value
  return value._get_on_device_or_primary()  # pylint: disable=protected-access


def component_on(value, device):
  """The component of a distributed variable on `device` (cross-replica context)."""
  if not is_distributed(value):
    return value
  components = value.values
  for index, component in enumerate(components):
    if component.device == device:
      return value._get_replica(index)  # pylint: disable=protected-access
  device = device_util.canonicalize(device)  # Slow: only when the strings differ.
  for index, component in enumerate(components):
    if device_util.canonicalize(component.device) == device:
      return value._get_replica(index)  # pylint: disable=protected-access
  raise _errors.ArgumentError(
      "SWAMovingAverage under tf.distribute: %s has no component on replica device %s (it is "
      "on %s)" % (_errors.describe(value), device, ", ".join(c.device for c in value.values)))


def apply(averager, strategy, var_list):
  """`averager.apply(var_list)` under `strategy`: creates the missing shadows in cross-replica
  context, then updates each replica device's components with that device's own ops."""
  replica_context = _replica_context()
  _check(var_list, replica_context is not None)
  missing = [var for var in var_list if averager.average(var) is None]
  if missing:
    if replica_context is not None:
      # Every replica gets here with the same list (the shadows are created after all replicas
      # have reached merge_call).
      replica_context.merge_call(lambda _: _create_shadows(averager, strategy, missing))
    else:
      _create_shadows(averager, strategy, missing)
  counter = getattr(averager, "skipped_updates", None)
  # A plain (non-distributed) skipped_updates counter, made outside the strategy's scope, is
  # counted once per apply(): by the first local replica.
  count_everywhere = counter is None or is_distributed(counter)
  if replica_context is not None:
    first = values_util.get_current_replica_id_as_int() in (0, None)
    return averager._update(var_list, local_component,  # pylint: disable=protected-access
                            count_skipped=count_everywhere or first)
  updates = []
  for index, device in enumerate(strategy.extended.worker_devices):
    with tf.device(device):
      updates.append(averager._update(  # pylint: disable=protected-access
          var_list, functools.partial(component_on, device=device),
          count_skipped=count_everywhere or index == 0))
  return tf.group(*updates)


def pairs_on_replicas(pairs):
  """(variable, average) pairs of components: the pairs of plain variables as they are; those of
  distributed variables, the current replica's components (replica context) or those of every
  local device (cross-replica context)."""
  in_replica_context = (tf.distribute.has_strategy() and
                        not tf.distribute.in_cross_replica_context())
  result = []
  for var, average in pairs:
    if not (is_distributed(var) or is_distributed(average)):
      if in_replica_context and tf.distribute.get_replica_context().num_replicas_in_sync > 1:
        raise _errors.ArgumentError(
            "SWAMovingAverage: %s is not a distributed variable: its average cannot be swapped "
            "or assigned in a replica context (every replica would do it); do it in "
            "cross-replica context" % _errors.describe(var))
      result.append((var, average))
    elif in_replica_context:
      result.append((local_component(var), local_component(average)))
    else:
      devices = (var if is_distributed(var) else average).values
      for component in devices:
        result.append((component_on(var, component.device),
                       component_on(average, component.device)))
  return result
