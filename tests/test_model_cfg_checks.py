"""cfgs that parse but cannot run (shapes at the [net] size, bounds), cfg hygiene (unknown / repeated keys,
BOM, empty files), and the explicit file-vs-text API. Every error is one line naming file:line."""

import warnings

import pytest
import torch

from yolo4.errors import CfgError, CfgWarning, WeightsError, Yolo4Error
from yolo4.model import Darknet, load_checkpoint, load_darknet
from yolo4.model.cfg import (
    MAX_ACTIVATION,
    MAX_PARAMS,
    build_specs,
    check_input_hw,
    infer_shapes,
    network_stride,
    parse_cfg,
    parse_cfg_text,
    suggest_key,
)

HEAD = """[convolutional]
size=1
stride=1
pad=1
filters=18
activation=linear

[yolo]
mask=0,1,2
anchors=10,14,23,27,37,58
classes=1
num=3
"""


def _cfg(body, width=64, height=64, extra_net=""):
    return f"[net]\nwidth={width}\nheight={height}\nchannels=3\n{extra_net}\n{body}\n{HEAD}"


CONV_S2 = "[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=2\npad=1\nactivation=leaky\n"
TINY = _cfg(CONV_S2)


def _write(tmp_path, text, name="bad.cfg"):
    p = tmp_path / name
    p.write_text(text)
    return p


def _line_of(text, needle, nth=0):
    return [i + 1 for i, ln in enumerate(text.splitlines()) if needle in ln][nth]


def _error(tmp_path, text):
    """CfgError of parse_cfg on ``text`` written to a file; checks the one-line file:line form."""
    p = _write(tmp_path, text)
    with pytest.raises(CfgError) as ei:
        parse_cfg(p)
    e = ei.value
    assert e.path == str(p) and e.line is not None
    assert str(e).startswith(f"{p}:{e.line}: ") and "\n" not in str(e)
    return e


# --------------------------------------------------------------------------------------------------
# 2. shapes at the [net] size, stride, bounds
# --------------------------------------------------------------------------------------------------
def test_width_not_a_multiple_of_the_network_stride(tmp_path):
    text = _cfg(CONV_S2 * 5, width=100)  # stride 32
    e = _error(tmp_path, text)
    assert e.line == _line_of(text, "width=100") and "32" in e.message
    text = _cfg(CONV_S2 * 5, height=48)
    assert _error(tmp_path, text).line == _line_of(text, "height=48")


def test_network_stride_and_shapes(shared_data):
    net, specs = build_specs(parse_cfg(shared_data / "darknet" / "cfg" / "yolov4-tiny.cfg"))
    assert net.stride == network_stride(specs) == 32
    shapes = infer_shapes(net, specs)
    assert shapes[0] == (32, 208, 208) and shapes[-1] == (255, 26, 26)
    assert [shapes[sp.index] for sp in specs if sp.type == "yolo"] == [(255, 13, 13), (255, 26, 26)]
    assert infer_shapes(net, specs, (320, 640))[-1] == (255, 20, 40)
    net, specs = build_specs(parse_cfg(shared_data / "darknet" / "cfg" / "yolov3-tiny.cfg"))
    # yolov3-tiny's `size=2 stride=1` maxpool keeps 13x13 (default padding size-1 = 1)
    assert infer_shapes(net, specs)[11] == (512, 13, 13)


MAXPOOL_ROUTE = """[convolutional]
filters=8
size=3
stride=2
pad=1
activation=leaky

[maxpool]
size=2
stride=2
padding=2

[route]
layers=0

[convolutional]
filters=8
size=3
stride=2
pad=1
activation=leaky

[route]
layers=-1,1
"""


def test_maxpool_padding_that_breaks_a_later_route(tmp_path):
    # (32 + 2 - 2) // 2 + 1 = 17 instead of 16: the route of layers 3 and 1 cannot concatenate
    text = _cfg(MAXPOOL_ROUTE)
    e = _error(tmp_path, text)
    assert e.line == _line_of(text, "layers=-1,1")
    assert "16x16" in e.message and "17x17" in e.message and "at input 64x64" in e.message
    # the hint names the maxpool whose output first left input/stride
    assert f"{tmp_path / 'bad.cfg'}:{_line_of(text, '[maxpool]')}" in e.message
    ok = _cfg(MAXPOOL_ROUTE.replace("padding=2", "padding=1"))
    net, specs = build_specs(parse_cfg_text(ok))
    assert infer_shapes(net, specs)[4] == (16, 16, 16)


