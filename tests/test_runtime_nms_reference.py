"""The numpy DIoU-NMS reference (:func:`yolo4.runtime.postprocess.postprocess`) that the exported NMS
nodes and the TensorRT plugin are held to: properties (idempotence, input-order invariance, beta ->
infinity = IoU-NMS, thresholding commutes with NMS), darknet's src/box.c formulas on hand-computed
cases, class-agnostic mode, the top_k / max_output_boxes limits, and the EfficientNMS-layout helpers
of :mod:`yolo4.runtime.detector`."""

import warnings

import numpy as np
import pytest

from yolo4.errors import Yolo4Warning
from yolo4.nms_params import NmsParams, nms_metadata, read_nms_metadata
from yolo4.runtime.backends.base import Backend
from yolo4.runtime.detector import (
    Detector,
    baked_nms_conflicts,
    detections_from_nms_outputs,
    reference_nms_outputs,
)
from yolo4.runtime.postprocess import pairwise_diou, postprocess

HW = (416, 416)


#: a loop of postprocess that stops advancing fails the test at once (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("no_runaway_nms_loops")


def _batch(seed, b=3, n=400, c=5, hw=HW):
    """Clustered boxes (copies of a few with jitter: NMS has work) and squared-uniform scores, no ties."""
    rng = np.random.default_rng(seed)
    h, w = hw
    xy = rng.uniform(0, [w * 0.8, h * 0.8], (b, n, 2))
    wh = rng.uniform(8, 120, (b, n, 2))
    boxes = np.concatenate([xy, xy + wh], -1)
    boxes[:, n // 2:] = boxes[:, :n - n // 2] + rng.normal(0, 8, (b, n - n // 2, 4))
    boxes[..., 2:] = np.maximum(boxes[..., 2:], boxes[..., :2] + 1)
    scores = rng.uniform(0, 1, (b, n, c)) ** 2
    return boxes.astype(np.float32), scores.astype(np.float32)


def _key(det):
    """A detection set as sorted (class, score, box) tuples: comparable regardless of order."""
    return sorted(zip(det.class_ids.tolist(), det.scores.tolist(), map(tuple, det.boxes.tolist())))


def _as_inputs(dets, num_classes):
    """Detections -> decoded outputs holding exactly them (one box per detection, its class's score)."""
    n = max(len(d) for d in dets)
    boxes = np.zeros((len(dets), max(n, 1), 4), np.float32)
    scores = np.zeros((len(dets), max(n, 1), num_classes), np.float32)
    for i, d in enumerate(dets):
        boxes[i, :len(d)] = d.boxes
        scores[i, np.arange(len(d)), d.class_ids] = d.scores
    return boxes, scores


PARAMS = [NmsParams(score_threshold=0.05, nms_kind=k, beta_nms=b, class_agnostic=a)
          for k, b in (("greedynms", 0.6), ("diounms", 1.0), ("default", 0.6)) for a in (False, True)]


# ---------------------------------------------------------------------------------------- properties

@pytest.mark.parametrize("params", PARAMS, ids=lambda p: f"{p.nms_kind}-{'agnostic' if p.class_agnostic else 'class'}")
def test_idempotent_nms_of_its_own_output_keeps_everything(params):
    boxes, scores = _batch(0)
    dets = postprocess(boxes, scores, params, input_hw=HW)
    assert sum(len(d) for d in dets) > 50
    again = postprocess(*_as_inputs(dets, scores.shape[2]), params, input_hw=HW)
    assert [_key(d) for d in again] == [_key(d) for d in dets]


@pytest.mark.parametrize("params", PARAMS[:2] + PARAMS[4:5], ids=lambda p: f"{p.nms_kind}-{p.class_agnostic}")
def test_input_order_invariance(params):
    """Permuting the boxes changes nothing (scores are continuous random: no ties)."""
    boxes, scores = _batch(1)
    want = postprocess(boxes, scores, params, input_hw=HW)
    perm = np.random.default_rng(2).permutation(boxes.shape[1])
    got = postprocess(boxes[:, perm], scores[:, perm], params, input_hw=HW)
    assert [_key(d) for d in got] == [_key(d) for d in want]


def test_ties_keep_the_lower_index_first():
    """Equal scores: the lower box index is processed first and suppresses the other -- order matters
    only here (darknet's qsort leaves ties unspecified)."""
    boxes = np.array([[[0, 0, 10, 10], [1, 1, 11, 11]]], np.float32)
    scores = np.full((1, 2, 1), 0.5, np.float32)
    p = NmsParams(nms_kind="default")
    assert postprocess(boxes, scores, p)[0].boxes.tolist() == [[0, 0, 10, 10]]
    assert postprocess(boxes[:, ::-1], scores, p)[0].boxes.tolist() == [[1, 1, 11, 11]]


def test_large_beta_is_iou_nms():
    """(d^2/c^2)^beta -> 0 as beta -> infinity (d < c for boxes of positive size): DIoU-NMS -> IoU-NMS."""
    boxes, scores = _batch(3)
    run = lambda kind, beta: postprocess(boxes, scores, NmsParams(  # noqa: E731
        score_threshold=0.05, nms_kind=kind, beta_nms=beta, max_output_boxes=10_000), input_hw=HW)
    iou, big, small = run("default", 0.6), run("diounms", 1e6), run("diounms", 0.6)
    assert [_key(d) for d in big] == [_key(d) for d in iou]
    # and the penalty does matter at darknet's beta: DIoU-NMS keeps more
    assert sum(map(len, small)) > sum(map(len, iou))


@pytest.mark.parametrize("seed", [4, 5])
def test_thresholding_commutes_with_nms(seed):
    """NMS at a higher score threshold = the lower threshold's result, filtered (a box never suppresses a
    higher-scored one): what lets a model with NMS in its graph honour a higher --conf exactly."""
    boxes, scores = _batch(seed)
    low = postprocess(boxes, scores, NmsParams(score_threshold=0.01), input_hw=HW)
    high = postprocess(boxes, scores, NmsParams(score_threshold=0.3), input_hw=HW)
    assert [_key(d) for d in high] == [sorted(t for t in _key(d) if t[1] > 0.3) for d in low]


# ---------------------------------------------------------------------------- darknet, by hand

def test_darknet_diou_hand_cases():
    """src/box.c box_iou / box_diou / box_diounms on boxes computed by hand (x1, y1, x2, y2)."""
    a, b = [0, 0, 4, 4], [1, 1, 5, 5]
    # intersection 3x3 = 9, union 16 + 16 - 9 = 23: IoU = 9/23 = 0.391304
    # enclosing box [0,0,5,5]: c^2 = 5^2 + 5^2 = 50; centres (2,2), (3,3): d^2 = 1 + 1 = 2; d^2/c^2 = 0.04
    # beta 0.6 (greedynms): 0.04^0.6 = exp(0.6 * ln 0.04) = exp(0.6 * -3.218876) = exp(-1.931326) = 0.144956
    #   DIoU = 0.391304 - 0.144956 = 0.246348
    # beta 1 (the paper's R_DIoU): 0.391304 - 0.04 = 0.351304
    assert pairwise_diou([a], [b], None)[0, 0] == pytest.approx(0.391304, abs=1e-6)
    assert pairwise_diou([a], [b], 0.6)[0, 0] == pytest.approx(0.246348, abs=1e-6)
    assert pairwise_diou([a], [b], 1.0)[0, 0] == pytest.approx(0.351304, abs=1e-6)
    # same centre (2,2): d = 0, no penalty; IoU = 2x2 / 4x4 = 0.25
    assert pairwise_diou([a], [[1, 1, 3, 3]], 0.6)[0, 0] == pytest.approx(0.25, abs=1e-12)
    # disjoint [0,0,1,1], [2,0,3,1]: IoU 0; enclosing [0,0,3,1]: c^2 = 9 + 1 = 10; d^2 = 2^2 = 4
    #   0.4^0.6 = exp(0.6 * -0.916291) = exp(-0.549774) = 0.577080: DIoU = -0.577080
    assert pairwise_diou([[0, 0, 1, 1]], [[2, 0, 3, 1]], 0.6)[0, 0] == pytest.approx(-0.577080, abs=1e-6)


def test_darknet_hand_case_nms_decision_per_kind():
    """Boxes a (score .9) and b (.8) above, NMS threshold 0.3: IoU .391 > .3 suppresses b (default);
    DIoU beta .6 = .246 keeps it (greedynms); beta 1 = .351 suppresses it (diounms, beta_nms=1)."""
    boxes = np.array([[[0, 0, 4, 4], [1, 1, 5, 5]]], np.float32)
    scores = np.array([[[0.9], [0.8]]], np.float32)
    kept = {kind: len(postprocess(boxes, scores, NmsParams(iou_threshold=0.3, nms_kind=kind, beta_nms=beta))[0])
            for kind, beta in (("default", 0.6), ("greedynms", 0.6), ("diounms", 1.0))}
    assert kept == {"default": 1, "greedynms": 2, "diounms": 1}


def test_darknet_frame_divides_by_the_input_size():
    """darknet compares boxes divided by the image width and height; the DIoU penalty depends on it.

    a = [0,0,80,40], b = [20,0,100,40] on a 200x100 (WxH) input, greedynms, NMS threshold 0.48:
    IoU = 60x40 / (3200 + 3200 - 2400) = 2400/4000 = 0.6 in any frame.
    pixels: enclosing [0,0,100,40]: c^2 = 100^2 + 40^2 = 11600, d^2 = 20^2 = 400, ratio 0.034483,
      ^0.6 = exp(0.6 * -3.367296) = exp(-2.020377) = 0.132605: DIoU = 0.467395 <= 0.48: b kept.
    darknet (x / 200, y / 100): a = [0,0,.4,.4], b = [.1,0,.5,.4]: c^2 = .5^2 + .4^2 = 0.41, d^2 = .1^2
      = 0.01, ratio 0.024390, ^0.6 = exp(0.6 * -3.713572) = exp(-2.228143) = 0.107728: DIoU = 0.492272
      > 0.48: b suppressed.
    """
    boxes = np.array([[[0, 0, 80, 40], [20, 0, 100, 40]]], np.float32)
    scores = np.array([[[0.9], [0.8]]], np.float32)
    assert pairwise_diou(boxes[0, :1], boxes[0, 1:], 0.6)[0, 0] == pytest.approx(0.467395, abs=1e-6)
    norm = boxes[0] / [200, 100, 200, 100]
    assert pairwise_diou(norm[:1], norm[1:], 0.6)[0, 0] == pytest.approx(0.492272, abs=1e-6)
    p = NmsParams(iou_threshold=0.48)
    assert len(postprocess(boxes, scores, p)[0]) == 2
    assert len(postprocess(boxes, scores, p, input_hw=(100, 200))[0]) == 1


def test_thresholds_are_strict():
    """darknet: candidate when score > thresh; suppressed when overlap > nms (not >=)."""
    boxes = np.array([[[0, 0, 2, 1], [0, 0, 1, 1], [5, 5, 6, 6]]], np.float32)  # IoU(0, 1) = 1/2 exactly
    scores = np.array([[[0.9], [0.8], [0.25]]], np.float32)
    d = postprocess(boxes, scores, NmsParams(score_threshold=0.25, iou_threshold=0.5, nms_kind="default"))[0]
    assert d.scores.tolist() == pytest.approx([0.9, 0.8])  # 0.25 is not > 0.25; IoU 0.5 is not > 0.5


# ------------------------------------------------------------------------------ modes and limits

def test_class_agnostic():
    """Two overlapping boxes of different classes: kept per class, the lower suppressed across classes."""
    boxes = np.array([[[0, 0, 10, 10], [1, 1, 11, 11]]], np.float32)
    scores = np.array([[[0.9, 0.0], [0.0, 0.8]]], np.float32)
    assert postprocess(boxes, scores, NmsParams())[0].class_ids.tolist() == [0, 1]
    assert postprocess(boxes, scores, NmsParams(class_agnostic=True))[0].class_ids.tolist() == [0]


def test_top_k_caps_candidates_before_nms_and_max_output_boxes_after():
    """a (.9) suppresses b (.8); c (.7) is apart. top_k=2: only a and b enter NMS -> [a].
    max_output_boxes=1: NMS on all -> [a, c], the best one out -> [a]; max_output_boxes=2 -> [a, c]."""
    boxes = np.array([[[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]]], np.float32)
    scores = np.array([[[0.9], [0.8], [0.7]]], np.float32)
    run = lambda **kw: postprocess(boxes, scores, NmsParams(**kw))[0].scores.tolist()  # noqa: E731
    assert run() == pytest.approx([0.9, 0.7])
    assert run(top_k=2) == pytest.approx([0.9])
    assert run(max_output_boxes=1) == pytest.approx([0.9])
    assert run(max_output_boxes=2, top_k=3) == pytest.approx([0.9, 0.7])


def test_limits_on_a_crowded_batch():
    boxes, scores = _batch(6, n=2000, c=3)
    dets = postprocess(boxes, scores, NmsParams(score_threshold=0.0, max_output_boxes=50, top_k=500), input_hw=HW)
    assert all(len(d) == 50 for d in dets)
    full = postprocess(boxes, scores, NmsParams(score_threshold=0.0, max_output_boxes=10_000, top_k=500),
                       input_hw=HW)
    for d, f in zip(dets, full):  # the 50 best of the uncapped result
        assert _key(d) == sorted(sorted(_key(f), key=lambda t: -t[1])[:50])


# ---------------------------------------------------------------- EfficientNMS layout and Detector

def test_reference_nms_outputs_layout_and_round_trip():
    boxes, scores = _batch(7)
    p = NmsParams(score_threshold=0.3, max_output_boxes=40)
    num, b, s, c = reference_nms_outputs(boxes, scores, p, input_hw=HW)
    assert (num.shape, num.dtype, b.shape, b.dtype, s.shape, s.dtype, c.shape, c.dtype) == (
        (3, 1), np.int32, (3, 40, 4), np.float32, (3, 40), np.float32, (3, 40), np.int32)
    want = postprocess(boxes, scores, p, input_hw=HW)
    assert num[:, 0].tolist() == [len(d) for d in want]
    for i, d in enumerate(want):
        m = len(d)
        assert np.all(s[i, m:] == 0) and np.all(b[i, m:] == 0) and np.all(c[i, m:] == -1)
        assert np.all(np.diff(s[i, :m]) <= 0)
    back = detections_from_nms_outputs(num, b, s, c)
    for g, w in zip(back, want):
        assert np.array_equal(g.boxes, w.boxes) and np.array_equal(g.scores, w.scores)
        assert np.array_equal(g.class_ids, w.class_ids) and g.class_ids.dtype == np.int64
    assert reference_nms_outputs(boxes, scores * 0, p, pad_class=0)[3].max() == 0  # EfficientNMS pads 0


def test_nms_metadata_round_trip():
    p = NmsParams(score_threshold=0.001, nms_kind="diounms", beta_nms=1.0, top_k=4096)
    meta = nms_metadata("plugin", p)
    assert read_nms_metadata(meta) == ("plugin", p)
    assert read_nms_metadata({}) == (None, None) and read_nms_metadata({"nms": "none"}) == (None, None)
    assert read_nms_metadata({"nms": "trt", "nms_params": "{bad"}) == ("trt", None)
    with pytest.raises(ValueError):
        nms_metadata("none", p)


def test_baked_nms_conflicts():
    baked = NmsParams(score_threshold=0.25)
    assert baked_nms_conflicts(baked, NmsParams(score_threshold=0.5, max_output_boxes=100)) == []
    assert baked_nms_conflicts(baked, baked) == []
    msgs = baked_nms_conflicts(baked, NmsParams(score_threshold=0.001, iou_threshold=0.6, nms_kind="default",
                                                max_output_boxes=1000))
    assert len(msgs) == 4 and "0.001" in msgs[0] and "0.6" in msgs[1] and "default" in msgs[2] and "1000" in msgs[3]
    assert baked_nms_conflicts(None, baked)


class _FinalDetections(Backend):
    """A backend whose 'model' ends with NMS: the reference in EfficientNMS layout on fixed outputs."""

    name = "fake-nms"

    def __init__(self, boxes, scores, baked):
        from yolo4.model_info import ModelInfo

        self.info = ModelInfo(names=[f"c{i}" for i in range(scores.shape[2])], input_hw=HW)
        self.nms, self.nms_params = "plugin", baked
        self._out = reference_nms_outputs(boxes, scores, baked, input_hw=HW)

    def _forward(self, batch):
        return tuple(o[:batch.shape[0]] for o in self._out)


def test_detector_on_final_detections_refilters_exactly_and_warns_once():
    boxes, scores = _batch(8)
    baked = NmsParams(score_threshold=0.05, max_output_boxes=200)
    be = _FinalDetections(boxes, scores, baked)
    imgs = [np.zeros((416, 416, 3), np.uint8)] * 3  # plain resize 416 -> 416: boxes stay in input pixels
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: a higher threshold and fewer boxes apply exactly
        got = Detector(be, score_threshold=0.3, max_output_boxes=20).detect(imgs)
    want = postprocess(boxes, scores, NmsParams(score_threshold=0.3, max_output_boxes=20), input_hw=HW)
    for g, w in zip(got, want):
        assert np.allclose(g.boxes, np.clip(w.boxes, 0, 416)) and np.array_equal(g.scores, w.scores)
        assert np.array_equal(g.class_ids, w.class_ids)
    with pytest.warns(Yolo4Warning) as rec:
        Detector(be, score_threshold=0.001)  # eval's threshold under the baked one
    assert len(rec) == 1 and "score threshold 0.001" in str(rec[0].message)
