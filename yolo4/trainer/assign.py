"""Darknet's assignment of ground-truth boxes to (yolo layer, anchor, grid cell).

Source: AlexeyAB/darknet ``src/yolo_layer.c``, ``forward_yolo_layer`` (the per-truth loop after the
per-prediction ignore loop), for every ``[yolo]`` layer independently:

1. ``best_n`` = the anchor, over **all** ``total`` anchors of the section (``anchors=``, not only
   the masked ones), with the highest IoU between the truth and the anchor when both are boxes
   ``(0, 0, w, h)`` (same centre): ``min(w_t, w_a) * min(h_t, h_a) / union``. Ties: the first.
2. If ``best_n`` is in this layer's ``mask`` (``int_index(l.mask, best_n)``), the prediction of the
   truth's cell ``(i, j) = (floor(cx * W), floor(cy * H))`` at that anchor is responsible for it.
3. ``iou_thresh`` rule (``iou_thresh < 1``, e.g. 0.213 in yolov4.cfg): every other anchor ``n`` of
   this layer's mask whose ``(0,0,w,h)`` similarity with the truth is ``> iou_thresh`` is responsible
   too, at the same cell. The similarity is ``box_iou_kind(anchor, truth, iou_thresh_kind)`` with
   both boxes in 0..1 image units (w / net_w, h / net_h): ``iou`` (default), ``giou``, ``diou``
   (= IoU for boxes sharing a centre) or ``ciou`` (:func:`centred_iou`). Darknet's default
   ``iou_thresh=1`` turns the rule off.

``scale_x_y`` ("eliminate grid sensitivity") does **not** change the assignment in darknet: the
responsible cell stays the truth's own cell ``floor(cx / stride)`` (no neighbour cells, unlike
later YOLOs); it only widens the decode ``x = (sigmoid(tx) * s - (s - 1) / 2 + i) / W``
(``forward_yolo_layer``, ``scal_add_cpu``), so a truth on or near its cell's border becomes
reachable with finite outputs; the loss decodes with the model's own
:func:`yolo4.model.layers.decode_xywh`.

Truths whose best anchor is in no layer's mask (yolov4-tiny's anchor 0 ``10,14`` is in neither mask
``3,4,5`` nor ``1,2,3``) get no positive anywhere, as in darknet.

Everything is vectorized over truths x anchors; no Python loop over boxes.
"""

import math
from typing import List, NamedTuple, Sequence, Tuple

import torch

from ..model.cfg import YoloSpec


class LayerTargets(NamedTuple):
    """Positive (truth, anchor, cell) pairs of one yolo layer, all ``[P]`` tensors on the targets' device.

    Attributes:
        b: int64 image index in the batch.
        a: int64 anchor slot in this layer (0..len(mask)-1, channel-group order).
        gj, gi: int64 cell row and column.
        t: int64 index of the truth row in the ``targets`` tensor.
    """

    b: torch.Tensor
    a: torch.Tensor
    gj: torch.Tensor
    gi: torch.Tensor
    t: torch.Tensor


def wh_iou(wh1: torch.Tensor, wh2: torch.Tensor) -> torch.Tensor:
    """IoU of boxes sharing one centre, as darknet's ``box_iou`` of ``(0, 0, w, h)`` boxes.

    Args:
        wh1: ``[K, 2]`` float (w, h); wh2: ``[T, 2]`` float (w, h), same unit.

    Returns:
        ``[K, T]`` float IoU.
    """
    inter = torch.min(wh1[:, None, 0], wh2[None, :, 0]) * torch.min(wh1[:, None, 1], wh2[None, :, 1])
    union = (wh1[:, 0] * wh1[:, 1])[:, None] + (wh2[:, 0] * wh2[:, 1])[None, :] - inter
    return inter / union.clamp(min=1e-12)


