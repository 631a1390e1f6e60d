"""``yolo4 selftest``'s GPU checks can FAIL: their comparisons (:func:`relative_error`,
:func:`graph_verdict`, :func:`nms_mismatches`) against hand-made right and wrong answers, the plugin
case matrix against what it claims to cover, and the checks themselves driven with stand-ins of the
GPU parts (a stand-in TensorRT backend that returns ONNX Runtime's outputs, plus an error where the
test says so; a stand-in plugin launch). The stand-ins check the checks' verdicts only; nothing here
runs on a GPU (on a GPU the checks run for real in ``yolo4 selftest``).
"""

import numpy as np
import pytest

from yolo4 import selftest
from yolo4.runtime.backends import tensorrt_backend as tb
from yolo4.runtime.backends.base import Done
from yolo4.selftest import (
    PLUGIN_CASES,
    PRECISION_RTOL,
    graph_verdict,
    nms_mismatches,
    plugin_case,
    plugin_reference,
    relative_error,
)


def _tf32(a):
    """``a`` rounded to TF32 (10 explicit mantissa bits, round to nearest): what TensorRT's default
    TF32 math does to the inputs of a convolution on Ampere and later."""
    bits = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    bits = ((bits + 0x1000) & 0xFFFFE000).astype(np.uint32)
    return bits.view(np.float32)


# ------------------------------------------------------------------------------------------------
# the comparisons
# ------------------------------------------------------------------------------------------------

def test_relative_error_passes_tf32_rounding_and_fails_a_wrong_answer():
    rng = np.random.default_rng(0)
    boxes = rng.uniform(0, 64, (4, 64, 4)).astype(np.float32)
    scores = rng.uniform(0, 1, (4, 64, 3)).astype(np.float32)
    tf32 = [_tf32(boxes), _tf32(scores)]
    # TF32 moves boxes by up to ~1e-2 px (the issue measured 8.8e-3): an absolute 1e-3 limit fails a
    # working install, the limit relative to the output's scale does not
    assert np.max(np.abs(tf32[0] - boxes)) > 1e-3
    assert relative_error([boxes, scores], tf32) < PRECISION_RTOL["fp32"]
    wrong = [boxes.copy(), scores]
    wrong[0][1, 5, 2] += 0.5  # one coordinate half a pixel off
    assert relative_error([boxes, scores], wrong) > PRECISION_RTOL["fp32"]
    assert relative_error([boxes, scores], [boxes, scores[:, :, :2]]) == float("inf")
    assert relative_error([boxes, scores], [boxes, np.full_like(scores, np.nan)]) == float("inf")
    assert relative_error([boxes], [boxes, scores]) == float("inf")


def test_graph_verdict():
    assert graph_verdict(True, [(2, 4), (1, 2)])[0]
    ok, text = graph_verdict(True, [(1, 2), (0, 0)])  # context 1 never captured (refused, plain enqueues)
    assert not ok and "asked but not run" in text and "context 1: 0 captured" in text
    assert not graph_verdict(True, [(1, 1)])[0]  # captured, launched once: not relaunched
    assert not graph_verdict(True, [])[0]
    assert graph_verdict(False, [(0, 0)]) == (True, "no CUDA graphs")
    assert not graph_verdict(False, [(1, 3)])[0]


def _nms_out(counts, k=5):
    b = len(counts)
    num = np.array(counts, np.int32).reshape(b, 1)
    boxes = np.arange(b * k * 4, dtype=np.float32).reshape(b, k, 4)
    scores = np.linspace(0.9, 0.1, b * k, dtype=np.float32).reshape(b, k)
    classes = (np.arange(b * k, dtype=np.int32) % 3).reshape(b, k)
    for i, n in enumerate(counts):
        boxes[i, n:], scores[i, n:], classes[i, n:] = 0, 0, -1
    return [num, boxes, scores, classes]


def test_nms_mismatches():
    ref = _nms_out([3, 0, 5])
    assert nms_mismatches(ref, [a.copy() for a in ref]) == 0
    got = [a.copy() for a in ref]
    got[3][0, 4] = 2  # past num_detections: padding is not compared
    assert nms_mismatches(ref, got) == 0
    got = [a.copy() for a in ref]
    got[3][2, 1] = 7
    assert nms_mismatches(ref, got) == 1
    got = [a.copy() for a in ref]
    got[0][1, 0] = 1
    assert nms_mismatches(ref, got) == 1
    got = [a.copy() for a in ref]
    got[1][0, 0, 0] += 0.01
    got[2][2, 4] *= 0.99
    assert nms_mismatches(ref, got) == 2 and nms_mismatches(ref, got[:3]) == 3
    assert nms_mismatches(ref, _nms_out([3, 0])) == 3  # a batch of another size


