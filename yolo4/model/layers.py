"""Torch modules for the darknet layer types (plain Conv2d + BatchNorm2d + activation).

Every module takes and returns float tensors ``[B, C, H, W]`` (NCHW). They mirror AlexeyAB darknet:
``src/convolutional_layer.c``, ``src/activations.c``, ``src/route_layer.c``, ``src/shortcut_layer.c``,
``src/maxpool_layer.c``, ``src/upsample_layer.c``, ``src/dropout_layer.c`` (DropBlock:
``src/dropout_layer_kernels.cu``), ``src/yolo_layer.c``,
``src/sam_layer.c``, ``src/scale_channels_layer.c``, ``src/avgpool_layer.c``, ``src/reorg_layer.c``.
They are built from the typed specs of :mod:`yolo4.model.cfg` and stay traceable by
``torch.onnx.export`` (legacy exporter, opset 12..18) with a dynamic batch dimension.
"""

import math
import warnings
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

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
    ShortcutSpec,
    UpsampleSpec,
    YoloSpec,
)

__all__ = ["make_activation", "ConvBlock", "Route", "Shortcut", "MaxPoolDarknet", "Upsample", "Dropout",
           "dropblock_multiplier",
           "YoloLayer", "Sam", "ScaleChannels", "AvgPool", "LocalAvgPool", "Reorg3d", "Contrastive",
           "SHORTCUT_WEIGHTS_EPS", "BN_EPS", "BN_MOMENTUM", "static_shape", "yolo_bias_priors"]

#: darknet's batch-norm epsilon (``src/blas.c`` normalize_cpu, ``fuse_conv_batchnorm``: ``+ .00001f``).
BN_EPS = 1e-5
#: added to the sum of a weighted ``[shortcut]``'s normalized weights (``shortcut_multilayer_cpu``:
#: ``const float eps = 0.0001``).
SHORTCUT_WEIGHTS_EPS = 1e-4
#: darknet's rolling statistics update ``rolling = .99 * rolling + .01 * batch`` (torch momentum 0.01).
BN_MOMENTUM = 0.01


def static_shape(t: torch.Tensor) -> Tuple[int, ...]:
    """``t.shape`` as Python ints; under ONNX tracing they become constants, without the TracerWarning
    (only the batch dimension is dynamic, and no code here derives anything from it)."""
    if torch.jit.is_tracing():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            return tuple(int(d) for d in t.shape)
    return tuple(int(d) for d in t.shape)


def make_activation(name: str) -> nn.Module:
    """The torch module for a darknet activation name (``src/activations.h`` formulas).

    leaky: slope 0.1; mish: x*tanh(softplus(x)); swish: x*sigmoid(x); logistic: sigmoid;
    gelu: darknet's tanh approximation; linear: identity. Raises ValueError for other names
    (the cfg validation already rejected them with a CfgError).
    """
    if name == "linear":
        return nn.Identity()
    if name == "leaky":
        return nn.LeakyReLU(0.1)
    if name == "mish":
        return nn.Mish()
    if name == "swish":
        return nn.SiLU()
    if name == "logistic":
        return nn.Sigmoid()
    if name == "relu":
        return nn.ReLU()
    if name == "relu6":
        return nn.ReLU6()
    if name == "tanh":
        return nn.Tanh()
    if name == "elu":
        return nn.ELU()
    if name == "selu":
        return nn.SELU()
    if name == "gelu":
        return nn.GELU(approximate="tanh")
    raise ValueError(f"unsupported activation {name!r}")


