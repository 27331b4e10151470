"""SWAMovingAverage under tf.distribute.ParameterServerStrategy, run in a subprocess by
tests/test_parameter_server.py.

An in-process cluster on loopback ports (2 workers and 2 parameter servers as
tf.distribute.Server objects, this process the chief/coordinator): a tf.function scheduled by a
ClusterCoordinator sets the model's variables to a known value and calls `apply()` inside
`strategy.run`; the coordinator joins after each step, so the steps run one after another
(on whichever worker is free). Saves the averages and their devices:

  python ps_strategy_worker.py OUT_DIR    ->  OUT_DIR/ps.npz
"""
import os
import socket
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import swa_ops  # noqa: E402

STEPS = 6
SHAPES = [(3, 4), (5,), (2, 2)]  # Round robin: variables 0 and 2 on ps 0, variable 1 on ps 1.


def base_value(i, shape):
  return (np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape) * 0.37 - 1.5 + i)


def snapshot(i, shape, k):
  """The value variable i holds at step k (float32, computed as the worker computes it)."""
  return (base_value(i, shape) * np.float32(np.sqrt(np.float32(k + 1)))).astype(np.float32)


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def in_process_cluster(workers=2, parameter_servers=2):
  cluster = tf.train.ClusterSpec({
      "worker": ["127.0.0.1:%d" % _free_port() for _ in range(workers)],
      "ps": ["127.0.0.1:%d" % _free_port() for _ in range(parameter_servers)],
      "chief": ["127.0.0.1:%d" % _free_port()]})
  servers = [tf.distribute.Server(cluster, job_name=job, task_index=i, protocol="grpc")
             for job, count in (("worker", workers), ("ps", parameter_servers))
             for i in range(count)]
  resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
      cluster, task_type="chief", task_id=0, rpc_layer="grpc")
  return resolver, servers


def main(out):
  resolver, servers = in_process_cluster()
  strategy = tf.distribute.ParameterServerStrategy(resolver)
  coordinator = tf.distribute.coordinator.ClusterCoordinator(strategy)
  with strategy.scope():
    variables = [tf.Variable(tf.zeros(shape), name="w%d" % i) for i, shape in enumerate(SHAPES)]
    step = tf.Variable(0, dtype=tf.int64, name="step")
    swa = swa_ops.SWAMovingAverage(step)
  bases = [tf.constant(base_value(i, shape)) for i, shape in enumerate(SHAPES)]

  @tf.function
  def train_step():
    def replica_fn():
      scale = tf.sqrt(tf.cast(step, tf.float32) + 1.0)
      for variable, base in zip(variables, bases):
        variable.assign(base * scale)
      swa.apply(variables)
    strategy.run(replica_fn)
    step.assign_add(1)

  for _ in range(STEPS):
    coordinator.schedule(train_step)
    coordinator.join()
  results = {"step": int(step.numpy())}
  for i, variable in enumerate(variables):
    average = swa.average(variable)
    results["average_%d" % i] = average.numpy()
    results["average_device_%d" % i] = average.device
    results["variable_device_%d" % i] = variable.device
    results["value_%d" % i] = variable.numpy()
  np.savez(os.path.join(out, "ps.npz"), **results)
  del servers
  print("DONE")


if __name__ == "__main__":
  main(sys.argv[1])
