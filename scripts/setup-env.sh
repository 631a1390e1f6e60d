#!/usr/bin/env bash
# Creates .venv (once) and installs yolo4 with the extras given as $1 (default: train,export,dev),
# through constraints.txt: the exact versions the test suite passed with (reproducible installs).
# Sourced by scripts/demo.sh and scripts/test.sh. torch is pinned to the CPU build 2.13.0.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
extras="${1:-train,export,dev}"
if [ ! -x "$root/.venv/bin/python" ]; then
  python3 -m venv "$root/.venv"
fi
stamp="$root/.venv/.yolo4-installed-$extras"
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ] || [ "$root/constraints.txt" -nt "$stamp" ]; then
  "$root/.venv/bin/python" -m pip install -q -c "$root/constraints.txt" --upgrade pip
  "$root/.venv/bin/python" -m pip install -q -c "$root/constraints.txt" -e "$root[$extras]"
  touch "$stamp"
fi
export PATH="$root/.venv/bin:$PATH"
# Real data (cfgs, weights, datasets) is read in place from ../shared/data when it is there.
if [ -z "${YOLO4_ASSET_MIRROR:-}" ] && [ -d "$root/../shared/data" ]; then
  export YOLO4_ASSET_MIRROR="$(cd "$root/../shared/data" && pwd)"
fi
