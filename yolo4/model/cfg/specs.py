"""Typed, validated layer descriptions built from cfg sections (torch-free).

One dataclass per section type; every layer shares the :class:`LayerSpec` fields (darknet layer
number, section, channels in/out, cumulative stride). The ``.weights`` size checks, the torch
module builder and the trainer (which reads :class:`YoloSpec` directly) all use them.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Tuple

from yolo4.model.cfg.section import Section

__all__ = ["NetSpec", "LayerSpec", "ConvSpec", "RouteSpec", "ShortcutSpec", "MaxPoolSpec", "UpsampleSpec",
           "DropoutSpec", "YoloSpec", "DEFAULT_NET", "ACTIVATIONS"]

#: darknet activation names this package implements (darknet ``src/activations.c`` formulas).
ACTIVATIONS = ("linear", "leaky", "mish", "swish", "logistic", "relu", "relu6", "tanh", "elu", "selu",
               "gelu")

# darknet parse_net_options defaults for the keys the trainer may read (src/parser.c)
DEFAULT_NET: Dict[str, Any] = {
    "batch": 1, "subdivisions": 1, "learning_rate": 0.001, "momentum": 0.9, "decay": 0.0001,
    "burn_in": 0, "power": 4.0, "max_batches": 0, "policy": "constant", "steps": [], "scales": [],
    "angle": 0.0, "saturation": 1.0, "exposure": 1.0, "hue": 0.0, "aspect": 1.0, "flip": 1,
    "mosaic": 0, "mixup": 0, "cutmix": 0, "blur": 0, "gaussian_noise": 0, "letter_box": 0,
    "mosaic_bound": 0, "label_smooth_eps": 0.0, "resize_step": 32, "ema_alpha": 0.0,
    "adam": 0, "B1": 0.9, "B2": 0.999, "eps": 1e-7,
}


@dataclass
class NetSpec:
    """``[net]``: input geometry and every other key (training keys) auto-typed in ``options``.

    Attributes:
        width, height: the cfg's input size in pixels.
        channels: input channels (always 3: RGB).
        letter_box: ``letter_box=1``.
        options: every ``[net]`` key auto-typed (int, float, list, str), :data:`DEFAULT_NET` filled in.
        section: the parsed ``[net]``.
        stride: the network's total down-sampling in pixels (input sizes must be multiples of it;
            32 for YOLOv4), set by :func:`~yolo4.model.cfg.build_specs`; see
            :func:`~yolo4.model.cfg.network_stride`.
    """

    width: int
    height: int
    channels: int
    letter_box: bool
    options: Dict[str, Any]
    section: Section
    stride: int = 1


@dataclass
class LayerSpec:
    """Common fields of a layer (index = position after ``[net]``, darknet's layer number).

    ``stride`` is the cumulative down-sampling: input pixels per output cell.
    """

    index: int
    section: Section
    in_channels: int
    out_channels: int
    stride: int

    @property
    def type(self) -> str:
        return self.section.type


@dataclass
class ConvSpec(LayerSpec):
    """``[convolutional]`` (darknet ``src/convolutional_layer.c``).

    ``padding`` is the zero padding on each side in input pixels as the convolution applies it:
    ``pad=1`` gives ``size // 2``, and darknet multiplies it by ``dilation`` (cuDNN / im2col are called
    with ``pad * dilation``). Output side: ``(in + 2*padding - dilation*(size-1) - 1) // conv_stride + 1``.
    """

    filters: int = 1
    size: int = 1
    conv_stride: int = 1
    padding: int = 0
    groups: int = 1
    dilation: int = 1
    batch_normalize: bool = False
    activation: str = "logistic"
    stopbackward: int = 0

    def num_params(self) -> int:
        """Floats this layer holds in a .weights file (bias, [scale, mean, var,] kernel)."""
        n = self.filters * (4 if self.batch_normalize else 1)
        return n + self.filters * (self.in_channels // self.groups) * self.size * self.size


@dataclass
class RouteSpec(LayerSpec):
    """``[route]``: concat of ``layers`` (absolute indices), each sliced to ``group_id`` of ``groups``."""

    layers: List[int] = field(default_factory=list)
    groups: int = 1
    group_id: int = 0
    stopbackward: int = 0


@dataclass
class ShortcutSpec(LayerSpec):
    """``[shortcut]``: previous output + outputs of ``from_layers`` (same shapes), then activation."""

    from_layers: List[int] = field(default_factory=list)
    activation: str = "linear"


@dataclass
class MaxPoolSpec(LayerSpec):
    """``[maxpool]`` (darknet ``src/maxpool_layer.c``): total padding ``padding`` (default size-1),
    ``padding // 2`` before, the rest after; out = (in + padding - size) // stride + 1."""

    size: int = 1
    pool_stride: int = 1
    padding: int = 0


@dataclass
class UpsampleSpec(LayerSpec):
    """``[upsample]``: nearest-neighbour up-sampling by ``factor``, times ``scale``."""

    factor: int = 2
    scale: float = 1.0


@dataclass
class DropoutSpec(LayerSpec):
    """``[dropout]``: identity at inference, inverted dropout of ``probability`` in training."""

    probability: float = 0.2


@dataclass
class YoloSpec(LayerSpec):
    """``[yolo]`` (darknet ``src/yolo_layer.c``, ``parse_yolo`` in ``src/parser.c``).

    ``anchors`` are all ``num`` (w, h) pairs in input pixels (darknet ``l.biases``); ``mask`` picks this
    layer's, in output-channel order (:attr:`masked_anchors`). ``stride`` (input pixels per cell),
    ``classes`` and the other fields are darknet's training/inference keys with darknet's defaults.
    """

    classes: int = 20
    num: int = 1
    mask: List[int] = field(default_factory=list)
    anchors: List[Tuple[float, float]] = field(default_factory=list)
    scale_x_y: float = 1.0
    new_coords: int = 0
    nms_kind: str = "default"
    beta_nms: float = 0.6
    iou_thresh: float = 1.0
    ignore_thresh: float = 0.5
    truth_thresh: float = 1.0
    iou_loss: str = "mse"
    iou_thresh_kind: str = "iou"
    iou_normalizer: float = 0.75
    cls_normalizer: float = 1.0
    obj_normalizer: float = 1.0
    delta_normalizer: float = 1.0
    max_delta: float = float("inf")
    objectness_smooth: int = 0
    label_smooth_eps: float = 0.0
    focal_loss: int = 0
    jitter: float = 0.2
    resize: float = 1.0
    random: float = 0.0
    max_boxes: int = 200

    @property
    def masked_anchors(self) -> List[Tuple[float, float]]:
        """This layer's anchors ``[(w, h)]`` in input pixels: ``anchors[m]`` for ``m`` in ``mask``."""
        return [self.anchors[m] for m in self.mask]
