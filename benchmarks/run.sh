#!/usr/bin/env bash
# The main job on a fresh machine: build the wheel, install it into a fresh venv (.venv), and run
# the benchmark against the reference. Extra arguments go to benchmarks/bench.py.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/build_and_install.sh" "$root/.venv"
cd "$root"
TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python benchmarks/bench.py "$@"
