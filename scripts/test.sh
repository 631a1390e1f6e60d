#!/usr/bin/env bash
# Runs the test suite (CI calls this through .ci/run). Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/setup-env.sh" train,export,dev
cd "$root"
python -m pytest -q -ra --durations=15 "$@"
