"""load_dataset on small synthetic datasets: YOLO txt, COCO json, VOC xml, YAML rules, bad labels."""

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from yolo4.data import label_path, load_dataset
from yolo4.errors import DataError

W, H = 64, 48


def _image(path: Path, w: int = W, h: int = H) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((h, w, 3), 127, np.uint8))
    return path


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _yolo_set(root: Path, yaml_extra: str = "names: [a, b]\n") -> Path:
    """images/{train,val}, labels/{train,val}; returns the yaml."""
    _image(root / "images" / "train" / "t1.png")
    _write(root / "labels" / "train" / "t1.txt", "0 0.5 0.5 0.5 0.5\n")
    _image(root / "images" / "val" / "v1.png")
    _write(root / "labels" / "val" / "v1.txt", "1 0.25 0.5 0.5 1.0\n")
    return _write(root / "data.yaml", "path: .\ntrain: images/train\nval: images/val\n" + yaml_extra)


def _by_name(split):
    return {os.path.basename(r.path): r for r in split.records}


# ------------------------------------------------------------------------------------------------
# YOLO txt


def test_yolo_boxes_background_and_orphans(tmp_path):
    yaml = _yolo_set(tmp_path)
    _image(tmp_path / "images" / "val" / "v2_background.png")
    _write(tmp_path / "labels" / "val" / "v3_orphan.txt", "0 0.5 0.5 0.1 0.1\n")  # no image: ignored
    _image(tmp_path / "images" / "val" / "v4_empty.png")
    _write(tmp_path / "labels" / "val" / "v4_empty.txt", "\n")
    split = load_dataset(yaml)
    assert split.names == ["a", "b"] and split.warnings == []
    recs = _by_name(split)
    assert sorted(recs) == ["v1.png", "v2_background.png", "v4_empty.png"]
    v1 = recs["v1.png"]
    assert (v1.width, v1.height) == (W, H)
    np.testing.assert_allclose(v1.boxes, [[0.0, 0.0, 32.0, 48.0]])
    assert v1.classes.tolist() == [1]
    assert recs["v2_background.png"].boxes.shape == (0, 4) and recs["v4_empty.png"].boxes.shape == (0, 4)
    assert [r.image_id for r in split.records] == [1, 2, 3]
    assert load_dataset(yaml, "train").records[0].classes.tolist() == [0]


def test_bad_yolo_labels_are_skipped_and_reported_with_file_and_line(tmp_path):
    yaml = _yolo_set(tmp_path)
    lines = [
        "0 0.5 0.5 0.25 0.25",          # 1 ok
        "85 0.5 0.5 0.2 0.2",           # 2 class out of range
        "0 1.2 0.5 0.2 0.2",            # 3 outside [0,1]
        "0 0.5 0.5 0 0.2",              # 4 zero width
        "0 0.5 0.5 0.2",                # 5 too few values
        "x 0.5 0.5 0.2 0.2",            # 6 not numbers
        "",                             # 7 blank: ignored
        "1 0.5 0.5 0.5 0.5",            # 8 ok
        "0.5 0.5 0.5 0.2 0.2",          # 9 class not an integer
        "-1 0.5 0.5 0.2 0.2",           # 10 negative class
        "0 0.5 0.5 nan 0.2",            # 11 not finite
        "0 0.5 0.5 -0.2 0.2",           # 12 negative width (also outside [0,1])
        "0 0.9 0.5 0.2000005 0.2",      # 13 ok: right edge 1.00000025, rounding -> clipped
        "1 0.1 0.1 0.4 0.1 0.4 0.3",    # 14 ok: polygon -> its bounding box
        "0 0.5 0.5 0.2 0.2 0.9",        # 15 six values
        "0 0.9999995 0.5 0.5 0.5",      # 16 ok: corners beyond the border are clipped
    ]
    _write(tmp_path / "labels" / "val" / "v1.txt", "\n".join(lines) + "\n")
    split = load_dataset(yaml)
    f = "labels/val/v1.txt"
    expected = {
        2: "class id 85 out of range 0..1",
        3: "coordinates outside [0,1]: 1.2 0.5 0.2 0.2",
        4: "zero or negative box size (w=0 h=0.2)",
        5: "malformed line: 4 values",
        6: "malformed line (expected 'class cx cy w h' numbers): x 0.5 0.5 0.2 0.2",
        9: "class id 0.5 is not a non-negative integer",
        10: "class id -1 is not a non-negative integer",
        11: "non-finite coordinate",
        12: "coordinates outside [0,1]",
        15: "malformed line: 6 values",
    }
    assert len(split.warnings) == len(expected)
    for warning, (line, text) in zip(split.warnings, sorted(expected.items())):
        assert warning.startswith(f"{f}:{line}: {text}"), (warning, line, text)
    rec = _by_name(split)["v1.png"]
    np.testing.assert_allclose(rec.boxes, [
        [24, 18, 40, 30],
        [16, 12, 48, 36],
        [(0.9 - 0.2000005 / 2) * W, 0.4 * H, W, 0.6 * H],
        [0.1 * W, 0.1 * H, 0.4 * W, 0.3 * H],
        [(0.9999995 - 0.25) * W, 0.25 * H, W, 0.75 * H],
    ], rtol=1e-5)
    assert rec.classes.tolist() == [0, 1, 0, 1, 0]


