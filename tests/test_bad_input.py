"""Bad inputs: every one raises a clear error that names the variable (or the argument) and the
problem, before anything is written.

After each failure the test checks that the average (and, for zero-debiased updates, `biased`
and `local_step`) still hold exactly what they held before, and then that a later valid update
still works, against a float64 NumPy oracle written from SPEC.md:

    SWA:       avg <- avg - (avg - value) / (n + 1)
    EMA:       avg <- avg - (avg - value) * (1 - decay)
    debiased:  biased <- biased - (biased - value) * (1 - decay); local_step += 1;
               avg <- biased / (1 - decay ** local_step)

Covered: every raw op (eager code and TF1 graph mode, resource and reference variables; the
grouped ops, SwapVariablesN, AllFinite and most API cases inside tf.function too) and the public
API (`SWAMovingAverage`, `assign_moving_average`, `weighted_moving_average`, `swa_ops.keras`).
A grouped op gets a group of 5 with the bad member in the middle: every other member is checked
unchanged too; the <Op>Group ops get the same cases through a SWAVariableGroup handle (holding
the value variables, or with the values as tensors: two inputs per case). Distinct bad inputs
per op or entry point (modes not counted; "x": expected failure, a known bug, see its reason):

    SWAAssignN            27 (1x)   SWAAssign                9   SWAMovingAverage(...)      10
    SWAAssignNVariable    33        SWAAssignVariable       11   SWAMovingAverage.apply     20
    SWAAssignGroup        57        SWAAssignRef            11   SWAMovingAverage.swap_w.    1
    EMAAssignN            25        EMAAssign                7   assign_moving_average      25
    EMAAssignNVariable    32        EMAAssignVariable        8   weighted_moving_average    20
    EMAAssignGroup        55        EMAAssignRef             4   swa_ops.keras.SWA(...)     17
    DebiasedEMAN          33        DebiasedEMA             15   swa_ops.keras.update_bn    12
    DebiasedEMANVariable  40        DebiasedEMAVariable     10
    DebiasedEMAGroup      71        DebiasedEMARef           6
    SwapVariablesN        17
    AllFinite              9 (1x)                                total                     585

tests/test_variable_group.py adds what is particular to groups (a member deleted, re-created
or reshaped after the group first used it; a group of the wrong size; a handle that is no group).
"""
import collections
import contextlib
import math
import os
import re

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from tensorflow.python.ops import resource_variable_ops  # noqa: E402

import swa_ops  # noqa: E402
from swa_ops import _ops  # noqa: E402
from swa_ops import moving_averages  # noqa: E402
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
    self._initialized = set()  # Global variables known to be initialized (refs).

  def variable(self, value, name, use_resource=True):
    variable = tf.compat.v1.Variable(value, name=name, use_resource=use_resource)
    self.sess.run(variable.initializer)
    self._initialized.add(variable.ref())
    return variable

  def run(self, build):
    """Builds the update, initializes the variables it created (debias state), runs it."""
    fetch = build()
    unknown = [v for v in tf.compat.v1.global_variables() if v.ref() not in self._initialized]
    if unknown:
      flags = self.sess.run([tf.compat.v1.is_variable_initialized(v) for v in unknown])
      fresh = [v for v, initialized in zip(unknown, flags) if not initialized]
      if fresh:
        self.sess.run(tf.compat.v1.variables_initializer(fresh))
      self._initialized.update(v.ref() for v in unknown)
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
    # The op stores each update in the variables' dtype: so does the oracle.
    self.oracle.average = self.oracle.average.astype(self.dtype).astype(np.float64)
    if self.kind == "debiased":
      self.oracle.biased = self.oracle.biased.astype(self.dtype).astype(np.float64)

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


# ============================================================================================
# The matrix, continued: the grouped ops, SwapVariablesN, AllFinite, and more of the API, each
# in eager code, inside tf.function and in TF1 graph mode (`any_mode`).
# ============================================================================================


class FunctionMode(EagerMode):
  """Variables created eagerly; every update traced into a tf.function of its own, run once."""
  name = "function"

  def run(self, build):
    def traced():
      result = build()
      return result if isinstance(result, tf.Tensor) else None  # Ops can't be returned.
    return tf.function(traced, autograph=False)()


@pytest.fixture(params=["eager", "function", "graph"])
def any_mode(request):
  if request.param == "graph":
    with graph_session() as (_, sess):
      yield GraphMode(sess)
  else:
    yield EagerMode() if request.param == "eager" else FunctionMode()


class AtBuild:
  """The error of an op that cannot even be built (attrs, list lengths, input dtypes): eager
  execution reports it as InvalidArgumentError, graph building (TF1 graphs and tf.function) as
  `graph_error` (ValueError or TypeError)."""

  def __init__(self, graph_error):
    self.graph_error = graph_error

  def resolve(self, mode):
    return tf.errors.InvalidArgumentError if mode.name == "eager" else self.graph_error


def _resolve(error, mode):
  return error.resolve(mode) if isinstance(error, AtBuild) else error


def dynamic(value):
  """`value` as a Tensor whose shape graph building does not see, so that the kernel's own
  check, not shape inference, rejects it. Call it inside the update being built."""
  value = tf.constant(value)
  if tf.executing_eagerly():
    return value
  return tf.compat.v1.placeholder_with_default(value, shape=None)


def uninitialized_variable(mode, name, shape=(3,), dtype=tf.float32):
  """A resource variable that never held a value."""
  if mode.name == "graph":  # Not a global variable: GraphMode.run initialises those.
    return tf.compat.v1.Variable(tf.zeros(shape, dtype), name=name, use_resource=True,
                                 collections=[])
  return resource_variable_ops.UninitializedVariable(shape=shape, dtype=dtype, name=name)


def deleted_variable(mode, name, shape=(3,)):
  """A float32 resource variable (graph mode) or handle (eager) destroyed after it was set."""
  if mode.name == "graph":
    variable = tf.compat.v1.Variable(tf.zeros(shape), name=name, use_resource=True,
                                     collections=[])
    mode.sess.run(variable.initializer)
    mode.sess.run(tf.raw_ops.DestroyResourceOp(resource=variable.handle))
    return variable
  return _deleted_handle(name, shape)


def _handle(variable):
  return variable.handle if isinstance(variable, tf.Variable) else variable


def not_a_variable(name):
  """The handle of a resource that is not a variable (a mutex). TensorFlow's own
  ReadVariableOp reports it as a FailedPreconditionError ('... using the wrong type'): so do
  the ops."""
  return tf.raw_ops.MutexV2(shared_name=name)


def _replaced(items, index, item):
  items = list(items)
  items[index] = item
  return items


# One bad input: `build()` builds (and the mode runs) the op; it raises `error` (a type, or
# AtBuild) whose message holds every fragment; `after()` checks what else must be unchanged.
Bad = collections.namedtuple("Bad", ["build", "error", "fragments", "after"], defaults=[None])

# --------------------------------------------------------------------------------------------
# Grouped ops: SWAAssignN, SWAAssignNVariable, EMAAssignN, EMAAssignNVariable, DebiasedEMAN,
# DebiasedEMANVariable. A group of GROUP members with the bad one (if one) at MIDDLE; after the
# failure every member of the group (averages, debias state, values) is unchanged, and a later
# valid grouped update (both variants) gives the oracle's values for all of them.
# --------------------------------------------------------------------------------------------

GROUP = 5
MIDDLE = 2
GROUP_OPS = {"swa": "SWAAssignN", "ema": "EMAAssignN", "debiased": "DebiasedEMAN"}
_GROUP_RAW = {"swa": "swa_assign_n", "ema": "ema_assign_n", "debiased": "debiased_eman"}
_GROUP_HANDLE_RAW = {"swa": "swa_assign_group", "ema": "ema_assign_group",
                     "debiased": "debiased_ema_group"}
# How the op takes the group: value tensors (<Op>N), value handles (<Op>NVariable), or one
# SWAVariableGroup handle (<Op>Group) holding the state lists and the value variables ("group")
# or the state lists alone, the values as tensors ("group-tensor").
VARIANTS = ("tensor", "variable")  # A case for one of these is tried with its group variant too.
_GROUP_OF = {"variable": "group", "tensor": "group-tensor"}
ALL_VARIANTS = VARIANTS + tuple(_GROUP_OF.values())


def _variable_values(variant):
  """Whether `variant` takes the values as variables (else as tensors)."""
  return variant in ("variable", "group")

def _member_value(i, dtype=np.float32):
  return (VALUE + i).astype(dtype)


