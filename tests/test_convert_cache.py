"""The ONNX export cache: keyed on everything that goes into the file (resolved class names above
all), in ``yolo4.assets.cache_dir()``, bounded (LRU eviction), and usable when unwritable (temporary
fallback removed at exit)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import onnx
import pytest

pytest.importorskip("onnxruntime")

from yolo4.convert import export_cache as export_cache_mod  # noqa: E402
from yolo4.convert import export_cached  # noqa: E402
from yolo4.data import names as names_mod  # noqa: E402
from yolo4.data.names import COCO_NAMES, generic_names  # noqa: E402
from yolo4.model_info import ModelInfo  # noqa: E402

pytestmark = pytest.mark.shared
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def two_class(shared_data):
    """yolov4-tiny re-headed to 2 classes (random heads), no names: model_info() says class0/class1."""
    from yolo4.model import load_darknet

    m = load_darknet(shared_data / "darknet" / "cfg" / "yolov4-tiny.cfg",
                     shared_data / "weights" / "yolov4-tiny.weights", num_classes=2)
    assert m.names is None and m.num_classes == 2
    return m


def _info(path) -> ModelInfo:
    return ModelInfo.from_metadata({p.key: p.value for p in onnx.load(str(path)).metadata_props})


def _entries(folder):
    return sorted(p.name for p in Path(folder).iterdir() if not p.name.startswith("."))


def test_names_resolution_is_part_of_the_key(two_class, tmp_path, monkeypatch):
    """An export made while names resolved one way is not served once they resolve another way."""
    p1 = export_cached(two_class, img_size=64, cache=tmp_path)
    assert _info(p1).names == ["class0", "class1"]
    # the same call, but names now resolve differently (as when a mirror, a built-in list or a newer
    # names default provides them): the cached class0/class1 file must not be served
    monkeypatch.setattr(names_mod, "default_names", lambda c: ["cat", "dog"][:c])
    p2 = export_cached(two_class, img_size=64, cache=tmp_path)
    assert p2 != p1 and _info(p2).names == ["cat", "dog"]
    monkeypatch.undo()
    # explicit names (as --names gives them) and module names: their own files
    p3 = export_cached(two_class, img_size=64, cache=tmp_path, names=["bird", "fish"])
    assert _info(p3).names == ["bird", "fish"] and p3 not in (p1, p2)
    assert export_cached(two_class, img_size=64, cache=tmp_path) == p1  # still served as before
    assert _info(p1).names == ["class0", "class1"]
    assert len(_entries(tmp_path / "onnx")) == 3


def test_xdg_cache_home_is_honoured(two_class, tmp_path, monkeypatch):
    monkeypatch.delenv("YOLO4_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # a wrong fallback would land here, not in ~
    p = export_cached(two_class, img_size=64)
    assert p.parent == tmp_path / "xdg" / "yolo4" / "onnx" and p.is_file()
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize("how", ["read-only", "file-in-the-way"])
def test_unwritable_cache_falls_back_to_a_temporary_file(two_class, tmp_path, how):
    cache = tmp_path / "cache"
    cache.mkdir()
    if how == "read-only":
        cache.chmod(0o555)
        if os.access(str(cache), os.W_OK):  # root ignores the mode bits
            cache.chmod(0o755)
            pytest.skip("running as root: a 0o555 folder stays writable (see the file-in-the-way case)")
    else:
        (cache / "onnx").write_text("not a folder")
    try:
        messages = []
        p = export_cached(two_class, img_size=64, cache=cache, log=messages.append)
        assert p.is_file() and cache not in p.parents
        assert _info(p).names == ["class0", "class1"] and _info(p).input_hw == (64, 64)
        warnings_ = [m for m in messages if m.startswith("warning:")]
        assert len(warnings_) == 1 and str(cache / "onnx") in warnings_[0] and "temporary" in warnings_[0]
        assert "\n" not in warnings_[0]
        # the same call again in this process reuses the temporary file, silently
        messages.clear()
        assert export_cached(two_class, img_size=64, cache=cache, log=messages.append) == p
        assert messages == []
    finally:
        cache.chmod(0o755)
    if how == "file-in-the-way":
        assert (cache / "onnx").read_text() == "not a folder"


def test_fallback_file_is_removed_at_exit(shared_data, tmp_path):
    code = f"""
