"""Decode a video file, camera, stream or GStreamer pipeline on a background thread.

One :class:`FrameReader` per source: a daemon thread reads frames with OpenCV and feeds a bounded
queue that the consumer (the detector loop) iterates over.

- Files (:data:`~yolo4.runtime.sources.VIDEO`) never drop frames: the thread blocks while the queue
  is full. A frame that fails to decode (``read()`` returns False before the container's frame count,
  or a None frame) is skipped and counted; ``max_failures`` consecutive failures end the file.
- Live sources (:data:`~yolo4.runtime.sources.LIVE`: camera index, rtsp/rtmp/http(s) URL, GStreamer
  pipeline) keep only the newest frames when the consumer is slower (the oldest queued frame is
  dropped and counted). A failed read reopens the capture with exponential back-off (``backoff_s``
  doubling up to ``backoff_max_s``, at most ``reconnect`` attempts in a row; one warning line per
  reopen, one when giving up). A live source that cannot be opened at all is an error item at once.

:meth:`FrameReader.close` (also on Ctrl-C) sets a stop Event and joins the thread; an exception in
the thread is re-raised in the consumer. The capture factory and the sleep are injectable, so tests
run a fake capture without waiting. Python 3.8, torch-free.
"""

import collections
import threading
import time
from typing import Any, Callable, Deque, Iterator, NamedTuple, Optional, Union

import cv2
import numpy as np

from ..errors import ImageReadError
from . import sources as _sources

__all__ = ["Frame", "ReaderStats", "FrameReader"]

Log = Callable[[str], Any]


class Frame(NamedTuple):
    """One decoded frame (a tuple: ``path, frame_index, image, time_s = frame``).

    Attributes:
        path: the source as given (file, camera index, URL or pipeline).
        frame_index: 0-based index of the frame in the source (counts every frame read or skipped,
            also those left out by ``vid_stride``); None for an error item.
        image: ``HxWx3 uint8`` BGR, or the :class:`ImageReadError` saying why the source gave nothing.
        time_s: seconds: the frame's position in a file (``frame_index / fps``), or the time since
            the reader started for a live source; None for an error item.
    """

    path: str
    frame_index: Optional[int]
    image: Union[np.ndarray, ImageReadError]
    time_s: Optional[float]


class ReaderStats:
    """Counters of one reader (ints, updated by its thread; read them after :meth:`FrameReader.close`).

    Attributes:
        read: frames decoded (before ``vid_stride``).
        skipped: frames of a file that failed to decode.
        dropped: live frames discarded because the consumer was slower.
        reconnects: reopen attempts of a live source.
    """

    def __init__(self) -> None:
        self.read = 0
        self.skipped = 0
        self.dropped = 0
        self.reconnects = 0

    def __repr__(self) -> str:
        return "ReaderStats(read=%d, skipped=%d, dropped=%d, reconnects=%d)" % (
            self.read, self.skipped, self.dropped, self.reconnects)


_END = object()


class _Buffer:
    """A bounded FIFO between the reader thread and the consumer; ``drop_oldest`` for live sources."""

    def __init__(self, maxsize: int, drop_oldest: bool, stop: threading.Event) -> None:
        self.maxsize = maxsize
        self.drop_oldest = drop_oldest
        self.stop = stop
        self.items: Deque[Frame] = collections.deque()
        self.cond = threading.Condition()
        self.finished = False
        self.error: Optional[BaseException] = None
        self.dropped = 0

    def put(self, item: Frame) -> bool:
        """Queue ``item``; False when the reader was stopped while waiting for room."""
        with self.cond:
            while len(self.items) >= self.maxsize:
                if self.drop_oldest:
                    self.items.popleft()
                    self.dropped += 1
                    break
                if self.stop.is_set():
                    return False
                self.cond.wait(0.05)
            self.items.append(item)
            self.cond.notify_all()
            return True

    def finish(self, error: Optional[BaseException] = None) -> None:
        with self.cond:
            self.finished = True
            self.error = error
            self.cond.notify_all()

    def get(self) -> Any:
        """The next item, or ``_END`` once the reader finished and the queue is empty."""
        with self.cond:
            while not self.items:
                if self.finished or self.stop.is_set():
                    return _END
                self.cond.wait(0.05)
            item = self.items.popleft()
            self.cond.notify_all()
            return item


