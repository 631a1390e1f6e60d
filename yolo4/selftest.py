"""``yolo4 selftest``: what this machine has, and whether the GPU parts of yolo4 work on it.

One line per check, ``PASS`` / ``FAIL`` / ``SKIP`` (with the reason) or ``INFO``; the command exits 1
when any check FAILs. It is how a Jetson or server user verifies an install, and how the project
verifies on a real target what its CPU-only CI cannot run:

==========================  ============================================================================
check                       what it does
==========================  ============================================================================
platform                    Python, yolo4, OS; Jetson model and L4T release when on a Jetson (INFO)
opencv                      OpenCV version, GStreamer support (CSI cameras) (INFO)
onnxruntime                 version and execution providers
cuda                        pycuda, the driver's CUDA version, GPU name, compute capability, memory
tensorrt / tensorrt-rtx     the installed TensorRT Python packages and their versions
engine build                builds a tiny yolo4-shaped FP32 engine (:func:`tiny_onnx`) with the
                            project's builder (TensorRT for RTX: ahead of time, also without a GPU)
engine vs onnxruntime       runs it on the TensorRT backend (two execution contexts, CUDA graphs)
                            against ONNX Runtime on the same input
pinned copy                 host -> device throughput of page-locked memory (INFO figure)
cuda graph                  captures and relaunches a memset through :mod:`yolo4.runtime.cuda_graph`
diou-nms plugin             the plugin library's kernels (``yolo4 build-plugin``) on the GPU against
                            the numpy reference (:func:`~yolo4.runtime.detector.reference_nms_outputs`)
gpu preprocessing           the preprocessing kernel against :func:`~yolo4.runtime.preprocess.preprocess`
your engine                 with ``--engine E``: E against its source ONNX on ONNX Runtime, on the
                            sample images (:func:`~yolo4.runtime.agreement.detection_agreement`)
==========================  ============================================================================

Python 3.8, torch-free: every optional package (pycuda, tensorrt, onnx, onnxruntime) is imported
inside the check that needs it.
"""

import importlib
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import __version__
from .errors import Yolo4Error

__all__ = ["Check", "run_selftest", "format_check", "tiny_onnx", "TINY_INFO_HW", "STATUSES"]

STATUSES = ("PASS", "FAIL", "SKIP", "INFO")
#: input size (H, W) of the tiny test model
TINY_INFO_HW = (64, 64)
#: agreement needed between an engine and its ONNX on the sample images (matched detections / reference)
MIN_MATCH = {"fp32": 0.95, "fp16": 0.9, "int8": 0.8}


@dataclass
class Check:
    """One selftest line.

    Attributes:
        name: what was checked (``cuda``, ``engine build``, ...).
        status: one of :data:`STATUSES`.
        detail: the figures (versions, differences) or the reason for SKIP / FAIL; one line.
    """

    name: str
    status: str
    detail: str


class _Skip(Exception):
    """Raised inside a check: SKIP with this reason."""


def format_check(c: Check) -> str:
    """``PASS  cuda                     NVIDIA H100 ...``: status, name padded, detail."""
    return "%-4s  %-24s %s" % (c.status, c.name, c.detail)


def _first_line(e: BaseException) -> str:
    text = " ".join(str(getattr(e, "message", None) or e).split())
    return text or type(e).__name__


