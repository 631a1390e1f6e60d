"""The ONNX export cache: export a torch model once, reuse the verified file (``yolo4 infer``/``eval``
/``benchmark`` with a cfg/weights or checkpoint on ``--backend onnxruntime``).

Location: ``yolo4.assets.cache_dir() / "onnx"`` (``$YOLO4_CACHE_DIR``, else ``$XDG_CACHE_HOME/yolo4``,
else ``~/.cache/yolo4``), one file per key: ``<sha256 of the key>.onnx``.

Key: everything that goes into the file, so a cached file is byte-for-byte what a fresh export would
write (:func:`cache_key`):

- the metadata an export writes (:func:`yolo4.convert.onnx_export.export_info`): class names *as
  resolved* (given names, the module's, else COCO's for 80 classes / ``class0..``), input size,
  letter_box, nms_kind, beta_nms, anchors, strides, cfg sha256, yolo4 version;
- the full cfg text and the weights' identity (:func:`state_digest` of the module, or a caller's
  digest of its weights file);
- batch, opset, fp16, simplify;
- the versions of the tools that write the graph: torch (the tracer), onnx (checker, serializer),
  onnxsim when simplifying, onnxconverter-common when converting to FP16; and :data:`CACHE_SCHEMA`.

Bound: after each new file, the least recently used files (by mtime; a hit touches its file) are
deleted until at most :data:`MAX_FILES` (16) files and :data:`MAX_BYTES` (2 GiB: ~8 yolov4 FP32
exports of 245 MB, ~80 yolov4-tiny ones) remain; the newest file is always kept. Only files named
``<64 hex>.onnx`` are ever deleted, and leftover temp files of a killed export after a day.

An unwritable cache (read-only folder, a file in the way, a full disk) does not stop the ONNX
Runtime backend: the export goes to a temporary folder removed at interpreter exit, with one warning
through ``log``.
"""

import atexit
import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Union

import torch

from .. import __version__
from ..assets import cache_dir
from ..errors import ModelFileError, Yolo4Error, Yolo4Warning
from ..fileio import check_writable_dir
from .onnx_export import ImgSize, _check_opset, export_info, export_onnx

#: bump to invalidate every cached export (a change of the exporter that keeps the yolo4 version)
CACHE_SCHEMA = 2
#: most files kept in ``<cache>/onnx``
MAX_FILES = 16
#: most bytes kept in ``<cache>/onnx`` (2 GiB)
MAX_BYTES = 2 * 1024 ** 3
#: leftover temp files (a killed export) older than this many seconds are removed
STALE_TEMP_S = 24 * 3600

_ENTRY = re.compile(r"^[0-9a-f]{64}\.onnx$")
_fallback_dir: Optional[Path] = None


def state_digest(module: torch.nn.Module) -> str:
    """sha256 hex of the module's state_dict (names, dtypes, shapes, values): identifies its weights."""
    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        t = v.detach().to("cpu").contiguous()
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _version(dist: str) -> Optional[str]:
    try:
        from importlib.metadata import version
    except ImportError:  # pragma: no cover - Python < 3.8
        return None
    try:
        return version(dist)
    except Exception:  # noqa: BLE001 - not installed / broken metadata: the export says so itself
        return None


def cache_key(module: torch.nn.Module, img_size: Optional[ImgSize] = None, batch: Optional[int] = None,
              fp16: bool = False, simplify: bool = True, opset: Optional[int] = None,
              names: Optional[Sequence[str]] = None, weights_digest: Optional[str] = None) -> Dict[str, Any]:
    """Everything that determines the bytes :func:`export_cached` would write, as a JSON-able dict.

    Args: as :func:`export_cached`.

    Raises:
        Yolo4Error: bad img_size / opset / batch, or names of the wrong length.
    """
    info = export_info(module, img_size, names)
    if batch is not None and int(batch) < 1:
        raise Yolo4Error(f"batch must be >= 1 (or None for a dynamic batch), got {batch!r}")
    import onnx

    return {
        "schema": CACHE_SCHEMA,
        "metadata": info.to_metadata(),
        "cfg_text": getattr(module, "cfg_text", ""),
        "weights": weights_digest if weights_digest is not None else state_digest(module),
        "batch": None if batch is None else int(batch),
        "opset": _check_opset(opset),
        "fp16": bool(fp16),
        "simplify": bool(simplify),
        "yolo4": __version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxsim": _version("onnxsim") if simplify else None,
        "onnxconverter_common": _version("onnxconverter-common") if fp16 else None,
    }


