"""Images in, detections in original-image pixels out: preprocess -> backend -> postprocess -> unmap.

Python 3.8, torch-free (the torch backend imports torch itself).
"""

from typing import List, Optional, Sequence

import numpy as np

from .backends.base import Backend
from .postprocess import DEFAULT_MAX_CANDIDATES, Detections, postprocess
from .preprocess import preprocess, scale_boxes_to_original

__all__ = ["Detector"]


class Detector:
    """Run a backend on BGR images with darknet's pre- and post-processing.

    The resize mode (``letter_box``), input size, ``nms_kind`` and ``beta_nms`` come from
    ``backend.info`` (the model's cfg), so every backend of one model detects the same way.

    Args:
        backend: a :class:`~yolo4.runtime.backends.base.Backend`.
        conf: candidate threshold on objectness x class probability (strict ``>``, darknet -thresh).
        iou: NMS threshold (darknet's detector uses 0.45).
        max_det: at most this many detections per image.
        agnostic: class-agnostic NMS (False = per class, as darknet).
        batch_size: images per backend call; default ``backend.fixed_batch``, else 8.
        max_candidates: per-image cap on candidates entering NMS (see :mod:`.postprocess`).
    """

    def __init__(self, backend: Backend, conf: float = 0.25, iou: float = 0.45, max_det: int = 300,
                 agnostic: bool = False, batch_size: Optional[int] = None,
                 max_candidates: int = DEFAULT_MAX_CANDIDATES) -> None:
        self.backend = backend
        self.conf = float(conf)
        self.iou = float(iou)
        self.max_det = int(max_det)
        self.agnostic = bool(agnostic)
        self.max_candidates = int(max_candidates)
        self.batch_size = int(batch_size or backend.fixed_batch or 8)
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")

    @property
    def info(self):
        """The backend's :class:`~yolo4.model_info.ModelInfo`."""
        return self.backend.info

    def detect(self, images: Sequence[np.ndarray]) -> List[Detections]:
        """Detect objects in images.

        Args:
            images: ``HxWx3 uint8`` BGR images of any sizes (e.g. from ``yolo4.data.images.imread``).

        Returns:
            One :class:`Detections` per image: boxes ``[K, 4] float32`` x1, y1, x2, y2 in that
            image's pixels (clipped to it), scores ``[K] float32``, class_ids ``[K] int64``, sorted
            by score descending. Images are processed in chunks of ``batch_size``.

        Raises:
            ValueError: an image that is not uint8 HxWx3 (or grey/BGRA).
        """
        info = self.backend.info
        out: List[Detections] = []
        for s in range(0, len(images), self.batch_size):
            chunk = images[s:s + self.batch_size]
            batch, transforms = preprocess(chunk, info.input_hw, info.letter_box)
            boxes, scores = self.backend(batch)
            dets = postprocess(boxes, scores, conf_thresh=self.conf, iou_thresh=self.iou,
                               nms_kind=info.nms_kind, beta_nms=info.beta_nms, input_hw=info.input_hw,
                               agnostic=self.agnostic, max_det=self.max_det,
                               max_candidates=self.max_candidates, transforms=transforms)
            for d, t in zip(dets, transforms):
                out.append(Detections(scale_boxes_to_original(d.boxes, t), d.scores, d.class_ids))
        return out

    __call__ = detect
