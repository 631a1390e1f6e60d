#!/usr/bin/env bash
# Mutation testing of one module against its own test files (mutmut 3, pinned in constraints.txt).
#
#   bash scripts/mutation.sh MODULE [mutmut run arguments]     e.g.  bash scripts/mutation.sh calib/ranges
#   bash scripts/mutation.sh --list                            the modules and their test files
#
# MODULE is a path under yolo4/ without .py. mutmut copies the package into .mutation/MODULE/mutants/,
# changes one operator, constant, argument or return value at a time, and runs the tests that reach the
# changed function; a mutant no test fails "survived". The last lines are the counts, the kill rate
# (killed / (killed + survived + timeout + suspicious)), and each survivor's name (show one with
# `cd .mutation/MODULE && ../../.venv/bin/mutmut show NAME`). Survivors that are equivalent (no input
# can tell them apart) are listed with the reason in the README's section on tests.
# Not in CI: a module takes 5 to 60 minutes on 2 cores. Tests marked slow are left out (and MARKS below).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

declare -A TESTS=(
  [runtime/postprocess]="tests/test_runtime_postprocess.py tests/test_runtime_nms_reference.py"
  [runtime/preprocess]="tests/test_runtime_preprocess.py"
  [calib/ranges]="tests/test_calib_ranges_unit.py"
  [trainer/loss]="tests/test_trainer_loss.py tests/test_trainer_assign.py"
  [runtime/backends/tensorrt_backend]="tests/test_runtime_tensorrt_backend.py"
  [convert/engine_builder]="tests/test_engine_builder_standin.py tests/test_engine_build.py tests/test_engine_builder_unit.py"
)
# tests left out besides the slow ones: engine_builder's real TensorRT-for-RTX builds take 10 to 60 s each
# (hours over 800 mutants); its stand-in and pure-function tests are the ones that run per mutant
declare -A MARKS=(
  [convert/engine_builder]="not slow and not tensorrt"
)

if [ "${1:-}" = "--list" ] || [ $# -lt 1 ]; then
  for m in "${!TESTS[@]}"; do echo "$m: ${TESTS[$m]}"; done | sort
  [ $# -lt 1 ] && { echo "usage: bash scripts/mutation.sh MODULE [mutmut run arguments]" >&2; exit 2; }
  exit 0
fi
module="${1%.py}"; module="${module#yolo4/}"; shift
if [ -z "${TESTS[$module]:-}" ]; then
  echo "error: no test files listed for $module (scripts/mutation.sh --list)" >&2
  exit 2
fi

source "$root/scripts/setup-env.sh" train,export,dev
python -m pip install -q -c "$root/constraints.txt" mutmut

# mutmut forks a worker per mutant from a process that ran the tests: torch's thread pools do not survive
# fork() (the workers hang), so torch runs single-threaded here
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

work="$root/.mutation/$module"
mkdir -p "$work"
# mutmut reads [tool.mutmut] from the working folder's pyproject.toml and copies source_paths and tests/
# from there: the project's pyproject.toml plus this module's section, and links to the package and tests.
ln -sfn "$root/yolo4" "$work/yolo4"
ln -sfn "$root/tests" "$work/tests"
tests_toml="$(printf '"%s", ' ${TESTS[$module]})"
{
  cat "$root/pyproject.toml"
  cat <<EOF

[tool.mutmut]
source_paths = ["yolo4"]
only_mutate = ["yolo4/$module.py"]
pytest_add_cli_args_test_selection = [${tests_toml%, }]
pytest_add_cli_args = ["-m", "${MARKS[$module]:-not slow}", "-p", "no:cacheprovider"]
use_git_change_detection = false
EOF
} > "$work/pyproject.toml"

# the copied tests find ../shared/data through these, not through their own location
if [ -d "$root/../shared/data" ]; then
  export YOLO4_SHARED_DATA="$(cd "$root/../shared/data" && pwd)"
fi
cd "$work"
mutmut run "$@" || true
echo "survivors (mutmut show NAME in $work):"
mutmut results | sed 's/^ */  /'
mutmut export-cicd-stats >/dev/null
python - "$module" <<'EOF'
import json, sys
s = json.load(open("mutants/mutmut-cicd-stats.json"))
tried = s["killed"] + s["survived"] + s["timeout"] + s["suspicious"]
print("%s: %d mutants, killed %d, survived %d, timeout %d, suspicious %d, no tests %d, skipped %d"
      % (sys.argv[1], s["total"], s["killed"], s["survived"], s["timeout"], s["suspicious"], s["no_tests"],
         s["skipped"]))
print("kill rate: %.1f %% of the %d mutants the tests reach" % (100.0 * s["killed"] / max(tried, 1), tried))
EOF
