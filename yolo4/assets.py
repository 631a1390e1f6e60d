"""Named assets: official darknet cfgs, pretrained weights and class-name files, fetched by name.

Python 3.8, torch-free.

A name such as ``"yolov4-tiny"`` is resolved, in this order, to

1. the asset mirror, the directory named by ``$YOLO4_ASSET_MIRROR`` (layout of ``shared/data``:
   ``darknet/cfg/<name>.cfg``, ``weights/<name>.weights``, ``darknet/coco.names``). Mirror files are
   read in place, never copied, and verified like downloads;
2. the download cache, ``$YOLO4_CACHE_DIR`` (default ``$XDG_CACHE_HOME/yolo4``, i.e.
   ``~/.cache/yolo4``), which has the mirror's layout, so a filled cache can serve as a mirror on an
   offline machine;
3. a download from the asset's public URL into the cache (progress bar, digest check, temp file +
   ``os.replace``: a failed or interrupted download never leaves a partial file behind), unless
   ``$YOLO4_OFFLINE`` is ``1``/``true``/``yes``, which makes a miss an immediate :class:`AssetError`.

Pins (see ``Asset.source`` of each entry):

* cfgs and ``coco.names``/``voc.names``: ``raw.githubusercontent.com`` URLs at the full commit
  :data:`DARKNET_COMMIT` of AlexeyAB/darknet, sha256 and size of those files (the files in
  ``shared/data/darknet`` are that commit's).
* weights: the URLs AlexeyAB/darknet's README (at that commit) links to (its GitHub release assets;
  pjreddie.com for yolov3/yolov3-tiny; none for yolov4-tiny-3l, which has no published COCO weights).
  Only ``yolov4-tiny``'s sha256 is pinned (the file in ``shared/data``, whose sha1 and sha512 also
  equal OpenCV's and vcpkg's pins of that URL). No public sha256 was found for the others; where an
  established project pins another digest of the same file it is pinned instead: sha512 from
  microsoft/vcpkg's ``ports/darknet/portfile.cmake`` (yolov4, yolov3, yolov3-tiny), sha1 from OpenCV's
  ``opencv_extra/testdata/dnn/download_models.py`` (yolov4x-mish, yolov3). yolov4-csp and
  yolov4-csp-swish have no published digest at all. Every weights file's byte size is pinned (20-byte
  header + 4 bytes per parameter implied by its cfg). A download with no sha256 pinned prints a
  one-line warning saying what was checked instead (and the sha256 it measured).

Verification results are cached per ``(path, mtime, size)`` in memory and in
``<cache>/digests.json``, so resolving a 250 MB mirror file costs one stat after the first time.
"""

import hashlib
import http.client
import json
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Mapping, Optional, Tuple, Union

from .errors import AssetError
from .fileio import atomic_write_text, sibling_temp

PathLike = Union[str, "os.PathLike[str]"]

#: AlexeyAB/darknet commit whose cfgs and names files are pinned (the mirror's cfgs are from it).
DARKNET_COMMIT = "59596d7880f6504768df41d6daa586f5cb2b932f"

_RAW = f"https://raw.githubusercontent.com/AlexeyAB/darknet/{DARKNET_COMMIT}/"
_RELEASES = "https://github.com/AlexeyAB/darknet/releases/download/"
_PJREDDIE = "https://pjreddie.com/media/files/"

_SRC_CFG = f"AlexeyAB/darknet@{DARKNET_COMMIT[:8]}; sha256 and size of that commit's file"
_SRC_VCPKG = "microsoft/vcpkg ports/darknet/portfile.cmake (feature 'weights', same URL)"
_SRC_OPENCV = "opencv/opencv_extra testdata/dnn/download_models.py"
_SRC_SIZE = "size = 20-byte header + 4 bytes x parameters of the cfg"

