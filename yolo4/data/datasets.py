"""Dataset readers: YOLO txt, COCO json and Pascal VOC xml -> one :class:`DatasetSplit`.

Python 3.8, torch-free.

A dataset is described by a YAML file in the Ultralytics convention::

    path: ${DATA_ROOT}/my_set     # root; ${VARS}/$VARS and ~ expanded; relative -> to the yaml's folder
    train: images/train           # split entries, relative to `path`: an image folder, a .txt list
    val: images/val               #   of image paths, a .csv with a `filename` column, or a COCO .json
    test: images/test             # optional; any split may also be a list of such entries
    names: [cat, dog]             # list, or {0: cat, 1: dog} (ids 0..K-1)
    format: yolo                  # optional: yolo | coco | voc (detected otherwise)

:func:`load_dataset` also accepts a known dataset name (:data:`KNOWN_DATASETS`, bundled YAMLs read
from ``$YOLO4_ASSET_MIRROR``), a COCO ``.json`` file, or a folder (a VOC folder, a folder with a
``data.yaml``, or a Roboflow COCO export).

Formats and conventions
-----------------------
* **YOLO txt** (darknet / Ultralytics): the label of ``.../images/<sub>/x.jpg`` is
  ``.../labels/<sub>/x.txt`` (the *last* ``images`` path component replaced by ``labels``, else the
  last ``JPEGImages``, else the image's own folder, as darknet's ``replace_image_to_label``). One box
  per line, ``class cx cy w h`` normalized to 0..1 (Ultralytics polygon lines ``class x1 y1 x2 y2 ...``
  are accepted and turned into their bounding box). An image without a label file is a background
  image; a label file without an image is ignored.
* **COCO json**: categories sorted by id are mapped to contiguous class ids 0..K-1 and give the
  names; ``bbox`` ``[x, y, w, h]`` pixels becomes x1,y1,x2,y2; COCO image ids are kept. Crowd
  annotations (``iscrowd=1``) are skipped (one summary warning per file): records have no "ignore"
  flag, so COCO-style evaluation on such a split counts detections of crowd regions as false
  positives instead of ignoring them.
* **Pascal VOC xml**: ``annotations/<stem>.xml`` (also ``Annotations/``, or next to the image as
  labelImg writes it); ``<object><name>`` and ``<bndbox>`` ``xmin..ymax``. VOC coordinates are 1-based
  pixel indices: like darknet's ``scripts/voc_label.py``, 1 is subtracted from all four. Objects
  marked ``<difficult>1</difficult>`` are **kept** (darknet's ``voc_label.py`` drops them; VOC's own
  evaluation ignores them). Class names come from the YAML, else from all xml files of the
  annotation folder, sorted. An image without an xml file is a background image.

Bad labels are skipped and reported, one line each, in ``DatasetSplit.warnings`` as
``file:line: problem`` (paths relative to the dataset root): malformed lines, class ids out of range,
normalized values outside ``[0, 1]`` (beyond :data:`COORD_TOLERANCE`, which absorbs the rounding of
6-decimal label files), zero/negative sizes, boxes with no area inside the image. Boxes that merely
reach past the image border are clipped to it, as darknet and Ultralytics do. Images that cannot be
read are skipped with a warning; an unreadable label/annotation/list file, YAML or json raises
:class:`~yolo4.errors.DataError` naming the file (and line where known).

Image sizes come from the format when it has them (VOC ``<size>``, COCO ``width``/``height``), else
from the image header (:func:`~yolo4.data.images.image_size`).
"""

import csv
import json
import math
import os
import re
import xml.parsers.expat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import DataError, ImageReadError
from .images import IMAGE_SUFFIXES, image_size, is_image_file
from .records import DatasetSplit, ImageRecord

PathLike = Union[str, "os.PathLike[str]"]

#: Dataset names with a bundled YAML (``yolo4/data/datasets/<name>.yaml``), read from the mirror.
KNOWN_DATASETS = ("coco128", "raccoon", "chess")
#: Label formats understood by :func:`load_dataset`.
FORMATS = ("yolo", "coco", "voc")
#: Slack allowed on normalized YOLO values outside [0, 1] (6-decimal rounding of cx +- w/2).
COORD_TOLERANCE = 1e-6

