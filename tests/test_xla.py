"""Every entry point inside XLA (`tf.function(jit_compile=True)`, Keras `jit_compile=True`).

Each test runs the same steps on the same inputs without XLA (the fused ops, eager or
tf.function) and with XLA (plain TF ops the package emits when it detects the XLA context),
and checks both against a float64 NumPy oracle of the SPEC's formulas and against each other:
bit-identical (see README, "XLA").
"""
import numpy as np
import pytest
import tensorflow as tf

import swa_ops
from swa_ops import _ops

DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64)
# Oracle tolerance (absolute, values of magnitude ~1) of an average stored in each dtype.
ORACLE_TOLERANCE = {tf.float16: 4e-3, tf.bfloat16: 3e-2, tf.float32: 2e-6, tf.float64: 1e-13}
STEPS = 9
MODES = ("eager", "function", "xla")


def compile_in(mode, body):
  """`body` run as it is (eager), in tf.function, or in tf.function(jit_compile=True)."""
  if mode == "eager":
    return body
  return tf.function(body, jit_compile=(mode == "xla"))


def values_of(dtype, steps=STEPS, shape=(5,), seed=0, bad_steps=()):
  """`steps` random arrays, rounded to `dtype` (as float64), with a NaN at the bad steps."""
  rng = np.random.default_rng(seed)
  history = [rng.uniform(-1.0, 1.0, size=shape) for _ in range(steps)]
  history = [tf.cast(tf.cast(h, dtype), tf.float64).numpy() for h in history]
  for step in bad_steps:
    history[step][1] = np.nan
  return history


def as_numpy(tensor):
  return tf.cast(tensor, tf.float64).numpy() if tensor.dtype == tf.bfloat16 else tensor.numpy()


def bits(array):
  """The raw bits of a float array (bfloat16 included) as unsigned integers."""
  array = np.asarray(array)
  return array.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[array.dtype.itemsize])


def assert_bit_identical(actual, expected):
  actual, expected = np.asarray(actual), np.asarray(expected)
  assert actual.dtype == expected.dtype
  np.testing.assert_array_equal(bits(actual), bits(expected))


def ulp_distance(actual, expected):
  """Element-wise distance in units in the last place (bit patterns mapped to ordered ints)."""
  def ordered(array):
    signed = np.asarray(array).view({2: np.int16, 4: np.int32, 8: np.int64}[array.itemsize])
    signed = signed.astype(np.int64)
    return np.where(signed < 0, -(signed & (2 ** (8 * array.itemsize - 1) - 1)), signed)
  return np.abs(ordered(np.asarray(actual)) - ordered(np.asarray(expected)))


def raw_numpy(tensor):
  """The tensor's NumPy value in its own dtype (bfloat16 as ml_dtypes' bfloat16)."""
  return np.asarray(tensor.numpy())


