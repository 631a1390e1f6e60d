"""The YOLOv4 training loss, as darknet's ``[yolo]`` layer defines it, in vectorized torch.

Source: AlexeyAB/darknet ``src/yolo_layer.c`` ``forward_yolo_layer`` / ``process_batch``,
``delta_yolo_box``, ``delta_yolo_class``; ``src/box.c`` ``box_iou``/``box_giou``/``box_diou``/
``box_ciou``; CIoU: Zheng et al., "Distance-IoU Loss", AAAI 2020, eq. 9-11.

Per yolo layer and image (darknet computes gradients ``delta`` directly; here the same targets and
weights are written as a loss and differentiated by autograd):

- **objectness**: binary cross-entropy on the logit, target 1 at the positives of :mod:`.assign`, 0 elsewhere;
  predictions (not positives) whose decoded box has IoU ``> ignore_thresh`` with some truth of the
  image **and** some class probability ``> 0.25`` (darknet ``compare_yolo_class``: any class, not
  necessarily the truth's) get no objectness loss ("ignore", ``process_batch``: ``best_match_iou >
  l.ignore_thresh`` -> ``delta = 0``). Weight ``obj_normalizer``. (darknet's delta
  ``obj_normalizer * (t - p)`` is exactly the negative gradient of this BCE with respect to the
  logit.) With ``objectness_smooth=1`` (yolov4-csp, yolov4x-mish) nothing is ignored: a prediction
  whose ``best_match_iou`` (the same IoU with the class condition) is ``> ignore_thresh`` gets that
  IoU as its target instead (darknet ``process_batch``: ``delta = obj_normalizer * (best_match_iou -
  p)``), and a positive keeps the target it has as a prediction, that IoU above the threshold and
  **0 below it**: darknet first sets every prediction's ``delta = obj_normalizer * (0 - p)`` and a
  positive writes ``1 - p`` only ``if (l.delta[obj_index] == 0)``, i.e. only where ``p`` is exactly 0.
- ``new_coords=1`` (yolov4-csp, yolov4x-mish, yolov4-p5): the objectness and class outputs are the
  preceding conv's logistic, darknet's ``delta = t - p`` lands on that output and the conv's
  logistic backward multiplies ``p (1 - p)``; the term is therefore ``0.5 (p - t)^2`` (gradient
  ``p - t`` on the output), not cross-entropy (whose gradient on the conv's input would be ``p - t``,
  from 4x to unboundedly stronger).
- **class**: BCE over all classes at each positive slot, target ``y * (1 - eps) + 0.5 * eps`` with
  ``y`` 1 for the truth's class, 0 for the others, ``eps = label_smooth_eps`` (darknet
  ``delta_yolo_class``: positives ``1 - eps/2``, negatives ``eps/2``, whatever the number of
  classes; :func:`smooth_class_targets`). Several truths on one slot make a multi-hot target, as in
  darknet. Weight ``cls_normalizer``. (Deviation: darknet's ``delta_yolo_class`` multiplies by
  ``cls_normalizer`` only when ``counters_per_class`` is set, so there it is a no-op in every
  official cfg, all of which set 1.0; here it weights the class term as its name says.)
  ``focal_loss=1``: each class term of a slot times darknet's focal factor
  (:meth:`YoloLoss.focal_weights`, ``alpha = 0.5``, gamma 2), no label smoothing (darknet's focal
  branch has none).
- **box**: ``1 - CIoU`` (``iou_loss=ciou``; also ``diou``, ``giou``, ``iou``) between the decoded
  predicted box (:func:`decode_layer`: the model's decode, ``scale_x_y`` included) and the truth
  (both in 0..1 image units), weight ``iou_normalizer``. DIoU is the paper's ``IoU - d^2/c^2``, the
  quantity whose gradient darknet's ``dx_box_iou`` applies (darknet's ``box_diou`` *value*, used only
  for its printed statistics, is ``IoU - (d^2/c^2)^0.6``). A slot shared by
  several truths averages their box terms (darknet ``averages_yolo_deltas``). ``iou_loss=mse``
  (darknet's default, yolov3): ``0.5 * (2 - w*h) * iou_normalizer * ((tx - sx)^2 + (ty - sy)^2 +
  (tw - log(w/a))^2 + (th - log(h/a))^2)`` in darknet's cell / log-anchor units; with ``new_coords=1``
  the w, h terms are ``(tw - sqrt(w / (4 a)))^2`` on the raw w, h output (darknet ``delta_yolo_box``).

  Gradient scale (``box_grad``). Darknet does not back-propagate its box loss through the decode:
  ``delta_yolo_box`` puts ``iou_normalizer * dCIoU/d(x, y)`` (box in 0..1 image units) straight on
  the raw x, y outputs (no logistic derivative, no ``1/W`` of the cell -> image mapping), and
  ``dCIoU/d(w, h) * exp(tw)`` on the raw w, h (nothing more with ``new_coords``); for ``mse``
  ``scale * (tx - x)`` on the raw x. ``box_grad="darknet"`` (default) puts exactly darknet's deltas on
  the raw outputs: its hand-derived ``dx_box_iou`` (:mod:`.box_grad`, which differs from the exact
  derivative: w, h terms of the IoU part doubled, the distance term's enclosing-box share subtracted,
  CIoU's ``1/(w^2+h^2)`` dropped) times ``iou_normalizer`` (the loss *value* is unchanged, its
  gradient on the raw x, y, w, h is ``-delta``); ``box_grad="chain"`` is plain autograd of ``1 - IoU
  kind`` through the decode, whose x/y gradients are ``sigmoid' * scale_x_y / W`` times the exact
  derivative (about 1/40 at 320 px, stride 32), i.e. a much weaker box term. Darknet's per-element
  ``max_delta`` clip is not applied (the trainer clips the global gradient norm instead).

Not implemented (a :class:`yolo4.errors.Yolo4Warning` names them when a cfg sets them):
``truth_thresh < 1``, ``counters_per_class``; the loss
then trains as if they were at darknet's defaults.

Reduction: every term is **summed** over predictions/pairs (darknet sums its deltas) and the total
is divided by the batch size: darknet updates with ``learning_rate / batch * sum of per-image
gradients``, so torch SGD on this per-image-mean loss with ``lr = learning_rate`` is the same step
(per step: at a batch below darknet's 64 it takes more of them per image, hence the trainer's
default ``lr = learning_rate * batch / 64``, see :mod:`.train`).
"""

