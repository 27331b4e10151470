"""Bad inputs: every one raises a clear error that names the variable (or the argument) and the
problem, before anything is written.

After each failure the test checks that the average (and, for zero-debiased updates, `biased`
and `local_step`) still hold exactly what they held before, and then that a later valid update
still works, against a float64 NumPy oracle written from SPEC.md:

    SWA:       avg <- avg - (avg - value) / (n + 1)
    EMA:       avg <- avg - (avg - value) * (1 - decay)
    debiased:  biased <- biased - (biased - value) * (1 - decay); local_step += 1;
               avg <- biased / (1 - decay ** local_step)

Covered: the raw ops (eager and TF1 graph mode, resource and reference variables) and the
public API (`SWAMovingAverage`, `assign_moving_average`, `weighted_moving_average`).
"""
import contextlib
import math
import os
import re

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import swa_ops  # noqa: E402
from swa_ops import _ops  # noqa: E402
from swa_ops._ops import library as _library  # noqa: E402


class _RawOps:
  """The raw ops, with the update ops' `apply_if` guard list defaulting to empty (no guard):
  these tests are about the other inputs."""

  def __getattr__(self, name):
    op = getattr(_library, name)
    if name.startswith(("swa_assign", "ema_assign", "debiased_ema")):
      return lambda *args, **kwargs: op(*args, **{"apply_if": [], **kwargs})
    return op


library = _RawOps()

# --------------------------------------------------------------------------------------------
# Shared helpers (kept in this file on purpose: conftest.py belongs to other work).
# --------------------------------------------------------------------------------------------

INITIAL = np.array([1.0, -2.0, 4.0])
VALUE = np.array([3.0, 5.0, -1.0])
VALUE2 = np.array([-7.0, 0.5, 2.0])
SWA_STEP = 1  # weight 1 / 2
EMA_DECAY = 0.25
DEBIAS_DECAY = 0.5


@contextlib.contextmanager
def expect_error(exc_types, *fragments):
  """Expects `exc_types`, whose message contains every fragment (case-insensitive; a compiled
  regular expression is searched for instead)."""
  with pytest.raises(exc_types) as info:
    yield info
  message = str(info.value)
  if isinstance(info.value, tf.errors.OpError):
    message += " " + str(info.value.message)
  for fragment in fragments:
    if isinstance(fragment, re.Pattern):
      found = fragment.search(message) is not None
    else:
      found = fragment.lower() in message.lower()
    assert found, "expected %r in the error message, got:\n%s" % (fragment, message)


# The word "step" on its own (not inside "Tstep" of a printed NodeDef, nor in a variable name).
STEP = re.compile(r"\bstep\b")


class Oracle:
  """Float64 NumPy model of one average (plus its debias state)."""

  def __init__(self, average, biased=None, local_step=None):
    self.average = np.array(average, np.float64)
    self.biased = None if biased is None else np.array(biased, np.float64)
    self.local_step = None if local_step is None else float(local_step)

  def swa(self, value, n):
    self.average = self.average - (self.average - value) / (n + 1.0)

  def ema(self, value, decay):
    self.average = self.average - (self.average - value) * (1.0 - decay)

  def debiased(self, value, decay):
    self.biased = self.biased - (self.biased - value) * (1.0 - decay)
    self.local_step += 1.0
    self.average = self.biased / (1.0 - decay ** self.local_step)


class EagerMode:
  name = "eager"

  def variable(self, value, name, use_resource=True):
    assert use_resource
    return tf.Variable(value, name=name)

  def run(self, build):
    """Builds and runs an update (eager: one step)."""
    return build()

  def read(self, variable):
    return variable.numpy()


class GraphMode:
  name = "graph"

  def __init__(self, sess):
    self.sess = sess

  def variable(self, value, name, use_resource=True):
    variable = tf.compat.v1.Variable(value, name=name, use_resource=use_resource)
    self.sess.run(variable.initializer)
    return variable

  def run(self, build):
    """Builds the update, initializes the variables it created (debias state), runs it."""
    fetch = build()
    fresh = [v for v in tf.compat.v1.global_variables()
             if not self.sess.run(tf.compat.v1.is_variable_initialized(v))]
    if fresh:
      self.sess.run(tf.compat.v1.variables_initializer(fresh))
    return self.sess.run(fetch)

  def read(self, variable):
    return self.sess.run(variable)


@contextlib.contextmanager
def graph_session():
  with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as sess:
    yield graph, sess


@pytest.fixture(params=["eager", "graph"])
def mode(request):
  if request.param == "eager":
    yield EagerMode()
  else:
    with graph_session() as (_, sess):
      yield GraphMode(sess)


