"""Input sources for inference: image files, folders, glob patterns, video files, cameras, streams,
GStreamer pipelines.

:func:`iter_sources` turns a list of source strings into a stream of frames; an unreadable image is
yielded as an :class:`~yolo4.errors.ImageReadError` item (not raised), so one corrupt file does not
stop a run over a folder. Images are decoded by :func:`yolo4.data.images.imread` (the project's one
image reader). :func:`source_kind` classifies a source (still image, video file, live), and
:func:`open_capture` opens a video file, camera index, stream URL or GStreamer pipeline string (one
containing ``!``, opened with ``cv2.CAP_GSTREAMER``). :mod:`yolo4.runtime.frame_reader` decodes them
on a background thread. Python 3.8, torch-free.
"""

import glob
import os
from typing import Any, Callable, Dict, Iterable, Iterator, NamedTuple, Optional, Union

import cv2
import numpy as np

from ..data.images import IMAGE_SUFFIXES, VIDEO_SUFFIXES, imread
from ..errors import ImageReadError

__all__ = ["SourceItem", "iter_sources", "expand_sources", "source_kind", "is_gstreamer", "is_live",
           "gstreamer_available", "open_capture", "IMAGE", "VIDEO", "LIVE"]

PathLike = Union[str, "os.PathLike[str]"]
_STREAM_PREFIXES = ("rtsp://", "rtmp://", "http://", "https://")

#: :func:`source_kind` values: a still image, a video file (finite, every frame matters), a live
#: source (camera index, rtsp/rtmp/http(s) URL, GStreamer pipeline: unbounded, real time)
IMAGE, VIDEO, LIVE = "image", "video", "live"

GSTREAMER_HINT = ("this OpenCV build has no GStreamer support (cv2.getBuildInformation()); install an "
                  "OpenCV built with GStreamer (on Jetson: the system OpenCV from JetPack, python3-opencv, "
                  "not the pip opencv-python wheel)")


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


def is_gstreamer(source: str) -> bool:
    """True for a GStreamer pipeline string: it contains ``!`` and is not an existing file
    (``nvarguscamerasrc ! video/x-raw(memory:NVMM),width=1280,height=720 ! nvvidconv ! video/x-raw,format=BGRx
    ! videoconvert ! video/x-raw,format=BGR ! appsink``)."""
    s = os.fspath(source)
    return "!" in s and not os.path.exists(s)


def is_live(source: str) -> bool:
    """True for a live source: a camera index (``"0"``, not an existing file), an rtsp/rtmp/http(s)
    URL, or a GStreamer pipeline string."""
    s = os.fspath(source)
    if os.path.isfile(s):
        return False
    return s.isdigit() or s.lower().startswith(_STREAM_PREFIXES) or is_gstreamer(s)


def source_kind(source: str) -> str:
    """Classify one expanded source (a file, camera index, URL or pipeline; see :func:`expand_sources`).

    Returns:
        :data:`LIVE` (camera index, rtsp/rtmp/http(s) URL, GStreamer pipeline), :data:`VIDEO` (a file
        whose suffix is in ``yolo4.data.images.VIDEO_SUFFIXES``) or :data:`IMAGE` (anything else:
        decoded as a still image).
    """
    s = os.fspath(source)
    if is_live(s):
        return LIVE
    if os.path.splitext(s)[1].lower() in VIDEO_SUFFIXES:
        return VIDEO
    return IMAGE


_GST_CACHE: Dict[str, bool] = {}


def gstreamer_available() -> bool:
    """True when this OpenCV build's Video I/O section lists ``GStreamer: YES``."""
    if "v" not in _GST_CACHE:
        ok = False
        for line in cv2.getBuildInformation().splitlines():
            key, _, value = line.strip().partition(":")
            if key.strip() == "GStreamer":
                ok = value.strip().upper().startswith("YES")
                break
        _GST_CACHE["v"] = ok
    return _GST_CACHE["v"]


def open_capture(source: str, factory: Callable[..., Any] = cv2.VideoCapture) -> Any:
    """Open a video file, camera index, stream URL or GStreamer pipeline with OpenCV.

    Args:
        source: a video file path, a camera index (``"0"`` -> ``factory(0)``), an rtsp/rtmp/http(s)
            URL, or a GStreamer pipeline string ending in ``appsink`` (``factory(source,
            cv2.CAP_GSTREAMER)``).
        factory: ``cv2.VideoCapture`` or a stand-in with the same ``(source[, api])`` signature and
            ``isOpened / read / get / release`` methods.

    Returns:
        The capture object; it may not be opened (check ``isOpened()``).

    Raises:
        ImageReadError: a GStreamer pipeline while this OpenCV build lacks GStreamer (one line naming
            the pipeline and what to install); checked when ``factory`` is ``cv2.VideoCapture``.
    """
    s = os.fspath(source)
    if is_gstreamer(s):
        if factory is cv2.VideoCapture and not gstreamer_available():
            raise ImageReadError(GSTREAMER_HINT, s)
        return factory(s, cv2.CAP_GSTREAMER)
    if s.isdigit() and not os.path.isfile(s):
        return factory(int(s))
    return factory(s)


def expand_sources(sources: Iterable[PathLike]) -> Iterator[Union[str, ImageReadError]]:
    """Expand folders and globs into files, in order; yield an ImageReadError for a source that
    matches nothing. Folders are listed (not recursively) in sorted order, keeping files with an image
    or video suffix; globs (``**`` recursive) are sorted and keep files only. Camera indices (``"0"``),
    stream URLs and GStreamer pipeline strings pass through unchanged."""
    for src in sources:
        s = os.fspath(src)
        if os.path.isdir(s):
            for name in sorted(os.listdir(s)):
                p = os.path.join(s, name)
                if os.path.isfile(p) and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
                    yield p
        elif os.path.isfile(s):
            yield s
        elif is_live(s):
            yield s
        elif _is_glob(s):
            matches = [p for p in sorted(glob.glob(s, recursive=True)) if os.path.isfile(p)]
            if not matches:
                yield ImageReadError("no files match this pattern", s)
            yield from matches
        else:
            yield ImageReadError("no such file or directory", s)


def _iter_video(path: str, vid_stride: int) -> Iterator[SourceItem]:
    try:
        cap = open_capture(path)
    except ImageReadError as e:
        yield SourceItem(path, None, e)
        return
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
            (``"0"``, read until the camera stops); an ``rtsp://`` / ``http(s)://`` stream URL; a
            GStreamer pipeline string (contains ``!``, ends in ``appsink``).
        vid_stride: yield every ``vid_stride``-th frame of videos, cameras and streams (frame
            indices still count every frame).

    Yields:
        :class:`SourceItem` ``(path, frame_index, image)``: ``image`` is ``HxWx3 uint8`` BGR, or an
        :class:`ImageReadError` (missing file, undecodable image, unopenable video, a pattern or
        path that matches nothing, a GStreamer pipeline without GStreamer support) -- yielded, not
        raised. Frames are decoded on the caller's thread, without reconnecting; see
        :class:`yolo4.runtime.frame_reader.FrameReader` for a background reader.
    """
    if vid_stride < 1:
        raise ValueError("vid_stride must be >= 1")
    for item in expand_sources(sources):
        if isinstance(item, ImageReadError):
            yield SourceItem(item.path or "", None, item)
            continue
        if source_kind(item) != IMAGE:
            yield from _iter_video(item, vid_stride)
        else:
            try:
                yield SourceItem(item, None, imread(item))
            except ImageReadError as e:
                yield SourceItem(item, None, e)
