#!/usr/bin/env bash
# Installs the one wheel of dist/ with --no-deps into a fresh venv per TensorFlow version and
# runs the matrix subset of the suite there (tests/tf_matrix.txt: eager, tf.function and TF1
# graph updates against the float64 oracle, grouped ops, a checkpoint round trip, Keras fit with
# swa_ops.keras.SWA, bad inputs, the library loaded for that version).
#   bash scripts/test_tf_matrix.sh [SERIES ...]     default: every supported version
# TensorFlow comes from build/wheelhouse when scripts/build_wheel.sh left it there, else PyPI.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
series=("$@")
source "$root/scripts/supported_tensorflow.sh"
[ ${#series[@]} -gt 0 ] || series=("${SUPPORTED_TENSORFLOW[@]}")
wheel="$(ls "$root"/dist/swa_ops-*.whl)"
mapfile -t tests < <(grep -v '^\s*\(#\|$\)' "$root/tests/tf_matrix.txt")
failed=()
for s in "${series[@]}"; do
  start=$SECONDS
  venv="$root/build/matrix/$s"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q --no-index --find-links "$root/build/wheelhouse" \
    "tensorflow-cpu==$s.*" 2>/dev/null || "$venv/bin/python" -m pip install -q "tensorflow-cpu==$s.*"
  "$venv/bin/python" -m pip install -q pytest hypothesis scikit-learn tqdm
  "$venv/bin/python" -m pip install -q --no-deps "$wheel"
  echo "== TensorFlow $("$venv/bin/python" -c 'import tensorflow as tf; print(tf.__version__)' 2>/dev/null)"
  if (cd "$root" && TF_CPP_MIN_LOG_LEVEL=3 "$venv/bin/python" -m pytest -q -p no:cacheprovider \
        "${tests[@]}"); then
    echo "== TensorFlow $s: passed in $((SECONDS - start)) s"
  else
    echo "== TensorFlow $s: FAILED"
    failed+=("$s")
  fi
  rm -rf "$venv"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "matrix: failed under TensorFlow ${failed[*]}"
  exit 1
fi
echo "matrix: passed under TensorFlow ${series[*]}"
