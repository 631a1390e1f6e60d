"""The darknet network as a torch module, built from a cfg (AlexeyAB darknet ``src/network.c``)."""

import hashlib
import os
import warnings
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from yolo4.errors import Yolo4Error
from yolo4.model.cfg import (
    AvgPoolSpec,
    ContrastiveSpec,
    ConvSpec,
    DropoutSpec,
    LocalAvgPoolSpec,
    MaxPoolSpec,
    Reorg3dSpec,
    RouteSpec,
    SamSpec,
    ScaleChannelsSpec,
    Section,
    ShortcutSpec,
    UpsampleSpec,
    YoloSpec,
    build_specs,
    check_input_hw,
    parse_cfg_text,
    read_cfg_text,
    write_cfg,
)
from yolo4.model.layers import (
    AvgPool,
    Contrastive,
    ConvBlock,
    Dropout,
    LocalAvgPool,
    MaxPoolDarknet,
    Reorg3d,
    Route,
    Sam,
    ScaleChannels,
    Shortcut,
    Upsample,
    YoloLayer,
    static_shape,
    yolo_bias_priors,
)

__all__ = ["Darknet", "DEFAULT_DARKNET_HEADER"]

#: header written for models that were not loaded from a .weights file: (major, minor, revision, seen)
#: as darknet's ``save_weights`` (major 0, minor 2, revision 5 -> 64-bit ``seen``).
DEFAULT_DARKNET_HEADER = (0, 2, 5, 0)


def _make(spec, init: bool) -> nn.Module:
    if isinstance(spec, ConvSpec):
        return ConvBlock(spec, init)
    if isinstance(spec, RouteSpec):
        return Route(spec)
    if isinstance(spec, ShortcutSpec):
        return Shortcut(spec)
    if isinstance(spec, MaxPoolSpec):
        return MaxPoolDarknet(spec)
    if isinstance(spec, UpsampleSpec):
        return Upsample(spec)
    if isinstance(spec, DropoutSpec):
        return Dropout(spec)
    if isinstance(spec, YoloSpec):
        return YoloLayer(spec)
    if isinstance(spec, SamSpec):
        return Sam(spec)
    if isinstance(spec, ScaleChannelsSpec):
        return ScaleChannels(spec)
    if isinstance(spec, AvgPoolSpec):
        return AvgPool(spec)
    if isinstance(spec, LocalAvgPoolSpec):
        return LocalAvgPool(spec)
    if isinstance(spec, Reorg3dSpec):
        return Reorg3d(spec)
    if isinstance(spec, ContrastiveSpec):
        return Contrastive(spec)
    raise TypeError(spec)  # pragma: no cover


def _share_parameters(layers: nn.ModuleList, specs) -> None:
    """``share_index``: a conv uses another conv's kernel, bias and batch-norm parameters and statistics
    (darknet ``make_convolutional_layer`` with ``share_layer``); its own geometry (stride, padding,
    dilation) and activation stay."""
    for sp in specs:
        if isinstance(sp, ConvSpec) and sp.share_index is not None:
            mine, src = layers[sp.index], layers[sp.share_index]
            mine.conv.weight = src.conv.weight
            mine.conv.bias = src.conv.bias
            if mine.bn is not None:
                mine.bn = src.bn  # scales, biases and rolling statistics: one module


