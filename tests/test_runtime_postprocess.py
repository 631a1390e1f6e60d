"""Darknet thresholding + (DIoU-)NMS: hand-computed cases, properties, and a per-class Python port of
darknet's src/box.c diounms_sort / do_nms_sort as the reference."""

import math
import warnings

import numpy as np
import pytest

import yolo4.runtime.postprocess as pp
from yolo4.errors import Yolo4DeprecationWarning
from yolo4.runtime.postprocess import (
    Detections,
    NmsParams,
    diou_nms,
    effective_beta,
    pairwise_diou,
    postprocess,
)
from yolo4.runtime.preprocess import Transform

#: a loop of postprocess that stops advancing fails the test at once (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("no_runaway_nms_loops")

# ---------------------------------------------------------------- darknet reference (written here)


def _darknet_overlap(a, b, beta):
    """box_iou / box_diounms of darknet src/box.c on x1y1x2y2 boxes, via darknet's centre form."""
    ax, ay, aw, ah = (a[0] + a[2]) / 2, (a[1] + a[3]) / 2, a[2] - a[0], a[3] - a[1]
    bx, by, bw, bh = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2, b[2] - b[0], b[3] - b[1]
    ow = min(ax + aw / 2, bx + bw / 2) - max(ax - aw / 2, bx - bw / 2)  # overlap()
    oh = min(ay + ah / 2, by + bh / 2) - max(ay - ah / 2, by - bh / 2)
    inter = 0.0 if ow < 0 or oh < 0 else ow * oh                      # box_intersection()
    union = aw * ah + bw * bh - inter                                   # box_union()
    iou = 0.0 if inter == 0 or union == 0 else inter / union           # box_iou()
    if beta is None:
        return iou
    cw = max(ax + aw / 2, bx + bw / 2) - min(ax - aw / 2, bx - bw / 2)  # box_c()
    ch = max(ay + ah / 2, by + bh / 2) - min(ay - ah / 2, by - bh / 2)
    c = cw * cw + ch * ch
    if c == 0:
        return iou
    d = (ax - bx) ** 2 + (ay - by) ** 2
    return iou - (d / c) ** beta


def _darknet_nms(boxes, scores, conf, thresh, beta, norm_wh, agnostic=False):
    """One image: per class (or all together), sort by score, zero the prob of every later box whose
    overlap with a surviving one exceeds thresh. Returns [(score, box_index, class)]."""
    n, c = scores.shape
    w, h = norm_wh
    nb = [np.asarray(b, np.float64) / [w, h, w, h] for b in boxes]
    groups = [list(range(c))] if agnostic else [[k] for k in range(c)]
    out = []
    for classes in groups:
        cand = [(float(scores[i, k]), i, k) for k in classes for i in range(n) if scores[i, k] > conf]
        cand.sort(key=lambda t: -t[0])  # stable: ties keep (class, box) order, as the vectorized one
        prob = [s for s, _, _ in cand]
        for i in range(len(cand)):
            if prob[i] == 0:
                continue
            for j in range(i + 1, len(cand)):
                if _darknet_overlap(nb[cand[i][1]], nb[cand[j][1]], beta) > thresh:
                    prob[j] = 0
        out += [cand[i] for i in range(len(cand)) if prob[i] > 0]
    return out