class State:
  """An average variable (and debias state for kind 'debiased') with its float64 oracle."""

  def __init__(self, mode, kind, prefix, dtype=np.float32, use_resource=True):
    self.mode, self.kind, self.dtype, self.prefix = mode, kind, dtype, prefix
    self.avg_name = prefix + "_average"
    self.average = mode.variable(INITIAL.astype(dtype), self.avg_name, use_resource)
    if kind == "debiased":
      self.biased = mode.variable(np.zeros(3, dtype), prefix + "_biased", use_resource)
      self.local_step = mode.variable(np.zeros((), dtype), prefix + "_local_step", use_resource)
      self.oracle = Oracle(INITIAL, np.zeros(3), 0.0)
    else:
      self.oracle = Oracle(INITIAL)

  @property
  def state(self):
    if self.kind == "debiased":
      return [self.average, self.biased, self.local_step]
    return [self.average]

  @property
  def handles(self):
    return [v.handle for v in self.state]

  def scalar(self):
    """A valid step (swa) or decay (ema, debiased) Tensor."""
    if self.kind == "swa":
      return tf.constant(SWA_STEP, tf.int64)
    return tf.constant(EMA_DECAY if self.kind == "ema" else DEBIAS_DECAY, self.dtype)

  def raw_op(self, suffix=""):
    base = {"swa": "swa_assign", "ema": "ema_assign", "debiased": "debiased_ema"}[self.kind]
    return getattr(library, base + suffix)

  def assert_unchanged(self):
    """Every variable of the state holds exactly the oracle's (unchanged) value."""
    np.testing.assert_array_equal(self.mode.read(self.average), self.oracle.average.astype(self.dtype))
    if self.kind == "debiased":
      np.testing.assert_array_equal(self.mode.read(self.biased), self.oracle.biased.astype(self.dtype))
      assert self.mode.read(self.local_step) == self.oracle.local_step

  def advance_oracle(self, value):
    if self.kind == "swa":
      self.oracle.swa(value, SWA_STEP)
    elif self.kind == "ema":
      self.oracle.ema(value, EMA_DECAY)
    else:
      self.oracle.debiased(value, DEBIAS_DECAY)

  def assert_matches_oracle(self):
    np.testing.assert_allclose(self.mode.read(self.average), self.oracle.average, rtol=1e-6,
                               atol=1e-6)
    if self.kind == "debiased":
      np.testing.assert_allclose(self.mode.read(self.biased), self.oracle.biased, rtol=1e-6,
                                 atol=1e-6)
      assert self.mode.read(self.local_step) == self.oracle.local_step

  def valid_update(self):
    """A valid raw update (value as a Tensor, then as a Variable) works after the failure."""
    if _is_resource(self.average):
      op = self.raw_op()
      self.mode.run(lambda: op(*self.handles, tf.constant(VALUE, self.dtype), self.scalar()))
    else:
      ref_op = self.raw_op("_ref")
      self.mode.run(lambda: ref_op(*self.state, tf.constant(VALUE, self.dtype), self.scalar()))
    self.advance_oracle(VALUE)
    self.assert_matches_oracle()
    if _is_resource(self.average):
      value = self.mode.variable(VALUE2.astype(self.dtype), self.prefix + "_valid_value")
      op = self.raw_op("_variable")
      self.mode.run(lambda: op(*self.handles, value.handle, self.scalar(),
                               T=tf.as_dtype(self.dtype)))
      self.advance_oracle(VALUE2)
      self.assert_matches_oracle()


def _is_resource(variable):
  return _ops.is_resource_variable(variable)


KINDS = ["swa", "ema", "debiased"]

# --------------------------------------------------------------------------------------------
# dtype mismatch between the average and the value
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_raw_dtype_mismatch_tensor_value(mode, kind):
  """float32 average, float64 value Tensor: T is inferred from the value (double), so the op
  finds that the float32 average does not fit, names it and says 'dtype'."""
  s = State(mode, kind, "dtype_" + kind)
  scalar = tf.constant(SWA_STEP, tf.int64) if kind == "swa" else tf.constant(0.5, tf.float64)
  with expect_error(tf.errors.InvalidArgumentError, "'" + s.avg_name, "dtype", "float"):
    mode.run(lambda: s.raw_op()(*s.handles, tf.constant(VALUE, tf.float64), scalar))
  s.assert_unchanged()
  s.valid_update()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("declared", ["float32", "float64"])
def test_raw_dtype_mismatch_variable_value_is_an_error_not_an_abort(mode, kind, declared):
  """Raw <Op>Variable with a float32 average and a float64 value variable. With T=float32 the
  value variable is the misfit, with T=float64 the average is. Either way an
  InvalidArgumentError naming the misfit, not a process abort (this test surviving proves it)."""
  s = State(mode, kind, "vdtype_%s_%s" % (kind, declared))
  value = mode.variable(VALUE.astype(np.float64), "vdtype_%s_%s_value64" % (kind, declared))
  misfit = value.name.split(":")[0] if declared == "float32" else s.avg_name
  scalar = (tf.constant(SWA_STEP, tf.int64) if kind == "swa"
            else tf.constant(0.5, tf.float32))
  with expect_error(tf.errors.InvalidArgumentError, "'" + misfit, "dtype"):
    mode.run(lambda: s.raw_op("_variable")(*s.handles, value.handle, scalar,
                                           T=tf.as_dtype(declared)))
  s.assert_unchanged()
  np.testing.assert_array_equal(mode.read(value), VALUE)
  s.valid_update()


def test_raw_debiased_local_step_dtype_mismatch(mode):
  s = State(mode, "debiased", "ls_dtype")
  local_step64 = mode.variable(np.zeros((), np.float64), "ls_dtype_local_step64")
  with expect_error(tf.errors.InvalidArgumentError, "'ls_dtype_local_step64", "local_step",
                    "dtype"):
    mode.run(lambda: library.debiased_ema(s.average.handle, s.biased.handle, local_step64.handle,
                                          tf.constant(VALUE, tf.float32), s.scalar()))
  s.assert_unchanged()
  assert mode.read(local_step64) == 0.0
  s.valid_update()


def test_ref_dtype_mismatch_rejected_when_the_graph_is_built():
  """For reference variables the op signature ties value to Ref(T): a float64 value for a
  float32 reference variable cannot even be added to the graph (TypeError naming 'value')."""
  with graph_session() as (_, sess):
    s = State(GraphMode(sess), "swa", "refdtype", use_resource=False)
    with expect_error(TypeError, "value", "float64", "float32"):
      library.swa_assign_ref(s.average, tf.constant(VALUE, tf.float64), tf.constant(1))
    s.assert_unchanged()
    s.valid_update()


@pytest.mark.parametrize("zero_debias", [False, True])
def test_api_dtype_mismatch(mode, zero_debias):
  """The public API checks dtypes before building anything: swa_ops.DtypeError, which is both
  tf.errors.InvalidArgumentError and TypeError, naming the variable and both dtypes."""
  avg = mode.variable(INITIAL.astype(np.float32), "api_dtype_%s" % zero_debias)
  globals_before = (len(tf.compat.v1.global_variables()) if mode.name == "graph" else None)
  with expect_error(swa_ops.DtypeError, "api_dtype_%s" % zero_debias, "float32", "float64") as info:
    mode.run(lambda: swa_ops.assign_moving_average(avg, tf.constant(VALUE, tf.float64), 0.5,
                                                   zero_debias=zero_debias))
  assert isinstance(info.value, tf.errors.InvalidArgumentError)
  assert isinstance(info.value, TypeError)
  np.testing.assert_array_equal(mode.read(avg), INITIAL.astype(np.float32))
  if globals_before is not None:  # No debias state created for a rejected call.
    assert len(tf.compat.v1.global_variables()) == globals_before
  # A later valid call works.
  oracle = Oracle(INITIAL, np.zeros(3), 0.0)
  mode.run(lambda: swa_ops.assign_moving_average(avg, tf.constant(VALUE, tf.float32), 0.5,
                                                 zero_debias=zero_debias))
  oracle.debiased(VALUE, 0.5) if zero_debias else oracle.ema(VALUE, 0.5)
  np.testing.assert_allclose(mode.read(avg), oracle.average, rtol=1e-6)


