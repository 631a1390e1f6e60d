"""Explicit INT8: a Q/DQ ONNX made by ONNX Runtime's post-training static quantization.

:func:`quantize_qdq` calibrates activation ranges on a :class:`~yolo4.calib.images.CalibrationSet`
(the one runtime preprocessing) with ``onnxruntime.quantization.quantize_static`` in QDQ format and
writes a model TensorRT builds as an explicitly quantized (strongly typed) network: TensorRT 8.5+
with the INT8 flag, 11.x and TensorRT for RTX as they are. ONNX Runtime runs the same file on the CPU.

Two placements (``layout``):

* ``"tensorrt"`` (default) — the options NVIDIA's Model Optimizer passes to ONNX Runtime for
  TensorRT (``modelopt/onnx/quantization/ort_utils.py``, "trt_guided_options"): Q/DQ on the inputs
  of ``Conv`` only (TensorRT fuses the following LeakyReLU/Mish and propagates INT8 through pooling,
  concatenation and resizing itself, TensorRT developer guide "Explicit quantization", "Q/DQ layer
  placement recommendations"), weights per output channel (axis 0) symmetric INT8 as Q->DQ pairs on
  float weights (``AddQDQPairToWeight``), activations symmetric per tensor (TensorRT requires zero
  point 0), bias not quantized (TensorRT quantizes it itself), no Q/DQ on op outputs
  (``OpTypesToExcludeOutputQuantization`` = every op type), ``DedicatedQDQPair=False``,
  ``ForceQuantizeNoInputCheck``. This is the accurate placement; ONNX Runtime cannot fuse it into
  integer kernels, so on the CPU it runs slower than the FP32 model.
* ``"onnxruntime"`` — for ONNX Runtime's CPU integer kernels (``QLinearConv``, VNNI): Q/DQ on the
  inputs and outputs of ``Conv``, ``LeakyRelu`` and ``MaxPool``,
  int8 weights, uint8 asymmetric activations (ONNX Runtime's U8S8 format). Fast on the CPU, but it
  quantizes every pre-activation too and is less accurate; TensorRT refuses its non-zero zero points.

By default the first convolution (it sees raw pixels) and the convolutions that feed the ``[yolo]``
layers stay in float, together with the box decoding after them (exponentials and offsets lose most
to 8 bits); ``exclude`` adds more, by darknet layer index (``"12"``, ``"12-15"``) or by a glob on the
ONNX node name (``"/layers.3*/conv/Conv"``).

Calibration methods: ``minmax`` (default: max |activation| over the calibration images, the "max"
calibration of NVIDIA Model Optimizer's default INT8 config; measured best on yolov4-tiny, see the
README's INT8 table) and ``percentile`` (the 99.999th percentile of |activation|), computed exactly with one batch in memory
by :mod:`yolo4.calib.ranges`, and ``entropy`` (ONNX Runtime's KL-divergence calibrator, fed one batch
at a time). The ranges are kept in ONNX Runtime's calibration cache (a JSON file), so the sensitivity
search of :mod:`yolo4.calib.sensitivity` re-quantizes with other exclusions without recalibrating.

Python 3.8; onnx and onnxruntime are imported inside the functions (``pip install yolo4[export]``).
"""

import contextlib
import fnmatch
import io
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Union

from ..errors import ModelFileError, Yolo4Error
from ..onnx_facts import onnx_precision
from .defaults import DEFAULT_LAYOUT, DEFAULT_METHOD, DEFAULT_PERCENTILE

PathLike = Union[str, "os.PathLike[str]"]
Log = Callable[[str], Any]

__all__ = ["CALIB_METHODS", "QDQ_LAYOUTS", "DEFAULT_METHOD", "DEFAULT_PERCENTILE", "DEFAULT_LAYOUT", "QdqResult",
           "default_float_nodes", "resolve_exclude", "quantize_qdq", "conv_nodes"]

