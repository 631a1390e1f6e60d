"""`yolo4 infer` on videos and streams: batching and order across mixed sources, vid_stride, JSON
lines, the annotated video, Ctrl-C, --show without a display, GStreamer without GStreamer, and a real
run of yolov4-tiny on ONNX Runtime through the installed command.

Most tests use a fake backend whose output encodes its input (one box per image, scored by the
image's mean brightness), so the order of results is checked frame by frame. A stream (rtsp) is a
fake capture, as no stream server exists here; videos are real files written with cv2.VideoWriter.
"""

import json
import time

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

import yolo4.pipeline
from tests.conftest import run_cli
from tests.test_runtime_frame_reader import Factory, FakeCapture
from yolo4.cli import app
from yolo4.model_info import ModelInfo
from yolo4.pipeline import run_infer
from yolo4.runtime import sources
from yolo4.runtime.backends.base import Backend


class BrightnessBackend(Backend):
    """A 1-class model: for each image, one box [16, 18, 30, 30] (input pixels) scored by the image's mean (0..1).
    Records each call's batch size; raises KeyboardInterrupt on call ``interrupt_on`` (1-based)."""

    name = "fake"

    def __init__(self, interrupt_on=None):
        self.info = ModelInfo(names=["bright"], input_hw=(32, 32), letter_box=False, nms_kind="greedynms",
                              beta_nms=0.6, anchors=[[(10.0, 14.0)]], strides=[32])
        self.calls = []
        self.interrupt_on = interrupt_on

    def _forward(self, batch):
        self.calls.append(batch.shape[0])
        if self.interrupt_on is not None and len(self.calls) == self.interrupt_on:
            raise KeyboardInterrupt
        b = batch.shape[0]
        boxes = np.tile(np.array([[[16, 18, 30, 30]]], np.float32), (b, 1, 1))
        return boxes, batch.mean(axis=(1, 2, 3)).reshape(b, 1, 1).astype(np.float32)


def _gray(level, hw=(48, 64)):
    return np.full(hw + (3,), level, np.uint8)


def _video(path, levels, fps=10):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (64, 48))
    assert w.isOpened()
    for v in levels:
        w.write(_gray(v))
    w.release()
    return path


def _score(rec):
    (d,) = rec["detections"]
    return d["score"] * 255


def _frames_of(path):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return frames, fps


@pytest.fixture()
def mixed(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    cv2.imwrite(str(a), _gray(30))
    cv2.imwrite(str(b), _gray(230))
    clip = _video(tmp_path / "clip.mp4", [60, 90, 120, 150, 180])
    return a, clip, b


def test_batch_3_over_images_and_video_keeps_order(mixed, tmp_path):
    a, clip, b = mixed
    be = BrightnessBackend()
    logs = []
    out, jl = tmp_path / "out", tmp_path / "d.jsonl"
    res = run_infer([str(a), str(clip), str(b)], be, conf=0.01, batch=3, output_dir=str(out),
                    save_jsonl=str(jl), progress=False, log=logs.append)
    assert be.calls == [3, 3, 1]  # [a, f0, f1] [f2, f3, f4] [b]
    assert [(r["image"], r.get("frame")) for r in res] == [(str(a), None)] + [(str(clip), i) for i in range(5)] + [
        (str(b), None)]
    assert [_score(r) for r in res] == pytest.approx([30, 60, 90, 120, 150, 180, 230], abs=3)
    lines = [json.loads(x) for x in jl.read_text().splitlines()]
    assert [(x["source"], x["frame"]) for x in lines] == [(r["image"], r.get("frame")) for r in res]
    assert [x["time_s"] for x in lines] == [None, 0.0, 0.1, 0.2, 0.3, 0.4, None]
    assert [x["detections"] for x in lines] == [r["detections"] for r in res]
    assert set(lines[0]) == {"source", "frame", "time_s", "detections"}
    frames, fps = _frames_of(out / "clip.mp4")
    assert len(frames) == 5 and fps == 10
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "clip.mp4"]  # no temp files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png", "clip.mp4", "d.jsonl", "out"]
    # the FPS overlay: a black box with white text in the top-left corner of the video, not of images
    corner = frames[0][:10, :30]
    assert corner.min() < 20 and corner.max() > 200
    still = cv2.imread(str(out / "a.png"))
    assert (still[:10, :30] == 30).all()  # the box and its label are elsewhere
    assert any(ln.startswith("Speed:") and "(7 images)" in ln for ln in logs)


def test_vid_stride_and_no_fps_overlay(mixed, tmp_path):
    _, clip, _ = mixed
    be = BrightnessBackend()
    res = run_infer([str(clip)], be, conf=0.01, vid_stride=2, batch=2, output_dir=str(tmp_path / "o"),
                    fps_overlay=False, progress=False, log=lambda s: None)
    assert [r["frame"] for r in res] == [0, 2, 4] and be.calls == [2, 1]
    assert [_score(r) for r in res] == pytest.approx([60, 120, 180], abs=3)
    frames, fps = _frames_of(tmp_path / "o" / "clip.mp4")
    assert len(frames) == 3 and fps == 5  # the source's 10 fps / stride 2: the video plays in real time
    assert np.abs(frames[0][:10, :30].astype(int) - 60).max() < 10  # no overlay