def test_api_dtype_mismatch_reference_variable():
  with graph_session() as (_, sess):
    avg = GraphMode(sess).variable(INITIAL.astype(np.float32), "api_ref_dtype", use_resource=False)
    with expect_error(swa_ops.DtypeError, "api_ref_dtype", "float64"):
      swa_ops.assign_moving_average(avg, tf.constant(VALUE, tf.float64), 0.5, zero_debias=False)
    np.testing.assert_array_equal(sess.run(avg), INITIAL.astype(np.float32))


# --------------------------------------------------------------------------------------------
# shape mismatch
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_raw_shape_mismatch_tensor_value(mode, kind):
  s = State(mode, kind, "shape_" + kind)
  with expect_error(tf.errors.InvalidArgumentError, "'" + s.avg_name, "shape [3]", "shape [2]"):
    mode.run(lambda: s.raw_op()(*s.handles, tf.constant([1.0, 2.0], tf.float32), s.scalar()))
  s.assert_unchanged()
  s.valid_update()


@pytest.mark.parametrize("kind", KINDS)
def test_raw_shape_mismatch_variable_value(mode, kind):
  s = State(mode, kind, "vshape_" + kind)
  value = mode.variable(np.ones((3, 1), np.float32), "vshape_%s_value" % kind)
  with expect_error(tf.errors.InvalidArgumentError, "'" + s.avg_name, "shape"):
    mode.run(lambda: s.raw_op("_variable")(*s.handles, value.handle, s.scalar(), T=tf.float32))
  s.assert_unchanged()
  s.valid_update()


def test_ref_shape_mismatch():
  """Reference variables: a static mismatch is caught by shape inference when the graph is
  built (ValueError naming the variable's node); a dynamic one when the op runs."""
  with graph_session() as (_, sess):
    s = State(GraphMode(sess), "swa", "refshape", use_resource=False)
    with expect_error(ValueError, "refshape_average", "3", "2"):
      library.swa_assign_ref(s.average, tf.constant([1.0, 2.0]), tf.constant(1))
    value = tf.compat.v1.placeholder(tf.float32, shape=None)
    op = library.swa_assign_ref(s.average, value, tf.constant(1))
    with expect_error(tf.errors.InvalidArgumentError, "'refshape_average'", "shape [3]",
                      "shape [2]"):
      sess.run(op, {value: [1.0, 2.0]})
    s.assert_unchanged()
    s.valid_update()


def test_api_shape_mismatch(mode):
  avg = mode.variable(INITIAL.astype(np.float32), "api_shape")
  with expect_error(swa_ops.ShapeError, "api_shape", "(3,)", "(2,)") as info:
    mode.run(lambda: swa_ops.assign_moving_average(avg, tf.constant([1.0, 2.0]), 0.5,
                                                   zero_debias=False))
  assert isinstance(info.value, ValueError)
  assert isinstance(info.value, tf.errors.InvalidArgumentError)
  np.testing.assert_array_equal(mode.read(avg), INITIAL.astype(np.float32))
  mode.run(lambda: swa_ops.assign_moving_average(avg, tf.constant(VALUE, tf.float32), 0.5,
                                                 zero_debias=False))
  oracle = Oracle(INITIAL)
  oracle.ema(VALUE, 0.5)
  np.testing.assert_allclose(mode.read(avg), oracle.average, rtol=1e-6)


# --------------------------------------------------------------------------------------------
# uninitialized variables (TF1 graph mode)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("use_resource", [True, False])
def test_uninitialized_value_variable_public_api(use_resource):
  """The variable averaged was created but its initializer never ran: FailedPreconditionError
  naming it and saying 'uninitialized'; its shadow is untouched."""
  with graph_session() as (_, sess):
    var = tf.compat.v1.Variable(VALUE.astype(np.float32), name="uninit/w",
                                use_resource=use_resource)
    swa = swa_ops.SWAMovingAverage(0)
    update = swa.apply([var])
    shadow = swa.average(var)
    # Give the shadow a value by assignment, not by its initializer: for reference variables
    # the initializer itself needs `var` (see test_shadow_initializer_does_not_need_variable).
    sess.run(shadow.assign(INITIAL.astype(np.float32)))
    with expect_error(tf.errors.FailedPreconditionError, "uninit/w", "uninitialized"):
      sess.run(update)
    np.testing.assert_array_equal(sess.run(shadow), INITIAL.astype(np.float32))
    sess.run(var.initializer)
    sess.run(update)  # n = 0: the shadow becomes the variable's value.
    np.testing.assert_array_equal(sess.run(shadow), VALUE.astype(np.float32))


@pytest.mark.parametrize("use_resource", [True, False])
def test_uninitialized_shadow_public_api(use_resource):
  """The shadow's initializer never ran: FailedPreconditionError naming the shadow."""
  with graph_session() as (_, sess):
    var = tf.compat.v1.Variable(VALUE.astype(np.float32), name="dense/kernel",
                                use_resource=use_resource)
    sess.run(var.initializer)
    swa = swa_ops.SWAMovingAverage(3)
    update = swa.apply([var])
    with expect_error(tf.errors.FailedPreconditionError, "dense/kernel/SWAMovingAverage",
                      "uninitialized"):
      sess.run(update)
    np.testing.assert_array_equal(sess.run(var), VALUE.astype(np.float32))
    sess.run(swa.average(var).initializer)
    sess.run(var.assign(VALUE2.astype(np.float32)))
    sess.run(update)
    oracle = Oracle(VALUE)
    oracle.swa(VALUE2, 3)
    np.testing.assert_allclose(sess.run(swa.average(var)), oracle.average, rtol=1e-6)


