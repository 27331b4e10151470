"""Loading the op library: the one built for the running TensorFlow, unsupported versions and load
failures are ImportErrors with the cause; one version everywhere; the CUDA device code in the
installed core; loading and running it without a GPU."""
import glob
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest
import tensorflow as tf

import swa_ops
from swa_ops import _ops


def test_the_loaded_library_is_the_one_built_for_the_running_tensorflow():
  from swa_ops import _build_info
  running = ".".join(tf.__version__.split(".")[:2])
  assert running in swa_ops.supported_tensorflow_versions()
  path = _ops._library_path()
  assert os.path.basename(path) == "_swa_ops_tf%s.so" % running.replace(".", "_")
  assert os.path.dirname(path) == os.path.dirname(swa_ops.__file__)
  assert any(v.startswith(running + ".") for v in _build_info.TENSORFLOW_VERSIONS)


def test_every_supported_version_has_its_op_library_and_the_core_is_shared():
  package = os.path.dirname(swa_ops.__file__)
  for series in swa_ops.supported_tensorflow_versions():
    library = os.path.join(package, _ops.library_file_name(series))
    assert os.path.exists(library), library
    assert "libswa_core.so" in _needed_libraries(library)
  assert os.path.exists(os.path.join(package, "libswa_core.so"))


def _needed_libraries(path):
  result = subprocess.run(["readelf", "-d", path], capture_output=True, text=True, timeout=60)
  assert result.returncode == 0, result.stderr
  return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", result.stdout)


def test_an_unsupported_tensorflow_lists_the_supported_versions(monkeypatch):
  from swa_ops import _build_info
  monkeypatch.setattr(_build_info, "TENSORFLOW_VERSIONS", ["2.99.0", "2.9.1"])
  with pytest.raises(ImportError) as error:
    _ops._installed_library_path()
  message = str(error.value)
  assert "2.9, 2.99" in message and tf.__version__ in message
  assert "pip install" in message and "--no-build-isolation" in message


def test_one_version_in_the_package_the_metadata_and_the_readme():
  import importlib.metadata
  assert importlib.metadata.version("swa_ops") == swa_ops.__version__
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  with open(os.path.join(root, "README.md")) as f:
    readme = f.read()
  assert re.findall(r"swa_ops (\d+\.\d+\.\d+)", readme.split("\n## ")[0]) == [
      swa_ops.__version__], "the README's opening names another version"


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


# What a CUDA build of the wheel holds (CMakeLists.txt, SWA_OPS_CUDA_ARCHITECTURES' default; the
# same targets as tests/test_cuda.py): SASS for these and PTX for the newest.
RELEASE_SASS = ["sm_75", "sm_80", "sm_86", "sm_89", "sm_90"]
RELEASE_PTX = ["compute_90"]


def _installed_core():
  """The CUDA kernels are in the core, libswa_core.so, shared by every op library."""
  return os.path.join(os.path.dirname(swa_ops.__file__), "libswa_core.so")


def _cuda_build_info():
  from swa_ops import _build_info
  if not getattr(_build_info, "CUDA_ARCHITECTURES", None):
    pytest.skip("the installed swa_ops was built without CUDA (no nvcc at build time, or "
                "SWA_OPS_CMAKE_ARGS=-DSWA_OPS_CUDA=OFF): no device code to check")
  return _build_info


def _cuobjdump():
  """cuobjdump on PATH, next to nvcc, or from NVIDIA's PyPI wheel (nvidia-cuda-cuobjdump, in the
  `test` extra: nvidia/cu13/bin/cuobjdump)."""
  candidates = [shutil.which("cuobjdump")]
  nvcc = shutil.which("nvcc")
  if nvcc:
    candidates.append(os.path.join(os.path.dirname(os.path.realpath(nvcc)), "cuobjdump"))
  candidates.append("/usr/local/cuda/bin/cuobjdump")
  spec = importlib.util.find_spec("nvidia")
  for directory in (spec.submodule_search_locations or []) if spec else []:
    candidates += sorted(glob.glob(os.path.join(directory, "*", "bin", "cuobjdump")), reverse=True)
  for candidate in candidates:
    if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
      return candidate
  pytest.skip("no cuobjdump (CUDA toolkit, or pip install nvidia-cuda-cuobjdump)")