#: Seconds without data after which a download is abandoned.
DOWNLOAD_TIMEOUT_S = 60.0
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Asset:
    """One named file that can be fetched.

    Attributes:
        name: registry name, e.g. ``"yolov4-tiny"`` or ``"coco"``.
        kind: ``"cfg"``, ``"weights"`` or ``"names"``.
        relpath: path inside the mirror and the cache dir, ``/``-separated.
        url: public download URL, or None where none is published (then only the mirror can serve it).
        sha256: expected sha256 hex digest, or None where no trustworthy public one exists.
        size: expected size in bytes, or None.
        digests: other pinned digests ``{hashlib algorithm name: hex}``, checked like ``sha256``.
        source: where the URL and the pins come from.
    """

    name: str
    kind: str
    relpath: str
    url: Optional[str]
    sha256: Optional[str] = None
    size: Optional[int] = None
    digests: Mapping[str, str] = field(default_factory=dict)
    source: str = ""

    @property
    def filename(self) -> str:
        """Base name of the file, e.g. ``"yolov4-tiny.weights"``."""
        return self.relpath.rsplit("/", 1)[-1]


def _cfg(name: str, sha256: str, size: int) -> Asset:
    return Asset(name, "cfg", f"darknet/cfg/{name}.cfg", _RAW + f"cfg/{name}.cfg", sha256, size,
                 source=_SRC_CFG)


def _weights(name: str, url: Optional[str], size: int, sha256: Optional[str] = None,
             digests: Optional[Dict[str, str]] = None, source: str = _SRC_SIZE) -> Asset:
    return Asset(name, "weights", f"weights/{name}.weights", url, sha256, size, dict(digests or {}),
                 source)


#: cfg of every known model, AlexeyAB/darknet ``cfg/<name>.cfg`` at :data:`DARKNET_COMMIT`.
CFG_ASSETS: Dict[str, Asset] = {a.name: a for a in (
    _cfg("yolov4", "a6d0f8e5c62cc8378384f75a8159b95fa2964d4162e33351b00ac82e0fc46a34", 12231),
    _cfg("yolov4-tiny", "f858e3724962eedf3ac44e3b6cb3f0c3d9ed067c306bb831f539c578b924c90e", 3231),
    _cfg("yolov4-tiny-3l", "54d4e1182f6fae944bbbed4e1ba1baa65da05d09ee23f2d2522d79ee4376eb55", 3686),
    _cfg("yolov4-csp", "768acad80dee117ff72aa5c3912ee6641fc19ee86ffdb5c04bb5d7a64105996f", 13476),
    _cfg("yolov4-csp-swish", "cbc3273749d68120dbf02e08cb8ee7b1a5d7d4cebfeefcc9832291cd491dbba8", 14260),
    _cfg("yolov4x-mish", "c26cdc3a9761c9876044665f07a9af1b98724b37ba318ec750195031dd81b802", 15117),
    _cfg("yolov3", "370c7b08d2350fd105a79af9b106c02217d659cd2a5c1e8319a65fa4ced610fa", 8342),
    _cfg("yolov3-tiny", "84eb7a675ef87c906019ff5a6e0effe275d175adb75100dcb47f0727917dc2c7", 1915),
)}

#: Official COCO-pretrained weights of every known model (URLs from AlexeyAB/darknet's README).
WEIGHTS_ASSETS: Dict[str, Asset] = {a.name: a for a in (
    _weights("yolov4", _RELEASES + "darknet_yolo_v3_optimal/yolov4.weights", 257717640, digests={
        "sha512": "77f779c58df67975b187cfead99c1e62d72c57e76c3715e35b97a1c7aba1c7b092be97ff"
                  "b17907099543ac3957085a0fe9688df4a653ea62dfe8322afca53e40"},
        source=f"sha512: {_SRC_VCPKG}; {_SRC_SIZE}"),
    _weights("yolov4-tiny", _RELEASES + "darknet_yolo_v4_pre/yolov4-tiny.weights", 24251276,
             sha256="cf9fbfd0f6d4869b35762f56100f50ed05268084078805f0e7989efe5bb8ca87",
             source="sha256 measured on the release file (its sha1 451caaab... is the one "
                    f"{_SRC_OPENCV} pins, its sha512 7d4d9fe1... the one vcpkg pins since PR #15296)"),
    # AlexeyAB publishes no COCO-pretrained yolov4-tiny-3l weights: mirror only.
    _weights("yolov4-tiny-3l", None, 25336200),
    _weights("yolov4-csp", _RELEASES + "darknet_yolo_v4_pre/yolov4-csp.weights", 211944840),
    # Same layers as yolov4-csp (only the activations differ), hence the same size.
    _weights("yolov4-csp-swish", _RELEASES + "darknet_yolo_v4_pre/yolov4-csp-swish.weights", 211944840),
    _weights("yolov4x-mish", _RELEASES + "darknet_yolo_v4_pre/yolov4x-mish.weights", 399388168,
             digests={"sha1": "a6f2879af2241de2e9730d317a55db6afd0af00b"},
             source=f"sha1: {_SRC_OPENCV}; {_SRC_SIZE}"),
    _weights("yolov3", _PJREDDIE + "yolov3.weights", 248007048, digests={
        "sha512": "293c70e404ff0250d7c04ca1e5e053fc21a78547e69b5b329d34f25981613e59b982d93f"
                  "ff2c352915ef7531d6c3b02a9b0b38346d05c51d6636878d8883f2c1",
        "sha1": "520878f12e97cf820529daea502acca380f1cb8e"},
        source=f"sha512: {_SRC_VCPKG}; sha1: {_SRC_OPENCV}; {_SRC_SIZE}"),
    _weights("yolov3-tiny", _PJREDDIE + "yolov3-tiny.weights", 35434956, digests={
        "sha512": "981a56459515f727bb7b3d3341b95f4117499b6726eab2798e1c3e524de1ee8e"
                  "d0d954c11b27bbbb926da2cc955526a194eddf69c55d65923994ab2e8af07042"},
        source=f"sha512: {_SRC_VCPKG}; {_SRC_SIZE}"),
)}

