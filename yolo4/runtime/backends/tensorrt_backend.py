"""TensorRT backend: runs a ``yolo4 build-engine`` engine (``.engine`` / ``.plan``) with TensorRT (8.5 ...
11.x) or TensorRT for RTX, and pycuda for the device memory.

Opening an engine, in this order (each failure is one line naming the engine and what to do):

1. its metadata sidecar (:func:`~yolo4.runtime.engine_meta.read_engine_meta`): the model's
   :class:`ModelInfo`, the NMS in its graph (``nms``/``nms_params`` of the source ONNX), the
   optimization profile (:attr:`~yolo4.runtime.engine_meta.EngineMeta.batch_range`) and the
   TensorRT flavour/release that built it;
2. the TensorRT module of that flavour (``tensorrt`` or ``tensorrt_rtx``), imported here, and the
   release check (an engine runs only on the release that built it);
3. pycuda and the GPU (:func:`~yolo4.runtime.engine_meta.cuda_device`), then
   :func:`~yolo4.runtime.engine_meta.check_engine_compat` (compute capability);
4. plugin libraries (:func:`plugin_libraries_to_load`: the ones recorded in the metadata, and the
   DIoU-NMS plugin of ``yolo4 build-plugin`` for an engine ending with ``DIoUNMS_TRT``);
5. deserialization, one execution context, one CUDA stream, and the buffers.

I/O is by tensor name only (``num_io_tensors``, ``get_tensor_name``, ``get_tensor_mode``,
``get_tensor_dtype``, ``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``: every
release from 8.5 on; the binding-index API is gone in 10). Page-locked host buffers and device
buffers are planned (:func:`plan_buffers`) and allocated once, for the largest batch the engine
takes, and reused: a batch of ``b`` copies host -> device asynchronously, sets the input shape,
enqueues, copies the outputs back asynchronously and synchronizes the stream once.

The pure parts (:class:`TensorDesc`, :func:`numpy_dtype`, :func:`plan_buffers`,
:func:`select_outputs`, :func:`plugin_libraries_to_load`) need neither TensorRT nor a GPU and are
what the CPU test suite checks; the GPU path runs only on a machine with TensorRT and a driver
(``yolo4 selftest`` on the target).

Python 3.8, torch-free; ``tensorrt`` / ``tensorrt_rtx`` and ``pycuda`` are imported when a backend is
created, not when this module is imported.
"""

import importlib
import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ...errors import ModelFileError, Yolo4Error
from ..engine_meta import (
    AHEAD_OF_TIME,
    EngineMeta,
    check_engine_compat,
    cuda_device,
    flavour_name,
    read_engine_meta,
)
from ..nms_params import NMS_OUTPUT_NAMES
from .base import Backend, read_nms_metadata

__all__ = ["TensorRTBackend", "TensorDesc", "TensorBuffer", "numpy_dtype", "plan_buffers", "select_outputs",
           "plugin_libraries_to_load", "INSTALL"]

PathLike = Union[str, "os.PathLike[str]"]

#: flavour -> (Python module, what to install)
INSTALL: Dict[str, Tuple[str, str]] = {
    "tensorrt": ("tensorrt", "pip install tensorrt (on a Jetson: JetPack's python3-libnvinfer)"),
    "tensorrt-rtx": ("tensorrt_rtx", "pip install tensorrt-rtx"),
}

#: TensorRT ``DataType`` member name -> numpy dtype (BF16, FP8, FP4, INT4, E8M0 have no numpy dtype)
_DTYPES: Dict[str, str] = {"FLOAT": "float32", "HALF": "float16", "INT8": "int8", "INT32": "int32",
                           "INT64": "int64", "UINT8": "uint8", "BOOL": "bool"}


def numpy_dtype(trt_dtype: Any) -> np.dtype:
    """The numpy dtype of a TensorRT ``DataType`` (a member, or its name: ``FLOAT``, ``DataType.HALF``).

    Raises:
        ValueError: a type numpy cannot hold (BF16, FP8, FP4, INT4, E8M0) or an unknown one.
    """
    name = getattr(trt_dtype, "name", None) or str(trt_dtype)
    name = str(name).rsplit(".", 1)[-1].upper()
    if name not in _DTYPES:
        raise ValueError(f"TensorRT data type {name} has no numpy equivalent (engine I/O must be one of "
                         f"{', '.join(sorted(_DTYPES))})")
    return np.dtype(_DTYPES[name])


@dataclass(frozen=True)
class TensorDesc:
    """One I/O tensor of an engine as TensorRT describes it.

    Attributes:
        name: the tensor's name (``images``, ``boxes``, ...).
        is_input: ``get_tensor_mode(name) == TensorIOMode.INPUT``.
        shape: the engine's shape; -1 marks a dynamic dimension (only the batch, dimension 0, may be).
        dtype: numpy dtype (:func:`numpy_dtype` of ``get_tensor_dtype(name)``).
    """

    name: str
    is_input: bool
    shape: Tuple[int, ...]
    dtype: np.dtype