@pytest.mark.parametrize("role", ["average", "biased", "local_step"])
def test_uninitialized_state_raw_debiased_resource(role):
  """Raw DebiasedEMA with one of its three resource variables uninitialized: it is named, and
  the other two are unchanged."""
  with graph_session() as (_, sess):
    variables = {
        "average": tf.compat.v1.Variable(INITIAL.astype(np.float32), name="u_average",
                                         use_resource=True),
        "biased": tf.compat.v1.Variable(np.zeros(3, np.float32), name="u_biased",
                                        use_resource=True),
        "local_step": tf.compat.v1.Variable(np.float32(0), name="u_local_step",
                                            use_resource=True),
    }
    sess.run([v.initializer for r, v in variables.items() if r != role])
    op = library.debiased_ema(variables["average"].handle, variables["biased"].handle,
                              variables["local_step"].handle, tf.constant(VALUE, tf.float32),
                              tf.constant(0.5))
    with expect_error(tf.errors.FailedPreconditionError, "u_" + role, "uninitialized"):
      sess.run(op)
    expected = {"average": INITIAL, "biased": np.zeros(3), "local_step": 0.0}
    for r, v in variables.items():
      if r != role:
        np.testing.assert_array_equal(sess.run(v), np.asarray(expected[r], np.float32))
    sess.run(variables[role].initializer)
    sess.run(op)
    oracle = Oracle(INITIAL, np.zeros(3), 0.0)
    oracle.debiased(VALUE, 0.5)
    np.testing.assert_allclose(sess.run(variables["average"]), oracle.average, rtol=1e-6)
    assert sess.run(variables["local_step"]) == 1.0


@pytest.mark.parametrize("use_resource", [
    True,
    False,
])
def test_shadow_initializer_does_not_need_variable(use_resource):
  """SPEC: the shadow of a Variable is initialised to the variable's *initial value*; so
  global_variables_initializer() (initializers in no fixed order) works right after apply(),
  and the shadow's initializer can run before the variable's."""
  with graph_session() as (_, sess):
    variables = [tf.compat.v1.Variable(np.full(3, i + 1.0, np.float32), name="init_order/w%d" % i,
                                       use_resource=use_resource) for i in range(10)]
    swa = swa_ops.SWAMovingAverage(0)
    swa.apply(variables)
    sess.run(tf.compat.v1.global_variables_initializer())
    for i, v in enumerate(variables):
      np.testing.assert_array_equal(sess.run(swa.average(v)), np.full(3, i + 1.0))
  with graph_session() as (_, sess):
    var = tf.compat.v1.Variable(VALUE.astype(np.float32), name="init_order/alone",
                                use_resource=use_resource)
    swa = swa_ops.SWAMovingAverage(0)
    swa.apply([var])
    sess.run(swa.average(var).initializer)  # var itself is not initialized.
    np.testing.assert_array_equal(sess.run(swa.average(var)), VALUE.astype(np.float32))


def test_uninitialized_ref_variables_raw():
  with graph_session() as (_, sess):
    avg = tf.compat.v1.Variable(INITIAL.astype(np.float32), name="ref_avg", use_resource=False)
    val = tf.compat.v1.Variable(VALUE.astype(np.float32), name="ref_val", use_resource=False)
    op = library.swa_assign_ref(avg, val, tf.constant(0, tf.int64))
    sess.run(val.initializer)
    with expect_error(tf.errors.FailedPreconditionError, "ref_avg", "uninitialized"):
      sess.run(op)
    sess.run(avg.initializer)
    # Now the value is the uninitialized one.
    val2 = tf.compat.v1.Variable(VALUE2.astype(np.float32), name="ref_val2", use_resource=False)
    op2 = library.swa_assign_ref(avg, val2, tf.constant(1, tf.int64))
    with expect_error(tf.errors.FailedPreconditionError, "ref_val2", "uninitialized"):
      sess.run(op2)
    np.testing.assert_array_equal(sess.run(avg), INITIAL.astype(np.float32))
    sess.run(op)  # step 0: avg <- val
    np.testing.assert_array_equal(sess.run(avg), VALUE.astype(np.float32))


# --------------------------------------------------------------------------------------------
# deleted resource variable handles (eager)
# --------------------------------------------------------------------------------------------


def _deleted_handle(name, shape=(3,)):
  handle = tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=shape, shared_name=name)
  tf.raw_ops.AssignVariableOp(resource=handle, value=tf.zeros(shape))
  tf.raw_ops.DestroyResourceOp(resource=handle)
  return handle


DELETED_ERRORS = (tf.errors.FailedPreconditionError, tf.errors.NotFoundError)


@pytest.mark.parametrize("kind", KINDS)
def test_deleted_handle_as_value(kind):
  s = State(EagerMode(), kind, "deleted_value_" + kind)
  handle = _deleted_handle("deleted_value_var_" + kind)
  with expect_error(DELETED_ERRORS, "deleted_value_var_" + kind):
    s.raw_op("_variable")(*s.handles, handle, s.scalar(), T=tf.float32)
  s.assert_unchanged()
  s.valid_update()


@pytest.mark.parametrize("kind", KINDS)
def test_deleted_handle_as_average(kind):
  name = "deleted_average_var_" + kind
  handle = _deleted_handle(name)
  if kind == "debiased":
    biased = tf.Variable(np.zeros(3, np.float32), name="deleted_avg_biased")
    local_step = tf.Variable(np.float32(0), name="deleted_avg_local_step")
    state = [handle, biased.handle, local_step.handle]
    scalar = tf.constant(0.5)
  else:
    state = [handle]
    scalar = tf.constant(1, tf.int64) if kind == "swa" else tf.constant(0.5)
  op = {"swa": library.swa_assign, "ema": library.ema_assign,
        "debiased": library.debiased_ema}[kind]
  with expect_error(DELETED_ERRORS, name):
    op(*state, tf.constant(VALUE, tf.float32), scalar)
  if kind == "debiased":
    np.testing.assert_array_equal(biased.numpy(), np.zeros(3))
    assert local_step.numpy() == 0.0
  # The process is alive and a fresh variable under the same shared name works.
  handle = tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[3], shared_name=name)
  tf.raw_ops.AssignVariableOp(resource=handle, value=tf.constant(INITIAL, tf.float32))
  library.swa_assign(handle, tf.constant(VALUE, tf.float32), tf.constant(1, tf.int64))
  got = tf.raw_ops.ReadVariableOp(resource=handle, dtype=tf.float32).numpy()
  np.testing.assert_allclose(got, (INITIAL + VALUE) / 2, rtol=1e-6)
  tf.raw_ops.DestroyResourceOp(resource=handle)


