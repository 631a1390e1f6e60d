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
    assert set(r) == set(METRIC_KEYS) | {"num_images", "num_detections"}
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
