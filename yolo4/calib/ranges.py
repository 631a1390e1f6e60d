"""Activation ranges for explicit (Q/DQ) INT8, streamed one batch at a time.

ONNX Runtime's histogram calibrators keep every intermediate tensor of every calibration image in
memory until the end (``HistogramCalibrater.collect_data``: ~70 MB per 416x416 yolov4-tiny image,
>30 GB for 500 images), and feeding them a batch at a time re-bins the merged histograms, which moves
the percentile thresholds (measured: 1.35 instead of 0.38 AP lost on yolov4-tiny). So ``minmax`` and
``percentile`` ranges are computed here, exactly and with one batch in memory:

* pass 1: per tensor, min and max over all calibration images;
* pass 2 (``percentile``): per tensor, a histogram with ``num_bins`` fixed bins over the pass-1 range
  (of ``|x|`` for symmetric quantization, of ``x`` otherwise), summed over batches; the threshold is
  the upper edge of the bin where the cumulative share reaches ``percentile`` (symmetric: ``[-t, t]``;
  asymmetric: ``(100 - percentile) / 2`` percent cut on each side), clamped to the observed range.

The tensors are those ONNX Runtime's calibrator selects for the op types being quantized (inputs
and outputs of those nodes), read through its augmented model; the result is written as ONNX
Runtime's calibration cache (:func:`write_ort_cache`), which ``quantize_static`` then uses as is.
``entropy`` stays ONNX Runtime's own (KL-divergence) calibrator.

Python 3.8; onnxruntime imported inside the functions.
"""

import inspect
import json
import os
import tempfile
from pathlib import Path
from typing import Dict, Sequence, Tuple, Union

import numpy as np

from .defaults import DEFAULT_PERCENTILE

PathLike = Union[str, "os.PathLike[str]"]
Ranges = Dict[str, Tuple[float, float]]

__all__ = ["activation_ranges", "write_ort_cache", "read_ort_cache", "DEFAULT_NUM_BINS"]

DEFAULT_NUM_BINS = 2048


def _session(onnx_path: PathLike, op_types: Sequence[str], work: Path):
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    kw = {}
    if "providers" in inspect.signature(create_calibrator).parameters:  # not in onnxruntime 1.16 (CPU there)
        kw["providers"] = ["CPUExecutionProvider"]
    cal = create_calibrator(Path(os.fspath(onnx_path)), list(op_types),
                            augmented_model_path=str(work / "augmented.onnx"),
                            calibrate_method=CalibrationMethod.Percentile,
                            extra_options={"symmetric": False}, **kw)
    sess = cal.infer_session
    names = [o.name for o in sess.get_outputs()]
    wanted = sorted(set(cal.tensors_to_calibrate) & set(names))
    return sess, names, wanted


