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
engine build                builds a tiny yolo4-shaped FP32 engine (:func:`tiny_onnx`, profile batch
                            2..4 so that a batch of 1 is padded) with the project's builder, TF32
                            off where the builder can clear it (TensorRT for RTX: ahead of time)
engine vs onnxruntime       runs it on the TensorRT backend (two execution contexts, pipelined
                            submits, CUDA graphs at two batch sizes) against ONNX Runtime on the same
                            input, error relative to each output's scale (:func:`relative_error`);
                            FAIL when a context did not capture a graph and relaunch it twice
                            (:func:`graph_verdict`)
pinned copy                 host -> device throughput of page-locked memory (INFO figure)
cuda graph                  captures a memset through :mod:`yolo4.runtime.cuda_graph` on a non-blocking
                            stream and relaunches it twice
diou-nms plugin             the plugin library's kernels (``yolo4 build-plugin``) on the GPU against
                            the numpy reference, case matrix :data:`PLUGIN_CASES` (multi-tile groups,
                            float16, class-agnostic, ``norm_wh``, a top_k cap, B = 8)
nms engines                 the tiny model exported with ``--nms plugin`` and ``--nms efficient``, built
                            for batch 1..4, run at batch 1 and 3, with and without CUDA graphs, against
                            :func:`~yolo4.runtime.detector.reference_nms_outputs`
fp16 / int8 engines         FP16, INT8 with implicit calibration (16 generated images) and INT8 with
                            explicit Q/DQ, each against ONNX Runtime (:data:`PRECISION_RTOL`)
gpu preprocessing           the preprocessing kernel, float32 and float16 output, against
                            :func:`~yolo4.runtime.preprocess.preprocess`; rows past the frames left
                            alone; the padded rows of a short batch zeroed by the backend
your engine                 with ``--engine E``: E against its source ONNX on ONNX Runtime, on the
                            sample images (:func:`~yolo4.runtime.agreement.detection_agreement`);
                            with ``--cuda-graph`` also FAIL when no graph ran
==========================  ============================================================================

Each GPU check compares through a pure function (:func:`relative_error`, :func:`graph_verdict`,
:func:`nms_mismatches`) that the CPU test suite feeds wrong answers, so a check that cannot fail is
caught without a GPU.

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

__all__ = ["Check", "run_selftest", "format_check", "tiny_onnx", "TINY_INFO_HW", "STATUSES", "relative_error",
           "graph_verdict", "nms_mismatches", "PLUGIN_CASES", "plugin_case", "PRECISION_RTOL",
           "write_calibration_images"]

STATUSES = ("PASS", "FAIL", "SKIP", "INFO")
#: input size (H, W) of the tiny test model
TINY_INFO_HW = (64, 64)
#: agreement needed between an engine and its ONNX on the sample images (matched detections / reference)
MIN_MATCH = {"fp32": 0.95, "fp16": 0.9, "int8": 0.8}
#: largest error allowed between an engine and ONNX Runtime, relative to each output's scale (its
#: largest magnitude: 64 px for the tiny model's boxes, 1 for its scores). FP32: TensorRT's TF32
#: (on by default on Ampere and later) gives about 1.4e-4 of the box scale on the tiny model (8.8e-3 px).
PRECISION_RTOL = {"fp32": 1e-3, "fp16": 1e-2, "int8": 5e-2}
#: batch profile of the tiny engine: a batch of 1 is padded to 2 (the padding paths run)
TINY_BATCH = "2,2,4"


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


# -- comparisons (pure: the CPU tests feed them wrong answers) ------------------------------------

def relative_error(ref: Sequence[np.ndarray], got: Sequence[np.ndarray]) -> float:
    """Largest ``max|ref - got| / max|ref|`` over the outputs (each output relative to its own scale,
    so pixel boxes and 0..1 scores are judged alike). A shape mismatch or a NaN is ``inf``."""
    worst = 0.0
    if len(ref) != len(got):
        return float("inf")
    for r, g in zip(ref, got):
        r = np.asarray(r, np.float64)
        g = np.asarray(g, np.float64)
        if r.shape != g.shape:
            return float("inf")
        if r.size == 0:
            continue
        err = float(np.max(np.abs(r - g)))
        if not np.isfinite(err):
            return float("inf")
        worst = max(worst, err / max(float(np.max(np.abs(r))), 1e-12))
    return worst


