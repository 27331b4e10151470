"""`swa_ops.ExponentialMovingAverage` against two independent oracles: TensorFlow's own
`tf.train.ExponentialMovingAverage`, run side by side on copies of the same variables (values,
shadow names, collections, devices, `variables_to_restore`, errors), and a float64 NumPy model
of the update from its formula.

Modes: eager, tf.function, TF1 graph + Session (resource variables, and TF1 reference
variables: `graph_ref`), tf.function(jit_compile=True) (XLA: swa_ops emits plain TF ops there).
float32 and float64 updates are expected to be bit-identical to TensorFlow's (the same
roundings: the weight 1 - decay in float32 rounded to the shadow's dtype, the difference, the
product and the result each rounded once); float16 and bfloat16 ones, where swa_ops computes
in float32 and rounds once but TensorFlow rounds every operation to the narrow type, within a
few units in the last place.
"""
import numpy as np
import pytest
import tensorflow as tf

import swa_ops
from swa_ops import moving_averages as swa_moving_averages

DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64)
MODES = ("eager", "function", "graph", "graph_ref", "xla")
EPS = {tf.float16: 2.0**-11, tf.bfloat16: 2.0**-8, tf.float32: 2.0**-24, tf.float64: 2.0**-53}
SHAPES = ((3,), (2, 4), ())
STEPS = 5


class Runner:
  """Variables, updates and reads in one mode; `build(update)` returns a callable doing one
  update (traced once in tf.function modes, built once as an op in graph mode)."""

  def __init__(self, mode):
    self.mode = mode
    self.graph = tf.Graph() if mode.startswith("graph") else None
    self._context = self.graph.as_default() if self.graph is not None else None
    if self._context is not None:
      self._context.__enter__()
      self.session = tf.compat.v1.Session(graph=self.graph)
    self._assigners = {}

  def close(self):
    if self._context is not None:
      self.session.close()
      self._context.__exit__(None, None, None)

  def variable(self, value, dtype, name, trainable=True):
    initial = tf.cast(np.asarray(value, np.float64), dtype)
    if self.graph is not None:
      var = tf.compat.v1.Variable(initial, name=name, use_resource=self.mode == "graph",
                                  trainable=trainable)
      self.session.run(var.initializer)
      return var
    return tf.Variable(initial, name=name, trainable=trainable)

  def build(self, update):
    if self.mode == "eager":
      return update
    if self.mode in ("function", "xla"):
      def traced():
        update()
      return tf.function(traced, jit_compile=self.mode == "xla", autograph=False)
    op = update()
    uninitialized = [v for v in tf.compat.v1.global_variables()
                     if not self.session.run(tf.compat.v1.is_variable_initialized(v))]
    self.session.run(tf.compat.v1.variables_initializer(uninitialized))
    return lambda: self.session.run(op)

  def assign(self, var, value):
    value = np.asarray(value, np.float64)
    if self.graph is None:
      var.assign(tf.cast(value, var.dtype))
      return
    if var.ref() not in self._assigners:
      placeholder = tf.compat.v1.placeholder(tf.float64, var.shape)
      self._assigners[var.ref()] = (placeholder, var.assign(tf.cast(placeholder, var.dtype)))
    placeholder, op = self._assigners[var.ref()]
    self.session.run(op, {placeholder: value})

  def read(self, value):
    value = self.session.run(value) if self.graph is not None else value.numpy()
    return np.asarray(value).astype(np.float64)

  def raw(self, value):
    """The stored value in its own dtype (for bit comparisons)."""
    return np.asarray(self.session.run(value) if self.graph is not None else value.numpy())


@pytest.fixture
def make_runner():
  runners = []

  def make(mode):
    runners.append(Runner(mode))
    return runners[-1]

  yield make
  for runner in reversed(runners):
    runner.close()


def rounded(values, dtype):
  return np.asarray(values, np.float64).astype(dtype.as_numpy_dtype).astype(np.float64)


def random_values(step, shape, dtype, seed=0):
  rng = np.random.default_rng(1000 * seed + 10 * step + len(shape))
  return rounded(rng.uniform(-2.0, 2.0, size=shape), dtype)


