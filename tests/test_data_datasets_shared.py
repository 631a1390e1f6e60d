"""load_dataset on the real datasets in ../shared/data (coco128 YOLO txt, raccoon VOC, chess COCO)."""

import csv
import json
import os

import numpy as np
import pytest

from yolo4.data import load_dataset, load_names
from yolo4.errors import DataError


@pytest.fixture
def mirror(shared_data, monkeypatch):
    monkeypatch.setenv("YOLO4_ASSET_MIRROR", str(shared_data))
    return shared_data


def _check_records(split):
    for r in split.records:
        assert os.path.isabs(r.path) and os.path.isfile(r.path)
        assert r.boxes.dtype == np.float32 and r.boxes.shape == (len(r.classes), 4)
        assert r.classes.dtype == np.int64
        if len(r.boxes):
            assert (r.boxes[:, 0] >= 0).all() and (r.boxes[:, 1] >= 0).all()
            assert (r.boxes[:, 2] <= r.width).all() and (r.boxes[:, 3] <= r.height).all()
            assert (r.boxes[:, 2] > r.boxes[:, 0]).all() and (r.boxes[:, 3] > r.boxes[:, 1]).all()
            assert (r.classes >= 0).all() and (r.classes < len(split.names)).all()
    ids = [r.image_id for r in split.records]
    assert len(set(ids)) == len(ids)


def test_coco128_facts(mirror):
    split = load_dataset("coco128")
    _check_records(split)
    assert split.names == load_names(mirror / "darknet" / "coco.names")
    assert len(split.records) == 128
    assert sum(len(r.boxes) for r in split.records) == 929
    assert sum(1 for r in split.records if len(r.boxes)) == 126
    assert len({int(c) for r in split.records for c in r.classes}) == 71
    assert split.warnings == []
    # The two images without a label file are background records.
    labels = mirror / "coco128" / "labels" / "train2017"
    unlabelled = {r.path for r in split.records
                  if not (labels / (os.path.splitext(os.path.basename(r.path))[0] + ".txt")).exists()}
    assert len(unlabelled) == 2
    assert all(len(r.boxes) == 0 for r in split.records if r.path in unlabelled)
    assert [r.image_id for r in split.records] == list(range(1, 129))
    train = load_dataset("coco128", "train")
    assert [r.path for r in train.records] == [r.path for r in split.records]


def test_coco128_box_matches_the_label_line(mirror):
    split = load_dataset("coco128")
    rec = next(r for r in split.records if r.path.endswith("000000000009.jpg"))
    assert (rec.width, rec.height) == (640, 480)
    first = (mirror / "coco128" / "labels" / "train2017" / "000000000009.txt").read_text().split("\n")[0]
    cls, cx, cy, w, h = first.split()
    cx, cy, w, h = float(cx) * 640, float(cy) * 480, float(w) * 640, float(h) * 480
    expect = [max(cx - w / 2, 0), max(cy - h / 2, 0), min(cx + w / 2, 640), min(cy + h / 2, 480)]
    assert int(rec.classes[0]) == int(cls)
    np.testing.assert_allclose(rec.boxes[0], expect, atol=1e-3)


def test_raccoon_splits_match_the_csv_rows(mirror):
    train, val = load_dataset("raccoon", "train"), load_dataset("raccoon", "val")
    for split in (train, val):
        _check_records(split)
        assert split.names == ["raccoon"] and split.warnings == []
    assert len(train.records) == 160 and len(val.records) == 40
    assert sum(len(r.boxes) for r in train.records) + sum(len(r.boxes) for r in val.records) == 217
    assert not {r.path for r in train.records} & {r.path for r in val.records}
    # Every csv row (the dataset's own export of the xml boxes) is a box, shifted to 0-based pixels.
    for split, name in ((train, "train"), (val, "test")):
        by_file = {os.path.basename(r.path): r for r in split.records}
        rows = list(csv.DictReader(open(mirror / "raccoon" / "splits" / f"{name}_labels.csv")))
        assert sum(len(r.boxes) for r in split.records) == len(rows)
        for row in rows:
            rec = by_file[row["filename"]]
            assert (rec.width, rec.height) == (int(row["width"]), int(row["height"]))
            box = [float(row[k]) - 1 for k in ("xmin", "ymin", "xmax", "ymax")]
            assert any(np.allclose(b, box) for b in rec.boxes), row


def test_raccoon_as_a_voc_folder(mirror):
    split = load_dataset(mirror / "raccoon")
    assert len(split.records) == 200 and sum(len(r.boxes) for r in split.records) == 217
    assert split.names == ["raccoon"]


def test_chess_coco_facts(mirror):
    split = load_dataset("chess")
    _check_records(split)
    data = json.loads((mirror / "chess" / "valid" / "_annotations.coco.json").read_text())
    assert split.names == [c["name"] for c in sorted(data["categories"], key=lambda c: c["id"])]
    assert len(split.names) == 14
    assert len(split.records) == 58 and sum(len(r.boxes) for r in split.records) == 386
    assert {(r.width, r.height) for r in split.records} == {(2048, 1371)}
    assert {r.image_id for r in split.records} == {im["id"] for im in data["images"]}
    assert split.warnings == []
    # one annotation, by hand: category id -> contiguous index (ids are 0..13 here), xywh -> xyxy
    ann = data["annotations"][0]
    file_name = next(im["file_name"] for im in data["images"] if im["id"] == ann["image_id"])
    rec = next(r for r in split.records if r.path.endswith(file_name))
    x, y, w, h = ann["bbox"]
    hits = [k for k, b in enumerate(rec.boxes) if np.allclose(b, [x, y, x + w, y + h])]
    assert hits and int(rec.classes[hits[0]]) == ann["category_id"]


def test_chess_json_given_directly(mirror):
    direct = load_dataset(mirror / "chess" / "valid" / "_annotations.coco.json")
    named = load_dataset("chess")
    assert [r.path for r in direct.records] == [r.path for r in named.records]
    assert direct.names == named.names


def test_known_dataset_without_mirror_says_what_to_set(monkeypatch, tmp_path):
    monkeypatch.delenv("YOLO4_ASSET_MIRROR", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as info:
        load_dataset("coco128")
    msg = str(info.value)
    assert "YOLO4_ASSET_MIRROR" in msg and "coco128" in msg and "\n" not in msg
