"""Calibration images: which images (:func:`select_images`) and the batches made of them
(:class:`CalibrationSet`). Python 3.8, torch-free.

Batches are made by :func:`yolo4.runtime.preprocess.preprocess`, the one preprocessing of inference and
evaluation, at the model's own input size and resize mode (:class:`~yolo4.model_info.ModelInfo`
``input_hw`` / ``letter_box``): a calibration set prepared differently from inference is the classic
cause of INT8 accuracy loss (tensorrt_demos' calibrator re-implements the resize; this module does not).

Sources
-------
``source`` is one of, tried in this order:

* a known dataset name (``coco128``, ...), a dataset YAML, a COCO ``.json``, or a dataset folder (one
  holding ``data.yaml``/``dataset.yaml``, a VOC ``annotations/`` folder or a Roboflow
  ``_annotations.coco.json``): read by :func:`yolo4.data.datasets.load_dataset` (``split``, default
  ``train``: calibrate on training images, not on the images the model is evaluated on);
* a ``.txt`` list of image paths, one per line (relative paths are taken from the list's folder, then
  from the working directory; blank lines and ``#`` comments are skipped);
* an image folder (its images, recursively, sorted), a glob pattern (``**`` recursive, sorted) or a
  single image file.

Images of a plain source (list, folder, glob) have class labels when YOLO label files sit where
darknet looks for them (:func:`yolo4.data.datasets.label_path`: ``.../images/x.jpg`` ->
``.../labels/x.txt``); only the class ids are read from them (leniently: a line whose first field is
not a class id is ignored).

Selection rule (seeded, reproducible)
-------------------------------------
``n`` = ``num_images``. When the source has ``n`` images or fewer, all are used (and a line says so).
Otherwise the images are shuffled once with ``random.Random(seed)`` (the order that breaks ties and
fills), and:

1. **Balance** (images with labels only): rounds ``r = 1 .. q`` with ``q = max(1, n // (2 * K))``,
   ``K`` = number of classes present in the source. A class is *short* in round ``r`` while fewer than
   ``r`` chosen images hold it. Each round greedily picks the image holding the most short classes
   (ties: the earlier in the shuffled order), until no image adds a short class or ``n`` are chosen.
   Round 1 is the greedy set cover: every class present is covered when ``n`` allows (at most ``K``
   images, usually far fewer, since one image holds several classes); later rounds give every class up
   to ``q`` images. At most about half of ``n`` goes to balance once ``n >= 2 * K``.
2. **Fill**: the remaining slots take the not yet chosen images in shuffled order (background images
   included), so the rest of the set keeps the source's own distribution of scenes.

The chosen images are returned in source order (the order of the dataset / list / sorted listing).
An unlabelled source gets step 2 only: a seeded uniform sample. Fewer than
:data:`MIN_RECOMMENDED_IMAGES` images (200) give a ``warning: ...`` line; NVIDIA suggests about 500.
"""

import glob
import hashlib
import math
import os
import random
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, FrozenSet, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..data.images import IMAGE_SUFFIXES, imread, is_image_file
from ..errors import DataError, ImageReadError, Yolo4Error, Yolo4Warning
from ..model_info import ModelInfo, check_input_size
from .defaults import DEFAULT_BATCH_SIZE, DEFAULT_NUM_IMAGES, DEFAULT_SEED

__all__ = ["CalibrationSet", "calibration_set", "select_images", "DEFAULT_NUM_IMAGES",
           "MIN_RECOMMENDED_IMAGES", "PREPROCESS_VERSION"]

PathLike = Union[str, "os.PathLike[str]"]
Log = Optional[Callable[[str], Any]]

#: Fewer calibration images than this give a ``warning: ...`` line.
MIN_RECOMMENDED_IMAGES = 200
#: Version of what :func:`yolo4.runtime.preprocess.preprocess` makes of an image, part of
#: :meth:`CalibrationSet.digest`: bump it whenever preprocessing changes its output (resize method,
#: padding value, scaling), so calibration caches made with the old preprocessing are not reused.
PREPROCESS_VERSION = "yolo4-preprocess-1"

_READ_THREADS = 8
_DATASET_FILES = ("data.yaml", "dataset.yaml", "data.yml", "_annotations.coco.json")


def _say(log: Log, message: str) -> None:
    if log is not None:
        log(message)


def _warn(log: Log, message: str) -> None:
    """``log("warning: ...")``, or a :class:`Yolo4Warning` when ``log`` is None (as the export cache)."""
    if log is not None:
        log("warning: " + message)
    else:
        warnings.warn(message, Yolo4Warning, stacklevel=4)


