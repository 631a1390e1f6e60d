"""Fine-tuning benchmark: the real yolov4-tiny (COCO weights) fine-tuned with ``yolo4 train``'s defaults.

Three datasets from the asset mirror (``../shared/data``), each fine-tuned from ``yolov4-tiny.weights``
with the trainer's defaults (nothing but the epochs, batch, input size and seed is given), on the CPU:

    raccoon   1 new class (the heads are re-made); its own train (160) / test (40) split; 320 px
    chess     12 new piece classes (14 categories, 2 without boxes; re-made heads); the 58 mirrored
              images split with ``random.Random(0)`` into 42 train / 16 test; 416 px
    coco128   the 80 COCO classes (the heads are kept): coco128 split with ``random.Random(0)`` into
              96 train / 32 held-out images (the split of tests/test_finetune_heldout.py); 416 px.
              Also reports the pretrained model's held-out mAP and the change: fine-tuning on the
              same classes must not forget what the model knew.

Each run validates once, after its last epoch, so the test images never choose a checkpoint: the
figures are the final model's (the EMA of the weights) test mAP@.5 and mAP@[.5:.95] (pycocotools),
and the run's wall-clock minutes (training + that one validation). A table row per run is printed as
it finishes, then the mean and spread over the seeds per dataset and epoch count; everything is
written to ``OUT/finetune.json``.

    YOLO4_ASSET_MIRROR=../shared/data python benchmarks/finetune.py [--datasets raccoon,chess,coco128]
        [--epochs 5,20] [--seeds 0,1,2] [--batch 8] [--sizes raccoon=320,chess=416,coco128=416]
        [--threads 2] [--out runs/finetune]

The README's fine-tuning table comes from this script (its command is given there). A raccoon run of
5 epochs takes about 3 minutes on 2 cores.
"""

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

import torch

from yolo4.assets import resolve_cfg, resolve_weights
from yolo4.data.datasets import load_dataset
from yolo4.fileio import atomic_write_text
from yolo4.model import load_checkpoint, load_darknet
from yolo4.trainer.train import train
from yolo4.trainer.validate import evaluate_model

DATASETS = ("raccoon", "chess", "coco128")
DEFAULT_SIZES = {"raccoon": 320, "chess": 416, "coco128": 416}
#: seeded splits: dataset -> (train images, test images); raccoon keeps its own
SPLITS = {"chess": (42, 16), "coco128": (96, 32)}
SPLIT_SEED = 0


def _seeded_order(n: int):
    order = list(range(n))
    random.Random(SPLIT_SEED).shuffle(order)
    return order


def chess_split(mirror: Path, folder: Path) -> Path:
    """A dataset YAML over two COCO jsons written to ``folder``: the chess json's images split 42/16."""
    src = mirror / "chess" / "valid" / "_annotations.coco.json"
    data = json.loads(src.read_text())
    images = sorted(data["images"], key=lambda im: im["file_name"])
    n_train, n_test = SPLITS["chess"]
    assert len(images) == n_train + n_test, f"{src}: {len(images)} images, expected {n_train + n_test}"
    order = _seeded_order(len(images))
    paths = {}
    for split, picked in (("train", order[:n_train]), ("val", order[n_train:])):
        ims = [dict(images[i], file_name=str(src.parent / images[i]["file_name"])) for i in sorted(picked)]
        ids = {im["id"] for im in ims}
        part = dict(data, images=ims, annotations=[a for a in data["annotations"] if a["image_id"] in ids])
        paths[split] = folder / f"chess_{split}.json"
        atomic_write_text(paths[split], json.dumps(part))
    yaml = folder / "chess_split.yaml"
    atomic_write_text(yaml, f"path: {src.parent}\ntrain: {paths['train']}\nval: {paths['val']}\nformat: coco\n")
    return yaml


def coco128_split(mirror: Path, folder: Path) -> Path:
    """A dataset YAML over two image lists written to ``folder``: coco128 split 96/32 (seeded)."""
    images = sorted((mirror / "coco128" / "images" / "train2017").glob("*.jpg"))
    n_train, n_test = SPLITS["coco128"]
    assert len(images) == n_train + n_test, f"coco128: {len(images)} images, expected {n_train + n_test}"
    order = _seeded_order(len(images))
    lists = {}
    for split, picked in (("train", order[:n_train]), ("val", order[n_train:])):
        lists[split] = folder / f"coco128_{split}.txt"
        atomic_write_text(lists[split], "".join(f"{images[i]}\n" for i in sorted(picked)))
    names = list(load_dataset("coco128", "train").names)
    yaml = folder / "coco128_split.yaml"
    atomic_write_text(yaml, f"path: {mirror / 'coco128'}\ntrain: {lists['train']}\nval: {lists['val']}\n"
                      "format: yolo\nnames:\n" + "".join(f"  - '{n}'\n" for n in names))
    return yaml


