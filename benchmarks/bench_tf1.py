"""One workload in TF1 graph mode (Session.run), against the ORIGINAL reference: run by bench.py
in a child process, as the reference needs `tf.compat.v1.disable_v2_behavior()` (TF1 reference
variables), which a process cannot undo.

Usage: python benchmarks/bench_tf1.py WORKLOAD {full,quick} REFERENCE_PATH

Three paths, on the workload's variables (bench.make_variables), each a `Session.run` of one
update op that also increments an int64 step variable first (control dependency), as the
tf.function paths do:

  reference_tf1_graph            the original `SWAMovingAverage` loaded from REFERENCE_PATH, on TF1
                                 reference variables (the only kind it supports);
  swa_ops_tf1_graph_ref_vars     `swa_ops.SWAMovingAverage` on the same kind of variables (one
                                 `SWAAssignRef` op per variable: the grouped ops take resource
                                 variables);
  swa_ops_tf1_graph              `swa_ops.SWAMovingAverage` on resource variables: one
                                 `SWAAssignGroup` op on a `SWAVariableGroupByName` group.

Timed like bench.py's paths (interleaved batches, median and min over repeats), with bench.py's
bandwidth kernel taking turns with them. Prints one line `RESULT <json>`: {"paths": {path:
summary, each with the first call's seconds (graph building, variable initialisation and the
first run)}, "bandwidth_gb_per_s_best_in_rounds": GB/s}.
"""
import functools
import importlib.util
import json
import os
import sys
import time

import tensorflow as tf

tf.compat.v1.disable_v2_behavior()

import bench  # noqa: E402  (after disabling v2 behaviour: bench imports swa_ops)
import swa_ops  # noqa: E402


def load_reference(path):
  spec = importlib.util.spec_from_file_location("original_swa_moving_average", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def session_path(averager_class, shapes, prefix, use_resource):
  """A graph with the workload's variables and one update op; returns (run, first_call_s)."""
  started = time.perf_counter()
  graph = tf.Graph()
  with graph.as_default():
    make = functools.partial(tf.compat.v1.Variable, use_resource=use_resource)
    variables = bench.make_variables(shapes, prefix, make=make)
    step = make(0, dtype=tf.int64, trainable=False, name="step")
    with tf.control_dependencies([tf.compat.v1.assign_add(step, 1)]):
      update = averager_class(step).apply(variables)
    initialize = tf.compat.v1.global_variables_initializer()
  graph.finalize()
  session = tf.compat.v1.Session(graph=graph)
  session.run(initialize)
  session.run(update)

  def run():
    session.run(update)

  return run, time.perf_counter() - started


def main(argv):
  workload, mode, reference_path = argv
  reference = load_reference(reference_path)
  shapes = bench.WORKLOADS[workload][1]()
  paths = {  # key: (averager class, variable name prefix, resource variables)
      "reference_tf1_graph": (reference.SWAMovingAverage, "r", False),
      "swa_ops_tf1_graph_ref_vars": (swa_ops.SWAMovingAverage, "s", False),
      "swa_ops_tf1_graph": (swa_ops.SWAMovingAverage, "g", True),
  }
  if not bench.SETTINGS[mode]["all_paths"]:
    paths = {key: path for key, path in paths.items() if key not in bench.FULL_RUN_ONLY_PATHS}
  functions, first_call_s = {}, {}
  for key, (averager_class, prefix, use_resource) in paths.items():
    functions[key], first_call_s[key] = session_path(averager_class, shapes, prefix,
                                                     use_resource)
  kernel = bench.BandwidthKernel(bench.bandwidth_array_floats(), bench.usable_cores())
  functions[bench.BANDWIDTH_KEY] = kernel
  measured = bench.measure_paths(functions, bench.SETTINGS[mode])
  bandwidth_samples = measured.pop(bench.BANDWIDTH_KEY)[0]
  result = {
      "paths": {key: bench.summarize(samples, calls, first_call_s[key])
                for key, (samples, calls, _) in measured.items()},
      "bandwidth_gb_per_s_best_in_rounds": kernel.gbps(min(bandwidth_samples)),
  }
  kernel.close()
  print("RESULT " + json.dumps(result))


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  main(sys.argv[1:])