# ----------------------------------------------------------------------------------------------------
# sources -> candidate images (+ class ids where labelled)
# ----------------------------------------------------------------------------------------------------

class _Candidates:
    """Images of a source in source order; ``classes[i]`` is a frozenset of class ids, or None when
    the source has no labels at all. ``what`` names the source in messages."""

    def __init__(self, paths: List[str], classes: Optional[List[FrozenSet[int]]], what: str) -> None:
        self.paths = paths
        self.classes = classes
        self.what = what


def _is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def _is_dataset_folder(folder: str) -> bool:
    if any(os.path.isfile(os.path.join(folder, n)) for n in _DATASET_FILES):
        return True
    if any(os.path.isdir(os.path.join(folder, n)) for n in ("annotations", "Annotations")):
        return True
    return bool(glob.glob(os.path.join(glob.escape(folder), "*", "_annotations.coco.json")))


def _folder_images(folder: str) -> List[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        found.extend(os.path.join(dirpath, f) for f in filenames if is_image_file(f))
    return sorted(found)


def _list_file_images(path: str, log: Log) -> List[str]:
    try:
        with open(path, encoding="utf-8-sig") as f:
            lines = f.read().split("\n")
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else "not UTF-8 text"
        raise DataError(f"cannot read image list ({why})", path) from None
    base = os.path.dirname(os.path.abspath(path))
    images, missing = [], []
    for i, line in enumerate(lines, 1):
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        name = os.path.expanduser(name)
        found = None
        for cand in ([name] if os.path.isabs(name) else [os.path.join(base, name), os.path.abspath(name)]):
            if os.path.isfile(cand):
                found = os.path.normpath(cand)
                break
        if found is None:
            missing.append((i, name))
        else:
            images.append(found)
    for i, name in missing[:5]:
        _warn(log, f"{path}:{i}: image not found: {name}; skipped")
    if len(missing) > 5:
        _warn(log, f"{path}: ... and {len(missing) - 5} more images not found")
    return images


def _label_classes(image: str) -> Optional[FrozenSet[int]]:
    """Class ids in ``image``'s YOLO label file (:func:`~yolo4.data.datasets.label_path`), or None
    when it has no label file. Only the first field of each line is read (a class id written as
    digits); other lines are ignored."""
    from ..data.yolo_txt import label_path

    ids = set()
    try:
        with open(label_path(image), encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if fields and fields[0].isascii() and fields[0].isdigit():
                    ids.add(int(fields[0]))
    except OSError:  # no label file (or unreadable): unlabelled
        return None
    return frozenset(ids)


def _plain(paths: List[str], what: str) -> _Candidates:
    """Candidates of a list / folder / glob: labelled when at least one image has a YOLO label file
    (images without one are then background images)."""
    seen, unique = set(), []
    for p in paths:
        a = os.path.abspath(p)
        if a not in seen:
            seen.add(a)
            unique.append(a)
    found = [_label_classes(p) for p in unique]
    if all(c is None for c in found):
        return _Candidates(unique, None, what)
    return _Candidates(unique, [c if c is not None else frozenset() for c in found], what)


def _dataset(spec: str, split: str, log: Log, what: str) -> _Candidates:
    from ..data.datasets import load_dataset

    ds = load_dataset(spec, split)
    if log is not None:
        ds.report_warnings(log, which=split, limit=3)
    paths = [r.path for r in ds.records]
    classes = [frozenset(int(c) for c in r.classes.tolist()) for r in ds.records]
    return _Candidates(paths, classes, f"{what} ({split})")


def _candidates(source: PathLike, split: str, log: Log) -> _Candidates:
    from ..data.dataset_yaml import KNOWN_DATASETS

    text = os.fspath(source)
    if not text.strip():
        raise DataError("no calibration images: the source is empty")
    if text in KNOWN_DATASETS and not os.path.exists(text):
        return _dataset(text, split, log, text)
    if os.path.isfile(text):
        suffix = os.path.splitext(text)[1].lower()
        if suffix in (".yaml", ".yml", ".json"):
            return _dataset(text, split, log, text)
        if suffix == ".txt":
            return _plain(_list_file_images(text, log), text)
        if suffix in IMAGE_SUFFIXES:
            return _plain([text], text)
        raise DataError("not a calibration source: expected an image folder, a glob, a .txt image list, "
                        "a dataset YAML / COCO json or a known dataset name", text)
    if os.path.isdir(text):
        if _is_dataset_folder(text):
            return _dataset(text, split, log, text)
        return _plain(_folder_images(text), text)
    if _is_glob(text):
        matches = sorted(p for p in glob.glob(os.path.expanduser(text), recursive=True)
                         if os.path.isfile(p) and is_image_file(p))
        return _plain(matches, text)
    raise DataError("calibration source not found: not an image folder, a glob, a .txt image list, a "
                    "dataset YAML / COCO json or a known dataset name", text)


# ----------------------------------------------------------------------------------------------------
# selection
# ----------------------------------------------------------------------------------------------------

def _balanced(classes: Sequence[FrozenSet[int]], n: int, rng: random.Random) -> Tuple[List[int], int]:
    """Indices chosen by the module docstring's rule (greedy balance rounds, then fill); also returns
    how many came from the balance rounds."""
    total = len(classes)
    order = list(range(total))
    rng.shuffle(order)
    tie = np.empty(total, np.int64)  # earlier in the shuffled order -> larger: wins ties
    tie[order] = np.arange(total - 1, -1, -1, dtype=np.int64)
    members: Dict[int, List[int]] = {}
    for i, cs in enumerate(classes):
        for c in cs:
            members.setdefault(c, []).append(i)
    per_class = {c: np.asarray(idx, np.int64) for c, idx in members.items()}
    quota = max(1, n // (2 * len(per_class)))
    count = dict.fromkeys(per_class, 0)
    taken = np.zeros(total, bool)
    chosen: List[int] = []
    for r in range(1, quota + 1):
        # key = (number of the image's classes held by fewer than r chosen images) * total + tie
        score = np.zeros(total, np.int64)
        for c, idx in per_class.items():
            if count[c] < r:
                score[idx] += 1
        key = score * total + tie
        key[taken] = -1
        while len(chosen) < n:
            i = int(np.argmax(key))
            if key[i] < total:  # no image left that adds a class below this round's quota
                break
            taken[i] = True
            key[i] = -1
            chosen.append(i)
            for c in classes[i]:
                count[c] += 1
                if count[c] == r:  # class c reached the quota: no longer counts in any image's key
                    idx = per_class[c]
                    key[idx[~taken[idx]]] -= total
    balanced = len(chosen)
    chosen.extend(i for i in order if not taken[i])
    return chosen[:n], balanced


def _select(cands: _Candidates, num_images: int, seed: int, log: Log) -> List[str]:
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
        raise Yolo4Error(f"the number of calibration images must be a positive integer, got {num_images!r}")
    total = len(cands.paths)
    if total == 0:
        raise DataError("no calibration images found", cands.what)
    classes = cands.classes if cands.classes is not None and any(cands.classes) else None
    if total <= num_images:
        chosen = list(range(total))
        if total < num_images:
            _say(log, f"only {total} images in {cands.what} (asked for {num_images}): using all of them")
        rule = "all"
    elif classes is None:
        chosen = random.Random(seed).sample(range(total), num_images)
        rule = f"seeded random sample, seed {seed}, no labels"
    else:
        chosen, n_bal = _balanced(classes, num_images, random.Random(seed))
        rule = f"class-balanced, seed {seed}: {n_bal} for balance, {num_images - n_bal} random"
    covered = ""
    if classes is not None:
        present = frozenset().union(*classes)
        got = frozenset().union(*(classes[i] for i in chosen))
        covered = f"; covers {len(got)} of the {len(present)} classes present"
    chosen.sort()
    _say(log, f"calibration images: {len(chosen)} of {total} from {cands.what} ({rule}{covered})")
    if len(chosen) < MIN_RECOMMENDED_IMAGES:
        _warn(log, f"calibrating on only {len(chosen)} images (fewer than {MIN_RECOMMENDED_IMAGES}): INT8 "
                   f"accuracy may suffer; about {DEFAULT_NUM_IMAGES} representative images are recommended")
    return [cands.paths[i] for i in chosen]


def select_images(source: PathLike, num_images: int = DEFAULT_NUM_IMAGES, seed: int = DEFAULT_SEED,
                  split: str = "train", log: Log = print) -> List[str]:
    """Choose the calibration images of ``source`` (the module docstring gives sources and the rule).

    Args:
        source: a known dataset name, dataset YAML, COCO json, dataset folder, ``.txt`` image list,
            image folder, glob pattern or image file.
        num_images: how many images to choose (all when the source has fewer, with a line saying so).
        seed: seed of the selection; the same source, ``num_images`` and ``seed`` give the same list.
        split: the dataset split to read (datasets only).
        log: receives one-line messages (a summary; ``warning: ...`` lines for fewer than 200 images,
            missing list entries and dataset label problems); None = silent, warnings as
            :class:`~yolo4.errors.Yolo4Warning`.

    Returns:
        absolute image paths, in source order, each once.

    Raises:
        DataError: the source does not exist or is unreadable, or holds no image (one line naming it);
            dataset errors as :func:`yolo4.data.datasets.load_dataset`.
        Yolo4Error: ``num_images`` is not a positive integer.
    """
    return _select(_candidates(source, split, log), num_images, seed, log)


# ----------------------------------------------------------------------------------------------------
# the calibration set
# ----------------------------------------------------------------------------------------------------

class CalibrationSet:
    """Calibration images and how they become network inputs.

    Attributes:
        paths: image files (absolute), in batch order.
        input_hw: network input ``(height, width)`` in pixels.
        letter_box: True = letterbox, False = plain resize (the model's resize mode).
        batch_size: images per batch.
        source: what the images were chosen from (for :meth:`describe`), or None.

    ``len(cs)`` is the number of batches; iterating yields the padded batches (:meth:`iter_batches`).
    """

    def __init__(self, paths: Sequence[PathLike], input_hw: Tuple[int, int], letter_box: bool,
                 batch_size: int = DEFAULT_BATCH_SIZE, source: Optional[str] = None) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise Yolo4Error(f"calibration batch size must be a positive integer, got {batch_size!r}")
        if isinstance(letter_box, (bool, np.bool_)):
            letter_box = bool(letter_box)
        else:
            raise Yolo4Error(f"letter_box must be True or False, got {letter_box!r}")
        self.paths: List[str] = [os.path.abspath(os.fspath(p)) for p in paths]
        if not self.paths:
            raise DataError("no calibration images")
        self.input_hw: Tuple[int, int] = check_input_size(input_hw, stride=1, what="calibration input_hw")
        self.letter_box: bool = letter_box
        self.batch_size: int = batch_size
        self.source = source

    @classmethod
    def from_paths(cls, paths: Sequence[PathLike], info_or_input_hw: Union[ModelInfo, Tuple[int, int]],
                   letter_box: Optional[bool] = None, batch_size: int = DEFAULT_BATCH_SIZE,
                   source: Optional[str] = None) -> "CalibrationSet":
        """A set over an explicit list of images (e.g. the first 64 images of coco128), in that order.

        Args:
            paths: image files.
            info_or_input_hw: the model's :class:`ModelInfo` (its ``input_hw`` and ``letter_box`` are
                used), or an input ``(height, width)``, then ``letter_box`` is required.
            letter_box: the resize mode when ``info_or_input_hw`` is a size; with a ModelInfo it may be
                given only if it agrees (calibrating with another resize mode than the model's is the
                mistake this module exists to prevent).
            batch_size: images per batch.
            source: what the paths are, for :meth:`describe`.

        Raises:
            DataError: no paths. ImageReadError: a path that is not a file (named).
            Yolo4Error: a bad size, batch size or a resize mode that contradicts the ModelInfo.
        """
        if isinstance(info_or_input_hw, ModelInfo):
            if letter_box is not None and bool(letter_box) != bool(info_or_input_hw.letter_box):
                raise Yolo4Error(f"letter_box={letter_box} contradicts the model's resize mode "
                                 f"(letter_box={info_or_input_hw.letter_box}): calibration must preprocess "
                                 "as inference does")
            hw, lb = info_or_input_hw.input_hw, bool(info_or_input_hw.letter_box)
        else:
            if letter_box is None:
                raise Yolo4Error("letter_box is required with an explicit input size (True = letterbox, "
                                 "False = plain resize, as the model's cfg says)")
            hw, lb = info_or_input_hw, letter_box
        for p in paths:
            if not os.path.isfile(os.fspath(p)):
                raise ImageReadError("image file not found", p)
        return cls(paths, hw, lb, batch_size, source)

    # -- shape and size -----------------------------------------------------------------------------

    @property
    def num_images(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> Tuple[int, int, int, int]:
        """``(batch_size, 3, H, W)``: every padded batch's shape (the calibration profile's shape)."""
        return (self.batch_size, 3, self.input_hw[0], self.input_hw[1])

    @property
    def batch_nbytes(self) -> int:
        """Bytes of one padded float32 batch."""
        b, c, h, w = self.shape
        return b * c * h * w * 4

    def __len__(self) -> int:
        return math.ceil(len(self.paths) / self.batch_size)

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.iter_batches(pad=True)

    # -- batches ------------------------------------------------------------------------------------

    def batch_paths(self, index: int) -> List[str]:
        """Image paths of batch ``index`` (0-based), unpadded."""
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range 0..{len(self) - 1}")
        return self.paths[index * self.batch_size:(index + 1) * self.batch_size]

    def batch(self, index: int, pad: bool = True) -> np.ndarray:
        """Batch ``index`` as :meth:`iter_batches` yields it."""
        from ..runtime.preprocess import preprocess

        paths = self.batch_paths(index)
        images = _read_all(paths)
        batch, _ = preprocess(images, self.input_hw, self.letter_box)
        if pad and len(paths) < self.batch_size:
            # repeat the batch's own images: TensorRT calibrators take exactly batch_size images
            batch = np.ascontiguousarray(batch[np.arange(self.batch_size) % len(paths)])
        return batch

    def iter_batches(self, pad: bool = True) -> Iterator[np.ndarray]:
        """Yield the batches in order.

        Args:
            pad: True (TensorRT calibrators, which need exactly ``batch_size`` images): the last, short
                batch is filled up by repeating its own images in order. False (ONNX Runtime's
                calibration data reader): the last batch is yielded short.

        Yields:
            ``[B, 3, H, W] float32`` C-contiguous, RGB, 0..1: :func:`yolo4.runtime.preprocess.preprocess`
            of the images at the set's ``input_hw`` and ``letter_box``; ``B = batch_size`` except for a
            short last batch when ``pad`` is False.

        Raises:
            ImageReadError: an image that is missing or cannot be decoded (names the file), when its
                batch is reached.
        """
        for k in range(len(self)):
            yield self.batch(k, pad)

    # -- identity -----------------------------------------------------------------------------------

    def digest(self) -> str:
        """sha256 hex over what decides the calibration data: :data:`PREPROCESS_VERSION`, ``input_hw``,
        ``letter_box`` and the ordered images' file bytes (not their names). A changed image, image
        order, input size, resize mode or preprocessing gives another digest, so a calibration cache
        keyed on it is not reused. (The batch size is in the cache's input shape instead.)

        Raises:
            ImageReadError: an image file that cannot be read (named).
        """
        h = hashlib.sha256()
        h.update(("%s|%dx%d|letter_box=%d|%d\n" % (PREPROCESS_VERSION, self.input_hw[0], self.input_hw[1],
                                                  int(self.letter_box), len(self.paths))).encode())
        for p in self.paths:
            f = hashlib.sha256()
            try:
                with open(p, "rb") as fh:
                    chunk = fh.read(1 << 20)
                    while chunk:
                        f.update(chunk)
                        chunk = fh.read(1 << 20)
            except OSError as e:
                raise ImageReadError(f"cannot read image file ({e.strerror or e})", p) from None
            h.update(f.digest())
        return h.hexdigest()

    def describe(self) -> str:
        """One line for logs, e.g. ``500 images from coco128 (train), 416x416 plain resize, batches of 8``."""
        src = f" from {self.source}" if self.source else ""
        mode = "letterbox" if self.letter_box else "plain resize"
        return (f"{len(self.paths)} images{src}, {self.input_hw[1]}x{self.input_hw[0]} {mode}, "
                f"batches of {self.batch_size}")

    def __repr__(self) -> str:
        return f"CalibrationSet({self.describe()})"


def _read_all(paths: Sequence[str]) -> List[np.ndarray]:
    """Decode ``paths`` (in parallel: OpenCV releases the GIL); the first unreadable one, in order,
    raises its ImageReadError."""
    if len(paths) <= 1:
        return [imread(p) for p in paths]
    with ThreadPoolExecutor(max_workers=min(_READ_THREADS, len(paths))) as pool:
        return list(pool.map(imread, paths))


def calibration_set(source: PathLike, info: ModelInfo, num_images: int = DEFAULT_NUM_IMAGES,
                    batch_size: int = DEFAULT_BATCH_SIZE, seed: int = DEFAULT_SEED, split: str = "train",
                    log: Log = print) -> CalibrationSet:
    """Choose calibration images from ``source`` (:func:`select_images`) and batch them for ``info``'s
    model (its ``input_hw`` and ``letter_box``).

    Args:
        source, num_images, seed, split, log: as :func:`select_images`.
        info: the model's :class:`ModelInfo`.
        batch_size: images per batch (the TensorRT calibration profile's batch).

    Returns:
        :class:`CalibrationSet`; nothing is decoded until its batches are iterated.

    Raises:
        As :func:`select_images`; Yolo4Error for a bad batch size.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise Yolo4Error(f"calibration batch size must be a positive integer, got {batch_size!r}")
    cands = _candidates(source, split, log)
    paths = _select(cands, num_images, seed, log)
    return CalibrationSet(paths, info.input_hw, bool(info.letter_box), batch_size, cands.what)