class Group:
  """GROUP States of one kind and their GROUP value Variables (member i's value: VALUE + i),
  updated by one grouped raw op: <Op>N (values as Tensors) or <Op>NVariable (as Variables)."""

  def __init__(self, mode, kind, prefix, dtype=np.float32):
    self.mode, self.kind, self.prefix, self.dtype = mode, kind, prefix, dtype
    self.members = [State(mode, kind, "%s%d" % (prefix, i), dtype) for i in range(GROUP)]
    self.values = [mode.variable(_member_value(i, dtype), "%s%d_value" % (prefix, i))
                   for i in range(GROUP)]

  def name(self, i, role="average"):
    return "'%s%d_%s" % (self.prefix, i, role)

  def lists(self):
    """The state handle lists: [averages] or [averages, biased, local_steps]."""
    return [[m.state[j].handle for m in self.members] for j in range(len(self.members[0].state))]

  def replaced(self, role, index, variable):
    """lists() with the `role` list's element `index` replaced by `variable`'s handle."""
    lists = self.lists()
    j = ["average", "biased", "local_step"].index(role)
    lists[j] = _replaced(lists[j], index, _handle(variable))
    return lists

  def value_inputs(self, variant):
    if _variable_values(variant):
      return [v.handle for v in self.values]
    return [tf.constant(_member_value(i, self.dtype)) for i in range(GROUP)]

  def scalar(self):
    return self.members[0].scalar()

  def build(self, variant, lists=None, values=None, scalar=None, **attrs):
    lists = self.lists() if lists is None else lists
    values = self.value_inputs(variant) if values is None else values
    scalar = self.scalar() if scalar is None else scalar
    if variant != "tensor":
      attrs.setdefault("T", tf.as_dtype(self.dtype))
    if variant.startswith("group"):
      members = [handle for handles in lists for handle in handles]
      if variant == "group":
        members, values = members + list(values), []
      op = getattr(library, _GROUP_HANDLE_RAW[self.kind])
      return op(library.swa_variable_group(members), values, scalar, **attrs)
    op = getattr(library, _GROUP_RAW[self.kind] + ("_variable" if variant == "variable" else ""))
    return op(*lists, values, scalar, **attrs)

  def assert_unchanged(self):
    for member in self.members:
      member.assert_unchanged()
    for i, value in enumerate(self.values):
      np.testing.assert_array_equal(self.mode.read(value), _member_value(i, self.dtype))

  def valid_update(self):
    for variant in ALL_VARIANTS:
      self.mode.run(lambda: self.build(variant))  # pylint: disable=cell-var-from-loop
      for i, member in enumerate(self.members):
        member.advance_oracle(_member_value(i, np.float64))
        member.assert_matches_oracle()


def _unchanged(mode, variable, expected):
  return lambda: np.testing.assert_array_equal(mode.read(variable), expected)


GROUPED_CASES = {}  # case id -> (kinds, variants, make(group, variant) -> Bad)


def grouped_case(case, kinds=tuple(KINDS), variants=VARIANTS):
  def register(make):
    assert case not in GROUPED_CASES
    GROUPED_CASES[case] = (kinds, variants, make)
    return make
  return register


def _wrong_member(role, shape, dtype, error, *fragments):
  """A case whose `role` variable at MIDDLE has another shape or dtype (INITIAL-like values)."""
  def make(g, variant):
    bad = g.mode.variable(np.ones(shape, dtype), g.prefix + "_bad")
    return Bad(lambda: g.build(variant, g.replaced(role, MIDDLE, bad)), error,
               ["'%s_bad" % g.prefix, role] + list(fragments),
               _unchanged(g.mode, bad, np.ones(shape, dtype)))
  return make


grouped_case("average-float64")(_wrong_member(
    "average", (3,), np.float64, tf.errors.InvalidArgumentError, "dtype double", "expects float"))
grouped_case("average-float16")(_wrong_member(
    "average", (3,), np.float16, tf.errors.InvalidArgumentError, "dtype half", "expects float"))
grouped_case("average-int32")(_wrong_member(
    "average", (3,), np.int32, tf.errors.InvalidArgumentError, "dtype int32"))
grouped_case("average-shape")(_wrong_member(
    "average", (4,), np.float32, tf.errors.InvalidArgumentError, "shape [4]", "shape [3]"))
grouped_case("average-scalar")(_wrong_member(
    "average", (), np.float32, tf.errors.InvalidArgumentError, "shape []", "shape [3]"))
grouped_case("biased-shape", kinds=("debiased",))(_wrong_member(
    "biased", (2,), np.float32, tf.errors.InvalidArgumentError, "shape [2]", "shape [3]"))
grouped_case("local_step-shape", kinds=("debiased",))(_wrong_member(
    "local_step", (1,), np.float32, tf.errors.InvalidArgumentError, "shape [1]", "scalar"))
grouped_case("local_step-float64", kinds=("debiased",))(_wrong_member(
    "local_step", (), np.float64, tf.errors.InvalidArgumentError, "dtype double"))


@grouped_case("first-average-int32")
def _(g, variant):
  """The first average sets the dtype of every variable updated: an int32 one is refused as
  not a float."""
  bad = g.mode.variable(np.ones(3, np.int32), g.prefix + "_bad")
  return Bad(lambda: g.build(variant, g.replaced("average", 0, bad)),
             tf.errors.InvalidArgumentError,
             ["'%s_bad" % g.prefix, "int32", "float16, bfloat16, float32 or float64"],
             _unchanged(g.mode, bad, np.ones(3, np.int32)))


@grouped_case("value-wider-than-average")
def _(g, variant):
  """float16 averages (debias state too), float32 values: an average is its value's dtype or
  wider, never narrower."""
  narrow = Group(g.mode, g.kind, g.prefix + "h", np.float16)
  attrs = {"T": tf.float32} if variant != "tensor" else {}

  def after():
    narrow.assert_unchanged()
    narrow.valid_update()
  return Bad(lambda: narrow.build(variant, values=g.value_inputs(variant), **attrs),
             tf.errors.InvalidArgumentError,
             [narrow.name(0), "dtype half", "dtype float", "wider float"], after)


@grouped_case("value-shape")
def _(g, variant):
  if _variable_values(variant):
    bad = g.mode.variable(np.ones(2, np.float32), g.prefix + "_bad_value")
    values = lambda: _replaced(g.value_inputs(variant), MIDDLE, bad.handle)  # noqa: E731
  else:
    values = lambda: _replaced(g.value_inputs(variant), MIDDLE, tf.ones([2]))  # noqa: E731
  return Bad(lambda: g.build(variant, values=values()), tf.errors.InvalidArgumentError,
             [g.name(MIDDLE), "shape [3]", "value has shape [2]"])


@grouped_case("value-float64", variants=("variable",))
def _(g, variant):
  bad = g.mode.variable(VALUE.astype(np.float64), g.prefix + "_bad_value")
  return Bad(lambda: g.build(variant, values=_replaced(g.value_inputs(variant), MIDDLE,
                                                       bad.handle)),
             tf.errors.InvalidArgumentError,
             ["value variable '%s_bad_value" % g.prefix, "dtype double", "expects float"],
             _unchanged(g.mode, bad, VALUE))


@grouped_case("value-float64-tensor", variants=("tensor",))
def _(g, variant):
  """<Op>N infers T from the values: the graph cannot be built. <Op>Group is given T (the values
  may be none): the kernel refuses a value tensor of another dtype."""
  build = lambda: g.build(variant, values=_replaced(g.value_inputs(variant), MIDDLE,  # noqa
                                                    tf.constant(VALUE, tf.float64)))
  if variant == "group-tensor":
    return Bad(build, tf.errors.InvalidArgumentError, ["must have dtype T = float", "double"])
  return Bad(build, AtBuild(TypeError), [re.compile("float64|double")])


def _missing(role, how):
  """A case whose `role` variable at MIDDLE is uninitialised, deleted or not a variable."""
  def make(g, variant):
    name = "%s_%s_%s" % (g.prefix, role, how)
    shape = () if role == "local_step" else (3,)
    if how == "uninitialized":
      bad = uninitialized_variable(g.mode, name, shape)
      error, fragments = tf.errors.FailedPreconditionError, ["uninitialized"]
    elif how == "deleted":
      bad = deleted_variable(g.mode, name, shape)
      error, fragments = DELETED_ERRORS, ["does not exist"]
    else:
      bad = not_a_variable(name)
      error, fragments = tf.errors.FailedPreconditionError, ["wrong type"]
    if role == "value":
      build = lambda: g.build(variant, values=_replaced(g.value_inputs(variant), MIDDLE,  # noqa
                                                        _handle(bad)))
    else:
      build = lambda: g.build(variant, g.replaced(role, MIDDLE, bad))  # noqa: E731
    return Bad(build, error, ["%s variable '%s" % (role, name)] + fragments)
  return make


for _how in ("uninitialized", "deleted", "not-a-variable"):
  grouped_case("average-" + _how)(_missing("average", _how))
  grouped_case("value-" + _how, variants=("variable",))(_missing("value", _how))
