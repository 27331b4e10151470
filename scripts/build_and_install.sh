#!/usr/bin/env bash
# Builds the swa_ops wheel and installs it into a fresh virtual environment.
#   scripts/build_and_install.sh VENV_DIR
# Needs only python3 (3.11), g++ and cmake; TensorFlow comes from PyPI (tensorflow-cpu 2.21).
# The wheel is built in build/venv (TensorFlow + build tools) and written to dist/; VENV_DIR is
# then created anew and gets the wheel with its [cpu,test] extras.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:?usage: $0 VENV_DIR}"
python="${PYTHON:-python3}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"

build_venv="$root/build/venv"
if [ ! -x "$build_venv/bin/python" ]; then
  "$python" -m venv "$build_venv"
fi
"$build_venv/bin/pip" install -q --upgrade pip
"$build_venv/bin/pip" install -q "tensorflow-cpu==2.21.*" "setuptools>=64" wheel "cmake>=3.18"

rm -rf "$root/dist"
(cd "$root" && "$build_venv/bin/pip" wheel -q --no-build-isolation --no-deps -w dist .)
wheel="$(ls "$root"/dist/swa_ops-*-cp311-*-linux_x86_64.whl 2>/dev/null || ls "$root"/dist/swa_ops-*.whl)"
echo "built $wheel"

rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q "${wheel}[cpu,test]"
echo "installed swa_ops into $venv"
