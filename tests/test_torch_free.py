"""The parts that run on a Jetson without torch (runtime, calib, data, the ground-floor contract
leaves: model info, NMS parameters, engine metadata, ONNX facts; the engine builder in convert/)
import neither torch nor onnx, and stay Python 3.8 code."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "yolo4"

#: packages whose every module must import without torch
TORCH_FREE_PACKAGES = ("yolo4.runtime", "yolo4.data", "yolo4.calib", "yolo4.plugins")
#: single modules that must import without torch (and ``yolo4.convert`` without onnx either)
TORCH_FREE_MODULES = ("yolo4", "yolo4.errors", "yolo4.fileio", "yolo4.model_info", "yolo4.nms_params",
                      "yolo4.engine_meta", "yolo4.onnx_facts", "yolo4.assets",
                      "yolo4.pipeline", "yolo4.cli", "yolo4.convert", "yolo4.convert.trt_compat",
                      "yolo4.convert.engine_builder", "yolo4.selftest")
#: files vermin checks for Python 3.8 (the Jetson's JetPack 5 Python)
PY38_PATHS = ("yolo4/runtime", "yolo4/data", "yolo4/calib", "yolo4/model_info.py", "yolo4/nms_params.py",
              "yolo4/engine_meta.py", "yolo4/onnx_facts.py", "yolo4/errors.py",
              "yolo4/fileio.py", "yolo4/convert/__init__.py", "yolo4/convert/trt_compat.py",
              "yolo4/convert/engine_builder.py", "yolo4/plugins", "yolo4/selftest.py")


def _modules():
    names = set(TORCH_FREE_MODULES)
    for pkg in TORCH_FREE_PACKAGES:
        root = PKG.joinpath(*pkg.split(".")[1:])
        for f in root.rglob("*.py"):
            parts = list(f.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            names.add(".".join(parts))
    return sorted(names)


def test_every_torch_free_module_imports_without_torch_or_onnx():
    mods = _modules()
    assert "yolo4.runtime.backends.torch_backend" in mods and "yolo4.data.images" in mods
    code = ("import importlib, sys\n"
            f"mods = {mods!r}\n"
            "for m in mods:\n"
            "    importlib.import_module(m)\n"
            "bad = sorted(k for k in ('torch', 'onnx', 'onnxruntime', 'tensorrt', 'tensorrt_rtx', 'pycuda') "
            "if k in sys.modules)\n"
            "print(len(mods), bad)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert p.returncode == 0, p.stderr
    count, bad = p.stdout.strip().split(" ", 1)
    assert int(count) == len(mods) and bad == "[]", p.stdout


def test_torch_free_code_is_python_3_8():
    vermin = shutil.which("vermin") or str(Path(sys.executable).parent / "vermin")
    if not Path(vermin).is_file():
        pytest.skip("vermin is not installed (pip install -e .[dev])")
    p = subprocess.run([vermin, "-q", "--no-tips", "--violations", "-t=3.8-", *PY38_PATHS],
                       capture_output=True, text=True, cwd=REPO, timeout=300)
    assert p.returncode == 0 and not p.stdout.strip(), p.stdout + p.stderr
