"""What a backend needs to know about a model besides its weights.

The same record travels with every model form: built from the darknet cfg for the torch backend,
stored in ONNX ``metadata_props`` by the exporter, and (later) in TensorRT engine metadata.
Python 3.8, torch-free.
"""

import json
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Tuple

#: keys written to / read from ONNX metadata_props (values are JSON or plain strings)
METADATA_KEYS = ("yolo4_version", "names", "input_hw", "letter_box", "nms_kind", "beta_nms",
                 "anchors", "strides", "cfg_sha256")


@dataclass
class ModelInfo:
    """Model facts shared by every backend, eval and (later) calibration.

    Attributes:
        names: class names, index = class id (darknet order).
        input_hw: network input (height, width) in pixels, multiples of 32.
        letter_box: True = letterbox (keep aspect, pad with 0.5 grey), False = plain resize
            (darknet's default, cfg ``[net] letter_box=0``).
        nms_kind: darknet ``nms_kind`` of the ``[yolo]`` sections: ``greedynms`` (DIoU-NMS, as darknet's
            box.c ``diounms_sort`` with ``beta_nms``), ``diounms`` (same formula) or ``default`` (plain IoU).
        beta_nms: darknet ``beta_nms`` (exponent of the DIoU penalty (d^2/c^2)^beta), 0.6 by default.
        anchors: per ``[yolo]`` section in cfg order, the masked anchors as (w, h) in input pixels.
        strides: per ``[yolo]`` section, input pixels per output cell (8, 16, 32, ...).
        cfg_sha256: sha256 hex digest of the source cfg text ("" when unknown).
        yolo4_version: package version that produced the model.
    """

    names: List[str]
    input_hw: Tuple[int, int]
    letter_box: bool = False
    nms_kind: str = "greedynms"
    beta_nms: float = 0.6
    anchors: List[List[Tuple[float, float]]] = field(default_factory=list)
    strides: List[int] = field(default_factory=list)
    cfg_sha256: str = ""
    yolo4_version: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def to_metadata(self) -> Dict[str, str]:
        """Return ``{key: str}`` for ONNX ``metadata_props`` (lists/numbers JSON-encoded)."""
        d = asdict(self)
        out = {}
        for k in METADATA_KEYS:
            v = d[k]
            out[k] = v if isinstance(v, str) else json.dumps(v)
        return out

    @classmethod
    def from_metadata(cls, meta: Dict[str, str]) -> "ModelInfo":
        """Inverse of :meth:`to_metadata`. Raises KeyError naming a missing required key."""
        def j(key, default=None):
            if key not in meta:
                if default is None:
                    raise KeyError(key)
                return default
            return json.loads(meta[key])

        anchors = [[(float(a[0]), float(a[1])) for a in layer] for layer in j("anchors", [])]
        hw = j("input_hw")
        return cls(
            names=[str(n) for n in j("names")],
            input_hw=(int(hw[0]), int(hw[1])),
            letter_box=bool(j("letter_box", False)),
            nms_kind=meta.get("nms_kind", "greedynms"),
            beta_nms=float(j("beta_nms", 0.6)),
            anchors=anchors,
            strides=[int(s) for s in j("strides", [])],
            cfg_sha256=meta.get("cfg_sha256", ""),
            yolo4_version=meta.get("yolo4_version", ""),
        )