grouped_case("biased-uninitialized", kinds=("debiased",))(_missing("biased", "uninitialized"))
grouped_case("local_step-deleted", kinds=("debiased",))(_missing("local_step", "deleted"))


@grouped_case("average-twice")
def _(g, variant):
  lists = g.lists()
  lists[0][3] = lists[0][1]
  return Bad(lambda: g.build(variant, lists), tf.errors.InvalidArgumentError,
             [g.name(1), "appears twice", "average 1", "average 3"])


@grouped_case("biased-is-its-average", kinds=("debiased",))
def _(g, variant):
  return Bad(lambda: g.build(variant, g.replaced("biased", MIDDLE, g.members[MIDDLE].average)),
             tf.errors.InvalidArgumentError, [g.name(MIDDLE), "appears twice", "biased 2"])


@grouped_case("local_step-twice", kinds=("debiased",))
def _(g, variant):
  return Bad(lambda: g.build(variant, g.replaced("local_step", 3, g.members[1].local_step)),
             tf.errors.InvalidArgumentError,
             [g.name(1, "local_step"), "appears twice", "local_step 1", "local_step 3"])


@grouped_case("value-is-its-own-average", variants=("variable",))
def _(g, variant):
  values = _replaced(g.value_inputs(variant), MIDDLE, g.members[MIDDLE].average.handle)
  return Bad(lambda: g.build(variant, values=values), tf.errors.InvalidArgumentError,
             [g.name(MIDDLE), "own average"])


@grouped_case("value-is-another-members-average", variants=("variable",))
def _(g, variant):
  values = _replaced(g.value_inputs(variant), MIDDLE, g.members[4].average.handle)
  return Bad(lambda: g.build(variant, values=values), tf.errors.InvalidArgumentError,
             [g.name(4), "own average"])


@grouped_case("average-is-a-tensor")
def _(g, variant):
  return Bad(lambda: g.build(variant, g.replaced("average", MIDDLE, tf.constant(INITIAL,
                                                                               tf.float32))),
             AtBuild(TypeError), ["resource"])


@grouped_case("values-are-tensors", variants=("variable",))
def _(g, variant):
  return Bad(lambda: g.build(variant, values=g.value_inputs("tensor")), AtBuild(TypeError),
             ["resource"])


@grouped_case("T-int32", variants=("variable",))
def _(g, variant):
  return Bad(lambda: g.build(variant, T=tf.int32), AtBuild(TypeError), ["int32"])


@grouped_case("empty-lists")
def _(g, variant):
  return Bad(lambda: g.build(variant, [[] for _ in g.lists()], []), AtBuild(ValueError),
             ["minimum"])


@grouped_case("lists-of-different-lengths")
def _(g, variant):
  """<Op>N's lists have one length attribute; a group's size is checked by the kernel."""
  build = lambda: g.build(variant, values=g.value_inputs(variant)[:GROUP - 1])  # noqa: E731
  if variant.startswith("group"):
    return Bad(build, tf.errors.InvalidArgumentError, ["the group holds", "lists of one length"])
  return Bad(build, AtBuild(ValueError), ["match"])


@grouped_case("apply_if-non-scalar")
def _(g, variant):
  return Bad(lambda: g.build(variant, apply_if=[tf.constant([True, True])]),
             tf.errors.InvalidArgumentError, ["apply_if must be a scalar", "shape [2]"])


@grouped_case("apply_if-not-bool")
def _(g, variant):
  return Bad(lambda: g.build(variant, apply_if=[tf.constant(1)]), AtBuild(TypeError), ["bool"])


def _bad_scalar(value, error, *fragments, **attrs):
  """A case with a bad step (swa) or decay (ema, debiased), fed so that the kernel sees it."""
  def make(g, variant):
    scalar = (lambda: dynamic(value)) if error is tf.errors.InvalidArgumentError else (
        lambda: tf.constant(value))
    return Bad(lambda: g.build(variant, scalar=scalar(), **attrs), error, list(fragments))
  return make


for _id, _step, _fragment in [("non-scalar", np.array([1, 2], np.int64), "scalar"),
                              ("negative-int", np.int64(-1), ">= 0"),
                              ("negative-float", np.float32(-0.5), ">= 0"),
                              ("nan", np.float64(np.nan), "nan"),
                              ("inf", np.float32(np.inf), "inf")]:
  grouped_case("step-" + _id, kinds=("swa",))(
      _bad_scalar(_step, tf.errors.InvalidArgumentError, STEP, _fragment))
grouped_case("step-fractional-with-start", kinds=("swa",))(
    _bad_scalar(np.float32(1.5), tf.errors.InvalidArgumentError, STEP, "whole number", start=1))
grouped_case("step-string", kinds=("swa",))(_bad_scalar("1", AtBuild(TypeError), "string"))
for _id, _decay in [("1.5", 1.5), ("-0.1", -0.1), ("nan", np.nan), ("inf", np.inf)]:
  grouped_case("decay-" + _id, kinds=("ema", "debiased"))(
      _bad_scalar(np.float32(_decay), tf.errors.InvalidArgumentError, "decay", "[0, 1]"))
grouped_case("decay-non-scalar", kinds=("ema", "debiased"))(
    _bad_scalar(np.float32([0.5]), tf.errors.InvalidArgumentError, "decay", "scalar"))
grouped_case("decay-int32", kinds=("ema", "debiased"))(
    _bad_scalar(np.int32(0), AtBuild(TypeError), "int32"))
grouped_case("decay-1-debiased", kinds=("debiased",))(
    _bad_scalar(np.float32(1.0), tf.errors.InvalidArgumentError, "decay < 1"))


def _grouped_params():
  suffixes = {"tensor": "", "variable": "Variable", "group": "Group",
              "group-tensor": "Group-tensors"}
  for case, (kinds, variants, _) in GROUPED_CASES.items():
    for kind in kinds:
      for variant in variants + tuple(_GROUP_OF[v] for v in variants if v in _GROUP_OF):
        op = (GROUP_OPS[kind][:-1] if variant.startswith("group") else GROUP_OPS[kind]) + (
            suffixes[variant])
        yield pytest.param(kind, variant, case, id="%s-%s" % (op, case))


@pytest.mark.parametrize("kind,variant,case", list(_grouped_params()))
def test_grouped_op_bad_input(any_mode, kind, variant, case):
  g = Group(any_mode, kind, "g")
  bad = GROUPED_CASES[case][2](g, variant)
  with expect_error(_resolve(bad.error, any_mode), *bad.fragments):
    any_mode.run(bad.build)
  g.assert_unchanged()
  if bad.after is not None:
    bad.after()
  g.valid_update()


# --------------------------------------------------------------------------------------------
# SwapVariablesN: nothing is swapped, and a later valid swap exchanges every pair.
# --------------------------------------------------------------------------------------------


class Pairs:
  """GROUP (first, second) pairs of float32 variables: first[i] = INITIAL + i, second[i] =
  VALUE + i."""

  def __init__(self, mode, prefix="s", variant="n"):
    self.mode, self.prefix, self.variant = mode, prefix, variant
    self.first = [mode.variable((INITIAL + i).astype(np.float32), "%s_first%d" % (prefix, i))
                  for i in range(GROUP)]
    self.second = [mode.variable(_member_value(i), "%s_second%d" % (prefix, i))
                   for i in range(GROUP)]

  def build(self, first=None, second=None, T=tf.float32):
    first = [v.handle for v in self.first] if first is None else first
    second = [v.handle for v in self.second] if second is None else second
    if self.variant == "group":  # SwapVariablesGroup: the pairs as one group.
      return library.swap_variables_group(library.swa_variable_group(first + second), T=T)
    return library.swap_variables_n(first, second, T=T)

  def assert_holds(self, first, second):
    for i in range(GROUP):
      np.testing.assert_array_equal(self.mode.read(self.first[i]), (first + i).astype(np.float32))
      np.testing.assert_array_equal(self.mode.read(self.second[i]),
                                    (second + i).astype(np.float32))

  def valid_swap(self):
    self.mode.run(self.build)
    self.assert_holds(VALUE, INITIAL)
    self.mode.run(self.build)
    self.assert_holds(INITIAL, VALUE)


SWAP_CASES = {}


def swap_case(case):
  def register(make):
    SWAP_CASES[case] = make
    return make
  return register


def _second_replaced(p, variable):
  return _replaced([v.handle for v in p.second], MIDDLE, _handle(variable))


@swap_case("shape")
def _(p):
  bad = p.mode.variable(np.ones(4, np.float32), "s_bad")
  return Bad(lambda: p.build(second=_second_replaced(p, bad)), tf.errors.InvalidArgumentError,
             ["'s_first2", "'s_bad", "shape [4]", "different shapes"],
             _unchanged(p.mode, bad, np.ones(4)))


