"""Seeded fuzzing of the dataset readers: mutated YOLO txt, Pascal VOC xml, COCO json and dataset YAML
files, each loaded through ``load_dataset``; and mutated image headers through ``image_size``/``imread``.

Only the project's own errors (:class:`yolo4.errors.Yolo4Error` subclasses) may come out; an accepted
split must satisfy the record contract (float32 boxes inside the image with positive width and height,
class ids in range, one-line warnings); every case is bounded in time. Each test prints a one-line
summary (``pytest -s``): mutants tried, accepted (and how many with warnings), project errors.
"""

import contextlib
import copy
import json
import os
import random
import re
import signal
import time
import warnings
from pathlib import Path
from typing import Callable, List

import cv2
import numpy as np
import pytest

from yolo4.data import image_size, imread, load_dataset
from yolo4.errors import ImageReadError, Yolo4Error

SEED = 4_2024
CASE_SECONDS = 10  # per-case bound; a case takes milliseconds
N_YOLO, N_VOC, N_COCO, N_YAML, N_IMAGES = 3000, 3000, 3000, 1000, 2000

# Values that broke, or could break, a reader: non-finite and huge numbers, Python-only number
# spellings, JSON/YAML type confusion, control characters, separators, very long text.
ODD = ["1e999", "-1e999", "nan", "NaN", "Infinity", "-Infinity", "inf", "-0", "-0.0", "0", "0.0", "1_0",
       "0x10", "1e-9", "-1e-9", "1e308", "-1", "4294967296", "9223372036854775808", "1" * 400, "[]", "{}",
       "null", "true", "false", '""', '"x"', "\u0661", "\uff11", "\u2028", "\x00", "\x0c", "\t", "\r", " ",
       "", "a" * 5000, "9" * 5000, "0.5", "1", "2", "3.0", "1.5", ",", "<", ">", "&", "&amp;", "&#0;",
       "]]>", "\\", '"', "'", "\\ud800", "~", "*", "&a", "!!python/object:os.system", "- x", ":", "#", "~x\x00y", "images/\x00"]

_TOKEN = re.compile(r"[A-Za-z0-9_.+\-]+|\s+|.", re.S)


class _Hang(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Hang()


def _image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((8, 8, 3), 90, np.uint8))


# ------------------------------------------------------------------------------------------------
# mutations of real structure (text level; JSON also at the value level)


def _replace_token(rng: random.Random, text: str) -> str:
    tokens = _TOKEN.findall(text)
    if not tokens:
        return text
    for _ in range(rng.randint(1, 3)):
        tokens[rng.randrange(len(tokens))] = rng.choice(ODD)
    return "".join(tokens)


def _delete_span(rng: random.Random, text: str) -> str:
    tokens = _TOKEN.findall(text)
    if len(tokens) < 2:
        return text
    i = rng.randrange(len(tokens))
    return "".join(tokens[:i] + tokens[i + rng.randint(1, 8):])


def _duplicate_span(rng: random.Random, text: str) -> str:
    lines = text.split("\n")
    i = rng.randrange(len(lines))
    j = min(len(lines), i + rng.randint(1, 6))
    return "\n".join(lines[:j] + lines[i:j] * rng.randint(1, 3) + lines[j:])


def _truncate(rng: random.Random, text: str) -> str:
    return text[:rng.randrange(len(text) + 1)]


def _text_mutant(rng: random.Random, text: str) -> bytes:
    ops = [_replace_token, _replace_token, _replace_token, _delete_span, _duplicate_span, _truncate]
    for _ in range(rng.randint(1, 3)):
        text = rng.choice(ops)(rng, text)
    data = bytearray(text.encode("utf-8", "surrogatepass"))
    if data and rng.random() < 0.25:  # byte flips: half of them stay ASCII (and UTF-8)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(128 if rng.random() < 0.5 else 256)
    return bytes(data)


