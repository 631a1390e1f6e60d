"""Malformed values in dataset files: a skipped label/image with a ``file:line: problem`` warning, or a
DataError for a file unusable as a whole; never a raw Python error, never a silently wrong value."""

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from yolo4.data import load_dataset
from yolo4.errors import DataError

W, H = 64, 48


def _image(path: Path, w: int = W, h: int = H) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.zeros((h, w, 3), np.uint8))
    return path


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    return path


def _check_one_line(split):
    for w in split.warnings:
        assert "\n" not in w and "\r" not in w and w.isprintable(), w


# ------------------------------------------------------------------------------------------------
# YOLO txt


@pytest.fixture
def yolo(tmp_path):
    """A YOLO set with one 64x48 image and 11 classes; returns (yaml, label file)."""
    _image(tmp_path / "images" / "a.png")
    names = ", ".join("c%d" % i for i in range(11))
    yaml = _write(tmp_path / "data.yaml", f"path: .\nval: images\nnames: [{names}]\n")
    return yaml, tmp_path / "labels" / "a.txt"


@pytest.mark.parametrize("line", [
    "1_0 0.5 0.5 0.2 0.2",          # Python's float()/int() read "1_0" as 10
    "0 0.5 0.5 0.2_5 0.2",          # ... and this width as 0.25
    "\u0661 0.5 0.5 0.2 0.2",       # ARABIC-INDIC DIGIT ONE: float() reads 1
    "\uff11 0.5 0.5 0.2 0.2",       # FULLWIDTH DIGIT ONE
    "0 0.5 0.5 0.2 0x1",            # not decimal
])
def test_yolo_python_only_number_spellings_are_malformed_lines(yolo, line):
    yaml, label = yolo
    _write(label, line + "\n")
    split = load_dataset(yaml)
    assert split.records[0].boxes.shape == (0, 4)
    assert split.warnings == [f"labels/a.txt:1: malformed line (expected 'class cx cy w h' numbers): {line}"]


@pytest.mark.parametrize("cls", ["-0", "1e0", "+1", "0.5"])
def test_yolo_class_id_must_be_written_as_digits(yolo, cls):
    yaml, label = yolo
    _write(label, f"{cls} 0.5 0.5 0.2 0.2\n3.0 0.5 0.5 0.5 0.5\n")  # "3.0" is an integer, kept
    split = load_dataset(yaml)
    assert split.warnings == [f"labels/a.txt:1: class id {cls} is not a non-negative integer"]
    assert split.records[0].classes.tolist() == [3]


def test_yolo_huge_class_id_is_out_of_range(yolo):
    yaml, label = yolo
    _write(label, "9" * 5000 + " 0.5 0.5 0.2 0.2\n00000000000000000000000000007 0.5 0.5 0.2 0.2\n")
    split = load_dataset(yaml)
    assert len(split.warnings) == 1
    assert split.warnings[0].startswith("labels/a.txt:1: class id 999") and "out of range 0..10" in split.warnings[0]
    assert len(split.warnings[0]) < 200
    assert split.records[0].classes.tolist() == [7]


def test_yolo_box_that_collapses_in_float32_is_skipped(yolo):
    yaml, label = yolo
    # w = 1e-9 of 64 px: x1 = 32 - 3.2e-8, x2 = 32 + 3.2e-8 differ as float64, both are 32.0 in float32.
    _write(label, "0 0.5 0.5 1e-9 0.5\n1 0.5 0.5 0.25 0.5\n")
    split = load_dataset(yaml)
    rec = split.records[0]
    np.testing.assert_array_equal(rec.boxes, [[24, 12, 40, 36]])
    assert rec.classes.tolist() == [1]
    assert len(split.warnings) == 1 and split.warnings[0].startswith("labels/a.txt:1: box too small")


def test_yolo_negative_zero_is_stored_as_zero(yolo):
    yaml, label = yolo
    _write(label, "0 -0 -0 0.5 -0 0.5 0.5\n")  # polygon (-0,-0) (0.5,-0) (0.5,0.5)
    split = load_dataset(yaml)
    boxes = split.records[0].boxes
    np.testing.assert_array_equal(boxes, [[0, 0, 32, 24]])
    assert not np.signbit(boxes).any()


