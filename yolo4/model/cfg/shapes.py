"""Spatial shapes of every layer at an input size, with darknet's formulas; the network's stride.

Shapes are ``(channels, height, width)`` of one image, in values. Per layer type (AlexeyAB darknet):

- ``[convolutional]`` (``convolutional_layer.c``): ``(in + 2*padding - dilation*(size-1) - 1) // stride + 1``
  (``padding`` as the convolution applies it, see :class:`~yolo4.model.cfg.ConvSpec`);
- ``[maxpool]`` (``maxpool_layer.c``): ``(in + padding - size) // stride + 1``;
- ``[upsample]`` (``upsample_layer.c``): ``in * stride``;
- ``[route]`` (``parse_route``): the inputs must have equal height and width, channels add up;
- ``[shortcut]`` (``parse_shortcut``): the inputs must have the previous layer's height and width
  (channels may differ: darknet adds over the common channels); the output has the previous shape;
- ``[sam]`` (``sam_layer.c``): ``from`` has the previous layer's shape;
- ``[scale_channels]`` (``scale_channels_layer.c``): the output has ``from``'s shape, the previous layer
  is ``[C, 1, 1]`` (or ``[1, H, W]`` with ``scale_wh=1``);
- ``[avgpool]`` (``avgpool_layer.c``): ``[C, 1, 1]``; ``[local_avgpool]``: the ``[maxpool]`` formula;
- ``[reorg3d]`` (``reorg_layer.c``): ``[C*s*s, H/s, W/s]``, H and W multiples of s;
- ``[contrastive]``: the input's shape;
- ``[dropout]``, ``[yolo]``: the input's shape; a ``[yolo]`` grid must be exactly
  ``input / stride`` cells, since boxes are decoded with that stride.

An output side below 1, or more than :data:`~yolo4.model.cfg.limits.MAX_ACTIVATION` values in one
layer's output, is a :class:`yolo4.errors.CfgError` at the layer's line, before any tensor exists.
"""

import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Type