def oracle_weight(decay, num_updates, dtype):
  """The weight 1 - d of TensorFlow's formula: d = min(decay, (1 + n) / (10 + n)) and 1 - d in
  float32, the weight then rounded to `dtype`."""
  decay = np.float32(decay)
  if num_updates is not None:
    n = np.float32(num_updates)
    decay = min(decay, np.float32(np.float32(1.0 + n) / np.float32(10.0 + n)))
  return rounded(np.float32(1.0) - decay, dtype)


def oracle_update(average, value, weight):
  """average - (average - value) * weight, in float64."""
  return average - (average - value) * weight


def assert_close_in_dtype(actual, expected, dtype, scale, ulps):
  np.testing.assert_allclose(actual, expected, rtol=0, atol=ulps * EPS[dtype] * scale)


def assert_matches_tensorflow(actual_raw, expected_raw, dtype, scale):
  """Bit-identical for float32/float64; within 2 units in the last place (of values of
  magnitude `scale`) for float16/bfloat16."""
  if dtype in (tf.float32, tf.float64):
    np.testing.assert_array_equal(actual_raw, expected_raw)
  else:
    assert_close_in_dtype(actual_raw.astype(np.float64), expected_raw.astype(np.float64), dtype,
                          scale, ulps=4)


def side_by_side(runner, dtype, ema_ours, ema_tf, steps=STEPS, between_steps=None):
  """Copies of the same variables, averaged by `ema_ours` and `ema_tf` for `steps` steps with
  new values before each; returns (ours, theirs, value history) as lists per step of lists per
  variable (raw arrays)."""
  ours = [runner.variable(random_values(0, shape, dtype), dtype, "mine_%d" % i)
          for i, shape in enumerate(SHAPES)]
  theirs = [runner.variable(random_values(0, shape, dtype), dtype, "theirs_%d" % i)
            for i, shape in enumerate(SHAPES)]
  run_ours = runner.build(lambda: ema_ours.apply(ours))
  run_theirs = runner.build(lambda: ema_tf.apply(theirs))
  history, results = [], []
  for step in range(steps):
    # Step 0 keeps the initial values: shadows created at the first call (eager code and
    # tf.function) and at build time (graph mode) start from the same values.
    values = [random_values(step, shape, dtype) for shape in SHAPES]
    for var_a, var_b, value in zip(ours, theirs, values):
      runner.assign(var_a, value)
      runner.assign(var_b, value)
    if between_steps is not None:
      between_steps(step)
    run_ours()
    run_theirs()
    history.append(values)
    results.append(([runner.raw(ema_ours.average(v)) for v in ours],
                    [runner.raw(ema_tf.average(v)) for v in theirs]))
  return results, history


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("decay", [0.9, 0.1])  # 0.1: 1 - decay is not exact in float32.
def test_updates_match_tensorflow_and_the_float64_formula(make_runner, mode, dtype, decay):
  runner = make_runner(mode)
  ours = swa_ops.ExponentialMovingAverage(decay)
  theirs = tf.train.ExponentialMovingAverage(decay)
  results, history = side_by_side(runner, dtype, ours, theirs)
  expected = [random_values(0, shape, dtype) for shape in SHAPES]  # Shadows start as the vars.
  weight = oracle_weight(decay, None, dtype)
  for step, ((mine, tfs), values) in enumerate(zip(results, history)):
    expected = [oracle_update(a, v, weight) for a, v in zip(expected, values)]
    for got, want, reference in zip(mine, expected, tfs):
      if mode == "xla":  # TensorFlow's own update is compiled (and fused) by XLA too.
        assert_close_in_dtype(got.astype(np.float64), reference.astype(np.float64), dtype,
                              2.0, ulps=4)
      else:
        assert_matches_tensorflow(got, reference, dtype, scale=2.0)
      assert_close_in_dtype(got.astype(np.float64), want, dtype, 2.0, ulps=4 * (step + 1))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("decay_kind", ["float", "variable", "tensor"])