def activation_ranges(onnx_path: PathLike, calib_set, op_types: Sequence[str], method: str = "percentile",
                      symmetric: bool = True, percentile: float = DEFAULT_PERCENTILE, num_bins: int = DEFAULT_NUM_BINS,
                      progress: bool = True) -> Ranges:
    """Calibrated ``(low, high)`` per activation tensor (float, the model's units).

    Args:
        onnx_path: float32 ONNX model with one input.
        calib_set: :class:`yolo4.calib.images.CalibrationSet` (unpadded batches are used).
        op_types: op types to be quantized (their input and output tensors are calibrated).
        method: ``"minmax"`` or ``"percentile"``.
        symmetric: symmetric ranges ``[-t, t]`` (TensorRT's INT8) or asymmetric ``[low, high]``.
        percentile: kept share of values for ``percentile``, in percent (0, 100].
        num_bins: histogram bins of the percentile pass.

    Raises:
        ValueError: unknown method.
    """
    if method not in ("minmax", "percentile"):
        raise ValueError("activation_ranges computes minmax or percentile, not %r" % method)
    from tqdm import tqdm

    with tempfile.TemporaryDirectory(prefix="yolo4-ranges-") as tmp:
        sess, names, wanted = _session(onnx_path, op_types, Path(tmp))
        idx = {n: names.index(n) for n in wanted}
        input_name = sess.get_inputs()[0].name
        lo = {n: np.inf for n in wanted}
        hi = {n: -np.inf for n in wanted}
        passes = 2 if method == "percentile" else 1
        bar = tqdm(total=passes * len(calib_set), desc="calibrating", unit="batch", leave=False,
                   disable=None if progress else True)
        for i in range(len(calib_set)):
            outs = sess.run(None, {input_name: calib_set.batch(i, pad=False)})
            for n in wanted:
                a = outs[idx[n]]
                lo[n] = min(lo[n], float(a.min()))
                hi[n] = max(hi[n], float(a.max()))
            bar.update(1)
        if method == "minmax":
            bar.close()
            if symmetric:
                return {n: (-max(abs(lo[n]), abs(hi[n])), max(abs(lo[n]), abs(hi[n]))) for n in wanted}
            return {n: (min(lo[n], 0.0), max(hi[n], 0.0)) for n in wanted}
        edges = {}
        for n in wanted:
            if symmetric:
                edges[n] = (0.0, max(abs(lo[n]), abs(hi[n]), 1e-12))
            else:
                edges[n] = (lo[n], hi[n] if hi[n] > lo[n] else lo[n] + 1e-12)
        hist = {n: np.zeros(num_bins, np.int64) for n in wanted}
        for i in range(len(calib_set)):
            outs = sess.run(None, {input_name: calib_set.batch(i, pad=False)})
            for n in wanted:
                a = outs[idx[n]].ravel()
                h, _ = np.histogram(np.abs(a) if symmetric else a, bins=num_bins, range=edges[n])
                hist[n] += h
            bar.update(1)
        bar.close()
    out: Ranges = {}
    for n in wanted:
        e = np.linspace(edges[n][0], edges[n][1], num_bins + 1)
        cdf = np.cumsum(hist[n]) / max(int(hist[n].sum()), 1)
        if symmetric:
            t = float(e[min(int(np.searchsorted(cdf, percentile / 100.0)) + 1, num_bins)])
            t = min(t, edges[n][1])
            out[n] = (-t, t)
        else:
            cut = (100.0 - percentile) / 200.0
            left = float(e[int(np.searchsorted(cdf, cut))])
            right = float(e[min(int(np.searchsorted(cdf, 1.0 - cut)) + 1, num_bins)])
            out[n] = (min(max(left, lo[n]), 0.0), max(min(right, hi[n]), 0.0))
    return out


def write_ort_cache(ranges: Ranges, method: str, path: PathLike) -> None:
    """Write ``ranges`` as ONNX Runtime's calibration cache (``save_tensors_data``'s JSON) for ``method``.

    onnxruntime 1.16 (the newest for Python 3.8 on aarch64, JetPack 5) has no ``save_tensors_data``: the
    same JSON is written here then (atomically), and :func:`read_ort_cache` reads it back.
    """
    from onnxruntime.quantization import calibrate

    cm = {"minmax": calibrate.CalibrationMethod.MinMax, "percentile": calibrate.CalibrationMethod.Percentile}[method]
    save = getattr(calibrate, "save_tensors_data", None)
    if save is not None:
        save(ort_tensors_data(ranges, cm), os.fspath(path))
        return
    from ..fileio import atomic_path

    def arr(v: float) -> dict:
        return {"data": float(np.float32(v)), "dtype": "float32", "CLS": "numpy.array"}

    payload = {"CLS": "TensorsData",
               "data": {n: {"lowest": arr(lo), "highest": arr(hi), "CLS": "TensorData"} for n, (lo, hi) in ranges.items()},
               "calibration_method": {"CLS": "CalibrationMethod", "value": str(cm)}, "smooth_quant": False}
    with atomic_path(Path(os.fspath(path)), ".json") as tmp:
        Path(tmp).write_text(json.dumps(payload))


def ort_tensors_data(ranges: Ranges, calibration_method):
    """``ranges`` as ONNX Runtime's ``TensorsData`` (what its calibrators' ``compute_data`` returns)."""
    from onnxruntime.quantization.calibrate import TensorData, TensorsData

    return TensorsData(calibration_method, {
        n: TensorData(lowest=np.array(lo, np.float32), highest=np.array(hi, np.float32))
        for n, (lo, hi) in ranges.items()})


def read_ort_cache(path: PathLike) -> Ranges:
    """The ``(low, high)`` per tensor of an ONNX Runtime calibration cache (``save_tensors_data``'s JSON, or
    :func:`write_ort_cache`'s).

    Raises:
        ValueError: not such a cache (the message names the file).
    """
    p = Path(os.fspath(path))
    try:
        d = json.loads(p.read_text())
        return {n: (float(t["lowest"]["data"]), float(t["highest"]["data"])) for n, t in d["data"].items()}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError("%s: not an ONNX Runtime calibration cache (%s)" % (p, e)) from None