@dataclass(frozen=True)
class TensorBuffer:
    """A tensor's buffer for one batch size: ``shape`` with the batch resolved, ``nbytes`` of it."""

    name: str
    is_input: bool
    shape: Tuple[int, ...]
    dtype: np.dtype

    @property
    def size(self) -> int:
        """Number of elements."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize


def plan_buffers(descs: Sequence[TensorDesc], batch: int) -> List[TensorBuffer]:
    """Shapes, dtypes and sizes of every I/O tensor for a batch of ``batch``.

    Dimension 0 is the batch for every tensor (yolo4 engines: ``images [B,3,H,W]``, ``boxes [B,N,4]``,
    ``scores [B,N,C]``, or ``num_detections [B,1]`` ...): a -1 there becomes ``batch``; a fixed one
    must equal it. Any other dynamic dimension is refused (data-dependent output shapes are not
    something a yolo4 engine has).

    Raises:
        ValueError: ``batch < 1``, a tensor without dimensions, a fixed batch dimension other than
            ``batch``, or a dynamic non-batch dimension.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    out = []
    for d in descs:
        if not d.shape:
            raise ValueError(f"tensor {d.name!r} has no batch dimension")
        if any(int(v) < 0 for v in d.shape[1:]):
            raise ValueError(f"tensor {d.name!r} has a dynamic dimension besides the batch: {list(d.shape)}")
        b = int(d.shape[0])
        if b >= 0 and b != batch:
            raise ValueError(f"tensor {d.name!r} has a fixed batch of {b}, not {batch}")
        out.append(TensorBuffer(d.name, d.is_input, (int(batch),) + tuple(int(v) for v in d.shape[1:]), d.dtype))
    return out


def select_outputs(descs: Sequence[TensorDesc]) -> Tuple[List[str], bool]:
    """The outputs a yolo4 engine returns, in order, and whether they are the NMS outputs.

    Returns:
        ``(names, nms)``: the four :data:`~yolo4.runtime.nms_params.NMS_OUTPUT_NAMES` (``nms`` True)
        when the engine has them all, else ``["boxes", "scores"]`` (by name, else the two outputs).

    Raises:
        ValueError: the engine has neither (one line listing its outputs).
    """
    names = [d.name for d in descs if not d.is_input]
    if all(n in names for n in NMS_OUTPUT_NAMES):
        return list(NMS_OUTPUT_NAMES), True
    if "boxes" in names and "scores" in names:
        return ["boxes", "scores"], False
    if len(names) == 2:
        return names, False
    raise ValueError(f"expected outputs 'boxes' [B,N,4] and 'scores' [B,N,C], or {', '.join(NMS_OUTPUT_NAMES)}; "
                     f"got {sorted(names)}")


def plugin_libraries_to_load(recorded: Sequence[str], needs_diou_plugin: bool, default_plugin: Optional[str],
                             exists: Callable[[str], bool] = os.path.isfile) -> List[str]:
    """The plugin libraries to load before deserializing, in order.

    Args:
        recorded: :attr:`EngineMeta.plugin_libraries` (what the build loaded).
        needs_diou_plugin: the engine ends with ``DIoUNMS_TRT`` (metadata ``nms`` is ``plugin``).
        default_plugin: :func:`yolo4.plugins.default_plugin_path` (what ``yolo4 build-plugin`` writes),
            or None.
        exists: file test (injectable for tests).

    Returns:
        The recorded libraries that exist; a recorded DIoU-NMS library (same file name as the
        default) that no longer exists is replaced by ``default_plugin``; when the engine needs the
        DIoU-NMS plugin and none of those is it, ``default_plugin`` is added. A missing recorded
        library that is not the DIoU-NMS plugin stays in the list (loading it says it is missing).
    """
    base = os.path.basename(default_plugin) if default_plugin else None
    out: List[str] = []
    for lib in recorded:
        if not exists(lib) and default_plugin and os.path.basename(lib) == base:
            lib = default_plugin
        if lib not in out:
            out.append(lib)
    has_diou = any(base is not None and os.path.basename(p) == base for p in out)
    if needs_diou_plugin and default_plugin and not has_diou:
        out.append(default_plugin)
    return out


def _first_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text or type(e).__name__


