"""Trainer: short real runs -> checkpoints (format, atomic writes), resume, darknet files, warnings."""

import csv
import os
import re
import shutil

import cv2
import numpy as np
import pytest
import torch

from yolo4.errors import Yolo4Error
from yolo4.model.checkpoint import read_checkpoint
from yolo4.trainer.checkpoint import make_checkpoint, save_checkpoint
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


def _leftovers(folder):
    """Temp files of the atomic writer (hidden ``.<name>.<hex>.tmp``) or any other hidden file."""
    return [n for n in os.listdir(folder) if n.startswith(".") or n.endswith(".tmp")]


class _Stop(Exception):
    """Raised from ``log`` to interrupt a run (as Ctrl-C) right after an epoch was saved."""


def _stop_after(epoch_line, logs):
    def log(line):
        logs.append(line)
        if line.startswith(epoch_line):
            raise _Stop(line)
    return log


def _record_step_lrs(monkeypatch):
    """The learning rate of every SGD step taken from now on (appended to the returned list)."""
    lrs = []
    real = torch.optim.SGD.step

    def step(self, *a, **kw):
        lrs.append(self.param_groups[0]["lr"])
        return real(self, *a, **kw)

    monkeypatch.setattr(torch.optim.SGD, "step", step)
    return lrs


# a 2-epoch run of 9 raccoon images, batch 3, 128 px: 3 steps per epoch, 6 in all, burn-in 1 step
RUN = dict(data="raccoon", epochs=2, batch_size=3, img_size=128, max_images=9)
QUIET = dict(workers=0, progress=False)


@pytest.fixture(scope="module")
def interrupted(shared_data, tmp_path_factory):
    """A run stopped after epoch 1 of 2 (``last.pt`` at epoch 1), and the same run uninterrupted with
    the lr of each of its 6 steps. Tests copy the interrupted folder before touching it."""
    mp = pytest.MonkeyPatch()
    try:
        kw = dict(cfg=shared_data / "darknet/cfg/yolov4-tiny.cfg", weights=shared_data / "weights/yolov4-tiny.weights",
                  **RUN, **QUIET)
        full = tmp_path_factory.mktemp("full")
        lrs = _record_step_lrs(mp)
        train(output_dir=full, log=lambda s: None, **kw)
        full_lrs = list(lrs)
        stopped = tmp_path_factory.mktemp("stopped")
        with pytest.raises(_Stop):
            train(output_dir=stopped, log=_stop_after("epoch 1/2", []), **kw)
    finally:
        mp.undo()
    assert read_checkpoint(stopped / "last.pt")["epoch"] == 1
    return {"kw": kw, "full": full, "full_lrs": full_lrs, "stopped": stopped}


