"""Verification of one model form against another: per-precision tolerances, any two callables (the
engine builder compares a TensorRT engine with ONNX Runtime the same way), torch-free import."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from yolo4.convert import (
    TOLERANCES,
    ExportVerificationError,
    Tolerance,
    compare_backends,
    compare_outputs,
    reference_input,
)
from yolo4.model_info import ModelInfo

REPO = Path(__file__).resolve().parents[1]


def test_verify_is_torch_free():
    """The engine builder runs on Jetsons without torch: importing and using verification (on plain
    callables) must not import torch or onnx."""
    code = """
import sys
import numpy as np
import yolo4.convert
assert "torch" not in sys.modules and "onnx" not in sys.modules
from yolo4.convert import TOLERANCES, ExportVerificationError, VerifyResult, compare_backends, reference_input
from yolo4.convert.verify import verify_onnx, torch_callable
f = lambda x: (np.zeros((x.shape[0], 6, 4), np.float32), np.zeros((x.shape[0], 6, 2), np.float32))
r = compare_backends(f, f, "fp16", input_hw=(64, 96))
assert r.passed and r.batch == 2
bad = [m for m in sys.modules if m.split(".")[0] in ("torch", "onnx", "onnxruntime")]
assert not bad, bad
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=str(REPO), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_tolerance_table():
    t = Tolerance(rtol=1e-2, atol=0.5, scale_floor=1.0)
    assert t.allowed(100.0) == pytest.approx(1.5) and t.allowed(0.1) == pytest.approx(0.51)
    fp32, fp16 = TOLERANCES["fp32"], TOLERANCES["fp16"]
    assert set(fp32) == set(fp16) == {"boxes", "scores"}
    assert fp32["boxes"].allowed(416.0) == pytest.approx(0.0416)  # 1e-4 x box scale
    assert fp32["scores"].allowed(0.0) == pytest.approx(1e-6)  # scale floored at 0.01
    assert fp16["boxes"].allowed(416.0) == pytest.approx(4.16)  # 1 % of the box scale
    assert fp16["scores"].allowed(0.9) == pytest.approx(0.02)  # absolute


class _Fake:
    """A backend-like callable: fixed outputs for each input, plus an offset; records its inputs."""

    def __init__(self, box_offset=0.0, score_offset=0.0, info=None, n=30, c=3):
        self.box_offset, self.score_offset, self.info, self.n, self.c = box_offset, score_offset, info, n, c
        self.seen = []

    def __call__(self, x):
        self.seen.append(x)
        b = x.shape[0]
        rng = np.random.default_rng(1)
        boxes = rng.uniform(0, 400, (b, self.n, 4)).astype(np.float32)
        boxes[0, 0, 0] = 400.0  # box scale exactly 400 px
        scores = rng.uniform(0, 0.5, (b, self.n, self.c)).astype(np.float32)
        return boxes + np.float32(self.box_offset), scores + np.float32(self.score_offset)


def test_compare_backends_judges_by_precision():
    info = ModelInfo(names=["a", "b", "c"], input_hw=(64, 96), letter_box=True)
    ref = _Fake(info=info)
    close = compare_backends(ref, _Fake(box_offset=0.03), "fp32", reference_name="ORT", candidate_name="TRT")
    assert close.passed and close.precision == "fp32" and (close.reference, close.candidate) == ("ORT", "TRT")
    assert close.max_abs_diff["boxes"] == pytest.approx(0.03, rel=1e-3)
    assert close.output_scale["boxes"] == 400.0 and close.tolerance["boxes"] == pytest.approx(0.04)
    # the input came from the candidate's/reference's .info: 2 letterboxed reference images at 64x96
    x, src = reference_input((64, 96), 2, letter_box=True)
    assert np.array_equal(ref.seen[0], x) and close.input_source == src and close.batch == 2
    far = compare_backends(ref, _Fake(box_offset=0.05), "fp32")
    assert not far.passed and "boxes max|diff| 0.05" in far.summary()
    assert compare_backends(ref, _Fake(box_offset=3.0), "fp16").passed  # 3 px <= 1 % of 400 px
    assert not compare_backends(ref, _Fake(box_offset=5.0), "fp16").passed
    assert compare_backends(ref, _Fake(score_offset=0.019), "fp16").passed
    assert not compare_backends(ref, _Fake(score_offset=0.021), "fp16").passed
    custom = {"boxes": Tolerance(atol=10.0), "scores": Tolerance(atol=0.1)}
    r = compare_backends(ref, _Fake(box_offset=5.0), custom)
    assert r.passed and r.precision == "custom"


def test_compare_backends_failures():
    ref = _Fake()
    x = np.zeros((1, 3, 32, 32), np.float32)
    with pytest.raises(ExportVerificationError, match="output scores has shape .* in candidate"):
        compare_backends(ref, _Fake(c=4), x=x)
    with pytest.raises(ValueError, match="unknown precision 'int4'"):
        compare_backends(ref, ref, "int4", x=x)
    with pytest.raises(ValueError, match="needs x, input_hw"):
        compare_backends(ref, ref)  # no input, no .info

    def nan_boxes(a):
        boxes, scores = ref(a)
        boxes[0, 1, 1] = np.nan
        return boxes, scores

    r = compare_backends(ref, nan_boxes, x=x)
    assert r.max_abs_diff["boxes"] == float("inf") and not r.passed and r.input_source == "given input"
    r = compare_outputs([np.ones(3)], [np.ones(3)], {"logits": Tolerance(atol=0.0)}, output_names=["logits"])
    assert r.passed and r.max_abs_diff == {"logits": 0.0}


@pytest.mark.shared
def test_torch_vs_onnxruntime_backend(tiny, tmp_path):
    """Two real backends through the same check: PyTorch vs the ONNX Runtime backend of the export."""
    pytest.importorskip("onnxruntime")
    from yolo4.convert import export_onnx, torch_callable
    from yolo4.runtime.backends import create_backend

    res = export_onnx(tiny, tmp_path / "t.onnx", img_size=160, simplify=False, verify=False)
    be = create_backend("onnxruntime", path=str(res.path))
    try:
        r = compare_backends(torch_callable(tiny), be, "fp32", batch=3, reference_name="PyTorch",
                             candidate_name="ONNX Runtime")
    finally:
        be.close()
    assert r.passed and r.batch == 3 and r.input_source.startswith("dog.jpg")
    assert 50 < r.output_scale["boxes"] < 1000 and r.max_abs_diff["boxes"] < 0.02
    # a wrong reference is caught: the module with its first conv's weights scaled by 1.05
    import torch

    w = tiny.conv_layers[0].conv.weight
    saved = w.detach().clone()
    be = create_backend("onnxruntime", path=str(res.path))
    try:
        with torch.no_grad():
            w.mul_(1.05)
        x, _ = reference_input((160, 160), 2)
        bad = compare_backends(torch_callable(tiny), be, "fp32", x=x)
    finally:
        with torch.no_grad():
            w.copy_(saved)
        be.close()
    assert not bad.passed and bad.input_source == "given input"