def test_deleted_handle_as_biased():
  avg = tf.Variable(INITIAL.astype(np.float32), name="deleted_b_average")
  local_step = tf.Variable(np.float32(0), name="deleted_b_local_step")
  handle = _deleted_handle("deleted_biased_var")
  with expect_error(DELETED_ERRORS, "deleted_biased_var"):
    library.debiased_ema(avg.handle, handle, local_step.handle, tf.constant(VALUE, tf.float32),
                         tf.constant(0.5))
  np.testing.assert_array_equal(avg.numpy(), INITIAL.astype(np.float32))
  assert local_step.numpy() == 0.0


# --------------------------------------------------------------------------------------------
# bad step
# --------------------------------------------------------------------------------------------

BAD_STEPS = [
    pytest.param(np.array([1, 2], np.int64), "scalar", id="non-scalar"),
    pytest.param(np.int64(-1), ">= 0", id="negative-int"),
    pytest.param(np.float32(-0.5), ">= 0", id="negative-float"),
    pytest.param(np.float64(np.nan), "nan", id="nan"),
    pytest.param(np.float32(np.inf), "inf", id="inf"),
]


@pytest.mark.parametrize("variant", ["tensor", "variable"])
@pytest.mark.parametrize("step,problem", BAD_STEPS)
def test_raw_bad_step(mode, variant, step, problem):
  s = State(mode, "swa", "badstep")
  value = mode.variable(VALUE.astype(np.float32), "badstep_value")

  def build():
    # In graph mode the step is fed through a shape-less placeholder, so the kernel (not shape
    # inference) sees it; static shapes are covered by test_graph_static_non_scalar_step.
    if mode.name == "graph":
      step_t = tf.compat.v1.placeholder_with_default(step, shape=None)
    else:
      step_t = tf.constant(step)
    if variant == "tensor":
      return library.swa_assign(s.average.handle, tf.constant(VALUE, tf.float32), step_t)
    return library.swa_assign_variable(s.average.handle, value.handle, step_t, T=tf.float32)

  with expect_error(tf.errors.InvalidArgumentError, STEP, problem):
    mode.run(build)
  s.assert_unchanged()
  s.valid_update()


@pytest.mark.parametrize("step,problem", BAD_STEPS)
def test_ref_bad_step(step, problem):
  with graph_session() as (_, sess):
    s = State(GraphMode(sess), "swa", "refbadstep", use_resource=False)
    step_t = tf.compat.v1.placeholder_with_default(step, shape=None)
    op = library.swa_assign_ref(s.average, tf.constant(VALUE, tf.float32), step_t)
    with expect_error(tf.errors.InvalidArgumentError, STEP, problem):
      sess.run(op)
    s.assert_unchanged()
    s.valid_update()


def test_graph_static_non_scalar_step():
  with graph_session() as (_, sess):
    s = State(GraphMode(sess), "swa", "static_nonscalar")
    with expect_error((ValueError, tf.errors.InvalidArgumentError), STEP):
      library.swa_assign(s.average.handle, tf.constant(VALUE, tf.float32),
                         tf.constant([1, 2], tf.int64))


def test_graph_static_non_scalar_step_is_rejected_at_build_time():
  """Whatever its wording, the static non-scalar step is rejected when the graph is built and
  nothing runs."""
  with graph_session() as (_, sess):
    s = State(GraphMode(sess), "swa", "static_nonscalar2")
    with expect_error(ValueError, "must be a scalar"):
      library.swa_assign(s.average.handle, tf.constant(VALUE, tf.float32),
                         tf.constant([1, 2], tf.int64))
    s.assert_unchanged()
    s.valid_update()


@pytest.mark.parametrize("bad", [
    pytest.param(-1.0, id="negative"), pytest.param(float("nan"), id="nan"),
    pytest.param(float("inf"), id="inf")])
def test_api_bad_num_updates(mode, bad):
  """SWAMovingAverage with a num_updates variable that goes bad: the apply fails with 'step' in
  the message and the shadow keeps the mean so far; a later good step continues the mean."""
  var = mode.variable(VALUE.astype(np.float32), "api_step_var")
  step = mode.variable(np.float64(0), "api_step")
  swa = swa_ops.SWAMovingAverage(step)
  if mode.name == "graph":
    update = swa.apply([var])
    mode.sess.run(swa.average(var).initializer)
    apply = lambda: update  # noqa: E731
  else:
    apply = lambda: swa.apply([var])  # noqa: E731
  mode.run(apply)  # n = 0: the shadow becomes VALUE.
  mode.run(lambda: step.assign(bad))
  mode.run(lambda: var.assign(VALUE2.astype(np.float32)))
  with expect_error(tf.errors.InvalidArgumentError, STEP):
    mode.run(apply)
  np.testing.assert_array_equal(mode.read(swa.average(var)), VALUE.astype(np.float32))
  mode.run(lambda: step.assign(1.0))
  mode.run(apply)
  np.testing.assert_allclose(mode.read(swa.average(var)), (VALUE + VALUE2) / 2, rtol=1e-6)


def test_api_non_scalar_num_updates():
  var = tf.Variable(VALUE.astype(np.float32), name="api_nonscalar_step")
  swa = swa_ops.SWAMovingAverage(tf.constant([1, 2]))
  with expect_error(swa_ops.ArgumentError, "num_updates", "scalar") as info:
    swa.apply([var])
  assert isinstance(info.value, ValueError)
  assert isinstance(info.value, tf.errors.InvalidArgumentError)
  np.testing.assert_array_equal(var.numpy(), VALUE.astype(np.float32))


# --------------------------------------------------------------------------------------------
# bad decay
# --------------------------------------------------------------------------------------------

BAD_DECAYS = [pytest.param(1.5, id="1.5"), pytest.param(-0.1, id="-0.1"),
              pytest.param(float("nan"), id="nan")]


