"""Calibration cache: header line + TensorRT's bytes, reuse only on an equal header, corrupt files
are None with a message, atomic writes."""

import json
import os

import cv2
import numpy as np
import pytest

import yolo4.fileio
from yolo4.calib.cache import MAGIC, CalibrationCache, header_for
from yolo4.calib.images import CalibrationSet
from yolo4.errors import Yolo4Error
from yolo4.model_info import ModelInfo

# what TensorRT 8.6 writes: a text table of per-tensor scales (plus arbitrary bytes to be safe)
TRT_CACHE = b"TRT-8601-EntropyCalibration2\nimages: 3c010a14\n/0/Conv_output_0: 3d8e4c52\n\x00\xff\n"
HEADER = {"model": "a" * 64, "calibration_set": "b" * 64, "method": "entropy",
          "input_shape": "8x3x416x416", "tensorrt": "8.6.1"}


class Log(list):
    def __call__(self, msg):
        self.append(msg)


def test_round_trip_and_file_format(tmp_path):
    path = tmp_path / "sub" / "yolov4.calib"
    log = Log()
    cache = CalibrationCache(path, HEADER, log=log)
    assert cache.load() is None and log == []  # absent: None, nothing to say
    cache.save(TRT_CACHE)
    assert CalibrationCache(path, dict(HEADER), log=log).load() == TRT_CACHE and log == []
    data = path.read_bytes()
    first, rest = data.split(b"\n", 1)
    assert first.startswith(MAGIC) and json.loads(first[len(MAGIC):]) == HEADER
    assert rest == TRT_CACHE  # `tail -n +2` gives TensorRT's own cache
    cache.save(memoryview(b"TRT-8601-MinMaxCalibration\nimages: 3c000000\n"))  # overwrite, any buffer
    assert cache.load() == b"TRT-8601-MinMaxCalibration\nimages: 3c000000\n"
    assert sorted(os.listdir(path.parent)) == ["yolov4.calib"]  # no temp file left


@pytest.mark.parametrize("key, value", [
    ("model", "c" * 64), ("calibration_set", "d" * 64), ("method", "minmax"),
    ("input_shape", "1x3x416x416"), ("tensorrt", "10.3.0"),
])
def test_header_mismatch_is_none_with_a_message_naming_the_field(tmp_path, key, value):
    path = tmp_path / "x.calib"
    CalibrationCache(path, HEADER).save(TRT_CACHE)
    log = Log()
    assert CalibrationCache(path, dict(HEADER, **{key: value}), log=log).load() is None
    (msg,) = log
    assert msg.startswith("calibration cache %s was made for another model/preprocessing/method" % path)
    assert "(differs: %s: " % key in msg and msg.endswith(": recalibrating")
    if key == "method":
        assert "method: entropy -> minmax" in msg
    if key == "model":
        assert "aaaaaaaaaaaa -> cccccccccccc" in msg  # sha256s shortened


def test_extra_or_missing_header_keys_differ(tmp_path):
    path = tmp_path / "x.calib"
    CalibrationCache(path, HEADER).save(TRT_CACHE)
    log = Log()
    assert CalibrationCache(path, dict(HEADER, plugin="diou"), log=log).load() is None
    assert "differs: plugin: - -> diou" in log[0]


@pytest.mark.parametrize("content, why", [
    (b"", "has no yolo4 header"),
    (TRT_CACHE, "has no yolo4 header"),                     # a raw trtexec cache
    (MAGIC + b'{"model": "a"', "header line not terminated"),
    (MAGIC + b"{not json\n" + TRT_CACHE, "header is not valid JSON"),
    (MAGIC + b"[1, 2]\n" + TRT_CACHE, "header is not a JSON object of strings"),
    (MAGIC + b'{"model": 1}\n' + TRT_CACHE, "header is not a JSON object of strings"),
    (MAGIC + b"\xff\xfe\n" + TRT_CACHE, "header is not valid JSON"),
    (MAGIC + json.dumps(HEADER).encode() + b"\n", "no calibration data after the header"),
])
def test_corrupt_file_is_none_with_a_message_never_an_exception(tmp_path, content, why):
    path = tmp_path / "x.calib"
    path.write_bytes(content)
    log = Log()
    assert CalibrationCache(path, HEADER, log=log).load() is None
    (msg,) = log
    assert msg.startswith("calibration cache %s " % path) and why in msg and msg.endswith("recalibrating")


def test_unreadable_cache_is_none_with_a_message(tmp_path):
    (tmp_path / "dir.calib").mkdir()
    log = Log()
    assert CalibrationCache(tmp_path / "dir.calib", HEADER, log=log).load() is None
    assert "is unreadable" in log[0]
    assert CalibrationCache(tmp_path / "dir.calib", HEADER, log=None).load() is None  # silent


def test_save_is_atomic_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "x.calib"
    cache = CalibrationCache(path, HEADER)
    cache.save(TRT_CACHE)
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(yolo4.fileio.os, "replace", broken_replace)
    with pytest.raises(Yolo4Error, match="cannot write the calibration cache .No space left on device.") as e:
        cache.save(b"TRT-new\n")
    assert str(path) in str(e.value)
    monkeypatch.undo()
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["x.calib"]
    with pytest.raises(Yolo4Error, match="empty"):
        cache.save(b"")


def test_header_for_takes_the_digest_and_shape_of_a_calibration_set(tmp_path):
    p = tmp_path / "a.png"
    cv2.imwrite(str(p), np.zeros((10, 12, 3), np.uint8))
    cs = CalibrationSet.from_paths([str(p)], ModelInfo(names=["a"], input_hw=(64, 96)), batch_size=4)
    h = header_for("e" * 64, cs, "entropy", "8.5.2.2")
    assert h == {"model": "e" * 64, "calibration_set": cs.digest(), "method": "entropy",
                 "input_shape": "4x3x64x96", "tensorrt": "8.5.2.2"}
    assert header_for("e" * 64, cs.digest(), "minmax", "10.3", (1, 3, 64, 96))["input_shape"] == "1x3x64x96"
    with pytest.raises(Yolo4Error, match="input_shape is required"):
        header_for("e" * 64, cs.digest(), "minmax", "10.3")
    # a changed image changes the header, so the old cache is not reused
    path = tmp_path / "c.calib"
    CalibrationCache(path, h).save(TRT_CACHE)
    cv2.imwrite(str(p), np.ones((10, 12, 3), np.uint8))
    log = Log()
    assert CalibrationCache(path, header_for("e" * 64, cs, "entropy", "8.5.2.2"), log=log).load() is None
    assert "differs: calibration_set: " in log[0]