def test_plugin_cases_cover_what_the_issue_asks():
    cases = {c[0]: plugin_case(c) for c in PLUGIN_CASES}
    boxes, scores, params, _ = cases["multi-tile"]
    per_class = (scores > params.score_threshold).sum(axis=1)  # [B, C] candidates per class
    assert per_class.max() > 256  # more than one 256-candidate tile in one group
    assert cases["float16"][0].dtype == np.float16 and cases["float16"][1].dtype == np.float16
    assert cases["class-agnostic"][2].class_agnostic
    assert cases["norm_wh"][3] is not None and cases["norm_wh"][3].shape == (3, 2)
    boxes, scores, params, _ = cases["top_k"]
    assert params.top_k < (scores > params.score_threshold).sum(axis=(1, 2)).min()
    assert cases["B=8"][0].shape[0] == 8
    for name, (boxes, scores, params, norm) in cases.items():
        ref = plugin_reference(boxes.astype(np.float32), scores.astype(np.float32), params, norm)
        assert ref[0].sum() > 0, name  # every case has detections to compare
    # the same inputs every run
    again = plugin_case(PLUGIN_CASES[2])
    assert np.array_equal(again[0], cases["multi-tile"][0])


# ------------------------------------------------------------------------------------------------
# the checks, driven with stand-ins of the GPU parts
# ------------------------------------------------------------------------------------------------

class _Ctx:
    def push(self):
        pass

    def pop(self):
        pass


def _gpu_state(tmp_path, trt="tensorrt-rtx"):
    st = selftest._State()
    st.cuda, st.ctx, st.trt = object(), _Ctx(), trt
    st.tiny_onnx = selftest.tiny_onnx(str(tmp_path / "tiny.onnx"))
    st.tiny_engine = str(tmp_path / "tiny.engine")
    return st, {"device": 0, "workdir": str(tmp_path), "engine": None, "onnx": None}


def _stand_in_backend(monkeypatch, onnx_path, spoil=None, stats=((1, 2), (1, 2)), nms=None):
    """A stand-in ``TensorRTBackend``: ONNX Runtime on ``onnx_path`` (``nms``: then the numpy NMS
    reference in the engine's layout), outputs passed through ``spoil(outputs, batch)``."""
    import onnxruntime as ort

    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])

    class StandIn:
        def __init__(self, path, device=0, contexts=None, cuda_graph=False):
            self.contexts = contexts or 1
            self.graph_stats = list(stats)[:self.contexts] if cuda_graph else [(0, 0)] * self.contexts

        def __enter__(self):
            return self

        def __exit__(self, *a):
            pass

        def __call__(self, x):
            out = list(sess.run(["boxes", "scores"], {"images": x}))
            if nms is not None:
                from yolo4.runtime.detector import reference_nms_outputs

                out = list(reference_nms_outputs(out[0], out[1], nms[0], input_hw=(64, 64), pad_class=nms[1]))
            return tuple(spoil(out, x) if spoil else out)

        def submit(self, x):
            return Done(self(x))

    monkeypatch.setattr(tb, "TensorRTBackend", StandIn)


def test_engine_check_passes_right_outputs_and_fails_wrong_ones(tmp_path, monkeypatch):
    st, opts = _gpu_state(tmp_path)
    _stand_in_backend(monkeypatch, st.tiny_onnx)
    status, detail = selftest._check_engine_run(st, opts)
    assert status == "PASS" and "CUDA graphs context 0: 1 captured, 2 launches" in detail
    _stand_in_backend(monkeypatch, st.tiny_onnx, spoil=lambda out, x: [_tf32(o) for o in out])
    assert selftest._check_engine_run(st, opts)[0] == "PASS"  # TF32 rounding is not a failure

    def off_by_a_pixel(out, x):
        out[0] = out[0] + np.where(np.arange(out[0].shape[0])[:, None, None] == 0, 1.0, 0.0).astype(np.float32)
        return out

    _stand_in_backend(monkeypatch, st.tiny_onnx, spoil=off_by_a_pixel)
    status, detail = selftest._check_engine_run(st, opts)
    assert status == "FAIL" and "e-02 (limit 1e-03)" in detail  # 1 px of a box scale under 64 px