@pytest.mark.parametrize("kind", ["ema", "debiased"])
@pytest.mark.parametrize("variant", ["tensor", "variable"])
@pytest.mark.parametrize("decay", BAD_DECAYS)
def test_raw_decay_out_of_range(mode, kind, variant, decay):
  s = State(mode, kind, "baddecay_" + kind)
  value = mode.variable(VALUE.astype(np.float32), "baddecay_%s_value" % kind)
  decay_t = tf.constant(decay, tf.float32)
  with expect_error(tf.errors.InvalidArgumentError, "decay", "[0, 1]"):
    if variant == "tensor":
      mode.run(lambda: s.raw_op()(*s.handles, tf.constant(VALUE, tf.float32), decay_t))
    else:
      mode.run(lambda: s.raw_op("_variable")(*s.handles, value.handle, decay_t, T=tf.float32))
  s.assert_unchanged()
  s.valid_update()


@pytest.mark.parametrize("kind", ["ema", "debiased"])
@pytest.mark.parametrize("decay", BAD_DECAYS)
def test_ref_decay_out_of_range(kind, decay):
  with graph_session() as (_, sess):
    s = State(GraphMode(sess), kind, "refdecay_" + kind, use_resource=False)
    op = s.raw_op("_ref")(*s.state, tf.constant(VALUE, tf.float32), tf.constant(decay))
    with expect_error(tf.errors.InvalidArgumentError, "decay", "[0, 1]"):
      sess.run(op)
    s.assert_unchanged()
    s.valid_update()


def test_raw_non_scalar_decay(mode):
  s = State(mode, "ema", "nonscalar_decay")

  def build():
    if mode.name == "graph":
      decay = tf.compat.v1.placeholder_with_default(np.float32([0.5]), shape=None)
    else:
      decay = tf.constant([0.5])
    return library.ema_assign(s.average.handle, tf.constant(VALUE, tf.float32), decay)

  with expect_error(tf.errors.InvalidArgumentError, "decay", "scalar"):
    mode.run(build)
  s.assert_unchanged()
  s.valid_update()


@pytest.mark.parametrize("variant", ["tensor", "variable"])
def test_raw_debiased_decay_one(mode, variant):
  """decay == 1 is a valid EMA decay (no change) but makes 1 - decay ** step zero: rejected by
  DebiasedEMA, with nothing written (biased and local_step included)."""
  s = State(mode, "debiased", "decay_one_" + variant)
  value = mode.variable(VALUE.astype(np.float32), "decay_one_%s_value" % variant)
  with expect_error(tf.errors.InvalidArgumentError, "decay"):
    if variant == "tensor":
      mode.run(lambda: library.debiased_ema(*s.handles, tf.constant(VALUE, tf.float32),
                                            tf.constant(1.0)))
    else:
      mode.run(lambda: library.debiased_ema_variable(*s.handles, value.handle, tf.constant(1.0),
                                                     T=tf.float32))
  s.assert_unchanged()
  s.valid_update()


@pytest.mark.parametrize("decay", BAD_DECAYS)
@pytest.mark.parametrize("zero_debias", [False, True])
def test_api_python_decay_out_of_range(mode, decay, zero_debias):
  avg = mode.variable(INITIAL.astype(np.float32), "api_pydecay")
  with expect_error(swa_ops.ArgumentError, "decay", "[0, 1]") as info:
    mode.run(lambda: swa_ops.assign_moving_average(avg, tf.constant(VALUE, tf.float32), decay,
                                                   zero_debias=zero_debias))
  assert isinstance(info.value, ValueError)
  np.testing.assert_array_equal(mode.read(avg), INITIAL.astype(np.float32))


def _check_api_debiased_recovers(mode, avg, make_update):
  """Two valid zero-debiased updates after a failure give the oracle's values, so the failure
  left `biased` at 0 and `local_step` at 0 (a wrongly advanced local_step or a touched biased
  would change them)."""
  oracle = Oracle(INITIAL, np.zeros(3), 0.0)
  for value in (VALUE, VALUE2):
    mode.run(lambda: make_update(value))
    oracle.debiased(value, 0.5)
    np.testing.assert_allclose(mode.read(avg), oracle.average, rtol=1e-6)


@pytest.mark.parametrize("decay", BAD_DECAYS + [pytest.param(1.0, id="1.0-debiased")])
def test_api_tensor_decay_out_of_range(decay):
  """Eager: the decay Tensor is checked by the op: InvalidArgumentError mentioning decay."""
  avg = tf.Variable(INITIAL.astype(np.float32), name="api_tdecay")
  with expect_error(tf.errors.InvalidArgumentError, "decay"):
    swa_ops.assign_moving_average(avg, tf.constant(VALUE, tf.float32), tf.constant(decay))
  np.testing.assert_array_equal(avg.numpy(), INITIAL.astype(np.float32))
  _check_api_debiased_recovers(
      EagerMode(), avg,
      lambda value: swa_ops.assign_moving_average(avg, tf.constant(value, tf.float32), 0.5))


@pytest.mark.parametrize("decay", BAD_DECAYS + [pytest.param(1.0, id="1.0-debiased")])
def test_api_tensor_decay_out_of_range_tf_function(decay):
  """Inside tf.function (debias state created once and reused)."""
  avg = tf.Variable(INITIAL.astype(np.float32), name="api_fdecay")

  @tf.function
  def update(value, d):
    return swa_ops.assign_moving_average(avg, value, d)

  with expect_error(tf.errors.InvalidArgumentError, "decay"):
    update(tf.constant(VALUE, tf.float32), tf.constant(decay))
  np.testing.assert_array_equal(avg.numpy(), INITIAL.astype(np.float32))
  _check_api_debiased_recovers(
      EagerMode(), avg, lambda value: update(tf.constant(value, tf.float32), tf.constant(0.5)))


def test_api_graph_decay_placeholder():
  with graph_session() as (_, sess):
    avg = tf.compat.v1.Variable(INITIAL.astype(np.float32), name="api_gdecay")
    decay = tf.compat.v1.placeholder(tf.float32, [])
    value = tf.compat.v1.placeholder(tf.float32, [3])
    update = swa_ops.assign_moving_average(avg, value, decay)
    sess.run(tf.compat.v1.global_variables_initializer())
    for bad in (1.5, -0.1, float("nan"), 1.0):
      with expect_error(tf.errors.InvalidArgumentError, "decay"):
        sess.run(update, {decay: bad, value: VALUE})
      np.testing.assert_array_equal(sess.run(avg), INITIAL.astype(np.float32))
    oracle = Oracle(INITIAL, np.zeros(3), 0.0)
    for v in (VALUE, VALUE2):
      sess.run(update, {decay: 0.5, value: v})
      oracle.debiased(v, 0.5)
      np.testing.assert_allclose(sess.run(avg), oracle.average, rtol=1e-6)


