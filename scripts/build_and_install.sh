#!/usr/bin/env bash
# Builds the swa_ops wheel (scripts/build_wheel.sh: one wheel for every supported TensorFlow, in
# dist/) and installs it into a fresh virtual environment with the newest supported TensorFlow
# and the test extras:
#   scripts/build_and_install.sh VENV_DIR
# Needs only python3 (3.11), g++ and cmake; everything else comes from PyPI.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:?usage: $0 VENV_DIR}"
python="${PYTHON:-python3}"
source "$root/scripts/supported_tensorflow.sh"
newest="${SUPPORTED_TENSORFLOW[${#SUPPORTED_TENSORFLOW[@]}-1]}"

bash "$root/scripts/build_wheel.sh"
wheel="$(ls "$root"/dist/swa_ops-*.whl)"

rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q --find-links "$root/build/wheelhouse" \
  "tensorflow-cpu==$newest.*" "${wheel}[cpu,test]"
# Keras 2 for the tf_keras tests; --no-deps, or pip puts `tensorflow` over `tensorflow-cpu`.
"$venv/bin/python" -m pip install -q --no-deps "tf-keras==$newest.*"
echo "installed swa_ops into $venv"
