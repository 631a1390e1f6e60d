"""Optimizer selection (yolo4.trainer.optim), weight decay on conv weights only, Nesterov, gradient
accumulation by subdivisions (yolo4.trainer.train.accumulate_gradients), AMP only on CUDA, and a
resumed run that continues a non-default schedule and optimizer."""

import pytest
import torch
from torch import nn

from yolo4.errors import Yolo4Error
from yolo4.model.checkpoint import read_checkpoint
from yolo4.trainer.optim import build_optimizer, default_optimizer
from yolo4.trainer.train import accumulate_gradients, param_groups, subdivide, train

torch.set_num_threads(2)


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))


def _step(name, nesterov=False, steps=2, grad_fill=None, decay=0.01, lr=0.1):
    """A copy of ``_net`` after ``steps`` optimizer steps on a fixed loss (or on gradients = grad_fill)."""
    model = _net()
    opt = build_optimizer(param_groups(model, decay), name, lr, momentum=0.9, nesterov=nesterov)
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    for _ in range(steps):
        opt.zero_grad()
        if grad_fill is None:
            model(x).square().mean().backward()
        else:
            for p in model.parameters():
                p.grad = torch.full_like(p, grad_fill)
        opt.step()
    return model, opt


def _differs(a, b):
    return [k for k, v in a.state_dict().items() if not torch.equal(v, b.state_dict()[k])]


def test_nesterov_changes_the_update():
    plain, opt = _step("sgd")
    nest, opt_n = _step("sgd", nesterov=True)
    assert not opt.param_groups[0]["nesterov"] and opt_n.param_groups[0]["nesterov"]
    assert _differs(plain, nest)
    with pytest.raises(Yolo4Error, match="--nesterov applies to --optimizer sgd"):
        build_optimizer(param_groups(_net(), 0.0), "adam", 0.1, nesterov=True)


def test_decay_only_on_conv_weights():
    # zero gradients: only the decay term moves a parameter; darknet decays conv weights only
    base = _net()
    model, opt = _step("sgd", steps=1, grad_fill=0.0, decay=0.01, lr=0.1)
    assert isinstance(opt, torch.optim.SGD)
    for name in ("0.weight", "3.weight"):                               # conv weights: w - lr * decay * w
        assert torch.allclose(model.state_dict()[name], base.state_dict()[name] * (1 - 0.1 * 0.01)), name
    for name in ("1.weight", "1.bias", "3.bias"):                        # BN scale/shift, conv bias: untouched
        assert torch.equal(model.state_dict()[name], base.state_dict()[name]), name
    groups = opt.param_groups
    assert groups[0]["weight_decay"] == 0.01 and groups[1]["weight_decay"] == 0.0
    assert {id(p) for p in groups[0]["params"]} == {id(model[0].weight), id(model[3].weight)}


def test_adam_and_adamw_selected():
    assert default_optimizer({"adam": 1}) == "adam" and default_optimizer({}) == "sgd"
    adam = build_optimizer(param_groups(_net(), 0.01), "adam", 0.001, net={"B1": 0.8, "B2": 0.99, "eps": 1e-7})
    assert type(adam) is torch.optim.Adam
    assert adam.param_groups[0]["betas"] == (0.8, 0.99) and adam.param_groups[0]["eps"] == 1e-7
    adamw = build_optimizer(param_groups(_net(), 0.01), "adamw", 0.001)
    assert type(adamw) is torch.optim.AdamW and adamw.param_groups[0]["eps"] == 1e-6   # darknet's eps
    assert adamw.param_groups[1]["weight_decay"] == 0.0
    a, _ = _step("adam", lr=0.01)
    w, _ = _step("adamw", lr=0.01)
    s, _ = _step("sgd", lr=0.01)
    assert _differs(a, w) and _differs(a, s)                 # L2 in the gradient vs decoupled decay
    with pytest.raises(Yolo4Error, match="--optimizer must be one of sgd, adam, adamw"):
        build_optimizer(param_groups(_net(), 0.0), "rmsprop", 0.1)


@pytest.fixture(scope="module")
def tiny_random(shared_data):
    from yolo4.model import load_darknet

    torch.manual_seed(0)
    return load_darknet(shared_data / "darknet/cfg/yolov4-tiny.cfg", num_classes=2)


