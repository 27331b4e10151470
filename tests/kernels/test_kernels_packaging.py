"""swa_ops.kernels needs no TensorFlow: its Python source imports none, its extension and the
core link none, and (in a Python without TensorFlow) importing it leaves TensorFlow unloaded."""
import glob
import importlib.util
import os
import shutil
import subprocess
import sys

import pytest

import swa_ops
from swa_ops import kernels

PACKAGE = os.path.dirname(swa_ops.__file__)


def test_kernels_source_imports_no_tensorflow():
  with open(kernels.__file__) as source:
    code = source.read()
  assert "import tensorflow" not in code and "from tensorflow" not in code


def needed_libraries(path):
  out = subprocess.run(["readelf", "-d", path], capture_output=True, text=True, check=True).stdout
  return [line.split("[", 1)[1].rstrip("]") for line in out.splitlines() if "(NEEDED)" in line]


@pytest.mark.skipif(shutil.which("readelf") is None, reason="needs readelf (binutils)")
def test_extension_and_core_link_no_tensorflow():
  # The core may also have been moved to swa_ops.libs/ (auditwheel), renamed with a hash.
  places = [PACKAGE, os.path.join(os.path.dirname(PACKAGE), "swa_ops.libs")]
  libraries = [path for place in places for pattern in ("_kernels*.so", "libswa_core*.so*")
               for path in glob.glob(os.path.join(place, pattern))]
  assert [path for path in libraries if os.path.basename(path).startswith("_kernels")], places
  for library in libraries:
    needed = needed_libraries(library)
    assert not [name for name in needed if "tensorflow" in name], (library, needed)
    assert not [name for name in needed if name.startswith("libpython")], (library, needed)


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is not None,
                    reason="TensorFlow is installed here (swa_ops/__init__ loads it)")
def test_import_without_tensorflow_loads_no_tensorflow():
  code = ("import sys, numpy as np; from swa_ops import kernels\n"
          "a = np.zeros(3, np.float32); kernels.swa_assign([a], [np.ones(3, np.float32)], 0)\n"
          "assert a.tolist() == [1, 1, 1]\n"
          "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n")
  subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ))
