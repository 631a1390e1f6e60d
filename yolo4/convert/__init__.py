"""torch -> ONNX export (decode in graph, simplified, FP16 option, verified with ONNX Runtime).

See :mod:`yolo4.convert.onnx_export` for the graph contract and the opset/Mish choice, and
:mod:`yolo4.convert.fp16` for the FP16 conversion.
"""

from .onnx_export import (
    DEFAULT_OPSET,
    ExportResult,
    ExportVerificationError,
    VerifyResult,
    export_cached,
    export_onnx,
    reference_input,
    state_digest,
    verify_onnx,
)

__all__ = ["DEFAULT_OPSET", "ExportResult", "ExportVerificationError", "VerifyResult", "export_cached",
           "export_onnx", "reference_input", "state_digest", "verify_onnx"]
