"""CUDA graph capture (:mod:`yolo4.runtime.cuda_graph`) against a stand-in of the CUDA driver library.

No GPU or driver here: :class:`FakeDriver` records the driver calls and their order (begin capture ->
enqueue -> end capture -> instantiate; destroy on every failure path). It checks the call sequence
and error handling only; the real capture runs in ``yolo4 selftest`` on a GPU.
"""

import ctypes

import pytest

from yolo4.runtime import cuda_graph
from yolo4.runtime.cuda_graph import CudaGraphError, capture

ERRORS = {900: b"CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED", 1: b"CUDA_ERROR_INVALID_VALUE"}


class FakeDriver:
    def __init__(self, fail=None):
        self.calls, self.fail = [], fail or {}

    def _ret(self, name):
        self.calls.append(name)
        return self.fail.get(name, 0)

    def cuStreamBeginCapture_v2(self, stream, mode):
        assert mode == cuda_graph.CAPTURE_MODE_THREAD_LOCAL and stream.value == 77
        return self._ret("begin")

    def cuStreamEndCapture(self, stream, graph_ref):
        graph_ref._obj.value = 5
        return self._ret("end")

    def cuGraphInstantiateWithFlags(self, exec_ref, graph, flags):
        exec_ref._obj.value = 6
        return self._ret("instantiate")

    def cuGraphLaunch(self, exec_handle, stream):
        assert exec_handle.value == 6
        return self._ret("launch")

    def cuGraphExecDestroy(self, h):
        return self._ret("exec_destroy")

    def cuGraphDestroy(self, g):
        return self._ret("graph_destroy")

    def cuGetErrorName(self, code, out):
        if code not in ERRORS:
            return 1
        out._obj.value = ERRORS[code]
        return 0


def test_capture_launch_destroy_sequence():
    lib = FakeDriver()
    graph = capture(77, lambda: lib.calls.append("enqueue") or True, lib=lib)
    assert lib.calls == ["begin", "enqueue", "end", "instantiate"]
    graph.launch(77)
    graph.launch(77)
    graph.destroy()
    graph.destroy()  # idempotent
    assert lib.calls[4:] == ["launch", "launch", "exec_destroy", "graph_destroy"]
    with pytest.raises(CudaGraphError, match="destroyed"):
        graph.launch(77)


def test_failed_enqueue_ends_and_discards_the_capture():
    lib = FakeDriver()
    with pytest.raises(CudaGraphError, match="enqueue failed during stream capture"):
        capture(77, lambda: False, lib=lib)
    assert lib.calls == ["begin", "end", "graph_destroy"]


def test_exception_in_enqueue_ends_the_capture_and_propagates():
    lib = FakeDriver()

    def boom():
        raise RuntimeError("plugin refused")

    with pytest.raises(RuntimeError, match="plugin refused"):
        capture(77, boom, lib=lib)
    assert lib.calls == ["begin", "end", "graph_destroy"]


def test_driver_errors_are_named():
    with pytest.raises(CudaGraphError, match=r"cuStreamBeginCapture failed: CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED \(900\)"):
        capture(77, lambda: True, lib=FakeDriver(fail={"begin": 900}))
    lib = FakeDriver(fail={"instantiate": 12345})
    with pytest.raises(CudaGraphError, match=r"cuGraphInstantiateWithFlags failed: CUresult 12345"):
        capture(77, lambda: True, lib=lib)
    assert lib.calls[-1] == "graph_destroy"


def test_no_driver_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(cuda_graph, "_lib", None)
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)

    def no_lib(name):
        raise OSError(name + ": cannot open shared object file")

    with pytest.raises(CudaGraphError, match="CUDA driver library .* not found"):
        cuda_graph.load_libcuda(loader=no_lib)


def test_failed_end_capture_destroys_a_graph_handed_back():
    """``cuStreamEndCapture`` failing (e.g. CUDA_ERROR_STREAM_CAPTURE_INVALIDATED, 901) while still
    writing a graph handle: the graph is destroyed, never instantiated, and the error is named."""
    lib = FakeDriver(fail={"end": 901})
    with pytest.raises(CudaGraphError, match=r"cuStreamEndCapture failed: CUresult 901"):
        capture(77, lambda: True, lib=lib)
    assert lib.calls == ["begin", "end", "graph_destroy"]

