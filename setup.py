"""Builds swa_ops: the TensorFlow-free core, an op library per TensorFlow version and the pybind11
module (CMake), plus python/swa_ops.

A source build (`pip install --no-build-isolation .`, from a checkout or an sdist) compiles one
op library, against the TensorFlow installed for the Python that runs it. The release wheel
(scripts/build_wheel.sh) sets SWA_OPS_TF_PYTHONS to one interpreter per TensorFlow 2.16-2.21 and
gets one op library for each.
"""
import json
import os
import shutil
import subprocess
import sys

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))


def read_version_file():
  """python/swa_ops/_version.py's names (it imports nothing): __version__, SUPPORTED_TENSORFLOW."""
  names = {}
  with open(os.path.join(ROOT, "python", "swa_ops", "_version.py")) as f:
    exec(f.read(), names)  # pylint: disable=exec-used
  return names


VERSION_FILE = read_version_file()
SUPPORTED_TENSORFLOW = VERSION_FILE["SUPPORTED_TENSORFLOW"]


def tensorflow_version(python):
  """The TensorFlow version `python` imports, or a clear error."""
  result = subprocess.run(
      [python, "-c", "import tensorflow as tf; print(tf.__version__)"], capture_output=True,
      text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  if result.returncode != 0:
    sys.exit("swa_ops: %s cannot import TensorFlow. Install tensorflow-cpu (or tensorflow) "
             "%s to %s first and build against it with `pip install --no-build-isolation .`."
             % (python, SUPPORTED_TENSORFLOW[0], SUPPORTED_TENSORFLOW[-1]))
  version = result.stdout.strip().splitlines()[-1]
  if ".".join(version.split(".")[:2]) not in SUPPORTED_TENSORFLOW:
    sys.exit("swa_ops: %s has TensorFlow %s; swa_ops builds against TensorFlow %s only."
             % (python, version, ", ".join(SUPPORTED_TENSORFLOW)))
  return version


def check_build_tools():
  missing = [tool for tool in ("cmake",) if not shutil.which(tool)]
  compiler = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
  if not compiler or not shutil.which(compiler.split()[0]):
    missing.append("a C++17 compiler (g++ or clang++, or set CXX)")
  if missing:
    sys.exit("swa_ops builds from source and needs " + " and ".join(missing) +
             ": install them (e.g. `apt-get install g++` and `pip install cmake`) and retry.")


class CMakeExtension(Extension):
  def __init__(self, name):
    super().__init__(name, sources=[])


class CMakeBuild(build_ext):
  """Runs CMake, which puts the libraries into the package's build directory, and writes
  _build_info.py beside them."""

  def build_extension(self, ext):
    check_build_tools()
    package_dir = os.path.dirname(os.path.abspath(self.get_ext_fullpath(ext.name)))
    os.makedirs(package_dir, exist_ok=True)
    tf_pythons = [p for p in os.environ.get("SWA_OPS_TF_PYTHONS", "").split(os.pathsep) if p]
    tf_pythons = tf_pythons or [sys.executable]
    for python in tf_pythons:
      tensorflow_version(python)
    build_dir = os.path.abspath(os.path.join(self.build_temp, "cmake"))
    # SWA_OPS_CUDA=AUTO unless SWA_OPS_CMAKE_ARGS says otherwise (later -D wins), so that a
    # reused build directory does not keep an earlier build's choice from its CMake cache.
    configure = ["cmake", "-S", ROOT, "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release",
                 "-DPython3_EXECUTABLE=" + sys.executable, "-DPython_EXECUTABLE=" + sys.executable,
                 "-DSWA_OPS_TF_PYTHONS=" + ";".join(tf_pythons),
                 "-DSWA_OPS_OUTPUT_DIR=" + package_dir, "-DSWA_OPS_CUDA=AUTO"]
    configure += os.environ.get("SWA_OPS_CMAKE_ARGS", "").split()
    subprocess.check_call(configure)
    subprocess.check_call(["cmake", "--build", build_dir, "-j", str(os.cpu_count() or 2)])
    # Written by CMake at configure time: the TensorFlow versions built against, and what CUDA
    # device code the core holds.
    with open(os.path.join(build_dir, "swa_ops_tensorflow.json")) as f:
      tensorflow = json.load(f)
    with open(os.path.join(build_dir, "swa_ops_cuda.json")) as f:
      cuda = json.load(f)
    with open(os.path.join(package_dir, "_build_info.py"), "w") as f:
      f.write('"""Written by setup.py at build time."""\n'
              "# The TensorFlow versions the op libraries were compiled against, one library\n"
              "# (_swa_ops_tf<major>_<minor>.so) per major.minor.\n"
              "TENSORFLOW_VERSIONS = %r\n"
              "# The CUDA kernels compiled into the core: nvcc's version (None: a CPU-only build),\n"
              "# the GPU architectures with SASS (sm_XX) and the PTX (compute_XX).\n"
              "CUDA_VERSION = %r\n"
              "CUDA_ARCHITECTURES = %r\n"
              "CUDA_PTX = %r\n"
              % (tensorflow["tensorflow_versions"], cuda["cuda_version"], cuda["sass"],
                 cuda["ptx"]))


setup(
    name="swa_ops",
    version=VERSION_FILE["__version__"],
    description="Stochastic weight averaging and moving averages as fused TensorFlow ops",
    long_description=open(os.path.join(ROOT, "README.md")).read(),
    long_description_content_type="text/markdown",
    packages=find_packages("python"),
    package_dir={"": "python"},
    ext_modules=[CMakeExtension("swa_ops._kernels")],
    cmdclass={"build_ext": CMakeBuild},
    python_requires=">=3.9",
    # TensorFlow is deliberately not a requirement: pip must not replace a user's `tensorflow`
    # with another TF wheel, and swa_ops.kernels runs without it. The extras install one for a
    # new environment.
    install_requires=["numpy"],
    extras_require={
        "cpu": ["tensorflow-cpu>=%s,<2.%d" % (SUPPORTED_TENSORFLOW[0],
                                               int(SUPPORTED_TENSORFLOW[-1].split(".")[1]) + 1)],
        "gpu": ["tensorflow>=%s,<2.%d" % (SUPPORTED_TENSORFLOW[0],
                                           int(SUPPORTED_TENSORFLOW[-1].split(".")[1]) + 1)],
        # nvidia-cuda-cuobjdump: cuobjdump, for the test of the device code in a CUDA build
        # (nvidia/cu13/bin/cuobjdump; 13.2 is its first CUDA 13 release).
        "test": ["pytest", "numpy", "hypothesis", "scikit-learn", "tqdm", "auditwheel", "ml_dtypes",
                 'nvidia-cuda-cuobjdump>=13.2,<14; sys_platform == "linux" and '
                 'platform_machine == "x86_64"'],
    },
    zip_safe=False,
)