#: Class-name files, AlexeyAB/darknet ``data/<name>.names`` at :data:`DARKNET_COMMIT`.
NAMES_ASSETS: Dict[str, Asset] = {a.name: a for a in (
    Asset("coco", "names", "darknet/coco.names", _RAW + "data/coco.names",
          "634a1132eb33f8091d60f2c346ababe8b905ae08387037aed883953b7329af84", 625, source=_SRC_CFG),
    Asset("voc", "names", "darknet/voc.names", _RAW + "data/voc.names",
          "f14861775969fd006b382e005f96dc811ef062ea4a37356efb70d7775e90f743", 135, source=_SRC_CFG),
)}

#: Names accepted by :func:`resolve_cfg` and :func:`resolve_weights`.
KNOWN_MODELS: Tuple[str, ...] = tuple(CFG_ASSETS)
#: Names accepted by :func:`resolve_names`.
KNOWN_NAMES: Tuple[str, ...] = tuple(NAMES_ASSETS)

_REGISTRIES = {"cfg": CFG_ASSETS, "weights": WEIGHTS_ASSETS, "names": NAMES_ASSETS}
_SUFFIXES = {"cfg": ".cfg", "weights": ".weights", "names": ".names"}


class _DownloadFailed(AssetError):
    """Network-level failure (as opposed to a digest or size mismatch)."""


# ----------------------------------------------------------------------------------------------
# directories

def mirror_dir() -> Optional[Path]:
    """The asset mirror, ``$YOLO4_ASSET_MIRROR`` (``~`` expanded), or None when unset or empty."""
    value = os.environ.get("YOLO4_ASSET_MIRROR", "").strip()
    return Path(os.path.expanduser(value)) if value else None


