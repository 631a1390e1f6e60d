"""``yolo4 selftest`` on this machine (no GPU, no pycuda, TensorRT for RTX installed): the checks that
can run here PASS for real (ONNX Runtime, the tiny engine built by TensorRT for RTX), every GPU check
SKIPs with a reason that says what is missing, a failing check is a FAIL line that does not stop
the others, and any FAIL makes the command exit 1."""

import importlib.util

import numpy as np
import pytest

from tests.conftest import assert_user_error, run_cli
from yolo4 import selftest
from yolo4.selftest import STATUSES, Check, format_check, run_selftest, tiny_onnx

HAVE_RTX = importlib.util.find_spec("tensorrt_rtx") is not None
HAVE_PYCUDA = importlib.util.find_spec("pycuda") is not None
GPU_CHECKS = ("engine vs onnxruntime", "pinned copy", "cuda graph", "diou-nms plugin", "nms engines",
              "fp16 / int8 engines", "gpu preprocessing")


def test_tiny_onnx_has_the_yolo4_contract(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from yolo4.convert.engine_builder import read_onnx_facts

    path = tiny_onnx(str(tmp_path / "tiny.onnx"))
    facts = read_onnx_facts(tmp_path / "tiny.onnx")
    assert facts.info.input_hw == (64, 64) and facts.info.num_classes == 3 and facts.precision == "fp32"
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32)
    boxes, scores = sess.run(["boxes", "scores"], {"images": x})
    assert boxes.shape == (2, 64, 4) and scores.shape == (2, 64, 3)
    assert 0 <= boxes.min() and boxes.max() <= 64 and 0 <= scores.min() and scores.max() <= 1
    assert not np.allclose(boxes[0], boxes[1])  # depends on the input


@pytest.mark.skipif(HAVE_PYCUDA, reason="pycuda is installed here: the GPU checks would run")
def test_selftest_here(monkeypatch):
    monkeypatch.delenv("YOLO4_PLUGIN_LIB", raising=False)
    seen = []
    checks = {c.name: c for c in run_selftest(on_check=seen.append)}
    assert [c.name for c in seen] == [name for name, _ in selftest.CHECKS]
    assert all(c.status in STATUSES for c in seen)
    assert checks["platform"].status == "INFO" and "Python 3." in checks["platform"].detail
    assert checks["cuda"].status == "SKIP" and "pip install 'yolo4[trt]'" in checks["cuda"].detail
    for name in GPU_CHECKS:
        assert checks[name].status == "SKIP" and checks[name].detail, name
    if HAVE_RTX:
        assert checks["engine build"].status == "PASS", checks["engine build"]
        assert "ahead of time for 8.6" in checks["engine build"].detail
    else:
        assert checks["engine build"].status == "SKIP"
    assert not [c for c in seen if c.status == "FAIL"]


def test_a_failing_check_is_one_fail_line_and_the_rest_still_run():
    def ok(st, opts):
        return "PASS", "fine"

    def broken(st, opts):
        raise ValueError("kernel mismatch\nsecond line")

    res = run_selftest(checks=[("a", ok), ("b", broken), ("c", ok)])
    assert [(c.name, c.status) for c in res] == [("a", "PASS"), ("b", "FAIL"), ("c", "PASS")]
    assert res[1].detail == "ValueError: kernel mismatch second line"
    assert format_check(Check("cuda", "SKIP", "no GPU")).split() == ["SKIP", "cuda", "no", "GPU"]


def test_cli_exit_status(monkeypatch):
    """In process (CliRunner) so the checks can be replaced."""
    from typer.testing import CliRunner

    from yolo4.cli import app

    monkeypatch.setattr(selftest, "CHECKS", [("one", lambda st, o: ("PASS", "x")),
                                             ("two", lambda st, o: ("SKIP", "y"))])
    r = CliRunner().invoke(app, ["selftest"])
    assert r.exit_code == 0 and "PASS  one" in r.output and "1 passed, 0 failed, 1 skipped" in r.output
    monkeypatch.setattr(selftest, "CHECKS", [("one", lambda st, o: ("FAIL", "plugin differs"))])
    r = CliRunner().invoke(app, ["selftest"])
    assert r.exit_code == 1 and "FAIL  one" in r.output and "0 passed, 1 failed" in r.output


def test_cli_missing_engine(tmp_path):
    assert_user_error(run_cli("selftest", "--engine", tmp_path / "no.engine"), "no.engine", "not found")


def test_cli_cuda_graph_reaches_the_checks(monkeypatch):
    """``yolo4 selftest --cuda-graph`` asks the checks for graphs (the ``your engine`` line then FAILs
    when none ran, :func:`yolo4.selftest.graph_verdict`)."""
    from typer.testing import CliRunner

    from yolo4.cli import app

    monkeypatch.setattr(selftest, "CHECKS", [("graphs", lambda st, o: ("PASS", "asked=%s" % o["cuda_graph"]))])
    assert "asked=True" in CliRunner().invoke(app, ["selftest", "--cuda-graph"]).output
    assert "asked=False" in CliRunner().invoke(app, ["selftest"]).output
