"""TensorRT calibrators: method check, and the batch sequencing / cache logic with stand-ins.

``tensorrt`` and a GPU are absent here. The tests named ``..._host_stand_in`` use a minimal stand-in
for the two TensorRT base classes (plain Python classes) and a HOST-memory uploader in place of the
pycuda device copy: they check which batches are handed over in which order, when the buffer is
allocated and freed, errors and the cache. The GPU path (primary context, mem_alloc, memcpy_htod,
a real TensorRT build) is NOT exercised by these tests.
"""

import types

import cv2
import numpy as np
import pytest

from yolo4.calib.cache import CalibrationCache, header_for
from yolo4.calib.calibrators import METHODS, check_method, make_calibrator
from yolo4.calib.images import CalibrationSet
from yolo4.errors import ImageReadError, Yolo4Error
from yolo4.model_info import ModelInfo

HW = (32, 64)


class _StandInBase:
    """Stand-in for a pybind11 TensorRT calibrator base: records that __init__ was called."""

    def __init__(self):
        self.base_initialised = True


def _stand_in_trt():
    return types.SimpleNamespace(
        __name__="tensorrt", __version__="stand-in",
        IInt8EntropyCalibrator2=type("IInt8EntropyCalibrator2", (_StandInBase,), {}),
        IInt8MinMaxCalibrator=type("IInt8MinMaxCalibrator", (_StandInBase,), {}))


class HostUploader:
    """Host-memory stand-in for the pycuda uploader: keeps a copy of every uploaded batch and returns
    a fake 'pointer' (1, 2, ...). Nothing goes to a GPU."""

    instances = []

    def __init__(self, nbytes):
        self.nbytes = nbytes
        self.uploads = []
        self.freed = False
        HostUploader.instances.append(self)

    def upload(self, batch):
        assert batch.nbytes == self.nbytes and batch.flags.c_contiguous and batch.dtype == np.float32
        self.uploads.append(batch.copy())
        return len(self.uploads)

    def free(self):
        self.freed = True


class Log(list):
    def __call__(self, msg):
        self.append(msg)


@pytest.fixture(autouse=True)
def _reset_uploaders():
    HostUploader.instances = []


def _images(tmp_path, n):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = tmp_path / ("img%d.png" % i)
        cv2.imwrite(str(p), rng.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8))
        paths.append(str(p))
    return paths


def _set(tmp_path, n=5, batch_size=2):
    return CalibrationSet.from_paths(_images(tmp_path, n), ModelInfo(names=["a"], input_hw=HW), batch_size=batch_size)


def test_check_method_lists_valid_ones_and_explains_percentile():
    assert check_method(" Entropy ") == "entropy" and check_method("minmax") == "minmax"
    assert set(METHODS) == {"entropy", "minmax"}
    with pytest.raises(Yolo4Error, match="unknown calibration method 'legacy': use one of entropy, minmax"):
        check_method("legacy")
    with pytest.raises(Yolo4Error, match="only for explicit Q/DQ quantization"):
        check_method("percentile")


def test_tensorrt_without_calibrators_is_a_clear_error(tmp_path):
    """TensorRT 11 and TensorRT for RTX have no implicit calibrators: the real tensorrt_rtx module
    when installed, else a stand-in module without the classes."""
    try:
        import tensorrt_rtx as rtx
    except ImportError:
        rtx = types.SimpleNamespace(__name__="tensorrt_rtx", __version__="1.x")
    assert not hasattr(rtx, "IInt8EntropyCalibrator2")
    with pytest.raises(Yolo4Error, match="has no IInt8EntropyCalibrator2.*Q/DQ"):
        make_calibrator(rtx, "entropy", _set(tmp_path), None, log=None, uploader=HostUploader)
    with pytest.raises(Yolo4Error, match="unknown calibration method"):
        make_calibrator(_stand_in_trt(), "kl", _set(tmp_path), None, log=None, uploader=HostUploader)


@pytest.mark.parametrize("method, base", list(METHODS.items()))
def test_factory_subclasses_the_tensorrt_base_host_stand_in(tmp_path, method, base):
    trt = _stand_in_trt()
    calib = make_calibrator(trt, method, _set(tmp_path), None, log=None, uploader=HostUploader)
    assert isinstance(calib, getattr(trt, base)) and calib.base_initialised
    assert type(calib).__name__ == "Yolo4" + base[1:]
    assert calib.get_batch_size() == 2
    other = make_calibrator(trt, method, _set(tmp_path), None, log=None, uploader=HostUploader)
    assert type(other) is type(calib)  # one class per base