def data_spec(name: str, mirror: Path, folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    if name == "raccoon":
        return "raccoon"
    return str(chess_split(mirror, folder) if name == "chess" else coco128_split(mirror, folder))


def pretrained_map(spec: str, size: int) -> dict:
    """The COCO model's held-out mAP (coco128 only: the classes are the model's own)."""
    model = load_darknet(resolve_cfg("yolov4-tiny"), resolve_weights("yolov4-tiny"))
    split = load_dataset(spec, "val")
    model.names = list(split.names)
    m = evaluate_model(model, split, input_hw=(size, size))
    return {"map50": float(m["map50"]), "map50_95": float(m["map50_95"])}


def run_one(name: str, spec: str, epochs: int, seed: int, size: int, args, out: Path) -> dict:
    folder = out / f"{name}-{epochs}ep-{size}px-seed{seed}"
    t0 = time.time()
    res = train(cfg="yolov4-tiny", weights="yolov4-tiny", data=spec, epochs=epochs, batch_size=args.batch,
                img_size=size, seed=seed, eval_every=epochs, output_dir=str(folder), workers=args.workers,
                progress=False, log=lambda s: print("   ", s, file=sys.stderr), device="cpu")
    last = res["epochs"][-1]
    row = {"dataset": name, "epochs": epochs, "img_size": size, "seed": seed, "map50": float(last["map50"]),
           "map50_95": float(last["map50_95"]), "minutes": round((time.time() - t0) / 60, 1), "run": str(folder)}
    if name == "coco128":  # the same numbers through the checkpoint, as a user would load it
        m = evaluate_model(load_checkpoint(res["best"]), load_dataset(spec, "val"), input_hw=(size, size))
        row["map50"], row["map50_95"] = float(m["map50"]), float(m["map50_95"])
    return row


def summarize(rows, pretrained):
    """Mean and spread (min..max) over seeds per (dataset, epochs)."""
    groups = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["epochs"], r["img_size"]), []).append(r)
    out = []
    for (name, epochs, size), rs in groups.items():
        s = {"dataset": name, "epochs": epochs, "img_size": size, "seeds": [r["seed"] for r in rs]}
        for k in ("map50", "map50_95"):
            vals = [r[k] for r in rs]
            s[k] = statistics.mean(vals)
            s[k + "_range"] = [min(vals), max(vals)]
            if name in pretrained:
                s[k + "_change"] = [v - pretrained[name][k] for v in vals]
        out.append(s)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated: " + ", ".join(DATASETS))
    ap.add_argument("--epochs", default="5", help="comma-separated epoch counts (e.g. 5,20)")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds (order, augmentation)")
    ap.add_argument("--batch", type=int, default=8, help="images per optimizer step")
    ap.add_argument("--sizes", default="", help="input size per dataset in pixels, e.g. raccoon=320,chess=416")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--out", type=Path, default=Path("runs/finetune"), help="output folder")
    args = ap.parse_args(argv)
    names = [d for d in args.datasets.split(",") if d]
    unknown = sorted(set(names) - set(DATASETS))
    if unknown:
        ap.error(f"unknown dataset(s) {', '.join(unknown)}; choose from {', '.join(DATASETS)}")
    sizes = dict(DEFAULT_SIZES)
    for item in filter(None, args.sizes.split(",")):
        k, _, v = item.partition("=")
        if k not in DATASETS or not v.isdigit():
            ap.error(f"--sizes: {item!r} is not DATASET=PIXELS")
        sizes[k] = int(v)
    try:
        epoch_list = [int(e) for e in args.epochs.split(",")]
        seed_list = [int(x) for x in args.seeds.split(",")]
    except ValueError:
        ap.error(f"--epochs {args.epochs!r} / --seeds {args.seeds!r}: comma-separated integers")
    if min(epoch_list) < 1:
        ap.error("--epochs: at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("YOLO4_ASSET_MIRROR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    mirror = Path(os.environ["YOLO4_ASSET_MIRROR"])
    print(f"yolov4-tiny fine-tuning, defaults, batch {args.batch}, {torch.get_num_threads()} threads, CPU")
    print("| dataset | epochs | px | seed | test mAP@.5 | test mAP@[.5:.95] | minutes |\n"
          "|---|---:|---:|---:|---:|---:|---:|", flush=True)
    rows, pretrained = [], {}
    for name in names:
        spec = data_spec(name, mirror, args.out / "splits")
        if name == "coco128":
            pretrained[name] = pretrained_map(spec, sizes[name])
            print(f"| coco128 | pretrained | {sizes[name]} | - | {pretrained[name]['map50']:.3f} | "
                  f"{pretrained[name]['map50_95']:.3f} | - |", flush=True)
        for epochs in epoch_list:
            for seed in seed_list:
                r = run_one(name, spec, epochs, seed, sizes[name], args, args.out)
                rows.append(r)
                print(f"| {name} | {epochs} | {r['img_size']} | {seed} | {r['map50']:.3f} | {r['map50_95']:.3f} | "
                      f"{r['minutes']:.1f} |", flush=True)
    summary = summarize(rows, pretrained)
    print("\n| dataset | epochs | px | seeds | mAP@.5 mean (min..max) | mAP@[.5:.95] mean (min..max) |\n"
          "|---|---:|---:|---:|---:|---:|")
    for s in summary:
        print(f"| {s['dataset']} | {s['epochs']} | {s['img_size']} | {len(s['seeds'])} | {s['map50']:.3f} "
              f"({s['map50_range'][0]:.3f}..{s['map50_range'][1]:.3f}) | {s['map50_95']:.3f} "
              f"({s['map50_95_range'][0]:.3f}..{s['map50_95_range'][1]:.3f}) |")
        if "map50_95_change" in s:
            print(f"|   change vs pretrained | | | | {', '.join('%+.4f' % c for c in s['map50_change'])} | "
                  f"{', '.join('%+.4f' % c for c in s['map50_95_change'])} |")
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "finetune.json",
                      json.dumps({"runs": rows, "pretrained": pretrained, "summary": summary}, indent=2) + "\n")
    print(f"\nwrote {args.out / 'finetune.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
