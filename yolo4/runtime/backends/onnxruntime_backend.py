"""ONNX Runtime backend: runs a yolo4-exported ``.onnx``, with or without NMS at the end of the graph.

The model's :class:`ModelInfo` comes from the ONNX ``metadata_props`` written by
``yolo4.convert.onnx_export`` (keys :data:`yolo4.model_info.METADATA_KEYS`). The graph must
have one input (``[B, 3, H, W]``, float32 or float16) and either the decoded outputs ``boxes [B, N,
4]`` and ``scores [B, N, C]`` (found by name, else the first two outputs) or, for a model exported
with ``yolo4 export --nms plugin|efficient|trt``, EfficientNMS_TRT's four outputs
(:data:`~yolo4.nms_params.NMS_OUTPUT_NAMES`; ``nms``/``nms_params`` from the metadata).
FP16 models take and return float32 here (cast at the boundary). A model with a fixed batch
dimension accepts any batch: it is split into chunks of that size, the last one zero-padded.

NMS in the graph, on ONNX Runtime:

* ``trt`` (ONNX ``NonMaxSuppression`` + TopK/Gather): standard ops, ONNX Runtime runs the file as it is.
* ``plugin`` (``DIoUNMS_TRT``) and ``efficient`` (``EfficientNMS_TRT``) are TensorRT plugins ONNX
  Runtime has no kernel for. With ``onnxruntime-extensions`` installed (the ``export`` extra) they run
  as its Python custom ops (:func:`register_nms_custom_ops`) backed by the numpy reference
  (:func:`~yolo4.runtime.detector.reference_nms_outputs`), so the exported file itself runs end to
  end: the node's domain (``trt.plugins``) is rewritten in memory to onnxruntime-extensions' one, the
  attributes are read by the op. Without it (``nms_ops="split"``), the graph is cut at the node's
  inputs and the same reference runs after it on the node's attributes. Either way the outputs are
  the reference's (``EfficientNMS_TRT`` as plain IoU-NMS with its 4096-candidate cap; it compares
  ``>=`` where the reference compares ``>``, which differs only on exact ties with a threshold).

``onnxruntime`` (and ``onnx`` / ``onnxruntime_extensions`` for plugin nodes) is imported when a
backend is created, not when this module is imported. Python 3.8, torch-free.
"""

import os
import threading
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ...errors import ModelFileError
from ...model_info import ModelInfo
from ...nms_params import (
    EFFICIENT_NMS_MAX_CANDIDATES,
    EFFICIENT_NMS_OP,
    NMS_KIND_CODES,
    NMS_OUTPUT_NAMES,
    PLUGIN_OP,
    NmsParams,
    read_nms_metadata,
)
from .base import Backend

__all__ = ["OnnxRuntimeBackend", "physical_cores", "read_onnx_model_info", "CUSTOM_NMS_OPS", "EFFICIENT_NMS_OP",
           "EFFICIENT_NMS_MAX_CANDIDATES", "nms_node_params", "register_nms_custom_ops"]

#: TensorRT plugin ops a yolo4 NMS-ended ONNX can end with: op type -> ``yolo4 export --nms`` kind
CUSTOM_NMS_OPS = {PLUGIN_OP: "plugin", EFFICIENT_NMS_OP: "efficient"}
_NMS_KIND_NAMES = {v: k for k, v in NMS_KIND_CODES.items()}
_register_lock = threading.Lock()
_registered: Dict[str, Any] = {}


def _f32(value: Any) -> float:
    """A float32 attribute as the decimal it was written from (0.45 -> 0.45, not 0.449999988)."""
    return float(str(np.float32(value)))