def _import(module: str, what: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise _Skip("%s is not installed (%s)" % (what, _first_line(e))) from None


# -- the tiny model -------------------------------------------------------------------------------

def tiny_onnx(path: str, num_classes: int = 3, seed: int = 0) -> str:
    """Write a tiny model with the yolo4 ONNX contract: input ``images [B,3,64,64] float32`` (dynamic
    batch), outputs ``boxes [B,64,4]`` (x1,y1,x2,y2 input pixels, 0..64) and ``scores [B,64,C]``
    (0..1), and the yolo4 ``metadata_props`` (a :class:`~yolo4.model_info.ModelInfo`). One strided
    convolution, a reshape and sigmoids: small enough to build in a second, real enough that the
    builder, the engine's I/O and the runtime all take part.

    Raises:
        _Skip: the ``onnx`` package is missing.
    """
    onnx = _import("onnx", "onnx (pip install onnx)")
    from onnx import TensorProto, helper, numpy_helper

    from .model_info import ModelInfo

    rng = np.random.default_rng(seed)
    c = 4 + int(num_classes)
    w = numpy_helper.from_array((rng.standard_normal((c, 3, 8, 8)) * 0.05).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(c).astype(np.float32) * 0.1, "b")
    shape = numpy_helper.from_array(np.array([0, c, 64], np.int64), "shape")
    split = numpy_helper.from_array(np.array([4, num_classes], np.int64), "split")
    scale = numpy_helper.from_array(np.array(64.0, np.float32), "scale")
    nodes = [
        helper.make_node("Conv", ["images", "w", "b"], ["conv"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Reshape", ["conv", "shape"], ["flat"]),
        helper.make_node("Transpose", ["flat"], ["rows"], perm=[0, 2, 1]),
        helper.make_node("Split", ["rows", "split"], ["box_logits", "cls_logits"], axis=2),
        helper.make_node("Sigmoid", ["box_logits"], ["box01"]),
        helper.make_node("Mul", ["box01", "scale"], ["boxes"]),
        helper.make_node("Sigmoid", ["cls_logits"], ["scores"]),
    ]
    graph = helper.make_graph(
        nodes, "yolo4_selftest",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 64, 64])],
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["batch", 64, 4]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 64, num_classes])],
        [w, b, shape, split, scale])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="yolo4 selftest")
    model.ir_version = 7  # readable by the ONNX parsers of TensorRT 8.5 and onnxruntime 1.10+
    info = ModelInfo(names=["c%d" % i for i in range(num_classes)], input_hw=TINY_INFO_HW, letter_box=False,
                     anchors=[[(8.0, 8.0)]], strides=[8])
    for k, v in info.to_metadata().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(model, path)
    return path


# -- the checks ------------------------------------------------------------------------------------

class _State:
    """What earlier checks found, for the later ones."""

    def __init__(self) -> None:
        self.cuda: Any = None  # pycuda.driver when a GPU is usable
        self.gpu: Any = None  # CudaDevice
        self.trt: Optional[str] = None  # "tensorrt" / "tensorrt-rtx" usable for building
        self.tiny_onnx: Optional[str] = None
        self.tiny_engine: Optional[str] = None
        self.ctx: Any = None


def _check_platform(st: _State, opts: Dict[str, Any]) -> Tuple[str, str]:
    parts = ["Python %s" % platform.python_version(), "yolo4 %s" % __version__,
             "%s %s" % (platform.system(), platform.machine())]
    model = Path("/proc/device-tree/model")
    if model.is_file():
        parts.append(model.read_text(errors="replace").strip("\x00 \n"))
    rel = Path("/etc/nv_tegra_release")
    if rel.is_file():
        parts.append(rel.read_text(errors="replace").splitlines()[0].strip("# ").split(",")[0])
    return "INFO", ", ".join(parts)


def _check_opencv(st: _State, opts: Dict[str, Any]) -> Tuple[str, str]:
    import cv2

    info = cv2.getBuildInformation()
    gst = "GStreamer: YES" if any("GStreamer" in ln and "YES" in ln for ln in info.splitlines()) else \
        "GStreamer: NO (CSI cameras need JetPack's OpenCV)"
    return "INFO", "OpenCV %s, %s" % (cv2.__version__, gst)


def _check_onnxruntime(st: _State, opts: Dict[str, Any]) -> Tuple[str, str]:
    ort = _import("onnxruntime", "onnxruntime (pip install onnxruntime)")
    return "PASS", "onnxruntime %s, providers %s" % (ort.__version__, ", ".join(ort.get_available_providers()))