def graph_verdict(asked: bool, stats: Sequence[Tuple[int, int]], min_launches: int = 2) -> Tuple[bool, str]:
    """Did CUDA graphs run as asked? ``stats``: per execution context ``(graphs captured, launches)``
    (:attr:`TensorRTBackend.graph_stats`). Asked: every context must have captured a graph and
    relaunched graphs ``min_launches`` times or more, else False (a capture refused and fallen back
    to plain enqueues is a failure of what was asked). Not asked: no graph may have run."""
    text = ", ".join("context %d: %d captured, %d launches" % (i, c, n) for i, (c, n) in enumerate(stats))
    if not stats:
        return False, "no execution context ran"
    if asked:
        ok = all(c >= 1 and n >= min_launches for c, n in stats)
        return ok, ("CUDA graphs " + text) if ok else ("CUDA graphs asked but not run everywhere: " + text)
    ok = all(c == 0 and n == 0 for c, n in stats)
    return ok, "no CUDA graphs" if ok else "CUDA graphs ran without being asked: " + text


def nms_mismatches(ref: Sequence[np.ndarray], got: Sequence[np.ndarray], box_atol: float = 1e-4) -> int:
    """Images whose NMS outputs differ. Both in EfficientNMS_TRT's layout ``(num_detections [B,1],
    detection_boxes [B,K,4], detection_scores [B,K], detection_classes [B,K])``; only the first
    ``num_detections`` rows count: same count, same classes, scores within 1e-5 (relative), boxes
    within ``box_atol`` pixels. A batch of another size counts every image."""
    if len(got) != 4 or np.shape(got[0]) != np.shape(ref[0]):
        return int(np.shape(ref[0])[0])
    bad = 0
    for i in range(int(ref[0].shape[0])):
        m = int(ref[0][i, 0])
        if int(got[0][i, 0]) != m:
            bad += 1
            continue
        same = (np.array_equal(np.asarray(ref[3][i, :m]), np.asarray(got[3][i, :m]))
                and np.allclose(np.asarray(ref[2][i, :m], np.float32), np.asarray(got[2][i, :m], np.float32),
                                rtol=1e-5, atol=1e-6)
                and np.allclose(np.asarray(ref[1][i, :m], np.float32), np.asarray(got[1][i, :m], np.float32),
                                rtol=0, atol=box_atol))
        bad += 0 if same else 1
    return bad


#: the plugin's GPU cases: (name, B, N, C, dtype, nms_kind, class_agnostic, top_k, max_output_boxes,
#: per-image frame ``norm_wh``, score threshold, clustered: groups longer than one 256-candidate tile)
PLUGIN_CASES: List[Tuple[str, int, int, int, str, str, bool, int, int, bool, float, bool]] = [
    ("greedynms", 2, 600, 4, "float32", "greedynms", False, 30000, 100, False, 0.25, False),
    ("diounms", 2, 600, 4, "float32", "diounms", False, 30000, 100, False, 0.25, False),
    ("multi-tile", 2, 3000, 2, "float32", "greedynms", False, 30000, 300, False, 0.01, True),
    ("float16", 3, 1500, 20, "float16", "greedynms", False, 30000, 300, False, 0.05, False),
    ("class-agnostic", 2, 2000, 20, "float32", "diounms", True, 30000, 300, False, 0.05, True),
    ("norm_wh", 3, 1000, 10, "float32", "greedynms", False, 30000, 300, True, 0.05, False),
    ("top_k", 2, 2500, 20, "float32", "greedynms", False, 700, 100, False, 0.001, False),
    ("B=8", 8, 800, 10, "float32", "default", False, 30000, 50, False, 0.05, False),
]


