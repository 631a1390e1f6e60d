"""COCO-style box mAP of detections against a labelled :class:`DatasetSplit`, through pycocotools.

The ground truth is built in memory from the split's :class:`ImageRecord` s (category id = class id,
``iscrowd = 0``, ``area = w * h`` of the box), so any dataset format the data package reads (YOLO
txt, COCO json, VOC xml) is evaluated the same way, and the numbers are pycocotools' own
(``COCOeval`` with ``iouType="bbox"``, its default 100 detections per image per class).
Python 3.8, torch-free.
"""

import contextlib
import io
from typing import Any, Callable, Dict, Mapping, Optional, Union

import numpy as np

from ..data.records import DatasetSplit
from .postprocess import Detections

__all__ = ["evaluate", "predict_split", "METRIC_KEYS"]

#: keys of :func:`evaluate`'s result taken from ``COCOeval.stats[0:6]``, in that order
METRIC_KEYS = ("map50_95", "map50", "map75", "map_small", "map_medium", "map_large")


def _xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)


def evaluate(split: DatasetSplit, predictions: Mapping[int, Detections],
             verbose: bool = False) -> Dict[str, Union[float, int]]:
    """COCO mAP of ``predictions`` on ``split``.

    Args:
        split: the labelled images (``records[i].boxes`` x1y1x2y2 in original pixels, ``classes``).
        predictions: ``image_id -> Detections`` with boxes x1, y1, x2, y2 in ORIGINAL-image pixels
            (as :class:`~yolo4.runtime.detector.Detector` returns them). Images of the split with
            no entry count as images with no detections.
        verbose: print pycocotools' 12-line summary to stdout (otherwise its output is swallowed).

    Returns:
        ``{"map50_95", "map50", "map75", "map_small", "map_medium", "map_large"}`` as floats in
        0..1 (``COCOeval.stats[0:6]``; -1.0 where the split has no ground truth of that kind, e.g.
        no small objects -- pycocotools' convention), plus ``"num_images"`` and
        ``"num_detections"`` (ints).

    Raises:
        ValueError: a prediction for an image id that is not in the split, or duplicate image ids
            in the split.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ids = [int(r.image_id) for r in split.records]
    if len(set(ids)) != len(ids):
        raise ValueError("the split has duplicate image ids")
    unknown = sorted(set(int(k) for k in predictions) - set(ids))
    if unknown:
        raise ValueError(f"predictions for image ids not in the split: {unknown[:10]}")

    categories = [{"id": i, "name": n} for i, n in enumerate(split.names)]
    images = [{"id": int(r.image_id), "width": int(r.width), "height": int(r.height),
               "file_name": str(r.path)} for r in split.records]
    gt_anns = []
    for r in split.records:
        for (x, y, w, h), c in zip(_xyxy_to_xywh(r.boxes), np.asarray(r.classes).reshape(-1)):
            # ids start at 1: COCOeval treats a matched id of 0 as "unmatched"
            gt_anns.append({"id": len(gt_anns) + 1, "image_id": int(r.image_id), "category_id": int(c),
                            "bbox": [float(x), float(y), float(w), float(h)], "area": float(w * h),
                            "iscrowd": 0})
    dt_anns = []
    for image_id, det in predictions.items():
        for (x, y, w, h), s, c in zip(_xyxy_to_xywh(det.boxes), np.asarray(det.scores).reshape(-1),
                                      np.asarray(det.class_ids).reshape(-1)):
            dt_anns.append({"id": len(dt_anns) + 1, "image_id": int(image_id), "category_id": int(c),
                            "bbox": [float(x), float(y), float(w), float(h)], "area": float(w * h),
                            "score": float(s), "iscrowd": 0})

    sink: Optional[io.StringIO] = None if verbose else io.StringIO()
    with contextlib.redirect_stdout(sink) if sink is not None else contextlib.nullcontext():
        gt = COCO()
        gt.dataset = {"images": images, "annotations": gt_anns, "categories": categories}
        gt.createIndex()
        dt = COCO()  # built directly: COCO.loadRes rejects an empty result list
        dt.dataset = {"images": images, "annotations": dt_anns, "categories": categories}
        dt.createIndex()
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.params.imgIds = sorted(ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    result: Dict[str, Union[float, int]] = {k: float(v) for k, v in zip(METRIC_KEYS, ev.stats[:6])}
    result["num_images"] = len(ids)
    result["num_detections"] = len(dt_anns)
    return result


def predict_split(detector: Any, split: DatasetSplit, batch_size: int = 8, progress: bool = False,
                  log: Callable[[str], Any] = print) -> Dict[int, Detections]:
    """Run a :class:`~yolo4.runtime.detector.Detector` over every image of a split, for :func:`evaluate`.

    Args:
        detector: the Detector (backend + thresholds) to evaluate.
        split: the images (``records[i].path``, ``image_id``).
        batch_size: images read and detected per call.
        progress: show a tqdm bar (batches).
        log: receives a one-line warning for every unreadable image, which is skipped.

    Returns:
        ``{image_id: Detections}`` with boxes x1, y1, x2, y2 float32 in original-image pixels.
    """
    from ..data.images import imread
    from ..errors import ImageReadError

    records = list(split.records)
    starts = range(0, len(records), max(1, int(batch_size)))
    if progress:
        from tqdm import tqdm
        starts = tqdm(starts, desc="eval", unit="batch", leave=False)
    preds: Dict[int, Detections] = {}
    for s in starts:
        group, images = [], []
        for r in records[s:s + batch_size]:
            try:
                images.append(imread(r.path))
                group.append(r)
            except ImageReadError as e:
                log("warning: skipped %s" % e)
        if images:
            for r, det in zip(group, detector.detect(images)):
                preds[r.image_id] = det
    return preds