def test_engine_check_fails_when_cuda_graphs_did_not_run(tmp_path, monkeypatch):
    st, opts = _gpu_state(tmp_path)
    _stand_in_backend(monkeypatch, st.tiny_onnx, stats=((1, 4), (0, 0)))  # context 1: capture refused
    status, detail = selftest._check_engine_run(st, opts)
    assert status == "FAIL" and "asked but not run" in detail
    _stand_in_backend(monkeypatch, st.tiny_onnx, stats=((5, 9), (2, 4)))  # recaptured for a known shape
    status, detail = selftest._check_engine_run(st, opts)
    assert status == "FAIL" and "recaptured" in detail


def test_plugin_check_fails_on_a_wrong_kernel_answer(tmp_path, monkeypatch):
    from yolo4 import plugins

    lib = tmp_path / "libdiou_nms_plugin.so"
    lib.write_bytes(b"stand-in")
    monkeypatch.setattr(plugins, "default_plugin_path", lambda: lib)
    monkeypatch.setattr(selftest, "_load_nms_api", lambda path: "api")
    st, opts = _gpu_state(tmp_path)
    seen, cache = [], {}

    def reference(boxes, scores, params, norm, input_hw=(416, 416)):  # the numpy reference, computed once
        key = (boxes.shape, scores.shape, float(boxes.sum()), params, norm is not None)
        if key not in cache:
            cache[key] = plugin_reference(boxes, scores, params, norm, input_hw)
        return [a.copy() for a in cache[key]]

    monkeypatch.setattr(selftest, "plugin_reference", reference)

    def right(cuda, api, boxes, scores, params, norm, input_hw):
        seen.append((boxes.dtype, boxes.shape[0], params.class_agnostic, norm is not None, params.top_k))
        return reference(boxes.astype(np.float32), scores.astype(np.float32), params, norm, input_hw)

    monkeypatch.setattr(selftest, "_run_plugin_on_gpu", right)
    status, detail = selftest._check_plugin(st, opts)
    assert status == "PASS" and "mismatches vs the numpy reference: none" in detail
    assert len(seen) == len(PLUGIN_CASES) and (np.float16, 3, False, False, 30000) in seen and seen[-1][1] == 8

    def drops_one(cuda, api, boxes, scores, params, norm, input_hw):
        out = right(cuda, api, boxes, scores, params, norm, input_hw)
        if params.class_agnostic:
            out[0][0, 0] -= 1
        return out

    monkeypatch.setattr(selftest, "_run_plugin_on_gpu", drops_one)
    status, detail = selftest._check_plugin(st, opts)
    assert status == "FAIL" and "class-agnostic: 1 image(s)" in detail


@pytest.mark.parametrize("mode_to_spoil", [None, "plugin", "efficient"])
def test_nms_engines_check(tmp_path, monkeypatch, mode_to_spoil):
    """Both exports are made for real (ONNX), the builds and the engines are stand-ins returning the
    reference for the exported NMS; a wrong class in one mode's engine is a FAIL naming the mode."""
    from yolo4 import plugins
    from yolo4.convert import nms_export

    lib = tmp_path / "libdiou_nms_plugin.so"
    lib.write_bytes(b"stand-in")
    monkeypatch.setattr(plugins, "default_plugin_path", lambda: lib)
    st, opts = _gpu_state(tmp_path, trt="tensorrt")
    built = []
    monkeypatch.setattr(selftest, "_build", lambda st, onnx_path, out, **kw: built.append((onnx_path, kw)))
    exported = {}
    real_export = nms_export.export_nms

    def export(src, out, mode, params, check=True, log=None):
        res = real_export(src, out, mode, params, check=False)
        exported[mode] = res.params
        return res

    monkeypatch.setattr(nms_export, "export_nms", export)
    import onnxruntime as ort

    sess = ort.InferenceSession(st.tiny_onnx, providers=["CPUExecutionProvider"])

    class StandIn:
        def __init__(self, path, device=0, contexts=None, cuda_graph=False):
            self.mode = "plugin" if "plugin" in str(path) else "efficient"
            self.graph_stats = [(1, 2)] if cuda_graph else [(0, 0)]

        def __enter__(self):
            return self

        def __exit__(self, *a):
            pass

        def __call__(self, x):
            from yolo4.runtime.detector import reference_nms_outputs

            b, s = sess.run(["boxes", "scores"], {"images": x})
            out = reference_nms_outputs(b, s, exported[self.mode], input_hw=(64, 64),
                                        pad_class=-1 if self.mode == "plugin" else 0)
            if self.mode == mode_to_spoil:
                out[3][0, 0] += 1
            return out

    monkeypatch.setattr(tb, "TensorRTBackend", StandIn)
    status, detail = selftest._check_nms_engines(st, opts)
    assert [kw["batch"] for _, kw in built] == ["1,2,4", "1,2,4"]
    assert built[0][1]["plugin_libs"] == [str(lib)] and built[1][1]["plugin_libs"] == []
    assert exported["efficient"].nms_kind == "default"  # EfficientNMS is plain IoU: the reference follows
    if mode_to_spoil is None:
        assert status == "PASS", detail
    else:
        assert status == "FAIL" and "%s: " % mode_to_spoil in detail.split(" -- ")[1]


