"""Shared fixtures: the real data in ../shared/data, used read-only through the asset mirror."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("YOLO4_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()

if SHARED_DATA.is_dir():
    # Named assets (cfgs, weights, datasets) resolve through the mirror, never the network.
    os.environ.setdefault("YOLO4_ASSET_MIRROR", str(SHARED_DATA))


#: torch is not installed here (the oldest-versions lane, scripts/test-oldest.sh: Python 3.8, no torch)
TORCH_ABSENT = importlib.util.find_spec("torch") is None
#: what a failure caused by the missing torch says: the import error, or the CLI's one-line error
_NEEDS_TORCH = re.compile(r"No module named 'torch'|needs torch, which is not installed")
_NEEDS_TORCH_REASON = "Skipped: needs torch, which is not installed (pip install -e '.[train]')"


#: Skip reasons expected in the main suite: what it lacks by design (a GPU and its driver, NVIDIA's
#: TensorRT, pycuda, nvcc, a Jetson), running as root, and opt-in runs. Every other skip there means
#: something the suite is meant to have (../shared, g++, HIP-CPU, tbb-devel, tensorrt-rtx, TensorBoard, mypy
#: and the stub tool, the project's own modules) went missing: the run ends with a list of them, and under
#: CI (``CI=true``) such a skip fails the run (exit status 1) so a lost check cannot pass unseen.
EXPECTED_SKIPS = re.compile("|".join([
    r"\bopt-in\b",
    r"no (CUDA )?GPU",
    r"CUDA driver",
    r"pycuda",
    r"nvcc",
    r"\bTensorRT\b(?! for RTX)[^;]*(not installed|absent|unavailable)",
    r"Jetson",
    r"running as root",
]))
_UNEXPECTED_SKIPS = []


def _skip_reason(longrepr) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _note_skip(rep, where: str) -> None:
    """Remember a skip the main suite does not expect (the oldest-versions lane lacks things by design)."""
    if rep.skipped and not hasattr(rep, "wasxfail") and not os.environ.get("YOLO4_OLDEST_LANE"):
        reason = _skip_reason(rep.longrepr)
        if not EXPECTED_SKIPS.search(reason):
            _UNEXPECTED_SKIPS.append("%s: %s" % (where, reason))


def _in_ci() -> bool:
    """``CI`` is set to a true value (``true``, ``1``, ``yes``), as CI services and ``.ci/run``'s callers do."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def pytest_sessionfinish(session, exitstatus):
    """Under CI, an unexpected skip in the main suite fails the run (exit status 1)."""
    if _UNEXPECTED_SKIPS and _in_ci() and not os.environ.get("YOLO4_OLDEST_LANE") and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    """The main suite's unexpected skips, one line each, and their count."""
    if os.environ.get("YOLO4_OLDEST_LANE"):
        return
    fails = " (CI: each one fails the run)" if _UNEXPECTED_SKIPS and _in_ci() else ""
    terminalreporter.write_sep("-", "unexpected skips: %d%s" % (len(_UNEXPECTED_SKIPS), fails))
    for line in _UNEXPECTED_SKIPS:
        terminalreporter.write_line(line)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """Without torch, a test module that cannot be imported because of it is skipped with that reason
    instead of failing collection; any other import error still fails."""
    outcome = yield
    rep = outcome.get_result()
    if TORCH_ABSENT and rep.failed and _NEEDS_TORCH.search(str(rep.longrepr)):
        rep.outcome = "skipped"
        rep.longrepr = (str(collector.path), 0, _NEEDS_TORCH_REASON)
    _note_skip(rep, str(collector.nodeid))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Without torch, a test (or its fixture) that fails only because torch is missing -- an import of
    it, or a `yolo4` subprocess refusing for that reason -- is skipped with that reason, so the
    oldest-versions lane runs every other test. With torch installed nothing changes."""
    outcome = yield
    rep = outcome.get_result()
    if TORCH_ABSENT and rep.failed and call.excinfo is not None and _NEEDS_TORCH.search(str(call.excinfo.value)):
        rep.outcome = "skipped"
        rep.longrepr = (str(item.path), item.location[1] or 0, _NEEDS_TORCH_REASON)
    _note_skip(rep, item.nodeid)


def _uses_real_data(item) -> bool:
    """A test that takes ../shared/data: through the shared_data fixture (directly or via another
    fixture), or a module that builds paths from SHARED_DATA itself."""
    return "shared_data" in getattr(item, "fixturenames", ()) or getattr(item.module, "SHARED_DATA", None) is not None


def pytest_collection_modifyitems(config, items):
    """Every test that uses the real data carries the ``shared`` marker (``-m "not shared"`` runs the rest)."""
    for item in items:
        if item.get_closest_marker("shared") is None and _uses_real_data(item):
            item.add_marker(pytest.mark.shared)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data absent: real cfgs/weights/datasets unavailable")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Downloads in tests go to a per-session temp cache, never ~/.cache."""
    monkeypatch.setenv("YOLO4_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "yolo4-cache"))


@pytest.fixture(scope="module")
def tiny(shared_data):
    """The real yolov4-tiny (darknet cfg + official COCO weights from ../shared/data), eval mode."""
    from yolo4.model import load_darknet

    return load_darknet(shared_data / "darknet" / "cfg" / "yolov4-tiny.cfg",
                        shared_data / "weights" / "yolov4-tiny.weights")


#: the installed console script (``pip install -e .`` puts it beside the interpreter), or None
YOLO4_SCRIPT = Path(sys.executable).parent / ("yolo4.exe" if os.name == "nt" else "yolo4")


def run_cli(*args, env=None, cwd=None, script=None, timeout=600):
    """Run the ``yolo4`` command in a subprocess, as a user does.

    Uses the installed console script when it exists (``script=True`` requires it and skips the
    test otherwise), else ``python -m yolo4.cli``. ``env`` entries are added to the environment
    (a value of None removes the variable). Returns the ``CompletedProcess`` (text stdout/stderr).
    Where torch is not installed, a command that fails for that reason skips the test.
    """
    e = dict(os.environ)
    for k, v in (env or {}).items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = str(v)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    if script or (script is None and YOLO4_SCRIPT.is_file()):
        if not YOLO4_SCRIPT.is_file():
            pytest.skip("the yolo4 console script is not installed (pip install -e .)")
        cmd = [str(YOLO4_SCRIPT)]
    else:
        cmd = [sys.executable, "-m", "yolo4.cli"]
    proc = subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True, env=e,
                          cwd=cwd or REPO, timeout=timeout)
    if TORCH_ABSENT and proc.returncode != 0 and _NEEDS_TORCH.search(proc.stderr):
        pytest.skip(_NEEDS_TORCH_REASON[len("Skipped: "):])  # the oldest-versions lane: no torch
    return proc