def _random_batch(seed, b=2, n=150, c=3, size=(320, 416)):
    rng = np.random.default_rng(seed)
    h, w = size
    xy = rng.uniform(0, [w * 0.8, h * 0.8], (b, n, 2))
    wh = rng.uniform(4, 100, (b, n, 2))
    boxes = np.concatenate([xy, xy + wh], -1).astype(np.float32)
    # clustered boxes: copies of a few boxes with jitter, so NMS has real work
    boxes[:, n // 2:] = boxes[:, :n - n // 2] + rng.normal(0, 6, (b, n - n // 2, 4)).astype(np.float32)
    boxes[..., 2:] = np.maximum(boxes[..., 2:], boxes[..., :2] + 1)
    scores = (rng.uniform(0, 1, (b, n, c)) ** 2).astype(np.float32)
    return boxes, scores


def _as_set(det):
    return sorted(zip(det.class_ids.tolist(), np.round(det.scores, 6).tolist(),
                      [tuple(np.round(b, 3)) for b in det.boxes.tolist()]))


# ---------------------------------------------------------------- hand-computed overlaps

def test_pairwise_diou_hand_computed():
    a = [0, 0, 10, 10]
    b = [2, 0, 12, 10]      # shifted by 2 in x
    # intersection 8*10 = 80, union 100 + 100 - 80 = 120 -> IoU 2/3
    # centres (5,5), (7,5): d^2 = 4; enclosing box 12x10: c^2 = 144 + 100 = 244
    iou = 80 / 120
    assert pairwise_diou([a], [b], None)[0, 0] == pytest.approx(iou)
    assert pairwise_diou([a], [b], 0.6)[0, 0] == pytest.approx(iou - (4 / 244) ** 0.6)   # 0.5818
    assert pairwise_diou([a], [b], 1.0)[0, 0] == pytest.approx(iou - 4 / 244)            # 0.6503
    # concentric: IoU 64/100, d = 0 -> no penalty
    assert pairwise_diou([a], [[1, 1, 9, 9]], 0.6)[0, 0] == pytest.approx(0.64)
    # disjoint, side by side: IoU 0; centres 20 apart, enclosing 30x10 -> c^2 = 1000
    assert pairwise_diou([a], [[20, 0, 30, 10]], 1.0)[0, 0] == pytest.approx(0 - 400 / 1000)
    # zero-size boxes on one point: intersection 0 -> IoU 0, enclosing diagonal 0 -> no penalty
    assert pairwise_diou([[5, 5, 5, 5]], [[5, 5, 5, 5]], 0.6)[0, 0] == 0.0
    # symmetric
    m = pairwise_diou([a, b], [a, b], 0.6)
    assert np.allclose(m, m.T) and np.allclose(np.diag(m), 1.0)


def test_kind_decides_suppression_hand_case():
    """IoU 0.667, DIoU(beta .6) 0.582, DIoU(beta 1) 0.650: threshold 0.6 separates them."""
    boxes = np.array([[[0, 0, 10, 10], [2, 0, 12, 10]]], np.float32)
    scores = np.array([[[0.9], [0.8]]], np.float32)

    def kept(kind, beta_nms):
        return len(postprocess(boxes, scores, NmsParams(0.25, 0.6, kind, beta_nms), input_hw=(10, 10))[0])

    assert kept("default", 0.6) == 1          # IoU 0.667 > 0.6
    assert kept("diounms", 0.6) == 2          # 0.667 - (4/244)^0.6 = 0.582 <= 0.6
    assert kept("diounms", 1.0) == 1          # 0.667 - 4/244 = 0.650 > 0.6
    # darknet GREEDY_NMS calls box_diou, whose exponent is hard-coded 0.6: beta_nms is ignored
    assert kept("greedynms", 1.0) == 2
    assert effective_beta("greedynms", 1.0) == 0.6 and effective_beta("diounms", 1.0) == 1.0
    assert effective_beta("default", 0.6) is None
    with pytest.raises(ValueError, match="nms_kind"):
        effective_beta("cornersnms", 0.6)


def test_nms_runs_on_coordinates_normalized_by_input_size():
    """W=400, H=100. Boxes 40x10 px shifted 8 px: normalized, the 10x10/shift-2 case (DIoU .582);
    in raw pixels d^2 = 64, c^2 = 48^2 + 10^2 = 2404 -> DIoU = 2/3 - (64/2404)^.6 = .553."""
    boxes = np.array([[[0, 0, 40, 10], [8, 0, 48, 10]]], np.float32)
    scores = np.array([[[0.9], [0.8]]], np.float32)
    assert pairwise_diou(boxes[0, :1], boxes[0, 1:], 0.6)[0, 0] == pytest.approx(2 / 3 - (64 / 2404) ** 0.6)
    thr = 0.57
    assert len(postprocess(boxes, scores, NmsParams(0.25, thr, "diounms", 0.6), input_hw=(100, 400))[0]) == 1
    assert len(postprocess(boxes, scores, NmsParams(0.25, thr, "diounms", 0.6), input_hw=None)[0]) == 2


def test_letterbox_transforms_switch_nms_frame_to_content_size():
    """Input 400x400 with a 400x100 letterboxed content: darknet normalizes by the content (the
    10x10 case, DIoU .582 > .57, suppressed); by the square input it is the raw-pixel case (.553)."""
    boxes = np.array([[[0, 150, 40, 160], [8, 150, 48, 160]]], np.float32)
    scores = np.array([[[0.9], [0.8]]], np.float32)
    t = Transform(scale_x=1.0, scale_y=1.0, pad_x=0.0, pad_y=150.0, orig_w=400, orig_h=100)
    assert t.content_wh == (400.0, 100.0)
    args = (boxes, scores, NmsParams(0.25, 0.57, "diounms", 0.6))
    assert len(postprocess(*args, input_hw=(400, 400))[0]) == 2
    assert len(postprocess(*args, input_hw=(400, 400), transforms=[t])[0]) == 1


# ---------------------------------------------------------------- thresholds, labels, limits

def test_threshold_is_strict_and_multilabel():
    boxes = np.array([[[0, 0, 10, 10], [50, 50, 60, 60]]], np.float32)
    scores = np.array([[[0.5, 0.75, 0.0], [0.25, 0.5, 0.5]]], np.float32)
    (det,) = postprocess(boxes, scores, NmsParams(score_threshold=0.5), input_hw=(64, 64))
    # only scores > 0.5: box 0 class 1 (0.75); 0.5 itself is not a candidate
    assert det.class_ids.tolist() == [1] and det.scores.tolist() == [0.75]
    (det,) = postprocess(boxes, scores, NmsParams(score_threshold=0.3), input_hw=(64, 64))
    # multi-label: box 0 -> classes 0 and 1; box 1 -> classes 1 and 2; identical boxes, different classes
    assert sorted(zip(det.class_ids.tolist(), det.scores.tolist())) == [(0, 0.5), (1, 0.5), (1, 0.75), (2, 0.5)]
    assert np.all(np.diff(det.scores) <= 0)
    assert det.boxes.dtype == np.float32 and det.scores.dtype == np.float32 and det.class_ids.dtype == np.int64


def test_class_agnostic_vs_per_class():
    boxes = np.array([[[0, 0, 10, 10], [1, 0, 11, 10]]], np.float32)   # IoU 90/110 = .82
    scores = np.array([[[0.9, 0.0], [0.0, 0.8]]], np.float32)
    (per_class,) = postprocess(boxes, scores, NmsParams(0.25, 0.45), input_hw=(32, 32))
    (agnostic,) = postprocess(boxes, scores, NmsParams(0.25, 0.45, class_agnostic=True), input_hw=(32, 32))
    assert per_class.class_ids.tolist() == [0, 1]
    assert agnostic.class_ids.tolist() == [0] and agnostic.scores.tolist() == [pytest.approx(0.9)]


def test_images_of_a_batch_do_not_suppress_each_other():
    boxes = np.tile(np.array([[[0, 0, 10, 10]]], np.float32), (3, 1, 1))
    scores = np.array([[[0.9]], [[0.8]], [[0.1]]], np.float32)
    dets = postprocess(boxes, scores, NmsParams(0.25, 0.45), input_hw=(32, 32))
    assert [len(d) for d in dets] == [1, 1, 0]


def test_zero_candidates_and_empty_batch_shapes():
    boxes = np.zeros((2, 5, 4), np.float32)
    scores = np.zeros((2, 5, 3), np.float32)
    dets = postprocess(boxes, scores, NmsParams(), input_hw=(32, 32))
    assert len(dets) == 2
    for d in dets:
        assert d.boxes.shape == (0, 4) and d.scores.shape == (0,) and d.class_ids.shape == (0,)
        assert d.class_ids.dtype == np.int64
    assert postprocess(np.zeros((0, 5, 4)), np.zeros((0, 5, 3)), NmsParams(), input_hw=(32, 32)) == []
    assert len(Detections()) == 0
    with pytest.raises(ValueError):
        postprocess(np.zeros((1, 5, 4)), np.zeros((1, 4, 3)))


def _grid_boxes(n, cell=20):
    """n disjoint boxes on a grid (no suppression between them)."""
    i = np.arange(n)
    x, y = (i % 50) * cell, (i // 50) * cell
    return np.stack([x, y, x + cell / 2, y + cell / 2], -1).astype(np.float32)


def test_max_det_keeps_top_scores():
    n = 40
    boxes = _grid_boxes(n)[None]
    scores = np.linspace(0.3, 0.99, n, dtype=np.float32)[None, :, None]
    (det,) = postprocess(boxes, scores, NmsParams(0.25, 0.45, max_output_boxes=7), input_hw=(1024, 1024))
    assert len(det) == 7
    assert np.array_equal(det.scores, np.sort(scores[0, :, 0])[::-1][:7])


def test_max_candidates_caps_nms_input_by_score():
    n = 120
    boxes = _grid_boxes(n)[None]
    rng = np.random.default_rng(3)
    scores = rng.uniform(0.3, 1.0, (1, n, 2)).astype(np.float32)
    (det,) = postprocess(boxes, scores, NmsParams(0.25, 0.45, max_output_boxes=1000, top_k=50), input_hw=(1024, 1024))
    assert len(det) == 50  # disjoint boxes, per-class NMS: every candidate survives
    assert np.array_equal(det.scores, np.sort(scores.ravel())[::-1][:50])


def test_huge_candidate_count_is_bounded(monkeypatch):
    """conf 0.001 over 10k boxes x 20 classes (~100k candidates): capped, returns max_det."""
    rng = np.random.default_rng(0)
    n, c = 10000, 20
    xy = rng.uniform(0, 600, (1, n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 150, (1, n, 2))], -1).astype(np.float32)
    scores = (rng.uniform(0, 1, (1, n, c)) ** 6).astype(np.float32)
    assert (scores > 0.001).sum() > 30000
    (det,) = postprocess(boxes, scores, NmsParams(0.001, 0.45, top_k=30000), input_hw=(608, 608))
    assert len(det) == 300 and np.all(np.diff(det.scores) <= 0)


# ---------------------------------------------------------------- properties + reference

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_properties_subset_sorted_and_no_kept_pair_over_threshold(seed):
    boxes, scores = _random_batch(seed)
    thr, beta, conf = 0.45, 0.6, 0.1
    dets = postprocess(boxes, scores, NmsParams(conf, thr, "diounms", beta, max_output_boxes=10**6), input_hw=(320, 416))
    norm = np.array([416, 320, 416, 320], np.float64)
    for b, det in enumerate(dets):
        assert np.all(np.diff(det.scores) <= 0)
        # subset: every detection is an input (box, class) with that score, above conf
        cand = {(tuple(np.round(boxes[b, i], 4)), k): scores[b, i, k]
                for i, k in zip(*np.nonzero(scores[b] > conf))}
        for box, s, k in zip(det.boxes, det.scores, det.class_ids):
            assert cand[(tuple(np.round(box, 4)), int(k))] == s
        # no kept pair of one class overlaps above the threshold (computed here, darknet formula)
        for k in np.unique(det.class_ids):
            kb = det.boxes[det.class_ids == k]
            for i in range(len(kb)):
                for j in range(i + 1, len(kb)):
                    assert _darknet_overlap(kb[i] / norm, kb[j] / norm, beta) <= thr
        # maximal: every dropped candidate overlaps a kept, higher-scored box of its class
        kept = set(zip(map(tuple, np.round(det.boxes, 4)), det.class_ids.tolist()))
        for (box, k), s in cand.items():
            if (box, k) in kept:
                continue
            same = (det.class_ids == k) & (det.scores >= s)
            assert any(_darknet_overlap(kb / norm, np.array(box) / norm, beta) > thr
                       for kb in det.boxes[same])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("kind, beta_nms, beta", [("diounms", 0.6, 0.6), ("diounms", 1.0, 1.0),
                                                  ("greedynms", 0.6, 0.6), ("default", 0.6, None)])
@pytest.mark.parametrize("agnostic", [False, True])
def test_equals_darknet_reference(seed, kind, beta_nms, beta, agnostic):
    boxes, scores = _random_batch(seed)
    dets = postprocess(boxes, scores, NmsParams(0.1, 0.45, kind, beta_nms, class_agnostic=agnostic, max_output_boxes=10**6), input_hw=(320, 416))
    for b, det in enumerate(dets):
        ref = _darknet_nms(boxes[b], scores[b], 0.1, 0.45, beta, (416, 320), agnostic)
        expected = Detections(boxes[b, [i for _, i, _ in ref]].reshape(-1, 4),
                              np.array([s for s, _, _ in ref], np.float32),
                              np.array([k for _, _, k in ref], np.int64))
        assert _as_set(det) == _as_set(expected)


def _cross_block_suppressions(boxes, scores, conf, thresh, beta, norm_wh, block):
    """Per class, candidates in score order (as :func:`_darknet_nms` orders them): how many are
    suppressed, in the reference, by a kept candidate of an earlier ``block`` of that class."""
    kept = {(i, k) for _, i, k in _darknet_nms(boxes, scores, conf, thresh, beta, norm_wh)}
    w, h = norm_wh
    nb = np.asarray(boxes, np.float64) / [w, h, w, h]
    count = 0
    for k in range(scores.shape[1]):
        cand = sorted((i for i in range(scores.shape[0]) if scores[i, k] > conf), key=lambda i: -scores[i, k])
        for j, bj in enumerate(cand):
            first = j // block * block
            if (bj, k) not in kept and any((bi, k) in kept and _darknet_overlap(nb[bi], nb[bj], beta) > thresh
                                           for bi in cand[:first]):
                count += 1
    return count


@pytest.mark.parametrize("beta", [0.6, 1.0, None])
def test_multi_block_path_equals_reference(monkeypatch, beta):
    """The dense block path (:func:`_greedy_dense`, taken by groups with more than ``PAIR_BUDGET``
    same-group pairs, here forced with ``PAIR_BUDGET = 0``) with blocks of 7 candidates: each class
    spans several blocks, and candidates of later blocks are suppressed by boxes kept in earlier
    ones (checked on the reference). Equals the darknet port."""
    monkeypatch.setattr(pp, "NMS_BLOCK", 7)
    monkeypatch.setattr(pp, "PAIR_BUDGET", 0)
    dense_sizes, pair_sizes = [], []
    dense, pairs = pp._greedy_dense, pp._greedy_pairs

    def recording(sizes, fn):
        def inner(b, *a, **k):
            sizes.append(len(b))
            assert len(dense_sizes) + len(pair_sizes) <= 10, "NMS kernels called in a loop"
            return fn(b, *a, **k)
        return inner

    monkeypatch.setattr(pp, "_greedy_dense", recording(dense_sizes, dense))
    monkeypatch.setattr(pp, "_greedy_pairs", recording(pair_sizes, pairs))
    boxes, scores = _random_batch(5, b=1, n=120, c=2)
    params = (NmsParams(0.05, 0.45, "diounms", beta, max_output_boxes=10**6) if beta is not None else
              NmsParams(0.05, 0.45, "default", 0.6, max_output_boxes=10**6))
    (det,) = postprocess(boxes, scores, params, input_hw=(320, 416))
    # both classes went through the dense path, each over several blocks; no group took the pair path
    assert len(dense_sizes) == 2 and min(dense_sizes) > 3 * 7 and pair_sizes == []
    assert _cross_block_suppressions(boxes[0], scores[0], 0.05, 0.45, beta, (416, 320), 7) > 0
    ref = _darknet_nms(boxes[0], scores[0], 0.05, 0.45, beta, (416, 320))
    expected = Detections(boxes[0, [i for _, i, _ in ref]].reshape(-1, 4),
                          np.array([s for s, _, _ in ref], np.float32), np.array([k for _, _, k in ref]))
    assert _as_set(det) == _as_set(expected)


def test_diou_nms_reference_function():
    rng = np.random.default_rng(7)
    xy = rng.uniform(0, 1, (200, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0.02, 0.3, (200, 2))], 1)
    scores = rng.uniform(0, 1, 200)
    for beta in (0.6, 1.0, None):
        keep = diou_nms(boxes, scores, 0.45, beta)
        assert keep.dtype == np.int64 and np.all(np.diff(scores[keep]) <= 0)
        ref = _darknet_nms(boxes, scores[:, None], -1.0, 0.45, beta, (1, 1))
        assert sorted(keep.tolist()) == sorted(i for _, i, _ in ref)
    # groups = classes: equal to per-class runs
    groups = rng.integers(0, 3, 200)
    keep = diou_nms(boxes, scores, 0.45, 0.6, groups=groups)
    per_class = sorted(int(np.flatnonzero(groups == g)[i]) for g in range(3)
                       for i in diou_nms(boxes[groups == g], scores[groups == g], 0.45, 0.6))
    assert sorted(keep.tolist()) == per_class
    assert diou_nms(np.zeros((0, 4)), np.zeros(0)).shape == (0,)