def test_coordinate_tolerance_is_one_millionth(tmp_path):
    yaml = _yolo_set(tmp_path)
    _write(tmp_path / "labels" / "val" / "v1.txt", "0 0.5 0.5 1.0000009 0.5\n0 0.5 0.5 1.000002 0.5\n")
    split = load_dataset(yaml)
    assert len(_by_name(split)["v1.png"].boxes) == 1
    assert split.warnings == ["labels/val/v1.txt:2: coordinates outside [0,1]: 0.5 0.5 1 0.5"]


def test_unreadable_label_file_is_a_data_error(tmp_path):
    yaml = _yolo_set(tmp_path)
    bad = tmp_path / "labels" / "val" / "v1.txt"
    bad.write_bytes(b"0 0.5 \xff\xfe 0.5\n")
    with pytest.raises(DataError) as info:
        load_dataset(yaml)
    assert str(bad) in str(info.value)


def test_corrupt_image_is_skipped_with_a_warning(tmp_path):
    yaml = _yolo_set(tmp_path)
    _write(tmp_path / "images" / "val" / "broken.jpg", "not an image")
    split = load_dataset(yaml)
    assert sorted(_by_name(split)) == ["v1.png"]
    assert len(split.warnings) == 1 and split.warnings[0].startswith("images/val/broken.jpg: ")


def test_label_path_rule():
    sep = os.sep
    assert label_path(f"{sep}d{sep}images{sep}x{sep}images{sep}a.b.jpg") == f"{sep}d{sep}images{sep}x{sep}labels{sep}a.b.txt"
    assert label_path(f"{sep}d{sep}JPEGImages{sep}a.png") == f"{sep}d{sep}labels{sep}a.txt"
    assert label_path(f"{sep}d{sep}pics{sep}a.jpg") == f"{sep}d{sep}pics{sep}a.txt"


# ------------------------------------------------------------------------------------------------
# YAML conventions


def test_names_dict_and_nc(tmp_path):
    yaml = _yolo_set(tmp_path, "nc: 2\nnames:\n  1: dog\n  0: cat\n")
    assert load_dataset(yaml).names == ["cat", "dog"]


def test_names_dict_with_a_gap_is_an_error_with_yaml_line(tmp_path):
    yaml = _yolo_set(tmp_path, "names:\n  0: cat\n  2: dog\n")
    with pytest.raises(DataError) as info:
        load_dataset(yaml)
    assert f"{yaml}:4: names dict ids must be 0..1 without gaps" in str(info.value)


def test_nc_mismatch_and_missing_names(tmp_path):
    yaml = _yolo_set(tmp_path, "nc: 3\nnames: [a, b]\n")
    with pytest.raises(DataError, match="nc is 3 but names has 2"):
        load_dataset(yaml)
    yaml = _yolo_set(tmp_path, "")
    with pytest.raises(DataError, match="names"):
        load_dataset(yaml)


def test_env_vars_in_path_and_relative_to_the_yaml(tmp_path, monkeypatch):
    _yolo_set(tmp_path / "store" / "set1")
    yaml = _write(tmp_path / "cfg" / "ds.yaml", "path: ${DATA_HOME}/set1\ntrain: images/train\n"
                  "val: images/val\nnames: [a, b]\n")
    monkeypatch.setenv("DATA_HOME", str(tmp_path / "store"))
    monkeypatch.chdir(tmp_path)
    split = load_dataset(yaml)
    assert split.records[0].path == str(tmp_path / "store" / "set1" / "images" / "val" / "v1.png")
    rel = _write(tmp_path / "cfg" / "rel.yaml", "path: ../store/set1\ntrain: images/train\nval: images/val\n"
                 "names: [a, b]\n")
    monkeypatch.chdir(tmp_path / "store")  # the cwd does not matter
    assert load_dataset(rel).records[0].path == split.records[0].path
    monkeypatch.delenv("DATA_HOME")
    with pytest.raises(DataError) as info:
        load_dataset(yaml)
    assert f"{yaml}:1: 'path' uses ${{DATA_HOME}}, which is not set" in str(info.value)