def _copy_run(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_resume_continues_the_run_as_it_was(interrupted, tmp_path, monkeypatch):
    out = _copy_run(interrupted["stopped"], tmp_path / "run")
    full_lrs = interrupted["full_lrs"]
    assert len(full_lrs) == 6 and len(set(full_lrs[3:])) == 3      # cosine: each step of epoch 2 differs

    # a crash while writing last.pt leaves epoch 1's checkpoint intact and no temp file
    with monkeypatch.context() as m:
        _failing_save(m)
        with pytest.raises(OSError, match="simulated crash"):
            train(output_dir=out, resume=True, log=lambda s: None, **QUIET)
    assert read_checkpoint(out / "last.pt")["epoch"] == 1
    assert _leftovers(out) == []

    # nothing but the folder given: epochs, size, batch, data, schedule come from last.pt
    state1 = read_checkpoint(out / "last.pt")["model"]
    logs = []
    lrs = _record_step_lrs(monkeypatch)
    summary = train(output_dir=out, resume=True, log=logs.append, **QUIET)
    assert any(line.startswith("resuming") and "epoch 2 of 2" in line for line in logs)
    assert any("input 128x128" in line and "batch 3, 3 steps/epoch" in line for line in logs)
    assert not any(line.startswith("epoch 1/") for line in logs)
    # the stored schedule: the resumed steps get the lr the uninterrupted run had at those steps
    assert lrs == pytest.approx(full_lrs[3:], rel=1e-12)
    ck = read_checkpoint(out / "last.pt")
    assert ck["epoch"] == 2
    full_ck = read_checkpoint(interrupted["full"] / "last.pt")
    for key in ("epochs", "batch_size", "img_size", "total_iters", "burn_in", "steps_per_epoch", "lr", "seed"):
        assert ck["train_args"][key] == full_ck["train_args"][key], key
    assert ck["train_args"]["img_size"] == [128, 128] and ck["train_args"]["burn_in"] == 1
    changed = [k for k, v in ck["model"].items() if v.is_floating_point() and not torch.equal(v, state1[k])]
    assert changed, "resumed epoch did not train"
    # same data order, augmentation, optimizer state: the weights of the uninterrupted run
    for k, v in ck["model"].items():
        assert torch.allclose(v.float(), full_ck["model"][k].float(), atol=1e-5), k
    assert [r["epoch"] for r in _csv_rows(out / "results.csv")] == ["1", "2"]
    assert [r["epoch"] for r in summary["epochs"]] == [1, 2]
    assert [r["lr"] for r in _csv_rows(out / "results.csv")] == \
        [r["lr"] for r in _csv_rows(interrupted["full"] / "results.csv")]

    # the run is finished now: nothing to resume, and it cannot be stretched to more epochs
    with pytest.raises(Yolo4Error, match=r"is finished \(2 of 2 epochs done\)") as e:
        train(output_dir=out, resume=True, log=lambda s: None, **QUIET)
    assert "\n" not in str(e.value)
    with pytest.raises(Yolo4Error, match=r"^--epochs 4 conflicts with the run being resumed in .* \(epochs 2\)"):
        train(output_dir=out, resume=True, epochs=4, log=lambda s: None, **QUIET)
    assert read_checkpoint(out / "last.pt")["epoch"] == 2


def _record_iou_normalizers(monkeypatch):
    """The iou_normalizer of each [yolo] layer the trainer's loss is built with, one list per train()."""
    import yolo4.trainer.train as train_module

    seen = []
    real = train_module.YoloLoss

    def recording(specs, **kw):
        seen.append([sp.iou_normalizer for sp in specs])
        return real(specs, **kw)

    monkeypatch.setattr(train_module, "YoloLoss", recording)
    return seen


def test_default_recipe_new_classes_and_same_classes(interrupted, tmp_path, monkeypatch):
    """The default learning rate, weight average and box weight: darknet's per-image rate (the cfg's
    learning_rate 0.00261 for batch 64, x batch/64), an EMA and the cfg's iou_normalizer when the
    model keeps its classes; a new class list (raccoon: the heads re-made) trains every layer at the
    cfg's learning_rate per step, whatever the batch, without the average, with 15/7 of the cfg's
    iou_normalizer (measured in the README, *Fine-tuning defaults*)."""
    new = read_checkpoint(interrupted["full"] / "last.pt")
    assert new["train_args"]["lr"] == pytest.approx(0.00261, rel=1e-9)
    assert new["train_args"]["head_lr_scale"] == 1.0 and new["train_args"]["ema_tau"] == 0.0 and new["ema"] is None
    assert new["train_args"]["iou_normalizer_scale"] == pytest.approx(15 / 7, rel=1e-12)
    norms = _record_iou_normalizers(monkeypatch)
    logs = []
    kw = dict(interrupted["kw"], data="coco128", epochs=1, max_images=3)
    train(output_dir=tmp_path / "coco", log=logs.append, **kw)
    same = read_checkpoint(tmp_path / "coco" / "last.pt")
    assert same["train_args"]["lr"] == pytest.approx(0.00261 * 3 / 64, rel=1e-9)
    assert same["train_args"]["head_lr_scale"] == 1.0 and same["train_args"]["ema_tau"] > 0 and same["ema"]
    assert same["train_args"]["iou_normalizer_scale"] == 1.0
    assert any("lr 0.000122344 (" in line for line in logs)
    assert not any("iou_normalizer" in line for line in logs)
    # a new class list: yolov4-tiny.cfg's iou_normalizer=0.07 on both [yolo] layers, x15/7, said in the log
    logs.clear()
    train(output_dir=tmp_path / "new", log=logs.append, **dict(interrupted["kw"], epochs=1, max_images=3))
    assert any(", iou_normalizer 0.07 x2.14286 = 0.15" in line for line in logs), logs
    # an explicit --lr is the rate of every layer; a new class list still trains without the average;
    # an explicit scale is the run's
    train(output_dir=tmp_path / "lr", log=lambda s: None,
          **dict(interrupted["kw"], epochs=1, max_images=3, lr=0.001, iou_normalizer_scale=1.0))
    given = read_checkpoint(tmp_path / "lr" / "last.pt")["train_args"]
    assert given["lr"] == 0.001 and given["head_lr_scale"] == 1.0 and given["ema_tau"] == 0.0
    assert given["iou_normalizer_scale"] == 1.0
    assert norms == [[0.07, 0.07], [pytest.approx(0.15)] * 2, [0.07, 0.07]]


def test_resume_of_a_run_that_predates_the_box_scale_keeps_the_cfgs_iou_normalizer(interrupted, tmp_path,
                                                                                     monkeypatch):
    """A last.pt written before ``iou_normalizer_scale`` existed resumes as it ran: the cfg's value."""
    out = _copy_run(interrupted["stopped"], tmp_path / "run")
    ckpt = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
    del ckpt["train_args"]["iou_normalizer_scale"]
    torch.save(ckpt, out / "last.pt")
    norms = _record_iou_normalizers(monkeypatch)
    train(output_dir=out, resume=True, log=lambda s: None, **QUIET)
    assert norms == [[0.07, 0.07]]
    assert read_checkpoint(out / "last.pt")["train_args"]["iou_normalizer_scale"] == 1.0


@pytest.mark.parametrize("given, message", [
    (dict(epochs=10), r"--epochs 10 conflicts with the run being resumed in {out} \(epochs 2\)"),
    (dict(img_size=160), r"--img-size 160 conflicts with the run being resumed in {out} \(img-size 128\)"),
    (dict(batch_size=4), r"--batch 4 conflicts with the run being resumed in {out} \(batch 3\)"),
    (dict(max_images=5), r"--max-images 5 conflicts with .* \(max-images 9\)"),
    (dict(augment=False), r"--no-augment conflicts with .* \(augment on\)"),
    # the run's lr: raccoon is a new class list, so the cfg's learning_rate 0.00261 per step
    (dict(lr=0.01), r"--lr 0.01 conflicts with .* \(lr 0.00261\)"),
    (dict(seed=1), r"--seed 1 conflicts with .* \(seed 0\)"),
    (dict(data="chess"), r"--data chess conflicts with .* \(data raccoon\)"),
    (dict(iou_normalizer_scale=1.0), r"--iou-normalizer-scale 1 conflicts with .* \(iou-normalizer-scale 2.14286\)"),
])
def test_resume_refuses_an_option_that_changes_the_run(interrupted, tmp_path, given, message):
    out = _copy_run(interrupted["stopped"], tmp_path / "run")
    before = (out / "last.pt").read_bytes()
    with pytest.raises(Yolo4Error) as e:
        train(output_dir=out, resume=True, log=lambda s: None, **QUIET, **given)
    text = str(e.value)
    assert "\n" not in text
    assert re.match(message.format(out=re.escape(str(out))), text), text
    assert text.endswith("--resume continues a run as it was; start a new run to change it")
    assert (out / "last.pt").read_bytes() == before


def test_resume_accepts_the_same_options_again(interrupted, tmp_path):
    """Repeating the run's own values is fine; workers/device/progress/log may change."""
    out = _copy_run(interrupted["stopped"], tmp_path / "run")
    kw = dict(interrupted["kw"], workers=1, device="cpu")
    kw["img_size"] = (128, 128)
    kw["cfg"] = str(kw["cfg"])
    summary = train(output_dir=out, resume=True, log=lambda s: None, **kw)
    assert [r["epoch"] for r in summary["epochs"]] == [1, 2]


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), True, "2"])
def test_a_bad_iou_normalizer_scale_is_refused_before_any_work(tmp_path, value):
    with pytest.raises(Yolo4Error, match=r"^--iou-normalizer-scale must be a number > 0, got "):
        train(cfg="yolov4-tiny", data="raccoon", output_dir=tmp_path / "run", iou_normalizer_scale=value,
              log=lambda s: None)
    assert not (tmp_path / "run").exists()


