"""Sections -> typed layer specs: one builder per section type (:data:`SPEC_BUILDERS`), then the shape
check at the cfg's input size (:mod:`yolo4.model.cfg.shapes`).

Each builder follows the matching ``parse_*`` function of AlexeyAB darknet ``src/parser.c`` (keys,
defaults) and rejects what this package does not implement, values out of
:mod:`~yolo4.model.cfg.limits`, and channel mismatches, with a :class:`yolo4.errors.CfgError` at the
option's line.
"""

from typing import Any, Callable, Dict, List, Sequence, Tuple

from yolo4.errors import CfgError, Yolo4Error
from yolo4.model.cfg.limits import (
    MAX_ANCHORS,
    MAX_CHANNELS,
    MAX_CLASSES,
    MAX_INPUT_SIDE,
    MAX_KERNEL,
    MAX_PARAMS,
    MAX_STRIDE,
)
from yolo4.model.cfg.section import INT_RE, NUM_RE, TEXT_NAME, Section
from yolo4.model.cfg.shapes import infer_shapes, network_stride
from yolo4.model.cfg.specs import (
    ACTIVATIONS,
    DEFAULT_NET,
    SHORTCUT_WEIGHTS_NORMALIZATIONS,
    SHORTCUT_WEIGHTS_TYPES,
    AvgPoolSpec,
    ContrastiveSpec,
    ConvSpec,
    DropoutSpec,
    LayerSpec,
    LocalAvgPoolSpec,
    MaxPoolSpec,
    NetSpec,
    Reorg3dSpec,
    RouteSpec,
    SamSpec,
    ScaleChannelsSpec,
    ShortcutSpec,
    UpsampleSpec,
    YoloSpec,
)

__all__ = ["build_specs", "SPEC_BUILDERS", "SpecBuilder"]

#: ``builder(section, layer index, input channels, input stride, specs built so far) -> spec``
SpecBuilder = Callable[[Section, int, int, int, List[LayerSpec]], LayerSpec]

#: options that change a [convolutional] in ways this package does not implement.
_UNSUPPORTED_CONV = ("antialiasing", "binary", "xnor", "deform", "sway", "rotate",
                     "stretch", "stretch_sway", "flipped", "assisted_excitation", "coordconv")


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def _auto(value: str) -> Any:
    """Auto-type a [net] value: int, float, list of numbers (comma), else the string."""
    if INT_RE.match(value):
        return int(value)
    if NUM_RE.match(value):
        return float(value)
    if "," in value:
        items = [s for s in value.split(",") if s != ""]
        if items and all(NUM_RE.match(s) for s in items):
            return [int(s) if INT_RE.match(s) else float(s) for s in items]
    return value


def _activation(sec: Section, default: str) -> str:
    act = sec.options.get("activation", default)
    if act not in ACTIVATIONS:
        raise sec.error("activation={} is not supported (one of {})".format(act, ", ".join(ACTIVATIONS)),
                        "activation")
    return act


def _abs_index(sec: Section, key: str, rel: int, index: int) -> int:
    j = index + rel if rel < 0 else rel
    if j < 0 or j >= index:
        raise sec.error(f"{key} index {rel} refers to layer {j}, outside 0..{index - 1}", key)
    return j


def _square_stride(sec: Section) -> int:
    """``stride``, or ``stride_x``/``stride_y`` when given (darknet: they override ``stride``)."""
    stride = sec.get_int("stride", 1, lo=1, hi=MAX_STRIDE)
    sx = sec.get_int("stride_x", stride, lo=1, hi=MAX_STRIDE)
    sy = sec.get_int("stride_y", stride, lo=1, hi=MAX_STRIDE)
    if sx != sy:
        raise sec.error(f"stride_x={sx} and stride_y={sy} differ: non-square strides are not supported",
                        "stride_x" if "stride_x" in sec.options else "stride_y")
    return sx


def _not_yolo(sec: Section, key: str, specs: List[LayerSpec], j: int) -> LayerSpec:
    src = specs[j]
    if isinstance(src, YoloSpec):
        raise sec.error(f"{key} refers to a [yolo] layer ({j})", key)
    return src