def _check_cuda(st: _State, opts: Dict[str, Any]) -> Tuple[str, str]:
    cuda = _import("pycuda.driver", "pycuda (pip install 'yolo4[trt]')")
    import pycuda

    try:
        cuda.init()
        count = cuda.Device.count()
    except Exception as e:  # pycuda raises its own LogicError/RuntimeError types
        raise _Skip("no usable NVIDIA driver (%s)" % _first_line(e)) from None
    dev_index = int(opts.get("device", 0))
    if count <= dev_index:
        raise _Skip("no CUDA GPU %d (%d found)" % (dev_index, count))
    from .runtime.engine_meta import cuda_device

    gpu = cuda_device(dev_index)
    if gpu is None:
        return "FAIL", "pycuda sees %d GPU(s) but GPU %d cannot be queried" % (count, dev_index)
    dev = cuda.Device(dev_index)
    drv = cuda.get_driver_version()
    st.cuda, st.gpu = cuda, gpu
    st.ctx = dev.retain_primary_context()
    return "PASS", "GPU %d %s, compute capability %s, %.1f GiB; driver CUDA %d.%d; pycuda %s" % (
        dev_index, gpu.name, gpu.compute_capability, dev.total_memory() / 2 ** 30, drv // 1000, drv % 1000 // 10,
        getattr(pycuda, "VERSION_TEXT", "?"))


def _check_trt(flavour: str) -> Callable[[_State, Dict[str, Any]], Tuple[str, str]]:
    module = {"tensorrt": "tensorrt", "tensorrt-rtx": "tensorrt_rtx"}[flavour]

    def check(st: _State, opts: Dict[str, Any]) -> Tuple[str, str]:
        hint = "JetPack's python3-libnvinfer, or pip install tensorrt" if flavour == "tensorrt" else \
            "pip install tensorrt-rtx"
        mod = _import(module, "%s (%s)" % (module, hint))
        if st.trt is None:
            st.trt = flavour
        return "PASS", "%s %s" % (module, getattr(mod, "__version__", "?"))

    return check


