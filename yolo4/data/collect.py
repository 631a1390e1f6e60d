"""What the label-format readers share: the warning collector, split-entry listing, header sizes,
strict number parsing and the float32 box check. Python 3.8, torch-free.

Internal to :mod:`yolo4.data`; the public entry point is :func:`yolo4.data.datasets.load_dataset`.
"""

import array
import csv
import math
import os
import re
import reprlib
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import DataError, ImageReadError, reason
from .images import IMAGE_SUFFIXES, MAX_IMAGE_SIDE, image_size, image_size_problem, is_image_file
from .records import ImageRecord

PathLike = Union[str, "os.PathLike[str]"]

_SIZE_THREADS = 8
#: A plain decimal number as label files write them: no ``_`` separators, no hex, no non-ASCII
#: digits (all of which Python's ``float()`` accepts); ``nan``/``inf`` pass here and are reported as
#: non-finite by the caller.
_NUMBER = r"(?:[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:nan|inf|infinity))"
_DECIMAL = re.compile(_NUMBER, re.IGNORECASE)
_DECIMALS = re.compile(rf"{_NUMBER}(?:\s+{_NUMBER})*", re.IGNORECASE)
_SHOW = reprlib.Repr()
_SHOW.maxstring = 60
_SHOW.maxother = 60
_SHOW.maxlist = _SHOW.maxdict = _SHOW.maxtuple = 4
_SHOW.maxlevel = 2
# Unicode categories a class name must not contain: controls, surrogates, line and paragraph separators.
_BAD_CATEGORIES = ("Cc", "Cs", "Zl", "Zp")


def show(value: Any, limit: int = 60) -> str:
    """``value`` for a one-line message: strings as they are (escaped when they hold control or
    non-printable characters), other values as a bounded ``repr``; at most ``limit`` characters."""
    if isinstance(value, str):
        text = value if value.isprintable() else repr(value)[1:-1]
    else:
        text = _SHOW.repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def name_problem(name: Any) -> Optional[str]:
    """Why ``name`` cannot be a class name (one line of a ``.names`` file), or None when it can:
    it must be a non-empty string without control characters, surrogates or line separators."""
    if not isinstance(name, str):
        return f"class name must be a string, got {show(name)}"
    if not name.strip():
        return "class name is empty"
    if any(unicodedata.category(ch) in _BAD_CATEGORIES for ch in name):
        return f"class name '{show(name)}' has control or non-printable characters"
    return None


def parse_decimal(token: str) -> Optional[float]:
    """A label-file number: ``float(token)`` when ``token`` is a plain decimal number (``12``,
    ``-0.5``, ``1e-3``; also ``nan``/``inf``, for the caller to report), else None (``1_0``, ``0x10``,
    ``١``, ``1,5`` ...)."""
    if not _DECIMAL.fullmatch(token):
        return None
    return float(token)


def parse_decimals(text: str) -> Optional[List[float]]:
    """The whitespace-separated numbers of a label line, as :func:`parse_decimal` reads each; None
    when any is not a plain decimal number (or the line is blank)."""
    text = text.strip()
    if not _DECIMALS.fullmatch(text):
        return None
    return [float(t) for t in text.split()]


def float32_box(x1: float, y1: float, x2: float, y2: float) -> Optional[List[float]]:
    """The box as an :class:`ImageRecord` stores it (float32, ``-0.0`` as ``0.0``), or None when it
    has no width or height there (a box of 1e-9 px collapses in float32)."""
    box = array.array("f", (x1 + 0.0, y1 + 0.0, x2 + 0.0, y2 + 0.0))
    if not (box[2] > box[0] and box[3] > box[1]):
        return None
    return list(box)


def display(path: PathLike, root: Path) -> str:
    """``path`` relative to the dataset root when inside it, else absolute."""
    p = os.path.abspath(os.fspath(path))
    try:
        rel = os.path.relpath(p, str(root))
    except ValueError:  # other drive on Windows
        return p
    return p if rel.startswith("..") else rel.replace(os.sep, "/")


