"""Training checkpoints (``last.pt``, ``best.pt``) in the format of the shared spec, written atomically.

Format (``torch.save`` of a dict; only tensors, dicts, lists, str, int, float, bool and None so it
loads with ``torch.load(path, weights_only=True)``; defined, read and validated by
:mod:`yolo4.model.checkpoint` (``read_checkpoint`` for the dict, ``load_checkpoint`` for the model))::

    {"format": "yolo4-checkpoint", "version": 1, "cfg_text": str (the re-headed cfg), "names": [str],
     "model": state_dict (EMA weights when EMA is used), "epoch": int (completed epochs, 1-based),
     "best_fitness": float, "optimizer": state_dict or None, "ema": state_dict or None,
     "ema_updates": int, "train_args": dict, "yolo4_version": str, "metrics": dict,
     "train_model": state_dict or None}

With EMA (:mod:`.ema`), ``model`` and ``ema`` are the averaged weights (one copy in the file: the same
tensors) and ``train_model`` the raw weights the optimizer trains, needed to resume (``last.pt``
only; None in ``best.pt``). Without EMA (checkpoints of earlier versions) ``ema`` is None,
``train_model`` absent, and ``model`` the trained weights.

Writes go to a hidden temp file beside ``path`` (``.<name>.<hex>.tmp``, :func:`yolo4.fileio.atomic_path`)
that is moved over ``path`` with ``os.replace`` only once complete, so an interrupted save (crash,
full disk, Ctrl-C) leaves the previous checkpoint intact and no temp file behind.
"""

import os
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch

from .. import __version__
from ..fileio import atomic_path
from ..model.checkpoint import CHECKPOINT_FORMAT as FORMAT
from ..model.checkpoint import CHECKPOINT_VERSION as VERSION


def _plain(obj: Any) -> Any:
    """Convert to types ``torch.load(weights_only=True)`` accepts (Path -> str, tuple -> list, numpy scalars)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None or isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "item"):          # numpy / torch scalars
        return obj.item()
    return str(obj)


def make_checkpoint(model: torch.nn.Module, names, epoch: int, best_fitness: float,
                    optimizer: Optional[torch.optim.Optimizer] = None,
                    ema: Optional[Dict[str, torch.Tensor]] = None, ema_updates: int = 0,
                    train_args: Optional[Dict[str, Any]] = None,
                    metrics: Optional[Dict[str, Any]] = None,
                    train_model: Optional[torch.nn.Module] = None) -> Dict[str, Any]:
    """Build the checkpoint dict of the spec from a ``yolo4.model.Darknet`` module.

    Args:
        model: the Darknet module (``.cfg_text`` is stored; its ``state_dict`` is copied to CPU).
        names: class names, index = class id.
        epoch: completed epochs (1-based: 1 after the first epoch).
        best_fitness: best validation fitness so far (-1.0 before any evaluation).
        optimizer: its ``state_dict`` is stored for ``resume`` (None in ``best.pt``-only uses).
        ema, ema_updates: EMA weights / number of EMA updates (None / 0 without EMA).
        train_args: the run's arguments as resolved (plain values; ``resume`` reads them back, see
            :func:`yolo4.trainer.train.train`).
        metrics: the last evaluation's metrics.
        train_model: with EMA, the raw training model (``model`` is then the average); its
            ``state_dict`` is stored as ``train_model`` for resume. None: no such key.
    """
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    out = {
        "format": FORMAT,
        "version": VERSION,
        "cfg_text": str(model.cfg_text),
        "names": [str(n) for n in names],
        "model": state,
        "epoch": int(epoch),
        "best_fitness": float(best_fitness),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "ema": ema,
        "ema_updates": int(ema_updates),
        "train_args": _plain(dict(train_args or {})),
        "yolo4_version": __version__,
        "metrics": _plain(dict(metrics or {})),
    }
    if train_model is not None:
        out["train_model"] = {k: v.detach().cpu().clone() for k, v in train_model.state_dict().items()}
    return out


def save_checkpoint(ckpt: Dict[str, Any], path: Union[str, "os.PathLike[str]"]) -> Path:
    """Write ``ckpt`` to ``path`` atomically (hidden temp file, then ``os.replace``); returns ``path``.

    On any error the temp file is removed and the previous ``path`` (if any) is untouched; the
    error propagates.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(ckpt, str(tmp))
    return path
