"""Outputs of a video / stream run: an annotated video written safely, a JSON-lines detections file,
the ``--show`` window, an FPS overlay and an FPS meter.

Both writers put their data in a hidden temp file beside the target and rename it onto the target
when finished (:meth:`~VideoOutput.close`, also after Ctrl-C), or remove it (:meth:`~VideoOutput.abort`,
on an error): a target never holds half a file. Python 3.8, torch-free.
"""

import collections
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Deque, Mapping, Tuple, Union

import cv2
import numpy as np

from ..errors import Yolo4Error
from ..fileio import sibling_temp

__all__ = ["VideoOutput", "JsonLinesOutput", "video_fps", "draw_fps", "FpsMeter", "Viewer"]

PathLike = Union[str, "os.PathLike[str]"]


def video_fps(path: PathLike, default: float = 30.0) -> float:
    """Frame rate of a video file in frames per second; ``default`` for cameras, streams, pipelines,
    or when the container does not say (0, NaN or >= 1000)."""
    from .sources import is_live

    s = os.fspath(path)
    if is_live(s):
        return default
    cap = cv2.VideoCapture(s)
    try:
        fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0.0
    finally:
        cap.release()
    return float(fps) if fps and 0 < fps < 1000 else default


class VideoOutput:
    """An annotated video (mp4v) written to a temp file and renamed onto ``target`` when complete.

    Args:
        target: the ``.mp4`` to write (its folder is created).
        fps: frame rate in frames per second.
        width, height: frame size in pixels; every frame written must be ``height x width x 3 uint8`` BGR.

    Attributes:
        frames: frames written so far.

    Raises:
        Yolo4Error: OpenCV cannot open a writer for ``target`` (one line naming it).
    """

    def __init__(self, target: PathLike, fps: float, width: int, height: int) -> None:
        self.target = Path(target)
        self.tmp = sibling_temp(self.target, self.target.suffix)
        self.size = (int(width), int(height))
        self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), self.size)
        if not self.writer.isOpened():
            self.writer.release()
            if self.tmp.exists():
                self.tmp.unlink()
            raise Yolo4Error("cannot open a video writer (codec mp4v)", self.target)
        self.frames = 0
        self.done = False

    def write(self, frame: np.ndarray) -> None:
        """Append one ``HxWx3 uint8`` BGR frame; a frame of another size is resized to the video's."""
        if (frame.shape[1], frame.shape[0]) != self.size:
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(frame)
        self.frames += 1

    def close(self) -> None:
        """Finish the file and rename it onto the target (idempotent)."""
        if not self.done:
            self.writer.release()
            os.replace(str(self.tmp), str(self.target))
            self.done = True

    def abort(self) -> None:
        """Drop the temp file; the target is left untouched (a no-op after :meth:`close`)."""
        if not self.done:
            self.writer.release()
            if self.tmp.exists():
                self.tmp.unlink()
            self.done = True


class JsonLinesOutput:
    """A JSON-lines file written as it goes to a temp file beside ``target``, renamed at the end.

    Each :meth:`write` appends one JSON object on one line and flushes it (a crash leaves the temp
    file readable up to the last line). :meth:`close` renames the temp file onto ``target``;
    :meth:`abort` removes it.
    """

    def __init__(self, target: PathLike) -> None:
        self.target = Path(target)
        self.tmp = sibling_temp(self.target, ".jsonl")
        self.file = open(str(self.tmp), "x", encoding="utf-8")
        self.lines = 0
        self.done = False

    def write(self, record: Mapping[str, Any]) -> None:
        """Append ``record`` (JSON-serialisable) as one line."""
        self.file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.file.flush()
        self.lines += 1

    def close(self) -> None:
        """Flush, fsync and rename onto the target (idempotent)."""
        if not self.done:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(str(self.tmp), str(self.target))
            self.done = True

    def abort(self) -> None:
        """Remove the temp file (a no-op after :meth:`close`)."""
        if not self.done:
            self.file.close()
            if self.tmp.exists():
                self.tmp.unlink()
            self.done = True