_SPLIT_ALIASES = {"val": ("valid", "validation"), "valid": ("val",), "validation": ("val",),
                  "test": ("testing",)}
_BUNDLED = Path(__file__).resolve().parent / "datasets"
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
_SIZE_THREADS = 8


@dataclass
class DatasetConfig:
    """A parsed dataset YAML (or the equivalent built for a folder / json).

    Attributes:
        root: dataset root folder (``path`` of the YAML, expanded and absolute).
        splits: split name -> list of entries (absolute paths of folders / lists / jsons).
        names: class names (index = class id), or None when the labels must supply them.
        format: ``"yolo"``, ``"coco"``, ``"voc"``, or None to detect it.
        source: the YAML file (or the folder / json given), for error messages.
        lines: YAML line of each top-level key, for error messages.
    """

    root: Path
    splits: Dict[str, List[str]]
    names: Optional[List[str]] = None
    format: Optional[str] = None
    source: Optional[str] = None
    lines: Dict[str, int] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# public entry point

def load_dataset(spec: PathLike, split: str = "val") -> DatasetSplit:
    """Read one split of a dataset.

    Args:
        spec: a dataset YAML (``.yaml``/``.yml``), a known name from :data:`KNOWN_DATASETS`, a COCO
            ``.json`` (the json is the split; ``split`` is ignored), or a folder: one holding
            ``data.yaml``/``dataset.yaml``, a VOC folder (``annotations/`` or ``Annotations/`` with xml
            files; split from ``ImageSets/Main/<split>.txt`` when present, else every image), or a
            Roboflow COCO export (``_annotations.coco.json`` in the folder or in ``<folder>/<split>/``).
        split: split name in the YAML (``"train"``, ``"val"``, ``"test"``; ``"valid"`` and ``"val"``
            stand for each other).

    Returns:
        :class:`DatasetSplit`: ``names`` (class id -> name), ``records`` (one :class:`ImageRecord` per
        image: absolute path, size in px, ``boxes [M,4] float32`` x1,y1,x2,y2 in pixels,
        ``classes [M] int64``, ``image_id``), ``warnings`` (``file:line: problem`` per skipped
        label/image). ``image_id`` is the COCO id for COCO, else 1, 2, ... in record order.

    Raises:
        DataError: unknown spec, a known dataset while ``$YOLO4_ASSET_MIRROR`` is unset, bad YAML, a
            missing split or path, missing/inconsistent names, an unreadable label/annotation/list
            file or json (message names the file and, where known, the line).
    """
    cfg = dataset_config(spec, split)
    return _load_split(cfg, split)


def dataset_config(spec: PathLike, split: str = "val") -> DatasetConfig:
    """The :class:`DatasetConfig` :func:`load_dataset` reads ``spec`` with (see there for ``spec``).

    Raises:
        DataError: as :func:`load_dataset`.
    """
    text = os.fspath(spec)
    if text in KNOWN_DATASETS and not os.path.exists(text):
        return _known_config(text)
    path = Path(text)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in (".yaml", ".yml"):
            return read_dataset_yaml(path)
        if suffix == ".json":
            p = path.resolve()
            return DatasetConfig(p.parent, {split: [str(p)]}, None, "coco", str(p))
        raise DataError("not a dataset spec: expected a .yaml, a COCO .json or a folder", text)
    if path.is_dir():
        return _folder_config(path.resolve(), split)
    known = ", ".join(KNOWN_DATASETS)
    raise DataError(f"dataset not found: not a file, a folder or a known dataset name (known: {known})",
                    text)