_XML_TEXT = re.compile(r"(?<=>)[^<>]+(?=<)")
_XML_ELEMENT = re.compile(r"<(name|bndbox|object|size|width|height|xmin|ymin|xmax|ymax|difficult)>.*?</\1>\n?", re.S)


def _xml_mutant(rng: random.Random, text: str) -> bytes:
    """Element-aware: odd text content (XML-escaped, mostly), deleted and duplicated elements."""
    for _ in range(rng.randint(1, 3)):
        op = rng.random()
        if op < 0.6:
            spans = [m.span() for m in _XML_TEXT.finditer(text) if m.group().strip()]
            a, b = rng.choice(spans)
            value = rng.choice(ODD)
            if rng.random() < 0.9:
                value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            text = text[:a] + value + text[b:]
        else:
            elements = [m.span() for m in _XML_ELEMENT.finditer(text)]
            if not elements:
                continue
            a, b = rng.choice(elements)
            text = text[:a] + (text[a:b] * rng.randint(2, 3) if op < 0.8 else "") + text[b:]
    if rng.random() < 0.2:
        return _text_mutant(rng, text)
    return text.encode("utf-8", "surrogatepass")


def _yaml_mutant(rng: random.Random, text: str) -> bytes:
    """Line-aware: odd values after ``key:``, deleted and duplicated lines (repeated keys)."""
    lines = text.split("\n")
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(lines))
        op = rng.random()
        if op < 0.6 and ":" in lines[i]:
            key = lines[i].split(":", 1)[0]
            value = rng.choice(ODD)
            lines[i] = f"{key}: {value if rng.random() < 0.7 else json.dumps(value)}"
        elif op < 0.8:
            lines.insert(i, lines[i])
        else:
            del lines[i]
    text = "\n".join(lines)
    if rng.random() < 0.2:
        return _text_mutant(rng, text)
    return text.encode("utf-8", "surrogatepass")


_JSON_ODD = [float("inf"), float("-inf"), float("nan"), -0.0, 10 ** 400, 1e-9, 1e308, -1, 0, 1, 1.5, 2.0,
             True, False, None, [], {}, [1], {"id": 1}, "", "1_0", "12", "a" * 5000, "x\ny", [1, 2, 3, 4],
             [0, 0, 1e-9, 1e-9], 1 << 63, -(1 << 63) - 1]


def _containers(node, found: list) -> list:
    if isinstance(node, (dict, list)):
        found.append(node)
        for v in node.values() if isinstance(node, dict) else node:
            _containers(v, found)
    return found


def _json_mutant(rng: random.Random, base: dict) -> bytes:
    data = copy.deepcopy(base)
    for _ in range(rng.randint(1, 3)):
        node = rng.choice(_containers(data, []))
        if not node:
            continue
        key = rng.choice(list(node.keys())) if isinstance(node, dict) else rng.randrange(len(node))
        op = rng.random()
        if op < 0.6:
            node[key] = copy.deepcopy(rng.choice(_JSON_ODD))
        elif op < 0.8:
            del node[key]
        elif isinstance(node, list):
            node.insert(key, copy.deepcopy(node[key]))  # duplicated element
        else:
            node[key + "_"] = copy.deepcopy(node[key])
    text = json.dumps(data, allow_nan=True, indent=rng.choice([None, 1]))
    if rng.random() < 0.15:  # duplicated keys: json keeps the last
        text = text.replace('{"id": ', '{"id": 1, "id": ', 1)
    if rng.random() < 0.4:
        return _text_mutant(rng, text)
    return text.encode("utf-8")


# ------------------------------------------------------------------------------------------------
# the harness


