"""The interface every inference backend implements (ONNX Runtime, torch, TensorRT).

A backend runs the network only: preprocessed input in, and either decoded boxes and scores out
(``nms`` is None: the :class:`~yolo4.runtime.detector.Detector` runs darknet's NMS on them) or, for a
model with NMS in its graph (``yolo4 export --nms plugin|efficient|trt``, an engine with the DIoU-NMS
plugin), the final detections in EfficientNMS_TRT's layout (``nms`` names the kind, ``nms_params``
the parameters baked into the graph). :class:`~yolo4.runtime.detector.Detector` adds pre- and
post-processing on top and returns the same detections either way. Python 3.8, torch-free.
"""

import abc
from typing import List, Optional, Tuple

import numpy as np

from ...model_info import ModelInfo
from ...nms_params import NMS_GRAPH_KINDS, NMS_METADATA_KEYS, NmsParams, nms_metadata, read_nms_metadata

# the NMS-graph metadata names live in yolo4.nms_params (a ground-floor contract); re-exported here
__all__ = ["Backend", "Pending", "Done", "NMS_GRAPH_KINDS", "NMS_METADATA_KEYS", "nms_metadata", "read_nms_metadata"]


class Pending(abc.ABC):
    """Outputs of a batch handed to :meth:`Backend.submit`, possibly still being computed."""

    @abc.abstractmethod
    def result(self) -> Tuple[np.ndarray, ...]:
        """Wait for the batch and return its outputs (as :meth:`Backend.__call__` documents); calling
        it again returns the same arrays."""


class Done(Pending):
    """Outputs that are already computed (what a backend without pipelining returns)."""

    def __init__(self, outputs: Tuple[np.ndarray, ...]) -> None:
        self._outputs = outputs

    def result(self) -> Tuple[np.ndarray, ...]:
        return self._outputs


