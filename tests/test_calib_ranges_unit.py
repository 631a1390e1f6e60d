"""yolo4.calib.ranges.activation_ranges on a hand-built Conv+Relu ONNX, against numpy over all batches.

The ranges are streamed one batch at a time; these tests prove they are nevertheless taken over *all*
calibration batches (min/max, and the percentile histogram), by placing the extremes and the bulk of
the values in different batches and computing the expected ranges independently: the convolution in
numpy, min/max and percentiles of the concatenated values with numpy (``np.percentile``), and the
histogram rule of the module docstring applied once to the concatenation.

Values are exact in float32 (inputs are multiples of 1/16, weights small integers, bias a multiple of
1/2), so ONNX Runtime's and numpy's convolutions agree bit for bit and the expected values are exact.
No torch, no real data.
"""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from yolo4.calib.ranges import activation_ranges  # noqa: E402

#: 1x1 conv, 2 -> 3 channels; small integer weights, bias multiples of 1/2 (exact arithmetic)
W = np.array([[1.0, -2.0], [2.0, 1.0], [-1.0, 0.0]], np.float32)
B = np.array([0.5, -1.0, 0.0], np.float32)
SHAPE = (2, 2, 8, 8)  # one batch: N, C, H, W


def _model(path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(SHAPE))
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, [SHAPE[0], 3, SHAPE[2], SHAPE[3]])
    w = numpy_helper.from_array(W.reshape(3, 2, 1, 1), "w")
    b = numpy_helper.from_array(B, "b")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv"),
             helper.make_node("Relu", ["y"], ["z"], name="relu")]
    graph = helper.make_graph(nodes, "g", [x], [z], initializer=[w, b])
    # IR 8 / opset 13: loadable by the oldest onnxruntime this project supports
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path


def _batches():
    """Three batches: batch 0 holds the largest value, batch 1 the smallest, and both the bulk of
    large values; the last batch is small everywhere (a range taken from it alone is far too narrow)."""
    rng = np.random.default_rng(0)
    out = []
    for k in (64, 64, 4):  # bulk within +-4, +-4, +-0.25
        out.append((rng.integers(-k, k + 1, SHAPE) / 16.0).astype(np.float32))
    out[0][0, 0, 3, 5] = 40.0
    out[1][1, 1, 6, 2] = -30.0
    return out


class _Calib:
    """The part of CalibrationSet that activation_ranges uses."""

    def __init__(self, batches):
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def batch(self, index, pad=True):
        return self.batches[index]


def _reference(batches):
    """name -> the tensor's values over all batches, flattened (numpy conv, relu)."""
    xs = np.concatenate(batches)
    y = np.einsum("oc,nchw->nohw", W, xs) + B[None, :, None, None]
    return {"x": xs.ravel(), "y": y.ravel(), "z": np.maximum(y, 0).ravel()}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    path = _model(tmp_path_factory.mktemp("ranges") / "convrelu.onnx")
    batches = _batches()
    ref = _reference(batches)
    last = _reference(batches[-1:])
    # the premise: for every calibrated tensor the last batch alone gives a narrower range
    for n in ref:
        assert np.abs(last[n]).max() < np.abs(ref[n]).max() / 4
    return path, _Calib(batches), ref


def _run(setup, **kw):
    path, calib, ref = setup
    r = activation_ranges(path, calib, ["Conv", "Relu"], progress=False, **kw)
    assert set(r) == set(ref)  # Conv's input and output, Relu's output (weights are not activations)
    return r, ref


def test_minmax_is_the_running_extreme_over_all_batches(setup):
    """minmax: asymmetric (low, high) = (min(min x, 0), max(max x, 0)) and symmetric +-max|x| over
    every batch, although the largest value is in batch 0 and the smallest in batch 1."""
    for symmetric in (False, True):
        r, ref = _run(setup, method="minmax", symmetric=symmetric)
        for n, v in ref.items():
            if symmetric:
                t = float(np.abs(v).max())
                assert r[n] == pytest.approx((-t, t), abs=0), n
            else:
                assert r[n] == pytest.approx((min(float(v.min()), 0.0), max(float(v.max()), 0.0)), abs=0), n
    # x's extremes are the planted ones, from two different, non-last batches
    r, _ = _run(setup, method="minmax", symmetric=False)
    assert r["x"] == (-30.0, 40.0)


def _hist_threshold(values, lo, hi, bins, share):
    """Bin edges over [lo, hi]; (lower edge, upper edge) of the first bin where the cumulative share
    of ``values`` reaches ``share`` (the module docstring's rule, on all values at once)."""
    h, e = np.histogram(values, bins=bins, range=(lo, hi))
    i = int(np.argmax(np.cumsum(h) >= share * values.size))
    return float(e[i]), float(e[i + 1])


