"""The sections of the YOLOv4 paper's specials and backbones, each on a small synthetic cfg.

Where OpenCV's darknet importer (``cv2.dnn.readNetFromDarknet``) reads the section ([sam],
[scale_channels], [avgpool], [shortcut] across channel counts, ``share_index`` through a weights
file with the shared values repeated) our raw heads are compared with its on random weights;
OpenCV's batch-norm epsilon is 1e-6, darknet's 1e-5 (see tests/test_model_opencv.py), so the
compared cfgs have no batch norm. Where it does not (weighted [shortcut], [local_avgpool],
[reorg3d], [scale_channels] with ``scale_wh``; OpenCV 4.x ignores shortcut weights) the layer is
compared with a numpy port of darknet's C loop, named in each docstring.
"""

import struct

import numpy as np
import pytest
import torch

from yolo4.errors import CfgError
from yolo4.model import Darknet, load_darknet, save_darknet_weights, weights_file_size
from yolo4.model.weights import conv_arrays

NET = """[net]
width={size}
height={size}
channels=3
"""

HEAD = """
[convolutional]
size=1
stride=1
pad=1
filters=18
activation=linear

[yolo]
mask=0,1,2
anchors=10,14,  23,27,  37,58
classes=1
num=3
"""


def conv(filters, size=3, stride=1, act="leaky", extra=""):
    return (f"\n[convolutional]\nfilters={filters}\nsize={size}\nstride={stride}\npad=1\n"
            f"activation={act}\n{extra}")


def cfg_text(body, size=32):
    return NET.format(size=size) + body + HEAD


def write(tmp_path, text, name="t.cfg"):
    p = tmp_path / name
    p.write_text(text)
    return p


@torch.no_grad()
def randomize(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for blk in model.conv_layers:
        w = blk.conv.weight
        w.copy_(torch.randn(w.shape, generator=g) / w[0].numel() ** 0.5)
        blk.conv.bias.copy_(0.3 * torch.randn(blk.conv.bias.shape, generator=g))
    for m in model.layers:
        if getattr(m, "weight", None) is not None and not hasattr(m, "conv"):
            m.weight.copy_(torch.randn(m.weight.shape, generator=g))  # shortcut weights, some < 0
    return model.eval()


def opencv_heads(cfg, weights, x):
    cv2 = pytest.importorskip("cv2")
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    if hasattr(net, "enableWinograd"):
        net.enableWinograd(False)
    names = list(net.getLayerNames())
    feeds = [names[names.index(y) - 2] for y in names if y.startswith("yolo_")]
    net.setInput(x)
    return net.forward(feeds)


def compare_opencv(tmp_path, text, weights_bytes=None, size=32):
    """Our raw head vs OpenCV's on random weights and a random input; returns the relative error."""
    cfg = write(tmp_path, text)
    model = randomize(Darknet(cfg))
    weights = save_darknet_weights(model, tmp_path / "t.weights")
    if weights_bytes is not None:
        (tmp_path / "cv.weights").write_bytes(weights_bytes(model))
        weights = tmp_path / "cv.weights"
    x = np.random.default_rng(1).random((1, 3, size, size), dtype=np.float32)
    ref = opencv_heads(cfg, weights, x)
    with torch.no_grad():
        ours = model(torch.from_numpy(x), raw=True)
    assert len(ref) == len(ours) == 1
    r, o = ref[0], ours[0].numpy()
    assert r.shape == o.shape
    assert r.std() > 0.05 * np.abs(r).max()  # the head is not constant
    return float(np.abs(r - o).max() / np.abs(r).max())


def saved_outputs(model, x):
    """Every layer's output (float32 numpy), via forward hooks."""
    outs = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, k=k: outs.__setitem__(k, o.detach().numpy()))
             for k, m in enumerate(model.layers) if k < len(model.layers) - 1]
    with torch.no_grad():
        model(x, raw=True)
    for h in hooks:
        h.remove()
    return outs


# ------------------------------------------------------------------------------------------------
# OpenCV: [sam], [scale_channels], [avgpool], [shortcut] across channel counts, share_index
# ------------------------------------------------------------------------------------------------
def test_sam_vs_opencv(tmp_path):
    """[sam] from=-2: prev * from (a sum or a sigmoid gate would differ)."""
    body = conv(8) + conv(8, act="logistic") + "\n[sam]\nfrom=-2\n"
    assert compare_opencv(tmp_path, cfg_text(body)) < 1e-5