def test_decay_kinds_changed_between_steps_and_num_updates(make_runner, mode, decay_kind):
  """decay as a Python float, a Variable changed before every step, or a Tensor; num_updates a
  Variable counted up each step: min(decay, (1 + n) / (10 + n)) at every apply()."""
  runner = make_runner(mode)
  dtype = tf.float32
  decays = [0.5, 0.99, 0.3, 0.75, 0.6]  # The Variable's values at steps 0-4.
  if decay_kind == "float":
    decay, decays = 0.8, [0.8] * STEPS
  elif decay_kind == "tensor":
    with runner.graph.as_default() if runner.graph is not None else _nothing():
      decay = tf.constant(0.8)
    decays = [0.8] * STEPS
  else:
    decay = runner.variable(decays[0], tf.float32, "decay", trainable=False)
  num_updates = runner.variable(2, tf.float32, "num_updates", trainable=False)
  ours = swa_ops.ExponentialMovingAverage(decay, num_updates=num_updates)
  theirs = tf.train.ExponentialMovingAverage(decay, num_updates=num_updates)

  def between_steps(step):
    if decay_kind == "variable":
      runner.assign(decay, decays[step])
    runner.assign(num_updates, 2 + 3 * step)

  results, history = side_by_side(runner, dtype, ours, theirs, between_steps=between_steps)
  expected = [random_values(0, shape, dtype) for shape in SHAPES]
  for step, ((mine, tfs), values) in enumerate(zip(results, history)):
    weight = oracle_weight(decays[step], 2 + 3 * step, dtype)
    expected = [oracle_update(a, v, weight) for a, v in zip(expected, values)]
    for got, want, reference in zip(mine, expected, tfs):
      if mode != "xla":
        np.testing.assert_array_equal(got, reference)
      np.testing.assert_allclose(got, want, rtol=0, atol=8 * (step + 1) * EPS[dtype] * 2.0)


class _nothing:
  def __enter__(self):
    return None

  def __exit__(self, *unused):
    return False


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_xla_is_bit_identical_to_the_fused_ops(dtype):
  """The same steps in tf.function (fused ops) and tf.function(jit_compile=True) (plain TF ops
  emitted by swa_ops), Variables and a zero-debiased Tensor, give the same bits."""
  results = {}
  for mode in ("function", "xla"):
    variables = [tf.Variable(tf.cast(random_values(0, shape, tf.float64), dtype))
                 for shape in SHAPES]
    ema = swa_ops.ExponentialMovingAverage(tf.Variable(0.7), num_updates=tf.Variable(5),
                                           zero_debias=True)

    @tf.function(jit_compile=mode == "xla", autograph=False)
    def step():
      doubled = variables[0] * tf.constant(2.0, dtype)  # pylint: disable=cell-var-from-loop
      ema.apply(variables + [doubled])  # pylint: disable=cell-var-from-loop
      return ema.average(doubled).read_value()  # pylint: disable=cell-var-from-loop

    outputs = []
    for index in range(STEPS):
      for var, shape in zip(variables, SHAPES):
        var.assign(tf.cast(random_values(index + 1, shape, tf.float64), dtype))
      doubled_average = step()
      outputs.append([ema.average(v).numpy() for v in variables] + [doubled_average.numpy()])
    results[mode] = outputs
  for fused, xla in zip(results["function"], results["xla"]):
    for a, b in zip(fused, xla):
      assert a.dtype == b.dtype
      np.testing.assert_array_equal(np.atleast_1d(a).view(np.uint8),
                                    np.atleast_1d(b).view(np.uint8))