def test_route_of_different_sizes_gives_the_sizes(tmp_path):
    text = _cfg(CONV_S2 + "\n" + CONV_S2 + "\n[route]\nlayers=-1,0\n")
    e = _error(tmp_path, text)
    assert e.line == _line_of(text, "layers=-1,0")
    assert "16x16" in e.message and "32x32" in e.message


def test_shortcut_of_different_spatial_shapes(tmp_path):
    valid_conv = "[convolutional]\nfilters=8\nsize=3\nstride=1\npad=0\nactivation=leaky\n"  # 32 -> 30
    text = _cfg(CONV_S2 + "\n" + valid_conv + "\n[shortcut]\nfrom=-2\n")
    e = _error(tmp_path, text)
    assert e.line == _line_of(text, "from=-2")
    assert "8x32x32" in e.message and "8x30x30" in e.message


def test_spatial_size_reaching_zero(tmp_path):
    big = "[convolutional]\nfilters=8\nsize=7\nstride=1\npad=0\nactivation=leaky\n"  # on 2x2: -4
    text = _cfg(CONV_S2 * 5 + "\n" + big)
    e = _error(tmp_path, text)
    assert e.line == _line_of(text, "size=7") and "< 1" in e.message


def test_yolo_grid_off_its_stride(tmp_path):
    valid_conv = "[convolutional]\nfilters=8\nsize=3\nstride=1\npad=0\nactivation=leaky\n"
    text = _cfg(CONV_S2 + valid_conv)
    e = _error(tmp_path, text)
    assert e.line == _line_of(text, "[yolo]") and "30x30" in e.message and "32x32" in e.message


@pytest.mark.parametrize("channels", [1, 4])
def test_channels_other_than_rgb(tmp_path, channels):
    text = TINY.replace("channels=3", f"channels={channels}")
    e = _error(tmp_path, text)
    assert e.line == _line_of(text, "channels=")
    if channels == 1:
        assert "grayscale models are not supported" in e.message and "channels=3" in e.message


@pytest.mark.parametrize("old,new", [
    ("size=3", "size=99999"),
    ("stride=2", "stride=100000000000000000000"),
    ("stride=2", "stride=1e20"),
    ("filters=8", "filters=1000000000"),
    ("width=64", "width=10000000"),
    ("pad=1", "padding=100000"),
])
def test_absurd_values(tmp_path, old, new):
    text = TINY.replace(old, new, 1)
    e = _error(tmp_path, text)
    assert e.line == _line_of(text, new)


def test_parameter_and_activation_caps(tmp_path):
    wide = "[convolutional]\nfilters=16000\nsize=3\nstride=1\npad=1\nactivation=leaky\n"
    text = _cfg(CONV_S2 + wide + wide.replace("16000", "16001"))
    e = _error(tmp_path, text)  # 16000 * 16000 * 9 > 2^29
    assert e.line == _line_of(text, "filters=16001") and str(MAX_PARAMS) in e.message
    # 16 x 8192 x 8192 values in the first layer's output
    text = _cfg(CONV_S2.replace("stride=2", "stride=1").replace("filters=8", "filters=16"), 8192, 8192)
    e = _error(tmp_path, text)
    assert e.line == _line_of(text, "[convolutional]") and str(MAX_ACTIVATION) in e.message


def test_maxpool_padding_bound(tmp_path):
    text = _cfg(CONV_S2 + "[maxpool]\nsize=2\nstride=2\npadding=3\n")
    assert _error(tmp_path, text).line == _line_of(text, "padding=3")


def test_dilation_pads_as_darknet():
    # darknet pads a dilated conv by pad*dilation (im2col_cpu_ext / cuDNN get l.pad * l.dilation):
    # size=3 pad=1 dilation=2 keeps 64x64, and tap (0, 0) reads the input 2 pixels up-left
    text = _cfg(CONV_S2.replace("stride=2", "stride=1").replace("batch_normalize=1", "dilation=2")
                .replace("leaky", "linear") + "\n" + CONV_S2 * 5)
    m = Darknet(text=text).eval()
    conv = m.layers[0].conv
    assert conv.padding == (2, 2) and conv.dilation == (2, 2)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[:, 0, 0, 0] = 1.0
        x = torch.zeros(1, 3, 64, 64)
        x[0, 0, 10, 20] = 1.0
        y = m.layers[0](x)
    assert y.shape == (1, 8, 64, 64)
    assert torch.nonzero(y[0, 0]).tolist() == [[12, 22]]


