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


# ---- the contract's edges: which tensors, the defaults, one-signed and constant tensors, padding ---------

def _sub_relu_model(path, batch="N"):
    """x -> Sub(1.0) -> y -> Relu -> z, batch dimension ``batch`` (symbolic by default)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 1, 4, 4])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, [batch, 1, 4, 4])
    one = numpy_helper.from_array(np.array(1.0, np.float32), "one")
    nodes = [helper.make_node("Sub", ["x", "one"], ["y"], name="sub"),
             helper.make_node("Relu", ["y"], ["z"], name="relu")]
    m = helper.make_model(helper.make_graph(nodes, "g", [x], [z], initializer=[one]),
                          opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path


def _positive_batches():
    """x in [0.25, 0.75] (multiples of 1/16): y = x - 1 in [-0.75, -0.25], z = relu(y) = 0 everywhere."""
    rng = np.random.default_rng(1)
    return [(rng.integers(4, 13, (2, 1, 4, 4)) / 16.0).astype(np.float32) for _ in range(3)]


@pytest.fixture(scope="module")
def signed(tmp_path_factory):
    return _sub_relu_model(tmp_path_factory.mktemp("ranges") / "subrelu.onnx"), _Calib(_positive_batches())


def test_only_the_tensors_of_the_given_op_types(setup):
    """Conv alone: its input and output; the Relu's output (the graph's output) is not calibrated."""
    path, calib, _ = setup
    assert set(activation_ranges(path, calib, ["Conv"], method="minmax", progress=False)) == {"x", "y"}
    assert set(activation_ranges(path, calib, ["Relu"], method="minmax", progress=False)) == {"y", "z"}


def test_the_defaults_are_symmetric_percentile_99_999(setup):
    path, calib, _ = setup
    default = activation_ranges(path, calib, ["Conv"], progress=False)
    assert default == activation_ranges(path, calib, ["Conv"], method="percentile", symmetric=True,
                                        percentile=99.999, progress=False)
    assert all(lo == -hi for lo, hi in default.values())
    assert default != activation_ranges(path, calib, ["Conv"], method="percentile", symmetric=True,
                                        percentile=90.0, progress=False)


def test_minmax_ignores_the_percentile(setup):
    path, calib, ref = setup
    r = activation_ranges(path, calib, ["Conv", "Relu"], method="minmax", percentile=50.0, progress=False)
    assert r["x"] == (-40.0, 40.0)


def test_an_unknown_method_is_refused_by_name(setup):
    path, calib, _ = setup
    with pytest.raises(ValueError, match="minmax or percentile, not 'entropy'"):
        activation_ranges(path, calib, ["Conv"], method="entropy", progress=False)


def test_nothing_is_written_to_the_working_folder(setup, tmp_path, monkeypatch):
    """ONNX Runtime's calibrator writes its augmented model to the current folder unless told otherwise."""
    path, calib, _ = setup
    monkeypatch.chdir(tmp_path)
    activation_ranges(path, calib, ["Conv"], method="minmax", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_asymmetric_ranges_of_one_signed_tensors_include_zero(signed):
    """x > 0 only: low is 0, high max x; y < 0 only: low min y, high 0 (both methods, exact: the bins hold
    multiples of 1/16 and 100 % keeps everything)."""
    path, calib = signed
    xs = np.concatenate(calib.batches)
    for method in ("minmax", "percentile"):
        r = activation_ranges(path, calib, ["Sub"], method=method, symmetric=False, percentile=100.0,
                              num_bins=64, progress=False)
        assert r["x"] == (0.0, float(xs.max())), method
        assert r["y"] == (float((xs - 1).min()), 0.0), method


def test_symmetric_range_takes_the_larger_magnitude_side(signed):
    """y in [-0.75, -0.25]: max|y| = 0.75 is its *minimum*; the histogram spans [0, max|y|] exactly."""
    path, calib = signed
    y = np.concatenate(calib.batches) - 1.0
    t = float(np.abs(y).max())
    assert t == 0.75
    for method in ("minmax", "percentile"):
        r = activation_ranges(path, calib, ["Sub"], method=method, symmetric=True, percentile=100.0,
                              num_bins=64, progress=False)
        assert r["y"] == (-t, t), method
    # 50 %: the upper edge of the |y| bin (64 bins over [0, 0.75]) where half of the values are reached
    r = activation_ranges(path, calib, ["Sub"], method="percentile", symmetric=True, percentile=50.0,
                          num_bins=64, progress=False)
    _, upper = _hist_threshold(np.abs(y).ravel(), 0.0, t, 64, 0.5)
    assert r["y"] == pytest.approx((-upper, upper), rel=1e-12) and upper < t


@pytest.mark.parametrize("symmetric", [True, False])
def test_a_constant_zero_tensor_gets_a_range_without_error(signed, symmetric):
    """z = relu(x - 1) is 0 everywhere: the percentile pass's histogram needs a non-empty range."""
    path, calib = signed
    r = activation_ranges(path, calib, ["Relu"], method="percentile", symmetric=symmetric, progress=False)
    lo, hi = r["z"]
    assert lo <= 0.0 <= hi and hi - lo <= 1e-11


class _PaddingCalib(_Calib):
    """Pads a short last batch as CalibrationSet does: its own images repeated up to ``batch_size``."""

    batch_size = 4

    def batch(self, index, pad=True):
        b = self.batches[index]
        if pad and len(b) < self.batch_size:
            b = np.ascontiguousarray(b[np.arange(self.batch_size) % len(b)])
        return b


def test_percentile_counts_every_image_once(tmp_path):
    """The short last batch is taken unpadded: padding repeats its images, which would weigh them 4x in the
    histogram. Here the last image is all large values; the 90 % threshold over the real images (14 of 16
    images small) differs from the one over the padded set (4 large of 19 images)."""
    path = _sub_relu_model(tmp_path / "subrelu.onnx")
    rng = np.random.default_rng(2)
    small = [(rng.integers(0, 5, (4, 1, 4, 4)) / 16.0).astype(np.float32) for _ in range(3)]  # <= 0.25
    last = np.full((1, 1, 4, 4), 3.0, np.float32)
    calib = _PaddingCalib(small + [last])
    r = activation_ranges(path, calib, ["Sub"], method="percentile", symmetric=True, percentile=90.0,
                          num_bins=128, progress=False)
    xs = np.abs(np.concatenate(small + [last])).ravel()
    _, upper = _hist_threshold(xs, 0.0, 3.0, 128, 0.9)
    assert r["x"] == pytest.approx((-upper, upper), rel=1e-12)
    padded = np.abs(np.concatenate(small + [last] * 4)).ravel()
    assert _hist_threshold(padded, 0.0, 3.0, 128, 0.9)[1] != upper  # the premise: padding would show


# ---- the ONNX Runtime calibration cache --------------------------------------------------------------------

@pytest.mark.parametrize("method", ["minmax", "percentile"])
def test_the_cache_without_save_tensors_data_is_onnxruntimes_own(tmp_path, monkeypatch, method):
    """onnxruntime 1.16 has no save_tensors_data: the JSON written then equals what a newer onnxruntime's
    save_tensors_data writes for the same ranges, and both read back as the ranges (float32-rounded)."""
    from onnxruntime.quantization import calibrate

    from yolo4.calib.ranges import read_ort_cache, write_ort_cache

    if not hasattr(calibrate, "save_tensors_data"):
        pytest.skip("this onnxruntime has no save_tensors_data to compare with (1.16: the lane)")
    ranges = {"x": (-1.5, 2.25), "conv_out": (0.0, 0.1)}
    write_ort_cache(ranges, method, tmp_path / "ort.json")
    monkeypatch.delattr(calibrate, "save_tensors_data")
    write_ort_cache(ranges, method, tmp_path / "ours.json")
    import json

    ort_json = json.loads((tmp_path / "ort.json").read_text())
    ours = json.loads((tmp_path / "ours.json").read_text())
    assert ours == ort_json
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ort.json", "ours.json"]  # no temporary file left
    want = {n: (float(np.float32(lo)), float(np.float32(hi))) for n, (lo, hi) in ranges.items()}
    assert read_ort_cache(tmp_path / "ours.json") == want == read_ort_cache(tmp_path / "ort.json")


@pytest.mark.parametrize("text", ["{not json", '{"data": {"x": {"lowest": 1}}}', '[1, 2]'])
def test_reading_a_file_that_is_not_a_cache_names_it(tmp_path, text):
    from yolo4.calib.ranges import read_ort_cache

    p = tmp_path / "bad.json"
    p.write_text(text)
    with pytest.raises(ValueError, match=r"bad\.json: not an ONNX Runtime calibration cache"):
        read_ort_cache(p)
    with pytest.raises(ValueError, match=r"missing\.json: not an ONNX Runtime calibration cache"):
        read_ort_cache(tmp_path / "missing.json")


def _one_batch_calib(values):
    """One batch [N, 1, 4, 4] holding ``values`` (size a multiple of 16)."""
    return _Calib([np.asarray(values, np.float32).reshape(-1, 1, 4, 4)])


def test_asymmetric_cut_is_half_the_rest_on_each_side(tmp_path):
    """p = 60: 20 % cut on each side, on 1,024 distinct values of y = x - 1 each in its own bin. The share 0.2
    falls between two steps of the cumulative share that a slightly different cut (e.g. 40 / 201) would not
    separate from 0.2: the thresholds are those of exactly 0.2 and 0.8."""
    path = _sub_relu_model(tmp_path / "subrelu.onnx")
    x = (np.arange(1024) + 0.5) / 512.0  # y = x - 1 in (-1, 1), exact in float32
    y = (x - 1.0).astype(np.float32)
    bins = 4096
    r = activation_ranges(path, _one_batch_calib(x), ["Sub"], method="percentile", symmetric=False,
                          percentile=60.0, num_bins=bins, progress=False)
    lo, hi = float(y.min()), float(y.max())
    left, _ = _hist_threshold(y, lo, hi, bins, 0.2)
    _, right = _hist_threshold(y, lo, hi, bins, 0.8)
    assert r["y"] == pytest.approx((left, right), rel=1e-12)
    # the premise: cuts of 40 / 201 % would pick other bins
    assert _hist_threshold(y, lo, hi, bins, 0.4 / 2.01)[0] != left
    assert _hist_threshold(y, lo, hi, bins, 1 - 0.4 / 2.01)[1] != right


def test_the_default_percentile_clips_the_top_thousandth_of_a_percent(tmp_path):
    """99.999 % of 200,000 values keeps all but the top 2: two outliers at 100 (bulk <= 15/16) fall outside
    the default symmetric range, and inside it at 100 %."""
    path = _sub_relu_model(tmp_path / "subrelu.onnx")
    x = (np.arange(200_000) % 16 / 16.0).astype(np.float32)
    x[[7, 123_456]] = 100.0
    calib = _one_batch_calib(x)
    t = activation_ranges(path, calib, ["Sub"], progress=False)["x"][1]
    assert 15 / 16 <= t <= 15 / 16 + 100.0 / 2048  # the upper edge of the bin of 15/16 (2,048 bins, [0, 100])
    assert activation_ranges(path, calib, ["Sub"], percentile=100.0, progress=False)["x"] == (-100.0, 100.0)


class _Bar:
    """Records what activation_ranges tells its tqdm progress bar."""

    made = []

    def __init__(self, **kw):
        self.kw, self.n, self.closed = kw, 0, False
        _Bar.made.append(self)

    def update(self, k):
        self.n += k

    def close(self):
        self.closed = True


@pytest.mark.parametrize("method,passes", [("minmax", 1), ("percentile", 2)])
@pytest.mark.parametrize("progress", [True, False])
def test_the_progress_bar_counts_batches_of_every_pass_and_ends_full(setup, monkeypatch, method, passes, progress):
    """"calibrating" in batches: one step per batch and pass (percentile reads the set twice), ending at its
    total and closed; shown unless progress=False (disable=None: tqdm's own "only on a terminal")."""
    import tqdm

    path, calib, _ = setup
    _Bar.made = []
    monkeypatch.setattr(tqdm, "tqdm", _Bar)
    activation_ranges(path, calib, ["Conv"], method=method, progress=progress)
    (bar,) = _Bar.made
    assert bar.kw == {"total": passes * len(calib), "desc": "calibrating", "unit": "batch", "leave": False,
                      "disable": None if progress else True}
    assert bar.n == passes * len(calib) and bar.closed


def test_progress_is_shown_by_default(setup, monkeypatch):
    import tqdm

    path, calib, _ = setup
    _Bar.made = []
    monkeypatch.setattr(tqdm, "tqdm", _Bar)
    activation_ranges(path, calib, ["Conv"], method="minmax")
    assert _Bar.made[0].kw["disable"] is None