def _check_split(split) -> None:
    assert all(isinstance(n, str) and n.strip() for n in split.names)
    for w in split.warnings:
        assert isinstance(w, str) and "\n" not in w and "\r" not in w, w
    ids = [r.image_id for r in split.records]
    assert len(set(ids)) == len(ids)
    for r in split.records:
        assert isinstance(r.width, int) and isinstance(r.height, int) and r.width > 0 and r.height > 0
        assert r.boxes.dtype == np.float32 and r.boxes.shape == (len(r.classes), 4)
        assert r.classes.dtype == np.int64
        if len(r.boxes):
            b, where = r.boxes, f"{os.path.basename(r.path)}: boxes {r.boxes.tolist()[:4]} classes " \
                f"{r.classes.tolist()[:4]} in {r.width}x{r.height}"
            assert np.isfinite(b).all(), where
            assert (b[:, :2] >= 0).all() and (b[:, 2] <= r.width).all() and (b[:, 3] <= r.height).all(), where
            assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all(), where
            assert (r.classes >= 0).all() and (r.classes < len(split.names)).all(), where


@pytest.fixture
def deadline():
    """``with deadline():`` bounds one case to CASE_SECONDS (SIGALRM; unbounded where there is none):
    a case that runs longer raises _Hang."""
    if not hasattr(signal, "setitimer"):
        yield contextlib.nullcontext
        return

    @contextlib.contextmanager
    def bound():
        signal.setitimer(signal.ITIMER_REAL, CASE_SECONDS)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    old = signal.signal(signal.SIGALRM, _on_alarm)
    try:
        yield bound
    finally:
        signal.signal(signal.SIGALRM, old)


def _fuzz(name: str, n: int, target: Path, mutant: Callable[[random.Random], bytes],
          load: Callable[[], object], tmp_path: Path, deadline) -> None:
    rng = random.Random(f"{SEED}-{name}")
    accepted = warned = errors = 0
    kinds: dict = {}
    slowest = 0.0
    failures: List[str] = []
    for i in range(n):
        data = mutant(rng)
        target.unlink(missing_ok=True)  # a fresh file: ext4 flushes a truncated-and-rewritten one on close
        target.write_bytes(data)
        t0 = time.perf_counter()
        try:
            with deadline():
                split = load()
        except Yolo4Error as e:
            errors += 1
            kinds[type(e).__name__] = kinds.get(type(e).__name__, 0) + 1
            assert "\n" not in str(e), str(e)
        except _Hang:
            failures.append(f"case {i}: no result within {CASE_SECONDS} s")
        except Exception as e:  # the failure this test exists for
            failures.append(f"case {i}: {type(e).__name__}: {str(e)[:200]}")
        else:
            try:
                _check_split(split)
            except AssertionError as e:
                failures.append(f"case {i}: accepted split breaks the record contract: {e}"[:300])
            accepted += 1
            warned += bool(split.warnings)
        slowest = max(slowest, time.perf_counter() - t0)
        if failures and len(failures) <= 3 and failures[-1].startswith(f"case {i}:"):
            (tmp_path / f"failure-{name}-{i}{target.suffix}").write_bytes(data)
    by_kind = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
    print(f"\nfuzz {name}: {n} mutants, {accepted} accepted ({warned} with warnings), {errors} project "
          f"errors ({by_kind or 'none'}), {len(failures)} other; slowest case {slowest:.3f} s")
    assert not failures, f"{len(failures)} of {n} {name} mutants escaped (kept in {tmp_path}): " + \
        "; ".join(failures[:5])
    assert accepted and errors, "a fuzzer that never accepts (or never refuses) tests nothing"


# ------------------------------------------------------------------------------------------------
# the formats

YOLO_LABEL = ("0 0.5 0.5 0.25 0.5\n"
              "2 0.1 0.2 0.05 0.1\n"
              "1 0.1 0.1 0.4 0.1 0.4 0.3 0.2 0.35\n"
              "0 0.999 0.001 0.002 0.002\n")


