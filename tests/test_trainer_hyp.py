"""Hyperparameter files and overrides (yolo4.trainer.hyp): darknet key names routed to [net] / every
[yolo], one-line file:line errors, the cfg patched in place, darknet defaults, the EVOLVABLE table."""

import pytest

from yolo4.model.cfg.keys import KNOWN_KEYS
from yolo4.model.cfg.text import parse_cfg_text
from yolo4.trainer.hyp import (
    EVOLVABLE,
    HypError,
    apply_hyp,
    hyp_of,
    load_hyp,
    parse_overrides,
    save_hyp,
    section_of,
)

# two heads, so "every [yolo]" is checked; comments to be kept
CFG = """[net]
# training
batch=64
width=64
height=64
channels=3
momentum=0.9
hue=.1   # hue shift, fraction of the circle
learning_rate=0.00261

[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=leaky

[convolutional]
filters=18
size=1
stride=1
pad=1
activation=linear

[yolo]
mask=0,1
anchors=10,14, 23,27, 37,58
classes=4
num=3
# box loss weight
iou_normalizer=0.07
jitter=.3

[route]
layers=-3

[convolutional]
filters=9
size=1
stride=1
pad=1
activation=linear

[yolo]
mask=2
anchors=10,14, 23,27, 37,58
classes=4
num=3
iou_normalizer=0.07
"""


