"""INT8 calibration (torch-free, onnx-free at import, Python 3.8).

- :mod:`yolo4.calib.images`: which images (:func:`select_images`: seeded, class-balanced where labels
  exist) and their batches (:class:`CalibrationSet`, :func:`calibration_set`), made by
  :func:`yolo4.runtime.preprocess.preprocess`, the same preprocessing as inference.
- :mod:`yolo4.calib.cache`: TensorRT's calibration cache with a yolo4 header
  (:class:`CalibrationCache`, :func:`header_for`), reused only for the same model, images,
  preprocessing, method, input shape and TensorRT version.
- :mod:`yolo4.calib.calibrators`: implicit INT8 calibrators for TensorRT 8.5 - 10.x
  (:func:`make_calibrator`: entropy or min-max; ``tensorrt`` is passed in, ``pycuda`` imported lazily).
- :mod:`yolo4.calib.qdq`: explicit INT8, a Q/DQ ONNX by ONNX Runtime's ``quantize_static``
  (:func:`quantize_qdq`; TensorRT 8.5 - 11 and TensorRT for RTX build it; ONNX Runtime runs it).
- :mod:`yolo4.calib.sensitivity`: :func:`sensitivity_search`, layers back to float until the mAP drop
  vs FP32 is within a target.
- :mod:`yolo4.calib.int8`: :func:`quantize_int8`, the whole INT8 job (FP32 ONNX -> calibration set ->
  ranges -> Q/DQ ONNX, optionally with the sensitivity search) that ``yolo4 export --int8``,
  :func:`yolo4.pipeline.export_int8` and ``yolo4 build-engine --int8`` (Q/DQ) all run.
- :mod:`yolo4.calib.defaults`: every INT8 default (images, batch, seed, method, percentile, layout),
  defined once.

The names above are importable from ``yolo4.calib`` directly; their modules load on first use.
"""

import importlib
from typing import Any

_EXPORTS = {
    "CalibrationSet": "images", "calibration_set": "images", "select_images": "images",
    "DEFAULT_NUM_IMAGES": "defaults", "MIN_RECOMMENDED_IMAGES": "images", "PREPROCESS_VERSION": "images",
    "CalibrationCache": "cache", "header_for": "cache",
    "make_calibrator": "calibrators", "check_method": "calibrators", "METHODS": "calibrators",
    "quantize_qdq": "qdq", "QdqResult": "qdq", "CALIB_METHODS": "qdq", "QDQ_LAYOUTS": "qdq",
    "sensitivity_search": "sensitivity", "SensitivityReport": "sensitivity",
    "quantize_int8": "int8", "Int8Result": "int8",
    "DEFAULT_BATCH_SIZE": "defaults", "DEFAULT_SEED": "defaults", "DEFAULT_METHOD": "defaults",
    "DEFAULT_IMPLICIT_METHOD": "defaults", "DEFAULT_PERCENTILE": "defaults", "DEFAULT_LAYOUT": "defaults",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))