def _check_build(st: _State, opts: Dict[str, Any]) -> Tuple[str, str]:
    if st.trt is None:
        raise _Skip("neither tensorrt nor tensorrt_rtx is installed")
    from .convert.engine_builder import build_engine

    work = opts["workdir"]
    st.tiny_onnx = tiny_onnx(os.path.join(work, "tiny.onnx"))
    out = os.path.join(work, "tiny.engine")
    cc: Sequence[str] = ()
    if st.trt == "tensorrt-rtx":
        cc = [st.gpu.compute_capability] if st.gpu is not None else ["8.6"]
    t0 = time.time()
    res = build_engine(st.tiny_onnx, out, backend=st.trt, compute_capability=cc, batch="1,2,4", contexts=2,
                       log=None, progress_stream=open(os.devnull, "w"))
    st.tiny_engine = str(res.engine_path)
    where = "ahead of time for %s" % ", ".join(cc) if cc else "on this GPU"
    return "PASS", "FP32 engine, %d KiB, built in %.1f s %s (%s)" % (
        os.path.getsize(out) // 1024, time.time() - t0, where, st.trt)


def _need_gpu(st: _State) -> None:
    if st.cuda is None:
        raise _Skip("needs pycuda and a CUDA GPU (see the cuda line)")


def _check_engine_run(st: _State, opts: Dict[str, Any]) -> Tuple[str, str]:
    _need_gpu(st)
    if st.tiny_engine is None:
        raise _Skip("no engine was built (see the engine build line)")
    ort = _import("onnxruntime", "onnxruntime")
    from .runtime.backends.tensorrt_backend import TensorRTBackend

    x = np.random.default_rng(1).random((4, 3) + TINY_INFO_HW, dtype=np.float32)
    sess = ort.InferenceSession(st.tiny_onnx, providers=["CPUExecutionProvider"])
    ref = sess.run(["boxes", "scores"], {"images": x})
    worst = 0.0
    with TensorRTBackend(st.tiny_engine, device=int(opts.get("device", 0)), contexts=2, cuda_graph=True) as be:
        pend = [be.submit(x[:2]), be.submit(x[2:]), be.submit(x[:3])]  # round robin, third waits for first
        got = [p.result() for p in pend]
        for _ in range(3):  # warm-up, capture, relaunch
            again = be(x)
        for out, sl in ((got[0], slice(0, 2)), (got[1], slice(2, 4)), (got[2], slice(0, 3)), (again, slice(0, 4))):
            for r, g in zip(ref, out):
                worst = max(worst, float(np.max(np.abs(r[sl] - g))))
        graph = "CUDA graph on" if be.cuda_graph else "CUDA graph refused, plain enqueue"
        contexts = be.contexts
    status = "PASS" if worst < 1e-3 else "FAIL"
    return status, "max |TensorRT - onnxruntime| %.2e over boxes and scores (%d contexts, %s)" % (
        worst, contexts, graph)


def _check_pinned_copy(st: _State, opts: Dict[str, Any]) -> Tuple[str, str]:
    _need_gpu(st)
    cuda = st.cuda
    st.ctx.push()
    try:
        n = 64 << 20
        host = cuda.pagelocked_empty(n, np.uint8)
        dev = cuda.mem_alloc(n)
        stream = cuda.Stream()
        cuda.memcpy_htod_async(dev, host, stream)
        stream.synchronize()
        t0 = time.perf_counter()
        for _ in range(5):
            cuda.memcpy_htod_async(dev, host, stream)
        stream.synchronize()
        dt = time.perf_counter() - t0
        dev.free()
    finally:
        st.ctx.pop()
    return "INFO", "page-locked host -> device: %.1f GB/s (5 x 64 MiB)" % (5 * n / dt / 1e9)


def _check_cuda_graph(st: _State, opts: Dict[str, Any]) -> Tuple[str, str]:
    _need_gpu(st)
    from .runtime.cuda_graph import capture

    cuda = st.cuda
    st.ctx.push()
    try:
        n = 1 << 20
        dev = cuda.mem_alloc(n)
        stream = cuda.Stream()
        value = {"v": 7}
        graph = capture(stream.handle, lambda: cuda.memset_d8_async(dev, value["v"], n, stream))
        cuda.memset_d8(dev, 0, n)
        graph.launch(stream.handle)
        stream.synchronize()
        host = np.empty(n, np.uint8)
        cuda.memcpy_dtoh(host, dev)
        graph.destroy()
        dev.free()
    finally:
        st.ctx.pop()
    ok = bool(np.all(host == 7))
    return ("PASS" if ok else "FAIL"), "captured a 1 MiB memset, relaunched: %s" % (
        "every byte set" if ok else "%d bytes wrong" % int(np.sum(host != 7)))


def _check_plugin(st: _State, opts: Dict[str, Any]) -> Tuple[str, str]:
    from .plugins import NmsApi, default_plugin_path, load_plugin_library, nms_parameters
    from .runtime.detector import reference_nms_outputs
    from .runtime.nms_params import NmsParams

    lib_path = default_plugin_path()
    if not lib_path.is_file():
        raise _Skip("no plugin library at %s: run `yolo4 build-plugin`" % lib_path)
    _need_gpu(st)
    import ctypes

    load_plugin_library(lib_path)
    api = NmsApi(ctypes.CDLL(str(lib_path)))
    rng = np.random.default_rng(3)
    b, n, c = 2, 600, 4
    xy = rng.random((b, n, 2), dtype=np.float32) * 380
    wh = rng.random((b, n, 2), dtype=np.float32) * 60 + 2
    boxes = np.ascontiguousarray(np.concatenate([xy, xy + wh], axis=2), np.float32)
    scores = np.ascontiguousarray(rng.random((b, n, c), dtype=np.float32) ** 3, np.float32)
    cuda = st.cuda
    mismatches, total = 0, 0
    st.ctx.push()
    try:
        for kind in ("greedynms", "diounms"):
            params = NmsParams(score_threshold=0.25, iou_threshold=0.45, nms_kind=kind, max_output_boxes=100)
            ref = reference_nms_outputs(boxes, scores, params, input_hw=(416, 416))
            p = nms_parameters(params, (416, 416), b, n, c)
            k = params.max_output_boxes
            outs = [np.zeros((b, 1), np.int32), np.zeros((b, k, 4), np.float32), np.zeros((b, k), np.float32),
                    np.zeros((b, k), np.int32)]
            d_in = [cuda.to_device(boxes), cuda.to_device(scores)]
            d_out = [cuda.mem_alloc(o.nbytes) for o in outs]
            ws = cuda.mem_alloc(max(api.workspace_size(p), 1))
            status = api.launch(p, int(d_in[0]), int(d_in[1]), None, *[int(d) for d in d_out], int(ws), None)
            cuda.Context.synchronize()
            if status != 0:
                return "FAIL", "diouNMSLaunch returned %d (%s)" % (status, kind)
            for o, d in zip(outs, d_out):
                cuda.memcpy_dtoh(o, d)
            for mem in d_in + d_out + [ws]:
                mem.free()
            total += int(ref[0].sum())
            if not np.array_equal(ref[0], outs[0]):
                mismatches += int(np.abs(ref[0] - outs[0]).sum()) or 1
                continue
            for i in range(b):
                m = int(ref[0][i, 0])
                same = (np.array_equal(ref[3][i, :m], outs[3][i, :m]) and np.allclose(ref[2][i, :m], outs[2][i, :m])
                        and np.allclose(ref[1][i, :m], outs[1][i, :m], atol=1e-4))
                mismatches += 0 if same else 1
    finally:
        st.ctx.pop()
    status = "PASS" if mismatches == 0 else "FAIL"
    return status, "%s: %d detections over greedynms and diounms, %d mismatch(es) vs the numpy reference" % (
        lib_path.name, total, mismatches)


def _sample_frames() -> List[np.ndarray]:
    from .runtime.agreement import sample_images

    frames = []
    for p in sample_images()[:4]:
        from .data.images import imread

        frames.append(imread(p))
    if not frames:  # synthetic, of awkward sizes
        rng = np.random.default_rng(5)
        frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((480, 640), (577, 301), (64, 64))]
    return frames