def _batch(n, size=64):
    g = torch.Generator().manual_seed(3)
    images = torch.rand(n, 3, size, size, generator=g)
    rows = []
    for j in range(n):
        for c in range(j % 3):                               # 0, 1 or 2 boxes per image
            rows.append([j, c % 2, 20.0 + 5 * c, 30.0, 16.0 + j, 20.0])
    return images, torch.tensor(rows, dtype=torch.float32).reshape(-1, 6)


def _grads_and_update(model, loss_fn, images, targets, subdivisions):
    import copy

    m = copy.deepcopy(model)
    m.train()
    for mod in m.modules():                                  # batch norm in eval mode: per-image independent
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            mod.eval()
    opt = torch.optim.SGD(param_groups(m, 5e-4), lr=0.01, momentum=0.9)
    opt.zero_grad()
    items = accumulate_gradients(m, loss_fn, images, targets, subdivisions)
    grads = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
    opt.step()
    return items, grads, m


@pytest.mark.parametrize("n, subdivisions", [(8, 2), (8, 4), (5, 2)])
def test_accumulated_subdivisions_equal_one_batch(tiny_random, n, subdivisions):
    from yolo4.trainer.loss import YoloLoss

    loss_fn = YoloLoss([yl.spec for yl in tiny_random.yolo_layers])
    images, targets = _batch(n)
    chunks = list(subdivide(images, targets, subdivisions))
    assert sum(c[0].shape[0] for c in chunks) == n and sum(c[2] for c in chunks) == pytest.approx(1.0)
    assert sum(c[1].shape[0] for c in chunks) == targets.shape[0]
    assert all(c[1][:, 0].max() < c[0].shape[0] for c in chunks if c[1].numel())    # re-indexed per chunk
    sizes = []

    def counting(raw, t):
        sizes.append(raw[0].shape[0])
        return loss_fn(raw, t)

    one, g1, m1 = _grads_and_update(tiny_random, loss_fn, images, targets, 1)
    acc, g2, m2 = _grads_and_update(tiny_random, counting, images, targets, subdivisions)
    assert sizes == [c[0].shape[0] for c in chunks] and len(sizes) == subdivisions
    for k in ("box", "obj", "cls", "loss"):
        assert acc[k] == pytest.approx(one[k], rel=1e-5, abs=1e-7), k
    assert g1.keys() == g2.keys()
    for name, g in g1.items():
        assert torch.allclose(g2[name], g, rtol=1e-4, atol=1e-6), name
    p1, p2 = dict(m1.named_parameters()), dict(m2.named_parameters())
    for name in p1:
        assert torch.allclose(p1[name], p2[name], rtol=1e-5, atol=1e-7), name
    # without the per-share weighting the sum of mini-batch means would be `subdivisions` times larger
    big = max(g1, key=lambda k: g1[k].abs().max())
    assert not torch.allclose(g2[big] * subdivisions, g1[big], rtol=1e-2)


def test_subdivisions_must_divide_the_batch(tmp_path):
    with pytest.raises(Yolo4Error, match=r"--subdivisions 3 must divide --batch 8"):
        train("yolov4-tiny", "raccoon", batch_size=8, subdivisions=3, output_dir=tmp_path / "r", log=lambda s: None)


def _record_step_lrs(monkeypatch, cls):
    lrs = []
    real = cls.step

    def step(self, *a, **kw):
        lrs.append(self.param_groups[0]["lr"])
        return real(self, *a, **kw)

    monkeypatch.setattr(cls, "step", step)
    return lrs


class _Stop(Exception):
    pass


