"""The CUDA kernels: compiled for every target architecture wherever nvcc exists (CI has it),
and the standalone harness (tests/cuda/harness.cu, no TensorFlow) run where a GPU exists."""
import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCHITECTURES = ["75", "80", "86", "89", "90"]
GENCODE = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in ARCHITECTURES] + [
    f"-gencode=arch=compute_{ARCHITECTURES[-1]},code=compute_{ARCHITECTURES[-1]}"]  # PTX.


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
  nvcc = shutil.which("nvcc") or (os.path.exists("/usr/local/cuda/bin/nvcc")
                                  and "/usr/local/cuda/bin/nvcc")
  if not nvcc:
    pytest.skip("nvcc not found: the CUDA code cannot be compiled here")
  binary = str(tmp_path_factory.mktemp("cuda") / "harness")
  command = [nvcc, "-std=c++17", "-O3", "-Xcompiler", "-ffp-contract=off",
             "-I" + os.path.join(ROOT, "cc", "core"), "-I" + os.path.join(ROOT, "cuda"), *GENCODE,
             os.path.join(ROOT, "tests", "cuda", "harness.cu"),
             os.path.join(ROOT, "cuda", "swa_kernels.cu"), "-o", binary]
  result = subprocess.run(command, capture_output=True, text=True, timeout=1200)
  assert result.returncode == 0, result.stdout + result.stderr
  return binary


def test_cuda_kernels_compile_for_every_architecture(harness):
  assert os.path.exists(harness)


@pytest.mark.gpu
def test_cuda_harness_passes(harness):
  result = subprocess.run([harness], capture_output=True, text=True, timeout=1200)
  if result.returncode == 2 and "no CUDA device" in result.stdout:
    pytest.skip("no CUDA device")
  summary = re.search(r"^(\d+) passed, (\d+) failed$", result.stdout, re.MULTILINE)
  assert summary, result.stdout + result.stderr
  assert int(summary.group(2)) == 0 and result.returncode == 0, result.stdout
  assert int(summary.group(1)) > 0


def test_gpu_benchmark_compiles(harness, tmp_path):
  nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
  result = subprocess.run(
      [nvcc, "-std=c++17", "-O3", GENCODE[-1], "-I" + os.path.join(ROOT, "cc", "core"),
       "-I" + os.path.join(ROOT, "cuda"), os.path.join(ROOT, "benchmarks", "gpu_bench.cu"),
       os.path.join(ROOT, "cuda", "swa_kernels.cu"), "-o", str(tmp_path / "gpu_bench")],
      capture_output=True, text=True, timeout=1200)
  assert result.returncode == 0, result.stdout + result.stderr
