"""The ops' GPU kernels through TensorFlow: results bit-identical to the CPU kernels (float32,
float64, and the same rounding for float16/bfloat16). Skipped where TensorFlow sees no GPU (CI,
and any machine with tensorflow-cpu)."""
import numpy as np
import pytest
import tensorflow as tf

import swa_ops

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not tf.config.list_physical_devices("GPU"),
                       reason="TensorFlow sees no GPU (tensorflow-cpu, or no CUDA device)"),
]

DTYPE_PAIRS = [(tf.float32, None), (tf.float64, None), (tf.float16, None), (tf.bfloat16, None),
               (tf.bfloat16, tf.float32), (tf.float16, tf.float32), (tf.float32, tf.float64)]
SHAPES = [(), (0,), (3,), (4097,), (64, 33), (1 << 20,)]


def run_on(device, dtype, average_dtype, zero_debias, snapshots, grouped):
  """Averages variables of SHAPES on `device` over the snapshots; returns the averages."""
  with tf.device(device):
    step = tf.Variable(0, dtype=tf.int64)
    variables = [tf.Variable(tf.cast(s[0], dtype)) for s in snapshots]
    swa = swa_ops.SWAMovingAverage(step, average_dtype=average_dtype, grouped=grouped)

  @tf.function
  def apply():
    with tf.device(device):
      if zero_debias:
        swa_ops.assign_moving_average(variables[0], variables[-1], 0.9)
      swa.apply(variables)

  for k in range(len(snapshots[0])):
    for var, snaps in zip(variables, snapshots):
      var.assign(tf.cast(snaps[k], dtype))
    step.assign(k)
    apply()
  return [swa.average(var).numpy() for var in variables] + [variables[0].numpy()]


@pytest.mark.parametrize("dtype,average_dtype", DTYPE_PAIRS, ids=str)
@pytest.mark.parametrize("grouped", [True, False], ids=["grouped", "per_variable"])
def test_gpu_results_equal_cpu_results_bit_for_bit(dtype, average_dtype, grouped):
  rng = np.random.default_rng(11)
  snapshots = [[rng.normal(size=shape) for _ in range(5)] for shape in SHAPES]
  snapshots[-1] = [rng.normal(size=SHAPES[0]) for _ in range(5)]  # The debiased op's value.
  cpu = run_on("/CPU:0", dtype, average_dtype, True, snapshots, grouped)
  gpu = run_on("/GPU:0", dtype, average_dtype, True, snapshots, grouped)
  for a, b in zip(cpu, gpu):
    np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))


def test_swap_on_gpu_is_bit_exact():
  with tf.device("/GPU:0"):
    var = tf.Variable([1e-30, 1e30, -3.5], dtype=tf.float32)
    swa = swa_ops.SWAMovingAverage(0)
    swa.apply([var])
    var.assign([2.0, -1e30, 7.0])
  before = (var.numpy().copy(), swa.average(var).numpy().copy())
  swa.swap_weights([var])
  np.testing.assert_array_equal(var.numpy(), before[1])
  swa.swap_weights([var])
  np.testing.assert_array_equal(var.numpy(), before[0])
  np.testing.assert_array_equal(swa.average(var).numpy(), before[1])


def test_skip_nonfinite_on_gpu_skips_the_whole_update():
  with tf.device("/GPU:0"):
    step = tf.Variable(0, dtype=tf.int64)
    good = tf.Variable([1.0, 2.0])
    bad = tf.Variable([3.0, 4.0])
    swa = swa_ops.SWAMovingAverage(step, skip_nonfinite=True)
    swa.apply([good, bad])
    good.assign([5.0, 6.0])
    bad.assign([np.nan, 0.0])
    step.assign(1)
    swa.apply([good, bad])
  np.testing.assert_array_equal(swa.average(good).numpy(), [1.0, 2.0])
  assert int(swa.skipped_updates.numpy()) == 1
