"""The suite's own rules (tests/conftest.py), run on throwaway test files in a subprocess pytest:
an unexpected skip fails the main suite under ``CI=true`` and is only reported elsewhere; an expected one
(a missing GPU) does neither; every test that uses the real data is marked ``shared``."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py")

TESTS = '''
import pytest

def test_passes():
    pass

def test_lost_tool():
    pytest.skip("the stub tool is absent")

def test_no_gpu():
    pytest.skip("no CUDA GPU")

def test_real_data(shared_data):
    pass
'''


def _pytest(tmp_path, *args, ci=None, lane=False):
    """Run pytest on the throwaway tests beside a copy of the project's conftest; returns (rc, output)."""
    (tmp_path / "conftest.py").write_text(CONFTEST.read_text())
    (tmp_path / "test_probe.py").write_text(TESTS)
    shared = tmp_path / "shared-data"
    shared.mkdir(exist_ok=True)
    env = dict(os.environ, YOLO4_SHARED_DATA=str(shared))
    for k in ("CI", "YOLO4_OLDEST_LANE"):
        env.pop(k, None)
    if ci is not None:
        env["CI"] = ci
    if lane:
        env["YOLO4_OLDEST_LANE"] = "1"
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *args],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout + p.stderr


@pytest.mark.parametrize("ci", ["true", "1"])
def test_an_unexpected_skip_fails_the_run_under_ci(tmp_path, ci):
    rc, out = _pytest(tmp_path, ci=ci)
    assert rc == 1, out
    assert "unexpected skips: 1 (CI: each one fails the run)" in out, out
    assert "test_probe.py::test_lost_tool: Skipped: the stub tool is absent" in out, out
    assert "2 passed, 2 skipped" in out, out  # the tests themselves passed: only the rule failed the run


@pytest.mark.parametrize("ci", [None, "false", ""])
def test_outside_ci_it_is_reported_only(tmp_path, ci):
    rc, out = _pytest(tmp_path, ci=ci)
    assert rc == 0, out
    assert "unexpected skips: 1" in out and "(CI:" not in out, out
    assert "test_lost_tool: Skipped: the stub tool is absent" in out, out


def test_an_expected_skip_passes_under_ci(tmp_path):
    rc, out = _pytest(tmp_path, "-k", "not lost_tool", ci="true")
    assert rc == 0, out
    assert "unexpected skips: 0" in out, out
    assert "no CUDA GPU" in out  # still listed among pytest's own skip lines (-rs)


def test_the_oldest_lane_is_exempt(tmp_path):
    """The lane lacks torch and tbb-devel by design: its skips are neither listed nor failing."""
    rc, out = _pytest(tmp_path, ci="true", lane=True)
    assert rc == 0, out
    assert "unexpected skips" not in out, out


def test_missing_real_data_is_unexpected(tmp_path):
    (tmp_path / "conftest.py").write_text(CONFTEST.read_text())
    (tmp_path / "test_probe.py").write_text(TESTS)
    env = dict(os.environ, CI="true", YOLO4_SHARED_DATA=str(tmp_path / "absent"))
    env.pop("YOLO4_OLDEST_LANE", None)
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "real_data"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = p.stdout + p.stderr
    assert p.returncode == 1, out
    assert "test_real_data: Skipped: ../shared/data absent" in out, out


def test_tests_using_real_data_are_marked_shared(tmp_path):
    rc, out = _pytest(tmp_path, "-m", "not shared", "-k", "real_data or passes")
    assert rc == 0, out
    assert "1 passed, 3 deselected" in out, out
    rc, out = _pytest(tmp_path, "-m", "shared")
    assert rc == 0, out
    assert "1 passed, 3 deselected" in out, out
