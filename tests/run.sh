#!/usr/bin/env bash
# Runs the test suite against the built, installed wheel: builds it and installs it into a fresh
# venv (.venv) unless SWA_OPS_SKIP_BUILD=1 and .venv exists. Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ "${SWA_OPS_SKIP_BUILD:-0}" != 1 ] || [ ! -x "$root/.venv/bin/python" ]; then
  "$root/scripts/build_and_install.sh" "$root/.venv"
fi
cd "$root"
TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python -m pytest tests -q -p no:cacheprovider "$@"