def test_fixed_point_handles_suppression_chains():
    """A chain 0 -> 1 -> 2 -> 3 where each box overlaps only its neighbours: greedy keeps 0 and 2
    (1 is suppressed by 0, so it cannot suppress 2; 3 is suppressed by 2)."""
    boxes = np.array([[0, 0, 10, 10], [3, 0, 13, 10], [6, 0, 16, 10], [9, 0, 19, 10]], np.float64)
    # neighbours: IoU 70/130 = .54; two apart: IoU 40/160 = .25; three apart: 10/190
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    assert diou_nms(boxes, scores, 0.45, None).tolist() == [0, 2]
    assert math.isclose(pairwise_diou(boxes[:1], boxes[1:2], None)[0, 0], 70 / 130)


def _record_passes(monkeypatch):
    """Wrap :func:`_postprocess_chunk`: the returned list gets the image count of each pass; more than
    10 passes is a loop."""
    chunk, passes = pp._postprocess_chunk, []

    def recording(boxes, *args):
        passes.append(boxes.shape[0])
        assert len(passes) <= 10, f"postprocess made over 10 passes: {passes}"
        return chunk(boxes, *args)

    monkeypatch.setattr(pp, "_postprocess_chunk", recording)
    return passes


def test_batch_split_into_candidate_budget_passes_gives_the_same_result(monkeypatch):
    boxes, scores = _random_batch(11, b=4, n=100, c=3)
    passes = _record_passes(monkeypatch)
    whole = postprocess(boxes, scores, NmsParams(0.1, 0.45, max_output_boxes=10**6), input_hw=(320, 416))
    assert passes == [4]  # the default budget: the batch in one pass
    monkeypatch.setattr(pp, "CANDIDATE_BUDGET", 50)  # < one image's candidates: one pass per image
    parts = postprocess(boxes, scores, NmsParams(0.1, 0.45, max_output_boxes=10**6), input_hw=(320, 416))
    assert passes == [4, 1, 1, 1, 1]
    assert len(parts) == 4 and sum(len(d) for d in parts) > 0
    assert [_as_set(d) for d in parts] == [_as_set(d) for d in whole]