def centred_iou(wh1: torch.Tensor, wh2: torch.Tensor, kind: str = "iou") -> torch.Tensor:
    """darknet ``box_iou_kind`` (``src/box.c``) of boxes sharing one centre, for the ``iou_thresh`` rule.

    With a common centre the distance term vanishes: ``diou`` equals ``iou``; ``giou`` subtracts
    ``(C - U) / C`` with ``C = max(w) * max(h)``; ``ciou`` subtracts ``alpha * v``,
    ``v = 4/pi^2 (atan(w2/h2) - atan(w1/h1))^2``, ``alpha = v / (1 - IoU + v + 1e-6)`` (``box_ciou``).

    Args:
        wh1: ``[K, 2]`` float (w, h); wh2: ``[T, 2]`` float (w, h), same unit (darknet: 0..1 image
            units; ``iou``, ``giou`` and ``diou`` do not depend on the unit, ``ciou``'s aspect ratios do).
        kind: ``iou``, ``giou``, ``diou`` or ``ciou`` (the ``[yolo]`` key ``iou_thresh_kind``).

    Returns:
        ``[K, T]`` float.
    """
    iou = wh_iou(wh1, wh2)
    if kind in ("iou", "diou"):
        return iou
    w1, h1 = wh1[:, None, 0], wh1[:, None, 1]
    w2, h2 = wh2[None, :, 0], wh2[None, :, 1]
    if kind == "giou":
        inter = torch.min(w1, w2) * torch.min(h1, h2)
        union = w1 * h1 + w2 * h2 - inter
        c = (torch.max(w1, w2) * torch.max(h1, h2)).clamp(min=1e-12)
        return iou - (c - union) / c
    if kind == "ciou":
        v = (4 / math.pi ** 2) * (torch.atan(w2 / h2.clamp(min=1e-12)) - torch.atan(w1 / h1.clamp(min=1e-12))) ** 2
        return iou - v * v / (1 - iou + v + 1e-6)
    raise ValueError(f"unknown iou_thresh_kind {kind!r} (one of iou, giou, diou, ciou)")


def assign_layer(targets: torch.Tensor, spec: YoloSpec, grid_hw: Tuple[int, int]) -> LayerTargets:
    """Darknet's positives of one yolo layer (see the module docstring for the rules).

    Args:
        targets: ``[K, 6]`` float32 rows ``(image_index, class_id, cx, cy, w, h)``, box centre and
            size in network-input pixels. Rows with ``w <= 0`` or ``h <= 0`` are skipped.
        spec: the layer's :class:`yolo4.model.cfg.YoloSpec` (``anchors``, ``mask``, ``stride``,
            ``iou_thresh``, ``iou_thresh_kind``; a model's are ``[yl.spec for yl in model.yolo_layers]``).
        grid_hw: ``(H, W)`` cells of this layer's output.

    Returns:
        :class:`LayerTargets` with one entry per positive pair (a truth may appear several times with
        different anchors; several truths may share one slot: the loss handles both).
    """
    dev = targets.device
    H, W = int(grid_hw[0]), int(grid_hw[1])
    valid = (targets[:, 4] > 0) & (targets[:, 5] > 0)
    anchors = torch.tensor(spec.anchors, dtype=torch.float32, device=dev).reshape(-1, 2)
    mask = torch.tensor(list(spec.mask), dtype=torch.int64, device=dev)
    if targets.shape[0] == 0 or mask.numel() == 0:
        z = torch.zeros(0, dtype=torch.int64, device=dev)
        return LayerTargets(z, z, z, z, z)
    ious = wh_iou(targets[:, 4:6].float(), anchors)                    # [K, T]
    best_n = ious.argmax(dim=1)                                         # first max, as darknet's '>'
    pos = best_n[:, None] == mask[None, :]                              # [K, A]
    if spec.iou_thresh < 1.0:
        if spec.iou_thresh_kind not in ("iou", "diou"):    # unit-free kinds reuse ``ious``
            net = torch.tensor([W * spec.stride, H * spec.stride], dtype=torch.float32, device=dev)
            ious = centred_iou(targets[:, 4:6].float() / net, anchors / net, spec.iou_thresh_kind)
        pos = pos | (ious[:, mask] > spec.iou_thresh)
    pos = pos & valid[:, None]
    t, a = pos.nonzero(as_tuple=True)
    # darknet: i = (int)(truth.x * l.w) with truth.x = cx / net_w; clamp a truth on the right/bottom edge
    # (cx / net_w) * W == cx / stride for an input of W * stride pixels
    gi = (targets[t, 2] / spec.stride).floor().long().clamp_(0, W - 1)
    gj = (targets[t, 3] / spec.stride).floor().long().clamp_(0, H - 1)
    b = targets[t, 0].long()
    return LayerTargets(b, a, gj, gi, t)


def assign(targets: torch.Tensor, specs: Sequence[YoloSpec],
           grids: Sequence[Tuple[int, int]]) -> List[LayerTargets]:
    """:func:`assign_layer` for every yolo layer (cfg order); ``grids[l] = (H, W)`` of layer ``l``."""
    return [assign_layer(targets, s, g) for s, g in zip(specs, grids)]
