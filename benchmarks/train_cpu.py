"""CPU training throughput: the data loader with mosaic vs the yolov4-tiny train step.

The loader must not be the bottleneck: its images/s (DataLoader, ``--workers`` processes, every
sample a mosaic of 4 coco128 images with jitter, flip and HSV, as ``yolov4.cfg``'s ``mosaic=1`` plus
darknet's hue/saturation/exposure at ``--img-size``) should exceed the model's (forward + loss +
backward + SGD step of yolov4-tiny on the CPU, batch ``--batch``, the trainer's loss).

    YOLO4_ASSET_MIRROR=../shared/data python benchmarks/train_cpu.py [--img-size 416] [--workers 2]
        [--batch 8] [--batches 12] [--steps 4] [--threads N]

Prints both rates (images/s) and their ratio.
"""

import argparse
import sys
import time

import torch

from yolo4.assets import resolve_cfg
from yolo4.data.datasets import load_dataset
from yolo4.trainer.augment import AugmentConfig
from yolo4.trainer.dataset import YoloDataset, collate, epoch_order
from yolo4.trainer.loss import YoloLoss


def loader_rate(size: int, workers: int, batch: int, batches: int) -> float:
    """Images/s of the training DataLoader with every sample a mosaic (first batch = warm-up)."""
    split = load_dataset("coco128", "train")
    aug = AugmentConfig(flip=0.5, hue=0.1, saturation=1.5, exposure=1.5, jitter=0.3, mosaic=1.0)
    ds = YoloDataset(split.records, (size, size), False, aug, seed=0)
    order = (epoch_order(0, 0, len(ds)) * ((batches + 1) * batch // len(ds) + 1))[:(batches + 1) * batch]
    dl = torch.utils.data.DataLoader(ds, batch_size=batch, sampler=order, num_workers=workers,
                                     collate_fn=collate, persistent_workers=False)
    it = iter(dl)
    next(it)                                    # worker start-up and the first batch
    t0 = time.perf_counter()
    n = 0
    for images, _, _ in it:
        n += images.shape[0]
    return n / (time.perf_counter() - t0)


def step_rate(size: int, batch: int, steps: int) -> float:
    """Images/s of yolov4-tiny train steps (forward raw + YoloLoss + backward + SGD) on the CPU."""
    from yolo4.model import load_darknet

    model = load_darknet(resolve_cfg("yolov4-tiny"), None)
    model.train()
    loss_fn = YoloLoss([yl.spec for yl in model.yolo_layers])
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    x = torch.rand(batch, 3, size, size)
    t = torch.tensor([[j, j % 80, size / 2, size / 2, size / 4, size / 3] for j in range(batch)], dtype=torch.float32)

    def one():
        loss, _ = loss_fn(model(x, raw=True), t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    one()                                       # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        one()
    return steps * batch / (time.perf_counter() - t0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--img-size", type=int, default=416)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--batches", type=int, default=12, help="timed loader batches")
    ap.add_argument("--steps", type=int, default=4, help="timed train steps")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for the model step")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    data = loader_rate(a.img_size, a.workers, a.batch, a.batches)
    model = step_rate(a.img_size, a.batch, a.steps)
    print(f"loader (mosaic, {a.img_size} px, {a.workers} workers): {data:8.1f} images/s")
    print(f"yolov4-tiny train step (CPU, batch {a.batch}, {torch.get_num_threads()} threads): {model:8.1f} images/s")
    print(f"loader / step: {data / model:.2f}x ({'OK: the model is the bottleneck' if data >= model else 'the loader is the bottleneck'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
