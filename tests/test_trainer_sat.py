"""Self-Adversarial Training (yolo4.trainer.sat): the first pass moves the images up the loss (clipped to
[0, 1], no parameter gradients, modes and BN statistics kept), the second pass trains on them; darknet's
schedule (coin per mini-batch after burn_in, step adversarial_lr * it / max_batches); off without
[net] adversarial_lr."""

import numpy as np
import pytest
import torch

from yolo4.trainer import sat
from yolo4.trainer.loss import YoloLoss
from yolo4.trainer.train import accumulate_gradients, train

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def setup(shared_data):
    from yolo4.model import load_darknet

    model = load_darknet(shared_data / "darknet/cfg/yolov4-tiny.cfg", shared_data / "weights/yolov4-tiny.weights")
    model.train()
    loss_fn = YoloLoss([yl.spec for yl in model.yolo_layers])
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 64, 64, generator=g) * 0.5
    x[:, :, 16:48, 16:48] += 0.4
    t = torch.tensor([[0, 0, 0.5, 0.5, 0.5, 0.5], [1, 2, 0.5, 0.5, 0.5, 0.5]])
    return model, loss_fn, x, t


def _loss(model, loss_fn, x, t):
    with torch.no_grad():
        return float(loss_fn(model(x, raw=True), t)[0])


def test_first_pass_ascends_the_loss_and_leaves_the_model_alone(setup):
    model, loss_fn, x, t = setup
    model.zero_grad(set_to_none=True)
    bn = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = [m.running_mean.clone() for m in bn]
    xa = sat.adversarial_images(model, loss_fn, x, t, lr=0.05)
    assert xa.shape == x.shape and not xa.requires_grad
    assert float(xa.min()) >= 0.0 and float(xa.max()) <= 1.0
    assert not torch.equal(xa, x)
    assert all(p.grad is None for p in model.parameters())          # gradient w.r.t. the images only
    assert all(m.training for m in model.modules())                 # train mode restored (BN included)
    assert all(torch.equal(m.running_mean, b) for m, b in zip(bn, before))   # BN ran on running stats
    model.eval()                                                    # compare losses on fixed statistics
    try:
        assert _loss(model, loss_fn, xa, t) > _loss(model, loss_fn, x, t)
    finally:
        model.train()
    assert sat.adversarial_images(model, loss_fn, x, t, lr=0.0) is x


def test_clipping_to_the_unit_range(setup):
    model, loss_fn, x, t = setup
    xa = sat.adversarial_images(model, loss_fn, x, t, lr=1e4)
    assert float(xa.min()) == 0.0 and float(xa.max()) == 1.0


def _grads(model):
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


def test_second_pass_trains_on_the_perturbed_images(setup):
    model, loss_fn, x, t = setup
    xa = sat.adversarial_images(model, loss_fn, x, t, lr=0.05)
    runs = {}
    for name, images, perturb in (
            ("sat", x, lambda xb, tb: sat.adversarial_images(model, loss_fn, xb, tb, lr=0.05)),
            ("perturbed", xa, None), ("original", x, None)):
        model.zero_grad(set_to_none=True)
        accumulate_gradients(model, loss_fn, images, t, perturb=perturb)
        runs[name] = _grads(model)
    model.zero_grad(set_to_none=True)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-7) for a, b in zip(runs["sat"], runs["perturbed"]))
    assert not all(torch.allclose(a, b, rtol=1e-4, atol=1e-7) for a, b in zip(runs["sat"], runs["original"]))


def test_perturb_sees_each_mini_batch_with_its_own_labels(setup):
    model, loss_fn, x, t = setup
    seen = []

    def perturb(xb, tb):
        seen.append((xb.shape[0], tb[:, :2].tolist()))
        return xb

    accumulate_gradients(model, loss_fn, x, t, subdivisions=2, perturb=perturb)
    model.zero_grad(set_to_none=True)
    assert seen == [(1, [[0.0, 0.0]]), (1, [[0.0, 2.0]])]


def test_darknet_schedule():
    # train_network_datum_gpu: only after burn_in, coin 1/2 per mini-batch, step adversarial_lr * it / max_batches
    assert sat.sat_step_size(0.05, 10, 100, burn_in=10) == 0.0
    assert sat.sat_step_size(0.0, 50, 100) == 0.0
    steps = [sat.sat_step_size(0.05, 50, 100, burn_in=10, seed=0, minibatch=k) for k in range(400)]
    on = [s for s in steps if s]
    assert 150 < len(on) < 250 and all(s == pytest.approx(0.025) for s in on)
    assert steps == [sat.sat_step_size(0.05, 50, 100, burn_in=10, seed=0, minibatch=k) for k in range(400)]
    assert sat.adversarial_step_size(0.05, 100, 100) == pytest.approx(0.05)
    assert sat.perturb_fn(None, None, 0.0, 50, 100) is None


def _dataset(root):
    import cv2

    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(2):
            img = np.zeros((96, 96, 3), np.uint8)
            img[20:60, 30:70] = 255
            cv2.imwrite(str(root / "images" / split / f"{i}.png"), img)
            (root / "labels" / split / f"{i}.txt").write_text("0 0.520833 0.416667 0.416667 0.416667\n")
    yaml = root / "data.yaml"
    yaml.write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames: [square]\n")
    return yaml


def test_train_runs_sat_only_with_adversarial_lr(shared_data, tmp_path, monkeypatch):
    calls = []
    real = sat.adversarial_images

    def spy(model, loss_fn, images, targets, lr):
        calls.append(lr)
        return real(model, loss_fn, images, targets, lr)

    monkeypatch.setattr(sat, "adversarial_images", spy)
    monkeypatch.setattr(sat, "sat_step_size", lambda *a, **kw: 0.01)   # the coin always says yes
    data = _dataset(tmp_path / "ds")
    base = shared_data / "darknet/cfg/yolov4-tiny.cfg"
    kw = dict(data=data, epochs=1, batch_size=2, subdivisions=2, img_size=64, workers=0, progress=False,
              log=lambda s: None)
    train(base, output_dir=tmp_path / "off", **kw)                     # yolov4-tiny.cfg: no adversarial_lr
    assert calls == []
    cfg = tmp_path / "sat.cfg"
    cfg.write_text(base.read_text().replace("[net]", "[net]\nadversarial_lr=0.05", 1))
    train(cfg, output_dir=tmp_path / "on", **kw)
    assert calls == [0.01, 0.01]                                       # one first pass per mini-batch


def test_cmbn_is_a_run_argument_stored_and_kept_on_resume(shared_data, tmp_path):
    """--cmbn is run-defining: stored in the checkpoint, taken by --resume, a different value refused."""
    import pytest as _pytest

    from yolo4.errors import Yolo4Error
    from yolo4.model.checkpoint import read_checkpoint

    data = _dataset(tmp_path / "ds")
    kw = dict(data=data, batch_size=2, subdivisions=2, img_size=64, workers=0, progress=False, log=lambda s: None)
    out = tmp_path / "run"
    train(shared_data / "darknet/cfg/yolov4-tiny.cfg", output_dir=out, epochs=2, cmbn=True, **kw)
    assert read_checkpoint(out / "last.pt")["train_args"]["cmbn"] is True
    with _pytest.raises(Yolo4Error, match="--no-cmbn conflicts"):
        train(resume=True, output_dir=out, cmbn=False, progress=False, log=lambda s: None)
