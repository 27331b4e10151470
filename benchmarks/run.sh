#!/usr/bin/env bash
# The main job on a fresh machine: build the wheel, install it into a fresh venv (.venv), and run
# the benchmark against the reference: a quick run by default (workloads W1-W3 and a short sweep
# over the number of variables, a few minutes on 2 cores), the full run with --full. Progress
# bars while it runs; at the end the summary table and where the plot and the JSON are. Other
# arguments go to benchmarks/bench.py (--no-sweep, --sweep, --first-call, --json PATH, ...).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mode=(--quick)
args=()
for arg in "$@"; do
  if [ "$arg" = --full ]; then mode=(); else args+=("$arg"); fi
done
"$root/scripts/build_and_install.sh" "$root/.venv"
cd "$root"
# For the sweep's plot; without it bench.py prints and writes everything else.
.venv/bin/pip install -q matplotlib || echo "matplotlib not installed: no sweep plot" >&2
# TF's CPU buffers on transparent huge pages, as the floor's numpy arrays already are (see
# bench.py's docstring); a GLIBC_TUNABLES of the caller's is kept as it is.
export GLIBC_TUNABLES="${GLIBC_TUNABLES-glibc.malloc.hugetlb=1}"
TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python benchmarks/bench.py "${mode[@]}" "${args[@]}"
