"""Loading the op library: version check and load failures are ImportErrors with the cause."""
import os
import subprocess
import sys
import textwrap

import pytest
import tensorflow as tf

import swa_ops
from swa_ops import _ops


def test_the_library_is_the_installed_one_with_its_build_info():
  from swa_ops import _build_info
  assert _build_info.TENSORFLOW_VERSION.split(".")[:2] == tf.__version__.split(".")[:2]
  assert os.path.exists(os.path.join(os.path.dirname(swa_ops.__file__), "_swa_ops.so"))


def test_a_tensorflow_version_mismatch_names_both_versions(monkeypatch):
  from swa_ops import _build_info
  monkeypatch.setattr(_build_info, "TENSORFLOW_VERSION", "2.99.0")
  with pytest.raises(ImportError) as error:
    _ops._check_tensorflow_version()
  message = str(error.value)
  assert "2.99.0" in message and tf.__version__ in message
  assert "pip install" in message


def _import_in_subprocess(library_path):
  script = textwrap.dedent("""
      import tensorflow
      try:
        import swa_ops
      except ImportError as error:
        print("IMPORT-ERROR:", error)
      else:
        print("IMPORTED")
  """)
  env = dict(os.environ, SWA_OPS_LIBRARY=library_path, TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                        timeout=120).stdout


def test_a_missing_library_is_an_import_error(tmp_path):
  out = _import_in_subprocess(str(tmp_path / "nowhere.so"))
  assert "IMPORT-ERROR" in out and "nowhere.so" in out and "missing" in out


def test_a_library_that_does_not_load_is_an_import_error_with_the_cause(tmp_path):
  broken = tmp_path / "broken.so"
  broken.write_bytes(b"not an ELF file")
  out = _import_in_subprocess(str(broken))
  assert "IMPORT-ERROR" in out and "could not load" in out and "broken.so" in out
