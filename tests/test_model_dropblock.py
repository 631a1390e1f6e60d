"""``[dropout]`` with and without ``dropblock=1`` (AlexeyAB darknet ``src/dropout_layer.c``,
``src/dropout_layer_kernels.cu``, ``parse_dropout`` in ``src/parser.c``): exact identity in eval
mode, plain dropout and DropBlock in training mode, cfg parsing and one-line cfg errors."""

import io
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.test_model_zoo_sections import cfg_text, compare_opencv, conv, write
from yolo4.errors import CfgError
from yolo4.model import Darknet
from yolo4.model.cfg import DropoutSpec, Section
from yolo4.model.layers import Dropout, dropblock_multiplier

DROPBLOCK = "\n[dropout]\ndropblock=1\ndropblock_size_abs=7\nprobability=0.1\n"


def layer(probability=0.2, dropblock=False, rel=0.0, size=0):
    spec = DropoutSpec(0, Section("dropout"), 8, 8, 1, probability=probability, dropblock=dropblock,
                       dropblock_size_rel=rel, dropblock_size_abs=size)
    return Dropout(spec)


def block_covered(zero: torch.Tensor, bs: int) -> torch.Tensor:
    """For a 0/1 float map ``[N, 1, H, W]`` of zeroed cells: True where a zeroed cell lies inside
    some all-zero ``bs x bs`` window."""
    full = F.avg_pool2d(zero, bs, 1) == 1  # top-left corners of all-zero windows
    return F.conv_transpose2d(full.float(), torch.ones(1, 1, bs, bs)) > 0


@pytest.mark.parametrize("dropblock", [False, True])
def test_eval_is_exact_identity(dropblock):
    m = layer(0.5, dropblock=dropblock, size=3).eval()
    x = torch.randn(2, 8, 16, 16)
    assert m(x) is x


def test_dropout_fraction_scale_and_seed():
    """Plain dropout: the zeroed fraction is ``probability`` within 0.01 (131072 units, about 8
    standard deviations); kept units are ``x / (1 - p)`` (darknet ``l.scale``)."""
    p = 0.3
    m = layer(p).train()
    x = torch.rand(4, 8, 64, 64) + 1.0
    torch.manual_seed(0)
    y = m(x)
    zero = y == 0
    assert abs(zero.float().mean().item() - p) < 0.01
    torch.testing.assert_close(y[~zero], x[~zero] / (1 - p), rtol=1e-6, atol=0)
    torch.manual_seed(0)
    assert torch.equal(m(x), y)
    torch.manual_seed(1)
    assert not torch.equal(m(x), y)


def test_dropout_gradient_follows_the_mask():
    m = layer(0.5).train()
    x = torch.rand(2, 4, 8, 8, requires_grad=True)
    torch.manual_seed(3)
    y = m(x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, (y != 0).float() * 2.0)


@pytest.mark.parametrize("size,rel,bs", [(5, 0.0, 5), (0, 0.25, 5), (1, 0.0, 1), (40, 0.0, 20)])
def test_dropblock_zeroes_square_blocks(size, rel, bs):
    """Single-channel maps: every zeroed cell lies in an all-zero ``bs x bs`` block, and each image
    has at most one block (darknet: one seed per channel); most images get one at p=0.5."""
    m = layer(0.5, dropblock=True, size=size, rel=rel).train()
    assert m.block_size(20, 20) == bs
    x = torch.rand(64, 1, 20, 20) + 1.0
    torch.manual_seed(0)
    y = m(x)
    zero = (y == 0).float()
    assert torch.equal(block_covered(zero, bs).float() * zero, zero)
    counts = zero.sum((1, 2, 3))
    assert set(counts.tolist()) <= {0.0, float(bs * bs)}
    assert (counts > 0).float().mean() > 0.3


def test_dropblock_scale_per_image():
    """Kept units are scaled per image by ``1 / (1 - blocks*bs^2 / (C*H*W))``
    (``set_scales_dropblock_kernel``)."""
    bs, c, h, w = 3, 4, 16, 16
    m = layer(0.5, dropblock=True, size=bs).train()
    x = torch.rand(32, c, h, w) + 1.0
    torch.manual_seed(5)
    y = m(x)
    zero = y == 0
    blocks = zero.sum((1, 2, 3)).float() / (bs * bs)
    assert torch.equal(blocks, blocks.round()) and blocks.max() > 1
    scale = 1.0 / (1.0 - blocks * bs * bs / (c * h * w))
    torch.testing.assert_close(y, torch.where(zero, torch.zeros_like(x), x * scale.view(-1, 1, 1, 1)),
                               rtol=1e-6, atol=0)


