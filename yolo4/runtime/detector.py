"""Images in, detections in original-image pixels out: preprocess -> backend -> postprocess -> unmap.

Python 3.8, torch-free (the torch backend imports torch itself).
"""

import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .backends.base import Backend
from .nms_params import NmsParams
from .postprocess import Detections, postprocess
from .preprocess import preprocess, scale_boxes_to_original

__all__ = ["Detector", "Timings"]

@dataclass
class Timings:
    """Wall-clock seconds spent per stage over ``images`` images (ultralytics' speed line).

    Attributes:
        preprocess: resize, colour conversion, scaling (seconds, total).
        inference: the backend call (seconds, total).
        nms: thresholding, NMS and mapping boxes back to the image (seconds, total).
        images: images processed.
    """

    preprocess: float = 0.0
    inference: float = 0.0
    nms: float = 0.0
    images: int = 0

    def per_image_ms(self) -> Dict[str, float]:
        """``{"preprocess", "inference", "nms"}``: mean milliseconds per image (0 before any image)."""
        n = max(self.images, 1)
        return {"preprocess": 1000.0 * self.preprocess / n, "inference": 1000.0 * self.inference / n,
                "nms": 1000.0 * self.nms / n}

    def summary(self, input_hw: Optional[Sequence[int]] = None) -> str:
        """One line: ``Speed: 1.1 ms preprocess, 31.9 ms inference, 0.7 ms NMS per image at 416x416``."""
        ms = self.per_image_ms()
        at = "" if input_hw is None else " at %dx%d (WxH)" % (int(input_hw[1]), int(input_hw[0]))
        return ("Speed: %.1f ms preprocess, %.1f ms inference, %.1f ms NMS per image%s (%d image%s)"
                % (ms["preprocess"], ms["inference"], ms["nms"], at, self.images, "" if self.images == 1 else "s"))


class Detector:
    """Run a backend on BGR images with darknet's pre- and post-processing.

    The resize mode (``letter_box``) and input size come from ``backend.info`` (the model's cfg),
    and so do ``nms_kind``/``beta_nms`` unless ``params`` says otherwise, so every backend of one
    model detects the same way.

    Args:
        backend: a :class:`~yolo4.runtime.backends.base.Backend`.
        params: :class:`~yolo4.runtime.nms_params.NmsParams`; default
            ``NmsParams.for_model(backend.info)`` (score > 0.25, NMS 0.45, the cfg's nms_kind, at
            most 300 detections per image).
        batch_size: images per backend call; default ``backend.fixed_batch``, else 8.
        **overrides: :class:`NmsParams` fields to change (``score_threshold=0.001``).

    Attributes:
        params: the :class:`NmsParams` in use.
        timings: :class:`Timings` accumulated over every :meth:`detect` call.

    Raises:
        ValueError: ``batch_size < 1`` or an :class:`NmsParams` field out of range.
        TypeError: an override that is not an :class:`NmsParams` field.
    """

    def __init__(self, backend: Backend, params: Optional[NmsParams] = None, batch_size: Optional[int] = None,
                 **overrides: Any) -> None:
        self.backend = backend
        if params is None:
            params = NmsParams.for_model(backend.info, **overrides)
        elif overrides:
            params = NmsParams(**dict(params.as_dict(), **overrides))
        self.params = params
        self.batch_size = int(batch_size or backend.fixed_batch or 8)
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.timings = Timings()

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
        t = self.timings
        for s in range(0, len(images), self.batch_size):
            chunk = images[s:s + self.batch_size]
            t0 = time.perf_counter()
            batch, transforms = preprocess(chunk, info.input_hw, info.letter_box)
            t1 = time.perf_counter()
            boxes, scores = self.backend(batch)
            t2 = time.perf_counter()
            dets = postprocess(boxes, scores, self.params, input_hw=info.input_hw, transforms=transforms)
            for d, tr in zip(dets, transforms):
                out.append(Detections(scale_boxes_to_original(d.boxes, tr), d.scores, d.class_ids))
            t3 = time.perf_counter()
            t.preprocess += t1 - t0
            t.inference += t2 - t1
            t.nms += t3 - t2
            t.images += len(chunk)
        return out

    __call__ = detect
