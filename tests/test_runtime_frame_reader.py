"""FrameReader: a real video file (every frame, in order; vid_stride), and fake captures for what
cannot exist here (a live stream that drops and is reopened, a file frame that fails to decode, a
camera faster than its consumer). The fakes stand in for ``cv2.VideoCapture`` only; the reader's
thread, queue, back-off and counting are the real code."""

import threading

import cv2
import numpy as np
import pytest

from yolo4.errors import ImageReadError
from yolo4.runtime import sources
from yolo4.runtime.frame_reader import FrameReader

# ---------------------------------------------------------------------------------------------
# a real video file


@pytest.fixture(scope="module")
def moving_video(tmp_path_factory, shared_data):
    """12 frames of dog.jpg (160x120) rolled 10 px more each frame, mp4v at 10 fps; the frames."""
    im = cv2.resize(cv2.imread(str(shared_data / "darknet" / "images" / "dog.jpg")), (160, 120))
    frames = [np.roll(im, 10 * i, axis=1) for i in range(12)]
    path = tmp_path_factory.mktemp("video") / "moving.mp4"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 120))
    assert w.isOpened()
    for f in frames:
        w.write(f)
    w.release()
    return path, frames


def _closest(img, frames):
    return int(np.argmin([np.abs(img.astype(np.int16) - f.astype(np.int16)).mean() for f in frames]))


def test_real_video_every_frame_in_order(moving_video):
    path, frames = moving_video
    logs = []
    with FrameReader(str(path), log=logs.append) as reader:
        got = list(reader)
    assert not reader.live
    assert [f.frame_index for f in got] == list(range(12))
    assert all(f.image.shape == (120, 160, 3) and f.image.dtype == np.uint8 for f in got)
    assert [_closest(f.image, frames) for f in got] == list(range(12))  # the content moves in order
    assert [f.time_s for f in got] == pytest.approx([i / 10 for i in range(12)])
    assert (reader.stats.read, reader.stats.skipped, reader.stats.dropped) == (12, 0, 0) and logs == []
    assert not reader._thread.is_alive()


def test_real_video_stride_and_small_queue(moving_video):
    path, frames = moving_video
    with FrameReader(str(path), vid_stride=5, queue_size=1) as reader:
        got = list(reader)
    assert [f.frame_index for f in got] == [0, 5, 10]
    assert [_closest(f.image, frames) for f in got] == [0, 5, 10]
    assert reader.stats.read == 12 and reader.stats.dropped == 0