class Collector:
    """Records and warnings of the split being read.

    Attributes:
        root: dataset root (warnings name files relative to it).
        records: :class:`ImageRecord` list, in reading order.
        warnings: ``file:line: problem`` lines (``file: problem`` when the line is unknown).
        seen: image paths already recorded (an image listed twice is read once).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.records: List[ImageRecord] = []
        self.warnings: List[str] = []
        self.seen: set = set()

    def warn(self, path: PathLike, line: Optional[int], message: str) -> None:
        """Add ``file:line: message`` (one line: control characters in the path are escaped)."""
        where = show(display(path, self.root), limit=4096)
        if line is not None:
            where = f"{where}:{line}"
        self.warnings.append(f"{where}: {' '.join(message.split())}")

    def add(self, path: str, w: int, h: int, boxes: List[List[float]], classes: List[int]) -> ImageRecord:
        """Append a record: ``boxes`` x1,y1,x2,y2 px (float32-exact), ``classes`` 0..C-1."""
        rec = ImageRecord(path=path, width=int(w), height=int(h),
                          boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
                          classes=np.asarray(classes, dtype=np.int64).reshape(-1))
        self.records.append(rec)
        return rec


def read_text(path: str, what: str) -> str:
    """The UTF-8 text of a file (BOM dropped, newlines as ``\\n``).

    Raises:
        DataError: unreadable or not UTF-8 (names ``what`` and the file).
    """
    try:
        with open(path, encoding="utf-8-sig") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {what} ({reason(e)})", path) from None


def text_lines(text: str) -> List[str]:
    """Lines as editors number them (``\\n`` only; ``str.splitlines`` would also split on form feeds
    and Unicode separators and shift the line numbers of warnings)."""
    return text.split("\n")


def list_images(entry: str, out: Collector) -> List[str]:
    """Absolute image paths of a split entry: a folder (recursive, sorted), a .txt list, a .csv list.

    Raises:
        DataError: another kind of entry, or an unreadable list file.
    """
    if os.path.isdir(entry):
        found = []
        for dirpath, dirnames, filenames in os.walk(entry):
            dirnames.sort()
            found.extend(os.path.join(dirpath, f) for f in filenames if is_image_file(f))
        return sorted(found)
    suffix = os.path.splitext(entry)[1].lower()
    if suffix == ".csv":
        return _csv_images(entry, out)
    if suffix == ".txt":
        return _txt_images(entry, out)
    raise DataError("split entry must be an image folder, a .txt or .csv list, or a COCO .json", entry)



def split_images(entries: Sequence[str], out: Collector) -> List[str]:
    """Absolute paths of the images of a split's entries (:func:`list_images` of each), in order, each
    image once across the entries and across splits already collected into ``out``."""
    images = []
    for entry in entries:
        for p in list_images(entry, out):
            if p not in out.seen:
                out.seen.add(p)
                images.append(p)
    return images

def _find_image(name: str, list_file: str, root: Path) -> Optional[str]:
    if "\x00" in name:  # no file has one; os.path.expanduser would raise ValueError
        return None
    name = os.path.expanduser(name.strip())
    if os.path.isabs(name):
        return name if os.path.isfile(name) else None
    bases = [os.path.dirname(list_file), str(root), str(root / "images"), str(root / "JPEGImages")]
    for base in bases:
        p = os.path.normpath(os.path.join(base, name))
        if os.path.isfile(p):
            return p
        if not os.path.splitext(name)[1]:  # VOC ImageSets hold ids without extension
            for suffix in IMAGE_SUFFIXES:
                if os.path.isfile(p + suffix):
                    return p + suffix
    return None


def _txt_images(path: str, out: Collector) -> List[str]:
    images = []
    for i, line in enumerate(text_lines(read_text(path, "image list")), 1):
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        if " " in name and not os.path.splitext(name)[1]:  # VOC ImageSets/Main/<cls>_<split>.txt "id  1"
            name = name.split()[0]
        found = _find_image(name, path, out.root)
        if found is None:
            out.warn(path, i, f"image not found: {show(name)}")
        else:
            images.append(found)
    return images


def _csv_images(path: str, out: Collector) -> List[str]:
    text = read_text(path, "image list")
    reader = csv.reader(text_lines(text))
    images, seen = [], set()
    try:
        header = next(reader, None)
        if header is None:
            raise DataError("empty csv", path)
        cols = [h.strip().lower() for h in header]
        if "filename" not in cols:
            raise DataError(f"csv has no 'filename' column (columns: {show(', '.join(header))})", path, 1)
        col = cols.index("filename")
        for row in reader:
            i = reader.line_num
            if not row or not any(c.strip() for c in row):
                continue
            if len(row) <= col or not row[col].strip():
                out.warn(path, i, "row has no filename")
                continue
            name = row[col].strip()
            if name in seen:
                continue  # one row per box: the same image repeats
            seen.add(name)
            found = _find_image(name, path, out.root)
            if found is None:
                out.warn(path, i, f"image not found: {show(name)}")
            else:
                images.append(found)
    except csv.Error as e:  # a NUL byte (Python < 3.11), a field above csv.field_size_limit() ...
        raise DataError(f"malformed csv ({e})", path, reader.line_num or None) from None
    return images


def header_sizes(paths: Sequence[str], out: Collector) -> List[Optional[Tuple[int, int]]]:
    """``(width, height)`` of each image from its header (:func:`~yolo4.data.images.image_size`), in
    parallel; an image that cannot be read (or is beyond the size limit) -> None plus a warning."""

    def one(p: str) -> Tuple[Optional[Tuple[int, int]], Optional[str]]:
        try:
            return image_size(p), None
        except ImageReadError as e:
            return None, e.message

    if len(paths) > 32:
        with ThreadPoolExecutor(max_workers=_SIZE_THREADS) as pool:
            results = list(pool.map(one, paths))
    else:
        results = [one(p) for p in paths]
    sizes = []
    for p, (size, err) in zip(paths, results):
        if size is None:
            out.warn(p, None, f"{err}; image skipped")
        sizes.append(size)
    return sizes


def fmt(v: float) -> str:
    """A coordinate for a message (6 significant digits)."""
    return f"{v:.6g}"


def is_number(v: Any) -> bool:
    """A finite JSON number (not a bool; ints too large for a float are not finite)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def integral(v: Any) -> Optional[int]:
    """``v`` as an int when it is an int or an integral finite float (``640.0``), not a bool; else
    None (``640.5``, ``1e999``, ``"640"``, ``[640]`` ...)."""
    if not is_number(v):
        return None
    if isinstance(v, float):
        return int(v) if v.is_integer() else None
    return int(v)


def annotated_size(width: Any, height: Any) -> Tuple[Optional[Tuple[int, int]], bool]:
    """An image size written in an annotation file (COCO ``width``/``height``, VOC ``<size>``).

    Args:
        width, height: the values as read (numbers; None for absent, null or empty; anything else for
            text that is not a number).

    Returns:
        ``(size, bad)``: ``size`` = ``(width, height)`` ints when usable (integral, within
        :func:`~yolo4.data.images.image_size_problem`'s limit), else None, to read the image header;
        ``bad`` is True when a value was given but is unusable (absent, null, empty or 0 means
        "unknown": no warning).
    """
    w, h = integral(width), integral(height)
    if w is not None and h is not None and image_size_problem(w, h) is None:
        return (w, h), False

    def side(v: Any) -> bool:
        i = integral(v)
        return i is not None and 1 <= i <= MAX_IMAGE_SIDE

    unknown = [v is None or (is_number(v) and v == 0) for v in (width, height)]
    bad = any(not (u or side(v)) for u, v in zip(unknown, (width, height))) or not any(unknown)
    return None, bad