def test_fuzz_yolo_txt(tmp_path, deadline):
    _image(tmp_path / "images" / "a.png")
    _image(tmp_path / "images" / "b.png")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "b.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    yaml = tmp_path / "data.yaml"
    yaml.write_text("path: .\nval: images\nnames: [a, b, c]\n")
    _fuzz("yolo-txt", N_YOLO, tmp_path / "labels" / "a.txt", lambda rng: _text_mutant(rng, YOLO_LABEL),
          lambda: load_dataset(yaml), tmp_path, deadline)


VOC_XML = """<annotation>
  <folder>images</folder>
  <filename>p1.png</filename>
  <size><width>8</width><height>8</height><depth>3</depth></size>
  <object>
    <name>dog</name><pose>Left</pose><truncated>0</truncated><difficult>0</difficult>
    <bndbox><xmin>2</xmin><ymin>2</ymin><xmax>6</xmax><ymax>7</ymax></bndbox>
  </object>
  <object>
    <name>cat</name><difficult>1</difficult>
    <bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>3.5</ymax></bndbox>
  </object>
</annotation>
"""


def test_fuzz_voc_xml(tmp_path, deadline):
    _image(tmp_path / "images" / "p1.png")
    _image(tmp_path / "images" / "p2.png")
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "p2.xml").write_text(VOC_XML.replace("p1", "p2"))
    _fuzz("voc-xml", N_VOC, tmp_path / "annotations" / "p1.xml", lambda rng: _xml_mutant(rng, VOC_XML),
          lambda: load_dataset(tmp_path, "val"), tmp_path, deadline)


COCO = {
    "info": {"description": "fuzz"},
    "images": [{"id": 1, "file_name": "a.png", "width": 8, "height": 8},
               {"id": 2, "file_name": "b.png"},
               {"id": 3, "file_name": "c.png", "width": 8, "height": 8}],
    "categories": [{"id": 0, "name": "pieces", "supercategory": "none"},
                   {"id": 1, "name": "pawn", "supercategory": "pieces"},
                   {"id": 2, "name": "king", "supercategory": "pieces"}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 5], "area": 20, "iscrowd": 0},
                    {"id": 2, "image_id": 1, "category_id": 2, "bbox": [6, 6, 4, 4], "area": 16, "iscrowd": 0},
                    {"id": 3, "image_id": 2, "category_id": 1, "bbox": [0, 0, 8, 8], "area": 64, "iscrowd": 1},
                    {"id": 4, "image_id": 2, "category_id": 2, "bbox": [2.5, 0.5, 1, 1], "area": 1},
                    {"id": 5, "image_id": 3, "category_id": 0, "bbox": [0, 0, 1, 1], "area": 1,
                     "segmentation": [[0, 0, 1, 0, 1, 1]], "iscrowd": 0}],
}


def test_fuzz_coco_json(tmp_path, deadline):
    for n in ("a", "b", "c"):
        _image(tmp_path / f"{n}.png")
    ann = tmp_path / "instances.json"
    _fuzz("coco-json", N_COCO, ann, lambda rng: _json_mutant(rng, COCO), lambda: load_dataset(ann), tmp_path, deadline)


DATA_YAML = """# fuzzed dataset YAML
path: .
train: images
val: [images, list.txt]
test: list.csv
nc: 3
names:
  0: a
  1: "b c"
  2: d
format: yolo
"""


def test_fuzz_dataset_yaml(tmp_path, deadline):
    _image(tmp_path / "images" / "a.png")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text(YOLO_LABEL)
    (tmp_path / "list.txt").write_text("images/a.png\n")
    (tmp_path / "list.csv").write_text("filename,class\nimages/a.png,a\n")
    yaml = tmp_path / "data.yaml"
    _fuzz("dataset-yaml", N_YAML, yaml, lambda rng: _yaml_mutant(rng, DATA_YAML),
          lambda: load_dataset(yaml, "val"), tmp_path, deadline)