def offline() -> bool:
    """True when ``$YOLO4_OFFLINE`` is ``1``/``true``/``yes``: named assets never trigger a download."""
    return os.environ.get("YOLO4_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def cache_dir() -> Path:
    """The download cache: ``$YOLO4_CACHE_DIR``, else ``$XDG_CACHE_HOME/yolo4``, else ``~/.cache/yolo4``."""
    value = os.environ.get("YOLO4_CACHE_DIR", "").strip()
    if value:
        return Path(os.path.expanduser(value))
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return Path(os.path.expanduser(xdg or "~/.cache")) / "yolo4"


# ----------------------------------------------------------------------------------------------
# digests, with a (path, mtime, size)-keyed memo

_memo: Dict[Tuple[str, int, int], Dict[str, str]] = {}
_MEMO_FILE = "digests.json"


def _stat_key(path: str) -> Tuple[str, int, int]:
    st = os.stat(path)
    return os.path.abspath(path), st.st_mtime_ns, st.st_size


def _load_persistent_memo() -> Dict[str, dict]:
    try:
        with open(os.path.join(str(cache_dir()), _MEMO_FILE), encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_persistent_memo(key: Tuple[str, int, int], digests: Mapping[str, str]) -> None:
    """Best effort: a read-only or missing cache dir only costs a re-hash next time."""
    directory = str(cache_dir())
    try:
        data = _load_persistent_memo()
        data[key[0]] = dict(digests, mtime_ns=key[1], size=key[2])
        os.makedirs(directory, exist_ok=True)
        atomic_write_text(os.path.join(directory, _MEMO_FILE), json.dumps(data, indent=0, sort_keys=True))
    except OSError:
        pass


def _remember(key: Tuple[str, int, int], digests: Mapping[str, str], persist: bool = True) -> None:
    known = _memo.setdefault(key, {})
    known.update(digests)
    if persist:
        _save_persistent_memo(key, known)


def _hash_file(path: str, algorithms: Iterable[str]) -> Dict[str, str]:
    hashers = {a: hashlib.new(a) for a in algorithms}
    with open(path, "rb") as f:
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            for h in hashers.values():
                h.update(chunk)
    return {a: h.hexdigest() for a, h in hashers.items()}


def file_digests(path: PathLike, algorithms: Iterable[str] = ("sha256",)) -> Dict[str, str]:
    """Hex digests of a file, memoized per ``(absolute path, mtime_ns, size)``.

    Args:
        path: file to hash.
        algorithms: ``hashlib`` algorithm names, e.g. ``("sha256", "sha512")``.

    Returns:
        ``{algorithm: lowercase hex digest}``.

    Raises:
        OSError: the file cannot be read.
    """
    spath = os.fspath(path)
    key = _stat_key(spath)
    wanted = [a.lower() for a in algorithms]
    known = dict(_memo.get(key, {}))
    if any(a not in known for a in wanted):
        entry = _load_persistent_memo().get(key[0])
        if isinstance(entry, dict) and entry.get("mtime_ns") == key[1] and entry.get("size") == key[2]:
            known.update({a: v for a, v in entry.items() if a in hashlib.algorithms_available
                          and isinstance(v, str)})
            _remember(key, known, persist=False)
    missing = [a for a in wanted if a not in known]
    if missing:
        known.update(_hash_file(spath, missing))
        _remember(key, known)
    return {a: known[a] for a in wanted}


def _expected(sha256: Optional[str], digests: Optional[Mapping[str, str]]) -> Dict[str, str]:
    want = {k.lower(): v.lower() for k, v in (digests or {}).items() if v}
    if sha256:
        want["sha256"] = sha256.lower()
    return want


def verify_file(path: PathLike, sha256: Optional[str] = None, expected_size: Optional[int] = None,
                digests: Optional[Mapping[str, str]] = None) -> None:
    """Check a file's size and digests.

    Args:
        path: the file.
        sha256: expected sha256 hex digest, or None.
        expected_size: expected size in bytes, or None.
        digests: other expected digests ``{hashlib algorithm: hex}``.

    Raises:
        AssetError: the file is missing or unreadable, or its size or a digest differs; the message
            names the file and gives the expected and the actual value.
    """
    spath = os.fspath(path)
    try:
        size = os.stat(spath).st_size
        if expected_size is not None and size != expected_size:
            raise AssetError(f"size is {size} bytes, expected {expected_size}", spath)
        want = _expected(sha256, digests)
        got = file_digests(spath, want) if want else {}
    except OSError as e:
        raise AssetError(f"cannot read file ({e.strerror or e})", spath) from None
    for algo, exp in want.items():
        if got[algo] != exp:
            raise AssetError(f"{algo} mismatch: expected {exp}, got {got[algo]}", spath)


# ----------------------------------------------------------------------------------------------
# download

def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _version() -> str:
    try:
        from . import __version__
        return __version__
    except ImportError:  # pragma: no cover
        return "0"


def download(url: str, dest: PathLike, sha256: Optional[str] = None, expected_size: Optional[int] = None,
             progress: bool = True, digests: Optional[Mapping[str, str]] = None) -> Path:
    """Download ``url`` to ``dest``, atomically and verified.

    The body is streamed (1 MiB chunks, :data:`DOWNLOAD_TIMEOUT_S` s socket timeout) into a temp file
    ``.<name>.*.part`` in ``dest``'s folder while its digests are computed; only when size and digests
    match is it renamed onto ``dest`` (``os.replace``). On any failure, interruption included, the temp
    file is deleted and ``dest`` is left as it was.

    Args:
        url: ``http(s)://`` (redirects followed) or ``file://`` URL.
        dest: destination file; its folder is created.
        sha256: expected sha256 hex digest. When None a one-line warning on stderr says that no sha256
            is pinned and what was checked instead.
        expected_size: expected size in bytes, or None; checked against Content-Length before the body
            and against the bytes received.
        progress: show a tqdm progress bar (bytes, on stderr).
        digests: further expected digests ``{hashlib algorithm: hex}`` (e.g. ``{"sha512": ...}``).

    Returns:
        ``Path(dest)``.

    Raises:
        AssetError: network or HTTP error (one line naming the URL), size mismatch, or digest mismatch
            (naming the URL, the expected and the actual digest).
    """
    from tqdm import tqdm

    dest_path = Path(dest)
    want = _expected(sha256, digests)
    hashers = {a: hashlib.new(a) for a in sorted(set(want) | {"sha256"})}
    try:
        dest_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = str(sibling_temp(dest_path, ".part"))
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as e:
        raise AssetError(f"cannot write to the download folder ({e.strerror or e})",
                         dest_path.parent) from None
    try:
        received = 0
        total = None
        with os.fdopen(fd, "wb") as out:
            request = urllib.request.Request(url, headers={"User-Agent": "yolo4/" + _version()})
            try:
                response = urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S)
            except urllib.error.HTTPError as e:
                raise _DownloadFailed(f"download failed: HTTP {e.code} {e.reason}", url) from None
            except urllib.error.URLError as e:
                raise _DownloadFailed(f"download failed: {e.reason}", url) from None
            except (OSError, ValueError, http.client.HTTPException) as e:
                raise _DownloadFailed(f"download failed: {e}", url) from None
            with response:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.strip().isdigit() else None
                if expected_size is not None and total is not None and total != expected_size:
                    raise AssetError(f"server announces {total} bytes, expected {expected_size}", url)
                with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=dest_path.name,
                          disable=not progress, file=sys.stderr, leave=False) as bar:
                    while True:
                        try:
                            chunk = response.read(_CHUNK)
                        except (OSError, http.client.HTTPException) as e:
                            reason = str(e) or type(e).__name__
                            raise _DownloadFailed(f"download interrupted after {received} bytes: {reason}",
                                                  url) from None
                        if not chunk:
                            break
                        received += len(chunk)
                        if expected_size is not None and received > expected_size:
                            raise AssetError(f"received more than the expected {expected_size} bytes", url)
                        out.write(chunk)
                        for h in hashers.values():
                            h.update(chunk)
                        bar.update(len(chunk))
        if total is not None and received != total:
            raise _DownloadFailed(f"download truncated: {received} of {total} bytes", url)
        if expected_size is not None and received != expected_size:
            raise AssetError(f"downloaded {received} bytes, expected {expected_size}", url)
        got = {a: h.hexdigest() for a, h in hashers.items()}
        for algo in sorted(want):
            if got[algo] != want[algo]:
                raise AssetError(f"{algo} mismatch: expected {want[algo]}, got {got[algo]} "
                                 "(download discarded)", url)
        if not sha256:
            checked = [f"size {received} bytes"] if expected_size is not None else []
            checked += [f"{a} {want[a][:12]}..." for a in sorted(want)]
            what = ", ".join(checked) if checked else "nothing"
            print(f"yolo4: warning: no sha256 pinned for {url}; checked {what}; "
                  f"its sha256 is {got['sha256']}", file=sys.stderr)
        os.replace(tmp, str(dest_path))
    except BaseException:
        _unlink_quietly(tmp)
        raise
    try:
        _remember(_stat_key(str(dest_path)), got)
    except OSError:
        pass
    return dest_path