def _check_gpu_preprocess(st: _State, opts: Dict[str, Any]) -> Tuple[str, str]:
    from .plugins import build as plugin_build

    lib_path = plugin_build.default_preprocess_path()
    if not lib_path.is_file():
        raise _Skip("no preprocessing library at %s: run `yolo4 build-plugin`" % lib_path)
    _need_gpu(st)
    from .runtime.gpu_preprocess import GpuPreprocessor
    from .runtime.preprocess import preprocess

    frames = _sample_frames()
    cuda = st.cuda
    hw = (416, 416)
    worst = 0.0
    st.ctx.push()
    try:
        for letter_box in (False, True):
            ref, _ = preprocess(frames, hw, letter_box)
            pre = GpuPreprocessor(hw, letter_box, len(frames))
            dst = cuda.mem_alloc(ref.nbytes)
            stream = cuda.Stream()
            pre.run(frames, int(dst), stream)
            stream.synchronize()
            got = np.empty_like(ref)
            cuda.memcpy_dtoh(got, dst)
            dst.free()
            close = getattr(pre, "close", None)
            if close is not None:
                close()
            worst = max(worst, float(np.max(np.abs(got - ref))))
    finally:
        st.ctx.pop()
    status = "PASS" if worst <= 2.0 / 255 + 1e-6 else "FAIL"
    return status, "max |GPU - CPU| %.4f (%.2f/255) on %d frames, plain and letterbox" % (
        worst, worst * 255, len(frames))


