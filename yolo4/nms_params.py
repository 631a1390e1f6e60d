"""The parameters of darknet's detection post-processing, in one struct, and the facts of an
NMS-ended graph: a ground-floor contract that every layer reads.

:class:`NmsParams` is what :func:`yolo4.runtime.postprocess.postprocess`, the
:class:`~yolo4.runtime.detector.Detector`, ``yolo4 export --nms`` and the DIoU-NMS TensorRT plugin's
attributes all take, field for field, so the CPU reference, the exported graph and the plugin
can never disagree on a threshold. Modelled on NVIDIA's ``efficientNMSParameters.h`` (one struct,
every parameter), with darknet's names and semantics (``src/box.c``, ``src/yolo_layer.c``).
Beside it: the NMS ops a graph can end with (the DIoU-NMS plugin, TensorRT's EfficientNMS_TRT), their
output names, and the ``nms`` / ``nms_params`` metadata an NMS-ended model carries
(:func:`nms_metadata`, :func:`read_nms_metadata`). Python 3.8; imports neither torch, onnx nor
anything else of yolo4.
"""

import json
import math
from dataclasses import asdict, dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

__all__ = ["NmsParams", "NMS_KINDS", "GREEDY_NMS_BETA", "effective_beta", "DEFAULT_MAX_CANDIDATES", "PLUGIN_OP",
           "PLUGIN_VERSION", "PLUGIN_NAMESPACE", "NMS_KIND_CODES", "NMS_OUTPUT_NAMES", "EFFICIENT_NMS_OP",
           "EFFICIENT_NMS_MAX_CANDIDATES", "NMS_GRAPH_KINDS", "NMS_METADATA_KEYS", "nms_metadata",
           "read_nms_metadata"]

#: nms_kind values of a darknet ``[yolo]`` section (src/parser.c ``parse_yolo``)
NMS_KINDS = ("greedynms", "diounms", "default")
#: darknet src/box.c ``box_diou``: the exponent GREEDY_NMS uses, whatever ``beta_nms`` says
GREEDY_NMS_BETA = 0.6
#: default per-image cap on candidates entering NMS (highest scores kept; darknet has none)
DEFAULT_MAX_CANDIDATES = 30000


def effective_beta(nms_kind: str, beta_nms: float) -> Optional[float]:
    """The DIoU penalty exponent darknet applies for an ``nms_kind`` (None = plain IoU).

    Darknet src/box.c ``diounms_sort``: ``GREEDY_NMS`` calls ``box_diou`` (``pow(d / c, 0.6)``,
    exponent fixed), ``DIOU_NMS`` calls ``box_diounms(a, b, beta1)`` with the cfg's ``beta_nms``;
    ``DEFAULT_NMS`` uses ``do_nms_sort`` (``box_iou``). All official cfgs using ``greedynms`` set
    ``beta_nms=0.6``, so both readings agree there.

    Raises:
        ValueError: an ``nms_kind`` not in :data:`NMS_KINDS`.
    """
    if nms_kind == "greedynms":
        return GREEDY_NMS_BETA
    if nms_kind == "diounms":
        return float(beta_nms)
    if nms_kind == "default":
        return None
    raise ValueError(f"unknown nms_kind {nms_kind!r} (expected one of {', '.join(NMS_KINDS)})")