# --------------------------------------------------------------------------------------------------
# one builder per section type
# --------------------------------------------------------------------------------------------------
def net_spec(sec: Section) -> NetSpec:
    """``[net]`` (darknet ``parse_net_options``): width, height, channels=3, letter_box, all options.

    ``channels`` must be 3: the runtime, export and preprocessing feed RGB images; darknet's
    grayscale ``channels=1`` is refused with a one-line message.
    """
    opts = dict(DEFAULT_NET)
    for k, v in sec.options.items():
        opts[k] = _auto(v)
    for k in ("steps", "scales"):  # one-element lists are written without a comma
        if not isinstance(opts[k], list):
            opts[k] = [opts[k]]
    for k in ("width", "height"):
        if k not in sec.options:
            raise sec.error(f"missing required option {k!r} (the network input size in pixels)")
    width = sec.get_int("width", lo=1, hi=MAX_INPUT_SIDE)
    height = sec.get_int("height", lo=1, hi=MAX_INPUT_SIDE)
    channels = sec.get_int("channels", 3)
    if channels == 1:
        raise sec.error("channels=1: grayscale models are not supported (the runtime, export and "
                        "preprocessing feed 3-channel RGB images); use channels=3 and train the model on "
                        "RGB (grayscale images can be given as 3 equal channels)", "channels")
    if channels != 3:
        raise sec.error(f"channels={channels} is not supported: the network input is a 3-channel RGB "
                        "image (channels=3)", "channels")
    return NetSpec(width, height, channels, bool(sec.get_int("letter_box", 0)), opts, sec)


def conv_spec(sec: Section, i: int, c: int, s: int, specs: List[LayerSpec]) -> ConvSpec:
    """``[convolutional]`` (darknet ``parse_convolutional``)."""
    for k in _UNSUPPORTED_CONV:
        if k in sec.options and sec.options[k] not in ("0", ""):
            raise sec.error(f"option {k}={sec.options[k]} is not supported", k)
    filters = sec.get_int("filters", 1, lo=1, hi=MAX_CHANNELS)
    size = sec.get_int("size", 1, lo=1, hi=MAX_KERNEL)
    stride = _square_stride(sec)
    groups = sec.get_int("groups", 1, lo=1, hi=MAX_CHANNELS)
    dilation = sec.get_int("dilation", 1, lo=1, hi=MAX_KERNEL)
    if size == 1:
        dilation = 1  # darknet: if (size == 1) dilation = 1;
    pad = sec.get_int("pad", 0)
    padding = sec.get_int("padding", 0, lo=0, hi=MAX_KERNEL)
    if pad:
        padding = size // 2
    if c % groups or filters % groups:
        raise sec.error(f"groups={groups} does not divide input channels {c} and filters {filters}", "groups")
    batch_normalize = bool(sec.get_int("batch_normalize", 0))
    share = None
    if "share_index" in sec.options:  # darknet: >= 0 absolute, < 0 relative; the parameters of that conv
        share = _abs_index(sec, "share_index", sec.get_int("share_index"), i)
        other = specs[share]
        if not isinstance(other, ConvSpec) or other.share_index is not None:
            raise sec.error(f"share_index={sec.options['share_index']} refers to layer {share}, which is not a "
                            "[convolutional] with its own parameters", "share_index")
        mine = (size, c, filters, groups, batch_normalize)
        theirs = (other.size, other.in_channels, other.filters, other.groups, other.batch_normalize)
        if mine != theirs:
            raise sec.error(f"share_index={share}: size, input channels, filters, groups, batch_normalize "
                            f"{mine} differ from that layer's {theirs}", "share_index")
    spec = ConvSpec(i, sec, c, filters, s * stride, filters=filters, size=size, conv_stride=stride,
                    padding=padding * dilation, groups=groups, dilation=dilation,
                    batch_normalize=batch_normalize,
                    activation=_activation(sec, "logistic"),
                    stopbackward=sec.get_int("stopbackward", 0), share_index=share)
    if spec.num_params() > MAX_PARAMS:
        raise sec.error(f"{spec.num_params()} parameters ({filters} filters x {c // groups} channels x "
                        f"{size}x{size}) exceed the limit of {MAX_PARAMS} per network", "filters")
    return spec