def test_precision_check_builds_three_engines_and_fails_an_inaccurate_one(tmp_path, monkeypatch):
    st, opts = _gpu_state(tmp_path, trt="tensorrt-rtx")
    built = []
    monkeypatch.setattr(selftest, "_build", lambda st, onnx_path, out, **kw: built.append(kw))
    _stand_in_backend(monkeypatch, st.tiny_onnx)
    status, detail = selftest._check_precisions(st, opts)
    assert status == "PASS", detail
    assert [k.get("fp16", False) for k in built] == [True, False]
    assert built[1]["quantization"] == "explicit" and built[1]["calib_images"] == 16
    assert len(list((tmp_path / "calib").glob("*.png"))) == 16
    assert "int8 implicit: not on this TensorRT" in detail

    def int8_noise(out, x):  # 10 % of the scale: an INT8 engine calibrated on the wrong preprocessing
        return [o + 0.1 * float(np.max(np.abs(o))) for o in out]

    _stand_in_backend(monkeypatch, st.tiny_onnx, spoil=int8_noise)
    status, detail = selftest._check_precisions(st, opts)
    assert status == "FAIL" and "over the limit: fp16, int8 explicit Q/DQ" in detail


def test_calibration_images_are_varied(tmp_path):
    from yolo4.data.images import imread

    folder = selftest.write_calibration_images(str(tmp_path / "c"), 16)
    images = [imread(str(p)) for p in sorted((tmp_path / "c").glob("*.png"))]
    assert len(images) == 16 and folder == str(tmp_path / "c")
    assert all(im.shape == (96, 128, 3) and im.dtype == np.uint8 for im in images)
    assert min(float(im.std()) for im in images) > 20 and not np.array_equal(images[0], images[1])


def test_plugin_launch_frees_every_device_buffer_when_the_kernel_fails():
    """The selftest's early return (a failed ``diouNMSLaunch``) frees what it allocated (stand-in
    pycuda: allocations and frees counted only)."""
    live = []

    class Mem:
        def __init__(self, n):
            self.n = n
            live.append(self)

        def __int__(self):
            return id(self)

        def free(self):
            live.remove(self)

    class Cuda:
        class Context:
            @staticmethod
            def synchronize():
                pass

        @staticmethod
        def to_device(a):
            return Mem(a.nbytes)

        @staticmethod
        def mem_alloc(n):
            return Mem(n)

    class Api:
        def workspace_size(self, p):
            return 1024

        def launch(self, p, *ptrs):
            assert len(live) == 8  # boxes, scores, norm_wh, four outputs, workspace
            return 3  # a cudaError_t

    boxes, scores, params, norm = plugin_case(PLUGIN_CASES[5])  # the norm_wh case
    with pytest.raises(RuntimeError, match="diouNMSLaunch returned 3"):
        selftest._run_plugin_on_gpu(Cuda, Api(), boxes, scores, params, norm, (416, 416))
    assert live == []


