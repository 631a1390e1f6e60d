"""Per-epoch validation: the deployment path, not a second evaluator.

The model is wrapped in the runtime's torch backend and run through
:class:`yolo4.runtime.detector.Detector` (the shared preprocess, darknet decode, DIoU-NMS and the
mapping back to original pixels) with ``conf=0.001``, ``iou=0.45``; the detections are scored by
:func:`yolo4.runtime.coco_eval.evaluate` (pycocotools). What training reports is therefore what
``yolo4 eval`` reports for the same weights.
"""

from typing import Any, Callable, Dict, Optional, Tuple

from ..data.records import DatasetSplit

#: detection thresholds of the validation pass (darknet ``detector map``: thresh 0.005, nms 0.45;
#: ultralytics: conf 0.001, iou 0.6/0.7) - a low conf so the precision/recall curve is complete
VAL_CONF = 0.001
VAL_IOU = 0.45


def fitness(metrics: Dict[str, Any]) -> float:
    """Model selection score for ``best.pt``: ``0.1 * mAP@.5 + 0.9 * mAP@[.5:.95]`` (ultralytics'
    weighting; both in 0..1). -1.0 when the metrics are missing."""
    if not metrics or metrics.get("map50_95") is None:
        return -1.0
    return 0.1 * float(metrics.get("map50", 0.0)) + 0.9 * float(metrics["map50_95"])


def evaluate_model(model, split: DatasetSplit, input_hw: Optional[Tuple[int, int]] = None,
                   batch_size: int = 8, device: str = "cpu", conf: float = VAL_CONF, iou: float = VAL_IOU,
                   progress: bool = False, log: Callable[[str], Any] = print,
                   keep_pr_curve: bool = False) -> Dict[str, Any]:
    """COCO mAP of a Darknet module on a labelled split, through the runtime's Detector.

    Args:
        model: ``yolo4.model.Darknet`` (its ``names`` must match ``split.names`` in number). It is
            left in eval mode (call ``model.train()`` to continue training).
        split: the labelled images (``yolo4.data.datasets.load_dataset(..., "val")``).
        input_hw: network input ``(H, W)`` (multiples of 32); default the cfg's ``[net]`` size.
        batch_size: images per forward pass.
        device: torch device string of the model.
        conf, iou: Detector thresholds (candidate score, NMS IoU).
        progress: tqdm bar over the images.
        keep_pr_curve: also return ``"pr_curve"`` (:func:`yolo4.runtime.coco_eval.pr_curve_from_cocoeval`).

    Returns:
        :func:`yolo4.runtime.coco_eval.evaluate`'s dict (``map50_95``, ``map50``, ...), plus
        ``"images"`` (how many were evaluated). Unreadable images are skipped with a warning.
    """
    from ..runtime.backends import create_backend
    from ..runtime.coco_eval import evaluate, predict_split
    from ..runtime.detector import Detector

    backend = create_backend("torch", module=model, names=list(split.names), device=device,
                             input_hw=input_hw)
    detector = Detector(backend, batch_size=batch_size, score_threshold=conf, iou_threshold=iou)
    preds = predict_split(detector, split, batch_size=batch_size, progress=progress, log=log)
    metrics = dict(evaluate(split, preds, keep_pr_curve=keep_pr_curve))
    metrics["images"] = len(preds)
    return metrics