#: calibration methods of explicit (Q/DQ) quantization
CALIB_METHODS = ("minmax", "percentile", "entropy")
#: Q/DQ placements (see the module docstring)
QDQ_LAYOUTS = ("tensorrt", "onnxruntime")

_ORT_OPS = ["Conv", "LeakyRelu", "MaxPool"]
_LAYER_RE = re.compile(r"^(\d+)(?:-(\d+))?$")
_NODE_LAYER_RE = re.compile(r"/layers\.(\d+)/")


@dataclass
class QdqResult:
    """What :func:`quantize_qdq` wrote.

    Attributes:
        path: the Q/DQ ONNX file.
        quantized: names of the Conv nodes that run in INT8 (their inputs carry Q/DQ).
        candidates: every node of the layout's quantized op types that was quantized (the Convs for
            ``tensorrt``; Conv, LeakyRelu and MaxPool nodes for ``onnxruntime``): what
            :mod:`yolo4.calib.sensitivity` may return to float.
        excluded: names of the nodes kept in float (defaults + ``exclude``), graph order.
        method: calibration method; layout: Q/DQ placement; calib_digest: the calibration set's digest.
        seconds: calibration + quantization time.
    """

    path: Path
    quantized: List[str]
    excluded: List[str]
    method: str
    layout: str
    calib_digest: str
    num_images: int
    seconds: float
    metadata: Dict[str, str] = field(default_factory=dict)
    candidates: List[str] = field(default_factory=list)

    def summary(self) -> str:
        return ("%d Conv layers INT8, %d kept float (%s calibration on %d images, %s layout, %.1f s)"
                % (len(self.quantized), len([n for n in self.excluded if n.endswith("Conv")]), self.method,
                   self.num_images, self.layout, self.seconds))


def _load(path: PathLike):
    import onnx

    try:
        return onnx.load(os.fspath(path))
    except FileNotFoundError:
        raise ModelFileError("ONNX model not found", path) from None
    except Exception as e:  # protobuf DecodeError, OSError
        raise ModelFileError("not a readable ONNX model (%s)" % (str(e).splitlines()[0] if str(e) else
                                                                 type(e).__name__), path) from None


def conv_nodes(model) -> List[str]:
    """Names of the Conv nodes of an ONNX ``ModelProto``, graph order."""
    return [n.name for n in model.graph.node if n.op_type == "Conv"]


def _consumers(model) -> Dict[str, List[Any]]:
    out: Dict[str, List[Any]] = {}
    for n in model.graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


def default_float_nodes(model) -> List[str]:
    """Nodes kept in float by default: the first Conv, the Convs feeding the ``[yolo]`` layers (a
    graph output is reachable from them through no other Conv) and every node after those (decode).

    Args:
        model: ONNX ``ModelProto`` of a yolo4 export (outputs ``boxes`` and ``scores``).

    Returns:
        node names, graph order.
    """
    nodes = list(model.graph.node)
    convs = [n for n in nodes if n.op_type == "Conv"]
    if not convs:
        return []
    cons = _consumers(model)
    outputs = {o.name for o in model.graph.output}

    def reaches_output_without_conv(node) -> bool:
        stack, seen = list(node.output), set()
        while stack:
            t = stack.pop()
            if t in outputs:
                return True
            for c in cons.get(t, []):
                if c.op_type != "Conv" and c.name not in seen:
                    seen.add(c.name)
                    stack.extend(c.output)
        return False

    heads = [n for n in convs if reaches_output_without_conv(n)]
    keep: Set[str] = {convs[0].name} | {n.name for n in heads}
    stack = [t for n in heads for t in n.output]
    while stack:
        t = stack.pop()
        for c in cons.get(t, []):
            if c.name not in keep:
                keep.add(c.name)
                stack.extend(c.output)
    return [n.name for n in nodes if n.name in keep]