@pytest.mark.parametrize("one_shot", [False, True])
def test_cuda_graph_check_needs_two_good_relaunches(tmp_path, monkeypatch, one_shot):
    """A graph that works once only (a stand-in replaying its capture on the first launch only) is a
    FAIL; the stream it captures on is non-blocking."""
    from yolo4.runtime import cuda_graph

    streams = []

    class Dev:
        def __init__(self, n):
            self.data = np.zeros(n, np.uint8)

        def free(self):
            pass

    class Cuda:
        class Stream:
            def __init__(self, flags=0):
                self.handle, self.flags = 5, flags
                streams.append(self)

            def synchronize(self):
                pass

        @staticmethod
        def mem_alloc(n):
            return Dev(n)

        @staticmethod
        def memset_d8(dev, value, n):
            dev.data[:n] = value

        @staticmethod
        def memset_d8_async(dev, value, n, stream):
            dev.data[:n] = value

        @staticmethod
        def memcpy_dtoh(host, dev):
            host[:] = dev.data

    class Graph:
        def __init__(self, enqueue):
            self.enqueue, self.launches = enqueue, 0

        def launch(self, handle):
            self.launches += 1
            if not (one_shot and self.launches > 1):
                self.enqueue()

        def destroy(self):
            pass

    monkeypatch.setattr(cuda_graph, "capture", lambda handle, enqueue: Graph(enqueue))
    st, opts = _gpu_state(tmp_path)
    st.cuda = Cuda
    status, detail = selftest._check_cuda_graph(st, opts)
    assert streams[0].flags == cuda_graph.STREAM_NON_BLOCKING
    if one_shot:
        assert status == "FAIL" and "[0, 1048576]" in detail
    else:
        assert status == "PASS" and "launched twice" in detail


@pytest.mark.parametrize("fault", [None, "spill", "no padding", "half wrong"])
def test_gpu_preprocessing_check(tmp_path, monkeypatch, fault):
    """The check on stand-ins: a preprocessor that is the CPU path (PASS), one that writes a row past
    its frames, a backend whose short batch keeps the previous batch's row (padding not zeroed), and
    a float16 output off by 3/255: each is a FAIL. The backend is the real TensorRT backend over the
    strict pycuda/TensorRT stand-ins of ``tests/test_runtime_tensorrt_backend.py``."""
    from tests import test_runtime_tensorrt_backend as tt
    from yolo4.plugins import build as plugin_build
    from yolo4.runtime import gpu_preprocess
    from yolo4.runtime.preprocess import preprocess

    lib = tmp_path / "libyolo4_preprocess.so"
    lib.write_bytes(b"stand-in")
    monkeypatch.setattr(plugin_build, "default_preprocess_path", lambda: lib)
    profile = {"min": [2, 3, 64, 64], "opt": [2, 3, 64, 64], "max": [4, 3, 64, 64]}
    be, cuda, _ = tt._fake_backend(tmp_path, monkeypatch, meta=dict(profile=profile), contexts=1)
    be.close()  # only its stand-ins are kept: the check opens the engine itself

    class StandInPre:
        def __init__(self, input_hw, letter_box, max_batch, dtype=np.float32):
            self.hw, self.letter_box, self.dtype = tuple(input_hw), letter_box, np.dtype(dtype)

        def run(self, images, dst_ptr, stream):
            cuda.check(stream)
            x, tr = preprocess(list(images), self.hw, self.letter_box)
            if fault == "half wrong" and self.dtype == np.float16:
                x = x + 3 / 255
            rows = len(images) + (1 if fault == "spill" else 0)
            out = np.concatenate([x, x[:rows - len(images)]]).astype(self.dtype)
            cuda.addresses[dst_ptr].write(out.tobytes())
            return tr

        def close(self):
            pass

    monkeypatch.setattr(gpu_preprocess, "GpuPreprocessor", StandInPre)
    if fault == "no padding":
        monkeypatch.setattr(cuda, "memset_d8_async", lambda *a: None)
    st = selftest._State()
    st.cuda, st.ctx = cuda, cuda.Device(0).retain_primary_context()
    st.tiny_engine = str(tmp_path / "m.engine")
    status, detail = selftest._check_gpu_preprocess(st, {"device": 0, "workdir": str(tmp_path)})
    assert cuda.pushed == 0
    if fault is None:
        assert status == "PASS", detail
        assert "0 value(s) written past the frames" in detail and "0 non-zero padded value(s)" in detail
    else:
        assert status == "FAIL", detail
        if fault == "spill":
            assert "0 value(s) written past" not in detail
        elif fault == "no padding":
            assert "0 non-zero padded" not in detail
        else:
            assert "(3.1" in detail  # 3/255 off, float16-rounded
