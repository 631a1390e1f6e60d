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
from typing import Any, Callable, Iterator, Tuple, Union

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


def check_writable_dir(path: PathLike, what: str = "output folder") -> Path:
    """Fail early when ``path`` cannot become a writable folder; create it (and its parents).

    Called before long work starts (eval, training, inference), so a bad ``--output-dir`` costs
    a second, not the run.

    Raises:
        Yolo4Error: a file is in the way (of the folder or one of its parents), or the folder is not
            writable (one line naming ``path``).
    """
    from .errors import Yolo4Error

    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise Yolo4Error(f"cannot create the {what}: a file is in the way", p) from None
    except OSError as e:
        raise Yolo4Error(f"cannot create the {what} ({e.strerror or e})", p) from None
    if not p.is_dir():
        raise Yolo4Error(f"cannot create the {what}: a file is in the way", p)
    probe = sibling_temp(p / "probe", ".writable")
    try:
        with open(str(probe), "xb"):
            pass
    except OSError as e:
        raise Yolo4Error(f"the {what} is not writable ({e.strerror or e})", p) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(str(probe))
    return p


def check_writable_file(path: PathLike, what: str = "output file") -> Path:
    """Fail early when ``path`` cannot be written as a file (its folder is created).

    Raises:
        Yolo4Error: ``path`` is a folder, its folder cannot be created or written (one line naming
            ``path``).
    """
    from .errors import Yolo4Error

    p = Path(path)
    if p.is_dir():
        raise Yolo4Error(f"the {what} is a folder, not a file", p)
    check_writable_dir(p.parent if str(p.parent) else Path("."), "folder of the %s" % what)
    if p.exists() and not os.access(str(p), os.W_OK):
        # an atomic rename replaces a read-only file, but a user who made it read-only meant it
        raise Yolo4Error(f"the {what} exists and is read-only", p)
    return p


def increment_dir(path: PathLike, exist_ok: bool = False) -> Path:
    """The run folder to use: ``path`` itself when it does not exist yet (or ``exist_ok``), else the
    first free ``path2``, ``path3``, ... (ultralytics' numbered run folders). Nothing is created."""
    p = Path(path)
    if exist_ok or not p.exists():
        return p
    n = 2
    while True:
        candidate = p.with_name("%s%d" % (p.name, n))
        if not candidate.exists():
            return candidate
        n += 1


def latest_run_dir(path: PathLike, marker: str = "last.pt") -> Path:
    """The most recently modified of ``path``, ``path2``, ``path3``, ... that holds ``marker``; ``path``
    when none does (for ``--resume`` without a folder)."""
    p = Path(path)
    found = []
    for c in [p] + sorted(p.parent.glob(p.name + "[0-9]*")) if p.parent.is_dir() else [p]:
        suffix = c.name[len(p.name):]
        if (suffix == "" or suffix.isdigit()) and (c / marker).is_file():
            found.append(c)
    if not found:
        return p
    return max(found, key=lambda c: (c / marker).stat().st_mtime)


def unique_name(name: str, used: set) -> str:
    """``name``, or ``stem_2.ext``, ``stem_3.ext``, ... when ``name`` is already in ``used`` (which is
    updated): outputs of two inputs with the same file name never overwrite each other."""
    if name not in used:
        used.add(name)
        return name
    stem, ext = os.path.splitext(name)
    n = 2
    while "%s_%d%s" % (stem, n, ext) in used:
        n += 1
    out = "%s_%d%s" % (stem, n, ext)
    used.add(out)
    return out


def compose_yaml(path: PathLike, what: str, error: Callable[..., Exception]) -> Tuple[str, Any]:
    """Read a YAML file (UTF-8, BOM allowed) and compose it into PyYAML nodes, which keep line numbers.

    Args:
        path: the file.
        what: its name in messages (``"dataset YAML"``).
        error: the :class:`~yolo4.errors.Yolo4Error` subclass to raise, called as
            ``error(message, path, line)``.

    Returns:
        ``(text, node)``: the file's text and its root node (None for an empty document).

    Raises:
        ``error``: unreadable file (the OS reason), invalid YAML (with its line), nesting too deep.
    """
    import yaml

    from .errors import reason

    spath = os.fspath(path)
    try:
        with open(spath, encoding="utf-8-sig") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"cannot read {what} ({reason(e)})", spath, None) from None
    try:
        return text, yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise error(f"invalid YAML: {getattr(e, 'problem', None) or e}", spath,
                    mark.line + 1 if mark is not None else None) from None
    except RecursionError:
        raise error("invalid YAML: nested too deeply", spath, None) from None