def resolve_exclude(model, patterns: Iterable[str], source: Optional[PathLike] = None) -> List[str]:
    """Node names matched by ``--int8-exclude`` patterns.

    Args:
        model: ONNX ``ModelProto``.
        patterns: darknet layer indices (``"12"``, ranges ``"12-15"``; the export names nodes
            ``/layers.<index>/...``) or globs on node names (``"/layers.3*/conv/Conv"``, ``"*Conv"``).

    Raises:
        Yolo4Error: a pattern matches no node (one line with examples of node names).
    """
    names = [n.name for n in model.graph.node]
    out: List[str] = []
    for pat in patterns:
        pat = pat.strip()
        m = _LAYER_RE.match(pat)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
            hits = [n for n in names if _NODE_LAYER_RE.search(n + "/")
                    and lo <= int(_NODE_LAYER_RE.search(n + "/").group(1)) <= hi]  # type: ignore[union-attr]
        else:
            hits = [n for n in names if fnmatch.fnmatchcase(n, pat)]
        if not hits:
            convs = conv_nodes(model)
            raise Yolo4Error("--int8-exclude %r matches no node (darknet layer indices or globs on node "
                             "names such as %s)" % (pat, ", ".join(convs[:3]) or "none"), source)
        out.extend(h for h in hits if h not in out)
    return out


class _Reader:
    """ONNX Runtime ``CalibrationDataReader`` over a :class:`CalibrationSet` (unpadded batches).

    ``__len__``/``set_range`` let ONNX Runtime collect one batch at a time (``CalibStridedMinMax``,
    which every calibrator honours): its histogram calibrators otherwise keep every intermediate
    tensor of every image in memory (~70 MB per 416x416 yolov4-tiny image) until the end.
    """

    def __init__(self, calib_set, input_name: str) -> None:
        from tqdm import tqdm

        self._set = calib_set
        self._name = input_name
        self._range = iter(range(0))
        self._bar = tqdm(total=len(calib_set), desc="calibrating", unit="batch", leave=False,
                         disable=None)

    def __len__(self) -> int:
        return len(self._set)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._range = iter(range(start_index, min(end_index, len(self._set))))

    def get_next(self):
        i = next(self._range, None)
        if i is None:
            return None
        self._bar.update(1)
        if self._bar.n >= self._bar.total:
            self._bar.close()
        return {self._name: self._set.batch(i, pad=False)}


def _ort_options(layout: str, ops: Sequence[str], method: str, percentile: float) -> Dict[str, Any]:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType

    trt = layout == "tensorrt"
    extra: Dict[str, Any] = {
        "ActivationSymmetric": trt, "WeightSymmetric": True, "QuantizeBias": False,
        "DedicatedQDQPair": False, "ForceQuantizeNoInputCheck": True, "CalibMovingAverage": False,
        "CalibStridedMinMax": 1,  # entropy: one batch at a time (see _Reader)
    }
    if trt:
        extra.update({"AddQDQPairToWeight": True, "OpTypesToExcludeOutputQuantization": sorted(set(ops))})
    if method == "percentile":
        extra["CalibPercentile"] = float(percentile)
    return dict(
        quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=False,
        activation_type=QuantType.QInt8 if trt else QuantType.QUInt8, weight_type=QuantType.QInt8,
        op_types_to_quantize=["Conv"] if trt else list(_ORT_OPS),
        calibrate_method={"entropy": CalibrationMethod.Entropy, "minmax": CalibrationMethod.MinMax,
                          "percentile": CalibrationMethod.Percentile}[method],
        extra_options=extra)


