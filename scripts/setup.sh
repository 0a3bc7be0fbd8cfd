#!/usr/bin/env bash
# Set up dapbench in ./.venv: torch first (the CPU build 2.13.0 unless a torch is already installed there,
# e.g. a CUDA build you installed yourself), then dapbench with pip constrained to that exact torch, so
# nothing can swap it for a multi-GB CUDA download.
#   scripts/setup.sh            runtime only
#   scripts/setup.sh dev        + test tools (pytest, pytest-benchmark, ruff)
#   scripts/setup.sh dev,bench  + Stable-Baselines3 for the side-by-side benchmark
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  "${pip[@]}" install "torch==2.13.0"
fi
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
.venv/bin/python -m pip freeze 2>/dev/null | grep -iE '^torch==' > "$constraints"
"${pip[@]}" install -c "$constraints" -e ".${extras:+[$extras]}"
echo "dapbench installed in $(pwd)/.venv (torch $(.venv/bin/python -c 'import torch; print(torch.__version__)'))"