def _graph_model(ema_class, zero_debias, name):
  """In a new TF1 graph: variables on two devices, in variable scopes, one not trainable, a
  Tensor; `ema_class` applied to them under a third device. Returns (graph, ema, variables,
  tensor, update op, average names before apply)."""
  graph = tf.Graph()
  with graph.as_default():
    with tf.compat.v1.variable_scope("model"):
      with tf.device("/job:ps/task:0"):
        kernel = tf.compat.v1.Variable(tf.ones([3, 2]), name="kernel", use_resource=True)
      with tf.device("/job:ps/task:1"):
        bias = tf.compat.v1.Variable(tf.zeros([2]), name="bias", use_resource=True)
      counter = tf.compat.v1.Variable(0.0, name="counter", trainable=False, use_resource=True)
      total = tf.reduce_sum(kernel) + tf.reduce_sum(bias)
    with tf.compat.v1.variable_scope("averages"):
      ema = ema_class(0.99, zero_debias=zero_debias, name=name)
      before = [ema.average_name(v) for v in (kernel, bias, counter, total)]
      with tf.device("/job:worker"):
        update = ema.apply([kernel, bias, total])
  return graph, ema, (kernel, bias, counter), total, update, before


@pytest.mark.matrix
@pytest.mark.parametrize("zero_debias", [False, True], ids=["plain", "zero_debias"])
def test_graph_names_collections_devices_and_restore_maps_match_tensorflow(zero_debias):
  built = {}
  for key, ema_class in (("ours", swa_ops.ExponentialMovingAverage),
                         ("theirs", tf.train.ExponentialMovingAverage)):
    built[key] = _graph_model(ema_class, zero_debias, "EMA")
  (g_ours, ours, vars_ours, t_ours, op_ours, before_ours) = built["ours"]
  (g_tf, theirs, vars_tf, t_tf, op_tf, before_tf) = built["theirs"]
  assert before_ours == before_tf
  assert isinstance(op_ours, tf.Operation) and op_ours.name == op_tf.name
  for mine, reference in zip(list(vars_ours) + [t_ours], list(vars_tf) + [t_tf]):
    avg_ours, avg_tf = ours.average(mine), theirs.average(reference)
    if avg_tf is None:
      assert avg_ours is None
      continue
    assert avg_ours.name == avg_tf.name
    assert avg_ours.device == avg_tf.device
    assert avg_ours.op.colocation_groups() == avg_tf.op.colocation_groups()
    assert not avg_ours.trainable
    assert ours.average_name(mine) == theirs.average_name(reference)

  def names(graph, key):
    return sorted(v.name for v in graph.get_collection(key))

  for key in (tf.compat.v1.GraphKeys.MOVING_AVERAGE_VARIABLES,
              tf.compat.v1.GraphKeys.GLOBAL_VARIABLES,
              tf.compat.v1.GraphKeys.TRAINABLE_VARIABLES):
    assert names(g_ours, key) == names(g_tf, key), key

  def restore_map(ema, graph, subset=None):
    with graph.as_default():
      return {name: v.name for name, v in ema.variables_to_restore(subset).items()}

  assert restore_map(ours, g_ours) == restore_map(theirs, g_tf)
  assert (restore_map(ours, g_ours, [vars_ours[0], t_ours])
          == restore_map(theirs, g_tf, [vars_tf[0], t_tf]))


