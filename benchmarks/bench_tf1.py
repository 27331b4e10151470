"""One workload in TF1 graph mode (Session.run), against the ORIGINAL reference: run by bench.py
in a child process, as the reference needs `tf.compat.v1.disable_v2_behavior()` (TF1 reference
variables), which a process cannot undo.

Usage: python benchmarks/bench_tf1.py WORKLOAD {full,quick} REFERENCE_PATH

Three paths (TF1_PATHS), on the workload's values (bench.make_variables' seed), each a `Session.run` of one
update op that also increments an int64 step variable first (control dependency), as the
tf.function paths do:

  reference TF1 graph            the original `SWAMovingAverage` loaded from REFERENCE_PATH, on TF1
                                 reference variables (the only kind it supports);
  swa_ops TF1 graph, ref vars    `swa_ops.SWAMovingAverage` on the same reference variables (one
                                 `SWAAssignRef` op per variable: the grouped ops take resource
                                 variables);
  swa_ops TF1 graph              `swa_ops.SWAMovingAverage` on resource variables: one
                                 `SWAAssignGroup` op on a `SWAVariableGroupByName` group.

Timed like bench.py's paths (interleaved batches, median and min over repeats). Prints one line
`RESULT <json>`: {path: summary}, each with the first call's seconds (graph building, variable
initialisation and the first run).
"""
import importlib.util
import json
import os
import sys
import time

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_v2_behavior()

import bench  # noqa: E402  (after disabling v2 behaviour: bench imports swa_ops)
import swa_ops  # noqa: E402

TF1_PATHS = ("reference_tf1_graph", "swa_ops_tf1_graph_ref_vars", "swa_ops_tf1_graph")


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
    rng = np.random.default_rng(0)  # bench.make_variables' values.
    variables = [tf.compat.v1.Variable(rng.random(shape, dtype=np.float32),
                                       name="%s_%d" % (prefix, index), use_resource=use_resource)
                 for index, shape in enumerate(shapes)]
    step = tf.compat.v1.Variable(0, dtype=tf.int64, trainable=False, name="step",
                                 use_resource=use_resource)
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
  builders = {
      "reference_tf1_graph": lambda: session_path(reference.SWAMovingAverage, shapes, "r", False),
      "swa_ops_tf1_graph_ref_vars":
          lambda: session_path(swa_ops.SWAMovingAverage, shapes, "s", False),
      "swa_ops_tf1_graph": lambda: session_path(swa_ops.SWAMovingAverage, shapes, "g", True),
  }
  functions, build_seconds = {}, {}
  for key in TF1_PATHS:
    functions[key], build_seconds[key] = builders[key]()
  measured = bench.measure_paths(functions, bench.SETTINGS[mode])
  result = {}
  for key, (samples, calls, _) in measured.items():
    result[key] = bench.summarize(samples, calls, build_seconds[key])
  print("RESULT " + json.dumps(result))


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  main(sys.argv[1:])
