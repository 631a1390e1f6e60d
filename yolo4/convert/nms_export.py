"""NMS at the end of an exported graph (``yolo4 export --nms plugin|efficient|trt``).

The decoded graph (``boxes [B,N,4]`` x1,y1,x2,y2 input pixels, ``scores [B,N,C]``) gets one of three
NMS endings, all with EfficientNMS_TRT's four outputs (:data:`NMS_OUTPUT_NAMES`, fixed shapes, K =
``max_output_boxes``; rows past ``num_detections`` are zero, classes ``-1`` -- EfficientNMS_TRT's own
padding class is 0)::

    num_detections     int32   [B, 1]
    detection_boxes    float32 [B, K, 4]   x1, y1, x2, y2 input pixels
    detection_scores   float32 [B, K]      sorted descending
    detection_classes  int32   [B, K]

============  ==========================================  ==========================  ====================
``--nms``     node(s)                                     NMS                         runs on
============  ==========================================  ==========================  ====================
``plugin``    ``DIoUNMS_TRT`` (yolo4's plugin, v1)        darknet's DIoU-NMS          TensorRT 8.5-11 with
                                                          (the model's nms_kind)      ``yolo4 build-plugin``
``efficient`` ``EfficientNMS_TRT`` (v1)                   IoU; top 4096 candidates    TensorRT 8.5-10.x
``trt``       ONNX ``NonMaxSuppression`` + TopK/Gather    IoU                         TensorRT 8.5+ (INMSLayer),
                                                                                      TensorRT for RTX, any
                                                                                      ONNX runtime
============  ==========================================  ==========================  ====================

Plugin nodes (``plugin``, ``efficient``)
----------------------------------------
TensorRT's ONNX parser imports an op it has no importer for through the plugin registry by op type
(onnx-tensorrt ``FallbackPluginImporter``, 8.5 through 10.x): creator = ``getPluginCreator(op_type,
plugin_version, plugin_namespace)`` (node attributes, default ``"1"`` and ``""``); the other
attributes become the plugin fields the creator lists (``float`` -> kFLOAT32, ``int`` -> kINT32,
``string`` -> kCHAR). The parser ignores the node's domain. The nodes here use domain
:data:`PLUGIN_DOMAIN` = ``trt.plugins``: the domain ONNX Runtime's TensorRT execution provider gives
TensorRT plugins, and a non-default domain keeps ``onnx.checker`` (which knows no such op in the ONNX
domain) passing. The ``DIoUNMS_TRT`` attributes are :meth:`NmsParams.plugin_attributes` (float32
``score_threshold``, ``iou_threshold``, ``beta_nms``; int ``nms_kind``, ``max_output_boxes``,
``top_k``, ``class_agnostic``, ``input_width``, ``input_height``) plus ``plugin_version`` /
``plugin_namespace``; it normalises by the network input size (no ``norm_wh`` input is wired: for a
letterboxed model the DIoU penalty uses the input frame, darknet's the content frame).

``EfficientNMS_TRT`` is IoU-only (the model's DIoU ``nms_kind`` does not apply: the metadata records
``nms_kind=default``), takes the 4096 best candidates per image, and compares ``score >=
score_threshold`` and ``IoU >= iou_threshold`` (darknet and the reference: ``>``). Neither plugin is
in TensorRT for RTX, which loads no plugins.

ONNX ``NonMaxSuppression`` (``trt``)
------------------------------------
``NonMaxSuppression(boxes, scores^T, K, iou, conf)`` (per image and class, ``score > conf``,
suppression when ``IoU > iou``: darknet's comparisons; TensorRT makes an INMSLayer of it, ONNX
Runtime runs it natively) selects ``[S, 3]`` (image, class, box) triples; each image's K best of
them (``TopK`` over a ``[B, S + K]`` score matrix, -1 elsewhere) become the fixed-shape outputs.
``max_output_boxes_per_class = K`` loses nothing (at most K per image come out). ``top_k`` is not
expressible (ONNX Runtime: no cap; TensorRT: INMSLayer's own TopK box limit), K must stay below
TensorRT's TopK limit :data:`TRT_TOPK_MAX`. ``class_agnostic``: NMS on each box's best class (the
reference's result: a box's other classes are suppressed by its best, IoU 1).

Metadata: the decoded model's (:meth:`ModelInfo.to_metadata`) plus ``nms`` (the kind) and
``nms_params`` (JSON :meth:`NmsParams.as_dict` of what the graph's NMS does:
:func:`graph_params`); an ONNX without ``nms`` has no NMS in its graph. Pure ``onnx`` (no torch).
"""

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Tuple, Union

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import ModelFileError, Yolo4Error
from ..fileio import atomic_path
from ..model_info import ModelInfo
from ..nms_params import (
    EFFICIENT_NMS_MAX_CANDIDATES,
    EFFICIENT_NMS_OP,
    NMS_GRAPH_KINDS,
    NMS_OUTPUT_NAMES,
    PLUGIN_NAMESPACE,
    PLUGIN_OP,
    PLUGIN_VERSION,
    NmsParams,
    nms_metadata,
)
from .graph import onnx_opset