def quantize_qdq(onnx_in: PathLike, onnx_out: PathLike, calib_set, method: str = DEFAULT_METHOD,
                 exclude: Sequence[str] = (), keep_float_default: bool = True, layout: str = DEFAULT_LAYOUT,
                 percentile: float = DEFAULT_PERCENTILE, calibration_cache: Optional[PathLike] = None,
                 exclude_nodes: Sequence[str] = (), log: Log = print) -> QdqResult:
    """Write a Q/DQ INT8 ONNX of a yolo4 FP32 export.

    Args:
        onnx_in: FP32 ONNX from ``yolo4 export`` (input ``images`` float32 [B,3,H,W] RGB 0..1).
        onnx_out: the Q/DQ ONNX to write (atomically; same inputs, outputs and metadata_props, plus
            ``precision=int8``, ``quantization=qdq``, ``calib_method``, ``calib_digest``,
            ``calib_images``, ``qdq_layout`` and ``int8_float_nodes``).
        calib_set: :class:`yolo4.calib.images.CalibrationSet` (preprocessed as the model's
            ``input_hw``/``letter_box``).
        method: one of :data:`CALIB_METHODS`.
        exclude: ``--int8-exclude`` patterns (:func:`resolve_exclude`).
        keep_float_default: keep :func:`default_float_nodes` in float.
        layout: one of :data:`QDQ_LAYOUTS`.
        percentile: for ``method="percentile"``, the percentile of |activation| kept (0..100).
        calibration_cache: ONNX Runtime's JSON range cache to reuse/write (must come from the same
            model, calibration set and method; :mod:`yolo4.calib.sensitivity` manages one). None = a
            temporary one.
        exclude_nodes: node names kept in float in addition (exact names).

    Returns:
        :class:`QdqResult`.

    Raises:
        Yolo4Error: unknown method/layout, a model that is not float32 or already quantized, a
            calibration set whose input size differs from the model's, an exclude pattern that
            matches nothing. ModelFileError: unreadable ONNX.
    """
    from onnxruntime.quantization import quantize_static

    if method not in CALIB_METHODS:
        raise Yolo4Error("unknown calibration method %r (choose %s)" % (method, ", ".join(CALIB_METHODS)))
    if layout not in QDQ_LAYOUTS:
        raise Yolo4Error("unknown Q/DQ layout %r (choose %s)" % (layout, ", ".join(QDQ_LAYOUTS)))
    if not 0.0 < float(percentile) <= 100.0:
        raise Yolo4Error("percentile must be in (0, 100], got %g" % percentile)
    model = _load(onnx_in)
    precision = onnx_precision(model)
    if precision == "int8":
        raise Yolo4Error("the model is already quantized (it has QuantizeLinear nodes); give the FP32 "
                         "export", onnx_in)
    if precision == "fp16":
        raise Yolo4Error("the model has float16 weights; quantize the FP32 export (without --fp16)", onnx_in)
    _check_input(model, calib_set, onnx_in)
    excluded = list(default_float_nodes(model)) if keep_float_default else []
    for n in list(resolve_exclude(model, exclude)) + list(exclude_nodes):
        if n not in excluded:
            excluded.append(n)
    order = {n.name: i for i, n in enumerate(model.graph.node)}
    excluded.sort(key=lambda n: order.get(n, len(order)))
    ops = sorted({n.op_type for n in model.graph.node})
    opts = _ort_options(layout, ops, method, percentile)
    input_name = model.graph.input[0].name
    out = Path(os.fspath(onnx_out))
    tmpdir = Path(tempfile.mkdtemp(prefix="yolo4-qdq-"))
    t0 = time.time()
    try:
        cache = Path(os.fspath(calibration_cache)) if calibration_cache else tmpdir / "ranges.json"
        reader = None
        if not cache.is_file():
            log("calibrating activation ranges (%s) on %s" % (method, _describe(calib_set)))
            if method == "entropy":
                reader = _Reader(calib_set, input_name)
            else:
                from .ranges import activation_ranges, write_ort_cache

                ranges = activation_ranges(onnx_in, calib_set, opts["op_types_to_quantize"], method,
                                           symmetric=layout == "tensorrt", percentile=percentile)
                write_ort_cache(ranges, method, cache)
        tmp_out = tmpdir / "model.onnx"
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # ORT's "consider pre-processing" advice is not for our exports
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # ORT prints its calibration steps
                _quantize_static(quantize_static, onnx_in, tmp_out, reader, excluded, cache, opts)
        finally:
            root.setLevel(level)
        result = _finish(tmp_out, out, model, excluded, method, layout, calib_set, time.time() - t0)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return result


