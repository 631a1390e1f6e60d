"""``train()``: fine-tune a darknet cfg (+ pretrained .weights) on a dataset.

One epoch = one pass over the training split in a seeded random order. Per optimizer step:
images (``[B,3,H,W]`` float32 RGB 0..1, augmented by :mod:`.augment` at the network size) ->
``Darknet.forward(x, raw=True)`` -> :class:`.loss.YoloLoss` -> SGD. After every ``eval_every``-th
epoch (and the last) the model is validated through the runtime (:mod:`.validate`), ``last.pt`` is
written, and ``best.pt`` when the fitness improved. At the end ``best.weights`` + ``best.cfg`` +
``best.names`` (darknet's files, usable by darknet / OpenCV DNN / ``yolo4 export``) are written from
the best checkpoint.

Optimizer (darknet ``src/convolutional_layer.c`` ``update_convolutional_layer``): SGD with the cfg's
``momentum`` and ``decay``; weight decay on conv weights only (darknet decays ``l.weights``, never
biases or batch-norm scales). ``optimizer="adam"|"adamw"`` and ``nesterov=True`` are options
(:mod:`.optim`). ``subdivisions=N`` accumulates the gradients of N mini-batches of ``batch / N``
images before each step, darknet's ``subdivisions`` (:func:`accumulate_gradients`); ``amp`` (CUDA
only, on by default there) runs the forward in float16 autocast with a ``GradScaler``.

Learning rate. Darknet (``src/network.c`` ``update_network``) steps ``w += learning_rate / batch *
sum of per-image gradients`` once per ``batch`` = 64 images (every yolov4 training cfg), with a loss
summed over all cells of each image; :mod:`.loss` sums the same way and returns the per-image mean,
so one torch step with ``lr`` is one darknet step with ``learning_rate = lr``. At batch ``B`` torch
takes ``64 / B`` such steps per 64 images: the cfg's ``learning_rate`` unscaled (the earlier
default) is ``64 / B`` times darknet's rate per image (x8 at batch 8). The default depends on what
the fine-tune has to learn:

- the model's own classes (heads kept): darknet's per-image rate, ``lr = learning_rate * batch_size
  / 64`` (:data:`NOMINAL_BATCH`; linear scaling, the same as accumulating darknet's 64-image update;
  yolov4-tiny at batch 8: 0.000326), which keeps what the model knew (the coco128 table below);
- a new class list (heads re-made from pretrained weights): the cfg's ``learning_rate`` per step
  for every layer (0.00261 for yolov4-tiny at any batch; at batch 64 darknet's own rate), no
  weight average, as darknet trains a custom model (the new heads start from nothing and the
  body has to move with them), and the box term at 15/7 of the cfg's ``iou_normalizer``
  (``iou_normalizer_scale``; yolov4-tiny: 0.07 -> 0.15): a short fine-tune localises better with it
  (the raccoon / chess table below), darknet's value being tuned for runs of 500k+ iterations.

``best.pt`` and every validation use an EMA of the weights (:mod:`.ema`, horizon and ramp 10 % of the
run's steps) when the model keeps its classes. Runs of the previous default (re-made heads at 8x the
body's rate, ``head_lr_scale`` in ``last.pt``) resume with it. Batch norm trains as in darknet
(batch statistics, running statistics with darknet's momentum 0.01); :data:`FREEZE_BN` (eval-mode
batch norm) is off by default: measured below.

Measured (yolov4-tiny + COCO weights, coco128 split with ``random.Random(0)`` into 96 train / 32
held-out images, 3 epochs, batch 8, 416 px, the final model; held-out mAP@.5 / mAP@[.5:.95];
pretrained 0.536 / 0.332; seeds change the data order and augmentation draws):

    ===============================================  =============  =============  =============
    settings                                         seed 0         seed 1         seed 2
    ===============================================  =============  =============  =============
    earlier default: lr 0.00261, no EMA              0.552 / 0.327  0.564 / 0.309  0.545 / 0.303
    lr 0.00261, EMA (decay 0.9999, tau 3.6)          0.557 / 0.336  -              -
    lr 0.00261, BN frozen                            0.510 / 0.277  -              -
    lr 0.000326, no EMA                              0.561 / 0.333  0.532 / 0.331  -
    lr 0.000326, BN frozen, EMA                      0.576 / 0.335  0.576 / 0.342  0.531 / 0.313
    lr 0.000326, EMA                                 0.562 / 0.333  0.533 / 0.331  0.537 / 0.332
    default: the same with darknet's box deltas      0.561 / 0.337  0.556 / 0.334  0.560 / 0.330
    ===============================================  =============  =============  =============

The earlier default lost 0.005-0.029 mAP@[.5:.95] on images it did not train on (and the README
demo's model called darknet's horses "elephant"); the default stays within 0.004 of the pretrained
model on both metrics at every seed (frozen BN gains more on average but lost 0.019 at seed 2).
A new class list (raccoon: 1 class, re-made heads, 5 epochs, batch 8, 320 px, the final model's test
mAP@.5 / mAP@[.5:.95]; the default's row from benchmarks/finetune.py, the others from the search):

    ===============================================================  =============  =============  =============
    settings                                                         seed 0         seed 1         seed 2
    ===============================================================  =============  =============  =============
    lr 0.000326, re-made heads 0.00261, EMA                          0.679 / 0.268  0.723 / 0.254  -
    lr 0.0013, re-made heads 0.0026, EMA                             0.859 / 0.341  0.761 / 0.289  -
    lr 0.00261, re-made heads 0.0052, EMA                            0.840 / 0.346  0.814 / 0.299  -
    lr 0.00261 everywhere, EMA                                       0.840 / 0.337  -              -
    lr 0.00261 everywhere, no EMA (the last default)                 0.859 / 0.345  0.871 / 0.300  0.893 / 0.328
    the same, iou_normalizer x2                                      0.850 / 0.403  0.854 / 0.317  0.817 / 0.325
    default: the same, iou_normalizer x15/7                          0.874 / 0.391  0.848 / 0.298  0.877 / 0.348
    ===============================================================  =============  =============  =============

Seeds 3-5 (README, *Fine-tuning defaults*): means over seeds 0-5 0.879 / 0.327 (the last default),
0.855 / 0.346 (x2), 0.862 / 0.344 (x15/7): the box weight trades a little mAP@.5 for mAP@[.5:.95].
(2 epochs, earlier: lr 0.000326 everywhere 0.055 / 0.014, the fresh head barely moves.) Pass ``lr=``
to override the rate.

Schedule (:mod:`.schedule`): darknet burn-in ``lr * (it / burn_in) ** 4`` with the cfg's
``burn_in`` clipped to 10 % of the run, then cosine to ``lr * 0.01`` (the measured default above;
the cfg's ``policy=steps`` is not followed unless asked: ``policy="steps"`` puts its ``steps`` at
the same fractions of this run as of ``max_batches``, ``policy="sgdr"`` / ``"constant"`` likewise,
:func:`.schedule.from_cfg`). Gradients are clipped to a
global norm of 10 (a guard against the first steps of a fresh head; darknet clips per element with
``max_delta`` instead).

Resume: ``last.pt``'s ``train_args`` hold every run-defining argument as the run resolved it
(:data:`RUN_ARGS`; cfg/data/weights as absolute paths where they were files) and the schedule
(``policy``, ``total_iters``, ``steps_per_epoch``, ``burn_in``, ``power``, ``final_ratio``, ``steps``,
``scales``, ``sgdr_cycle``, ``sgdr_mult``, ``lr_min``; :meth:`.schedule.LRSchedule.to_args`), the
optimizer (``optimizer``, ``nesterov``, ``subdivisions``; ``amp_scaler`` holds AMP's state) and the recipe
(``head_lr_scale``, ``freeze_bn``, ``ema_tau``, ``ema_decay``); ``last.pt`` also holds the EMA
(``ema``, ``ema_updates``) and the raw weights behind it (``train_model``). ``resume=True`` takes all
of them from there, so the resumed epochs are the ones the uninterrupted run would have trained
(same size, batch, order, learning rate at every step, same average). A checkpoint written before
these keys existed resumes as it ran: one lr for all layers, batch norm trained, no EMA.

Multi-GPU / multi-node: DDP under ``torchrun`` (``yolo4 train --devices 0,1`` or ``--devices cpu:2``);
``batch_size`` is then the global batch, split across the processes, so the schedule and every
step's images are those of one process at the same batch (:mod:`.distributed`).

Also: mosaic / CutMix / MixUp / blur (:mod:`.augment`), SAT (``[net] adversarial_lr``, :mod:`.sat`),
CmBN (``cmbn=True`` with ``subdivisions > 1``, :mod:`.cmbn`), random training shapes
(``random=1``, :mod:`.multiscale`) and DropBlock's warm-up (``[dropout] dropblock=1``: probability
and block size ramp up to 85 % of the run's iterations, :func:`yolo4.model.layers.dropblock_multiplier`
with the run's iterations as darknet's ``max_batches``).
"""

