"""``torch.utils.data.Dataset`` over ``ImageRecord`` s, and the batch collate.

Randomness is reproducible and independent of the number of workers: sample ``i`` of epoch ``e``
draws from ``numpy.random.default_rng([seed, e, i])``. Call :meth:`YoloDataset.set_epoch` before
each epoch (workers are re-created per epoch, so they see it).
"""

from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from ..data.records import ImageRecord
from .augment import AugmentConfig, prepare_sample


class YoloDataset(Dataset):
    """Training samples at the network input size.

    Args:
        records: the split's images (``yolo4.data.records.ImageRecord``; boxes in original pixels).
        input_hw: network input ``(height, width)`` in pixels (multiples of 32).
        letter_box: the cfg's ``[net] letter_box`` (geometry of the shared ``resize_one``).
        augment: :class:`~yolo4.trainer.augment.AugmentConfig`, or None for none.
        seed: base seed of the per-sample random generators.

    ``dataset[i]`` returns ``(image, targets, i)``: ``image`` ``[3, H, W] uint8`` RGB tensor,
    ``targets`` ``[M, 5] float32`` rows ``(class_id, cx, cy, w, h)`` in input pixels.

    Raises (from ``__getitem__``):
        yolo4.errors.ImageReadError: the image file is missing or corrupt.
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

    def __getitem__(self, i: int):
        from ..data.images import imread

        rec = self.records[i]
        rng = np.random.default_rng([self.seed, self.epoch, int(i)])
        img = imread(rec.path)
        img, boxes, classes = prepare_sample(img, rec.boxes, rec.classes, self.input_hw, self.letter_box,
                                             self.augment, rng)
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
