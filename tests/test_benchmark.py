"""``yolo4 benchmark``: the statistics, batch parsing, fixed-batch handling, and real runs of the
console script on yolov4-tiny (structure and sanity of the numbers only: no timing assertions,
timings belong in benchmarks/)."""

import json

import numpy as np
import pytest

from tests.conftest import assert_usage_error, assert_user_error, run_cli
from yolo4.model_info import ModelInfo
from yolo4.runtime.backends.base import Backend
from yolo4.runtime.benchmark import format_table, latency_stats, parse_batches, run_benchmark

ROW_KEYS = {"batch", "mean_ms", "p50_ms", "p90_ms", "p99_ms", "ms_per_image", "images_per_s", "iterations"}


def test_latency_stats_on_known_inputs():
    rng = np.random.default_rng(0)
    seconds = list(rng.uniform(0.001, 0.05, size=37))
    s = latency_stats(seconds, batch=4)
    ms = np.array(seconds) * 1000.0
    # independent reference: sorted values, linear interpolation at rank q * (n - 1)
    srt = np.sort(ms)
    for q, key in ((0.5, "p50_ms"), (0.9, "p90_ms"), (0.99, "p99_ms")):
        r = q * (len(srt) - 1)
        lo, hi = int(np.floor(r)), int(np.ceil(r))
        ref = srt[lo] + (srt[hi] - srt[lo]) * (r - lo)
        assert s[key] == pytest.approx(ref, rel=1e-12)
        assert s[key] == pytest.approx(np.quantile(ms, q), rel=1e-12)
    assert s["mean_ms"] == pytest.approx(ms.mean())
    assert s["ms_per_image"] == pytest.approx(ms.mean() / 4)
    assert s["images_per_s"] == pytest.approx(4 / np.mean(seconds))
    assert s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"]


def test_latency_stats_small_and_bad_inputs():
    s = latency_stats([0.010, 0.020, 0.030], batch=1)
    assert s["mean_ms"] == pytest.approx(20.0) and s["p50_ms"] == pytest.approx(20.0)
    assert s["p90_ms"] == pytest.approx(28.0) and s["p99_ms"] == pytest.approx(29.8)
    assert s["images_per_s"] == pytest.approx(50.0)
    for bad in ([], [-1.0], [float("nan")]):
        with pytest.raises(ValueError):
            latency_stats(bad, batch=1)
    with pytest.raises(ValueError):
        latency_stats([0.1], batch=0)


def test_parse_batches():
    assert parse_batches("1,4,8") == [1, 4, 8]
    assert parse_batches(" 8, 1 ,8") == [8, 1]
    assert parse_batches("2") == [2]
    for bad, needle in (("0", ">= 1"), ("x", "'x'"), ("1,,2", "''"), ("", "comma"), ("-3", ">= 1"), ("1.5", "1.5")):
        with pytest.raises(ValueError, match=needle):
            parse_batches(bad)


class _FixedBatch(Backend):
    """A tiny fake backend with a fixed batch of 2 (no model file needed)."""

    name = "fake"

    def __init__(self):
        self.info = ModelInfo(names=["a"], input_hw=(32, 32))
        self.calls = []

    @property
    def fixed_batch(self):
        return 2

    def _forward(self, batch):
        self.calls.append(batch.shape[0])
        b = batch.shape[0]
        return np.zeros((b, 3, 4), np.float32), np.zeros((b, 3, 1), np.float32)


@pytest.mark.parametrize("end_to_end", [False, True])
def test_fixed_batch_model_is_measured_at_its_batch_only(end_to_end, monkeypatch):
    monkeypatch.delenv("YOLO4_ASSET_MIRROR", raising=False)  # synthetic input
    be = _FixedBatch()
    logs = []
    res = run_benchmark(be, [1, 2, 4], iterations=3, warmup=2, end_to_end=end_to_end, progress=False,
                        log=logs.append)
    assert [r["batch"] for r in res["results"]] == [2] and res["skipped_batches"] == [1, 4]
    assert len(logs) == 1 and "fixed batch size of 2" in logs[0] and "1, 4" in logs[0]
    assert be.calls == [2] * 5  # warm-up + timed, one forward each
    assert res["input"] == "synthetic input" and res["mode"] == ("end-to-end" if end_to_end else "engine-only")
    assert set(res["results"][0]) == ROW_KEYS and res["results"][0]["iterations"] == 3
    table = format_table(res).splitlines()
    assert table[0].split()[0] == "batch" and table[1].split()[0] == "2"


