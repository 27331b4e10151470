"""The core's CPU update code (element loops, split over segments and threads) built without
TensorFlow (only its bundled Eigen headers) under AddressSanitizer and UndefinedBehaviorSanitizer,
and run."""
import os
import re
import shutil
import subprocess

import pytest
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_cpu_updates_under_asan_and_ubsan(tmp_path):
  compiler = shutil.which("g++") or shutil.which("clang++")
  if not compiler:
    pytest.skip("no C++ compiler")
  binary = str(tmp_path / "test_cpu_updates")
  build = subprocess.run(
      [compiler, "-std=c++17", "-O1", "-g", "-fsanitize=address,undefined",
       "-fno-sanitize-recover=all", "-ffp-contract=off", "-I" + os.path.join(ROOT, "cc", "core"),
       "-isystem", tf.sysconfig.get_include(),  # Eigen, for the core's half types.
       os.path.join(ROOT, "tests", "cpp", "test_cpu_updates.cc"),
       os.path.join(ROOT, "cc", "core", "cpu_updates.cc"), "-o", binary, "-pthread"],
      capture_output=True, text=True, timeout=600)
  assert build.returncode == 0, build.stderr
  run = subprocess.run([binary], capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, ASAN_OPTIONS="detect_leaks=1"))
  summary = re.search(r"^(\d+) passed, (\d+) failed$", run.stdout, re.MULTILINE)
  assert run.returncode == 0 and summary, run.stdout[-2000:] + run.stderr[-4000:]
  assert int(summary.group(2)) == 0 and int(summary.group(1)) > 1000