def test_txt_list_split_and_list_of_entries(tmp_path):
    _yolo_set(tmp_path, "")
    _write(tmp_path / "val.txt", "./images/val/v1.png\n\n{}\nimages/val/missing.png\n".format(
        tmp_path / "images" / "train" / "t1.png"))
    yaml = _write(tmp_path / "list.yaml", "train: [images/train, images/val]\nval: val.txt\nnames: [a, b]\n")
    val = load_dataset(yaml)
    assert [os.path.basename(r.path) for r in val.records] == ["v1.png", "t1.png"]
    assert val.warnings == ["val.txt:4: image not found: images/val/missing.png"]
    train = load_dataset(yaml, "train")
    assert [os.path.basename(r.path) for r in train.records] == ["t1.png", "v1.png"]


def test_missing_split_entry_and_bad_yaml(tmp_path):
    yaml = _yolo_set(tmp_path)
    with pytest.raises(DataError, match="no 'test' split \\(has: train, val\\)"):
        load_dataset(yaml, "test")
    gone = _write(tmp_path / "gone.yaml", "train: images/train\nval: images/nowhere\nnames: [a]\n")
    with pytest.raises(DataError) as info:
        load_dataset(gone)
    assert f"{gone}:2: val entry not found" in str(info.value)
    broken = _write(tmp_path / "broken.yaml", "train: images/train\nval: [unclosed\nnames: [a]\n")
    with pytest.raises(DataError) as info:
        load_dataset(broken)
    assert str(info.value).startswith(f"{broken}:") and "invalid YAML" in str(info.value)
    fmt = _write(tmp_path / "fmt.yaml", "val: images/val\nnames: [a]\nformat: kitti\n")
    with pytest.raises(DataError, match="format 'kitti' is not one of yolo, coco, voc"):
        load_dataset(fmt)
    with pytest.raises(DataError, match="dataset not found"):
        load_dataset(tmp_path / "nothing-here")


# ------------------------------------------------------------------------------------------------
# COCO json


def _coco_set(root: Path) -> Path:
    _image(root / "images" / "val2017" / "a.jpg")
    _image(root / "images" / "val2017" / "b.jpg", 80, 60)
    _image(root / "images" / "val2017" / "c.jpg")
    data = {
        "images": [
            {"id": 42, "file_name": "a.jpg", "width": W, "height": H},
            {"id": 7, "file_name": "b.jpg"},  # no size: read from the file header
            {"id": 9, "file_name": "c.jpg", "width": W, "height": H},  # no annotation: background
            {"id": 5, "file_name": "gone.jpg", "width": W, "height": H},
        ],
        "categories": [{"id": 9, "name": "nine"}, {"id": 2, "name": "two"}, {"id": 5, "name": "five"}],
        "annotations": [
            {"id": 1, "image_id": 42, "category_id": 5, "bbox": [10, 20, 30, 20], "iscrowd": 0},
            {"id": 2, "image_id": 42, "category_id": 9, "bbox": [50, 40, 30, 30], "iscrowd": 0},  # clipped
            {"id": 3, "image_id": 7, "category_id": 2, "bbox": [0, 0, 80, 60]},
            {"id": 4, "image_id": 42, "category_id": 2, "bbox": [1, 1, 5, 5], "iscrowd": 1},
            {"id": 5, "image_id": 42, "category_id": 77, "bbox": [1, 1, 5, 5]},
            {"id": 6, "image_id": 1234, "category_id": 2, "bbox": [1, 1, 5, 5]},
            {"id": 7, "image_id": 42, "category_id": 2, "bbox": [1, 1, 0, 5]},
            {"id": 8, "image_id": 5, "category_id": 2, "bbox": [1, 1, 5, 5]},  # image file missing
            {"id": 9, "image_id": 42, "category_id": 2, "bbox": [70, 1, 5, 5]},  # right of the image
        ],
    }
    return _write(root / "annotations" / "instances_val2017.json", json.dumps(data, indent=1))


