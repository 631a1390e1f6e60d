"""TensorRT backend: runs a ``yolo4 build-engine`` engine (``.engine`` / ``.plan``) with TensorRT (8.5 ...
11.x) or TensorRT for RTX, and pycuda for the device memory.

Opening an engine, in this order (each failure is one line naming the engine and what to do):

1. its metadata sidecar (:func:`~yolo4.engine_meta.read_engine_meta`): the model's
   :class:`ModelInfo`, the NMS in its graph (``nms``/``nms_params`` of the source ONNX), the
   optimization profile (:attr:`~yolo4.engine_meta.EngineMeta.batch_range`) and the
   TensorRT flavour/release that built it;
2. the TensorRT module of that flavour (``tensorrt`` or ``tensorrt_rtx``), imported here, the GPU
   as the driver reports it (:func:`~yolo4.engine_meta.cuda_device`: ctypes, no pycuda) and
   :func:`~yolo4.engine_meta.check_engine_compat` (release and compute capability; its
   refusal names the engine's TensorRT/GPU, this machine's, and the ``yolo4 build-engine`` command
   that rebuilds it); without a GPU the release alone, before the refusal for the missing GPU;
3. pycuda;
4. plugin libraries (:func:`plugin_libraries_to_load`: the ones recorded in the metadata, and the
   DIoU-NMS plugin of ``yolo4 build-plugin`` for an engine ending with ``DIoUNMS_TRT``);
5. deserialization (on the DLA core the engine was built for, :attr:`EngineMeta.dla_core`, set as
   ``IRuntime.DLA_core`` first: else an engine built for core 1 runs on core 0), then the execution
   contexts (default two; a dynamic-batch engine runs one per optimization profile it was built with,
   :func:`usable_contexts`), each with its own non-blocking CUDA stream, its own buffers and,
   optionally, CUDA graphs of its enqueue, one per input shape (:mod:`yolo4.runtime.cuda_graph`).

Closing (:meth:`Backend.close`, also on Ctrl-C with batches in flight) synchronizes every context's
stream before it frees a buffer or drops a context; a :class:`TrtPending` collected after that
raises one RuntimeError.

I/O is by tensor name only (``num_io_tensors``, ``get_tensor_name``, ``get_tensor_mode``,
``get_tensor_dtype``, ``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``: every
release from 8.5 on; the binding-index API is gone in 10). Page-locked host buffers and device
buffers are planned (:func:`plan_buffers`) and allocated once per context, for the largest batch the
engine takes, and reused: a batch of ``b`` copies host -> device asynchronously, sets the input shape,
enqueues, copies the outputs back asynchronously and synchronizes its stream once.
:meth:`TensorRTBackend.submit` returns before the synchronize, so
:class:`~yolo4.runtime.detector.Detector` keeps up to one batch per context in flight (batches go
round-robin over the contexts: while batch k runs, batch k+1 uploads and k-1 is post-processed).
:meth:`TensorRTBackend.submit_frames` does the preprocessing on the GPU
(:mod:`yolo4.runtime.gpu_preprocess`) straight into the input buffer.

The pure parts (:class:`TensorDesc`, :func:`numpy_dtype`, :func:`plan_buffers`,
:func:`select_outputs`, :func:`plugin_libraries_to_load`) need neither TensorRT nor a GPU and are
what the CPU test suite checks; the GPU path runs only on a machine with TensorRT and a driver
(``yolo4 selftest`` on the target).

Python 3.8, torch-free; ``tensorrt`` / ``tensorrt_rtx`` and ``pycuda`` are imported when a backend is
created, not when this module is imported.
"""

import importlib
import os
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ...engine_meta import (
    EngineMeta,
    check_engine_compat,
    cuda_device,
    flavour_name,
    read_engine_meta,
)
from ...errors import ModelFileError, Yolo4Error, Yolo4Warning
from ...nms_params import NMS_OUTPUT_NAMES, read_nms_metadata
from .base import Backend, Done, Pending, check_batch

