"""Class names: darknet ``.names`` files (one name per line) and the built-in COCO and VOC lists.

The built-in lists are the ones darknet ships as ``data/coco.names`` (80 names, darknet's spelling:
``motorbike``, ``aeroplane``, ``sofa``, ``tvmonitor`` ...; index = darknet class id, the class order
of every COCO-pretrained darknet ``.weights``) and ``data/voc.names`` (20 Pascal VOC names), so a
model loaded from a bare ``.cfg`` + ``.weights`` names its classes without a mirror or a network.
Python 3.8, torch-free.
"""

import os
from typing import List, Optional, Sequence, Tuple, Union

from ..errors import DataError

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["COCO_NAMES", "VOC_NAMES", "BUILTIN_NAMES", "load_names", "resolve_names", "default_names",
           "generic_names", "is_generic"]

#: darknet ``data/coco.names``: the 80 COCO classes in darknet class-id order.
COCO_NAMES: Tuple[str, ...] = (
    "person", "bicycle", "car", "motorbike", "aeroplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase",
    "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard",
    "surfboard", "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl",
    "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake",
    "chair", "sofa", "pottedplant", "bed", "diningtable", "toilet", "tvmonitor", "laptop", "mouse",
    "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)

#: darknet ``data/voc.names``: the 20 Pascal VOC classes, alphabetical (darknet's VOC class ids).
VOC_NAMES: Tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)

#: names accepted wherever a class-names file is (``--names coco``).
BUILTIN_NAMES = {"coco": COCO_NAMES, "voc": VOC_NAMES}


def load_names(path: PathLike) -> List[str]:
    """Read a class-names file, darknet's ``.names`` format (``data/coco.names``).

    Args:
        path: text file, UTF-8 (a BOM is tolerated), one class name per line; the line index (after
            dropping empty lines) is the class id, as darknet's ``get_labels`` reads it.

    Returns:
        list of class names, each stripped of surrounding whitespace; empty lines are skipped.

    Raises:
        DataError: the file is missing, unreadable, not UTF-8 text, or holds no name.
    """
    spath = os.fspath(path)
    if not os.path.isfile(spath):
        raise DataError("class-names file not found", spath)
    try:
        with open(spath, encoding="utf-8-sig") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise DataError(f"class-names file is not UTF-8 text ({e.reason})", spath) from None
    except OSError as e:
        raise DataError(f"cannot read class-names file ({e.strerror or e})", spath) from None
    names = [line.strip() for line in text.splitlines()]
    names = [n for n in names if n]
    if not names:
        raise DataError("class-names file holds no class name", spath)
    return names


def resolve_names(spec: PathLike) -> List[str]:
    """Class names from a built-in list name (``"coco"``, ``"voc"``) or a ``.names`` file.

    An existing file wins over a built-in name of the same spelling.

    Raises:
        DataError: as :func:`load_names` (the message says the built-in names when the file is missing).
    """
    text = os.fspath(spec)
    if not os.path.exists(text) and text.strip().lower() in BUILTIN_NAMES:
        return list(BUILTIN_NAMES[text.strip().lower()])
    if not os.path.exists(text) and not os.path.splitext(text)[1] and os.sep not in text and "/" not in text:
        raise DataError("class-names file not found (built-in lists: %s)" % ", ".join(BUILTIN_NAMES), text)
    return load_names(text)


def generic_names(num_classes: int) -> List[str]:
    """``["class0", ..., "class{C-1}"]``: the names of a model nobody named."""
    return ["class%d" % i for i in range(int(num_classes))]


def is_generic(names: Optional[Sequence[str]]) -> bool:
    """True when ``names`` is None or exactly :func:`generic_names` of its length."""
    return names is None or list(names) == generic_names(len(names))


def default_names(num_classes: int) -> List[str]:
    """Names for a model that came without any: COCO's for 80 classes (every COCO-pretrained darknet
    model), else :func:`generic_names` (callers warn and point at ``--names``)."""
    if int(num_classes) == len(COCO_NAMES):
        return list(COCO_NAMES)
    return generic_names(num_classes)