def test_coco_json(tmp_path):
    ann = _coco_set(tmp_path)
    yaml = _write(tmp_path / "coco.yaml", "path: .\nval: annotations/instances_val2017.json\n")
    split = load_dataset(yaml)
    assert split.names == ["two", "five", "nine"]  # categories sorted by id -> 0..K-1
    recs = _by_name(split)
    assert sorted(recs) == ["a.jpg", "b.jpg", "c.jpg"]
    a, b, c = recs["a.jpg"], recs["b.jpg"], recs["c.jpg"]
    assert (a.image_id, b.image_id, c.image_id) == (42, 7, 9)
    np.testing.assert_allclose(a.boxes, [[10, 20, 40, 40], [50, 40, W, H]])
    assert a.classes.tolist() == [1, 2]
    assert (b.width, b.height) == (80, 60) and b.classes.tolist() == [0]
    assert c.boxes.shape == (0, 4)
    f = "annotations/instances_val2017.json"
    assert split.warnings == [
        f"{f}: image id 5: file not found: gone.jpg; skipped",
        f"{f}: annotation id 5: unknown category_id 77; skipped",
        f"{f}: annotation id 6: unknown image_id 1234; skipped",
        f"{f}: annotation id 7: zero or negative box size (w=0 h=5); skipped",
        f"{f}: annotation id 9: box lies outside the 64x48 image; skipped",
        f"{f}: 1 crowd annotation(s) (iscrowd=1) skipped",
    ]
    direct = load_dataset(ann)  # the json itself as spec
    assert [r.path for r in direct.records] == [r.path for r in split.records]


def test_coco_errors(tmp_path):
    ann = _coco_set(tmp_path)
    yaml = _write(tmp_path / "coco.yaml", "val: annotations/instances_val2017.json\nnames: [x, y]\n")
    with pytest.raises(DataError, match="names has 2 entries but the COCO json has 3 categories"):
        load_dataset(yaml)
    ann.write_text('{"images": [],\n "categories": [}\n')
    with pytest.raises(DataError) as info:
        load_dataset(ann)
    assert str(info.value).startswith(f"{ann}:2: invalid JSON")
    ann.write_text("[1, 2]")
    with pytest.raises(DataError, match="not a COCO detection json"):
        load_dataset(ann)


# ------------------------------------------------------------------------------------------------
# Pascal VOC xml


def _voc_xml(filename: str, objects: str, size: bool = True) -> str:
    size_xml = f"<size><width>{W}</width><height>{H}</height><depth>3</depth></size>" if size else ""
    return f"<annotation>\n<filename>{filename}</filename>\n{size_xml}\n{objects}</annotation>\n"


def _obj(name: str, box, difficult: int = 0) -> str:
    xmin, ymin, xmax, ymax = box
    return (f"<object>\n<name>{name}</name>\n<difficult>{difficult}</difficult>\n<bndbox>\n"
            f"<xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax>\n</bndbox>\n</object>\n")


def _voc_set(root: Path) -> None:
    _image(root / "images" / "p1.jpg")
    _image(root / "images" / "p2.jpg")
    _image(root / "images" / "p3.jpg")  # no xml: background
    _write(root / "annotations" / "p1.xml", _voc_xml("p1.jpg", _obj("zebra", (11, 21, 41, 61))
                                                     + _obj("ant", (1, 1, 10, 10), difficult=1)))
    _write(root / "annotations" / "p2.xml", _voc_xml("p2.jpg", _obj("moth", (5, 5, 20, 20)), size=False))
    _write(root / "annotations" / "other.xml", _voc_xml("zz.jpg", _obj("yak", (5, 5, 20, 20))))
    _write(root / "splits" / "val.csv", "filename,width,height,class,xmin,ymin,xmax,ymax\n"
           "p1.jpg,64,48,zebra,11,21,41,61\np1.jpg,64,48,ant,1,1,10,10\np2.jpg,64,48,moth,5,5,20,20\n"
           "p3.jpg,64,48,,,,,\nmissing.jpg,64,48,x,1,1,2,2\n")


