"""Darknet cfg parser/validator: the real AlexeyAB cfgs, and the errors users see for bad ones."""

import pytest

from yolo4.errors import CfgError, CfgWarning
from yolo4.model.cfg import build_specs, parse_cfg, parse_cfg_text, rehead_cfg_text, write_cfg

CFGS = ["yolov4", "yolov4-tiny", "yolov4-tiny-3l", "yolov4-csp", "yolov4-csp-swish", "yolov4x-mish",
        "yolov4-custom", "yolov3", "yolov3-tiny"]

# yolo layers per cfg (stride, mask) as written in the cfg files / known from the papers
EXPECTED_HEADS = {
    "yolov4": [(8, [0, 1, 2]), (16, [3, 4, 5]), (32, [6, 7, 8])],
    "yolov4-tiny": [(32, [3, 4, 5]), (16, [1, 2, 3])],
    "yolov3": [(32, [6, 7, 8]), (16, [3, 4, 5]), (8, [0, 1, 2])],
    "yolov3-tiny": [(32, [3, 4, 5]), (16, [0, 1, 2])],
}

TINY = """[net]
width=64
height=64
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=leaky

[convolutional]
size=1
stride=1
pad=1
filters=18
activation=linear

[yolo]
mask = 0,1,2
anchors = 10,14,  23,27,  37,58
classes=1
num=3
"""


def _write(tmp_path, text, name="bad.cfg"):
    p = tmp_path / name
    p.write_text(text)
    return p


def _line_of(text, needle, nth=0):
    hits = [i + 1 for i, ln in enumerate(text.splitlines()) if needle in ln]
    return hits[nth]


@pytest.mark.parametrize("name", CFGS)
def test_real_cfgs_parse(shared_data, name):
    path = shared_data / "darknet" / "cfg" / (name + ".cfg")
    sections = parse_cfg(path)
    text = path.read_text()
    # every [section] header of the file is a Section, in order, with its line number
    headers = [(i + 1, ln.strip()) for i, ln in enumerate(text.splitlines()) if ln.strip().startswith("[")]
    assert [s.line for s in sections] == [ln for ln, _ in headers]
    assert sections[0].type == "net"
    net, specs = build_specs(sections)
    assert (net.width, net.height, net.channels) == (
        int(sections[0].options["width"]), int(sections[0].options["height"]), 3)
    yolos = [sp for sp in specs if sp.type == "yolo"]
    assert yolos and all(sp.classes == 80 for sp in yolos)
    for sp in yolos:  # the conv before each yolo has (classes+5)*len(mask) filters
        assert specs[sp.index - 1].out_channels == 85 * len(sp.mask)
    if name in EXPECTED_HEADS:
        assert [(sp.stride, sp.mask) for sp in yolos] == EXPECTED_HEADS[name]


def test_training_keys_kept_typed(shared_data):
    from yolo4.model import load_darknet

    m = load_darknet(shared_data / "darknet" / "cfg" / "yolov4-tiny.cfg")
    # values as written in yolov4-tiny.cfg ("saturation = 1.5", "steps=1600000,1800000", "scales=.1,.1")
    assert m.net["batch"] == 64 and m.net["subdivisions"] == 1
    assert m.net["learning_rate"] == pytest.approx(0.00261)
    assert m.net["burn_in"] == 1000 and m.net["max_batches"] == 2000200
    assert m.net["policy"] == "steps"
    assert m.net["steps"] == [1600000, 1800000] and m.net["scales"] == [0.1, 0.1]
    assert m.net["saturation"] == 1.5 and m.net["hue"] == pytest.approx(0.1)
    assert m.input_hw == (416, 416) and m.letter_box is False
    yl = m.yolo_layers[0]
    assert yl.scale_x_y == 1.05 and yl.nms_kind == "greedynms" and yl.beta_nms == 0.6
    assert yl.iou_loss == "ciou" and yl.iou_normalizer == 0.07 and yl.ignore_thresh == 0.7
    assert yl.anchors == [(81, 82), (135, 169), (344, 319)] and yl.stride == 32
    csp = load_darknet(shared_data / "darknet" / "cfg" / "yolov4-csp.cfg")
    assert csp.letter_box is True and csp.net["ema_alpha"] == 0.9998
    assert [y.new_coords for y in csp.yolo_layers] == [1, 1, 1]
    assert [y.obj_normalizer for y in csp.yolo_layers] == [4.0, 1.0, 0.4]
    assert csp.yolo_layers[0].nms_kind == "diounms" and csp.yolo_layers[0].max_delta == 5


