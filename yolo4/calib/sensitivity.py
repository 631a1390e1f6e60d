"""INT8 accuracy control: return the most harmful layers to float until the mAP drop is within target.

``yolo4 export --int8 --int8-target-drop 1.0`` runs :func:`sensitivity_search`:

1. Quantize with the defaults (:func:`yolo4.calib.qdq.quantize_qdq`) and measure COCO mAP@[.5:.95]
   of the FP32 and the Q/DQ model on a validation set with the caller's ``evaluate`` (``yolo4 export``
   passes :func:`yolo4.pipeline.onnx_evaluator`: ONNX Runtime, the one eval of ``yolo4 eval``; calib
   sits below the pipeline, so it takes the evaluation as a callback). Within target: done.
2. Rank the quantized layers (:attr:`QdqResult.candidates`: the Convs, plus LeakyReLU and max-pool
   nodes in the ``onnxruntime`` layout) by harm: for each, a model with only that layer quantized
   is run on a few validation images, and harm = the relative L2 error of its ``scores`` output vs
   the FP32 model's (the layer's own damage, free of interactions).
   Activation ranges are calibrated once and reused from ONNX Runtime's range cache, so each
   variant costs one re-quantization and a few forward passes.
3. Return layers to float, most harmful first, measuring mAP after each, until the drop vs FP32
   (in AP points, mAP@[.5:.95] x 100) is within ``target_drop``.

The report (:meth:`SensitivityReport.markdown`, written beside the model) lists every layer with its
harm, the mAP drop after the step that returned it, and the decision (float or int8).

Python 3.8, torch-free; needs onnx and onnxruntime.
"""

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np

from .defaults import DEFAULT_LAYOUT, DEFAULT_METHOD, DEFAULT_PERCENTILE
from .qdq import QdqResult, quantize_qdq

PathLike = Union[str, "os.PathLike[str]"]
Log = Callable[[str], Any]
#: an ONNX model's mAP@[.5:.95] (0..1) on the validation set: ``evaluate(onnx_path) -> float``
Evaluate = Callable[[PathLike], float]

__all__ = ["LayerSensitivity", "SensitivityReport", "sensitivity_search"]


@dataclass
class LayerSensitivity:
    """One INT8 Conv layer in the search.

    Attributes:
        node: ONNX node name (``/layers.<darknet index>/conv/Conv``).
        harm: relative L2 error of ``scores`` vs FP32 when only this layer is quantized.
        drop_after: mAP@[.5:.95] drop vs FP32 in AP points after the step that returned it (None when
            it stayed INT8).
        decision: ``"float"`` or ``"int8"``.
    """

    node: str
    harm: float
    drop_after: Optional[float] = None
    decision: str = "int8"


@dataclass
class SensitivityReport:
    """Outcome of :func:`sensitivity_search` (mAP values are mAP@[.5:.95], 0..1)."""

    fp32_map: float
    int8_map_default: float
    int8_map: float
    target_drop: float
    layers: List[LayerSensitivity] = field(default_factory=list)
    result: Optional[QdqResult] = None

    @property
    def drop(self) -> float:
        """Final drop vs FP32 in AP points (mAP@[.5:.95] x 100)."""
        return 100.0 * (self.fp32_map - self.int8_map)

    @property
    def met(self) -> bool:
        return self.drop <= self.target_drop + 1e-9

    def returned(self) -> List[str]:
        return [layer.node for layer in self.layers if layer.decision == "float"]

    def markdown(self) -> str:
        lines = ["# INT8 sensitivity report", "",
                 "FP32 mAP@[.5:.95] %.4f; INT8 with the default float layers %.4f (drop %.2f AP); "
                 "final %.4f (drop %.2f AP, target %.2f: %s)." % (
                     self.fp32_map, self.int8_map_default, 100 * (self.fp32_map - self.int8_map_default),
                     self.int8_map, self.drop, self.target_drop, "met" if self.met else "NOT met"), ""]
        if self.layers:
            lines += ["| layer | harm (rel. L2 error of scores, only this layer INT8) | mAP drop after "
                      "returning (AP) | decision |",
                      "|---|---|---|---|"]
            for s in self.layers:
                lines.append("| %s | %.4f | %s | %s |" % (s.node, s.harm, "" if s.drop_after is None else
                                                          "%.2f" % s.drop_after, s.decision))
        return "\n".join(lines) + "\n"


