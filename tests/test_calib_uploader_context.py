"""The INT8 calibrator's device copies run in the device's retained primary context (issue 15, 1.1).

No GPU and no pycuda here: ``pycuda`` is replaced by a STAND-IN of ``pycuda.driver`` that checks
what the real one checks (from pycuda's ``src/cpp/cuda.hpp``): allocations (``mem_alloc``,
``pagelocked_empty``) need a current context and belong to it; a copy needs a current context;
``Context.pop`` is static and fails on an empty stack; a primary context comes from
``Device.retain_primary_context`` after ``init``. It also records which context was current at each
call. ``pycuda.autoinit`` is made unimportable: importing it would create a second, non-primary
context on TensorRT's builder thread. Not exercised: a real GPU, a real TensorRT build.
"""

import re
import sys
import threading
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from yolo4.calib.calibrators import PycudaUploader, make_calibrator
from yolo4.calib.images import CalibrationSet
from yolo4.model_info import ModelInfo

HW = (32, 64)


class StandInCudaError(Exception):
    """pycuda.driver.LogicError stand-in."""


class _Ctx:
    def __init__(self, driver, device, primary):
        self.driver, self.device, self.primary = driver, device, primary
        self.detached = False

    def push(self):
        if self.detached:
            raise StandInCudaError("cannot push a detached context")
        self.driver.stack().append(self)
        self.driver.events.append(("push", self))

    @staticmethod
    def pop():
        drv = _StandInDriver.instance
        if not drv.stack():
            raise StandInCudaError("context::pop: cannot pop non-current context")
        drv.events.append(("pop", drv.stack().pop()))

    def detach(self):
        if self.detached:
            raise StandInCudaError("cannot detach from invalid context")
        self.detached = True
        self.driver.events.append(("detach", self))


class _DeviceAllocation:
    def __init__(self, driver, nbytes, ctx):
        self.driver, self.nbytes, self.ctx = driver, nbytes, ctx
        self.address = 0x7F0000000000 + 0x100000 * len(driver.allocations)
        self.data = np.zeros(nbytes, np.uint8)
        self.freed = False

    def __int__(self):
        return self.address

    def free(self):  # pycuda activates the allocation's own context for the free
        if self.freed:
            raise StandInCudaError("device_allocation::free: invalid handle")
        self.freed = True
        self.driver.events.append(("free", self.driver.current()))


class _StandInDriver(types.ModuleType):
    """Stand-in of ``pycuda.driver`` (the calls the uploader makes), per-thread context stacks."""

    instance = None

    def __init__(self):
        super().__init__("pycuda.driver")
        _StandInDriver.instance = self
        self.initialised = False
        self._tls = threading.local()
        self.events = []
        self.allocations = []
        self.host = []
        self.copies = []
        self.Context = _Ctx
        self.LogicError = StandInCudaError
        driver = self

        class Device:
            def __init__(self, n):
                if not driver.initialised:
                    raise StandInCudaError("cuInit has not been called")
                self.n = n

            def retain_primary_context(self):
                ctx = _Ctx(driver, self.n, primary=True)
                driver.events.append(("retain", ctx))
                return ctx

            def make_context(self):  # what pycuda.autoinit calls: a NEW, non-primary context, left current
                ctx = _Ctx(driver, self.n, primary=False)
                ctx.push()
                return ctx

        self.Device = Device

    def init(self):
        self.initialised = True

    def stack(self):
        if not hasattr(self._tls, "stack"):
            self._tls.stack = []
        return self._tls.stack

    def current(self):
        s = self.stack()
        return s[-1] if s else None

    def _need_context(self, what):
        if self.current() is None:
            raise StandInCudaError(f"{what}: explicit_context_dependent failed: invalid device context - no "
                                   "currently active context?")
        return self.current()

    def mem_alloc(self, nbytes):
        a = _DeviceAllocation(self, nbytes, self._need_context("mem_alloc"))
        self.allocations.append(a)
        self.events.append(("mem_alloc", a.ctx))
        return a

    def pagelocked_empty(self, shape, dtype):
        ctx = self._need_context("pagelocked_empty")
        arr = np.empty(shape, dtype)
        self.host.append((arr, ctx))
        self.events.append(("pagelocked_empty", ctx))
        return arr

    def memcpy_htod(self, dest, src):
        ctx = self._need_context("memcpy_htod")
        if dest.ctx is not ctx or dest.freed:
            raise StandInCudaError("cuMemcpyHtoD failed: invalid resource handle")  # another context's pointer
        raw = np.ascontiguousarray(src).view(np.uint8).reshape(-1)
        dest.data[:raw.size] = raw
        self.copies.append(ctx)
        self.events.append(("memcpy_htod", ctx))


