"""yolo4.assets: download() against a loopback HTTP server, and name resolution (mirror, cache, download)."""

import functools
import hashlib
import http.server
import os
import socket
import threading
import urllib.request
from pathlib import Path

import pytest

from yolo4 import assets
from yolo4.assets import Asset, download, file_digests, resolve_cfg, resolve_names, resolve_weights
from yolo4.errors import AssetError


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        if self.path == "/truncated":  # announces more bytes than it sends, then hangs up
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"x" * 1000)
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):  # client hung up mid-body: expected in these tests
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    """(folder served, base URL) of a loopback HTTP server running in a thread."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    root = tmp_path / "www"
    root.mkdir()
    httpd = _Server(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def payload(server):
    """A 2.5 MiB file on the server (several 1 MiB read chunks): (url, bytes, sha256)."""
    root, base = server
    data = os.urandom((5 << 20) // 2)
    (root / "blob.weights").write_bytes(data)
    return base + "blob.weights", data, hashlib.sha256(data).hexdigest()


def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def test_download_success_is_verified_and_atomic(payload, tmp_path, capsys):
    url, data, sha = payload
    dest = tmp_path / "out" / "sub" / "blob.weights"
    got = download(url, dest, sha256=sha, expected_size=len(data), progress=False)
    assert got == dest
    assert dest.read_bytes() == data
    assert sorted(p.name for p in dest.parent.iterdir()) == ["blob.weights"]  # no temp file left
    assert capsys.readouterr().err == ""


def test_download_shows_byte_progress_bar(payload, tmp_path, capsys):
    url, data, sha = payload
    download(url, tmp_path / "blob.weights", sha256=sha, progress=True)
    err = capsys.readouterr().err
    assert "blob.weights" in err and "B" in err  # tqdm bar with byte units


def test_sha256_mismatch_leaves_nothing_behind(payload, tmp_path):
    url, data, sha = payload
    dest = tmp_path / "dl" / "blob.weights"
    dest.parent.mkdir()
    dest.write_bytes(b"previous content")
    wrong = "0" * 64
    with pytest.raises(AssetError) as info:
        download(url, dest, sha256=wrong, progress=False)
    msg = str(info.value)
    assert url in msg and wrong in msg and sha in msg
    assert "\n" not in msg
    assert dest.read_bytes() == b"previous content"  # untouched
    assert sorted(p.name for p in dest.parent.iterdir()) == ["blob.weights"]  # no partial file


def test_other_pinned_digest_is_checked(payload, tmp_path):
    url, data, _ = payload
    good = {"sha512": hashlib.sha512(data).hexdigest(), "sha1": hashlib.sha1(data).hexdigest()}
    download(url, tmp_path / "a.weights", digests=good, progress=False)
    assert (tmp_path / "a.weights").read_bytes() == data
    with pytest.raises(AssetError, match="sha512 mismatch"):
        download(url, tmp_path / "b.weights", digests={"sha512": "ab" * 64}, progress=False)
    assert not (tmp_path / "b.weights").exists()


def test_no_sha256_pinned_checks_size_and_warns_once(payload, tmp_path, capsys):
    url, data, sha = payload
    download(url, tmp_path / "blob.weights", expected_size=len(data), progress=False)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert "no sha256 pinned" in lines[0] and url in lines[0] and str(len(data)) in lines[0]
    assert sha in lines[0]  # tells the user what to pin


def test_size_mismatch_is_an_error(payload, tmp_path):
    url, data, _ = payload
    with pytest.raises(AssetError, match=f"expected {len(data) - 1}"):
        download(url, tmp_path / "blob.weights", expected_size=len(data) - 1, progress=False)
    assert list(tmp_path.glob("*blob*")) == []


def test_http_404_is_one_line_error(server, tmp_path):
    _, base = server
    url = base + "missing.cfg"
    with pytest.raises(AssetError) as info:
        download(url, tmp_path / "missing.cfg", progress=False)
    msg = str(info.value)
    assert "404" in msg and url in msg and "\n" not in msg
    assert list(tmp_path.iterdir()) == [tmp_path / "www"]


def test_truncated_body_is_an_error(server, tmp_path):
    _, base = server
    with pytest.raises(AssetError):
        download(base + "truncated", tmp_path / "t.bin", progress=False)
    assert not (tmp_path / "t.bin").exists()
    assert list(tmp_path.glob(".t.bin*")) == []


def test_connection_refused_is_one_line_error(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x.cfg"
    with pytest.raises(AssetError) as info:
        download(url, tmp_path / "x.cfg", progress=False)
    assert url in str(info.value) and "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------
# resolution


def test_existing_path_is_returned_as_is(tmp_path):
    cfg = tmp_path / "my model.cfg"
    cfg.write_text("[net]\n")
    assert resolve_cfg(str(cfg)) == cfg
    assert resolve_weights(cfg) == cfg
    assert resolve_names(str(cfg)) == cfg


def test_unknown_name_lists_known_names(monkeypatch):
    _no_network(monkeypatch)
    with pytest.raises(AssetError) as info:
        resolve_cfg("yolov9000")
    msg = str(info.value)
    assert "yolov9000" in msg and "\n" not in msg
    for name in assets.KNOWN_MODELS:
        assert name in msg
    with pytest.raises(AssetError, match="coco"):
        resolve_names("imagenet")


def test_missing_path_is_not_treated_as_a_name(tmp_path, monkeypatch):
    _no_network(monkeypatch)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AssetError, match="file not found") as info:
        resolve_cfg("models/yolov4.cfg")
    assert "models/yolov4.cfg" in str(info.value)
    with pytest.raises(AssetError, match="pass the name 'yolov4'"):
        resolve_cfg("yolov4.cfg")


def test_resolution_through_the_mirror_reads_in_place(shared_data, tmp_path, monkeypatch):
    _no_network(monkeypatch)
    monkeypatch.setenv("YOLO4_ASSET_MIRROR", str(shared_data))
    monkeypatch.setenv("YOLO4_CACHE_DIR", str(tmp_path / "cache"))
    assert resolve_cfg("yolov4-tiny") == shared_data / "darknet" / "cfg" / "yolov4-tiny.cfg"
    assert resolve_cfg("YOLOv4") == shared_data / "darknet" / "cfg" / "yolov4.cfg"
    assert resolve_weights("yolov4-tiny") == shared_data / "weights" / "yolov4-tiny.weights"
    assert resolve_names() == shared_data / "darknet" / "coco.names"
    copied = [p for p in (tmp_path / "cache").rglob("*") if p.suffix in (".cfg", ".weights", ".names")]
    assert copied == []  # mirror files are never copied


def test_tampered_mirror_file_is_rejected(tmp_path, monkeypatch):
    _no_network(monkeypatch)
    mirror = tmp_path / "mirror"
    (mirror / "darknet" / "cfg").mkdir(parents=True)
    bad = mirror / "darknet" / "cfg" / "yolov4-tiny.cfg"
    bad.write_bytes(b"#" * assets.CFG_ASSETS["yolov4-tiny"].size)  # right size, wrong content
    monkeypatch.setenv("YOLO4_ASSET_MIRROR", str(mirror))
    with pytest.raises(AssetError) as info:
        resolve_cfg("yolov4-tiny")
    assert str(bad) in str(info.value) and "sha256 mismatch" in str(info.value)
    bad.write_bytes(b"[net]\n")
    with pytest.raises(AssetError, match="size is 6 bytes, expected"):
        resolve_cfg("yolov4-tiny")


def test_mirror_that_is_not_a_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO4_ASSET_MIRROR", str(tmp_path / "nowhere"))
    with pytest.raises(AssetError, match="YOLO4_ASSET_MIRROR"):
        resolve_cfg("yolov4")


def test_asset_without_public_url_needs_the_mirror(tmp_path, monkeypatch):
    _no_network(monkeypatch)
    monkeypatch.setenv("YOLO4_ASSET_MIRROR", str(tmp_path))
    with pytest.raises(AssetError, match="no public download exists for yolov4-tiny-3l.weights"):
        resolve_weights("yolov4-tiny-3l")


def _fake_cfg_asset(server, monkeypatch, content=b"[net]\nwidth=416\nheight=416\n"):
    root, base = server
    (root / "fake.cfg").write_bytes(content)
    asset = Asset("yolov4-tiny", "cfg", "darknet/cfg/yolov4-tiny.cfg", base + "fake.cfg",
                  hashlib.sha256(content).hexdigest(), len(content))
    monkeypatch.setitem(assets.CFG_ASSETS, "yolov4-tiny", asset)
    return asset, content


def test_download_into_cache_then_cache_hit_without_network(server, tmp_path, monkeypatch):
    monkeypatch.delenv("YOLO4_ASSET_MIRROR", raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("YOLO4_CACHE_DIR", str(cache))
    asset, content = _fake_cfg_asset(server, monkeypatch)
    first = resolve_cfg("yolov4-tiny", progress=False)
    assert first == cache / "darknet" / "cfg" / "yolov4-tiny.cfg"
    assert first.read_bytes() == content
    _no_network(monkeypatch)
    assert resolve_cfg("yolov4-tiny", progress=False) == first


def test_corrupted_cache_file_is_downloaded_again(server, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("YOLO4_ASSET_MIRROR", raising=False)
    monkeypatch.setenv("YOLO4_CACHE_DIR", str(tmp_path / "cache"))
    asset, content = _fake_cfg_asset(server, monkeypatch)
    path = resolve_cfg("yolov4-tiny", progress=False)
    path.write_bytes(b"garbage")
    assert resolve_cfg("yolov4-tiny", progress=False) == path
    assert path.read_bytes() == content
    assert "failed verification" in capsys.readouterr().err


def test_offline_download_failure_suggests_the_mirror(tmp_path, monkeypatch):
    monkeypatch.delenv("YOLO4_ASSET_MIRROR", raising=False)
    monkeypatch.setenv("YOLO4_CACHE_DIR", str(tmp_path / "cache"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    asset = Asset("coco", "names", "darknet/coco.names", f"http://127.0.0.1:{port}/coco.names", "0" * 64)
    monkeypatch.setitem(assets.NAMES_ASSETS, "coco", asset)
    with pytest.raises(AssetError) as info:
        resolve_names("coco", progress=False)
    assert "YOLO4_ASSET_MIRROR/darknet/coco.names" in str(info.value)
    assert not (tmp_path / "cache" / "darknet" / "coco.names").exists()


def test_digests_are_memoized_per_path_mtime_size(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO4_CACHE_DIR", str(tmp_path / "cache"))
    f = tmp_path / "data.bin"
    f.write_bytes(b"abc")
    calls = []
    real = assets._hash_file

    def counting(path, algorithms):
        calls.append(path)
        return real(path, algorithms)

    monkeypatch.setattr(assets, "_hash_file", counting)
    expect = hashlib.sha256(b"abc").hexdigest()
    assert file_digests(f) == {"sha256": expect}
    assert file_digests(f) == {"sha256": expect}
    assert len(calls) == 1
    assets._memo.clear()  # a new process: the memo file in the cache dir answers
    assert file_digests(f) == {"sha256": expect}
    assert len(calls) == 1
    f.write_bytes(b"abcd")  # new size (and mtime): hashed again
    os.utime(f, ns=(1, 1))
    assert file_digests(f) == {"sha256": hashlib.sha256(b"abcd").hexdigest()}
    assert len(calls) == 2


def test_verify_file_reports_size_and_digest(tmp_path):
    f = tmp_path / "w.weights"
    f.write_bytes(b"12345")
    assets.verify_file(f, hashlib.sha256(b"12345").hexdigest(), 5)
    with pytest.raises(AssetError, match="size is 5 bytes, expected 6"):
        assets.verify_file(f, None, 6)
    with pytest.raises(AssetError, match="sha1 mismatch"):
        assets.verify_file(f, digests={"sha1": "0" * 40})
    with pytest.raises(AssetError, match="cannot read"):
        assets.verify_file(Path(tmp_path / "absent"))


def test_offline_switch_never_downloads(server, tmp_path, monkeypatch):
    monkeypatch.delenv("YOLO4_ASSET_MIRROR", raising=False)
    monkeypatch.setenv("YOLO4_CACHE_DIR", str(tmp_path / "cache"))
    _fake_cfg_asset(server, monkeypatch)
    monkeypatch.setenv("YOLO4_OFFLINE", "1")
    _no_network(monkeypatch)
    with pytest.raises(AssetError, match="YOLO4_OFFLINE"):
        resolve_cfg("yolov4-tiny")