# ---------------------------------------------------------------- NmsParams: the one parameter struct


@pytest.mark.parametrize("field, value", [
    ("score_threshold", 1.5), ("score_threshold", -0.1), ("score_threshold", float("nan")),
    ("iou_threshold", 2.0), ("nms_kind", "cornersnms"), ("beta_nms", 0.0), ("beta_nms", float("inf")),
    ("max_output_boxes", 0), ("top_k", 0), ("top_k", 2.5), ("class_agnostic", "yes"),
])
def test_nms_params_reject_out_of_range_fields(field, value):
    with pytest.raises(ValueError, match=field):
        NmsParams(**{field: value})


def test_nms_params_for_model_take_kind_from_the_cfg_and_name_plugin_attributes():
    from yolo4.model_info import ModelInfo

    info = ModelInfo(names=["a"], input_hw=(32, 32), nms_kind="diounms", beta_nms=1.0)
    p = NmsParams.for_model(info, score_threshold=0.1, max_output_boxes=5)
    assert (p.nms_kind, p.beta, p.score_threshold, p.max_output_boxes) == ("diounms", 1.0, 0.1, 5)
    assert set(p.as_dict()) == {"score_threshold", "iou_threshold", "nms_kind", "beta_nms",
                                "max_output_boxes", "top_k", "class_agnostic"}
    assert NmsParams(nms_kind="greedynms", beta_nms=1.0).beta == 0.6  # darknet's box_diou exponent


