"""Decoded network outputs -> detections: darknet's thresholding and (DIoU-)NMS, vectorized with numpy.

Semantics follow AlexeyAB darknet (commit 59596d78):

* candidates (src/yolo_layer.c ``get_yolo_detections``): class ``c`` of box ``n`` is a candidate
  when ``score = objectness * P(c) > conf_thresh`` (strictly). Multi-label: every class of a box
  passing the threshold is its own detection. (Darknet's extra ``objectness > thresh`` gate is
  implied, since ``P(c) <= 1``.)
* NMS (src/box.c ``diounms_sort`` / ``do_nms_sort``): per class, candidates sorted by score
  descending; a kept box ``i`` suppresses every later box ``j`` of the class with
  ``IoU(i, j) - (d^2 / c^2) ** beta > iou_threshold``, ``d`` = distance between the box centres, ``c``
  = diagonal of the smallest box enclosing both (no penalty when ``c == 0``; ``IoU = 0`` when the
  intersection or union is 0, as ``box_iou``). ``nms_kind`` selects the penalty exponent exactly as
  darknet does (see :func:`effective_beta`): ``greedynms`` -> ``box_diou``, whose exponent is
  hard-coded to 0.6 (``beta_nms`` is ignored by darknet for this kind); ``diounms`` ->
  ``box_diounms`` with ``beta_nms``; ``default`` -> plain IoU (``do_nms_sort``).
* coordinates: darknet compares boxes relative to the image (``correct_yolo_boxes``): x divided by
  the width, y by the height of the image content. IoU is invariant to that per-axis scaling, the
  DIoU penalty is not, so NMS here runs on boxes divided by the network input ``(W, H)`` -- the
  same thing for a plain resize -- or, when ``transforms`` are given, by each image's letterboxed
  content size (exactly darknet's frame for ``letter_box=1``).
* ties in score keep the lower candidate index first (stable sort; darknet's ``qsort`` leaves
  ties unspecified).

Differences from darknet, on purpose: at most ``NmsParams.top_k`` (default 30000) candidates per
image enter NMS (the highest scores; darknet has no cap -- conf 0.001 on yolov4-608 can produce
more), and at most ``NmsParams.max_output_boxes`` detections per image come out (the highest
scores after NMS). All thresholds and limits are the fields of one :class:`NmsParams`.

Implementation: the candidates of a batch are gathered at once and sorted by (image, class, score);
greedy NMS runs over blocks of :data:`NMS_BLOCK` consecutive candidates. Within a block a
pairwise suppression matrix ``M[i, j]`` (same group, ``i`` before ``j``, overlap above threshold)
is solved by the fixed-point iteration ``keep[j] = not any(keep[i] and M[i, j] for i < j)``, which
reaches the unique fixed point -- the exact greedy result -- in at most block-size steps (after
``t`` steps the first ``t`` entries are final). Boxes of a group that span several blocks are
first checked against the boxes kept in earlier blocks. Memory is ``O(NMS_BLOCK^2)`` per step,
whatever the candidate count; images are gathered in passes of at most :data:`CANDIDATE_BUDGET`
raw candidates. No Python loop over boxes or classes.

Python 3.8, torch-free.
"""

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..errors import renamed_keywords
from ..nms_params import DEFAULT_MAX_CANDIDATES, GREEDY_NMS_BETA, NMS_KINDS, NmsParams, effective_beta

__all__ = ["Detections", "NmsParams", "NMS_KINDS", "DEFAULT_MAX_CANDIDATES", "NMS_BLOCK", "CANDIDATE_BUDGET",
           "GREEDY_NMS_BETA", "effective_beta", "pairwise_diou", "diou_nms", "postprocess"]

#: candidates per pairwise block (a block costs a few NMS_BLOCK^2 float64/bool arrays: ~50 MB at 1024)
NMS_BLOCK = 1024
#: images whose raw candidate counts add up to at most this are gathered in one pass (bounds memory)
CANDIDATE_BUDGET = 2_000_000