def write(tmp_path, text, name="hyp.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_load_hyp_values_and_order(tmp_path):
    p = write(tmp_path, "# my hyps\nlearning_rate: 0.001\nhue: 0.1\nmosaic: 1\niou_normalizer: 0.07\n"
                        "jitter: 0.2\ndecay: 5e-4\n")
    assert load_hyp(p) == {"learning_rate": 0.001, "hue": 0.1, "mosaic": 1.0, "iou_normalizer": 0.07,
                           "jitter": 0.2, "decay": 0.0005}
    assert list(load_hyp(p))[:2] == ["learning_rate", "hue"]
    assert load_hyp(write(tmp_path, "# nothing\n", "empty.yaml")) == {}


@pytest.mark.parametrize("text,line,words", [
    ("hue: 0.1\nfilters: 3\n", 2, "[convolutional] key"),
    ("hue: 0.1\n\nhuee: 0.2\n", 3, "did you mean 'hue'"),
    ("hue: 0.1\nsaturation: high\n", 2, "not a number"),
    ("hue: 0.1\nexposure:\n", 2, "must be a number"),
    ("mosaic: true\n", 1, "0 or 1"),
    ("mosaic: 0.5\n", 1, "integer"),
    ("hue: 0.1\nclasses: 3\n", 2, "defines the model"),
    ("hue: 0.1\nhue: 0.2\n", 2, "twice"),
    ("hue: [0.1, 0.2]\n", 1, "must be a number"),
    ("hue: 0.1\n  bad: : :\n", 2, "invalid YAML"),
])
def test_load_hyp_errors_name_file_and_line(tmp_path, text, line, words):
    p = write(tmp_path, text)
    with pytest.raises(HypError) as e:
        load_hyp(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}:{line}: "), msg
    assert words in msg
    assert "\n" not in msg


def test_load_hyp_not_a_mapping_and_missing(tmp_path):
    with pytest.raises(HypError, match=r"hyp.yaml:1: .*flat mapping"):
        load_hyp(write(tmp_path, "- hue\n- 0.1\n"))
    with pytest.raises(HypError, match="cannot read"):
        load_hyp(tmp_path / "missing.yaml")


def test_parse_overrides():
    assert parse_overrides(["hue=0.2", "mosaic = 1", "hue=0.3", "learning_rate=1e-3"]) == {
        "hue": 0.3, "mosaic": 1.0, "learning_rate": 0.001}
    for bad, words in [("hue", "key=value"), ("filters=3", "[convolutional]"), ("hue=abc", "not a number"),
                       ("foo=1", "unknown"), ("anchors=1,2", "defines the model")]:
        with pytest.raises(HypError, match="--set") as e:
            parse_overrides([bad])
        assert words in str(e.value)


def test_section_of_covers_keys_in_both_tables():
    both = (KNOWN_KEYS["net"] & KNOWN_KEYS["yolo"])
    assert both == {"learning_rate", "label_smooth_eps"}  # if this grows, decide its section in hyp._BOTH
    assert section_of("learning_rate") == "net"
    assert section_of("label_smooth_eps") == "yolo"  # the detection loss reads [yolo]'s
    assert section_of("hue") == "net" and section_of("ignore_thresh") == "yolo"
    for k in EVOLVABLE:
        assert section_of(k) in ("net", "yolo")


def test_apply_hyp_sets_every_yolo_keeps_comments_inserts_missing():
    new = apply_hyp(CFG, {"hue": 0.3, "learning_rate": 1e-5, "mosaic": 1, "iou_normalizer": 0.5,
                          "ignore_thresh": 0.6})
    secs = parse_cfg_text(new)
    assert secs[0].options["hue"] == "0.3" and secs[0].options["learning_rate"] == "1e-05"
    assert secs[0].options["mosaic"] == "1"  # inserted, written as an int
    yolos = [s for s in secs if s.type == "yolo"]
    assert len(yolos) == 2
    assert all(s.options["iou_normalizer"] == "0.5" and s.options["ignore_thresh"] == "0.6" for s in yolos)
    assert yolos[0].options["jitter"] == ".3"  # untouched keys stay as written
    for comment in ("# training", "# box loss weight"):
        assert comment in new
    # an unchanged key keeps its line: only the edited lines differ
    assert len(new.splitlines()) == len(CFG.splitlines()) + 1 + 2  # mosaic, 2x ignore_thresh inserted
    assert apply_hyp(CFG, {}) == CFG


def test_apply_hyp_errors():
    with pytest.raises(HypError, match="cfg.cfg: .*'filters' is a \\[convolutional\\] key"):
        apply_hyp(CFG, {"filters": 3}, path="cfg.cfg")
    with pytest.raises(HypError, match="integer"):
        apply_hyp(CFG, {"burn_in": 10.5})
    no_yolo = "[net]\nwidth=32\nheight=32\n\n[convolutional]\nfilters=4\nsize=1\nstride=1\nactivation=linear\n"
    with pytest.raises(HypError, match="no \\[yolo\\]"):
        apply_hyp(no_yolo, {"jitter": 0.1})


def test_hyp_of_reads_values_and_darknet_defaults():
    h = hyp_of(CFG)
    assert list(h) == list(EVOLVABLE)
    assert h["hue"] == 0.1 and h["learning_rate"] == 0.00261 and h["momentum"] == 0.9
    assert h["iou_normalizer"] == 0.07 and h["jitter"] == 0.3
    # absent: darknet's defaults (src/parser.c)
    assert h["saturation"] == 1.0 and h["exposure"] == 1.0 and h["mosaic"] == 0.0 and h["burn_in"] == 0.0
    assert h["decay"] == 0.0001
    assert h["ignore_thresh"] == 0.5 and h["iou_thresh"] == 1.0 and h["obj_normalizer"] == 1.0
    assert h["label_smooth_eps"] == 0.0
    assert hyp_of(CFG, keys=["jitter", "hue"]) == {"jitter": 0.3, "hue": 0.1}
    # apply then read back
    assert hyp_of(apply_hyp(CFG, {"hue": 0.25, "jitter": 0.1}))["hue"] == 0.25
    no_yolo = "[net]\nwidth=32\nheight=32\n\n[convolutional]\nfilters=4\nsize=1\nstride=1\nactivation=linear\n"
    assert "jitter" not in hyp_of(no_yolo) and "hue" in hyp_of(no_yolo)


def test_evolvable_table_is_sane():
    h = hyp_of(CFG)
    for k, g in EVOLVABLE.items():
        assert g.lo < g.hi and 0 < g.gain <= 1 and g.kind in ("mul", "add", "flag"), k
        if g.kind == "flag":
            assert (g.lo, g.hi) == (0, 1) and g.integer
    # applying every evolvable key at its bounds gives a valid cfg
    for side in ("lo", "hi"):
        hyp = {k: getattr(g, side) for k, g in EVOLVABLE.items()}
        assert set(hyp_of(apply_hyp(CFG, hyp))) == set(h)


def test_save_hyp_round_trip(tmp_path):
    hyp = {"learning_rate": 0.0013, "burn_in": 1000.0, "mosaic": 1.0, "hue": 0.1234567, "iou_normalizer": 0.07}
    p = save_hyp(tmp_path / "sub" / "h.yaml", hyp, header=["best of 3"])
    text = (tmp_path / "sub" / "h.yaml").read_text()
    assert text.startswith("# best of 3\n") and "burn_in: 1000  # [net]" in text
    assert "iou_normalizer: 0.07  # [yolo]" in text
    assert load_hyp(p) == hyp
    assert [q.name for q in (tmp_path / "sub").iterdir()] == ["h.yaml"]  # no temp file left