def _swap_wrong_dtype_case(side, np_dtype, dtype_name):
  """A `side` ("first" or "second") variable of another dtype than T (float) in the middle."""
  def make(p):
    bad = p.mode.variable(np.ones(3, np_dtype), "s_bad")
    handles = _replaced([v.handle for v in getattr(p, side)], MIDDLE, _handle(bad))
    return Bad(lambda: p.build(**{side: handles}), tf.errors.InvalidArgumentError,
               ["%s variable 's_bad" % side, "dtype " + dtype_name, "expects float"],
               _unchanged(p.mode, bad, np.ones(3)))
  return make


for _side, _np_dtype, _dtype_name in (("second", np.float64, "double"),
                                      ("first", np.float16, "half"),
                                      ("second", np.int32, "int32")):
  swap_case("%s-%s" % (_side, np.dtype(_np_dtype).name))(
      _swap_wrong_dtype_case(_side, _np_dtype, _dtype_name))


@swap_case("T-float64")
def _(p):
  return Bad(lambda: p.build(T=tf.float64), tf.errors.InvalidArgumentError,
             ["first variable 's_first0", "dtype float", "expects double"])


@swap_case("variable-in-two-pairs")
def _(p):
  return Bad(lambda: p.build(second=_second_replaced(p, p.first[4])),
             tf.errors.InvalidArgumentError, ["'s_first4", "appears twice"])


@swap_case("variable-swapped-with-itself")
def _(p):
  return Bad(lambda: p.build(second=_second_replaced(p, p.first[MIDDLE])),
             tf.errors.InvalidArgumentError, ["'s_first2", "appears twice"])


@swap_case("first-uninitialized")
def _(p):
  bad = uninitialized_variable(p.mode, "s_uninit")
  first = _replaced([v.handle for v in p.first], MIDDLE, bad.handle)
  return Bad(lambda: p.build(first=first), tf.errors.FailedPreconditionError,
             ["first variable 's_uninit", "uninitialized"])


@swap_case("second-uninitialized")
def _(p):
  bad = uninitialized_variable(p.mode, "s_uninit")
  return Bad(lambda: p.build(second=_second_replaced(p, bad)), tf.errors.FailedPreconditionError,
             ["second variable 's_uninit", "uninitialized"])


@swap_case("first-deleted")
def _(p):
  bad = deleted_variable(p.mode, "s_deleted")
  first = _replaced([v.handle for v in p.first], MIDDLE, _handle(bad))
  return Bad(lambda: p.build(first=first), DELETED_ERRORS,
             ["first variable 's_deleted", "does not exist"])


@swap_case("second-deleted")
def _(p):
  bad = deleted_variable(p.mode, "s_deleted")
  return Bad(lambda: p.build(second=_second_replaced(p, bad)), DELETED_ERRORS,
             ["second variable 's_deleted", "does not exist"])


@swap_case("second-not-a-variable")
def _(p):
  bad = not_a_variable("s_mutex")
  return Bad(lambda: p.build(second=_second_replaced(p, bad)), tf.errors.FailedPreconditionError,
             ["second variable 's_mutex", "wrong type"])


@swap_case("second-is-a-tensor")
def _(p):
  return Bad(lambda: p.build(second=_second_replaced(p, tf.constant(VALUE, tf.float32))),
             AtBuild(TypeError), ["resource"])


@swap_case("T-int32")
def _(p):
  return Bad(lambda: p.build(T=tf.int32), AtBuild(TypeError), ["int32"])


@swap_case("empty-lists")
def _(p):
  return Bad(lambda: p.build([], []), AtBuild(ValueError), ["minimum"])


@swap_case("lists-of-different-lengths")
def _(p):
  build = lambda: p.build(second=[v.handle for v in p.second[:GROUP - 1]])
  if p.variant == "group":  # One group of an odd number of variables.
    return Bad(build, tf.errors.InvalidArgumentError,
               ["holds %d variables" % (2 * GROUP - 1), "two lists of one length"])
  return Bad(build, AtBuild(ValueError), ["match"])


@pytest.mark.parametrize("variant", ["n", "group"])
@pytest.mark.parametrize("case", list(SWAP_CASES))
def test_swap_variables_bad_input(any_mode, case, variant):
  p = Pairs(any_mode, variant=variant)
  bad = SWAP_CASES[case](p)
  with expect_error(_resolve(bad.error, any_mode), *bad.fragments):
    any_mode.run(bad.build)
  p.assert_holds(INITIAL, VALUE)  # Nothing swapped.
  if bad.after is not None:
    bad.after()
  p.valid_swap()


# --------------------------------------------------------------------------------------------
# AllFinite: the values it reads are unchanged, and later valid checks answer right.
# --------------------------------------------------------------------------------------------


def _all_finite_cases(mode):
  good = mode.variable(VALUE.astype(np.float32), "af_good")
  uninit = uninitialized_variable(mode, "af_uninit")
  deleted = deleted_variable(mode, "af_deleted")
  int_variable = mode.variable(np.array([1, 2, 3], np.int32), "af_int")
  af = library.all_finite
  return good, {
      "uninitialized-variable": Bad(lambda: af([good.handle, uninit.handle]),
                                    tf.errors.FailedPreconditionError,
                                    ["variable 'af_uninit", "uninitialized"]),
      "deleted-variable": Bad(lambda: af([good.handle, _handle(deleted)]), DELETED_ERRORS,
                              ["variable 'af_deleted", "does not exist"]),
      "not-a-variable": Bad(lambda: af([good.handle, not_a_variable("af_mutex")]),
                            tf.errors.FailedPreconditionError, ["'af_mutex", "wrong type"]),
      "int32-variable": Bad(lambda: af([good.handle, int_variable.handle]),
                            tf.errors.InvalidArgumentError,
                            ["variable 'af_int", "int32", "expected a float dtype"],
                            _unchanged(mode, int_variable, [1, 2, 3])),
      "int32-tensor": Bad(lambda: af([good.handle, tf.constant([1, 2])]), AtBuild(TypeError),
                          ["int32"]),
      "bool-tensor": Bad(lambda: af([tf.constant([True])]), AtBuild(TypeError), ["bool"]),
      "empty-list": Bad(lambda: af([]), AtBuild(ValueError), ["minimum"]),
  }


ALL_FINITE_CASES = ["uninitialized-variable", "deleted-variable", "not-a-variable",
                    "int32-variable", "int32-tensor", "bool-tensor", "empty-list"]


@pytest.mark.parametrize("case", ALL_FINITE_CASES)
def test_all_finite_bad_input(any_mode, case):
  good, cases = _all_finite_cases(any_mode)
  bad = cases[case]
  with expect_error(_resolve(bad.error, any_mode), *bad.fragments):
    any_mode.run(bad.build)
  np.testing.assert_array_equal(any_mode.read(good), VALUE.astype(np.float32))
  if bad.after is not None:
    bad.after()
  assert any_mode.run(lambda: library.all_finite([good.handle, tf.constant([1.0, 2.0])]))
  assert not any_mode.run(lambda: library.all_finite([good.handle, tf.constant([np.inf])]))


def test_all_finite_checks_every_input_even_after_a_non_finite_one(any_mode):
  deleted = deleted_variable(any_mode, "af_late_deleted")
  with expect_error(DELETED_ERRORS, "variable 'af_late_deleted", "does not exist"):
    any_mode.run(lambda: library.all_finite([tf.constant([np.nan]), _handle(deleted)]))


# --------------------------------------------------------------------------------------------
# SWAMovingAverage: constructor arguments, average_dtype, swap_weights, and apply() over lists
# with one bad element among good ones (grouped=True: nothing is updated).
# --------------------------------------------------------------------------------------------

CONSTRUCTOR_CASES = [
    pytest.param(dict(average_dtype=tf.int32), swa_ops.DtypeError,
                 ["average_dtype", "int32"], id="average_dtype-int32"),
    pytest.param(dict(average_dtype="floaty"), TypeError, ["floaty"], id="average_dtype-bogus"),
    pytest.param(dict(start=-1), swa_ops.ArgumentError, ["start", "-1"], id="start-negative"),
    pytest.param(dict(start=1.5), swa_ops.ArgumentError, ["start", "1.5"], id="start-float"),
    pytest.param(dict(period=0), swa_ops.ArgumentError, ["period", "0"], id="period-0"),
    pytest.param(dict(zero_debias=True, start=2), swa_ops.ArgumentError, ["zero_debias"],
                 id="zero_debias-with-start"),
    pytest.param(dict(num_updates="7"), swa_ops.DtypeError, ["num_updates", "'7'"],
                 id="num_updates-string"),
    pytest.param(dict(num_updates=None), swa_ops.DtypeError, ["num_updates", "None"],
                 id="num_updates-None"),
    pytest.param(dict(num_updates=np.bool_(True)), swa_ops.DtypeError, ["num_updates"],
                 id="num_updates-bool"),
    pytest.param(dict(num_updates=1 + 2j), swa_ops.DtypeError, ["num_updates"],
                 id="num_updates-complex"),
]


