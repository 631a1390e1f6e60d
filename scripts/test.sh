#!/usr/bin/env bash
# Runs the test suite (CI calls this through .ci/run). Extra arguments go to pytest.
# First the main suite (.venv, Python 3 of this machine, constraints.txt: everything, torch included),
# then the oldest-versions lane (scripts/test-oldest.sh: .venv-oldest, Python 3.8, constraints-oldest.txt,
# every test that does not need torch). YOLO4_SKIP_OLDEST=1 runs the main suite only.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/setup-env.sh" train,export,dev
cd "$root"
python -m pytest -q -ra --durations=15 "$@"
if [ "${YOLO4_SKIP_OLDEST:-0}" != 1 ]; then
  bash "$root/scripts/test-oldest.sh" "$@"
fi
