"""The yolo4 checkpoint format, defined once: read and validated here, written by the trainer.

A checkpoint is a ``torch.save`` dict holding only tensors, dicts, lists, str, int, float, bool and
None, so it loads with ``torch.load(weights_only=True)`` (PyTorch's restricted unpickler: a foreign
pickle is refused, never executed)::

    {"format": "yolo4-checkpoint", "version": 1,
     "cfg_text": str,            # the darknet cfg the weights belong to (re-headed for the dataset)
     "names": [str],             # class names, index = class id
     "model": state_dict,        # the Darknet module's weights (EMA weights when EMA is used)
     "epoch": int,               # completed epochs (1-based)
     "best_fitness": float, "optimizer": state_dict | None, "ema": state_dict | None,
     "ema_updates": int,
     "train_args": dict,         # the run's arguments: cfg, data, epochs, batch_size, img_size [h, w], ...
     "yolo4_version": str, "metrics": dict}

:func:`read_checkpoint` returns the validated dict (the trainer resumes from it);
:func:`load_checkpoint` builds the eval-mode :class:`~yolo4.model.darknet.Darknet` from it, at the
input size it was trained at. ``yolo4.trainer.checkpoint`` writes it.
"""

import os
import warnings
from typing import Any, Dict, Union

from yolo4.errors import WeightsError, Yolo4Error

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "REQUIRED_KEYS", "read_checkpoint", "load_checkpoint",
           "checkpoint_input_hw"]

#: ``format`` value of every yolo4 checkpoint
CHECKPOINT_FORMAT = "yolo4-checkpoint"
#: newest ``version`` this package reads and writes
CHECKPOINT_VERSION = 1
#: keys a checkpoint must have to be loadable as a model
REQUIRED_KEYS = ("cfg_text", "model")

PathLike = Union[str, "os.PathLike[str]"]

_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default (zip) container
_PICKLE_PROTOCOL = 0x80     # legacy torch.save: a pickle stream starting with PROTO


def read_checkpoint(path: PathLike) -> Dict[str, Any]:
    """Read and validate a yolo4 checkpoint (CPU tensors), without executing any pickled code.

    Args:
        path: the ``.pt`` file.

    Returns:
        the checkpoint dict (keys in the module docstring).

    Raises:
        WeightsError: one line naming ``path``: missing or unreadable file, not a PyTorch file (text,
            an image, ...), a pickle holding anything but tensors and plain values (refused by
            ``weights_only``), another program's checkpoint (no ``format`` key), a newer version, or
            missing required keys.
    """
    import torch

    p = os.fspath(path)
    if not os.path.isfile(p):
        raise WeightsError("checkpoint file not found", p)
    try:
        with open(p, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise WeightsError(f"cannot read checkpoint ({e.strerror or e})", p) from None
    if not (head.startswith(_ZIP_MAGIC) or (head[:1] and head[0] == _PICKLE_PROTOCOL)):
        raise WeightsError("not a PyTorch checkpoint (a yolo4 .pt written by `yolo4 train` was expected)", p)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's pickle-protocol notices
            ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a corrupt or foreign file
        msg = str(e)
        if "Weights only load failed" in msg or "weights_only" in msg:
            raise WeightsError("not a yolo4 checkpoint: it holds Python objects other than tensors and "
                               "plain values (refused, never executed)", p) from None
        first = (msg.strip().splitlines() or [type(e).__name__])[0][:200]
        raise WeightsError(f"cannot read checkpoint (corrupt or truncated: {first})", p) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise WeightsError(f"not a yolo4 checkpoint (no format={CHECKPOINT_FORMAT!r}); a darknet model "
                           "is given as --cfg and --weights", p)
    try:
        version = int(ckpt.get("version", 0))
    except (TypeError, ValueError):
        raise WeightsError(f"checkpoint has an invalid version {ckpt.get('version')!r}", p) from None
    if version > CHECKPOINT_VERSION:
        raise WeightsError(f"checkpoint version {version} is newer than this yolo4 reads "
                           f"({CHECKPOINT_VERSION}); upgrade yolo4", p)
    for k in REQUIRED_KEYS:
        if k not in ckpt:
            raise WeightsError(f"checkpoint lacks {k!r}", p)
    if not isinstance(ckpt["cfg_text"], str) or not isinstance(ckpt["model"], dict):
        raise WeightsError("checkpoint 'cfg_text' must be the cfg text and 'model' a state dict", p)
    return ckpt


def checkpoint_input_hw(ckpt: Dict[str, Any]):
    """The ``(height, width)`` the checkpoint was trained at (``train_args["img_size"]``), or None."""
    args = ckpt.get("train_args") or {}
    size = args.get("img_size") if isinstance(args, dict) else None
    try:
        if isinstance(size, (list, tuple)) and len(size) == 2:
            return int(size[0]), int(size[1])
        if isinstance(size, int) and not isinstance(size, bool):
            return int(size), int(size)
    except (TypeError, ValueError):
        return None
    return None


def load_checkpoint(path: PathLike):
    """Load a yolo4 checkpoint as an eval-mode :class:`~yolo4.model.darknet.Darknet` on the CPU.

    ``module.names`` are the checkpoint's names; ``module.input_hw`` is the size it was trained at
    (``train_args["img_size"]``), so eval, infer and export default to it rather than to the
    cfg's ``[net]`` size.

    The embedded cfg text is parsed as text (errors and warnings name the checkpoint file, with the
    line inside ``cfg_text``).

    Raises:
        WeightsError: see :func:`read_checkpoint`; also a state dict that does not fit the cfg, names
            whose count differs from the cfg's classes, or a training size the cfg does not run at.
        CfgError: the embedded cfg is empty or invalid.
    """
    from yolo4.model.darknet import Darknet

    p = os.fspath(path)
    ckpt = read_checkpoint(p)
    model = Darknet(text=ckpt["cfg_text"], path=p, init=False)
    try:
        model.load_state_dict(ckpt["model"], strict=True)
    except RuntimeError as e:
        raise WeightsError(f"state dict does not match the checkpoint's cfg: {str(e).splitlines()[0][:300]}",
                           p) from None
    names = ckpt.get("names")
    if names is not None:
        names = [str(n) for n in names]
        if len(names) != model.num_classes:
            raise WeightsError(f"{len(names)} names for a {model.num_classes}-class model", p)
    model.names = names
    hw = checkpoint_input_hw(ckpt)
    if hw is not None and min(hw) > 0:
        try:
            model.input_hw = model.check_input_size(hw, "train_args img_size")
        except Yolo4Error as e:
            raise WeightsError(f"checkpoint trained at {hw[0]}x{hw[1]}, a size its cfg does not run at "
                               f"({e})", p) from None
    return model.eval()