@pytest.mark.parametrize("kwargs,error,fragments", CONSTRUCTOR_CASES)
def test_averager_constructor_bad_argument(kwargs, error, fragments):
  with expect_error(error, *fragments):
    swa_ops.SWAMovingAverage(**dict(dict(num_updates=0), **kwargs))
  var = tf.Variable(VALUE.astype(np.float32), name="ctor_var")
  swa = swa_ops.SWAMovingAverage(tf.constant(1, tf.int64))  # A valid one works.
  swa.apply([var])
  np.testing.assert_array_equal(swa.average(var).numpy(), VALUE.astype(np.float32))


def _good_variables(mode, dtype, prefix, count=4):
  return [mode.variable((VALUE + i).astype(dtype), "%s_good%d" % (prefix, i))
          for i in range(count)]


def _apply(mode, swa, var_list):
  """Runs swa.apply(var_list) in `mode`, initialising the shadows it creates (graph mode)."""
  return mode.run(lambda: swa.apply(var_list))


def _check_apply_recovers(mode, swa, good, dtype):
  """Nothing was created for a rejected apply(); a valid one creates and updates the shadows
  (n = 0: each becomes its variable's value)."""
  assert all(swa.average(v) is None for v in good)
  _apply(mode, swa, good)
  for i, v in enumerate(good):
    np.testing.assert_array_equal(mode.read(swa.average(v)), (VALUE + i).astype(dtype))


@pytest.mark.parametrize("average_dtype,good_dtype,bad_dtype", [
    pytest.param(tf.float16, np.float16, np.float32, id="narrower-than-the-variable"),
    pytest.param(tf.bfloat16, tf.bfloat16.as_numpy_dtype, np.float16,
                 id="bfloat16-average-of-float16"),
    pytest.param(tf.float32, np.float32, np.float64, id="float32-average-of-float64"),
])
def test_apply_average_dtype_that_cannot_hold_a_variable(any_mode, average_dtype, good_dtype,
                                                         bad_dtype):
  """average_dtype must be the variable's dtype or a wider float: one variable it cannot hold,
  among good ones, is a DtypeError naming it, and no shadow is created."""
  good = _good_variables(any_mode, good_dtype, "adt")
  bad = any_mode.variable(VALUE.astype(bad_dtype), "adt_bad")
  swa = swa_ops.SWAMovingAverage(0, average_dtype=average_dtype)
  with expect_error(swa_ops.DtypeError, "adt_bad", tf.as_dtype(bad_dtype).name,
                    "average_dtype " + average_dtype.name):
    _apply(any_mode, swa, good[:2] + [bad] + good[2:])
  assert swa.average(bad) is None
  _check_apply_recovers(any_mode, swa, good, good_dtype)


def test_apply_average_dtype_with_a_reference_variable():
  with graph_session() as (_, sess):
    mode = GraphMode(sess)
    good = [mode.variable(np.ones(3, np.float16), "ref_adt_good%d" % i) for i in range(2)]
    bad = mode.variable(np.ones(3, np.float16), "ref_adt_bad", use_resource=False)
    swa = swa_ops.SWAMovingAverage(0, average_dtype=tf.float32)
    with expect_error(swa_ops.ArgumentError, "ref_adt_bad", "reference variable",
                      "average_dtype"):
      swa.apply(good + [bad])
    assert swa.average(bad) is None
    mode.run(lambda: swa.apply(good))
    np.testing.assert_array_equal(sess.run(swa.average(good[0])), np.ones(3, np.float32))


def test_swap_weights_with_a_wider_average_swaps_nothing(any_mode):
  """swap_weights over float32 variables and one float16 variable with a float32 average:
  DtypeError naming the float16 one, and no variable or average exchanged."""
  good = _good_variables(any_mode, np.float32, "swd")
  narrow = any_mode.variable(VALUE.astype(np.float16), "swd_narrow")
  swa = swa_ops.SWAMovingAverage(0, average_dtype=tf.float32)
  var_list = good[:2] + [narrow] + good[2:]
  _apply(any_mode, swa, var_list)
  for v in var_list:  # Averages that differ from the variables, to see any swap.
    any_mode.run(lambda v=v: swa.average(v).assign(tf.fill([3], -9.0)))
  with expect_error(swa_ops.DtypeError, "swd_narrow", "float16", "float32", "average_dtype"):
    any_mode.run(lambda: swa.swap_weights(var_list))
  for i, v in enumerate(good):
    np.testing.assert_array_equal(any_mode.read(v), (VALUE + i).astype(np.float32))
  for v in var_list:
    np.testing.assert_array_equal(any_mode.read(swa.average(v)), np.full(3, -9.0))
  any_mode.run(lambda: swa.swap_weights(good))  # The same-dtype ones swap.
  for i, v in enumerate(good):
    np.testing.assert_array_equal(any_mode.read(v), np.full(3, -9.0))
    np.testing.assert_array_equal(any_mode.read(swa.average(v)), (VALUE + i).astype(np.float32))


def _bad_element(mode, case):
  """A bad element for apply()'s var_list, the error and the message fragments."""
  if case == "int32-variable":
    return (mode.variable(np.array([1, 2, 3], np.int32), "apl_int"), swa_ops.DtypeError,
            ["apl_int", "int32"])
  if case == "None":
    return None, swa_ops.DtypeError, ["None", "neither a Variable nor a Tensor"]
  if case == "string":
    return "apl_str", swa_ops.DtypeError, ["'apl_str'", "neither a Variable nor a Tensor"]
  if case == "numpy-array":
    return np.ones(3, np.float32), swa_ops.DtypeError, ["array", "neither a Variable"]
  if case == "int32-tensor":
    return (lambda: tf.constant([1, 2, 3], name="apl_int_tensor"), swa_ops.DtypeError,
            ["int32"])
  if case == "eager-tensor":
    return tf.constant(VALUE), swa_ops.ArgumentError, ["eager", "cannot be averaged"]
  raise AssertionError(case)


@pytest.mark.parametrize("case", ["int32-variable", "None", "string", "numpy-array",
                                  "int32-tensor", "eager-tensor", "same-variable-twice"])
def test_apply_with_one_bad_element_creates_and_updates_nothing(any_mode, case):
  if case == "eager-tensor" and any_mode.name != "eager":
    pytest.skip("a Tensor in graph code or tf.function can be averaged")
  if case == "int32-tensor" and any_mode.name == "eager":
    pytest.skip("eager Tensors are refused before their dtype is looked at (eager-tensor)")
  good = _good_variables(any_mode, np.float32, "apl")
  swa = swa_ops.SWAMovingAverage(0, grouped=True)
  if case == "same-variable-twice":
    bad, error, fragments = good[1], swa_ops.ArgumentError, ["apl_good1", "appears twice"]
  else:
    bad, error, fragments = _bad_element(any_mode, case)
  with expect_error(error, *fragments):
    any_mode.run(lambda: swa.apply(good[:2] + [bad() if callable(bad) else bad] + good[2:]))
  _check_apply_recovers(any_mode, swa, good, np.float32)


@pytest.mark.parametrize("case", ["shape-changed", "num_updates-nan"])
def test_grouped_apply_failing_at_run_time_updates_nothing(any_mode, case):
  """The shadows exist; one variable's shape changed since its shadow was created (a variable
  with shape=None), or the step went bad: the grouped op updates no shadow; after the cause is
  gone, a later apply() updates them all."""
  if case == "shape-changed" and any_mode.name == "graph":
    pytest.skip("graph-mode variables keep their shape")
  step = any_mode.variable(np.float64(0), "rt_step")
  good = _good_variables(any_mode, np.float32, "rt")
  odd = (tf.Variable(np.full(3, 7.0, np.float32), name="rt_odd", shape=tf.TensorShape(None))
         if case == "shape-changed" else any_mode.variable(np.full(3, 7.0, np.float32), "rt_odd"))
  var_list = good[:2] + [odd] + good[2:]
  swa = swa_ops.SWAMovingAverage(step, grouped=True)
  if any_mode.name == "graph":
    update = swa.apply(var_list)
    any_mode.sess.run([swa.average(v).initializer for v in var_list])
    apply = lambda: update  # noqa: E731
  else:
    apply = lambda: swa.apply(var_list)  # noqa: E731
    if any_mode.name == "function":
      function = tf.function(lambda: (swa.apply(var_list), None)[1], autograph=False)
      apply = lambda: function()  # noqa: E731
      any_mode = EagerMode()  # The tf.function is built once, here.
  any_mode.run(apply)  # n = 0: every shadow becomes its variable's value.
  oracles = [Oracle(any_mode.read(v)) for v in var_list]
  any_mode.run(lambda: step.assign(1.0))
  for i, v in enumerate(good):
    any_mode.run(lambda v=v, i=i: v.assign((VALUE2 + i).astype(np.float32)))
  if case == "shape-changed":
    odd.assign(np.ones(4, np.float32))
    error, fragments = tf.errors.InvalidArgumentError, ["'rt_odd/SWAMovingAverage", "shape [3]",
                                                        "shape [4]"]
  else:
    any_mode.run(lambda: step.assign(np.nan))
    error, fragments = tf.errors.InvalidArgumentError, [STEP, "nan"]
  with expect_error(error, *fragments):
    any_mode.run(apply)
  for v, oracle in zip(var_list, oracles):
    np.testing.assert_array_equal(any_mode.read(swa.average(v)), oracle.average)
  if case == "shape-changed":
    odd.assign(np.full(3, 7.0, np.float32))
  any_mode.run(lambda: step.assign(1.0))
  any_mode.run(apply)
  for v, oracle in zip(var_list, oracles):
    oracle.swa(any_mode.read(v), 1)
    np.testing.assert_allclose(any_mode.read(swa.average(v)), oracle.average, rtol=1e-6)


