"""yolo4.assets registry: pinned URLs and digests, checked against the real files in ../shared/data."""

import re
import urllib.request

import pytest

from yolo4 import assets
from yolo4.assets import CFG_ASSETS, DARKNET_COMMIT, KNOWN_MODELS, NAMES_ASSETS, WEIGHTS_ASSETS

HEX_LEN = {"sha1": 40, "sha256": 64, "sha512": 128}


@pytest.fixture
def mirror(shared_data, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setenv("YOLO4_ASSET_MIRROR", str(shared_data))
    monkeypatch.setenv("YOLO4_CACHE_DIR", str(tmp_path / "cache"))
    return shared_data


def test_known_models():
    assert set(KNOWN_MODELS) == {"yolov4", "yolov4-tiny", "yolov4-tiny-3l", "yolov4-csp", "yolov4-csp-swish",
                                 "yolov4x-mish", "yolov3", "yolov3-tiny"}
    assert set(CFG_ASSETS) == set(WEIGHTS_ASSETS) == set(KNOWN_MODELS)
    assert set(assets.KNOWN_NAMES) == {"coco", "voc"}


def test_cfg_and_names_urls_are_pinned_to_a_full_commit():
    assert re.fullmatch(r"[0-9a-f]{40}", DARKNET_COMMIT)
    for a in list(CFG_ASSETS.values()) + list(NAMES_ASSETS.values()):
        assert a.url.startswith(f"https://raw.githubusercontent.com/AlexeyAB/darknet/{DARKNET_COMMIT}/")
        assert a.url.endswith("/" + a.filename)
        assert a.sha256 is not None and a.size is not None


def test_weights_urls_and_pins_are_well_formed():
    for name, a in WEIGHTS_ASSETS.items():
        assert a.relpath == f"weights/{name}.weights"
        assert a.size is not None and (a.size - 20) % 4 == 0  # 20-byte header + float32 values
        if a.url is not None:
            assert a.url.startswith("https://") and a.url.endswith(f"/{name}.weights")
        for algo, digest in list(a.digests.items()) + [("sha256", a.sha256)]:
            if digest is not None:
                assert re.fullmatch(f"[0-9a-f]{{{HEX_LEN[algo]}}}", digest), (name, algo)
    assert WEIGHTS_ASSETS["yolov4-tiny"].url.endswith("/darknet_yolo_v4_pre/yolov4-tiny.weights")
    assert WEIGHTS_ASSETS["yolov4"].url.endswith("/darknet_yolo_v3_optimal/yolov4.weights")
    assert WEIGHTS_ASSETS["yolov4-tiny-3l"].url is None  # no official pretrained weights


def test_every_pinned_cfg_matches_the_mirror(mirror):
    for name in KNOWN_MODELS:
        assert assets.resolve_cfg(name) == mirror / "darknet" / "cfg" / f"{name}.cfg"


def test_names_pins_match_the_mirror(mirror):
    assert assets.resolve_names("coco") == mirror / "darknet" / "coco.names"
    assert assets.resolve_names("voc") == mirror / "darknet" / "voc.names"


def test_yolov4_tiny_weights_pin_matches_the_mirror(mirror):
    path = assets.resolve_weights("yolov4-tiny")
    assert path == mirror / "weights" / "yolov4-tiny.weights"
    assert path.stat().st_size == 24251276
    # The same file's sha1 is the one OpenCV's opencv_extra pins for this release asset.
    assert assets.file_digests(path, ["sha1"])["sha1"] == "451caaab22fb9831aa1a5ee9b5ba74a35ffa5dcb"


def test_mirror_resolution_is_cheap_the_second_time(mirror, monkeypatch):
    assets.resolve_weights("yolov4-tiny")
    calls = []
    monkeypatch.setattr(assets, "_hash_file", lambda *a: calls.append(a))
    assets.resolve_weights("yolov4-tiny")
    assert calls == []