def test_yolo_line_numbers_count_newlines_only(yolo):
    yaml, label = yolo
    # A form feed and a Unicode line separator are whitespace inside a line for editors (and for
    # darknet's fscanf), not line breaks: the bad box is on line 2.
    _write(label, "0 0.5 0.5 0.2 0.2\x0c\u2028\n85 0.5 0.5 0.2 0.2\n")
    split = load_dataset(yaml)
    assert split.warnings == ["labels/a.txt:2: class id 85 out of range 0..10"]
    assert split.records[0].classes.tolist() == [0]


def test_yolo_warning_about_a_line_with_control_characters_is_one_line(yolo):
    yaml, label = yolo
    _write(label, "0 0.5\x00 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\x1b[2J\n")
    split = load_dataset(yaml)
    assert len(split.warnings) == 2
    _check_one_line(split)


# ------------------------------------------------------------------------------------------------
# COCO json


def _coco(root: Path, **edit) -> dict:
    _image(root / "a.jpg")
    _image(root / "b.jpg", 80, 60)
    return {
        "images": [{"id": 1, "file_name": "a.jpg", "width": W, "height": H},
                   {"id": 2, "file_name": "b.jpg", "width": 80, "height": 60}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [{"id": 10, "image_id": 1, "category_id": 2, "bbox": [1, 2, 10, 20]},
                        {"id": 11, "image_id": 2, "category_id": 1, "bbox": [5, 5, 10, 10]}],
    }


def _load_coco(root: Path, data=None, text=None):
    ann = _write(root / "ann.json", text if text is not None else json.dumps(data))
    return load_dataset(ann)


def _by_id(split):
    return {r.image_id: r for r in split.records}


@pytest.mark.parametrize("width", ["1e999", "-1e999", "Infinity", "NaN", "1" + "0" * 400, "1e300", "-5", "64.5",
                                   '"64"', "[64]", "true", str((1 << 20) + 1)])
def test_coco_unusable_width_is_read_from_the_image_with_a_warning(tmp_path, width):
    data = _coco(tmp_path)
    text = json.dumps(data).replace('"width": 64', '"width": ' + width, 1)
    split = _load_coco(tmp_path, text=text)
    a = _by_id(split)[1]
    assert (a.width, a.height) == (W, H)  # the real size of a.jpg
    np.testing.assert_array_equal(a.boxes, [[1, 2, 11, 22]])
    assert len(split.warnings) == 1
    assert split.warnings[0].startswith("ann.json: image id 1: width ")
    assert split.warnings[0].endswith("is not a usable image size; size read from the image")


@pytest.mark.parametrize("width", ["null", "0", "64.0"])
def test_coco_absent_zero_or_integral_width_is_silent(tmp_path, width):
    data = _coco(tmp_path)
    text = json.dumps(data).replace('"width": 64', '"width": ' + width, 1)
    split = _load_coco(tmp_path, text=text)
    assert (_by_id(split)[1].width, _by_id(split)[1].height) == (W, H) and split.warnings == []


@pytest.mark.parametrize("image_id", ["1e999", "Infinity", "NaN", "1.5", "true", "[1]", "{}", '"1_0"',
                                      str(1 << 63)])
def test_coco_bad_image_id_skips_the_image(tmp_path, image_id):
    data = _coco(tmp_path)
    text = json.dumps(data).replace('{"id": 1, "file_name"', '{"id": %s, "file_name"' % image_id, 1)
    split = _load_coco(tmp_path, text=text)
    assert list(_by_id(split)) == [2]
    assert split.warnings == ["ann.json: images[0]: needs an integer 'id' and a 'file_name'; skipped",
                              "ann.json: annotation id 10: unknown image_id 1; skipped"]


@pytest.mark.parametrize("value", [[1], {}, None, True, 1.5, "x"])
def test_coco_bad_annotation_image_id_skips_the_annotation(tmp_path, value):
    data = _coco(tmp_path)
    data["annotations"][0]["image_id"] = value
    split = _load_coco(tmp_path, data)
    assert _by_id(split)[1].boxes.shape == (0, 4) and _by_id(split)[2].classes.tolist() == [0]
    assert len(split.warnings) == 1
    assert split.warnings[0].startswith("ann.json: annotation id 10: image_id ")
    assert split.warnings[0].endswith("is not an integer; skipped")


@pytest.mark.parametrize("value", [[2], {}, None, True, 2.5, "two"])
def test_coco_bad_category_id_skips_the_annotation(tmp_path, value):
    data = _coco(tmp_path)
    data["annotations"][0]["category_id"] = value
    split = _load_coco(tmp_path, data)
    assert _by_id(split)[1].boxes.shape == (0, 4)
    assert len(split.warnings) == 1
    assert split.warnings[0].startswith("ann.json: annotation id 10: unknown category_id ")


def test_coco_integral_float_and_digit_string_ids_are_those_integers(tmp_path):
    data = _coco(tmp_path)
    data["images"][0]["id"] = "1"
    data["annotations"][0]["image_id"] = 1.0
    data["annotations"][0]["category_id"] = "2"
    split = _load_coco(tmp_path, data)
    assert split.warnings == []
    a = _by_id(split)[1]
    assert a.classes.tolist() == [1] and isinstance(a.image_id, int)


@pytest.mark.parametrize("cat_id", ["1.5", "true", "[1]", "Infinity", "NaN", "1e999", "null", "2"])
def test_coco_bad_or_duplicate_category_id_is_a_data_error(tmp_path, cat_id):
    data = _coco(tmp_path)
    text = json.dumps(data).replace('{"id": 1, "name": "cat"}', '{"id": %s, "name": "cat"}' % cat_id)
    with pytest.raises(DataError) as info:
        _load_coco(tmp_path, text=text)
    msg = str(info.value)
    assert msg.startswith(str(tmp_path / "ann.json") + ": categories[") and "\n" not in msg


@pytest.mark.parametrize("name", [None, True, [], "", "  ", "a\nb", "tab\there"])
def test_coco_bad_category_name_is_a_data_error(tmp_path, name):
    data = _coco(tmp_path)
    data["categories"][1]["name"] = name
    with pytest.raises(DataError, match=r"categories\[1\] \(id 2\): class name"):
        _load_coco(tmp_path, data)


def test_coco_bbox_with_a_huge_integer_is_skipped(tmp_path):
    data = _coco(tmp_path)
    data["annotations"][0]["bbox"] = [1, 2, 10 ** 400, 20]  # math.isfinite(10**400) raises OverflowError
    split = _load_coco(tmp_path, data)
    assert split.warnings == ["ann.json: annotation id 10: bbox must be 4 finite numbers [x, y, w, h]; skipped"]


def test_coco_box_that_collapses_in_float32_is_skipped(tmp_path):
    data = _coco(tmp_path)
    data["annotations"][0]["bbox"] = [30, 2, 1e-9, 20]
    split = _load_coco(tmp_path, data)
    assert _by_id(split)[1].boxes.shape == (0, 4)
    assert len(split.warnings) == 1 and split.warnings[0].startswith("ann.json: annotation id 10: box too small")


@pytest.mark.parametrize("iscrowd, crowd", [(0, False), (None, False), (False, False), (1, True), (True, True)])
def test_coco_iscrowd_values(tmp_path, iscrowd, crowd):
    data = _coco(tmp_path)
    data["annotations"][0]["iscrowd"] = iscrowd
    split = _load_coco(tmp_path, data)
    assert len(_by_id(split)[1].boxes) == (0 if crowd else 1)
    assert split.warnings == (["ann.json: 1 crowd annotation(s) (iscrowd=1) skipped"] if crowd else [])


@pytest.mark.parametrize("iscrowd", ["0", "1", 2, [], {}, 0.5])
def test_coco_other_iscrowd_values_skip_the_annotation(tmp_path, iscrowd):
    data = _coco(tmp_path)
    data["annotations"][0]["iscrowd"] = iscrowd
    split = _load_coco(tmp_path, data)
    assert _by_id(split)[1].boxes.shape == (0, 4)
    assert len(split.warnings) == 1 and "iscrowd must be 0 or 1" in split.warnings[0]


def test_coco_file_name_with_a_newline_gives_a_one_line_warning(tmp_path):
    data = _coco(tmp_path)
    data["images"][0]["file_name"] = "evil\nname.jpg"
    data["annotations"][0]["id"] = "x" * 100000
    split = _load_coco(tmp_path, data)
    assert split.warnings == ["ann.json: image id 1: file not found: evil\\nname.jpg; skipped"]
    data["images"][0]["file_name"] = "a.jpg"
    data["annotations"][0]["bbox"] = [1, 1, 0, 0]
    split = _load_coco(tmp_path, data)
    assert len(split.warnings) == 1 and len(split.warnings[0]) < 200


def test_coco_deeply_nested_json_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="invalid JSON"):
        _load_coco(tmp_path, text='{"images": ' + "[" * 100000 + "]" * 100000 + "}")


