"""Builds averagers in a fresh process and prints, as JSON, every name they give: shadows, debias
state, checkpoint dependencies, the graph's global variables (TF1) and the keys of a checkpoint.

    python tests/naming_scenarios.py eager|function|graph_resource|graph_ref [CHECKPOINT_DIR]

`tests/data/shadow_names.json` holds its output as commit 13ff881 (before shadows were named
without TensorFlow's quadratic unique-name search) printed it; `test_scaling.py` checks that the
names are still exactly those. Eager names depend on every shadow made before in the process
(TensorFlow counts variable scopes per process there), hence a fresh process per mode.
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import swa_ops  # noqa: E402


def _names(swa, averaged):
  result = []
  for value in averaged:
    shadow = swa.average(value)
    entry = {"shadow": shadow.name, "average_name": swa.average_name(value)}
    state = getattr(shadow, "_swa_ops_debias_state", None)
    if state is not None:
      entry["debias"] = [v.name for v in state]
    result.append(entry)
  return result


def _dependencies(swa):
  return [ref.name for ref in swa._checkpoint_dependencies]  # pylint: disable=protected-access


def _tf2_variables():
  """Duplicate names, unnamed variables, a name scope, a Keras layer."""
  variables = [tf.Variable(tf.ones([3]) * i, name="v") for i in range(3)]
  variables += [tf.Variable(tf.ones([2]) * i) for i in range(3)]
  with tf.name_scope("outer"):
    variables.append(tf.Variable(tf.ones([2]), name="w"))
  variables.append(tf.Variable(tf.ones([2], tf.float64), name="w"))
  layer = tf.keras.layers.Dense(2, name="dense")
  layer.build((None, 3))
  variables += [layer.kernel.value, layer.bias.value]
  return variables


def _tf2(mode, checkpoint_dir):
  variables = _tf2_variables()
  step = tf.Variable(0, dtype=tf.int64)
  first = swa_ops.SWAMovingAverage(step)
  second = swa_ops.SWAMovingAverage(step)  # Same name: its shadows get "_1".
  third = swa_ops.SWAMovingAverage(step, name="Other", grouped=False)
  debiased = swa_ops.SWAMovingAverage(step, zero_debias=True, name="Debiased")

  def apply_all():
    first.apply(variables[:4])
    first.apply(variables)  # The rest, in a second call.
    second.apply(variables[::-1])
    third.apply(variables[2:5])
    tensors = [tf.identity(v, name="t") for v in variables[:2]]
    debiased.apply(variables[:1] + tensors)
    return tensors

  if mode == "eager":
    first.apply(variables)
    second.apply(variables[::-1])
    third.apply(variables[2:5])
    result = {"first": _names(first, variables), "second": _names(second, variables[::-1]),
              "third": _names(third, variables[2:5])}
  else:
    traced = {}

    @tf.function
    def update():
      traced["tensors"] = apply_all()

    update()
    result = {"first": _names(first, variables), "second": _names(second, variables[::-1]),
              "third": _names(third, variables[2:5]),
              "debiased": [swa.name for swa in debiased.variables]}
  result["dependencies"] = {"first": _dependencies(first), "second": _dependencies(second),
                            "third": _dependencies(third)}
  if checkpoint_dir:
    path = tf.train.Checkpoint(averager=first).write(os.path.join(checkpoint_dir, "ckpt"))
    result["checkpoint_keys"] = sorted(name for name, _ in tf.train.list_variables(path))
  return result


def _graph(use_resource):
  graph = tf.Graph()
  with graph.as_default():
    variables = [tf.compat.v1.Variable(np.ones(3, np.float32), name="v",
                                       use_resource=use_resource) for _ in range(2)]
    with tf.compat.v1.variable_scope("block"):
      variables.append(tf.compat.v1.get_variable("kernel", [2, 2], use_resource=use_resource))
    with tf.compat.v1.variable_scope("part", partitioner=tf.compat.v1.fixed_size_partitioner(2)):
      partitioned = tf.compat.v1.get_variable("weights", [4, 2], use_resource=use_resource)
    variables += list(partitioned)
    with tf.name_scope("scoped"):
      variables.append(tf.compat.v1.Variable(np.ones(2, np.float32), name="v",
                                             use_resource=use_resource))
    step = tf.compat.v1.train.get_or_create_global_step()
    first = swa_ops.SWAMovingAverage(step)
    second = swa_ops.SWAMovingAverage(step)
    debiased = swa_ops.SWAMovingAverage(step, zero_debias=True, name="Debiased")
    first.apply(variables)
    second.apply(variables[:2])
    tensor = tf.matmul(variables[2], variables[2], name="block/MatMul")
    debiased.apply([variables[0], tensor])
    for _ in range(2):  # "biased", then "biased_1" in the shadow's scope.
      swa_ops.assign_moving_average(first.average(variables[2]), tensor, 0.5)
    return {"first": _names(first, variables), "second": _names(second, variables[:2]),
            "debiased": _names(debiased, [variables[0], tensor]),
            "dependencies": {"first": _dependencies(first), "second": _dependencies(second)},
            "variables_to_restore": sorted(first.variables_to_restore()),
            "global_variables": sorted(v.name for v in tf.compat.v1.global_variables()),
            "slice_info": [getattr(first.average(v), "_save_slice_info", None) and
                           first.average(v)._save_slice_info.full_name for v in partitioned]}


def main():
  mode = sys.argv[1]
  checkpoint_dir = sys.argv[2] if len(sys.argv) > 2 else None
  if mode in ("eager", "function"):
    result = _tf2(mode, checkpoint_dir)
  else:
    result = _graph(use_resource=mode == "graph_resource")
  print(json.dumps(result, indent=1, sort_keys=True))


if __name__ == "__main__":
  main()
