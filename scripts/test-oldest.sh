#!/usr/bin/env bash
# The oldest-versions lane: Python 3.8 (JetPack 5.1's Python) with the oldest library versions this
# project declares (constraints-oldest.txt = the `>=` bounds of pyproject.toml = what a Python 3.8 user
# gets from PyPI), without torch. Runs every test that does not need torch; those skip with the reason
# (tests/conftest.py). Called by scripts/test.sh after the main suite; extra arguments go to pytest.
# .venv-oldest is created once and reinstalled when pyproject.toml or constraints-oldest.txt change.
# Python 3.8 is found as $YOLO4_PY38, `python3.8` on PATH, or pyenv's 3.8; when there is none the lane
# says so on one line and is skipped (exit 0), or fails when YOLO4_REQUIRE_OLDEST=1.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv-oldest"

find_py38() {
  local c
  for c in "${YOLO4_PY38:-}" "$(command -v python3.8 || true)" "$HOME/.pyenv/versions/3.8.18/bin/python3.8" \
           /root/.pyenv/versions/3.8.18/bin/python3.8; do
    if [ -n "$c" ] && [ -x "$c" ] && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 8))' 2>/dev/null; then
      echo "$c"
      return 0
    fi
  done
  return 1
}

if ! py38="$(find_py38)"; then
  echo "oldest-versions lane SKIPPED: no Python 3.8 found (set YOLO4_PY38=/path/to/python3.8)" >&2
  if [ "${YOLO4_REQUIRE_OLDEST:-0}" = 1 ]; then exit 1; fi
  exit 0
fi

t0=$(date +%s)
if [ ! -x "$venv/bin/python" ]; then
  "$py38" -m venv "$venv"
fi
stamp="$venv/.yolo4-installed"
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ] || [ "$root/constraints-oldest.txt" -nt "$stamp" ]; then
  # the pip Python 3.8's venv brings is enough; the build backend (setuptools>=64) is fetched by pip
  "$venv/bin/python" -m pip install -q -c "$root/constraints-oldest.txt" -e "$root[export]" pytest
  touch "$stamp"
fi
t1=$(date +%s)
echo "oldest-versions lane: $("$venv/bin/python" -V) with $("$venv/bin/python" -c 'import numpy, onnxruntime, cv2; print("numpy", numpy.__version__, "onnxruntime", onnxruntime.__version__, "opencv", cv2.__version__)') (environment ready in $((t1 - t0)) s)"
cd "$root"
# test_install.py compares the environment with this lane's constraints
PATH="$venv/bin:$PATH" YOLO4_CONSTRAINTS="$root/constraints-oldest.txt" YOLO4_OLDEST_LANE=1 \
  "$venv/bin/python" -m pytest -q -ra -p no:cacheprovider "$@"
echo "oldest-versions lane took $(( $(date +%s) - t0 )) s (environment + tests)"
