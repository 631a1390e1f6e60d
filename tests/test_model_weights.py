"""Darknet .weights IO (byte-exact round trip, size checks), re-heading, cfg/ckpt round trips."""

import filecmp
import struct

import pytest
import torch

from yolo4.errors import DataError, WeightsError
from yolo4.model import (
    Darknet,
    build_specs,
    load_checkpoint,
    load_darknet,
    load_weights,
    parse_cfg,
    save_cfg,
    save_darknet_weights,
    weights_file_size,
)

TINY_WEIGHTS_BYTES = 24_251_276

# /work/shared/README.md: sizes implied by the cfgs (20-byte header)
README_SIZES = {
    "yolov4": 257_717_640, "yolov4-csp": 211_944_840, "yolov4-tiny": 24_251_276,
    "yolov4-tiny-3l": 25_336_200, "yolov4x-mish": 399_388_168, "yolov3": 248_007_048,
    "yolov3-tiny": 35_434_956,
}


@pytest.fixture(scope="module")
def tiny_paths(shared_data):
    return (shared_data / "darknet" / "cfg" / "yolov4-tiny.cfg", shared_data / "weights" / "yolov4-tiny.weights")


@pytest.mark.parametrize("name", sorted(README_SIZES))
def test_expected_sizes_match_readme(shared_data, name):
    _, specs = build_specs(parse_cfg(shared_data / "darknet" / "cfg" / (name + ".cfg")))
    assert weights_file_size(specs) == README_SIZES[name]


def test_real_weights_round_trip_byte_identical(tiny_paths, tmp_path):
    cfg, weights = tiny_paths
    assert weights.stat().st_size == TINY_WEIGHTS_BYTES
    m = load_darknet(cfg, weights)
    major, minor, revision = struct.unpack("<3i", weights.read_bytes()[:12])
    assert m.darknet_header[:3] == (major, minor, revision) == (0, 2, 5)
    out = save_darknet_weights(m, tmp_path / "sub" / "copy.weights")
    assert filecmp.cmp(out, weights, shallow=False)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["copy.weights"]  # no temp file left
    # the first conv's record, read by hand: bias, scale, mean, var (32 each) then weights
    raw = weights.read_bytes()
    vals = struct.unpack(f"<{32 * 4 + 32 * 27}f", raw[20:20 + 4 * (32 * 4 + 32 * 27)])
    blk = m.conv_layers[0]
    assert blk.bn.bias.tolist() == pytest.approx(vals[0:32], abs=0)
    assert blk.bn.weight.tolist() == pytest.approx(vals[32:64], abs=0)
    assert blk.bn.running_mean.tolist() == pytest.approx(vals[64:96], abs=0)
    assert blk.bn.running_var.tolist() == pytest.approx(vals[96:128], abs=0)
    assert blk.conv.weight.flatten().tolist() == pytest.approx(vals[128:], abs=0)


def test_truncated_weights_error(tiny_paths, tmp_path):
    cfg, weights = tiny_paths
    bad = tmp_path / "truncated.weights"
    bad.write_bytes(weights.read_bytes()[:-1000])
    with pytest.raises(WeightsError) as ei:
        load_darknet(cfg, bad)
    msg = str(ei.value)
    assert str(bad) in msg and str(TINY_WEIGHTS_BYTES) in msg and str(TINY_WEIGHTS_BYTES - 1000) in msg
    with pytest.raises(WeightsError) as ei:
        load_darknet(cfg, tmp_path / "missing.weights")
    assert "missing.weights" in str(ei.value)
    empty = tmp_path / "empty.weights"
    empty.write_bytes(b"")
    with pytest.raises(WeightsError):
        load_darknet(cfg, empty)


def test_old_header_and_partial_upto(tiny_paths, tmp_path):
    cfg, weights = tiny_paths
    raw = weights.read_bytes()
    # darknet < 0.2 files have a 32-bit `seen`: 16-byte header
    old = tmp_path / "old.weights"
    old.write_bytes(struct.pack("<3ii", 0, 1, 0, 12345) + raw[20:])
    m = load_darknet(cfg, old)
    assert m.darknet_header == (0, 1, 0, 12345)
    out = save_darknet_weights(m, tmp_path / "old2.weights")
    assert filecmp.cmp(out, old, shallow=False)
    # a backbone-only file (as darknet's `partial` writes), loaded with upto
    _, specs = build_specs(parse_cfg(cfg))
    cut = weights_file_size(specs, upto=15)
    part = tmp_path / "tiny.conv.15"
    part.write_bytes(raw[:cut])
    fresh = Darknet(cfg)
    before = fresh.layers[29].conv.weight.clone()
    load_weights(fresh, part, upto=15)
    full = load_darknet(cfg, weights)
    assert torch.equal(fresh.layers[13].conv.weight, full.layers[13].conv.weight)
    assert torch.equal(fresh.layers[29].conv.weight, before)
    with pytest.raises(WeightsError):
        load_weights(fresh, part)  # without upto the size does not match