from yolo4.errors import Yolo4Error
from yolo4.model.cfg.limits import MAX_ACTIVATION, MAX_INPUT_SIDE
from yolo4.model.cfg.specs import (
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

__all__ = ["Shape", "SHAPE_RULES", "network_stride", "infer_shapes", "check_input_hw"]

#: ``(channels, height, width)`` of one layer's output for one image
Shape = Tuple[int, int, int]


def network_stride(specs: Sequence[LayerSpec]) -> int:
    """The network's total stride in pixels: the least common multiple of every layer's cumulative
    down-sampling (for the darknet YOLO cfgs: the largest ``[yolo]`` stride, 32 for YOLOv4).

    An input height/width that is a multiple of it gives every layer an integer number of cells per
    input pixel; :func:`check_input_hw` requires it.
    """
    out = 1
    for sp in specs:
        out = out * sp.stride // math.gcd(out, sp.stride)
    return out


def _hw(shape: Shape) -> str:
    return f"{shape[1]}x{shape[2]}"


class _Ctx:
    """What a shape rule needs: the outputs so far, the input size, and the first off-grid layer."""

    def __init__(self, specs: Sequence[LayerSpec], hw: Tuple[int, int]) -> None:
        self.specs = specs
        self.hw = hw
        self.shapes: List[Shape] = []
        self.off_grid: Optional[LayerSpec] = None  # first layer whose size is not input/stride

    def at(self) -> str:
        return f"at input {self.hw[0]}x{self.hw[1]}"

    def hint(self) -> str:
        sp = self.off_grid
        if sp is None:
            return ""
        got = self.shapes[sp.index]
        want = (self.hw[0] // sp.stride, self.hw[1] // sp.stride)
        return (f"; sizes first leave input/stride at layer {sp.index} ([{sp.type}], "
                f"{sp.section.where()}: {_hw(got)} instead of {want[0]}x{want[1]})")


def _side(sp: LayerSpec, key: str, n: int, ctx: _Ctx, formula: str) -> None:
    if n < 1:
        raise sp.section.error(f"output size {n} < 1 {ctx.at()} ({formula}): the layer's window does "
                               "not fit its input", key)


def _conv(sp: ConvSpec, prev: Shape, ctx: _Ctx) -> Shape:
    out = []
    for n in prev[1:]:
        o = (n + 2 * sp.padding - sp.dilation * (sp.size - 1) - 1) // sp.conv_stride + 1
        _side(sp, "size", o, ctx, f"({n} + 2*{sp.padding} - {sp.dilation}*({sp.size}-1) - 1) // "
              f"{sp.conv_stride} + 1")
        out.append(o)
    return sp.out_channels, out[0], out[1]


def _maxpool(sp: MaxPoolSpec, prev: Shape, ctx: _Ctx) -> Shape:
    out = []
    for n in prev[1:]:
        o = (n + sp.padding - sp.size) // sp.pool_stride + 1
        _side(sp, "size", o, ctx, f"({n} + {sp.padding} - {sp.size}) // {sp.pool_stride} + 1")
        out.append(o)
    return sp.out_channels, out[0], out[1]


def _upsample(sp: UpsampleSpec, prev: Shape, ctx: _Ctx) -> Shape:
    return sp.out_channels, prev[1] * sp.factor, prev[2] * sp.factor


def _same(sp: LayerSpec, prev: Shape, ctx: _Ctx) -> Shape:
    return prev


def _route(sp: RouteSpec, prev: Shape, ctx: _Ctx) -> Shape:
    first = sp.layers[0]
    for j in sp.layers[1:]:
        a, b = ctx.shapes[first], ctx.shapes[j]
        if a[1:] != b[1:]:
            raise sp.section.error(f"layers {first} ({_hw(a)}) and {j} ({_hw(b)}) have different sizes "
                                   f"{ctx.at()}: a route concatenates equal sizes{ctx.hint()}", "layers")
    strides = sorted({ctx.specs[j].stride for j in sp.layers})
    if len(strides) > 1:
        raise sp.section.error(f"layers {sp.layers} have different strides {strides}: their sizes differ at "
                               "other input sizes", "layers")
    h, w = ctx.shapes[first][1:]
    return sp.out_channels, h, w


def _shortcut(sp: ShortcutSpec, prev: Shape, ctx: _Ctx) -> Shape:
    for j in sp.from_layers:
        other = ctx.shapes[j]
        if other[1:] != prev[1:]:
            raise sp.section.error(
                f"from layer {j} has shape {other[0]}x{_hw(other)} and the previous layer {prev[0]}x{_hw(prev)} "
                f"(channels x height x width, {ctx.at()}): a shortcut adds equal heights and widths"
                f"{ctx.hint()}", "from")
        if ctx.specs[j].stride != sp.stride:
            raise sp.section.error(f"from layer {j} has stride {ctx.specs[j].stride}, the previous layer "
                                   f"{sp.stride}: their sizes differ at other input sizes", "from")
    return prev


def _sam(sp: SamSpec, prev: Shape, ctx: _Ctx) -> Shape:
    other = ctx.shapes[sp.from_layer]
    if other != prev:
        raise sp.section.error(f"from layer {sp.from_layer} has shape {other[0]}x{_hw(other)} and the previous "
                               f"layer {prev[0]}x{_hw(prev)} {ctx.at()}: [sam] multiplies equal shapes{ctx.hint()}",
                               "from")
    return prev


def _scale_channels(sp: ScaleChannelsSpec, prev: Shape, ctx: _Ctx) -> Shape:
    other = ctx.shapes[sp.from_layer]
    if sp.scale_wh and prev[1:] != other[1:]:
        raise sp.section.error(f"the previous layer is {prev[0]}x{_hw(prev)}, 1x{_hw(other)} expected (a per-position "
                               f"scale of layer {sp.from_layer}) {ctx.at()}{ctx.hint()}", "from")
    if not sp.scale_wh and prev[1:] != (1, 1):
        raise sp.section.error(f"the previous layer is {prev[0]}x{_hw(prev)}, {other[0]}x1x1 expected (a "
                               f"per-channel scale of layer {sp.from_layer}) {ctx.at()}", "from")
    return other


def _avgpool(sp: AvgPoolSpec, prev: Shape, ctx: _Ctx) -> Shape:
    return prev[0], 1, 1


def _local_avgpool(sp: LocalAvgPoolSpec, prev: Shape, ctx: _Ctx) -> Shape:
    return _maxpool(sp, prev, ctx)  # type: ignore[arg-type]  # same geometry fields


def _reorg3d(sp: Reorg3dSpec, prev: Shape, ctx: _Ctx) -> Shape:
    r = sp.reorg_stride
    if prev[1] % r or prev[2] % r:
        raise sp.section.error(f"input {_hw(prev)} {ctx.at()} is not a multiple of stride={r}{ctx.hint()}",
                               "stride")
    return prev[0] * r * r, prev[1] // r, prev[2] // r


def _yolo(sp: YoloSpec, prev: Shape, ctx: _Ctx) -> Shape:
    want = (ctx.hw[0] // sp.stride, ctx.hw[1] // sp.stride)
    if prev[1:] != want:
        raise sp.section.error(f"grid is {_hw(prev)} cells {ctx.at()}, {want[0]}x{want[1]} expected for its "
                               f"stride {sp.stride}: boxes would be decoded at the wrong scale{ctx.hint()}")
    return prev


#: spec type -> its shape rule ``(spec, previous layer's shape, context) -> output shape``
SHAPE_RULES: Dict[Type[LayerSpec], Callable[..., Shape]] = {
    ConvSpec: _conv, MaxPoolSpec: _maxpool, UpsampleSpec: _upsample, RouteSpec: _route,
    ShortcutSpec: _shortcut, DropoutSpec: _same, YoloSpec: _yolo, SamSpec: _sam,
    ScaleChannelsSpec: _scale_channels, AvgPoolSpec: _avgpool, LocalAvgPoolSpec: _local_avgpool,
    Reorg3dSpec: _reorg3d, ContrastiveSpec: _same,
}


def infer_shapes(net: NetSpec, specs: Sequence[LayerSpec], hw: Optional[Tuple[int, int]] = None
                 ) -> List[Shape]:
    """Every layer's output ``(channels, height, width)`` at input ``hw`` (default: the cfg's
    ``[net] height, width``), without allocating anything.

    Args:
        net, specs: :func:`~yolo4.model.cfg.build_specs` output.
        hw: input ``(height, width)`` in pixels.

    Raises:
        CfgError: at the offending section's line (the message says at which input size): an output
            side below 1, a ``[route]`` of layers of different sizes or strides, a ``[shortcut]`` of
            different shapes, a ``[yolo]`` grid other than input/stride, or one layer output of more
            than :data:`~yolo4.model.cfg.limits.MAX_ACTIVATION` values.
    """
    hw = (net.height, net.width) if hw is None else (int(hw[0]), int(hw[1]))
    ctx = _Ctx(specs, hw)
    prev: Shape = (net.channels, hw[0], hw[1])
    for sp in specs:
        shape = SHAPE_RULES[type(sp)](sp, prev, ctx)
        n = shape[0] * shape[1] * shape[2]
        if n > MAX_ACTIVATION:
            raise sp.section.error(f"output {shape[0]}x{_hw(shape)} = {n} values {ctx.at()} exceeds the limit "
                                   f"of {MAX_ACTIVATION} (2^{MAX_ACTIVATION.bit_length() - 1}) values per layer")
        ctx.shapes.append(shape)
        if ctx.off_grid is None and hw[0] % sp.stride == 0 and hw[1] % sp.stride == 0 and \
                shape[1:] != (hw[0] // sp.stride, hw[1] // sp.stride):
            ctx.off_grid = sp
        prev = shape
    return ctx.shapes


def check_input_hw(net: NetSpec, specs: Sequence[LayerSpec], size, what: str = "--img-size"
                   ) -> Tuple[int, int]:
    """Check that the network runs at input ``size`` and return it as ``(height, width)``.

    ``size`` must be a positive multiple of the network's stride (:func:`network_stride`, through
    :func:`yolo4.model_info.check_input_size`, the project's one input-size check), at most
    :data:`~yolo4.model.cfg.limits.MAX_INPUT_SIDE`, and every layer must fit at that size
    (:func:`infer_shapes`).

    Args:
        net, specs: :func:`~yolo4.model.cfg.build_specs` output.
        size: an int (square) or ``(height, width)`` in pixels.
        what: the option's name for messages (``--img-size``, ``input``).

    Raises:
        Yolo4Error: not a positive multiple of the stride, or larger than the limit (one line naming
            ``what``). CfgError: a layer that does not fit at this size (the cfg's file:line).
    """
    from yolo4.model_info import check_input_size

    h, w = check_input_size(size, net.stride, what)
    if max(h, w) > MAX_INPUT_SIDE:
        raise Yolo4Error(f"{what} must be at most {MAX_INPUT_SIDE} pixels, got {h}x{w}")
    infer_shapes(net, specs, (h, w))
    return h, w

