"""Random training shapes (``[yolo] random``, yolo4.trainer.multiscale) and DropBlock's warm-up, as the
trainer drives them: darknet's size draw (src/detector.c train_detector), one size per 10 iterations
from the seed and the iteration alone, boxes scaled with the batch, stored as a run argument."""

import math

import pytest
import torch

from yolo4.errors import Yolo4Error
from yolo4.model.checkpoint import read_checkpoint
from yolo4.model.layers import Dropout
from yolo4.trainer import multiscale
from yolo4.trainer.train import train

torch.set_num_threads(2)

QUIET = dict(workers=0, progress=False)


def darknet_dim(init, scale, step):
    """darknet: ``roundl(random_val*init_w / net.resize_step + 1) * net.resize_step``, capped at ``init``
    for a downward draw (written out here from the C source, independently of the module)."""
    x = scale * init / step + 1
    dim = int(math.floor(x + 0.5)) * step
    if scale < 1 and dim > init:
        dim = init
    return dim


def test_bounds_are_darknets_320_to_608_at_416():
    assert multiscale.rand_coef(1) == 1.4 and multiscale.rand_coef(1.2) == 1.2
    assert multiscale.size_bounds((416, 416), 1.4) == ((320, 320), (608, 608))
    assert multiscale.size_bounds((416, 416), 1.2) == ((384, 384), (544, 544))
    assert multiscale.size_bounds((416, 416), 1.4, step=64) == ((384, 384), (640, 640))
    with pytest.raises(ValueError, match="random=0.5"):
        multiscale.rand_coef(0.5)


def test_draws_follow_darknets_formula_and_cover_the_range():
    sizes = {multiscale.draw_size((416, 416), 1.4, 32, 0, 10 * k) for k in range(400)}
    sides = {h for h, w in sizes}
    assert all(h == w for h, w in sizes)
    assert sides == set(range(320, 609, 32))        # every step from 320 to 608 is drawn
    for scale in (1 / 1.4, 0.8, 0.97, 1.0, 1.01, 1.2, 1.4):
        assert multiscale.dim_for(416, scale, 32) == darknet_dim(416, scale, 32)
    # a non-square input: both sides scaled by the same draw
    for k in range(50):
        h, w = multiscale.draw_size((320, 512), 1.4, 32, 3, 10 * k)
        assert h % 32 == 0 and w % 32 == 0 and 224 <= h <= 480 and 384 <= w <= 736


def test_one_size_per_ten_iterations_from_seed_and_iteration_alone():
    def size(seed, it):
        return multiscale.draw_size((416, 416), 1.4, 32, seed, it)

    for k in range(20):
        assert len({size(0, 10 * k + j) for j in range(10)}) == 1
    periods = [size(0, 10 * k) for k in range(20)]
    assert len(set(periods)) > 3
    assert periods != [size(1, 10 * k) for k in range(20)]      # the seed changes the draws
    assert periods == [size(0, 10 * k + 9) for k in range(20)]  # the same in a resumed run / another rank


def test_resize_batch_scales_boxes_with_the_image():
    x = torch.zeros(1, 3, 128, 128)
    x[:, :, 32:64, 48:112] = 1.0                        # a box x 48..112, y 32..64
    t = torch.tensor([[0.0, 2.0, 80.0, 48.0, 64.0, 32.0]])
    y, u = multiscale.resize_batch(x, t, (192, 256))
    assert y.shape == (1, 3, 192, 256)
    assert u.tolist() == [[0.0, 2.0, 160.0, 72.0, 128.0, 48.0]]
    assert t.tolist() == [[0.0, 2.0, 80.0, 48.0, 64.0, 32.0]]     # the input left alone
    cx, cy, w, h = u[0, 2:].tolist()
    inside = y[0, 0, int(cy - h / 2) + 1:int(cy + h / 2) - 1, int(cx - w / 2) + 1:int(cx + w / 2) - 1]
    assert float(inside.min()) == 1.0
    assert float(y[0, 0].sum()) == pytest.approx(w * h, rel=0.05)
    same, same_t = multiscale.resize_batch(x, t, (128, 128))
    assert same is x and same_t is t


def _record_train_inputs(monkeypatch):
    """The ``[B, 3, H, W]`` shape of every training forward (model in train mode)."""
    from yolo4.model import Darknet

    shapes = []
    real = Darknet.forward

    def forward(self, x, *a, **kw):
        if self.training:
            shapes.append(tuple(x.shape))
        return real(self, x, *a, **kw)

    monkeypatch.setattr(Darknet, "forward", forward)
    return shapes