def oracle_swa(initial, history, schedule=(0, 1), skip_nonfinite=False):
  """SPEC: at a scheduled step n (the k-th), average <- average - (average - value) / (k + 1)."""
  start, period = schedule
  average = np.array(initial, dtype=np.float64)
  for n, value in enumerate(history):
    if n < start or (n - start) % period:
      continue
    if skip_nonfinite and not np.all(np.isfinite(value)):
      continue
    average = average - (average - value) / ((n - start) // period + 1.0)
  return average


def oracle_ema(initial, history, decay):
  average = np.array(initial, dtype=np.float64)
  for value in history:
    average = average - (average - value) * (1.0 - decay)
  return average


def oracle_debiased(history, decays):
  """SPEC zero-debiasing: biased EMA from zero, divided by 1 - decay ** local_step."""
  biased = np.zeros_like(history[0])
  average = biased
  for local_step, (value, decay) in enumerate(zip(history, decays), start=1):
    biased = biased - (biased - value) * (1.0 - decay)
    average = biased / (1.0 - decay ** local_step)
  return average


def swa_ops_op_types(concrete):
  """The op types of a concrete function and every function in its library that are swa_ops'
  custom ops."""
  graph_def = concrete.graph.as_graph_def()
  types = {node.op for node in graph_def.node}
  for function in graph_def.library.function:
    types.update(node.op for node in function.node_def)
  return types & set(_ops.RAW_OP_NAMES)


def assert_compiled_without_custom_ops(function, *args):
  """The function compiles under XLA (HLO available, no custom call) and its graph holds no
  swa_ops op."""
  hlo = function.experimental_get_compiler_ir(*args)(stage="hlo")
  assert "custom-call" not in hlo
  assert not swa_ops_op_types(function.get_concrete_function(*args))


# --- SWAMovingAverage.apply -----------------------------------------------------------------

def run_apply(mode, dtype, history, num_variables=1, **averager_args):
  """Runs `apply()` over the history (one value per step; every variable gets it, scaled by its
  index + 1); returns the averages (NumPy, their own dtype) after every step, the averager and
  the step function."""
  variables = [tf.Variable(tf.zeros(history[0].shape, dtype)) for _ in range(num_variables)]
  step = tf.Variable(0, dtype=tf.int64)
  averager = swa_ops.SWAMovingAverage(step, **averager_args)

  def body(value):
    for i, variable in enumerate(variables):
      variable.assign(value * (i + 1.0))
    averager.apply(variables)
    step.assign_add(1)

  step_function = compile_in(mode, body)
  trace = []
  for value in history:
    step_function(tf.constant(value, dtype))
    trace.append([raw_numpy(averager.average(v)) for v in variables])
  return trace, averager, step_function


APPLY_CASES = {
    "plain": {},
    "schedule": {"start": 2, "period": 3},
    "skip_nonfinite": {"skip_nonfinite": True},
    "schedule_and_skip": {"start": 1, "period": 2, "skip_nonfinite": True},
    "per_variable": {"grouped": False},
}


@pytest.mark.parametrize("case", sorted(APPLY_CASES))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_apply_under_xla_is_bit_identical_to_the_fused_ops(dtype, case):
  args = APPLY_CASES[case]
  skip = args.get("skip_nonfinite", False)
  history = values_of(dtype, bad_steps=(3,) if skip else ())
  traces = {mode: run_apply(mode, dtype, history, num_variables=2, **args)[0]
            for mode in ("function", "xla")}
  for xla_step, fused_step in zip(traces["xla"], traces["function"]):
    for xla_average, fused_average in zip(xla_step, fused_step):
      assert_bit_identical(xla_average, fused_average)
  schedule = (args.get("start", 0), args.get("period", 1))
  for i, average in enumerate(traces["xla"][-1]):
    scaled = [h * (i + 1.0) for h in history]
    expected = oracle_swa(np.zeros(history[0].shape), scaled, schedule, skip)
    np.testing.assert_allclose(tf.cast(average, tf.float64), expected,
                               atol=ORACLE_TOLERANCE[dtype] * (i + 1))


@pytest.mark.parametrize("value_dtype,average_dtype", [
    (tf.float16, tf.float32), (tf.bfloat16, tf.float32), (tf.float16, tf.float64),
    (tf.bfloat16, tf.float64), (tf.float32, tf.float64)], ids=lambda d: d.name)
def test_widened_averages_under_xla_are_bit_identical(value_dtype, average_dtype):
  history = values_of(value_dtype, bad_steps=(4,))
  traces = {mode: run_apply(mode, value_dtype, history, average_dtype=average_dtype,
                            skip_nonfinite=True, start=1)[0]
            for mode in ("function", "xla")}
  assert traces["xla"][-1][0].dtype == average_dtype.as_numpy_dtype
  for xla_step, fused_step in zip(traces["xla"], traces["function"]):
    assert_bit_identical(xla_step[0], fused_step[0])
  expected = oracle_swa(np.zeros(history[0].shape), history, (1, 1), skip_nonfinite=True)
  np.testing.assert_allclose(traces["xla"][-1][0], expected, atol=ORACLE_TOLERANCE[average_dtype])


def test_the_skipped_update_counter_is_the_same_under_xla():
  history = values_of(tf.float32, bad_steps=(2, 5))
  counts = {mode: run_apply(mode, tf.float32, history, skip_nonfinite=True)[1]
            .skipped_updates.numpy() for mode in ("eager", "xla")}
  assert counts == {"eager": 2, "xla": 2}


def test_the_xla_step_function_compiles_and_holds_no_swa_ops_op():
  history = values_of(tf.float32, steps=2)
  _, _, step_function = run_apply("xla", tf.float32, history, num_variables=2,
                                  skip_nonfinite=True, start=1, period=2)
  assert_compiled_without_custom_ops(step_function, tf.constant(history[0], tf.float32))
  # Without XLA the same step uses the fused ops (the check above is not vacuous).
  _, _, fused = run_apply("function", tf.float32, history, skip_nonfinite=True)
  assert swa_ops_op_types(fused.get_concrete_function(tf.constant(history[0], tf.float32)))


def run_debiased_tensor_apply(mode, dtype, history):
  """A zero-debiased average of a Tensor (the DebiasedEMA path, decay n / (n + 1))."""
  variable = tf.Variable(tf.zeros(history[0].shape, dtype))
  step = tf.Variable(0, dtype=tf.int64)
  averager = swa_ops.SWAMovingAverage(step, zero_debias=True)
  holder = {}

  def body(value):
    variable.assign(value)
    tensor = tf.identity(variable.read_value(), name="doubled") * 2.0
    averager.apply([tensor])
    holder["tensor"] = tensor
    step.assign_add(1)

  step_function = tf.function(body, jit_compile=(mode == "xla"))
  trace = []
  for value in history:
    step_function(tf.constant(value, dtype))
    trace.append(raw_numpy(averager.average(holder["tensor"])))
  return trace


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_zero_debiased_tensor_averages_under_xla(dtype):
  history = values_of(dtype)
  traces = {mode: run_debiased_tensor_apply(mode, dtype, history) for mode in ("function", "xla")}
  for xla_average, fused_average in zip(traces["xla"], traces["function"]):
    assert_bit_identical(xla_average, fused_average)
  decays = [n / (n + 1.0) for n in range(len(history))]
  expected = oracle_debiased([2.0 * h for h in history], decays)
  # The debiased value divides by 1 - decay ** local_step, which the changing SWA decay makes
  # small: the relative error of the biased average grows accordingly.
  np.testing.assert_allclose(tf.cast(traces["xla"][-1], tf.float64), expected,
                             rtol=30 * ORACLE_TOLERANCE[dtype], atol=30 * ORACLE_TOLERANCE[dtype])


# --- swap_weights and assign_average_vars ---------------------------------------------------

def averaged_state(mode, dtype, average_dtype=None):
  history = values_of(dtype, steps=4)
  trace, averager, _ = run_apply(mode, dtype, history, num_variables=2,
                                 average_dtype=average_dtype)
  return averager, averager._variables(), trace[-1]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_swap_weights_under_xla_exchanges_bit_exactly(dtype):
  averager, variables, averages = averaged_state("xla", dtype)
  own_values = [raw_numpy(v) for v in variables]
  swap = tf.function(lambda: averager.swap_weights(variables) and None, jit_compile=True)
  swap()
  for variable, average, own in zip(variables, averages, own_values):
    assert_bit_identical(raw_numpy(variable), average)
    assert_bit_identical(raw_numpy(averager.average(variable)), own)
  swap()
  for variable, own in zip(variables, own_values):
    assert_bit_identical(raw_numpy(variable), own)
  assert_compiled_without_custom_ops(swap)


@pytest.mark.parametrize("value_dtype,average_dtype", [
    (tf.float32, None), (tf.float16, tf.float32), (tf.bfloat16, tf.float64),
    (tf.float32, tf.float64)], ids=str)
def test_assign_average_vars_under_xla_matches_eager(value_dtype, average_dtype):
  results = {}
  for mode in ("eager", "xla"):
    averager, variables, _ = averaged_state(mode, value_dtype, average_dtype)
    assign = compile_in(mode, lambda: averager.assign_average_vars() and None)
    assign()
    results[mode] = [raw_numpy(v) for v in variables]
    expected = [tf.cast(averager.average(v), value_dtype).numpy() for v in variables]
    for value, cast_average in zip(results[mode], expected):
      assert_bit_identical(value, cast_average)
  for xla_value, eager_value in zip(results["xla"], results["eager"]):
    assert_bit_identical(xla_value, eager_value)


# --- assign_moving_average and weighted_moving_average --------------------------------------

def run_assign_moving_average(mode, dtype, history, decay, zero_debias, skip_nonfinite):
  average = tf.Variable(tf.zeros(history[0].shape, dtype))
  decay_tensor = tf.Variable(decay, dtype=tf.float32)

  def body(value):
    return swa_ops.assign_moving_average(average, value, decay_tensor, zero_debias=zero_debias,
                                         skip_nonfinite=skip_nonfinite)

  step_function = compile_in(mode, body)
  returned = [raw_numpy(step_function(tf.constant(value, dtype))) for value in history]
  return returned, raw_numpy(average)


@pytest.mark.parametrize("zero_debias", [False, True], ids=["ema", "debiased"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_assign_moving_average_under_xla_is_bit_identical(dtype, zero_debias):
  history = values_of(dtype, bad_steps=(5,))
  decay = 0.75  # A float32 decay: 1 - decay is exact in float64.
  runs = {mode: run_assign_moving_average(mode, dtype, history, decay, zero_debias, True)
          for mode in ("eager", "xla")}
  for xla_value, eager_value in zip(runs["xla"][0], runs["eager"][0]):
    assert_bit_identical(xla_value, eager_value)
  assert_bit_identical(runs["xla"][1], runs["eager"][1])
  finite = [h for h in history if np.all(np.isfinite(h))]
  expected = (oracle_debiased(finite, [decay] * len(finite)) if zero_debias
              else oracle_ema(np.zeros(history[0].shape), finite, decay))
  np.testing.assert_allclose(tf.cast(runs["xla"][1], tf.float64), expected,
                             atol=2 * ORACLE_TOLERANCE[dtype])


def run_weighted_moving_average(mode, dtype, history, weights, name):
  def body(value, weight):
    return swa_ops.weighted_moving_average(value, 0.5, weight, name=name, skip_nonfinite=True)

  step_function = compile_in(mode, body)
  return [raw_numpy(step_function(tf.constant(value, dtype), tf.constant(weight, dtype)))
          for value, weight in zip(history, weights)]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_weighted_moving_average_under_xla_is_bit_identical(dtype):
  history = values_of(dtype, bad_steps=(2,))
  weights = [np.float64(w) for w in tf.cast(tf.cast(np.linspace(0.5, 2.0, STEPS), dtype),
                                            tf.float64).numpy()]
  results = {mode: run_weighted_moving_average(mode, dtype, history, weights,
                                               "weighted_%s_%s" % (dtype.name, mode))
             for mode in ("eager", "xla")}
  for xla_value, eager_value in zip(results["xla"], results["eager"]):
    # The half-precision product value * weight, which XLA evaluates in float32, is rounded to
    # its dtype before the update, as the fused op receives it.
    assert_bit_identical(xla_value, eager_value)
    assert ulp_distance(xla_value, eager_value).max() == 0
  kept = [(h, w) for h, w in zip(history, weights) if np.all(np.isfinite(h))]
  numerator = oracle_ema(np.zeros(history[0].shape), [h * w for h, w in kept], 0.5)
  denominator = oracle_ema(0.0, [w for _, w in kept], 0.5)
  np.testing.assert_allclose(tf.cast(results["xla"][-1], tf.float64), numerator / denominator,
                             atol=4 * ORACLE_TOLERANCE[dtype])


# --- The XLA context: nested functions, tf.cond, Keras --------------------------------------

def test_nested_function_and_cond_inside_the_xla_cluster():
  history = values_of(tf.float32)
  results = {}
  for mode in ("function", "xla"):
    variable = tf.Variable(tf.zeros(history[0].shape))
    step = tf.Variable(0, dtype=tf.int64)
    averager = swa_ops.SWAMovingAverage(step, skip_nonfinite=True)
    ema = tf.Variable(tf.zeros(history[0].shape))

    @tf.function
    def nested_apply(value):
      variable.assign(value)
      averager.apply([variable])

    def body(value):
      nested_apply(value)
      # Every other step the EMA runs in a tf.cond branch.
      tf.cond(step % 2 == 0,
              lambda: swa_ops.assign_moving_average(ema, value, 0.5, zero_debias=False),
              lambda: tf.identity(ema))
      step.assign_add(1)

    step_function = compile_in(mode, body)
    for value in history:
      step_function(tf.constant(value, tf.float32))
    results[mode] = (averager.average(variable).numpy(), ema.numpy())
    if mode == "xla":
      assert_compiled_without_custom_ops(step_function, tf.constant(history[0], tf.float32))
  for xla_value, fused_value in zip(results["xla"], results["function"]):
    assert_bit_identical(xla_value, fused_value)
  np.testing.assert_allclose(results["xla"][0], oracle_swa(np.zeros(5), history), atol=2e-6)
  np.testing.assert_allclose(results["xla"][1], oracle_ema(np.zeros(5), history[::2], 0.5),
                             atol=2e-6)


def train_with_keras(jit_compile):
  """A Keras model whose custom train_step calls swa.apply; returns the weights' averages."""
  import keras  # pylint: disable=import-outside-toplevel

  keras.utils.set_random_seed(1)
  step = tf.Variable(0, dtype=tf.int64)
  averager = swa_ops.SWAMovingAverage(step, start=2, skip_nonfinite=True)

  class AveragedModel(keras.Model):
    def __init__(self):
      super().__init__()
      self.dense = keras.layers.Dense(3)

    def call(self, inputs):
      return self.dense(inputs)

    def train_step(self, data):
      inputs, targets = data
      with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(self(inputs) - targets))
      weights = self.trainable_variables
      self.optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))
      averager.apply([w.value for w in weights])
      step.assign_add(1)
      return {"loss": loss}

  model = AveragedModel()
  model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=jit_compile)
  inputs = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
  targets = np.random.default_rng(1).normal(size=(32, 3)).astype(np.float32)
  model(inputs[:1])  # Builds the weights before the first trace.
  history = []

  class Snapshot(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
      history.append([w.numpy().astype(np.float64) for w in model.trainable_variables])

  model.fit(inputs, targets, batch_size=8, epochs=2, verbose=0, shuffle=False,
            callbacks=[Snapshot()])
  averages = [averager.average(w.value).numpy() for w in model.trainable_variables]
  return averages, history


def test_keras_train_step_with_jit_compile_applies_swa():
  xla_averages, xla_history = train_with_keras(jit_compile=True)
  fused_averages, _ = train_with_keras(jit_compile=False)
  for i, average in enumerate(xla_averages):
    # The SWA of the weights after steps 2..7 (the step counter counts from 0).
    expected = np.mean([snapshot[i] for snapshot in xla_history[2:]], axis=0)
    np.testing.assert_allclose(average, expected, atol=2e-6)
  for xla_average, fused_average in zip(xla_averages, fused_averages):
    # The training itself may differ by rounding between XLA and not (the matmuls).
    np.testing.assert_allclose(xla_average, fused_average, atol=1e-5)


def test_the_xla_context_is_detected_only_where_xla_compiles():
  from swa_ops import _xla  # pylint: disable=import-outside-toplevel
  seen = {}

  def record(where):
    seen[where] = _xla.in_xla_context()
    return tf.constant(0.0)

  @tf.function
  def nested():
    return record("nested")

  @tf.function(jit_compile=True)
  def jit(flag):
    record("jit")
    nested()
    return tf.cond(flag, lambda: record("cond"), lambda: tf.constant(1.0))

  @tf.function
  def plain():
    return record("plain")

  jit(tf.constant(True))
  plain()
  record("eager")
  assert seen == {"jit": True, "nested": True, "cond": True, "plain": False, "eager": False}


# --- tf.distribute ------------------------------------------------------------------------------
# XLA compiles a replica function for one device. Over several logical CPUs TensorFlow itself
# cannot run a jit-compiled replica function (a plain `assign_add` fails: "Trying to access
# resource ... located in device CPU:1 from device CPU:0"); on GPUs each replica compiles for its
# own GPU. Here: the strategies whose replicas XLA can compile on one CPU.
STRATEGIES = {
    "one_device": lambda: tf.distribute.OneDeviceStrategy("/cpu:0"),
    "mirrored_one_replica": lambda: tf.distribute.MirroredStrategy(["/cpu:0"]),
}


def run_distributed_apply(strategy_name, jit_compile, history):
  """`apply()` inside `strategy.run` of a replica function (XLA-compiled or not) called from a
  tf.function, after the replica assigns the step's value; returns the average after every
  step and the number of skipped updates."""
  strategy = STRATEGIES[strategy_name]()
  with strategy.scope():
    variable = tf.Variable(tf.zeros(history[0].shape, tf.float32))
    step = tf.Variable(0, dtype=tf.int64)
    averager = swa_ops.SWAMovingAverage(step, skip_nonfinite=True, start=1)

  @tf.function(jit_compile=jit_compile)
  def replica_step(value):
    variable.assign(value)
    averager.apply([variable])

  @tf.function
  def train_step(value):
    strategy.run(replica_step, args=(value,))
    step.assign_add(1)

  trace = []
  for value in history:
    train_step(tf.constant(value, tf.float32))
    trace.append(raw_numpy(strategy.experimental_local_results(averager.average(variable))[0]))
  return trace, int(averager.skipped_updates.numpy()), replica_step


@pytest.mark.parametrize("strategy_name", sorted(STRATEGIES))
def test_apply_in_an_xla_replica_function_under_a_strategy(strategy_name):
  history = values_of(tf.float32, bad_steps=(4,))
  xla_trace, xla_skipped, replica_step = run_distributed_apply(strategy_name, True, history)
  fused_trace, fused_skipped, _ = run_distributed_apply(strategy_name, False, history)
  for xla_average, fused_average in zip(xla_trace, fused_trace):
    assert_bit_identical(xla_average, fused_average)
  assert xla_skipped == fused_skipped == 1
  expected = oracle_swa(np.zeros(history[0].shape), history, (1, 1), skip_nonfinite=True)
  np.testing.assert_allclose(xla_trace[-1], expected, atol=ORACLE_TOLERANCE[tf.float32])
  # The replica function XLA compiled holds plain ops only.
  concrete = replica_step.get_concrete_function(tf.constant(history[0], tf.float32))
  assert not swa_ops_op_types(concrete)