def _list_device_code(what):
  result = subprocess.run([_cuobjdump(), "--list-" + what, _installed_core()],
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stdout + result.stderr
  return result.stdout


def test_a_cuda_build_records_the_release_architectures():
  info = _cuda_build_info()
  assert info.CUDA_VERSION
  assert info.CUDA_ARCHITECTURES == RELEASE_SASS and info.CUDA_PTX == RELEASE_PTX, (
      "not the release set of architectures (SWA_OPS_CUDA_ARCHITECTURES changed?)")


def test_the_installed_library_holds_sass_for_every_architecture():
  info = _cuda_build_info()
  listing = _list_device_code("elf")
  # "ELF file    1: libswa_core.1.sm_75.cubin"
  sass = re.findall(r"^ELF file\s+\d+: .*\.(sm_\d+[a-z]?)\.cubin$", listing, re.MULTILINE)
  assert sorted(set(sass)) == sorted(info.CUDA_ARCHITECTURES), listing
  assert set(RELEASE_SASS) <= set(sass), listing


def test_the_installed_library_holds_ptx_for_the_newest_architecture():
  info = _cuda_build_info()
  listing = _list_device_code("ptx")
  # cuobjdump names compute_90 PTX "PTX file    1: libswa_core.1.sm_90.ptx".
  ptx = ["compute_" + arch for arch in
         re.findall(r"^PTX file\s+\d+: .*\.sm_(\d+[a-z]?)\.ptx$", listing, re.MULTILINE)]
  assert sorted(set(ptx)) == sorted(info.CUDA_PTX), listing
  assert set(RELEASE_PTX) <= set(ptx), listing


def test_the_installed_library_loads_and_runs_without_a_gpu():
  """With every GPU hidden, the library (a CUDA build included: the CUDA runtime it links starts
  only at the first CUDA call) loads and runs a CPU update; under a TensorFlow without CUDA
  (tensorflow-cpu) nothing in the process even looks for the driver (libcuda)."""
  script = textwrap.dedent("""
      import tensorflow as tf
      import swa_ops
      assert not tf.config.list_physical_devices("GPU")
      average = tf.Variable([1.0, 2.0])
      swa_ops.assign_moving_average(average, tf.constant([3.0, 6.0]), 0.5, zero_debias=False)
      print("UPDATED", average.numpy().tolist(), tf.test.is_built_with_cuda())
  """)
  env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3", LD_DEBUG="libs")
  env.pop("SWA_OPS_LIBRARY", None)
  result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 0, result.stdout + result.stderr[-4000:]
  assert "UPDATED [2.0, 4.0]" in result.stdout, result.stdout
  if result.stdout.strip().endswith("False"):  # tensorflow-cpu
    # The driver library, libcuda.so.1 (the CUDA runtime, libcudart, is loaded with the core).
    driver = [line for line in result.stderr.splitlines() if re.search(r"libcuda\.so", line)]
    assert not driver, driver[:5]


# TensorFlow's own libraries: the op libraries need them, TensorFlow brings them, and the wheel
# must not vendor them, so they are left out of the platform-tag check.
TENSORFLOW_LIBRARIES = {"libtensorflow_framework.so.2", "libtensorflow_cc.so.2"}


def test_the_wheel_platform_tag_is_what_its_symbols_allow():
  """`auditwheel show` on the built wheel: the tag its symbols allow (sym_tag) is the tag in the
  wheel's name, and the only libraries keeping it from that tag are TensorFlow's."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  wheels = glob.glob(os.path.join(root, "dist", "swa_ops-*.whl"))
  if len(wheels) != 1:
    pytest.skip("no single built wheel in dist/ (scripts/build_wheel.sh makes it)")
  if importlib.util.find_spec("auditwheel") is None:
    pytest.skip("auditwheel not installed (part of the `test` extra)")
  result = subprocess.run([sys.executable, "-m", "auditwheel", "show", "--json", wheels[0]],
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  import json
  report = json.loads(result.stdout)
  python_tag, abi_tag, platform_tag = os.path.basename(wheels[0])[:-4].split("-")[-3:]
  assert platform_tag == report["sym_tag"], report["sym_tag"]
  assert set(report["external_libs"]) <= TENSORFLOW_LIBRARIES, report["external_libs"]
  assert set(report["policy_upgrades"][platform_tag]["libs_to_eliminate"]) <= TENSORFLOW_LIBRARIES
  assert platform_tag.startswith("manylinux_")
  assert (python_tag, abi_tag) == ("cp%d%d" % sys.version_info[:2],) * 2
