"""SWAMovingAverage under tf.distribute, run in a subprocess by tests/test_distribute.py.

TensorFlow's logical devices must be configured before TensorFlow initialises, and
MultiWorkerMirroredStrategy needs one process per worker: so the scenarios run here and save
what they see (np.savez) for the test to compare with a float64 oracle and with the
single-device SWAMovingAverage.

  python distribute_worker.py mirrored OUT_DIR
      MirroredStrategy over two logical CPUs; one .npz per way of calling apply() (MODES),
      then swap_weights / averaged_weights / assign_average_vars / checkpoints (swap.npz)
      and the errors of unsupported inputs (errors.json).
  python distribute_worker.py multiworker OUT_DIR
      One MultiWorkerMirroredStrategy worker (TF_CONFIG set by the caller): worker<i>.npz.

Every scenario trains the same small model for STEPS steps (a v1 gradient-descent optimizer in
replica context: per-replica losses, gradients summed across replicas), calls apply() after each
step at n = step, and once (after step NAN_AT's training, before its apply) with a NaN in one
variable: that apply() is skipped and counted.
"""
import json
import os
import sys

import numpy as np
import tensorflow as tf

STEPS = 5
NAN_AT = 2
SHAPES = [(3, 4), (5,), (2, 2)]
MODES = ("replica_function", "replica_eager", "cross_scope_eager", "cross_function")


def make_model(strategy):
  with strategy.scope():
    variables = [
        tf.Variable(tf.reshape(tf.range(int(np.prod(shape)), dtype=tf.float32) * 0.37 + i,
                               shape), name="w%d" % i)
        for i, shape in enumerate(SHAPES)]
    step = tf.Variable(0, dtype=tf.int64, name="step")
    optimizer = tf.compat.v1.train.GradientDescentOptimizer(0.05)
  return variables, step, optimizer


def make_train(strategy, variables, optimizer):
  def replica_step(k):
    context = tf.distribute.get_replica_context()
    scale = tf.cast(context.replica_id_in_sync_group, tf.float32) + 1.0 + tf.cast(k, tf.float32)
    with tf.GradientTape() as tape:
      loss = tf.add_n([tf.reduce_sum(tf.sin(v * scale)) + 0.01 * tf.reduce_sum(v * v)
                       for v in variables])
    grads = tape.gradient(loss, variables)
    optimizer.apply_gradients(zip(grads, variables))

  return tf.function(lambda k: strategy.run(replica_step, args=(k,)), autograph=False)


def components(variable):
  return [c.numpy() for c in variable.values]


def in_replicas(strategy, fn):
  """Runs fn() in every replica (strategy.run); returns nothing."""
  def replica_fn():
    fn()
  strategy.run(replica_fn)


def make_apply(mode, strategy, swa, variables, debiased=None):
  if mode == "replica_function":
    return tf.function(lambda: in_replicas(strategy, lambda: swa.apply(variables)),
                       autograph=False)
  if mode == "replica_eager":
    return lambda: in_replicas(strategy, lambda: swa.apply(variables))
  if mode == "cross_scope_eager":
    def apply():
      with strategy.scope():
        swa.apply(variables)
    return apply
  if mode == "cross_function":  # Outside the scope; Tensors are averaged too.
    def apply_with_tensors():
      swa.apply(variables + [variables[0] * 2.0])
      with strategy.scope():  # Needed: a Tensor alone does not tell apply() the strategy.
        debiased.apply([variables[2] * 0.5])
    return tf.function(apply_with_tensors, autograph=False)
  raise ValueError(mode)


def update_ops(function):
  """'type@device' of every swa_ops update op in a tf.function's graph and its nested functions."""
  concrete = function.get_concrete_function()
  found = [(op.type, op.device) for op in concrete.graph.get_operations()]
  for nested in concrete.graph.as_graph_def().library.function:
    found += [(node.op, node.device) for node in nested.node_def]
  return sorted("%s@%s" % (kind, device) for kind, device in found
                if kind.startswith(("SWAAssign", "AllFinite")))


def train_and_average(strategy, mode, swa_in_scope=True):
  """Trains, averages with `mode`; returns (variables, swa, results dict)."""
  import swa_ops  # pylint: disable=g-import-not-at-top
  variables, step, optimizer = make_model(strategy)
  if swa_in_scope:
    with strategy.scope():
      swa = swa_ops.SWAMovingAverage(step, skip_nonfinite=True)
  else:
    swa = swa_ops.SWAMovingAverage(step, skip_nonfinite=True)
  # zero_debias=True (Tensors only, so in cross-replica context): cross_function.
  debiased = swa_ops.SWAMovingAverage(step, zero_debias=True, name="Debiased")
  train = make_train(strategy, variables, optimizer)
  apply = make_apply(mode, strategy, swa, variables, debiased)
  snapshots = [[] for _ in variables]
  for k in range(STEPS):
    train(tf.constant(k))
    if k == NAN_AT:  # One apply() with a NaN: skipped, counted; the step is not advanced.
      saved = variables[1].read_value()
      variables[1].assign(tf.fill(variables[1].shape, np.nan))
      apply()
      variables[1].assign(saved)
    apply()
    for i, variable in enumerate(variables):
      first, *others = components(variable)
      assert all(np.array_equal(first, other) for other in others), "model replicas differ"
      snapshots[i].append(first)
    step.assign_add(1)
  results = {"snapshot_%d" % i: np.stack(s) for i, s in enumerate(snapshots)}
  for i, variable in enumerate(variables):
    average = swa.average(variable)
    results["average_type_%d" % i] = np.array(type(average).__name__)
    for c, value in enumerate(components(average)):
      results["average_%d_%d" % (i, c)] = value
  counter = swa.skipped_updates
  results["skipped"] = np.array(
      components(counter) if hasattr(counter, "values") else [counter.numpy()])
  if mode == "cross_function":
    tensor_average = [a for a in swa.variables if a.name.startswith("mul")][0]
    for c, value in enumerate(components(tensor_average)):
      results["tensor_average_%d" % c] = value
    # The average, then its biased and local_step variables: all mirrored.
    for role, state in zip(("average", "biased", "local_step"), debiased.variables):
      for c, value in enumerate(components(state)):
        results["debiased_%s_%d" % (role, c)] = value
  if isinstance(apply, tf.types.experimental.GenericFunction):
    results["ops"] = np.array(update_ops(apply))
  return variables, swa, results