@pytest.mark.parametrize("case", ["uninitialized", "deleted"])
def test_grouped_apply_with_a_missing_variable_updates_nothing_graph(case):
  """TF1 graph, resource variables, grouped=True: one variable of the group uninitialised or
  deleted when the update runs: FailedPreconditionError naming it, every shadow of the group
  unchanged (one op checks them all first), and the update works once it is back."""
  with graph_session() as (_, sess):
    good = [tf.compat.v1.Variable((VALUE + i).astype(np.float32), name="gm_good%d" % i,
                                  use_resource=True) for i in range(4)]
    bad = tf.compat.v1.Variable(np.full(3, 7.0, np.float32), name="gm_bad", use_resource=True)
    var_list = good[:2] + [bad] + good[2:]
    swa = swa_ops.SWAMovingAverage(1, grouped=True)
    update = swa.apply(var_list)
    sess.run([v.initializer for v in good] + [swa.average(v).initializer for v in var_list])
    if case == "deleted":
      sess.run(bad.initializer)
      sess.run(tf.raw_ops.DestroyResourceOp(resource=bad.handle))
    shadows = [sess.run(swa.average(v)) for v in var_list]
    for v in good:  # Values that would move the shadows.
      sess.run(v.assign(np.full(3, 100.0, np.float32)))
    with expect_error(tf.errors.FailedPreconditionError, "'gm_bad'",
                      "uninitialized" if case == "uninitialized" else "does not exist"):
      sess.run(update)
    for v, shadow in zip(var_list, shadows):
      np.testing.assert_array_equal(sess.run(swa.average(v)), shadow)
    sess.run(bad.initializer)
    sess.run(update)
    for v, shadow in zip(var_list, shadows):
      np.testing.assert_allclose(sess.run(swa.average(v)), (shadow + sess.run(v)) / 2,
                                 rtol=1e-6)


# --------------------------------------------------------------------------------------------
# assign_moving_average and weighted_moving_average: the inputs not covered above.
# --------------------------------------------------------------------------------------------


def _ama_case(mode, case):
  """(variable, value, decay, error, fragments) of an assign_moving_average case."""
  avg = mode.variable(INITIAL.astype(np.float32), "ama_avg")
  if case == "value-None":
    return avg, None, 0.5, swa_ops.ArgumentError, ["ama_avg", "cannot be converted"]
  if case == "value-int32-tensor":
    return (avg, lambda: tf.constant([1, 2, 3]), 0.5, swa_ops.DtypeError,
            ["ama_avg", "int32"])
  if case == "value-float64-variable":
    value = mode.variable(VALUE.astype(np.float64), "ama_value64")
    return avg, value, 0.5, swa_ops.DtypeError, ["ama_avg", "ama_value64", "float64"]
  if case == "value-uninitialized-variable":
    value = uninitialized_variable(mode, "ama_value_uninit")
    return (avg, value, 0.5, tf.errors.FailedPreconditionError,
            ["value variable 'ama_value_uninit", "uninitialized"])
  if case == "value-shape-variable":
    value = mode.variable(np.ones(2, np.float32), "ama_value2")
    return avg, value, 0.5, swa_ops.ShapeError, ["ama_avg", "ama_value2", "(2,)", "(3,)"]
  if case == "value-strings":
    return avg, ["a", "b", "c"], 0.5, swa_ops.DtypeError, ["ama_avg", "string"]
  if case == "decay-string":
    return (avg, VALUE, lambda: tf.constant("0.5"), swa_ops.DtypeError,
            ["decay", "real number", "string"])
  if case == "decay-None":
    return avg, VALUE, None, swa_ops.ArgumentError, ["decay", "cannot be converted"]
  if case == "decay-non-scalar":
    return (avg, VALUE, lambda: tf.constant([0.5, 0.5]), swa_ops.ArgumentError,
            ["decay", "scalar"])
  if case == "variable-uninitialized":
    uninit = uninitialized_variable(mode, "ama_uninit")
    return (uninit, VALUE, 0.5, tf.errors.FailedPreconditionError,
            ["average variable 'ama_uninit", "uninitialized"])
  if case == "variable-int32":
    var = mode.variable(np.array([1, 2, 3], np.int32), "ama_int")
    return var, [1, 2, 3], 0.5, swa_ops.DtypeError, ["ama_int", "int32"]
  raise AssertionError(case)


AMA_CASES = ["value-None", "value-int32-tensor", "value-float64-variable",
             "value-uninitialized-variable", "value-shape-variable", "value-strings",
             "decay-string", "decay-None", "decay-non-scalar",
             "variable-uninitialized", "variable-int32"]


@pytest.mark.parametrize("zero_debias", [False, True], ids=["ema", "debiased"])
@pytest.mark.parametrize("case", AMA_CASES)
def test_assign_moving_average_bad_input(any_mode, case, zero_debias):
  var, value, decay, error, fragments = _ama_case(any_mode, case)

  def build(value=value, decay=decay):
    value = value() if callable(value) else value
    value = tf.constant(value, tf.float32) if isinstance(value, np.ndarray) else value
    decay = decay() if callable(decay) else decay
    return swa_ops.assign_moving_average(var, value, decay, zero_debias=zero_debias)

  with expect_error(error, *fragments):
    any_mode.run(build)
  if case not in ("variable-uninitialized", "variable-int32"):
    np.testing.assert_array_equal(any_mode.read(var), INITIAL.astype(np.float32))
    oracle = Oracle(INITIAL, np.zeros(3), 0.0)
    any_mode.run(lambda: build(VALUE, 0.5))
    oracle.debiased(VALUE, 0.5) if zero_debias else oracle.ema(VALUE, 0.5)
    np.testing.assert_allclose(any_mode.read(var), oracle.average, rtol=1e-6)


@pytest.mark.parametrize("zero_debias", [False, True], ids=["ema", "debiased"])
def test_assign_moving_average_deleted_variable_graph(zero_debias):
  with graph_session() as (_, sess):
    mode = GraphMode(sess)
    var = mode.variable(INITIAL.astype(np.float32), "ama_deleted")
    update = swa_ops.assign_moving_average(var, tf.constant(VALUE, tf.float32), 0.5,
                                           zero_debias=zero_debias)
    sess.run(tf.compat.v1.global_variables_initializer())
    sess.run(tf.raw_ops.DestroyResourceOp(resource=var.handle))
    with expect_error(DELETED_ERRORS, "'ama_deleted'", "does not exist"):
      sess.run(update)
    sess.run(var.initializer)  # Back (at INITIAL): the same update works.
    oracle = Oracle(INITIAL, np.zeros(3), 0.0)
    sess.run(update)
    oracle.debiased(VALUE, 0.5) if zero_debias else oracle.ema(VALUE, 0.5)
    np.testing.assert_allclose(sess.run(var), oracle.average, rtol=1e-6)


def test_assign_moving_average_python_decay_1_with_zero_debias(any_mode):
  """decay 1.0 is in [0, 1] (a valid EMA decay) but zero-debiasing divides by 1 - decay**t."""
  avg = any_mode.variable(INITIAL.astype(np.float32), "ama_decay1")
  with expect_error(tf.errors.InvalidArgumentError, "decay < 1"):
    any_mode.run(lambda: swa_ops.assign_moving_average(avg, tf.constant(VALUE, tf.float32), 1.0))
  np.testing.assert_array_equal(any_mode.read(avg), INITIAL.astype(np.float32))
  any_mode.run(lambda: swa_ops.assign_moving_average(avg, tf.constant(VALUE, tf.float32), 0.5))
  oracle = Oracle(INITIAL, np.zeros(3), 0.0)
  oracle.debiased(VALUE, 0.5)
  np.testing.assert_allclose(any_mode.read(avg), oracle.average, rtol=1e-6)


