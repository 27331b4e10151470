"""Builds the swa_ops wheel: the op library (CMake, against the installed TensorFlow) plus
python/swa_ops. Build with TensorFlow installed: `pip wheel --no-build-isolation .`."""
import json
import os
import subprocess
import sys

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))
TF_SERIES = "2.21"


class CMakeExtension(Extension):
  def __init__(self, name):
    super().__init__(name, sources=[])


class CMakeBuild(build_ext):
  """Runs CMake and puts _swa_ops.so and _build_info.py into the package's build directory."""

  def build_extension(self, ext):
    package_dir = os.path.dirname(os.path.abspath(self.get_ext_fullpath(ext.name)))
    os.makedirs(package_dir, exist_ok=True)
    build_dir = os.path.abspath(os.path.join(self.build_temp, "cmake"))
    # SWA_OPS_CUDA=AUTO unless SWA_OPS_CMAKE_ARGS says otherwise (later -D wins), so that a
    # reused build directory does not keep an earlier build's choice from its CMake cache.
    configure = ["cmake", "-S", ROOT, "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release",
                 "-DPython3_EXECUTABLE=" + sys.executable,
                 "-DSWA_OPS_OUTPUT_DIR=" + package_dir, "-DSWA_OPS_CUDA=AUTO"]
    configure += os.environ.get("SWA_OPS_CMAKE_ARGS", "").split()
    subprocess.check_call(configure)
    subprocess.check_call(["cmake", "--build", build_dir, "-j", str(os.cpu_count() or 2)])
    tf_version = subprocess.check_output(
        [sys.executable, "-c", "import tensorflow as tf; print(tf.__version__)"],
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), text=True).strip().splitlines()[-1]
    # Written by CMake at configure time: what CUDA device code the library holds.
    with open(os.path.join(build_dir, "swa_ops_cuda.json")) as f:
      cuda = json.load(f)
    with open(os.path.join(package_dir, "_build_info.py"), "w") as f:
      f.write('"""Written by setup.py at build time."""\n'
              "TENSORFLOW_VERSION = %r\n"
              "# The CUDA kernels compiled in: nvcc's version (None: a CPU-only build), the GPU\n"
              "# architectures with SASS (sm_XX) and the PTX (compute_XX) in the library.\n"
              "CUDA_VERSION = %r\n"
              "CUDA_ARCHITECTURES = %r\n"
              "CUDA_PTX = %r\n"
              % (tf_version, cuda["cuda_version"], cuda["sass"], cuda["ptx"]))


setup(
    name="swa_ops",
    version="0.1.0",
    description="Stochastic weight averaging and moving averages as fused TensorFlow ops",
    long_description=open(os.path.join(ROOT, "README.md")).read(),
    long_description_content_type="text/markdown",
    packages=find_packages("python"),
    package_dir={"": "python"},
    ext_modules=[CMakeExtension("swa_ops._swa_ops")],
    cmdclass={"build_ext": CMakeBuild},
    python_requires=">=3.9",
    # TensorFlow is deliberately not a requirement: pip must not replace a user's `tensorflow`
    # with another TF wheel. The extras install a matching one for a new environment.
    extras_require={
        "cpu": ["tensorflow-cpu==%s.*" % TF_SERIES],
        "gpu": ["tensorflow==%s.*" % TF_SERIES],
        # nvidia-cuda-cuobjdump: cuobjdump, for the test of the device code in a CUDA build
        # (nvidia/cu13/bin/cuobjdump; 13.2 is its first CUDA 13 release).
        "test": ["pytest", "numpy", "hypothesis", "scikit-learn",
                 'nvidia-cuda-cuobjdump>=13.2,<14; sys_platform == "linux" and '
                 'platform_machine == "x86_64"'],
    },
    zip_safe=False,
)