__all__ = ["TensorRTBackend", "TensorDesc", "TensorBuffer", "TrtPending", "numpy_dtype", "plan_buffers",
           "select_outputs", "plugin_libraries_to_load", "usable_contexts", "DEFAULT_CONTEXTS", "INSTALL"]

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
        ``(names, nms)``: the four :data:`~yolo4.nms_params.NMS_OUTPUT_NAMES` (``nms`` True)
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


def usable_contexts(requested: Optional[int], dynamic_batch: bool, num_profiles: int) -> Tuple[int, str]:
    """How many execution contexts to run, and a warning when fewer than asked.

    TensorRT lets one optimization profile of a dynamic-shape engine serve one execution context at a
    time, so a dynamic-batch engine runs at most ``num_profiles`` contexts (``yolo4 build-engine
    --contexts N`` builds N profiles); a fixed-batch engine any number.

    Args:
        requested: contexts asked for; None = :data:`DEFAULT_CONTEXTS` capped silently.
        dynamic_batch: the engine's input batch dimension is -1.
        num_profiles: optimization profiles in the engine (:attr:`EngineMeta.num_profiles`).

    Returns:
        ``(contexts, warning)``: ``warning`` is "" unless an explicit request was capped.

    Raises:
        ValueError: ``requested < 1``.
    """
    if requested is not None and int(requested) < 1:
        raise ValueError(f"contexts must be >= 1, got {requested}")
    want = DEFAULT_CONTEXTS if requested is None else int(requested)
    limit = max(1, int(num_profiles)) if dynamic_batch else want
    n = min(want, limit)
    warning = ""
    if requested is not None and n < want:
        warning = (f"the engine has {limit} optimization profile(s), so {n} execution context(s) run at once "
                   f"(rebuild with `yolo4 build-engine --contexts {want}` for {want})")
    return n, warning


#: execution contexts a TensorRT backend runs by default (when the engine allows them)
DEFAULT_CONTEXTS = 2


class _Slot:
    """One execution context with its own CUDA stream, I/O buffers (allocated once, for the largest
    batch) and CUDA graph; batches go round-robin over the slots."""

    def __init__(self, index: int, context: Any, stream: Any) -> None:
        self.index = index
        self.context = context
        self.stream = stream
        self.host: Dict[str, np.ndarray] = {}
        self.dev: Dict[str, Any] = {}
        self.shape: Optional[Tuple[int, ...]] = None  # the input shape set on the context
        self.warmed_shapes: set = set()  # shapes with one plain enqueue done (TensorRT's rule before capture)
        self.graphs: Dict[Tuple[int, ...], Any] = {}  # input shape -> CudaGraph captured at it
        self.captures = 0  # graphs captured on this context
        self.launches = 0  # graph launches on this context
        self.pending: Optional[TrtPending] = None


class TrtPending(Pending):
    """A batch enqueued on one execution context: :meth:`result` waits for its stream and returns the
    outputs (as :meth:`Backend.__call__` documents) for the ``n`` real images."""

    def __init__(self, backend: "TensorRTBackend", slot: _Slot, n: int, plan: Dict[str, TensorBuffer]) -> None:
        self._backend, self._slot, self._n, self._plan = backend, slot, n, plan
        self._out: Optional[Tuple[np.ndarray, ...]] = None

    def result(self) -> Tuple[np.ndarray, ...]:
        """The outputs (see :class:`Pending`).

        Raises:
            RuntimeError: the backend was closed before they were collected (its buffers are freed).
        """
        if self._out is None:
            if self._backend._closed or self._slot.stream is None:
                raise RuntimeError(f"{self._backend.path}: the TensorRT backend was closed before this batch's "
                                   "outputs were collected (call result() before close())")
            self._out = self._backend._finish(self._slot, self._n, self._plan)
            if self._slot.pending is self:
                self._slot.pending = None
        return self._out