logger = logging.getLogger(__name__)

__all__ = ["NMS_MODES", "PLUGIN_DOMAIN", "EFFICIENT_NMS_VERSION", "TRT_TOPK_MAX", "NmsExportResult",
           "graph_params", "append_nms", "export_nms", "check_nms_request"]

#: ``yolo4 export --nms`` values (``none``: decoded ``boxes``/``scores``, no NMS in the graph)
NMS_MODES = ("none",) + NMS_GRAPH_KINDS
#: domain of the plugin nodes (TensorRT's parser ignores it; ONNX Runtime's TensorRT EP uses it)
PLUGIN_DOMAIN = "trt.plugins"
EFFICIENT_NMS_VERSION = "1"
#: TensorRT's TopK takes K < 3840 (onnx-tensorrt docs/operators.md)
TRT_TOPK_MAX = 3840

Log = Optional[Callable[[str], None]]


@dataclass
class NmsExportResult:
    """What :func:`export_nms` wrote.

    Attributes:
        path: the ONNX file.
        mode: ``plugin``, ``efficient`` or ``trt``.
        params: what the graph's NMS does (:func:`graph_params`; also in the metadata).
        nodes: number of nodes added.
        checked: how the file was run on ONNX Runtime against the numpy reference (None = not run).
        matched: images whose detections equal the reference's (of ``images``).
        images: images checked.
    """

    path: Path
    mode: str
    params: NmsParams
    nodes: int
    checked: Optional[str] = None
    matched: int = 0
    images: int = 0

    def summary(self) -> str:
        p = self.params
        s = (f"NMS in graph: {self.mode} ({_OP_NAMES[self.mode]}, {p.nms_kind}, score > {p.score_threshold:g}, "
             f"IoU {p.iou_threshold:g}, at most {p.max_output_boxes} per image)")
        if self.checked:
            s += f"; on ONNX Runtime ({self.checked}) {self.matched}/{self.images} images equal the numpy reference"
        return s


_OP_NAMES = {"plugin": PLUGIN_OP, "efficient": EFFICIENT_NMS_OP, "trt": "NonMaxSuppression"}


def check_nms_request(mode: str, params: NmsParams) -> None:
    """Refuse what a mode cannot do (one line).

    Raises:
        Yolo4Error: an unknown mode; ``trt`` with ``max_output_boxes >= 3840`` (TensorRT's TopK).
    """
    if mode not in NMS_MODES:
        raise Yolo4Error(f"--nms must be one of {', '.join(NMS_MODES)}, got {mode!r}")
    if mode == "trt" and params.max_output_boxes >= TRT_TOPK_MAX:
        raise Yolo4Error(f"--nms trt: --max-det {params.max_output_boxes} is too large (TensorRT's TopK "
                         f"takes K < {TRT_TOPK_MAX})")