def test_squeeze_excitation_vs_opencv(tmp_path):
    """enet's squeeze-and-excitation: [avgpool] -> 1x1 convs -> [scale_channels] from=-4."""
    body = (conv(8) + "\n[avgpool]\n" + conv(4, size=1, act="swish") + conv(8, size=1, act="logistic")
            + "\n[scale_channels]\nfrom=-4\n")
    model = Darknet(write(tmp_path, cfg_text(body)))
    assert [type(m).__name__ for m in model.layers][1:5] == ["AvgPool", "ConvBlock", "ConvBlock", "ScaleChannels"]
    assert compare_opencv(tmp_path, cfg_text(body)) < 1e-5


@pytest.mark.parametrize("from_filters", [4, 16])
def test_shortcut_common_channels_vs_opencv(tmp_path, from_filters):
    """[shortcut] of 8 channels with a from layer of 4 (only the first 4 get it) or 16 (its first 8)."""
    body = conv(from_filters) + conv(8) + "\n[shortcut]\nfrom=-2\nactivation=leaky\n"
    assert compare_opencv(tmp_path, cfg_text(body)) < 1e-5


def test_shortcut_common_channels_numbers():
    """shortcut_multilayer_cpu: ``if (src_i < add_outputs)``: the previous layer's channels past the
    from layer's pass unchanged; a wider from layer gives its first channels."""
    from yolo4.model.layers import _add_common

    x = torch.arange(4.0).view(1, 4, 1, 1)
    assert _add_common(x, torch.full((1, 2, 1, 1), 10.0)).flatten().tolist() == [10, 11, 2, 3]
    assert _add_common(x, 10 * torch.arange(6.0).view(1, 6, 1, 1)).flatten().tolist() == [0, 11, 22, 33]


def _with_own_records(model):
    """.weights bytes with a record per conv, the shared values repeated (what OpenCV, which ignores
    share_index, reads)."""
    parts = [struct.pack("<3iQ", 0, 2, 5, 0)]
    for blk in model.conv_layers:
        rec = conv_arrays(blk)
        parts += [rec[k].detach().numpy().astype("<f4").tobytes() for k in ("bias", "weight")]
    return b"".join(parts)


def test_share_index_vs_opencv(tmp_path):
    """share_index=1: layer 3 uses layer 1's kernel and bias with its own stride/activation; the
    .weights file has no record for it (darknet load_weights_upto: ``share_layer == NULL``)."""
    body = conv(8) + conv(8) + "\n[route]\nlayers=0\n" + conv(8, act="linear", extra="share_index=1\n") + \
        "\n[route]\nlayers=-1,-3\n"
    text = cfg_text(body)
    model = Darknet(write(tmp_path, text))
    assert model.layers[3].conv.weight is model.layers[1].conv.weight
    assert model.specs[3].share_index == 1 and model.specs[3].num_params() == 0
    own = sum(sp.num_params() for sp in model.specs if sp.type == "convolutional")
    assert weights_file_size(model.specs) == 20 + 4 * own
    assert compare_opencv(tmp_path, text, weights_bytes=_with_own_records) < 1e-5


