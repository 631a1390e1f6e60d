"""COCO-style box mAP of detections against a labelled :class:`DatasetSplit`, through pycocotools.

The ground truth is built in memory from the split's :class:`ImageRecord` s (category id = class id,
``iscrowd = 0``, ``area = w * h`` of the box), so any dataset format the data package reads (YOLO
txt, COCO json, VOC xml) is evaluated the same way, and the numbers are pycocotools' own
(``COCOeval`` with ``iouType="bbox"``, its default 100 detections per image per class).
Python 3.8, torch-free.
"""

import contextlib
import io
from typing import Any, Callable, Dict, List, Mapping, Optional

import numpy as np

from ..data.records import DatasetSplit
from .postprocess import Detections

__all__ = ["evaluate", "predict_split", "METRIC_KEYS", "format_per_class", "PR_SCORE_THRESHOLD"]

#: keys of :func:`evaluate`'s result taken from ``COCOeval.stats[0:6]``, in that order
METRIC_KEYS = ("map50_95", "map50", "map75", "map_small", "map_medium", "map_large")
#: default score threshold of the precision/recall figures: the detection threshold `yolo4 infer` uses
PR_SCORE_THRESHOLD = 0.25


def _xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)


def evaluate(split: DatasetSplit, predictions: Mapping[int, Detections],
             verbose: bool = False, pr_score_threshold: float = PR_SCORE_THRESHOLD,
             keep_pr_curve: bool = False) -> Dict[str, Any]:
    """COCO mAP of ``predictions`` on ``split``, with per-class AP and precision/recall.

    Args:
        split: the labelled images (``records[i].boxes`` x1y1x2y2 in original pixels, ``classes``).
        predictions: ``image_id -> Detections`` with boxes x1, y1, x2, y2 in ORIGINAL-image pixels
            (as :class:`~yolo4.runtime.detector.Detector` returns them). Images of the split with
            no entry count as images with no detections.
        verbose: print pycocotools' 12-line summary to stdout (otherwise its output is swallowed).
        pr_score_threshold: precision and recall count the detections scoring above this (the
            threshold a deployment detects with; ``yolo4 infer``'s default 0.25).

    Returns:
        ``{"map50_95", "map50", "map75", "map_small", "map_medium", "map_large"}`` as floats in
        0..1 (``COCOeval.stats[0:6]``; -1.0 where the split has no ground truth of that kind, e.g.
        no small objects -- pycocotools' convention), plus ``"num_images"`` and
        ``"num_detections"`` (ints); ``"precision"`` and ``"recall"`` (floats, at IoU 0.5 over the
        detections scoring ``> pr_score_threshold`` among each image's 100 best, matched by
        pycocotools' own greedy matching; precision is -1.0 when no detection passes),
        ``"pr_score_threshold"``; and ``"per_class"``: one dict per class, class-id order, with
        ``class_id``, ``name``, ``instances`` (ground-truth boxes), ``ap50_95``, ``ap50``
        (pycocotools' per-category AP, area "all", 100 detections; -1.0 for a class without ground
        truth), ``precision``, ``recall``.

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
    result: Dict[str, Any] = {k: float(v) for k, v in zip(METRIC_KEYS, ev.stats[:6])}
    result["num_images"] = len(ids)
    result["num_detections"] = len(dt_anns)
    result.update(_precision_recall(ev, len(split.names), float(pr_score_threshold)))
    per_class = result.pop("_per_class_pr")
    prec = ev.eval["precision"]  # [T, R, K, A, M]: IoU thresholds, recall points, classes, areas, max dets
    counts = np.bincount(np.concatenate([np.asarray(r.classes, np.int64).reshape(-1) for r in split.records]
                                        + [np.zeros(0, np.int64)]), minlength=len(split.names))
    rows = []
    for k, name in enumerate(split.names):
        p_all = prec[:, :, k, 0, -1]
        p_50 = prec[0, :, k, 0, -1]
        rows.append({"class_id": k, "name": str(name), "instances": int(counts[k]),
                     "ap50_95": float(p_all[p_all > -1].mean()) if (p_all > -1).any() else -1.0,
                     "ap50": float(p_50[p_50 > -1].mean()) if (p_50 > -1).any() else -1.0,
                     "precision": per_class[k][0], "recall": per_class[k][1]})
    result["per_class"] = rows
    if keep_pr_curve:
        result["pr_curve"] = pr_curve_from_cocoeval(ev)
    return result


def pr_curve_from_cocoeval(ev: Any, iou: float = 0.5) -> Dict[str, Any]:
    """Per-class precision-recall curves of an accumulated pycocotools ``COCOeval``.

    Reads ``ev.eval["precision"]`` (``[T, R, K, A, M]``: IoU thresholds, recall points, categories,
    area ranges, max detections) at the IoU threshold nearest ``iou``, area "all" and the last
    maxDets (100).

    Returns:
        ``{"iou": float, "recall": [R] floats (0..1, pycocotools' 101 points), "precision": [K][R]
        floats (0..1, NaN where a class has no ground truth), "class_ids": [K] ints}``: plain lists,
        so the dict can go into a checkpoint's metrics.
    """
    prec = np.asarray(ev.eval["precision"], np.float64)
    thrs = np.asarray(ev.params.iouThrs, np.float64)
    t = int(np.argmin(np.abs(thrs - float(iou))))
    p = prec[t, :, :, 0, -1].T.copy()  # [K, R]
    p[p < 0] = np.nan
    return {"iou": float(thrs[t]), "recall": [float(v) for v in ev.params.recThrs], "precision": p.tolist(),
            "class_ids": [int(c) for c in ev.params.catIds]}


def _precision_recall(ev: Any, num_classes: int, thr: float) -> Dict[str, Any]:
    """Precision and recall at IoU 0.5 over detections scoring ``> thr``, from ``COCOeval.evalImgs``
    (area "all", the last maxDets), overall and per class."""
    tp = np.zeros(num_classes, np.int64)
    fp = np.zeros(num_classes, np.int64)
    n_gt = np.zeros(num_classes, np.int64)
    all_range = ev.params.areaRng[0]
    t50 = int(np.argmin(np.abs(np.asarray(ev.params.iouThrs) - 0.5)))
    for e in ev.evalImgs:
        if e is None or list(e["aRng"]) != list(all_range):
            continue
        k = int(e["category_id"])
        n_gt[k] += int(np.sum(np.asarray(e["gtIgnore"]) == 0))
        scores = np.asarray(e["dtScores"], np.float64)
        if scores.size == 0:
            continue
        passed = (scores > thr) & ~np.asarray(e["dtIgnore"], bool)[t50]
        matched = np.asarray(e["dtMatches"])[t50] > 0
        tp[k] += int(np.sum(passed & matched))
        fp[k] += int(np.sum(passed & ~matched))

    def ratio(a: int, b: int) -> float:
        return float(a) / float(b) if b else -1.0

    per_class = [(ratio(int(tp[k]), int(tp[k] + fp[k])), ratio(int(tp[k]), int(n_gt[k])))
                 for k in range(num_classes)]
    return {"precision": ratio(int(tp.sum()), int(tp.sum() + fp.sum())),
            "recall": ratio(int(tp.sum()), int(n_gt.sum())), "pr_score_threshold": thr,
            "_per_class_pr": per_class}


def format_per_class(metrics: Dict[str, Any]) -> List[str]:
    """The per-class table of :func:`evaluate`'s result as text lines (class, instances, P, R, AP50,
    AP50-95; ``-`` where undefined), classes without ground truth and detections left out."""
    def f(v: float) -> str:
        return "%7.3f" % v if v >= 0 else "%7s" % "-"

    rows = metrics.get("per_class") or []
    width = max([len("class")] + [len(r["name"]) for r in rows])
    lines = ["%-*s %9s %7s %7s %7s %7s" % (width, "class", "instances", "P", "R", "AP50", "AP50-95")]
    for r in rows:
        if r["instances"] == 0 and r["precision"] < 0:
            continue
        lines.append("%-*s %9d %s %s %s %s" % (width, r["name"], r["instances"], f(r["precision"]),
                                               f(r["recall"]), f(r["ap50"]), f(r["ap50_95"])))
    return lines


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
