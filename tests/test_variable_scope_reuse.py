"""assign_moving_average (zero_debias=True) in reusing TF1 variable scopes (towers).

Called twice in `variable_scope("scope1")` and twice more in `variable_scope(vs1, reuse=True)`
(or under AUTO_REUSE), TensorFlow's own `moving_averages.assign_moving_average` and the
reference create `biased`/`local_step` for the first two calls and *reuse* the first pair for
the calls made in the reusing scope. swa_ops must create exactly the same variables (names and
count, TensorFlow's function being the oracle) and compute the same values (a float64 NumPy
oracle of the debiased EMA, each call updating the pair it uses).
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.python.training import moving_averages as tf_moving_averages  # noqa: E402

import swa_ops  # noqa: E402

# TensorFlow's own implementation, the oracle of names (not exported under tf.compat.v1.train).
TF_ASSIGN_MOVING_AVERAGE = tf_moving_averages.assign_moving_average

DECAYS = (0.5, 0.9, 0.6, 0.8)  # One per call: the calls sharing a pair use different decays.
VALUES = (1.0, -2.0, 3.5, 0.25)  # The value each call averages in.
ROUNDS = 3


def _build_towers(assign_moving_average, use_resource, reuse):
  """Two calls in scope1, then two in scope1 reopened with `reuse`; returns the update ops."""
  updates = []
  with tf.compat.v1.variable_scope("scope1", use_resource=use_resource) as vs1:
    var = tf.compat.v1.get_variable("Var", shape=[2], initializer=tf.compat.v1.zeros_initializer())
    for call in (0, 1):
      updates.append(assign_moving_average(var, tf.fill([2], VALUES[call]), DECAYS[call]))
  with tf.compat.v1.variable_scope(vs1, reuse=reuse):
    var = tf.compat.v1.get_variable("Var", shape=[2])
    for call in (2, 3):
      updates.append(assign_moving_average(var, tf.fill([2], VALUES[call]), DECAYS[call]))
  return updates


def _run(assign_moving_average, use_resource, reuse):
  """The global variables' names, and the value each update returns, round by round."""
  with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
    updates = _build_towers(assign_moving_average, use_resource, reuse)
    names = [v.name for v in tf.compat.v1.global_variables()]
    sess.run(tf.compat.v1.global_variables_initializer())
    results = [[sess.run(update) for update in updates] for _ in range(ROUNDS)]
  return names, np.array(results, np.float64)


def _oracle(pair_of_call):
  """float64 debiased EMA: call i updates the (biased, local_step) pair `pair_of_call[i]`."""
  state = {pair: [0.0, 0.0] for pair in set(pair_of_call)}
  results = []
  for _ in range(ROUNDS):
    row = []
    for call, pair in enumerate(pair_of_call):
      biased, local_step = state[pair]
      biased -= (biased - VALUES[call]) * (1.0 - DECAYS[call])
      local_step += 1.0
      state[pair] = [biased, local_step]
      row.append(biased / (1.0 - DECAYS[call] ** local_step))
    results.append(row)
  return np.array(results)


@pytest.mark.parametrize("use_resource", [True, False], ids=["resource", "reference"])
@pytest.mark.parametrize("reuse", [True, tf.compat.v1.AUTO_REUSE], ids=["reuse", "auto_reuse"])
def test_reusing_scope_reuses_biased_and_local_step(use_resource, reuse):
  tf_names, tf_values = _run(TF_ASSIGN_MOVING_AVERAGE, use_resource, reuse)
  names, values = _run(swa_ops.assign_moving_average, use_resource, reuse)
  prefix = "scope1/scope1/Var/"
  assert tf_names == ["scope1/Var:0", prefix + "biased:0", prefix + "local_step:0",
                      prefix + "biased_1:0", prefix + "local_step_1:0"]  # TensorFlow's own.
  assert names == tf_names
  oracle = _oracle(pair_of_call=(0, 1, 0, 0))  # The reusing calls share the first pair.
  values = values[..., 0]  # Both elements average the same value.
  np.testing.assert_allclose(values, oracle, rtol=2e-6, atol=0)
  np.testing.assert_allclose(tf_values[..., 0], oracle, rtol=2e-6, atol=0)


@pytest.mark.parametrize("use_resource", [True, False], ids=["resource", "reference"])
def test_reference_implementation_reuses_too(use_resource):
  """swa_ops.reference (the reference's math in plain TF ops) shares the naming code."""
  names, values = _run(swa_ops.reference.assign_moving_average, use_resource, True)
  tf_names, _ = _run(TF_ASSIGN_MOVING_AVERAGE, use_resource, True)
  assert names == tf_names
  np.testing.assert_allclose(values[..., 0], _oracle((0, 1, 0, 0)), rtol=2e-6, atol=0)


def test_non_reusing_scopes_still_create_new_pairs():
  """Without reuse every call gets its own pair (biased, biased_1, biased_2, ...), as before."""
  def build(assign_moving_average):
    with tf.Graph().as_default():
      with tf.compat.v1.variable_scope("scope1", use_resource=True):
        var = tf.compat.v1.get_variable("Var", shape=[2])
        for call in range(3):
          assign_moving_average(var, tf.fill([2], VALUES[call]), DECAYS[call])
      return [v.name for v in tf.compat.v1.global_variables()]
  names = build(swa_ops.assign_moving_average)
  assert names == build(TF_ASSIGN_MOVING_AVERAGE)
  assert names[-2:] == ["scope1/scope1/Var/biased_2:0", "scope1/scope1/Var/local_step_2:0"]


def test_reusing_scope_without_existing_pair_is_a_clear_error():
  """reuse=True where no `biased` exists yet: get_variable's error naming the variable, as
  TensorFlow's own function raises."""
  with tf.Graph().as_default():
    with tf.compat.v1.variable_scope("scope1", use_resource=True) as vs1:
      tf.compat.v1.get_variable("Var", shape=[2])
    with tf.compat.v1.variable_scope(vs1, reuse=True):
      var = tf.compat.v1.get_variable("Var", shape=[2])
      with pytest.raises(ValueError, match="scope1/scope1/Var/biased does not exist"):
        swa_ops.assign_moving_average(var, tf.zeros([2]), 0.9)