# ---------------------------------------------------------------- every NMS path, routing, edge cases

NMS_PATHS = ["pairs", "dense", "dense-blocks"]


def _force_path(monkeypatch, path):
    """'pairs': the default sparse path (same-group pairs only); 'dense': every group with a pair goes to
    the pairwise-matrix path (``PAIR_BUDGET = 0``); 'dense-blocks': the same in blocks of 2 candidates,
    so that a third candidate is checked against the boxes kept in an earlier block. Returns the list
    of (kernel, candidates) calls (see :func:`_record_nms_calls`)."""
    if path != "pairs":
        monkeypatch.setattr(pp, "PAIR_BUDGET", 0)
    if path == "dense-blocks":
        monkeypatch.setattr(pp, "NMS_BLOCK", 2)
    calls = []
    _record_nms_calls(monkeypatch, calls, limit=100)
    return calls


def _run(boxes, scores, **params):
    """One image, one class: the kept scores, highest first."""
    b = np.array([boxes], np.float32)
    s = np.array(scores, np.float32)[None, :, None]
    input_hw = params.pop("input_hw", None)
    return postprocess(b, s, NmsParams(**params), input_hw=input_hw)[0].scores.tolist()


@pytest.mark.parametrize("path", NMS_PATHS)
def test_hand_decisions_are_the_same_on_every_nms_path(monkeypatch, path):
    calls = _force_path(monkeypatch, path)
    # IoU 2/3, DIoU(beta .6) .582, DIoU(beta 1) .650 (test_kind_decides_suppression_hand_case), threshold .6
    shift2 = [[0, 0, 10, 10], [2, 0, 12, 10]]
    assert _run(shift2, [0.9, 0.8], iou_threshold=0.6, nms_kind="default") == pytest.approx([0.9])
    assert _run(shift2, [0.9, 0.8], iou_threshold=0.6, nms_kind="diounms") == pytest.approx([0.9, 0.8])
    assert _run(shift2, [0.9, 0.8], iou_threshold=0.6, nms_kind="diounms", beta_nms=1.0) == pytest.approx([0.9])
    # a third box chained behind: 0 suppresses 1 (IoU .667), 1 would suppress 2 (IoU .667) but is gone;
    # 0 and 2 (shift 4: IoU 60/140 = .43) stay
    chain = shift2 + [[4, 0, 14, 10]]
    assert _run(chain, [0.9, 0.8, 0.7], iou_threshold=0.45, nms_kind="default") == pytest.approx([0.9, 0.7])
    # IoU exactly 1/2: suppressed only by a threshold under it (strict >)
    half = [[0, 0, 2, 1], [0, 0, 1, 1]]
    assert _run(half, [0.9, 0.8], iou_threshold=0.5, nms_kind="default") == pytest.approx([0.9, 0.8])
    assert _run(half, [0.9, 0.8], iou_threshold=0.49, nms_kind="default") == pytest.approx([0.9])
    # DIoU exactly 15/32: a = [0,0,4,4], b = [0,0,4,2]: IoU 8/16; centres (2,2), (2,1): d^2 = 1; enclosing
    # 4x4: c^2 = 32; beta 1: 1/2 - 1/32 = 15/32 = 0.46875 (a binary fraction: computed exactly)
    tie = [[0, 0, 4, 4], [0, 0, 4, 2]]
    assert _run(tie, [0.9, 0.8], iou_threshold=0.46875, nms_kind="diounms", beta_nms=1.0) == pytest.approx([0.9, 0.8])
    assert _run(tie, [0.9, 0.8], iou_threshold=0.46, nms_kind="diounms", beta_nms=1.0) == pytest.approx([0.9])
    assert _run(tie, [0.9, 0.8], iou_threshold=0.46875, nms_kind="default") == pytest.approx([0.9])  # IoU .5
    # two boxes covering the whole 416x416 input: normalized, both are [0,0,1,1]: IoU 1/1 = 1, d = 0
    full = [[0, 0, 416, 416], [0, 0, 416, 416]]
    for kind in ("default", "greedynms"):
        assert _run(full, [0.9, 0.8], nms_kind=kind, input_hw=(416, 416)) == pytest.approx([0.9])
    # boxes with x2 < x1 (a broken model's output): darknet's box_intersection is 0 for a negative
    # width, so they never suppress each other, on any path
    inverted = [[10, 0, 0, 10], [9, 0, 1, 10]]
    assert _darknet_overlap(inverted[0], inverted[1], None) == 0.0
    assert _run(inverted, [0.9, 0.8], nms_kind="default") == pytest.approx([0.9, 0.8])
    # each run above went through the path under test
    assert len(calls) == 12 and {kind for kind, _ in calls} == {"pairs" if path == "pairs" else "dense"}