def _rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def _scores(path: PathLike, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    out = sess.run(None, {sess.get_inputs()[0].name: x})
    return np.asarray(out[names.index("scores") if "scores" in names else -1], np.float32)


def sensitivity_search(onnx_in: PathLike, onnx_out: PathLike, calib_set, val_data: str, evaluate: Evaluate,
                       target_drop: float = 1.0, val_split: str = "val", method: str = DEFAULT_METHOD,
                       exclude: Sequence[str] = (), layout: str = DEFAULT_LAYOUT,
                       percentile: float = DEFAULT_PERCENTILE, probe_images: int = 8,
                       max_steps: Optional[int] = None, log: Log = print) -> SensitivityReport:
    """Quantize ``onnx_in`` to ``onnx_out`` (Q/DQ INT8), returning layers to float until the mAP drop
    vs FP32 on ``val_data`` is at most ``target_drop`` AP points (steps in the module docstring).

    Args:
        onnx_in: FP32 ONNX export; onnx_out: the Q/DQ ONNX written (the final step's model).
        calib_set: :class:`yolo4.calib.images.CalibrationSet`.
        val_data: labelled dataset spec (``yolo4 eval --data``); val_split: its split (the probe
            images come from it).
        evaluate: ``evaluate(onnx_path) -> mAP@[.5:.95]`` (0..1) of a model on ``val_data``'s
            ``val_split`` (:func:`yolo4.pipeline.onnx_evaluator`).
        target_drop: allowed mAP@[.5:.95] drop in AP points (x 100), >= 0.
        method, exclude, layout, percentile: as :func:`yolo4.calib.qdq.quantize_qdq`.
        probe_images: validation images used to rank layers (the first ones of ``calib_set``'s
            preprocessing applied to ``val_data``'s images).
        max_steps: at most this many layers returned (None: all, if needed).

    Returns:
        :class:`SensitivityReport` (``.result``: the final :class:`QdqResult`).

    Raises:
        Yolo4Error: as :func:`quantize_qdq` and ``yolo4 eval``.
    """
    from ..data.datasets import load_dataset
    from .images import CalibrationSet

    work = Path(tempfile.mkdtemp(prefix="yolo4-sens-"))
    try:
        cache = work / "ranges.json"
        kw: Dict[str, Any] = dict(method=method, exclude=exclude, layout=layout, percentile=percentile,
                                  calibration_cache=cache, log=log)
        res = quantize_qdq(onnx_in, onnx_out, calib_set, **kw)
        log("evaluating FP32 and INT8 on %s (%s)" % (val_data, val_split))
        fp32 = float(evaluate(onnx_in))
        int8 = float(evaluate(onnx_out))
        report = SensitivityReport(fp32, int8, int8, float(target_drop), result=res)
        log("mAP@[.5:.95] FP32 %.4f, INT8 %.4f: drop %.2f AP (target %.2f)"
            % (fp32, int8, report.drop, target_drop))
        if report.met:
            return report
        ds = load_dataset(val_data, val_split)
        paths = [r.path for r in ds.records][:max(1, int(probe_images))]
        probe = CalibrationSet.from_paths(paths, tuple(calib_set.input_hw), calib_set.letter_box,
                                          len(paths)).batch(0, pad=False)
        ref = _scores(onnx_in, probe)
        layers: List[LayerSensitivity] = []
        variant = work / "variant.onnx"
        from tqdm import tqdm

        cands = list(res.candidates)
        for node in tqdm(cands, desc="ranking layers", unit="layer", leave=False, disable=None):
            others = [c for c in cands if c != node]
            quantize_qdq(onnx_in, variant, calib_set, exclude_nodes=others, **kw)
            layers.append(LayerSensitivity(node, _rel_l2(_scores(variant, probe), ref)))
        layers.sort(key=lambda s: -s.harm)
        report.layers = layers
        back: List[str] = []
        for i, layer in enumerate(layers):
            if max_steps is not None and i >= max_steps:
                break
            back.append(layer.node)
            res = quantize_qdq(onnx_in, onnx_out, calib_set, exclude_nodes=back, **kw)
            report.int8_map = float(evaluate(onnx_out))
            layer.decision, layer.drop_after = "float", report.drop
            log("returned %s to float: mAP@[.5:.95] %.4f, drop %.2f AP" % (layer.node, report.int8_map,
                                                                        report.drop))
            if report.met:
                break
        report.result = res
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)