import sys
from yolo4.convert import export_cached
from yolo4.model import load_darknet
m = load_darknet({str(shared_data / 'darknet' / 'cfg' / 'yolov4-tiny.cfg')!r}, num_classes=2)
p = export_cached(m, img_size=64, simplify=False, cache={str(tmp_path / 'cache')!r}, log=lambda s: None)
assert p.is_file()
print(p)
"""
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "onnx").write_text("in the way")
    env = dict(os.environ, YOLO4_ASSET_MIRROR=str(shared_data))
    out = subprocess.run([sys.executable, "-c", code], cwd=str(REPO), env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    path = Path(out.stdout.strip().splitlines()[-1])
    assert path.name.endswith(".onnx") and not path.exists() and not path.parent.exists()


def test_size_bound_evicts_least_recently_used(two_class, tmp_path):
    folder = tmp_path / "onnx"

    def export(size, **kw):
        return export_cached(two_class, img_size=size, simplify=False, cache=tmp_path, **kw)

    a, b = export(64, max_files=2), export(96, max_files=2)
    now = time.time()
    os.utime(str(a), (now - 100, now - 100))
    os.utime(str(b), (now - 50, now - 50))
    mine = folder / "mine.onnx"  # not a cache entry: never evicted
    mine.write_bytes(b"user file")
    stale_tmp, fresh_tmp = folder / ".x.onnx.0123.tmp", folder / ".y.onnx.4567.tmp"
    stale_tmp.write_bytes(b"killed export")
    fresh_tmp.write_bytes(b"export in progress")
    os.utime(str(stale_tmp), (now - 2 * 86400, now - 2 * 86400))
    assert export(64, max_files=2) == a  # a hit marks a as recently used: b is now the oldest
    c = export(128, max_files=2)
    assert _entries(folder) == sorted([a.name, c.name, "mine.onnx"])
    assert not stale_tmp.exists() and fresh_tmp.exists()
    # a byte budget that holds one file (the exports differ in size by a few bytes of shapes): only
    # the newest stays
    budget = c.stat().st_size * 3 // 2
    d = export(160, max_bytes=budget)
    assert _entries(folder) == sorted([d.name, "mine.onnx"]) and d.stat().st_size <= budget
    assert export_cache_mod.MAX_FILES == 16 and export_cache_mod.MAX_BYTES == 2 * 1024 ** 3


def test_local_tiny_carries_coco_names(shared_data, tmp_path, monkeypatch):
    """The real yolov4-tiny from local paths, no mirror, no names: the cached ONNX (the ONNX Runtime
    backend's file) names COCO's classes, even when the cache already holds an export made while the
    names resolved to class0..79 (what this same version did before the built-in COCO names)."""
    monkeypatch.delenv("YOLO4_ASSET_MIRROR", raising=False)
    from yolo4.model import load_darknet
    from yolo4.runtime.backends import create_backend

    m = load_darknet(str(shared_data / "darknet" / "cfg" / "yolov4-tiny.cfg"),
                     str(shared_data / "weights" / "yolov4-tiny.weights"))
    assert m.names is None
    with monkeypatch.context() as mp:
        mp.setattr(names_mod, "default_names", generic_names)
        old = export_cached(m, img_size=128, cache=tmp_path)
    assert _info(old).names[16] == "class16"
    p = export_cached(m, img_size=128, cache=tmp_path)
    assert p != old
    names = _info(p).names
    assert names == list(COCO_NAMES) and names[0] == "person" and names[16] == "dog"
    assert names[-1] == "toothbrush" and len(names) == 80
    be = create_backend("onnxruntime", path=str(p))
    try:
        assert be.info.names[16] == "dog"
    finally:
        be.close()