import contextlib
import csv
import dataclasses
import io
import math
import numbers
import os
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from ..errors import Yolo4Error
from ..fileio import atomic_write_text, check_writable_dir
from ..model.checkpoint import read_checkpoint
from ..model.layers import Dropout, dropblock_multiplier
from ..model_info import check_input_size
from . import distributed, multiscale, sat
from .augment import AugmentConfig
from .checkpoint import make_checkpoint, save_checkpoint
from .cmbn import CrossMiniBatchNorm
from .dataset import YoloDataset, collate, epoch_order
from .ema import ModelEMA, ema_decay, ema_tau
from .loss import YoloLoss
from .optim import OPTIMIZERS, build_optimizer, default_optimizer
from .plots import ScalarLogger, plot_run
from .schedule import POLICIES, LRSchedule, from_cfg
from .validate import evaluate_model, fitness

PathLike = Union[str, "os.PathLike[str]"]

#: at most this many bad-label warnings are printed per split (then a count)
MAX_WARNINGS = 10
#: global gradient-norm clip
GRAD_CLIP = 10.0
#: the batch darknet's ``learning_rate`` is tuned for (``batch=64`` in every yolov4 training cfg); the
#: default lr is scaled by ``batch_size / NOMINAL_BATCH`` (see the module docstring)
NOMINAL_BATCH = 64
#: a new class list (re-made heads) trains the box term at this multiple of the cfg's ``iou_normalizer``
#: (measured in the module docstring; ``iou_normalizer_scale=1`` trains the cfg's value)
NEW_CLASS_IOU_NORMALIZER_SCALE = 0.15 / 0.07     # yolov4-tiny's and yolov4's 0.07 -> 0.15
#: keep batch norm in eval mode in new runs from pretrained weights (running statistics used and not
#: updated; scales and shifts still trained). Off: measured less stable, see the module docstring
FREEZE_BN = False
#: results.csv columns
CSV_FIELDS = ["epoch", "box", "obj", "cls", "loss", "lr", "map50", "map50_95", "fitness", "time_s"]
#: the run-defining arguments of :func:`train` and what a new run uses for each one left at None
#: (None here: derived from the cfg / dataset, or no such input). ``resume=True`` takes them all
#: from the checkpoint instead.
RUN_ARGS: Dict[str, Any] = {
    "cfg": None, "data": None, "weights": None, "epochs": 10, "batch_size": 8, "img_size": None,
    "lr": None, "seed": 0, "max_images": None, "augment": True, "jitter": None, "box_grad": "darknet",
    "eval_every": 1, "policy": "cosine", "optimizer": None, "nesterov": False, "subdivisions": 1, "cmbn": False,
    "multi_scale": None, "iou_normalizer_scale": None,
}
#: the ``yolo4 train`` option of each run-defining argument (messages speak the CLI's terms)
CLI_OPTIONS: Dict[str, str] = {
    "cfg": "--cfg", "data": "--data", "weights": "--weights", "epochs": "--epochs", "batch_size": "--batch",
    "img_size": "--img-size", "lr": "--lr", "seed": "--seed", "max_images": "--max-images",
    "augment": "--augment", "jitter": "--jitter", "box_grad": "--box-grad", "eval_every": "--eval-every",
    "policy": "--policy", "optimizer": "--optimizer", "nesterov": "--nesterov", "subdivisions": "--subdivisions",
    "cmbn": "--cmbn", "multi_scale": "--multi-scale", "iou_normalizer_scale": "--iou-normalizer-scale",
}
BOX_GRADS = ("darknet", "chain")


def _resolved_paths(records) -> List[str]:
    """Each record's image path with its folder resolved (symlinks, ``..``); one ``realpath`` per folder."""
    folders: Dict[str, str] = {}
    out = []
    for r in records:
        folder, name = os.path.split(os.path.abspath(r.path))
        if folder not in folders:
            folders[folder] = os.path.realpath(folder)
        out.append(os.path.join(folders[folder], name))
    return out


def split_overlap_warning(train_records: Sequence, val_records: Sequence) -> Optional[str]:
    """A one-line warning when validation images are also training images (same resolved path), else None.

    Validation on images the model trained on measures memorisation: a COCO json given as the
    dataset (its one split serves as train and val) or a YAML whose ``val`` repeats ``train``.
    """
    train_set = set(_resolved_paths(train_records))
    val_set = set(_resolved_paths(val_records))
    shared = len(val_set & train_set)
    if not shared:
        return None
    if val_set == train_set:
        return (f"warning: the train and val splits are the same {len(val_set)} images: validation mAP "
                f"measures memorisation, not how the model does on new images")
    return (f"warning: {shared} of the {len(val_set)} val images are also in the train split: mAP on them "
            f"measures memorisation")


def _source(value: Optional[PathLike]) -> Optional[str]:
    """A cfg / data / weights argument as stored in ``train_args``: the absolute path when it names an
    existing file or folder (so a resume from another working folder finds it), else as given (a known
    name such as ``yolov4-tiny`` or ``raccoon``)."""
    if value is None:
        return None
    text = os.fspath(value)
    return str(Path(text).resolve()) if os.path.exists(text) else text


def _same(key: str, given: Any, stored: Any) -> bool:
    """Whether an explicitly given run argument equals the value the run stored for it."""
    if stored is None or given is None:
        return stored is None and given is None
    if key in ("cfg", "data", "weights"):
        g = os.fspath(given)
        if g == stored or _source(g) == stored:
            return True
        try:
            return os.path.exists(g) and os.path.exists(stored) and os.path.samefile(g, stored)
        except OSError:
            return False
    if key == "img_size":
        try:
            return tuple(check_input_size(given, 1, "--img-size")) == tuple(int(v) for v in stored)
        except (Yolo4Error, TypeError, ValueError):
            return False
    if key in ("lr", "jitter"):
        return math.isclose(float(given), float(stored), rel_tol=1e-9, abs_tol=1e-12)
    return given == stored