def _reference_keep(boxes, scores, groups, thresh, beta):
    """Indices kept by the darknet port, group by group."""
    kept = []
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        ref = _darknet_nms(boxes[idx], scores[idx, None], -math.inf, thresh, beta, (1, 1))
        kept += [int(idx[i]) for _, i, _ in ref]
    return sorted(kept)


@pytest.mark.parametrize("block", [1024, 5])
def test_diou_nms_negative_threshold_equals_reference(monkeypatch, block):
    """A threshold under 0 (where even disjoint boxes can 'overlap': IoU 0, DIoU < 0) takes the dense path
    for all groups at once. Groups of 6, 8 and 5 boxes (interleaved): with blocks of 5 a block starts on a
    group's last box and another starts inside a group (checked against that group's earlier kept boxes)."""
    monkeypatch.setattr(pp, "NMS_BLOCK", block)
    rng = np.random.default_rng(21)
    groups = rng.permutation(np.repeat([0, 1, 2], [6, 8, 5]))
    xy = rng.uniform(0, 1, (19, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0.02, 0.3, (19, 2))], 1)
    scores = rng.uniform(0.1, 1, 19)
    for beta in (0.6, 1.0, None):
        for thresh in (-0.3, -0.05):
            keep = diou_nms(boxes, scores, thresh, beta, groups=groups)
            assert sorted(keep.tolist()) == _reference_keep(boxes, scores, groups, thresh, beta)
            assert np.all(np.diff(scores[keep]) <= 0)
            if beta is None:  # IoU >= 0 > thresh: the best box of each group suppresses all the others
                assert sorted(keep.tolist()) == sorted(int(np.flatnonzero(groups == g)[np.argmax(scores[groups == g])])
                                                       for g in range(3))
            else:  # the DIoU penalty keeps far-apart boxes (DIoU < thresh)
                assert len(keep) > 3
    # one box alone is kept; the threshold stays strict below 0: a = [0,0,1,1], b = [2,0,3,1]: IoU 0,
    # centres 2 apart (d^2 = 4), enclosing 3x1 (c^2 = 10): DIoU(beta 1) = -4/10
    assert diou_nms([[0, 0, 1, 1]], [0.5], -0.5).tolist() == [0]
    pair = [[0, 0, 1, 1], [2, 0, 3, 1]]
    assert diou_nms(pair, [0.9, 0.8], -0.4, 1.0).tolist() == [0, 1]
    assert diou_nms(pair, [0.9, 0.8], -0.41, 1.0).tolist() == [0]
    assert diou_nms(pair, [0.9, 0.8], -0.41, None).tolist() == [0]  # IoU 0 > -0.41


def _record_nms_calls(monkeypatch, calls, limit=20):
    """Wrap the two NMS kernels: record (kind, candidates) of each call; more than ``limit`` calls is a loop."""
    dense, pairs = pp._greedy_dense, pp._greedy_pairs

    def wrap(kind, fn):
        def inner(boxes, *args, **kwargs):
            calls.append((kind, len(boxes)))
            assert len(calls) <= limit, f"NMS kernels called over {limit} times: {calls[:limit]}"
            return fn(boxes, *args, **kwargs)
        return inner

    monkeypatch.setattr(pp, "_greedy_dense", wrap("dense", dense))
    monkeypatch.setattr(pp, "_greedy_pairs", wrap("pairs", pairs))