class TensorRTBackend(Backend):
    """Run a yolo4 TensorRT engine (see the module docstring for what happens when).

    Args:
        path: the engine (``.engine`` / ``.plan``) with its ``.json`` metadata sidecar beside it.
        device: CUDA device index (default 0).
        contexts: execution contexts to pipeline batches over (default :data:`DEFAULT_CONTEXTS`,
            capped by :func:`usable_contexts`): while one batch runs on the GPU, the next is uploaded
            and enqueued on the next context and the previous one is post-processed on the CPU
            (:meth:`submit`, used by :class:`~yolo4.runtime.detector.Detector`).
        cuda_graph: capture each context's enqueue into a CUDA graph after one warm-up enqueue at
            the same input shape and relaunch it (:mod:`yolo4.runtime.cuda_graph`); one graph per
            (context, input shape) is kept, so alternating batch sizes relaunch, not recapture. A
            capture TensorRT refuses falls back to plain enqueues (one warning): the stream is
            synchronized, the enqueue retried plainly and, when TensorRT still reports the capture's
            error, the execution context recreated.

    Attributes:
        info: :class:`ModelInfo` from the metadata.
        meta: the :class:`~yolo4.engine_meta.EngineMeta`.
        nms, nms_params: the NMS in the engine's graph (None: outputs ``boxes``/``scores``).
        plugins: the plugin libraries loaded for it.
        contexts: execution contexts in use.
        graph_stats: per context, ``(graphs captured, graph launches)`` (``yolo4 selftest`` checks them).

    Raises:
        Yolo4Error (ModelFileError): missing engine or metadata; TensorRT or pycuda not installed;
            another TensorRT flavour/release or GPU architecture than the engine's; no CUDA GPU; a
            DLA engine on a machine without that DLA core; a plugin library missing; TensorRT cannot
            deserialize the plan; unexpected I/O tensors.
        ValueError: ``contexts < 1``.
    """

    name = "tensorrt"

    def __init__(self, path: PathLike, device: int = 0, contexts: Optional[int] = None,
                 cuda_graph: bool = False) -> None:
        self.path = os.fspath(path)
        self._cuda: Any = None
        self._ctx: Any = None
        self._engine: Any = None
        self._runtime: Any = None
        self._trt: Any = None
        self._slots: List[_Slot] = []
        self._next = 0
        self._gpu_pre: Any = None
        self.cuda_graph = bool(cuda_graph)
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
        self.contexts, warning = usable_contexts(contexts, self.meta.dynamic_batch, self.meta.num_profiles)
        if warning:
            warnings.warn(warning, Yolo4Warning, stacklevel=2)

        trt = _import_tensorrt(self.meta.trt_flavour, self.meta.trt_version, self.path)
        version = str(getattr(trt, "__version__", "0"))
        gpu = cuda_device(int(device))  # the driver through ctypes: no pycuda needed yet
        if gpu is not None:  # release and GPU at once: the refusal names the engine's and this machine's
            check_engine_compat(self.meta, self.meta.trt_flavour, version, gpu.compute_capability, gpu.name)
        else:  # the release still first, then the refusal for the missing GPU
            check_engine_compat(self.meta, self.meta.trt_flavour, version, None)
        cuda = _import_pycuda(self.path)
        if gpu is None:
            raise Yolo4Error(f"no CUDA GPU {int(device)} (no NVIDIA driver or no such device): a TensorRT "
                             "engine runs on an NVIDIA GPU; use the ONNX model on ONNX Runtime here (--onnx "
                             f"{self.meta.built_onnx or self.meta.onnx_path})", self.path)
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
        from ..cuda_context import PrimaryContext

        self._cuda = cuda
        self._trt = trt_module
        self._ctx = PrimaryContext(cuda, device)  # the context TensorRT's runtime API uses (cuda.init() inside)
        with self._ctx:
            logger = trt.Logger(trt.Logger.WARNING)
            self._load_plugins(trt_module, logger)
            with open(self.path, "rb") as f:
                plan = f.read()
            runtime = trt.Runtime(logger)
            self._configure_runtime(runtime)
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
            from ..cuda_graph import STREAM_NON_BLOCKING

            for k in range(self.contexts):
                # one non-blocking stream per context: no implicit synchronization with the legacy
                # default stream, which another thread's call could otherwise use to invalidate a capture
                slot = _Slot(k, None, cuda.Stream(flags=STREAM_NON_BLOCKING))
                self._slots.append(slot)
                for b in self._max_plan.values():  # allocated once, for the largest batch, and reused
                    slot.host[b.name] = cuda.pagelocked_empty(b.size, b.dtype)
                    slot.dev[b.name] = cuda.mem_alloc(max(b.nbytes, 1))
                slot.context = self._make_context(slot)

    def _configure_runtime(self, runtime: Any) -> None:
        """What ``IRuntime`` must know before deserializing: the DLA core the engine was built for
        (``DLA_core``, 8.5+; a one-line refusal when this machine has no such core) and, for a
        version-compatible engine, ``engine_host_code_allowed`` (8.6+: its embedded lean runtime is
        host code)."""
        if getattr(self.meta, "version_compatible", False) and hasattr(runtime, "engine_host_code_allowed"):
            runtime.engine_host_code_allowed = True
        core = self.meta.dla_core
        if core is None:
            return
        have = getattr(runtime, "num_DLA_cores", None)
        if have is not None and int(core) >= int(have):
            raise ModelFileError(f"the engine was built for DLA core {core}, this machine has {int(have)} DLA "
                                 "core(s): run it on the Jetson it was built for, or rebuild it with `yolo4 "
                                 "build-engine` (without --dla-core for the GPU)", self.path)
        runtime.DLA_core = int(core)

    def _make_context(self, slot: _Slot) -> Any:
        """A new execution context for ``slot``: its optimization profile (context k uses profile k
        of a dynamic-batch engine; profile 0 is the default) and the slot's buffers as tensor addresses.
        Call with the CUDA context pushed."""
        context = self._engine.create_execution_context()
        if context is None:
            raise ModelFileError(f"TensorRT could not create execution context {slot.index + 1} of {self.contexts} "
                                 "(out of GPU memory? try --contexts 1)", self.path)
        if self.meta.dynamic_batch and slot.index > 0:
            if not context.set_optimization_profile_async(slot.index, slot.stream.handle):
                raise ModelFileError(f"TensorRT refused optimization profile {slot.index} (the engine has "
                                     f"{self.meta.num_profiles})", self.path)
        for name, mem in slot.dev.items():
            if not context.set_tensor_address(name, int(mem)):
                raise ModelFileError(f"TensorRT refused the address of tensor {name!r}", self.path)
        return context

    # -- the Backend contract -------------------------------------------------------------------------

    @property
    def fixed_batch(self) -> Optional[int]:
        return self._fixed

    @property
    def max_batch(self) -> Optional[int]:
        return self._max_batch

    @property
    def pipeline_depth(self) -> int:
        return len(self._slots) or 1

    @property
    def graph_stats(self) -> List[Tuple[int, int]]:
        return [(s.captures, s.launches) for s in self._slots]

    def _forward(self, batch: np.ndarray) -> Tuple[np.ndarray, ...]:
        return self._submit_checked(batch).result()

    def submit(self, batch: np.ndarray) -> Pending:
        """Enqueue a batch on the next execution context and return at once (see :class:`Pending`).

        Up to :attr:`pipeline_depth` batches are in flight; submitting to a context whose previous
        batch was not collected waits for that batch first (its :meth:`Pending.result` still works).
        A batch above :attr:`max_batch` runs synchronously in chunks.
        """
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed")
        batch = check_batch(batch, self.info.input_hw)
        if batch.shape[0] > self._max_batch:
            return Done(self(batch))
        return self._submit_checked(batch)

    def _next_slot(self) -> _Slot:
        slot = self._slots[self._next]
        self._next = (self._next + 1) % len(self._slots)
        if slot.pending is not None:  # its outputs are about to be overwritten: collect them first
            slot.pending.result()
        return slot

    def _submit_checked(self, batch: np.ndarray) -> "TrtPending":
        n = batch.shape[0]
        b = max(n, self._min_batch)  # below the profile's minimum: zero-padded
        plan = {t.name: t for t in plan_buffers(self._descs, b)}
        slot = self._next_slot()
        inp = plan[self._input.name]
        host_in = slot.host[inp.name][:inp.size].reshape(inp.shape)
        host_in[:n] = batch.astype(inp.dtype, copy=False)
        if b > n:
            host_in[n:] = 0
        with self._ctx:
            self._cuda.memcpy_htod_async(slot.dev[inp.name], host_in, slot.stream)
            self._enqueue(slot, inp.shape, plan)
        slot.pending = TrtPending(self, slot, n, plan)
        return slot.pending

    def submit_frames(self, images: Sequence[np.ndarray]) -> Tuple[Pending, list]:
        """GPU preprocessing: upload ``HxWx3 uint8`` BGR frames and let one CUDA kernel resize
        (plain or letterbox, as the model's ``letter_box``), convert BGR->RGB, scale to 0..1 and
        write ``[B,3,H,W]`` into the engine's input buffer, then enqueue as :meth:`submit` does.

        Returns:
            ``(pending, transforms)``: the :class:`Pending` outputs and one
            :class:`~yolo4.runtime.preprocess.Transform` per frame (the CPU path's geometry).

        Raises:
            Yolo4Error: the preprocessing library is missing (``yolo4 build-plugin`` builds it).
            ValueError: no frames, or more than :attr:`max_batch`.
        """
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed")
        n = len(images)
        if n < 1 or n > self._max_batch:
            raise ValueError(f"submit_frames takes 1..{self._max_batch} frames, got {n}")
        b = max(n, self._min_batch)
        plan = {t.name: t for t in plan_buffers(self._descs, b)}
        inp = plan[self._input.name]
        slot = self._next_slot()
        with self._ctx:
            if self._gpu_pre is None:
                from ..gpu_preprocess import GpuPreprocessor

                self._gpu_pre = GpuPreprocessor(self.info.input_hw, self.info.letter_box, self._max_batch,
                                                dtype=inp.dtype)
            if b > n:  # padding images of a profile minimum: zeros, as the CPU path
                pad = inp.nbytes // b
                self._cuda.memset_d8_async(int(slot.dev[inp.name]) + n * pad, 0, (b - n) * pad, slot.stream)
            transforms = self._gpu_pre.run(list(images), int(slot.dev[inp.name]), slot.stream)
            self._enqueue(slot, inp.shape, plan)
        slot.pending = TrtPending(self, slot, n, plan)
        return slot.pending, transforms

    def _enqueue(self, slot: _Slot, shape: Tuple[int, ...], plan: Dict[str, TensorBuffer]) -> None:
        """Set the input shape, run the engine (the context's CUDA graph for this shape, or a plain
        enqueue), queue the output copies. Call with the CUDA context pushed."""
        shape = tuple(int(v) for v in shape)
        self._set_shape(slot, shape)
        graph = slot.graphs.get(shape)
        enqueued = False
        if graph is None and self.cuda_graph and shape in slot.warmed_shapes:
            graph = self._capture(slot, shape)
            enqueued = graph is None  # refused: the batch already ran plainly
        if graph is not None:
            graph.launch(slot.stream.handle)
            slot.launches += 1
        elif not enqueued and not slot.context.execute_async_v3(slot.stream.handle):
            raise RuntimeError(f"{self.path}: TensorRT execution failed (see the TensorRT message above)")
        slot.warmed_shapes.add(shape)
        for name in self._outputs:
            t = plan[name]
            self._cuda.memcpy_dtoh_async(slot.host[name][:t.size], slot.dev[name], slot.stream)

    def _set_shape(self, slot: _Slot, shape: Tuple[int, ...]) -> None:
        if TYPE_CHECKING:
            import tensorrt as trt
        else:
            trt = self._trt
        if slot.shape != shape:
            if not slot.context.set_input_shape(self._input.name, trt.Dims(list(shape))):
                raise RuntimeError(f"{self.path}: TensorRT refused input shape {list(shape)} (profile "
                                   f"{self.meta.profile})")
            slot.shape = shape

    def _capture(self, slot: _Slot, shape: Tuple[int, ...]) -> Any:
        """Capture the slot's enqueue at ``shape`` into a CUDA graph (kept for this shape), or, when
        the capture is refused, switch graphs off (one warning), run the enqueue plainly and return None.
        """
        from ..cuda_graph import CudaGraphError, capture

        context, handle = slot.context, slot.stream.handle
        try:
            graph = capture(handle, lambda: context.execute_async_v3(handle))
        except CudaGraphError as e:
            warnings.warn(f"{self.path}: CUDA graph capture failed ({e}); running without graphs",
                          Yolo4Warning, stacklevel=4)
            self.cuda_graph = False
            self._recover_from_capture(slot, shape)
            return None
        slot.graphs[shape] = graph
        slot.captures += 1
        return graph

    def _recover_from_capture(self, slot: _Slot, shape: Tuple[int, ...]) -> None:
        """After a refused capture: wait for the stream, retry the enqueue plainly and, when TensorRT
        still reports the capture's error (the enqueue returns false), replace the execution context
        by a new one (same profile, same buffers) and run it there. Leaves the batch enqueued (the
        caller skips its own enqueue).

        trtexec (``samples/common/sampleInference.cpp`` ``createEnqueueFunction``, ``sampleDevice.h``
        ``endCaptureOnError``) ends the capture and clears the error with ``cudaGetLastError``; that
        sticky error lives in the CUDA runtime TensorRT calls, which this process reaches only through
        the driver API (pycuda), hence the new context instead. :func:`~yolo4.runtime.cuda_graph.capture`
        has already ended and discarded the capture."""
        slot.stream.synchronize()
        if slot.context.execute_async_v3(slot.stream.handle):
            return
        for g in slot.graphs.values():  # captured on the old context
            g.destroy()
        slot.graphs.clear()
        slot.warmed_shapes.clear()
        slot.context = self._make_context(slot)
        slot.shape = None
        self._set_shape(slot, shape)
        if not slot.context.execute_async_v3(slot.stream.handle):
            raise RuntimeError(f"{self.path}: TensorRT execution failed after a refused CUDA graph capture, also on "
                               "a new execution context (see the TensorRT message above)")

    def _finish(self, slot: _Slot, n: int, plan: Dict[str, TensorBuffer]) -> Tuple[np.ndarray, ...]:
        """Wait for the slot's stream (one synchronize per batch) and copy its outputs out."""
        with self._ctx:
            slot.stream.synchronize()
        out = []
        for name in self._outputs:
            t = plan[name]
            view = slot.host[name][:t.size].reshape(t.shape)
            want = np.int32 if self.nms and name in (NMS_OUTPUT_NAMES[0], NMS_OUTPUT_NAMES[3]) else np.float32
            out.append(np.array(view[:n], dtype=want, order="C", copy=True))
        return tuple(out)

    def _release(self) -> None:
        """Synchronize every context's stream (batches may be in flight: Ctrl-C in a video loop), then
        destroy the graphs, free device and page-locked memory and drop the contexts, the engine and
        the runtime, in that order. A stream that fails to synchronize (a faulted context) is reported
        as one warning; the rest is still released."""
        if self._ctx is None:
            return
        ctx = self._ctx
        try:
            with ctx:
                failed = []
                for slot in self._slots:
                    if slot.stream is not None:
                        try:
                            slot.stream.synchronize()
                        except Exception as e:  # pycuda's LogicError/LaunchError: the context is unusable anyway
                            failed.append(f"context {slot.index}: {_first_line(e)}")
                if failed:
                    warnings.warn(f"{self.path}: closing with work in flight that failed ({'; '.join(failed)})",
                                  Yolo4Warning, stacklevel=3)
                for slot in self._slots:
                    for g in slot.graphs.values():
                        g.destroy()
                    slot.graphs.clear()
                    for mem in slot.dev.values():
                        mem.free()
                    slot.dev.clear()
                    slot.host.clear()
                    slot.context = None
                    slot.stream = None
                    slot.pending = None
                self._slots = []
                if self._gpu_pre is not None:
                    self._gpu_pre.close()
                    self._gpu_pre = None
                self._engine = None
                self._runtime = None
        finally:
            self._ctx = None
            ctx.detach()  # cuDevicePrimaryCtxRelease, outside the with block