def read_dataset_yaml(path: PathLike) -> DatasetConfig:
    """Parse a dataset YAML (format in the module docstring).

    Raises:
        DataError: unreadable or invalid YAML, unset environment variable in a path, bad ``names`` or
            ``format``, no split entry (message names the YAML and the line).
    """
    import yaml

    spath = os.path.abspath(os.fspath(path))
    try:
        with open(spath, encoding="utf-8-sig") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read dataset YAML ({_reason(e)})", spath) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise DataError(f"invalid YAML: {getattr(e, 'problem', None) or e}", spath,
                        mark.line + 1 if mark is not None else None) from None
    if not isinstance(data, dict):
        raise DataError("dataset YAML must be a mapping with path/train/val/names keys", spath)
    lines: Dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, _ in node.value:
            lines[str(key_node.value)] = key_node.start_mark.line + 1
    known = None
    base = os.path.basename(spath)
    if os.path.dirname(spath) == str(_BUNDLED) and base[:-5] in KNOWN_DATASETS:
        known = base[:-5]

    def expand(key: str, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"{key!r} must be a path (a non-empty string)", spath, lines.get(key))

        def env(m: "re.Match[str]") -> str:
            var = m.group(1) or m.group(2)
            val = os.environ.get(var)
            if val is None or (var == "YOLO4_ASSET_MIRROR" and not val.strip()):
                if known is not None and var == "YOLO4_ASSET_MIRROR":
                    raise DataError(_mirror_unset_message(known))
                raise DataError(f"{key!r} uses ${{{var}}}, which is not set", spath, lines.get(key))
            return val

        return os.path.expanduser(_ENV_RE.sub(env, value.strip()))

    yaml_dir = os.path.dirname(spath)
    root = expand("path", data["path"]) if data.get("path") is not None else yaml_dir
    root_path = Path(os.path.normpath(os.path.join(yaml_dir, root)))

    fmt = data.get("format")
    if fmt is not None:
        fmt = str(fmt).strip().lower()
        if fmt not in FORMATS:
            raise DataError(f"format {data.get('format')!r} is not one of {', '.join(FORMATS)}", spath,
                            lines.get("format"))

    splits: Dict[str, List[str]] = {}
    for key in ("train", "val", "valid", "validation", "test"):
        value = data.get(key)
        if value is None:
            continue
        entries = value if isinstance(value, list) else [value]
        if not entries:
            continue
        splits[key] = [os.path.normpath(os.path.join(str(root_path), expand(key, v))) for v in entries]
    if not splits:
        raise DataError("dataset YAML has no train/val/test entry", spath)

    names = _parse_names(data.get("names"), spath, lines.get("names"))
    nc = data.get("nc")
    if names is not None and nc is not None and nc != len(names):
        raise DataError(f"nc is {nc} but names has {len(names)} entries", spath, lines.get("nc"))
    return DatasetConfig(root_path, splits, names, fmt, spath, lines)


# ----------------------------------------------------------------------------------------------
# configuration helpers

def _reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    if isinstance(e, UnicodeDecodeError):
        return "not UTF-8 text"
    return str(e) or type(e).__name__


def _parse_names(value: Any, source: str, line: Optional[int]) -> Optional[List[str]]:
    if value is None:
        return None
    if isinstance(value, dict):
        try:
            items = sorted((int(k), str(v).strip()) for k, v in value.items())
        except (TypeError, ValueError):
            raise DataError("names dict keys must be integer class ids", source, line) from None
        ids = [k for k, _ in items]
        if ids != list(range(len(ids))):
            raise DataError(f"names dict ids must be 0..{len(ids) - 1} without gaps, got {ids[:10]}",
                            source, line)
        names = [v for _, v in items]
    elif isinstance(value, (list, tuple)):
        names = [str(v).strip() for v in value]
    else:
        raise DataError("names must be a list or a {id: name} mapping", source, line)
    if not names or any(not n for n in names):
        raise DataError("names must be non-empty strings", source, line)
    return names


def _mirror_unset_message(name: str) -> str:
    return (f"dataset {name!r} is read from $YOLO4_ASSET_MIRROR/{name}: set YOLO4_ASSET_MIRROR to the "
            "asset mirror folder (the layout of shared/data)")


def _known_config(name: str) -> DatasetConfig:
    path = _BUNDLED / f"{name}.yaml"
    if not os.environ.get("YOLO4_ASSET_MIRROR", "").strip():
        raise DataError(_mirror_unset_message(name))
    return read_dataset_yaml(path)


def _annotation_dir(folder: Path) -> Optional[Path]:
    for name in ("annotations", "Annotations"):
        d = folder / name
        if d.is_dir():
            return d
    return None