import math
import warnings
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from ..errors import Yolo4Warning
from ..model.cfg import YoloSpec
from ..model.layers import decode_xywh
from .assign import LayerTargets, assign_layer
from .box_grad import darknet_box_delta

IOU_KINDS = ("iou", "giou", "diou", "ciou")

# [yolo] training keys this loss does not implement -> "set to a non-default value"
_UNSUPPORTED = {
    "truth_thresh": lambda s: s.truth_thresh < 1.0,
    "counters_per_class": lambda s: "counters_per_class" in s.section.options,
}


def bbox_iou(box1: torch.Tensor, box2: torch.Tensor, kind: str = "iou", eps: float = 1e-9) -> torch.Tensor:
    """IoU / GIoU / DIoU / CIoU of boxes given as centre and size (darknet ``box.c``).

    Args:
        box1, box2: ``[..., 4]`` float ``(cx, cy, w, h)`` in one unit (pixels or normalized);
            broadcastable against each other.
        kind: ``iou``, ``giou`` (Rezatofighi et al. 2019), ``diou`` or ``ciou`` (Zheng et al. 2020):
            ``CIoU = IoU - d^2/c^2 - alpha v``, ``v = 4/pi^2 (atan(w_g/h_g) - atan(w/h))^2``,
            ``alpha = v / (1 - IoU + v)`` (held constant for the gradient, as the paper prescribes),
            d = distance of the centres, c = diagonal of the smallest enclosing box.

    Returns:
        ``[...]`` float: 1 for identical boxes; IoU in [0, 1], the others in [-1, 1].
    """
    if kind not in IOU_KINDS:
        raise ValueError(f"unknown IoU kind {kind!r} (one of {', '.join(IOU_KINDS)})")
    b1x1, b1x2 = box1[..., 0] - box1[..., 2] / 2, box1[..., 0] + box1[..., 2] / 2
    b1y1, b1y2 = box1[..., 1] - box1[..., 3] / 2, box1[..., 1] + box1[..., 3] / 2
    b2x1, b2x2 = box2[..., 0] - box2[..., 2] / 2, box2[..., 0] + box2[..., 2] / 2
    b2y1, b2y2 = box2[..., 1] - box2[..., 3] / 2, box2[..., 1] + box2[..., 3] / 2
    iw = (torch.min(b1x2, b2x2) - torch.max(b1x1, b2x1)).clamp(min=0)
    ih = (torch.min(b1y2, b2y2) - torch.max(b1y1, b2y1)).clamp(min=0)
    inter = iw * ih
    union = box1[..., 2] * box1[..., 3] + box2[..., 2] * box2[..., 3] - inter + eps
    iou = inter / union
    if kind == "iou":
        return iou
    cw = torch.max(b1x2, b2x2) - torch.min(b1x1, b2x1)      # enclosing box
    ch = torch.max(b1y2, b2y2) - torch.min(b1y1, b2y1)
    if kind == "giou":
        c_area = cw * ch + eps
        return iou - (c_area - union) / c_area
    c2 = cw ** 2 + ch ** 2 + eps
    d2 = (box1[..., 0] - box2[..., 0]) ** 2 + (box1[..., 1] - box2[..., 1]) ** 2
    if kind == "diou":
        return iou - d2 / c2
    v = (4 / math.pi ** 2) * (torch.atan(box2[..., 2] / (box2[..., 3] + eps))
                              - torch.atan(box1[..., 2] / (box1[..., 3] + eps))) ** 2
    with torch.no_grad():
        alpha = v / (1 - iou + v + 1e-6)                     # darknet box_ciou: + 0.000001
    return iou - (d2 / c2 + alpha * v)