def _show(key: str, value: Any) -> str:
    """A run argument's value as a user would write it (``160``, ``320x416``, ``on``, ``none``)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if key == "img_size":
        if isinstance(value, (list, tuple)):
            return str(value[0]) if len(value) == 2 and value[0] == value[1] else "x".join(map(str, value))
        return str(value)
    if isinstance(value, float):
        return f"{value:g}"
    return os.fspath(value) if isinstance(value, os.PathLike) else str(value)


def _option(key: str, value: Any) -> str:
    """The CLI option that gives ``key`` this value: ``--epochs 10``, ``--no-augment``."""
    if key in ("augment", "nesterov", "cmbn", "multi_scale"):
        name = CLI_OPTIONS[key].lstrip("-")
        return f"--{name}" if value else f"--no-{name}"
    return f"{CLI_OPTIONS[key]} {_show(key, value)}"


def _iou_scale_note(scale: float, yolo_layers) -> str:
    """``, iou_normalizer 0.07 x2.14286 = 0.15`` for the log line (empty at x1)."""
    if scale == 1.0:
        return ""
    cfg_values = sorted({float(yl.spec.iou_normalizer) for yl in yolo_layers})
    shown = "/".join(f"{v:g}" for v in cfg_values)
    return f", iou_normalizer {shown} x{scale:g} = {'/'.join(f'{v * scale:g}' for v in cfg_values)}"


def _check_given(given: Dict[str, Any]) -> None:
    """Refuse impossible values of the explicitly given run arguments (before any work)."""
    for key in ("epochs", "batch_size", "eval_every", "max_images", "subdivisions"):
        v = given.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1):
            raise Yolo4Error(f"{CLI_OPTIONS[key]} must be a whole number >= 1, got {v!r}")
    if given.get("box_grad") is not None and given["box_grad"] not in BOX_GRADS:
        raise Yolo4Error(f"--box-grad must be one of {', '.join(BOX_GRADS)}, got {given['box_grad']!r}")
    if given.get("policy") is not None and given["policy"] not in POLICIES:
        raise Yolo4Error(f"--policy must be one of {', '.join(POLICIES)}, got {given['policy']!r}")
    if given.get("optimizer") is not None and given["optimizer"] not in OPTIMIZERS:
        raise Yolo4Error(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {given['optimizer']!r}")
    sub, bs = given.get("subdivisions"), given.get("batch_size")
    if sub is not None and bs is not None and bs % sub:
        raise Yolo4Error(f"--subdivisions {sub} must divide --batch {bs} (darknet: mini-batches of "
                         f"batch/subdivisions images)")
    j = given.get("jitter")
    if j is not None and not 0.0 <= float(j) < 1.0:
        raise Yolo4Error(f"--jitter must be in [0, 1), got {j!r}")
    g = given.get("iou_normalizer_scale")
    if g is not None and (isinstance(g, bool) or not isinstance(g, numbers.Real) or not 0.0 < float(g) < math.inf):
        raise Yolo4Error(f"--iou-normalizer-scale must be a number > 0, got {g!r}")


def resume_args(given: Dict[str, Any], stored: Dict[str, Any], output_dir: PathLike) -> Dict[str, Any]:
    """The run arguments of a resumed run: the stored ones, each explicitly given one checked against them.

    Args:
        given: :data:`RUN_ARGS` keys -> the caller's values (None = not given).
        stored: the checkpoint's ``train_args``.
        output_dir: the run's folder (for the message).

    Returns:
        :data:`RUN_ARGS` keys -> the run's values (a key missing from an older checkpoint: the given
        value, else the new-run default).

    Raises:
        Yolo4Error: a given value differs from the run's (one line naming the CLI option, e.g.
            ``--epochs 10 conflicts with the run being resumed in runs/train (epochs 4): ...``).
    """
    out: Dict[str, Any] = {}
    for key, default in RUN_ARGS.items():
        g = given.get(key)
        if key not in stored:
            out[key] = default if g is None else g
            continue
        if g is not None and not _same(key, g, stored[key]):
            name = CLI_OPTIONS[key].lstrip("-")
            raise Yolo4Error(f"{_option(key, g)} conflicts with the run being resumed in {os.fspath(output_dir)} "
                             f"({name} {_show(key, stored[key])}): --resume continues a run as it was; "
                             f"start a new run to change it")
        out[key] = stored[key]
    return out


def param_groups(model: nn.Module, decay: float, fresh: Sequence[nn.Module] = (),
                 fresh_lr_scale: float = 1.0) -> List[Dict[str, Any]]:
    """SGD parameter groups: conv weights with ``weight_decay=decay``; biases and BN without.

    The parameters of the ``fresh`` modules (freshly initialised heads) form two more groups of the
    same kinds with ``lr_scale=fresh_lr_scale`` (the trainer sets each group's lr to the schedule's
    times its ``lr_scale``); without ``fresh`` there are just the two groups.
    """
    fresh_ids = {id(p) for m in fresh for p in m.parameters()}
    groups = {(f, d): [] for f in (False, True) for d in (True, False)}
    seen = set()
    for m in model.modules():
        for name, p in m.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            groups[(id(p) in fresh_ids, isinstance(m, nn.Conv2d) and name == "weight")].append(p)
    out = [{"params": groups[(False, True)], "weight_decay": float(decay)},
           {"params": groups[(False, False)], "weight_decay": 0.0}]
    if fresh_ids:
        scale = float(fresh_lr_scale)
        out += [{"params": groups[(True, True)], "weight_decay": float(decay), "lr_scale": scale},
                {"params": groups[(True, False)], "weight_decay": 0.0, "lr_scale": scale}]
    return out


def fresh_heads(cfg: PathLike, model: nn.Module) -> bool:
    """Whether ``load_darknet(cfg, weights, num_classes=...)`` re-made (freshly initialised) the heads of
    ``model``: the cfg's ``[yolo]`` classes differ from the model's."""
    from ..model import _resolve, build_specs, parse_cfg_text, read_cfg_text

    text, path = read_cfg_text(_resolve("cfg", cfg))
    _, specs = build_specs(parse_cfg_text(text, path=path, validate=False, warn=False))
    return any(sp.type == "yolo" and int(sp.classes) != int(model.num_classes) for sp in specs)


def subdivide(images: torch.Tensor, targets: torch.Tensor, subdivisions: int):
    """Split one batch into darknet's ``subdivisions`` mini-batches (``src/parser.c``
    ``parse_net_options``: ``batch /= subdivisions``; ``src/network.c`` updates once per ``batch``).

    Args:
        images: ``[B, 3, H, W]``.
        targets: ``[K, 6]`` rows ``(image_index_in_batch, class, cx, cy, w, h)`` (:func:`.dataset.collate`).
        subdivisions: mini-batches per batch (>= 1); an epoch's last, shorter batch is split as evenly
            as it goes (empty mini-batches are skipped).

    Yields:
        ``(images, targets, share)`` per mini-batch: targets re-indexed from 0, ``share`` = its images /
        ``B`` (the weight of its per-image mean loss in the batch's mean). ``subdivisions=1``: the batch
        itself with share 1.
    """
    n = int(images.shape[0])
    if subdivisions <= 1 or n <= 1:
        yield images, targets, 1.0
        return
    for idx in torch.arange(n).tensor_split(min(int(subdivisions), n)):
        a, b = int(idx[0]), int(idx[-1]) + 1
        rows = targets[(targets[:, 0] >= a) & (targets[:, 0] < b)].clone()
        rows[:, 0] -= a
        yield images[a:b], rows, (b - a) / n


def accumulate_gradients(model: nn.Module, loss_fn: Callable, images: torch.Tensor, targets: torch.Tensor,
                         subdivisions: int = 1, scaler: Optional[Any] = None, weight: float = 1.0,
                         agree: Optional[Callable[[bool], bool]] = None,
                         perturb: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
                         cmbn: bool = False) -> Optional[Dict[str, float]]:
    """Forward + backward of one batch in ``subdivisions`` mini-batches; gradients add up in ``.grad``.

    Each mini-batch's loss (a per-image mean, :class:`.loss.YoloLoss`) is weighted by its share of the
    batch's images, so the summed gradient is the gradient of the whole batch's per-image mean loss:
    one optimizer step afterwards is the update of one batch of ``B`` images (darknet's
    ``subdivisions``; equal up to float rounding, and exactly when batch norm is frozen or in eval mode
    -- in train mode each mini-batch normalises with its own statistics, as in darknet).

    Args:
        model: the Darknet module (``model(x, raw=True)``).
        loss_fn: ``(raw, targets) -> (loss, items)``.
        images: ``[B, 3, H, W]`` float 0..1 on the model's device.
        targets: ``[K, 6]`` on the same device.
        subdivisions: mini-batches per batch (1: one forward/backward, as without accumulation).
        scaler: a ``torch.amp.GradScaler`` for AMP: the forward runs under float16 autocast on the
            images' device type and the loss is scaled before backward; None = float32.
        weight: factor of the loss before backward (DDP: this process's share of the global batch,
            :func:`.distributed.shard_batches`); the returned ``items`` are not weighted.
        agree: DDP: ``finite -> finite on every process`` (one collective per mini-batch), so that all
            processes skip a non-finite step together; None = this process decides alone.
        perturb: ``(x, t) -> x'`` applied to each mini-batch before its forward (SAT,
            :func:`.sat.perturb_fn`: the second pass trains on the perturbed images, original labels);
            None = the images as they are.
        cmbn: normalise mini-batch ``k`` with the batch-norm statistics of mini-batches ``1..k`` of
            this batch (CmBN, :class:`.cmbn.CrossMiniBatchNorm`); False = plain per-mini-batch BN.

    Returns:
        the batch's ``items`` (``box``, ``obj``, ``cls``, ``loss``: per-image means over the batch), or
        None when a mini-batch's loss was not finite (its backward is skipped; the caller discards the
        step's gradients).
    """
    with CrossMiniBatchNorm(model) if cmbn else contextlib.nullcontext():
        return _accumulate(model, loss_fn, images, targets, subdivisions, scaler, weight, agree, perturb)


def _accumulate(model, loss_fn, images, targets, subdivisions, scaler, weight, agree, perturb):
    """The mini-batch loop of :func:`accumulate_gradients`."""
    total: Dict[str, float] = {"box": 0.0, "obj": 0.0, "cls": 0.0, "loss": 0.0}
    for x, t, share in subdivide(images, targets, subdivisions):
        if perturb is not None:
            x = perturb(x, t)
        if scaler is not None:
            with torch.autocast(device_type=x.device.type, dtype=torch.float16):
                raw = model(x, raw=True)
            raw = [r.float() for r in raw]
        else:
            raw = model(x, raw=True)
        loss, items = loss_fn(raw, t)
        finite = bool(torch.isfinite(loss))
        if agree is not None:
            finite = agree(finite)
        if not finite:
            return None
        if share != 1.0:
            loss = loss * share
        if weight != 1.0:
            loss = loss * weight
        (scaler.scale(loss) if scaler is not None else loss).backward()
        for k in total:
            total[k] += float(items[k]) * share
    return total


def step_seed(seed: int, iteration: int, rank: int = 0) -> int:
    """The seed of torch's generator for one training iteration of one process: a function of the
    run's seed, the global iteration and the DDP rank alone (so ``--resume`` continues the random
    stream of dropout / DropBlock exactly; ranks drop different units)."""
    return (int(seed) * 1_000_003 + int(iteration) * 1_009 + int(rank)) % (2 ** 63)


def set_train_mode(model: nn.Module, freeze_bn: bool) -> None:
    """``model.train()``; with ``freeze_bn`` every BatchNorm layer back in eval mode (normalises with
    its running statistics and leaves them as they are; its affine scale and shift still train)."""
    model.train()
    if freeze_bn:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def _read_rows(path: Path, up_to_epoch: int) -> List[Dict[str, Any]]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f)]
    out = []
    for r in rows:
        if not (r.get("epoch") or "").isdigit() or int(r["epoch"]) > up_to_epoch:
            continue
        row: Dict[str, Any] = {"epoch": int(r["epoch"])}
        for k in CSV_FIELDS[1:]:
            v = r.get(k)
            row[k] = None if v in (None, "") else float(v)
        out.append(row)
    return out


def _write_rows(path: Path, rows: List[Dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in CSV_FIELDS})
    atomic_write_text(path, buf.getvalue())


def _silent(msg: str) -> None:
    """The ``log`` of DDP ranks other than 0: nothing."""


def _fmt(v: Optional[float], spec: str = ".4f") -> str:
    return "-" if v is None else format(v, spec)


def train(cfg: Optional[PathLike] = None, data: Optional[PathLike] = None, weights: Optional[PathLike] = None,
          epochs: Optional[int] = None, batch_size: Optional[int] = None,
          img_size: Optional[Union[int, Tuple[int, int]]] = None, output_dir: PathLike = "runs/train",
          resume: bool = False, workers: int = 2, device: str = "cpu", eval_every: Optional[int] = None,
          progress: bool = True, seed: Optional[int] = None, max_images: Optional[int] = None,
          lr: Optional[float] = None, augment: Optional[bool] = None, jitter: Optional[float] = None,
          box_grad: Optional[str] = None, policy: Optional[str] = None, optimizer: Optional[str] = None,
          nesterov: Optional[bool] = None, subdivisions: Optional[int] = None, amp: Optional[bool] = None,
          log: Callable[[str], Any] = print, sync_bn: bool = False, cmbn: Optional[bool] = None,
          multi_scale: Optional[bool] = None, iou_normalizer_scale: Optional[float] = None) -> Dict[str, Any]:
    """Fine-tune (or train) a darknet model on a dataset; write checkpoints and darknet files.

    The run-defining arguments (:data:`RUN_ARGS`: ``cfg``, ``data``, ``weights``, ``epochs``,
    ``batch_size``, ``img_size``, ``lr``, ``seed``, ``max_images``, ``augment``, ``jitter``,
    ``box_grad``, ``eval_every``, ``policy``, ``optimizer``, ``nesterov``, ``subdivisions``) default to
    None: a new run then uses the default given with each; ``resume=True`` takes them all, and the
    learning-rate schedule, from ``last.pt``. The others (``output_dir``, ``workers``, ``device``,
    ``amp``, ``progress``, ``log``) do not define the run.

    Args:
        cfg: darknet cfg path or known model name (``yolov4-tiny``); required for a new run.
        data: dataset spec for ``yolo4.data.datasets.load_dataset`` (YAML, known name such as
            ``raccoon``, COCO json, VOC folder); its ``train`` and ``val`` splits are used; required
            for a new run.
        weights: pretrained darknet ``.weights`` (path or known name); default None (random init).
            When the dataset's class count differs from the cfg's, the heads are re-made
            (``load_darknet(num_classes=...)``) and everything else is loaded.
        epochs: total epochs of the run; default 10.
        batch_size: images per optimizer step; default 8.
        img_size: network input in pixels, an int (square) or ``(height, width)``, multiples of the
            model's largest ``[yolo]`` stride (32); default the cfg's ``[net]`` size.
        output_dir: folder for ``last.pt``, ``best.pt``, ``results.csv``, ``best.weights``,
            ``best.cfg``, ``best.names`` (created; checked writable before any other work).
        resume: continue the run in ``output_dir`` from its ``last.pt`` (model, optimizer, completed
            epochs, best fitness, ``results.csv`` rows) exactly as it was defined: every run-defining
            argument and the learning-rate schedule (total steps, burn-in) come from the checkpoint.
            One given explicitly must equal the run's value (repeating it is fine).
        workers: DataLoader worker processes (0 = load in this process); may change on resume.
        device: torch device string (``cpu``, ``cuda``, ``cuda:1``); may change on resume.
        eval_every: validate every N epochs (and always after the last); default 1.
        progress: tqdm bars.
        seed: seeds the shuffling, augmentation draws and torch; default 0.
        max_images: use at most this many images of each split (quick runs); default None = all.
        lr: peak learning rate (see the module docstring). Default: the cfg's ``learning_rate`` x
            ``batch_size / 64`` when the model keeps its classes, the cfg's ``learning_rate`` for a
            new class list (re-made heads).
        augment: flip + HSV (+ jitter); False = resize only; default True.
        jitter: darknet jitter fraction in [0, 1); default the first ``[yolo]``'s ``jitter`` (0 disables).
        box_grad: ``darknet`` (darknet's box-gradient scale, default) or ``chain`` (plain autograd),
            see :class:`yolo4.trainer.loss.YoloLoss`.
        iou_normalizer_scale: multiplies every ``[yolo]`` layer's ``iou_normalizer`` (the box term's
            weight) for this run; a number > 0. Default: :data:`NEW_CLASS_IOU_NORMALIZER_SCALE` (15/7) for
            a new class list (re-made heads), 1 (the cfg's value) when the model keeps its classes or
            resumes a run that predates the key. Measured in the module docstring.
        policy: learning-rate policy after burn-in (:class:`.schedule.LRSchedule`): ``cosine``
            (default; not the cfg's ``policy``, which every yolov4 cfg sets to ``steps`` for
            ~500k-2M iterations), ``steps`` (the cfg's ``steps``/``scales`` at the same fractions of
            this run as of ``max_batches``), ``sgdr`` (the cfg's ``sgdr_cycle``, ``sgdr_mult``,
            ``learning_rate_min``) or ``constant``; see :func:`.schedule.from_cfg`.
        optimizer: ``sgd`` (darknet's, the cfg's ``momentum``), ``adam`` or ``adamw`` (:mod:`.optim`);
            default ``adam`` when the cfg says ``adam=1``, else ``sgd``. Weight decay (the cfg's
            ``decay``) on conv weights only.
        nesterov: Nesterov momentum (``sgd`` only); default False (darknet has none).
        subdivisions: accumulate the gradients of this many mini-batches of ``batch_size /
            subdivisions`` images per optimizer step (darknet's ``subdivisions``; must divide
            ``batch_size``); default 1. Not the cfg's value, which is set for ``batch=64``.
        amp: float16 autocast + loss scaling (``torch.amp``); default on for a CUDA ``device``; CUDA
            only (elsewhere a note and float32). Not run-defining (like ``device``): it may change on
            resume.
        log: receives one-line messages (``warning: ...`` lines, per-epoch summaries); on rank 0 only
            when distributed.
        sync_bn: DDP only: convert batch norm to ``SyncBatchNorm`` (statistics over the global batch;
            CUDA only). Not run-defining.
        cmbn: Cross mini-Batch Normalization with ``subdivisions > 1``: mini-batch ``k`` of a batch
            normalises with the batch-norm statistics of mini-batches ``1..k`` (YOLOv4 paper 3.3,
            :mod:`.cmbn`); False = each mini-batch its own statistics. No effect with frozen BN, with
            ``SyncBatchNorm``, or with ``subdivisions=1``. SAT follows the cfg's ``[net] adversarial_lr``
            (:mod:`.sat`).
        multi_scale: random training shapes (YOLOv4 paper 3.4; :mod:`.multiscale`): a new input size
            every 10 iterations, darknet's draw around ``img_size`` (320..608 px at 416 for
            ``random=1``; the coefficient is the last ``[yolo]``'s ``random`` when above 1, the step
            ``[net] resize_step``); the same on every DDP rank. Default: on when the cfg's last
            ``[yolo]`` says ``random`` != 0 (yolov4.cfg: 1; yolov4-tiny.cfg: 0). Validation and the
            saved model keep ``img_size``.

    Distributed (DDP): launched by ``torchrun`` (``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` set; ``yolo4
    train --devices`` does it) the process joins the group (nccl on CUDA, gloo on the CPU), trains a
    shard of every global batch of ``batch_size`` images, and rank 0 alone validates, logs and writes
    the files (:mod:`.distributed`). The other ranks return a summary with ``rank`` and no paths.

    Returns:
        dict: ``best``, ``last`` (checkpoint paths, str), ``weights``, ``cfg``, ``names`` (darknet
        files), ``results`` (results.csv), ``output_dir``, ``epochs`` (list of per-epoch dicts with
        the CSV columns), ``best_fitness`` (float, -1 if never evaluated), ``best_epoch`` (int or None).

    Raises:
        Yolo4Error subclasses, one line each: bad dataset/cfg/weights (DataError, CfgError,
        WeightsError, AssetError), an output folder that cannot be created or written, a bad
        argument value (``img_size`` not a multiple of the stride, ``epochs < 1``, ...), a new run
        without ``cfg`` or ``data``; with ``resume``: no ``last.pt``, an argument that differs from the
        run's, a finished run (all its epochs done); an empty training split, a non-finite loss.
    """
    from ..data.datasets import load_dataset
    from ..model import load_checkpoint, load_darknet, save_cfg, save_darknet_weights

    given = {"cfg": cfg, "data": data, "weights": weights, "epochs": epochs, "batch_size": batch_size,
             "img_size": img_size, "lr": lr, "seed": seed, "max_images": max_images, "augment": augment,
             "jitter": jitter, "box_grad": box_grad, "eval_every": eval_every, "policy": policy,
             "optimizer": optimizer, "nesterov": nesterov, "subdivisions": subdivisions, "cmbn": cmbn,
             "multi_scale": multi_scale, "iou_normalizer_scale": iou_normalizer_scale}
    _check_given(given)
    out = Path(output_dir)
    last_path, best_path = out / "last.pt", out / "best.pt"

    # ---- the run's arguments: given (new run) or stored (resume); nothing loaded yet ---------------
    ckpt, stored = None, {}
    if resume:
        if not last_path.is_file():
            raise Yolo4Error(f"nothing to resume in {out}: it holds no last.pt (start a new run without "
                             f"--resume, or give the --output-dir of the run to continue)")
        ckpt = read_checkpoint(last_path)
        if isinstance(ckpt.get("train_args"), dict):
            stored = ckpt["train_args"]
        run = resume_args(given, stored, out)
        if "multi_scale" not in stored and given["multi_scale"] is None:
            run["multi_scale"] = False                  # a run from before random shapes: as it ran
        start_epoch = int(ckpt.get("epoch", 0))
        if start_epoch >= int(run["epochs"]):
            raise Yolo4Error(f"the run in {out} is finished ({start_epoch} of {run['epochs']} epochs done): "
                             f"--resume has nothing left to train; start a new run to train further")
        if run["data"] is None:
            raise Yolo4Error(f"{last_path} does not record its dataset; pass --data")
    else:
        run = {k: (RUN_ARGS[k] if v is None else v) for k, v in given.items()}
        if run["cfg"] is None:
            raise Yolo4Error("train needs a cfg (--cfg: a path or a known model name such as yolov4-tiny)")
        if run["data"] is None:
            raise Yolo4Error("train needs a dataset (--data: a YAML, COCO json, VOC folder or known name)")
        start_epoch = 0
    epochs, batch_size, seed = int(run["epochs"]), int(run["batch_size"]), int(run["seed"])
    eval_every, max_images = int(run["eval_every"]), run["max_images"]
    subdivisions = int(run["subdivisions"])
    if batch_size % subdivisions:
        raise Yolo4Error(f"--subdivisions {subdivisions} must divide --batch {batch_size} (darknet: "
                         f"mini-batches of batch/subdivisions images)")
    check_writable_dir(out, "output folder")

    torch.manual_seed(seed)
    np.random.seed(seed % (2 ** 32))
    dev = torch.device(device)
    world, dev = distributed.setup(device)              # torchrun: join the group (no-op otherwise)
    if world.active:
        if not world.main:
            log = _silent                               # rank 0 alone logs
            progress = False
        log(f"DDP: {world.size} processes ({world.backend}), global batch {batch_size} = "
            f"{batch_size / world.size:g} images per process")
        if batch_size < world.size:
            raise Yolo4Error(f"--batch {batch_size} is the global batch, split across {world.size} processes: "
                             f"give at least {world.size}")
    if sync_bn and not (world.active and dev.type == "cuda"):
        raise Yolo4Error("--sync-bn needs DDP on CUDA (--devices 0,1): torch's SyncBatchNorm runs on GPUs only")

    # ---- data ------------------------------------------------------------------------------
    data = run["data"]
    train_split = load_dataset(data, "train")
    val_split = load_dataset(data, "val")
    train_split.report_warnings(log, "train", MAX_WARNINGS)
    val_split.report_warnings(log, "val", MAX_WARNINGS)
    names = list(train_split.names)
    if list(val_split.names) != names:
        raise Yolo4Error(f"the train and val splits name different classes ({len(names)} vs "
                         f"{len(val_split.names)})", data)
    if max_images is not None:
        train_split.records = train_split.records[:max_images]
        val_split.records = val_split.records[:max_images]
    if not train_split.records:
        raise Yolo4Error("the training split has no images", data)
    overlap = split_overlap_warning(train_split.records, val_split.records)
    if overlap:
        log(overlap)

    # ---- model (+ resume state) -------------------------------------------------------------
    if ckpt is not None:
        model = load_checkpoint(str(last_path))       # "model": the averaged weights when EMA is on
        if len(ckpt["names"]) != len(names):
            raise Yolo4Error(f"{last_path} has {len(ckpt['names'])} classes, the dataset {len(names)}",
                             data)
        if isinstance(ckpt.get("train_model"), dict):  # the raw (trained) weights behind the average
            model.load_state_dict(ckpt["train_model"], strict=True)
        best_fit = float(ckpt.get("best_fitness", -1.0))
    else:
        if last_path.exists():
            log(f"warning: {out} holds a previous run; its checkpoints and results are overwritten "
                f"(pass --resume to continue it instead)")
            if best_path.exists() and world.main:
                best_path.unlink()          # a stale best.pt must not stand for this run
        model = load_darknet(run["cfg"], run["weights"], num_classes=len(names))
        best_fit = -1.0
    model.names = names
    model.to(dev)
    if sync_bn:                             # same parameters, BN statistics over the global batch
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    input_hw = model.check_input_size(run["img_size"] if run["img_size"] is not None else model.input_hw,
                                      "--img-size")
    letter_box = bool(getattr(model, "letter_box", False))
    net = dict(model.net)
    jitter = run["jitter"]
    if jitter is None:
        jitter = float(model.yolo_layers[0].jitter)
    aug = AugmentConfig.from_cfg(net, jitter) if run["augment"] else None
    dataset = YoloDataset(train_split.records, input_hw, letter_box, aug, seed=seed)
    # random training shapes: darknet reads `random` of the last [yolo] layer
    random_key = float(model.yolo_layers[-1].spec.random)
    if run["multi_scale"] is None:
        run["multi_scale"] = random_key != 0
    ms_coef, ms_step = None, int(net.get("resize_step", 32) or 32)
    if run["multi_scale"]:
        try:
            ms_coef = multiscale.rand_coef(random_key if random_key != 0 else 1.0)
        except ValueError as e:
            raise Yolo4Error(f"[yolo] {e}", run["cfg"]) from None
        lo, hi = multiscale.size_bounds(input_hw, ms_coef, ms_step)
        log(f"random training shapes: {lo[1]}x{lo[0]} .. {hi[1]}x{hi[0]} px in steps of {ms_step}, a new "
            f"size every {multiscale.EVERY} iterations (random={random_key:g}; validation at "
            f"{input_hw[1]}x{input_hw[0]})")
    dropblocks = [m for m in model.modules() if isinstance(m, Dropout) and m.dropblock]

    # ---- optimizer + schedule (a resumed run keeps its stored schedule) -------------------------
    # a new class list (heads re-made from pretrained weights) trains faster than the same classes
    new_classes = ckpt is None and run["weights"] is not None and fresh_heads(run["cfg"], model)
    # the box term: the cfg's iou_normalizer, times NEW_CLASS_IOU_NORMALIZER_SCALE for a new class list
    # (a run resumed from a checkpoint without the key: x1, as it ran)
    if run["iou_normalizer_scale"] is not None:
        iou_scale = float(run["iou_normalizer_scale"])
    else:
        iou_scale = NEW_CLASS_IOU_NORMALIZER_SCALE if new_classes else 1.0
    specs = [yl.spec for yl in model.yolo_layers]
    if iou_scale != 1.0:
        specs = [dataclasses.replace(sp, iou_normalizer=sp.iou_normalizer * iou_scale) for sp in specs]
    loss_fn = YoloLoss(specs, box_grad=run["box_grad"])
    if run["lr"] is not None:
        base_lr = float(run["lr"])
    elif new_classes:                       # the cfg's rate per optimizer step, at any batch size
        base_lr = float(net.get("learning_rate", 0.001))
    else:                                   # darknet's per-image rate at this batch size
        base_lr = float(net.get("learning_rate", 0.001)) * batch_size / NOMINAL_BATCH
    momentum = float(net.get("momentum", 0.9))
    decay = float(net.get("decay", 0.0005))
    # re-made heads at their own lr: runs of the previous default resume with it (a checkpoint without
    # the key: no such group, as it ran); new runs train every layer at one rate
    head_lr_scale = float(stored.get("head_lr_scale", 1.0)) if ckpt is not None else 1.0
    heads = model.head_convs() if head_lr_scale != 1.0 else []
    opt_name = run["optimizer"] or default_optimizer(net)
    optimizer = build_optimizer(param_groups(model, decay, heads, head_lr_scale), opt_name, base_lr,
                                momentum=momentum, nesterov=bool(run["nesterov"]), net=net)
    if ckpt is not None and ckpt.get("optimizer"):
        optimizer.load_state_dict(ckpt["optimizer"])
    steps_per_epoch = math.ceil(len(dataset) / batch_size)
    if "total_iters" in stored:
        if int(stored["steps_per_epoch"]) != steps_per_epoch:
            log(f"warning: the training split now makes {steps_per_epoch} steps per epoch, the run had "
                f"{stored['steps_per_epoch']} (images added or removed since); the run's schedule is kept")
        steps_per_epoch = int(stored["steps_per_epoch"])
        sched = LRSchedule.from_args(base_lr, stored)   # a checkpoint without "policy": cosine, as it ran
    else:                                   # a new run (or a checkpoint older than the stored schedule)
        sched = from_cfg(net, run["policy"], base_lr, steps_per_epoch * epochs,
                         burn_in=int(stored["burn_in"]) if "burn_in" in stored else None)
        cfg_policy = str(net.get("policy", "constant"))
        if ckpt is None and policy is None and cfg_policy != sched.policy:
            log(f"note: the cfg's policy={cfg_policy} (tuned for max_batches={net.get('max_batches')}) is not "
                f"followed; this run decays with {sched.policy}"
                + (f" (--policy {cfg_policy} follows it, mapped onto this run)" if cfg_policy in POLICIES
                   else f" (policy {cfg_policy} is not supported: {', '.join(POLICIES)})"))
    # AMP (float16 autocast + loss scaling) only on CUDA
    use_amp = dev.type == "cuda" if amp is None else bool(amp)
    if use_amp and dev.type != "cuda":
        log(f"note: AMP needs a CUDA device; training in float32 on {dev}")
        use_amp = False
    scaler = torch.amp.GradScaler("cuda") if use_amp else None
    if scaler is not None and ckpt is not None and isinstance(ckpt.get("amp_scaler"), dict):
        scaler.load_state_dict(ckpt["amp_scaler"])

    # frozen batch norm: new runs from pretrained weights (a checkpoint without the key: as it ran)
    freeze_bn = bool(stored.get("freeze_bn", False)) if ckpt is not None else (
        FREEZE_BN and run["weights"] is not None)

    # ---- EMA of the weights (a run from a checkpoint older than the EMA continues without) -----------
    ema = None
    if ckpt is None or "ema_tau" in stored:
        # a new class list trains without the average (measured in the module docstring)
        if "ema_tau" in stored:
            tau = float(stored["ema_tau"])
        else:
            tau = 0.0 if new_classes else ema_tau(sched.total_iters)
        decay_ema = float(stored["ema_decay"]) if "ema_decay" in stored else ema_decay(sched.total_iters)
        if tau > 0:
            ema = ModelEMA(model, decay=decay_ema, tau=tau)
            if ckpt is not None and isinstance(ckpt.get("ema"), dict):
                ema.updates = int(ckpt.get("ema_updates", 0))
                ema.load(ckpt["ema"])
    else:
        tau, decay_ema = 0.0, 0.0
    # DDP: the forward/backward goes through the wrapper (gradients averaged over the processes);
    # everything else (optimizer, EMA, checkpoints, validation) uses the model itself
    trained = model
    if world.active:
        trained = nn.parallel.DistributedDataParallel(   # stopbackward=N: layers without gradients
            model, device_ids=[dev.index] if dev.type == "cuda" else None,
            find_unused_parameters=bool(getattr(model, "_stop", None)))

    train_args = {
        "cfg": _source(run["cfg"]), "data": _source(data), "weights": _source(run["weights"]),
        "epochs": epochs, "batch_size": batch_size, "img_size": [int(input_hw[0]), int(input_hw[1])],
        "lr": base_lr, "seed": seed, "max_images": max_images, "augment": bool(run["augment"]),
        "jitter": None if aug is None else aug.jitter, "box_grad": run["box_grad"], "eval_every": eval_every,
        "momentum": momentum, "decay": decay, "steps_per_epoch": steps_per_epoch,
        "total_iters": sched.total_iters, "burn_in": sched.burn_in, "power": sched.power,
        "final_ratio": sched.final_ratio, "ema_tau": tau, "ema_decay": decay_ema, "freeze_bn": freeze_bn,
        "head_lr_scale": head_lr_scale, "device": str(device),
        "optimizer": opt_name, "nesterov": bool(run["nesterov"]), "subdivisions": subdivisions, "cmbn": bool(run["cmbn"]), "amp": use_amp,
        "multi_scale": bool(run["multi_scale"]), "iou_normalizer_scale": iou_scale,
        **sched.to_args(),
    }
    if ckpt is not None:
        log(f"resuming {out}: epoch {start_epoch + 1} of {epochs}")
    log(f"train: {len(dataset)} images, val: {len(val_split.records)} images, {len(names)} classes, "
        f"input {input_hw[1]}x{input_hw[0]} ({'letterbox' if letter_box else 'plain resize'}), "
        f"batch {batch_size}, {steps_per_epoch} steps/epoch, lr {base_lr:g}"
        f"{f' (re-made heads x{head_lr_scale:g})' if head_lr_scale != 1.0 else ''}"
        f" ({sched.describe()}), {opt_name}{' nesterov' if run['nesterov'] else ''}"
        f"{f', {subdivisions} subdivisions of {batch_size // subdivisions}' if subdivisions > 1 else ''}"
        f"{', AMP' if use_amp else ''}{_iou_scale_note(iou_scale, model.yolo_layers)}")

    csv_path = out / "results.csv"
    rows = _read_rows(csv_path, start_epoch) if ckpt is not None else []
    best_epoch = None
    for r in rows:
        if r.get("fitness") is not None and r["fitness"] >= best_fit - 1e-6:
            best_epoch = int(r["epoch"])
    metrics: Dict[str, Any] = dict(ckpt.get("metrics") or {}) if ckpt is not None else {}
    pin = dev.type == "cuda"
    warned_nonfinite = False
    # no-op without tensorboard; DDP: rank 0 alone
    scalars = ScalarLogger(out / "tensorboard", start_epoch, log) if world.main else None

    for epoch in range(start_epoch, epochs):            # 0-based; reported 1-based
        t0 = time.time()
        set_train_mode(trained, freeze_bn)
        dataset.set_epoch(epoch)
        order = epoch_order(seed, epoch, len(dataset))
        if world.active:        # this rank's shard of each global batch, and its weight in the average
            shards, weights = distributed.shard_batches(order, batch_size, world.rank, world.size)
            loader = torch.utils.data.DataLoader(dataset, batch_sampler=shards, num_workers=workers,
                                                 collate_fn=collate, pin_memory=pin)
        else:
            weights = None
            loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=order,
                                                 num_workers=workers, collate_fn=collate, pin_memory=pin)
        bar = loader
        if progress:
            from tqdm import tqdm
            bar = tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", unit="batch", leave=False)
        sums = {"box": 0.0, "obj": 0.0, "cls": 0.0, "loss": 0.0}
        n_steps = 0
        cur_lr = base_lr
        for i, (images, targets, _) in enumerate(bar):
            it = epoch * steps_per_epoch + i
            cur_lr = sched(it)
            for group in optimizer.param_groups:
                group["lr"] = cur_lr * group.get("lr_scale", 1.0)
            model.iteration = it                          # darknet stopbackward=N counts iterations
            x = images.to(dev, non_blocking=pin).float().div_(255.0)
            t = targets.to(dev)
            if ms_coef is not None:                       # random training shapes (all ranks alike)
                x, t = multiscale.resize_batch(x, t, multiscale.draw_size(input_hw, ms_coef, ms_step, seed, it))
            for m in dropblocks:                          # darknet's DropBlock warm-up
                m.multiplier = dropblock_multiplier(it, sched.total_iters)
            # torch's generator (dropout / DropBlock draws) from (seed, iteration, rank): a resumed run
            # draws what the uninterrupted one drew (the DataLoader also takes from it per epoch)
            torch.manual_seed(step_seed(seed, it, world.rank))
            optimizer.zero_grad(set_to_none=True)
            w = 1.0 if weights is None else weights[i]
            # SAT ([net] adversarial_lr, off when absent): a first pass moves each mini-batch's images
            # up the loss (the model itself, not the DDP wrapper: no parameter gradients)
            perturb = sat.perturb_fn(model, loss_fn, float(net.get("adversarial_lr", 0) or 0), it,
                                     sched.total_iters, sched.burn_in, seed)
            items = accumulate_gradients(trained, loss_fn, x, t, subdivisions, scaler, weight=w,
                                         agree=(lambda ok: distributed.all_true(world, ok)) if world.active else None,
                                         perturb=perturb, cmbn=bool(run["cmbn"]) and subdivisions > 1)
            if items is None:
                if not warned_nonfinite:
                    log(f"warning: non-finite loss at epoch {epoch + 1} step {i + 1}; step skipped")
                    warned_nonfinite = True
                optimizer.zero_grad(set_to_none=True)
                continue
            if scaler is not None:
                scaler.unscale_(optimizer)               # clip the true gradients
            nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
            if scaler is not None:
                scaler.step(optimizer)                   # skipped when the scaled gradients overflowed
                scaler.update()
            else:
                optimizer.step()
            if ema is not None:
                ema.update(model)
            n_steps += 1
            for k in sums:
                sums[k] += items[k] * w                  # DDP: summed over the ranks below
            if progress:
                bar.set_postfix(OrderedDict((k, f"{sums[k] / n_steps:.3f}") for k in ("box", "obj", "cls")),
                                lr=f"{cur_lr:.2e}")
        if n_steps == 0:
            raise Yolo4Error(f"every step of epoch {epoch + 1} had a non-finite loss; lower the lr")
        if world.active:        # the global batches' per-image means, as one process would log them
            sums = dict(zip(sums, (v / world.size for v in distributed.all_sum(world, sums.values()))))
            if not world.main:  # rank 0 alone validates, logs and saves; the others wait for it
                distributed.barrier(world)
                continue
        mean = {k: v / n_steps for k, v in sums.items()}

        done = epoch + 1
        evaluated = (done % eval_every == 0) or done == epochs
        fit = None
        if evaluated and val_split.records:
            scored = ema.module if ema is not None else model       # the average when EMA is on
            metrics = evaluate_model(scored, val_split, input_hw=input_hw, batch_size=batch_size,
                                     device=str(dev), progress=progress, log=log,
                                     keep_pr_curve=done == epochs)  # for pr_curve.png
            fit = fitness(metrics)
        set_train_mode(model, freeze_bn)
        row = {"epoch": done, "box": round(mean["box"], 6), "obj": round(mean["obj"], 6),
               "cls": round(mean["cls"], 6), "loss": round(mean["loss"], 6), "lr": float(f"{cur_lr:.6g}"),
               "map50": None if fit is None else round(float(metrics["map50"]), 6),
               "map50_95": None if fit is None else round(float(metrics["map50_95"]), 6),
               "fitness": None if fit is None else round(fit, 6), "time_s": round(time.time() - t0, 1)}
        improved = fit is not None and fit > best_fit
        if improved:
            best_fit, best_epoch = fit, done
        if ema is not None:     # "model" (what eval / export / best.pt use) and "ema": the average
            ck = make_checkpoint(ema.module, names, done, best_fit, optimizer=optimizer,
                                 train_args=train_args, metrics=metrics, ema_updates=ema.updates,
                                 train_model=model)
            ck["ema"] = ck["model"]                   # the same tensors: stored once by torch.save
        else:
            ck = make_checkpoint(model, names, done, best_fit, optimizer=optimizer, train_args=train_args,
                                 metrics=metrics)
        if scaler is not None:                        # AMP's loss scale, for --resume
            ck["amp_scaler"] = scaler.state_dict()
        # last.pt is the commit point of the epoch: results.csv and best.pt are written first, so a
        # kill between the writes leaves at most files ahead of last.pt, which --resume redoes
        # (results.csv rows after last.pt's epoch are dropped, best.pt rewritten if still the best)
        rows.append(row)
        _write_rows(csv_path, rows)
        if improved or best_epoch is None:            # never evaluated yet: best = last
            save_checkpoint(dict(ck, optimizer=None, train_model=None), best_path)
        save_checkpoint(ck, last_path)
        scalars.add(row)
        log(f"epoch {done}/{epochs}  box {mean['box']:.4f}  obj {mean['obj']:.4f}  cls {mean['cls']:.4f}"
            f"  lr {cur_lr:.2e}  mAP50 {_fmt(row['map50'])}  mAP50-95 {_fmt(row['map50_95'])}"
            f"  {row['time_s']:.0f}s{'  *best*' if improved else ''}")
        distributed.barrier(world)                       # DDP: the others waited for rank 0's files

    if world.active:                        # no collective after the last epoch: leave the group
        distributed.cleanup()
        if not world.main:
            return {"rank": world.rank, "output_dir": str(out), "epochs": [], "best_fitness": float(best_fit),
                    "best_epoch": None}
    # ---- darknet files from the best checkpoint ------------------------------------------------
    src = best_path if best_path.exists() else last_path
    best_model = load_checkpoint(str(src))
    weights_path, cfg_path, names_path = out / "best.weights", out / "best.cfg", out / "best.names"
    save_darknet_weights(best_model, str(weights_path))
    save_cfg(best_model, str(cfg_path))
    atomic_write_text(names_path, "".join(f"{n}\n" for n in names))
    scalars.close()
    plot_run(out, train_split.records, names, metrics, log=log)   # results/labels/pr_curve.png; never raises
    return {
        "best": str(best_path) if best_path.exists() else str(last_path), "last": str(last_path),
        "weights": str(weights_path), "cfg": str(cfg_path), "names": str(names_path),
        "results": str(csv_path), "output_dir": str(out), "epochs": rows,
        "best_fitness": float(best_fit), "best_epoch": best_epoch,
    }