def test_cli_iou_normalizer_scale_error_exits_2(tmp_path):
    from .conftest import assert_user_error, run_cli

    assert_user_error(run_cli("train", "--cfg", "yolov4-tiny", "--data", "raccoon", "--iou-normalizer-scale",
                              "-2", "--output-dir", tmp_path / "run"), "--iou-normalizer-scale must be a number > 0")


def test_resume_without_a_run_is_refused(tmp_path):
    with pytest.raises(Yolo4Error, match="nothing to resume in .*: it holds no last.pt"):
        train(output_dir=tmp_path / "none", resume=True, log=lambda s: None)
    assert not (tmp_path / "none").exists()


def test_unwritable_output_folder_fails_before_any_work(shared_data, tmp_path, monkeypatch):
    import yolo4.data.datasets
    import yolo4.model

    def forbidden(*a, **kw):
        raise AssertionError("work started before the output folder was checked")

    monkeypatch.setattr(yolo4.data.datasets, "load_dataset", forbidden)
    monkeypatch.setattr(yolo4.model, "load_darknet", forbidden)
    (tmp_path / "taken").write_text("a file, not a folder")
    for out in (tmp_path / "taken", tmp_path / "taken" / "run"):
        with pytest.raises(Yolo4Error, match="cannot create the output folder: a file is in the way"):
            train(shared_data / "darknet/cfg/yolov4-tiny.cfg", "raccoon", output_dir=out, log=lambda s: None)


