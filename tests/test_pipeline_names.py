"""One name for the NMS IoU threshold across the Python API: ``iou_threshold`` (``NmsParams``' field,
the ONNX/engine attribute). ``run_infer`` and ``run_eval`` took ``iou=``; the old keyword still works
for one release with one :class:`~yolo4.errors.Yolo4DeprecationWarning`, and passing both is an error.
(``diou_nms``' ``iou_thresh=``: tests/test_runtime_postprocess.py.)"""

import inspect
import types
import warnings

import pytest

import yolo4.data.datasets
import yolo4.runtime.detector
from yolo4.errors import Yolo4DeprecationWarning
from yolo4.model_info import ModelInfo
from yolo4.pipeline import run_eval, run_infer

BACKEND = types.SimpleNamespace(info=ModelInfo(names=["a"], input_hw=(32, 32)))


class _Stop(Exception):
    pass


@pytest.fixture
def detector_kwargs(monkeypatch):
    """The keywords each run gives :class:`Detector` (the run stops there); run_eval reads a stand-in
    dataset of the backend's one class."""
    seen = []

    def spy(backend, **kwargs):
        seen.append(kwargs)
        raise _Stop

    monkeypatch.setattr(yolo4.runtime.detector, "Detector", spy)
    monkeypatch.setattr(yolo4.data.datasets, "load_dataset", lambda data, split: types.SimpleNamespace(
        names=["a"], report_warnings=lambda *a, **k: None))
    return seen


RUNS = {"run_infer": lambda **kw: run_infer(["x.jpg"], BACKEND, output_dir=None, progress=False, **kw),
        "run_eval": lambda **kw: run_eval("data.yaml", BACKEND, progress=False, log=lambda m: None, **kw)}


@pytest.mark.parametrize("func", [run_infer, run_eval])
def test_signature_names_iou_threshold(func):
    params = inspect.signature(func).parameters
    assert params["iou_threshold"].default == 0.45 and "iou" not in params


@pytest.mark.parametrize("run", sorted(RUNS))
def test_iou_threshold_reaches_the_detector(run, detector_kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(_Stop):
            RUNS[run](iou_threshold=0.3)
    assert detector_kwargs[-1]["iou_threshold"] == 0.3


@pytest.mark.parametrize("run", sorted(RUNS))
def test_old_iou_keyword_works_and_warns_once(run, detector_kwargs):
    with pytest.warns(Yolo4DeprecationWarning, match=r"iou= is renamed iou_threshold=") as rec:
        with pytest.raises(_Stop):
            RUNS[run](iou=0.3)
    assert len(rec) == 1 and detector_kwargs[-1]["iou_threshold"] == 0.3


@pytest.mark.parametrize("run", sorted(RUNS))
def test_old_and_new_keyword_together_is_an_error(run, detector_kwargs):
    with pytest.raises(TypeError, match=r"%s\(\) got both iou_threshold and its old name iou=" % run):
        RUNS[run](iou=0.3, iou_threshold=0.3)
    assert detector_kwargs == []
