"""Crash and resume: a training loop killed with SIGKILL at a random step and resumed from its
last tf.train.Checkpoint ends with averages bit-identical to an uninterrupted run."""
import os
import random
import signal
import subprocess
import sys
import textwrap

import numpy as np

STEPS = 40
TRAINER = textwrap.dedent("""
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np
    import tensorflow as tf
    import swa_ops

    directory, steps, output = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    variables = [tf.Variable(tf.zeros([5, 3]), name="w"),
                 tf.Variable(tf.zeros([7], tf.float64), name="b")]
    step = tf.Variable(0, dtype=tf.int64, name="step")
    swa = swa_ops.SWAMovingAverage(step, start=3, period=2, skip_nonfinite=True)
    checkpoint = tf.train.Checkpoint(model=variables, step=step, averager=swa)
    manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=2)
    if manager.latest_checkpoint:
      checkpoint.restore(manager.latest_checkpoint)  # Shadows: deferred until apply().

    @tf.function
    def train_step():
      # A deterministic stand-in for an optimizer step: the values depend on the step only.
      for i, var in enumerate(variables):
        noise = tf.random.stateless_normal(var.shape, seed=[step, i], dtype=var.dtype)
        var.assign(var * 0.9 + noise)
      swa.apply(variables)
      step.assign_add(1)

    while int(step.numpy()) < steps:
      train_step()
      if int(step.numpy()) % 4 == 0:
        manager.save()
      print("step", int(step.numpy()), flush=True)
    np.savez(output, *[swa.average(v).numpy() for v in variables],
             skipped=swa.skipped_updates.numpy())
""")


def _run_trainer(tmp_path, name, directory, kill_at=None):
  script = tmp_path / "trainer.py"
  script.write_text(TRAINER)
  output = str(tmp_path / (name + ".npz"))
  env = dict(os.environ, PYTHONHASHSEED="0")
  process = subprocess.Popen([sys.executable, str(script), str(directory), str(STEPS), output],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
  if kill_at is not None:
    for line in process.stdout:
      if line.strip() == "step %d" % kill_at:
        process.send_signal(signal.SIGKILL)
        break
    process.wait(timeout=300)
    assert process.returncode == -signal.SIGKILL
    return None
  out, err = process.communicate(timeout=300)
  assert process.returncode == 0, err[-3000:]
  return np.load(output)


def test_sigkill_at_a_random_step_then_resume_is_bit_identical(tmp_path):
  kill_at = random.Random().randrange(5, STEPS - 3)
  uninterrupted = _run_trainer(tmp_path, "uninterrupted", tmp_path / "a")
  assert _run_trainer(tmp_path, "killed", tmp_path / "b", kill_at=kill_at) is None
  resumed = _run_trainer(tmp_path, "resumed", tmp_path / "b")
  for key in uninterrupted.files:
    expected, got = uninterrupted[key], resumed[key]
    assert expected.dtype == got.dtype
    assert np.array_equal(np.atleast_1d(expected).view(np.uint8),
                          np.atleast_1d(got).view(np.uint8)), (
        "killed at step %d: %s differs" % (kill_at, key))