def plugin_case(case: Tuple[Any, ...], size: int = 416) -> Tuple[np.ndarray, np.ndarray, Any, Optional[np.ndarray]]:
    """The inputs of one :data:`PLUGIN_CASES` row: ``boxes [B,N,4]``, ``scores [B,N,C]`` (x1,y1,x2,y2
    input pixels of a ``size`` square; the row's dtype), its :class:`NmsParams` and ``norm_wh [B,2]``
    float32 (per-image frame) or None. Seeded by the case's name: the same inputs every run."""
    from .nms_params import NmsParams

    name, b, n, c, dtype, kind, agnostic, top_k, k, per_image, conf, clustered = case
    rng = np.random.default_rng(sum(map(ord, name)))
    if clustered:  # jittered copies of a few boxes, one dominant class: hundreds of candidates per group
        centre = rng.uniform(0, size, (b, 4, 2))
        wh = rng.uniform(20, size / 4, (b, 4, 2))
        pick = rng.integers(0, 4, (b, n))
        ctr = np.take_along_axis(centre, pick[..., None], 1) + rng.normal(0, 0.1, (b, n, 2)) * 40
        half = np.take_along_axis(wh, pick[..., None], 1) / 2
        boxes = np.concatenate([ctr - half, ctr + half], -1)
        scores = rng.uniform(0, 1, (b, n, c)) * np.where(np.arange(c) == 0, 1.0, 0.05)
    else:
        ctr = rng.uniform(0, size, (b, n, 2))
        half = rng.uniform(2, size / 6, (b, n, 2))
        boxes = np.concatenate([ctr - half, ctr + half], -1)
        scores = rng.uniform(0, 1, (b, n, 1)) ** 3 * rng.uniform(0, 1, (b, n, c)) ** 2
    params = NmsParams(score_threshold=conf, iou_threshold=0.45, nms_kind=kind, beta_nms=0.8,
                       max_output_boxes=k, top_k=top_k, class_agnostic=agnostic)
    norm = rng.uniform(250, size, (b, 2)).astype(np.float32) if per_image else None
    return (np.ascontiguousarray(boxes, dtype), np.ascontiguousarray(scores, dtype), params, norm)


def plugin_reference(boxes: np.ndarray, scores: np.ndarray, params: Any, norm_wh: Optional[np.ndarray],
                     input_hw: Tuple[int, int] = (416, 416)) -> Tuple[np.ndarray, ...]:
    """What the DIoU-NMS plugin must return for these inputs: the numpy reference in its layout
    (``pad_class`` -1), with ``norm_wh`` as per-image frames."""
    from .runtime.detector import reference_nms_outputs
    from .runtime.preprocess import Transform

    frames = None
    if norm_wh is not None:
        frames = [Transform(scale_x=float(w), scale_y=float(h), pad_x=0.0, pad_y=0.0, orig_w=1, orig_h=1)
                  for w, h in np.asarray(norm_wh, np.float32)]
    return reference_nms_outputs(boxes, scores, params, input_hw=input_hw, transforms=frames, pad_class=-1)


def write_calibration_images(folder: str, count: int = 16, hw: Tuple[int, int] = (96, 128), seed: int = 7) -> str:
    """``count`` generated BGR images (smooth gradients, blocks and noise, so that activations span
    a realistic range) as PNG files in ``folder``, for an INT8 calibration; returns ``folder``."""
    import cv2

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = hw
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(count):
        img = np.empty((h, w, 3), np.float32)
        for ch in range(3):
            a, b2, c = rng.uniform(-1, 1, 3)
            img[..., ch] = 128 + 100 * np.sin(a * xx / 9 + b2 * yy / 7 + c * 6)
        for _ in range(3):
            y0, x0 = int(rng.integers(0, h - 16)), int(rng.integers(0, w - 16))
            img[y0:y0 + 16, x0:x0 + 16] = rng.uniform(0, 255, 3)
        img += rng.normal(0, 8, img.shape)
        cv2.imwrite(os.path.join(folder, "calib%02d.png" % i), np.clip(img, 0, 255).astype(np.uint8))
    return folder


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
    from .engine_meta import cuda_device

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


def _no_tf32() -> Dict[str, Any]:
    """``{"tf32": False}`` when the builder can clear TF32 (``build-engine --no-tf32``), else {}: an
    FP32 engine checked for exactness must not round its matmuls and convolutions to TF32."""
    import inspect

    from .convert.engine_builder import build_engine

    return {"tf32": False} if "tf32" in inspect.signature(build_engine).parameters else {}