def decode_layer(raw: torch.Tensor, spec: YoloSpec) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                torch.Tensor, torch.Tensor]:
    """Split and decode one layer's raw output (darknet ``get_yolo_box``, ``scal_add_cpu``).

    Args:
        raw: ``[B, A*(5+C), H, W]`` float, the tensor feeding the ``[yolo]`` section
            (``Darknet.forward(x, raw=True)``); channel groups per anchor: x, y, w, h, obj, C classes.
        spec: the layer's :class:`yolo4.model.cfg.YoloSpec` (``mask``, ``anchors``, ``classes``, ``stride``,
            ``scale_x_y``, ``new_coords``).

    Returns:
        ``(xy, wh, t, obj, cls)``: ``xy`` ``[B,A,H,W,2]`` box centre in input pixels, ``wh``
        ``[B,A,H,W,2]`` size in input pixels, ``t`` ``[B,A,H,W,4]`` the raw x, y, w, h channels,
        ``obj`` ``[B,A,H,W]`` and
        ``cls`` ``[B,A,H,W,C]`` as logits (``new_coords=0``) or probabilities (``new_coords=1``,
        the preceding conv already applied the logistic).
    """
    B, ch, H, W = raw.shape
    A = len(spec.mask)
    no = 5 + spec.classes
    if ch != A * no:
        raise ValueError(f"yolo layer expects {A * no} channels ({A} anchors x (5 + {spec.classes} "
                         f"classes)), got {ch}")
    p = raw.view(B, A, no, H, W).permute(0, 1, 3, 4, 2)
    anchors = torch.tensor(spec.masked_anchors, dtype=raw.dtype, device=raw.device).view(1, A, 1, 1, 2)
    gy, gx = torch.meshgrid(torch.arange(H, device=raw.device, dtype=raw.dtype),
                            torch.arange(W, device=raw.device, dtype=raw.dtype), indexing="ij")
    grid = torch.stack((gx, gy), -1).view(1, 1, H, W, 2)
    xy, wh = decode_xywh(p[..., 0:4], anchors, grid, spec.stride, spec.scale_x_y, spec.new_coords, max_tw=20.0)
    return xy, wh, p[..., 0:4], p[..., 4], p[..., 5:]