class PacedCapture(FakeCapture):
    """A camera that delivers frame i only once the backend has processed frame i - 2 (a camera no
    faster than inference, so nothing is dropped), then ends."""

    def __init__(self, frames, backend):
        super().__init__(frames)
        self.backend = backend

    def read(self):
        deadline = time.monotonic() + 5
        while len(self.backend.calls) < self.n - 1 and time.monotonic() < deadline:
            time.sleep(0.001)
        return super().read()


def test_live_stream_results_go_to_jsonl_not_memory(tmp_path):
    """An rtsp stream (a fake capture: no server here) that ends after 4 frames; reconnect 0."""
    be, logs = BrightnessBackend(), []
    factory = Factory(PacedCapture([_gray(40 * (i + 1)) for i in range(4)], be))
    jl = tmp_path / "live.jsonl"
    res = run_infer(["rtsp://cam.example/live/main?x=1"], be, conf=0.01, output_dir=str(tmp_path / "o"),
                    save_jsonl=str(jl), reconnect=0, open_capture=factory, progress=False, log=logs.append)
    assert res == []  # live results are not accumulated
    lines = [json.loads(x) for x in jl.read_text().splitlines()]
    assert [x["frame"] for x in lines] == [0, 1, 2, 3]
    assert all(x["source"] == "rtsp://cam.example/live/main?x=1" and x["time_s"] >= 0 for x in lines)
    assert [x["detections"][0]["score"] * 255 for x in lines] == pytest.approx([40, 80, 120, 160], abs=1)
    frames, _ = _frames_of(tmp_path / "o" / "main.mp4")
    assert len(frames) == 4
    assert sum("gave up" in ln for ln in logs) == 1


def test_show_without_display_warns_once_and_completes(mixed, tmp_path, monkeypatch):
    a, clip, b = mixed
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    logs = []
    res = run_infer([str(a), str(clip), str(b)], BrightnessBackend(), conf=0.01, output_dir=None, show=True,
                    progress=False, log=logs.append)
    assert len(res) == 7
    warn = [ln for ln in logs if ln.startswith("warning")]
    assert len(warn) == 1 and "--show" in warn[0] and "no display" in warn[0]


def test_show_when_imshow_fails_warns_once(mixed, monkeypatch):
    """A display is set but OpenCV cannot open a window (this headless build raises cv2.error)."""
    import yolo4.runtime.video_out as vo

    calls = []

    def failing_imshow(*a):
        calls.append(a)
        raise cv2.error("The function is not implemented")

    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setattr(vo, "_gui_backend", lambda: True)
    monkeypatch.setattr(vo.cv2, "imshow", failing_imshow)
    logs = []
    res = run_infer([str(p) for p in mixed], BrightnessBackend(), conf=0.01, output_dir=None, show=True,
                    progress=False, log=logs.append)
    assert len(res) == 7 and len(calls) == 1
    warn = [ln for ln in logs if ln.startswith("warning")]
    assert len(warn) == 1 and "cv2.imshow failed" in warn[0]


def test_show_q_stops_the_run(mixed, monkeypatch, tmp_path):
    import yolo4.runtime.video_out as vo

    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setattr(vo, "_gui_backend", lambda: True)
    monkeypatch.setattr(vo.cv2, "imshow", lambda *a: None)
    keys = iter([-1, -1, ord("q")])
    monkeypatch.setattr(vo.cv2, "waitKey", lambda ms: next(keys, -1))
    monkeypatch.setattr(vo.cv2, "destroyWindow", lambda name: None)
    res = run_infer([str(p) for p in mixed], BrightnessBackend(), conf=0.01, output_dir=str(tmp_path / "o"),
                    show=True, progress=False, log=lambda s: None)
    assert [r.get("frame") for r in res] == [None, 0, 1]
    frames, _ = _frames_of(tmp_path / "o" / "clip.mp4")
    assert len(frames) == 2  # finished, renamed


def _cli(monkeypatch, backend, *args):
    opened = []

    def fake_open_backend(*a, **kw):
        opened.append(a)
        return backend

    monkeypatch.setattr(yolo4.pipeline, "open_backend", fake_open_backend)
    try:  # click < 8.2 (Python 3.8's 8.1.8) mixes stderr into stdout unless asked; 8.2 keeps both
        runner = CliRunner(mix_stderr=False)
    except TypeError:
        runner = CliRunner()
    result = runner.invoke(app, [str(x) for x in args])
    return result, opened


