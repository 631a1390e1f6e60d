"""COCO detection json -> :class:`~yolo4.data.records.ImageRecord`. Python 3.8, torch-free.

* **Split entries** are ``.json`` files (``images``, ``categories``, ``annotations`` lists); a COCO
  json given directly to ``load_dataset`` is the split. Image files are looked up, by ``file_name``,
  next to the json, then in ``<root>/images/<name>``, ``<root>/<name>`` (``<name>`` = the json's stem
  without ``instances_``), ``<json folder>/../images/<name>``, ``<json folder>/../<name>``,
  ``<root>/images`` and ``<root>``.
* **Classes**: categories sorted by id are mapped to contiguous class ids 0..K-1 and give the names
  (a ``names`` list in the YAML may rename them, with the same count). Every category needs a unique
  integer ``id`` and a non-empty ``name``, else the json is refused (:class:`~yolo4.errors.DataError`).
* **Ids** (image ``id``, ``image_id``, category ``id``, ``category_id``) are JSON integers (an
  integral number such as ``7.0``, or decimal digits as a string, is taken as that integer) within
  the int64 range; ``1.5``, ``true``, ``[1]``, ``{}``, ``null`` are not ids. COCO image ids are
  kept as ``ImageRecord.image_id`` (renumbered 1..N, with a warning, if they repeat across the
  split's json files).
* **Boxes**: ``bbox`` ``[x, y, w, h]`` pixels (4 finite numbers) becomes x1,y1,x2,y2, clipped to the
  image. Crowd annotations (``iscrowd=1``) are skipped (one summary warning per file): records have
  no "ignore" flag, so COCO-style evaluation on such a split counts detections of crowd regions as
  false positives instead of ignoring them.
* **Image sizes**: ``width``/``height`` when they are a usable size (positive integers within
  :func:`~yolo4.data.images.image_size_problem`'s limit), else read from the image header, with a
  warning when a value was given but unusable (absent, ``null`` or ``0`` means "unknown", silently).

Problems with one image or annotation skip it with a warning (``file: images[k]: problem`` or
``file: annotation id N: problem``; json has no line numbers here); a json that cannot be read or
parsed, or whose categories are unusable, raises :class:`~yolo4.errors.DataError`.
"""

import json
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from ..errors import DataError
from .collect import (
    Collector,
    annotated_size,
    float32_box,
    fmt,
    header_sizes,
    integral,
    is_number,
    name_problem,
    read_text,
    show,
)
from .dataset_yaml import DatasetConfig

_INT64 = 1 << 63
_ID_TEXT = re.compile(r"-?[0-9]{1,18}")


def coco_id(value: Any) -> Optional[int]:
    """A COCO id as an int: an int (not a bool), an integral finite float, or a string of decimal
    digits, within the int64 range; None for anything else."""
    if isinstance(value, str):
        text = value.strip()
        return int(text) if _ID_TEXT.fullmatch(text) else None
    i = integral(value)
    return i if i is not None and -_INT64 <= i < _INT64 else None


def load_coco_entries(cfg: DatasetConfig, entries: Sequence[str], out: Collector) -> List[str]:
    """Append the records of every COCO json of ``entries`` to ``out``; returns the class names.

    Raises:
        DataError: an entry that is not a .json, an unreadable or invalid json, unusable categories,
            categories that differ between the split's jsons, or YAML names of another count.
    """
    names: Optional[List[str]] = None
    id_sets: List[List[int]] = []
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


def _categories(data: Dict[str, Any], path: str) -> Tuple[List[str], Dict[int, int]]:
    """Names sorted by category id, and category id -> class index."""
    cats: List[Tuple[int, str]] = []
    seen: Set[int] = set()
    for k, c in enumerate(data["categories"]):
        if not isinstance(c, dict):
            raise DataError(f"categories[{k}] is not an object", path)
        cid = coco_id(c.get("id"))
        if cid is None:
            raise DataError(f"categories[{k}]: 'id' must be an integer, got {show(c.get('id'))}", path)
        if cid in seen:
            raise DataError(f"categories[{k}]: duplicate category id {cid}", path)
        seen.add(cid)
        name = c.get("name")
        if is_number(name):  # a number is taken as its text, as in a YAML names list
            name = str(name)
        problem = name_problem(name)
        if problem is not None:
            raise DataError(f"categories[{k}] (id {cid}): {problem}", path)
        cats.append((cid, name.strip()))
    if not cats:
        raise DataError("COCO json has no categories", path)
    cats.sort(key=lambda c: c[0])
    return [n for _, n in cats], {cid: i for i, (cid, _) in enumerate(cats)}