def _import_tensorrt(flavour: str, version: str, where: str) -> Any:
    """The module of ``flavour`` (``tensorrt`` / ``tensorrt_rtx``); a one-line Yolo4Error when absent."""
    module, install = INSTALL[flavour]
    try:
        return importlib.import_module(module)
    except ImportError as e:
        if getattr(e, "name", None) == module:
            raise Yolo4Error(f"running this engine needs the {module} Python package (the engine was built with "
                             f"{flavour_name(flavour, version)}), which is not installed: {install}", where) from None
        raise Yolo4Error(f"import {module} failed: {_first_line(e)} (is the TensorRT / CUDA library path set "
                         "up?)", where) from None


def _import_pycuda(where: str) -> Any:
    try:
        import pycuda.driver as cuda
    except ImportError as e:
        raise Yolo4Error(f"running a TensorRT engine needs pycuda ({_first_line(e)}): pip install "
                         "'yolo4[trt]' (or pycuda)", where) from None
    return cuda


class TensorRTBackend(Backend):
    """Run a yolo4 TensorRT engine (see the module docstring for what happens when).

    Args:
        path: the engine (``.engine`` / ``.plan``) with its ``.json`` metadata sidecar beside it.
        device: CUDA device index (default 0).

    Attributes:
        info: :class:`ModelInfo` from the metadata.
        meta: the :class:`~yolo4.runtime.engine_meta.EngineMeta`.
        nms, nms_params: the NMS in the engine's graph (None: outputs ``boxes``/``scores``).
        plugins: the plugin libraries loaded for it.

    Raises:
        Yolo4Error (ModelFileError): missing engine or metadata; TensorRT or pycuda not installed;
            another TensorRT flavour/release or GPU architecture than the engine's; no CUDA GPU; a
            plugin library missing; TensorRT cannot deserialize the plan; unexpected I/O tensors.
    """

    name = "tensorrt"

    def __init__(self, path: PathLike, device: int = 0) -> None:
        self.path = os.fspath(path)
        self._cuda: Any = None
        self._ctx: Any = None
        self._engine: Any = None
        self._context: Any = None
        self._stream: Any = None
        self._runtime: Any = None
        self._trt: Any = None
        self._host: Dict[str, np.ndarray] = {}
        self._dev: Dict[str, Any] = {}
        self.plugins: List[str] = []
        if not os.path.isfile(self.path):
            raise ModelFileError("engine not found", self.path)
        self.meta: EngineMeta = read_engine_meta(self.path)
        self.info = self.meta.model_info()
        kind, params = read_nms_metadata(self.meta.model)
        self.nms, self.nms_params = kind, params
        lo, _, hi = self.meta.batch_range
        self._fixed = None if self.meta.dynamic_batch else int(self.meta.input_shape[0])
        self._min_batch, self._max_batch = (int(lo), int(hi)) if self._fixed is None else (self._fixed, self._fixed)

        trt = _import_tensorrt(self.meta.trt_flavour, self.meta.trt_version, self.path)
        version = str(getattr(trt, "__version__", "0"))
        # the release first: it needs no GPU (a stand-in ahead-of-time meta skips the GPU rules)
        check_engine_compat(replace(self.meta, compute_capability=AHEAD_OF_TIME, target_compute_capabilities=[]),
                            self.meta.trt_flavour, version, "8.0")
        cuda = _import_pycuda(self.path)
        gpu = cuda_device(int(device))
        if gpu is None:
            raise Yolo4Error(f"no CUDA GPU {int(device)} (no NVIDIA driver or no such device): a TensorRT "
                             "engine runs on an NVIDIA GPU; use the ONNX model on ONNX Runtime here (--onnx "
                             f"{self.meta.built_onnx or self.meta.onnx_path})", self.path)
        check_engine_compat(self.meta, self.meta.trt_flavour, version, gpu.compute_capability, gpu.name)
        try:
            self._open(trt, cuda, int(device))
        except BaseException:
            self._release()
            raise

    # -- loading --------------------------------------------------------------------------------------

    def _load_plugins(self, trt: Any, logger: Any) -> None:
        from ...plugins import default_plugin_path, load_plugin_library

        libs = plugin_libraries_to_load(self.meta.plugin_libraries, self.nms == "plugin",
                                        os.fspath(default_plugin_path()))
        for lib in libs:
            load_plugin_library(lib)  # one-line Yolo4Error when missing or unloadable
        self.plugins = libs
        init = getattr(trt, "init_libnvinfer_plugins", None)
        if init is not None:  # TensorRT's own plugins (EfficientNMS_TRT)
            init(logger, "")

    def _open(self, trt_module: Any, cuda: Any, device: int) -> None:
        if TYPE_CHECKING:
            import tensorrt as trt
        else:
            trt = trt_module
        cuda.init()
        self._cuda = cuda
        self._trt = trt_module
        self._ctx = cuda.Device(device).retain_primary_context()  # the context TensorRT's runtime API uses
        self._ctx.push()
        try:
            logger = trt.Logger(trt.Logger.WARNING)
            self._load_plugins(trt_module, logger)
            with open(self.path, "rb") as f:
                plan = f.read()
            runtime = trt.Runtime(logger)
            engine = runtime.deserialize_cuda_engine(plan)
            if engine is None:
                raise ModelFileError("TensorRT could not deserialize the engine (see the TensorRT message above); "
                                     "rebuild it with `yolo4 build-engine`", self.path)
            self._runtime = runtime
            self._engine = engine
            descs = []
            for i in range(engine.num_io_tensors):
                name = engine.get_tensor_name(i)
                try:
                    dtype = numpy_dtype(engine.get_tensor_dtype(name))
                except ValueError as e:
                    raise ModelFileError(f"tensor {name!r}: {e}", self.path) from None
                dims = engine.get_tensor_shape(name)
                descs.append(TensorDesc(name, engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
                                        tuple(int(dims[k]) for k in range(len(dims))), dtype))
            self._descs = descs
            inputs = [d for d in descs if d.is_input]
            if len(inputs) != 1 or len(inputs[0].shape) != 4:
                raise ModelFileError("expected one input [B,3,H,W], got %s"
                                     % [(d.name, list(d.shape)) for d in inputs], self.path)
            self._input = inputs[0]
            try:
                self._outputs, nms = select_outputs(descs)
                self._max_plan = {b.name: b for b in plan_buffers(descs, self._max_batch)}
            except ValueError as e:
                raise ModelFileError(str(e), self.path) from None
            if not nms:
                c = {d.name: d for d in descs}[self._outputs[1]].shape[-1]
                if c != self.info.num_classes:
                    raise ModelFileError(f"scores have {c} classes but the metadata names {self.info.num_classes}",
                                         self.path)
            if nms and not self.nms:
                self.nms = "trt"
            if not nms:
                self.nms, self.nms_params = None, None
            context = engine.create_execution_context()
            if context is None:
                raise ModelFileError("TensorRT could not create an execution context (out of GPU memory?)",
                                     self.path)
            self._context = context
            self._stream = cuda.Stream()  # one stream for this context
            for b in self._max_plan.values():  # allocated once, for the largest batch, and reused
                self._host[b.name] = cuda.pagelocked_empty(b.size, b.dtype)
                self._dev[b.name] = cuda.mem_alloc(max(b.nbytes, 1))
                context.set_tensor_address(b.name, int(self._dev[b.name]))
        finally:
            self._ctx.pop()

    # -- the Backend contract -------------------------------------------------------------------------

    @property
    def fixed_batch(self) -> Optional[int]:
        return self._fixed

    @property
    def max_batch(self) -> Optional[int]:
        return self._max_batch

    def _forward(self, batch: np.ndarray) -> Tuple[np.ndarray, ...]:
        n = batch.shape[0]
        b = max(n, self._min_batch)  # below the profile's minimum: zero-padded
        plan = {t.name: t for t in plan_buffers(self._descs, b)}
        if TYPE_CHECKING:
            import tensorrt as trt

            context: trt.IExecutionContext
        else:
            trt = self._trt
        cuda, stream, context = self._cuda, self._stream, self._context
        inp = plan[self._input.name]
        host_in = self._host[inp.name][:inp.size].reshape(inp.shape)
        host_in[:n] = batch.astype(inp.dtype, copy=False)
        if b > n:
            host_in[n:] = 0
        self._ctx.push()
        try:
            cuda.memcpy_htod_async(self._dev[inp.name], host_in, stream)
            if not context.set_input_shape(inp.name, trt.Dims(list(inp.shape))):
                raise RuntimeError(f"{self.path}: TensorRT refused input shape {list(inp.shape)} (profile "
                                   f"{self.meta.profile})")
            if not context.execute_async_v3(stream.handle):
                raise RuntimeError(f"{self.path}: TensorRT execution failed (see the TensorRT message above)")
            views = []
            for name in self._outputs:
                t = plan[name]
                view = self._host[name][:t.size].reshape(t.shape)
                cuda.memcpy_dtoh_async(view, self._dev[name], stream)
                views.append(view)
            stream.synchronize()  # one synchronize per batch
        finally:
            self._ctx.pop()
        out = []
        for name, view in zip(self._outputs, views):
            want = np.int32 if self.nms and name in (NMS_OUTPUT_NAMES[0], NMS_OUTPUT_NAMES[3]) else np.float32
            out.append(np.array(view[:n], dtype=want, order="C", copy=True))
        return tuple(out)

    def _release(self) -> None:
        if self._ctx is None:
            return
        self._ctx.push()
        try:
            for mem in self._dev.values():
                mem.free()
            self._dev.clear()
            self._host.clear()
            self._context = None
            self._engine = None
            self._runtime = None
            self._stream = None
        finally:
            self._ctx.pop()
            self._ctx.detach()
            self._ctx = None