@pytest.mark.matrix
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_zero_debias_of_a_tensor_matches_tensorflow_and_the_formula(dtype):
  """TF1 graph: the shadow of a Tensor, zero-debiased (biased / (1 - d ** t)); a Variable's
  shadow in the same apply() is not debiased."""
  decay = 0.6
  graph = tf.Graph()
  with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
    fed = tf.compat.v1.placeholder(dtype, [3])
    var_ours = tf.compat.v1.Variable(tf.ones([3], dtype), name="w_ours", use_resource=True)
    var_tf = tf.compat.v1.Variable(tf.ones([3], dtype), name="w_tf", use_resource=True)
    tensor_ours, tensor_tf = tf.identity(fed, name="t_ours"), tf.identity(fed, name="t_tf")
    ours = swa_ops.ExponentialMovingAverage(decay, zero_debias=True)
    theirs = tf.train.ExponentialMovingAverage(decay, zero_debias=True)
    update = tf.group(ours.apply([var_ours, tensor_ours]), theirs.apply([var_tf, tensor_tf]))
    session.run(tf.compat.v1.global_variables_initializer())
    biased, weight = np.zeros(3), oracle_weight(decay, None, dtype)
    for step in range(1, STEPS + 1):
      value = random_values(step, (3,), dtype)
      session.run(update, {fed: value.astype(dtype.as_numpy_dtype)})
      biased = oracle_update(biased, value, weight)
      expected = biased / (1.0 - (1.0 - weight) ** step)
      got, reference = session.run([ours.average(tensor_ours), theirs.average(tensor_tf)])
      got, reference = got.astype(np.float64), reference.astype(np.float64)
      ulps = 8 * step if dtype in (tf.float16, tf.bfloat16) else 16 * step
      assert_close_in_dtype(got, expected, dtype, 2.0, ulps)
      assert_close_in_dtype(got, reference, dtype, 2.0, ulps)
      # The Variable's shadow: a plain EMA from the variable's value (1), not debiased.
      assert_close_in_dtype(session.run(ours.average(var_ours)).astype(np.float64),
                            np.ones(3), dtype, 1.0, 0)
    names = sorted(v.op.name for v in tf.compat.v1.global_variables()
                   if v.op.name.startswith("t_ours"))
    assert names == ["t_ours/ExponentialMovingAverage",
                     "t_ours/ExponentialMovingAverage/biased",
                     "t_ours/ExponentialMovingAverage/local_step"]


@pytest.mark.matrix
def test_eager_apply_returns_none_and_fills_the_collection_as_tensorflow_does():
  ours_var = tf.Variable([1.0, 2.0], name="eager_ours")
  tf_var = tf.Variable([1.0, 2.0], name="eager_tf")
  ours = swa_ops.ExponentialMovingAverage(0.5)
  theirs = tf.train.ExponentialMovingAverage(0.5)
  assert ours.apply([ours_var]) is None and theirs.apply([tf_var]) is None
  collection = tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.MOVING_AVERAGE_VARIABLES)
  assert any(v is tf_var for v in collection)
  assert any(v is ours_var for v in collection)
  assert ours.average(ours_var).name == "eager_ours/ExponentialMovingAverage:0"
  assert theirs.average(tf_var).name == "eager_tf/ExponentialMovingAverage:0"
  # A second apply() of a longer list creates only the missing shadow, as TensorFlow's does.
  first_shadow = ours.average(ours_var)
  other = tf.Variable(3.0, name="eager_other")
  ours_var.assign([3.0, 4.0])
  ours.apply([ours_var, other])
  assert ours.average(ours_var) is first_shadow
  np.testing.assert_array_equal(first_shadow.numpy(), [2.0, 3.0])  # 0.5 * old + 0.5 * new.
  np.testing.assert_array_equal(ours.average(other).numpy(), 3.0)


@pytest.mark.parametrize("mode", ["eager", "function"])
@pytest.mark.parametrize("restore_before_apply", [True, False], ids=["deferred", "immediate"])
def test_checkpoint_round_trip_continues_identically(tmp_path, mode, restore_before_apply):
  """Save after 3 steps, run 2 more (the expectation); a fresh averager restored from the save
  (before its first apply(): deferred restoration; or after) and run through the same 2 steps
  ends bit-identical."""

  def model():
    return [tf.Variable(tf.zeros([3, 2]), name="ckpt/kernel"),
            tf.Variable(tf.zeros([2], tf.float64), name="ckpt/bias")]

  def steps(ema, variables, first, count):
    update = (lambda: ema.apply(variables)) if mode == "eager" else tf.function(
        lambda: ema.apply(variables) and None, autograph=False)
    for step in range(first, first + count):
      for var in variables:
        var.assign(random_values(step, var.shape, var.dtype).astype(var.dtype.as_numpy_dtype))
      update()
    return update

  variables = model()
  ema = swa_ops.ExponentialMovingAverage(0.7)
  steps(ema, variables, 0, 3)
  path = tf.train.Checkpoint(ema=ema).save(str(tmp_path / "ckpt"))
  saved = [ema.average(v).numpy() for v in variables]
  steps(ema, variables, 3, 2)
  expected = [ema.average(v).numpy() for v in variables]
  assert not np.array_equal(saved[0], expected[0])

  fresh_vars = model()
  fresh = swa_ops.ExponentialMovingAverage(0.7)
  checkpoint = tf.train.Checkpoint(ema=fresh)
  if restore_before_apply:
    status = checkpoint.restore(path)
    steps(fresh, fresh_vars, 3, 2)  # The shadows are created, restored, then updated.
    status.assert_consumed()
  else:
    fresh.apply(fresh_vars)  # The shadows exist (from the zero variables) before the restore.
    checkpoint.restore(path).assert_consumed()
    for var, want in zip(fresh_vars, saved):
      np.testing.assert_array_equal(fresh.average(var).numpy(), want)
    steps(fresh, fresh_vars, 3, 2)
  for var, want in zip(fresh_vars, expected):
    np.testing.assert_array_equal(fresh.average(var).numpy(), want)