# ----------------------------------------------------------------------------------------------
# resolution

def resolve_asset(asset: Asset, progress: bool = True) -> Path:
    """Local path of ``asset``: mirror, else cache, else downloaded into the cache.

    Args:
        asset: a registry entry (:data:`CFG_ASSETS`, :data:`WEIGHTS_ASSETS`, :data:`NAMES_ASSETS`).
        progress: progress bar while downloading.

    Returns:
        path of a verified file (the mirror's own file when the mirror has it).

    Raises:
        AssetError: ``$YOLO4_ASSET_MIRROR`` is set but not a directory; the mirror's file fails its
            size/digest check; the asset is in neither mirror nor cache and has no public URL or
            ``$YOLO4_OFFLINE`` is set; the download fails or does not verify.
    """
    mirror = mirror_dir()
    if mirror is not None:
        if not mirror.is_dir():
            raise AssetError("YOLO4_ASSET_MIRROR is set but is not a directory", mirror)
        candidate = mirror.joinpath(*asset.relpath.split("/"))
        if candidate.is_file():
            verify_file(candidate, asset.sha256, asset.size, asset.digests)
            return candidate
    cached = cache_dir().joinpath(*asset.relpath.split("/"))
    if cached.is_file():
        try:
            verify_file(cached, asset.sha256, asset.size, asset.digests)
            return cached
        except AssetError as e:
            print(f"yolo4: warning: cached {asset.filename} failed verification ({e}); "
                  "downloading it again", file=sys.stderr)
    if asset.url is None:
        raise AssetError(f"no public download exists for {asset.filename}; put the file at "
                         f"$YOLO4_ASSET_MIRROR/{asset.relpath} or pass its path")
    if offline():
        raise AssetError(f"{asset.filename} is in neither the mirror nor the cache and YOLO4_OFFLINE is set; "
                         f"put it at $YOLO4_ASSET_MIRROR/{asset.relpath} or pass its path")
    try:
        return download(asset.url, cached, asset.sha256, asset.size, progress, asset.digests)
    except _DownloadFailed as e:
        raise AssetError(f"{e.message} (offline? put the file at $YOLO4_ASSET_MIRROR/{asset.relpath} "
                         "or pass its path)", e.path) from None


