"""Input sources for inference: image files, folders, glob patterns, video files, cameras, streams.

:func:`iter_sources` turns a list of source strings into a stream of frames; an unreadable image is
yielded as an :class:`~yolo4.errors.ImageReadError` item (not raised), so one corrupt file does not
stop a run over a folder. Images are decoded by :func:`yolo4.data.images.imread` (the project's one
image reader). Python 3.8, torch-free.
"""

import glob
import os
from typing import Iterable, Iterator, NamedTuple, Optional, Union

import cv2
import numpy as np

from ..data.images import IMAGE_SUFFIXES, VIDEO_SUFFIXES, imread
from ..errors import ImageReadError

__all__ = ["SourceItem", "iter_sources", "expand_sources"]

PathLike = Union[str, "os.PathLike[str]"]
_STREAM_PREFIXES = ("rtsp://", "rtmp://", "http://", "https://")


class SourceItem(NamedTuple):
    """One frame of a source (a tuple: ``path, frame_index, image = item``).

    Attributes:
        path: the image or video file (or camera index / stream URL as given).
        frame_index: 0-based frame number in a video, camera or stream; None for a still image.
        image: ``HxWx3 uint8`` BGR, or the :class:`ImageReadError` explaining why it is missing.
    """

    path: str
    frame_index: Optional[int]
    image: Union[np.ndarray, ImageReadError]


def _is_glob(s: str) -> bool:
    return any(ch in s for ch in "*?[")


def expand_sources(sources: Iterable[PathLike]) -> Iterator[Union[str, ImageReadError]]:
    """Expand folders and globs into files, in order; yield an ImageReadError for a source that
    matches nothing. Folders are listed (not recursively) in sorted order, keeping files with an image
    or video suffix; globs (``**`` recursive) are sorted and keep files only. Camera indices (``"0"``)
    and stream URLs pass through unchanged."""
    for src in sources:
        s = os.fspath(src)
        if os.path.isdir(s):
            for name in sorted(os.listdir(s)):
                p = os.path.join(s, name)
                if os.path.isfile(p) and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
                    yield p
        elif os.path.isfile(s):
            yield s
        elif s.isdigit() or s.lower().startswith(_STREAM_PREFIXES):
            yield s
        elif _is_glob(s):
            matches = [p for p in sorted(glob.glob(s, recursive=True)) if os.path.isfile(p)]
            if not matches:
                yield ImageReadError("no files match this pattern", s)
            yield from matches
        else:
            yield ImageReadError("no such file or directory", s)


def _iter_video(path: str, target: Union[str, int], vid_stride: int) -> Iterator[SourceItem]:
    cap = cv2.VideoCapture(target)
    try:
        if not cap.isOpened():
            yield SourceItem(path, None, ImageReadError("cannot open video", path))
            return
        index = 0
        read_any = False
        while True:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            read_any = True
            if index % vid_stride == 0:
                if frame.ndim == 2:
                    frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
                yield SourceItem(path, index, frame)
            index += 1
        if not read_any:
            yield SourceItem(path, None, ImageReadError("cannot decode any video frame", path))
    finally:
        cap.release()


def iter_sources(sources: Iterable[PathLike], vid_stride: int = 1) -> Iterator[SourceItem]:
    """Iterate over the frames of all sources, in the order given.

    Args:
        sources: strings or paths, each one of: an image file; a video file (suffix in
            ``yolo4.data.images.VIDEO_SUFFIXES``); a folder (its images and videos, sorted by
            name, not recursive); a glob pattern (sorted; ``**`` recursive); a camera index
            (``"0"``, read until the camera stops); an ``rtsp://`` / ``http(s)://`` stream URL.
        vid_stride: yield every ``vid_stride``-th frame of videos, cameras and streams (frame
            indices still count every frame).

    Yields:
        :class:`SourceItem` ``(path, frame_index, image)``: ``image`` is ``HxWx3 uint8`` BGR, or an
        :class:`ImageReadError` (missing file, undecodable image, unopenable video, a pattern or
        path that matches nothing) -- yielded, not raised.
    """
    if vid_stride < 1:
        raise ValueError("vid_stride must be >= 1")
    for item in expand_sources(sources):
        if isinstance(item, ImageReadError):
            yield SourceItem(item.path or "", None, item)
            continue
        ext = os.path.splitext(item)[1].lower()
        if item.isdigit() and not os.path.isfile(item):
            yield from _iter_video(item, int(item), vid_stride)
        elif ext in VIDEO_SUFFIXES or item.lower().startswith(_STREAM_PREFIXES):
            yield from _iter_video(item, item, vid_stride)
        else:
            try:
                yield SourceItem(item, None, imread(item))
            except ImageReadError as e:
                yield SourceItem(item, None, e)