# ------------------------------------------------------------------------------------------------
# Pascal VOC xml


def _voc(root: Path, size: str = f"<width>{W}</width><height>{H}</height>",
         box=("11", "21", "41", "31"), prolog: str = "") -> Path:
    _image(root / "images" / "p.jpg")
    xmin, ymin, xmax, ymax = box
    return _write(root / "annotations" / "p.xml", prolog + (
        "<annotation>\n"
        f"<size>{size}</size>\n"
        "<object>\n<name>dog</name>\n"
        f"<bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox>\n"
        "</object>\n</annotation>\n"))


@pytest.mark.parametrize("width", ["1e999", "inf", "nan", "1e300", "1_0", "-64", "64.5", "\u0666\u0664", "x"])
def test_voc_unusable_size_is_read_from_the_image_with_a_warning(tmp_path, width):
    _voc(tmp_path, size=f"<width>{width}</width><height>{H}</height>")
    split = load_dataset(tmp_path, "val")
    rec = split.records[0]
    assert (rec.width, rec.height) == (W, H)
    np.testing.assert_array_equal(rec.boxes, [[10, 20, 40, 30]])  # 1-based -> 0-based, not clipped
    assert len(split.warnings) == 1
    assert split.warnings[0].startswith(f"annotations/p.xml:2: <size> width {width} height {H}")


