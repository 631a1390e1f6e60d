"""Do two model forms detect the same objects? (INT8 vs FP32, engine vs ONNX, on a few images.)

Raw-tensor tolerances (:mod:`yolo4.convert.verify`) suit FP32/FP16; an INT8 model differs by
quantization noise everywhere, so it is compared at the level a user sees: the final detections.
A reference detection is *matched* when the candidate has a detection of the same class with IoU >=
``iou_match`` (greedy, by reference score). Python 3.8, torch-free.
"""

from dataclasses import dataclass
from typing import List, Sequence

import numpy as np

from .postprocess import Detections, pairwise_diou

__all__ = ["Agreement", "detection_agreement"]


@dataclass
class Agreement:
    """Detection-level agreement of a candidate with a reference over some images.

    Attributes:
        reference: detections of the reference (all images).
        candidate: detections of the candidate.
        matched: reference detections the candidate also found (same class, IoU >= iou_match).
        mean_iou: mean IoU of the matched pairs (1.0 when nothing matched).
        max_score_diff: largest |score difference| of matched pairs.
        images: number of images.
    """

    reference: int
    candidate: int
    matched: int
    mean_iou: float
    max_score_diff: float
    images: int

    def summary(self) -> str:
        return ("%d/%d detections matched (same class, IoU >= .5; candidate has %d), mean IoU %.3f, "
                "max score diff %.3f" % (self.matched, self.reference, self.candidate, self.mean_iou,
                                         self.max_score_diff))


def _match(ref: Detections, cand: Detections, iou_match: float):
    if len(ref) == 0 or len(cand) == 0:
        return []
    iou = pairwise_diou(ref.boxes.astype(np.float64), cand.boxes.astype(np.float64), None)
    iou = np.where(ref.class_ids[:, None] == cand.class_ids[None, :], iou, -1.0)
    used = np.zeros(len(cand), bool)
    pairs = []
    for i in np.argsort(-ref.scores, kind="stable"):
        row = np.where(used, -1.0, iou[i])
        j = int(np.argmax(row))
        if row[j] >= iou_match:
            used[j] = True
            pairs.append((int(i), j, float(row[j])))
    return pairs


def detection_agreement(reference: Sequence[Detections], candidate: Sequence[Detections],
                        iou_match: float = 0.5) -> Agreement:
    """Compare per-image detections of two model forms.

    Args:
        reference, candidate: one :class:`Detections` per image, same images in the same order
            (boxes x1,y1,x2,y2 in the same pixel frame).
        iou_match: IoU needed for a match, 0..1.

    Raises:
        ValueError: the two lists differ in length.
    """
    if len(reference) != len(candidate):
        raise ValueError("reference and candidate cover %d and %d images" % (len(reference), len(candidate)))
    matched, ious, diffs = 0, [], [0.0]
    for r, c in zip(reference, candidate):
        for i, j, v in _match(r, c, iou_match):
            matched += 1
            ious.append(v)
            diffs.append(abs(float(r.scores[i]) - float(c.scores[j])))
    return Agreement(sum(len(r) for r in reference), sum(len(c) for c in candidate), matched,
                     float(np.mean(ious)) if ious else 1.0, max(diffs), len(reference))


def sample_images() -> List[str]:
    """darknet's sample images from ``$YOLO4_ASSET_MIRROR/darknet/images`` (dog first), or []."""
    import os
    from pathlib import Path

    mirror = os.environ.get("YOLO4_ASSET_MIRROR")
    if not mirror:
        return []
    paths = sorted((Path(mirror) / "darknet" / "images").glob("*.jpg"))
    paths.sort(key=lambda p: p.name != "dog.jpg")
    return [str(p) for p in paths]