def test_other_input_sizes(tmp_path, shared_data):
    m = load_darknet(shared_data / "darknet" / "cfg" / "yolov4-tiny.cfg")
    assert m.stride == 32
    assert m.check_input_size(320) == (320, 320) and m.check_input_size((320, 416)) == (320, 416)
    with pytest.raises(Yolo4Error, match="--img-size must be a positive multiple of 32"):
        m.check_input_size(300, "--img-size")
    with pytest.raises(Yolo4Error, match="at most 8192"):
        m.check_input_size(8224)
    with pytest.raises(CfgError, match="exceeds the limit") as ei:  # fits the side limit, not the activation cap
        m.check_input_size(8192)
    assert ei.value.path.endswith("yolov4-tiny.cfg") and "at input 8192x8192" in ei.value.message
    # forward checks each new input size once, before running anything
    with pytest.raises(Yolo4Error, match="multiple of 32"):
        m(torch.zeros(1, 3, 100, 100))
    with pytest.raises(Yolo4Error, match=r"\[batch, 3, height, width\]"):
        m(torch.zeros(1, 1, 64, 64))
    boxes, _ = m(torch.zeros(1, 3, 64, 96))
    assert boxes.shape == (1, 3 * (2 * 3 + 4 * 6), 4)
    # the function behind it, on specs alone
    net, specs = build_specs(parse_cfg_text(TINY))
    assert check_input_hw(net, specs, 128) == (128, 128)
    with pytest.raises(Yolo4Error, match="multiple of 2"):
        check_input_hw(net, specs, 63)


def test_checkpoint_trained_at_a_size_its_cfg_cannot_run(tmp_path):
    model = Darknet(text=TINY)
    ckpt = {"format": "yolo4-checkpoint", "version": 1, "cfg_text": TINY, "model": model.state_dict(),
            "train_args": {"img_size": [63, 63]}}
    p = tmp_path / "odd.pt"
    torch.save(ckpt, p)
    with pytest.raises(WeightsError) as ei:
        load_checkpoint(p)
    assert str(p) in str(ei.value) and "63x63" in str(ei.value)
    ckpt["train_args"] = {"img_size": [96, 128]}
    torch.save(ckpt, p)
    assert load_checkpoint(p).input_hw == (96, 128)


# --------------------------------------------------------------------------------------------------
# 3. hygiene: unknown and repeated keys, BOM, empty and one-line files, file vs text
# --------------------------------------------------------------------------------------------------
def _warnings(fn, *args, **kw):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        out = fn(*args, **kw)
    return out, [str(w.message) for w in rec if issubclass(w.category, CfgWarning)]


def test_unknown_key_warns_with_suggestion(tmp_path):
    text = TINY.replace("filters=8", "fliters=8")
    p = _write(tmp_path, text)
    _, msgs = _warnings(parse_cfg, p, validate=False)
    line = _line_of(text, "fliters=8")
    assert msgs == [f"{p}:{line}: [convolutional] unknown key 'fliters' is ignored (darknet: Unused field); "
                    "did you mean 'filters'?"]
    # darknet's keys (training keys too) are known: the real cfgs give no warning
    assert suggest_key("convolutional", "fliters") == "filters" and suggest_key("yolo", "zzz") is None
    # a typo in the filters of the head conv is then a [yolo] mismatch, but the warning came first
    text = TINY.replace("filters=18", "fliters=18")
    p = _write(tmp_path, text)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        with pytest.raises(CfgError, match="filters=1 does not match"):
            Darknet(p)
    assert [str(w.message) for w in rec] == [f"{p}:{_line_of(text, 'fliters=18')}: [convolutional] unknown key "
                                             "'fliters' is ignored (darknet: Unused field); did you mean 'filters'?"]


@pytest.mark.parametrize("name", ["yolov4", "yolov4-tiny", "yolov4-tiny-3l", "yolov4-csp", "yolov4x-mish",
                                  "yolov3", "yolov3-tiny"])
def test_real_cfgs_warn_nothing(shared_data, name):
    _, msgs = _warnings(parse_cfg, shared_data / "darknet" / "cfg" / (name + ".cfg"))
    assert msgs == []


