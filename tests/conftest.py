"""Shared fixtures: the real data in ../shared/data, used read-only through the asset mirror."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("YOLO4_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()

if SHARED_DATA.is_dir():
    # Named assets (cfgs, weights, datasets) resolve through the mirror, never the network.
    os.environ.setdefault("YOLO4_ASSET_MIRROR", str(SHARED_DATA))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data absent: real cfgs/weights/datasets unavailable")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Downloads in tests go to a per-session temp cache, never ~/.cache."""
    monkeypatch.setenv("YOLO4_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "yolo4-cache"))


@pytest.fixture(scope="module")
def tiny(shared_data):
    """The real yolov4-tiny (darknet cfg + official COCO weights from ../shared/data), eval mode."""
    from yolo4.model import load_darknet

    return load_darknet(shared_data / "darknet" / "cfg" / "yolov4-tiny.cfg",
                        shared_data / "weights" / "yolov4-tiny.weights")
