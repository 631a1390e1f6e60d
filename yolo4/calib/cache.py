"""TensorRT calibration cache with a yolo4 header: reused only for the model, images, preprocessing,
method, input shape and TensorRT version it was made with. Python 3.8, torch-free.

File format (one file, written atomically)::

    #yolo4-calib-v1 {"calibration_set": "<sha256>", "input_shape": "8x3x416x416", "method": "entropy",
                     "model": "<onnx sha256>", "tensorrt": "10.3.0"}\\n        <- one line, JSON, sorted keys
    <TensorRT's calibration cache bytes, exactly as write_calibration_cache received them>

The header is the first line; everything after its ``\\n`` is TensorRT's own cache (a text table
``TRT-<version>-EntropyCalibration2`` / ``<tensor>: <hex scale>``), so ``tail -n +2 file`` gives the
file ``trtexec --calib=`` reads. One file rather than a sidecar: the header and the cache it describes
are replaced together by one rename, never half.

A cache is reused only when its header equals the one asked for, key by key
(:func:`header_for`: ONNX file sha256, :meth:`~yolo4.calib.images.CalibrationSet.digest` of the
images + preprocessing, method, calibration input shape, TensorRT version). Otherwise
:meth:`CalibrationCache.load` returns None with one line naming what differs, and calibration runs
again. A missing, unreadable or corrupt cache (no yolo4 header, e.g. a raw trtexec cache; bad JSON; no
data after the header) is also None with a line: a cache never stops a build.
"""

import json
import os
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Union

from ..errors import Yolo4Error
from ..fileio import atomic_write_bytes

__all__ = ["CalibrationCache", "header_for", "MAGIC", "HEADER_KEYS"]

PathLike = Union[str, "os.PathLike[str]"]
Log = Optional[Callable[[str], Any]]

#: First bytes of a yolo4 calibration cache; the JSON header follows on the same line.
MAGIC = b"#yolo4-calib-v1 "
#: Keys :func:`header_for` writes.
HEADER_KEYS = ("model", "calibration_set", "method", "input_shape", "tensorrt")
_MAX_HEADER = 64 * 1024


def header_for(onnx_sha256: str, calib_set: Any, method: str, trt_version: str,
               input_shape: Optional[Union[str, Sequence[int]]] = None) -> Dict[str, str]:
    """The header a calibration cache must carry to be reused.

    Args:
        onnx_sha256: sha256 hex of the ONNX file being built.
        calib_set: the :class:`~yolo4.calib.images.CalibrationSet` (its :meth:`digest` is taken: reads
            the images' bytes), or that digest as a string.
        method: calibration method (``"entropy"``, ``"minmax"``).
        trt_version: ``tensorrt.__version__`` (caches are not portable across TensorRT versions).
        input_shape: the calibration input shape, e.g. ``(8, 3, 416, 416)`` or ``"8x3x416x416"``;
            None = the set's :attr:`~yolo4.calib.images.CalibrationSet.shape`.

    Returns:
        ``{key: str}`` with the keys :data:`HEADER_KEYS`.
    """
    digest = calib_set if isinstance(calib_set, str) else calib_set.digest()
    if input_shape is None:
        if isinstance(calib_set, str):
            raise Yolo4Error("header_for: input_shape is required when calib_set is a digest string")
        input_shape = calib_set.shape
    shape = input_shape if isinstance(input_shape, str) else "x".join(str(int(v)) for v in input_shape)
    return {"model": str(onnx_sha256), "calibration_set": str(digest), "method": str(method),
            "input_shape": shape, "tensorrt": str(trt_version)}


def _short(value: Any) -> str:
    text = str(value)
    if len(text) == 64 and all(c in "0123456789abcdef" for c in text):
        return text[:12]  # a sha256
    return text if len(text) <= 40 else text[:37] + "..."


class CalibrationCache:
    """A calibration cache file guarded by a header (module docstring: format and rules).

    Args:
        path: the cache file (created with its folder on :meth:`save`).
        header: ``{key: str}`` that a reusable cache must carry (:func:`header_for`).
        log: receives one-line messages (why a cache is not reused); None = silent.
    """

    def __init__(self, path: PathLike, header: Mapping[str, str], log: Log = print) -> None:
        self.path = os.fspath(path)
        self.header: Dict[str, str] = {str(k): str(v) for k, v in header.items()}
        self.log = log

    def _say(self, message: str) -> None:
        if self.log is not None:
            self.log(message)

    def _corrupt(self, why: str) -> None:
        self._say(f"calibration cache {self.path} {why}: recalibrating")

    def load(self) -> Optional[bytes]:
        """TensorRT's cache bytes when the file exists and its header equals :attr:`header`; else None
        (with a line saying why, unless the file is simply absent). Never raises for a bad file."""
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        except OSError as e:
            self._corrupt(f"is unreadable ({e.strerror or e})")
            return None
        if not data.startswith(MAGIC):
            self._corrupt("has no yolo4 header (not written by yolo4, or corrupt)")
            return None
        end = data.find(b"\n", 0, _MAX_HEADER)
        if end < 0:
            self._corrupt("is corrupt (header line not terminated)")
            return None
        try:
            stored = json.loads(data[len(MAGIC):end].decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            self._corrupt("is corrupt (header is not valid JSON)")
            return None
        if not isinstance(stored, dict) or not all(isinstance(v, str) for v in stored.values()):
            self._corrupt("is corrupt (header is not a JSON object of strings)")
            return None
        payload = data[end + 1:]
        if not payload:
            self._corrupt("is corrupt (no calibration data after the header)")
            return None
        differs = sorted(k for k in set(stored) | set(self.header) if stored.get(k) != self.header.get(k))
        if differs:
            detail = ", ".join(f"{k}: {_short(stored.get(k, '-'))} -> {_short(self.header.get(k, '-'))}"
                               for k in differs)
            self._say(f"calibration cache {self.path} was made for another model/preprocessing/method "
                      f"(differs: {detail}): recalibrating")
            return None
        return payload

    def save(self, data: Union[bytes, bytearray, memoryview]) -> None:
        """Write the header line and ``data`` (TensorRT's cache bytes) atomically: a reader sees the
        old file or the new one, never a half-written one.

        Raises:
            Yolo4Error: empty ``data``, or the file cannot be written (one line naming it).
        """
        payload = bytes(data)
        if not payload:
            raise Yolo4Error("refusing to save an empty calibration cache", self.path)
        line = MAGIC + json.dumps(self.header, sort_keys=True, ensure_ascii=True).encode("ascii") + b"\n"
        try:
            atomic_write_bytes(self.path, line + payload)
        except OSError as e:
            raise Yolo4Error(f"cannot write the calibration cache ({e.strerror or e})", self.path) from None

    def __repr__(self) -> str:
        return f"CalibrationCache({self.path!r})"
