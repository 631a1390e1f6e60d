"""ONNX Runtime backend: runs a yolo4-exported ``.onnx`` (decoded outputs, no NMS in graph).

The model's :class:`ModelInfo` comes from the ONNX ``metadata_props`` written by
``yolo4.convert.onnx_export`` (keys :data:`yolo4.model_info.METADATA_KEYS`). The graph must
have one input (``[B, 3, H, W]``, float32 or float16) and outputs ``boxes [B, N, 4]`` and
``scores [B, N, C]`` (found by name, else the first two outputs). FP16 models take and return
float32 here (cast at the boundary). A model with a fixed batch dimension accepts any batch: it is
split into chunks of that size, the last one zero-padded.

``onnxruntime`` is imported when a backend is created, not when this module is imported.
Python 3.8, torch-free.
"""

import os
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np

from ...errors import ModelFileError
from ...model_info import ModelInfo
from .base import Backend

__all__ = ["OnnxRuntimeBackend", "physical_cores", "read_onnx_model_info"]

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

    Attributes:
        info: :class:`ModelInfo` from the model's metadata.
        providers: the providers the session actually uses.

    Raises:
        ModelFileError: the file is missing, not a loadable ONNX model, lacks yolo4 metadata, or
            does not have the ``boxes``/``scores`` outputs.
        ImportError: onnxruntime is not installed.
    """

    name = "onnxruntime"

    def __init__(self, path: Union[str, "os.PathLike[str]"], intra_op_num_threads: Optional[int] = None,
                 graph_optimization_level: object = "all", execution_mode: object = "sequential",
                 providers: Optional[Sequence[object]] = None, session_options: object = None,
                 threads: Optional[int] = None) -> None:
        import onnxruntime as ort

        self._session = None
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
            raise ModelFileError(f"cannot load ONNX model: {first}", self.path) from None
        self.providers = self._session.get_providers()
        self.info = read_onnx_model_info(dict(self._session.get_modelmeta().custom_metadata_map), self.path)

        inputs = self._session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ModelFileError("expected one input [B,3,H,W], got %s"
                                 % [(i.name, i.shape) for i in inputs], self.path)
        self._input = inputs[0].name
        self._input_fp16 = inputs[0].type == "tensor(float16)"
        dim0 = inputs[0].shape[0]
        self._fixed_batch = int(dim0) if isinstance(dim0, int) and dim0 > 0 else None
        outputs = {o.name: o for o in self._session.get_outputs()}
        if "boxes" in outputs and "scores" in outputs:
            self._outputs = ["boxes", "scores"]
        elif len(outputs) == 2:
            self._outputs = [o.name for o in self._session.get_outputs()]
        else:
            raise ModelFileError(f"expected outputs 'boxes' [B,N,4] and 'scores' [B,N,C], got {sorted(outputs)} "
                                 "(a model with NMS in the graph is for TensorRT)", self.path)
        c = outputs[self._outputs[1]].shape[-1]
        if isinstance(c, int) and c != self.info.num_classes:
            raise ModelFileError(f"scores have {c} classes but the metadata names {self.info.num_classes}",
                                 self.path)

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

    def _forward(self, batch: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        feed = batch.astype(np.float16) if self._input_fp16 else batch
        boxes, scores = self._session.run(self._outputs, {self._input: feed})
        return (np.ascontiguousarray(boxes, dtype=np.float32), np.ascontiguousarray(scores, dtype=np.float32))

    def _release(self) -> None:
        self._session = None