@pytest.mark.matrix
@pytest.mark.parametrize("mode", ["eager", "function", "graph"])
def test_a_non_float_variable_is_a_type_error_naming_it(make_runner, mode):
  """As TensorFlow raises TypeError (checked side by side), swa_ops raises a TypeError (a
  swa_ops.DtypeError) that names the variable and its dtype, before creating any shadow."""
  runner = make_runner(mode)
  with runner.graph.as_default() if runner.graph is not None else _nothing():
    good = tf.Variable(1.0, name="good_weight")
    bad = tf.Variable([1, 2], dtype=tf.int32, name="step_counter")
  for ema_class in (tf.train.ExponentialMovingAverage, swa_ops.ExponentialMovingAverage):
    ema = ema_class(0.9)
    apply = lambda: ema.apply([good, bad]) and None  # pylint: disable=cell-var-from-loop
    if mode == "function":
      apply = tf.function(apply, autograph=False)
    with pytest.raises(TypeError) as raised:
      apply()
    if ema_class is swa_ops.ExponentialMovingAverage:
      assert isinstance(raised.value, swa_ops.DtypeError)
      assert "step_counter" in str(raised.value) and "int32" in str(raised.value)
      assert ema.average(good) is None  # Checked before any shadow is made.


@pytest.mark.matrix
def test_an_eager_tensor_is_a_type_error_as_in_tensorflow():
  var = tf.Variable(1.0)
  for ema in (tf.train.ExponentialMovingAverage(0.9), swa_ops.ExponentialMovingAverage(0.9)):
    with pytest.raises(TypeError):
      ema.apply([var, tf.constant(2.0)])


def test_bad_decay_and_num_updates_are_clear_errors():
  with pytest.raises(swa_ops.ArgumentError, match="decay must be in"):
    swa_ops.ExponentialMovingAverage(1.5)
  with pytest.raises(swa_ops.DtypeError, match="decay"):
    swa_ops.ExponentialMovingAverage("0.9")
  with pytest.raises(swa_ops.DtypeError, match="num_updates"):
    swa_ops.ExponentialMovingAverage(0.9, num_updates="step")
  ema = swa_ops.ExponentialMovingAverage(tf.Variable([0.9, 0.8]))
  with pytest.raises(swa_ops.ArgumentError, match="scalar"):
    ema.apply([tf.Variable(1.0)])


def test_the_module_stands_in_for_tensorflows_moving_averages():
  """swa_ops.moving_averages has TensorFlow's three names, with TensorFlow's signatures."""
  import inspect  # pylint: disable=g-import-not-at-top
  from tensorflow.python.training import moving_averages as tf_moving_averages
  assert swa_moving_averages.ExponentialMovingAverage is swa_ops.ExponentialMovingAverage
  for name in ("ExponentialMovingAverage", "assign_moving_average", "weighted_moving_average"):
    ours = inspect.signature(getattr(swa_moving_averages, name))
    theirs = inspect.signature(getattr(tf_moving_averages, name))
    their_parameters = list(theirs.parameters.values())
    assert list(ours.parameters.values())[:len(their_parameters)] == their_parameters, name
  for method in ("apply", "average", "average_name", "variables_to_restore"):
    assert (inspect.signature(getattr(swa_ops.ExponentialMovingAverage, method)).parameters.keys()
            == inspect.signature(
                getattr(tf.train.ExponentialMovingAverage, method)).parameters.keys()), method