def nms_node_params(op_type: str, attrs: Mapping[str, Any]) -> Tuple[NmsParams, Optional[Tuple[int, int]], int]:
    """What an NMS node does, from its attributes.

    Args:
        op_type: ``DIoUNMS_TRT`` or ``EfficientNMS_TRT``.
        attrs: ``{name: value}`` of the node (ONNX attributes; strings as str).

    Returns:
        ``(params, input_hw, pad_class)``: the :class:`NmsParams` the node applies, the NMS frame
        ``(H, W)`` (None = raw pixels: IoU-NMS does not depend on it) and the class id of padding rows.

    Raises:
        ValueError: an unknown op, a missing attribute, or EfficientNMS_TRT options the reference
            does not model (``background_class`` != -1, ``score_activation``, ``box_coding`` 1).
    """
    try:
        if op_type == PLUGIN_OP:
            kind = int(attrs["nms_kind"])
            if kind not in _NMS_KIND_NAMES:
                raise ValueError(f"{PLUGIN_OP}: unknown nms_kind code {kind}")
            params = NmsParams(score_threshold=_f32(attrs["score_threshold"]),
                               iou_threshold=_f32(attrs["iou_threshold"]), nms_kind=_NMS_KIND_NAMES[kind],
                               beta_nms=_f32(attrs["beta_nms"]), max_output_boxes=int(attrs["max_output_boxes"]),
                               top_k=int(attrs["top_k"]), class_agnostic=bool(int(attrs["class_agnostic"])))
            return params, (int(attrs["input_height"]), int(attrs["input_width"])), -1
        if op_type == EFFICIENT_NMS_OP:
            for name, want in (("background_class", -1), ("score_activation", 0), ("box_coding", 0)):
                if int(attrs.get(name, want)) != want:
                    raise ValueError(f"{EFFICIENT_NMS_OP} with {name}={attrs[name]} is not supported here "
                                     f"(only {name}={want})")
            params = NmsParams(score_threshold=_f32(attrs["score_threshold"]),
                               iou_threshold=_f32(attrs["iou_threshold"]), nms_kind="default",
                               max_output_boxes=int(attrs["max_output_boxes"]), top_k=EFFICIENT_NMS_MAX_CANDIDATES,
                               class_agnostic=bool(int(attrs.get("class_agnostic", 0))))
            return params, None, 0
    except KeyError as e:
        raise ValueError(f"{op_type} node lacks attribute {e.args[0]!r}") from None
    raise ValueError(f"not an NMS op: {op_type!r}")


def _run_nms_node(op_type: str, boxes: np.ndarray, scores: np.ndarray,
                  attrs: Mapping[str, Any]) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from ..detector import reference_nms_outputs

    params, hw, pad = nms_node_params(op_type, attrs)
    return reference_nms_outputs(np.asarray(boxes, np.float32), np.asarray(scores, np.float32), params,
                                 input_hw=hw, pad_class=pad)


def register_nms_custom_ops() -> Tuple[str, str]:
    """Register ``DIoUNMS_TRT`` and ``EfficientNMS_TRT`` as onnxruntime-extensions Python ops (once
    per process) backed by the numpy reference.

    Returns:
        ``(library path, op domain)``: pass the library to
        ``SessionOptions.register_custom_ops_library``; the ops exist in that domain
        (``ai.onnx.contrib``: onnxruntime-extensions' Python ops cannot choose theirs).

    Raises:
        ImportError: onnxruntime-extensions is not installed.
    """
    from onnxruntime_extensions import PyCustomOpDef, default_opset_domain, get_library_path, onnx_op

    with _register_lock:
        if not _registered:
            f, i, s = PyCustomOpDef.dt_float, PyCustomOpDef.dt_int64, PyCustomOpDef.dt_string
            outputs = [PyCustomOpDef.dt_int32, f, f, PyCustomOpDef.dt_int32]
            plugin_attrs = {"score_threshold": f, "iou_threshold": f, "nms_kind": i, "beta_nms": f,
                            "max_output_boxes": i, "top_k": i, "class_agnostic": i, "input_width": i,
                            "input_height": i, "plugin_version": s, "plugin_namespace": s}
            efficient_attrs = {"score_threshold": f, "iou_threshold": f, "max_output_boxes": i,
                               "background_class": i, "score_activation": i, "class_agnostic": i,
                               "box_coding": i, "plugin_version": s}

            def diou_nms(boxes, scores, **attrs):
                return _run_nms_node(PLUGIN_OP, boxes, scores, attrs)

            def efficient_nms(boxes, scores, **attrs):
                return _run_nms_node(EFFICIENT_NMS_OP, boxes, scores, attrs)

            _registered[PLUGIN_OP] = onnx_op(op_type=PLUGIN_OP, inputs=[f, f], outputs=outputs,
                                             attrs=plugin_attrs)(diou_nms)
            _registered[EFFICIENT_NMS_OP] = onnx_op(op_type=EFFICIENT_NMS_OP, inputs=[f, f], outputs=outputs,
                                                    attrs=efficient_attrs)(efficient_nms)
    return get_library_path(), default_opset_domain()