def _check_user_engine(st: _State, opts: Dict[str, Any]) -> Tuple[str, str]:
    engine = opts.get("engine")
    if not engine:
        raise _Skip("no --engine given")
    _need_gpu(st)
    from .runtime.agreement import detection_agreement
    from .runtime.backends import create_backend
    from .runtime.detector import Detector
    from .runtime.engine_meta import read_engine_meta

    meta = read_engine_meta(engine)
    onnx_path = opts.get("onnx") or meta.built_onnx or meta.onnx_path
    if not onnx_path or not os.path.isfile(onnx_path):
        raise _Skip("the engine's source ONNX %s is not here: pass --onnx" % (onnx_path or "(unknown)"))
    frames = _sample_frames()
    with create_backend("onnxruntime", path=onnx_path) as ref_be:
        ref = Detector(ref_be).detect(frames)
    with create_backend("tensorrt", path=engine, device=int(opts.get("device", 0))) as be:
        got = Detector(be).detect(frames)
    a = detection_agreement(ref, got)
    need = MIN_MATCH.get(meta.precision, 0.9)
    frac = a.matched / a.reference if a.reference else 1.0
    status = "PASS" if frac >= need else "FAIL"
    return status, "%s (%s) vs %s: %d/%d detections matched (need %.0f%%), mean IoU %.3f" % (
        os.path.basename(engine), meta.precision, os.path.basename(onnx_path), a.matched, a.reference, need * 100,
        a.mean_iou)


CHECKS: List[Tuple[str, Callable[[_State, Dict[str, Any]], Tuple[str, str]]]] = [
    ("platform", _check_platform),
    ("opencv", _check_opencv),
    ("onnxruntime", _check_onnxruntime),
    ("cuda", _check_cuda),
    ("tensorrt", _check_trt("tensorrt")),
    ("tensorrt-rtx", _check_trt("tensorrt-rtx")),
    ("engine build", _check_build),
    ("engine vs onnxruntime", _check_engine_run),
    ("pinned copy", _check_pinned_copy),
    ("cuda graph", _check_cuda_graph),
    ("diou-nms plugin", _check_plugin),
    ("gpu preprocessing", _check_gpu_preprocess),
    ("your engine", _check_user_engine),
]


def run_selftest(engine: Optional[str] = None, onnx: Optional[str] = None, device: int = 0,
                 on_check: Optional[Callable[[Check], None]] = None,
                 checks: Optional[Sequence[Tuple[str, Callable[..., Tuple[str, str]]]]] = None) -> List[Check]:
    """Run every check (:data:`CHECKS`), in order; a check never stops the others.

    Args:
        engine: a ``yolo4 build-engine`` engine to compare with its source ONNX (``your engine``).
        onnx: that ONNX when it is not where the engine's metadata says.
        device: CUDA device index.
        on_check: called with each :class:`Check` as soon as it is done (the CLI prints it).
        checks: replaces :data:`CHECKS` (tests).

    Returns:
        The :class:`Check` list. An unexpected exception inside a check is a FAIL with its first line;
        a missing prerequisite (package, GPU, library) is a SKIP saying what to install or run.
    """
    st = _State()
    results: List[Check] = []
    with tempfile.TemporaryDirectory(prefix="yolo4-selftest-") as work:
        opts = {"engine": engine, "onnx": onnx, "device": device, "workdir": work}
        try:
            for name, fn in (checks if checks is not None else CHECKS):
                try:
                    status, detail = fn(st, opts)
                except _Skip as e:
                    status, detail = "SKIP", str(e)
                except KeyboardInterrupt:
                    raise
                except (Yolo4Error, Exception) as e:  # noqa: B014 - a check's failure is a FAIL line
                    status, detail = "FAIL", "%s: %s" % (type(e).__name__, _first_line(e))
                c = Check(name, status, detail)
                results.append(c)
                if on_check is not None:
                    on_check(c)
        finally:
            if st.ctx is not None:
                st.ctx.detach()
    return results