@pytest.mark.parametrize("percentile", [99.0, 90.0])
def test_percentile_symmetric_histogram_over_all_batches(setup, percentile):
    """percentile, symmetric: t is the upper edge of the |x| histogram bin (fixed bins over
    [0, max|x|] of all batches) holding the percentile of |x| over all batches; so np.percentile of
    |x| lies in [t - bin width, t]. The bulk of large values is in batches 0 and 1, so a histogram
    or range from the last batch alone gives a far smaller t."""
    bins = 256
    r, ref = _run(setup, method="percentile", symmetric=True, percentile=percentile, num_bins=bins)
    for n, v in ref.items():
        a = np.abs(v)
        top = float(a.max())
        lower, upper = _hist_threshold(a, 0.0, top, bins, percentile / 100.0)
        assert r[n] == pytest.approx((-upper, upper), rel=1e-12), n
        q = float(np.percentile(a, percentile, method="inverted_cdf"))  # a value of the data
        assert lower <= q <= upper and upper - lower == pytest.approx(top / bins), n
        assert r[n][1] < top, n  # the percentile cut something off


@pytest.mark.parametrize("percentile", [99.0, 90.0])
def test_percentile_asymmetric_histogram_over_all_batches(setup, percentile):
    """percentile, asymmetric: (100 - p) / 2 percent cut on each side of the x histogram (fixed bins
    over [min x, max x] of all batches): low is the lower edge of the bin where the cumulative share
    reaches the cut, high the upper edge of the bin where it reaches 1 - cut, clamped to the observed
    range and widened to include 0. Checked against np.percentile over all batches."""
    bins = 256
    cut = (100.0 - percentile) / 200.0
    r, ref = _run(setup, method="percentile", symmetric=False, percentile=percentile, num_bins=bins)
    for n, v in ref.items():
        lo, hi = float(v.min()), float(v.max())
        left, _ = _hist_threshold(v, lo, hi, bins, cut)
        _, right = _hist_threshold(v, lo, hi, bins, 1.0 - cut)
        want = (min(max(left, lo), 0.0), max(min(right, hi), 0.0))
        assert r[n] == pytest.approx(want, rel=1e-12, abs=1e-12), n
        w = (hi - lo) / bins
        q_lo = float(np.percentile(v, 100.0 * cut, method="inverted_cdf"))
        q_hi = float(np.percentile(v, 100.0 * (1.0 - cut), method="inverted_cdf"))
        assert left <= q_lo <= left + w * (1 + 1e-9), n
        assert right - w * (1 + 1e-9) <= q_hi <= right, n
    # x: both cuts are inside the planted extremes and well outside the last batch's +-0.25
    assert -30.0 < r["x"][0] < -1.0 and 1.0 < r["x"][1] < 40.0


class _CalibSet(_Calib):
    """The part of CalibrationSet that quantize_qdq uses besides the batches."""

    input_hw = SHAPE[2:]
    paths = ["a.jpg", "b.jpg", "c.jpg"]

    def digest(self):
        return "0" * 64

    def describe(self):
        return "3 hand-made batches"


@pytest.mark.parametrize("method", ["minmax", "percentile"])
def test_quantize_qdq_with_the_streamed_ranges(setup, tmp_path, method):
    """quantize_qdq end to end on every supported onnxruntime (the oldest-versions lane runs 1.16.3, which has
    neither ``calibration_cache_path`` nor ``save_tensors_data``): the Q/DQ model uses exactly the streamed
    ranges -- the activation scale of the conv input is max|x| / 127 (TensorRT layout, symmetric), the cache
    written beside it reads back as those ranges -- and it runs in ONNX Runtime close to the FP32 model."""
    import onnxruntime as ort

    from yolo4.calib.qdq import quantize_qdq
    from yolo4.calib.ranges import read_ort_cache

    path, calib, ref = setup
    cache = tmp_path / "ranges.json"
    out = tmp_path / "q.onnx"
    res = quantize_qdq(path, out, _CalibSet(calib.batches), method=method, keep_float_default=False,
                       layout="tensorrt", calibration_cache=cache, log=lambda *a: None)
    assert res.path == out and out.is_file() and cache.is_file()
    expect = activation_ranges(path, calib, ["Conv"], method=method, symmetric=True, progress=False)
    got = read_ort_cache(cache)
    assert set(got) == set(expect) and all(np.allclose(got[n], expect[n], rtol=1e-6) for n in got)
    q = onnx.load(str(out))
    ops = [n.op_type for n in q.graph.node]
    assert ops.count("QuantizeLinear") >= 2 and "Conv" in ops  # the input and the weights
    scales = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    x_q = next(n for n in q.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "x")
    assert np.isclose(float(scales[x_q.input[1]]), expect["x"][1] / 127.0, rtol=1e-6)
    xs = calib.batches[0]
    fp = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": xs})[0]
    i8 = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"x": xs})[0]
    assert np.abs(i8 - fp).max() < 0.05 * np.abs(fp).max()