WMA_CASES = [
    # (id, value, decay, weight, error, fragments); callables are called inside the update.
    ("value-int32", lambda: tf.constant([1, 2, 3]), 0.5, 1, swa_ops.DtypeError, ["int32"]),
    ("value-None", None, 0.5, 1.0, swa_ops.ArgumentError, ["value", "cannot be converted"]),
    ("value-bool", lambda: tf.constant([True]), 0.5, 1.0, swa_ops.DtypeError, ["bool"]),
    ("weight-int32", VALUE, 0.5, lambda: tf.constant(2), swa_ops.DtypeError,
     ["weight", "int32"]),
    ("weight-float64", VALUE, 0.5, lambda: tf.constant(2.0, tf.float64), swa_ops.DtypeError,
     ["weight", "float64"]),
    ("weight-string", VALUE, 0.5, "2", swa_ops.DtypeError, ["weight", "string"]),
    ("weight-None", VALUE, 0.5, None, swa_ops.ArgumentError, ["weight", "cannot be converted"]),
    ("weight-rank-2", VALUE, 0.5, np.ones((3, 3), np.float32), swa_ops.ShapeError,
     ["weight", "(3, 3)", "(3,)"]),
    ("weight-rank-1-for-a-scalar", np.float32(2.0), 0.5, np.ones((1,), np.float32),
     swa_ops.ShapeError, ["weight", "(1,)", "()"]),
    ("decay-1.5", VALUE, 1.5, 2.0, swa_ops.ArgumentError, ["decay", "[0, 1]"]),
    ("decay-nan", VALUE, float("nan"), 2.0, swa_ops.ArgumentError, ["decay", "[0, 1]"]),
    ("decay-non-scalar", VALUE, lambda: tf.constant([0.5, 0.5]), 2.0, swa_ops.ArgumentError,
     ["decay", "scalar"]),
    ("decay-string", VALUE, lambda: tf.constant("0.5"), 2.0, swa_ops.DtypeError,
     ["decay", "string"]),
    ("decay-tensor-1.5", VALUE, lambda: dynamic(np.float32(1.5)), 2.0,
     tf.errors.InvalidArgumentError, ["decay", "[0, 1]"]),
    ("decay-tensor--0.1", VALUE, lambda: dynamic(np.float64(-0.1)), 2.0,
     tf.errors.InvalidArgumentError, ["decay", "[0, 1]"]),
    ("decay-tensor-nan", VALUE, lambda: dynamic(np.float32(np.nan)), 2.0,
     tf.errors.InvalidArgumentError, ["decay", "[0, 1]"]),
]


@pytest.mark.parametrize("case,value,decay,weight,error,fragments",
                         [pytest.param(*c, id=c[0]) for c in WMA_CASES])
def test_weighted_moving_average_bad_input(any_mode, case, value, decay, weight, error,
                                           fragments):
  name = "wma_%s_%s" % (any_mode.name, case)
  n_globals = len(tf.compat.v1.global_variables())

  def build(value=value, decay=decay, weight=weight):
    args = [x() if callable(x) else x for x in (value, decay, weight)]
    args[0] = tf.constant(args[0], tf.float32) if isinstance(args[0], np.ndarray) else args[0]
    return swa_ops.weighted_moving_average(*args, name=name)

  with expect_error(error, *fragments):
    any_mode.run(build)
  state = [v for v in (tf.compat.v1.global_variables() if any_mode.name == "graph" else
                       [v for key, pair in moving_averages._WEIGHTED_STATE.items()
                        if key[0] == name for v in pair])]
  if error is tf.errors.InvalidArgumentError:  # Rejected by the op: both averages unchanged.
    assert len(state) - (n_globals if any_mode.name == "graph" else 0) == 2
    for v in state[-2:]:
      np.testing.assert_array_equal(any_mode.read(v), np.zeros(v.shape))
  else:  # Rejected before anything was built: no averages created.
    assert len(state) == (n_globals if any_mode.name == "graph" else 0)
  # A later valid call works: from zero averages, one update gives the value back. (Another
  # name: graph mode creates a new pair of averages per call.)
  value = VALUE.astype(np.float32)
  got = any_mode.run(lambda: swa_ops.weighted_moving_average(
      tf.constant(value), 0.5, tf.constant(2.0), name=name + "_ok"))
  np.testing.assert_allclose(got, value, rtol=1e-6)


# --------------------------------------------------------------------------------------------
# swa_ops.keras: SWA constructor arguments and update_bn data.
# --------------------------------------------------------------------------------------------

KERAS_SWA_CASES = [
    (dict(start=-1), swa_ops.ArgumentError, ["start", ">= 0", "-1"]),
    (dict(start=1.5), TypeError, ["start", "int", "1.5"]),
    (dict(period=0), swa_ops.ArgumentError, ["period", ">= 1"]),
    (dict(unit="batch"), swa_ops.ArgumentError, ["unit", "'batch'"]),
    (dict(assign_at_end="yes"), TypeError, ["assign_at_end", "bool"]),
    (dict(skip_nonfinite="x"), TypeError, ["skip_nonfinite", "bool"]),
    (dict(verbose=2), swa_ops.ArgumentError, ["verbose", "2"]),
    (dict(name=""), TypeError, ["name", "non-empty"]),
    (dict(batch_size=0), swa_ops.ArgumentError, ["batch_size", ">= 1"]),
    (dict(batch_size="32"), TypeError, ["batch_size", "'32'"]),
    (dict(bn_refresh_data=iter([np.ones((2, 4))])), TypeError,
     ["bn_refresh_data", "one-shot iterator"]),
    (dict(bn_refresh_data="data.npy"), TypeError, ["bn_refresh_data", "str"]),
    (dict(swa_validation_data=[np.ones((2, 4)), np.ones((2, 1))]), TypeError,
     ["swa_validation_data", "list"]),
    (dict(swa_validation_data=(np.ones((2, 4)),)), TypeError, ["swa_validation_data", "tuple"]),
    (dict(start_epoch=3, start=1), swa_ops.ArgumentError, ["start_epoch", "alone"]),
    (dict(start_epoch=1, start_step=1), swa_ops.ArgumentError, ["alone"]),
    (dict(average_dtype=tf.int32), swa_ops.DtypeError, ["average_dtype", "int32"]),
]


@pytest.mark.parametrize("kwargs,error,fragments", [
    pytest.param(*case, id="-".join("%s=%s" % (k, type(v).__name__ if k.endswith("data") else v)
                                    for k, v in case[0].items()))
    for case in KERAS_SWA_CASES])
def test_keras_swa_constructor_bad_argument(kwargs, error, fragments):
  with expect_error(error, *fragments):
    swa_ops.keras.SWA(**kwargs)
  swa = swa_ops.keras.SWA(start=1, period=2)  # A valid one still builds.
  assert (swa.start, swa.period, swa.num_averaged) == (1, 2, 0)


@pytest.fixture(scope="module")
def bn_model():
  import keras  # pylint: disable=import-outside-toplevel
  keras.utils.set_random_seed(0)
  model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3),
                            keras.layers.BatchNormalization()])
  return model, model.layers[-1]


def _bn_x():
  return np.random.default_rng(1).normal(size=(16, 4)).astype(np.float32)


UPDATE_BN_CASES = [
    ("None", lambda: None, {}, swa_ops.ArgumentError, ["update_bn", "data is None"]),
    ("string", lambda: "data.npy", {}, TypeError, ["update_bn", "data", "str"]),
    ("number", lambda: 3, {}, TypeError, ["update_bn", "data", "int"]),
    ("tuple-of-lists", lambda: ([1.0, 2.0, 3.0, 4.0],), {}, TypeError, ["update_bn", "tuple"]),
    ("empty-dataset", lambda: tf.data.Dataset.from_tensor_slices(_bn_x()).take(0).batch(4), {},
     swa_ops.ArgumentError, ["update_bn", "no batches"]),
    ("empty-list", lambda: [], {}, swa_ops.ArgumentError, ["update_bn", "no batches"]),
    ("empty-array", lambda: np.zeros((0, 4), np.float32), {}, swa_ops.ArgumentError,
     ["update_bn", "no batches"]),
    ("infinite-dataset", lambda: tf.data.Dataset.from_tensor_slices(_bn_x()).batch(4).repeat(),
     {}, swa_ops.ArgumentError, ["infinite"]),
    ("wrong-feature-count", lambda: np.ones((8, 5), np.float32), {}, ValueError,
     ["expected axis -1", "shape (8, 5)"]),
    ("wrong-input-structure", lambda: {"zzz": _bn_x()}, {}, ValueError, ["structure"]),
    ("batch_size-0", _bn_x, dict(batch_size=0), swa_ops.ArgumentError, ["batch_size", ">= 1"]),
    ("batch_size-string", _bn_x, dict(batch_size="8"), TypeError, ["batch_size", "'8'"]),
]