def test_syntax_spaces_comments_first_key_wins():
    text = TINY.replace("filters=8", "filters = 8   # eight\n; a comment\nfilters=99").replace(
        "[convolutional]", "[conv]", 1)
    with pytest.warns(CfgWarning, match="duplicate key 'filters': darknet keeps the first value"):
        secs = parse_cfg_text(text)
    assert secs[1].type == "convolutional"
    assert secs[1].options["filters"] == "8"  # darknet option_find: first occurrence wins
    assert secs[3].options["anchors"] == "10,14,23,27,37,58"
    # write_cfg -> parse gives the same sections
    again = parse_cfg_text(write_cfg(secs))
    assert [(s.type, s.options) for s in again] == [(s.type, s.options) for s in secs]


def test_unknown_section_line(tmp_path):
    text = TINY.replace("[yolo]", "[frobnicate]\nfoo=1\n\n[yolo]")
    p = _write(tmp_path, text)
    with pytest.raises(CfgError) as ei:
        parse_cfg(p)
    assert ei.value.line == _line_of(text, "[frobnicate]")
    assert ei.value.path == str(p)
    assert str(ei.value).startswith(f"{p}:{ei.value.line}:") and "frobnicate" in str(ei.value)


def test_bad_activation_line(tmp_path):
    text = TINY.replace("activation=leaky", "activation=foo")
    p = _write(tmp_path, text)
    with pytest.raises(CfgError) as ei:
        parse_cfg(p)
    assert ei.value.line == _line_of(text, "activation=foo")
    assert "foo" in str(ei.value) and str(p) in str(ei.value)


@pytest.mark.parametrize("old,new,needle", [
    ("filters=8", "filters=8.5", "filters=8.5"),
    ("size=3", "size=three", "size=three"),
    ("mask = 0,1,2", "mask = 0,1,7", "mask = 0,1,7"),
    ("filters=18", "filters=21", "filters=21"),  # does not match classes/mask of the next [yolo]
    ("anchors = 10,14,  23,27,  37,58", "anchors = 10,14", "anchors = 10,14"),
])
def test_bad_values_line(tmp_path, old, new, needle):
    text = TINY.replace(old, new)
    p = _write(tmp_path, text)
    with pytest.raises(CfgError) as ei:
        parse_cfg(p)
    assert ei.value.line == _line_of(text, needle)


def test_route_index_out_of_range(tmp_path):
    text = TINY.replace("[convolutional]\nsize=1", "[route]\nlayers=-5\n\n[convolutional]\nsize=1")
    p = _write(tmp_path, text)
    with pytest.raises(CfgError) as ei:
        parse_cfg(p)
    assert ei.value.line == _line_of(text, "layers=-5")
    ok = TINY.replace("[convolutional]\nsize=1", "[route]\nlayers=-1,0\n\n[convolutional]\nsize=1")
    _, specs = build_specs(parse_cfg_text(ok))
    assert specs[1].layers == [0, 0] and specs[1].out_channels == 16


def test_structure_errors(tmp_path):
    with pytest.raises(CfgError) as ei:
        parse_cfg(_write(tmp_path, "filters=3\n[net]\nwidth=32\nheight=32\n"))
    assert ei.value.line == 1
    with pytest.raises(CfgError) as ei:
        parse_cfg(_write(tmp_path, TINY.replace("pad=1\nactivation=leaky", "pad=1\nthis is not an option")))
    assert ei.value.line == _line_of(TINY, "activation=leaky")
    with pytest.raises(CfgError):
        parse_cfg(tmp_path / "missing.cfg")


def test_rehead_text_keeps_comments(shared_data):
    path = shared_data / "darknet" / "cfg" / "yolov4-tiny.cfg"
    text = path.read_text()
    new, heads = rehead_cfg_text(text, 3)
    assert heads == [29, 36]  # the convs right before the two [yolo] sections
    assert "#weights_reject_freq=1001" in new  # comments kept
    secs = parse_cfg_text(new)
    _, specs = build_specs(secs)
    assert [sp.classes for sp in specs if sp.type == "yolo"] == [3, 3]
    assert [specs[i].out_channels for i in heads] == [24, 24]
    # nothing else changed
    old_secs = parse_cfg_text(text)
    diff = [(i, k) for i, (a, b) in enumerate(zip(old_secs, secs)) for k in a.options if a.options[k] != b.options[k]]
    assert sorted(diff) == [(30, "filters"), (31, "classes"), (37, "filters"), (38, "classes")]
