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
biases or batch-norm scales). Darknet steps ``w += lr / batch * sum of per-image gradients`` with
``batch`` = the cfg's ``batch`` (64); :mod:`.loss` returns the per-image mean, so ``lr`` below *is*
darknet's ``learning_rate`` for any batch size: the default ``lr`` is the cfg's ``learning_rate``
(yolov4-tiny 0.00261, yolov4 0.0013), unscaled. Linearly scaling it to a small CPU batch
(x 8/64) learns far more slowly in short fine-tunes (yolov4-tiny on raccoon, 320 px, batch 8,
5 epochs: val mAP@.5 0.46 at lr 0.000326 vs 0.85 at 0.00261); pass ``lr=`` to override.

Schedule (:mod:`.schedule`): darknet burn-in ``lr * (it / burn_in) ** 4`` with the cfg's
``burn_in`` clipped to 10 % of the run, then cosine to ``lr * 0.01``. Gradients are clipped to a
global norm of 10 (a guard against the first steps of a fresh head; darknet clips per element with
``max_delta`` instead).

Not yet (later issues, slots marked in the code): mosaic / CutMix / MixUp, SAT, DropBlock, CmBN,
EMA, multi-scale (``random=1``), DDP, AMP.
"""

import csv
import io
import math
import os
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

from ..errors import Yolo4Error
from ..fileio import atomic_write_text
from .assign import head_specs
from .augment import AugmentConfig
from .checkpoint import load_training_checkpoint, make_checkpoint, save_checkpoint
from .dataset import YoloDataset, collate
from .loss import YoloLoss
from .schedule import BurnInCosine, clip_burn_in
from .validate import evaluate_model, fitness

PathLike = Union[str, "os.PathLike[str]"]

#: at most this many bad-label warnings are printed per split (then a count)
MAX_WARNINGS = 10
#: global gradient-norm clip
GRAD_CLIP = 10.0
#: results.csv columns
CSV_FIELDS = ["epoch", "box", "obj", "cls", "loss", "lr", "map50", "map50_95", "fitness", "time_s"]


def _report_warnings(split, which: str, log) -> None:
    ws = list(split.warnings or [])
    for w in ws[:MAX_WARNINGS]:
        log(f"warning: {w}")
    if len(ws) > MAX_WARNINGS:
        log(f"warning: ... and {len(ws) - MAX_WARNINGS} more label problems in the {which} split")


def _input_hw(img_size, model) -> Tuple[int, int]:
    if img_size is None:
        return int(model.input_hw[0]), int(model.input_hw[1])
    if isinstance(img_size, (tuple, list)):
        h, w = int(img_size[0]), int(img_size[1])
    else:
        h = w = int(img_size)
    if h <= 0 or w <= 0 or h % 32 or w % 32:
        raise Yolo4Error(f"img_size must be a positive multiple of 32 pixels, got {img_size}")
    return h, w


def param_groups(model: nn.Module, decay: float) -> List[Dict[str, Any]]:
    """SGD parameter groups: conv weights with ``weight_decay=decay``; biases and BN without."""
    decayed, plain = [], []
    seen = set()
    for m in model.modules():
        for name, p in m.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            (decayed if isinstance(m, nn.Conv2d) and name == "weight" else plain).append(p)
    return [{"params": decayed, "weight_decay": float(decay)}, {"params": plain, "weight_decay": 0.0}]


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


def _fmt(v: Optional[float], spec: str = ".4f") -> str:
    return "-" if v is None else format(v, spec)


def train(cfg: Optional[PathLike], data: PathLike, weights: Optional[PathLike] = None, epochs: int = 10,
          batch_size: int = 8, img_size: Optional[int] = None, output_dir: PathLike = "runs/train",
          resume: bool = False, workers: int = 2, device: str = "cpu", eval_every: int = 1,
          progress: bool = True, seed: int = 0, max_images: Optional[int] = None,
          lr: Optional[float] = None, augment: bool = True, jitter: Optional[float] = None,
          box_grad: str = "darknet", log: Callable[[str], Any] = print) -> Dict[str, Any]:
    """Fine-tune (or train) a darknet model on a dataset; write checkpoints and darknet files.

    Args:
        cfg: darknet cfg path or known model name (``yolov4-tiny``); ignored when ``resume``.
        data: dataset spec for ``yolo4.data.datasets.load_dataset`` (YAML, known name such as
            ``raccoon``, COCO json, VOC folder); its ``train`` and ``val`` splits are used.
        weights: pretrained darknet ``.weights`` (path or known name) or None (random init). When the
            dataset's class count differs from the cfg's, the heads are re-made
            (``load_darknet(num_classes=...)``) and everything else is loaded.
        epochs: total epochs of the run (with ``resume``: the run continues up to this many).
        batch_size: images per optimizer step.
        img_size: square network input in pixels (multiple of 32); default the cfg's ``[net]`` size.
        output_dir: folder for ``last.pt``, ``best.pt``, ``results.csv``, ``best.weights``,
            ``best.cfg``, ``best.names`` (created).
        resume: continue from ``output_dir/last.pt`` (model, optimizer, completed epochs, best
            fitness); the other arguments are taken as given now (pass the same ones).
        workers: DataLoader worker processes (0 = load in this process).
        device: torch device string (``cpu``, ``cuda``, ``cuda:1``).
        eval_every: validate every N epochs (and always after the last).
        progress: tqdm bars.
        seed: seeds the shuffling, augmentation draws and torch.
        max_images: use at most this many images of each split (quick runs); None = all.
        lr: peak learning rate (see the module docstring); default the cfg's ``learning_rate``.
        augment: flip + HSV (+ jitter); False = resize only.
        jitter: darknet jitter fraction; default the first ``[yolo]``'s ``jitter`` (0 disables).
        box_grad: ``darknet`` (darknet's box-gradient scale) or ``chain`` (plain autograd), see
            :class:`yolo4.trainer.loss.YoloLoss`.
        log: receives one-line messages (warnings, per-epoch summaries).

    Returns:
        dict: ``best``, ``last`` (checkpoint paths, str), ``weights``, ``cfg``, ``names`` (darknet
        files), ``results`` (results.csv), ``output_dir``, ``epochs`` (list of per-epoch dicts with
        the CSV columns), ``best_fitness`` (float, -1 if never evaluated), ``best_epoch`` (int or None).

    Raises:
        Yolo4Error subclasses: bad dataset/cfg/weights (DataError, CfgError, WeightsError,
        AssetError), a bad ``img_size``, ``resume`` without ``last.pt`` or with nothing left to train,
        an empty training split, a non-finite loss.
    """
    from ..data.datasets import load_dataset
    from ..model import load_checkpoint, load_darknet, save_cfg, save_darknet_weights

    if epochs < 1 or batch_size < 1 or eval_every < 1:
        raise Yolo4Error("epochs, batch_size and eval_every must be >= 1")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    np.random.seed(seed % (2 ** 32))
    dev = torch.device(device)

    # ---- data ------------------------------------------------------------------------------
    train_split = load_dataset(data, "train")
    val_split = load_dataset(data, "val")
    _report_warnings(train_split, "train", log)
    _report_warnings(val_split, "val", log)
    names = list(train_split.names)
    if list(val_split.names) != names:
        raise Yolo4Error(f"the train and val splits name different classes ({len(names)} vs "
                         f"{len(val_split.names)})", data)
    if max_images is not None:
        train_split.records = train_split.records[:max_images]
        val_split.records = val_split.records[:max_images]
    if not train_split.records:
        raise Yolo4Error("the training split has no images", data)

    # ---- model (+ resume state) -------------------------------------------------------------
    ckpt = None
    last_path, best_path = out / "last.pt", out / "best.pt"
    if resume:
        ckpt = load_training_checkpoint(last_path)
        model = load_checkpoint(str(last_path))
        if len(ckpt["names"]) != len(names):
            raise Yolo4Error(f"{last_path} has {len(ckpt['names'])} classes, the dataset {len(names)}",
                             data)
        start_epoch = int(ckpt["epoch"])
        if start_epoch >= epochs:
            raise Yolo4Error(f"{last_path} already completed {start_epoch} epochs; pass epochs > "
                             f"{start_epoch} to train further")
        best_fit = float(ckpt.get("best_fitness", -1.0))
        log(f"resuming from {last_path}: epoch {start_epoch + 1} of {epochs}")
    else:
        if cfg is None:
            raise Yolo4Error("train needs a cfg (path or known model name)")
        if last_path.exists():
            log(f"warning: {out} holds a previous run; its checkpoints and results are overwritten "
                f"(use resume=True to continue it)")
            if best_path.exists():
                best_path.unlink()          # a stale best.pt must not stand for this run
        model = load_darknet(cfg, weights, num_classes=len(names))
        start_epoch, best_fit = 0, -1.0
    model.names = names
    model.to(dev)
    input_hw = _input_hw(img_size, model)
    letter_box = bool(getattr(model, "letter_box", False))
    specs = head_specs(model)
    loss_fn = YoloLoss(specs, box_grad=box_grad)

    net = dict(model.net)
    cfg_jitter = float(getattr(model.yolo_layers[0], "jitter", 0.0))
    aug = AugmentConfig.from_cfg(net, cfg_jitter if jitter is None else jitter) if augment else None
    dataset = YoloDataset(train_split.records, input_hw, letter_box, aug, seed=seed)

    # ---- optimizer + schedule ----------------------------------------------------------------
    base_lr = float(lr if lr is not None else net.get("learning_rate", 0.001))
    momentum = float(net.get("momentum", 0.9))
    decay = float(net.get("decay", 0.0005))
    optimizer = torch.optim.SGD(param_groups(model, decay), lr=base_lr, momentum=momentum)
    if ckpt is not None and ckpt.get("optimizer"):
        optimizer.load_state_dict(ckpt["optimizer"])
    steps_per_epoch = math.ceil(len(dataset) / batch_size)
    total_iters = steps_per_epoch * epochs
    burn_in = clip_burn_in(int(net.get("burn_in", 0) or 0), total_iters)
    sched = BurnInCosine(base_lr, total_iters, burn_in, power=float(net.get("power", 4.0) or 4.0))

    train_args = {
        "cfg": None if cfg is None else str(cfg), "data": str(data),
        "weights": None if weights is None else str(weights), "epochs": int(epochs),
        "batch_size": int(batch_size), "img_size": [int(input_hw[0]), int(input_hw[1])],
        "lr": base_lr, "momentum": momentum, "decay": decay, "burn_in": burn_in, "seed": int(seed),
        "max_images": max_images, "augment": bool(augment),
        "jitter": None if aug is None else aug.jitter, "device": str(device), "eval_every": int(eval_every),
        "box_grad": box_grad,
    }
    log(f"train: {len(dataset)} images, val: {len(val_split.records)} images, {len(names)} classes, "
        f"input {input_hw[1]}x{input_hw[0]} ({'letterbox' if letter_box else 'plain resize'}), "
        f"batch {batch_size}, {steps_per_epoch} steps/epoch, lr {base_lr:g} (burn-in {burn_in} steps, "
        f"cosine to {base_lr * sched.final_ratio:g})")

    csv_path = out / "results.csv"
    rows = _read_rows(csv_path, start_epoch) if resume else []
    best_epoch = None
    for r in rows:
        if r.get("fitness") is not None and r["fitness"] >= best_fit - 1e-6:
            best_epoch = int(r["epoch"])
    metrics: Dict[str, Any] = dict(ckpt.get("metrics") or {}) if ckpt is not None else {}
    pin = dev.type == "cuda"
    warned_nonfinite = False

    for epoch in range(start_epoch, epochs):            # 0-based; reported 1-based
        t0 = time.time()
        model.train()
        dataset.set_epoch(epoch)
        g = torch.Generator().manual_seed(seed * 100003 + epoch)
        order = torch.randperm(len(dataset), generator=g).tolist()
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
                group["lr"] = cur_lr
            model.iteration = it                          # darknet stopbackward=N counts iterations
            x = images.to(dev, non_blocking=pin).float().div_(255.0)
            # (mosaic / CutMix / SAT / multi-scale slot in here)
            raw = model(x, raw=True)
            loss, items = loss_fn(raw, targets.to(dev))
            if not torch.isfinite(loss):
                if not warned_nonfinite:
                    log(f"warning: non-finite loss at epoch {epoch + 1} step {i + 1}; step skipped")
                    warned_nonfinite = True
                optimizer.zero_grad(set_to_none=True)
                continue
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
            optimizer.step()
            # (EMA update slots in here)
            n_steps += 1
            for k in sums:
                sums[k] += items[k]
            if progress:
                bar.set_postfix(OrderedDict((k, f"{sums[k] / n_steps:.3f}") for k in ("box", "obj", "cls")),
                                lr=f"{cur_lr:.2e}")
        if n_steps == 0:
            raise Yolo4Error(f"every step of epoch {epoch + 1} had a non-finite loss; lower the lr")
        mean = {k: v / n_steps for k, v in sums.items()}

        done = epoch + 1
        evaluated = (done % eval_every == 0) or done == epochs
        fit = None
        if evaluated and val_split.records:
            metrics = evaluate_model(model, val_split, input_hw=input_hw, batch_size=batch_size,
                                     device=str(dev), progress=progress, log=log)
            fit = fitness(metrics)
        model.train()
        row = {"epoch": done, "box": round(mean["box"], 6), "obj": round(mean["obj"], 6),
               "cls": round(mean["cls"], 6), "loss": round(mean["loss"], 6), "lr": float(f"{cur_lr:.6g}"),
               "map50": None if fit is None else round(float(metrics["map50"]), 6),
               "map50_95": None if fit is None else round(float(metrics["map50_95"]), 6),
               "fitness": None if fit is None else round(fit, 6), "time_s": round(time.time() - t0, 1)}
        improved = fit is not None and fit > best_fit
        if improved:
            best_fit, best_epoch = fit, done
        ck = make_checkpoint(model, names, done, best_fit, optimizer=optimizer, train_args=train_args,
                             metrics=metrics)
        save_checkpoint(ck, last_path)
        if improved or best_epoch is None:            # never evaluated yet: best = last
            ck["optimizer"] = None
            save_checkpoint(ck, best_path)
        rows.append(row)
        _write_rows(csv_path, rows)
        log(f"epoch {done}/{epochs}  box {mean['box']:.4f}  obj {mean['obj']:.4f}  cls {mean['cls']:.4f}"
            f"  lr {cur_lr:.2e}  mAP50 {_fmt(row['map50'])}  mAP50-95 {_fmt(row['map50_95'])}"
            f"  {row['time_s']:.0f}s{'  *best*' if improved else ''}")

    # ---- darknet files from the best checkpoint ------------------------------------------------
    src = best_path if best_path.exists() else last_path
    best_model = load_checkpoint(str(src))
    weights_path, cfg_path, names_path = out / "best.weights", out / "best.cfg", out / "best.names"
    save_darknet_weights(best_model, str(weights_path))
    save_cfg(best_model, str(cfg_path))
    atomic_write_text(names_path, "".join(f"{n}\n" for n in names))
    return {
        "best": str(best_path) if best_path.exists() else str(last_path), "last": str(last_path),
        "weights": str(weights_path), "cfg": str(cfg_path), "names": str(names_path),
        "results": str(csv_path), "output_dir": str(out), "epochs": rows,
        "best_fitness": float(best_fit), "best_epoch": best_epoch,
    }