@pytest.mark.parametrize("size", ["<width>0</width><height>0</height>", "", "<width></width>",
                                  f"<width>{W}.0</width><height>{H}</height>"])
def test_voc_unknown_or_integral_size_is_silent(tmp_path, size):
    _voc(tmp_path, size=size)
    split = load_dataset(tmp_path, "val")
    assert (split.records[0].width, split.records[0].height) == (W, H) and split.warnings == []


@pytest.mark.parametrize("xmin", ["1_1", "\u0661\u0661", "0x0b", "1e999", "nan", ""])
def test_voc_bndbox_numbers_must_be_plain_decimals(tmp_path, xmin):
    _voc(tmp_path, box=(xmin, "21", "41", "31"))
    split = load_dataset(tmp_path, "val")
    assert split.records[0].boxes.shape == (0, 4)
    assert split.warnings == ["annotations/p.xml:5: malformed <bndbox> (xmin, ymin, xmax, ymax must be numbers)"]


def test_voc_box_that_collapses_in_float32_is_skipped(tmp_path):
    _voc(tmp_path, box=("11", "21", "11.000000001", "31"))
    split = load_dataset(tmp_path, "val")
    assert split.records[0].boxes.shape == (0, 4)
    assert len(split.warnings) == 1 and split.warnings[0].startswith("annotations/p.xml:5: box too small")


def test_voc_entity_declarations_are_refused(tmp_path):
    laughs = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    _voc(tmp_path, prolog=f'<?xml version="1.0"?>\n<!DOCTYPE annotation [<!ENTITY l0 "lol">{laughs}]>\n')
    with pytest.raises(DataError, match="entity declaration"):
        load_dataset(tmp_path, "val")


def test_voc_names_with_control_characters_are_not_collected(tmp_path):
    _voc(tmp_path)
    _write(tmp_path / "annotations" / "q.xml",
           "<annotation><object><name>two\nlines</name></object><object><name>a&#9;tab</name></object>"
           "</annotation>")
    split = load_dataset(tmp_path, "val")
    assert split.names == ["dog"]


# ------------------------------------------------------------------------------------------------
# dataset YAML and lists


def _yaml_set(root: Path, extra: str) -> Path:
    _image(root / "images" / "a.png")
    return _write(root / "data.yaml", "path: .\nval: images\n" + extra)


