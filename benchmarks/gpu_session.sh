#!/usr/bin/env bash
# One GPU session in one command, on a machine without TensorFlow: builds the core and the
# kernels module with CUDA (cmake -DSWA_OPS_TF=OFF), then runs the GPU tests and benchmarks,
# writing every log and figure under $OUT.
#
# Usage:
#   1. Where TensorFlow is (the dev venv), once: stage what the GPU machine lacks into
#      build/gpu_stage/ (git-ignored, ~25 MB): TensorFlow's Eigen headers (the core's half and
#      bfloat16) and pybind11 + pytest (pure Python wheels, any Python 3). ml_dtypes is not
#      staged (a binary wheel): without it the bfloat16 cases of tests/kernels skip, and
#      tests/cuda/harness.cu (pytest tests/test_cuda.py) still checks bfloat16 on the GPU.
#        bash benchmarks/gpu_session.sh --stage /path/to/python-with-tensorflow
#   2. On the GPU machine (nvcc, a CUDA GPU, NumPy, cmake, PyTorch and/or CuPy), from the
#      repository root, with build/gpu_stage carried along:
#        OUT=/dir/for/results bash benchmarks/gpu_session.sh [--quick]
#      Steps, most telling first, each capped and all within DEADLINE_S (default 540 s):
#      configure and compile (build/gpu, into python/swa_ops), import, pytest tests/kernels
#      -m gpu, benchmarks/kernels_gpu_bench.py, benchmarks/gpu_bench.py, pytest
#      tests/test_cuda.py. A failed step is logged and the
#      next one runs; $OUT/summary.txt has each step's exit status and seconds.
#   SWA_OPS_CUDA_ARCHITECTURES (default 90: the H200's sm_90 and its PTX) picks the targets.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
stage="$root/build/gpu_stage"
cd "$root"

if [[ "${1:-}" == "--stage" ]]; then
  tf_python="${2:?usage: $0 --stage PYTHON_WITH_TENSORFLOW}"
  set -e
  include="$("$tf_python" -c 'import tensorflow as tf; print(tf.sysconfig.get_include())')"
  rm -rf "$stage" && mkdir -p "$stage/eigen"
  cp -r "$include/Eigen" "$stage/eigen/"
  "$tf_python" -m pip install -q --target "$stage/python" --only-binary=:all: pybind11 pytest
  du -sh "$stage"
  exit 0
fi

out="${OUT:?set OUT to the directory for results}"
mode="${1:-}"  # --quick: the benchmarks' quick mode.
mkdir -p "$out"
python="${PYTHON:-$(command -v python3 || command -v python)}"
export PYTHONPATH="$root/python${PYTHONPATH:+:$PYTHONPATH}:$stage/python"
deadline=$((SECONDS + ${DEADLINE_S:-540}))
summary="$out/summary.txt"
: > "$summary"

# step NAME CAP_S COMMAND...: runs COMMAND for at most CAP_S seconds (and within the deadline),
# output to $out/NAME.log; records its exit status (124: timed out) and seconds.
step() {
  local name="$1" cap="$2" start=$SECONDS status
  shift 2
  local left=$((deadline - SECONDS))
  ((left < cap)) && cap=$left
  if ((cap < 10)); then
    echo "$name: skipped (out of time)" | tee -a "$summary"
    return 1
  fi
  timeout "$cap" "$@" > "$out/$name.log" 2>&1
  status=$?
  echo "$name: exit $status, $((SECONDS - start)) s" | tee -a "$summary"
  tail -n 3 "$out/$name.log"
  return $status
}

{
  date -u
  git -C "$root" rev-parse HEAD 2>/dev/null
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
  nvcc --version 2>&1 | tail -n 1
  "$python" -c 'import sys, numpy; print(sys.version.split()[0], "numpy", numpy.__version__)'
  "$python" -c 'import torch; print("torch", torch.__version__, torch.version.cuda)' 2>&1 | tail -n 1
  "$python" -c 'import cupy; print("cupy", cupy.__version__)' 2>&1 | tail -n 1
} > "$out/machine.txt"

pytest=("$python" -m pytest -p no:cacheprovider -q -rs)
if step configure 90 cmake -S "$root" -B "$root/build/gpu" -DCMAKE_BUILD_TYPE=Release \
     -DSWA_OPS_TF=OFF -DSWA_OPS_EIGEN_INCLUDE_DIR="$stage/eigen" -DSWA_OPS_CUDA=ON \
     -DSWA_OPS_CUDA_ARCHITECTURES="${SWA_OPS_CUDA_ARCHITECTURES:-90}" \
     -DPython3_EXECUTABLE="$python" -DSWA_OPS_OUTPUT_DIR="$root/python/swa_ops" &&
   step compile 240 cmake --build "$root/build/gpu" -j "$(nproc)" &&
   step import 30 "$python" -c 'from swa_ops import kernels; assert kernels.WITH_CUDA'; then
  step pytest_kernels_gpu 120 "${pytest[@]}" tests/kernels -m gpu
  step kernels_gpu_bench 150 "$python" benchmarks/kernels_gpu_bench.py $mode \
    --json "$out/kernels_gpu.json"
fi
step gpu_bench 120 "$python" benchmarks/gpu_bench.py --json "$out/gpu_bench.json"
step pytest_test_cuda 240 "${pytest[@]}" tests/test_cuda.py
