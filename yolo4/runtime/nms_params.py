"""The parameters of darknet's detection post-processing, in one struct.

:class:`NmsParams` is what :func:`yolo4.runtime.postprocess.postprocess`, the
:class:`~yolo4.runtime.detector.Detector`, ``yolo4 export --nms`` and the DIoU-NMS TensorRT plugin's
attributes all take, field for field, so the CPU reference, the exported graph and the plugin
can never disagree on a threshold. Modelled on NVIDIA's ``efficientNMSParameters.h`` (one struct,
every parameter), with darknet's names and semantics (``src/box.c``, ``src/yolo_layer.c``).
Python 3.8, torch-free.
"""

import math
from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional

__all__ = ["NmsParams", "NMS_KINDS", "GREEDY_NMS_BETA", "effective_beta", "DEFAULT_MAX_CANDIDATES"]

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