def test_one_epoch_checkpoints_and_darknet_files(shared_data, tmp_path, monkeypatch):
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

    rows = _csv_rows(out / "results.csv")
    assert [r["epoch"] for r in rows] == ["1"]
    assert float(rows[0]["map50"]) == pytest.approx(summary["epochs"][0]["map50"])
    assert any(line.startswith("epoch 1/1") for line in logs)

    # a 1-epoch run is finished: nothing to resume
    with pytest.raises(Yolo4Error, match=r"is finished \(1 of 1 epochs done\)"):
        train(output_dir=out, resume=True, workers=0, progress=False, log=logs.append)


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
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]          # no temp file (hidden or not) is left
    ck = read_checkpoint(path)
    assert ck["epoch"] == 1 and ck["best_fitness"] == 0.5
    restored = load_checkpoint(path)
    changed = dict(model.named_parameters())
    assert all(not torch.equal(v, changed[k]) for k, v in restored.named_parameters())


def _tiny_yolo_dataset(root, bad_lines=0, val="images/val"):
    """Two synthetic 96x96 images per split (white squares), YOLO txt labels; ``bad_lines`` bad
    label lines (class id out of range) in the first training image's label file; ``val`` is the
    YAML's val entry (relative to ``root``)."""
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
    yaml.write_text(f"path: {root}\ntrain: images/train\nval: {val}\nnames: [square]\n")
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
    data = _tiny_yolo_dataset(tmp_path / "ds")
    with pytest.raises(Yolo4Error, match="multiple of 32"):
        train(shared_data / "darknet/cfg/yolov4-tiny.cfg", data, epochs=1, img_size=100,
              output_dir=tmp_path / "run", workers=0, progress=False, log=lambda s: None)


def _overlap_warnings(shared_data, data, out):
    """The memorisation warnings of a run on ``data``, stopped before its first step."""
    logs = []
    with pytest.raises(_Stop):
        train(shared_data / "darknet/cfg/yolov4-tiny.cfg", data, img_size=64, output_dir=out, workers=0,
              progress=False, log=_stop_after("train: ", logs))
    return [line for line in logs if "memorisation" in line]


def test_same_train_and_val_images_warn(shared_data, tmp_path):
    data = _tiny_yolo_dataset(tmp_path / "ds", val="images/train")
    warnings = _overlap_warnings(shared_data, data, tmp_path / "run")
    assert warnings == ["warning: the train and val splits are the same 2 images: validation mAP measures "
                        "memorisation, not how the model does on new images"]


def test_partly_shared_val_images_warn_with_a_count(shared_data, tmp_path):
    root = tmp_path / "ds"
    # val.txt lists the two val images and, spelt through a symlinked folder, one training image
    data = _tiny_yolo_dataset(root, val="val.txt")
    os.symlink(root / "images" / "train", root / "images" / "train_link")
    (root / "val.txt").write_text("images/val/0.png\nimages/val/1.png\nimages/train_link/1.png\n")
    warnings = _overlap_warnings(shared_data, data, tmp_path / "run")
    assert warnings == ["warning: 1 of the 3 val images are also in the train split: mAP on them measures "
                        "memorisation"]
    # disjoint splits: no warning
    data = _tiny_yolo_dataset(tmp_path / "ds2")
    assert _overlap_warnings(shared_data, data, tmp_path / "run2") == []
