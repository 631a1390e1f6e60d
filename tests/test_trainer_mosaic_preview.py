"""``yolo4 train --preview N``: N JPEG grids of augmented batches that cv2 reads back."""

import cv2
import numpy as np

from yolo4.data.records import ImageRecord
from yolo4.trainer.augment import AugmentConfig
from yolo4.trainer.dataset import YoloDataset
from yolo4.trainer.preview import write_batches


def test_preview_writes_n_readable_jpegs_with_boxes(tmp_path):
    img = np.full((120, 160, 3), 60, np.uint8)
    img[30:90, 40:120] = (0, 0, 255)
    p = tmp_path / "a.png"
    cv2.imwrite(str(p), img)
    boxes = np.array([[40, 30, 120, 90]], np.float32)
    recs = [ImageRecord(str(p), 160, 120, boxes, np.array([0]), i) for i in range(7)]
    ds = YoloDataset(recs, (64, 96), False, AugmentConfig(mosaic=0.5, jitter=0.2), seed=0)
    paths = write_batches(ds, tmp_path / "run" / "preview", 2, 3, ["thing"])
    assert [q.name for q in paths] == ["batch0.jpg", "batch1.jpg"]
    for q in paths:
        grid = cv2.imread(str(q))
        assert grid is not None and grid.shape == (2 * 64, 2 * 96, 3)   # 3 images: 2x2 grid
    # boxes are drawn: the grid differs from the plain samples tiled
    plain = ds.sample(0)[0]
    assert not np.array_equal(cv2.imread(str(paths[0]))[:64, :96], plain)
    # fewer batches than asked when the epoch is short
    assert len(write_batches(ds, tmp_path / "p2", 10, 4)) == 2


def test_cli_preview_with_zero_epochs_writes_and_stops(tmp_path, shared_data, monkeypatch):
    from typer.testing import CliRunner

    from yolo4.cli import app

    monkeypatch.setenv("YOLO4_ASSET_MIRROR", str(shared_data))
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", "--cfg", str(shared_data / "darknet/cfg/yolov4.cfg"), "--data",
                                 "coco128", "--img-size", "128", "--batch", "4", "--max-images", "8",
                                 "--epochs", "0", "--preview", "2", "--output-dir", str(out)])
    assert r.exit_code == 0, r.output
    jpgs = sorted((out / "preview").glob("*.jpg"))
    assert [q.name for q in jpgs] == ["batch0.jpg", "batch1.jpg"]
    assert all(cv2.imread(str(q)).shape == (256, 256, 3) for q in jpgs)
    assert not (out / "last.pt").exists()