def _node_attrs(node) -> Dict[str, Any]:
    import onnx

    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        out[a.name] = v.decode("utf-8") if isinstance(v, bytes) else v
    return out

_OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
               "all": "ORT_ENABLE_ALL"}
_EXEC_MODES = {"sequential": "ORT_SEQUENTIAL", "parallel": "ORT_PARALLEL"}


def physical_cores() -> int:
    """Number of physical CPU cores this process may use (>= 1).

    Counts distinct (physical id, core id) pairs in ``/proc/cpuinfo`` among the CPUs in this
    process's affinity mask (Linux); elsewhere ``os.cpu_count()``. Hyper-threads slow ONNX Runtime's
    intra-op pool down rather than up, hence physical cores.
    """
    try:
        allowed = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        allowed = None
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        cores = set()
        for block in text.strip().split("\n\n"):
            kv = {}
            for line in block.splitlines():
                if ":" in line:
                    k, v = line.split(":", 1)
                    kv[k.strip()] = v.strip()
            if "processor" not in kv:
                continue
            if allowed is not None and int(kv["processor"]) not in allowed:
                continue
            cores.add((kv.get("physical id", "0"), kv.get("core id", kv["processor"])))
        if cores:
            return len(cores)
    except (OSError, ValueError):
        pass
    n = len(allowed) if allowed else (os.cpu_count() or 1)
    return max(1, n)


def read_onnx_model_info(meta: Dict[str, str], path: str) -> ModelInfo:
    """Parse yolo4 metadata (``{key: str}`` of ONNX ``metadata_props``) of the model at ``path``.

    Raises:
        ModelFileError: the metadata is absent or invalid (message names ``path``).
    """
    return ModelInfo.from_metadata(meta, path)