# --------------------------------------------------------------------------------------------
# non-float variables, own average, debias state of the wrong shape
# --------------------------------------------------------------------------------------------


def test_apply_int_variable_eager():
  good = tf.Variable(VALUE.astype(np.float32), name="apply_good")
  bad = tf.Variable([1, 2, 3], dtype=tf.int32, name="apply_int_var")
  swa = swa_ops.SWAMovingAverage(0)
  with expect_error(TypeError, "apply_int_var", "int32"):
    swa.apply([good, bad])
  assert swa.average(good) is None  # Checked before any shadow is created.
  assert swa.average(bad) is None
  swa.apply([good])
  np.testing.assert_array_equal(swa.average(good).numpy(), VALUE.astype(np.float32))


@pytest.mark.parametrize("use_resource", [True, False])
def test_apply_int_variable_graph(use_resource):
  with graph_session() as (graph, sess):
    good = tf.compat.v1.Variable(VALUE.astype(np.float32), name="g_good", use_resource=use_resource)
    bad = tf.compat.v1.Variable([1, 2, 3], dtype=tf.int32, name="g_int_var",
                                use_resource=use_resource)
    swa = swa_ops.SWAMovingAverage(0)
    n_ops = len(graph.get_operations())
    with expect_error(TypeError, "g_int_var", "int32"):
      swa.apply([good, bad])
    assert swa.average(good) is None
    assert len(graph.get_operations()) == n_ops  # Nothing built.
    assert tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.MOVING_AVERAGE_VARIABLES) == []


def test_assign_moving_average_int_variable():
  var = tf.Variable([1, 2, 3], dtype=tf.int32, name="ama_int_var")
  with expect_error(TypeError, "ama_int_var", "int32"):
    swa_ops.assign_moving_average(var, tf.constant([1, 2, 3]), 0.5)
  np.testing.assert_array_equal(var.numpy(), [1, 2, 3])


@pytest.mark.parametrize("kind", KINDS)
def test_raw_own_average(mode, kind):
  s = State(mode, kind, "own_" + kind)
  with expect_error(tf.errors.InvalidArgumentError, "'" + s.avg_name, "own average"):
    mode.run(lambda: s.raw_op("_variable")(*s.handles, s.average.handle, s.scalar(),
                                           T=tf.float32))
  s.assert_unchanged()
  if kind == "debiased":
    with expect_error(tf.errors.InvalidArgumentError, "own_debiased_biased", "own average"):
      mode.run(lambda: s.raw_op("_variable")(*s.handles, s.biased.handle, s.scalar(),
                                             T=tf.float32))
    s.assert_unchanged()
  s.valid_update()


@pytest.mark.parametrize("kind", KINDS)
def test_ref_own_average(kind):
  with graph_session() as (_, sess):
    s = State(GraphMode(sess), kind, "refown_" + kind, use_resource=False)
    op = s.raw_op("_ref")(*s.state, s.average, s.scalar())
    with expect_error(tf.errors.InvalidArgumentError, "refown_%s_average" % kind, "own average"):
      sess.run(op)
    s.assert_unchanged()
    s.valid_update()


@pytest.mark.parametrize("zero_debias", [False, True])
def test_api_own_average(mode, zero_debias):
  var = mode.variable(INITIAL.astype(np.float32), "api_own")
  if mode.name == "graph":
    update = swa_ops.assign_moving_average(var, var, 0.5, zero_debias=zero_debias)
    mode.sess.run(tf.compat.v1.global_variables_initializer())
    build = lambda: update  # noqa: E731
    mode.sess.run(var.assign(INITIAL.astype(np.float32)))
  else:
    build = lambda: swa_ops.assign_moving_average(var, var, 0.5, zero_debias=zero_debias)  # noqa
  with expect_error(tf.errors.InvalidArgumentError, "api_own", "own average"):
    mode.run(build)
  np.testing.assert_array_equal(mode.read(var), INITIAL.astype(np.float32))


def test_raw_debiased_state_not_distinct(mode):
  s = State(mode, "debiased", "notdistinct")
  with expect_error(tf.errors.InvalidArgumentError, "distinct"):
    mode.run(lambda: library.debiased_ema(s.average.handle, s.average.handle,
                                          s.local_step.handle, tf.constant(VALUE, tf.float32),
                                          s.scalar()))
  s.assert_unchanged()
  s.valid_update()


def test_raw_debiased_local_step_not_scalar(mode):
  s = State(mode, "debiased", "ls_shape")
  local_step = mode.variable(np.zeros((1,), np.float32), "ls_shape_local_step_vec")
  with expect_error(tf.errors.InvalidArgumentError, "'ls_shape_local_step_vec", "local_step",
                    "shape [1]"):
    mode.run(lambda: library.debiased_ema(s.average.handle, s.biased.handle, local_step.handle,
                                          tf.constant(VALUE, tf.float32), s.scalar()))
  s.assert_unchanged()
  np.testing.assert_array_equal(mode.read(local_step), [0.0])
  s.valid_update()


def test_raw_debiased_biased_wrong_shape(mode):
  s = State(mode, "debiased", "b_shape")
  biased = mode.variable(np.zeros((2,), np.float32), "b_shape_biased_short")
  with expect_error(tf.errors.InvalidArgumentError, "'b_shape_biased_short", "biased",
                    "shape [2]"):
    mode.run(lambda: library.debiased_ema(s.average.handle, biased.handle, s.local_step.handle,
                                          tf.constant(VALUE, tf.float32), s.scalar()))
  s.assert_unchanged()
  np.testing.assert_array_equal(mode.read(biased), [0.0, 0.0])
  s.valid_update()


