"""The INT8 job, once: FP32 ONNX -> calibration set -> activation ranges -> Q/DQ INT8 ONNX.

:func:`quantize_int8` is what ``yolo4 export --int8`` (through :func:`yolo4.pipeline.export_int8`)
and the Q/DQ path of ``yolo4 build-engine --int8`` run: the calibration images are chosen and batched
by :func:`yolo4.calib.images.calibration_set` at the model's input size and resize mode (read from
the ONNX), quantization is :func:`yolo4.calib.qdq.quantize_qdq`, or
:func:`yolo4.calib.sensitivity.sensitivity_search` when a ``target_drop`` is given. Every default is
a constant of :mod:`yolo4.calib.defaults` (re-exported here), so the same inputs give the same file
whichever way it is asked for.

The sensitivity search measures mAP, which calib cannot do itself (the evaluation sits above it in
the layer order): the caller passes ``make_evaluator(val_data) -> evaluate(onnx_path) -> mAP``
(:func:`yolo4.pipeline.onnx_evaluator`).

Python 3.8, torch-free; onnx and onnxruntime are imported when it runs (``pip install yolo4[export]``).
"""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

from ..errors import Yolo4Error
from .defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_IMPLICIT_METHOD,
    DEFAULT_LAYOUT,
    DEFAULT_METHOD,
    DEFAULT_NUM_IMAGES,
    DEFAULT_PERCENTILE,
    DEFAULT_SEED,
)

PathLike = Union[str, "os.PathLike[str]"]
Log = Callable[[str], Any]
#: ``make_evaluator(val_data) -> evaluate(onnx_path) -> mAP@[.5:.95]`` (0..1), for ``target_drop``
MakeEvaluator = Callable[[str], Callable[[PathLike], float]]

__all__ = ["Int8Result", "quantize_int8", "calibration_batch", "report_path_for", "DEFAULT_NUM_IMAGES",
           "DEFAULT_BATCH_SIZE", "DEFAULT_SEED", "DEFAULT_METHOD", "DEFAULT_IMPLICIT_METHOD", "DEFAULT_PERCENTILE",
           "DEFAULT_LAYOUT"]


@dataclass
class Int8Result:
    """What :func:`quantize_int8` wrote.

    Attributes:
        result: the :class:`yolo4.calib.qdq.QdqResult` of the Q/DQ ONNX (``.path``, ``.quantized``,
            ``.excluded``, ``.calib_digest``, ...).
        calib_set: the :class:`yolo4.calib.images.CalibrationSet` it was calibrated on.
        report: the :class:`yolo4.calib.sensitivity.SensitivityReport` (``target_drop`` only).
        report_path: where the report's markdown was written (``target_drop`` only).
    """

    result: Any
    calib_set: Any
    report: Any = None
    report_path: Optional[Path] = None

    @property
    def path(self) -> Path:
        return Path(os.fspath(self.result.path))


def calibration_batch(input_shape: Sequence[Any]) -> int:
    """Images per calibration batch for an ONNX input ``[B, C, H, W]``: its batch when fixed (ONNX
    Runtime refuses any other), else :data:`DEFAULT_BATCH_SIZE` (symbolic or ``-1`` batch)."""
    b = input_shape[0] if len(input_shape) else -1
    return int(b) if isinstance(b, int) and not isinstance(b, bool) and b > 0 else DEFAULT_BATCH_SIZE


def report_path_for(output: PathLike) -> Path:
    """Where the sensitivity report of the Q/DQ ONNX ``output`` goes: ``<stem>-int8-report.md`` beside it."""
    out = Path(os.fspath(output))
    return out.with_name(out.stem + "-int8-report.md")


def quantize_int8(fp32_onnx: PathLike, output: PathLike, calib_data: PathLike,
                  calib_images: int = DEFAULT_NUM_IMAGES, calib_method: str = DEFAULT_METHOD,
                  exclude: Sequence[str] = (), layout: str = DEFAULT_LAYOUT, seed: int = DEFAULT_SEED,
                  percentile: float = DEFAULT_PERCENTILE, batch_size: Optional[int] = None,
                  target_drop: Optional[float] = None, val_data: Optional[str] = None,
                  make_evaluator: Optional[MakeEvaluator] = None, log: Log = print) -> Int8Result:
    """Write the Q/DQ INT8 ONNX ``output`` of the FP32 export ``fp32_onnx``, calibrated on ``calib_data``.

    Args:
        fp32_onnx: FP32 ONNX from ``yolo4 export`` (its ``ModelInfo`` gives the input size and resize mode).
        output: the Q/DQ ONNX to write (atomically).
        calib_data: a folder, a glob, a ``.txt`` list or a dataset (:func:`yolo4.calib.images.select_images`).
        calib_images: number of calibration images (seeded selection, class-balanced where labelled).
        calib_method: ``minmax``, ``percentile`` or ``entropy`` (:data:`yolo4.calib.qdq.CALIB_METHODS`).
        exclude: layers kept in float besides the defaults (``--int8-exclude``: darknet index or node glob).
        layout: Q/DQ placement, ``tensorrt`` or ``onnxruntime`` (``--int8-target``).
        seed: seed of the image selection.
        percentile: kept share of |activation| for ``percentile``, in percent.
        batch_size: images per calibration batch; None: :func:`calibration_batch` of the ONNX input.
        target_drop: when given, :func:`yolo4.calib.sensitivity.sensitivity_search` returns layers to
            float until the mAP@[.5:.95] drop vs FP32 on ``val_data`` (default ``calib_data``) is at
            most this many AP points, and its report is written to :func:`report_path_for` ``(output)``.
        make_evaluator: ``make_evaluator(val_data) -> evaluate(onnx_path) -> mAP`` (needed with
            ``target_drop``; :func:`yolo4.pipeline.onnx_evaluator`).
        log: one line per step.

    Returns:
        :class:`Int8Result`.

    Raises:
        Yolo4Error: a bad calibration source, a pattern matching nothing, an unknown method or layout,
            ``target_drop`` without ``make_evaluator``. ModelFileError: an unreadable ONNX.
    """
    from ..onnx_facts import read_onnx_facts
    from .images import calibration_set

    if target_drop is not None and make_evaluator is None:
        raise Yolo4Error("the INT8 sensitivity search (target_drop) needs make_evaluator: the mAP of an ONNX model")
    facts = read_onnx_facts(fp32_onnx)
    batch = int(batch_size) if batch_size is not None else calibration_batch(facts.input_shape)
    cs = calibration_set(calib_data, facts.info, num_images=calib_images, batch_size=batch, seed=seed, log=log)
    if target_drop is None:
        from .qdq import quantize_qdq

        res = quantize_qdq(fp32_onnx, output, cs, method=calib_method, exclude=tuple(exclude), layout=layout,
                           percentile=percentile, log=log)
        return Int8Result(res, cs)
    from ..fileio import atomic_write_text
    from .sensitivity import sensitivity_search

    assert make_evaluator is not None
    val = val_data or os.fspath(calib_data)
    rep = sensitivity_search(fp32_onnx, output, cs, val, make_evaluator(val), target_drop=target_drop,
                             method=calib_method, exclude=tuple(exclude), layout=layout, percentile=percentile,
                             log=log)
    report_path = report_path_for(output)
    atomic_write_text(report_path, rep.markdown())
    log("sensitivity report: %s (drop %.2f AP, target %.2f: %s)" % (
        report_path, rep.drop, target_drop, "met" if rep.met else "NOT met"))
    return Int8Result(rep.result, cs, rep, report_path)