@pytest.mark.parametrize("names, problem", [
    ("[no, yes]", "names[0] is the YAML boolean false: quote the name"),
    ("[a, null]", "names[1]: class name must be a string"),
    ("[a, [b, c]]", "names[1]: class name must be a string"),
    ('[a, "b\\nc"]', "names[1]: class name 'b\\nc' has control"),
    ("{0: a, 1.5: b}", "names dict keys must be integer class ids, got 1.5"),
    ("{0: a, .inf: b}", "names dict keys must be integer class ids, got inf"),
    ("{0: a, true: b}", "names dict keys must be integer class ids, got True"),
    ("{0: a, '1_0': b}", "names dict keys must be integer class ids, got 1_0"),
])
def test_yaml_bad_names_are_data_errors_with_the_line(tmp_path, names, problem):
    yaml = _yaml_set(tmp_path, f"names: {names}\n")
    with pytest.raises(DataError) as info:
        load_dataset(yaml)
    assert str(info.value).startswith(f"{yaml}:3: ")
    assert problem in str(info.value)


def test_yaml_numbers_as_names_and_digit_string_keys(tmp_path):
    yaml = _yaml_set(tmp_path, "names: {'1': 7, 0: 3.5}\n")
    assert load_dataset(yaml).names == ["3.5", "7"]


@pytest.mark.parametrize("text", [
    "names: [a]\nformat: " + "[" * 5000 + "]" * 5000 + "\n",   # RecursionError in PyYAML's composer
    "names: [a]\nwhen: 2020-13-45\n",                           # ValueError in PyYAML's timestamp constructor
    "names: [a]\nnc: " + "9" * 5000 + "\n",                     # ValueError: int above 4300 digits (3.11+)
])
def test_yaml_values_pyyaml_cannot_construct_are_data_errors(tmp_path, text):
    yaml = _yaml_set(tmp_path, text)
    with pytest.raises(DataError) as info:
        load_dataset(yaml)
    assert str(info.value).startswith(str(yaml))


def test_yaml_alias_bomb_is_refused_without_expanding_it(tmp_path):
    bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 8))
    for key in ("format", "names", "nc"):
        yaml = _yaml_set(tmp_path, bomb + f"{key}: *a7\n" + ("names: [a]\n" if key != "names" else ""))
        with pytest.raises(DataError) as info:
            load_dataset(yaml)
        assert len(str(info.value)) < 300, key  # a repr of the 10^8 leaves would be ~800 MB


def test_yaml_nc_must_be_a_positive_integer(tmp_path):
    for nc in ("two", "[2]", "true", "0", "2.5"):
        yaml = _yaml_set(tmp_path, f"names: [a, b]\nnc: {nc}\n")
        with pytest.raises(DataError, match="nc must be a positive integer"):
            load_dataset(yaml)
    assert load_dataset(_yaml_set(tmp_path, "names: [a, b]\nnc: 2.0\n")).names == ["a", "b"]


def test_csv_field_above_the_csv_limit_is_a_data_error_with_line(tmp_path):
    _image(tmp_path / "images" / "a.png")
    _write(tmp_path / "val.csv", 'filename,x\na.png,1\n"' + "y" * 200000 + '",2\n')
    yaml = _write(tmp_path / "data.yaml", "path: .\nval: val.csv\nnames: [a]\nformat: yolo\n")
    with pytest.raises(DataError) as info:
        load_dataset(yaml)
    assert str(info.value).startswith(f"{tmp_path / 'val.csv'}:3: malformed csv")


def test_nul_characters_in_paths(tmp_path):
    _image(tmp_path / "images" / "a.png")
    _write(tmp_path / "val.txt", "~x\x00y/a.png\nimages/a.png\n")
    _write(tmp_path / "val.csv", "filename\n~x\x00y/a.png\nimages/a.png\n")
    for entry, line in (("val.txt", 1), ("val.csv", 2)):
        yaml = _write(tmp_path / "data.yaml", f"path: .\nval: {entry}\nnames: [a]\nformat: yolo\n")
        if entry == "val.csv" and sys.version_info < (3, 11):  # csv refused NUL bytes before 3.11
            with pytest.raises(DataError, match=f"val.csv:{line}: malformed csv"):
                load_dataset(yaml)
            continue
        split = load_dataset(yaml)
        assert len(split.records) == 1
        assert split.warnings == [f"{entry}:{line}: image not found: ~x\\x00y/a.png"]
    yaml = _write(tmp_path / "data.yaml", 'path: .\nval: "~x\\0y/images"\nnames: [a]\n')
    with pytest.raises(DataError) as info:
        load_dataset(yaml)
    assert str(info.value) == f"{yaml}:2: 'val' contains a NUL character"