def _folder_config(folder: Path, split: str) -> DatasetConfig:
    for name in ("data.yaml", "dataset.yaml", "data.yml"):
        if (folder / name).is_file():
            return read_dataset_yaml(folder / name)
    for candidate in (folder / "_annotations.coco.json",
                      *(folder / s / "_annotations.coco.json" for s in _split_names(split))):
        if candidate.is_file():
            return DatasetConfig(folder, {split: [str(candidate)]}, None, "coco", str(folder))
    exported = sorted(p.parent.name for p in folder.glob("*/_annotations.coco.json"))
    if exported:
        raise DataError(f"no {split!r} split in this COCO export (has: {', '.join(exported)})", folder)
    ann = _annotation_dir(folder)
    if ann is not None:
        entry = None
        lists = folder / "ImageSets" / "Main"
        for s in _split_names(split):
            if (lists / f"{s}.txt").is_file():
                entry = str(lists / f"{s}.txt")
                break
        if entry is None and lists.is_dir():
            have = sorted(p.stem for p in lists.glob("*.txt") if "_" not in p.stem)
            raise DataError(f"no {split}.txt in ImageSets/Main (has: {', '.join(have)})", folder)
        if entry is None:  # no split lists at all: every image
            images = next((folder / n for n in ("JPEGImages", "images") if (folder / n).is_dir()), None)
            if images is None:
                raise DataError("VOC folder has no JPEGImages/ or images/ folder", folder)
            entry = str(images)
        return DatasetConfig(folder, {split: [entry]}, None, "voc", str(folder))
    raise DataError("cannot tell the dataset format of this folder: expected a data.yaml, a VOC "
                    "annotations/ folder or a COCO _annotations.coco.json", folder)


def _split_names(split: str) -> Tuple[str, ...]:
    return (split,) + _SPLIT_ALIASES.get(split, ())


def _display(path: PathLike, root: Path) -> str:
    """``path`` relative to the dataset root when inside it, else absolute."""
    p = os.path.abspath(os.fspath(path))
    try:
        rel = os.path.relpath(p, str(root))
    except ValueError:  # other drive on Windows
        return p
    return p if rel.startswith("..") else rel.replace(os.sep, "/")


def _detect_format(cfg: DatasetConfig, entries: Sequence[str]) -> str:
    if any(e.lower().endswith(".json") for e in entries):
        return "coco"
    if (cfg.root / "labels").is_dir():
        return "yolo"
    if _annotation_dir(cfg.root) is not None:
        return "voc"
    return "yolo"


# ----------------------------------------------------------------------------------------------
# split loading

class _Collector:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.records: List[ImageRecord] = []
        self.warnings: List[str] = []
        self.seen: set = set()

    def warn(self, path: PathLike, line: Optional[int], message: str) -> None:
        where = _display(path, self.root)
        if line is not None:
            where = f"{where}:{line}"
        self.warnings.append(f"{where}: {message}")


def _load_split(cfg: DatasetConfig, split: str) -> DatasetSplit:
    entries = None
    for s in _split_names(split):
        if s in cfg.splits:
            entries = cfg.splits[s]
            split = s
            break
    if entries is None:
        raise DataError(f"no {split!r} split (has: {', '.join(cfg.splits)})", cfg.source)
    for e in entries:
        if not os.path.exists(e):
            raise DataError(f"{split} entry not found: {e}", cfg.source, cfg.lines.get(split))
    fmt = cfg.format or _detect_format(cfg, entries)
    out = _Collector(cfg.root)
    if fmt == "coco":
        names = _load_coco_entries(cfg, entries, out)
    elif fmt == "voc":
        names = _load_voc_entries(cfg, entries, out)
    else:
        if cfg.names is None:
            raise DataError("YOLO txt labels need class names: add a 'names' list to the dataset YAML",
                            cfg.source)
        names = cfg.names
        _load_yolo_entries(cfg, entries, out, len(names))
    if fmt != "coco":
        for i, rec in enumerate(out.records):
            rec.image_id = i + 1
    return DatasetSplit(list(names), out.records, out.warnings)


def _list_images(entry: str, out: _Collector) -> List[str]:
    """Absolute image paths of a split entry: a folder (recursive), a .txt list, a .csv list."""
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


def _read_text(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8-sig") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {what} ({_reason(e)})", path) from None


def _find_image(name: str, list_file: str, root: Path) -> Optional[str]:
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


def _txt_images(path: str, out: _Collector) -> List[str]:
    images = []
    for i, line in enumerate(_read_text(path, "image list").splitlines(), 1):
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        if " " in name and not os.path.splitext(name)[1]:  # VOC ImageSets/Main/<cls>_<split>.txt "id  1"
            name = name.split()[0]
        found = _find_image(name, path, out.root)
        if found is None:
            out.warn(path, i, f"image not found: {name}")
        else:
            images.append(found)
    return images