def smooth_class_targets(hot: torch.Tensor, eps: float) -> torch.Tensor:
    """Darknet's class targets with label smoothing (``delta_yolo_class``, ``label_smooth_eps``).

    Args:
        hot: ``[..., C]`` float one-hot / multi-hot (1 for a truth's class, 0 otherwise).
        eps: the ``[yolo]`` key ``label_smooth_eps`` (0: off).

    Returns:
        ``[..., C]`` float ``hot * (1 - eps) + 0.5 * eps``: ``1 - eps/2`` and ``eps/2``.
    """
    if not eps:
        return hot
    return hot * (1.0 - eps) + 0.5 * eps


#: darknet ``compare_yolo_class``'s ``conf_thresh``: a prediction is only ignored when some class
#: probability exceeds it (``process_batch`` passes 0.25)
IGNORE_CLASS_THRESH = 0.25
#: darknet ``delta_yolo_class``'s focal-loss alpha (``float alpha = 0.5;``)
FOCAL_ALPHA = 0.5


def _bce(x: torch.Tensor, target: torch.Tensor, probs: bool) -> torch.Tensor:
    """The objectness / class term whose negative gradient on ``x`` is darknet's ``delta = t - p``.

    ``probs=False``: ``x`` are logits (darknet applies the logistic inside the ``[yolo]`` layer and
    its ``delta`` is on the logit): binary cross-entropy, gradient ``sigmoid(x) - t``. ``probs=True``
    (``new_coords=1``): ``x`` is the preceding conv's logistic output and darknet's ``delta`` is on
    that output, the conv's logistic backward then multiplies ``p (1 - p)``: ``0.5 (x - t)^2``,
    gradient ``x - t``. Elementwise, ``[...]`` float like ``x``.
    """
    if probs:
        return 0.5 * (x - target) ** 2
    return F.binary_cross_entropy_with_logits(x, target, reduction="none")