def test_duplicate_key_keeps_first_and_warns(tmp_path):
    text = TINY.replace("filters=8", "filters=8\nfilters=16")
    p = _write(tmp_path, text)
    secs, msgs = _warnings(parse_cfg, p)
    assert secs[1].options["filters"] == "8"
    assert msgs == [f"{p}:{_line_of(text, 'filters=16')}: [convolutional] duplicate key 'filters': darknet keeps "
                    f"the first value (filters=8 at line {_line_of(text, 'filters=8')}), this filters=16 is ignored"]
    _, msgs = _warnings(parse_cfg, p, warn=False)
    assert msgs == []


def test_text_warnings_name_the_given_path_or_cfg_text():
    text = TINY.replace("activation=leaky", "activation=leaky\nactivaton=mish")
    _, msgs = _warnings(parse_cfg_text, text)
    assert msgs[0].startswith(f"<cfg text>:{_line_of(text, 'activaton')}: ") and "'activation'" in msgs[0]
    _, msgs = _warnings(parse_cfg_text, text, path="runs/last.pt")
    assert msgs[0].startswith(f"runs/last.pt:{_line_of(text, 'activaton')}: ")


def test_utf8_bom_is_accepted(tmp_path):
    p = tmp_path / "bom.cfg"
    p.write_bytes(b"\xef\xbb\xbf" + TINY.encode())
    assert parse_cfg(p)[0].type == "net"
    assert Darknet(p).input_hw == (64, 64)


def test_empty_and_one_line_files_are_reported_by_path(tmp_path):
    empty = _write(tmp_path, "", "empty.cfg")
    for fn in (parse_cfg, Darknet):
        with pytest.raises(CfgError, match="empty cfg") as ei:
            fn(str(empty))
        assert ei.value.path == str(empty)
    one = _write(tmp_path, "width=416", "one.cfg")
    with pytest.raises(CfgError) as ei:
        Darknet(str(one))
    assert (ei.value.path, ei.value.line) == (str(one), 1) and "before the first [section]" in ei.value.message
    head = _write(tmp_path, "[net]", "head.cfg")
    with pytest.raises(CfgError) as ei:
        Darknet(str(head))
    assert ei.value.path == str(head)
    with pytest.raises(CfgError, match="the path is empty"):
        Darknet("")


def test_checkpoint_with_empty_cfg_text_names_the_checkpoint(tmp_path):
    p = tmp_path / "empty-cfg.pt"
    torch.save({"format": "yolo4-checkpoint", "version": 1, "cfg_text": "", "model": {}}, p)
    with pytest.raises(CfgError, match="empty cfg") as ei:
        load_checkpoint(p)
    assert ei.value.path == str(p)


def test_paths_and_texts_are_never_guessed(tmp_path, monkeypatch):
    # a file whose name starts with "[" is a file
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, TINY, "[exp1].cfg")
    assert parse_cfg("[exp1].cfg")[1].options["filters"] == "8"
    assert Darknet("[exp1].cfg").cfg_path == "[exp1].cfg"
    # a text given where a path goes is refused in one line that says how to pass text
    for fn in (parse_cfg, Darknet):
        with pytest.raises(CfgError, match=r"text=") as ei:
            fn(TINY)
        assert "\n" not in str(ei.value)
    m = Darknet(text=TINY, path="mine.cfg")
    assert (m.cfg_text, m.cfg_path) == (TINY, "mine.cfg")
    with pytest.raises(TypeError):
        Darknet(tmp_path / "[exp1].cfg", text=TINY)
    with pytest.raises(TypeError):
        Darknet()
    # errors in a text carry <cfg text>:line (or the given name)
    with pytest.raises(CfgError) as ei:
        parse_cfg_text(TINY.replace("activation=leaky", "activation=foo"))
    assert str(ei.value).startswith(f"<cfg text>:{_line_of(TINY, 'activation=leaky')}: ")


def test_yolo_spec_masked_anchors(shared_data):
    _, specs = build_specs(parse_cfg(shared_data / "darknet" / "cfg" / "yolov4-tiny.cfg"))
    y = [sp for sp in specs if sp.type == "yolo"]
    assert y[0].masked_anchors == [(81, 82), (135, 169), (344, 319)]
    assert y[1].masked_anchors == [(23, 27), (37, 58), (81, 82)] and len(y[1].anchors) == 6