def route_spec(sec: Section, i: int, c: int, s: int, specs: List[LayerSpec]) -> RouteSpec:
    """``[route]`` (darknet ``parse_route``); equal input sizes are checked by the shape rule."""
    layers = [_abs_index(sec, "layers", r, i) for r in sec.get_ints("layers")]
    groups = sec.get_int("groups", 1, lo=1, hi=MAX_CHANNELS)
    group_id = sec.get_int("group_id", 0)
    if not 0 <= group_id < groups:
        raise sec.error("group_id must be in 0..groups-1", "group_id")
    out_c = 0
    for j in layers:
        src = _not_yolo(sec, "layers", specs, j)
        if src.out_channels % groups:
            raise sec.error(f"groups={groups} does not divide the {src.out_channels} channels of layer {j}",
                            "groups")
        out_c += src.out_channels // groups
    if out_c > MAX_CHANNELS:
        raise sec.error(f"concatenates {out_c} channels, more than the limit of {MAX_CHANNELS}", "layers")
    return RouteSpec(i, sec, c, out_c, max(specs[j].stride for j in layers), layers=layers, groups=groups,
                     group_id=group_id, stopbackward=sec.get_int("stopbackward", 0))


def shortcut_spec(sec: Section, i: int, c: int, s: int, specs: List[LayerSpec]) -> ShortcutSpec:
    """``[shortcut]`` (darknet ``parse_shortcut``): ``from`` layers of equal height and width (checked by
    the shape rule; channels may differ), ``weights_type`` (``none``, ``per_feature`` = ``per_layer``,
    ``per_channel``) and ``weights_normalization`` (``none``, ``relu`` = ``avg_relu``, ``softmax``)."""
    wt = sec.options.get("weights_type", "none")
    wt = "per_feature" if wt == "per_layer" else wt
    if wt not in SHORTCUT_WEIGHTS_TYPES:
        raise sec.error("weights_type={} is not one of {} (or per_layer)".format(
            sec.options["weights_type"], ", ".join(SHORTCUT_WEIGHTS_TYPES)), "weights_type")
    wn = sec.options.get("weights_normalization", "none")
    wn = "relu" if wn == "avg_relu" else wn
    if wn not in SHORTCUT_WEIGHTS_NORMALIZATIONS:
        raise sec.error("weights_normalization={} is not one of {} (or avg_relu)".format(
            sec.options["weights_normalization"], ", ".join(SHORTCUT_WEIGHTS_NORMALIZATIONS)),
            "weights_normalization")
    if wt != "none" and wn == "none":  # darknet's parse_shortcut stops with "Incorrect weights_normalization"
        raise sec.error(f"weights_type={sec.options['weights_type']} needs weights_normalization=relu, avg_relu or "
                        "softmax (darknet refuses none)",
                        "weights_normalization" if "weights_normalization" in sec.options else "weights_type")
    froms = [_abs_index(sec, "from", r, i) for r in sec.get_ints("from")]
    for j in froms:
        _not_yolo(sec, "from", specs, j)
    return ShortcutSpec(i, sec, c, c, s, from_layers=froms, activation=_activation(sec, "linear"),
                        weights_type=wt, weights_normalization=wn)


def _from_layer(sec: Section, i: int, specs: List[LayerSpec]) -> int:
    """The single ``from`` index of a ``[sam]`` / ``[scale_channels]`` (absolute, checked)."""
    froms = sec.get_ints("from")
    if len(froms) != 1:
        raise sec.error(f"from={sec.options['from']} must name exactly one layer", "from")
    j = _abs_index(sec, "from", froms[0], i)
    _not_yolo(sec, "from", specs, j)
    return j


def _mul_activation(sec: Section) -> str:
    act = _activation(sec, "linear")
    if act in ("swish", "mish"):  # darknet: "layer doesn't support SWISH or MISH activations"
        raise sec.error(f"activation={act} is not supported by darknet's [{sec.type}]", "activation")
    return act


def sam_spec(sec: Section, i: int, c: int, s: int, specs: List[LayerSpec]) -> SamSpec:
    """``[sam]`` (darknet ``parse_sam``): previous output times layer ``from`` (same shape)."""
    j = _from_layer(sec, i, specs)
    return SamSpec(i, sec, c, specs[j].out_channels, specs[j].stride, from_layer=j,
                   activation=_mul_activation(sec))


