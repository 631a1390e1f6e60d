"""``torch.utils.data.Dataset`` over ``ImageRecord`` s, the epoch order, and the batch collate.

Randomness is reproducible and independent of the number of workers: sample ``i`` of epoch ``e``
draws from ``numpy.random.default_rng([seed, e, i])`` (every draw of it: the mixing switch, the
partner images of a mosaic / CutMix / MixUp, and all of their augmentation), so a resumed run sees
bit-identical batches. Call :meth:`YoloDataset.set_epoch` before each epoch (workers are re-created
per epoch, so they see it).

Bad data never kills an epoch: an image that cannot be read is replaced by the next readable one
of the split (a partner image of a mosaic / CutMix / MixUp by the sample's own image), with one
warning per image.
"""

import warnings
from typing import List, Optional, Sequence, Set, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from ..data.records import ImageRecord
from ..errors import Yolo4Error, Yolo4Warning
from .augment import (
    AugmentConfig,
    choose_mix,
    clip_boxes,
    cutmix,
    cutmix_rect,
    mixup,
    mosaic,
    mosaic_centre,
    mosaic_tile,
    prepare_sample,
    random_blur,
    without_mixing,
)


def epoch_order(seed: int, epoch: int, n: int) -> List[int]:
    """The training order of epoch ``epoch`` (0-based): a permutation of ``range(n)``.

    ``torch.randperm`` with a generator seeded ``seed * 100003 + epoch`` (the trainer's order since the
    first release; the preview shows the same batches the first epoch trains on).
    """
    g = torch.Generator().manual_seed(int(seed) * 100003 + int(epoch))
    return torch.randperm(int(n), generator=g).tolist()


class YoloDataset(Dataset):
    """Training samples at the network input size.

    Args:
        records: the split's images (``yolo4.data.records.ImageRecord``; boxes in original pixels).
        input_hw: network input ``(height, width)`` in pixels (multiples of 32).
        letter_box: the cfg's ``[net] letter_box`` (geometry of the shared ``resize_one``).
        augment: :class:`~yolo4.trainer.augment.AugmentConfig`, or None for none.
        seed: base seed of the per-sample random generators.

    ``dataset[i]`` returns ``(image, targets, i)``: ``image`` ``[3, H, W] uint8`` RGB tensor,
    ``targets`` ``[M, 5] float32`` rows ``(class_id, cx, cy, w, h)`` in input pixels. With mixing on
    (``augment.mosaic`` / ``cutmix`` / ``mixup``) sample ``i`` is image ``i`` mixed with images drawn
    uniformly from the split (see :mod:`yolo4.trainer.augment`).

    An unreadable image (``yolo4.errors.ImageReadError``) is replaced by the next readable one and
    warned about once (:class:`yolo4.errors.Yolo4Warning`); only a split with no readable image raises.
    """

    def __init__(self, records: Sequence[ImageRecord], input_hw: Tuple[int, int], letter_box: bool,
                 augment: Optional[AugmentConfig] = None, seed: int = 0) -> None:
        self.records: List[ImageRecord] = list(records)
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.letter_box = bool(letter_box)
        self.augment = augment
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the random stream of ``epoch`` (0-based)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records)

    def _read(self, j: int):
        """``(image HxWx3 uint8 BGR, boxes [M, 4] float32 original pixels, classes [M] int64)`` or None."""
        from ..data.images import imread

        rec = self.records[j]
        try:
            img = imread(rec.path)
        except Yolo4Error as e:
            bad: Set[int] = self.__dict__.setdefault("_warned", set())
            if j not in bad:
                bad.add(j)
                warnings.warn(f"skipping an unreadable training image: {e}", Yolo4Warning, stacklevel=3)
            return None
        return (img, np.asarray(rec.boxes, np.float32).reshape(-1, 4),
                np.asarray(rec.classes, np.int64).reshape(-1))

    def _read_main(self, i: int):
        """Image ``i``, or the next readable one after it (wrapping)."""
        n = len(self.records)
        for k in range(n):
            got = self._read((i + k) % n)
            if got is not None:
                return got
        raise Yolo4Error("no image of the training split can be read")

    def sample(self, i: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sample ``i`` of the current epoch before the tensor conversion.

        Returns:
            ``(image [H, W, 3] uint8 BGR, boxes [M, 4] float32 x1,y1,x2,y2 input pixels, classes [M] int64)``.
        """
        rng = np.random.default_rng([self.seed, self.epoch, int(i)])
        aug = self.augment
        main = self._read_main(int(i))
        mode = choose_mix(aug, rng)
        if mode == "none":
            return prepare_sample(main[0], main[1], main[2], self.input_hw, self.letter_box, aug, rng)
        n = len(self.records)
        per_image = without_mixing(aug)
        if mode == "mosaic":
            partners = [int(j) for j in rng.integers(0, n, size=3)]
            centre = mosaic_centre(self.input_hw, rng)
            tiles = []
            for k, src in enumerate([main] + [self._read(j) or main for j in partners]):
                tiles.append(mosaic_tile(src[0], src[1], src[2], self.input_hw, self.letter_box, per_image,
                                         rng, tile=k))
            img, boxes, classes = mosaic(tiles, centre)
        else:
            other = self._read(int(rng.integers(0, n))) or main
            a = prepare_sample(main[0], main[1], main[2], self.input_hw, self.letter_box, per_image, rng)
            b = prepare_sample(other[0], other[1], other[2], self.input_hw, self.letter_box, per_image, rng)
            if mode == "cutmix":
                img, boxes, classes = cutmix(a, b, cutmix_rect(self.input_hw, rng))
            else:
                img, boxes, classes = mixup(a, b)
        H, W = img.shape[:2]
        boxes, classes = clip_boxes(boxes, classes, (0, 0, W, H))
        if aug.blur > 0:
            img = random_blur(img, boxes, aug.blur, rng)
        return img, boxes, classes

    def __getitem__(self, i: int):
        img, boxes, classes = self.sample(int(i))
        t = np.zeros((len(boxes), 5), np.float32)
        t[:, 0] = classes
        t[:, 1] = (boxes[:, 0] + boxes[:, 2]) / 2
        t[:, 2] = (boxes[:, 1] + boxes[:, 3]) / 2
        t[:, 3] = boxes[:, 2] - boxes[:, 0]
        t[:, 4] = boxes[:, 3] - boxes[:, 1]
        chw = np.ascontiguousarray(img[:, :, ::-1].transpose(2, 0, 1))    # BGR HWC -> RGB CHW
        return torch.from_numpy(chw), torch.from_numpy(t), int(i)


def collate(batch) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack samples of :class:`YoloDataset`.

    Returns:
        ``(images, targets, indices)``: ``[B, 3, H, W] uint8`` RGB (divide by 255 for the model),
        ``[K, 6] float32`` rows ``(image_index_in_batch, class_id, cx, cy, w, h)`` in input pixels,
        ``[B] int64`` dataset indices.
    """
    images = torch.stack([b[0] for b in batch], 0)
    rows = []
    for j, (_, t, _) in enumerate(batch):
        rows.append(torch.cat((torch.full((t.shape[0], 1), float(j)), t), 1))
    targets = torch.cat(rows, 0) if rows else torch.zeros(0, 6)
    return images, targets, torch.tensor([b[2] for b in batch], dtype=torch.int64)
