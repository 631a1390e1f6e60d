"""Typed, validated layer descriptions built from cfg sections (torch-free).

One dataclass per section type; every layer shares the :class:`LayerSpec` fields (darknet layer
number, section, channels in/out, cumulative stride). The ``.weights`` size checks, the torch
module builder and the trainer (which reads :class:`YoloSpec` directly) all use them.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from yolo4.model.cfg.section import Section

__all__ = ["NetSpec", "LayerSpec", "ConvSpec", "RouteSpec", "ShortcutSpec", "MaxPoolSpec", "UpsampleSpec",
           "DropoutSpec", "YoloSpec", "SamSpec", "ScaleChannelsSpec", "AvgPoolSpec", "LocalAvgPoolSpec",
           "Reorg3dSpec", "ContrastiveSpec", "DEFAULT_NET", "ACTIVATIONS", "SHORTCUT_WEIGHTS_TYPES",
           "SHORTCUT_WEIGHTS_NORMALIZATIONS"]

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
    share_index: Optional[int] = None

    def num_params(self) -> int:
        """Floats this layer holds in a .weights file (bias, [scale, mean, var,] kernel); 0 for a layer
        that uses another layer's parameters (``share_index``, darknet ``load_weights_upto``)."""
        if self.share_index is not None:
            return 0
        n = self.filters * (4 if self.batch_normalize else 1)
        return n + self.filters * (self.in_channels // self.groups) * self.size * self.size


@dataclass
class RouteSpec(LayerSpec):
    """``[route]``: concat of ``layers`` (absolute indices), each sliced to ``group_id`` of ``groups``."""

    layers: List[int] = field(default_factory=list)
    groups: int = 1
    group_id: int = 0
    stopbackward: int = 0


#: ``[shortcut] weights_type`` values (darknet ``parse_shortcut``; ``per_layer`` is read as ``per_feature``)
SHORTCUT_WEIGHTS_TYPES = ("none", "per_feature", "per_channel")
#: ``[shortcut] weights_normalization`` values (``avg_relu`` is read as ``relu``)
SHORTCUT_WEIGHTS_NORMALIZATIONS = ("none", "relu", "softmax")


@dataclass
class ShortcutSpec(LayerSpec):
    """``[shortcut]`` (darknet ``src/shortcut_layer.c``, ``shortcut_multilayer_cpu`` in ``src/blas.c``).

    Output = ``activation(w0 * prev + sum_i w_i * from_i)`` with the previous layer's shape; each
    ``from_layers[i]`` (same height and width) is added over the channels both have (``min(c_prev,
    c_from)``, the first ones). Without weights every ``w`` is 1. ``weights_type`` ``per_feature``:
    one weight per input (``n+1``, ``n = len(from_layers)``), ``per_channel``: ``(n+1) x c_prev``;
    they are stored in the .weights file after the preceding layers' records.
    ``weights_normalization`` ``relu``: ``w_i = relu(w_i) / (1e-4 + sum_j relu(w_j))``, ``softmax``:
    ``w_i = exp(w_i - max) / (1e-4 + sum_j exp(w_j - max))`` (over the ``n+1`` inputs); darknet's
    parser refuses weights without a normalization.
    """

    from_layers: List[int] = field(default_factory=list)
    activation: str = "linear"
    weights_type: str = "none"
    weights_normalization: str = "none"

    def num_weights(self) -> int:
        """Floats this layer holds in a .weights file: 0, ``n+1`` or ``(n+1) * channels``."""
        n = len(self.from_layers) + 1
        if self.weights_type == "per_feature":
            return n
        if self.weights_type == "per_channel":
            return n * self.out_channels
        return 0


@dataclass
class SamSpec(LayerSpec):
    """``[sam]`` (darknet ``src/sam_layer.c`` ``forward_sam_layer``): the modified spatial attention of
    YOLOv4, ``activation(prev * from)`` elementwise; ``from_layer`` has the previous layer's shape."""

    from_layer: int = 0
    activation: str = "linear"

    @property
    def from_layers(self) -> List[int]:
        return [self.from_layer]


@dataclass
class ScaleChannelsSpec(LayerSpec):
    """``[scale_channels]`` (darknet ``src/scale_channels_layer.c``): ``activation(from * prev)`` with
    the ``from_layer``'s shape ``[C, H, W]``; the previous layer is ``[C, 1, 1]`` (a per-channel scale,
    squeeze-and-excitation) or, with ``scale_wh=1``, ``[1, H, W]`` (a per-position scale)."""

    from_layer: int = 0
    scale_wh: bool = False
    activation: str = "linear"

    @property
    def from_layers(self) -> List[int]:
        return [self.from_layer]


@dataclass
class AvgPoolSpec(LayerSpec):
    """``[avgpool]`` (darknet ``src/avgpool_layer.c``): global average, ``[C, H, W] -> [C, 1, 1]``."""


@dataclass
class LocalAvgPoolSpec(LayerSpec):
    """``[local_avgpool]`` (darknet ``src/maxpool_layer.c`` ``forward_local_avgpool_layer``): the
    ``[maxpool]`` geometry (``padding // 2`` before, out = (in + padding - size) // stride + 1), each
    output the mean of the window's cells inside the input (padding not counted)."""

    size: int = 1
    pool_stride: int = 1
    padding: int = 0


@dataclass
class Reorg3dSpec(LayerSpec):
    """``[reorg3d]`` (darknet ``src/reorg_layer.c``, ``reorg_cpu`` in ``src/blas.c``): space to depth,
    ``[C, H, W] -> [C*s*s, H/s, W/s]``, output channel ``(dy*s + dx)*C + c`` holds input
    ``[c, y*s + dy, x*s + dx]``."""

    reorg_stride: int = 2


@dataclass
class ContrastiveSpec(LayerSpec):
    """``[contrastive]`` (darknet ``src/parser.c`` ``parse_contrastive``): a training-only loss on the
    embeddings; at inference it passes its input through (nothing reads its output)."""

    yolo_layer: int = 0


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
    """``[dropout]`` (darknet ``src/dropout_layer.c``, ``parse_dropout`` in ``src/parser.c``): identity
    at inference; in training plain dropout of ``probability`` or, with ``dropblock``, DropBlock
    (see :class:`yolo4.model.layers.Dropout`).

    Attributes:
        probability: drop probability, in ``[0, 1)`` (darknet default 0.2).
        dropblock: ``dropblock=1``: drop square blocks instead of single units.
        dropblock_size_rel: block side as a fraction of the feature map side (0: unused).
        dropblock_size_abs: block side in cells (0: unused). As darknet's ``parse_dropout``: with
            ``dropblock=1`` and neither size given it is 7; with both given ``dropblock_size_rel``
            is dropped (set to 0). A side larger than the map is clamped to the map at run time.
    """

    probability: float = 0.2
    dropblock: bool = False
    dropblock_size_rel: float = 0.0
    dropblock_size_abs: int = 0


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
