"""Backends (ONNX Runtime on tiny hand-built graphs, torch on a fake and the real Darknet), the
backend registry, and the Detector end to end.

The tiny model: input [B,3,64,64]; AveragePool 32x32 -> [B,3,2,2]; scores [B,4,3] = the mean R, G, B
of each 32x32 quadrant (row-major), boxes [B,4,4] = the quadrants themselves in input pixels. So an
image whose top-left quadrant is pure red yields class 0 ("red") with score 1.0 on box [0,0,32,32].
"""

import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from yolo4.errors import ModelFileError
from yolo4.model_info import ModelInfo
from yolo4.nms_params import NmsParams
from yolo4.runtime.backends import create_backend
from yolo4.runtime.backends.base import Backend
from yolo4.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend, physical_cores
from yolo4.runtime.detector import Detector

NAMES = ["red", "green", "blue"]
QUADRANTS = np.array([[0, 0, 32, 32], [32, 0, 64, 32], [0, 32, 32, 64], [32, 32, 64, 64]], np.float32)


def _info(letter_box=False):
    return ModelInfo(names=NAMES, input_hw=(64, 64), letter_box=letter_box, nms_kind="greedynms",
                     beta_nms=0.6, anchors=[[(10.0, 14.0)]], strides=[32])


def _tiny_onnx(path, batch="B", fp16=False, metadata=None, letter_box=False):
    elem = TensorProto.FLOAT16 if fp16 else TensorProto.FLOAT
    x = helper.make_tensor_value_info("images", elem, [batch, 3, 64, 64])
    boxes = helper.make_tensor_value_info("boxes", elem, [batch, 4, 4])
    scores = helper.make_tensor_value_info("scores", elem, [batch, 4, 3])
    nodes = []
    src = "images"
    if fp16:
        nodes.append(helper.make_node("Cast", ["images"], ["x32"], to=TensorProto.FLOAT))
        src = "x32"
    nodes += [
        helper.make_node("AveragePool", [src], ["pooled"], kernel_shape=[32, 32], strides=[32, 32]),
        helper.make_node("Transpose", ["pooled"], ["nhwc"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["nhwc", "shape"], ["s32"]),
        helper.make_node("ReduceSum", ["s32", "axis2"], ["sum"], keepdims=1),
        helper.make_node("Mul", ["sum", "zero"], ["zeros"]),
        helper.make_node("Add", ["zeros", "quadrants"], ["b32"]),
    ]
    if fp16:
        nodes += [helper.make_node("Cast", ["s32"], ["scores"], to=TensorProto.FLOAT16),
                  helper.make_node("Cast", ["b32"], ["boxes"], to=TensorProto.FLOAT16)]
    else:
        nodes += [helper.make_node("Identity", ["s32"], ["scores"]),
                  helper.make_node("Identity", ["b32"], ["boxes"])]
    inits = [helper.make_tensor("shape", TensorProto.INT64, [3], [0, -1, 3]),
             helper.make_tensor("axis2", TensorProto.INT64, [1], [2]),
             helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
             helper.make_tensor("quadrants", TensorProto.FLOAT, [1, 4, 4], QUADRANTS.ravel().tolist())]
    graph = helper.make_graph(nodes, "tiny", [x], [boxes, scores], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    meta = _info(letter_box).to_metadata() if metadata is None else metadata
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _quadrant_image(w, h, colours):
    """BGR image split in 2x2 quadrants of the given BGR colours (row-major)."""
    img = np.zeros((h, w, 3), np.uint8)
    hh, hw = h // 2, w // 2
    for (r, c), col in zip([(0, 0), (0, 1), (1, 0), (1, 1)], colours):
        img[r * hh:(r + 1) * hh, c * hw:(c + 1) * hw] = col
    return img


RED, GREEN, BLUE, BLACK = (0, 0, 255), (0, 255, 0), (255, 0, 0), (0, 0, 0)


@pytest.fixture()
def quadrant_onnx(tmp_path):
    """The weight-free quadrant ONNX model (``_tiny_onnx``), not the real yolov4-tiny of conftest."""
    return _tiny_onnx(tmp_path / "tiny.onnx")


# ---------------------------------------------------------------- onnxruntime

def test_onnxruntime_reads_metadata_and_runs(quadrant_onnx):
    with create_backend("onnxruntime", path=quadrant_onnx) as be:
        assert isinstance(be, Backend) and be.info == _info() and be.fixed_batch is None
        assert "CPUExecutionProvider" in be.providers
        batch = np.zeros((3, 3, 64, 64), np.float32)
        batch[1, 0, :32, :32] = 1.0      # image 1: R in the top-left quadrant
        batch[2, 2, 32:, 32:] = 0.5      # image 2: B = .5 in the bottom-right quadrant
        boxes, scores = be(batch)
    assert boxes.shape == (3, 4, 4) and scores.shape == (3, 4, 3)
    assert boxes.dtype == np.float32 and scores.dtype == np.float32
    assert np.allclose(boxes, QUADRANTS)
    expected = np.zeros((3, 4, 3), np.float32)
    expected[1, 0, 0] = 1.0
    expected[2, 3, 2] = 0.5
    assert np.allclose(scores, expected)


def test_onnxruntime_fixed_batch_splits_and_pads(tmp_path, quadrant_onnx):
    fixed = _tiny_onnx(tmp_path / "fixed.onnx", batch=2)
    rng = np.random.default_rng(0)
    batch = rng.uniform(0, 1, (5, 3, 64, 64)).astype(np.float32)
    with OnnxRuntimeBackend(fixed) as fb, OnnxRuntimeBackend(quadrant_onnx) as db:
        assert fb.fixed_batch == 2
        b1, s1 = fb(batch)
        b2, s2 = db(batch)
        one = fb(batch[:1])  # smaller than the fixed batch: padded
    assert b1.shape == (5, 4, 4) and s1.shape == (5, 4, 3)
    assert np.allclose(s1, s2, atol=1e-6) and np.allclose(b1, b2)
    assert np.allclose(one[1], s2[:1], atol=1e-6)


def test_onnxruntime_fp16_model_takes_and_returns_float32(tmp_path):
    path = _tiny_onnx(tmp_path / "fp16.onnx", fp16=True)
    batch = np.zeros((2, 3, 64, 64), np.float32)
    batch[0, 1, :32, 32:] = 0.25
    with OnnxRuntimeBackend(path) as be:
        boxes, scores = be(batch)
    assert boxes.dtype == np.float32 and scores.dtype == np.float32
    assert scores[0, 1, 1] == pytest.approx(0.25, abs=1e-3) and np.allclose(boxes, QUADRANTS)


def test_onnxruntime_options(quadrant_onnx):
    with OnnxRuntimeBackend(quadrant_onnx, intra_op_num_threads=1, graph_optimization_level="basic",
                            execution_mode="parallel", providers=["CPUExecutionProvider"]) as be:
        assert be(np.zeros((1, 3, 64, 64), np.float32))[1].shape == (1, 4, 3)
    with OnnxRuntimeBackend(quadrant_onnx, threads=2) as be:  # the CLI's --threads
        assert be(np.zeros((2, 3, 64, 64), np.float32))[0].shape == (2, 4, 4)
    with pytest.raises(ValueError, match="graph_optimization_level"):
        OnnxRuntimeBackend(quadrant_onnx, graph_optimization_level="max")
    assert physical_cores() >= 1


def test_onnxruntime_bad_batch_shape(quadrant_onnx):
    with OnnxRuntimeBackend(quadrant_onnx) as be, pytest.raises(ValueError, match="64x64"):
        be(np.zeros((1, 3, 32, 32), np.float32))


def test_onnxruntime_model_file_errors(tmp_path):
    missing = tmp_path / "missing.onnx"
    with pytest.raises(ModelFileError, match="missing.onnx.*not found"):
        OnnxRuntimeBackend(missing)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not an onnx model" * 10)
    with pytest.raises(ModelFileError, match="garbage.onnx.*cannot load"):
        OnnxRuntimeBackend(garbage)
    bare = _tiny_onnx(tmp_path / "bare.onnx", metadata={})
    with pytest.raises(ModelFileError, match="bare.onnx.*no yolo4 metadata") as e:
        OnnxRuntimeBackend(bare)
    assert "\n" not in str(e.value)
    partial = _tiny_onnx(tmp_path / "partial.onnx", metadata={"names": '["a", "b", "c"]'})
    with pytest.raises(ModelFileError, match="partial.onnx.*input_hw"):
        OnnxRuntimeBackend(partial)
    wrong = _tiny_onnx(tmp_path / "wrong.onnx", metadata=ModelInfo(["a"], (64, 64)).to_metadata())
    with pytest.raises(ModelFileError, match="3 classes but the metadata names 1"):
        OnnxRuntimeBackend(wrong)


def test_registry():
    with pytest.raises(ValueError, match="unknown backend 'tensorrtx'.*onnxruntime, tensorrt, torch"):
        create_backend("tensorrtx")


def test_runtime_imports_neither_torch_nor_onnxruntime():
    code = ("import sys, yolo4.runtime.detector, yolo4.runtime.backends, yolo4.runtime.sources, "
            "yolo4.runtime.draw, yolo4.runtime.coco_eval, yolo4.runtime.backends.onnxruntime_backend, "
            "yolo4.runtime.backends.torch_backend;"
            "bad = [m for m in ('torch', 'onnxruntime', 'tensorrt') if m in sys.modules];"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- detector

def test_detector_plain_resize_maps_to_original_pixels(quadrant_onnx):
    img = _quadrant_image(128, 96, [RED, BLACK, BLACK, BLUE])
    img2 = _quadrant_image(64, 64, [BLACK, GREEN, BLACK, BLACK])
    with OnnxRuntimeBackend(quadrant_onnx) as be:
        d1, d2 = Detector(be, score_threshold=0.25).detect([img, img2])
    # plain resize 128x96 -> 64x64: quadrant boxes scale by 2 and 1.5
    assert d1.class_ids.tolist() == [0, 2] and np.allclose(d1.scores, 1.0)
    assert np.allclose(d1.boxes, [[0, 0, 64, 48], [64, 48, 128, 96]])
    assert d2.class_ids.tolist() == [1] and np.allclose(d2.boxes, [[32, 0, 64, 32]])


def test_detector_letterbox(tmp_path):
    path = _tiny_onnx(tmp_path / "lb.onnx", letter_box=True)
    img = np.zeros((64, 128, 3), np.uint8)
    img[:] = RED  # 128x64 -> content 64x32 at rows 16..47, 0.5 grey above and below
    with OnnxRuntimeBackend(path) as be:
        assert be.info.letter_box
        (det,) = Detector(be, score_threshold=0.3).detect([img])
    # each quadrant: 16 rows of grey (R .5) + 16 rows of red (R 1) -> red .75; green, blue .25 < .3
    assert det.class_ids.tolist() == [0] * 4 and np.allclose(det.scores, 0.75)
    # input box [0,0,32,32] -> x / 0.5, (y - 16) / 0.5, clipped to the 128x64 image
    expected = [[0, 0, 64, 32], [64, 0, 128, 32], [0, 32, 64, 64], [64, 32, 128, 64]]
    assert sorted(map(tuple, det.boxes.tolist())) == sorted(map(tuple, expected))


def test_detector_batches_by_fixed_batch(tmp_path):
    path = _tiny_onnx(tmp_path / "fixed3.onnx", batch=3)
    imgs = [_quadrant_image(64, 64, [RED if i == j else BLACK for j in range(4)]) for i in range(4)] * 2
    with OnnxRuntimeBackend(path) as be:
        det = Detector(be, score_threshold=0.5)
        assert det.batch_size == 3
        out = det.detect(imgs)
    assert len(out) == 8
    for i, d in enumerate(out):
        assert np.allclose(d.boxes, QUADRANTS[i % 4][None])


# ---------------------------------------------------------------- torch

class _FakeDarknet:
    """Same function as the tiny ONNX graph, in torch, with Darknet's interface."""

    def __new__(cls):
        torch = pytest.importorskip("torch")

        class Fake(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.register_buffer("quadrants", torch.from_numpy(QUADRANTS)[None])

            def forward(self, x, raw=False):
                pooled = torch.nn.functional.avg_pool2d(x, 32)              # [B,3,2,2]
                scores = pooled.permute(0, 2, 3, 1).reshape(x.shape[0], -1, 3)
                return self.quadrants.expand(x.shape[0], -1, -1).clone(), scores

            def model_info(self, names=None):
                return ModelInfo(names=list(names) if names else NAMES, input_hw=(64, 64))

        return Fake()


def test_torch_backend_matches_onnxruntime_on_fake_module(quadrant_onnx):
    rng = np.random.default_rng(1)
    batch = rng.uniform(0, 1, (3, 3, 64, 64)).astype(np.float32)
    with create_backend("torch", module=_FakeDarknet(), device="cpu") as tb, OnnxRuntimeBackend(quadrant_onnx) as ob:
        assert tb.info.names == NAMES and tb.fixed_batch is None
        bt, st = tb(batch)
        bo, so = ob(batch)
    assert bt.dtype == np.float32 and st.dtype == np.float32
    assert np.allclose(bt, bo) and np.allclose(st, so, atol=1e-6)
    with pytest.raises(ValueError, match="exactly one"):
        create_backend("torch")


def test_torch_backend_real_yolov4_tiny_on_dog(shared_data):
    """The real Darknet through the torch backend: darknet's dog.jpg at 416x416 (plain resize),
    conf 0.25, NMS 0.45 -> dog, truck, bicycle (OpenCV's darknet importer, best class per box:
    .87, .82, .61). Darknet is multi-label, so per-class NMS may add a second label on the truck
    (car); class-agnostic NMS leaves exactly the three."""
    pytest.importorskip("torch")
    from yolo4.data.images import imread

    names = (shared_data / "darknet" / "coco.names").read_text().splitlines()[:80]
    img = imread(shared_data / "darknet" / "images" / "dog.jpg")
    be = create_backend("torch", cfg=shared_data / "darknet" / "cfg" / "yolov4-tiny.cfg",
                        weights=shared_data / "weights" / "yolov4-tiny.weights", names=names, device="cpu")
    with be:
        assert be.info.input_hw == (416, 416) and not be.info.letter_box
        (det,) = Detector(be, NmsParams(0.25, 0.45)).detect([img])
        (agn,) = Detector(be, NmsParams(0.25, 0.45, class_agnostic=True)).detect([img])
    found = {names[k]: s for k, s in zip(agn.class_ids.tolist(), agn.scores.tolist())}
    assert set(found) == {"dog", "truck", "bicycle"}
    assert found["dog"] == pytest.approx(0.87, abs=0.03)
    assert found["truck"] == pytest.approx(0.82, abs=0.03)
    assert found["bicycle"] == pytest.approx(0.61, abs=0.05)
    per_class = [names[k] for k in det.class_ids.tolist()]
    assert per_class[:3] == ["dog", "truck", "bicycle"] and set(per_class[3:]) <= {"car"}
    h, w = img.shape[:2]
    assert np.all(det.boxes >= 0) and np.all(det.boxes[:, [0, 2]] <= w) and np.all(det.boxes[:, [1, 3]] <= h)
    # the dog is in the lower left of the 768x576 picture
    dog = det.boxes[per_class.index("dog")]
    assert dog[0] < w / 2 and dog[3] > h / 2


# ---------------------------------------------------------------- the Backend template


class _Recorder(Backend):
    """A pure-numpy backend that records the chunk sizes its _forward sees."""

    name = "recorder"

    def __init__(self, fixed=None, maximum=None):
        self.info = ModelInfo(names=["a", "b"], input_hw=(32, 64))
        self._fixed, self._max, self.calls, self.released = fixed, maximum, [], 0

    @property
    def fixed_batch(self):
        return self._fixed

    @property
    def max_batch(self):
        return self._max if self._max is not None else self._fixed

    def _forward(self, batch):
        if self._fixed is not None:
            assert batch.shape[0] == self._fixed
        self.calls.append(batch.shape[0])
        b = batch.shape[0]
        boxes = np.repeat(batch[:, 0, 0, :4][:, None, :], 5, axis=1)  # depends on the image
        return np.ascontiguousarray(boxes, np.float32), np.zeros((b, 5, 2), np.float32)

    def _release(self):
        self.released += 1


@pytest.mark.parametrize("fixed, maximum, n, calls", [
    (None, None, 7, [7]), (None, 3, 7, [3, 3, 1]), (None, 3, 2, [2]), (4, None, 7, [4, 4]), (4, None, 4, [4]),
])
def test_backend_template_splits_pads_and_keeps_order(fixed, maximum, n, calls):
    be = _Recorder(fixed, maximum)
    batch = np.random.default_rng(0).uniform(0, 1, (n, 3, 32, 64)).astype(np.float32)
    boxes, scores = be(batch)
    assert be.calls == calls
    assert boxes.shape == (n, 5, 4) and scores.shape == (n, 5, 2)
    assert np.array_equal(boxes[:, 0], batch[:, 0, 0, :4])  # each row is its own image's, in order


def test_backend_template_checks_shape_and_closed_state():
    be = _Recorder()
    with pytest.raises(ValueError, match="model input is 32x64"):
        be(np.zeros((1, 3, 64, 64), np.float32))
    with pytest.raises(ValueError, match=r"\[B,3,H,W\]"):
        be(np.zeros((3, 32, 64), np.float32))
    be.close()
    be.close()
    assert be.released == 1
    with pytest.raises(RuntimeError, match="closed"):
        be(np.zeros((1, 3, 32, 64), np.float32))


def test_model_forms_and_default_backends():
    from yolo4.errors import Yolo4Error
    from yolo4.runtime.backends import default_backend, model_form

    assert [model_form(p) for p in ("m.ONNX", "a.engine", "a.plan", "best.pt", "y.cfg")] == \
        ["onnx", "engine", "engine", "checkpoint", "cfg"]
    assert default_backend("onnx") == "onnxruntime" and default_backend("cfg") == "onnxruntime"
    assert default_backend("engine") == "tensorrt"
    with pytest.raises(Yolo4Error, match="model.tflite: unknown model file type"):
        model_form("model.tflite")


def test_detector_times_a_synchronous_backend_as_inference(monkeypatch):
    """Regression: with submit()/result() a synchronous backend computes inside submit(); that time is
    inference, not preprocessing (the speed line showed 0.0 ms inference). The detector's clock is
    replaced by a counter that only the stages advance -- preprocessing by 100 per batch, the
    network by 1 per batch, the NMS by 10000 per batch -- so each Timings field must hold exactly
    its own stage's ticks (no wall clock involved)."""
    import types

    import yolo4.runtime.detector as detector_mod
    from yolo4.model_info import ModelInfo
    from yolo4.runtime.backends.base import Backend
    from yolo4.runtime.detector import Detector

    clock = [0.0]
    monkeypatch.setattr(detector_mod, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    calls = {"pre": 0, "forward": 0, "nms": 0}

    def ticking(key, fn, ticks):
        def run(*a, **k):
            calls[key] += 1
            clock[0] += ticks
            return fn(*a, **k)
        return run

    monkeypatch.setattr(detector_mod, "preprocess", ticking("pre", detector_mod.preprocess, 100.0))
    monkeypatch.setattr(detector_mod, "postprocess", ticking("nms", detector_mod.postprocess, 10000.0))

    class Slow(Backend):
        name = "slow"

        def __init__(self):
            self.info = ModelInfo(names=["a"], input_hw=(32, 32))

        def _forward(self, batch):
            calls["forward"] += 1
            clock[0] += 1.0
            n = batch.shape[0]
            return np.zeros((n, 1, 4), np.float32), np.zeros((n, 1, 1), np.float32)

    d = Detector(Slow())
    d.detect([np.zeros((20, 20, 3), np.uint8)] * 2)
    assert calls["forward"] >= 1 and calls["pre"] >= 1 and calls["nms"] >= 1
    assert d.timings.inference == 1.0 * calls["forward"]
    assert d.timings.preprocess == 100.0 * calls["pre"]
    assert d.timings.nms == 10000.0 * calls["nms"]
    assert d.timings.images == 2