def test_voc_with_collected_names_and_csv_split(tmp_path):
    _voc_set(tmp_path)
    yaml = _write(tmp_path / "voc.yaml", "val: splits/val.csv\nformat: voc\n")
    split = load_dataset(yaml)
    assert split.names == ["ant", "moth", "yak", "zebra"]  # every xml of the folder, sorted
    recs = _by_name(split)
    assert list(recs) == ["p1.jpg", "p2.jpg", "p3.jpg"]  # csv order, one record per image
    p1 = recs["p1.jpg"]
    # 1-based VOC pixel indices -> 0-based (darknet voc_label.py), clipped to the image; difficult kept
    np.testing.assert_allclose(p1.boxes, [[10, 20, 40, H], [0, 0, 9, 9]])
    assert p1.classes.tolist() == [3, 0]
    assert (recs["p2.jpg"].width, recs["p2.jpg"].height) == (W, H)  # no <size>: from the image
    assert recs["p3.jpg"].boxes.shape == (0, 4)
    assert split.warnings == ["splits/val.csv:6: image not found: missing.jpg"]


def test_voc_bad_objects_are_reported_with_xml_lines(tmp_path):
    _voc_set(tmp_path)
    _write(tmp_path / "annotations" / "p1.xml", _voc_xml(
        "p1.jpg", _obj("zebra", (11, 21, 41, 61)) + _obj("cow", (1, 1, 9, 9)) + _obj("ant", (30, 5, 20, 9))
        + "<object>\n<name>ant</name>\n</object>\n" + _obj("ant", (1, "x", 5, 5))))
    yaml = _write(tmp_path / "voc.yaml", "val: images\nnames: [ant, zebra]\n")
    split = load_dataset(yaml)
    assert split.warnings == [
        "annotations/p1.xml:11: class 'cow' not in names",
        "annotations/p1.xml:21: zero or negative box size (xmin=30 ymin=5 xmax=20 ymax=9)",
        "annotations/p1.xml:25: object 'ant' has no <bndbox>",
        "annotations/p1.xml:31: malformed <bndbox> (xmin, ymin, xmax, ymax must be numbers)",
        "annotations/p2.xml:4: class 'moth' not in names",
    ]
    assert _by_name(split)["p1.jpg"].classes.tolist() == [1]
    assert _by_name(split)["p2.jpg"].boxes.shape == (0, 4)


def test_voc_malformed_xml_is_a_data_error_with_line(tmp_path):
    _voc_set(tmp_path)
    bad = _write(tmp_path / "annotations" / "p2.xml", "<annotation>\n<object>\n</annotation>\n")
    with pytest.raises(DataError) as info:
        load_dataset(_write(tmp_path / "voc.yaml", "val: images\nnames: [ant]\nformat: voc\n"))
    assert str(info.value).startswith(f"{bad}:3: malformed XML")


def test_voc_folder_with_and_without_imagesets(tmp_path):
    _voc_set(tmp_path)
    everything = load_dataset(tmp_path, "train")  # no split lists: every image
    assert [os.path.basename(r.path) for r in everything.records] == ["p1.jpg", "p2.jpg", "p3.jpg"]
    _write(tmp_path / "ImageSets" / "Main" / "val.txt", "p2\np1\n")
    _write(tmp_path / "ImageSets" / "Main" / "zebra_val.txt", "p2 -1\np1  1\n")
    split = load_dataset(tmp_path, "val")
    assert [os.path.basename(r.path) for r in split.records] == ["p2.jpg", "p1.jpg"]
    with pytest.raises(DataError, match="no train.txt in ImageSets/Main \\(has: val\\)"):
        load_dataset(tmp_path, "train")


def test_roboflow_coco_export_folder(tmp_path):
    _image(tmp_path / "valid" / "a.jpg")
    _write(tmp_path / "valid" / "_annotations.coco.json", json.dumps({
        "images": [{"id": 0, "file_name": "a.jpg", "width": W, "height": H}],
        "categories": [{"id": 0, "name": "pieces"}, {"id": 1, "name": "pawn"}],
        "annotations": [{"id": 0, "image_id": 0, "category_id": 1, "bbox": [1, 2, 3, 4], "iscrowd": 0}]}))
    split = load_dataset(tmp_path, "val")  # "valid" stands for "val"
    assert split.names == ["pieces", "pawn"] and split.records[0].image_id == 0
    np.testing.assert_allclose(split.records[0].boxes, [[1, 2, 4, 6]])
    with pytest.raises(DataError, match="no 'test' split in this COCO export \\(has: valid\\)"):
        load_dataset(tmp_path, "test")


def test_csv_without_filename_column(tmp_path):
    _voc_set(tmp_path)
    _write(tmp_path / "splits" / "bad.csv", "image,xmin\np1.jpg,1\n")
    with pytest.raises(DataError) as info:
        load_dataset(_write(tmp_path / "voc.yaml", "val: splits/bad.csv\nformat: voc\n"))
    assert "bad.csv:1: csv has no 'filename' column" in str(info.value)
