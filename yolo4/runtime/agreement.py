"""Do two model forms detect the same objects? (INT8 vs FP32, engine vs ONNX, on a few images.)

Raw-tensor tolerances (:mod:`yolo4.convert.verify`) suit FP32/FP16; an INT8 model differs by
quantization noise everywhere, so it is compared at the level a user sees: the final detections.
A reference detection is *matched* when the candidate has a detection of the same class with IoU >=
``iou_match`` (greedy, by reference score). The inputs such comparisons (and the benchmark's
synthetic input) run on: :func:`sample_images`, :func:`reference_input`. Python 3.8, torch-free.
"""

import logging
import os
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np

from .postprocess import Detections, pairwise_diou

__all__ = ["Agreement", "detection_agreement", "sample_images", "reference_input"]

logger = logging.getLogger(__name__)


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
    from pathlib import Path

    mirror = os.environ.get("YOLO4_ASSET_MIRROR")
    if not mirror:
        return []
    paths = sorted((Path(mirror) / "darknet" / "images").glob("*.jpg"))
    paths.sort(key=lambda p: p.name != "dog.jpg")
    return [str(p) for p in paths]


def reference_input(input_hw: Tuple[int, int], batch: int = 1, letter_box: bool = False
                    ) -> Tuple[np.ndarray, str]:
    """A deterministic, real-looking network input for verification.

    Uses darknet's sample images (:func:`sample_images`: ``$YOLO4_ASSET_MIRROR/darknet/images/*.jpg``:
    dog, horses, person; then their mirror images) when the asset mirror has them, preprocessed as
    the runtime does (:func:`yolo4.runtime.preprocess.preprocess`; plain resize or letterbox);
    otherwise a seeded random image made of smooth colour blocks (so the network sees edges and
    flat regions, not white noise).

    Args:
        input_hw: (height, width) in pixels.
        batch: number of images.
        letter_box: letterbox instead of plain resize.

    Returns:
        (x float32 [batch, 3, H, W] RGB 0..1, description of the source).
    """
    h, w = input_hw
    paths = sample_images()
    if paths:
        try:
            import cv2

            imgs = []
            for i in range(batch):
                img = cv2.imread(paths[i % len(paths)], cv2.IMREAD_COLOR)
                if img is None:
                    raise OSError(paths[i % len(paths)])
                if (i // len(paths)) % 2:
                    img = img[:, ::-1].copy()
                imgs.append(img)
            from .preprocess import preprocess

            x, _ = preprocess(imgs, (h, w), letter_box)
            names = [os.path.basename(paths[i % len(paths)]) + ("(flipped)" if (i // len(paths)) % 2 else "")
                     for i in range(batch)]
            return np.ascontiguousarray(x, dtype=np.float32), ", ".join(names)
        except Exception as e:  # noqa: BLE001 - any failure falls back to the synthetic input
            logger.debug("reference images unusable (%s); using seeded random input", e)
    rng = np.random.default_rng(0)
    bh, bw = max(1, h // 16), max(1, w // 16)
    low = rng.random((batch, 3, bh, bw), dtype=np.float32)
    x = np.repeat(np.repeat(low, 16, axis=2), 16, axis=3)[:, :, :h, :w]
    x = np.clip(x + rng.normal(0, 0.02, x.shape).astype(np.float32), 0, 1)
    return np.ascontiguousarray(x, dtype=np.float32), "seeded random"
