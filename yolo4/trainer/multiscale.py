"""Random training shapes (darknet ``[yolo] random=1``; YOLOv4 paper 3.4 "random training shapes").

Every :data:`EVERY` iterations the batches switch to a new network input size, drawn as AlexeyAB
darknet draws it (``src/detector.c`` ``train_detector``)::

    rand_coef = 1.4 if random == 1 else random          # [yolo] random of the last layer
    random_val = rand_scale(rand_coef)                    # uniform in [1, c], then x or / it
    dim = round(random_val * init / resize_step + 1) * resize_step
    if random_val < 1 and dim > init: dim = init

for height and width alike (``init`` = the run's input size, ``resize_step`` = ``[net] resize_step``,
default 32). At 416 with ``random=1`` the sizes run from 320 to 608 in steps of 32 (darknet's ``+ 1``
makes every upward draw at least 448, every downward one 320..416); ``random=1.2`` narrows them to
384..544; ``resize_step=64`` gives 384..640 in steps of 64. Darknet's two exceptions are left out:
the largest size on the first iteration (its memory check) and in the last 100 iterations.

The draw of period ``k`` (iterations ``10k .. 10k+9``) comes from ``random.Random("random:<seed>:<k>")``:
a function of the run's seed and the iteration alone, so every DDP rank takes the same size without
a collective and a resumed run the sizes the uninterrupted one took.

The data pipeline keeps producing (augmented, letterboxed) images at the run's size; a batch is
then resized with bilinear interpolation (:func:`resize_batch`) and its boxes scaled with it
(darknet instead loads the images at the new size; the boxes are the same fractions of the image).
Validation, checkpoints and export keep the run's size.
"""

import math
import random
from typing import Tuple

import torch
import torch.nn.functional as F

__all__ = ["EVERY", "DEFAULT_COEF", "rand_coef", "dim_for", "size_bounds", "draw_size", "resize_batch"]

#: a new size every this many iterations (darknet: ``count++ % 10 == 0``)
EVERY = 10
#: darknet's coefficient for ``random=1``
DEFAULT_COEF = 1.4


def rand_coef(random_key: float) -> float:
    """Darknet's scale coefficient for a ``[yolo] random`` value: 1.4 for ``random=1``, else the value.

    Raises:
        ValueError: a value below 1 other than 0 (darknet would divide by it; 0 means off).
    """
    r = float(random_key)
    if r == 1.0:
        return DEFAULT_COEF
    if r < 1.0:
        raise ValueError(f"random={r:g}: must be 0 (off), 1 (darknet's x/ 1.4) or a scale coefficient > 1")
    return r


def dim_for(init: int, scale: float, step: int) -> int:
    """Darknet's size for one side: ``round(scale * init / step + 1) * step``, at least ``step``,
    and not above ``init`` when ``scale < 1``. Pixels."""
    dim = int(math.floor(scale * init / step + 1 + 0.5)) * step      # C roundl: half away from 0
    if scale < 1 and dim > init:
        dim = init
    return max(dim, step)


def size_bounds(input_hw: Tuple[int, int], coef: float, step: int = 32) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    """The smallest and largest ``(height, width)`` in pixels the draws can give (at ``1/coef`` and ``coef``)."""
    h, w = int(input_hw[0]), int(input_hw[1])
    lo = (dim_for(h, 1.0 / coef, step), dim_for(w, 1.0 / coef, step))
    hi = (dim_for(h, coef, step), dim_for(w, coef, step))
    return lo, hi


def draw_size(input_hw: Tuple[int, int], coef: float, step: int, seed: int, iteration: int) -> Tuple[int, int]:
    """The input ``(height, width)`` in pixels of ``iteration`` (0-based) of a run with ``seed``.

    Args:
        input_hw: the run's input size (pixels, multiples of ``step``).
        coef: :func:`rand_coef` of the cfg's ``random`` (> 1).
        step: ``[net] resize_step`` (pixels, >= 1).
        seed: the run's seed.
        iteration: the global optimizer iteration; iterations ``EVERY * k .. EVERY * k + EVERY - 1``
            share one size.

    Returns:
        ``(height, width)``, both sides scaled by the same draw, each a multiple of ``step``.
    """
    rng = random.Random(f"random:{int(seed)}:{int(iteration) // EVERY}")
    scale = rng.uniform(1.0, float(coef))         # darknet rand_scale: rand_uniform(1, s), then
    if rng.randint(0, 1):                         # half the time its inverse
        scale = 1.0 / scale
    return dim_for(int(input_hw[0]), scale, step), dim_for(int(input_hw[1]), scale, step)


def resize_batch(images: torch.Tensor, targets: torch.Tensor, size_hw: Tuple[int, int]):
    """A batch at another input size: images resized bilinearly, boxes scaled with them.

    Args:
        images: ``[B, 3, H, W]`` float (0..1).
        targets: ``[K, 6]`` rows ``(image_index, class, cx, cy, w, h)``, boxes in input pixels
            (:func:`.dataset.collate`).
        size_hw: the new ``(height, width)`` in pixels.

    Returns:
        ``(images [B, 3, h, w], targets [K, 6])``: the inputs themselves when the size is unchanged.
    """
    h, w = int(size_hw[0]), int(size_hw[1])
    H, W = int(images.shape[-2]), int(images.shape[-1])
    if (h, w) == (H, W):
        return images, targets
    out = F.interpolate(images, size=(h, w), mode="bilinear", align_corners=False)
    t = targets.clone()
    t[:, 2:6] *= t.new_tensor([w / W, h / H, w / W, h / H])
    return out, t