@dataclass
class Detections:
    """Detections of one image, sorted by score descending.

    Attributes:
        boxes: ``[K, 4] float32`` x1, y1, x2, y2 (network-input pixels from :func:`postprocess`,
            original-image pixels from :class:`~yolo4.runtime.detector.Detector`).
        scores: ``[K] float32`` objectness x class probability.
        class_ids: ``[K] int64`` class index into ``ModelInfo.names``.
    """

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    scores: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    class_ids: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def _iou_dense(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[P, Q] float64`` IoU of ``a [P, 4]`` and ``b [Q, 4]`` (x1y1x2y2), 0 where intersection or union is 0."""
    iw = np.minimum(a[:, None, 2], b[None, :, 2])
    iw -= np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3])
    ih -= np.maximum(a[:, None, 1], b[None, :, 1])
    np.maximum(iw, 0.0, out=iw)
    np.maximum(ih, 0.0, out=ih)
    inter = iw
    inter *= ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :]
    union -= inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=(inter != 0) & (union != 0))


def _diou_penalty(a: np.ndarray, b: np.ndarray, beta: float) -> np.ndarray:
    """Elementwise ``(d^2 / c^2) ** beta`` for paired boxes ``a [..., 4]``, ``b [..., 4]`` (0 where c = 0)."""
    cw = np.maximum(a[..., 2], b[..., 2]) - np.minimum(a[..., 0], b[..., 0])
    ch = np.maximum(a[..., 3], b[..., 3]) - np.minimum(a[..., 1], b[..., 1])
    c2 = cw * cw + ch * ch
    dx = (a[..., 0] + a[..., 2]) - (b[..., 0] + b[..., 2])
    dy = (a[..., 1] + a[..., 3]) - (b[..., 1] + b[..., 3])
    d2 = (dx * dx + dy * dy) * 0.25
    ratio = np.divide(d2, c2, out=np.zeros_like(d2), where=c2 != 0)
    return np.power(ratio, float(beta))


def pairwise_diou(a: np.ndarray, b: np.ndarray, beta: Optional[float]) -> np.ndarray:
    """Darknet's NMS overlap between every box of ``a`` and every box of ``b``.

    Args:
        a: ``[P, 4]`` x1, y1, x2, y2 (any consistent unit).
        b: ``[Q, 4]`` x1, y1, x2, y2.
        beta: DIoU exponent, or None for plain IoU.

    Returns:
        ``[P, Q] float64``: ``IoU - (d^2 / c^2) ** beta`` (src/box.c ``box_diounms``), or ``IoU``
        (``box_iou``) when ``beta`` is None. IoU is 0 when the intersection or union is 0; the
        penalty is 0 when the enclosing box has a zero diagonal.
    """
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    iou = _iou_dense(a, b)
    if beta is None:
        return iou
    return iou - _diou_penalty(a[:, None, :], b[None, :, :], beta)


def _suppresses(a: np.ndarray, b: np.ndarray, iou_threshold: float, beta: Optional[float]) -> np.ndarray:
    """``[P, Q] bool``: ``pairwise_diou(a, b, beta) > iou_threshold``, computing the penalty sparsely.

    The penalty is >= 0, so only pairs with ``IoU > iou_threshold`` can pass (when the threshold is >= 0).
    """
    iou = _iou_dense(a, b)
    over = iou > iou_threshold
    if beta is None:
        return over
    if iou_threshold < 0:
        return pairwise_diou(a, b, beta) > iou_threshold
    i, j = np.nonzero(over)
    if i.size:
        over[i, j] = iou[i, j] - _diou_penalty(a[i], b[j], beta) > iou_threshold
    return over


#: same-group candidate pairs evaluated at once by the sparse path (bounds its memory: ~40 bytes a pair)
PAIR_BUDGET = 4_000_000


def _greedy_pairs(boxes: np.ndarray, groups: np.ndarray, iou_threshold: float,
                  beta: Optional[float]) -> np.ndarray:
    """Greedy NMS on whole groups (sorted by group, then score): only same-group pairs ``i < j`` are
    evaluated (per-class groups are small; the dense blocks of :func:`_greedy_dense` are mostly
    cross-group waste), then the fixed point ``keep[j] = not any(keep[i] for edges i -> j)``."""
    n = boxes.shape[0]
    keep = np.ones(n, bool)
    gend = np.searchsorted(groups, groups, side="right")
    cnt = gend - np.arange(n) - 1
    total = int(cnt.sum())
    if total == 0:
        return keep
    i = np.repeat(np.arange(n), cnt)
    j = i + 1 + (np.arange(total) - np.repeat(np.cumsum(cnt) - cnt, cnt))
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    iw = np.minimum(x2[i], x2[j]) - np.maximum(x1[i], x1[j])
    sel = iw > 0
    i, j, iw = i[sel], j[sel], iw[sel]
    ih = np.minimum(y2[i], y2[j]) - np.maximum(y1[i], y1[j])
    sel = ih > 0
    i, j, inter = i[sel], j[sel], iw[sel] * ih[sel]
    area = (x2 - x1) * (y2 - y1)
    union = area[i] + area[j] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union != 0)
    over = iou > iou_threshold
    if beta is not None:
        k = np.flatnonzero(over)
        over[k] = iou[k] - _diou_penalty(boxes[i[k]], boxes[j[k]], beta) > iou_threshold
    ei, ej = i[over], j[over]
    for _ in range(n + 1):  # converges in <= n steps (see the module docstring)
        sup = np.zeros(n, bool)
        sup[ej[keep[ei]]] = True
        if np.array_equal(~sup, keep):
            break
        keep = ~sup
    return keep


def _greedy_sorted(boxes: np.ndarray, groups: np.ndarray, iou_threshold: float, beta: Optional[float],
                   block: Optional[int] = None) -> np.ndarray:
    """Greedy NMS on candidates sorted by (group ascending, score descending): runs of whole groups
    with at most :data:`PAIR_BUDGET` same-group pairs go to :func:`_greedy_pairs`; a larger group
    (and a negative threshold, where disjoint boxes can overlap) to :func:`_greedy_dense`.

    Returns:
        ``[K] bool`` keep mask.
    """
    k_total = boxes.shape[0]
    if k_total == 0 or iou_threshold < 0:
        return _greedy_dense(boxes, groups, iou_threshold, beta, block)
    keep = np.zeros(k_total, bool)
    bounds = np.flatnonzero(np.diff(groups)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [k_total]])
    pairs = (ends - starts) * (ends - starts - 1) // 2
    s = 0
    while s < starts.size:
        if pairs[s] > PAIR_BUDGET:
            keep[starts[s]:ends[s]] = _greedy_dense(boxes[starts[s]:ends[s]], groups[starts[s]:ends[s]],
                                                    iou_threshold, beta, block)
            s += 1
            continue
        e, acc = s, 0
        while e < starts.size and acc + pairs[e] <= PAIR_BUDGET:
            acc += pairs[e]
            e += 1
        keep[starts[s]:ends[e - 1]] = _greedy_pairs(boxes[starts[s]:ends[e - 1]], groups[starts[s]:ends[e - 1]],
                                                    iou_threshold, beta)
        s = e
    return keep


def _greedy_dense(boxes: np.ndarray, groups: np.ndarray, iou_threshold: float, beta: Optional[float],
                  block: Optional[int] = None) -> np.ndarray:
    """Greedy NMS on candidates already sorted by (group ascending, score descending).

    Args:
        boxes: ``[K, 4] float64`` x1, y1, x2, y2.
        groups: ``[K] int64`` non-decreasing group ids (boxes only suppress within a group).

    Returns:
        ``[K] bool`` keep mask.
    """
    block = int(block or NMS_BLOCK)
    k_total = boxes.shape[0]
    keep = np.zeros(k_total, bool)
    if k_total == 0:
        return keep
    group_start = np.searchsorted(groups, groups, side="left")
    for s in range(0, k_total, block):
        e = min(s + block, k_total)
        bb, gg = boxes[s:e], groups[s:e]
        alive = np.ones(e - s, bool)
        # the block's first group may have started in an earlier block: its kept boxes suppress too
        p0 = int(group_start[s])
        if p0 < s:
            prev = np.flatnonzero(keep[p0:s]) + p0
            cols = np.flatnonzero(gg == gg[0])
            for c in range(0, prev.size, block):
                over = _suppresses(boxes[prev[c:c + block]], bb[cols], iou_threshold, beta)
                alive[cols[over.any(axis=0)]] = False
        n = e - s
        m = _suppresses(bb, bb, iou_threshold, beta)
        m &= gg[:, None] == gg[None, :]
        m &= np.triu(np.ones((n, n), bool), k=1)
        kb = alive.copy()  # invariant kb <= alive: suppressed boxes never suppress
        for _ in range(n + 1):  # converges in <= n steps (see module docstring)
            new = alive & ~np.any(m[kb], axis=0)
            if np.array_equal(new, kb):
                break
            kb = new
        keep[s:e] = kb
    return keep


@renamed_keywords(iou_thresh="iou_threshold")
def diou_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.45, beta: Optional[float] = 0.6,
             groups: Optional[np.ndarray] = None) -> np.ndarray:
    """Reference greedy (DIoU-)NMS, darknet src/box.c ``diounms_sort`` for one class.

    Other backends (the TensorRT plugin, NMS-in-graph) are tested against this function.

    Args:
        boxes: ``[K, 4]`` x1, y1, x2, y2; any unit, but darknet normalizes by the image width and
            height (see the module docstring) and the DIoU penalty depends on that choice.
        scores: ``[K]`` scores; higher first, ties keep the lower index first.
        iou_threshold: box ``j`` is suppressed by a kept, higher-scored box ``i`` when
            ``IoU(i, j) - (d^2 / c^2) ** beta > iou_threshold`` (``NmsParams.iou_threshold``; the
            old keyword ``iou_thresh`` still works, with a deprecation warning, for one release).
        beta: DIoU exponent (0.6 darknet; 1.0 the DIoU paper's R_DIoU), None = plain IoU NMS.
        groups: optional ``[K]`` integer group (class) ids; boxes only suppress within a group.

    Returns:
        ``[M] int64`` indices into ``boxes`` of the kept boxes, sorted by score descending.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores).reshape(-1)
    if boxes.shape[0] != scores.shape[0]:
        raise ValueError(f"boxes {boxes.shape} and scores {scores.shape} differ in length")
    g = np.zeros(scores.shape[0], np.int64) if groups is None else np.asarray(groups, np.int64).reshape(-1)
    order = np.lexsort((-scores.astype(np.float64), g))  # stable: by group, then score desc
    keep = _greedy_sorted(boxes[order], g[order], float(iou_threshold), beta)
    kept = order[keep]
    return kept[np.argsort(-scores[kept].astype(np.float64), kind="stable")].astype(np.int64)


def postprocess(boxes: np.ndarray, scores: np.ndarray, params: NmsParams = NmsParams(),
                input_hw: Optional[Tuple[int, int]] = None,
                transforms: Optional[Sequence[object]] = None) -> List[Detections]:
    """Threshold and NMS the decoded outputs of a batch, as darknet's detector does.

    Args:
        boxes: ``[B, N, 4] float`` x1, y1, x2, y2 in network-input pixels (decoded model output).
        scores: ``[B, N, C] float`` objectness x class probability.
        params: :class:`NmsParams`: ``score_threshold`` (strict ``>``), ``iou_threshold``,
            ``nms_kind``/``beta_nms`` (see :func:`effective_beta`), ``max_output_boxes`` per image
            (highest scores after NMS), ``top_k`` candidates per image entering NMS (highest
            scores), ``class_agnostic``.
        input_hw: network input ``(H, W)``; NMS coordinates are divided by ``(W, H)``. None = raw
            pixels (identical results when ``W == H``).
        transforms: optional per-image :class:`~yolo4.runtime.preprocess.Transform`; when given,
            NMS coordinates are divided by each image's content size ``transform.content_wh``
            (darknet's frame for letterboxed inputs; equal to ``(W, H)`` for a plain resize).

    Returns:
        ``B`` :class:`Detections`, boxes in network-input pixels, sorted by score descending.

    Raises:
        ValueError: mismatched shapes.
    """
    beta = params.beta
    boxes = np.asarray(boxes)
    scores = np.asarray(scores)
    if boxes.ndim != 3 or boxes.shape[-1] != 4 or scores.ndim != 3 or scores.shape[:2] != boxes.shape[:2]:
        raise ValueError(f"expected boxes [B,N,4] and scores [B,N,C], got {boxes.shape} and {scores.shape}")
    num_images = scores.shape[0]
    if transforms is not None and len(transforms) != num_images:
        raise ValueError(f"{len(transforms)} transforms for a batch of {num_images}")

    # NMS frame: divide by the image content size (darknet: boxes relative to the image)
    if transforms is not None:
        norm = np.array([t.content_wh for t in transforms], np.float64).reshape(num_images, 2)
    elif input_hw is not None:
        norm = np.tile(np.array([input_hw[1], input_hw[0]], np.float64), (num_images, 1))
    else:
        norm = np.ones((num_images, 2), np.float64)

    mask = scores > params.score_threshold
    counts = mask.sum(axis=(1, 2))
    out: List[Detections] = []
    # images in chunks of at most CANDIDATE_BUDGET raw candidates (a single image may exceed it)
    i0 = 0
    while i0 < num_images:
        i1, total = i0 + 1, int(counts[i0])
        while i1 < num_images and total + int(counts[i1]) <= CANDIDATE_BUDGET:
            total += int(counts[i1])
            i1 += 1
        out += _postprocess_chunk(boxes[i0:i1], scores[i0:i1], mask[i0:i1], norm[i0:i1],
                                  float(params.iou_threshold), beta, params.class_agnostic,
                                  params.max_output_boxes, params.top_k)
        i0 = i1
    return out


def _postprocess_chunk(boxes: np.ndarray, scores: np.ndarray, mask: np.ndarray, norm: np.ndarray,
                       iou_threshold: float, beta: Optional[float], agnostic: bool, max_det: int,
                       max_candidates: int) -> List[Detections]:
    """:func:`postprocess` on a few images at once; ``mask`` = ``scores > conf``, ``norm [B, 2]``."""
    num_images, _, num_classes = scores.shape
    # candidates: every (image, box, class) with score > conf, row-major order (ties -> lower index)
    flat = np.flatnonzero(mask)  # row-major, as np.nonzero(mask), ~10x faster than its 3-D form
    b_idx, rest = np.divmod(flat, mask.shape[1] * mask.shape[2])
    n_idx, c_idx = np.divmod(rest, mask.shape[2])
    cand_scores = scores[b_idx, n_idx, c_idx].astype(np.float64)

    counts = np.bincount(b_idx, minlength=num_images)
    if counts.size and counts.max() > max_candidates:
        order = np.lexsort((-cand_scores, b_idx))
        rank = np.arange(order.size) - np.repeat(np.cumsum(counts) - counts, counts)
        sel = np.sort(order[rank < max_candidates])
        b_idx, n_idx, c_idx, cand_scores = b_idx[sel], n_idx[sel], c_idx[sel], cand_scores[sel]

    cand_boxes = boxes[b_idx, n_idx].astype(np.float64)
    nb = cand_boxes / np.tile(norm[b_idx], (1, 2))

    groups = b_idx.astype(np.int64) * (1 if agnostic else num_classes)
    if not agnostic:
        groups = groups + c_idx
    order = np.lexsort((-cand_scores, groups))
    keep = _greedy_sorted(nb[order], groups[order], iou_threshold, beta)
    kept = order[keep]

    # per image: score descending, at most max_det
    kept = kept[np.lexsort((-cand_scores[kept], b_idx[kept]))]
    kb = b_idx[kept]
    kcounts = np.bincount(kb, minlength=num_images)
    starts = np.cumsum(kcounts) - kcounts
    rank = np.arange(kept.size) - np.repeat(starts, kcounts)
    kept = kept[rank < max_det]
    kb = b_idx[kept]
    bounds = np.searchsorted(kb, np.arange(num_images + 1), side="left")

    out_boxes = cand_boxes[kept].astype(np.float32)
    out_scores = scores[b_idx[kept], n_idx[kept], c_idx[kept]].astype(np.float32)
    out_classes = c_idx[kept].astype(np.int64)
    return [Detections(boxes=out_boxes[bounds[i]:bounds[i + 1]],
                       scores=out_scores[bounds[i]:bounds[i + 1]],
                       class_ids=out_classes[bounds[i]:bounds[i + 1]])
            for i in range(num_images)]