def scale_channels_spec(sec: Section, i: int, c: int, s: int, specs: List[LayerSpec]) -> ScaleChannelsSpec:
    """``[scale_channels]`` (darknet ``parse_scale_channels``): layer ``from`` scaled by the previous
    output (``[C,1,1]``, or ``[1,H,W]`` with ``scale_wh=1``); the output has ``from``'s shape."""
    j = _from_layer(sec, i, specs)
    scale_wh = sec.get_int("scale_wh", 0, lo=0, hi=1)
    src = specs[j]
    want = 1 if scale_wh else src.out_channels
    if c != want:
        raise sec.error(f"the previous layer has {c} channels, {want} expected to scale the "
                        f"{src.out_channels} channels of layer {j}" + (" per position (scale_wh=1)" if scale_wh
                                                                        else ""), "from")
    return ScaleChannelsSpec(i, sec, c, src.out_channels, src.stride, from_layer=j, scale_wh=bool(scale_wh),
                             activation=_mul_activation(sec))


def avgpool_spec(sec: Section, i: int, c: int, s: int, specs: List[LayerSpec]) -> AvgPoolSpec:
    """``[avgpool]`` (darknet ``parse_avgpool``): global average pooling to ``[C, 1, 1]``."""
    return AvgPoolSpec(i, sec, c, c, s)


def _pool_window(sec: Section) -> Tuple[int, int, int]:
    """``(stride, size, padding)`` of ``[maxpool]`` / ``[local_avgpool]`` (darknet ``parse_maxpool``:
    ``size`` defaults to ``stride``, ``padding`` to ``size - 1``); a padding holding whole windows is refused."""
    stride = _square_stride(sec)
    size = sec.get_int("size", stride, lo=1, hi=MAX_KERNEL)
    padding = sec.get_int("padding", size - 1, lo=0)
    if padding > 2 * (size - 1):
        raise sec.error(f"padding={padding} with size={size} puts whole pooling windows in the padding "
                        f"(at most 2*(size-1) = {2 * (size - 1)})", "padding")
    return stride, size, padding


def local_avgpool_spec(sec: Section, i: int, c: int, s: int, specs: List[LayerSpec]) -> LocalAvgPoolSpec:
    """``[local_avgpool]`` (darknet ``parse_local_avgpool``): ``size`` defaults to ``stride``, ``padding``
    to size-1, as ``[maxpool]``."""
    stride, size, padding = _pool_window(sec)
    return LocalAvgPoolSpec(i, sec, c, c, s * stride, size=size, pool_stride=stride, padding=padding)


def reorg3d_spec(sec: Section, i: int, c: int, s: int, specs: List[LayerSpec]) -> Reorg3dSpec:
    """``[reorg3d]`` (darknet ``parse_reorg``): space to depth by ``stride`` (``reverse=1``, depth to
    space, is not supported)."""
    stride = sec.get_int("stride", 1, lo=1, hi=MAX_STRIDE)
    if sec.get_int("reverse", 0):
        raise sec.error("reverse=1 (depth to space) is not supported", "reverse")
    out_c = c * stride * stride
    if out_c > MAX_CHANNELS:
        raise sec.error(f"{out_c} output channels, more than the limit of {MAX_CHANNELS}", "stride")
    return Reorg3dSpec(i, sec, c, out_c, s * stride, reorg_stride=stride)


def contrastive_spec(sec: Section, i: int, c: int, s: int, specs: List[LayerSpec]) -> ContrastiveSpec:
    """``[contrastive]`` (darknet ``parse_contrastive``): ``yolo_layer`` must name a ``[yolo]``; the
    layer is training-only (its loss is not implemented here) and passes its input through."""
    j = _abs_index(sec, "yolo_layer", sec.get_int("yolo_layer", 0), i) if "yolo_layer" in sec.options else None
    if j is None or not isinstance(specs[j], YoloSpec):
        raise sec.error("yolo_layer must refer to a [yolo] layer", "yolo_layer")
    return ContrastiveSpec(i, sec, c, c, s, yolo_layer=j)


def maxpool_spec(sec: Section, i: int, c: int, s: int, specs: List[LayerSpec]) -> MaxPoolSpec:
    """``[maxpool]`` (darknet ``parse_maxpool``): ``size`` defaults to ``stride``, ``padding`` to size-1."""
    stride, size, padding = _pool_window(sec)
    if sec.get_int("maxpool_depth", 0) or sec.get_int("antialiasing", 0):
        raise sec.error("maxpool_depth / antialiasing are not supported")
    return MaxPoolSpec(i, sec, c, c, s * stride, size=size, pool_stride=stride, padding=padding)


