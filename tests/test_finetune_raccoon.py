"""Acceptance: a short CPU fine-tune of the real yolov4-tiny on raccoon (VOC, 1 class, the given
train/test split) raises test mAP@.5 well above the freshly re-headed model's, and the checkpoint
scores the same through `yolo4 eval` (the deployment path: export -> ONNX Runtime)."""

import json

import pytest
import torch

from yolo4.data.datasets import load_dataset
from yolo4.model import load_darknet
from yolo4.trainer.train import train
from yolo4.trainer.validate import evaluate_model

from .conftest import run_cli

pytestmark = [pytest.mark.slow, pytest.mark.shared]


def test_finetune_raccoon_raises_map(shared_data, tmp_path):
    torch.set_num_threads(2)
    torch.manual_seed(0)
    cfg = shared_data / "darknet/cfg/yolov4-tiny.cfg"
    weights = shared_data / "weights/yolov4-tiny.weights"
    test_split = load_dataset("raccoon", "val")
    assert len(test_split.records) == 40

    fresh = load_darknet(cfg, weights, num_classes=1)
    fresh.names = ["raccoon"]
    before = evaluate_model(fresh, test_split, input_hw=(320, 320))

    summary = train(cfg=cfg, data="raccoon", weights=weights, epochs=2, batch_size=8, img_size=320,
                    output_dir=tmp_path / "run", workers=0, progress=False, log=lambda m: None)
    p = run_cli("eval", "--data", "raccoon", "--checkpoint", summary["best"], "--img-size", "320",
                "--save-json", tmp_path / "after.json")
    assert p.returncode == 0, p.stderr
    after = json.loads((tmp_path / "after.json").read_text())
    print("raccoon test mAP@.5: re-headed %.4f -> fine-tuned %.4f (mAP@[.5:.95] %.4f -> %.4f)"
          % (before["map50"], after["map50"], before["map50_95"], after["map50_95"]))
    assert after["map50"] > before["map50"] + 0.2
    # the best epoch's own validation (torch backend) and `yolo4 eval` (ONNX Runtime) agree
    best_row = summary["epochs"][summary["best_epoch"] - 1]
    assert best_row["map50"] == pytest.approx(after["map50"], abs=0.005)
