"""``yolo4 train --preview N``: the first N augmented training batches as JPEGs with their boxes.

Each ``preview/batch{k}.jpg`` (k = 0 .. N-1) in the run folder is a grid (``ceil(sqrt(B))`` columns,
row by row in batch order) of the network-size images of batch ``k`` of the first epoch, exactly as
the trainer gets them (same seed, order :func:`~yolo4.trainer.dataset.epoch_order`, augmentation,
mosaic / CutMix / MixUp), with every target box and its class name drawn by
:func:`yolo4.runtime.draw.draw_detections` (the label's number is 1.00: a ground-truth box).
"""

import math
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Union

import cv2
import numpy as np

from ..fileio import atomic_write_bytes, check_writable_dir
from ..runtime.draw import draw_detections
from ..runtime.postprocess import Detections
from .augment import AugmentConfig
from .dataset import YoloDataset, epoch_order

PathLike = Union[str, "Path"]

#: JPEG quality of the preview grids
JPEG_QUALITY = 90


def batch_grid(images: Sequence[np.ndarray], boxes: Sequence[np.ndarray], classes: Sequence[np.ndarray],
               names: Optional[Sequence[str]] = None) -> np.ndarray:
    """Draw each sample's boxes and tile the samples into one image.

    Args:
        images: B ``[H, W, 3] uint8`` BGR images (same size); boxes: B ``[M, 4] float32`` x1,y1,x2,y2
            in those pixels; classes: B ``[M] int64``; names: class names (index = class id).

    Returns:
        ``[rows * H, cols * W, 3] uint8`` BGR, ``cols = ceil(sqrt(B))``; empty cells black.
    """
    B = len(images)
    H, W = images[0].shape[:2]
    cols = max(1, math.ceil(math.sqrt(B)))
    rows = math.ceil(B / cols)
    grid = np.zeros((rows * H, cols * W, 3), np.uint8)
    for j, (img, b, c) in enumerate(zip(images, boxes, classes)):
        det = Detections(np.asarray(b, np.float32).reshape(-1, 4), np.ones(len(b), np.float32),
                         np.asarray(c, np.int64).reshape(-1))
        r, q = divmod(j, cols)
        grid[r * H:(r + 1) * H, q * W:(q + 1) * W] = draw_detections(img, det, names)
    return grid


def write_batches(dataset: YoloDataset, out_dir: PathLike, n: int, batch_size: int,
                  names: Optional[Sequence[str]] = None, epoch: int = 0) -> List[Path]:
    """Write ``out_dir/batch{k}.jpg`` for the first ``n`` batches of ``epoch`` of ``dataset``.

    Returns the written paths (fewer than ``n`` when the epoch has fewer batches).
    """
    out = check_writable_dir(Path(out_dir), "preview folder")
    dataset.set_epoch(epoch)
    order = epoch_order(dataset.seed, epoch, len(dataset))
    paths = []
    for k in range(max(0, int(n))):
        idx = order[k * batch_size:(k + 1) * batch_size]
        if not idx:
            break
        samples = [dataset.sample(i) for i in idx]
        grid = batch_grid([s[0] for s in samples], [s[1] for s in samples], [s[2] for s in samples], names)
        ok, buf = cv2.imencode(".jpg", grid, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise RuntimeError("cv2.imencode failed on a preview grid")
        paths.append(atomic_write_bytes(out / f"batch{k}.jpg", buf.tobytes()))
    return paths


def write_preview(cfg: PathLike, data: PathLike, output_dir: PathLike, n: int, batch_size: int = 8,
                  img_size: Optional[int] = None, seed: int = 0, max_images: Optional[int] = None,
                  augment: bool = True, jitter: Optional[float] = None,
                  log: Callable[[str], Any] = print) -> List[Path]:
    """The first ``n`` training batches of a new run as ``output_dir/preview/batch{k}.jpg``.

    Arguments as :func:`yolo4.trainer.train.train` (their defaults: batch 8, seed 0, augment on, the
    cfg's jitter and input size); the dataset is built the way the trainer builds it.

    Returns:
        the written JPEG paths.
    """
    from ..data.datasets import load_dataset
    from ..model import load_darknet

    split = load_dataset(data, "train")
    names = list(split.names)
    records = split.records[:max_images] if max_images is not None else split.records
    model = load_darknet(cfg, None, num_classes=len(names))
    input_hw = model.check_input_size(img_size if img_size is not None else model.input_hw, "--img-size")
    letter_box = bool(getattr(model, "letter_box", False))
    if jitter is None:
        jitter = float(model.yolo_layers[0].jitter)
    aug = AugmentConfig.from_cfg(dict(model.net), jitter) if augment else None
    dataset = YoloDataset(records, input_hw, letter_box, aug, seed=seed)
    paths = write_batches(dataset, Path(output_dir) / "preview", n, batch_size, names)
    log(f"preview: {len(paths)} batches in {Path(output_dir) / 'preview'} ({aug})")
    return paths
