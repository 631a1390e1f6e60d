"""Pascal VOC xml annotations -> :class:`~yolo4.data.records.ImageRecord`. Python 3.8, torch-free.

* **Where annotations are**: for an image ``<dir>/<stem>.jpg``, ``<dir>/../annotations/<stem>.xml``,
  then ``<dir>/../Annotations/``, ``<root>/annotations/``, ``<root>/Annotations/``, then next to the
  image (as labelImg writes it). An image without an xml file is a background image. Split entries
  are image folders or ``.txt``/``.csv`` lists of images (e.g. ``ImageSets/Main/val.txt``).
* **Objects**: ``<object><name>`` and ``<bndbox>`` ``xmin..ymax``, plain decimal numbers. VOC
  coordinates are 1-based pixel indices: like darknet's ``scripts/voc_label.py``, 1 is subtracted from
  all four, then the box is clipped to the image. Objects marked ``<difficult>1</difficult>`` are
  **kept** (darknet's ``voc_label.py`` drops them; VOC's own evaluation ignores them).
* **Classes**: from the YAML ``names``, else every ``<object><name>`` of all xml files of the
  annotation folders (not only the split's, so train and val agree), sorted.
* **Image sizes**: ``<size>`` ``<width>``/``<height>`` when they are a usable size (positive integers
  within :func:`~yolo4.data.images.image_size_problem`'s limit), else read from the image header, with a
  warning when a value was given but unusable (absent, empty or ``0`` means "unknown", silently).

Bad objects are skipped with a ``file:line: problem`` warning (the line of the ``<object>`` or
``<bndbox>``): no or unknown ``<name>``, no ``<bndbox>``, non-numeric or non-finite coordinates,
zero/negative sizes, boxes outside the image or with no width/height once stored as float32 pixels.
An xml file that cannot be read or parsed raises :class:`~yolo4.errors.DataError` with its line.
"""

import math
import os
import xml.parsers.expat
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import DataError, reason
from .collect import (
    Collector,
    annotated_size,
    float32_box,
    fmt,
    header_sizes,
    name_problem,
    parse_decimal,
    show,
    split_images,
)
from .dataset_yaml import DatasetConfig


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
    """The root element of an xml file. Entity declarations are refused (no entity-expansion bombs,
    whatever the expat version); expat never fetches external entities.

    Raises:
        DataError: unreadable file, malformed XML or an entity declaration (with the line).
    """
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

    def entity(name: str, *_: object) -> None:  # as defusedxml: VOC annotations declare no entities
        raise DataError(f"XML entity declaration <!ENTITY {show(name)}> is not allowed", path,
                        parser.CurrentLineNumber)

    parser.StartElementHandler = start
    parser.EntityDeclHandler = entity
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    try:
        with open(path, "rb") as f:
            parser.ParseFile(f)
    except OSError as e:
        raise DataError(f"cannot read annotation ({reason(e)})", path) from None
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


def load_voc_entries(cfg: DatasetConfig, entries: Sequence[str], out: Collector) -> List[str]:
    """Append a record to ``out`` for every image of ``entries``; returns the class names.

    Raises:
        DataError: an unreadable list or xml file, malformed XML, or no class names at all.
    """
    images = split_images(entries, out)
    xml_paths = [_voc_xml_for(p, cfg.root) for p in images]
    parsed: Dict[str, _XmlNode] = {}
    names = cfg.names
    if names is None:
        # Every xml of the annotation folders, not only this split's: train and val get the same ids.
        folders = sorted({os.path.dirname(x) for x in xml_paths if x is not None})
        collected = set()
        for folder in folders:
            try:
                listing = sorted(os.listdir(folder))
            except OSError as e:
                raise DataError(f"cannot list annotation folder ({reason(e)})", folder) from None
            for f in listing:
                if f.lower().endswith(".xml"):
                    p = os.path.join(folder, f)
                    if not os.path.isfile(p):
                        continue
                    node = parsed[p] = _parse_xml(p)
                    for obj in node.children:
                        name = obj.findtext("name") if obj.tag == "object" else None
                        if name and name_problem(name) is None:
                            collected.add(name)
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
    given = [_voc_size(node, xp, out) for _, node, xp in pending]
    need_size = [img for (img, _, _), size in zip(pending, given) if size is None]
    header = dict(zip(need_size, header_sizes(need_size, out)))
    for (img, node, xp), size in zip(pending, given):
        size = size or header.get(img)
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
        out.add(img, w, h, boxes, classes)
    return list(names)


def _voc_size(node: Optional[_XmlNode], path: Optional[str], out: Collector) -> Optional[Tuple[int, int]]:
    """``<size>`` as ``(width, height)`` when usable; None to read the image header (with a warning
    when a size was given but is unusable)."""
    if node is None or path is None:
        return None
    size = node.find("size")
    if size is None:
        return None
    texts = (size.findtext("width") or "", size.findtext("height") or "")
    values = []  # empty -> None ("unknown"); a number -> its float; other text stays text (unusable)
    for text in texts:
        number = parse_decimal(text) if text else None
        values.append(number if number is not None else (text or None))
    given, bad = annotated_size(*values)
    if bad:
        out.warn(path, size.line, f"<size> width {show(texts[0])} height {show(texts[1])} is not a usable "
                 "image size; size read from the image")
    return given


def _voc_object(obj: _XmlNode, path: str, index: Dict[str, int], w: int, h: int,
                out: Collector) -> Optional[Tuple[List[float], int]]:
    name = obj.findtext("name")
    if not name:
        out.warn(path, obj.line, "object without <name>")
        return None
    if name not in index:
        out.warn(path, obj.line, f"class {show(name)!r} not in names")
        return None
    bnd = obj.find("bndbox")
    if bnd is None:
        out.warn(path, obj.line, f"object {show(name)!r} has no <bndbox>")
        return None
    coords = [parse_decimal(bnd.findtext(k) or "") for k in ("xmin", "ymin", "xmax", "ymax")]
    if not all(v is not None and math.isfinite(v) for v in coords):
        out.warn(path, bnd.line, "malformed <bndbox> (xmin, ymin, xmax, ymax must be numbers)")
        return None
    xmin, ymin, xmax, ymax = coords  # type: ignore[misc]  # no None left
    if xmax <= xmin or ymax <= ymin:
        shown = " ".join(f"{k}={fmt(v)}"
                         for k, v in zip(("xmin", "ymin", "xmax", "ymax"), (xmin, ymin, xmax, ymax)))
        out.warn(path, bnd.line, f"zero or negative box size ({shown})")
        return None
    # 1-based pixel indices -> 0-based coordinates (darknet scripts/voc_label.py), clipped to the image.
    x1, y1 = min(max(xmin - 1, 0.0), w), min(max(ymin - 1, 0.0), h)
    x2, y2 = min(max(xmax - 1, 0.0), w), min(max(ymax - 1, 0.0), h)
    if x2 <= x1 or y2 <= y1:
        out.warn(path, bnd.line, f"box lies outside the {w}x{h} image")
        return None
    box = float32_box(x1, y1, x2, y2)
    if box is None:
        out.warn(path, bnd.line, f"box too small: no width or height in float32 pixels "
                 f"(xmax-xmin={fmt(xmax - xmin)} ymax-ymin={fmt(ymax - ymin)})")
        return None
    return box, index[name]