def assert_user_error(proc, *needles):
    """Exit status 2, one ``error:`` line on stderr naming what is wrong, no traceback; returns the line."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def assert_usage_error(proc, *needles):
    """typer's usage error: exit status 2, a ``Usage: yolo4 ...`` line, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out and "Usage: yolo4" in out, out
    for n in needles:
        assert n in out, (n, out)


@pytest.fixture
def no_runaway_nms_loops(monkeypatch):
    """Every pass of :func:`postprocess` holds at least one image, every run of the pair path at least one
    candidate, and the NMS kernels are entered a bounded number of times: a loop that stops advancing
    fails the test at once instead of hanging it."""
    import yolo4.runtime.postprocess as pp

    chunk, pairs, dense, kernel_calls = pp._postprocess_chunk, pp._greedy_pairs, pp._greedy_dense, [0]

    def chunk_guard(boxes, *args, **kwargs):
        assert boxes.shape[0] >= 1, "postprocess made a pass over no image"
        return chunk(boxes, *args, **kwargs)

    def count_kernel_call():
        kernel_calls[0] += 1
        assert kernel_calls[0] <= 10_000, "the NMS kernels entered over 10000 times in one test"

    def pairs_guard(boxes, *args, **kwargs):
        count_kernel_call()
        assert boxes.shape[0] >= 1, "a pair-path run over no candidate"
        return pairs(boxes, *args, **kwargs)

    def dense_guard(*args, **kwargs):
        count_kernel_call()
        return dense(*args, **kwargs)

    monkeypatch.setattr(pp, "_postprocess_chunk", chunk_guard)
    monkeypatch.setattr(pp, "_greedy_pairs", pairs_guard)
    monkeypatch.setattr(pp, "_greedy_dense", dense_guard)