def _build(st: _State, onnx_path: str, out: str, **kw: Any) -> Any:
    """The project's builder on ``onnx_path`` for this machine (TensorRT for RTX: ahead of time for
    this GPU's compute capability, or 8.6 without one), quietly."""
    from .convert.engine_builder import build_engine

    cc: Sequence[str] = ()
    if st.trt == "tensorrt-rtx":
        cc = [st.gpu.compute_capability] if st.gpu is not None else ["8.6"]
    with open(os.devnull, "w") as quiet:
        return build_engine(onnx_path, out, backend=st.trt, compute_capability=cc, log=None, progress_stream=quiet,
                            **kw)


def _check_build(st: _State, opts: Dict[str, Any]) -> Tuple[str, str]:
    if st.trt is None:
        raise _Skip("neither tensorrt nor tensorrt_rtx is installed")
    work = opts["workdir"]
    st.tiny_onnx = tiny_onnx(os.path.join(work, "tiny.onnx"))
    out = os.path.join(work, "tiny.engine")
    t0 = time.time()
    no_tf32 = _no_tf32()
    res = _build(st, st.tiny_onnx, out, batch=TINY_BATCH, contexts=2, **no_tf32)
    st.tiny_engine = str(res.engine_path)
    if st.trt == "tensorrt-rtx":
        where = "ahead of time for %s" % (st.gpu.compute_capability if st.gpu is not None else "8.6")
    else:
        where = "on this GPU"
    tf32 = "TF32 off" if no_tf32 else "TF32 as TensorRT's default (this builder has no tf32 option)"
    return "PASS", "FP32 engine, %d KiB, built in %.1f s %s (%s, %s)" % (
        os.path.getsize(out) // 1024, time.time() - t0, where, st.trt, tf32)


def _need_gpu(st: _State) -> None:
    if st.cuda is None:
        raise _Skip("needs pycuda and a CUDA GPU (see the cuda line)")


def _tiny_reference(st: _State, x: np.ndarray) -> List[np.ndarray]:
    ort = _import("onnxruntime", "onnxruntime")
    sess = ort.InferenceSession(st.tiny_onnx, providers=["CPUExecutionProvider"])
    return list(sess.run(["boxes", "scores"], {"images": x}))


def _check_engine_run(st: _State, opts: Dict[str, Any]) -> Tuple[str, str]:
    _need_gpu(st)
    if st.tiny_engine is None:
        raise _Skip("no engine was built (see the engine build line)")
    from .runtime.backends.tensorrt_backend import TensorRTBackend

    x = np.random.default_rng(1).random((4, 3) + TINY_INFO_HW, dtype=np.float32)
    ref = _tiny_reference(st, x)
    worst = 0.0
    with TensorRTBackend(st.tiny_engine, device=int(opts.get("device", 0)), contexts=2, cuda_graph=True) as be:
        pend = [be.submit(x[:2]), be.submit(x[2:]), be.submit(x[:3])]  # round robin, third waits for first
        runs = [(p.result(), sl) for p, sl in zip(pend, (slice(0, 2), slice(2, 4), slice(0, 3)))]
        # per context and batch size (4, and 1 padded to 2): warm-up, capture + launch, launch
        for size in (4, 1):
            for _ in range(3 * be.contexts):
                runs.append((be(x[:size]), slice(0, size)))
        for size in (4, 1, 4, 1):  # the graph of each shape is kept: launches, no recapture
            runs.append((be(x[:size]), slice(0, size)))
        for out, sl in runs:
            worst = max(worst, relative_error([r[sl] for r in ref], out))
        ok_graph, graph_text = graph_verdict(True, be.graph_stats)
        recaptured = [c for c, _ in be.graph_stats if c > 2]
        contexts = be.contexts
    if recaptured:
        ok_graph, graph_text = False, "a graph was recaptured for a batch size it already had: " + graph_text
    ok = worst < PRECISION_RTOL["fp32"] and ok_graph
    return ("PASS" if ok else "FAIL"), "max |TensorRT - onnxruntime| / scale %.2e (limit %.0e) over boxes and " \
        "scores, %d contexts, batches 1 (padded) to 4; %s" % (worst, PRECISION_RTOL["fp32"], contexts, graph_text)


def _check_pinned_copy(st: _State, opts: Dict[str, Any]) -> Tuple[str, str]:
    _need_gpu(st)
    cuda = st.cuda
    st.ctx.push()
    try:
        n = 64 << 20
        host = cuda.pagelocked_empty(n, np.uint8)
        dev = cuda.mem_alloc(n)
        try:
            stream = cuda.Stream()
            cuda.memcpy_htod_async(dev, host, stream)
            stream.synchronize()
            t0 = time.perf_counter()
            for _ in range(5):
                cuda.memcpy_htod_async(dev, host, stream)
            stream.synchronize()
            dt = time.perf_counter() - t0
        finally:
            dev.free()
    finally:
        st.ctx.pop()
    return "INFO", "page-locked host -> device: %.1f GB/s (5 x 64 MiB)" % (5 * n / dt / 1e9)


def _check_cuda_graph(st: _State, opts: Dict[str, Any]) -> Tuple[str, str]:
    _need_gpu(st)
    from .runtime.cuda_graph import STREAM_NON_BLOCKING, capture

    cuda = st.cuda
    n = 1 << 20
    wrong: List[int] = []
    st.ctx.push()
    try:
        dev = cuda.mem_alloc(n)
        try:
            stream = cuda.Stream(flags=STREAM_NON_BLOCKING)
            graph = capture(stream.handle, lambda: cuda.memset_d8_async(dev, 7, n, stream))
            try:
                host = np.empty(n, np.uint8)
                for _ in range(2):  # relaunched: the graph is reusable, not a one-shot
                    cuda.memset_d8(dev, 0, n)
                    graph.launch(stream.handle)
                    stream.synchronize()
                    cuda.memcpy_dtoh(host, dev)
                    wrong.append(int(np.sum(host != 7)))
            finally:
                graph.destroy()
        finally:
            dev.free()
    finally:
        st.ctx.pop()
    ok = not any(wrong)
    return ("PASS" if ok else "FAIL"), "captured a 1 MiB memset on a non-blocking stream, launched twice: %s" % (
        "every byte set both times" if ok else "bytes wrong per launch %s" % wrong)


def _run_plugin_on_gpu(cuda: Any, api: Any, boxes: np.ndarray, scores: np.ndarray, params: Any,
                       norm_wh: Optional[np.ndarray], input_hw: Tuple[int, int]) -> Tuple[np.ndarray, ...]:
    """``diouNMSLaunch`` on device copies of the inputs; every device buffer is freed on every path."""
    from .plugins import nms_parameters

    b, n, c = scores.shape
    k = params.max_output_boxes
    p = nms_parameters(params, input_hw, b, n, c, half=boxes.dtype == np.float16, per_image_frame=norm_wh is not None)
    outs = [np.zeros((b, 1), np.int32), np.zeros((b, k, 4), boxes.dtype), np.zeros((b, k), boxes.dtype),
            np.zeros((b, k), np.int32)]
    mems: List[Any] = []
    try:
        for a in (boxes, scores) + ((norm_wh,) if norm_wh is not None else ()):
            mems.append(cuda.to_device(np.ascontiguousarray(a)))
        d_out = [cuda.mem_alloc(o.nbytes) for o in outs]
        mems += d_out
        ws = cuda.mem_alloc(max(api.workspace_size(p), 1))
        mems.append(ws)
        status = api.launch(p, int(mems[0]), int(mems[1]), int(mems[2]) if norm_wh is not None else None,
                            *[int(d) for d in d_out], int(ws), None)
        cuda.Context.synchronize()
        if status != 0:
            raise RuntimeError("diouNMSLaunch returned %d" % status)
        for o, d in zip(outs, d_out):
            cuda.memcpy_dtoh(o, d)
    finally:
        for mem in mems:
            mem.free()
    return tuple(outs)


def _load_nms_api(lib_path: Path) -> Any:
    """The plugin library's C API (:class:`~yolo4.plugins.NmsApi`), loaded as the runtime loads it."""
    import ctypes

    from .plugins import NmsApi, load_plugin_library

    load_plugin_library(lib_path)
    return NmsApi(ctypes.CDLL(str(lib_path)))


def _check_plugin(st: _State, opts: Dict[str, Any]) -> Tuple[str, str]:
    from .plugins import default_plugin_path

    lib_path = default_plugin_path()
    if not lib_path.is_file():
        raise _Skip("no plugin library at %s: run `yolo4 build-plugin`" % lib_path)
    _need_gpu(st)
    api = _load_nms_api(lib_path)
    total, failed = 0, []
    st.ctx.push()
    try:
        for case in PLUGIN_CASES:
            boxes, scores, params, norm = plugin_case(case)
            ref = plugin_reference(boxes.astype(np.float32), scores.astype(np.float32), params, norm)
            got = _run_plugin_on_gpu(st.cuda, api, boxes, scores, params, norm, (416, 416))
            total += int(ref[0].sum())
            bad = nms_mismatches(ref, got, box_atol=1e-4 if boxes.dtype == np.float32 else 0.5)
            if bad:
                failed.append("%s: %d image(s)" % (case[0], bad))
    finally:
        st.ctx.pop()
    status = "PASS" if not failed else "FAIL"
    return status, "%s: %d cases (%s), %d detections; mismatches vs the numpy reference: %s" % (
        lib_path.name, len(PLUGIN_CASES), ", ".join(c[0] for c in PLUGIN_CASES), total,
        "; ".join(failed) if failed else "none")


def _check_nms_engines(st: _State, opts: Dict[str, Any]) -> Tuple[str, str]:
    _need_gpu(st)
    if st.tiny_onnx is None or st.trt is None:
        raise _Skip("no engine was built (see the engine build line)")
    if st.trt == "tensorrt-rtx":
        raise _Skip("TensorRT for RTX loads no plugins (neither DIoUNMS_TRT nor EfficientNMS_TRT)")
    from .convert.nms_export import export_nms
    from .nms_params import NmsParams
    from .plugins import default_plugin_path
    from .runtime.backends.tensorrt_backend import TensorRTBackend
    from .runtime.detector import reference_nms_outputs

    work = opts["workdir"]
    x = np.random.default_rng(11).random((3, 3) + TINY_INFO_HW, dtype=np.float32)
    boxes, scores = _tiny_reference(st, x)
    params = NmsParams(score_threshold=0.3, iou_threshold=0.45, max_output_boxes=20)
    parts, failed = [], []
    for mode in ("plugin", "efficient"):
        libs: List[str] = []
        if mode == "plugin":
            lib = default_plugin_path()
            if not lib.is_file():
                parts.append("plugin: not built (`yolo4 build-plugin`)")
                continue
            libs = [str(lib)]
        onnx_path = os.path.join(work, "tiny-%s.onnx" % mode)
        done = export_nms(st.tiny_onnx, onnx_path, mode, params, check=False).params
        engine = os.path.join(work, "tiny-%s.engine" % mode)
        _build(st, onnx_path, engine, batch="1,2,4", contexts=1, plugin_libs=libs, **_no_tf32())
        bad = 0
        for graphs in (False, True):
            with TensorRTBackend(engine, device=int(opts.get("device", 0)), contexts=1, cuda_graph=graphs) as be:
                for size in (1, 3):
                    ref = reference_nms_outputs(boxes[:size], scores[:size], done, input_hw=TINY_INFO_HW,
                                                pad_class=-1 if mode == "plugin" else 0)
                    for _ in range(3 if graphs else 1):  # warm-up, capture + launch, launch
                        bad += nms_mismatches(ref, be(x[:size]), box_atol=1e-3)
                ok_graph, text = graph_verdict(graphs, be.graph_stats)
                if not ok_graph:
                    failed.append("%s: %s" % (mode, text))
        parts.append("%s: %d image mismatch(es)" % (mode, bad))
        if bad:
            failed.append("%s: %d image(s) differ" % (mode, bad))
    status = "FAIL" if failed else "PASS"
    return status, "tiny model + NMS, batch 1 and 3 of 1..4, with and without CUDA graphs vs the reference: " \
        "%s%s" % ("; ".join(parts), (" -- " + "; ".join(failed)) if failed else "")


def _check_precisions(st: _State, opts: Dict[str, Any]) -> Tuple[str, str]:
    _need_gpu(st)
    if st.tiny_onnx is None or st.trt is None:
        raise _Skip("no engine was built (see the engine build line)")
    from .data.images import imread
    from .runtime.backends.tensorrt_backend import TensorRTBackend
    from .runtime.preprocess import preprocess

    work = opts["workdir"]
    calib = write_calibration_images(os.path.join(work, "calib"), 16)
    frames = [imread(os.path.join(calib, f)) for f in sorted(os.listdir(calib))[:4]]
    x, _ = preprocess(frames, TINY_INFO_HW, False)
    ref = _tiny_reference(st, x)
    variants: List[Tuple[str, str, Dict[str, Any]]] = [("fp16", "fp16", {"fp16": True})]
    if st.trt == "tensorrt" and int(str(getattr(importlib.import_module("tensorrt"), "__version__", "0")).split(".")[0]) < 11:
        variants.append(("int8 implicit", "int8", {"int8": True, "quantization": "implicit"}))
    variants.append(("int8 explicit Q/DQ", "int8", {"int8": True, "quantization": "explicit"}))
    parts, failed = [], []
    for name, precision, kw in variants:
        engine = os.path.join(work, "tiny-%s.engine" % name.replace(" ", "-").replace("/", ""))
        if precision == "int8":
            kw = dict(kw, calib_data=calib, calib_images=16)
        _build(st, st.tiny_onnx, engine, batch=TINY_BATCH, contexts=1, **kw)
        with TensorRTBackend(engine, device=int(opts.get("device", 0)), contexts=1) as be:
            err = relative_error(ref, be(x))
        parts.append("%s %.1e" % (name, err))
        if not err <= PRECISION_RTOL[precision]:
            failed.append(name)
    if len(variants) == 2:
        parts.append("int8 implicit: not on this TensorRT (calibrators are gone in 11 and TensorRT for RTX)")
    status = "FAIL" if failed else "PASS"
    return status, "max |engine - onnxruntime| / scale on 4 images: %s (limits fp16 %.0e, int8 %.0e; 16 " \
        "calibration images)%s" % (", ".join(parts), PRECISION_RTOL["fp16"], PRECISION_RTOL["int8"],
                                   "; over the limit: " + ", ".join(failed) if failed else "")


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
    worst, spill = 0.0, 0
    st.ctx.push()
    try:
        for dtype in (np.float32, np.float16):
            for letter_box in (False, True):
                ref, _ = preprocess(frames, hw, letter_box)
                ref = ref.astype(dtype)
                pre = GpuPreprocessor(hw, letter_box, len(frames) + 1, dtype=dtype)
                rows = np.full((len(frames) + 1,) + ref.shape[1:], 7, dtype)  # one row more than the frames
                dst = cuda.to_device(rows)
                try:
                    stream = cuda.Stream()
                    pre.run(frames, int(dst), stream)
                    stream.synchronize()
                    cuda.memcpy_dtoh(rows, dst)
                finally:
                    dst.free()
                    pre.close()
                worst = max(worst, float(np.max(np.abs(rows[:len(frames)].astype(np.float32) - ref))))
                spill += int(np.sum(rows[len(frames):] != 7))
    finally:
        st.ctx.pop()
    padding = _padded_rows_check(st, opts, frames[:1])
    ok = worst <= 2.0 / 255 + 1e-3 and spill == 0 and padding[0]
    return ("PASS" if ok else "FAIL"), "max |GPU - CPU| %.4f (%.2f/255) on %d frames, plain and letterbox, " \
        "float32 and float16; %d value(s) written past the frames; %s" % (worst, worst * 255, len(frames), spill,
                                                                         padding[1])


def _padded_rows_check(st: _State, opts: Dict[str, Any], frames: List[np.ndarray]) -> Tuple[bool, str]:
    """One frame through ``submit_frames`` on the tiny engine (profile minimum 2): the padded row of
    the input must be zeros although the previous batch left values there, and the frame's outputs
    must equal the CPU path's."""
    if st.tiny_engine is None:
        return True, "padded rows: no tiny engine (see the engine build line)"
    from .runtime.backends.tensorrt_backend import TensorRTBackend
    from .runtime.preprocess import preprocess

    two = [frames[0], frames[0][::-1].copy()]
    with TensorRTBackend(st.tiny_engine, device=int(opts.get("device", 0)), contexts=1) as be:
        be.submit_frames(two)[0].result()  # leaves a non-zero second row in the input buffer
        got = be.submit_frames(frames)[0].result()
        slot = be._slots[0]  # the selftest looks at the engine's input buffer itself
        inp = np.empty((2, 3) + TINY_INFO_HW, be._input.dtype)
        st.ctx.push()
        try:
            st.cuda.memcpy_dtoh(inp, slot.dev[be._input.name])
        finally:
            st.ctx.pop()
        x, _ = preprocess(frames, TINY_INFO_HW, be.info.letter_box)
        want = be(x)
    nonzero = int(np.count_nonzero(inp[1]))
    err = relative_error(want, got)
    ok = nonzero == 0 and err <= 2e-2
    return ok, "short batch (1 of min 2): %d non-zero padded value(s), outputs vs CPU preprocessing %.1e" % (
        nonzero, err)


def _check_user_engine(st: _State, opts: Dict[str, Any]) -> Tuple[str, str]:
    engine = opts.get("engine")
    if not engine:
        raise _Skip("no --engine given")
    _need_gpu(st)
    from .engine_meta import read_engine_meta
    from .runtime.agreement import detection_agreement
    from .runtime.backends import create_backend
    from .runtime.detector import Detector

    meta = read_engine_meta(engine)
    onnx_path = opts.get("onnx") or meta.built_onnx or meta.onnx_path
    if not onnx_path or not os.path.isfile(onnx_path):
        raise _Skip("the engine's source ONNX %s is not here: pass --onnx" % (onnx_path or "(unknown)"))
    frames = _sample_frames()
    with create_backend("onnxruntime", path=onnx_path) as ref_be:
        ref = Detector(ref_be).detect(frames)
    asked = bool(opts.get("cuda_graph"))
    with create_backend("tensorrt", path=engine, device=int(opts.get("device", 0)), cuda_graph=asked) as be:
        got = Detector(be).detect(frames)
        if asked:  # warm-up, capture and relaunches need the same batch size several times
            for _ in range(2 * be.contexts):
                Detector(be, batch_size=1).detect(frames[:1])
            ok_graph, graph_text = graph_verdict(True, be.graph_stats)
        else:
            ok_graph, graph_text = True, "no CUDA graphs"
    a = detection_agreement(ref, got)
    need = MIN_MATCH.get(meta.precision, 0.9)
    frac = a.matched / a.reference if a.reference else 1.0
    status = "PASS" if frac >= need and ok_graph else "FAIL"
    return status, "%s (%s) vs %s: %d/%d detections matched (need %.0f%%), mean IoU %.3f; %s" % (
        os.path.basename(engine), meta.precision, os.path.basename(onnx_path), a.matched, a.reference, need * 100,
        a.mean_iou, graph_text)


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
    ("nms engines", _check_nms_engines),
    ("fp16 / int8 engines", _check_precisions),
    ("gpu preprocessing", _check_gpu_preprocess),
    ("your engine", _check_user_engine),
]


def run_selftest(engine: Optional[str] = None, onnx: Optional[str] = None, device: int = 0,
                 on_check: Optional[Callable[[Check], None]] = None, cuda_graph: bool = False,
                 checks: Optional[Sequence[Tuple[str, Callable[..., Tuple[str, str]]]]] = None) -> List[Check]:
    """Run every check (:data:`CHECKS`), in order; a check never stops the others.

    Args:
        engine: a ``yolo4 build-engine`` engine to compare with its source ONNX (``your engine``).
        onnx: that ONNX when it is not where the engine's metadata says.
        device: CUDA device index.
        cuda_graph: run ``engine`` with CUDA graphs too; its line FAILs when no graph ran.
        on_check: called with each :class:`Check` as soon as it is done (the CLI prints it).
        checks: replaces :data:`CHECKS` (tests).

    Returns:
        The :class:`Check` list. An unexpected exception inside a check is a FAIL with its first line;
        a missing prerequisite (package, GPU, library) is a SKIP saying what to install or run.
    """
    st = _State()
    results: List[Check] = []
    with tempfile.TemporaryDirectory(prefix="yolo4-selftest-") as work:
        opts = {"engine": engine, "onnx": onnx, "device": device, "workdir": work, "cuda_graph": cuda_graph}
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

