"""Dataset specs: the dataset YAML, known dataset names, COCO jsons and folders -> :class:`DatasetConfig`.

Python 3.8, torch-free.

A dataset is described by a YAML file in the Ultralytics convention::

    path: ${DATA_ROOT}/my_set     # root; ${VARS}/$VARS and ~ expanded; relative -> to the yaml's folder
    train: images/train           # split entries, relative to `path`: an image folder, a .txt list
    val: images/val               #   of image paths, a .csv with a `filename` column, or a COCO .json
    test: images/test             # optional; any split may also be a list of such entries
    names: [cat, dog]             # list, or {0: cat, 1: dog} (ids 0..K-1)
    nc: 2                         # optional: must equal the number of names
    format: yolo                  # optional: yolo | coco | voc (detected otherwise)

``valid``/``validation`` stand for ``val`` and ``testing`` for ``test``. Class names are non-empty
strings (numbers are taken as their text) without control characters or line breaks; a YAML
boolean (``no``, ``yes``, ``on``, ``off`` unquoted) is refused, since it would become "False"/"True".

Besides a YAML, :func:`dataset_config` accepts a known dataset name (:data:`KNOWN_DATASETS`, bundled
YAMLs under ``yolo4/data/datasets/`` whose paths are read from ``$YOLO4_ASSET_MIRROR``), a COCO
``.json`` file (the json is the split), or a folder: one holding ``data.yaml``/``dataset.yaml``, a VOC
folder (``annotations/`` or ``Annotations/``; split from ``ImageSets/Main/<split>.txt`` when present,
else every image of ``JPEGImages/`` or ``images/``), or a Roboflow COCO export
(``_annotations.coco.json`` in the folder or in ``<folder>/<split>/``).
"""

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from ..errors import DataError
from ..fileio import compose_yaml
from .collect import integral, name_problem, show

PathLike = Union[str, "os.PathLike[str]"]

#: Dataset names with a bundled YAML (``yolo4/data/datasets/<name>.yaml``), read from the mirror.
KNOWN_DATASETS = ("coco128", "raccoon", "chess")
#: Label formats understood by :func:`yolo4.data.datasets.load_dataset`.
FORMATS = ("yolo", "coco", "voc")

_SPLIT_ALIASES = {"val": ("valid", "validation"), "valid": ("val",), "validation": ("val",),
                  "test": ("testing",)}
_BUNDLED = Path(__file__).resolve().parent / "datasets"
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
_CLASS_ID_TEXT = re.compile(r"[0-9]{1,9}")


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


def dataset_config(spec: PathLike, split: str = "val") -> DatasetConfig:
    """The :class:`DatasetConfig` :func:`~yolo4.data.datasets.load_dataset` reads ``spec`` with.

    Args:
        spec: a dataset YAML, a known name (:data:`KNOWN_DATASETS`), a COCO ``.json`` or a folder
            (see the module docstring).
        split: the split wanted (names the split of a bare json / VOC folder / COCO export).

    Raises:
        DataError: unknown spec, a known dataset while ``$YOLO4_ASSET_MIRROR`` is unset, or as
            :func:`read_dataset_yaml`.
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
        DataError: unreadable or invalid YAML, unset environment variable in a path, bad ``names``,
            ``nc`` or ``format``, no split entry (message names the YAML and the line).
    """
    import yaml

    spath = os.path.abspath(os.fspath(path))
    text, node = compose_yaml(spath, "dataset YAML", DataError)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:  # composed fine, so a constructor's complaint
        raise DataError(f"invalid YAML value ({getattr(e, 'problem', None) or e})", spath) from None
    except (ValueError, OverflowError) as e:  # PyYAML's constructors: a 13th month, a 5000-digit int
        raise DataError(f"invalid YAML value ({e})", spath) from None
    if not isinstance(data, dict):
        raise DataError("dataset YAML must be a mapping with path/train/val/names keys", spath)
    lines: Dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
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

        text = _ENV_RE.sub(env, value.strip())
        if "\x00" in text:  # os.path.expanduser raises ValueError on it
            raise DataError(f"{key!r} contains a NUL character", spath, lines.get(key))
        return os.path.expanduser(text)

    yaml_dir = os.path.dirname(spath)
    root = expand("path", data["path"]) if data.get("path") is not None else yaml_dir
    root_path = Path(os.path.normpath(os.path.join(yaml_dir, root)))

    fmt = data.get("format")
    if fmt is not None:
        if not isinstance(fmt, str) or fmt.strip().lower() not in FORMATS:
            shown = repr(show(fmt)) if isinstance(fmt, str) else show(fmt)
            raise DataError(f"format {shown} is not one of {', '.join(FORMATS)}", spath, lines.get("format"))
        fmt = fmt.strip().lower()

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

    names = parse_names(data.get("names"), spath, lines.get("names"))
    nc = data.get("nc")
    if nc is not None:
        nc = integral(nc)
        if nc is None or nc < 1:
            raise DataError(f"nc must be a positive integer, got {show(data.get('nc'))}", spath,
                            lines.get("nc"))
        if names is not None and nc != len(names):
            raise DataError(f"nc is {nc} but names has {len(names)} entries", spath, lines.get("nc"))
    return DatasetConfig(root_path, splits, names, fmt, spath, lines)


