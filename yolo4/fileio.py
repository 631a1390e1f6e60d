"""Atomic file writes shared by every writer of finished work (weights, checkpoints, ONNX, JSON,
annotated images, downloads): write a temp file beside the target, then ``os.replace`` it onto the
target, so an interrupted or failed write never leaves a half-written file or clobbers the previous
one. Temp files get the ordinary permissions (umask), unlike ``tempfile.mkstemp``'s 0600.
Python 3.8, torch-free.
"""

import contextlib
import os
import uuid
from pathlib import Path
from typing import Iterator, Union

PathLike = Union[str, "os.PathLike[str]"]


def sibling_temp(path: PathLike, suffix: str = ".tmp") -> Path:
    """A fresh, not yet existing temp path in ``path``'s folder (created if missing), e.g.
    ``.best.pt.3f2a...tmp``; hidden so globs over the folder do not pick it up."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.parent / (".%s.%s%s" % (path.name, uuid.uuid4().hex[:12], suffix))


@contextlib.contextmanager
def atomic_path(path: PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Context manager yielding a temp path to write; on success it is moved onto ``path``.

    On any exception (KeyboardInterrupt included) the temp file is removed, ``path`` is left as it
    was, and the exception propagates. Example: ``with atomic_path(p) as tmp: torch.save(obj, tmp)``.
    """
    tmp = sibling_temp(path, suffix)
    try:
        yield tmp
        os.replace(str(tmp), str(path))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(str(tmp))
        raise


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (flushed and fsynced before the rename); returns ``path``."""
    with atomic_path(path) as tmp:
        with open(str(tmp), "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    return atomic_write_bytes(path, text.encode("utf-8"))