def _padded_truths(targets: torch.Tensor, batch: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """``[K,6]`` rows -> (``[B, Tmax, 4]`` cx,cy,w,h, ``[B, Tmax]`` bool valid)."""
    dev = targets.device
    b = targets[:, 0].long()
    counts = torch.bincount(b, minlength=batch)
    tmax = int(counts.max()) if targets.shape[0] else 0
    boxes = torch.zeros(batch, max(tmax, 1), 4, device=dev, dtype=targets.dtype)
    valid = torch.zeros(batch, max(tmax, 1), dtype=torch.bool, device=dev)
    if targets.shape[0]:
        order = torch.argsort(b, stable=True)
        bs = b[order]
        starts = torch.cumsum(counts, 0) - counts
        slot = torch.arange(bs.numel(), device=dev) - starts[bs]
        boxes[bs, slot] = targets[order, 2:6]
        valid[bs, slot] = True
    return boxes, valid


class YoloLoss:
    """Darknet's YOLO loss over all ``[yolo]`` layers of a model (see the module docstring).

    Args:
        specs: one :class:`yolo4.model.cfg.YoloSpec` per ``[yolo]`` section, cfg order (a model's:
            ``[yl.spec for yl in model.yolo_layers]``).
        box_grad: ``"darknet"`` (darknet's box-gradient scale, default) or ``"chain"`` (autograd
            through the decode); see the module docstring.

    Call with ``(raw_outputs, targets)``:
        raw_outputs: list of ``[B, A*(5+C), H, W]`` float tensors (``Darknet.forward(x, raw=True)``).
        targets: ``[K, 6]`` float32 ``(image_index, class_id, cx, cy, w, h)``, input pixels.

    Returns:
        ``(loss, items)``: ``loss`` a scalar tensor (sum over layers of box + obj + cls, divided by
        the batch size B); ``items`` floats ``{"box", "obj", "cls", "loss"}`` (same per-image
        scale) and ``"positives"`` (number of (truth, anchor) pairs).
    """

    def __init__(self, specs: Sequence[YoloSpec], box_grad: str = "darknet") -> None:
        if box_grad not in ("darknet", "chain"):
            raise ValueError(f"box_grad must be 'darknet' or 'chain', got {box_grad!r}")
        self.box_grad = box_grad
        self.specs = list(specs)
        for s in self.specs:
            if s.iou_loss not in IOU_KINDS + ("mse",):
                raise ValueError(f"iou_loss={s.iou_loss} is not supported (mse, iou, giou, diou, ciou)")
        unsupported = sorted({k for s in self.specs for k, off in _UNSUPPORTED.items() if off(s)})
        if unsupported:
            warnings.warn(f"[yolo] {', '.join(unsupported)}: not implemented by the trainer's loss, "
                          "trained as darknet's defaults", Yolo4Warning, stacklevel=2)

    def __call__(self, raw_outputs: Sequence[torch.Tensor],
                 targets: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, float]]:
        if len(raw_outputs) != len(self.specs):
            raise ValueError(f"{len(raw_outputs)} raw outputs for {len(self.specs)} yolo layers")
        batch = raw_outputs[0].shape[0]
        targets = targets.to(raw_outputs[0].device, torch.float32)
        truths, tvalid = _padded_truths(targets, batch)
        lbox = raw_outputs[0].new_zeros(())
        lobj = raw_outputs[0].new_zeros(())
        lcls = raw_outputs[0].new_zeros(())
        npos = 0
        for raw, spec in zip(raw_outputs, self.specs):
            box, obj, cls, n = self._layer(raw, spec, targets, truths, tvalid)
            lbox, lobj, lcls, npos = lbox + box, lobj + obj, lcls + cls, npos + n
        loss = (lbox + lobj + lcls) / batch
        items = {"box": float(lbox.detach()) / batch, "obj": float(lobj.detach()) / batch,
                 "cls": float(lcls.detach()) / batch, "loss": float(loss.detach()), "positives": npos}
        return loss, items

    def layer_targets(self, raw: torch.Tensor, spec: YoloSpec, targets: torch.Tensor) -> LayerTargets:
        """The positives of one layer (:func:`yolo4.trainer.assign.assign_layer`)."""
        return assign_layer(targets, spec, raw.shape[2:4])

    def match_iou(self, xy: torch.Tensor, wh: torch.Tensor, truths: torch.Tensor, tvalid: torch.Tensor,
                  cls_prob: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``[B,A,H,W]`` float: darknet's ``best_match_iou`` of each prediction (``process_batch``).

        The best IoU of the predicted box with a truth of its image, or 0 when (``cls_prob`` given)
        no class probability is ``> 0.25`` (``compare_yolo_class``). No gradient.

        Args:
            xy, wh: decoded centres/sizes ``[B,A,H,W,2]`` float (input pixels).
            truths: ``[B, T, 4]`` float cx,cy,w,h input pixels; tvalid: ``[B, T]`` bool.
            cls_prob: ``[B,A,H,W,C]`` float class probabilities (after the logistic), or None to
                skip darknet's class condition.
        """
        with torch.no_grad():
            B = xy.shape[0]
            pred = torch.cat((xy, wh), -1).reshape(B, -1, 1, 4)
            iou = bbox_iou(pred, truths[:, None, :, :], "iou")                  # [B, N, T]
            iou = iou.masked_fill(~tvalid[:, None, :], 0.0)
            best = iou.max(dim=2).values if iou.shape[2] else iou.new_zeros(iou.shape[:2])
            best = best.view(xy.shape[:4])
            if cls_prob is not None and cls_prob.shape[-1]:
                best = best * (cls_prob > IGNORE_CLASS_THRESH).any(dim=-1).to(best.dtype)
            return best

    def ignore_mask(self, xy: torch.Tensor, wh: torch.Tensor, spec: YoloSpec, truths: torch.Tensor,
                    tvalid: torch.Tensor, cls_prob: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``[B,A,H,W]`` bool: darknet's ignored predictions (``process_batch``, ``compare_yolo_class``).

        A prediction is ignored when its best IoU with a truth of its image is ``> ignore_thresh``
        and (when ``cls_prob`` is given) some class probability is ``> 0.25`` (:meth:`match_iou`).
        Arguments as :meth:`match_iou`.
        """
        return self.match_iou(xy, wh, truths, tvalid, cls_prob) > spec.ignore_thresh

    @staticmethod
    def focal_weights(cls_flat: torch.Tensor, hot: torch.Tensor, inv: torch.Tensor, classes: torch.Tensor,
                      probs: bool) -> torch.Tensor:
        """``[U, C]`` float (no gradient): darknet's ``focal_loss=1`` factor on each class term of each
        positive slot (``delta_yolo_class``): ``alpha * grad(pt)``, ``alpha`` = :data:`FOCAL_ALPHA`,
        ``grad(pt) = -(1 - pt) * (2 pt ln pt + pt - 1)`` (gamma 2), ``pt`` the predicted probability
        of the class of the slot's first truth; a further truth's class on the same slot is 1
        (darknet's ``delta[...] = y_true - p`` branch). Applied to the BCE terms (whose negative
        gradient is darknet's ``y - p``).

        Args:
            cls_flat: ``[U, C]`` class logits (probabilities when ``probs``) of the positive slots.
            hot: ``[U, C]`` 0/1 targets; inv: ``[P]`` slot of each (truth, anchor) pair; classes:
                ``[P]`` int64 class of each pair, in truth order.
        """
        with torch.no_grad():
            U = cls_flat.shape[0]
            p = cls_flat if probs else torch.sigmoid(cls_flat)
            order = torch.arange(inv.numel(), device=inv.device)
            first = torch.full((U,), inv.numel(), dtype=torch.int64, device=inv.device)
            first = first.scatter_reduce(0, inv, order, reduce="amin")
            first_cls = classes[first]
            rows = torch.arange(U, device=inv.device)
            pt = p[rows, first_cls] + 1e-15
            factor = FOCAL_ALPHA * -(1 - pt) * (2 * pt * torch.log(pt) + pt - 1)
            w = factor[:, None].expand_as(hot).clone()
            extra = hot.clone()
            extra[rows, first_cls] = 0.0
            return torch.where(extra > 0, torch.ones_like(w), w)

    def _layer(self, raw, spec, targets, truths, tvalid):
        xy, wh, traw, obj, cls = decode_layer(raw, spec)
        B, A, H, W = obj.shape
        probs = bool(spec.new_coords)
        lt = self.layer_targets(raw, spec, targets)
        cls_prob = cls.detach() if probs else torch.sigmoid(cls.detach())
        match = self.match_iou(xy, wh, truths, tvalid, cls_prob)
        ignore = match > spec.ignore_thresh
        smooth = bool(spec.objectness_smooth)

        # objectness_smooth=1 (darknet process_batch): a prediction above ignore_thresh is not ignored
        # but pulled to its best_match_iou, and a positive there keeps that target instead of 1
        obj_t = torch.where(ignore, match, torch.zeros_like(match)) if smooth else torch.zeros_like(obj)
        zero = obj.new_zeros(())
        if lt.t.numel() == 0:
            weight = torch.ones_like(obj) if smooth else (~ignore).to(obj.dtype)
            lobj = (_bce(obj, obj_t, probs) * weight).sum() * spec.obj_normalizer
            return zero, lobj, zero, 0

        slot = ((lt.b * A + lt.a) * H + lt.gj) * W + lt.gi                  # [P] flat slot ids
        uslots, inv, counts = torch.unique(slot, return_inverse=True, return_counts=True)
        if smooth:
            # darknet pre-sets every prediction's delta to obj_normalizer * (0 - p) and a positive sets
            # 1 - p only "if (l.delta[obj_index] == 0)": it keeps best_match_iou above ignore_thresh, 0
            # below (1 only where p is exactly 0)
            p_pos = (obj.detach() if probs else torch.sigmoid(obj.detach())).reshape(-1)[uslots]
            keep = ignore.reshape(-1)[uslots] | (p_pos != 0) | (spec.obj_normalizer == 0)
            obj_t.view(-1)[uslots] = torch.where(keep, obj_t.view(-1)[uslots], torch.ones_like(p_pos))
            weight = torch.ones_like(obj)
        else:
            obj_t.view(-1)[uslots] = 1.0
            weight = ((~ignore) | (obj_t > 0)).to(obj.dtype)                 # positives never ignored
        lobj = (_bce(obj, obj_t, probs) * weight).sum() * spec.obj_normalizer

        # classes: one multi-hot row per distinct slot
        C = spec.classes
        cls_flat = cls.reshape(-1, C)[uslots]                               # [U, C]
        cls_t = torch.zeros_like(cls_flat)
        cls_t[inv, targets[lt.t, 1].long()] = 1.0
        if spec.focal_loss:
            lcls = (_bce(cls_flat, cls_t, probs) * self.focal_weights(cls_flat, cls_t, inv, targets[lt.t, 1].long(),
                                                                       probs)).sum() * spec.cls_normalizer
        else:
            cls_t = smooth_class_targets(cls_t, spec.label_smooth_eps)
            lcls = _bce(cls_flat, cls_t, probs).sum() * spec.cls_normalizer

        # boxes: each (truth, anchor) pair, averaged over pairs sharing a slot
        w_pair = 1.0 / counts[inv].to(obj.dtype)
        pbox = torch.cat((xy, wh), -1).reshape(-1, 4)[slot]                  # [P, 4] input px
        tbox = targets[lt.t, 2:6]
        t = traw.reshape(-1, 4)[slot]                                       # raw x, y, w, h [P, 4]
        darknet = self.box_grad == "darknet"
        if spec.iou_loss == "mse":
            anchors = torch.tensor(spec.masked_anchors, dtype=raw.dtype, device=raw.device)[lt.a]
            cell = torch.stack((lt.gi, lt.gj), 1).to(raw.dtype)
            s_pred = pbox[:, :2] / spec.stride - cell
            if darknet:     # darknet: delta = scale * (tx - x) on the raw x (no logistic derivative)
                s_pred = s_pred.detach() + (t[:, :2] - t[:, :2].detach())
            s_true = tbox[:, :2] / spec.stride - cell
            if spec.new_coords:     # darknet: tw = sqrt(truth_w / (4 anchor_w)) against the raw w
                t_pred, t_true = t[:, 2:], torch.sqrt(tbox[:, 2:] / (4.0 * anchors))
            else:
                t_pred = torch.log(pbox[:, 2:] / anchors)
                t_true = torch.log(tbox[:, 2:] / anchors)
            net_area = float(H * spec.stride * W * spec.stride)
            scale = 2.0 - tbox[:, 2] * tbox[:, 3] / net_area
            sq = ((s_pred - s_true) ** 2).sum(1) + ((t_pred - t_true) ** 2).sum(1)
            lbox = (0.5 * scale * sq * w_pair).sum() * spec.iou_normalizer
        else:
            net = pbox.new_tensor([W * spec.stride, H * spec.stride] * 2)
            pn = pbox / net                                                 # 0..1 image units, as darknet
            if darknet:
                # darknet delta_yolo_box: dx_box_iou's delta (box_grad.py) on the raw x, y as is (no
                # logistic derivative, no 1/W), on the raw w, h times exp(tw) (nothing with new_coords);
                # the loss value stays 1 - IoU kind, its gradient is -delta
                with torch.no_grad():
                    iou = bbox_iou(pn, tbox / net, spec.iou_loss)
                    delta = darknet_box_delta(pn, tbox / net, spec.iou_loss)
                    if not spec.new_coords:
                        delta[:, 2:] *= torch.exp(t[:, 2:].clamp(max=20.0))
                    delta = delta * (w_pair * spec.iou_normalizer)[:, None]
                surrogate = -(delta * t).sum()
                lbox = ((1.0 - iou) * w_pair).sum() * spec.iou_normalizer + (surrogate - surrogate.detach())
            else:
                iou = bbox_iou(pn, tbox / net, spec.iou_loss)
                lbox = ((1.0 - iou) * w_pair).sum() * spec.iou_normalizer
        return lbox, lobj, lcls, int(lt.t.numel())