def upsample_spec(sec: Section, i: int, c: int, s: int, specs: List[LayerSpec]) -> UpsampleSpec:
    """``[upsample]`` (darknet ``parse_upsample``): ``stride`` is the factor (negative: down-sampling,
    not supported)."""
    factor = sec.get_int("stride", 2, hi=MAX_STRIDE)
    if factor <= 0:
        raise sec.error("stride must be positive (down-sampling [upsample] is not supported)", "stride")
    if s % factor:
        raise sec.error(f"upsampling by {factor} below stride {s}", "stride")
    return UpsampleSpec(i, sec, c, c, s // factor, factor=factor, scale=sec.get_float("scale", 1.0))


def dropout_spec(sec: Section, i: int, c: int, s: int, specs: List[LayerSpec]) -> DropoutSpec:
    """``[dropout]`` (darknet ``parse_dropout``): ``probability`` (default 0.2) in ``[0, 1)``,
    ``dropblock`` 0/1, ``dropblock_size_rel`` >= 0, ``dropblock_size_abs`` an integer >= 0; with
    ``dropblock=1`` and no size, ``dropblock_size_abs=7``; with both sizes, only ``_abs`` is used."""
    p = sec.get_float("probability", 0.2)
    if not 0 <= p < 1:
        raise sec.error(f"probability={sec.options['probability']} must be in [0, 1)", "probability")
    dropblock = sec.get_int("dropblock", 0, lo=0, hi=1)
    rel = sec.get_float("dropblock_size_rel", 0.0, lo=0.0)
    size = sec.get_int("dropblock_size_abs", 0, lo=0, hi=MAX_INPUT_SIDE)
    if dropblock and not rel and not size:
        size = 7
    if rel and size:
        rel = 0.0
    return DropoutSpec(i, sec, c, c, s, probability=p, dropblock=bool(dropblock), dropblock_size_rel=rel,
                       dropblock_size_abs=size)


def yolo_spec(sec: Section, i: int, c: int, s: int, specs: List[LayerSpec]) -> YoloSpec:
    """``[yolo]`` (darknet ``parse_yolo``): must follow a ``[convolutional]`` with
    ``filters = len(mask) * (classes + 5)``."""
    classes = sec.get_int("classes", 20, lo=1, hi=MAX_CLASSES)
    num = sec.get_int("num", 1, lo=1, hi=MAX_ANCHORS)
    mask = sec.get_ints("mask", list(range(num)))
    for m in mask:
        if not 0 <= m < num:
            raise sec.error(f"mask index {m} outside 0..num-1 (num={num})", "mask")
    a = sec.get_floats("anchors")
    if len(a) < 2 * num:
        raise sec.error(f"anchors has {len(a)} values, num={num} needs {2 * num}", "anchors")
    if any(v <= 0 for v in a[:2 * num]):
        raise sec.error("anchors must be positive widths and heights in pixels", "anchors")
    anchors = [(a[2 * k], a[2 * k + 1]) for k in range(num)]
    want = len(mask) * (classes + 5)
    if not specs or not isinstance(specs[-1], ConvSpec):
        raise sec.error("must directly follow a [convolutional] (the head whose output it decodes)")
    if c != want:
        conv = specs[-1].section
        raise CfgError(f"[convolutional] filters={c} does not match the next [yolo] (len(mask)={len(mask)}, "
                       f"classes={classes} -> filters={want})", conv.path if conv.path is not None else TEXT_NAME,
                       conv.option_lines.get("filters", conv.line))
    return YoloSpec(
        i, sec, c, c, s, classes=classes, num=num, mask=mask, anchors=anchors,
        scale_x_y=sec.get_float("scale_x_y", 1.0), new_coords=sec.get_int("new_coords", 0),
        nms_kind=sec.get_choice("nms_kind", ("default", "greedynms", "diounms", "cornersnms"), "default"),
        beta_nms=sec.get_float("beta_nms", 0.6), iou_thresh=sec.get_float("iou_thresh", 1.0),
        ignore_thresh=sec.get_float("ignore_thresh", 0.5), truth_thresh=sec.get_float("truth_thresh", 1.0),
        iou_loss=sec.get_choice("iou_loss", ("mse", "iou", "giou", "diou", "ciou"), "mse"),
        iou_thresh_kind=sec.get_choice("iou_thresh_kind", ("iou", "giou", "diou", "ciou"), "iou"),
        iou_normalizer=sec.get_float("iou_normalizer", 0.75), cls_normalizer=sec.get_float("cls_normalizer", 1.0),
        obj_normalizer=sec.get_float("obj_normalizer", 1.0),
        delta_normalizer=sec.get_float("delta_normalizer", 1.0), max_delta=sec.get_float("max_delta", float("inf")),
        objectness_smooth=sec.get_int("objectness_smooth", 0),
        label_smooth_eps=sec.get_float("label_smooth_eps", 0.0), focal_loss=sec.get_int("focal_loss", 0),
        jitter=sec.get_float("jitter", 0.2), resize=sec.get_float("resize", 1.0),
        random=sec.get_float("random", 0.0), max_boxes=sec.get_int("max", 200, lo=1),
    )


#: canonical section type -> its builder (every type of ``SECTION_ALIASES`` but ``net``)
SPEC_BUILDERS: Dict[str, SpecBuilder] = {
    "convolutional": conv_spec, "route": route_spec, "shortcut": shortcut_spec, "maxpool": maxpool_spec,
    "upsample": upsample_spec, "dropout": dropout_spec, "yolo": yolo_spec, "sam": sam_spec,
    "scale_channels": scale_channels_spec, "avgpool": avgpool_spec, "local_avgpool": local_avgpool_spec,
    "reorg3d": reorg3d_spec, "contrastive": contrastive_spec,
}


def build_specs(sections: Sequence[Section]) -> Tuple[NetSpec, List[LayerSpec]]:
    """Validate sections and describe each layer (channels, stride, typed options), then check that
    the network runs at the cfg's ``[net]`` size (:func:`~yolo4.model.cfg.infer_shapes`).

    Args:
        sections: output of :func:`~yolo4.model.cfg.parse_cfg` (``[net]`` first).

    Returns:
        ``(net, layers)``; ``layers[i]`` is darknet layer ``i`` (the section after ``[net]``);
        ``net.stride`` is the network's total stride (:func:`~yolo4.model.cfg.network_stride`).

    Raises:
        CfgError: at the offending line: a bad option value (non-integer, out of range or of
            :mod:`~yolo4.model.cfg.limits`, unsupported activation or feature), a route/shortcut
            index out of range or referring to a ``[yolo]``, channel mismatches, a ``[yolo]`` not
            preceded by a ``[convolutional]`` with ``filters=len(mask)*(classes+5)``, more than
            :data:`~yolo4.model.cfg.limits.MAX_PARAMS` parameters, a ``width``/``height`` that is
            not a multiple of the network's stride, and every shape error of
            :func:`~yolo4.model.cfg.infer_shapes` at the ``[net]`` size.
    """
    if not sections or sections[0].type != "net":
        raise CfgError("the first section must be [net]", sections[0].path if sections else None)
    net = net_spec(sections[0])
    specs: List[LayerSpec] = []
    c, s, params = net.channels, 1, 0
    for i, sec in enumerate(sections[1:]):
        builder = SPEC_BUILDERS.get(sec.type)
        if builder is None:  # parse_cfg only lets known types through
            raise sec.error("unsupported section")
        spec = builder(sec, i, c, s, specs)
        if isinstance(spec, ConvSpec):
            params += spec.num_params()
            if params > MAX_PARAMS:
                raise sec.error(f"the network reaches {params} parameters here, more than the limit of "
                                f"{MAX_PARAMS} (2^{MAX_PARAMS.bit_length() - 1})", "filters")
        specs.append(spec)
        c, s = spec.out_channels, spec.stride
    if not any(isinstance(sp, YoloSpec) for sp in specs):
        raise CfgError("cfg has no [yolo] section", sections[0].path if sections[0].path is not None else TEXT_NAME)
    net.stride = network_stride(specs)
    from yolo4.model_info import check_input_size

    for key in ("width", "height"):
        try:
            check_input_size(getattr(net, key), net.stride, key)
        except Yolo4Error:
            raise net.section.error(f"{key}={getattr(net, key)} is not a multiple of {net.stride}, the network's "
                                    "total stride (its largest down-sampling)", key) from None
    infer_shapes(net, specs)
    return net, specs