def draw_fps(image: np.ndarray, fps: float) -> np.ndarray:
    """Draw ``"FPS 23.4"`` in the top-left corner, white on a black box (readable on any background).

    Args:
        image: ``HxWx3 uint8`` BGR, drawn on in place.
        fps: frames per second.

    Returns:
        ``image`` itself.
    """
    h, w = image.shape[:2]
    scale = max(0.5, min(h, w) / 720.0)
    thick = max(1, int(round(scale * 2)))
    font = cv2.FONT_HERSHEY_SIMPLEX
    text = "FPS %.1f" % fps
    (tw, th), base = cv2.getTextSize(text, font, scale, thick)
    pad = max(3, int(round(4 * scale)))
    cv2.rectangle(image, (0, 0), (min(w - 1, tw + 2 * pad), min(h - 1, th + base + 2 * pad)), (0, 0, 0), -1)
    cv2.putText(image, text, (pad, pad + th), font, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return image


class FpsMeter:
    """Frames per second of a whole loop (read, detect, draw, write), a moving average over the
    last ``window`` frames.

    Args:
        window: frames averaged over (>= 2).
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(self, window: int = 30, clock: Callable[[], float] = time.perf_counter) -> None:
        if window < 2:
            raise ValueError("window must be >= 2")
        self.window = int(window)
        self.clock = clock
        self._marks: Deque[Tuple[float, int]] = collections.deque()
        self._count = 0

    def start(self) -> None:
        """Mark the start of the loop now, so that the first :meth:`tick` already gives a rate."""
        self._marks.clear()
        self._marks.append((self.clock(), self._count))

    def tick(self, frames: int = 1) -> float:
        """Record that ``frames`` more frames are done now (a batch counts all its frames); returns
        :attr:`fps`."""
        self._count += int(frames)
        self._marks.append((self.clock(), self._count))
        while len(self._marks) > 1 and self._count - self._marks[1][1] >= self.window:
            self._marks.popleft()
        return self.fps

    @property
    def fps(self) -> float:
        """Frames per second over the frames in the window; 0.0 before two ticks."""
        if len(self._marks) < 2:
            return 0.0
        (t0, c0), (t1, c1) = self._marks[0], self._marks[-1]
        return (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0


def _gui_backend() -> bool:
    """True unless this OpenCV build's ``GUI:`` line says NONE (the headless wheels)."""
    for line in cv2.getBuildInformation().splitlines():
        key, _, value = line.strip().partition(":")
        if key.strip() == "GUI":
            return value.strip().upper() != "NONE"
    return True


class Viewer:
    """``--show``: frames in an OpenCV window, when there is a display and a GUI backend.

    Without one (Linux with neither ``DISPLAY`` nor ``WAYLAND_DISPLAY`` set, a headless OpenCV build,
    or ``cv2.imshow`` raising ``cv2.error`` once) it logs one warning line and shows nothing.

    Args:
        log: receives the warning line.
        title: the window title.
    """

    def __init__(self, log: Callable[[str], Any] = print, title: str = "yolo4") -> None:
        import sys

        self.title = title
        self.log = log
        self.enabled = True
        self.opened = False
        reason = None
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            reason = "no display (DISPLAY and WAYLAND_DISPLAY are unset)"
        elif not _gui_backend():
            reason = "this OpenCV build has no GUI backend (opencv-python-headless?)"
        if reason is not None:
            self._disable(reason)

    def _disable(self, reason: str) -> None:
        self.enabled = False
        self.log("warning: --show: %s; continuing without a window" % reason)

    def show(self, image: np.ndarray) -> bool:
        """Show one ``HxWx3 uint8`` BGR frame; returns False when the user pressed ``q`` or Esc."""
        if not self.enabled:
            return True
        try:
            cv2.imshow(self.title, image)
            key = cv2.waitKey(1) & 0xFF
        except cv2.error as e:
            self._disable("cv2.imshow failed (%s)" % " ".join(str(e).split())[:120])
            return True
        self.opened = True
        return key not in (ord("q"), 27)

    def close(self) -> None:
        """Close the window (idempotent)."""
        if self.opened:
            self.opened = False
            try:
                cv2.destroyWindow(self.title)
                cv2.waitKey(1)
            except cv2.error:
                pass
