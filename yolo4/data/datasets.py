"""Dataset readers, public entry point: :func:`load_dataset` -> one :class:`DatasetSplit`.

Python 3.8, torch-free.

A dataset is named by a spec: a dataset YAML, a known dataset name, a COCO json or a folder
(:mod:`yolo4.data.dataset_yaml` documents the YAML and the rest). Its labels are in one of three
formats, each documented in its module:

* YOLO txt (darknet / Ultralytics): :mod:`yolo4.data.yolo_txt`
* COCO json: :mod:`yolo4.data.coco_json`
* Pascal VOC xml: :mod:`yolo4.data.voc_xml`

The format is the YAML's ``format``, else detected: ``coco`` when a split entry is a ``.json``,
``yolo`` when the root has a ``labels/`` folder, ``voc`` when it has ``annotations/`` or
``Annotations/``, else ``yolo``.

Errors: bad labels, objects, annotations and images are skipped and reported, one line each, in
``DatasetSplit.warnings`` as ``file:line: problem`` (``file: problem`` where the format has no lines;
paths relative to the dataset root); no malformed value raises a Python error. A file that is
unreadable as a whole (YAML, json, xml, label or list file) raises
:class:`~yolo4.errors.DataError` naming the file (and line where known).
"""

import os
from typing import Sequence, Union

from ..errors import DataError
from .coco_json import load_coco_entries
from .collect import Collector
from .dataset_yaml import (
    FORMATS,
    KNOWN_DATASETS,
    DatasetConfig,
    annotation_dir,
    dataset_config,
    read_dataset_yaml,
    split_names,
)
from .records import DatasetSplit
from .voc_xml import load_voc_entries
from .yolo_txt import COORD_TOLERANCE, label_path, load_yolo_entries

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["load_dataset", "dataset_config", "read_dataset_yaml", "label_path", "KNOWN_DATASETS", "FORMATS",
           "COORD_TOLERANCE", "DatasetConfig", "DatasetSplit"]


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
        image: absolute path, size in px, ``boxes [M,4] float32`` x1,y1,x2,y2 in pixels with
        ``x2 > x1`` and ``y2 > y1``, inside ``[0, width] x [0, height]``, ``classes [M] int64`` in
        ``0..len(names)-1``, ``image_id``), ``warnings`` (``file:line: problem`` per skipped
        label/image). ``image_id`` is the COCO id for COCO, else 1, 2, ... in record order.

    Raises:
        DataError: unknown spec, a known dataset while ``$YOLO4_ASSET_MIRROR`` is unset, bad YAML, a
            missing split or path, missing/inconsistent names, an unreadable label/annotation/list
            file or json (message names the file and, where known, the line).
    """
    cfg = dataset_config(spec, split)
    return _load_split(cfg, split)


def _detect_format(cfg: DatasetConfig, entries: Sequence[str]) -> str:
    if any(e.lower().endswith(".json") for e in entries):
        return "coco"
    if (cfg.root / "labels").is_dir():
        return "yolo"
    if annotation_dir(cfg.root) is not None:
        return "voc"
    return "yolo"


def _load_split(cfg: DatasetConfig, split: str) -> DatasetSplit:
    entries = None
    for s in split_names(split):
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
    out = Collector(cfg.root)
    if fmt == "coco":
        names = load_coco_entries(cfg, entries, out)
    elif fmt == "voc":
        names = load_voc_entries(cfg, entries, out)
    else:
        if cfg.names is None:
            raise DataError("YOLO txt labels need class names: add a 'names' list to the dataset YAML",
                            cfg.source)
        names = cfg.names
        load_yolo_entries(cfg, entries, out, len(names))
    if fmt != "coco":
        for i, rec in enumerate(out.records):
            rec.image_id = i + 1
    return DatasetSplit(list(names), out.records, out.warnings)