@pytest.mark.parametrize("run_eagerly", [False, True], ids=["function", "eager"])
@pytest.mark.parametrize("case,data,kwargs,error,fragments",
                         [pytest.param(*c, id=c[0]) for c in UPDATE_BN_CASES])
def test_keras_update_bn_bad_data(bn_model, run_eagerly, case, data, kwargs, error, fragments):
  """After a failure every weight of the model (BatchNormalization statistics included) and
  the layer's momentum are unchanged; a later valid pass sets the statistics to the mean of
  the batch statistics."""
  model, bn = bn_model
  before = [w.numpy().copy() for w in model.weights]
  momentum = bn.momentum
  with expect_error(error, *fragments):
    swa_ops.keras.update_bn(model, data(), run_eagerly=run_eagerly, **kwargs)
  for w, value in zip(model.weights, before):
    np.testing.assert_array_equal(w.numpy(), value)
  assert bn.momentum == momentum
  x = _bn_x()
  assert swa_ops.keras.update_bn(model, x, batch_size=8, run_eagerly=run_eagerly) == 2
  kernel, bias = (w.numpy().astype(np.float64) for w in model.layers[0].weights)
  batches = [x[:8].astype(np.float64) @ kernel + bias, x[8:].astype(np.float64) @ kernel + bias]
  np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean([b.mean(0) for b in batches], 0),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(bn.moving_variance.numpy(),
                             np.mean([b.var(0) for b in batches], 0), rtol=1e-4, atol=1e-6)
  assert bn.momentum == momentum


# --------------------------------------------------------------------------------------------
# Needing a process of their own: variables on two devices, and an empty handle Tensor.
# --------------------------------------------------------------------------------------------

_TWO_DEVICES_SCRIPT = r"""
import json
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import swa_ops
from swa_ops import _ops
L = _ops.library
results = {}
with tf.device("/cpu:0"):
  averages = [tf.Variable([float(i)] * 3, name="avg%d" % i) for i in range(5)]
  biased = [tf.Variable([0.0] * 3, name="biased%d" % i) for i in range(5)]
  steps = [tf.Variable(0.0, name="step%d" % i) for i in range(5)]
  values = [tf.Variable([10.0 + i] * 3, name="val%d" % i) for i in range(5)]
with tf.device("/cpu:1"):
  far = tf.Variable([5.0] * 3, name="far")
  far_step = tf.Variable(0.0, name="far_step")
H = lambda vs: [v.handle for v in vs]
R = lambda vs: [v.read_value() for v in vs]
def put(vs, v):
  vs = list(vs); vs[2] = v; return vs
def state():
  return [v.numpy().tolist() for v in averages + biased + steps + values + [far, far_step]]
before = state()
one, half, no = tf.constant(1), tf.constant(0.5), []
cases = {
    "SWAAssignN-average": lambda: L.swa_assign_n(H(put(averages, far)), R(values), one,
                                                 apply_if=no),
    "SWAAssignNVariable-value": lambda: L.swa_assign_n_variable(
        H(averages), H(put(values, far)), one, apply_if=no, T=tf.float32),
    "EMAAssignN-average": lambda: L.ema_assign_n(H(put(averages, far)), R(values), half,
                                                 apply_if=no),
    "EMAAssignNVariable-value": lambda: L.ema_assign_n_variable(
        H(averages), H(put(values, far)), half, apply_if=no, T=tf.float32),
    "DebiasedEMAN-biased": lambda: L.debiased_eman(
        H(averages), H(put(biased, far)), H(steps), R(values), half, apply_if=no),
    "DebiasedEMANVariable-local_step": lambda: L.debiased_eman_variable(
        H(averages), H(biased), H(put(steps, far_step)), H(values), half, apply_if=no,
        T=tf.float32),
    "SwapVariablesN-second": lambda: L.swap_variables_n(H(averages), H(put(values, far)),
                                                        T=tf.float32),
    "AllFinite-values": lambda: L.all_finite(H(put(values, far))),
}
for name, build in cases.items():
  for mode in ("eager", "function"):
    try:
      with tf.device("/cpu:0"):
        if mode == "eager":
          build()
        else:
          tf.function(lambda: (build(), None)[1], autograph=False)()
      results[name + "-" + mode] = "no error"
    except tf.errors.InvalidArgumentError as error:
      results[name + "-" + mode] = str(error)
    except Exception as error:  # pylint: disable=broad-except
      results[name + "-" + mode] = "%s: %s" % (type(error).__name__, error)
results["unchanged"] = state() == before
# Later valid updates work; the API (one op per device, and one AllFinite per device with
# skip_nonfinite) averages variables on both devices.
with tf.device("/cpu:0"):
  L.swa_assign_n_variable(H(averages), H(values), tf.constant(1), apply_if=[], T=tf.float32)
results["valid_update"] = [v.numpy().tolist() for v in averages]
for skip in (False, True):
  for traced in (False, True):
    swa = swa_ops.SWAMovingAverage(tf.constant(0), skip_nonfinite=skip)
    apply = lambda: swa.apply([values[0], far])
    try:
      (tf.function(lambda: (apply(), None)[1], autograph=False) if traced else apply)()
      results["api-%s-%s" % (skip, traced)] = [swa.average(values[0]).numpy().tolist(),
                                                swa.average(far).numpy().tolist(),
                                                swa.average(far).device]
    except Exception as error:  # pylint: disable=broad-except
      results["api-%s-%s" % (skip, traced)] = "%s: %s" % (type(error).__name__, error)
print("RESULTS " + json.dumps(results))
"""


def _run_script(script):
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                        timeout=180, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))


def test_grouped_ops_swap_and_all_finite_with_a_variable_on_another_device():
  """A member on CPU:1 in an op placed on CPU:0 (two logical CPUs, so in a subprocess): the
  placer refuses it (InvalidArgumentError naming the op's input and both devices) before the
  kernel runs, so nothing changes; later valid updates work; and the API, given variables on
  both devices, updates each device's with its own ops (skip_nonfinite: one AllFinite per
  device)."""
  import json  # pylint: disable=import-outside-toplevel
  process = _run_script(_TWO_DEVICES_SCRIPT)
  lines = [line for line in process.stdout.splitlines() if line.startswith("RESULTS ")]
  assert process.returncode == 0 and lines, process.stdout + process.stderr
  results = json.loads(lines[0][len("RESULTS "):])
  inputs = {"SWAAssignN-average": "averages_2", "SWAAssignNVariable-value": "values_2",
            "EMAAssignN-average": "averages_2", "EMAAssignNVariable-value": "values_2",
            "DebiasedEMAN-biased": "biaseds_2",
            "DebiasedEMANVariable-local_step": "steps_2",  # Eager: 'local__steps_2'.
            "SwapVariablesN-second": "second_2", "AllFinite-values": "values_2"}
  for case, argument in inputs.items():
    for mode in ("eager", "function"):
      message = results[case + "-" + mode]
      assert argument in message and "CPU:1" in message and "CPU:0" in message, (case, message)
  assert results["unchanged"] is True
  assert results["valid_update"] == [[(i + 10.0 + i) / 2] * 3 for i in range(5)]
  for skip in (False, True):
    for traced in (False, True):
      got = results["api-%s-%s" % (skip, traced)]
      assert got[:2] == [[10.0] * 3, [5.0] * 3] and "CPU:1" in got[2], (skip, traced, got)


_EMPTY_HANDLE_SCRIPT = r"""
import numpy as np
import tensorflow as tf
import swa_ops
from swa_ops import _ops
average = tf.Variable([1.0, 2.0], name="average")

@tf.function(autograph=False)
def update(indices):
  empty = tf.gather(tf.stack([average.handle]), indices)  # A resource Tensor of shape [0].
  _ops.library.swa_assign_n([average.handle, empty], [tf.constant([5.0, 5.0])] * 2,
                            tf.constant(1), apply_if=[])

try:
  update(tf.constant([], tf.int32))
  print("NO ERROR")
except tf.errors.InvalidArgumentError as error:
  print("ERROR", "handle" in str(error), average.numpy().tolist())
"""


def test_an_empty_handle_tensor_is_an_error_not_a_crash():
  process = _run_script(_EMPTY_HANDLE_SCRIPT)
  assert process.returncode == 0, "exit status %d: %s" % (process.returncode,
                                                         process.stderr[-2000:])
  assert "ERROR True [1.0, 2.0]" in process.stdout, process.stdout