class FrameReader:
    """Frames of one video file, camera, stream or GStreamer pipeline, decoded on a daemon thread.

    Args:
        source: a video file, camera index (``"0"``), rtsp/rtmp/http(s) URL or GStreamer pipeline.
        vid_stride: yield every ``vid_stride``-th frame (indices still count every frame); >= 1.
        live: treat as live (drop the oldest frames, reconnect) or as a file (block, never drop);
            default: :func:`yolo4.runtime.sources.is_live`.
        queue_size: frames buffered between the thread and the consumer; default 8 for files, 2
            for live sources.
        reconnect: live sources: reopen attempts in a row after a failed read before giving up
            (0 = give up at once). The count restarts after a frame is read.
        backoff_s: seconds before the first reopen; doubled for each further attempt ...
        backoff_max_s: ... up to this many seconds.
        max_failures: files: this many frames in a row failing to decode end the file.
        open_capture: the capture factory, ``cv2.VideoCapture`` or a stand-in with the same
            ``(source[, api])`` signature and ``isOpened() / read() / get(prop) / release()``.
        sleep: ``sleep(seconds)`` for the back-off; default: waits on the stop Event (ends early
            when the reader is closed).
        clock: monotonic seconds, for live ``time_s``.
        log: receives one-line warnings (``"warning: ..."``), possibly from the reader thread.

    Iterating yields :class:`Frame` items in order; a source that cannot be opened (or decoded at
    all) yields one Frame whose ``image`` is an :class:`ImageReadError`. Iteration re-raises an
    exception of the reader thread. Use as a context manager or call :meth:`close`.

    Raises:
        ValueError: ``vid_stride < 1``, ``queue_size < 1``, ``reconnect < 0`` or ``max_failures < 1``.
    """

    def __init__(self, source: str, vid_stride: int = 1, live: Optional[bool] = None,
                 queue_size: Optional[int] = None, reconnect: int = 5, backoff_s: float = 0.5,
                 backoff_max_s: float = 8.0, max_failures: int = 10,
                 open_capture: Callable[..., Any] = cv2.VideoCapture,
                 sleep: Optional[Callable[[float], Any]] = None, clock: Callable[[], float] = time.monotonic,
                 log: Log = print) -> None:
        if vid_stride < 1:
            raise ValueError("vid_stride must be >= 1")
        if reconnect < 0:
            raise ValueError("reconnect must be >= 0")
        if max_failures < 1:
            raise ValueError("max_failures must be >= 1")
        self.source = str(source)
        self.vid_stride = int(vid_stride)
        self.live = _sources.is_live(self.source) if live is None else bool(live)
        size = queue_size if queue_size is not None else (2 if self.live else 8)
        if size < 1:
            raise ValueError("queue_size must be >= 1")
        self.reconnect = int(reconnect)
        self.backoff_s = float(backoff_s)
        self.backoff_max_s = float(backoff_max_s)
        self.max_failures = int(max_failures)
        self.open_capture = open_capture
        self.clock = clock
        self.log = log
        self.stats = ReaderStats()
        self._stop = threading.Event()
        self._sleep = sleep if sleep is not None else self._stop.wait
        self._buf = _Buffer(int(size), self.live, self._stop)
        self._thread: Optional[threading.Thread] = None

    # -- consumer side -------------------------------------------------------------------------
    def start(self) -> "FrameReader":
        """Start the reader thread (idempotent); returns self."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="yolo4-reader", daemon=True)
            self._thread.start()
        return self

    def __iter__(self) -> Iterator[Frame]:
        self.start()
        while True:
            item = self._buf.get()
            if item is _END:
                break
            yield item
        self.stats.dropped = self._buf.dropped
        if self._buf.error is not None:
            raise self._buf.error

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread (sets the stop Event) and join it for up to ``timeout`` seconds (a read
        blocked inside OpenCV may outlive it; the thread is a daemon). Idempotent."""
        self._stop.set()
        with self._buf.cond:
            self._buf.cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self.stats.dropped = self._buf.dropped

    def __enter__(self) -> "FrameReader":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    # -- reader thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        error: Optional[BaseException] = None
        try:
            if self.live:
                self._run_live()
            else:
                self._run_file()
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, re-raised there
            error = e
        finally:
            self._buf.finish(error)

    def _open(self) -> Any:
        """The opened capture, or None (released) when it does not open."""
        cap = _sources.open_capture(self.source, self.open_capture)
        if cap.isOpened():
            return cap
        cap.release()
        return None

    def _error_item(self, message: str) -> None:
        self._buf.put(Frame(self.source, None, ImageReadError(message, self.source), None))

    def _open_or_report(self, what: str) -> Any:
        """The opened capture, or None after queueing the error item saying why it is not."""
        try:
            cap = self._open()
        except ImageReadError as e:
            self._buf.put(Frame(self.source, None, e, None))
            return None
        if cap is None:
            self._error_item("cannot open " + what)
        return cap

    def _run_file(self) -> None:
        cap = self._open_or_report("video")
        if cap is None:
            return
        try:
            n_frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            fps = fps if 0 < fps < 1000 else 30.0
            index = failures = 0
            decoded = False
            while not self._stop.is_set():
                ok, frame = cap.read()
                if ok and frame is not None:
                    decoded = True
                    failures = 0
                    self.stats.read += 1
                    if index % self.vid_stride == 0:
                        if frame.ndim == 2:
                            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
                        if not self._buf.put(Frame(self.source, index, frame, index / fps)):
                            break
                    index += 1
                    continue
                if not ok and (n_frames <= 0 or index >= n_frames):
                    break  # the end of the file
                self.stats.skipped += 1
                failures += 1
                index += 1
                if failures >= self.max_failures:
                    self.log("warning: %s: %d frames in a row failed to decode; stopped at frame %d"
                             % (self.source, failures, index))
                    break
            if not decoded and not self._stop.is_set():
                self._error_item("cannot decode any video frame")
        finally:
            cap.release()

    def _run_live(self) -> None:
        cap = self._open_or_report("camera or stream")
        if cap is None:
            return
        t0 = self.clock()
        index = attempts = 0
        try:
            while not self._stop.is_set():
                if cap is not None:
                    ok, frame = cap.read()
                    if ok and frame is not None:
                        attempts = 0
                        self.stats.read += 1
                        if index % self.vid_stride == 0:
                            if frame.ndim == 2:
                                frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
                            self._buf.put(Frame(self.source, index, frame, self.clock() - t0))
                        index += 1
                        continue
                    cap.release()
                    cap = None
                if self._stop.is_set():
                    break
                if attempts >= self.reconnect:
                    self.log("warning: %s: stream lost after %d frame(s); gave up after %d reconnect attempt(s)"
                             % (self.source, index, attempts))
                    break
                delay = min(self.backoff_s * (2 ** attempts), self.backoff_max_s)
                attempts += 1
                self.stats.reconnects += 1
                self.log("warning: %s: read failed; reopening in %.1f s (attempt %d/%d)"
                         % (self.source, delay, attempts, self.reconnect))
                self._sleep(delay)
                if self._stop.is_set():
                    break
                cap = self._open()
        finally:
            if cap is not None:
                cap.release()
