"""mypy of the engine builder against the real Python API of TensorRT 8.6.1 (~ JetPack 5's 8.5),
10.13.3.9 and 11.4.0.106.

TensorRT's libraries cannot be installed here, so ``../shared/tools/trt-stubs.sh`` installs each
release's bindings wheel from PyPI, satisfies its library imports with empty stand-ins and writes
``.pyi`` stubs of exactly the classes, methods and enum members of that release. A call that one
release lacks (``BuilderFlag.INT8`` on 11.x, ``IProgressMonitor`` on 8.x) is a mypy error unless it
sits behind the compatibility layer with a ``type: ignore[...]`` naming the releases without it.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO.parent / "shared" / "tools" / "trt-stubs.sh"
VERSIONS = ("8.6.1", "10.13.3.9", "11.4.0.106")
FILES = ["yolo4/convert/trt_compat.py", "yolo4/convert/engine_builder.py", "yolo4/engine_meta.py",
         "yolo4/runtime/cuda_context.py",
         "yolo4/runtime/backends/tensorrt_backend.py"]
if (REPO / "yolo4" / "calib" / "calibrators.py").is_file():
    FILES.append("yolo4/calib/calibrators.py")


@pytest.fixture(scope="session")
def trt_stubs(tmp_path_factory):
    """Stubs of the three releases in a temp folder (~20 s; needs PyPI and a C compiler)."""
    pytest.importorskip("mypy", reason="mypy is not installed (pip install -e .[dev])")
    if not TOOL.is_file():
        pytest.skip(f"{TOOL} absent: TensorRT stubs cannot be generated")
    out = tmp_path_factory.mktemp("trt-stubs")
    env = dict(os.environ, PYTHON=sys.executable)
    try:
        p = subprocess.run(["bash", str(TOOL), str(out)], capture_output=True, text=True, env=env, timeout=900)
    except subprocess.TimeoutExpired:
        pytest.skip("trt-stubs.sh timed out (no PyPI?)")
    if p.returncode != 0 or not all((out / v / "tensorrt" / "__init__.pyi").is_file() for v in VERSIONS):
        tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["no output"]
        pytest.skip(f"trt-stubs.sh failed (no PyPI or no C compiler?): {tail[0]}")
    return out


def _mypy(stubs: Path, version: str, files, cache: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, MYPYPATH=str(stubs / version))
    return subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(stubs / "mypy.ini"),
                           "--cache-dir", str(cache), *files], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=600)


@pytest.mark.parametrize("version", VERSIONS)
def test_engine_builder_types_against_tensorrt(trt_stubs, version, tmp_path):
    p = _mypy(trt_stubs, version, FILES, tmp_path / "mypy-cache")
    assert p.returncode == 0, f"TensorRT {version}:\n{p.stdout}{p.stderr}"


@pytest.mark.parametrize("version, fails", [("8.6.1", False), ("10.13.3.9", False), ("11.4.0.106", True)])
def test_the_stubs_have_teeth(trt_stubs, version, fails, tmp_path):
    """The check is real: BuilderFlag.INT8 and calibrators exist through 10.x and not in 11.x."""
    probe = tmp_path / "probe.py"
    probe.write_text("import tensorrt as trt\n\n"
                     "def f(config: trt.IBuilderConfig) -> None:\n"
                     "    config.set_flag(trt.BuilderFlag.INT8)\n"
                     "    print(trt.IInt8EntropyCalibrator2)\n")
    p = _mypy(trt_stubs, version, [str(probe)], tmp_path / "mypy-cache")
    assert (p.returncode != 0) == fails, p.stdout + p.stderr
    if fails:
        assert 'has no attribute "INT8"' in p.stdout and "IInt8EntropyCalibrator2" in p.stdout
