"""Model conversion: torch -> ONNX export (decode in graph, simplified, FP16, verified), and later the
torch-free ONNX -> TensorRT engine builder.

Submodules are imported on first use (PEP 562 ``__getattr__``), so ``import yolo4.convert`` and the
torch-free submodules load neither torch nor onnx: the engine builder placed here runs on a Jetson
without torch. ``from yolo4.convert import export_onnx`` imports the exporter (and torch) then.
"""

import importlib
from typing import Any, Dict

#: public name -> submodule that defines it (imported lazily)
_EXPORTS: Dict[str, str] = {
    "DEFAULT_OPSET": "onnx_export",
    "ExportResult": "onnx_export",
    "ExportVerificationError": "onnx_export",
    "VerifyResult": "onnx_export",
    "export_cached": "onnx_export",
    "export_onnx": "onnx_export",
    "reference_input": "onnx_export",
    "state_digest": "onnx_export",
    "verify_onnx": "onnx_export",
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
