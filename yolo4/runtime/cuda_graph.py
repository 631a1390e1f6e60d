"""CUDA graphs of a TensorRT enqueue, through the CUDA driver API (``libcuda``) with ctypes.

TensorRT supports capturing ``IExecutionContext::enqueueV3`` (``execute_async_v3``) into a CUDA
graph from 8.5 on, after one ordinary enqueue at the same input shapes (the warm-up lets TensorRT
allocate and initialise what it needs outside the capture); trtexec's ``--useCudaGraph`` does the
same (TensorRT developer guide, "CUDA Graphs"). Relaunching the graph replaces the per-layer kernel
launches of an enqueue with one launch, which matters on a Jetson's slower CPU.

pycuda (through 2026.1) wraps no stream-capture calls, so this module calls the driver directly:
``cuStreamBeginCapture_v2`` (mode ``CU_STREAM_CAPTURE_MODE_THREAD_LOCAL``, so another thread's
allocations do not invalidate the capture), ``cuStreamEndCapture``, ``cuGraphInstantiateWithFlags``
(CUDA 11.4+, JetPack 5), ``cuGraphLaunch``, ``cuGraphExecDestroy`` and ``cuGraphDestroy``. A graph
stays valid as long as the tensor addresses and input shape it was captured with do not change;
:class:`~yolo4.runtime.backends.tensorrt_backend.TensorRTBackend` keeps one graph per (execution
context, input shape), relaunched whenever that shape comes back, and its buffers are allocated once.
The streams it captures on are created with :data:`STREAM_NON_BLOCKING`.

Python 3.8, torch-free; ``libcuda`` is loaded on first use.
"""

import ctypes
import ctypes.util
from typing import Any, Callable, Optional

__all__ = ["CudaGraph", "CudaGraphError", "capture", "load_libcuda", "CAPTURE_MODE_THREAD_LOCAL",
           "STREAM_NON_BLOCKING"]

#: ``CUstreamCaptureMode``: ``CU_STREAM_CAPTURE_MODE_GLOBAL`` 0, ``THREAD_LOCAL`` 1, ``RELAXED`` 2
CAPTURE_MODE_THREAD_LOCAL = 1
#: ``CU_STREAM_NON_BLOCKING`` (``CUstream_flags``, cuda.h): a stream that does not synchronize with the
#: legacy default stream, so another thread's legacy-stream call (a ``cudaMemcpy``, a pycuda
#: ``memcpy_htod``) cannot invalidate a capture on it. pycuda's ``Stream(flags=...)`` passes the flags
#: to ``cuStreamCreate`` unchanged (pycuda ``src/cpp/cuda.hpp``, class ``stream``).
STREAM_NON_BLOCKING = 1

_lib: Optional[Any] = None


class CudaGraphError(RuntimeError):
    """A CUDA driver call of the graph API failed (the message names the call and the CUresult)."""


def load_libcuda(loader: Callable[[str], Any] = ctypes.CDLL) -> Any:
    """The CUDA driver library (``libcuda.so.1`` / ``nvcuda.dll``), loaded once, with the graph
    functions' argument types declared.

    Raises:
        CudaGraphError: no driver library, or one without the graph API (driver older than CUDA 11.4).
    """
    global _lib
    if _lib is not None:
        return _lib
    names = ["libcuda.so.1", "libcuda.so", "nvcuda.dll"]
    found = ctypes.util.find_library("cuda")
    if found:
        names.append(found)
    lib = None
    for name in names:
        try:
            lib = loader(name)
            break
        except OSError:
            continue
    if lib is None:
        raise CudaGraphError("the CUDA driver library (libcuda) was not found: CUDA graphs need an NVIDIA driver")
    vp, u64, i32 = ctypes.c_void_p, ctypes.c_ulonglong, ctypes.c_int
    try:
        lib.cuStreamBeginCapture_v2.argtypes = [vp, i32]
        lib.cuStreamEndCapture.argtypes = [vp, ctypes.POINTER(vp)]
        lib.cuGraphInstantiateWithFlags.argtypes = [ctypes.POINTER(vp), vp, u64]
        lib.cuGraphLaunch.argtypes = [vp, vp]
        lib.cuGraphExecDestroy.argtypes = [vp]
        lib.cuGraphDestroy.argtypes = [vp]
        lib.cuGetErrorName.argtypes = [i32, ctypes.POINTER(ctypes.c_char_p)]
    except AttributeError as e:
        raise CudaGraphError(f"this CUDA driver has no {e.args[0] if e.args else 'graph API'} (CUDA 11.4 or "
                             "newer is needed for graphs)") from None
    for fn in ("cuStreamBeginCapture_v2", "cuStreamEndCapture", "cuGraphInstantiateWithFlags", "cuGraphLaunch",
               "cuGraphExecDestroy", "cuGraphDestroy", "cuGetErrorName"):
        getattr(lib, fn).restype = i32
    _lib = lib
    return lib


