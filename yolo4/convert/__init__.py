"""Model conversion: torch -> ONNX export (decode in graph, simplified, FP16, verified), and the
torch-free ONNX -> TensorRT engine builder.

Submodules: ``onnx_export`` (torch -> ONNX, simplify, FP16, metadata, atomic write after
verification), ``verify`` (compare any two model forms on a deterministic input, per-precision
tolerances; torch-free at import), ``export_cache`` (export once, reuse; bounded), ``fp16`` and
``graph`` (ONNX graph passes), ``engine_builder`` (ONNX -> TensorRT / TensorRT for RTX engine +
metadata; torch-free, Python 3.8) and ``trt_compat`` (every TensorRT version difference, in one place).

Submodules are imported on first use (PEP 562 ``__getattr__``), so ``import yolo4.convert`` and the
torch-free submodules load neither torch nor onnx: the engine builder placed here runs on a Jetson
without torch. ``from yolo4.convert import export_onnx`` imports the exporter (and torch) then.
"""

import importlib
from typing import Any, Dict

#: public name -> submodule that defines it (imported lazily)
_EXPORTS: Dict[str, str] = {
    # torch -> ONNX (imports torch, onnx)
    "DEFAULT_OPSET": "onnx_export",
    "ExportResult": "onnx_export",
    "export_info": "onnx_export",
    "export_onnx": "onnx_export",
    # comparing two model forms (torch-free at import: reused by the engine builder)
    "ExportVerificationError": "verify",
    "TOLERANCES": "verify",
    "Tolerance": "verify",
    "VerifyResult": "verify",
    "compare_backends": "verify",
    "compare_outputs": "verify",
    "reference_input": "verify",
    "torch_callable": "verify",
    "verify_onnx": "verify",
    # the ONNX export cache (imports torch, onnx)
    "cache_key": "export_cache",
    "export_cached": "export_cache",
    "state_digest": "export_cache",
    # ONNX -> TensorRT engine (torch-free; tensorrt / tensorrt_rtx imported when building)
    "BuildResult": "engine_builder",
    "build_engine": "engine_builder",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module("." + module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