def _csv_images(path: str, out: _Collector) -> List[str]:
    text = _read_text(path, "image list")
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if header is None:
        raise DataError("empty csv", path)
    cols = [h.strip().lower() for h in header]
    if "filename" not in cols:
        raise DataError(f"csv has no 'filename' column (columns: {', '.join(header)})", path, 1)
    col = cols.index("filename")
    images, seen = [], set()
    for i, row in enumerate(reader, 2):
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
            out.warn(path, i, f"image not found: {name}")
        else:
            images.append(found)
    return images


def _sizes(paths: Sequence[str], out: _Collector) -> List[Optional[Tuple[int, int]]]:
    """Header sizes of images, in parallel; unreadable images -> None plus a warning."""

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


def _new_record(out: _Collector, path: str, w: int, h: int, boxes: List[List[float]],
                classes: List[int]) -> None:
    out.records.append(ImageRecord(
        path=path, width=int(w), height=int(h),
        boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        classes=np.asarray(classes, dtype=np.int64).reshape(-1)))


# ----------------------------------------------------------------------------------------------
# YOLO txt

def label_path(image_path: PathLike) -> str:
    """YOLO label file of an image: last ``images`` component -> ``labels`` (else last ``JPEGImages``,
    else the image's folder), suffix -> ``.txt``. Same rule as Ultralytics' ``img2label_paths`` and
    darknet's ``replace_image_to_label``."""
    p = os.path.abspath(os.fspath(image_path))
    parts = p.split(os.sep)
    for marker in ("images", "JPEGImages"):
        idx = [i for i, part in enumerate(parts[:-1]) if part == marker]
        if idx:
            parts[idx[-1]] = "labels"
            break
    return os.path.splitext(os.sep.join(parts))[0] + ".txt"