def graph_params(mode: str, params: NmsParams) -> NmsParams:
    """What the NMS of ``mode`` does with ``params``: ``plugin`` all of them; ``efficient`` IoU
    (``nms_kind=default``) on at most 4096 candidates; ``trt`` IoU."""
    if mode == "efficient":
        return dataclasses.replace(params, nms_kind="default",
                                   top_k=min(params.top_k, EFFICIENT_NMS_MAX_CANDIDATES))
    if mode == "trt":
        return dataclasses.replace(params, nms_kind="default")
    return params


# ------------------------------------------------------------------------------------------ graph

class _Builder:
    """Appends nodes with unique names (prefix ``yolo4_nms/``) and constant initializers."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.graph = model.graph
        self.opset = onnx_opset(model)
        self.taken = {n.name for n in self.graph.node} | {t.name for t in self.graph.initializer}
        self.taken |= {o for n in self.graph.node for o in n.output} | {i.name for i in self.graph.input}
        self.added = 0

    def name(self, base: str) -> str:
        n, i = f"yolo4_nms/{base}", 1
        while n in self.taken:
            i += 1
            n = f"yolo4_nms/{base}_{i}"
        self.taken.add(n)
        return n

    def const(self, base: str, value) -> str:
        name = self.name(base)
        self.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: List[str], base: str, outputs: int = 1, out_names=None,
           domain: str = "", **attrs) -> Union[str, List[str]]:
        outs = list(out_names) if out_names else [self.name(f"{base}_out{i}" if outputs > 1 else base)
                                                  for i in range(outputs)]
        self.graph.node.append(helper.make_node(op_type, inputs, outs, name=self.name(base + "_node"),
                                                domain=domain, **attrs))
        self.added += 1
        return outs if outputs > 1 else outs[0]

    def unsqueeze(self, x: str, axis: int, base: str) -> str:
        """Unsqueeze one axis: ``axes`` is an attribute up to opset 12, an input from 13."""
        if self.opset >= 13:
            return self.op("Unsqueeze", [x, self.const(base + "_axes", np.array([axis], np.int64))], base)
        return self.op("Unsqueeze", [x], base, axes=[axis])

    def reduce(self, op_type: str, x: str, axis: int, base: str, keepdims: int = 1) -> str:
        """ReduceSum/ReduceMax over one axis: ``axes`` is an input from opset 13 (Sum) / 18 (Max)."""
        first_input = 13 if op_type == "ReduceSum" else 18
        if self.opset >= first_input:
            return self.op(op_type, [x, self.const(base + "_axes", np.array([axis], np.int64))], base,
                           keepdims=keepdims)
        return self.op(op_type, [x], base, axes=[axis], keepdims=keepdims)


def _out_info(batch_dim, k: int) -> List[onnx.ValueInfoProto]:
    shapes = {"num_detections": (TensorProto.INT32, [batch_dim, 1]),
              "detection_boxes": (TensorProto.FLOAT, [batch_dim, k, 4]),
              "detection_scores": (TensorProto.FLOAT, [batch_dim, k]),
              "detection_classes": (TensorProto.INT32, [batch_dim, k])}
    return [helper.make_tensor_value_info(n, *shapes[n]) for n in NMS_OUTPUT_NAMES]


def _plugin_node(b: _Builder, mode: str, boxes: str, scores: str, params: NmsParams,
                 input_hw: Tuple[int, int]) -> None:
    if mode == "plugin":
        attrs = dict(params.plugin_attributes(input_hw), plugin_version=PLUGIN_VERSION,
                     plugin_namespace=PLUGIN_NAMESPACE)
        op = PLUGIN_OP
    else:
        attrs = {"score_threshold": float(params.score_threshold), "iou_threshold": float(params.iou_threshold),
                 "max_output_boxes": int(params.max_output_boxes), "background_class": -1,
                 "score_activation": 0, "class_agnostic": int(params.class_agnostic), "box_coding": 0,
                 "plugin_version": EFFICIENT_NMS_VERSION}
        op = EFFICIENT_NMS_OP
    b.op(op, [boxes, scores], op, outputs=4, out_names=NMS_OUTPUT_NAMES, domain=PLUGIN_DOMAIN, **attrs)


def _trt_nodes(b: _Builder, boxes: str, scores: str, params: NmsParams) -> None:
    """ONNX NonMaxSuppression + per-image TopK into the four fixed-shape outputs (module docstring)."""
    k = int(params.max_output_boxes)
    i64 = np.int64
    if params.class_agnostic:
        nms_scores = b.reduce("ReduceMax", scores, 2, "best_score")                    # [B,N,1]
        best_class = b.op("ArgMax", [scores], "best_class", axis=2, keepdims=0)        # [B,N]
    else:
        nms_scores = scores
    scores_t = b.op("Transpose", [nms_scores], "scores_t", perm=[0, 2, 1])           # [B,C,N]
    sel = b.op("NonMaxSuppression", [boxes, scores_t, b.const("max_per_class", np.array([k], i64)),
                                     b.const("iou_threshold", np.array([params.iou_threshold], np.float32)),
                                     b.const("score_threshold", np.array([params.score_threshold], np.float32))],
               "nms", center_point_box=0)                                               # [S,3] (b, c, n)
    img = b.op("Gather", [sel, b.const("col0", np.array(0, i64))], "sel_image", axis=1)   # [S]
    bn = b.op("Gather", [sel, b.const("cols02", np.array([0, 2], i64))], "sel_bn", axis=1)  # [S,2]
    if params.class_agnostic:
        cls = b.op("GatherND", [best_class, bn], "sel_class")                          # [S]
        bnc = b.op("Concat", [bn, b.unsqueeze(cls, 1, "sel_class_col")],
                   "sel_bnc", axis=1)
    else:
        cls = b.op("Gather", [sel, b.const("col1", np.array(1, i64))], "sel_class", axis=1)
        bnc = b.op("Gather", [sel, b.const("cols021", np.array([0, 2, 1], i64))], "sel_bnc", axis=1)
    sel_scores = b.op("GatherND", [scores, bnc], "sel_scores")                        # [S]
    sel_boxes = b.op("GatherND", [boxes, bn], "sel_boxes")                            # [S,4]

    # per image: a [B, S + K] score matrix (-1 off the image and in K padding columns), TopK K
    batch = b.op("Gather", [b.op("Shape", [boxes], "boxes_shape"), b.const("zero", np.array(0, i64))],
                 "batch", axis=0)                                                      # scalar
    images = b.op("Range", [b.const("range_start", np.array(0, i64)), batch, b.const("range_step",
                                                                                      np.array(1, i64))], "images")
    same = b.op("Equal", [b.unsqueeze(images, 1, "images_col"), b.unsqueeze(img, 0, "sel_image_row")],
                "same_image")                                                           # [B,S]
    minus1 = b.const("minus_one", np.array(-1.0, np.float32))
    dense = b.op("Where", [same, b.unsqueeze(sel_scores, 0, "sel_scores_row"), minus1], "dense")
    pad_shape = b.op("Concat", [b.unsqueeze(batch, 0, "batch_1d"), b.const("k_1d", np.array([k], i64))],
                     "pad_shape", axis=0)
    pad = b.op("ConstantOfShape", [pad_shape], "pad",
               value=helper.make_tensor("v", TensorProto.FLOAT, [1], [-1.0]))
    dense = b.op("Concat", [dense, pad], "dense_padded", axis=1)                      # [B,S+K]
    vals, idx = b.op("TopK", [dense, b.const("k", np.array([k], i64))], "topk", outputs=2, axis=1,
                     largest=1, sorted=1)                                               # [B,K]
    valid = b.op("Greater", [vals, b.const("minus_half", np.array(-0.5, np.float32))], "valid")
    num_f = b.reduce("ReduceSum", b.op("Cast", [valid], "valid_f", to=TensorProto.FLOAT), 1, "num_f")
    b.op("Cast", [num_f], "num", out_names=[NMS_OUTPUT_NAMES[0]], to=TensorProto.INT32)
    # gather rows (sources padded with K rows, so an image without detections still indexes safely)
    boxes_src = b.op("Concat", [sel_boxes, b.const("zero_boxes", np.zeros((k, 4), np.float32))], "boxes_src", axis=0)
    cls32 = b.op("Cast", [cls], "sel_class_i32", to=TensorProto.INT32)
    cls_src = b.op("Concat", [cls32, b.const("pad_classes", np.full((k,), -1, np.int32))], "classes_src", axis=0)
    got_boxes = b.op("Gather", [boxes_src, idx], "got_boxes", axis=0)                # [B,K,4]
    got_cls = b.op("Gather", [cls_src, idx], "got_classes", axis=0)                  # [B,K]
    valid3 = b.unsqueeze(valid, 2, "valid3")
    b.op("Where", [valid3, got_boxes, b.const("zero_f", np.array(0.0, np.float32))], "boxes_out",
         out_names=[NMS_OUTPUT_NAMES[1]])
    b.op("Where", [valid, vals, b.const("zero_f2", np.array(0.0, np.float32))], "scores_out",
         out_names=[NMS_OUTPUT_NAMES[2]])
    b.op("Where", [valid, got_cls, b.const("minus_one_i", np.array(-1, np.int32))], "classes_out",
         out_names=[NMS_OUTPUT_NAMES[3]])


def append_nms(model: onnx.ModelProto, mode: str, params: NmsParams,
               input_hw: Optional[Tuple[int, int]] = None) -> NmsParams:
    """Append an NMS ending to a decoded yolo4 graph, in place.

    Args:
        model: graph with outputs ``boxes [B,N,4]`` and ``scores [B,N,C]`` (float32) and yolo4
            metadata; its outputs become :data:`NMS_OUTPUT_NAMES`.
        mode: ``plugin``, ``efficient`` or ``trt`` (see the module docstring).
        params: the NMS parameters (K = ``params.max_output_boxes``).
        input_hw: network input ``(H, W)`` (the plugin's NMS frame); default the metadata's.

    Returns:
        What the graph's NMS does (:func:`graph_params`), also written to the metadata (``nms``,
        ``nms_params``).

    Raises:
        Yolo4Error: a bad mode or request (:func:`check_nms_request`); a graph without the decoded
            outputs, or already ending with NMS.
    """
    check_nms_request(mode, params)
    if mode == "none":
        raise Yolo4Error("append_nms: mode 'none' adds nothing")
    graph = model.graph
    outs = {o.name: o for o in graph.output}
    if any(n in outs for n in NMS_OUTPUT_NAMES):
        raise Yolo4Error("the model already ends with NMS (outputs %s)" % ", ".join(sorted(outs)))
    if "boxes" not in outs or "scores" not in outs:
        raise Yolo4Error("expected a decoded yolo4 model with outputs 'boxes' and 'scores', got %s"
                         % ", ".join(sorted(outs)))
    for name in ("boxes", "scores"):
        if outs[name].type.tensor_type.elem_type != TensorProto.FLOAT:
            raise Yolo4Error(f"output {name!r} must be float32 for the NMS node")
    meta = {p.key: p.value for p in model.metadata_props}
    if input_hw is None:
        input_hw = ModelInfo.from_metadata(meta).input_hw
    dim0 = outs["boxes"].type.tensor_type.shape.dim[0] if outs["boxes"].type.tensor_type.shape.dim else None
    batch_dim: Union[str, int] = "batch"
    if dim0 is not None and dim0.HasField("dim_value") and dim0.dim_value > 0:
        batch_dim = int(dim0.dim_value)
    elif dim0 is not None and dim0.dim_param:
        batch_dim = dim0.dim_param

    done = graph_params(mode, params)
    b = _Builder(model)
    if mode == "trt":
        _trt_nodes(b, "boxes", "scores", done)
    else:
        _plugin_node(b, mode, "boxes", "scores", done, input_hw)
        if not any(o.domain == PLUGIN_DOMAIN for o in model.opset_import):
            model.opset_import.append(helper.make_opsetid(PLUGIN_DOMAIN, 1))
    del graph.output[:]
    graph.output.extend(_out_info(batch_dim, int(done.max_output_boxes)))
    meta.update(nms_metadata(mode, done))
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, meta)
    model.doc_string = (model.doc_string + f"; NMS in graph: {mode} ({_OP_NAMES[mode]})").lstrip("; ")
    return done


# ------------------------------------------------------------------------------------------ file

def _check_on_ort(raw_path: str, nms_path: str, params: NmsParams, info: ModelInfo,
                  batch: Optional[int]) -> Tuple[str, int, int]:
    """Run the NMS file and the raw file + numpy reference on the verification input; ``(how, matched
    images, images)``."""
    from ..runtime.agreement import reference_input
    from ..runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
    from ..runtime.detector import detections_from_nms_outputs
    from ..runtime.postprocess import postprocess

    x, _ = reference_input(info.input_hw, batch or 2, info.letter_box)
    with OnnxRuntimeBackend(nms_path, threads=2) as be:
        how = be.nms_impl or "onnxruntime"
        got = detections_from_nms_outputs(*be(x))
    with OnnxRuntimeBackend(raw_path, threads=2) as raw:
        boxes, scores = raw(x)
    want = postprocess(boxes, scores, params, input_hw=info.input_hw)
    matched = 0
    for g, w in zip(got, want):
        if len(g) == len(w) and np.array_equal(g.class_ids, w.class_ids) and np.array_equal(g.scores, w.scores) \
                and np.array_equal(g.boxes, w.boxes):
            matched += 1
    return how, matched, len(want)


def export_nms(src: Union[str, "os.PathLike[str]"], output: Union[str, "os.PathLike[str]"], mode: str,
               params: NmsParams, check: bool = True, log: Log = None) -> NmsExportResult:
    """Write ``output``: the decoded yolo4 ONNX ``src`` with an NMS ending (:func:`append_nms`).

    ``output`` may be ``src`` (replaced atomically). With ``check``, the new file runs on ONNX Runtime
    (:class:`~yolo4.runtime.backends.onnxruntime_backend.OnnxRuntimeBackend`: natively for ``trt``,
    plugin nodes through the numpy reference) beside ``src`` + the numpy reference on the
    verification images: for ``plugin`` / ``efficient`` every image must give identical detections
    (it is the wiring that is checked), for ``trt`` (ONNX Runtime's own NMS, float32) a difference is
    a warning.

    Raises:
        Yolo4Error: as :func:`append_nms`; ModelFileError: ``src`` unreadable or ``output``
            unwritable; ExportVerificationError: a plugin/efficient file that disagrees with the
            reference (nothing is written).
    """
    from .verify import ExportVerificationError

    src, output = Path(src), Path(output)
    try:
        model = onnx.load(str(src))
    except Exception as e:  # noqa: BLE001 - protobuf / IO errors
        raise ModelFileError(f"cannot read ONNX model: {e}", src) from None
    info = ModelInfo.from_metadata({p.key: p.value for p in model.metadata_props}, src)
    n0 = len(model.graph.node)
    done = append_nms(model, mode, params, info.input_hw)
    onnx.checker.check_model(model)
    dim0 = model.graph.input[0].type.tensor_type.shape.dim[0]
    batch = int(dim0.dim_value) if dim0.HasField("dim_value") and dim0.dim_value > 0 else None
    res = NmsExportResult(path=output, mode=mode, params=done, nodes=len(model.graph.node) - n0)
    try:
        with atomic_path(output, ".nms.tmp") as tmp:
            with open(tmp, "xb") as f:
                f.write(model.SerializeToString())
                f.flush()
                os.fsync(f.fileno())
            if check:
                res.checked, res.matched, res.images = _check_on_ort(str(src), str(tmp), done, info, batch)
                if res.matched != res.images:
                    msg = (f"--nms {mode} on ONNX Runtime ({res.checked}) differs from the numpy reference on "
                           f"{res.images - res.matched} of {res.images} verification images")
                    if mode != "trt":
                        raise ExportVerificationError(msg, output)
                    logger.warning(msg)
                    if log is not None:
                        log("warning: " + msg)
    except OSError as e:
        raise ModelFileError(f"cannot write: {e.strerror or e}", output) from e
    if log is not None:
        log(res.summary())
    return res