def _check(lib: Any, result: int, call: str) -> None:
    if result == 0:
        return
    name = ctypes.c_char_p()
    text = "CUresult %d" % result
    if lib.cuGetErrorName(result, ctypes.byref(name)) == 0 and name.value:
        text = "%s (%d)" % (name.value.decode(), result)
    raise CudaGraphError("%s failed: %s" % (call, text))


class CudaGraph:
    """An instantiated CUDA graph (``CUgraphExec``) and the graph it came from.

    Attributes:
        exec_handle: the ``CUgraphExec`` (an int).
    """

    def __init__(self, lib: Any, graph: int, exec_handle: int) -> None:
        self._lib = lib
        self._graph: Optional[int] = graph
        self.exec_handle: Optional[int] = exec_handle

    def launch(self, stream_handle: int) -> None:
        """Enqueue the whole graph on ``stream_handle`` (a ``CUstream``, e.g. pycuda's ``Stream.handle``).

        Raises:
            CudaGraphError: the graph was destroyed or the launch failed.
        """
        if self.exec_handle is None:
            raise CudaGraphError("cuGraphLaunch on a destroyed graph")
        _check(self._lib, self._lib.cuGraphLaunch(ctypes.c_void_p(self.exec_handle), ctypes.c_void_p(stream_handle)),
               "cuGraphLaunch")

    def destroy(self) -> None:
        """Free the executable graph and the graph (idempotent; errors are ignored)."""
        if self.exec_handle is not None:
            self._lib.cuGraphExecDestroy(ctypes.c_void_p(self.exec_handle))
            self.exec_handle = None
        if self._graph is not None:
            self._lib.cuGraphDestroy(ctypes.c_void_p(self._graph))
            self._graph = None


def capture(stream_handle: int, enqueue: Callable[[], Any], lib: Any = None) -> CudaGraph:
    """Capture what ``enqueue()`` puts on the stream into an instantiated :class:`CudaGraph`.

    Call it after one ordinary enqueue at the same shapes (TensorRT's warm-up rule). The stream must
    not be the legacy default stream. Nothing runs on the GPU during capture: launch the graph
    afterwards to execute it.

    Args:
        stream_handle: the ``CUstream`` to capture on (pycuda ``Stream.handle``).
        enqueue: enqueues the work, e.g. ``lambda: context.execute_async_v3(stream.handle)``; a falsy
            return value (TensorRT's failure) aborts the capture.
        lib: the driver library (default :func:`load_libcuda`).

    Raises:
        CudaGraphError: a driver call failed, or ``enqueue`` returned a falsy value (the capture is
            ended and discarded first, so the stream is usable again).
    """
    lib = lib if lib is not None else load_libcuda()
    stream = ctypes.c_void_p(stream_handle)
    _check(lib, lib.cuStreamBeginCapture_v2(stream, CAPTURE_MODE_THREAD_LOCAL), "cuStreamBeginCapture")
    graph = ctypes.c_void_p()
    try:
        ok = enqueue()
    except BaseException:
        lib.cuStreamEndCapture(stream, ctypes.byref(graph))
        if graph.value:
            lib.cuGraphDestroy(graph)
        raise
    ended = lib.cuStreamEndCapture(stream, ctypes.byref(graph))
    if ended != 0 or (ok is not None and not ok):
        if graph.value:  # a graph handed back with an error (or after a failed enqueue) is never used
            lib.cuGraphDestroy(graph)
        _check(lib, ended, "cuStreamEndCapture")
        raise CudaGraphError("the enqueue failed during stream capture (see the TensorRT message above)")
    exec_handle = ctypes.c_void_p()
    result = lib.cuGraphInstantiateWithFlags(ctypes.byref(exec_handle), graph, ctypes.c_ulonglong(0))
    if result != 0:
        lib.cuGraphDestroy(graph)
        _check(lib, result, "cuGraphInstantiateWithFlags")
    return CudaGraph(lib, int(graph.value or 0), int(exec_handle.value or 0))
