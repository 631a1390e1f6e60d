"""Trainer: short real runs -> checkpoints (format, atomic writes), resume, darknet files, warnings."""

import csv

import cv2
import numpy as np
import pytest
import torch

from yolo4.errors import Yolo4Error
from yolo4.trainer.checkpoint import load_training_checkpoint, make_checkpoint, save_checkpoint
from yolo4.trainer.train import train

torch.set_num_threads(2)

SPEC_KEYS = {"format", "version", "cfg_text", "names", "model", "epoch", "best_fitness", "optimizer", "ema",
             "ema_updates", "train_args", "yolo4_version", "metrics"}


def _csv_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _failing_save(monkeypatch):
    """torch.save that writes the file completely, then fails (as a crash right after the write)."""
    real = torch.save

    def save(obj, f, *a, **kw):
        real(obj, f, *a, **kw)
        raise OSError("simulated crash after writing the temp file")

    monkeypatch.setattr(torch, "save", save)


def test_one_epoch_checkpoints_darknet_files_and_resume(shared_data, tmp_path, monkeypatch):
    from yolo4.model import load_checkpoint, load_darknet

    cfg = shared_data / "darknet/cfg/yolov4-tiny.cfg"
    weights = shared_data / "weights/yolov4-tiny.weights"
    out = tmp_path / "run"
    logs = []
    kw = dict(cfg=cfg, data="raccoon", weights=weights, batch_size=3, img_size=160, output_dir=out,
              workers=0, progress=False, max_images=6, log=logs.append)
    summary = train(epochs=1, **kw)

    last, best = out / "last.pt", out / "best.pt"
    assert summary["last"] == str(last) and summary["best"] == str(best)
    for p in (last, best):
        ck = torch.load(p, map_location="cpu", weights_only=True)
        assert set(ck) >= SPEC_KEYS
        assert ck["format"] == "yolo4-checkpoint" and ck["version"] == 1
        assert ck["epoch"] == 1 and ck["names"] == ["raccoon"]
        assert "classes=1" in ck["cfg_text"].replace(" ", "")
        assert 0.0 <= ck["metrics"]["map50_95"] <= ck["metrics"]["map50"] <= 1.0
        assert ck["best_fitness"] == pytest.approx(0.1 * ck["metrics"]["map50"] + 0.9 * ck["metrics"]["map50_95"])
    assert torch.load(last, weights_only=True)["optimizer"] is not None
    assert torch.load(best, weights_only=True)["optimizer"] is None

    model = load_checkpoint(best)
    assert model.num_classes == 1 and model.names == ["raccoon"]
    state = torch.load(best, weights_only=True)["model"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k

    # darknet files: best.cfg + best.weights rebuild the same network
    assert (out / "best.names").read_text().split() == ["raccoon"]
    dk = load_darknet(out / "best.cfg", out / "best.weights")
    x = torch.rand(1, 3, 160, 160)
    with torch.no_grad():
        b1, s1 = model(x)
        b2, s2 = dk(x)
    assert torch.allclose(b1, b2, atol=1e-3) and torch.allclose(s1, s2, atol=1e-5)

    state1 = torch.load(last, weights_only=True)["model"]
    rows = _csv_rows(out / "results.csv")
    assert [r["epoch"] for r in rows] == ["1"]
    assert float(rows[0]["map50"]) == pytest.approx(summary["epochs"][0]["map50"])
    assert any(line.startswith("epoch 1/1") for line in logs)

    # nothing left to resume at epochs=1
    with pytest.raises(Yolo4Error, match="already completed 1 epochs"):
        train(epochs=1, resume=True, **kw)

    # a crash while writing last.pt leaves epoch 1's checkpoint intact and no temp file
    with monkeypatch.context() as m:
        _failing_save(m)
        with pytest.raises(OSError, match="simulated crash"):
            train(epochs=2, resume=True, **kw)
    assert torch.load(last, weights_only=True)["epoch"] == 1
    assert not list(out.glob("*.tmp"))

    # resume continues at epoch 2 with the saved weights/optimizer
    logs.clear()
    summary2 = train(epochs=2, resume=True, **kw)
    assert any("resuming" in line and "epoch 2 of 2" in line for line in logs)
    assert not any(line.startswith("epoch 1/") for line in logs)
    ck2 = torch.load(last, weights_only=True)
    assert ck2["epoch"] == 2
    changed = [k for k, v in ck2["model"].items() if v.is_floating_point() and not torch.equal(v, state1[k])]
    assert changed, "resumed epoch did not train"
    assert [r["epoch"] for r in _csv_rows(out / "results.csv")] == ["1", "2"]
    assert [r["epoch"] for r in summary2["epochs"]] == [1, 2]


def test_interrupted_save_keeps_previous_checkpoint(shared_data, tmp_path, monkeypatch):
    from yolo4.model import load_checkpoint, load_darknet

    model = load_darknet(shared_data / "darknet/cfg/yolov4-tiny.cfg", num_classes=2)
    path = tmp_path / "last.pt"
    save_checkpoint(make_checkpoint(model, ["a", "b"], epoch=1, best_fitness=0.5), path)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    _failing_save(monkeypatch)
    with pytest.raises(OSError):
        save_checkpoint(make_checkpoint(model, ["a", "b"], epoch=2, best_fitness=0.6), path)
    monkeypatch.undo()
    assert not (tmp_path / "last.pt.tmp").exists()
    ck = load_training_checkpoint(path)
    assert ck["epoch"] == 1 and ck["best_fitness"] == 0.5
    restored = load_checkpoint(path)
    changed = dict(model.named_parameters())
    assert all(not torch.equal(v, changed[k]) for k, v in restored.named_parameters())


def test_load_training_checkpoint_rejects_foreign_files(tmp_path):
    from yolo4.errors import WeightsError

    with pytest.raises(WeightsError, match="not found"):
        load_training_checkpoint(tmp_path / "missing.pt")
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="not a yolo4 checkpoint"):
        load_training_checkpoint(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(WeightsError, match="not a PyTorch checkpoint"):
        load_training_checkpoint(tmp_path / "junk.pt")


def _tiny_yolo_dataset(root, bad_lines):
    """Two synthetic 96x96 images per split (white squares), YOLO txt labels; ``bad_lines`` bad
    label lines (class id out of range) in the first training image's label file."""
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(2):
            img = np.zeros((96, 96, 3), np.uint8)
            img[20:60, 30:70] = 255
            cv2.imwrite(str(root / "images" / split / f"{i}.png"), img)
            lines = ["0 0.520833 0.416667 0.416667 0.416667"]
            if split == "train" and i == 0:
                lines += ["7 0.5 0.5 0.1 0.1"] * bad_lines
            (root / "labels" / split / f"{i}.txt").write_text("\n".join(lines) + "\n")
    yaml = root / "data.yaml"
    yaml.write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames: [square]\n")
    return yaml


def test_bad_labels_are_reported_once_and_capped(shared_data, tmp_path):
    data = _tiny_yolo_dataset(tmp_path / "ds", bad_lines=13)
    logs = []
    summary = train(shared_data / "darknet/cfg/yolov4-tiny.cfg", data, epochs=1, batch_size=2, img_size=64,
                    output_dir=tmp_path / "run", workers=0, progress=False, log=logs.append)
    warnings = [line for line in logs if line.startswith("warning:")]
    assert len([w for w in warnings if "0.txt" in w]) == 10
    assert any("and 3 more" in w for w in warnings)
    assert len(warnings) == 11
    assert summary["epochs"][0]["epoch"] == 1 and (tmp_path / "run" / "best.weights").is_file()


def test_bad_img_size_is_a_user_error(shared_data, tmp_path):
    data = _tiny_yolo_dataset(tmp_path / "ds", bad_lines=0)
    with pytest.raises(Yolo4Error, match="multiple of 32"):
        train(shared_data / "darknet/cfg/yolov4-tiny.cfg", data, epochs=1, img_size=100,
              output_dir=tmp_path / "run", workers=0, progress=False, log=lambda s: None)