class Backend(abc.ABC):
    """A loaded model that maps a preprocessed batch to decoded boxes and scores.

    A template: :meth:`__call__` checks that the backend is open, validates the batch
    (:func:`check_batch`), and splits it into chunks the model accepts (a fixed batch size is
    zero-padded; a maximum batch, e.g. a TensorRT optimization profile's, is respected); subclasses
    implement only :meth:`_forward` on one such chunk and, when they hold resources, :meth:`_release`.

    Attributes:
        info: the model's :class:`~yolo4.model_info.ModelInfo` (names, input size, resize
            mode, NMS kind).
        name: short backend name (``"onnxruntime"``, ``"torch"``, ...).

    Use as a context manager (or call :meth:`close`) to release sessions and device memory.
    """

    name = "base"
    info: ModelInfo
    #: None: outputs are decoded ``(boxes, scores)``; else the NMS in the model's graph
    #: (``"plugin"``, ``"efficient"``, ``"trt"``) and outputs are final detections
    nms: Optional[str] = None
    #: the NMS parameters baked into the graph (None when ``nms`` is None or they are unknown)
    nms_params: Optional[NmsParams] = None
    _closed = False

    @property
    def fixed_batch(self) -> Optional[int]:
        """The batch size the model was built for, or None when the batch dimension is dynamic.

        Any batch size is accepted by :meth:`__call__` (split and padded); callers that care about
        efficiency feed batches of this size.
        """
        return None

    @property
    def max_batch(self) -> Optional[int]:
        """The largest batch one :meth:`_forward` call takes (a fixed batch, or the maximum of a
        dynamic range such as a TensorRT optimization profile); None = unlimited."""
        return self.fixed_batch

    def __call__(self, batch: np.ndarray) -> Tuple[np.ndarray, ...]:
        """Run the network.

        Args:
            batch: ``[B, 3, H, W] float32`` RGB 0..1, ``(H, W) = info.input_hw``, as produced by
                :func:`yolo4.runtime.preprocess.preprocess`; any ``B >= 1``.

        Returns:
            When :attr:`nms` is None, ``(boxes, scores)``: ``boxes [B, N, 4] float32`` x1, y1, x2, y2
            in input pixels, ``scores [B, N, C] float32`` objectness x class probability. Otherwise
            ``(num_detections [B, 1] int32, detection_boxes [B, K, 4] float32 (input pixels),
            detection_scores [B, K] float32, detection_classes [B, K] int32)``, rows sorted by score,
            only the first ``num_detections`` of each image valid. Numpy, C-contiguous.

        Raises:
            RuntimeError: the backend is closed.
            ValueError: a batch of the wrong shape (see :func:`check_batch`).
        """
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed")
        batch = check_batch(batch, self.info.input_hw)
        step = self.max_batch
        if step is None or batch.shape[0] == step or (batch.shape[0] < step and self.fixed_batch is None):
            return self._forward(batch)
        parts: List[List[np.ndarray]] = []
        for s in range(0, batch.shape[0], step):
            chunk = batch[s:s + step]
            n = chunk.shape[0]
            if self.fixed_batch is not None and n < step:
                chunk = np.concatenate([chunk, np.zeros((step - n,) + chunk.shape[1:], np.float32)])
            outs = self._forward(chunk)
            if not parts:
                parts = [[] for _ in outs]
            for acc, o in zip(parts, outs):
                acc.append(o[:n])
        return tuple(np.concatenate(p) for p in parts)

    @property
    def pipeline_depth(self) -> int:
        """Batches that may be in flight at once through :meth:`submit` (1: no pipelining)."""
        return 1

    def submit(self, batch: np.ndarray) -> Pending:
        """Start running a batch and return a :class:`Pending` whose ``result()`` gives what
        :meth:`__call__` returns. Backends that run asynchronously (TensorRT: one batch per execution
        context) return before the work is done, so the caller can prepare the next batch and
        post-process the previous one meanwhile; this default runs it at once.

        Raises:
            RuntimeError, ValueError: as :meth:`__call__`.
        """
        return Done(self(batch))

    @abc.abstractmethod
    def _forward(self, batch: np.ndarray) -> Tuple[np.ndarray, ...]:
        """Run one chunk: ``batch [b, 3, H, W] float32`` (validated; ``b == fixed_batch`` when the
        model has one, else ``b <= max_batch``) -> ``(boxes [b, N, 4], scores [b, N, C])`` float32
        C-contiguous numpy arrays, or the four NMS outputs when :attr:`nms` is set, as
        :meth:`__call__` documents."""

    def close(self) -> None:
        """Release the model (idempotent). The backend is unusable afterwards."""
        if not self._closed:
            self._closed = True
            self._release()

    def _release(self) -> None:  # noqa: B027 - optional hook, a no-op for backends holding nothing
        """Free sessions, contexts, device memory (called once by :meth:`close`)."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def __repr__(self) -> str:
        info = getattr(self, "info", None)
        hw = info.input_hw if info is not None else None
        return f"{type(self).__name__}(input_hw={hw}, fixed_batch={self.fixed_batch})"


def check_batch(batch: np.ndarray, input_hw: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """Validate a network input batch; return it as C-contiguous float32.

    Raises:
        ValueError: not ``[B, 3, H, W]`` with ``B >= 1`` (and ``(H, W) == input_hw`` when given).
    """
    batch = np.ascontiguousarray(batch, dtype=np.float32)
    if batch.ndim != 4 or batch.shape[1] != 3 or batch.shape[0] < 1:
        raise ValueError(f"expected a batch [B,3,H,W] with B >= 1, got shape {batch.shape}")
    if input_hw is not None and tuple(batch.shape[2:]) != tuple(input_hw):
        raise ValueError(f"batch is {batch.shape[2]}x{batch.shape[3]} (HxW) but the model input is "
                         f"{input_hw[0]}x{input_hw[1]}")
    return batch