def test_resume_continues_steps_policy_adamw_and_subdivisions(shared_data, tmp_path, monkeypatch):
    """policy steps + AdamW + 3 subdivisions, interrupted after epoch 1 of 2 and resumed with nothing
    but the folder: the same lr at every step and the same weights as the uninterrupted run."""
    kw = dict(cfg=shared_data / "darknet/cfg/yolov4-tiny.cfg", weights=shared_data / "weights/yolov4-tiny.weights",
              data="raccoon", epochs=2, batch_size=3, img_size=64, max_images=6, policy="steps",
              optimizer="adamw", subdivisions=3, workers=0, progress=False)
    from yolo4.trainer.loss import YoloLoss

    lrs = _record_step_lrs(monkeypatch, torch.optim.AdamW)
    batches = []
    real_call = YoloLoss.__call__

    def call(self, raw, targets):
        batches.append(raw[0].shape[0])
        return real_call(self, raw, targets)

    monkeypatch.setattr(YoloLoss, "__call__", call)
    logs = []
    train(output_dir=tmp_path / "full", log=logs.append, **kw)
    full_lrs = list(lrs)
    assert batches == [1] * 12                               # 4 steps x 3 mini-batches of 1 image
    # 4 steps: burn-in 0 (10 % of 4 rounds to 0), darknet's steps at 80 % / 90 % -> steps 3 and 4; the
    # cfg's learning_rate 0.00261 per step (raccoon is a new class list)
    assert full_lrs == pytest.approx([2.61e-3, 2.61e-3, 2.61e-4, 2.61e-5], rel=1e-5)
    assert any("(burn-in 0 steps, steps (x0.1 at step 3, x0.1 at step 4)), adamw, 3 subdivisions of 1" in line for line in logs)
    full_ck = read_checkpoint(tmp_path / "full" / "last.pt")
    args = full_ck["train_args"]
    assert (args["policy"], args["steps"], args["scales"], args["optimizer"], args["subdivisions"]) == \
        ("steps", [3, 4], [0.1, 0.1], "adamw", 3)
    assert args["amp"] is False

    def stop(line):
        if line.startswith("epoch 1/2"):
            raise _Stop(line)

    with pytest.raises(_Stop):
        train(output_dir=tmp_path / "run", log=stop, **kw)
    del lrs[:]
    resumed = []
    train(output_dir=tmp_path / "run", resume=True, workers=0, progress=False, log=resumed.append)
    assert any(line.startswith("resuming") for line in resumed)
    assert lrs == pytest.approx(full_lrs[2:], rel=1e-12)
    ck = read_checkpoint(tmp_path / "run" / "last.pt")
    for k, v in ck["model"].items():
        assert torch.allclose(v.float(), full_ck["model"][k].float(), atol=1e-5), k
    with pytest.raises(Yolo4Error, match=r"^--policy cosine conflicts with .* \(policy steps\)"):
        train(output_dir=tmp_path / "run", resume=True, policy="cosine", log=lambda s: None)


def test_amp_is_cuda_only(shared_data, tmp_path):
    logs = []
    with pytest.raises(_Stop):
        def log(line):
            logs.append(line)
            if line.startswith("train: "):
                raise _Stop(line)
        train(shared_data / "darknet/cfg/yolov4-tiny.cfg", "raccoon", img_size=64, max_images=2, amp=True,
              device="cpu", output_dir=tmp_path / "run", workers=0, progress=False, log=log)
    assert "note: AMP needs a CUDA device; training in float32 on cpu" in logs
    assert not any("AMP" in line for line in logs if line.startswith("train: "))


def test_amp_path_autocasts_and_scales_the_loss(tiny_random):
    """The AMP branch of accumulate_gradients (float16 autocast + GradScaler), run on the CPU as a stand-in
    for CUDA: the gradients come out multiplied by the loss scale and, unscaled, near the float32 ones."""
    from yolo4.trainer.loss import YoloLoss

    loss_fn = YoloLoss([yl.spec for yl in tiny_random.yolo_layers])
    seen = []

    def recording(raw, t):
        seen.append((raw[0].dtype, raw[0].shape[0]))
        return loss_fn(raw, t)

    images, targets = _batch(4)
    ref, g32, _ = _grads_and_update(tiny_random, loss_fn, images, targets, 1)
    m = tiny_random
    m.eval()
    m.zero_grad(set_to_none=True)
    scaler = torch.amp.GradScaler("cpu", init_scale=256.0)
    items = accumulate_gradients(m, recording, images, targets, 2, scaler)
    assert seen == [(torch.float32, 2), (torch.float32, 2)]        # two mini-batches, float32 into the loss
    assert items["loss"] == pytest.approx(ref["loss"], rel=2e-2)
    name = max(g32, key=lambda k: g32[k].abs().max())
    g16 = dict(m.named_parameters())[name].grad
    assert torch.allclose(g16 / 256.0, g32[name], rtol=5e-2, atol=5e-2 * float(g32[name].abs().max()))
    assert float(g16.abs().max()) > 100 * float(g32[name].abs().max())
    m.zero_grad(set_to_none=True)