def test_batch_sequencing_host_stand_in(tmp_path):
    """get_batch hands over the padded batches in order through one buffer, then None; the GPU copy is
    a host stand-in here (not exercised)."""
    cs = _set(tmp_path, n=5, batch_size=2)
    log = Log()
    calib = make_calibrator(_stand_in_trt(), "entropy", cs, None, log=log, uploader=HostUploader)
    assert HostUploader.instances == []  # nothing allocated before the first batch
    ptrs = [calib.get_batch(["images"]) for _ in range(3)]
    assert ptrs == [[1], [2], [3]]
    (up,) = HostUploader.instances  # ONE buffer, allocated once, of one padded batch
    assert up.nbytes == 2 * 3 * HW[0] * HW[1] * 4
    expected = list(cs.iter_batches(pad=True))
    assert len(up.uploads) == 3 and all(np.array_equal(a, b) for a, b in zip(up.uploads, expected))
    assert not up.freed
    assert calib.get_batch(["images"]) is None and up.freed  # the end frees the buffer
    assert calib.get_batch(["images"]) is None and len(HostUploader.instances) == 1
    calib.raise_if_failed()  # no error
    assert log[0] == "calibrating (entropy) on %s" % cs.describe()
    assert "calibration batch 1/3" in log and "calibration batch 3/3" in log
    assert log[-1] == "calibration done: 3 batches"


def test_unreadable_image_stops_calibration_and_is_kept_for_the_builder_host_stand_in(tmp_path):
    cs = _set(tmp_path, n=4, batch_size=2)
    with open(cs.paths[3], "wb") as f:
        f.write(b"garbage")
    log = Log()
    calib = make_calibrator(_stand_in_trt(), "minmax", cs, None, log=log, uploader=HostUploader)
    assert calib.get_batch(["images"]) == [1]
    assert calib.get_batch(["images"]) is None  # TensorRT sees the end ...
    assert isinstance(calib.error, ImageReadError) and HostUploader.instances[0].freed
    with pytest.raises(ImageReadError) as e:  # ... and the builder re-raises it
        calib.raise_if_failed()
    assert cs.paths[3] in str(e.value)
    assert any(m.startswith("error: calibration stopped at batch 2/2") and cs.paths[3] in m for m in log)
    assert calib.get_batch(["images"]) is None


def test_more_than_one_network_input_is_an_error_host_stand_in(tmp_path):
    calib = make_calibrator(_stand_in_trt(), "entropy", _set(tmp_path), None, log=None, uploader=HostUploader)
    assert calib.get_batch(["images", "extra"]) is None
    with pytest.raises(Yolo4Error, match="one network input.*asks for 2: images, extra"):
        calib.raise_if_failed()


def test_cache_is_written_then_reused_without_calibrating_host_stand_in(tmp_path):
    trt = _stand_in_trt()
    cs = _set(tmp_path, n=3, batch_size=2)
    path = tmp_path / "cache" / "model.calib"
    header = header_for("f" * 64, cs, "entropy", trt.__version__)
    log = Log()
    calib = make_calibrator(trt, "entropy", cs, CalibrationCache(path, header, log=log), log=log,
                            uploader=HostUploader)
    assert calib.read_calibration_cache() is None  # absent
    while calib.get_batch(["images"]) is not None:
        pass
    calib.write_calibration_cache(memoryview(b"TRT-8601-EntropyCalibration2\nimages: 3c010a14\n"))
    assert "wrote calibration cache %s" % path in log

    log2 = Log()
    again = make_calibrator(trt, "entropy", cs, CalibrationCache(path, header, log=log2), log=log2,
                            uploader=HostUploader)
    assert again.read_calibration_cache() == b"TRT-8601-EntropyCalibration2\nimages: 3c010a14\n"
    assert again.read_calibration_cache() is again.read_calibration_cache()  # read once
    assert log2 == ["using calibration cache %s: no calibration pass" % path]
    assert len(HostUploader.instances) == 1  # the reuse allocated nothing

    log3 = Log()
    minmax = make_calibrator(trt, "minmax", cs,
                             CalibrationCache(path, header_for("f" * 64, cs, "minmax", trt.__version__), log=log3),
                             log=log3, uploader=HostUploader)
    assert minmax.read_calibration_cache() is None
    assert "differs: method: entropy -> minmax" in log3[0]


def test_failed_cache_write_is_a_warning_not_an_error_host_stand_in(tmp_path):
    cs = _set(tmp_path, n=1, batch_size=1)
    (tmp_path / "dir.calib").mkdir()
    log = Log()
    calib = make_calibrator(_stand_in_trt(), "entropy", cs,
                            CalibrationCache(tmp_path / "dir.calib", {"model": "x"}, log=log), log=log,
                            uploader=HostUploader)
    calib.write_calibration_cache(b"TRT-cache\n")
    assert any(m.startswith("warning: ") and "dir.calib" in m for m in log)


def test_default_uploader_needs_pycuda_and_says_so(tmp_path):
    """The real default path up to the pycuda import (no GPU and no pycuda here)."""
    try:
        import pycuda  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("pycuda is installed: this checks the message when it is not")
    calib = make_calibrator(_stand_in_trt(), "entropy", _set(tmp_path), None, log=None)
    assert calib.get_batch(["images"]) is None
    with pytest.raises(Yolo4Error, match="pycuda, which cannot be imported.*pip install"):
        calib.raise_if_failed()