class OnnxRuntimeBackend(Backend):
    """Run a yolo4 ONNX model with ONNX Runtime (CUDA execution provider first when available).

    Args:
        path: the ``.onnx`` file.
        intra_op_num_threads: threads of the intra-op pool; default :func:`physical_cores`.
        graph_optimization_level: ``"all"`` (default, ``ORT_ENABLE_ALL``), ``"extended"``,
            ``"basic"``, ``"disable"``, or an ``onnxruntime.GraphOptimizationLevel``.
        execution_mode: ``"sequential"`` (default) or ``"parallel"``, or an ``onnxruntime.ExecutionMode``.
        providers: explicit ONNX Runtime providers list; default ``CUDAExecutionProvider`` (when the
            installed onnxruntime has it) then ``CPUExecutionProvider``.
        session_options: a prepared ``onnxruntime.SessionOptions`` (the options above are applied to it).
        threads: alias of ``intra_op_num_threads`` (the CLI's ``--threads``).
        nms_ops: how ``DIoUNMS_TRT`` / ``EfficientNMS_TRT`` nodes run: ``"auto"`` (default:
            onnxruntime-extensions Python ops when installed, else ``"split"``), ``"extensions"``
            (required) or ``"split"`` (graph cut at the node, numpy reference after it).

    Attributes:
        info: :class:`ModelInfo` from the model's metadata.
        providers: the providers the session actually uses.
        nms: None (outputs ``boxes``/``scores``) or the graph's NMS (``plugin``, ``efficient``,
            ``trt``; outputs final detections); nms_params: its :class:`NmsParams` (metadata, else
            the node's attributes; None when unknown).
        nms_impl: how that NMS runs here (``"onnxruntime"``, ``"onnxruntime-extensions"``,
            ``"numpy reference after the graph"``), None without NMS.

    Raises:
        ModelFileError: the file is missing, not a loadable ONNX model, lacks yolo4 metadata, or
            has neither the ``boxes``/``scores`` outputs nor the four NMS outputs.
        ImportError: onnxruntime is not installed.
    """

    name = "onnxruntime"

    def __init__(self, path: Union[str, "os.PathLike[str]"], intra_op_num_threads: Optional[int] = None,
                 graph_optimization_level: object = "all", execution_mode: object = "sequential",
                 providers: Optional[Sequence[object]] = None, session_options: object = None,
                 threads: Optional[int] = None, nms_ops: str = "auto") -> None:
        import onnxruntime as ort

        if nms_ops not in ("auto", "extensions", "split"):
            raise ValueError(f"nms_ops must be auto, extensions or split, got {nms_ops!r}")
        self._session = None
        self._split: Optional[Tuple[str, Dict[str, Any]]] = None  # (op type, attributes) run after the graph
        self.nms_impl: Optional[str] = None
        node_kind: Optional[str] = None
        node_params: Optional[NmsParams] = None
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise ModelFileError("ONNX model file not found", self.path)
        so = session_options if session_options is not None else ort.SessionOptions()
        so.intra_op_num_threads = int(intra_op_num_threads or threads or physical_cores())
        so.graph_optimization_level = self._enum(ort.GraphOptimizationLevel, graph_optimization_level,
                                                 _OPT_LEVELS, "graph_optimization_level")
        so.execution_mode = self._enum(ort.ExecutionMode, execution_mode, _EXEC_MODES, "execution_mode")
        if providers is None:
            available = ort.get_available_providers()
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        try:
            self._session = ort.InferenceSession(self.path, sess_options=so, providers=list(providers))
        except Exception as e:  # onnxruntime raises its own pybind exception types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if not any(op in str(e) for op in CUSTOM_NMS_OPS):
                raise ModelFileError(f"cannot load ONNX model: {first}", self.path) from None
            self._session, node_kind, node_params = self._load_nms_model(ort, so, list(providers), nms_ops, first)
        self.providers = self._session.get_providers()
        meta = dict(self._session.get_modelmeta().custom_metadata_map)
        self.info = read_onnx_model_info(meta, self.path)

        inputs = self._session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ModelFileError("expected one input [B,3,H,W], got %s"
                                 % [(i.name, i.shape) for i in inputs], self.path)
        self._input = inputs[0].name
        self._input_fp16 = inputs[0].type == "tensor(float16)"
        dim0 = inputs[0].shape[0]
        self._fixed_batch = int(dim0) if isinstance(dim0, int) and dim0 > 0 else None
        outputs = {o.name: o for o in self._session.get_outputs()}
        if self._split is None and all(n in outputs for n in NMS_OUTPUT_NAMES):
            self._outputs = list(NMS_OUTPUT_NAMES)
            kind, params = read_nms_metadata(meta)
            self.nms = kind or node_kind or "trt"
            self.nms_params = params or node_params
            self.nms_impl = self.nms_impl or "onnxruntime"
            return
        if "boxes" in outputs and "scores" in outputs:
            self._outputs = ["boxes", "scores"]
        elif len(outputs) == 2:
            self._outputs = [o.name for o in self._session.get_outputs()]
        else:
            raise ModelFileError(f"expected outputs 'boxes' [B,N,4] and 'scores' [B,N,C], or "
                                 f"{', '.join(NMS_OUTPUT_NAMES)}; got {sorted(outputs)}", self.path)
        c = outputs[self._outputs[1]].shape[-1]
        if isinstance(c, int) and c != self.info.num_classes:
            raise ModelFileError(f"scores have {c} classes but the metadata names {self.info.num_classes}",
                                 self.path)
        if self._split is not None:
            kind, params = read_nms_metadata(meta)
            self.nms = kind or node_kind
            self.nms_params = params or node_params

    def _load_nms_model(self, ort, so, providers: List[Any], nms_ops: str, error: str):
        """A session for a model ending with a TensorRT NMS plugin node (see the module docstring):
        ``(session, kind, node params)``."""
        try:
            import onnx
        except ImportError:
            raise ModelFileError(f"cannot load ONNX model: {error} (running its TensorRT NMS node on ONNX "
                                 "Runtime needs the onnx package: pip install onnx onnxruntime-extensions)",
                                 self.path) from None
        try:
            model = onnx.load(self.path)
        except Exception as e:  # noqa: BLE001 - protobuf / IO errors
            raise ModelFileError(f"cannot load ONNX model: {e}", self.path) from None
        nodes = [n for n in model.graph.node if n.op_type in CUSTOM_NMS_OPS]
        graph_outputs = [o.name for o in model.graph.output]
        if len(nodes) != 1 or list(nodes[0].output) != graph_outputs or len(nodes[0].input) < 2:
            raise ModelFileError(f"cannot load ONNX model: {error} (expected one {' or '.join(CUSTOM_NMS_OPS)} "
                                 "node producing the graph's outputs)", self.path)
        node = nodes[0]
        attrs = _node_attrs(node)
        try:
            params = nms_node_params(node.op_type, attrs)[0]
        except ValueError as e:
            raise ModelFileError(str(e), self.path) from None
        use_ext = nms_ops == "extensions"
        if nms_ops == "auto":
            try:
                import onnxruntime_extensions  # noqa: F401
                use_ext = True
            except ImportError:
                use_ext = False
        if use_ext:
            try:
                lib, domain = register_nms_custom_ops()
            except ImportError:
                raise ModelFileError("running a model with a TensorRT NMS plugin node on ONNX Runtime needs "
                                     "onnxruntime-extensions: pip install onnxruntime-extensions", self.path) from None
            old_domain = node.domain
            node.domain = domain
            if not any(o.domain == domain for o in model.opset_import):
                model.opset_import.append(onnx.helper.make_opsetid(domain, 1))
            if old_domain and not any(n.domain == old_domain for n in model.graph.node):
                keep = [o for o in model.opset_import if o.domain != old_domain]
                del model.opset_import[:]
                model.opset_import.extend(keep)
            so.register_custom_ops_library(lib)
            self.nms_impl = "onnxruntime-extensions"
        else:
            # cut the graph at the node: its inputs become the outputs, the reference runs after it
            model.graph.node.remove(node)
            del model.graph.output[:]
            model.graph.output.extend(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
                                      for name in list(node.input)[:2])
            self._split = (node.op_type, attrs)
            self.nms_impl = "numpy reference after the graph"
        try:
            session = ort.InferenceSession(model.SerializeToString(), sess_options=so, providers=providers)
        except Exception as e:  # noqa: BLE001 - onnxruntime's own exception types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelFileError(f"cannot load ONNX model: {first}", self.path) from None
        return session, CUSTOM_NMS_OPS[node.op_type], params

    @staticmethod
    def _enum(enum_type, value, table, what):
        if isinstance(value, str):
            key = value.lower()
            if key not in table:
                raise ValueError(f"{what} must be one of {', '.join(table)}, got {value!r}")
            return getattr(enum_type, table[key])
        return value

    @property
    def fixed_batch(self) -> Optional[int]:
        return self._fixed_batch

    def _forward(self, batch: np.ndarray) -> Tuple[np.ndarray, ...]:
        feed = batch.astype(np.float16) if self._input_fp16 else batch
        outs = self._session.run(self._outputs, {self._input: feed})
        if self.nms and self._split is None:  # num_detections, boxes, scores, classes
            return (np.ascontiguousarray(outs[0], dtype=np.int32), np.ascontiguousarray(outs[1], dtype=np.float32),
                    np.ascontiguousarray(outs[2], dtype=np.float32), np.ascontiguousarray(outs[3], dtype=np.int32))
        boxes, scores = (np.ascontiguousarray(o, dtype=np.float32) for o in outs)
        if self._split is not None:
            return _run_nms_node(self._split[0], boxes, scores, self._split[1])
        return boxes, scores

    def _release(self) -> None:
        self._session = None
