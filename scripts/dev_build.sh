#!/usr/bin/env bash
# Development build into the source tree: compiles the core, the op library for the TensorFlow
# of PYTHON (default: .venv/bin/python, which needs TensorFlow, cmake, pybind11, setuptools) and
# the kernels module, without CUDA unless SWA_OPS_CMAKE_ARGS says otherwise, and puts them into
# python/swa_ops/, so that `PYTHONPATH=python` imports this tree. Not for releases: see
# scripts/build_wheel.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
cd "$root"
SWA_OPS_TF_PYTHONS="$python" SWA_OPS_CMAKE_ARGS="${SWA_OPS_CMAKE_ARGS:--DSWA_OPS_CUDA=OFF}" \
  "$python" setup.py -q build_ext --inplace
series="$("$python" -c 'import tensorflow as tf; print(tf.__version__.replace(".", "_", 1).split(".")[0])')"
for file in libswa_core.so "_swa_ops_tf${series}.so" _build_info.py _sequences.*.so; do
  cp build/lib.*/swa_ops/$file python/swa_ops/
done
echo "built into $root/python/swa_ops (TensorFlow ${series/_/.})"
