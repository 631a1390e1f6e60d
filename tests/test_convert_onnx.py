"""ONNX export of the real yolov4-tiny: ORT vs torch at several batch sizes, fixed batch, metadata,
onnxsim, the export cache, atomic writes and verification failures."""

import os
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

onnxruntime = pytest.importorskip("onnxruntime")

from yolo4.convert import ExportVerificationError, export_cached, export_onnx, reference_input  # noqa: E402
from yolo4.convert import export_cache as export_cache_mod  # noqa: E402
from yolo4.errors import Yolo4Error  # noqa: E402
from yolo4.model_info import ModelInfo  # noqa: E402

pytestmark = pytest.mark.shared
HW = (416, 416)


@pytest.fixture(scope="module")
def tiny_onnx(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny") / "yolov4-tiny.onnx"
    res = export_onnx(tiny, out, img_size=416)
    return res


def _session(path):
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _torch(module, x):
    with torch.no_grad():
        b, s = module(torch.from_numpy(x))
    return b.numpy(), s.numpy()


def _dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_dynamic_batch_matches_torch(tiny, tiny_onnx):
    model = onnx.load(str(tiny_onnx.path))
    assert [i.name for i in model.graph.input] == ["images"]
    assert [o.name for o in model.graph.output] == ["boxes", "scores"]
    n = 3 * (13 * 13 + 26 * 26)  # yolov4-tiny at 416: strides 32 and 16, 3 anchors each
    assert _dims(model.graph.input[0]) == ["batch", 3, 416, 416]
    assert _dims(model.graph.output[0]) == ["batch", n, 4]
    assert _dims(model.graph.output[1]) == ["batch", n, 80]
    assert all(t.elem_type == onnx.TensorProto.FLOAT for t in
               (v.type.tensor_type for v in list(model.graph.input) + list(model.graph.output)))
    sess = _session(tiny_onnx.path)
    for batch in (1, 2, 8):
        x, _ = reference_input(HW, batch)
        boxes, scores = sess.run(["boxes", "scores"], {"images": x})
        ref_boxes, ref_scores = _torch(tiny, x)
        assert boxes.shape == (batch, n, 4) and scores.shape == (batch, n, 80)
        for got, ref in ((boxes, ref_boxes), (scores, ref_scores)):
            scale = float(np.abs(ref).max())
            assert float(np.abs(got - ref).max()) <= 1e-4 * scale, (batch, scale)
    assert tiny_onnx.opset == 17 and tiny_onnx.mish_mode == "none"  # tiny uses leaky ReLU only
    assert model.ir_version <= 8  # TensorRT 8.5's parser (ONNX 1.12) reads IR <= 8
    assert tiny_onnx.batch is None and tiny_onnx.input_hw == HW


def test_reference_image_detections(tiny_onnx, shared_data):
    """dog.jpg through the exported model: the class maxima match OpenCV's darknet importer
    (shared/README: dog 0.87, truck 0.82, bicycle 0.61 at 416, plain resize)."""
    x, src = reference_input(HW, 1)
    assert src.startswith("dog.jpg")
    _, scores = _session(tiny_onnx.path).run(["boxes", "scores"], {"images": x})
    names = (shared_data / "darknet" / "coco.names").read_text().split("\n")
    best = {names[c]: float(scores[0, :, c].max()) for c in range(80)}
    for name, ref in (("dog", 0.87), ("truck", 0.82), ("bicycle", 0.61)):
        assert abs(best[name] - ref) < 0.03, (name, best[name])
    others = sorted((v, k) for k, v in best.items() if k not in ("dog", "truck", "bicycle"))
    assert others[-1][0] < 0.5, others[-3:]


def test_verification_numbers_are_reported(tiny_onnx):
    v = tiny_onnx.verify
    assert v is not None and v.passed and v.batch == 2  # dynamic batch checked at a batch other than 1
    assert set(v.max_abs_diff) == {"boxes", "scores"}
    assert 100 < v.output_scale["boxes"] < 2000 and 0.5 < v.output_scale["scores"] <= 1.0
    assert tiny_onnx.max_abs_diff == max(v.max_abs_diff.values())
    assert tiny_onnx.max_abs_diff <= 1e-4 * tiny_onnx.output_scale


def test_metadata_round_trip(tiny, tiny_onnx):
    model = onnx.load(str(tiny_onnx.path))
    meta = {p.key: p.value for p in model.metadata_props}
    info = ModelInfo.from_metadata(meta)
    expected = tiny.model_info()
    assert info.names == expected.names and len(info.names) == 80 and info.names[16] == "dog"
    assert info.input_hw == (416, 416)
    assert info.anchors == [[(81.0, 82.0), (135.0, 169.0), (344.0, 319.0)],
                            [(23.0, 27.0), (37.0, 58.0), (81.0, 82.0)]]  # yolov4-tiny.cfg masks 3,4,5 / 1,2,3
    assert info.strides == [32, 16]
    assert info.letter_box is False and info.nms_kind == expected.nms_kind
    assert info.cfg_sha256 == tiny.cfg_sha256() and len(info.cfg_sha256) == 64
    assert model.producer_name == "yolo4"
    from yolo4 import __version__
    assert model.producer_version == __version__ and info.yolo4_version == __version__


def test_fixed_batch_and_size(tiny, tmp_path):
    res = export_onnx(tiny, tmp_path / "b2.onnx", img_size=(320, 416), batch=2, names=[f"x{i}" for i in range(80)])
    model = onnx.load(str(res.path))
    n = 3 * (10 * 13 + 20 * 26)
    assert _dims(model.graph.input[0]) == [2, 3, 320, 416]
    assert _dims(model.graph.output[0]) == [2, n, 4]
    assert _dims(model.graph.output[1]) == [2, n, 80]
    meta = ModelInfo.from_metadata({p.key: p.value for p in model.metadata_props})
    assert meta.input_hw == (320, 416) and meta.names[5] == "x5"
    sess = _session(res.path)
    x, _ = reference_input((320, 416), 2)
    boxes, scores = sess.run(None, {"images": x})
    ref_boxes, ref_scores = _torch(tiny, x)
    assert np.abs(boxes - ref_boxes).max() <= 1e-4 * np.abs(ref_boxes).max()
    assert np.abs(scores - ref_scores).max() <= 1e-4 * np.abs(ref_scores).max()
    with pytest.raises(Exception, match="(?i)dimension|shape|got"):
        sess.run(None, {"images": np.concatenate([x, x[:1]])})  # static batch: 3 is refused


def test_simplify_reduces_nodes_and_checks(tiny, tiny_onnx, tmp_path):
    plain = export_onnx(tiny, tmp_path / "plain.onnx", img_size=416, simplify=False)
    assert tiny_onnx.simplified and not plain.simplified
    m_simp, m_plain = onnx.load(str(tiny_onnx.path)), onnx.load(str(plain.path))
    onnx.checker.check_model(m_simp, full_check=True)
    onnx.checker.check_model(m_plain, full_check=True)
    assert len(m_simp.graph.node) <= len(m_plain.graph.node)
    assert _dims(m_simp.graph.input[0])[0] == "batch"  # simplification kept the dynamic batch
    x, _ = reference_input(HW, 3)
    a = _session(tiny_onnx.path).run(None, {"images": x})
    b = _session(plain.path).run(None, {"images": x})
    for u, v in zip(a, b):
        assert np.abs(u - v).max() <= 1e-4 * np.abs(v).max()


def test_bad_arguments(tiny, tmp_path):
    with pytest.raises(Yolo4Error, match="img_size must be a positive multiple of 32"):
        export_onnx(tiny, tmp_path / "a.onnx", img_size=400)
    with pytest.raises(Yolo4Error, match="opset"):
        export_onnx(tiny, tmp_path / "a.onnx", opset=9)
    with pytest.raises(Yolo4Error, match="names"):
        export_onnx(tiny, tmp_path / "a.onnx", names=["a", "b"])
    assert not (tmp_path / "a.onnx").exists()


class _Drifting(torch.nn.Module):
    """Wraps a model; outside tracing its boxes move by 5 px, so the traced graph differs from eager
    PyTorch (as a wrongly traced model would): export must catch it."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.input_hw = inner.input_hw
        self.cfg_text = inner.cfg_text
        self.names = inner.names

    def model_info(self, names=None):
        return self.inner.model_info(names)

    def forward(self, x):
        boxes, scores = self.inner(x)
        return boxes + (0.0 if torch.jit.is_tracing() else 5.0), scores


def test_failed_verification_writes_nothing(tiny, tmp_path):
    out = tmp_path / "sub" / "bad.onnx"
    with pytest.raises(ExportVerificationError, match="differs"):
        export_onnx(_Drifting(tiny), out, img_size=128, simplify=False)
    assert not out.exists()
    assert list(out.parent.iterdir()) == []  # temp file removed too
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        res = export_onnx(_Drifting(tiny), out, img_size=128, simplify=False, verify="warn")
    assert out.is_file() and not res.verify.passed
    assert any("differs" in str(x.message) for x in w)


def test_overwrite_is_atomic(tiny, tmp_path):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"old")
    export_onnx(tiny, out, img_size=128, simplify=False, verify=False)
    onnx.checker.check_model(onnx.load(str(out)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_export_cached_reuses(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO4_CACHE_DIR", str(tmp_path / "cache"))
    messages = []
    p1 = export_cached(tiny, weights_digest="weights-sha-1", img_size=128, log=messages.append)
    assert p1.parent == tmp_path / "cache" / "onnx" and p1.suffix == ".onnx" and p1.is_file()
    assert any("ONNX Runtime vs PyTorch" in m for m in messages)
    calls = []
    monkeypatch.setattr(export_cache_mod, "export_onnx", lambda *a, **k: calls.append(1))
    assert export_cached(tiny, weights_digest="weights-sha-1", img_size=128) == p1 and calls == []  # hit
    p2 = export_cached(tiny, weights_digest="weights-sha-2", img_size=128)  # other weights: other file
    p3 = export_cached(tiny, weights_digest="weights-sha-1", img_size=160)
    p4 = export_cached(tiny, weights_digest="weights-sha-1", img_size=128, opset=18)
    assert len({p1, p2, p3, p4}) == 4 and len(calls) == 3
    meta = {p.key: p.value for p in onnx.load(str(p1)).metadata_props}
    assert ModelInfo.from_metadata(meta).input_hw == (128, 128)


def test_export_cached_default_key_is_weights_digest(tiny, tmp_path):
    from yolo4.convert import state_digest

    d = state_digest(tiny)
    p1 = export_cached(tiny, img_size=128, cache=tmp_path)
    assert p1 == export_cached(tiny, weights_digest=d, img_size=128, cache=tmp_path)
    w = tiny.conv_layers[0].conv.weight
    saved = w.detach().clone()
    with torch.no_grad():
        w[0, 0, 0, 0] += 1.0
    try:
        assert state_digest(tiny) != d  # other weights, other key
    finally:
        with torch.no_grad():
            w.copy_(saved)
    assert state_digest(tiny) == d
    assert os.path.dirname(p1) == str(Path(tmp_path) / "onnx")


def test_export_is_deterministic(tiny, tmp_path):
    a = export_onnx(tiny, tmp_path / "a.onnx", img_size=128, verify=False).path.read_bytes()
    b = export_onnx(tiny, tmp_path / "b.onnx", img_size=128, verify=False).path.read_bytes()
    assert a == b


def test_reference_input_without_mirror(monkeypatch):
    monkeypatch.delenv("YOLO4_ASSET_MIRROR", raising=False)
    x, src = reference_input((96, 128), 2)
    y, _ = reference_input((96, 128), 2)
    assert src == "seeded random" and x.shape == (2, 3, 96, 128) and x.dtype == np.float32
    assert np.array_equal(x, y) and 0.0 <= x.min() and x.max() <= 1.0 and x.std() > 0.1