class ConvBlock(nn.Module):
    """``[convolutional]``: ``conv`` (Conv2d, bias only without BN) -> ``bn`` (BatchNorm2d, eps 1e-5,
    momentum 0.01, only with ``batch_normalize=1``) -> ``act``.

    Attributes ``conv``, ``bn`` (None without BN), ``act``; ``spec`` is the :class:`ConvSpec`.
    ``init=False`` leaves the conv parameters uninitialized (they are about to be loaded).
    """

    def __init__(self, spec: ConvSpec, init: bool = True) -> None:
        super().__init__()
        self.spec = spec
        args = (spec.in_channels, spec.filters, spec.size, spec.conv_stride, spec.padding)
        kw = dict(dilation=spec.dilation, groups=spec.groups, bias=not spec.batch_normalize)
        # init=False: uninitialized memory, for modules whose weights are loaded right away
        self.conv = nn.Conv2d(*args, **kw) if init else torch.nn.utils.skip_init(nn.Conv2d, *args, **kw)
        self.bn = nn.BatchNorm2d(spec.filters, eps=BN_EPS, momentum=BN_MOMENTUM) if spec.batch_normalize else None
        self.act = make_activation(spec.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.act(x)


class Route(nn.Module):
    """``[route]``: channel concat of the listed layers' outputs; with ``groups`` > 1 each input
    contributes its channel slice ``group_id`` (darknet ``route_layer.c``)."""

    def __init__(self, spec: RouteSpec) -> None:
        super().__init__()
        self.spec = spec
        self.groups, self.group_id = spec.groups, spec.group_id

    def forward(self, inputs: List[torch.Tensor]) -> torch.Tensor:
        if self.groups > 1:
            parts = []
            for t in inputs:
                n = static_shape(t)[1] // self.groups
                parts.append(t[:, n * self.group_id:n * (self.group_id + 1)])
            inputs = parts
        return inputs[0] if len(inputs) == 1 else torch.cat(inputs, 1)


def _add_common(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``x + t`` over the channels both have (the first ``min(Cx, Ct)``); ``x``'s other channels pass
    (darknet ``shortcut_multilayer_cpu``: ``if (src_i < add_outputs)``, equal height and width)."""
    c, ct = static_shape(x)[1], static_shape(t)[1]
    if ct == c:
        return x + t
    if ct > c:
        return x + t[:, :c]
    return torch.cat((x[:, :ct] + t, x[:, ct:]), 1)


class Shortcut(nn.Module):
    """``[shortcut]``: ``act(w0*x + sum_i w_i*from_i)`` (darknet ``src/shortcut_layer.c``
    ``forward_shortcut_layer``, ``shortcut_multilayer_cpu`` in ``src/blas.c``).

    Inputs float ``[B, C, H, W]`` (the previous output) and the ``from`` outputs ``[B, C_i, H, W]``;
    output ``[B, C, H, W]``. A ``from`` output is added over the common channels (the first
    ``min(C, C_i)``: CSPResNeXt50, the PRN models). Unweighted (``weights_type=none``) the ``w`` are 1
    and the sum is the plain ``x + from_0 + from_1 ...``. Weighted (MiWRC), :attr:`weight` is a float32
    parameter ``[n+1]`` (``per_feature``) or ``[n+1, C]`` (``per_channel``), darknet's flat order
    (input-major), initialized to 1 as darknet's ``make_shortcut_layer``; :meth:`input_weights`
    applies ``weights_normalization``.
    """

    def __init__(self, spec: ShortcutSpec) -> None:
        super().__init__()
        self.spec = spec
        self.act = make_activation(spec.activation)
        self.weights_type, self.weights_normalization = spec.weights_type, spec.weights_normalization
        n = len(spec.from_layers) + 1
        if spec.weights_type == "per_feature":
            self.weight: Optional[nn.Parameter] = nn.Parameter(torch.ones(n))
        elif spec.weights_type == "per_channel":
            self.weight = nn.Parameter(torch.ones(n, spec.out_channels))
        else:
            self.register_parameter("weight", None)

    def input_weights(self) -> torch.Tensor:
        """The normalized weights, float ``[n+1, 1, 1, 1]`` (per_feature) or ``[n+1, C, 1, 1]``
        (per_channel): ``none`` as stored; ``relu``: ``relu(w) / (1e-4 + sum relu(w))``; ``softmax``:
        ``exp(w - max) / (1e-4 + sum exp(w - max))``, sums over the n+1 inputs (darknet
        ``shortcut_multilayer_cpu``)."""
        assert self.weight is not None
        w = self.weight.reshape(self.weight.shape[0], -1)
        if self.weights_normalization == "relu":
            r = torch.relu(w)
            w = r / (SHORTCUT_WEIGHTS_EPS + r.sum(0, keepdim=True))
        elif self.weights_normalization == "softmax":
            e = torch.exp(w - w.max(0, keepdim=True).values)
            w = e / (SHORTCUT_WEIGHTS_EPS + e.sum(0, keepdim=True))
        return w.reshape(w.shape[0], -1, 1, 1)

    def forward(self, x: torch.Tensor, others: List[torch.Tensor]) -> torch.Tensor:
        if self.weight is None:
            for t in others:
                x = _add_common(x, t)
            return self.act(x)
        w = self.input_weights()
        c = static_shape(x)[1]
        x = x * w[0]
        for i, t in enumerate(others):
            ct = min(c, static_shape(t)[1])
            wi = w[i + 1] if self.weights_type == "per_feature" else w[i + 1, :ct]
            x = _add_common(x, t[:, :ct] * wi)
        return self.act(x)


class Sam(nn.Module):
    """``[sam]``: ``act(x * from)`` elementwise, YOLOv4's modified spatial attention (darknet
    ``src/sam_layer.c`` ``forward_sam_layer``). Inputs and output float ``[B, C, H, W]``."""

    def __init__(self, spec: SamSpec) -> None:
        super().__init__()
        self.spec = spec
        self.act = make_activation(spec.activation)

    def forward(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        return self.act(x * other)


class ScaleChannels(nn.Module):
    """``[scale_channels]``: ``act(x * from)`` (darknet ``src/scale_channels_layer.c``
    ``forward_scale_channels_layer``): ``x`` float ``[B, C, 1, 1]`` (or ``[B, 1, H, W]`` with
    ``scale_wh=1``) broadcast over ``from`` ``[B, C, H, W]``; output ``[B, C, H, W]``."""

    def __init__(self, spec: ScaleChannelsSpec) -> None:
        super().__init__()
        self.spec = spec
        self.act = make_activation(spec.activation)

    def forward(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        return self.act(x * other)


class AvgPool(nn.Module):
    """``[avgpool]``: global average, float ``[B, C, H, W] -> [B, C, 1, 1]`` (darknet
    ``src/avgpool_layer.c`` ``forward_avgpool_layer``)."""

    def __init__(self, spec: AvgPoolSpec) -> None:
        super().__init__()
        self.spec = spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=True)


def _valid_counts(n: int, out: int, size: int, stride: int, before: int) -> np.ndarray:
    """Cells of each window inside ``0..n-1`` along one axis (window ``i`` starts at ``i*stride - before``)."""
    starts = np.arange(out) * stride - before
    return (np.minimum(starts + size, n) - np.maximum(starts, 0)).astype(np.float32)


class LocalAvgPool(nn.Module):
    """``[local_avgpool]``: the ``[maxpool]`` windows (``padding // 2`` before, out = (in + padding -
    size) // stride + 1), each output the mean of its cells inside the input (darknet
    ``src/maxpool_layer.c`` ``forward_local_avgpool_layer``: padded cells are not counted).
    Float ``[B, C, H, W] -> [B, C, OH, OW]``."""

    def __init__(self, spec: LocalAvgPoolSpec) -> None:
        super().__init__()
        self.spec = spec
        self.size, self.stride, self.padding = spec.size, spec.pool_stride, spec.padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s, before = self.size, self.stride, self.padding // 2
        h, w = static_shape(x)[2:]
        oh, ow = (h + self.padding - k) // s + 1, (w + self.padding - k) // s + 1
        after_h = max(0, (oh - 1) * s + k - before - h)
        after_w = max(0, (ow - 1) * s + k - before - w)
        if before or after_h or after_w:
            x = F.pad(x, (before, after_w, before, after_h))
        y = F.avg_pool2d(x, k, s)
        count = np.outer(_valid_counts(h, oh, k, s, before), _valid_counts(w, ow, k, s, before))
        if (count == k * k).all():
            return y
        scale = np.ascontiguousarray((k * k / count)[None, None].astype(np.float32))
        if torch.jit.is_tracing():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                return y * torch.from_numpy(scale).to(y.device, y.dtype)
        return y * torch.from_numpy(scale).to(y.device, y.dtype)


class Reorg3d(nn.Module):
    """``[reorg3d]``: space to depth by ``s`` (darknet ``src/reorg_layer.c`` ``forward_reorg_layer``,
    ``reorg_cpu`` in ``src/blas.c``): float ``[B, C, H, W] -> [B, C*s*s, H/s, W/s]``, output channel
    ``(dy*s + dx)*C + c`` at ``(y, x)`` = input channel ``c`` at ``(y*s + dy, x*s + dx)``."""

    def __init__(self, spec: Reorg3dSpec) -> None:
        super().__init__()
        self.spec = spec
        self.s = spec.reorg_stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.s
        c, h, w = static_shape(x)[1:]
        x = x.reshape(-1, c, h // s, s, w // s, s).permute(0, 3, 5, 1, 2, 4)
        return x.reshape(-1, c * s * s, h // s, w // s)


class Contrastive(nn.Module):
    """``[contrastive]``: identity (the layer is darknet's training-only contrastive loss; nothing reads
    its output at inference)."""

    def __init__(self, spec: ContrastiveSpec) -> None:
        super().__init__()
        self.spec = spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class MaxPoolDarknet(nn.Module):
    """``[maxpool]`` with darknet padding: ``padding`` (default size-1) split ``padding // 2`` before
    and the rest after, padded cells never win (-inf); out = (in + padding - size) // stride + 1
    (darknet ``maxpool_layer.c``).

    Exported as a plain MaxPool where possible (symmetric padding, or a trailing pad no window
    reaches); the stride-1 even-size case (yolov3-tiny's ``size=2 stride=1``) as MaxPool with the
    larger symmetric padding then a Slice; anything else as Pad(-inf) + MaxPool.
    """

    def __init__(self, spec: MaxPoolSpec) -> None:
        super().__init__()
        self.spec = spec
        self.size, self.stride, self.padding = spec.size, spec.pool_stride, spec.padding

    def _out(self, n: int) -> int:
        return (n + self.padding - self.size) // self.stride + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.size, self.stride
        before = self.padding // 2
        h, w = static_shape(x)[2:]
        oh, ow = self._out(h), self._out(w)
        # trailing pad actually reached by the last window
        after_h = max(0, (oh - 1) * s + k - before - h)
        after_w = max(0, (ow - 1) * s + k - before - w)
        if after_h == before and after_w == before and before <= k // 2:
            return F.max_pool2d(x, k, s, before)
        if s == 1 and max(after_h, after_w) <= k // 2 and before <= max(after_h, after_w):
            p = max(after_h, after_w, before)
            y = F.max_pool2d(x, k, 1, p)
            d = p - before
            return y[:, :, d:d + oh, d:d + ow]
        x = F.pad(x, (before, after_w, before, after_h), value=float("-inf"))
        return F.max_pool2d(x, k, s)


class Upsample(nn.Module):
    """``[upsample]``: nearest-neighbour ×``factor`` (then ×``scale`` when not 1)."""

    def __init__(self, spec: UpsampleSpec) -> None:
        super().__init__()
        self.spec = spec
        self.factor, self.scale = spec.factor, spec.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=float(self.factor), mode="nearest")
        return x * self.scale if self.scale != 1.0 else x


def dropblock_multiplier(iteration: int, max_batches: int) -> float:
    """darknet's DropBlock warm-up factor: ``iteration / (0.85 * max_batches)`` before 85 % of
    ``max_batches``, then 1 (``src/dropout_layer_kernels.cu`` ``forward_dropout_layer_gpu``:
    ``if(iteration_num < (state.net.max_batches*0.85)) multiplier = ...``); 1 when ``max_batches``
    is 0. It scales both the DropBlock probability and the block side; plain dropout does not ramp."""
    limit = max_batches * 0.85
    return iteration / limit if iteration < limit else 1.0


class Dropout(nn.Module):
    """``[dropout]`` (AlexeyAB darknet ``src/dropout_layer.c``, ``src/dropout_layer_kernels.cu``).

    Float ``[B, C, H, W] -> [B, C, H, W]``. In eval mode (inference, ONNX export) the exact identity
    (darknet: ``if (!state.train) return;``). In training, random numbers come from torch's global
    generator (deterministic under ``torch.manual_seed``):

    - plain dropout (``forward_dropout_layer``): ``r ~ U(0, 1)`` per unit; ``r < probability``
      -> 0, else ``x / (1 - probability)`` (``l.scale = 1./(1.0 - probability)``).
    - DropBlock, ``dropblock=1`` (darknet's GPU path ``forward_dropout_layer_gpu`` +
      ``dropblock_fast_kernel``; its CPU path ignores ``dropblock`` and does plain dropout):

      * ``p = probability * multiplier`` (:attr:`multiplier`, default 1; see
        :func:`dropblock_multiplier` for darknet's warm-up);
      * block side ``bs = min(bw, bh)``, ``bw = int(size_abs * multiplier)`` or, with
        ``dropblock_size_rel``, ``int(size_rel * W * multiplier)`` (``bh`` with ``H``), each
        clamped to ``[1, W]`` / ``[1, H]``;
      * seed rate ``gamma = p / bs**2`` (``const float block_prob = cur_prob /
        (block_size*block_size);``);
      * per image and channel at most ONE block: among the ``H*W`` uniforms those below
        ``gamma`` are candidates and the lowest wins ("Chose with the lowest rand[i]"); its cell
        ``(bx, by)`` is the block's top-left corner, shifted back by ``W - bs`` when past
        ``W - bs`` and clamped to ``[0, W - bs]`` (same for ``y``); the ``bs x bs`` block is zeroed;
      * each image's kept units are scaled by ``1 / (1 - dropped / (C*H*W))``, ``dropped`` = its
        blocks times ``bs**2`` (``set_scales_dropblock_kernel``, ``scale_dropblock_kernel``);
        an image with everything dropped stays 0 (darknet would compute 0 * inf).

      The expected dropped fraction is therefore ``(1 - (1 - gamma)**(H*W)) * bs**2 / (H*W)``,
      close to ``p`` only while ``gamma*H*W`` is small. darknet's kernel reads the uniforms of
      images ``b > 0`` at a misplaced offset (``b*spatial*f``); statistically the same, not copied.

    Attributes: ``probability``, ``dropblock``, ``dropblock_size_rel``, ``dropblock_size_abs`` (the
    :class:`DropoutSpec` values), ``multiplier`` (set by a trainer for darknet's warm-up), ``spec``.
    """

    def __init__(self, spec: DropoutSpec) -> None:
        super().__init__()
        self.spec = spec
        self.probability = float(spec.probability)
        self.dropblock = bool(spec.dropblock)
        self.dropblock_size_rel = float(spec.dropblock_size_rel)
        self.dropblock_size_abs = int(spec.dropblock_size_abs)
        self.multiplier = 1.0

    def block_size(self, h: int, w: int) -> int:
        """The DropBlock side ``bs`` in cells for an ``h x w`` map (see the class docstring)."""
        m = self.multiplier
        if self.dropblock_size_rel:
            bw, bh = int(self.dropblock_size_rel * w * m), int(self.dropblock_size_rel * h * m)
        else:
            bw = bh = int(self.dropblock_size_abs * m)
        return min(min(w, max(1, bw)), min(h, max(1, bh)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        if not self.dropblock:
            p = self.probability
            if p <= 0:
                return x
            keep = torch.rand(x.shape, device=x.device) >= p
            return x * keep.to(x.dtype) * (1.0 / (1.0 - p))
        return self._dropblock(x)

    def _dropblock(self, x: torch.Tensor) -> torch.Tensor:
        p = self.probability * self.multiplier
        if p <= 0:
            return x
        b, c, h, w = x.shape
        bs = self.block_size(h, w)
        gamma = p / (bs * bs)
        r = torch.rand(b, c, h * w, device=x.device)
        low, idx = r.min(-1)  # [B, C]: the lowest uniform of each channel and its cell
        hit = low < gamma
        bx, by = idx % w, torch.div(idx, w, rounding_mode="floor")
        bx = torch.where(bx > w - bs, bx - (w - bs), bx).clamp(0, w - bs)
        by = torch.where(by > h - bs, by - (h - bs), by).clamp(0, h - bs)
        ys = torch.arange(h, device=x.device).view(1, 1, h)
        xs = torch.arange(w, device=x.device).view(1, 1, w)
        in_y = (ys >= by[..., None]) & (ys < by[..., None] + bs)  # [B, C, H]
        in_x = (xs >= bx[..., None]) & (xs < bx[..., None] + bs)  # [B, C, W]
        drop = in_y[..., :, None] & in_x[..., None, :] & hit[..., None, None]  # [B, C, H, W]
        dropped = hit.sum(1).to(torch.float32) * float(bs * bs) / float(c * h * w)  # [B]
        scale = torch.where(dropped < 1, 1.0 / (1.0 - dropped), torch.ones_like(dropped))
        return x.masked_fill(drop, 0) * scale.to(x.dtype).view(b, 1, 1, 1)

    def extra_repr(self) -> str:
        if self.dropblock:
            size = (f"size_rel={self.dropblock_size_rel:g}" if self.dropblock_size_rel
                    else f"size_abs={self.dropblock_size_abs}")
            return f"dropblock, probability={self.probability:g}, {size}"
        return f"probability={self.probability:g}"


def decode_xywh(t: torch.Tensor, anchor_wh: torch.Tensor, grid: torch.Tensor, stride: float,
                scale_x_y: float, new_coords: bool, max_tw: Optional[float] = None
                ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Box centres and sizes from the raw x, y, w, h channels (darknet ``yolo_layer.c`` ``get_yolo_box``).

    The one box decode: used by :meth:`YoloLayer.forward` (inference, export) and by the trainer's
    loss.

    Args:
        t: float ``[..., A, h, w, 4]`` raw tx, ty, tw, th (the conv output feeding ``[yolo]``).
        anchor_wh: ``[1, A, 1, 1, 2]`` the layer's masked anchors (w, h) in input pixels.
        grid: ``[1, 1, h, w, 2]`` cell indices (col, row).
        stride: input pixels per cell.
        scale_x_y, new_coords: the ``[yolo]`` options.
        max_tw: clamp tw, th before ``exp`` (training safety; None = no clamp, as darknet).

    Returns:
        ``(xy, wh)``, each ``[..., A, h, w, 2]``, centre and size in input pixels:
        without ``new_coords``: xy = (sigmoid(t)·sxy − (sxy−1)/2 + grid)·stride, wh = exp(t)·anchor;
        with ``new_coords=1`` (inputs already logistic): xy = (t·sxy − (sxy−1)/2 + grid)·stride,
        wh = t²·4·anchor.
    """
    txy, twh = t[..., 0:2], t[..., 2:4]
    if new_coords:
        xy = txy
        wh = twh * twh * 4.0 * anchor_wh
    else:
        xy = torch.sigmoid(txy)
        wh = torch.exp(twh if max_tw is None else twh.clamp(max=max_tw)) * anchor_wh
    sxy = float(scale_x_y)
    if sxy != 1.0:
        xy = xy * sxy - 0.5 * (sxy - 1.0)
    return (xy + grid) * float(stride), wh


class YoloLayer(nn.Module):
    """``[yolo]`` head: holds the layer's options and decodes its raw input (darknet ``yolo_layer.c``).

    Attributes (darknet names): ``anchors`` list of (w, h) input pixels for this layer's ``mask``;
    ``all_anchors``; ``mask``; ``num_anchors`` (= len(mask)); ``num_classes``; ``stride`` (input
    pixels per cell); ``scale_x_y``; ``new_coords``; ``nms_kind``; ``beta_nms``; ``iou_thresh``;
    ``ignore_thresh``; ``truth_thresh``; ``iou_loss``; ``iou_thresh_kind``; ``iou_normalizer``;
    ``cls_normalizer``; ``obj_normalizer``; ``delta_normalizer``; ``max_delta``;
    ``objectness_smooth``; ``label_smooth_eps``; ``focal_loss``; ``jitter``; ``resize``; ``random``;
    ``max_boxes``; ``index`` (darknet layer number); ``spec`` (:class:`YoloSpec`).
    """

    _FIELDS = ("scale_x_y", "new_coords", "nms_kind", "beta_nms", "iou_thresh", "ignore_thresh",
               "truth_thresh", "iou_loss", "iou_thresh_kind", "iou_normalizer", "cls_normalizer",
               "obj_normalizer", "delta_normalizer", "max_delta", "objectness_smooth", "label_smooth_eps",
               "focal_loss", "jitter", "resize", "random", "max_boxes")

    def __init__(self, spec: YoloSpec) -> None:
        super().__init__()
        self.spec = spec
        self.index = spec.index
        self.num_classes = spec.classes
        self.mask = list(spec.mask)
        self.all_anchors = [tuple(a) for a in spec.anchors]
        self.anchors: List[Tuple[float, float]] = [self.all_anchors[m] for m in self.mask]
        self.num_anchors = len(self.mask)
        self.stride = spec.stride
        for f in self._FIELDS:
            setattr(self, f, getattr(spec, f))
        self.register_buffer("anchor_wh", torch.tensor(self.anchors, dtype=torch.float32).view(
            1, self.num_anchors, 1, 1, 2), persistent=False)

    @staticmethod
    def _grid(h: int, w: int) -> torch.Tensor:
        # numpy -> constant in a traced graph (no Range ops); [1, 1, h, w, 2] as (col, row)
        gy, gx = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
        grid = np.ascontiguousarray(np.stack((gx, gy), -1)[None, None])
        if torch.jit.is_tracing():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                return torch.from_numpy(grid)
        return torch.from_numpy(grid)

    def forward(self, p: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Decode a raw head as darknet's ``forward_yolo_layer`` + ``get_yolo_box`` do.

        Args:
            p: float ``[B, A*(5+C), h, w]``, the output of the conv before this ``[yolo]``.

        Returns:
            ``boxes`` float ``[B, A*h*w, 4]`` (x1, y1, x2, y2) in input pixels and ``scores`` float
            ``[B, A*h*w, C]`` = objectness × class probability; row order anchor, then row, then col.

            Without ``new_coords``: cx = (sigmoid(tx)·sxy − (sxy−1)/2 + col)·stride,
            w = exp(tw)·anchor_w, obj/cls = sigmoid. With ``new_coords=1`` (the conv is already
            logistic): cx = (tx·sxy − (sxy−1)/2 + col)·stride, w = tw²·4·anchor_w, no further sigmoid.
        """
        A, C = self.num_anchors, self.num_classes
        h, w = static_shape(p)[2:]
        p = p.reshape(-1, A, C + 5, h, w).permute(0, 1, 3, 4, 2)  # [B, A, h, w, 5+C]
        xy, wh = decode_xywh(p[..., 0:4], self.anchor_wh, self._grid(h, w).to(p.device, p.dtype),
                             self.stride, self.scale_x_y, self.new_coords)
        obj, cls = p[..., 4:5], p[..., 5:]
        if not self.new_coords:
            obj, cls = torch.sigmoid(obj), torch.sigmoid(cls)
        half = wh * 0.5
        boxes = torch.cat((xy - half, xy + half), -1).reshape(-1, A * h * w, 4)
        scores = (obj * cls).reshape(-1, A * h * w, C)
        return boxes, scores

    def extra_repr(self) -> str:
        return (f"classes={self.num_classes}, anchors={[tuple(round(v, 1) for v in a) for a in self.anchors]}, "
                f"stride={self.stride}, scale_x_y={self.scale_x_y:g}, new_coords={self.new_coords}")


def yolo_bias_priors(num_classes: int, num_anchors: int, cells: float) -> torch.Tensor:
    """Initial biases for a fresh head conv: x, y, w, h 0; objectness log(8 / cells) (about 8 objects
    per image, as ultralytics' ``_initialize_biases``); classes log(0.6 / (C − 0.99)).

    Args:
        cells: grid cells of the head at the cfg's input size (h/stride · w/stride).

    Returns:
        float32 ``[A*(5+C)]``, the conv's bias (pre-activation, valid for linear and logistic heads).
    """
    b = torch.zeros(num_anchors, 5 + num_classes)
    b[:, 4] = math.log(8.0 / max(cells, 1.0))
    b[:, 5:] = math.log(0.6 / (num_classes - 0.99))
    return b.view(-1)
