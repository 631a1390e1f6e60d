"""YOLO txt labels (darknet / Ultralytics) -> :class:`~yolo4.data.records.ImageRecord`. Python 3.8, torch-free.

* **Where labels are**: the label of ``.../images/<sub>/x.jpg`` is ``.../labels/<sub>/x.txt`` (the
  *last* ``images`` path component replaced by ``labels``, else the last ``JPEGImages``, else the
  image's own folder, as darknet's ``replace_image_to_label``; see :func:`label_path`). An image
  without a label file is a background image; a label file without an image is ignored.
* **Lines**: one box per line, ``class cx cy w h`` normalized to 0..1 (Ultralytics polygon lines
  ``class x1 y1 x2 y2 ...`` are accepted and turned into their bounding box). Blank lines are
  ignored. Values are plain decimal numbers (``0.5``, ``5e-1``): Python-only spellings such as
  ``1_0``, ``0x1`` or non-ASCII digits are malformed, not read as numbers. The class id is a
  non-negative integer written as digits (``3``, also ``3.0``; not ``-0``, ``3e0`` or ``+3``).
* **Checks** (each failure skips the line with a ``file:line: problem`` warning): malformed lines,
  class ids out of range, non-finite values, normalized values outside ``[0, 1]`` (beyond
  :data:`COORD_TOLERANCE`, which absorbs the rounding of 6-decimal label files), zero/negative sizes,
  boxes with no area inside the image or no width/height once stored as float32 pixels. Boxes that
  merely reach past the image border are clipped to it, as darknet and Ultralytics do.
* Image sizes come from the image headers (:func:`~yolo4.data.images.image_size`).
"""

import math
import os
import re
from typing import List, Sequence, Tuple, Union

from .collect import (
    Collector,
    float32_box,
    fmt,
    header_sizes,
    parse_decimals,
    read_text,
    show,
    split_images,
    text_lines,
)
from .dataset_yaml import DatasetConfig

PathLike = Union[str, "os.PathLike[str]"]

#: Slack allowed on normalized YOLO values outside [0, 1] (6-decimal rounding of cx +- w/2).
COORD_TOLERANCE = 1e-6

_CLASS_ID = re.compile(r"([0-9]+)(?:\.0*)?")
_MAX_CLASS_DIGITS = 9  # no dataset has a billion classes; longer ids are out of range


def label_path(image_path: PathLike) -> str:
    """YOLO label file of an image: last ``images`` component -> ``labels`` (else last ``JPEGImages``,
    else the image's folder), suffix -> ``.txt``. Same rule as Ultralytics' ``img2label_paths`` and
    darknet's ``replace_image_to_label``.

    Args:
        image_path: image file (str or PathLike; made absolute).

    Returns:
        absolute path of the label file (it may not exist).
    """
    p = os.path.abspath(os.fspath(image_path))
    parts = p.split(os.sep)
    for marker in ("images", "JPEGImages"):
        idx = [i for i, part in enumerate(parts[:-1]) if part == marker]
        if idx:
            parts[idx[-1]] = "labels"
            break
    return os.path.splitext(os.sep.join(parts))[0] + ".txt"


def load_yolo_entries(cfg: DatasetConfig, entries: Sequence[str], out: Collector, nc: int) -> None:
    """Append a record to ``out`` for every image of ``entries`` (sizes from the image headers,
    boxes from :func:`label_path` files; ``nc`` = number of classes).

    Raises:
        DataError: an unreadable list or label file.
    """
    images = split_images(entries, out)
    sizes = header_sizes(images, out)
    for path, size in zip(images, sizes):
        if size is None:
            continue
        w, h = size
        boxes, classes = read_yolo_label(label_path(path), nc, w, h, out)
        out.add(path, w, h, boxes, classes)


def read_yolo_label(path: str, nc: int, w: int, h: int,
                    out: Collector) -> Tuple[List[List[float]], List[int]]:
    """Boxes and classes of one YOLO label file; a missing file is a background image.

    Args:
        path: the label file.
        nc: number of classes (ids 0..nc-1 are valid).
        w, h: image size in pixels.
        out: receives a ``file:line: problem`` warning per skipped line.

    Returns:
        ``(boxes, classes)``: boxes as ``[x1, y1, x2, y2]`` float32-exact pixel values, clipped to the
        image; classes as ints.

    Raises:
        DataError: the file exists but cannot be read as UTF-8 text.
    """
    if not os.path.isfile(path):
        return [], []
    boxes: List[List[float]] = []
    classes: List[int] = []
    tol = COORD_TOLERANCE
    for i, line in enumerate(text_lines(read_text(path, "label file")), 1):
        parts = line.split()
        if not parts:
            continue
        values = parse_decimals(line)
        if values is None:
            out.warn(path, i, f"malformed line (expected 'class cx cy w h' numbers): {show(line.strip())}")
            continue
        n = len(values) - 1
        if n != 4 and (n < 6 or n % 2):
            out.warn(path, i, f"malformed line: {len(values)} values, expected 5 ('class cx cy w h')")
            continue
        m = _CLASS_ID.fullmatch(parts[0])
        if m is None:
            out.warn(path, i, f"class id {show(parts[0])} is not a non-negative integer")
            continue
        digits = m.group(1).lstrip("0") or "0"
        if len(digits) > _MAX_CLASS_DIGITS or int(digits) >= nc:
            out.warn(path, i, f"class id {show(digits)} out of range 0..{nc - 1}")
            continue
        cls = int(digits)
        coords = values[1:]
        if not all(math.isfinite(v) for v in coords):
            out.warn(path, i, "non-finite coordinate")
            continue
        if any(v < -tol or v > 1 + tol for v in coords):
            out.warn(path, i, "coordinates outside [0,1]: " + " ".join(fmt(v) for v in coords))
            continue
        if n == 4:
            cx, cy, bw, bh = coords
            if bw <= 0 or bh <= 0:
                out.warn(path, i, f"zero or negative box size (w={fmt(bw)} h={fmt(bh)})")
                continue
            x1, y1, x2, y2 = cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2
        else:  # polygon x1 y1 x2 y2 ... -> its bounding box
            xs, ys = coords[0::2], coords[1::2]
            x1, y1, x2, y2 = min(xs), min(ys), max(xs), max(ys)
        x1, y1 = min(max(x1, 0.0), 1.0) * w, min(max(y1, 0.0), 1.0) * h
        x2, y2 = min(max(x2, 0.0), 1.0) * w, min(max(y2, 0.0), 1.0) * h
        if x2 <= x1 or y2 <= y1:
            out.warn(path, i, "box has zero area inside the image")
            continue
        box = float32_box(x1, y1, x2, y2)
        if box is None:
            out.warn(path, i, f"box too small: no width or height in float32 pixels "
                     f"(w={fmt(x2 - x1)} h={fmt(y2 - y1)} px)")
            continue
        boxes.append(box)
        classes.append(cls)
    return boxes, classes