def _check_result(data, mode, batches, iterations):
    assert data["mode"] == mode
    assert data["iterations"] == iterations and data["warmup"] == 1
    assert data["model"]["input_hw"] == [160, 160]
    dev = data["device"]
    assert dev["backend"] == "onnxruntime" and dev["threads"] >= 1
    assert dev["onnxruntime"] and "CPUExecutionProvider" in dev["providers"]
    assert [r["batch"] for r in data["results"]] == batches
    for r in data["results"]:
        assert set(r) == ROW_KEYS and r["iterations"] == iterations
        for k in ROW_KEYS - {"batch", "iterations"}:
            assert r[k] > 0 and np.isfinite(r[k]), (k, r)
        assert r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert r["ms_per_image"] == pytest.approx(r["mean_ms"] / r["batch"])
        assert r["images_per_s"] == pytest.approx(1000.0 * r["batch"] / r["mean_ms"])


@pytest.mark.shared
def test_cli_benchmark_real_tiny(shared_data, tmp_path):
    out = tmp_path / "sub" / "out.json"
    p = run_cli("benchmark", "--cfg", "yolov4-tiny", "--weights", "yolov4-tiny", "--img-size", 160,
                "--batch", "1,2", "--iterations", 3, "--warmup", 1, "--json", out)
    assert p.returncode == 0, p.stderr
    data = json.loads(out.read_text())
    _check_result(data, "engine-only", [1, 2], 3)
    assert "dog.jpg" in data["input"]
    lines = p.stdout.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.split()[:2] == ["batch", "mean"])
    assert [ln.split()[0] for ln in lines[head + 1:head + 3]] == ["1", "2"]
    assert any("backend onnxruntime" in ln and "ONNX Runtime" in ln for ln in lines)
    assert not list(out.parent.glob("*.tmp*"))  # written atomically

    # end to end, on a folder of one image given with --images
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    (imgs / "dog.jpg").write_bytes((shared_data / "darknet" / "images" / "dog.jpg").read_bytes())
    out2 = tmp_path / "e2e.json"
    p = run_cli("benchmark", "--cfg", "yolov4-tiny", "--weights", "yolov4-tiny", "--img-size", 160,
                "--batch", "2", "--iterations", 2, "--warmup", 1, "--end-to-end", "--images", imgs,
                "--threads", 1, "--json", out2)
    assert p.returncode == 0, p.stderr
    data = json.loads(out2.read_text())
    _check_result(data, "end-to-end", [2], 2)
    assert data["device"]["threads"] == 1 and str(imgs) in data["input"]


def test_cli_benchmark_usage_errors(tmp_path):
    assert_usage_error(run_cli("benchmark", "--onnx", "m.onnx", "--batch", "0"), "--batch", ">= 1")
    assert_usage_error(run_cli("benchmark", "--onnx", "m.onnx", "--batch", "x"), "--batch", "'x'")
    assert_usage_error(run_cli("benchmark", "--onnx", "m.onnx", "--iterations", "0"), "--iterations")


def test_cli_benchmark_engine_without_metadata(tmp_path):
    eng = tmp_path / "model.engine"
    eng.write_bytes(b"not an engine")
    assert_user_error(run_cli("benchmark", "--engine", eng), "model.engine.json", "metadata")


def test_cli_benchmark_json_path_checked_first(tmp_path):
    # the JSON path is checked before any model is loaded (the ONNX file does not even exist)
    assert_user_error(run_cli("benchmark", "--onnx", tmp_path / "missing.onnx", "--json", tmp_path),
                      "JSON output", "folder")