def test_dropblock_fraction_matches_darknet_rate():
    """gamma = p / bs^2 (``block_prob`` in ``forward_dropout_layer_gpu``), one block per channel at
    most: expected dropped fraction ``(1 - (1 - gamma)^(H*W)) * bs^2 / (H*W)``; 4096 channels give a
    relative standard deviation below 0.5 %, tolerance 3 %."""
    p, bs, h = 0.1, 3, 16
    m = layer(p, dropblock=True, size=bs).train()
    torch.manual_seed(0)
    y = m(torch.ones(256, 16, h, h))
    gamma = p / bs ** 2
    expected = (1 - (1 - gamma) ** (h * h)) * bs * bs / (h * h)
    assert math.isclose((y == 0).float().mean().item(), expected, rel_tol=0.03)


def test_dropblock_seeded_and_warmup():
    m = layer(0.5, dropblock=True, size=7).train()
    x = torch.rand(4, 8, 16, 16) + 1.0
    torch.manual_seed(2)
    a = m(x)
    torch.manual_seed(2)
    assert torch.equal(m(x), a)
    assert dropblock_multiplier(0, 1000) == 0.0 and dropblock_multiplier(425, 1000) == 0.5
    assert dropblock_multiplier(900, 1000) == 1.0 and dropblock_multiplier(0, 0) == 1.0
    m.multiplier = 0.5
    assert m.block_size(16, 16) == 3  # int(7 * 0.5)
    m.multiplier = 0.0
    assert m(x) is x


def test_cfg_parses_and_eval_unchanged(tmp_path):
    """The issue's section: parsed values, eval output = the same model without the layer's effect,
    training output differs; the traced ONNX graph has no random or dropout node."""
    model = Darknet(write(tmp_path, cfg_text(conv(8) + DROPBLOCK)))
    sp, mod = model.specs[1], model.layers[1]
    assert isinstance(mod, Dropout) and sp.dropblock and sp.dropblock_size_abs == 7
    assert sp.probability == pytest.approx(0.1) and sp.dropblock_size_rel == 0
    x = torch.rand(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        ref = model(x, raw=True)
        model.layers[1] = nn.Identity()
        plain = model(x, raw=True)
        model.layers[1] = mod
        mod.train()
        torch.manual_seed(0)
        trained = model(x, raw=True)
        mod.eval()
    assert [tuple(t.shape) for t in ref] == [(2, 18, 32, 32)]
    assert all(torch.equal(a, b) for a, b in zip(ref, plain))
    assert not torch.equal(trained[0], ref[0])
    buf = io.BytesIO()
    kw = {"dynamo": False} if "dynamo" in torch.onnx.export.__code__.co_varnames else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter, as yolo4.convert uses
        torch.onnx.export(model, (x,), buf, opset_version=12, **kw)
    onnx = pytest.importorskip("onnx")
    ops = {n.op_type for n in onnx.load_from_string(buf.getvalue()).graph.node}
    assert not ops & {"Dropout", "RandomUniform", "RandomUniformLike", "Bernoulli"}


def test_dropblock_vs_opencv(tmp_path):
    """OpenCV's darknet importer reads the section as an identity: same raw head as ours in eval."""
    assert compare_opencv(tmp_path, cfg_text(conv(8) + DROPBLOCK + conv(8))) < 1e-5


@pytest.mark.parametrize("opts,rel,size", [
    ("dropblock=1\n", 0.0, 7),
    ("dropblock=1\ndropblock_size_rel=0.5\ndropblock_size_abs=3\n", 0.0, 3),
    ("dropblock=1\ndropblock_size_rel=0.5\n", 0.5, 0),
    ("probability=0\n", 0.0, 0),
])
def test_parse_defaults(tmp_path, opts, rel, size):
    """darknet ``parse_dropout``: no size -> ``dropblock_size_abs=7``; both -> only ``_abs``."""
    model = Darknet(write(tmp_path, cfg_text(conv(8) + "\n[dropout]\n" + opts)))
    sp = model.specs[1]
    assert (sp.dropblock_size_rel, sp.dropblock_size_abs) == (rel, size)


@pytest.mark.parametrize("opt", ["probability=1", "probability=-0.1", "probability=1.5",
                                 "dropblock_size_abs=-1", "dropblock_size_rel=-0.5", "dropblock=2",
                                 "dropblock_size_abs=2.5"])
def test_bad_values_one_line_error(tmp_path, opt):
    base = "" if opt.startswith("dropblock=") else "dropblock=1\n"  # the first of a repeated key wins
    text = cfg_text(conv(8) + f"\n[dropout]\n{base}{opt}\n")
    p = write(tmp_path, text)
    with pytest.raises(CfgError) as ei:
        Darknet(p)
    line = next(i + 1 for i, ln in enumerate(text.splitlines()) if ln.strip() == opt)
    msg = str(ei.value)
    assert ei.value.line == line and msg.startswith(f"{p}:{line}:") and "\n" not in msg, msg