def test_ctrl_c_finishes_outputs_and_exits_130(tmp_path, monkeypatch):
    clip = _video(tmp_path / "clip.mp4", [20, 50, 80, 110, 140, 170])
    out, jl, js = tmp_path / "out", tmp_path / "d.jsonl", tmp_path / "d.json"
    be = BrightnessBackend(interrupt_on=4)
    result, _ = _cli(monkeypatch, be, "infer", clip, "--onnx", "fake.onnx", "--output-dir", out,
                     "--save-jsonl", jl, "--save-json", js)
    assert result.exit_code == 130, result.output
    assert "interrupted after 3 frames: outputs finished" in result.stdout
    assert "aborted" in result.stderr and "Traceback" not in result.output
    frames, fps = _frames_of(out / "clip.mp4")
    assert len(frames) == 3 and fps == 10
    levels = [int(f[30:, :25].mean()) for f in frames]  # mp4v twice: levels shift a little
    assert levels == sorted(levels) and levels == pytest.approx([20, 50, 80], abs=10)
    lines = [json.loads(x) for x in jl.read_text().splitlines()]
    assert [x["frame"] for x in lines] == [0, 1, 2]
    assert [r["frame"] for r in json.loads(js.read_text())] == [0, 1, 2]
    assert sorted(p.name for p in out.iterdir()) == ["clip.mp4"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "d.json", "d.jsonl", "out"]


def test_cli_options_wired(mixed, tmp_path, monkeypatch):
    a, clip, b = mixed
    be = BrightnessBackend()
    jl = tmp_path / "x.jsonl"
    result, _ = _cli(monkeypatch, be, "infer", a, clip, b, "--onnx", "fake.onnx", "--no-save", "--conf", "0.01",
                     "--batch", "4", "--vid-stride", "2", "--save-jsonl", jl, "--reconnect", "0")
    assert result.exit_code == 0, result.output
    assert be.calls == [4, 1]  # a, f0, f2, f4 | b
    assert [json.loads(x)["frame"] for x in jl.read_text().splitlines()] == [None, 0, 2, 4, None]
    assert "detections JSON lines: %s" % jl.resolve() in result.stdout


def test_cli_unwritable_jsonl_fails_before_work(tmp_path, monkeypatch):
    result, opened = _cli(monkeypatch, BrightnessBackend(), "infer", "x.jpg", "--onnx", "fake.onnx",
                          "--no-save", "--save-jsonl", tmp_path)
    assert result.exit_code == 2 and opened == []
    (line,) = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert str(tmp_path) in line


@pytest.mark.skipif(sources.gstreamer_available(), reason="this OpenCV build has GStreamer")
def test_cli_gstreamer_without_gstreamer_is_one_error_line(tmp_path, monkeypatch):
    pipeline = "nvarguscamerasrc ! video/x-raw(memory:NVMM),width=1280,height=720 ! nvvidconv ! appsink"
    result, _ = _cli(monkeypatch, BrightnessBackend(), "infer", pipeline, "--onnx", "fake.onnx",
                     "--output-dir", tmp_path / "o", "--save-jsonl", tmp_path / "d.jsonl")
    assert result.exit_code == 2 and "Traceback" not in result.output
    (line,) = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert pipeline in line and "GStreamer" in line and "JetPack" in line
    assert not (tmp_path / "d.jsonl").exists() and list((tmp_path / "o").iterdir()) == []


def test_cli_help_lists_video_options():
    result = CliRunner().invoke(app, ["infer", "--help"])
    text = " ".join(result.output.split())
    for opt in ("--batch", "--vid-stride", "--show", "--save-jsonl", "--reconnect", "--no-fps-overlay",
                "rtsp://", "GStreamer"):
        assert opt in text, opt


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory, shared_data):
    path = tmp_path_factory.mktemp("onnx") / "tiny320.onnx"
    p = run_cli("export", "--cfg", "yolov4-tiny", "--weights", "yolov4-tiny", "--img-size", "320", "-o", path)
    assert p.returncode == 0, p.stderr
    return path


def test_real_video_through_the_command(tiny_onnx, shared_data, tmp_path):
    """yolov4-tiny (real weights) on ONNX Runtime over an mp4 of dog.jpg panning: the installed
    command writes an mp4 with every frame and one JSON line per frame, each finding the dog."""
    im = cv2.resize(cv2.imread(str(shared_data / "darknet" / "images" / "dog.jpg")), (384, 288))
    src = tmp_path / "pan.mp4"
    w = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"mp4v"), 8, (384, 288))
    for i in range(7):
        w.write(np.roll(im, 6 * i, axis=1))
    w.release()
    out, jl = tmp_path / "out", tmp_path / "pan.jsonl"
    p = run_cli("infer", src, "--onnx", tiny_onnx, "--batch", "3", "--output-dir", out, "--save-jsonl", jl,
                "--show", env={"DISPLAY": None, "WAYLAND_DISPLAY": None})
    assert p.returncode == 0, p.stderr
    assert sum("--show" in ln for ln in p.stderr.splitlines()) == 1
    lines = [json.loads(x) for x in jl.read_text().splitlines()]
    assert [x["frame"] for x in lines] == list(range(7))
    assert all("dog" in {d["class_name"] for d in x["detections"]} for x in lines)
    frames, fps = _frames_of(out / "pan.mp4")
    assert len(frames) == 7 and fps == 8 and frames[0].shape == (288, 384, 3)
    assert sorted(x.name for x in out.iterdir()) == ["pan.mp4"]
    assert "Speed:" in p.stdout and "(7 images)" in p.stdout
