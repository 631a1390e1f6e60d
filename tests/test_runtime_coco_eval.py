"""COCO mAP through pycocotools on an in-memory split: perfect, shifted, partial and empty predictions."""

import numpy as np
import pytest

from yolo4.data.records import DatasetSplit, ImageRecord
from yolo4.runtime.coco_eval import METRIC_KEYS, evaluate
from yolo4.runtime.postprocess import Detections

# medium (32^2 < area < 96^2) and large (> 96^2) boxes only: no small ground truth
BOXES = {
    1: ([[10, 10, 110, 110], [200, 50, 260, 110]], [0, 1]),     # 100x100 large, 60x60 medium
    2: ([[30, 40, 230, 190]], [1]),                              # 200x150 large
    3: ([[0, 0, 50, 80], [100, 100, 300, 300], [310, 20, 380, 90]], [0, 0, 1]),
}


def _split():
    recs = [ImageRecord(path=f"/x/{i}.jpg", width=400, height=320, boxes=np.array(b, np.float32),
                        classes=np.array(c, np.int64), image_id=i) for i, (b, c) in BOXES.items()]
    recs.append(ImageRecord(path="/x/bg.jpg", width=400, height=320, image_id=4))  # background image
    return DatasetSplit(names=["cat", "dog"], records=recs)


def _det(boxes, classes, scores=None):
    b = np.array(boxes, np.float32).reshape(-1, 4)
    s = np.full(len(b), 0.9, np.float32) if scores is None else np.array(scores, np.float32)
    return Detections(b, s, np.array(classes, np.int64))


def test_perfect_predictions_give_map_1():
    preds = {i: _det(b, c) for i, (b, c) in BOXES.items()}
    r = evaluate(_split(), preds)
    assert set(r) == set(METRIC_KEYS) | {"num_images", "num_detections", "precision", "recall",
                                         "pr_score_threshold", "per_class"}
    for k in ("map50_95", "map50", "map75", "map_medium", "map_large"):
        assert r[k] == pytest.approx(1.0), k
    assert r["map_small"] == -1.0  # no small ground truth: pycocotools' "absent"
    assert r["num_images"] == 4 and r["num_detections"] == 6


def test_shifted_boxes_score_lower_by_the_iou_ladder():
    """Shift every box by 15% of its width: IoU = 0.85 / 1.15 = 0.739. That is a hit at IoU
    thresholds .50 .55 .60 .65 .70 and a miss at .75 ... .95: mAP50 = 1, mAP75 = 0, mAP = 5/10."""
    preds = {}
    for i, (b, c) in BOXES.items():
        b = np.array(b, np.float32)
        shift = 0.15 * (b[:, 2] - b[:, 0])
        b[:, [0, 2]] += shift[:, None]
        preds[i] = _det(b, c)
    r = evaluate(_split(), preds)
    assert r["map50"] == pytest.approx(1.0)
    assert r["map75"] == pytest.approx(0.0)
    assert r["map50_95"] == pytest.approx(0.5)


def test_empty_and_wrong_class_predictions_give_zero():
    r = evaluate(_split(), {})
    assert r["map50_95"] == 0.0 and r["map50"] == 0.0 and r["num_detections"] == 0
    wrong = {i: _det(b, [1 - k for k in c]) for i, (b, c) in BOXES.items()}
    assert evaluate(_split(), wrong)["map50"] == 0.0


def test_missing_images_and_false_positives_lower_map():
    preds = {i: _det(b, c) for i, (b, c) in BOXES.items() if i != 3}   # image 3's 3 boxes missed
    r_missing = evaluate(_split(), preds)
    assert 0.0 < r_missing["map50"] < 1.0
    # a confident false positive on the background image ranks above the true positives
    preds = {i: _det(b, c, [0.5] * len(c)) for i, (b, c) in BOXES.items()}
    preds[4] = _det([[10, 10, 100, 100]], [0], [0.99])
    r_fp = evaluate(_split(), preds)
    assert 0.0 < r_fp["map50"] < 1.0


def test_unknown_image_id_raises():
    with pytest.raises(ValueError, match="not in the split"):
        evaluate(_split(), {99: _det([[0, 0, 10, 10]], [0])})


def test_quiet_unless_verbose(capsys):
    evaluate(_split(), {})
    assert capsys.readouterr().out == ""
    evaluate(_split(), {}, verbose=True)
    assert "Average Precision" in capsys.readouterr().out


def test_per_class_ap_and_precision_recall_by_hand():
    """Class 0 (cat, 3 boxes) predicted perfectly; class 1 (dog, 3 boxes) only its image-2 box,
    plus one dog false positive far from any box, and one cat detection below the threshold.
    At score > 0.25, IoU .5: TP 3 + 1, FP 1, GT 6 -> P 4/5, R 4/6; dog: P 1/2, R 1/3."""
    preds = {}
    for i, (b, c) in BOXES.items():
        keep = [k for k, cls in enumerate(c) if cls == 0 or i == 2]
        preds[i] = _det([b[k] for k in keep], [c[k] for k in keep])
    fp = _det([[300, 200, 380, 300]], [1], [0.8])
    low = _det([[0, 0, 40, 40]], [0], [0.2])
    preds[4] = Detections(np.concatenate([fp.boxes, low.boxes]), np.concatenate([fp.scores, low.scores]),
                          np.concatenate([fp.class_ids, low.class_ids]))
    r = evaluate(_split(), preds)
    assert r["precision"] == pytest.approx(4 / 5) and r["recall"] == pytest.approx(4 / 6)
    cat, dog = r["per_class"]
    assert (cat["name"], cat["instances"], dog["name"], dog["instances"]) == ("cat", 3, "dog", 3)
    assert cat["precision"] == pytest.approx(1.0) and cat["recall"] == pytest.approx(1.0)
    assert dog["precision"] == pytest.approx(0.5) and dog["recall"] == pytest.approx(1 / 3)
    assert cat["ap50"] == pytest.approx(1.0) and cat["ap50_95"] == pytest.approx(1.0)
    # dog: the hit (0.9) ranks above the false positive (0.8): precision 1 up to recall 1/3, then
    # nothing -> 34 of pycocotools' 101 recall points (0, .01, ..., .33) -> AP50 = 34/101
    assert dog["ap50"] == pytest.approx(34 / 101, abs=1e-6)
    # a higher threshold drops the false positive (0.8) but keeps the 0.9 hits
    strict = evaluate(_split(), preds, pr_score_threshold=0.85)
    assert strict["precision"] == pytest.approx(1.0) and strict["recall"] == pytest.approx(4 / 6)


def test_per_class_table_lists_classes_with_ground_truth():
    from yolo4.runtime.coco_eval import format_per_class

    r = evaluate(_split(), {i: _det(b, c) for i, (b, c) in BOXES.items()})
    lines = format_per_class(r)
    assert lines[0].split() == ["class", "instances", "P", "R", "AP50", "AP50-95"]
    assert [ln.split()[0] for ln in lines[1:]] == ["cat", "dog"]
    assert lines[1].split()[1:] == ["3", "1.000", "1.000", "1.000", "1.000"]