def test_ref_debiased_bad_state_shapes():
  with graph_session() as (_, sess):
    mode = GraphMode(sess)
    s = State(mode, "debiased", "ref_ds", use_resource=False)
    local_step = mode.variable(np.zeros((1,), np.float32), "ref_ds_local_step_vec",
                               use_resource=False)
    op = library.debiased_ema_ref(s.average, s.biased, local_step, tf.constant(VALUE, tf.float32),
                                  tf.constant(0.5))
    with expect_error(tf.errors.InvalidArgumentError, "ref_ds_local_step_vec", "local_step"):
      sess.run(op)
    np.testing.assert_array_equal(sess.run(local_step), [0.0])
    s.assert_unchanged()
    biased = mode.variable(np.zeros((2,), np.float32), "ref_ds_biased_short", use_resource=False)
    with expect_error(ValueError, "ref_ds_biased_short"):  # Static: caught at graph build.
      library.debiased_ema_ref(s.average, biased, s.local_step, tf.constant(VALUE, tf.float32),
                               tf.constant(0.5))
    s.assert_unchanged()
    s.valid_update()


# --------------------------------------------------------------------------------------------
# weighted_moving_average, assign_moving_average on a Tensor
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("weight_shape", [(2,), (3, 2), (4, 1)])
def test_weighted_moving_average_weight_does_not_broadcast_eager(weight_shape):
  value = tf.constant(np.ones((3,), np.float32))
  with expect_error(swa_ops.ShapeError, "weight", str(tuple(weight_shape)), "(3,)") as info:
    swa_ops.weighted_moving_average(value, 0.5, tf.ones(weight_shape), name="wma_bad_eager")
  assert isinstance(info.value, ValueError)
  # A later valid call works: first update of zero-initialised averages with decay 0.5.
  got = swa_ops.weighted_moving_average(value * 4.0, 0.5, tf.constant(2.0), name="wma_bad_eager")
  np.testing.assert_allclose(got.numpy(), np.full(3, 4.0), rtol=1e-6)


def test_weighted_moving_average_weight_does_not_broadcast_graph():
  with graph_session() as (graph, sess):
    value = tf.constant(np.ones((3,), np.float32))
    n_globals = len(tf.compat.v1.global_variables())
    with expect_error(swa_ops.ShapeError, "weight", "(2,)", "(3,)"):
      swa_ops.weighted_moving_average(value, 0.5, tf.ones((2,)))
    assert len(tf.compat.v1.global_variables()) == n_globals  # No variables created.
    # A weight that broadcasts to a *bigger* shape than value's is rejected too.
    with expect_error(swa_ops.ShapeError, "weight"):
      swa_ops.weighted_moving_average(value, 0.5, tf.ones((2, 3)))
    assert len(tf.compat.v1.global_variables()) == n_globals


@pytest.mark.parametrize("zero_debias", [False, True])
def test_assign_moving_average_tensor_instead_of_variable(mode, zero_debias):
  tensor = tf.constant(INITIAL.astype(np.float32), name="not_a_variable")
  with expect_error(swa_ops.ArgumentError, "tf.Variable") as info:
    mode.run(lambda: swa_ops.assign_moving_average(tensor, tf.constant(VALUE, tf.float32), 0.5,
                                                   zero_debias=zero_debias))
  assert isinstance(info.value, ValueError)
  if mode.name == "graph":
    assert "not_a_variable" in str(info.value)
    assert tf.compat.v1.global_variables() == []


# --------------------------------------------------------------------------------------------
# Multi-variable apply(): the failing variable's own shadow is untouched.
# --------------------------------------------------------------------------------------------


def test_apply_with_one_uninitialized_variable_leaves_its_shadow_untouched():
  """apply() over several variables where one is uninitialized: the error names it and *its*
  shadow is unchanged. (The other variables' updates are independent ops grouped together; the
  SPEC does not promise that they are rolled back, so this test does not look at them.)"""
  with graph_session() as (_, sess):
    good = [tf.compat.v1.Variable(np.full(3, i + 1.0, np.float32), name="multi/ok%d" % i)
            for i in range(3)]
    bad = tf.compat.v1.Variable(np.full(3, 9.0, np.float32), name="multi/not_initialized")
    swa = swa_ops.SWAMovingAverage(1)
    update = swa.apply(good + [bad])
    sess.run([swa.average(v).initializer for v in good + [bad]])
    sess.run([v.initializer for v in good])
    with expect_error(tf.errors.FailedPreconditionError, "multi/not_initialized", "uninitialized"):
      sess.run(update)
    np.testing.assert_array_equal(sess.run(swa.average(bad)), np.full(3, 9.0, np.float32))
    sess.run(bad.initializer)
    sess.run(bad.assign(np.full(3, 3.0, np.float32)))
    sess.run(swa.apply([bad]))
    np.testing.assert_allclose(sess.run(swa.average(bad)), np.full(3, 6.0), rtol=1e-6)


def test_oracle_sanity():
  """Sanity check of the oracle helpers themselves (so a wrong oracle cannot hide a bug)."""
  o = Oracle([0.0], [0.0], 0.0)
  o.debiased(np.array([1.0]), 0.5)
  assert o.average[0] == 1.0
  o.debiased(np.array([1.0]), 0.5)
  assert math.isclose(o.average[0], 1.0)
  o2 = Oracle([2.0])
  o2.swa(np.array([4.0]), 1)
  assert o2.average[0] == 3.0


def test_an_empty_var_list_is_an_argument_error():
  swa = swa_ops.SWAMovingAverage(0)
  with pytest.raises(swa_ops.ArgumentError, match="var_list is empty"):
    swa.apply([])
  with pytest.raises(swa_ops.ArgumentError, match="var_list is empty"):
    swa.apply()  # Eager code: the graph's trainable variables are none.


def test_variables_on_different_devices_are_an_error_that_changes_nothing():
  """Average on CPU:0, value on CPU:1 (two logical devices, so in a subprocess): an
  InvalidArgumentError naming the value input, and the average unchanged."""
  import subprocess
  import sys
  import textwrap
  script = textwrap.dedent("""
      import tensorflow as tf
      cpu = tf.config.list_physical_devices("CPU")[0]
      tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
      from swa_ops import _ops
      with tf.device("/cpu:0"):
        average = tf.Variable([1.0, 2.0])
      with tf.device("/cpu:1"):
        value = tf.Variable([3.0, 4.0])
      try:
        with tf.device("/cpu:0"):
          _ops.swa_assign(average, value, tf.constant(1))
      except tf.errors.InvalidArgumentError as error:
        print("ERROR", "value" in str(error) and "CPU:1" in str(error))
      print("AVERAGE", average.numpy().tolist())
  """)
  out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")).stdout
  assert "ERROR True" in out, out
  assert "AVERAGE [1.0, 2.0]" in out, out