def _load_coco_json(path: str, out: Collector) -> List[str]:
    text = read_text(path, "COCO json")
    try:
        data = json.loads(text)
    except ValueError as e:
        raise DataError(f"invalid JSON: {getattr(e, 'msg', e)}", path, getattr(e, "lineno", None)) from None
    except RecursionError:
        raise DataError("invalid JSON: nested too deeply", path) from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("categories"), list):
        raise DataError("not a COCO detection json: needs 'images' and 'categories' lists", path)
    anns = data.get("annotations") or []
    if not isinstance(anns, list):
        raise DataError("'annotations' must be a list", path)
    names, cat_index = _categories(data, path)

    dirs = _coco_image_dirs(path, out.root)
    images: Dict[int, Tuple[str, int, int]] = {}
    listed: Set[int] = set()
    missing_size: List[int] = []
    for k, im in enumerate(data["images"]):
        if not isinstance(im, dict):
            out.warn(path, None, f"images[{k}]: not an object; skipped")
            continue
        image_id = coco_id(im.get("id"))
        file_name = im.get("file_name")
        if image_id is None or not isinstance(file_name, str) or not file_name.strip():
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
            out.warn(path, None, f"image id {image_id}: file not found: {show(file_name)}; skipped")
            continue
        size, bad = annotated_size(im.get("width"), im.get("height"))
        if size is None:
            if bad:
                out.warn(path, None, f"image id {image_id}: width {show(im.get('width'))} height "
                         f"{show(im.get('height'))} is not a usable image size; size read from the image")
            size = (0, 0)
            missing_size.append(image_id)
        images[image_id] = (found, size[0], size[1])
    if missing_size:
        sizes = header_sizes([images[i][0] for i in missing_size], out)
        for image_id, size in zip(missing_size, sizes):
            if size is None:
                del images[image_id]
            else:
                images[image_id] = (images[image_id][0], size[0], size[1])

    boxes: Dict[int, List[List[float]]] = {i: [] for i in images}
    classes: Dict[int, List[int]] = {i: [] for i in images}
    crowd = 0
    for k, a in enumerate(anns):
        if not isinstance(a, dict):
            out.warn(path, None, f"annotations[{k}]: not an object; skipped")
            continue
        label = f"annotation id {show(a['id'])}" if "id" in a else f"annotations[{k}]"
        iscrowd = a.get("iscrowd")
        if iscrowd == 1:
            crowd += 1
            continue
        if iscrowd not in (None, 0):
            out.warn(path, None, f"{label}: iscrowd must be 0 or 1, got {show(iscrowd)}; skipped")
            continue
        image_id = coco_id(a.get("image_id"))
        if image_id is None:
            out.warn(path, None, f"{label}: image_id {show(a.get('image_id'))} is not an integer; skipped")
            continue
        if image_id not in images:
            if image_id not in listed:  # not merely an image skipped above
                out.warn(path, None, f"{label}: unknown image_id {image_id}; skipped")
            continue
        cat = coco_id(a.get("category_id"))
        if cat is None or cat not in cat_index:
            out.warn(path, None, f"{label}: unknown category_id {show(a.get('category_id'))}; skipped")
            continue
        bbox = a.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(is_number(v) for v in bbox):
            out.warn(path, None, f"{label}: bbox must be 4 finite numbers [x, y, w, h]; skipped")
            continue
        x, y, bw, bh = (float(v) for v in bbox)
        if bw <= 0 or bh <= 0:
            out.warn(path, None, f"{label}: zero or negative box size (w={fmt(bw)} h={fmt(bh)}); skipped")
            continue
        _, w, h = images[image_id]
        x1, y1 = min(max(x, 0.0), w), min(max(y, 0.0), h)
        x2, y2 = min(max(x + bw, 0.0), w), min(max(y + bh, 0.0), h)
        if x2 <= x1 or y2 <= y1:
            out.warn(path, None, f"{label}: box lies outside the {w}x{h} image; skipped")
            continue
        box = float32_box(x1, y1, x2, y2)
        if box is None:
            out.warn(path, None, f"{label}: box too small: no width or height in float32 pixels "
                     f"(w={fmt(bw)} h={fmt(bh)}); skipped")
            continue
        boxes[image_id].append(box)
        classes[image_id].append(cat_index[cat])
    if crowd:
        out.warn(path, None, f"{crowd} crowd annotation(s) (iscrowd=1) skipped")
    for image_id, (p, w, h) in images.items():
        if p in out.seen:
            continue
        out.seen.add(p)
        rec = out.add(p, w, h, boxes[image_id], classes[image_id])
        rec.image_id = image_id
    return names