# ------------------------------------------------------------------------------------------------
# darknet's C source: weighted [shortcut], [local_avgpool], [reorg3d], [scale_channels] scale_wh
# ------------------------------------------------------------------------------------------------
def shortcut_multilayer_ref(inp, adds, weights, weights_type, normalization):
    """numpy port of darknet ``src/blas.c`` ``shortcut_multilayer_cpu`` (one image).

    inp ``[C, H, W]``; adds: list of ``[C_i, H, W]``; weights flat ``[nweights]`` (darknet order).
    """
    c, h, w = inp.shape
    src_outputs = c * h * w
    n = len(adds)
    nweights = 0 if weights is None else weights.size
    layer_step = nweights // (n + 1) if nweights else 0
    step = src_outputs // layer_step if nweights else 0
    flat_in = inp.reshape(-1)
    flat_adds = [a.reshape(-1) for a in adds]
    out = np.empty(src_outputs, np.float32)
    for src_i in range(src_outputs):
        total, max_val = np.float32(1), -np.inf
        if weights is not None:
            ws = [weights[src_i // step + i * layer_step] for i in range(n + 1)]
            if normalization == "softmax":
                max_val = max(ws)
            total = np.float32(1e-4)
            for wv in ws:
                total += max(wv, 0) if normalization == "relu" else np.exp(wv - max_val)

        def norm(wv, total=total, max_val=max_val):
            if normalization == "relu":
                return max(wv, 0) / total
            return np.exp(wv - max_val) / total

        out[src_i] = flat_in[src_i] * (norm(weights[src_i // step]) if weights is not None else 1)
        for i in range(n):
            if src_i < flat_adds[i].size:
                wv = 1 if weights is None else norm(weights[src_i // step + (i + 1) * layer_step])
                out[src_i] += flat_adds[i][src_i] * wv
    return out.reshape(c, h, w)


@pytest.mark.parametrize("weights_type", ["per_feature", "per_channel"])
@pytest.mark.parametrize("normalization", ["relu", "softmax"])
def test_weighted_shortcut_vs_c_source(tmp_path, weights_type, normalization):
    """MiWRC: ``[shortcut] from=-2,-3`` (12 and 6 channels into 8) with weights read from the file."""
    body = (conv(12) + conv(6) + conv(8) + f"\n[shortcut]\nfrom=-2,-3\nweights_type={weights_type}\n"
            f"weights_normalization={normalization}\n")
    text = cfg_text(body, size=8)
    cfg = write(tmp_path, text)
    model = randomize(Darknet(cfg))
    sc = model.layers[3]
    assert tuple(sc.weight.shape) == ((3,) if weights_type == "per_feature" else (3, 8))
    # the weights travel through the .weights file (darknet save/load_shortcut_weights, layer order)
    path = save_darknet_weights(model, tmp_path / "t.weights")
    n_sc = sc.weight.numel()
    assert path.stat().st_size == weights_file_size(model.specs) == \
        20 + 4 * (sum(sp.num_params() for sp in model.specs if sp.type == "convolutional") + n_sc)
    loaded = load_darknet(cfg, path)
    assert torch.equal(loaded.layers[3].weight, sc.weight)
    assert "layers.3.weight" in loaded.state_dict()  # checkpoints carry them too
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    outs = saved_outputs(loaded, x)
    ref = shortcut_multilayer_ref(outs[2][0], [outs[1][0], outs[0][0]], sc.weight.detach().numpy().reshape(-1),
                                  weights_type, normalization)
    np.testing.assert_allclose(outs[3][0], ref, rtol=1e-5, atol=1e-5)
    # the other normalization gives a different result: the test tells them apart
    other = "softmax" if normalization == "relu" else "relu"
    alt = shortcut_multilayer_ref(outs[2][0], [outs[1][0], outs[0][0]], sc.weight.detach().numpy().reshape(-1),
                                  weights_type, other)
    assert np.abs(alt - ref).max() > 1e-2


def local_avgpool_ref(x, size, stride, padding):
    """numpy port of darknet ``src/maxpool_layer.c`` ``forward_local_avgpool_layer`` (one image)."""
    c, h, w = x.shape
    oh, ow = (h + padding - size) // stride + 1, (w + padding - size) // stride + 1
    off = -(padding // 2)
    out = np.zeros((c, oh, ow), np.float32)
    for k in range(c):
        for i in range(oh):
            for j in range(ow):
                avg, counter = np.float32(0), 0
                for n in range(size):
                    for m in range(size):
                        ch, cw = off + i * stride + n, off + j * stride + m
                        if 0 <= ch < h and 0 <= cw < w:
                            counter += 1
                            avg += x[k, ch, cw]
                out[k, i, j] = avg / counter
    return out


@pytest.mark.parametrize("opts,shape", [
    ("size=4\nstride=4", (8, 4, 4)),              # yolov4-tiny_contrastive's: padding 3, windows at -1
    ("size=3\nstride=1", (8, 16, 16)),
    ("size=2\nstride=2\npadding=0", (8, 8, 8)),
])
def test_local_avgpool_vs_c_source(tmp_path, opts, shape):
    """Padded cells are not counted (a count_include_pad average or a max would differ at the borders)."""
    body = conv(8) + f"\n[local_avgpool]\n{opts}\n" + "\n[route]\nlayers=0\n"
    model = randomize(Darknet(write(tmp_path, cfg_text(body, size=16))))
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    outs = saved_outputs(model, x)
    sp = model.specs[1]
    ref = local_avgpool_ref(outs[0][0], sp.size, sp.pool_stride, sp.padding)
    assert outs[1].shape[1:] == ref.shape == shape
    np.testing.assert_allclose(outs[1][0], ref, rtol=1e-5, atol=1e-6)


def reorg3d_ref(x, stride):
    """numpy port of darknet ``src/blas.c`` ``reorg_cpu`` as ``forward_reorg_layer`` calls it
    (``forward=0``: ``out[in_index] = x[out_index]``), one image."""
    in_c, h, w = x.shape
    out_c, out_h, out_w = in_c * stride * stride, h // stride, w // stride
    src = x.reshape(-1)
    out = np.zeros(out_c * out_h * out_w, np.float32)
    for k in range(out_c):
        for j in range(out_h):
            for i in range(out_w):
                in_index = i + out_w * (j + out_h * k)
                c2, offset = k % in_c, k // in_c
                w2, h2 = i * stride + offset % stride, j * stride + offset // stride
                out[in_index] = src[w2 + out_w * stride * (h2 + out_h * stride * c2)]
    return out.reshape(out_c, out_h, out_w)


def test_reorg3d_vs_c_source(tmp_path):
    body = conv(4, stride=2) + "\n[reorg3d]\nstride=2\n" + "\n[route]\nlayers=-1\n"
    model = randomize(Darknet(write(tmp_path, cfg_text(body, size=32))))
    assert model.specs[1].out_channels == 16 and model.specs[1].stride == 4
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    outs = saved_outputs(model, x)
    ref = reorg3d_ref(outs[0][0], 2)
    assert outs[1].shape[1:] == ref.shape == (16, 8, 8)
    np.testing.assert_array_equal(outs[1][0], ref)  # a pure permutation


def test_scale_channels_scale_wh_vs_c_source(tmp_path):
    """``scale_wh=1`` (``forward_scale_channels_layer``): ``out[i] = input[i % (h*w) + b*h*w] * from[i]``."""
    body = conv(8) + conv(1, act="logistic") + "\n[scale_channels]\nfrom=-2\nscale_wh=1\n"
    model = randomize(Darknet(write(tmp_path, cfg_text(body, size=16))))
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    outs = saved_outputs(model, x)
    frm, scale = outs[0][0].reshape(-1), outs[1][0].reshape(-1)
    hw = 16 * 16
    ref = np.array([scale[i % hw] * frm[i] for i in range(frm.size)], np.float32).reshape(8, 16, 16)
    np.testing.assert_allclose(outs[2][0], ref, rtol=1e-6)


def test_contrastive_cfg_builds(tmp_path):
    """[contrastive] (training-only) after the last [yolo] passes its input through."""
    text = cfg_text(conv(8)) + "\n[route]\nlayers=-3\n\n[contrastive]\nclasses=1\nyolo_layer=-2\n"
    model = Darknet(write(tmp_path, text))
    assert type(model.layers[-1]).__name__ == "Contrastive" and model.specs[-1].yolo_layer == 2
    with torch.no_grad():
        heads = model(torch.rand(1, 3, 32, 32), raw=True)
    assert [tuple(h.shape) for h in heads] == [(1, 18, 32, 32)]


# ------------------------------------------------------------------------------------------------
# one-line cfg errors with file:line
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("body,needle", [
    (conv(8) + conv(8) + "\n[shortcut]\nfrom=-2\nweights_type=per_pixel\nweights_normalization=relu\n",
     "weights_type=per_pixel"),
    (conv(8) + conv(8) + "\n[shortcut]\nfrom=-2\nweights_type=per_channel\nweights_normalization=sigmoid\n",
     "weights_normalization=sigmoid"),
    (conv(8) + conv(8) + "\n[shortcut]\nfrom=-2\nweights_type=per_feature\nweights_normalization=none\n",
     "weights_normalization=none"),
    (conv(8) + conv(4) + "\n[sam]\nfrom=-2\n", "from=-2"),
    (conv(8) + conv(8) + "\n[sam]\nfrom=-2\nactivation=mish\n", "activation=mish"),
    (conv(8) + "\n[avgpool]\n" + conv(4, size=1) + "\n[scale_channels]\nfrom=-3\n", "from=-3"),
    (conv(8) + "\n[reorg3d]\nstride=2\nreverse=1\n", "reverse=1"),
    (conv(8) + "\n[reorg3d]\nstride=0\n", "stride=0"),
    (conv(8) + "\n[local_avgpool]\nsize=2\npadding=5\n", "padding=5"),
    (conv(8) + conv(8, extra="share_index=0\n"), "share_index=0"),
    (conv(8) + conv(8, extra="share_index=7\n"), "share_index=7"),
])
def test_bad_options_one_line_error(tmp_path, body, needle):
    text = cfg_text(body)
    p = write(tmp_path, text)
    with pytest.raises(CfgError) as ei:
        Darknet(p)
    line = next(i + 1 for i, ln in enumerate(text.splitlines()) if ln.strip() == needle.strip())
    assert ei.value.line == line, str(ei.value)
    msg = str(ei.value)
    assert msg.startswith(f"{p}:{line}:") and "\n" not in msg