@pytest.fixture
def cuda(monkeypatch):
    drv = _StandInDriver()
    pkg = types.ModuleType("pycuda")
    pkg.__path__ = []
    pkg.driver = drv
    monkeypatch.setitem(sys.modules, "pycuda", pkg)
    monkeypatch.setitem(sys.modules, "pycuda.driver", drv)
    monkeypatch.setitem(sys.modules, "pycuda.autoinit", None)  # importing it raises ImportError
    monkeypatch.setitem(sys.modules, "pycuda.autoprimaryctx", None)
    return drv


def _set(tmp_path, n=5, batch_size=2):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = tmp_path / ("img%d.png" % i)
        cv2.imwrite(str(p), rng.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8))
        paths.append(str(p))
    return CalibrationSet.from_paths(paths, ModelInfo(names=["a"], input_hw=HW), batch_size=batch_size)


class _StandInBase:
    def __init__(self):
        pass


def _trt():
    return types.SimpleNamespace(__name__="tensorrt", __version__="stand-in",
                                 IInt8EntropyCalibrator2=type("IInt8EntropyCalibrator2", (_StandInBase,), {}),
                                 IInt8MinMaxCalibrator=type("IInt8MinMaxCalibrator", (_StandInBase,), {}))


def test_uploader_works_in_the_primary_context_and_leaves_nothing_current_stand_in(cuda):
    up = PycudaUploader(2 * 3 * 4 * 4 * 4)  # float32 [2,3,4,4]
    (retained,) = [c for e, c in cuda.events if e == "retain"]
    assert retained.primary and retained.device == 0
    assert ("mem_alloc", retained) in cuda.events and ("pagelocked_empty", retained) in cuda.events
    assert cuda.current() is None  # popped after the allocations
    batch = np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4) / 7
    ptr = up.upload(batch)
    (dev,) = cuda.allocations
    assert ptr == dev.address and cuda.copies == [retained] and cuda.current() is None
    assert np.array_equal(dev.data.view(np.float32)[:batch.size], batch.reshape(-1))
    up.free()
    assert dev.freed and ("free", retained) in cuda.events and retained.detached and cuda.current() is None
    assert [e for e, _ in cuda.events] == ["retain", "push", "pagelocked_empty", "mem_alloc", "pop", "push",
                                           "memcpy_htod", "pop", "push", "free", "pop", "detach"]
    up.free()  # twice is harmless


def test_calibration_batches_on_another_thread_stand_in(cuda, tmp_path):
    """TensorRT calls get_batch on its builder thread: every batch is copied in the primary context
    current on THAT thread, the pointers are the device buffer's, and the end frees and releases it."""
    cs = _set(tmp_path, n=5, batch_size=2)
    calib = make_calibrator(_trt(), "entropy", cs, None, log=None)
    got = []

    def builder_thread():
        while True:
            ptrs = calib.get_batch(["images"])
            got.append(ptrs)
            assert cuda.current() is None  # nothing left current between TensorRT's calls
            if ptrs is None:
                break

    t = threading.Thread(target=builder_thread)
    t.start()
    t.join()
    calib.raise_if_failed()
    (dev,) = cuda.allocations
    assert got == [[dev.address]] * 3 + [None]
    (ctx,) = [c for e, c in cuda.events if e == "retain"]
    assert cuda.copies == [ctx] * 3 and dev.freed and ctx.detached
    last = list(cs.iter_batches(pad=True))[-1]
    assert np.array_equal(dev.data.view(np.float32)[:last.size], last.reshape(-1))


def test_a_failed_allocation_releases_the_context_stand_in(cuda, monkeypatch):
    def no_memory(nbytes):
        raise StandInCudaError("cuMemAlloc failed: out of memory")

    monkeypatch.setattr(cuda, "mem_alloc", no_memory)
    with pytest.raises(StandInCudaError, match="out of memory"):
        PycudaUploader(64)
    (ctx,) = [c for e, c in cuda.events if e == "retain"]
    assert ctx.detached and cuda.current() is None


def test_pycuda_autoinit_is_imported_nowhere_in_the_package():
    pkg = Path(__file__).resolve().parents[1] / "yolo4"
    rx = re.compile(r"^\s*(import\s+pycuda\.autoinit|from\s+pycuda\s+import\s+[^#\n]*\bautoinit\b|"
                    r"from\s+pycuda\.autoinit\s+import)", re.M)
    offenders = [str(p.relative_to(pkg.parent)) for p in pkg.rglob("*.py") if rx.search(p.read_text("utf-8"))]
    assert offenders == []