def test_a_float64_decay_is_used_in_float64():
  """TensorFlow raises ValueError for a float64 decay Variable; swa_ops uses it as it is: a
  float64 shadow's update takes exactly 1 - decay (decay not rounded to float32)."""
  decay = tf.Variable(0.1 + 2.0**-40, dtype=tf.float64)  # Not a float32 number.
  var = tf.Variable(np.array([1.0, -3.0]), dtype=tf.float64)
  with pytest.raises(ValueError):
    tf.train.ExponentialMovingAverage(decay).apply([tf.Variable(var.numpy())])
  ema = swa_ops.ExponentialMovingAverage(decay)
  ema.apply([var])
  var.assign([5.0, 7.0])
  ema.apply([var])
  d = 0.1 + 2.0**-40
  expected = oracle_update(np.array([1.0, -3.0]), np.array([5.0, 7.0]), 1.0 - d)
  np.testing.assert_allclose(ema.average(var).numpy(), expected, rtol=0, atol=1e-15)
  rounded_to_float32 = 1.0 + 4.0 * (1.0 - float(np.float32(d)))  # What a float32 decay gives.
  assert abs(ema.average(var).numpy()[0] - rounded_to_float32) > 1e-10


def test_a_variable_listed_twice_is_an_argument_error_naming_it():
  var = tf.Variable(1.0, name="twice")
  with pytest.raises(swa_ops.ArgumentError, match="twice"):
    swa_ops.ExponentialMovingAverage(0.9).apply([var, var])


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16], ids=lambda d: d.name)
def test_the_weight_is_rounded_to_the_shadow_dtype_as_tensorflow_rounds_it(dtype):
  """TensorFlow computes the weight 1 - decay in float32 and rounds it to each shadow's dtype.
  With 1 - decay = 0.5 * (1 + 2**-(m + 1)) (m: the dtype's mantissa bits), a tie that rounds to
  0.5, a shadow of 0 moving towards 100 lands exactly on 50 (the unrounded weight would give
  about 50.02, 50.03 in float16 and 50.25 in bfloat16)."""
  mantissa_bits = {tf.float16: 10, tf.bfloat16: 7}[dtype]
  decay = 0.5 - 2.0 ** -(mantissa_bits + 2)  # Exact in float32.
  ours_var, tf_var = tf.Variable(tf.zeros([2], dtype)), tf.Variable(tf.zeros([2], dtype))
  ours, theirs = swa_ops.ExponentialMovingAverage(decay), tf.train.ExponentialMovingAverage(decay)
  ours.apply([ours_var])
  theirs.apply([tf_var])
  for var in (ours_var, tf_var):
    var.assign(tf.constant([100.0, -100.0], dtype))
  ours.apply([ours_var])
  theirs.apply([tf_var])
  weight = oracle_weight(decay, None, dtype)
  assert weight == 0.5
  expected = oracle_update(np.zeros(2), np.array([100.0, -100.0]), weight)
  got = tf.cast(ours.average(ours_var), tf.float64).numpy()
  np.testing.assert_array_equal(got, expected)
  np.testing.assert_array_equal(got, tf.cast(theirs.average(tf_var), tf.float64).numpy())


@pytest.mark.parametrize("mode", ["eager", "graph"])
def test_an_empty_var_list_averages_nothing_as_in_tensorflow(make_runner, mode):
  runner = make_runner(mode)
  results = [ema.apply([]) for ema in (tf.train.ExponentialMovingAverage(0.9),
                                       swa_ops.ExponentialMovingAverage(0.9))]
  if mode == "eager":
    assert results == [None, None]
  else:
    assert [r.type for r in results] == ["NoOp", "NoOp"]
    assert [r.name for r in results] == ["ExponentialMovingAverage",
                                         "ExponentialMovingAverage_1"]
    runner.session.run(results)
