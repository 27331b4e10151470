#!/usr/bin/env bash
# Runs the test suite against the built, installed wheel: builds the one wheel for TensorFlow
# 2.16-2.21 and installs it into a fresh venv (.venv, TensorFlow 2.21) unless
# SWA_OPS_SKIP_BUILD=1 and .venv exists; runs the whole suite there, then the matrix subset
# under every other supported TensorFlow (scripts/test_tf_matrix.sh; SWA_OPS_TF_MATRIX=0 skips
# it). Extra arguments go to the full suite's pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ "${SWA_OPS_SKIP_BUILD:-0}" != 1 ] || [ ! -x "$root/.venv/bin/python" ]; then
  "$root/scripts/build_and_install.sh" "$root/.venv"
fi
cd "$root"
TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python -m pytest tests -q -p no:cacheprovider "$@"
if [ "${SWA_OPS_TF_MATRIX:-1}" != 0 ]; then
  source scripts/supported_tensorflow.sh  # Every supported version but the newest (run above).
  bash scripts/test_tf_matrix.sh "${SUPPORTED_TENSORFLOW[@]:0:${#SUPPORTED_TENSORFLOW[@]}-1}"
fi
