"""Installs on a Jetson as shipped (JetPack 5.1: Python 3.8, python3-pip 20.0.2, aarch64).

- the `>=` lower bounds of pyproject.toml are exactly the versions the oldest-versions lane
  (scripts/test-oldest.sh, constraints-oldest.txt) tests;
- the build requirements and the runtime dependencies resolve for Python 3.8 on manylinux2014_aarch64
  from binary wheels (`pip download`, PyPI; skipped when PyPI is unreachable);
- pip 20.0.2 installs the project (non-editable: it has no PEP 660) in a fresh Python 3.8 venv, and
  `yolo4 --help` and `yolo4 selftest` run from it (skipped when no Python 3.8 is found).
The slow ones run in the main suite only, not again in the oldest-versions lane.
"""

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
IN_LANE = os.environ.get("YOLO4_OLDEST_LANE") == "1"

#: export-extra packages a Jetson user installs with pip (README: `pip3 install onnx onnxruntime`);
#: onnxsim has no aarch64 wheel for Python 3.8 and is not needed on the device
JETSON_EXPORT_PACKAGES = ("onnx", "onnxruntime")


def _norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject():
    tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11 (runs in the main suite)")
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _oldest_pins():
    pins = {}
    for line in (REPO / "constraints-oldest.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[_norm(name)] = version
    return pins


def _runtime_requirements(project):
    """[project] dependencies plus the export extra: what the oldest-versions lane installs."""
    return list(project["dependencies"]) + list(project["optional-dependencies"]["export"])


def test_lower_bounds_are_what_the_oldest_lane_tests():
    from packaging.requirements import Requirement
    from packaging.version import Version

    pins = _oldest_pins()
    wrong = []
    for text in _runtime_requirements(_pyproject()["project"]):
        req = Requirement(text)
        lower = [s.version for s in req.specifier if s.operator == ">="]
        assert lower, f"pyproject.toml: {text!r} has no >= lower bound"
        pin = pins.get(_norm(req.name))
        if pin is None or Version(pin) != Version(lower[0]):
            wrong.append(f"{text} (constraints-oldest.txt: {pin})")
    assert not wrong, f"lower bound != oldest-versions lane pin: {wrong}"


def test_the_oldest_lane_is_wired_into_the_test_command():
    test_sh = (REPO / "scripts" / "test.sh").read_text()
    lane = (REPO / "scripts" / "test-oldest.sh").read_text()
    assert 'scripts/test-oldest.sh" "$@"' in test_sh
    assert '-c "$root/constraints-oldest.txt"' in lane and "3.8" in lane
    assert ".venv-oldest/" in (REPO / ".gitignore").read_text().splitlines()


def _pypi_reachable():
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


def _find_py38():
    """A Python 3.8 that runs (a pyenv shim named python3.8 may not), as scripts/test-oldest.sh finds it."""
    for c in (os.environ.get("YOLO4_PY38"), shutil.which("python3.8"),
              str(Path.home() / ".pyenv/versions/3.8.18/bin/python3.8"),
              "/root/.pyenv/versions/3.8.18/bin/python3.8"):
        if c and Path(c).is_file() and subprocess.run(
                [c, "-c", "import sys; sys.exit(sys.version_info[:2] != (3, 8))"],
                capture_output=True, timeout=60).returncode == 0:
            return c
    return None


def _pypi_only_env():
    """The environment with pip reading PyPI only, as on a Jetson: no pip config files, find-links or
    extra indexes of this machine (pip 20.0.2 honours Requires-Python from PyPI's index, not from a
    local file index without it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k == "PIP_CERT"}
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


needs_pypi = pytest.mark.skipif(not _pypi_reachable(), reason="PyPI (pypi.org:443) is unreachable")
main_suite_only = pytest.mark.skipif(IN_LANE, reason="runs once, in the main suite")


@pytest.mark.slow
@main_suite_only
@needs_pypi
def test_build_and_runtime_requirements_resolve_for_python38_aarch64(tmp_path):
    project = _pyproject()
    reqs = list(project["build-system"]["requires"]) + list(project["project"]["dependencies"])
    reqs += [r for r in project["project"]["optional-dependencies"]["export"]
             if _norm(re.match(r"[A-Za-z0-9_.\-]+", r).group(0)) in JETSON_EXPORT_PACKAGES]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--python-version", "3.8",
           "--platform", "manylinux2014_aarch64", "--only-binary=:all:", "-d", str(tmp_path), *reqs]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=_pypi_only_env())
    assert p.returncode == 0, f"does not resolve for Python 3.8 aarch64: {reqs}\n{p.stderr[-3000:]}"
    got = {_norm(f.name.split("-")[0]) for f in tmp_path.iterdir()}
    names = {_norm(re.match(r"[A-Za-z0-9_.\-]+", r).group(0)) for r in reqs}
    assert names <= got, sorted(names - got)


@pytest.mark.slow
@main_suite_only
@needs_pypi
def test_pip_20_0_2_installs_and_runs_on_python38(tmp_path):
    """JetPack 5.1's pip (20.0.2, no PEP 660, legacy resolver) installs the project with its runtime
    dependencies at the oldest-lane versions; the console script runs `--help` and `selftest`."""
    py38 = _find_py38()
    if py38 is None:
        pytest.skip("no Python 3.8 found (set YOLO4_PY38)")
    venv = tmp_path / "venv"
    subprocess.run([py38, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    pip_env = _pypi_only_env()
    p = subprocess.run(pip + ["install", "-q", "pip==20.0.2"], capture_output=True, text=True, timeout=600,
                       env=pip_env)
    assert p.returncode == 0, p.stderr
    assert "pip 20.0.2" in subprocess.run(pip + ["--version"], capture_output=True, text=True).stdout
    # a copy without the developers' build/ and egg-info, as a fresh clone is
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "build", "dist", "*.egg-info", "runs", "__pycache__", ".pytest_cache", "*.onnx",
        "*.engine", "*.weights", "*.pt", ".whl", ".ruff_cache", ".mypy_cache"))
    p = subprocess.run(pip + ["install", "-q", "-c", str(REPO / "constraints-oldest.txt"), str(src)],
                       capture_output=True, text=True, timeout=900, cwd=tmp_path, env=pip_env)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]

    yolo4 = str(venv / "bin" / "yolo4")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    h = subprocess.run([yolo4, "--help"], capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert h.returncode == 0 and "selftest" in h.stdout and "build-engine" in h.stdout, h.stdout + h.stderr

    s = subprocess.run([yolo4, "selftest"], capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    out = s.stdout + s.stderr
    # a CPU-only machine without TensorRT/pycuda: nothing fails, the GPU lines are skipped with the reason
    assert s.returncode == 0 and "Traceback" not in out, out
    assert re.search(r"^INFO\s+platform\s+Python 3\.8\.\d+, yolo4 ", s.stdout, re.M), out
    assert re.search(r"^SKIP\s+cuda\s+pycuda .*not installed", s.stdout, re.M), out
    assert re.search(r"^\d+ passed, 0 failed, \d+ skipped$", s.stdout, re.M), out
    # the installed package is the copy's, not the working tree's
    w = subprocess.run([str(venv / "bin" / "python"), "-c", "import yolo4; print(yolo4.__file__)"],
                       capture_output=True, text=True, cwd=tmp_path, env=env)
    assert str(venv) in w.stdout, w.stdout + w.stderr


@pytest.mark.parametrize("args", [("export", "--cfg", "yolov4-tiny", "-o", "m.onnx"), ("train", "--epochs", "1")])
def test_a_command_missing_torch_says_so_in_one_line(tmp_path, args):
    """On a Jetson without torch, `yolo4 export`/`train` exit 2 with one line naming torch and the
    extra that installs it (before: a ModuleNotFoundError traceback, exit 1)."""
    code = ("import sys; sys.modules['torch'] = None\n"
            "from yolo4.cli import main\n"
            f"main({list(args)!r})\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert errors == [f"error: yolo4 {args[0]} needs torch, which is not installed (pip install 'yolo4[train]')"], \
        p.stderr
