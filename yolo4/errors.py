"""User-facing errors.

Every error a user can cause (a missing file, a bad cfg line, a truncated .weights file, a corrupt
image, a bad label) is raised as a :class:`Yolo4Error` subclass whose message is one line and names
the file (and line). The CLI prints ``error: <message>`` and exits with status 2, no traceback.
"""

import functools
import inspect
import os
import warnings
from typing import Any, Callable, Optional, TypeVar, Union, cast


class Yolo4Error(Exception):
    """A user error with a one-line message naming the offending file and, where known, line.

    Args:
        message: what is wrong, one line.
        path: the file concerned (str or PathLike), or None.
        line: 1-based line number in ``path``, or None.
    """

    def __init__(self, message: str, path: Optional[Union[str, "os.PathLike[str]"]] = None,
                 line: Optional[int] = None) -> None:
        self.message = " ".join(str(message).split())  # one line
        self.path = os.fspath(path) if path is not None else None
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.path is None:
            return self.message
        where = self.path if self.line is None else "%s:%d" % (self.path, self.line)
        return "%s: %s" % (where, self.message)


class CfgError(Yolo4Error):
    """A darknet .cfg file that cannot be parsed or uses an unsupported section/option."""


class WeightsError(Yolo4Error):
    """A darknet .weights file or checkpoint that does not match its cfg (size, header)."""


class DataError(Yolo4Error):
    """A dataset spec, label file or class-names file that cannot be read."""


class ImageReadError(Yolo4Error):
    """An image (or video) file that is missing or cannot be decoded."""


class AssetError(Yolo4Error):
    """A named asset that cannot be found in the cache/mirror, downloaded, or fails its sha256."""


class ModelFileError(Yolo4Error):
    """An ONNX model (or engine) file that is missing, invalid or lacks yolo4 metadata."""


def reason(e: BaseException) -> str:
    """Short human reason of an IO/decoding exception, for one-line messages."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    if isinstance(e, UnicodeDecodeError):
        return "not UTF-8 text"
    return str(e) or type(e).__name__


class Yolo4Warning(UserWarning):
    """A one-line warning about user input that does not stop the work (the CLI prints
    ``warning: <message>``)."""


class CfgWarning(Yolo4Warning):
    """A darknet cfg line that is accepted but suspicious: an unknown or repeated key (darknet prints
    "Unused field"). The message names the file and line."""


class Yolo4DeprecationWarning(DeprecationWarning):
    """A name of the Python API that still works but goes in the next release (a renamed keyword);
    the message names the new one."""


_F = TypeVar("_F", bound=Callable[..., Any])


def renamed_keywords(**old_to_new: str) -> Callable[[_F], _F]:
    """Keep a renamed keyword working for one release: ``@renamed_keywords(iou="iou_threshold")``.

    A call with the old keyword runs as with the new one and emits one
    :class:`Yolo4DeprecationWarning` naming the new keyword (at the caller's line). A call that passes
    both (the new one by keyword or by position) raises TypeError naming both.
    """

    def decorate(func: _F) -> _F:
        params = list(inspect.signature(func).parameters.values())
        position = {p.name: i for i, p in enumerate(params)
                    if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)}
        name = getattr(func, "__qualname__", getattr(func, "__name__", "function"))

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in old_to_new.items():
                if old not in kwargs:
                    continue
                if new in kwargs or position.get(new, len(args)) < len(args):
                    raise TypeError("%s() got both %s and its old name %s=; pass %s= only"
                                    % (name, new, old, new))
                warnings.warn("%s(): the keyword %s= is renamed %s=; %s= goes in the next release"
                              % (name, old, new, old), Yolo4DeprecationWarning, stacklevel=2)
                kwargs[new] = kwargs.pop(old)
            return func(*args, **kwargs)

        return cast(_F, wrapper)

    return decorate
