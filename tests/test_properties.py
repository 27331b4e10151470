"""Property-based tests (Hypothesis): random shapes, dtypes, step sequences and values against
the float64 oracle, and the grouped op against the per-variable ops."""
import numpy as np
import tensorflow as tf
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import swa_ops
from conftest import DTYPES, rounded

EPS = {tf.float16: 2.0**-11, tf.bfloat16: 2.0**-8, tf.float32: 2.0**-24, tf.float64: 2.0**-53}

shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)
dtypes = st.sampled_from(DTYPES)
steps = st.lists(st.integers(min_value=0, max_value=2**40), min_size=1, max_size=12)


def oracle(history, step_sequence):
  """The SPEC's update from the shadow's creation value (the first snapshot)."""
  average = history[0].copy()
  for value, n in zip(history, step_sequence):
    average = average - (average - value) / (n + 1.0)
  return average


@settings(max_examples=60, deadline=None)
@given(shape=shapes, dtype=dtypes, step_sequence=steps, seed=st.integers(0, 2**31 - 1))
def test_swa_matches_the_oracle(shape, dtype, step_sequence, seed):
  rng = np.random.default_rng(seed)
  history = [rounded(rng.uniform(-10, 10, size=shape), dtype) for _ in step_sequence]
  var = tf.Variable(tf.cast(history[0], dtype))
  step = tf.Variable(0, dtype=tf.int64)
  swa = swa_ops.SWAMovingAverage(step)
  for value, n in zip(history, step_sequence):
    var.assign(tf.cast(value, dtype))
    step.assign(n)
    swa.apply([var])
  got = tf.cast(swa.average(var), tf.float64).numpy()
  # Each update rounds once (at most half an ulp of |values| <= 10) and shrinks older errors.
  atol = 10 * EPS[dtype] * (len(step_sequence) + 1)
  np.testing.assert_allclose(got, oracle(history, step_sequence), rtol=0, atol=atol)


@settings(max_examples=30, deadline=None)
@given(specs=st.lists(st.tuples(shapes, dtypes), min_size=1, max_size=6),
       step_sequence=steps, seed=st.integers(0, 2**31 - 1))
def test_grouped_equals_per_variable_bit_for_bit(specs, step_sequence, seed):
  rng = np.random.default_rng(seed)
  histories = [[rounded(rng.normal(size=shape), dtype) for _ in step_sequence]
               for shape, dtype in specs]
  results = []
  for grouped in (True, False):
    variables = [tf.Variable(tf.cast(h[0], dtype)) for h, (_, dtype) in zip(histories, specs)]
    step = tf.Variable(0, dtype=tf.int64)
    swa = swa_ops.SWAMovingAverage(step, grouped=grouped)
    for i, n in enumerate(step_sequence):
      for var, h, (_, dtype) in zip(variables, histories, specs):
        var.assign(tf.cast(h[i], dtype))
      step.assign(n)
      swa.apply(variables)
    results.append([np.atleast_1d(swa.average(v).numpy()).view(np.uint8) for v in variables])
  for grouped, single in zip(*results):
    np.testing.assert_array_equal(grouped, single)


@settings(max_examples=40, deadline=None)
@given(shape=shapes, dtype=dtypes, decays=st.lists(st.floats(0.0, 0.999), min_size=1, max_size=8),
       seed=st.integers(0, 2**31 - 1))
def test_debiased_ema_matches_the_oracle(shape, dtype, decays, seed):
  rng = np.random.default_rng(seed)
  values = [rounded(rng.uniform(-10, 10, size=shape), dtype) for _ in decays]
  average = tf.Variable(tf.zeros(shape, dtype))
  for value, decay in zip(values, decays):
    swa_ops.assign_moving_average(average, tf.cast(value, dtype), decay)
  biased = np.zeros(shape)
  for t, (value, decay) in enumerate(zip(values, decays), start=1):
    biased = biased - (biased - value) * (1.0 - decay)
    expected = biased / (1.0 - decay**t)
  got = tf.cast(average, tf.float64).numpy()
  # The division by 1 - decay**t (>= 0.001 here) magnifies the biased average's rounding.
  scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
  atol = 20 * EPS[dtype] * len(decays) * scale / (1.0 - max(decays) ** len(decays))
  np.testing.assert_allclose(got, expected, rtol=0, atol=atol)
