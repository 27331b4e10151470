"""Runs TensorFlow's own `tensorflow/python/training/moving_averages_test.py` with swa_ops in
place of TensorFlow's `moving_averages` (the test file is TensorFlow's and not part of this
repository: fetch it from TensorFlow's sources).

Usage:
  PYTHONPATH=python python scripts/run_tf_moving_averages_test.py {module|attributes} \\
      PATH/TO/moving_averages_test.py [unittest/absl flags]

  module      `swa_ops.moving_averages` stands in for the module the test imports
              (`sys.modules` and the `tensorflow.python.training` package attribute are set
              before the test is loaded, and the loaded test's `moving_averages` is checked).
  attributes  TensorFlow's module stays; `ExponentialMovingAverage`, `assign_moving_average`
              and `weighted_moving_average` from swa_ops are assigned into it.
"""
import importlib.util
import sys

import tensorflow as tf  # noqa: F401  pylint: disable=unused-import
from tensorflow.python import training as tf_training
from tensorflow.python.platform import test
from tensorflow.python.training import moving_averages as tf_moving_averages

import swa_ops
from swa_ops import moving_averages as swa_moving_averages

NAMES = ("ExponentialMovingAverage", "assign_moving_average", "weighted_moving_average")


def substitute(mode):
  if mode == "module":
    sys.modules["tensorflow.python.training.moving_averages"] = swa_moving_averages
    tf_training.moving_averages = swa_moving_averages
  elif mode == "attributes":
    for name in NAMES:
      setattr(tf_moving_averages, name, getattr(swa_ops, name))
  else:
    raise SystemExit("the mode must be `module` or `attributes`, got %r" % mode)


def load(path, mode):
  spec = importlib.util.spec_from_file_location("moving_averages_test", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  used = module.moving_averages
  if mode == "module" and used is not swa_moving_averages:
    raise SystemExit("the test imported %r, not swa_ops.moving_averages" % used)
  for name in NAMES:
    if getattr(used, name) is not getattr(swa_ops, name):
      raise SystemExit("the test's moving_averages.%s is not swa_ops'" % name)
  return module


def main():
  if len(sys.argv) < 3:
    raise SystemExit(__doc__)
  mode, path = sys.argv[1], sys.argv[2]
  del sys.argv[1:3]
  substitute(mode)
  module = load(path, mode)
  main_module = sys.modules["__main__"]
  for name, value in vars(module).items():  # The test classes, where test.main() finds them.
    if isinstance(value, type) and issubclass(value, tf.test.TestCase):
      setattr(main_module, name, value)
  test.main()


if __name__ == "__main__":
  main()
