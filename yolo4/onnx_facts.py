"""What yolo4 reads from an ONNX file without TensorRT: its yolo4 metadata (:class:`ModelInfo`), its
precision (Q/DQ nodes -> INT8, float16 initializers -> FP16, else FP32), its input and outputs, and
whether it ends with the DIoU-NMS plugin. A ground-floor contract: the engine builder, the Q/DQ
quantizer and the pipeline's INT8 export read it.

Python 3.8; ``onnx`` is imported inside :func:`read_onnx_facts` (:func:`import_onnx`), not when this
module is imported; :func:`onnx_precision` takes a loaded ``onnx.ModelProto``.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Union

from .errors import ModelFileError, Yolo4Error
from .model_info import ModelInfo
from .nms_params import NMS_METADATA_KEYS, PLUGIN_OP

__all__ = ["OnnxFacts", "read_onnx_facts", "onnx_precision", "import_onnx"]

PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class OnnxFacts:
    """What the builder reads from an ONNX file without TensorRT.

    Attributes:
        path: the file.
        info: its yolo4 :class:`ModelInfo` (``metadata_props``).
        precision: ``int8`` (has QuantizeLinear nodes: Q/DQ), ``fp16`` (float16 initializers) or ``fp32``.
        input_name: the graph input (``images``).
        input_shape: ``[B, C, H, W]``, -1 for a symbolic dimension.
        output_names: graph outputs.
        metadata: all ``metadata_props`` as ``{key: value}``.
        plugin_nodes: names of the graph's ``DIoUNMS_TRT`` nodes (``yolo4 export --nms plugin``).
    """

    path: Path
    info: ModelInfo
    precision: str
    input_name: str
    input_shape: List[int]
    output_names: List[str]
    metadata: Dict[str, str] = field(default_factory=dict)
    plugin_nodes: List[str] = field(default_factory=list)

    @property
    def needs_diou_plugin(self) -> bool:
        """The graph ends with the DIoU-NMS plugin (a ``DIoUNMS_TRT`` node, metadata ``nms=plugin``)."""
        return bool(self.plugin_nodes) or self.metadata.get("nms") == "plugin"

    def model_metadata(self) -> Dict[str, str]:
        """What the engine's sidecar records of the model: :meth:`ModelInfo.to_metadata` plus the
        NMS in the graph (``nms``, ``nms_params``), which the runtime reads to load the plugin and
        to know the outputs."""
        out = dict(self.info.to_metadata())
        for key in NMS_METADATA_KEYS:
            if key in self.metadata:
                out[key] = self.metadata[key]
        return out


def import_onnx() -> Any:
    """The ``onnx`` module.

    Raises:
        Yolo4Error: the onnx package is missing (how to install it).
    """
    try:
        import onnx
    except ImportError:
        raise Yolo4Error("reading the ONNX needs the onnx package: pip install onnx (or pip install "
                         "'yolo4[export]')") from None
    return onnx


def onnx_precision(model: Any) -> str:
    """``int8`` when ``model`` (an ``onnx.ModelProto``) has ``QuantizeLinear`` nodes (a Q/DQ model),
    ``fp16`` when it has float16 initializers or constants, else ``fp32``."""
    nodes = list(model.graph.node)
    if any(n.op_type == "QuantizeLinear" for n in nodes):
        return "int8"
    float16 = 10  # onnx.TensorProto.FLOAT16
    if any(t.data_type == float16 for t in model.graph.initializer):
        return "fp16"
    for n in nodes:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value" and a.t.data_type == float16:
                    return "fp16"
    return "fp32"


def read_onnx_facts(path: PathLike) -> OnnxFacts:
    """Read an ONNX file's graph (not its external weights) for the builder.

    Raises:
        ModelFileError: missing file, not an ONNX model, no yolo4 metadata, not one 4-D input.
        Yolo4Error: the onnx package is missing.
    """
    p = Path(os.fspath(path))
    if not p.is_file():
        raise ModelFileError("ONNX model not found" if not p.exists() else "not a file", p)
    onnx = import_onnx()
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as e:  # protobuf DecodeError, OSError, ...
        why = " ".join(str(e).split()) or type(e).__name__
        raise ModelFileError(f"not an ONNX model ({why[:120]})", p) from None
    if not model.graph.node:
        raise ModelFileError("not an ONNX model (no graph nodes)", p)
    meta = {m.key: m.value for m in model.metadata_props}
    info = ModelInfo.from_metadata(meta, p)
    inits = {t.name for t in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in inits]
    if len(inputs) != 1:
        raise ModelFileError(f"expected one input tensor [B,3,H,W], found {len(inputs)}", p)
    dims = inputs[0].type.tensor_type.shape.dim
    shape = [int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in dims]
    if len(shape) != 4:
        raise ModelFileError(f"expected a 4-D input [B,3,H,W], found {len(shape)} dimensions", p)
    plugin_nodes = [n.name or "%s_%d" % (n.op_type, i) for i, n in enumerate(model.graph.node) if n.op_type == PLUGIN_OP]
    return OnnxFacts(p, info, onnx_precision(model), inputs[0].name, shape,
                     [o.name for o in model.graph.output], meta, plugin_nodes)