def _resolve(kind: str, name_or_path: PathLike, progress: bool) -> Path:
    registry = _REGISTRIES[kind]
    text = os.fspath(name_or_path)
    if text and os.path.isfile(text):
        return Path(text)
    key = text.strip().lower()
    if key in registry:
        return resolve_asset(registry[key], progress)
    if text and os.path.isdir(text):
        raise AssetError(f"expected a {kind} file, got a directory", text)
    known = ", ".join(registry)
    stem, suffix = os.path.splitext(os.path.basename(text))
    if "/" in text or os.sep in text or suffix:
        hint = ""
        if stem.lower() in registry and not os.path.dirname(text):
            hint = f" (for the official file, pass the name {stem.lower()!r})"
        raise AssetError(f"{kind} file not found{hint}", text)
    what = "model" if kind != "names" else "class-names set"
    raise AssetError(f"unknown {what} {text!r}: not a file and not a known name (known: {known})")


def resolve_cfg(name_or_path: PathLike, progress: bool = True) -> Path:
    """Path of a darknet ``.cfg``.

    Args:
        name_or_path: an existing file (returned as is) or a name of :data:`KNOWN_MODELS`
            (case-insensitive), resolved through mirror, cache, download.
        progress: progress bar while downloading.

    Raises:
        AssetError: neither an existing file nor a known name (the message lists the known names), or
            the named asset cannot be found/downloaded/verified.
    """
    return _resolve("cfg", name_or_path, progress)


def resolve_weights(name_or_path: PathLike, progress: bool = True) -> Path:
    """Path of darknet ``.weights``; a known model name gives its official COCO-pretrained weights.

    Args:
        name_or_path: an existing file (returned as is) or a name of :data:`KNOWN_MODELS`.
        progress: progress bar while downloading.

    Raises:
        AssetError: as :func:`resolve_cfg`; also for ``yolov4-tiny-3l``, which has no published weights,
            unless the mirror or the cache holds them.
    """
    return _resolve("weights", name_or_path, progress)


def resolve_names(name_or_path: PathLike = "coco", progress: bool = True) -> Path:
    """Path of a class-names file (one name per line).

    Args:
        name_or_path: an existing file (returned as is) or a name of :data:`KNOWN_NAMES`
            (``"coco"``: darknet's 80 COCO names in class-id order; ``"voc"``).
        progress: progress bar while downloading.

    Raises:
        AssetError: as :func:`resolve_cfg`.
    """
    return _resolve("names", name_or_path, progress)