def _load_yolo_entries(cfg: DatasetConfig, entries: Sequence[str], out: _Collector, nc: int) -> None:
    images = []
    for entry in entries:
        for p in _list_images(entry, out):
            if p not in out.seen:
                out.seen.add(p)
                images.append(p)
    sizes = _sizes(images, out)
    for path, size in zip(images, sizes):
        if size is None:
            continue
        w, h = size
        boxes, classes = _read_yolo_label(label_path(path), nc, w, h, out)
        _new_record(out, path, w, h, boxes, classes)


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def _read_yolo_label(path: str, nc: int, w: int, h: int,
                     out: _Collector) -> Tuple[List[List[float]], List[int]]:
    """Boxes (px, x1y1x2y2) and classes of one YOLO label file; missing file -> background."""
    if not os.path.isfile(path):
        return [], []
    boxes: List[List[float]] = []
    classes: List[int] = []
    tol = COORD_TOLERANCE
    for i, line in enumerate(_read_text(path, "label file").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            values = [float(x) for x in parts]
        except ValueError:
            out.warn(path, i, f"malformed line (expected 'class cx cy w h' numbers): {line.strip()[:60]}")
            continue
        n = len(values) - 1
        if n != 4 and (n < 6 or n % 2):
            out.warn(path, i, f"malformed line: {len(values)} values, expected 5 ('class cx cy w h')")
            continue
        cls_v = values[0]
        if not math.isfinite(cls_v) or cls_v != int(cls_v) or cls_v < 0:
            out.warn(path, i, f"class id {parts[0]} is not a non-negative integer")
            continue
        cls = int(cls_v)
        if cls >= nc:
            out.warn(path, i, f"class id {cls} out of range 0..{nc - 1}")
            continue
        coords = values[1:]
        if not all(math.isfinite(v) for v in coords):
            out.warn(path, i, "non-finite coordinate")
            continue
        if any(v < -tol or v > 1 + tol for v in coords):
            out.warn(path, i, "coordinates outside [0,1]: " + " ".join(_fmt(v) for v in coords))
            continue
        if n == 4:
            cx, cy, bw, bh = coords
            if bw <= 0 or bh <= 0:
                out.warn(path, i, f"zero or negative box size (w={_fmt(bw)} h={_fmt(bh)})")
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
        boxes.append([x1, y1, x2, y2])
        classes.append(cls)
    return boxes, classes


# ----------------------------------------------------------------------------------------------
# COCO json

def _coco_image_dirs(json_path: str, root: Path) -> List[str]:
    jdir = os.path.dirname(json_path)
    stem = os.path.splitext(os.path.basename(json_path))[0]
    short = stem[len("instances_"):] if stem.startswith("instances_") else stem
    parent = os.path.dirname(jdir)
    dirs = [jdir, os.path.join(str(root), "images", short), os.path.join(str(root), short),
            os.path.join(parent, "images", short), os.path.join(parent, short),
            os.path.join(str(root), "images"), str(root)]
    unique: List[str] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


def _load_coco_entries(cfg: DatasetConfig, entries: Sequence[str], out: _Collector) -> List[str]:
    names: Optional[List[str]] = None
    id_sets: List[Iterable[int]] = []
    for entry in entries:
        if not entry.lower().endswith(".json"):
            raise DataError("COCO split entries must be .json files", entry)
        start = len(out.records)
        entry_names = _load_coco_json(entry, out)
        if names is not None and entry_names != names:
            raise DataError("categories differ from the split's first json", entry)
        names = entry_names
        id_sets.append([r.image_id for r in out.records[start:]])
    if len(entries) > 1:
        all_ids = [i for ids in id_sets for i in ids]
        if len(set(all_ids)) != len(all_ids):
            for k, rec in enumerate(out.records):
                rec.image_id = k + 1
            out.warn(entries[-1], None, "image ids repeat across the split's json files; "
                     f"renumbered 1..{len(out.records)}")
    assert names is not None
    if cfg.names is not None:
        if len(cfg.names) != len(names):
            raise DataError(f"names has {len(cfg.names)} entries but the COCO json has {len(names)} "
                            "categories", cfg.source, cfg.lines.get("names"))
        names = list(cfg.names)
    return names


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _load_coco_json(path: str, out: _Collector) -> List[str]:
    text = _read_text(path, "COCO json")
    try:
        data = json.loads(text)
    except ValueError as e:
        raise DataError(f"invalid JSON: {getattr(e, 'msg', e)}", path, getattr(e, "lineno", None)) from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("categories"), list):
        raise DataError("not a COCO detection json: needs 'images' and 'categories' lists", path)
    anns = data.get("annotations") or []
    if not isinstance(anns, list):
        raise DataError("'annotations' must be a list", path)
    try:
        cats = sorted(data["categories"], key=lambda c: int(c["id"]))
        cat_index = {int(c["id"]): i for i, c in enumerate(cats)}
        names = [str(c["name"]).strip() for c in cats]
    except (KeyError, TypeError, ValueError):
        raise DataError("every category needs an integer 'id' and a 'name'", path) from None
    if not names:
        raise DataError("COCO json has no categories", path)

    dirs = _coco_image_dirs(path, out.root)
    images: Dict[int, Tuple[str, int, int]] = {}
    listed: set = set()
    order: List[int] = []
    missing_size: List[int] = []
    for k, im in enumerate(data["images"]):
        try:
            image_id = int(im["id"])
            file_name = str(im["file_name"])
        except (KeyError, TypeError, ValueError):
            out.warn(path, None, f"images[{k}]: needs an integer 'id' and a 'file_name'; skipped")
            continue
        if image_id in listed:
            out.warn(path, None, f"images[{k}]: duplicate image id {image_id}; skipped")
            continue
        listed.add(image_id)
        found = None
        for d in dirs:
            p = os.path.normpath(os.path.join(d, file_name))
            if os.path.isfile(p):
                found = p
                if d != dirs[0]:  # later images most likely live in the same folder
                    dirs.remove(d)
                    dirs.insert(0, d)
                break
        if found is None:
            out.warn(path, None, f"image id {image_id}: file not found: {file_name}; skipped")
            continue
        w, h = im.get("width"), im.get("height")
        if not (_is_number(w) and _is_number(h) and w > 0 and h > 0):
            w, h = 0, 0
            missing_size.append(image_id)
        images[image_id] = (found, int(w), int(h))
        order.append(image_id)
    if missing_size:
        sizes = _sizes([images[i][0] for i in missing_size], out)
        for image_id, size in zip(missing_size, sizes):
            if size is None:
                del images[image_id]
                order.remove(image_id)
            else:
                images[image_id] = (images[image_id][0], size[0], size[1])

    boxes: Dict[int, List[List[float]]] = {i: [] for i in images}
    classes: Dict[int, List[int]] = {i: [] for i in images}
    crowd = 0
    for k, a in enumerate(anns):
        if not isinstance(a, dict):
            out.warn(path, None, f"annotations[{k}]: not an object; skipped")
            continue
        label = f"annotation id {a['id']}" if "id" in a else f"annotations[{k}]"
        if a.get("iscrowd"):
            crowd += 1
            continue
        image_id, cat = a.get("image_id"), a.get("category_id")
        if image_id not in images:
            if image_id not in listed:  # not merely an image skipped above
                out.warn(path, None, f"{label}: unknown image_id {image_id}; skipped")
            continue
        if cat not in cat_index:
            out.warn(path, None, f"{label}: unknown category_id {cat}; skipped")
            continue
        bbox = a.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
            out.warn(path, None, f"{label}: bbox must be 4 finite numbers [x, y, w, h]; skipped")
            continue
        x, y, bw, bh = (float(v) for v in bbox)
        if bw <= 0 or bh <= 0:
            out.warn(path, None, f"{label}: zero or negative box size (w={_fmt(bw)} h={_fmt(bh)}); skipped")
            continue
        _, w, h = images[image_id]
        x1, y1 = min(max(x, 0.0), w), min(max(y, 0.0), h)
        x2, y2 = min(max(x + bw, 0.0), w), min(max(y + bh, 0.0), h)
        if x2 <= x1 or y2 <= y1:
            out.warn(path, None, f"{label}: box lies outside the {w}x{h} image; skipped")
            continue
        boxes[image_id].append([x1, y1, x2, y2])
        classes[image_id].append(cat_index[cat])
    if crowd:
        out.warn(path, None, f"{crowd} crowd annotation(s) (iscrowd=1) skipped")
    for image_id in order:
        p, w, h = images[image_id]
        if p in out.seen:
            continue
        out.seen.add(p)
        _new_record(out, p, w, h, boxes[image_id], classes[image_id])
        out.records[-1].image_id = image_id
    return names