def test_groups_are_routed_whole_within_the_pair_budget(monkeypatch):
    """PAIR_BUDGET = 3, groups of 2, 3, 1, 4, 2, 2, 2, 2 boxes = 1, 3, 0, 6, 1, 1, 1, 1 same-group pairs.
    Runs of consecutive whole groups with at most 3 pairs in all go to the pair path: [g0] (adding g1
    makes 4 pairs), [g1, g2] (3 pairs: exactly the budget), then g3 (6 pairs > 3) alone to the dense
    path, then [g4, g5, g6] (3 pairs) and [g7]. Each candidate is in exactly one call, and the result
    is the per-group reference's."""
    monkeypatch.setattr(pp, "PAIR_BUDGET", 3)
    calls = []
    _record_nms_calls(monkeypatch, calls)
    sizes = [2, 3, 1, 4, 2, 2, 2, 2]
    rng = np.random.default_rng(4)
    groups = rng.permutation(np.repeat(np.arange(8), sizes))
    # each group: jittered copies of one 20x20 box, so that NMS suppresses within groups
    base = rng.uniform(0, 100, (8, 2))[groups]
    boxes = np.concatenate([base, base + 20], 1) + rng.normal(0, 3, (groups.size, 4))
    scores = rng.uniform(0.1, 1, groups.size)
    keep = diou_nms(boxes, scores, 0.45, 0.6, groups=groups)
    assert calls == [("pairs", 2), ("pairs", 4), ("dense", 4), ("pairs", 6), ("pairs", 2)]
    assert sorted(keep.tolist()) == _reference_keep(boxes, scores, groups, 0.45, 0.6)
    assert len(keep) < groups.size  # suppression happened


def test_images_are_gathered_in_candidate_budget_passes(monkeypatch):
    """CANDIDATE_BUDGET = 4, images with 3, 1, 5, 2, 2, 1 candidates: passes [0, 1] (4 candidates), [2]
    (5: alone, over the budget), [3, 4] (4), [5]. Each image in exactly one pass, with all its own
    detections (disjoint boxes: nothing suppressed)."""
    monkeypatch.setattr(pp, "CANDIDATE_BUDGET", 4)
    passes = _record_passes(monkeypatch)
    counts = [3, 1, 5, 2, 2, 1]
    boxes = np.tile(_grid_boxes(6)[None], (6, 1, 1))
    scores = np.zeros((6, 6, 2), np.float32)
    for i, n in enumerate(counts):
        scores[i, :n, 1] = np.linspace(0.9, 0.5, n)
    dets = postprocess(boxes, scores, NmsParams(0.25, 0.45), input_hw=(1024, 1024))
    assert passes == [2, 1, 2, 1]
    assert [len(d) for d in dets] == counts
    for i, d in enumerate(dets):
        assert d.scores.tolist() == pytest.approx(np.linspace(0.9, 0.5, counts[i]).tolist())
        assert np.array_equal(d.boxes, _grid_boxes(6)[:counts[i]]) and d.class_ids.tolist() == [1] * counts[i]


def test_postprocess_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"expected boxes \[B,N,4\].*got \(1, 2, 5\) and \(1, 2, 3\)"):
        postprocess(np.zeros((1, 2, 5)), np.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match=r"got \(1, 2, 1, 4\) and \(1, 2, 3\)"):  # 4-D boxes
        postprocess(np.zeros((1, 2, 1, 4)), np.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match=r"got \(2, 4\) and \(1, 2, 3\)"):  # one image without its batch axis
        postprocess(np.zeros((2, 4)), np.zeros((1, 2, 3)))
    t = Transform(1.0, 1.0, 0.0, 0.0, 32, 32)
    with pytest.raises(ValueError, match="2 transforms for a batch of 1"):
        postprocess(np.zeros((1, 2, 4)), np.zeros((1, 2, 3)), transforms=[t, t])
    with pytest.raises(ValueError, match=r"boxes \(3, 4\) and scores \(2,\) differ in length"):
        diou_nms(np.zeros((3, 4)), np.zeros(2))


def test_integer_boxes_are_computed_in_float():
    """Integer inputs (lists of ints, uint8 arrays) give the float results: no integer division,
    no uint8 wrap-around of areas (200 * 200 = 40000)."""
    a, b = [0, 0, 200, 200], [100, 0, 250, 200]
    # intersection 100x200 = 20000, union 40000 + 30000 - 20000 = 50000: IoU 0.4; centres (100,100),
    # (175,100): d^2 = 75^2 = 5625; enclosing 250x200: c^2 = 62500 + 40000 = 102500
    u8 = np.array([a, b], np.uint8)
    assert pairwise_diou(u8[:1], u8[1:], None)[0, 0] == pytest.approx(0.4)
    assert pairwise_diou(u8[:1], u8[1:], 0.6)[0, 0] == pytest.approx(0.4 - (5625 / 102500) ** 0.6)
    assert np.allclose(pairwise_diou(u8, u8, None), [[1.0, 0.4], [0.4, 1.0]])
    # diou_nms on a list of ints: shift 2 (DIoU .582 > .45: suppressed), a disjoint box kept
    assert diou_nms([[0, 0, 10, 10], [2, 0, 12, 10], [50, 50, 60, 60]], [0.9, 0.8, 0.7]).tolist() == [0, 2]
    assert diou_nms(u8, np.array([0.9, 0.8]), 0.3, None).tolist() == [0]   # IoU .4 > .3
    assert diou_nms(u8, np.array([0.9, 0.8]), 0.45, None).tolist() == [0, 1]


