"""Torch backend: runs a :class:`yolo4.model.Darknet` module (or anything with its interface).

The module's ``forward(x)`` takes ``[B, 3, H, W] float32`` RGB 0..1 and returns decoded
``(boxes [B, N, 4] x1y1x2y2 input px, scores [B, N, C])``; ``module.model_info()`` gives the
:class:`ModelInfo`. torch is imported when a backend is created, never when this module is imported.
Python 3.8 syntax.
"""

import dataclasses
import os
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from ...model_info import ModelInfo, check_input_size
from .base import Backend

__all__ = ["TorchBackend"]

PathLike = Union[str, "os.PathLike[str]"]


class TorchBackend(Backend):
    """Run a Darknet ``nn.Module`` under ``torch.inference_mode``.

    Give either ``module`` or ``cfg`` (+ ``weights``) or ``checkpoint``:

    Args:
        module: a ``yolo4.model.Darknet`` (or compatible) module; it is put in eval mode and moved
            to ``device``.
        cfg: darknet cfg path or known model name, loaded with ``yolo4.model.load_darknet``.
        weights: darknet ``.weights`` for ``cfg`` (None = random initialisation).
        checkpoint: a yolo4 training checkpoint (``.pt``), loaded with ``yolo4.model.load_checkpoint``.
        names: class names (list), overriding the module's.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...; default CUDA when available, else CPU.
        half: run in float16 (CUDA only; inputs/outputs stay float32 at the boundary).
        input_hw: run at this ``(H, W)`` (multiples of 32) instead of the cfg's ``[net]`` size.

    Attributes:
        info: ``module.model_info(names)``, with ``input_hw`` replaced when given.
        module: the torch module.

    Raises:
        ValueError: none or several of module / cfg / checkpoint given.
        Yolo4Error: an ``input_hw`` that is not a positive multiple of the model's stride.
        CfgError, WeightsError, AssetError: from the model loaders.
    """

    name = "torch"

    def __init__(self, module: object = None, cfg: Optional[PathLike] = None, weights: Optional[PathLike] = None,
                 checkpoint: Optional[PathLike] = None, names: Optional[Sequence[str]] = None,
                 device: Optional[str] = None, half: bool = False,
                 input_hw: Optional[Tuple[int, int]] = None) -> None:
        import torch

        given = [x is not None for x in (module, cfg, checkpoint)]
        if sum(given) != 1:
            raise ValueError("TorchBackend needs exactly one of module=, cfg= or checkpoint=")
        if cfg is not None:
            from ...model import load_darknet
            module = load_darknet(cfg, weights, names=list(names) if names is not None else None)
        elif checkpoint is not None:
            from ...model import load_checkpoint
            module = load_checkpoint(checkpoint)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self._torch = torch
        self.device = torch.device(device)
        self.half = bool(half) and self.device.type == "cuda"
        module = module.eval().to(self.device)
        if self.half:
            module = module.half()
        self.module = module
        info = module.model_info(names=list(names) if names is not None else None)
        if input_hw is not None:
            check = getattr(module, "check_input_size", None)  # a Darknet also checks every layer fits
            hw = check(input_hw, "input_hw") if check is not None else \
                check_input_size(input_hw, info.max_stride, "input_hw")
            info = dataclasses.replace(info, input_hw=hw)
        self.info: ModelInfo = info

    def _forward(self, batch: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self.device)
            if self.half:
                x = x.half()
            boxes, scores = self.module(x)
            boxes = boxes.float().cpu().numpy()
            scores = scores.float().cpu().numpy()
        return np.ascontiguousarray(boxes, np.float32), np.ascontiguousarray(scores, np.float32)

    def _release(self) -> None:
        self.module = None