# ----------------------------------------------------------------------------------------------
# Pascal VOC xml

class _XmlNode:
    """Minimal element with the line it starts on (ElementTree drops line numbers)."""

    __slots__ = ("tag", "line", "children", "parts")

    def __init__(self, tag: str, line: int) -> None:
        self.tag = tag
        self.line = line
        self.children: List[_XmlNode] = []
        self.parts: List[str] = []

    @property
    def text(self) -> str:
        return "".join(self.parts).strip()

    def find(self, tag: str) -> Optional["_XmlNode"]:
        for c in self.children:
            if c.tag == tag:
                return c
        return None

    def findtext(self, tag: str) -> Optional[str]:
        c = self.find(tag)
        return c.text if c is not None else None


def _parse_xml(path: str) -> _XmlNode:
    parser = xml.parsers.expat.ParserCreate()
    stack: List[_XmlNode] = []
    roots: List[_XmlNode] = []

    def start(tag: str, attrs: Dict[str, str]) -> None:
        node = _XmlNode(tag, parser.CurrentLineNumber)
        (stack[-1].children if stack else roots).append(node)
        stack.append(node)

    def end(tag: str) -> None:
        stack.pop()

    def chars(data: str) -> None:
        if stack:
            stack[-1].parts.append(data)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    try:
        with open(path, "rb") as f:
            parser.ParseFile(f)
    except OSError as e:
        raise DataError(f"cannot read annotation ({_reason(e)})", path) from None
    except xml.parsers.expat.ExpatError as e:
        raise DataError(f"malformed XML: {xml.parsers.expat.ErrorString(e.code)}", path, e.lineno) from None
    return roots[0]


def _voc_xml_for(image: str, root: Path) -> Optional[str]:
    stem = os.path.splitext(os.path.basename(image))[0] + ".xml"
    img_dir = os.path.dirname(image)
    parent = os.path.dirname(img_dir)
    for d in (os.path.join(parent, "annotations"), os.path.join(parent, "Annotations"),
              os.path.join(str(root), "annotations"), os.path.join(str(root), "Annotations"), img_dir):
        p = os.path.join(d, stem)
        if os.path.isfile(p):
            return p
    return None