def parse_names(value: Any, source: str, line: Optional[int]) -> Optional[List[str]]:
    """Class names from a YAML ``names`` value: a list, or a ``{id: name}`` mapping with ids
    ``0..K-1`` (integers, or their plain decimal digits as text). None when ``value`` is None.

    Raises:
        DataError: another type, ids with gaps, or a bad name (:func:`~yolo4.data.collect.name_problem`);
            message names ``source`` and ``line``.
    """
    if value is None:
        return None
    if isinstance(value, dict):
        items: List[Tuple[int, Any]] = []
        for k, v in value.items():
            kid = integral(k)
            if kid is not None:
                items.append((kid, v))
            elif isinstance(k, str) and _CLASS_ID_TEXT.fullmatch(k.strip()):
                items.append((int(k), v))
            else:
                raise DataError(f"names dict keys must be integer class ids, got {show(k)}", source, line)
        items.sort(key=lambda kv: kv[0])
        ids = [k for k, _ in items]
        if ids != list(range(len(ids))):
            raise DataError(f"names dict ids must be 0..{len(ids) - 1} without gaps, got {ids[:10]}",
                            source, line)
        raw = [v for _, v in items]
    elif isinstance(value, (list, tuple)):
        raw = list(value)
    else:
        raise DataError("names must be a list or a {id: name} mapping", source, line)
    if not raw:
        raise DataError("names must be non-empty strings", source, line)
    names = []
    for i, v in enumerate(raw):
        if isinstance(v, bool):
            raise DataError(f"names[{i}] is the YAML boolean {str(v).lower()}: quote the name", source, line)
        if isinstance(v, (int, float)):
            v = str(v)
        problem = name_problem(v)
        if problem is not None:
            raise DataError(f"names[{i}]: {problem}", source, line)
        names.append(v.strip())
    return names


def split_names(split: str) -> Tuple[str, ...]:
    """``split`` and the names that stand for it (``val`` <-> ``valid``/``validation``, ...)."""
    return (split,) + _SPLIT_ALIASES.get(split, ())


def annotation_dir(folder: Path) -> Optional[Path]:
    """``folder/annotations`` or ``folder/Annotations`` when one is a folder (VOC layout)."""
    for name in ("annotations", "Annotations"):
        d = folder / name
        if d.is_dir():
            return d
    return None


def _mirror_unset_message(name: str) -> str:
    return (f"dataset {name!r} is read from $YOLO4_ASSET_MIRROR/{name}: set YOLO4_ASSET_MIRROR to the "
            "asset mirror folder (the layout of shared/data)")


def _known_config(name: str) -> DatasetConfig:
    path = _BUNDLED / f"{name}.yaml"
    if not os.environ.get("YOLO4_ASSET_MIRROR", "").strip():
        raise DataError(_mirror_unset_message(name))
    return read_dataset_yaml(path)


def _folder_config(folder: Path, split: str) -> DatasetConfig:
    for name in ("data.yaml", "dataset.yaml", "data.yml"):
        if (folder / name).is_file():
            return read_dataset_yaml(folder / name)
    for candidate in (folder / "_annotations.coco.json",
                      *(folder / s / "_annotations.coco.json" for s in split_names(split))):
        if candidate.is_file():
            return DatasetConfig(folder, {split: [str(candidate)]}, None, "coco", str(folder))
    exported = sorted(p.parent.name for p in folder.glob("*/_annotations.coco.json"))
    if exported:
        raise DataError(f"no {split!r} split in this COCO export (has: {', '.join(exported)})", folder)
    ann = annotation_dir(folder)
    if ann is not None:
        entry = None
        lists = folder / "ImageSets" / "Main"
        for s in split_names(split):
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
