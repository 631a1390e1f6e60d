"""Calibration images: sources, seeded class-balanced selection, batches made by THE preprocessing
(bitwise), padding, letterbox, digest, warnings and errors."""

import os
import random
import shutil

import cv2
import numpy as np
import pytest

from yolo4.calib.images import (
    MIN_RECOMMENDED_IMAGES,
    CalibrationSet,
    calibration_set,
    select_images,
)
from yolo4.data.images import imread
from yolo4.errors import DataError, ImageReadError, Yolo4Error, Yolo4Warning
from yolo4.model_info import ModelInfo
from yolo4.runtime.preprocess import PAD_VALUE, preprocess

HW = (64, 96)


def _info(letter_box=False, hw=HW):
    return ModelInfo(names=["a", "b"], input_hw=hw, letter_box=letter_box)


def _write_images(folder, n, start=0, ext=".png"):
    """``n`` small random images of varied sizes (PNG: lossless), named img000.png ..."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(start)
    paths = []
    for i in range(start, start + n):
        h, w = 20 + (i * 7) % 31, 24 + (i * 11) % 45
        p = folder / ("img%03d%s" % (i, ext))
        assert cv2.imwrite(str(p), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        paths.append(str(p))
    return paths


def _quiet(msg):
    pass


class Log(list):
    def __call__(self, msg):
        self.append(msg)

    def warnings(self):
        return [m for m in self if m.startswith("warning: ")]


# ---------------------------------------------------------------------------------------------------
# batches = preprocess() of the same images, bitwise; padding; letterbox
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("letter_box", [False, True])
def test_batches_are_the_one_preprocessing_bitwise(tmp_path, letter_box):
    paths = _write_images(tmp_path / "imgs", 5)
    cs = calibration_set(str(tmp_path / "imgs"), _info(letter_box), num_images=5, batch_size=2, log=_quiet)
    assert cs.paths == paths and cs.input_hw == HW and cs.letter_box is letter_box and cs.batch_size == 2
    assert len(cs) == 3 and cs.shape == (2, 3, 64, 96) and cs.batch_nbytes == 2 * 3 * 64 * 96 * 4
    short = list(cs.iter_batches(pad=False))
    assert [b.shape[0] for b in short] == [2, 2, 1]
    for k, b in enumerate(short):
        expected, _ = preprocess([imread(p) for p in paths[2 * k:2 * k + 2]], HW, letter_box)
        assert b.dtype == np.float32 and b.flags.c_contiguous and b.shape[1:] == (3, 64, 96)
        assert np.array_equal(b, expected)
    # pad=True (TensorRT): exactly batch_size images, the last batch repeats its own image
    padded = list(cs)
    assert [b.shape for b in padded] == [(2, 3, 64, 96)] * 3
    assert all(b.flags.c_contiguous and b.dtype == np.float32 for b in padded)
    assert np.array_equal(padded[0], short[0]) and np.array_equal(padded[1], short[1])
    assert np.array_equal(padded[2][0], short[2][0]) and np.array_equal(padded[2][1], short[2][0])
    assert 0.0 <= float(padded[0].min()) and float(padded[0].max()) <= 1.0


def test_padding_repeats_the_last_batch_images_in_order(tmp_path):
    paths = _write_images(tmp_path, 6)
    cs = CalibrationSet.from_paths(paths, _info(), batch_size=4)
    last = cs.batch(1, pad=True)
    singles = [preprocess([imread(p)], HW, False)[0][0] for p in paths[4:]]
    assert last.shape[0] == 4
    for j, k in enumerate([0, 1, 0, 1]):
        assert np.array_equal(last[j], singles[k])
    with pytest.raises(IndexError):
        cs.batch(2)


def test_letterbox_of_the_model_is_respected(tmp_path):
    # a wide image in a square input: letterbox pads top and bottom with exactly 0.5 grey
    p = tmp_path / "wide.png"
    cv2.imwrite(str(p), np.full((20, 80, 3), 200, np.uint8))
    lb = CalibrationSet.from_paths([str(p)], _info(True, (64, 64)), batch_size=1).batch(0)
    plain = CalibrationSet.from_paths([str(p)], _info(False, (64, 64)), batch_size=1).batch(0)
    assert np.all(lb[0, :, 0, :] == np.float32(PAD_VALUE)) and np.all(lb[0, :, -1, :] == np.float32(PAD_VALUE))
    assert np.allclose(plain, 200 / 255) and not np.array_equal(lb, plain)
    assert np.array_equal(lb, preprocess([imread(str(p))], (64, 64), True)[0])


def test_from_paths_takes_the_models_size_and_resize_mode(tmp_path):
    paths = _write_images(tmp_path, 3)
    cs = CalibrationSet.from_paths(paths, _info(True), batch_size=2, source="three test images")
    assert cs.letter_box is True and cs.input_hw == HW and len(cs) == 2
    assert cs.describe() == "3 images from three test images, 96x64 letterbox, batches of 2"
    assert CalibrationSet.from_paths(paths, (64, 64), letter_box=False).describe() == \
        "3 images, 64x64 plain resize, batches of 8"
    with pytest.raises(Yolo4Error, match="contradicts the model's resize mode"):
        CalibrationSet.from_paths(paths, _info(True), letter_box=False)
    with pytest.raises(Yolo4Error, match="letter_box is required"):
        CalibrationSet.from_paths(paths, (64, 64))
    with pytest.raises(ImageReadError, match="missing.png"):
        CalibrationSet.from_paths(paths + [str(tmp_path / "missing.png")], _info())
    with pytest.raises(Yolo4Error, match="batch size"):
        CalibrationSet.from_paths(paths, _info(), batch_size=0)
    with pytest.raises(DataError):
        CalibrationSet.from_paths([], _info())


# ---------------------------------------------------------------------------------------------------
# sources: folder, glob, .txt list, single image, dataset YAML
# ---------------------------------------------------------------------------------------------------

def test_glob_txt_list_and_single_image_sources(tmp_path, monkeypatch):
    paths = _write_images(tmp_path / "a", 4) + _write_images(tmp_path / "a" / "sub", 2, start=4, ext=".jpg")
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    # folder: recursive, sorted, images only
    assert select_images(str(tmp_path / "a"), log=_quiet) == sorted(paths)
    # glob
    assert select_images(str(tmp_path / "a" / "*.png"), log=_quiet) == paths[:4]
    assert select_images(str(tmp_path / "a" / "**" / "*.jpg"), log=_quiet) == paths[4:]
    # .txt list: relative to the list's folder, comments and blanks skipped, missing entries warned
    lst = tmp_path / "list.txt"
    lst.write_text("# calibration images\na/img001.png\n\n%s\na/nope.png\n" % paths[3])
    log = Log()
    assert select_images(str(lst), log=log) == [paths[1], paths[3]]
    assert any("list.txt:5: image not found: a/nope.png" in m for m in log.warnings())
    # relative to the working directory as a fallback
    monkeypatch.chdir(tmp_path / "a")
    lst2 = tmp_path / "a" / "sub" / "list2.txt"
    lst2.write_text("img000.png\n")
    assert select_images(str(lst2), log=_quiet) == [paths[0]]
    # a single image
    assert select_images(paths[2], log=_quiet) == [paths[2]]


def test_dataset_yaml_source_reads_the_split(tmp_path):
    _write_images(tmp_path / "ds" / "images" / "train", 3)
    _write_images(tmp_path / "ds" / "images" / "val", 2, start=10)
    (tmp_path / "ds" / "labels" / "train").mkdir(parents=True)
    (tmp_path / "ds" / "labels" / "train" / "img000.txt").write_text("1 0.5 0.5 0.2 0.2\n")
    y = tmp_path / "ds" / "data.yaml"
    y.write_text("train: images/train\nval: images/val\nnames: [a, b]\n")
    log = Log()
    cs = calibration_set(str(y), _info(), log=log)
    assert [os.path.basename(p) for p in cs.paths] == ["img000.png", "img001.png", "img002.png"]
    assert cs.describe().startswith("3 images from %s (train), 96x64 plain resize" % y)
    assert any("only 3 images" in m and "using all" in m for m in log)
    val = select_images(str(tmp_path / "ds"), split="val", log=_quiet)  # the dataset folder (data.yaml)
    assert [os.path.basename(p) for p in val] == ["img010.png", "img011.png"]


# ---------------------------------------------------------------------------------------------------
# selection: seeded, class-balanced
# ---------------------------------------------------------------------------------------------------

def test_selection_is_seeded_reproducible_and_in_source_order(tmp_path):
    _write_images(tmp_path, 30)
    a = select_images(str(tmp_path), num_images=10, seed=0, log=_quiet)
    b = select_images(str(tmp_path), num_images=10, seed=0, log=_quiet)
    c = select_images(str(tmp_path), num_images=10, seed=1, log=_quiet)
    assert a == b and a != c
    assert len(a) == len(set(a)) == 10 and a == sorted(a)


def _labelled_folder(tmp_path, n=40, rare=(1, 2, 3, 4, 5)):
    """YOLO layout: class 0 in every image, each rare class in exactly one image (no background)."""
    paths = _write_images(tmp_path / "images", n)
    (tmp_path / "labels").mkdir()
    for i, p in enumerate(paths):
        lines = ["0 0.5 0.5 0.2 0.2"]
        if i * 7 % n < len(rare):
            lines.append("%d 0.3 0.3 0.1 0.1" % rare[i * 7 % n])
        (tmp_path / "labels" / (os.path.splitext(os.path.basename(p))[0] + ".txt")).write_text("\n".join(lines))
    return paths


def _covered(paths, folder):
    out = set()
    for p in paths:
        txt = folder / "labels" / (os.path.splitext(os.path.basename(p))[0] + ".txt")
        out |= {int(line.split()[0]) for line in txt.read_text().splitlines() if line.strip()}
    return out


def test_class_balance_covers_every_class_where_random_does_not(tmp_path):
    paths = _labelled_folder(tmp_path)
    src = str(tmp_path / "images")
    for seed in range(10):
        chosen = select_images(src, num_images=8, seed=seed, log=_quiet)
        assert len(chosen) == 8 and _covered(chosen, tmp_path) == {0, 1, 2, 3, 4, 5}
    # a uniform sample of 8 of these 40 images covers all 6 classes only ~ C(35,3)/C(40,8) of the time
    random_cover = [len(_covered(random.Random(s).sample(paths, 8), tmp_path)) for s in range(10)]
    assert max(random_cover) < 6
    # the fill part keeps the selection seed-dependent
    assert select_images(src, 8, seed=0, log=_quiet) != select_images(src, 8, seed=1, log=_quiet)
    log = Log()
    select_images(src, 8, seed=0, log=log)
    assert any("class-balanced" in m and "covers 6 of the 6 classes present" in m for m in log)


def test_images_without_label_files_are_background_in_a_labelled_source(tmp_path):
    _labelled_folder(tmp_path, n=20)
    extra = _write_images(tmp_path / "images", 5, start=100)  # no label files
    chosen = select_images(str(tmp_path / "images"), num_images=24, seed=3, log=_quiet)
    assert len(chosen) == 24 and set(extra) - set(chosen) != set(extra)  # background images fill too


@pytest.mark.shared
def test_class_balance_on_coco128_covers_more_classes_than_random(shared_data):
    from yolo4.data.datasets import load_dataset

    ds = load_dataset("coco128", "train")
    classes = {r.path: set(r.classes.tolist()) for r in ds.records}
    present = set().union(*classes.values())

    def cover(paths):
        return len(set().union(*(classes[p] for p in paths)))

    log = Log()
    cs = calibration_set("coco128", _info(hw=(416, 416)), num_images=64, seed=0, log=log)
    assert len(cs.paths) == 64 and len(set(cs.paths)) == 64 and set(cs.paths) <= set(classes)
    assert cs.describe() == "64 images from coco128 (train), 416x416 plain resize, batches of 8"
    balanced = [cover(select_images("coco128", 64, seed=s, log=_quiet)) for s in range(5)]
    uniform = [cover(random.Random(s).sample(sorted(classes), 64)) for s in range(5)]
    assert min(balanced) == len(present)       # every class of coco128 covered by 64 images
    assert min(balanced) > max(uniform)        # a uniform sample misses some
    assert any("covers %d of the %d classes" % (len(present), len(present)) in m for m in log)
    # the plain image folder of the same data finds the YOLO labels beside it: the same selection
    folder = shared_data / "coco128" / "images" / "train2017"
    real = [os.path.realpath(p) for p in cs.paths]  # ../shared may be reached through a symlink
    assert [os.path.realpath(p) for p in select_images(str(folder), 64, seed=0, log=_quiet)] == real


# ---------------------------------------------------------------------------------------------------
# digest
# ---------------------------------------------------------------------------------------------------

def test_digest_follows_image_bytes_size_resize_mode_and_order_not_names(tmp_path):
    paths = _write_images(tmp_path / "a", 3)
    d = CalibrationSet.from_paths(paths, _info()).digest()
    assert len(d) == 64 and d == CalibrationSet.from_paths(paths, _info(), batch_size=1).digest()
    copies = [shutil.copy(p, str(tmp_path / ("copy%d.png" % i))) for i, p in enumerate(paths)]
    assert CalibrationSet.from_paths(copies, _info()).digest() == d           # same bytes, other names
    assert CalibrationSet.from_paths(paths, _info(True)).digest() != d        # letter_box
    assert CalibrationSet.from_paths(paths, _info(hw=(64, 64))).digest() != d  # input size
    assert CalibrationSet.from_paths(paths[::-1], _info()).digest() != d      # order
    data = bytearray(open(copies[1], "rb").read())
    data[-20] ^= 1
    with open(copies[1], "wb") as f:
        f.write(bytes(data))
    assert CalibrationSet.from_paths(copies, _info()).digest() != d           # one byte of one image


def test_digest_follows_the_preprocessing_version(tmp_path, monkeypatch):
    import yolo4.calib.images as images

    paths = _write_images(tmp_path, 2)
    d = CalibrationSet.from_paths(paths, _info()).digest()
    monkeypatch.setattr(images, "PREPROCESS_VERSION", "yolo4-preprocess-2")
    assert CalibrationSet.from_paths(paths, _info()).digest() != d


# ---------------------------------------------------------------------------------------------------
# warnings and errors
# ---------------------------------------------------------------------------------------------------

def test_fewer_than_200_images_warn(tmp_path):
    _write_images(tmp_path, 5)
    log = Log()
    select_images(str(tmp_path), num_images=500, log=log)
    assert any(m.startswith("only 5 images in ") and "asked for 500" in m for m in log)
    (w,) = log.warnings()
    assert "only 5 images" in w and "fewer than %d" % MIN_RECOMMENDED_IMAGES in w
    with pytest.warns(Yolo4Warning, match="fewer than 200"):
        select_images(str(tmp_path), num_images=3, log=None)


def test_no_images_or_unreadable_source_is_one_line_data_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "a.txt").write_text("x")
    for src in (tmp_path / "empty", tmp_path / "text", tmp_path / "none" / "*.jpg"):
        with pytest.raises(DataError, match="no calibration images found") as e:
            select_images(str(src), log=_quiet)
        assert str(src) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(DataError, match="calibration source not found") as e:
        select_images(str(tmp_path / "missing"), log=_quiet)
    assert str(tmp_path / "missing") in str(e.value)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DataError, match="cannot read image list"):
        select_images(str(bad), log=_quiet)
    (tmp_path / "model.bin").write_bytes(b"x")
    with pytest.raises(DataError, match="not a calibration source"):
        select_images(str(tmp_path / "model.bin"), log=_quiet)
    with pytest.raises(Yolo4Error, match="positive integer"):
        select_images(str(tmp_path), num_images=0, log=_quiet)


def test_corrupt_image_fails_at_iteration_naming_the_file(tmp_path):
    paths = _write_images(tmp_path, 4)
    with open(paths[2], "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n not really")
    cs = CalibrationSet.from_paths(paths, _info(), batch_size=2)
    it = iter(cs)
    assert next(it).shape == (2, 3, 64, 96)
    with pytest.raises(ImageReadError) as e:
        next(it)
    assert paths[2] in str(e.value) and isinstance(e.value, Yolo4Error)