@dataclass(frozen=True)
class NmsParams:
    """Thresholds and limits of darknet's candidate selection and (DIoU-)NMS.

    Attributes:
        score_threshold: a (box, class) pair is a candidate when ``objectness * P(class) >
            score_threshold`` (strictly; darknet ``-thresh``, 0.25 for detection, 0.005 for mAP).
            In [0, 1].
        iou_threshold: box ``j`` is suppressed by a kept, higher-scored box ``i`` of its class when
            ``IoU(i, j) - (d^2 / c^2) ** beta > iou_threshold`` (darknet ``nms``, 0.45). In [0, 1].
        nms_kind: ``greedynms`` (DIoU with beta 0.6, darknet's YOLOv4 default), ``diounms`` (DIoU with
            ``beta_nms``) or ``default`` (plain IoU). See :func:`effective_beta`.
        beta_nms: the cfg's ``beta_nms`` (the exponent for ``diounms``). > 0.
        max_output_boxes: at most this many detections per image come out (highest scores after
            NMS; EfficientNMS's ``max_output_boxes``, K of the plugin's fixed-shape outputs). >= 1.
        top_k: at most this many candidates per image enter NMS (highest scores; EfficientNMS's
            ``topK``). >= 1.
        class_agnostic: True = NMS across classes, False = per class (darknet).

    Raises:
        ValueError: a field out of its range (message names the field and its range).
    """

    score_threshold: float = 0.25
    iou_threshold: float = 0.45
    nms_kind: str = "greedynms"
    beta_nms: float = 0.6
    max_output_boxes: int = 300
    top_k: int = DEFAULT_MAX_CANDIDATES
    class_agnostic: bool = False

    def __post_init__(self) -> None:
        for name in ("score_threshold", "iou_threshold"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not (0.0 <= float(v) <= 1.0):
                raise ValueError(f"{name} must be a number in [0, 1], got {v!r}")
        if self.nms_kind not in NMS_KINDS:
            raise ValueError(f"nms_kind must be one of {', '.join(NMS_KINDS)}, got {self.nms_kind!r}")
        b = self.beta_nms
        if not isinstance(b, (int, float)) or isinstance(b, bool) or not (math.isfinite(b) and b > 0):
            raise ValueError(f"beta_nms must be a finite number > 0, got {b!r}")
        for name in ("max_output_boxes", "top_k"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if not isinstance(self.class_agnostic, bool):
            raise ValueError(f"class_agnostic must be a bool, got {self.class_agnostic!r}")

    @property
    def beta(self) -> Optional[float]:
        """The DIoU exponent darknet applies (:func:`effective_beta`); None = plain IoU."""
        return effective_beta(self.nms_kind, self.beta_nms)

    @classmethod
    def for_model(cls, info: Any, **overrides: Any) -> "NmsParams":
        """Parameters for a model: ``nms_kind`` and ``beta_nms`` from its
        :class:`~yolo4.model_info.ModelInfo` (the cfg's ``[yolo]``), the rest from ``overrides``."""
        fields: Dict[str, Any] = {"nms_kind": info.nms_kind, "beta_nms": float(info.beta_nms)}
        fields.update(overrides)
        return cls(**fields)

    def as_dict(self) -> Dict[str, Any]:
        """``{field: value}``: the attributes of an NMS node / plugin (plain Python values)."""
        return asdict(self)

    def plugin_attributes(self, input_hw: Tuple[int, int]) -> Dict[str, Any]:
        """The attributes of the ``DIoUNMS_TRT`` ONNX node / TensorRT plugin fields for this struct.

        Args:
            input_hw: network input ``(H, W)`` in pixels: the NMS frame (coordinates divided by
                ``(W, H)``) unless the node gets the optional per-image ``norm_wh`` input.

        Returns:
            ``{name: value}``: ``score_threshold``, ``iou_threshold``, ``beta_nms`` (float32 fields),
            ``nms_kind`` (:data:`NMS_KIND_CODES`), ``max_output_boxes``, ``top_k``,
            ``class_agnostic`` (0/1), ``input_width``, ``input_height`` (int32 fields). The plugin
            applies :func:`effective_beta` to ``nms_kind``/``beta_nms`` exactly as this module does.
        """
        return {"score_threshold": float(self.score_threshold), "iou_threshold": float(self.iou_threshold),
                "nms_kind": NMS_KIND_CODES[self.nms_kind], "beta_nms": float(self.beta_nms),
                "max_output_boxes": int(self.max_output_boxes), "top_k": int(self.top_k),
                "class_agnostic": int(bool(self.class_agnostic)),
                "input_width": int(input_hw[1]), "input_height": int(input_hw[0])}


#: The batched DIoU-NMS TensorRT plugin (``yolo4/plugins/diou_nms``): op name = plugin name, its version
#: and namespace. TensorRT's ONNX parser resolves an unknown op by name through the plugin registry
#: (``plugin_version`` / ``plugin_namespace`` node attributes select version and namespace).
#: Inputs: ``boxes [B,N,4]`` x1,y1,x2,y2 input pixels and ``scores [B,N,C]`` (float32 or float16),
#: optional ``norm_wh [B,2] float32`` (per-image NMS frame width, height: the letterbox content
#: size). Outputs (EfficientNMS_TRT's layout, fixed shapes, K = max_output_boxes):
#: ``num_detections [B,1] int32``, ``detection_boxes [B,K,4]``, ``detection_scores [B,K]`` (the
#: input dtype), ``detection_classes [B,K] int32``; rows past num_detections are 0 (classes -1).
PLUGIN_OP = "DIoUNMS_TRT"
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = ""
#: ``nms_kind`` attribute codes of the plugin
NMS_KIND_CODES = {"default": 0, "greedynms": 1, "diounms": 2}
#: output names of an NMS-ended model (EfficientNMS_TRT's)
NMS_OUTPUT_NAMES = ("num_detections", "detection_boxes", "detection_scores", "detection_classes")
#: EfficientNMS_TRT: TensorRT's IoU-NMS plugin (8.x-10.x; deprecated from 10.12)
EFFICIENT_NMS_OP = "EfficientNMS_TRT"
#: EfficientNMS_TRT runs NMS on the 4096 highest-scored candidates per image (efficientNMSPlugin)
EFFICIENT_NMS_MAX_CANDIDATES = 4096

#: kinds of NMS a graph can end with (``yolo4 export --nms``; ``none`` = decoded boxes/scores)
NMS_GRAPH_KINDS = ("plugin", "efficient", "trt")
#: extra ``metadata_props`` keys of an NMS-ended model: ``nms`` (one of :data:`NMS_GRAPH_KINDS`)
#: and ``nms_params`` (JSON of :meth:`NmsParams.as_dict`: what the graph's NMS does)
NMS_METADATA_KEYS = ("nms", "nms_params")


def nms_metadata(kind: str, params: NmsParams) -> Dict[str, str]:
    """``{"nms": kind, "nms_params": JSON}``: the metadata an NMS-ended model carries beside
    :meth:`ModelInfo.to_metadata` (whose reader ignores these keys)."""
    if kind not in NMS_GRAPH_KINDS:
        raise ValueError("nms kind must be one of %s, got %r" % (", ".join(NMS_GRAPH_KINDS), kind))
    return {"nms": kind, "nms_params": json.dumps(params.as_dict(), sort_keys=True)}


def read_nms_metadata(meta: Mapping[str, str]) -> Tuple[Optional[str], Optional[NmsParams]]:
    """Inverse of :func:`nms_metadata`: ``(kind, params)``; ``(None, None)`` for a model without
    NMS in its graph (key absent or ``"none"``); params None when absent or unreadable."""
    kind = meta.get("nms")
    if not kind or kind == "none":
        return None, None
    try:
        params = NmsParams(**json.loads(meta["nms_params"]))
    except (KeyError, TypeError, ValueError):
        params = None
    return str(kind), params