def swaps_and_checkpoints(strategy, variables, swa, out_dir):
  import swa_ops  # pylint: disable=g-import-not-at-top
  results = {}

  def record(name):
    for i, variable in enumerate(variables):
      for c, value in enumerate(components(variable)):
        results["%s_var_%d_%d" % (name, i, c)] = value
      for c, value in enumerate(components(swa.average(variable))):
        results["%s_avg_%d_%d" % (name, i, c)] = value

  record("before")
  swa.swap_weights()  # Cross-replica, eager.
  record("swapped")
  swa.swap_weights()
  record("swapped_twice")
  replica_swap = tf.function(lambda: in_replicas(strategy, lambda: swa.swap_weights(variables)),
                             autograph=False)
  replica_swap()
  record("replica_swapped")
  replica_swap()
  record("replica_swapped_twice")
  with swa.averaged_weights(variables):
    record("inside_averaged_weights")
  record("after_averaged_weights")

  path = tf.train.Checkpoint(averager=swa).save(os.path.join(out_dir, "ckpt", "swa"))
  results["checkpoint"] = np.array(path)
  # Restored before the first apply(): held back by TensorFlow, restored into each shadow when
  # apply() creates it. The schedule makes that apply() change nothing.
  with strategy.scope():
    fresh = [tf.Variable(tf.zeros(v.shape), name="w%d" % i) for i, v in enumerate(variables)]
    deferred = swa_ops.SWAMovingAverage(0, start=10**6)
    immediate = swa_ops.SWAMovingAverage(0, start=10**6)
  tf.train.Checkpoint(averager=deferred).restore(path).expect_partial()
  deferred.apply(fresh)
  immediate.apply(fresh)  # Shadows start at zero; the restore then overwrites them.
  tf.train.Checkpoint(averager=immediate).restore(path).expect_partial()
  for name, averager in (("deferred", deferred), ("immediate", immediate)):
    for i, variable in enumerate(fresh):
      results["%s_type_%d" % (name, i)] = np.array(type(averager.average(variable)).__name__)
      for c, value in enumerate(components(averager.average(variable))):
        results["%s_%d_%d" % (name, i, c)] = value

  tf.function(lambda: in_replicas(strategy, lambda: swa.assign_average_vars(variables[:1])),
              autograph=False)()
  record("replica_assigned")  # Only the first variable.
  swa.assign_average_vars()
  record("assigned")
  return results


def errors(strategy):
  """The messages of apply() calls that cannot work in replica context."""
  import swa_ops  # pylint: disable=g-import-not-at-top
  with strategy.scope():
    mirrored = tf.Variable([1.0, 2.0], name="m")
  plain = tf.Variable([1.0, 2.0], name="plain")
  swa = swa_ops.SWAMovingAverage(0)
  messages = {}
  cases = {
      "tensor_in_replica_context": lambda: swa.apply([mirrored * 2.0]),
      "plain_variable_in_replica_context": lambda: swa.apply([mirrored, plain]),
  }
  for name, case in cases.items():
    try:
      tf.function(lambda case=case: in_replicas(strategy, case), autograph=False)()
      messages[name] = None
    except swa_ops.ArgumentError as error:
      messages[name] = str(error)
  try:
    with strategy.scope():
      swa.apply([mirrored, plain])
    messages["plain_variable_in_scope"] = None
  except swa_ops.ArgumentError as error:
    messages["plain_variable_in_scope"] = str(error)
  return messages


def mirrored(out_dir):
  cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  for mode in MODES:
    # cross_function's averager is made outside the scope: its skipped_updates is a plain
    # variable (counted once per apply()).
    variables, swa, results = train_and_average(strategy, mode,
                                                swa_in_scope=mode != "cross_function")
    np.savez(os.path.join(out_dir, mode + ".npz"), **results)
    if mode == "cross_scope_eager":
      np.savez(os.path.join(out_dir, "swap.npz"),
               **swaps_and_checkpoints(strategy, variables, swa, out_dir))
  with open(os.path.join(out_dir, "errors.json"), "w") as f:
    json.dump(errors(strategy), f)


def multiworker(out_dir):
  strategy = tf.distribute.MultiWorkerMirroredStrategy()
  index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
  _, _, results = train_and_average(strategy, "replica_function")
  results["num_replicas"] = np.array(strategy.num_replicas_in_sync)
  np.savez(os.path.join(out_dir, "worker%d.npz" % index), **results)


if __name__ == "__main__":
  {"mirrored": mirrored, "multiworker": multiworker}[sys.argv[1]](sys.argv[2])
  print("DONE", flush=True)
