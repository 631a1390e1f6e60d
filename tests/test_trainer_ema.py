"""EMA of the weights (yolo4.trainer.ema), its checkpoint layout, frozen batch norm, and that a
checkpoint written before the EMA still resumes as the run it was."""

import math

import pytest
import torch
from torch import nn

from yolo4.model.checkpoint import read_checkpoint
from yolo4.trainer.checkpoint import make_checkpoint, save_checkpoint
from yolo4.trainer.ema import DECAY, TAU_MAX, ModelEMA, ema_decay, ema_tau
from yolo4.trainer.train import set_train_mode, train

torch.set_num_threads(2)


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))


def test_ema_follows_the_formula_and_leaves_the_model_alone():
    model = _net()
    ema = ModelEMA(model, decay=0.9, tau=2.0)
    assert ema.updates == 0 and not any(p.requires_grad for p in ema.module.parameters())
    assert not ema.module.training
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(1, 4):
        model.train()
        loss = model(torch.rand(2, 3, 8, 8)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        ema.update(model)
        d = 0.9 * (1 - math.exp(-step / 2.0))
        assert ema.decay_at(step) == pytest.approx(d)
        for k, v in before.items():
            assert torch.equal(model.state_dict()[k], v), k           # the model is not touched
            if v.is_floating_point():
                expected[k] = d * expected[k] + (1 - d) * v
            else:
                expected[k] = v.clone()                                # num_batches_tracked: copied
        for k, v in ema.module.state_dict().items():
            assert torch.allclose(v, expected[k], atol=1e-6), k
    assert ema.updates == 3
    assert int(ema.module.state_dict()["1.num_batches_tracked"]) == 3

    # state_dict / load round trip into a fresh average
    other = ModelEMA(_net(), decay=0.9, tau=2.0, updates=3)
    other.load(ema.state_dict())
    for k, v in ema.module.state_dict().items():
        assert torch.equal(other.module.state_dict()[k], v), k


def test_ramp_and_tau():
    ema = ModelEMA(_net(), decay=DECAY, tau=10.0)
    ds = [ema.decay_at(u) for u in (0, 1, 10, 100, 1000)]
    assert ds[0] == 0.0 and all(a < b for a, b in zip(ds, ds[1:])) and ds[-1] == pytest.approx(DECAY)
    assert ema_tau(36) == pytest.approx(3.6)            # 10 % of a short run
    assert ema_tau(5) == 1.0                             # at least one update
    assert ema_tau(10 ** 7) == TAU_MAX                   # ultralytics' 2000 for long runs
    # the average's horizon 1 / (1 - decay): 10 % of the run, ultralytics' 0.9999 at most
    assert 1 / (1 - ema_decay(360)) == pytest.approx(36.0)
    assert ema_decay(5) == 0.0                           # under one step: the raw model
    assert ema_decay(10 ** 7) == DECAY


def test_frozen_batch_norm_keeps_running_statistics():
    model = _net()
    set_train_mode(model, freeze_bn=True)
    assert model.training and not model[1].training
    mean = model[1].running_mean.clone()
    model(torch.rand(2, 3, 8, 8) + 5.0).sum().backward()
    assert torch.equal(model[1].running_mean, mean)
    assert model[1].weight.grad is not None              # scale and shift still train
    set_train_mode(model, freeze_bn=False)
    assert model[1].training


def test_checkpoint_stores_the_average_once(tmp_path, shared_data):
    from yolo4.model import load_checkpoint, load_darknet

    model = load_darknet(shared_data / "darknet/cfg/yolov4-tiny.cfg", num_classes=2)
    ema = ModelEMA(model, tau=1.0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)
    ck = make_checkpoint(ema.module, ["a", "b"], 1, 0.5, ema_updates=ema.updates, train_model=model)
    ck["ema"] = ck["model"]
    with_ema = save_checkpoint(ck, tmp_path / "ema.pt")
    plain = save_checkpoint(make_checkpoint(model, ["a", "b"], 1, 0.5), tmp_path / "plain.pt")
    # the average is stored once (model and ema share tensors), the raw weights once more
    assert with_ema.stat().st_size < 2.2 * plain.stat().st_size
    back = read_checkpoint(with_ema)
    assert back["ema_updates"] == 1
    loaded = load_checkpoint(with_ema)                   # what eval / export use: the average
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, ema.module.state_dict()[k]), k
        assert torch.equal(back["ema"][k], v), k
        assert torch.equal(back["train_model"][k], model.state_dict()[k]), k


def test_a_checkpoint_from_before_the_ema_resumes_as_it_ran(shared_data, tmp_path):
    """A last.pt in the earlier layout (no EMA, no frozen BN, unscaled lr in train_args) continues
    with exactly those settings: no average appears, the raw weights keep training."""
    kw = dict(cfg=shared_data / "darknet/cfg/yolov4-tiny.cfg",
              weights=shared_data / "weights/yolov4-tiny.weights", data="coco128", epochs=2, batch_size=3, img_size=128, max_images=6, workers=0, progress=False)
    out = tmp_path / "run"
    train(output_dir=out, epochs=1, **{k: v for k, v in kw.items() if k != "epochs"}, log=lambda s: None)
    ck = read_checkpoint(out / "last.pt")
    assert ck["ema"] is not None and ck["train_args"]["ema_tau"] > 0
    # rewrite it as an earlier version wrote it: raw weights in "model", no EMA keys, 2 epochs planned
    old_args = {k: v for k, v in ck["train_args"].items() if k not in ("ema_tau", "ema_decay", "freeze_bn")}
    old_args.update(epochs=2, lr=0.00261)
    old = dict(ck, model=ck.pop("train_model"), ema=None, ema_updates=0, train_args=old_args)
    save_checkpoint(old, out / "last.pt")
    raw = {k: v.clone() for k, v in old["model"].items()}

    logs = []
    train(output_dir=out, resume=True, workers=0, progress=False, log=logs.append)
    assert any("lr 0.00261" in line for line in logs)
    new = read_checkpoint(out / "last.pt")
    assert new["epoch"] == 2 and new["ema"] is None and "train_model" not in new
    assert "ema_tau" not in new["train_args"] or not new["train_args"]["ema_tau"]
    assert new["train_args"]["freeze_bn"] is False
    assert any(not torch.equal(v, raw[k]) for k, v in new["model"].items() if v.is_floating_point())


def test_re_made_heads_get_their_own_lr(shared_data):
    from yolo4.model import load_darknet
    from yolo4.trainer.train import NOMINAL_BATCH, fresh_heads, param_groups

    cfg = shared_data / "darknet/cfg/yolov4-tiny.cfg"
    coco = load_darknet(cfg, num_classes=80)
    one = load_darknet(cfg, num_classes=1)
    assert not fresh_heads(cfg, coco) and fresh_heads("yolov4-tiny", one)
    assert len(param_groups(coco, 0.0005)) == 2                       # no fresh heads: as before
    groups = param_groups(one, 0.0005, one.head_convs(), NOMINAL_BATCH / 8)
    head_ids = {id(p) for m in one.head_convs() for p in m.parameters()}
    assert len(groups) == 4 and [g.get("lr_scale", 1.0) for g in groups] == [1.0, 1.0, 8.0, 8.0]
    assert {id(p) for g in groups[2:] for p in g["params"]} == head_ids
    assert not head_ids & {id(p) for g in groups[:2] for p in g["params"]}
    assert sum(len(g["params"]) for g in groups) == len(list(one.parameters()))
    assert [g["weight_decay"] for g in groups] == [0.0005, 0.0, 0.0005, 0.0]