RUN = dict(data="raccoon", epochs=1, batch_size=1, img_size=160, max_images=21)


def test_trainer_changes_the_input_size_every_ten_iterations(shared_data, tmp_path, monkeypatch):
    kw = dict(cfg=shared_data / "darknet/cfg/yolov4-tiny.cfg", weights=shared_data / "weights/yolov4-tiny.weights",
              **RUN, **QUIET)
    shapes = _record_train_inputs(monkeypatch)
    logs = []
    train(output_dir=tmp_path / "ms", multi_scale=True, log=logs.append, **kw)
    expected = [multiscale.draw_size((160, 160), 1.4, 32, 0, it) for it in range(21)]
    assert [s[2:] for s in shapes] == expected
    assert len(set(expected)) > 1                       # the test sees sizes change
    lo, hi = multiscale.size_bounds((160, 160), 1.4)
    assert any(f"random training shapes: {lo[1]}x{lo[0]} .. {hi[1]}x{hi[0]} px" in line for line in logs)
    ck = read_checkpoint(tmp_path / "ms" / "last.pt")
    assert ck["train_args"]["multi_scale"] is True and ck["train_args"]["img_size"] == [160, 160]

    # yolov4-tiny.cfg says random=0: off by default, every batch at the run's size
    shapes.clear()
    train(output_dir=tmp_path / "plain", log=lambda s: None, **kw)
    assert {s[2:] for s in shapes} == {(160, 160)} and len(shapes) == 21
    assert read_checkpoint(tmp_path / "plain" / "last.pt")["train_args"]["multi_scale"] is False


def test_cfg_random_turns_it_on_and_resume_keeps_it(shared_data, tmp_path, monkeypatch):
    text = (shared_data / "darknet/cfg/yolov4-tiny.cfg").read_text().replace("random=0", "random=1.2")
    cfg = tmp_path / "tiny-random.cfg"
    cfg.write_text(text)
    kw = dict(cfg=cfg, weights=shared_data / "weights/yolov4-tiny.weights", **RUN, **QUIET)
    shapes = _record_train_inputs(monkeypatch)
    logs = []
    train(output_dir=tmp_path / "run", log=logs.append, **dict(kw, epochs=2, max_images=6))
    assert [s[2:] for s in shapes] == [multiscale.draw_size((160, 160), 1.2, 32, 0, it) for it in range(12)]
    assert any("(random=1.2;" in line for line in logs)
    with pytest.raises(Yolo4Error, match=r"^--no-multi-scale conflicts with the run being resumed in .* "
                                         r"\(multi-scale on\)"):
        train(output_dir=tmp_path / "run", resume=True, multi_scale=False, log=lambda s: None, **QUIET)


def tiny_dropblock_cfg(shared_data, folder):
    """yolov4-tiny.cfg with a ``[dropout] dropblock=1`` (size 3, probability 0.1) before its last head
    conv (no layer index after it shifts), written to ``folder/tiny-dropblock.cfg``."""
    text = (shared_data / "darknet/cfg/yolov4-tiny.cfg").read_text()
    head = text.rindex("[convolutional]")
    cfg = folder / "tiny-dropblock.cfg"
    cfg.write_text(text[:head] + "[dropout]\ndropblock=1\ndropblock_size_abs=3\nprobability=0.1\n\n" + text[head:])
    return cfg


def test_dropblock_warms_up_over_the_run(shared_data, tmp_path, monkeypatch):
    """darknet: probability and block size x ``iteration / (0.85 max_batches)``; the run's iterations are
    ``max_batches``. Without the trainer setting it the multiplier stays 1."""
    cfg = tiny_dropblock_cfg(shared_data, tmp_path)
    seen = []
    real = Dropout.forward

    def forward(self, x):
        if self.training:
            seen.append(self.multiplier)
        return real(self, x)

    monkeypatch.setattr(Dropout, "forward", forward)
    train(cfg=cfg, weights=shared_data / "weights/yolov4-tiny.weights", output_dir=tmp_path / "run",
          log=lambda s: None, **dict(RUN, epochs=2, batch_size=2, max_images=6), **QUIET)
    total = 6                                  # 2 epochs x 3 steps
    assert seen == pytest.approx([it / (0.85 * total) for it in range(total)], rel=1e-12)
