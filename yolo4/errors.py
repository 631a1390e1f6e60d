"""User-facing errors.

Every error a user can cause (a missing file, a bad cfg line, a truncated .weights file, a corrupt
image, a bad label) is raised as a :class:`Yolo4Error` subclass whose message is one line and names
the file (and line). The CLI prints ``error: <message>`` and exits with status 2, no traceback.
"""

import os
from typing import Optional, Union


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