def test_rehead_one_class(tiny_paths, tmp_path):
    cfg, weights = tiny_paths
    full = load_darknet(cfg, weights)
    one = load_darknet(cfg, weights, num_classes=1)
    assert one.num_classes == 1 and [y.num_classes for y in one.yolo_layers] == [1, 1]
    heads = {y.index - 1 for y in one.yolo_layers}
    assert heads == {29, 36}
    assert [one.layers[i].conv.out_channels for i in sorted(heads)] == [18, 18]
    sd_full, sd_one = full.state_dict(), one.state_dict()
    assert sd_full.keys() == sd_one.keys()
    for k in sd_full:
        if int(k.split(".")[1]) in heads:
            assert sd_one[k].shape[0] == 18
        else:
            assert torch.equal(sd_full[k], sd_one[k]), k
    # fresh heads: small weights, objectness prior well below 0.5, finite outputs
    w = one.layers[29].conv.weight
    assert w.abs().max() < 0.1 and torch.isfinite(w).all()
    with torch.no_grad():
        boxes, scores = one(torch.rand(1, 3, 416, 416))
    assert boxes.shape == (1, 2535, 4) and scores.shape == (1, 2535, 1) and scores.max() < 0.5
    # the re-headed cfg is what save_cfg writes; it rebuilds the same model with the saved weights
    save_cfg(one, tmp_path / "one.cfg")
    save_darknet_weights(one, tmp_path / "one.weights")
    again = load_darknet(tmp_path / "one.cfg", tmp_path / "one.weights")
    assert filecmp.cmp(save_darknet_weights(again, tmp_path / "again.weights"), tmp_path / "one.weights",
                       shallow=False)
    text = (tmp_path / "one.cfg").read_text()
    assert "classes=1" in text and "filters=18" in text and "classes=80" not in text


def test_checkpoint_round_trip_and_errors(tiny_paths, tmp_path):
    cfg, weights = tiny_paths
    m = load_darknet(cfg, weights, num_classes=2, names=["cat", "hat"])
    ckpt = {"format": "yolo4-checkpoint", "version": 1, "cfg_text": m.cfg_text, "names": ["cat", "hat"],
            "model": m.state_dict(), "epoch": 3, "best_fitness": 0.5, "optimizer": None, "ema": None,
            "ema_updates": 0, "train_args": {}, "yolo4_version": "0", "metrics": {}}
    torch.save(ckpt, tmp_path / "best.pt")
    back = load_checkpoint(tmp_path / "best.pt")
    assert back.names == ["cat", "hat"] and not back.training
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        assert torch.equal(back(x)[1], m.eval()(x)[1])
    with pytest.raises(WeightsError):
        load_checkpoint(tmp_path / "nope.pt")
    names_file = tmp_path / "three.names"
    names_file.write_text("a\nb\nc\n")
    with pytest.raises(DataError) as ei:
        load_darknet(cfg, weights, num_classes=2, names=names_file)
    assert str(names_file) in str(ei.value)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(WeightsError):
        load_checkpoint(tmp_path / "other.pt")
    bad = dict(ckpt, model={k: v for k, v in ckpt["model"].items() if "layers.0." not in k})
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(WeightsError):
        load_checkpoint(tmp_path / "bad.pt")


def test_known_names_resolve_through_mirror(shared_data):
    import yolo4.assets  # noqa: F401  (the project's own module: missing = a failure, not a skip)
    m = load_darknet("yolov4-tiny", "yolov4-tiny")
    info = m.model_info()
    assert info.names[0] == "person" and info.names[16] == "dog" and len(info.names) == 80
    assert info.input_hw == (416, 416) and info.strides == [32, 16]
    assert info.anchors == [[(81, 82), (135, 169), (344, 319)], [(23, 27), (37, 58), (81, 82)]]
    assert info.nms_kind == "greedynms" and info.beta_nms == 0.6 and len(info.cfg_sha256) == 64
    assert m.model_info(names=["a"] * 80).names[0] == "a"
    one = load_darknet("yolov4-tiny", num_classes=1)
    assert one.model_info().names == ["class0"]


@pytest.mark.parametrize("name", ["yolov4", "yolov4-tiny", "yolov4-tiny-3l", "yolov4-csp", "yolov4x-mish",
                                  "yolov4-custom", "yolov3", "yolov3-tiny"])
def test_cfg_round_trip_is_byte_identical(shared_data, tmp_path, name):
    src = shared_data / "darknet" / "cfg" / (name + ".cfg")
    out = save_cfg(load_darknet(src), tmp_path / (name + ".cfg"))
    assert filecmp.cmp(out, src, shallow=False)