class Darknet(nn.Module):
    """A darknet cfg as a torch module (one submodule per cfg section after ``[net]``).

    The cfg comes from exactly one of three places, never guessed from a string::

        Darknet("yolov4-tiny.cfg")                        # a cfg FILE (str or PathLike)
        Darknet(text=cfg_text, path="run/last.pt")        # a cfg TEXT, path = name for messages
        Darknet(sections, text=cfg_text)                  # already parsed sections (text optional)

    Args:
        cfg: a cfg file path (str or ``os.PathLike``), or parsed sections (a list of
            :class:`~yolo4.model.cfg.Section`); None when ``text`` is given.
        names: class names (index = class id) or None.
        text: the cfg text (keyword only). With ``cfg`` = sections it is only kept as
            :attr:`cfg_text` (default: ``write_cfg(sections)``).
        path: with ``text``: the name used in errors and warnings (the file or checkpoint the text
            came from); None = ``<cfg text>``. Not allowed with a file path.
        init: initialize parameters (torch defaults, then :meth:`init_heads`); False leaves conv
            parameters uninitialized for an immediate weights load.

    Raises:
        CfgError: the cfg cannot be read, parsed, or run at its ``[net]`` size (one line naming the
            file and line; see :func:`yolo4.model.cfg.build_specs`); nothing is allocated then.
        TypeError: none or both of ``cfg`` and ``text`` (sections excepted), ``path`` with a file path.

    Attributes:
        sections: parsed cfg (list of :class:`~yolo4.model.cfg.Section`).
        cfg_text: the cfg text (the file's text when built from a file; re-headed text after
            ``load_darknet(num_classes=...)``).
        cfg_path: source file or name given by ``path`` (str), or None.
        net: ``[net]`` options dict, auto-typed, darknet defaults filled in (``batch``,
            ``subdivisions``, ``learning_rate``, ``burn_in``, ``momentum``, ``decay``, ``max_batches``,
            ``policy``, ``steps`` (list), ``scales`` (list), ``mosaic``, ``hue``, ``saturation``,
            ``exposure``, ``letter_box`` ...).
        net_spec: the :class:`~yolo4.model.cfg.NetSpec`.
        input_hw: ``(height, width)`` the model runs at by default (the cfg's ``[net]`` size, or a
            checkpoint's training size); other sizes that pass :meth:`check_input_size` work too.
        stride: the network's total stride in pixels (32 for YOLOv4): input sizes are multiples of it
            (:func:`yolo4.model.cfg.network_stride`).
        channels: input channels (3).
        letter_box: ``[net] letter_box`` as bool.
        names: class names or None.
        layers: ``nn.ModuleList``, ``layers[i]`` = darknet layer ``i``.
        specs: typed layer descriptions (:mod:`yolo4.model.cfg`).
        yolo_layers: the :class:`~yolo4.model.layers.YoloLayer` modules, cfg order.
        num_classes: classes of the (first) ``[yolo]``.
        darknet_header: ``(major, minor, revision, seen)`` of the .weights file read (or the default),
            written back by ``save_darknet_weights``.
        iteration: training iteration, used for darknet ``stopbackward=N`` (gradients stop at that
            layer while ``iteration < N``; ``stopbackward=1`` always). Set by the trainer.
    """

    def __init__(self, cfg: Union[str, "os.PathLike[str]", Sequence[Section], None] = None,
                 names: Optional[Sequence[str]] = None, *, text: Optional[str] = None,
                 path: Optional[str] = None, init: bool = True) -> None:
        super().__init__()
        if isinstance(cfg, (list, tuple)):
            if path is not None:
                raise TypeError("Darknet(sections): path= is taken from the sections")
            self.sections = list(cfg)
            self.cfg_text = text if text is not None else write_cfg(self.sections)
            self.cfg_path = self.sections[0].path if self.sections else None
        elif cfg is not None:
            if text is not None or path is not None:
                raise TypeError("Darknet(cfg_file) takes no text= or path=: give either a cfg file or "
                                "text= (with path= naming it)")
            self.cfg_text, self.cfg_path = read_cfg_text(cfg)
            self.sections = parse_cfg_text(self.cfg_text, path=self.cfg_path, validate=False)
        elif text is not None:
            self.sections = parse_cfg_text(text, path=path, validate=False)
            self.cfg_text, self.cfg_path = text, path
        else:
            raise TypeError("Darknet needs a cfg file path, parsed sections, or text=")
        net, specs = build_specs(self.sections)
        self.net_spec = net
        self.specs = specs
        self.net: Dict[str, object] = dict(net.options)
        self.input_hw: Tuple[int, int] = (net.height, net.width)
        self.stride = net.stride
        self.channels = net.channels
        self.letter_box = net.letter_box
        self._checked_inputs = {(net.channels, net.height, net.width)}  # (C, H, W) known to fit
        self.layers = nn.ModuleList(_make(sp, init) for sp in specs)
        _share_parameters(self.layers, specs)
        self.num_classes = self.yolo_layers[0].num_classes
        self.names = list(names) if names is not None else None
        self.darknet_header = DEFAULT_DARKNET_HEADER
        self.iteration = 0
        # outputs referenced later by a route/shortcut must be kept during forward
        keep = set()
        for sp in specs:
            if isinstance(sp, RouteSpec):
                keep.update(sp.layers)
            elif isinstance(sp, (ShortcutSpec, SamSpec, ScaleChannelsSpec)):
                keep.update(sp.from_layers)
        self._keep = frozenset(keep)
        self._stop = {sp.index: sp.stopbackward for sp in specs
                      if isinstance(sp, (ConvSpec, RouteSpec)) and sp.stopbackward}
        if init:
            self.init_heads()

    def check_input_size(self, size, what: str = "input") -> Tuple[int, int]:
        """Check that the network runs at ``size`` and return it as ``(height, width)`` in pixels.

        ``size`` (an int or ``(height, width)``) must be a positive multiple of :attr:`stride`
        (:func:`yolo4.model_info.check_input_size`) and every layer must fit at it
        (:func:`yolo4.model.cfg.check_input_hw`); ``what`` names the option in messages.

        Raises:
            Yolo4Error: not a positive multiple of the stride. CfgError: a layer that does not fit at
                this size (the cfg's file:line).
        """
        return check_input_hw(self.net_spec, self.specs, size, what)

    # ------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, raw: bool = False):
        """Run the network.

        Args:
            x: float32 ``[B, 3, H, W]`` RGB in 0..1, H and W multiples of :attr:`stride` (32) at which
                every layer fits (:meth:`check_input_size`, checked once per size).
            raw: return the raw head tensors instead of decoded boxes.

        Returns:
            ``raw=True``: list (cfg order of ``[yolo]``) of float ``[B, A*(5+C), H/stride, W/stride]``,
            the inputs of each ``[yolo]`` section. ``raw=False``: ``(boxes, scores)``, boxes float
            ``[B, N, 4]`` (x1, y1, x2, y2) in input pixels, scores float ``[B, N, C]`` =
            objectness × class probability, N = Σ A·h·w, ordered layer, anchor, row, col
            (darknet ``yolo_layer.c`` decode, see :meth:`YoloLayer.forward`).

        Raises:
            Yolo4Error: ``x`` is not ``[B, 3, H, W]``, or the network does not run at ``H x W``.
        """
        self._check_input(x)
        saved: Dict[int, torch.Tensor] = {}
        heads: List[torch.Tensor] = []
        for i, layer in enumerate(self.layers):
            if isinstance(layer, YoloLayer):
                heads.append(x)
            elif isinstance(layer, Route):
                x = layer([saved[j] for j in layer.spec.layers])
            elif isinstance(layer, Shortcut):
                x = layer(x, [saved[j] for j in layer.spec.from_layers])
            elif isinstance(layer, (Sam, ScaleChannels)):
                x = layer(x, saved[layer.spec.from_layer])
            else:
                x = layer(x)
            if self.training and i in self._stop and (self._stop[i] == 1 or self.iteration < self._stop[i]):
                x = x.detach()
            if i in self._keep:
                saved[i] = x
        if _flag(raw):
            return heads
        return self.decode(heads)

    def _check_input(self, x: torch.Tensor) -> None:
        shape = static_shape(x)
        if len(shape) != 4 or shape[1] != self.channels:
            raise Yolo4Error(f"model input must be [batch, {self.channels}, height, width] (RGB), got "
                             f"{list(shape)}")
        chw = shape[1:]
        if chw not in self._checked_inputs:
            self.check_input_size(chw[1:], "input")
            self._checked_inputs.add(chw)

    def decode(self, heads: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Decode raw heads (``forward(x, raw=True)``) into ``(boxes [B,N,4], scores [B,N,C])``."""
        out = [yl(h) for yl, h in zip(self.yolo_layers, heads)]
        if len(out) == 1:
            return out[0]
        return torch.cat([o[0] for o in out], 1), torch.cat([o[1] for o in out], 1)

    # ------------------------------------------------------------------------------------------
    @property
    def yolo_layers(self) -> List[YoloLayer]:
        """The :class:`~yolo4.model.layers.YoloLayer` modules, cfg order (a view of :attr:`layers`)."""
        return [m for m in self.layers if isinstance(m, YoloLayer)]

    @property
    def conv_layers(self) -> List[ConvBlock]:
        """The :class:`ConvBlock` modules in darknet order (the order of .weights records)."""
        return [m for m in self.layers if isinstance(m, ConvBlock)]

    def head_convs(self) -> List[ConvBlock]:
        """The conv feeding each ``[yolo]`` (cfg order)."""
        return [self.layers[yl.index - 1] for yl in self.yolo_layers]

    @torch.no_grad()
    def init_heads(self, indices: Optional[Sequence[int]] = None) -> None:
        """Fresh init of the head convs (all, or darknet layer ``indices``): weights N(0, 0.01),
        bias priors of :func:`yolo4.model.layers.yolo_bias_priors` (objectness log(8/cells at the cfg
        input size), classes log(0.6/(C−0.99)), box terms 0)."""
        h, w = self.input_hw
        for yl in self.yolo_layers:
            conv_block = self.layers[yl.index - 1]
            if indices is not None and conv_block.spec.index not in indices:
                continue
            conv = conv_block.conv
            conv.weight.normal_(0.0, 0.01)
            prior = yolo_bias_priors(yl.num_classes, yl.num_anchors,
                                     (h / yl.stride) * (w / yl.stride)).to(conv.weight)
            if conv.bias is not None:
                conv.bias.copy_(prior)
            elif conv_block.bn is not None:  # BN head (unusual): put the prior in beta
                conv_block.bn.bias.copy_(prior)

    def cfg_sha256(self) -> str:
        """sha256 hex digest of :attr:`cfg_text` (utf-8)."""
        return hashlib.sha256(self.cfg_text.encode("utf-8")).hexdigest()

    def model_info(self, names: Optional[Sequence[str]] = None):
        """The :class:`yolo4.model_info.ModelInfo` of this model.

        Args:
            names: class names; default :attr:`names`, else :func:`yolo4.data.names.default_names`
                (COCO's built-in names when C == 80, else ``class0 .. class{C-1}``).

        Raises:
            ValueError: ``names`` has a length other than C.
        """
        from yolo4 import __version__
        from yolo4.data.names import default_names
        from yolo4.model_info import ModelInfo

        C = self.num_classes
        if names is None:
            names = self.names
        if names is None:
            names = default_names(C)
        names = [str(n) for n in names]
        if len(names) != C:
            raise ValueError(f"{len(names)} class names for a {C}-class model")
        yl0 = self.yolo_layers[0]
        return ModelInfo(
            names=names, input_hw=(int(self.input_hw[0]), int(self.input_hw[1])),
            letter_box=bool(self.letter_box), nms_kind=str(yl0.nms_kind), beta_nms=float(yl0.beta_nms),
            anchors=[[(float(a), float(b)) for a, b in yl.anchors] for yl in self.yolo_layers],
            strides=[int(yl.stride) for yl in self.yolo_layers], cfg_sha256=self.cfg_sha256(),
            yolo4_version=__version__)


def _flag(v) -> bool:
    """A bool argument; torch.onnx.export's legacy tracer passes defaults as constant tensors."""
    if isinstance(v, torch.Tensor):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            return bool(v.item())
    return bool(v)