def test_unopenable_file_is_one_error_item(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    with FrameReader(str(bad)) as reader:
        (item,) = list(reader)
    assert isinstance(item.image, ImageReadError) and item.frame_index is None
    assert str(item.image).startswith(str(bad))


# ---------------------------------------------------------------------------------------------
# fakes for cameras and streams


def _img(i):
    return np.full((4, 6, 3), i % 256, np.uint8)


class FakeCapture:
    """A stand-in for cv2.VideoCapture: ``reads`` is the script of ``read()`` results (a frame or
    None = ``(False, None)``; ``"none"`` = ``(True, None)``); after it, reads fail (or go on forever
    with ``endless``)."""

    def __init__(self, reads=(), opened=True, frame_count=0, endless=False, raise_on_read=None):
        self.reads = list(reads)
        self.opened = opened
        self.frame_count = frame_count
        self.endless = endless
        self.raise_on_read = raise_on_read
        self.released = False
        self.n = 0

    def isOpened(self):  # noqa: N802 - cv2's name
        return self.opened

    def get(self, prop):
        return {cv2.CAP_PROP_FRAME_COUNT: self.frame_count, cv2.CAP_PROP_FPS: 25.0}.get(prop, 0.0)

    def read(self):
        if self.raise_on_read is not None:
            raise self.raise_on_read
        self.n += 1
        if self.endless:
            return True, _img(self.n)
        if not self.reads:
            return False, None
        r = self.reads.pop(0)
        if isinstance(r, str):
            return True, None
        return (r is not None), r

    def release(self):
        self.released = True


class Factory:
    """``open_capture`` that hands out the given captures in turn (and records the arguments)."""

    def __init__(self, *caps):
        self.caps = list(caps)
        self.calls = []
        self.given = []

    def __call__(self, *args):
        self.calls.append(args)
        cap = self.caps.pop(0) if self.caps else FakeCapture(opened=False)
        self.given.append(cap)
        return cap


def _live(factory, **kw):
    sleeps, logs = [], []
    kw.setdefault("queue_size", 100)
    reader = FrameReader("rtsp://cam.example/stream", open_capture=factory, sleep=sleeps.append,
                         log=logs.append, **kw)
    return reader, sleeps, logs


def test_live_stream_reopens_with_backoff_then_gives_up():
    factory = Factory(FakeCapture([_img(0), _img(1)]), FakeCapture(opened=False), FakeCapture([_img(2)]),
                      FakeCapture(opened=False), FakeCapture(opened=False), FakeCapture(opened=False))
    reader, sleeps, logs = _live(factory, reconnect=3, backoff_s=0.5, backoff_max_s=1.5)
    with reader:
        got = list(reader)
    assert reader.live
    assert [f.frame_index for f in got] == [0, 1, 2]
    assert [int(f.image[0, 0, 0]) for f in got] == [0, 1, 2]
    # after frame 1: 0.5 (fails to open), 1.0 (opens, gives frame 2); the count restarts: 0.5, 1.0,
    # then 2.0 capped to 1.5; the third failed attempt in a row gives up
    assert sleeps == [0.5, 1.0, 0.5, 1.0, 1.5]
    assert reader.stats.reconnects == 5 and reader.stats.read == 3
    reopen = [ln for ln in logs if "reopening" in ln]
    assert len(reopen) == 5 and reopen[0] == ("warning: rtsp://cam.example/stream: read failed; reopening in "
                                              "0.5 s (attempt 1/3)")
    gave_up = [ln for ln in logs if "gave up" in ln]
    assert len(gave_up) == 1 and len(logs) == 6 and "after 3 reconnect attempt(s)" in gave_up[0]
    assert all(c.released for c in factory.given)
    assert all(args == ("rtsp://cam.example/stream",) for args in factory.calls)


def test_live_reconnect_zero_gives_up_at_once():
    factory = Factory(FakeCapture([_img(0)]))
    reader, sleeps, logs = _live(factory, reconnect=0)
    with reader:
        got = list(reader)
    assert [f.frame_index for f in got] == [0] and sleeps == [] and len(factory.calls) == 1
    assert len(logs) == 1 and "gave up after 0 reconnect attempt(s)" in logs[0]


def test_live_source_that_never_opens_is_one_error_item():
    factory = Factory(FakeCapture(opened=False))
    reader, sleeps, logs = _live(factory)
    with reader:
        (item,) = list(reader)
    assert isinstance(item.image, ImageReadError) and "rtsp://cam.example/stream" in str(item.image)
    assert sleeps == [] and logs == []


def test_camera_index_is_opened_as_an_int():
    factory = Factory(FakeCapture([_img(7)]))
    with FrameReader("0", open_capture=factory, reconnect=0, log=lambda s: None) as reader:
        got = list(reader)
    assert reader.live and factory.calls == [(0,)] and len(got) == 1


def test_file_frame_that_fails_to_decode_is_skipped_and_counted():
    reads = [_img(0), None, _img(2), "none", _img(4)]
    factory = Factory(FakeCapture(reads, frame_count=5))
    logs = []
    with FrameReader("clip.mp4", live=False, open_capture=factory, log=logs.append) as reader:
        got = list(reader)
    assert [f.frame_index for f in got] == [0, 2, 4]  # indices keep the file's positions
    assert [int(f.image[0, 0, 0]) for f in got] == [0, 2, 4]
    assert [f.time_s for f in got] == pytest.approx([0, 2 / 25, 4 / 25])
    assert (reader.stats.read, reader.stats.skipped) == (3, 2) and logs == []


def test_file_ends_after_consecutive_decode_failures():
    reads = [_img(0)] + [None] * 10 + [_img(11)]
    factory = Factory(FakeCapture(reads, frame_count=12))
    logs = []
    with FrameReader("clip.mp4", live=False, open_capture=factory, max_failures=4, log=logs.append) as reader:
        got = list(reader)
    assert [f.frame_index for f in got] == [0] and reader.stats.skipped == 4
    assert len(logs) == 1 and "4 frames in a row failed to decode" in logs[0]
    assert factory.given[0].released


def test_live_keeps_newest_frames_for_a_slow_consumer():
    factory = Factory(FakeCapture([_img(i) for i in range(50)]))
    reader = FrameReader("rtsp://x/y", queue_size=2, reconnect=0, open_capture=factory, log=lambda s: None)
    it = iter(reader)
    first = next(it)
    reader._thread.join(5)  # the camera delivered all 50 frames meanwhile
    assert not reader._thread.is_alive()
    rest = list(it)
    got = [first.frame_index] + [f.frame_index for f in rest]
    assert got == sorted(got) and got[-2:] == [48, 49] and len(rest) <= 2  # the queue holds 2
    assert reader.stats.read == 50 and reader.stats.dropped == 50 - len(got) > 0
    reader.close()


def test_file_never_drops_for_a_slow_consumer():
    factory = Factory(FakeCapture([_img(i) for i in range(50)], frame_count=50))
    reader = FrameReader("clip.mp4", live=False, queue_size=2, open_capture=factory)
    it = iter(reader)
    next(it)
    reader._thread.join(0.2)
    assert reader._thread.is_alive()  # blocked on the full queue
    assert len(list(it)) == 49 and reader.stats.dropped == 0
    reader.close()


def test_close_stops_an_endless_camera_and_releases_it():
    cap = FakeCapture(endless=True)
    reader = FrameReader("0", open_capture=Factory(cap), queue_size=2)
    it = iter(reader)
    idx = [next(it).frame_index for _ in range(3)]
    assert idx == sorted(idx) and len(set(idx)) == 3
    reader.close()
    assert not reader._thread.is_alive() and cap.released and reader._thread.daemon
    assert len(list(it)) <= 2  # what was queued, then the end: nothing blocks after close


def test_backoff_sleep_ends_early_on_close():
    reader = FrameReader("rtsp://x/y", open_capture=Factory(FakeCapture([_img(0)])), backoff_s=60,
                         log=lambda s: None)
    it = iter(reader)
    next(it)
    threading.Timer(0.05, reader.close).start()
    assert list(it) == []  # the 60 s back-off was cut short by close()
    reader._thread.join(2)
    assert not reader._thread.is_alive()


def test_exception_in_the_thread_is_raised_in_the_consumer():
    factory = Factory(FakeCapture(raise_on_read=RuntimeError("decoder exploded")))
    with FrameReader("clip.mp4", live=False, open_capture=factory) as reader:
        with pytest.raises(RuntimeError, match="decoder exploded"):
            list(reader)
    assert factory.given[0].released


def test_gstreamer_pipeline_uses_cap_gstreamer():
    pipeline = "videotestsrc num-buffers=3 ! videoconvert ! video/x-raw,format=BGR ! appsink"
    assert sources.source_kind(pipeline) == sources.LIVE and sources.is_gstreamer(pipeline)
    factory = Factory(FakeCapture([_img(0)]))
    with FrameReader(pipeline, open_capture=factory, reconnect=0, log=lambda s: None) as reader:
        assert len(list(reader)) == 1
    assert factory.calls == [(pipeline, cv2.CAP_GSTREAMER)]


@pytest.mark.skipif(sources.gstreamer_available(), reason="this OpenCV build has GStreamer")
def test_gstreamer_pipeline_without_gstreamer_is_one_line():
    pipeline = "nvarguscamerasrc ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! appsink"
    with pytest.raises(ImageReadError) as e:
        sources.open_capture(pipeline)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(pipeline) and "GStreamer" in msg and "JetPack" in msg
    with FrameReader(pipeline) as reader:
        (item,) = list(reader)
    assert isinstance(item.image, ImageReadError) and "GStreamer" in str(item.image)
    (item,) = list(sources.iter_sources([pipeline]))  # the older API says the same
    assert isinstance(item.image, ImageReadError) and "GStreamer" in str(item.image)


def test_source_kinds(tmp_path):
    img = tmp_path / "a.jpg"
    img.write_bytes(b"x")
    assert [sources.source_kind(s) for s in ("0", "rtsp://h/s", "http://h/v.mjpg", str(img), "v.MP4")] == [
        sources.LIVE, sources.LIVE, sources.LIVE, sources.IMAGE, sources.VIDEO]
    assert list(sources.expand_sources(["a ! appsink", "rtmp://h/live"])) == ["a ! appsink", "rtmp://h/live"]


def test_bad_arguments():
    for kw in ({"vid_stride": 0}, {"reconnect": -1}, {"queue_size": 0}, {"max_failures": 0}):
        with pytest.raises(ValueError):
            FrameReader("0", **kw)
