#!/usr/bin/env bash
# The main job on a fresh machine: build the wheel, install it into a fresh venv (.venv), and run
# the benchmark against the reference (workloads W1-W3, then the sweep over the number of
# variables, plotted to benchmarks/results/sweep.png). Extra arguments go to benchmarks/bench.py
# (--quick, --no-sweep, --sweep, ...).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/build_and_install.sh" "$root/.venv"
cd "$root"
# For the sweep's plot; without it bench.py prints and writes everything else.
.venv/bin/pip install -q matplotlib || echo "matplotlib not installed: no sweep plot" >&2
# TF's CPU buffers on transparent huge pages, as the floor's numpy arrays already are (see
# bench.py's docstring); a GLIBC_TUNABLES of the caller's is kept as it is.
export GLIBC_TUNABLES="${GLIBC_TUNABLES-glibc.malloc.hugetlb=1}"
TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python benchmarks/bench.py "$@"
