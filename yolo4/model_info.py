"""What every model form carries besides its weights: :class:`ModelInfo`, and the one input-size check.

A torch-free leaf (Python 3.8) that ``model/`` (the PyTorch module), ``convert/`` (ONNX
``metadata_props``, later TensorRT engine metadata), ``calib/`` and ``runtime/`` all read, so the
same facts (class names, input size, resize mode, NMS kind, anchors, strides) travel with the
cfg, the checkpoint, the ONNX file and the engine.
"""

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .errors import ModelFileError, Yolo4Error

__all__ = ["ModelInfo", "METADATA_KEYS", "check_input_size", "DEFAULT_STRIDE"]

#: keys written to / read from ONNX ``metadata_props`` (values are JSON or plain strings)
METADATA_KEYS = ("yolo4_version", "names", "input_hw", "letter_box", "nms_kind", "beta_nms",
                 "anchors", "strides", "cfg_sha256")

#: the largest stride of every official YOLOv4/v3 cfg (a darknet input must be a multiple of it)
DEFAULT_STRIDE = 32

SizeArg = Union[int, Sequence[int]]


def check_input_size(size: Optional[SizeArg], stride: int = DEFAULT_STRIDE, what: str = "--img-size",
                     default: Optional[Tuple[int, int]] = None) -> Tuple[int, int]:
    """The one check of a network input size, used by the CLI, export, the backends and training.

    Args:
        size: an int (square) or ``(height, width)`` in pixels; None = ``default``.
        stride: the model's total down-sampling (largest ``[yolo]`` stride, 32 for YOLOv4): height
            and width must be positive multiples of it.
        what: the option's name, for the message (``--img-size``, ``input_hw``).
        default: ``(height, width)`` used when ``size`` is None.

    Returns:
        ``(height, width)`` as ints.

    Raises:
        Yolo4Error: not a positive multiple of ``stride`` (one line naming ``what`` and the value),
            or ``size`` and ``default`` both None.
    """
    if size is None:
        if default is None:
            raise Yolo4Error(f"{what}: no input size given")
        size = default
    try:
        if isinstance(size, (str, bytes)):
            raise TypeError
        if hasattr(size, "__len__"):
            hw = tuple(int(v) for v in size)  # type: ignore[union-attr]
        else:
            hw = (int(size), int(size))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise Yolo4Error(f"{what} must be an int or (height, width) in pixels, got {size!r}") from None
    stride = int(stride) if stride else DEFAULT_STRIDE
    if len(hw) != 2 or min(hw) <= 0 or hw[0] % stride or hw[1] % stride:
        raise Yolo4Error(f"{what} must be a positive multiple of {stride} pixels (the model's stride), "
                         f"got {size if not isinstance(size, tuple) else 'x'.join(map(str, size))}")
    return hw[0], hw[1]


@dataclass
class ModelInfo:
    """Model facts shared by every backend, eval and calibration.

    Attributes:
        names: class names, index = class id (darknet order).
        input_hw: network input (height, width) in pixels, multiples of the model's stride.
        letter_box: True = letterbox (keep aspect, pad with 0.5 grey), False = plain resize
            (darknet's default, cfg ``[net] letter_box=0``).
        nms_kind: darknet ``nms_kind`` of the ``[yolo]`` sections: ``greedynms`` (DIoU-NMS, as darknet's
            box.c ``diounms_sort``), ``diounms`` (same formula with ``beta_nms``) or ``default`` (plain IoU).
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

    @property
    def max_stride(self) -> int:
        """The largest ``[yolo]`` stride (input sizes must be multiples of it); 32 when unknown."""
        return max(self.strides) if self.strides else DEFAULT_STRIDE

    def to_metadata(self) -> Dict[str, str]:
        """Return ``{key: str}`` for ONNX ``metadata_props`` / engine metadata (lists and numbers
        JSON-encoded, strings as they are); keys :data:`METADATA_KEYS`."""
        d = asdict(self)
        out = {}
        for k in METADATA_KEYS:
            v = d[k]
            out[k] = v if isinstance(v, str) else json.dumps(v)
        return out

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str],
                      path: Optional[Union[str, "os.PathLike[str]"]] = None) -> "ModelInfo":
        """Inverse of :meth:`to_metadata`.

        Args:
            meta: ``{key: str}`` as read from ONNX ``metadata_props`` or an engine's metadata file.
            path: the model file, named in error messages.

        Raises:
            ModelFileError: no yolo4 metadata, a missing required key (``names``, ``input_hw``), or a
                value that does not parse (one line naming ``path``).
        """
        if "names" not in meta and "input_hw" not in meta:
            raise ModelFileError("model has no yolo4 metadata ('names', 'input_hw'); export it with "
                                 "`yolo4 export`", path)

        def j(key, default=None):
            if key not in meta:
                if default is None:
                    raise ModelFileError(f"model lacks yolo4 metadata key {key!r}; export it with "
                                         "`yolo4 export`", path)
                return default
            return json.loads(meta[key])

        try:
            anchors = [[(float(a[0]), float(a[1])) for a in layer] for layer in j("anchors", [])]
            hw = j("input_hw")
            names = j("names")
            if not isinstance(names, list) or not names:
                raise ValueError("names must be a non-empty list")
            info = cls(
                names=[str(n) for n in names],
                input_hw=(int(hw[0]), int(hw[1])),
                letter_box=bool(j("letter_box", False)),
                nms_kind=str(meta.get("nms_kind", "greedynms")),
                beta_nms=float(j("beta_nms", 0.6)),
                anchors=anchors,
                strides=[int(s) for s in j("strides", [])],
                cfg_sha256=str(meta.get("cfg_sha256", "")),
                yolo4_version=str(meta.get("yolo4_version", "")),
            )
        except ModelFileError:
            raise
        except (ValueError, TypeError, IndexError, KeyError, OverflowError) as e:
            raise ModelFileError(f"invalid yolo4 metadata: {e}", path) from None
        if min(info.input_hw) <= 0:
            raise ModelFileError(f"invalid yolo4 metadata: input_hw {list(info.input_hw)}", path)
        return info
