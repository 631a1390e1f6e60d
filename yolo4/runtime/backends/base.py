"""The interface every inference backend implements (ONNX Runtime, torch, TensorRT).

A backend runs the network only: preprocessed input in, decoded boxes and scores out (no NMS).
:class:`~yolo4.runtime.detector.Detector` adds pre/post-processing on top. Python 3.8, torch-free.
"""

import abc
from typing import Optional, Tuple

import numpy as np

from ...model_info import ModelInfo

__all__ = ["Backend"]


class Backend(abc.ABC):
    """A loaded model that maps a preprocessed batch to decoded boxes and scores.

    Attributes:
        info: the model's :class:`~yolo4.model_info.ModelInfo` (names, input size, resize
            mode, NMS kind).
        name: short backend name (``"onnxruntime"``, ``"torch"``, ...).

    Use as a context manager (or call :meth:`close`) to release sessions and device memory.
    """

    name = "base"
    info: ModelInfo

    @property
    def fixed_batch(self) -> Optional[int]:
        """The batch size the model was built for, or None when the batch dimension is dynamic.

        Backends with a fixed batch still accept any batch size in :meth:`__call__` (they split and
        pad); callers that care about efficiency feed batches of this size.
        """
        return None

    @abc.abstractmethod
    def __call__(self, batch: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Run the network.

        Args:
            batch: ``[B, 3, H, W] float32`` RGB 0..1, ``(H, W) = info.input_hw``, as produced by
                :func:`yolo4.runtime.preprocess.preprocess`.

        Returns:
            ``(boxes, scores)``: ``boxes [B, N, 4] float32`` x1, y1, x2, y2 in input pixels,
            ``scores [B, N, C] float32`` objectness x class probability (numpy, C-contiguous).
        """

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op for backends holding nothing
        """Release the model (idempotent). The backend is unusable afterwards."""

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
