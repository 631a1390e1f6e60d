"""The one record type every dataset reader returns. Python 3.8, torch-free."""

from dataclasses import dataclass, field
from typing import Any, Callable, List

import numpy as np


@dataclass
class ImageRecord:
    """One labelled image.

    Attributes:
        path: absolute path of the image file.
        width, height: image size in pixels (read from the file header when the format lacks it).
        boxes: ``[M, 4] float32`` x1,y1,x2,y2 in original-image pixels.
        classes: ``[M] int64`` class ids, 0..C-1 indexing ``DatasetSpec.names``.
        image_id: integer id, unique within the split (COCO image id where the source has one).
    """

    path: str
    width: int
    height: int
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    classes: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    image_id: int = 0


@dataclass
class DatasetSplit:
    """A dataset split: its records and the problems found while reading it.

    Attributes:
        names: class names, index = class id.
        records: the images, labelled or not (background images have M = 0).
        warnings: one line each, ``file:line: problem`` (``file: problem`` where the format has no
            lines) for every skipped label, image or file, and for an image size written in an
            annotation file that was unusable and read from the image instead.
    """

    names: List[str]
    records: List[ImageRecord]
    warnings: List[str] = field(default_factory=list)

    def report_warnings(self, log: Callable[[str], Any], which: str = "", limit: int = 10) -> None:
        """Send the first ``limit`` problems to ``log`` as ``warning: file:line: problem`` lines, then
        one line counting the rest (``which`` names the split in it, e.g. ``"train"``)."""
        for w in self.warnings[:limit]:
            log("warning: %s" % w)
        if len(self.warnings) > limit:
            split = " in the %s split" % which if which else ""
            log("warning: ... and %d more label problems%s" % (len(self.warnings) - limit, split))
