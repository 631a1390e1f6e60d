"""Ablation of the YOLOv4 training recipe: fine-tune the real yolov4-tiny on raccoon, one element at a time.

Every row fine-tunes ``yolov4-tiny.weights`` (COCO) on ``raccoon`` (1 class, so the heads are re-made)
with the trainer's defaults (darknet's per-image learning rate, burn-in, cosine, EMA, jitter / HSV /
flip from the cfg) and the same epochs, batch, size and seed; the rows add the recipe's elements
cumulatively, set as darknet cfg keys (the ``yolo4 train --set KEY=VALUE`` mechanism):

    baseline  yolov3's loss: iou_loss=mse (darknet's default iou_normalizer 0.75), one anchor per
              object (iou_thresh=1), no mosaic, fixed input size
    +mosaic   mosaic=1
    +CIoU     iou_loss=ciou, iou_normalizer=0.07 (yolov4-tiny.cfg's own)
    +anchors, shapes
              iou_thresh=0.213 (several anchors per object, yolov4.cfg) and random=1 (random training
              shapes, 10-iteration periods, x/ 1.4 around the size)
    full      + SAT (adversarial_lr=0.05) and CmBN (--subdivisions 2 --cmbn)

The figure per row is the final model's (the EMA after the last epoch, no checkpoint selection)
mAP@.5 and mAP@[.5:.95] (pycocotools) on raccoon's 40 test images, and the wall-clock minutes of
the run (training + one validation per epoch). ``--full-size 416`` also runs the full recipe at 416.

    YOLO4_ASSET_MIRROR=../shared/data python benchmarks/raccoon_ablation.py [--epochs 10] [--img-size 320]
        [--batch 8] [--seed 0] [--rows baseline,mosaic,...] [--full-size 416] [--out runs/ablation]

Prints one markdown table row per run as it finishes and writes ``OUT/ablation.json``.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from yolo4.assets import resolve_cfg, resolve_weights
from yolo4.fileio import atomic_write_text
from yolo4.model.cfg import parse_cfg_text, patch_cfg_text
from yolo4.trainer.train import train

#: row name -> (cfg edits {section: {key: value}}, train() keyword arguments); cumulative
ROWS = [
    ("baseline", {"net": {"mosaic": 0}, "yolo": {"iou_loss": "mse", "iou_normalizer": 0.75, "iou_thresh": 1.0,
                                                 "random": 0}}, {}),
    ("+mosaic", {"net": {"mosaic": 1}}, {}),
    ("+CIoU", {"yolo": {"iou_loss": "ciou", "iou_normalizer": 0.07}}, {}),
    ("+anchors, shapes", {"yolo": {"iou_thresh": 0.213, "random": 1}}, {}),
    ("full (+SAT, CmBN)", {"net": {"adversarial_lr": 0.05}}, {"subdivisions": 2, "cmbn": True}),
]


def cfg_for(base_text: str, edits: dict) -> str:
    """``base_text`` with ``{"net"|"yolo": {key: value}}`` set ([yolo] keys in every [yolo])."""
    sections = parse_cfg_text(base_text, validate=False, warn=False)
    out = []
    for i, sec in enumerate(sections):
        kind = sec.type
        for key, value in edits.get(kind, {}).items():
            out.append((i, key, value if isinstance(value, str) else f"{value:g}"))
    return patch_cfg_text(base_text, sections, out)


def run_row(name, cfg_text, extra, args, size, out_dir: Path):
    folder = out_dir / name.replace(" ", "_").replace("+", "plus_").replace(",", "").replace("(", "").replace(")", "")
    folder.mkdir(parents=True, exist_ok=True)
    cfg = folder / "ablation.cfg"
    atomic_write_text(cfg, cfg_text)
    t0 = time.time()
    res = train(cfg=str(cfg), weights=str(resolve_weights("yolov4-tiny")), data="raccoon", epochs=args.epochs,
                batch_size=args.batch, img_size=size, seed=args.seed, output_dir=str(folder), workers=args.workers,
                progress=False, log=lambda s: print("   ", s, file=sys.stderr), device="cpu", **extra)
    minutes = (time.time() - t0) / 60
    last = res["epochs"][-1]
    row = {"row": name, "img_size": size, "epochs": args.epochs, "map50": last["map50"],
           "map50_95": last["map50_95"], "minutes": round(minutes, 1), "extra": {k: v for k, v in extra.items()}}
    print(f"| {name} | {size} | {last['map50']:.3f} | {last['map50_95']:.3f} | {minutes:.1f} |", flush=True)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--img-size", type=int, default=320, help="input size of the ablation rows, pixels")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rows", default="all", help="comma-separated row numbers (1-based) or 'all'")
    ap.add_argument("--full-size", type=int, default=0, help="also run the full recipe at this size (0: no)")
    ap.add_argument("--out", type=Path, default=Path("runs/ablation"))
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("YOLO4_ASSET_MIRROR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    base = Path(resolve_cfg("yolov4-tiny")).read_text()
    wanted = set(range(1, len(ROWS) + 1)) if args.rows == "all" else {int(r) for r in args.rows.split(",")}
    print(f"raccoon, yolov4-tiny, {args.epochs} epochs, batch {args.batch}, seed {args.seed}, "
          f"{torch.get_num_threads()} threads")
    print("| row | px | test mAP@.5 | test mAP@[.5:.95] | minutes |\n|---|---:|---:|---:|---:|", flush=True)
    edits: dict = {}
    extra: dict = {}
    results = []
    for n, (name, e, kw) in enumerate(ROWS, 1):
        for sec, kv in e.items():
            edits.setdefault(sec, {}).update(kv)
        extra.update(kw)
        if n in wanted:
            results.append(run_row(name, cfg_for(base, edits), dict(extra), args, args.img_size, args.out))
    if args.full_size:
        results.append(run_row(f"full at {args.full_size}", cfg_for(base, edits), dict(extra), args,
                               args.full_size, args.out))
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "ablation.json", json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