def _digest(key: Dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()


def _hit(path: Path) -> bool:
    try:
        return path.is_file() and path.stat().st_size > 0
    except OSError:
        return False


def _touch(path: Path) -> None:
    """Mark ``path`` as just used (LRU order = mtime); a read-only cache is left as it is."""
    with contextlib.suppress(OSError):
        os.utime(str(path))


def evict(folder: Union[str, "os.PathLike[str]"], max_files: int = MAX_FILES, max_bytes: int = MAX_BYTES,
          keep: Optional[Path] = None) -> int:
    """Delete the least recently used cache entries of ``folder`` beyond the bound.

    Entries are the ``<64 hex>.onnx`` files, most recent mtime first; kept while at most ``max_files``
    files and ``max_bytes`` bytes are kept (``keep``, the file just written, always). Hidden temp files
    (``.*.tmp``) older than :data:`STALE_TEMP_S` are removed too. Errors (a file already removed by
    another process, a read-only folder) are ignored.

    Returns:
        number of entries deleted.
    """
    folder = Path(folder)
    entries = []
    now = time.time()
    try:
        children = list(os.scandir(str(folder)))
    except OSError:
        return 0
    for e in children:
        try:
            if not e.is_file(follow_symlinks=False):
                continue
            st = e.stat(follow_symlinks=False)
        except OSError:
            continue
        if _ENTRY.match(e.name):
            entries.append((st.st_mtime, e.name, st.st_size))
        elif e.name.startswith(".") and e.name.endswith(".tmp") and now - st.st_mtime > STALE_TEMP_S:
            with contextlib.suppress(OSError):
                os.unlink(e.path)
    entries.sort(reverse=True)
    if keep is not None:  # the file just written first, whatever the clock says
        entries.sort(key=lambda t: t[1] != keep.name)
    n_kept, kept_bytes, deleted = 0, 0, 0
    for _, name, size in entries:
        first = n_kept == 0
        if first or (n_kept < max_files and kept_bytes + size <= max_bytes):
            n_kept += 1
            kept_bytes += size
            continue
        try:
            os.unlink(str(folder / name))
            deleted += 1
        except OSError:
            pass
    return deleted


def _temp_folder() -> Path:
    """This process's fallback folder for exports (created once, removed at interpreter exit)."""
    global _fallback_dir
    if _fallback_dir is None or not _fallback_dir.is_dir():
        _fallback_dir = Path(tempfile.mkdtemp(prefix="yolo4-onnx-"))
        atexit.register(shutil.rmtree, str(_fallback_dir), True)
    return _fallback_dir


def _warn(log: Optional[Callable[[str], None]], msg: str) -> None:
    if log is not None:
        log("warning: " + msg)
    else:
        warnings.warn(msg, Yolo4Warning, stacklevel=3)


def export_cached(module: torch.nn.Module, *, img_size: Optional[ImgSize] = None, batch: Optional[int] = None,
                  fp16: bool = False, simplify: bool = True, opset: Optional[int] = None,
                  names: Optional[Sequence[str]] = None, weights_digest: Optional[str] = None,
                  cache: Optional[Union[str, "os.PathLike[str]"]] = None, max_files: int = MAX_FILES,
                  max_bytes: int = MAX_BYTES, log: Optional[Callable[[str], None]] = None) -> Path:
    """Export once into the cache and reuse: ``<cache>/onnx/<sha256 of the key>.onnx``.

    The key (:func:`cache_key`) holds everything that goes into the file — the resolved metadata
    (class names as :func:`~yolo4.convert.onnx_export.export_info` resolves them, input size, resize
    mode, NMS kind, anchors ...), the cfg text, the weights, batch, opset, fp16/simplify and the
    exporting tools' versions — so a hit is what a fresh export would write. A hit returns the path
    without touching torch.onnx (and marks it recently used); a miss runs
    :func:`~yolo4.convert.onnx_export.export_onnx` (verified against PyTorch), written atomically
    (concurrent processes at worst export twice), then evicts beyond ``max_files`` / ``max_bytes``.

    Args:
        module, img_size, batch, fp16, simplify, opset, names: as
            :func:`~yolo4.convert.onnx_export.export_onnx`.
        weights_digest: a string identifying the module's weights (e.g. the sha256 of its .weights
            file); None = :func:`state_digest` of the module (hashes every parameter: ~0.5 s for yolov4).
        cache: cache root; None = ``yolo4.assets.cache_dir()``.
        max_files, max_bytes: the bound kept in ``<cache>/onnx`` (see the module docstring).
        log: one-line progress messages (as :func:`export_onnx`; silent on a hit) and the one
            ``"warning: ..."`` when the cache is unwritable; None = a :class:`Yolo4Warning` instead.

    Returns:
        Path of the ONNX file: in the cache, or, when the cache cannot be written, in a temporary
        folder removed when the interpreter exits.

    Raises:
        Yolo4Error: bad arguments (as :func:`export_onnx`).
        ExportVerificationError: the export does not match PyTorch (nothing is cached).
    """
    key = cache_key(module, img_size, batch, fp16, simplify, opset, names, weights_digest)
    name = _digest(key) + ".onnx"
    folder = (Path(cache) if cache is not None else cache_dir()) / "onnx"
    path = folder / name
    if _hit(path):
        _touch(path)
        return path
    if _fallback_dir is not None and _hit(_fallback_dir / name):  # exported earlier in this process
        return _fallback_dir / name
    hw = tuple(json.loads(key["metadata"]["input_hw"]))
    kwargs = dict(img_size=hw, batch=batch, fp16=fp16, simplify=simplify, opset=key["opset"], names=names,
                  verify=True, log=log)
    try:
        check_writable_dir(folder, "ONNX export cache")
        problem: Optional[Yolo4Error] = None
    except Yolo4Error as e:  # read-only folder, a file in the way
        problem = e
    if problem is None:
        try:
            export_onnx(module, path, **kwargs)
        except ModelFileError as e:
            if not isinstance(e.__cause__, OSError):
                raise  # not a write failure
            problem = e  # e.g. the disk filled up while writing
        else:
            evict(folder, max_files, max_bytes, keep=path)
            return path
    path = _temp_folder() / name
    _warn(log, f"{problem}; exporting to a temporary file instead ({path}, removed at exit)")
    export_onnx(module, path, **kwargs)
    return path
