"""Training logs: results.png / labels.png / pr_curve.png (matplotlib), TensorBoard scalars, and their
absence when the optional packages are missing."""

import builtins
import contextlib
import csv
import io

import cv2
import numpy as np
import pytest

from yolo4.data.records import ImageRecord
from yolo4.runtime.coco_eval import pr_curve_from_cocoeval
from yolo4.trainer import plots
from yolo4.trainer.train import CSV_FIELDS


def _records():
    """3 images: class 0 twice (a 10x20 and a 30x40 px box), class 2 once (50x5 px), one background."""
    return [
        ImageRecord("a.jpg", 100, 80, np.array([[0, 0, 10, 20], [10, 10, 40, 50]], np.float32),
                    np.array([0, 0], np.int64), 1),
        ImageRecord("b.jpg", 100, 80, np.array([[5, 5, 55, 10]], np.float32), np.array([2], np.int64), 2),
        ImageRecord("c.jpg", 100, 80, image_id=3),
    ]


def _results_csv(path, epochs=3):
    """A results.csv of ``epochs`` rows; epoch 2 not validated (empty mAP cells)."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for e in range(1, epochs + 1):
            val = e != 2
            w.writerow({"epoch": e, "box": 2.0 / e, "obj": 1.0 / e, "cls": 0.5 / e, "loss": 3.5 / e, "lr": 1e-3,
                        "map50": 0.2 * e if val else "", "map50_95": 0.1 * e if val else "",
                        "fitness": 0.11 * e if val else "", "time_s": 1.5})
    return path


def _png(path, width, height):
    img = cv2.imread(str(path))
    assert img is not None and img.shape == (height, width, 3)
    assert img.std() > 0                           # something drawn, not a blank canvas
    return img


def _no_module(monkeypatch, *names):
    """Make ``import name`` (and its submodules) fail from now on."""
    real = builtins.__import__

    def fake(name, *a, **kw):
        if any(name == n or name.startswith(n + ".") for n in names):
            raise ImportError(f"No module named {name!r} (test)")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", fake)


def test_label_stats_counts_come_from_the_records():
    counts, wh = plots.label_stats(_records(), 3)
    assert counts.tolist() == [2, 0, 1] and counts.dtype == np.int64
    assert wh.shape == (3, 2)
    assert wh.tolist() == [[10, 20], [30, 40], [50, 5]]
    # ids outside the class list are not counted; no records: zeros and no boxes
    bad = [ImageRecord("x.jpg", 10, 10, np.array([[0, 0, 1, 1]], np.float32), np.array([7], np.int64))]
    assert plots.label_stats(bad, 2)[0].tolist() == [0, 0]
    counts, wh = plots.label_stats([], 2)
    assert counts.tolist() == [0, 0] and wh.shape == (0, 2)


def test_read_results_columns(tmp_path):
    cols = plots.read_results(_results_csv(tmp_path / "results.csv"))
    assert cols["epoch"].tolist() == [1, 2, 3]
    assert np.isnan(cols["map50"][1]) and cols["map50"][2] == pytest.approx(0.6)


def test_results_and_labels_png(tmp_path):
    pytest.importorskip("matplotlib")
    csv_path = _results_csv(tmp_path / "results.csv")
    p = plots.plot_results(csv_path)
    assert p == tmp_path / "results.png"
    _png(p, 1200, 600)
    _png(plots.plot_labels(_records(), ["cat", "dog", "bird"], tmp_path / "labels.png"), 1500, 500)
    # no records at all still draws (empty histograms)
    _png(plots.plot_labels([], ["cat"], tmp_path / "empty.png"), 1500, 500)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["empty.png", "labels.png", "results.csv", "results.png"]


def _tiny_cocoeval():
    """An accumulated COCOeval: 2 images, classes 0 and 1 (+ class 2 without ground truth); class 0:
    one hit and one false positive; class 1: one hit."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images = [{"id": i, "width": 100, "height": 100} for i in (1, 2)]
    cats = [{"id": k, "name": n} for k, n in enumerate(["a", "b", "c"])]
    gts = [(1, 0, [10, 10, 20, 20]), (2, 0, [50, 50, 30, 30]), (2, 1, [0, 0, 40, 40])]
    dts = [(1, 0, [10, 10, 20, 20], 0.9), (2, 0, [70, 0, 20, 20], 0.8), (2, 1, [1, 1, 40, 40], 0.7)]
    with contextlib.redirect_stdout(io.StringIO()):
        gt, dt = COCO(), COCO()
        gt.dataset = {"images": images, "categories": cats, "annotations": [
            {"id": i + 1, "image_id": im, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
            for i, (im, c, b) in enumerate(gts)]}
        dt.dataset = {"images": images, "categories": cats, "annotations": [
            {"id": i + 1, "image_id": im, "category_id": c, "bbox": b, "area": b[2] * b[3], "score": s,
             "iscrowd": 0} for i, (im, c, b, s) in enumerate(dts)]}
        gt.createIndex()
        dt.createIndex()
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
    return ev


def test_pr_curve_from_cocoeval_shape():
    ev = _tiny_cocoeval()
    curve = pr_curve_from_cocoeval(ev)
    assert curve["iou"] == pytest.approx(0.5)
    assert len(curve["recall"]) == 101 and np.asarray(curve["precision"]).shape == (3, 101)
    assert curve["class_ids"] == [0, 1, 2]
    p = np.asarray(curve["precision"])
    assert np.isnan(p[2]).all()                                   # class without ground truth
    assert p[1] == pytest.approx(np.ones(101))                    # the one box, found first
    assert p[0, 0] == pytest.approx(1.0) and p[0, -1] == 0.0      # recall 0.5 reached, 1.0 not
    # the mean over the classes with ground truth is COCOeval's mAP@.5
    ap50 = np.mean([np.nanmean(p[k]) for k in (0, 1)])
    prec = ev.eval["precision"][0, :, :, 0, -1]
    assert ap50 == pytest.approx(np.mean(prec[prec > -1]))


def test_pr_curve_png_with_and_without_the_curve(tmp_path):
    pytest.importorskip("matplotlib")
    ev = _tiny_cocoeval()
    per_class = [{"class_id": k, "name": n, "instances": 1, "ap50": 0.5, "ap50_95": 0.3, "precision": 0.5,
                  "recall": 1.0} for k, n in enumerate("abc")]
    metrics = {"map50": 0.5, "precision": 0.6, "recall": 0.7, "pr_score_threshold": 0.25, "per_class": per_class}
    _png(plots.plot_pr_curve(metrics, list("abc"), tmp_path / "points.png"), 900, 700)
    metrics["pr_curve"] = pr_curve_from_cocoeval(ev)
    _png(plots.plot_pr_curve(metrics, list("abc"), tmp_path / "curve.png"), 900, 700)


def test_missing_matplotlib_is_one_note(tmp_path, monkeypatch):
    _results_csv(tmp_path / "results.csv")
    _no_module(monkeypatch, "matplotlib")
    logs = []
    assert plots.plot_run(tmp_path, _records(), ["cat", "dog", "bird"], {"per_class": []}, log=logs.append) == []
    assert logs == [plots.NO_MATPLOTLIB]
    assert not (tmp_path / "results.png").exists()


def test_failing_plot_is_one_warning(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    _results_csv(tmp_path / "results.csv")

    def boom(*a, **kw):
        raise RuntimeError("boom")

    monkeypatch.setattr(plots, "plot_labels", boom)
    logs = []
    written = plots.plot_run(tmp_path, _records(), ["cat", "dog", "bird"], None, log=logs.append)
    assert [p.name for p in written] == ["results.png"]
    assert logs == ["warning: labels.png not written: RuntimeError: boom"]
    assert [n for n in (x.name for x in tmp_path.iterdir()) if n.startswith(".")] == []


def test_missing_tensorboard_is_one_note(tmp_path, monkeypatch):
    _no_module(monkeypatch, "torch.utils.tensorboard", "tensorboard")
    logs = []
    sl = plots.ScalarLogger(tmp_path / "tb", 0, logs.append)
    sl.add({"epoch": 1, "box": 1.0, "map50": None})
    sl.close()
    assert logs == [plots.NO_TENSORBOARD]
    assert not (tmp_path / "tb").exists()


def test_tensorboard_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs = []
    sl = plots.ScalarLogger(tmp_path / "tb", 0, logs.append)
    sl.add({"epoch": 1, "box": 1.0, "loss": 2.0, "map50": None})
    sl.add({"epoch": 2, "box": 0.5, "loss": 1.0, "map50": 0.4})
    sl.close()
    assert logs == []
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("loss/box")] == [(1, 1.0), (2, 0.5)]
    assert [e.step for e in acc.Scalars("metrics/mAP50")] == [2]


def test_one_epoch_run_leaves_the_plots(shared_data, tmp_path):
    pytest.importorskip("matplotlib")
    from yolo4.trainer.train import train

    logs = []
    out = tmp_path / "run"
    train(shared_data / "darknet/cfg/yolov4-tiny.cfg", "raccoon", shared_data / "weights/yolov4-tiny.weights",
          epochs=1, batch_size=3, img_size=128, max_images=3, output_dir=out, workers=0, progress=False,
          log=logs.append)
    _png(out / "results.png", 1200, 600)
    _png(out / "labels.png", 1500, 500)
    _png(out / "pr_curve.png", 900, 700)
    assert not [line for line in logs if line.startswith("warning:") and ".png" in line]
    assert [n for n in (x.name for x in out.iterdir()) if n.startswith(".") or n.endswith(".tmp")] == []