def test_mutants_are_seeded_and_varied():
    assert _text_mutant(random.Random(7), YOLO_LABEL) == _text_mutant(random.Random(7), YOLO_LABEL)
    rng = random.Random(1)
    assert len({_json_mutant(rng, COCO) for _ in range(50)}) > 40


def test_fuzz_image_headers(tmp_path, deadline):
    """Byte flips, 32-bit size-like words and truncation, mostly in the header: ``image_size`` and
    ``imread`` raise ImageReadError or succeed (Pillow's DecompressionBombError and OpenCV's cv2.error
    used to come out of them)."""
    from PIL import Image

    pixels = (np.arange(8 * 8 * 3) % 251).astype(np.uint8).reshape(8, 8, 3)
    bases = {}
    for fmt, suffix in (("PNG", ".png"), ("JPEG", ".jpg"), ("BMP", ".bmp"), ("TIFF", ".tif"), ("WEBP", ".webp"),
                        ("PPM", ".ppm")):
        path = tmp_path / f"base{suffix}"
        Image.fromarray(pixels).save(path, fmt)
        bases[suffix] = path.read_bytes()
    rng = random.Random(f"{SEED}-images")
    counts = {"size ok": 0, "size refused": 0, "read ok": 0, "read refused": 0, "read skipped": 0}
    failures: List[str] = []
    cv_log = getattr(cv2.utils, "logging", None)  # absent from OpenCV 4.5.4 (the oldest-versions lane)
    log_level = cv_log.getLogLevel() if cv_log else None
    if cv_log:
        cv_log.setLogLevel(cv_log.LOG_LEVEL_SILENT)  # libtiff/libpng complaints
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's "Tag data larger than file" and the like
            _mutate_images(rng, bases, tmp_path, counts, failures, deadline)
    finally:
        if cv_log:
            cv_log.setLogLevel(log_level)
    print(f"\nfuzz image-headers: {N_IMAGES} mutants; image_size {counts['size ok']} read, "
          f"{counts['size refused']} ImageReadError; imread {counts['read ok']} decoded, "
          f"{counts['read refused']} ImageReadError, {counts['read skipped']} not tried (large valid "
          f"header); {len(failures)} other")
    assert not failures, "; ".join(failures[:5])
    assert counts["size ok"] and counts["size refused"] and counts["read refused"]


def _mutate_images(rng: random.Random, bases: dict, tmp_path: Path, counts: dict, failures: List[str],
                   deadline) -> None:
    words = [b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x00\x00\x00\x00", b"\x80\x00\x00\x00",
             b"\x00\x01\x00\x00", b"\x00\x00\x80\x00"]
    for i in range(N_IMAGES):
        suffix = rng.choice(sorted(bases))
        data = bytearray(bases[suffix])
        for _ in range(rng.randint(1, 4)):
            op = rng.random()
            at = rng.randrange(min(len(data), 64) if rng.random() < 0.8 else len(data))
            if op < 0.5:
                data[at] = rng.randrange(256)
            elif op < 0.85:
                data[at:at + 4] = rng.choice(words)
            else:
                data = data[:max(1, at)]
        path = tmp_path / f"m{suffix}"
        path.unlink(missing_ok=True)
        path.write_bytes(bytes(data))
        size = None
        try:
            with deadline():
                size = image_size(path)
            counts["size ok"] += 1
        except ImageReadError:
            counts["size refused"] += 1
        except Exception as e:  # _Hang included
            failures.append(f"case {i} ({suffix}) image_size: {type(e).__name__}: {str(e)[:120]}")
        if size is not None and size[0] * size[1] > 1 << 22:
            counts["read skipped"] += 1  # a large valid claim: decoding it is legitimate work
            continue
        try:
            with deadline():
                imread(path)
            counts["read ok"] += 1
        except ImageReadError:
            counts["read refused"] += 1
        except Exception as e:
            failures.append(f"case {i} ({suffix}) imread: {type(e).__name__}: {str(e)[:120]}")
