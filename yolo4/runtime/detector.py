"""Images in, detections in original-image pixels out: preprocess -> backend -> postprocess -> unmap.

A backend returns either decoded ``(boxes, scores)`` -- the :class:`Detector` then runs darknet's
thresholding and DIoU-NMS (:func:`~yolo4.runtime.postprocess.postprocess`) -- or, for a model with
NMS in its graph (``backend.nms`` set), the final detections in EfficientNMS_TRT's layout, which
:func:`detections_from_nms_outputs` unpacks. Either way :meth:`Detector.detect` returns the same
:class:`Detections`. :func:`reference_nms_outputs` is the numpy reference in that layout (what the
DIoU-NMS plugin must produce; ONNX Runtime runs plugin nodes with it).

Python 3.8, torch-free (the torch backend imports torch itself).
"""

import time
import warnings
from collections import deque
from dataclasses import dataclass
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import Yolo4Error, Yolo4Warning
from ..nms_params import NmsParams
from .backends.base import Backend
from .postprocess import Detections, postprocess
from .preprocess import preprocess, scale_boxes_to_original

__all__ = ["Detector", "Timings", "reference_nms_outputs", "detections_from_nms_outputs", "baked_nms_conflicts"]


def reference_nms_outputs(boxes: np.ndarray, scores: np.ndarray, params: NmsParams,
                          input_hw: Optional[Tuple[int, int]] = None, transforms: Optional[Sequence[object]] = None,
                          pad_class: int = -1) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The numpy reference (:func:`~yolo4.runtime.postprocess.postprocess`) in EfficientNMS_TRT's
    output layout: what an NMS node at the end of the graph returns.

    Args:
        boxes: ``[B, N, 4]`` x1, y1, x2, y2 input pixels; scores: ``[B, N, C]``.
        params: thresholds and limits; ``K = params.max_output_boxes``.
        input_hw, transforms: the NMS frame, as :func:`~yolo4.runtime.postprocess.postprocess`.
        pad_class: class id of the rows past ``num_detections`` (-1 the DIoU-NMS plugin's, 0
            EfficientNMS_TRT's).

    Returns:
        ``num_detections [B, 1] int32``, ``detection_boxes [B, K, 4] float32``, ``detection_scores
        [B, K] float32``, ``detection_classes [B, K] int32``: rows sorted by score descending, rows
        past ``num_detections`` zero (classes ``pad_class``).
    """
    dets = postprocess(boxes, scores, params, input_hw=input_hw, transforms=transforms)
    k = int(params.max_output_boxes)
    b = len(dets)
    num = np.zeros((b, 1), np.int32)
    out_boxes = np.zeros((b, k, 4), np.float32)
    out_scores = np.zeros((b, k), np.float32)
    out_classes = np.full((b, k), pad_class, np.int32)
    for i, d in enumerate(dets):
        m = len(d)
        num[i, 0] = m
        out_boxes[i, :m] = d.boxes
        out_scores[i, :m] = d.scores
        out_classes[i, :m] = d.class_ids
    return num, out_boxes, out_scores, out_classes


def detections_from_nms_outputs(num_detections: np.ndarray, detection_boxes: np.ndarray,
                                detection_scores: np.ndarray, detection_classes: np.ndarray) -> List[Detections]:
    """EfficientNMS_TRT-layout outputs -> one :class:`Detections` per image (boxes in the same
    pixels as the outputs; sorted by score descending, stable).

    Args:
        num_detections: ``[B, 1]`` (or ``[B]``) valid rows per image; detection_boxes ``[B, K, 4]``;
            detection_scores ``[B, K]``; detection_classes ``[B, K]``.
    """
    num = np.asarray(num_detections).reshape(-1)
    out = []
    for i in range(num.shape[0]):
        m = int(min(max(int(num[i]), 0), detection_scores.shape[1]))
        s = np.asarray(detection_scores[i, :m], np.float32)
        order = np.argsort(-s.astype(np.float64), kind="stable")
        out.append(Detections(boxes=np.asarray(detection_boxes[i, :m], np.float32)[order],
                              scores=s[order],
                              class_ids=np.asarray(detection_classes[i, :m], np.int64)[order]))
    return out


def baked_nms_conflicts(baked: Optional[NmsParams], wanted: NmsParams) -> List[str]:
    """What of ``wanted`` a model whose graph ends with NMS ``baked`` cannot honour (empty = all).

    A higher score threshold and fewer detections per image are applied after the graph, exactly
    (NMS at a higher threshold = the lower threshold's result filtered; a low-scored box never
    suppresses a higher one); a lower threshold, another IoU threshold, NMS kind or class mode,
    or more detections per image cannot be.
    """
    if baked is None:
        return ["its NMS parameters are unknown (no nms_params metadata)"]
    out = []
    if wanted.score_threshold < baked.score_threshold:
        out.append("score threshold %g (it keeps only scores > %g)" % (wanted.score_threshold, baked.score_threshold))
    if abs(wanted.iou_threshold - baked.iou_threshold) > 1e-6:
        out.append("IoU threshold %g (it uses %g)" % (wanted.iou_threshold, baked.iou_threshold))
    if wanted.beta != baked.beta:
        out.append("nms_kind %s (it uses %s)" % (wanted.nms_kind, baked.nms_kind))
    if wanted.class_agnostic != baked.class_agnostic:
        out.append("class_agnostic %s" % wanted.class_agnostic)
    if wanted.max_output_boxes > baked.max_output_boxes:
        out.append("%d detections per image (it returns at most %d)" % (wanted.max_output_boxes,
                                                                          baked.max_output_boxes))
    return out

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
    model detects the same way. A backend whose model has NMS in its graph (``backend.nms``) returns
    final detections: a higher ``score_threshold`` and a lower ``max_output_boxes`` than the graph's
    are applied to them (exactly what the NMS would have kept); what it cannot apply (a lower
    threshold, e.g. eval's 0.001, another IoU threshold or NMS kind) is one :class:`Yolo4Warning`.

    Args:
        backend: a :class:`~yolo4.runtime.backends.base.Backend`.
        params: :class:`~yolo4.nms_params.NmsParams`; default
            ``NmsParams.for_model(backend.info)`` (score > 0.25, NMS 0.45, the cfg's nms_kind, at
            most 300 detections per image); for a model with NMS in its graph, the graph's nms_kind,
            beta_nms and class mode.
        batch_size: images per backend call; default ``backend.fixed_batch``, else 8 (never more
            than ``backend.max_batch``).
        preprocess_on: ``"cpu"`` (default: :func:`~yolo4.runtime.preprocess.preprocess`) or ``"gpu"``
            (the backend's ``submit_frames``: one CUDA kernel, TensorRT backend only).
        **overrides: :class:`NmsParams` fields to change (``score_threshold=0.001``).

    Attributes:
        params: the :class:`NmsParams` in use.
        timings: :class:`Timings` accumulated over every :meth:`detect` call.

    Pipelining: batches are handed to ``backend.submit`` and up to ``backend.pipeline_depth`` of them
    are in flight (the TensorRT backend: one per execution context), so the next batch is
    preprocessed and the previous one post-processed while the GPU works; results come back in
    input order. Backends without it (depth 1) run one batch at a time.

    Raises:
        ValueError: ``batch_size < 1`` or an :class:`NmsParams` field out of range.
        TypeError: an override that is not an :class:`NmsParams` field.
        Yolo4Error: ``preprocess_on="gpu"`` with a backend that cannot (not TensorRT).
    """

    def __init__(self, backend: Backend, params: Optional[NmsParams] = None, batch_size: Optional[int] = None,
                 preprocess_on: str = "cpu", **overrides: Any) -> None:
        self.backend = backend
        baked = getattr(backend, "nms_params", None) if getattr(backend, "nms", None) else None
        if params is None and baked is not None:  # the graph's NMS kind is the model's
            fields = {"nms_kind": baked.nms_kind, "beta_nms": baked.beta_nms, "class_agnostic": baked.class_agnostic}
            params = NmsParams(**dict(fields, **overrides))
        elif params is None:
            params = NmsParams.for_model(backend.info, **overrides)
        elif overrides:
            params = NmsParams(**dict(params.as_dict(), **overrides))
        self.params = params
        self.batch_size = int(batch_size or backend.fixed_batch or 8)
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if backend.max_batch:
            self.batch_size = min(self.batch_size, int(backend.max_batch))
        if preprocess_on not in ("cpu", "gpu"):
            raise ValueError(f"preprocess_on must be 'cpu' or 'gpu', got {preprocess_on!r}")
        if preprocess_on == "gpu" and not hasattr(backend, "submit_frames"):
            raise Yolo4Error(f"GPU preprocessing needs the TensorRT backend (a .engine); the {backend.name} "
                             "backend preprocesses on the CPU")
        self.preprocess_on = preprocess_on
        self.timings = Timings()
        nms = getattr(backend, "nms", None)
        if nms:
            conflicts = baked_nms_conflicts(baked, params)
            if conflicts:
                warnings.warn("the model has NMS in its graph (%s%s), which cannot apply %s: its detections "
                              "are what that NMS kept (for mAP, export with --nms none or --conf 0.001)"
                              % (nms, "" if baked is None else ": score > %g, IoU %g, %s, at most %d per image"
                                 % (baked.score_threshold, baked.iou_threshold, baked.nms_kind,
                                    baked.max_output_boxes), "; ".join(conflicts)), Yolo4Warning, stacklevel=2)

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
        out: List[Detections] = []
        queue: Deque[List[Tuple[Any, list, int]]] = deque()
        for s in range(0, len(images), self.batch_size):
            queue.append(self.submit(images[s:s + self.batch_size]))
            if len(queue) >= self.pipeline_depth:
                out.extend(self.collect(queue.popleft()))
        while queue:
            out.extend(self.collect(queue.popleft()))
        return out

    __call__ = detect

    @property
    def pipeline_depth(self) -> int:
        """Batches worth keeping in flight (``backend.pipeline_depth``; 1 for synchronous backends)."""
        return max(1, int(getattr(self.backend, "pipeline_depth", 1)))

    def submit(self, images: Sequence[np.ndarray]) -> List[Tuple[Any, list, int]]:
        """Preprocess ``images`` and start the backend on them without waiting (the streaming half of
        :meth:`detect`): pass the returned ticket to :meth:`collect`, in submission order, keeping at
        most :attr:`pipeline_depth` tickets outstanding. More than ``batch_size`` images are split
        into several backend batches.

        Raises:
            ValueError: an image that is not uint8 HxWx3 (or grey/BGRA).
        """
        info = self.backend.info
        t = self.timings
        ticket = []
        for s in range(0, len(images), self.batch_size):
            chunk = images[s:s + self.batch_size]
            t0 = time.perf_counter()
            if self.preprocess_on == "gpu":  # upload, kernel and enqueue: counted as preprocessing
                pending, transforms = self.backend.submit_frames(chunk)  # type: ignore[attr-defined]
                t.preprocess += time.perf_counter() - t0
            else:
                batch, transforms = preprocess(chunk, info.input_hw, info.letter_box)
                t1 = time.perf_counter()
                pending = self.backend.submit(batch)  # a synchronous backend runs the network here
                t.preprocess += t1 - t0
                t.inference += time.perf_counter() - t1
            ticket.append((pending, transforms, len(chunk)))
        return ticket

    def collect(self, ticket: List[Tuple[Any, list, int]]) -> List[Detections]:
        """Wait for a :meth:`submit` ticket; one :class:`Detections` per image, as :meth:`detect`."""
        out: List[Detections] = []
        for pending, transforms, n in ticket:
            out.extend(self._collect(pending, transforms, n))
        return out

    def _collect(self, pending: Any, transforms: list, n: int) -> List[Detections]:
        """Wait for one batch's outputs, run the NMS and map boxes back to the images."""
        t = self.timings
        t1 = time.perf_counter()
        outs = pending.result()
        t2 = time.perf_counter()
        if getattr(self.backend, "nms", None):
            dets = [self._refilter(d) for d in detections_from_nms_outputs(*outs)]
        else:
            dets = postprocess(outs[0], outs[1], self.params, input_hw=self.backend.info.input_hw,
                               transforms=transforms)
        out = [Detections(scale_boxes_to_original(d.boxes, tr), d.scores, d.class_ids)
               for d, tr in zip(dets, transforms)]
        t.inference += t2 - t1
        t.nms += time.perf_counter() - t2
        t.images += n
        return out

    def _refilter(self, d: Detections) -> Detections:
        """Final detections of an NMS-ended model: ``score > score_threshold``, at most ``max_output_boxes``."""
        keep = np.flatnonzero(d.scores > self.params.score_threshold)[:self.params.max_output_boxes]
        if keep.size == len(d):
            return d
        return Detections(d.boxes[keep], d.scores[keep], d.class_ids[keep])
