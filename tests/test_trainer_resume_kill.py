"""End to end through the CLI: ``yolo4 train`` with every augmentation and recipe element on, SIGKILLed
in the middle of the run, then ``yolo4 train --resume``: the final weights (raw, EMA) and optimizer
state are bit-identical to those of the same run left alone."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import REPO, run_cli
from tests.test_trainer_multiscale import tiny_dropblock_cfg
from yolo4.model.checkpoint import read_checkpoint

pytestmark = [pytest.mark.shared]

#: mosaic/CutMix (darknet code 4), blur, random shapes (random=1), SAT, jitter/HSV/flip from the cfg;
#: CmBN over 2 subdivisions; DropBlock in the cfg; 2 loader workers
SETS = ["mosaic=1", "cutmix=1", "blur=1", "random=1", "adversarial_lr=0.05"]


def _args(cfg, weights, out):
    # coco128: the model keeps its 80 classes, so the run has an EMA (a new class list trains without)
    args = ["train", "--cfg", cfg, "--weights", weights, "--data", "coco128", "--epochs", 3, "--batch", 4,
            "--subdivisions", 2, "--cmbn", "--img-size", 128, "--max-images", 8, "--workers", 2,
            "--device", "cpu", "--output-dir", out, "--exist-ok"]
    for s in SETS:
        args += ["--set", s]
    return args


def _epoch(path):
    try:
        return int(read_checkpoint(path)["epoch"])
    except Exception:           # not written yet
        return 0


def _tensors(ck, key):
    return {k: v for k, v in (ck.get(key) or {}).items() if torch.is_tensor(v)}


@pytest.mark.slow  # ~32 s on 2 CPU cores: two short training runs and a resumed one
def test_sigkill_mid_run_then_resume_equals_the_uninterrupted_run(shared_data, tmp_path):
    cfg = tiny_dropblock_cfg(shared_data, tmp_path)
    weights = shared_data / "weights/yolov4-tiny.weights"
    full = run_cli(*_args(cfg, weights, tmp_path / "full"), timeout=600)
    assert full.returncode == 0, full.stderr[-2000:]
    assert "random training shapes: 128x128 .. 224x224 px" in full.stdout + full.stderr

    killed = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "yolo4.cli", *map(str, _args(cfg, weights, killed))],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 300
        while _epoch(killed / "last.pt") < 1 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)       # the trainer and its loader workers, mid-epoch 2
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    done = _epoch(killed / "last.pt")
    assert 1 <= done < 3

    res = run_cli("train", "--resume", "--output-dir", killed, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"resuming {killed}: epoch {done + 1} of 3" in res.stdout + res.stderr

    a, b = read_checkpoint(killed / "last.pt"), read_checkpoint(tmp_path / "full" / "last.pt")
    assert a["epoch"] == b["epoch"] == 3
    for key in ("model", "train_model"):          # EMA weights, and the raw weights behind them
        ta, tb = _tensors(a, key), _tensors(b, key)
        assert ta and ta.keys() == tb.keys()
        differ = [k for k in ta if not torch.equal(ta[k], tb[k])]
        assert not differ, (key, differ[:5])
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k]["momentum_buffer"], sb[k]["momentum_buffer"])
                                          for k in sa)
    # the same run: arguments (the cfg each run wrote with --set aside), and the logged losses and mAP
    drop = ("cfg",)
    assert {k: v for k, v in a["train_args"].items() if k not in drop} == \
        {k: v for k, v in b["train_args"].items() if k not in drop}
    assert _csv(killed / "results.csv") == _csv(tmp_path / "full" / "results.csv")
    assert len(_csv(killed / "results.csv")) == 3


def _csv(path):
    import csv

    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if k != "time_s"} for r in csv.DictReader(f)]