def _quantize_static(quantize_static, onnx_in: PathLike, tmp_out: Path, reader, excluded: List[str], cache: Path,
                     opts: Dict[str, Any]) -> None:
    """``quantize_static`` with the ranges in ``cache`` (when it exists) or from ``reader`` (entropy).

    onnxruntime 1.16 (the newest for Python 3.8 on aarch64, JetPack 5) has no ``calibration_cache_path``: there
    the cached ranges reach it through its calibrator factory (``create_calibrator`` in its ``quantize``
    module, replaced for the call by one that returns them), and an entropy run calibrates without a cache.
    """
    import inspect

    if "calibration_cache_path" in inspect.signature(quantize_static).parameters:
        quantize_static(os.fspath(onnx_in), os.fspath(tmp_out), reader, nodes_to_exclude=excluded,
                        calibration_cache_path=os.fspath(cache), **opts)
        return
    if not cache.is_file():  # entropy: ONNX Runtime's own calibrator over the reader
        quantize_static(os.fspath(onnx_in), os.fspath(tmp_out), reader, nodes_to_exclude=excluded, **opts)
        return
    import sys

    from .ranges import ort_tensors_data, read_ort_cache

    ort_quantize = sys.modules[quantize_static.__module__]  # (the package's `quantize` is a function)
    try:
        data = ort_tensors_data(read_ort_cache(cache), opts["calibrate_method"])
    except ValueError as e:
        raise Yolo4Error(str(e)) from None

    class _Given:
        def collect_data(self, data_reader) -> None:
            pass

        def compute_data(self):
            return data

    factory = ort_quantize.create_calibrator
    ort_quantize.create_calibrator = lambda *a, **k: _Given()
    try:
        quantize_static(os.fspath(onnx_in), os.fspath(tmp_out), None, nodes_to_exclude=excluded, **opts)
    finally:
        ort_quantize.create_calibrator = factory


def _describe(calib_set) -> str:
    d = getattr(calib_set, "describe", None)
    return d() if callable(d) else "%d images" % len(getattr(calib_set, "paths", []))


def _check_input(model, calib_set, source) -> None:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    hw = tuple(int(d.dim_value) for d in dims[2:4]) if len(dims) == 4 else ()
    if hw and all(hw) and tuple(calib_set.input_hw) != hw:
        raise Yolo4Error("calibration images are prepared at %dx%d but the model's input is %dx%d"
                         % (calib_set.input_hw[1], calib_set.input_hw[0], hw[1], hw[0]), source)


def _finish(tmp_out: Path, out: Path, src_model, excluded: List[str], method: str, layout: str,
            calib_set, seconds: float) -> QdqResult:
    import onnx

    from ..fileio import atomic_write_bytes

    q = onnx.load(os.fspath(tmp_out))
    meta = {p.key: p.value for p in src_model.metadata_props}
    extra = {"precision": "int8", "quantization": "qdq", "calib_method": method, "qdq_layout": layout,
             "calib_digest": calib_set.digest(), "calib_images": str(len(calib_set.paths)),
             "int8_float_nodes": ",".join(n for n in excluded if n.endswith("Conv"))}
    meta.update(extra)
    del q.metadata_props[:]
    for k, v in meta.items():
        p = q.metadata_props.add()
        p.key, p.value = k, v
    # the Conv nodes whose data input is dequantized run in INT8
    producers = {o: n for n in q.graph.node for o in n.output}
    skip = set(excluded)
    quantized = [n.name for n in q.graph.node if n.op_type == "Conv" and n.input and n.name not in skip
                 and producers.get(n.input[0]) is not None
                 and producers[n.input[0]].op_type == "DequantizeLinear"]
    types = {"Conv"} if layout == "tensorrt" else set(_ORT_OPS)
    candidates = [n.name for n in src_model.graph.node if n.op_type in types and n.name not in skip]
    atomic_write_bytes(out, q.SerializeToString())
    return QdqResult(out, quantized, excluded, method, layout, extra["calib_digest"], len(calib_set.paths),
                     seconds, meta, candidates)
