"""One INT8 job, :func:`yolo4.calib.int8.quantize_int8`, behind ``yolo4 export --int8``,
:func:`yolo4.pipeline.export_int8` and the Q/DQ path of ``yolo4 build-engine --int8``, with each
default defined once in :mod:`yolo4.calib.defaults`: the same inputs give the same file."""

import inspect
import re
from pathlib import Path

import pytest

from yolo4.calib import defaults as D
from yolo4.calib.int8 import calibration_batch, quantize_int8
from yolo4.errors import Yolo4Error

onnx = pytest.importorskip("onnx")
unit = pytest.importorskip("tests.test_engine_builder_unit")


def _defaults(fn):
    return {k: p.default for k, p in inspect.signature(fn).parameters.items()}


def test_every_int8_default_is_the_one_constant():
    from yolo4 import pipeline
    from yolo4.calib import images, qdq, ranges, sensitivity
    from yolo4.convert import engine_builder as eb

    want = {"calib_images": D.DEFAULT_NUM_IMAGES, "calib_method": D.DEFAULT_METHOD, "layout": D.DEFAULT_LAYOUT,
            "seed": D.DEFAULT_SEED}
    api = _defaults(pipeline.export_int8)
    assert {k: api[k] for k in want} == want  # the Python API (it defaulted to percentile)
    job = _defaults(quantize_int8)
    assert {k: job[k] for k in want} == want and job["percentile"] == D.DEFAULT_PERCENTILE
    assert job["batch_size"] is None  # calibration_batch: the ONNX's fixed batch, else DEFAULT_BATCH_SIZE
    cs = _defaults(images.calibration_set)
    assert (cs["num_images"], cs["batch_size"], cs["seed"]) == (D.DEFAULT_NUM_IMAGES, D.DEFAULT_BATCH_SIZE,
                                                                 D.DEFAULT_SEED)
    assert images.DEFAULT_NUM_IMAGES == _defaults(images.select_images)["num_images"] == D.DEFAULT_NUM_IMAGES
    for fn in (qdq.quantize_qdq, sensitivity.sensitivity_search):
        d = _defaults(fn)
        assert (d["method"], d["layout"], d["percentile"]) == (D.DEFAULT_METHOD, D.DEFAULT_LAYOUT,
                                                               D.DEFAULT_PERCENTILE), fn.__name__
    assert (qdq.DEFAULT_METHOD, qdq.DEFAULT_PERCENTILE) == (D.DEFAULT_METHOD, D.DEFAULT_PERCENTILE)
    assert _defaults(ranges.activation_ranges)["percentile"] == D.DEFAULT_PERCENTILE
    assert _defaults(eb.build_engine)["calib_images"] == eb.DEFAULT_CALIB_IMAGES == D.DEFAULT_NUM_IMAGES
    assert eb.DEFAULT_CALIB_METHOD == {"implicit": D.DEFAULT_IMPLICIT_METHOD, "explicit": D.DEFAULT_METHOD}


def test_cli_option_defaults_are_the_constants_and_help_shows_them():
    typer = pytest.importorskip("typer")
    from typer.testing import CliRunner

    from yolo4.cli import app

    cmd = typer.main.get_command(app)
    export = {p.name: p.default for p in cmd.commands["export"].params}
    assert (export["calib_images"], export["calib_method"], export["qdq_layout"], export["seed"]) == (
        D.DEFAULT_NUM_IMAGES, D.DEFAULT_METHOD, D.DEFAULT_LAYOUT, D.DEFAULT_SEED)
    build = {p.name: p.default for p in cmd.commands["build-engine"].params}
    assert build["calib_images"] == D.DEFAULT_NUM_IMAGES and build["calib_method"] is None
    runner = CliRunner()
    text = " ".join(runner.invoke(app, ["export", "--help"], terminal_width=200).output.split())
    for shown in ("[default: %s]" % D.DEFAULT_METHOD, "[default: %s]" % D.DEFAULT_LAYOUT,
                  "[default: %d; x>=1]" % D.DEFAULT_NUM_IMAGES, "percentile (%gth" % D.DEFAULT_PERCENTILE):
        assert shown in text
    text = " ".join(runner.invoke(app, ["build-engine", "--help"], terminal_width=200).output.split())
    assert "[default: %d; x>=1]" % D.DEFAULT_NUM_IMAGES in text
    assert "[default: %s for implicit, %s for explicit]" % (D.DEFAULT_IMPLICIT_METHOD, D.DEFAULT_METHOD) in text


def test_api_builder_and_job_write_byte_identical_qdq_onnx(tmp_path, monkeypatch):
    """pipeline.export_int8 (what ``yolo4 export --int8`` calls with these defaults), the builder's Q/DQ
    path (what ``build-engine --int8`` runs when explicit) and quantize_int8 itself: the same bytes."""
    pytest.importorskip("onnxruntime.quantization", reason="the Q/DQ quantizer needs onnxruntime")
    from yolo4 import pipeline
    from yolo4.convert import engine_builder as eb

    monkeypatch.setattr("yolo4.runtime.agreement.sample_images", lambda: [])  # a toy model: no agreement step
    src = unit._deep_onnx(tmp_path / "m.onnx")
    calib = str(unit._calib_dir(tmp_path, 10))  # 10 images: a short last batch at the default batch of 8
    quiet = lambda m: None  # noqa: E731
    api = Path(pipeline.export_int8(str(src), str(tmp_path / "api.onnx"), calib, log=quiet)["path"])
    built, cs, digest = eb._make_qdq_onnx(src, tmp_path / "b.engine", calib, eb.DEFAULT_CALIB_IMAGES,
                                          eb.DEFAULT_CALIB_METHOD["explicit"], (), quiet)
    job = quantize_int8(src, tmp_path / "job.onnx", calib, log=quiet)
    assert api.read_bytes() == built.read_bytes() == job.path.read_bytes()
    assert cs.batch_size == D.DEFAULT_BATCH_SIZE and digest == job.result.calib_digest
    meta = {m.key: m.value for m in onnx.load(str(api)).metadata_props}
    assert (meta["calib_method"], meta["qdq_layout"], meta["calib_images"]) == (D.DEFAULT_METHOD, D.DEFAULT_LAYOUT,
                                                                                 "10")


def test_calibration_batch_follows_a_fixed_onnx_batch():
    assert calibration_batch([1, 3, 64, 64]) == 1 and calibration_batch([4, 3, 64, 64]) == 4
    assert calibration_batch([-1, 3, 64, 64]) == calibration_batch(["batch", 3, 64, 64]) == D.DEFAULT_BATCH_SIZE
    assert calibration_batch([]) == D.DEFAULT_BATCH_SIZE


def test_target_drop_needs_an_evaluator(tmp_path):
    with pytest.raises(Yolo4Error, match=re.escape("needs make_evaluator")):
        quantize_int8(tmp_path / "m.onnx", tmp_path / "q.onnx", tmp_path, target_drop=1.0, log=lambda m: None)