def test_diou_nms_defaults_are_darknets():
    """iou_threshold 0.45 and beta 0.6. Shift 2 of a 10x10 box: DIoU .582 > .45, suppressed. Shift 3: IoU
    70/130 = .538; d^2 = 9, c^2 = 13^2 + 10^2 = 269: (9/269)^.6 = .130: DIoU .408 <= .45, kept (with
    beta 1.6 it would be .538 - .0044 = .534 and suppressed)."""
    assert diou_nms([[0, 0, 10, 10], [2, 0, 12, 10]], [0.9, 0.8]).tolist() == [0]
    shift3 = [[0, 0, 10, 10], [3, 0, 13, 10]]
    assert pairwise_diou(shift3[:1], shift3[1:], 0.6)[0, 0] == pytest.approx(70 / 130 - (9 / 269) ** 0.6)
    assert diou_nms(shift3, [0.9, 0.8]).tolist() == [0, 1]
    assert diou_nms(shift3, [0.9, 0.8], beta=1.6).tolist() == [0]


def test_diou_nms_iou_threshold_keyword_and_its_old_name():
    """``iou_threshold`` (``NmsParams``' name) is the keyword; ``iou_thresh`` still works for one release
    with one Yolo4DeprecationWarning naming the new keyword; both at once is a TypeError."""
    shift2 = [[0, 0, 10, 10], [2, 0, 12, 10]]  # IoU 80/120 = .667
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert diou_nms(shift2, [0.9, 0.8], iou_threshold=0.7, beta=None).tolist() == [0, 1]
        assert diou_nms(shift2, [0.9, 0.8], 0.6, None).tolist() == [0]  # positional: unchanged
    with pytest.warns(Yolo4DeprecationWarning, match=r"iou_thresh= is renamed iou_threshold=") as rec:
        assert diou_nms(shift2, [0.9, 0.8], iou_thresh=0.7, beta=None).tolist() == [0, 1]
    assert len(rec) == 1 and issubclass(rec[0].category, DeprecationWarning)
    assert rec[0].filename == __file__  # points at the caller's line
    with pytest.raises(TypeError, match=r"both iou_threshold and its old name iou_thresh="):
        diou_nms(shift2, [0.9, 0.8], iou_threshold=0.7, iou_thresh=0.7)
    with pytest.raises(TypeError, match=r"both iou_threshold and its old name iou_thresh="):
        diou_nms(shift2, [0.9, 0.8], 0.7, iou_thresh=0.7)
    with pytest.raises(TypeError, match="iou_treshold"):  # a misspelling is still an error
        diou_nms(shift2, [0.9, 0.8], iou_treshold=0.7)


def test_diou_nms_output_ties_keep_the_lower_index_first():
    """40 disjoint boxes, two groups, 5 boxes per score value (each value in one group only): the output
    is by score descending, equal scores in index order."""
    values = np.repeat([0.9, 0.7, 0.5, 0.3, 0.8, 0.6, 0.4, 0.2], 5)
    groups = np.repeat([0, 1], 20)
    perm = np.random.default_rng(5).permutation(40)
    scores, groups = values[perm], groups[perm]
    keep = diou_nms(_grid_boxes(40), scores, 0.45, 0.6, groups=groups)
    assert keep.tolist() == sorted(range(40), key=lambda i: (-scores[i], i))
    assert keep.dtype == np.int64


def test_diou_nms_takes_column_scores_and_groups():
    """scores and groups of shape [K, 1] (a model's column output) are the same as [K]."""
    boxes = [[0, 0, 10, 10], [2, 0, 12, 10], [50, 50, 60, 60], [51, 50, 61, 60]]
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    groups = np.array([0, 0, 1, 2])
    flat = diou_nms(boxes, scores, 0.45, 0.6, groups=groups)
    assert flat.tolist() == [3, 0, 2]  # 1 suppressed by 0; 2 and 3 in different groups
    assert diou_nms(boxes, scores[:, None], 0.45, 0.6, groups=groups[:, None]).tolist() == flat.tolist()
    assert diou_nms(boxes, scores[:, None], 0.45, 0.6).tolist() == [3, 0]  # one group: 3 suppresses 2


def test_overlap_is_zero_for_boxes_apart_along_y():
    """Boxes overlapping in x but 90 px apart in y: IoU 0 (not a negative 'intersection' of 10 x -90);
    DIoU(beta 1) = -d^2/c^2 with centres (5,5), (5,105): d^2 = 10000, enclosing 10x110: c^2 = 12200."""
    a, b = [[0, 0, 10, 10]], [[0, 100, 10, 110]]
    assert pairwise_diou(a, b, None)[0, 0] == 0.0
    assert pairwise_diou(a, b, 1.0)[0, 0] == pytest.approx(-10000 / 12200)
    # as a suppression decision under a negative threshold: IoU 0 > -0.5 suppresses
    assert diou_nms(a + b, [0.9, 0.8], -0.5, None).tolist() == [0]


def test_no_warnings_on_ordinary_and_degenerate_boxes():
    """No numpy warning (0/0, uninitialized output) on zero-size, coincident, disjoint or overlapping
    boxes, on either NMS path."""
    boxes = np.array([[5, 5, 5, 5], [5, 5, 5, 5], [0, 0, 10, 10], [2, 0, 12, 10], [20, 0, 30, 10],
                      [0, 20, 0, 30]], np.float64)
    scores = np.linspace(0.9, 0.4, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = pairwise_diou(boxes, boxes, 0.6)
        assert m[0, 1] == 0.0 and m[2, 3] == pytest.approx(2 / 3 - (4 / 244) ** 0.6)
        diou_nms(boxes, scores, 0.45, 0.6)
        diou_nms(boxes, scores, -0.2, 0.6)
        postprocess(boxes[None].astype(np.float32), scores[None, :, None].astype(np.float32), NmsParams(0.1),
                    input_hw=(32, 32))