def _load_voc_entries(cfg: DatasetConfig, entries: Sequence[str], out: _Collector) -> List[str]:
    images = []
    for entry in entries:
        for p in _list_images(entry, out):
            if p not in out.seen:
                out.seen.add(p)
                images.append(p)
    xml_paths = [_voc_xml_for(p, cfg.root) for p in images]
    parsed: Dict[str, _XmlNode] = {}
    names = cfg.names
    if names is None:
        # Every xml of the annotation folders, not only this split's: train and val get the same ids.
        folders = sorted({os.path.dirname(x) for x in xml_paths if x is not None})
        collected = set()
        for folder in folders:
            for f in sorted(os.listdir(folder)):
                if f.lower().endswith(".xml"):
                    p = os.path.join(folder, f)
                    node = parsed[p] = _parse_xml(p)
                    for obj in node.children:
                        if obj.tag == "object" and obj.findtext("name"):
                            collected.add(obj.findtext("name"))
        if not collected:
            raise DataError("no VOC <object> names found; add a 'names' list to the dataset YAML",
                            cfg.source)
        names = sorted(collected)
    index = {n: i for i, n in enumerate(names)}

    pending: List[Tuple[str, Optional[_XmlNode], Optional[str]]] = []
    for img, xp in zip(images, xml_paths):
        node = None
        if xp is not None:
            node = parsed.get(xp) or _parse_xml(xp)
        pending.append((img, node, xp))
    need_size = [img for img, node, _ in pending if _voc_size(node) is None]
    header_sizes = dict(zip(need_size, _sizes(need_size, out)))
    for img, node, xp in pending:
        size = _voc_size(node) or header_sizes.get(img)
        if size is None:
            continue
        w, h = size
        boxes: List[List[float]] = []
        classes: List[int] = []
        if node is not None and xp is not None:
            for obj in node.children:
                if obj.tag != "object":
                    continue
                box = _voc_object(obj, xp, index, w, h, out)
                if box is not None:
                    boxes.append(box[0])
                    classes.append(box[1])
        _new_record(out, img, w, h, boxes, classes)
    return list(names)


def _voc_size(node: Optional[_XmlNode]) -> Optional[Tuple[int, int]]:
    if node is None:
        return None
    size = node.find("size")
    if size is None:
        return None
    try:
        w, h = int(float(size.findtext("width") or 0)), int(float(size.findtext("height") or 0))
    except ValueError:
        return None
    return (w, h) if w > 0 and h > 0 else None


def _voc_object(obj: _XmlNode, path: str, index: Dict[str, int], w: int, h: int,
                out: _Collector) -> Optional[Tuple[List[float], int]]:
    name = obj.findtext("name")
    if not name:
        out.warn(path, obj.line, "object without <name>")
        return None
    if name not in index:
        out.warn(path, obj.line, f"class {name!r} not in names")
        return None
    bnd = obj.find("bndbox")
    if bnd is None:
        out.warn(path, obj.line, f"object {name!r} has no <bndbox>")
        return None
    try:
        xmin, ymin, xmax, ymax = (float(bnd.findtext(k) or "nan") for k in ("xmin", "ymin", "xmax", "ymax"))
    except ValueError:
        out.warn(path, bnd.line, "malformed <bndbox> (xmin, ymin, xmax, ymax must be numbers)")
        return None
    if not all(math.isfinite(v) for v in (xmin, ymin, xmax, ymax)):
        out.warn(path, bnd.line, "malformed <bndbox> (xmin, ymin, xmax, ymax must be numbers)")
        return None
    if xmax <= xmin or ymax <= ymin:
        coords = " ".join(f"{k}={_fmt(v)}"
                          for k, v in zip(("xmin", "ymin", "xmax", "ymax"), (xmin, ymin, xmax, ymax)))
        out.warn(path, bnd.line, f"zero or negative box size ({coords})")
        return None
    # 1-based pixel indices -> 0-based coordinates (darknet scripts/voc_label.py), clipped to the image.
    x1, y1 = min(max(xmin - 1, 0.0), w), min(max(ymin - 1, 0.0), h)
    x2, y2 = min(max(xmax - 1, 0.0), w), min(max(ymax - 1, 0.0), h)
    if x2 <= x1 or y2 <= y1:
        out.warn(path, bnd.line, f"box lies outside the {w}x{h} image")
        return None
    return [x1, y1, x2, y2], index[name]
