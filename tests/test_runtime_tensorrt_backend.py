"""The TensorRT backend on the CPU: its pure parts (buffer planning from an engine's I/O description,
dtype mapping, output selection, which plugin libraries to load), the registry, and the refusals
that happen before TensorRT or the GPU is touched, through the CLI.

What is NOT verified here: deserializing a real engine, pycuda allocations, execution on a GPU
(this machine has no GPU and no driver). :class:`FakeTensorRT` / :class:`FakeCuda` below are
stand-ins of the TensorRT and pycuda APIs used only to check the backend's call sequence (buffers
allocated once, one synchronize per batch, splitting and padding); they are not integration tests.
"""

import dataclasses
import importlib.util
import json
import subprocess
import sys
import weakref

import numpy as np
import pytest

from tests.conftest import assert_user_error, run_cli
from yolo4.engine_meta import CudaDevice, EngineMeta, write_engine_meta
from yolo4.errors import ModelFileError, Yolo4Error, Yolo4Warning
from yolo4.model_info import ModelInfo
from yolo4.nms_params import NMS_OUTPUT_NAMES, NmsParams, nms_metadata
from yolo4.runtime.backends import BACKENDS, create_backend, default_backend, model_form
from yolo4.runtime.backends import tensorrt_backend as tb
from yolo4.runtime.backends.tensorrt_backend import (
    TensorDesc,
    numpy_dtype,
    plan_buffers,
    plugin_libraries_to_load,
    select_outputs,
)

F32, I32 = np.dtype("float32"), np.dtype("int32")
HAVE_RTX = importlib.util.find_spec("tensorrt_rtx") is not None
HAVE_TRT = importlib.util.find_spec("tensorrt") is not None

#: a yolov4-tiny engine at 416x416, dynamic batch
TINY = [TensorDesc("images", True, (-1, 3, 416, 416), F32), TensorDesc("boxes", False, (-1, 2535, 4), F32),
        TensorDesc("scores", False, (-1, 2535, 80), F32)]
#: the same with the DIoU-NMS plugin at the end (EfficientNMS_TRT's four outputs, 100 per image)
TINY_NMS = [TINY[0], TensorDesc("num_detections", False, (-1, 1), I32),
            TensorDesc("detection_boxes", False, (-1, 100, 4), F32),
            TensorDesc("detection_scores", False, (-1, 100), F32),
            TensorDesc("detection_classes", False, (-1, 100), I32)]


# ------------------------------------------------------------------------------------------------
# pure parts
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("batch", [1, 4, 8])
def test_plan_buffers_yolov4_tiny(batch):
    plan = {b.name: b for b in plan_buffers(TINY, batch)}
    assert plan["images"].shape == (batch, 3, 416, 416) and plan["images"].is_input
    assert plan["images"].nbytes == batch * 3 * 416 * 416 * 4
    assert plan["boxes"].shape == (batch, 2535, 4) and plan["boxes"].nbytes == batch * 2535 * 4 * 4
    assert plan["scores"].shape == (batch, 2535, 80) and plan["scores"].nbytes == batch * 2535 * 80 * 4
    assert not plan["boxes"].is_input and plan["scores"].dtype == F32
    assert select_outputs(TINY) == (["boxes", "scores"], False)


def test_plan_buffers_nms_outputs():
    plan = {b.name: b for b in plan_buffers(TINY_NMS, 3)}
    assert plan["num_detections"].shape == (3, 1) and plan["num_detections"].nbytes == 12
    assert plan["detection_boxes"].shape == (3, 100, 4) and plan["detection_boxes"].nbytes == 4800
    assert plan["detection_scores"].nbytes == 1200 and plan["detection_classes"].dtype == I32
    assert select_outputs(TINY_NMS) == (list(NMS_OUTPUT_NAMES), True)
    # the order is the NMS layout's, whatever the engine's order
    assert select_outputs(TINY_NMS[:1] + TINY_NMS[:0:-1]) == (list(NMS_OUTPUT_NAMES), True)


def test_plan_buffers_fixed_batch_and_refusals():
    fixed = [TensorDesc("images", True, (2, 3, 64, 64), F32), TensorDesc("boxes", False, (2, 12, 4), F32)]
    assert [b.shape for b in plan_buffers(fixed, 2)] == [(2, 3, 64, 64), (2, 12, 4)]
    with pytest.raises(ValueError, match="fixed batch of 2"):
        plan_buffers(fixed, 3)
    with pytest.raises(ValueError, match="besides the batch"):
        plan_buffers([TensorDesc("boxes", False, (-1, -1, 4), F32)], 1)
    with pytest.raises(ValueError, match="batch must be >= 1"):
        plan_buffers(TINY, 0)
    with pytest.raises(ValueError, match="no batch dimension"):
        plan_buffers([TensorDesc("x", False, (), F32)], 1)


def test_select_outputs():
    two = [TINY[0], TensorDesc("out_a", False, (-1, 5, 4), F32), TensorDesc("out_b", False, (-1, 5, 2), F32)]
    assert select_outputs(two) == (["out_a", "out_b"], False)
    with pytest.raises(ValueError, match="got \\['x'\\]"):
        select_outputs([TINY[0], TensorDesc("x", False, (-1, 1), F32)])


def test_numpy_dtype_names():
    assert numpy_dtype("FLOAT") == F32 and numpy_dtype("DataType.HALF") == np.float16
    assert numpy_dtype("INT32") == I32 and numpy_dtype("INT8") == np.int8 and numpy_dtype("BOOL") == np.bool_
    assert numpy_dtype("UINT8") == np.uint8 and numpy_dtype("INT64") == np.int64
    for name in ("BF16", "FP8", "FP4", "INT4", "nonsense"):
        with pytest.raises(ValueError, match="no numpy equivalent"):
            numpy_dtype(name)


@pytest.mark.skipif(not HAVE_RTX, reason="tensorrt_rtx is not installed")
def test_numpy_dtype_real_enum_members():
    """The mapping on a real TensorRT (for RTX) enum, against its own ``nptype``."""
    import tensorrt_rtx as trt

    for name in ("FLOAT", "HALF", "INT8", "INT32", "INT64", "UINT8", "BOOL"):
        member = getattr(trt.DataType, name)
        assert numpy_dtype(member) == np.dtype(trt.nptype(member)), name
    with pytest.raises(ValueError):
        numpy_dtype(trt.DataType.BF16)


def test_plugin_libraries_to_load():
    default = "/cache/plugins/libdiou_nms_plugin.so"
    present = {default, "/opt/libother.so", "/build/libdiou_nms_plugin.so"}
    exists = present.__contains__
    assert plugin_libraries_to_load([], False, default, exists) == []
    assert plugin_libraries_to_load([], True, default, exists) == [default]
    # the library recorded at build time, still there
    assert plugin_libraries_to_load(["/build/libdiou_nms_plugin.so"], True, default, exists) == \
        ["/build/libdiou_nms_plugin.so"]
    # recorded, gone: the default build-plugin output instead
    assert plugin_libraries_to_load(["/gone/libdiou_nms_plugin.so", "/opt/libother.so"], True, default, exists) == \
        [default, "/opt/libother.so"]
    # another recorded library that is gone stays (loading it says so, in one line)
    assert plugin_libraries_to_load(["/gone/libx.so"], False, default, exists) == ["/gone/libx.so"]
    assert plugin_libraries_to_load(["/opt/libother.so"], True, None, exists) == ["/opt/libother.so"]


# ------------------------------------------------------------------------------------------------
# registry and refusals before TensorRT runs
# ------------------------------------------------------------------------------------------------

def test_registry_engine_picks_tensorrt(tmp_path):
    assert model_form("m.engine") == model_form("M.PLAN") == "engine"
    assert default_backend("engine") == "tensorrt" and BACKENDS["tensorrt"][1] == "TensorRTBackend"
    with pytest.raises(ModelFileError, match="engine not found"):
        create_backend("trt", path=tmp_path / "none.engine")
    (tmp_path / "bare.engine").write_bytes(b"plan")
    with pytest.raises(ModelFileError, match="engine metadata is missing"):
        create_backend("tensorrt", path=tmp_path / "bare.engine")


INFO = ModelInfo(names=["a", "b"], input_hw=(64, 64), letter_box=True, anchors=[[(10.0, 14.0), (23.0, 27.0)]],
                 strides=[32], cfg_sha256="ab" * 32, yolo4_version="0.1.0")


def _engine(tmp_path, name="m.engine", nms=None, **kw):
    model = INFO.to_metadata()
    if nms:
        model.update(nms_metadata(nms, NmsParams(max_output_boxes=5)))
    base = dict(model=model, input_name="images", input_shape=[-1, 3, 64, 64],
                profile={"min": [1, 3, 64, 64], "opt": [2, 3, 64, 64], "max": [4, 3, 64, 64]},
                output_names=["boxes", "scores"], precision="fp32", quantization="none", trt_flavour="tensorrt",
                trt_version="10.13.3.9", gpu_name="NVIDIA A100", compute_capability="8.0",
                onnx_path="/models/m.onnx")
    base.update(kw)
    engine = tmp_path / name
    engine.write_bytes(b"plan")
    write_engine_meta(engine, EngineMeta(**base))
    return engine


@pytest.mark.skipif(HAVE_TRT, reason="tensorrt is installed here")
def test_cli_engine_without_tensorrt_says_what_to_install(tmp_path):
    engine = _engine(tmp_path)
    assert_user_error(run_cli("infer", "x.jpg", "--engine", engine), str(engine), "pip install tensorrt",
                      "TensorRT 10.13.3")


@pytest.mark.skipif(not HAVE_RTX, reason="tensorrt_rtx is not installed")
def test_cli_engine_of_another_release_is_refused(tmp_path):
    import tensorrt_rtx

    engine = _engine(tmp_path, trt_flavour="tensorrt-rtx", trt_version="0.9.0.1", gpu_name="ahead-of-time",
                     compute_capability="ahead-of-time")
    here = ".".join(tensorrt_rtx.__version__.split(".")[:3])
    assert_user_error(run_cli("eval", "--data", "coco128", "--engine", engine), str(engine),
                      "TensorRT for RTX 0.9.0", f"TensorRT for RTX {here}", "rebuild")


@pytest.mark.skipif(not HAVE_RTX, reason="tensorrt_rtx is not installed")
def test_cli_engine_of_this_release_needs_pycuda_and_a_gpu(tmp_path):
    import tensorrt_rtx

    engine = _engine(tmp_path, trt_flavour="tensorrt-rtx", trt_version=tensorrt_rtx.__version__,
                     gpu_name="ahead-of-time", compute_capability="ahead-of-time")
    line = assert_user_error(run_cli("infer", "x.jpg", "--engine", engine), str(engine))
    assert "(or pycuda)" in line or "no CUDA GPU" in line, line


def test_broken_metadata_is_one_line(tmp_path):
    engine = _engine(tmp_path)
    meta = json.loads((tmp_path / "m.engine.json").read_text())
    meta["trt_version"] = 10
    (tmp_path / "m.engine.json").write_text(json.dumps(meta))
    assert_user_error(run_cli("infer", "x.jpg", "--engine", engine), "m.engine.json", "rebuild")


# ------------------------------------------------------------------------------------------------
# call sequence on stand-ins of TensorRT and pycuda (NOT an integration test: no GPU here)
# ------------------------------------------------------------------------------------------------

class _DevMem:
    """FakeCuda device allocation: ``nbytes`` bytes in host memory, refusing any access past them
    (a real kernel or copy past an allocation faults or corrupts a neighbour)."""

    def __init__(self, fake, nbytes):
        self.data, self.freed, self.fake = bytearray(nbytes), False, fake
        self.address = fake.next_address  # a fake device address space: allocations never overlap
        fake.next_address += (nbytes + 4095) // 4096 * 4096 + 4096
        fake.addresses[self.address] = self

    def __int__(self):
        return self.address

    def free(self):
        assert not self.freed, "double free"
        self.fake.calls.append("free")
        self.freed = True

    def write(self, raw, offset=0):
        assert not self.freed, "write to freed device memory"
        assert offset + len(raw) <= len(self.data), \
            f"device write of {len(raw)} bytes at {offset} overflows an allocation of {len(self.data)}"
        self.data[offset:offset + len(raw)] = raw

    def read(self, nbytes):
        assert not self.freed, "read of freed device memory"
        assert nbytes <= len(self.data), f"device read of {nbytes} bytes overflows an allocation of {len(self.data)}"
        return bytes(self.data[:nbytes])


class FakeCuda:
    """Stand-in of ``pycuda.driver`` recording the calls the backend makes (sequencing only).

    Strict where the driver is: device memory refuses accesses past its size; a stream belongs to the
    context current when it was made (pycuda's ``context_dependent``, ``cuStreamCreate`` needs one),
    and copies, memsets, synchronizes and enqueues on it need that context current.
    """

    def __init__(self):
        self.calls, self.addresses, self.allocs, self.tagged, self.stack, self.streams = [], {}, [], [], [], []
        self.devices = []  # the ordinals of Device(i)
        self.next_address = 1 << 32
        fake = self

        class Ctx:
            def push(self):
                fake.stack.append(self)

            def pop(self):
                assert fake.stack and fake.stack[-1] is self, "pop of a context that is not current"
                fake.stack.pop()

            def detach(self):
                fake.calls.append("detach")

        class Device:
            def __init__(self, index):
                fake.devices.append(index)

            def retain_primary_context(self):
                return Ctx()

        class Stream:
            count = 0

            def __init__(self, flags=0):
                assert fake.stack, "cuStreamCreate without a current context"
                Stream.count += 1
                self.handle, self.flags, self.ctx = 1000 + Stream.count, flags, fake.stack[-1]
                fake.streams.append(self)

            def synchronize(self):
                fake.check(self)
                fake.calls.append("sync")
                fake.tagged.append(("sync", self.handle))

        class Context:
            @staticmethod
            def pop():  # pycuda's Context.pop is static: cuCtxPopCurrent of whatever is current
                assert fake.stack, "cuCtxPopCurrent with no current context"
                fake.stack.pop()

        self.Device, self.Stream, self.Context = Device, Stream, Context

    @property
    def pushed(self):
        return len(self.stack)

    def check(self, stream):
        assert self.stack and self.stack[-1] is stream.ctx, "stream used without its context current"

    def stream_of(self, handle):
        return next(s for s in self.streams if s.handle == handle)

    def init(self):
        self.calls.append("init")

    def pagelocked_empty(self, size, dtype):
        assert isinstance(size, int) and size >= 0, size
        return np.zeros(size, dtype)

    def mem_alloc(self, nbytes):
        assert self.stack, "cuMemAlloc without a current context"
        assert nbytes > 0, "cuMemAlloc of 0 bytes: CUDA_ERROR_INVALID_VALUE"
        m = _DevMem(self, int(nbytes))
        self.allocs.append(m)
        return m

    def memcpy_htod_async(self, dev, host, stream):
        self.check(stream)
        dev.write(np.ascontiguousarray(host).tobytes())
        self.calls.append("htod")
        self.tagged.append(("htod", stream.handle))

    def memcpy_dtoh_async(self, host, dev, stream):
        self.check(stream)
        host.reshape(-1).view(np.uint8)[:] = np.frombuffer(dev.read(host.nbytes), np.uint8)
        self.calls.append("dtoh")

    def to_device(self, host):
        m = self.mem_alloc(host.nbytes)
        m.write(np.ascontiguousarray(host).tobytes())
        return m

    def memcpy_dtoh(self, host, dev):
        assert self.stack, "cuMemcpyDtoH without a current context"
        host.reshape(-1).view(np.uint8)[:] = np.frombuffer(dev.read(host.nbytes), np.uint8)

    def memset_d8_async(self, ptr, value, count, stream):
        self.check(stream)
        assert all(isinstance(v, int) for v in (ptr, value, count)), "pycuda takes integers here"
        ptr = int(ptr)
        base = max(a for a in self.addresses if a <= ptr)  # the allocation holding ptr (write checks the end)
        self.addresses[base].write(bytes([value]) * int(count), ptr - base)
        self.calls.append("memset")
        self.tagged.append(("memset", (ptr - base, int(count))))


#: numpy dtype -> the ``DataType`` member name TensorRT reports
_TRT_NAMES = {np.dtype("float32"): "FLOAT", np.dtype("float16"): "HALF", np.dtype("int32"): "INT32"}


class FakeTensorRT:
    """Stand-in of the ``tensorrt`` module for a 2-class 64x64 engine whose I/O is ``descs``, with
    their real dtypes (``get_tensor_dtype``). "Inference" writes each image's first pixel ``v`` into
    its outputs: boxes/scores all ``v``; with the four NMS outputs, ``num_detections`` = ``int(v)`` and
    ``detection_classes`` = ``int(v) + 1`` as int32 (sequencing only, not a model).
    ``fail_exec``: how many of the next enqueues return False (TensorRT reporting an error).
    Strict where TensorRT is: an engine's runtime must outlive it (held weakly here, so a backend that
    drops it fails), tensor addresses must be device allocations, the input shape is set by the input's
    name. ``no_engine``, ``no_context_from``, ``refuse_profile``, ``refuse_address``, ``refuse_shape``:
    TensorRT's refusals; ``dtype_names``: a type reported instead of the tensor's (``BF16``)."""

    __version__ = "10.13.3.9"

    def __init__(self, cuda, descs):
        fake = self
        self.cuda, self.descs, self.shapes, self.contexts, self.fail_exec = cuda, descs, [], [], 0
        self.runtimes, self.loggers, self.plugin_inits = [], [], []
        # refusals TensorRT can answer with: no engine, no context (from the n-th on), a profile, an
        # address, an input shape; and tensor name -> DataType name reported instead of the desc's
        self.no_engine, self.no_context_from, self.refuse_profile, self.refuse_address = False, None, False, None
        self.refuse_shape, self.dtype_names = False, {}

        class DataType:
            def __init__(self, name):
                self.name = name

        class TensorIOMode:
            INPUT, OUTPUT = "in", "out"

        class Logger:
            WARNING = 2

            def __init__(self, level):
                self.level = level
                fake.loggers.append(self)

        class Context:
            def __init__(self, engine):
                self.addr, self.shape, self.profile, self.engine = {}, None, 0, engine
                fake.contexts.append(self)

            def set_optimization_profile_async(self, index, stream):
                fake.cuda.check(fake.cuda.stream_of(stream))
                if fake.refuse_profile:
                    return False
                self.profile = index
                fake.cuda.calls.append("profile%d" % index)
                return True

            def set_tensor_address(self, name, ptr):
                assert isinstance(ptr, int) and ptr in fake.cuda.addresses, ptr
                if name == fake.refuse_address:
                    return False
                self.addr[name] = ptr
                return True

            def set_input_shape(self, name, dims):
                assert name == [d.name for d in fake.descs if d.is_input][0], name
                if fake.refuse_shape:
                    return False
                self.shape = tuple(dims)
                fake.shapes.append(self.shape)
                fake.cuda.calls.append("shape")
                return True

            def execute_async_v3(self, stream):
                fake.cuda.check(fake.cuda.stream_of(stream))
                assert self.engine.runtime() is not None, "the runtime was destroyed before its engine"
                assert self.shape is not None and len(self.addr) == len(fake.descs), "enqueue before setup"
                fake.cuda.calls.append("exec")
                fake.cuda.tagged.append(("exec", stream))
                fake.last_context = self
                if fake.fail_exec:
                    fake.fail_exec -= 1
                    return False
                self.compute(self.shape)
                return True

            def compute(self, shape):
                b = shape[0]
                mem = fake.cuda.addresses
                dt = fake.descs[0].dtype
                first = np.frombuffer(mem[self.addr["images"]].read(b * 3 * 64 * 64 * dt.itemsize), dt)
                first = first.reshape(b, 3, 64, 64)[:, 0, 0, 0]
                for d in fake.descs:
                    if d.is_input:
                        continue
                    per = int(np.prod(d.shape[1:]))
                    value = first + 1 if d.name == "detection_classes" else first
                    out = np.repeat(value, per).astype(d.dtype)
                    mem[self.addr[d.name]].write(out.tobytes())

        class Engine:
            num_io_tensors = len(descs)

            def get_tensor_name(self, i):
                return descs[i].name

            def get_tensor_mode(self, name):
                return TensorIOMode.INPUT if {d.name: d for d in descs}[name].is_input else TensorIOMode.OUTPUT

            def get_tensor_dtype(self, name):
                return DataType(fake.dtype_names.get(name) or _TRT_NAMES[{d.name: d for d in descs}[name].dtype])

            def get_tensor_shape(self, name):
                return list({d.name: d for d in descs}[name].shape)

            def create_execution_context(self):
                if fake.no_context_from is not None and len(fake.contexts) >= fake.no_context_from:
                    return None  # TensorRT's answer when it cannot make one (out of memory)
                return Context(self)

        class Runtime:
            num_DLA_cores = 0

            def __init__(self, logger):
                self.DLA_core, self.logger = -1, logger
                self.deserialized_on = None
                fake.runtimes.append(weakref.ref(self))  # weak: whoever deserializes must keep it

            def deserialize_cuda_engine(self, plan):
                self.deserialized_on = self.DLA_core
                self.plan = plan
                if fake.no_engine:
                    return None
                engine = Engine()
                engine.runtime = weakref.ref(self)  # TensorRT: the runtime must outlive its engines
                return engine

        self.Logger, self.Runtime, self.TensorIOMode = Logger, Runtime, TensorIOMode
        self.Dims = list

    def init_libnvinfer_plugins(self, logger, namespace):
        self.plugin_inits.append((logger, namespace))
        return True


def test_call_sequence_on_stand_ins(tmp_path, monkeypatch):
    engine = _engine(tmp_path, profile={"min": [2, 3, 64, 64], "opt": [2, 3, 64, 64], "max": [4, 3, 64, 64]})
    cuda = FakeCuda()
    descs = [TensorDesc("images", True, (-1, 3, 64, 64), F32), TensorDesc("boxes", False, (-1, 3, 4), F32),
             TensorDesc("scores", False, (-1, 3, 2), F32)]
    fake_trt = FakeTensorRT(cuda, descs)
    _install(monkeypatch, fake_trt, cuda)
    be = create_backend("tensorrt", path=engine)
    assert be.max_batch == 4 and be.fixed_batch is None and be.nms is None and be.info.names == ["a", "b"]
    assert len(cuda.allocs) == 3 and cuda.calls == ["init"]
    batch = np.zeros((7, 3, 64, 64), np.float32)
    batch[:, 0, 0, 0] = np.arange(1, 8)
    boxes, scores = be(batch)
    # 7 images, at most 4 per enqueue; the last chunk (3) is above the profile minimum (2)
    assert fake_trt.shapes == [(4, 3, 64, 64), (3, 3, 64, 64)]
    assert cuda.calls[1:] == ["htod", "shape", "exec", "dtoh", "dtoh", "sync"] * 2
    assert boxes.shape == (7, 3, 4) and scores.shape == (7, 3, 2)
    assert np.array_equal(boxes[:, 0, 0], np.arange(1, 8)) and np.array_equal(scores[:, 2, 1], np.arange(1, 8))
    # one image: padded to the profile's minimum of 2, one output row back
    b1, _ = be(batch[4:5])
    assert fake_trt.shapes[-1] == (2, 3, 64, 64) and b1.shape == (1, 3, 4) and b1[0, 0, 0] == 5
    assert len(cuda.allocs) == 3 and cuda.pushed == 0  # buffers reused, context popped
    be.close()
    assert all(m.freed for m in cuda.allocs) and cuda.calls[-1] == "detach"
    with pytest.raises(RuntimeError, match="closed"):
        be(batch)


def test_release_mismatch_before_pycuda(tmp_path, monkeypatch):
    """The release check needs neither pycuda nor a GPU (stand-in module: sequencing only)."""
    engine = _engine(tmp_path, trt_version="8.6.1.6")
    monkeypatch.setattr(tb, "_import_tensorrt", lambda *a: FakeTensorRT(FakeCuda(), []))

    def no_pycuda(where):
        raise AssertionError("pycuda imported before the release check")

    monkeypatch.setattr(tb, "_import_pycuda", no_pycuda)
    with pytest.raises(ModelFileError, match=r"built with TensorRT 8.6.1 .*, this machine has TensorRT 10.13.3 \(no GPU found\)"):
        create_backend("tensorrt", path=engine)


def test_gpu_mismatch_and_no_gpu(tmp_path, monkeypatch):
    engine = _engine(tmp_path)
    monkeypatch.setattr(tb, "_import_tensorrt", lambda *a: FakeTensorRT(FakeCuda(), []))
    monkeypatch.setattr(tb, "_import_pycuda", lambda where: FakeCuda())
    monkeypatch.setattr(tb, "cuda_device", lambda i: CudaDevice(0, "Xavier", "7.2"))
    with pytest.raises(ModelFileError, match="compute capability 8.0 .* is 7.2"):
        create_backend("tensorrt", path=engine)
    monkeypatch.setattr(tb, "cuda_device", lambda i: None)
    with pytest.raises(Yolo4Error, match="no CUDA GPU 0 .*--onnx /models/m.onnx"):
        create_backend("tensorrt", path=engine)


def test_missing_diou_plugin_is_one_line(tmp_path, monkeypatch):
    engine = _engine(tmp_path, nms="plugin")
    monkeypatch.setenv("YOLO4_PLUGIN_LIB", str(tmp_path / "nope" / "libdiou_nms_plugin.so"))
    cuda = FakeCuda()
    monkeypatch.setattr(tb, "_import_tensorrt", lambda *a: FakeTensorRT(cuda, []))
    monkeypatch.setattr(tb, "_import_pycuda", lambda where: cuda)
    monkeypatch.setattr(tb, "cuda_device", lambda i: CudaDevice(0, "NVIDIA A100", "8.0"))
    with pytest.raises(Yolo4Error, match="yolo4 build-plugin"):
        create_backend("tensorrt", path=engine)
    assert cuda.pushed == 0 and cuda.calls[-1] == "detach"


def test_module_imports_lazily():
    """Importing the backend (and the registry) loads neither TensorRT, pycuda, torch nor onnxruntime."""
    code = ("import sys, yolo4.runtime.backends.tensorrt_backend, yolo4.runtime.backends;"
            "bad = [m for m in ('torch', 'onnxruntime', 'tensorrt', 'tensorrt_rtx', 'pycuda') if m in sys.modules];"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_class_count_must_match_the_metadata(tmp_path, monkeypatch):
    engine = _engine(tmp_path)
    cuda = FakeCuda()
    descs = [TensorDesc("images", True, (-1, 3, 64, 64), F32), TensorDesc("boxes", False, (-1, 3, 4), F32),
             TensorDesc("scores", False, (-1, 3, 80), F32)]
    monkeypatch.setattr(tb, "_import_tensorrt", lambda *a: FakeTensorRT(cuda, descs))
    monkeypatch.setattr(tb, "_import_pycuda", lambda where: cuda)
    monkeypatch.setattr(tb, "cuda_device", lambda i: CudaDevice(0, "NVIDIA A100", "8.0"))
    with pytest.raises(ModelFileError) as e:
        create_backend("tensorrt", path=engine)
    assert str(e.value) == f"{engine}: scores have 80 classes but the metadata names 2"
    assert cuda.pushed == 0 and cuda.allocs == []


# ------------------------------------------------------------------------------------------------
# pipelining over execution contexts, CUDA graphs (stand-ins: sequencing only, NOT integration)
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("requested,dynamic,profiles,want", [
    (None, True, 1, (1, "")), (None, True, 2, (2, "")), (None, True, 4, (2, "")), (None, False, 1, (2, "")),
    (3, False, 1, (3, "")), (1, True, 2, (1, ""))])
def test_usable_contexts(requested, dynamic, profiles, want):
    assert tb.usable_contexts(requested, dynamic, profiles) == want


def test_usable_contexts_capped_request_says_how_to_rebuild():
    n, warning = tb.usable_contexts(3, True, 1)
    assert n == 1 and "1 optimization profile" in warning and "--contexts 3" in warning
    with pytest.raises(ValueError, match="contexts must be >= 1"):
        tb.usable_contexts(0, True, 1)


#: the stand-in engine's I/O: decoded outputs, or the four NMS outputs (int32 counts and classes)
SMALL = [TensorDesc("images", True, (-1, 3, 64, 64), F32), TensorDesc("boxes", False, (-1, 3, 4), F32),
         TensorDesc("scores", False, (-1, 3, 2), F32)]
SMALL_NMS = [SMALL[0], TensorDesc("num_detections", False, (-1, 1), I32),
             TensorDesc("detection_boxes", False, (-1, 5, 4), F32), TensorDesc("detection_scores", False, (-1, 5), F32),
             TensorDesc("detection_classes", False, (-1, 5), I32)]


def _install(monkeypatch, fake_trt, cuda, gpu=CudaDevice(0, "NVIDIA A100", "8.0")):
    """The stand-ins in place of the TensorRT module, pycuda and the driver's GPU; the imports are asked
    for the engine's own flavour and release, naming the engine (their errors name it)."""
    from yolo4.engine_meta import read_engine_meta

    def import_tensorrt(flavour, version, where):
        meta = read_engine_meta(where)
        assert (flavour, version) == (meta.trt_flavour, meta.trt_version), (flavour, version)
        return fake_trt

    def import_pycuda(where):
        read_engine_meta(where)  # the engine's path
        return cuda

    monkeypatch.setattr(tb, "_import_tensorrt", import_tensorrt)
    monkeypatch.setattr(tb, "_import_pycuda", import_pycuda)
    monkeypatch.setattr(tb, "cuda_device", lambda i: gpu)


def _fake_backend(tmp_path, monkeypatch, descs=SMALL, meta=None, runtime_dla_cores=0, **kw):
    engine = _engine(tmp_path, **dict(dict(num_profiles=2), **(meta or {})))
    cuda = FakeCuda()
    fake_trt = FakeTensorRT(cuda, descs)
    fake_trt.Runtime.num_DLA_cores = runtime_dla_cores
    _install(monkeypatch, fake_trt, cuda)
    return tb.TensorRTBackend(engine, **kw), cuda, fake_trt


def _batch(values):
    b = np.zeros((len(values), 3, 64, 64), np.float32)
    b[:, 0, 0, 0] = values
    return b


def test_two_contexts_pipeline_round_robin(tmp_path, monkeypatch):
    be, cuda, _ = _fake_backend(tmp_path, monkeypatch)
    assert be.contexts == 2 and be.pipeline_depth == 2
    assert "profile1" in cuda.calls and "profile0" not in cuda.calls  # context k uses profile k
    assert len(cuda.allocs) == 6  # three I/O buffers per context, allocated once
    streams = sorted({h for _, h in cuda.tagged} | {s.stream.handle for s in be._slots})
    p1, p2 = be.submit(_batch([1, 2])), be.submit(_batch([3, 4]))
    # both batches are enqueued, on different streams, before anything is waited for
    assert [c for c, _ in cuda.tagged] == ["htod", "exec", "htod", "exec"]
    assert cuda.tagged[0][1] != cuda.tagged[2][1] and "sync" not in cuda.calls
    # a third batch goes back to the first context: its batch is collected first (one sync)
    p3 = be.submit(_batch([5, 6, 7]))
    assert cuda.calls.count("sync") == 1 and cuda.tagged[4] == ("sync", cuda.tagged[0][1])
    b3, _ = p3.result()
    b1, _ = p1.result()
    b2, s2 = p2.result()
    assert list(b1[:, 0, 0]) == [1, 2] and list(b2[:, 0, 0]) == [3, 4] and list(b3[:, 0, 0]) == [5, 6, 7]
    assert s2.shape == (2, 3, 2) and cuda.calls.count("sync") == 3  # one per batch
    assert p1.result() is p1.result() and len(streams) >= 2
    be.close()
    assert all(m.freed for m in cuda.allocs)


def test_detector_keeps_order_with_pipelining(tmp_path, monkeypatch):
    from yolo4.runtime import detector as det_mod

    be, cuda, _ = _fake_backend(tmp_path, monkeypatch)
    seen = []

    def fake_post(boxes, scores, params, input_hw, transforms):
        seen.append(list(boxes[:, 0, 0]))
        return [det_mod.Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
                for _ in range(boxes.shape[0])]

    def fake_pre(images, input_hw, letter_box):
        batch = np.zeros((len(images), 3, 64, 64), np.float32)
        batch[:, 0, 0, 0] = [float(im[0, 0, 0]) for im in images]
        return batch, [None] * len(images)

    monkeypatch.setattr(det_mod, "postprocess", fake_post)
    monkeypatch.setattr(det_mod, "preprocess", fake_pre)
    monkeypatch.setattr(det_mod, "scale_boxes_to_original", lambda b, tr: b)
    d = det_mod.Detector(be, batch_size=3)
    images = [np.full((8, 8, 3), v, np.uint8) for v in range(1, 11)]
    out = d.detect(images)
    assert len(out) == 10 and seen == [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10]]
    tags = [c for c, _ in cuda.tagged if c in ("exec", "sync")]
    assert tags[:3] == ["exec", "exec", "sync"]  # the second batch runs before the first is waited for
    assert d.timings.images == 10


def _graph_stand_in(monkeypatch):
    """Replace :func:`cuda_graph.capture` by a stand-in that runs the enqueue (what would be captured)
    and returns a graph recording its launches and destruction (sequencing only)."""
    from yolo4.runtime import cuda_graph

    log = {"captured": [], "launched": [], "destroyed": []}

    class Graph:
        def __init__(self, n, context, shape):
            self.n, self.context, self.shape = n, context, shape

        def launch(self, handle):
            log["launched"].append((self.n, handle))
            self.context.compute(self.shape)  # replays the captured work, at the captured shape

        def destroy(self):
            log["destroyed"].append(self.n)

    def fake_capture(handle, enqueue):
        assert enqueue()  # the real enqueue is what gets captured
        log["captured"].append(handle)
        context = log["trt"].last_context
        return Graph(len(log["captured"]), context, context.shape)

    monkeypatch.setattr(cuda_graph, "capture", fake_capture)
    return log


def test_cuda_graph_captured_after_one_warm_up_and_kept_per_shape(tmp_path, monkeypatch):
    log = _graph_stand_in(monkeypatch)
    be, cuda, fake_trt = _fake_backend(tmp_path, monkeypatch, contexts=1, cuda_graph=True)
    log["trt"] = fake_trt
    for _ in range(3):
        b, _ = be(_batch([1, 2]))
        assert list(b[:, 0, 0]) == [1, 2]
    # 1st call: plain enqueue (warm-up); 2nd: capture (the enqueue inside) + launch; 3rd: launch only
    assert cuda.calls.count("exec") == 2 and len(log["captured"]) == 1 and log["launched"] == [(1, log["captured"][0])] * 2
    be(_batch([1, 2, 3]))  # another shape: warm-up there, the first graph is kept
    assert log["destroyed"] == [] and len(log["captured"]) == 1 and fake_trt.shapes[-1] == (3, 3, 64, 64)
    be(_batch([4, 5, 6]))
    assert len(log["captured"]) == 2
    # alternating batch sizes relaunch the graph of each shape: no capture, no plain enqueue
    execs = cuda.calls.count("exec")
    for values in ([1, 2], [3, 4, 5], [6, 7], [8, 9, 10]):
        b, _ = be(_batch(values))
        assert list(b[:, 0, 0]) == values
    assert len(log["captured"]) == 2 and cuda.calls.count("exec") == execs and len(log["launched"]) == 2 + 1 + 4
    assert be.graph_stats == [(2, 7)]
    be.close()
    assert sorted(log["destroyed"]) == [1, 2]


def test_streams_are_non_blocking(tmp_path, monkeypatch):
    """CU_STREAM_NON_BLOCKING (1): another thread's legacy-stream call cannot invalidate a capture."""
    be, cuda, _ = _fake_backend(tmp_path, monkeypatch)
    assert len(cuda.streams) == 2 and [s.flags for s in cuda.streams] == [1, 1]
    be.close()


def test_refused_capture_retries_plainly_then_recreates_the_context(tmp_path, monkeypatch):
    """trtexec's rule after a refused capture: end it, clear the error, enqueue plainly; here the
    context still reports the error (its first enqueue after the capture fails), so the backend makes
    a new context (same profile and addresses) and the batch's outputs are still right."""
    from yolo4.runtime import cuda_graph

    be, cuda, fake_trt = _fake_backend(tmp_path, monkeypatch, contexts=2, cuda_graph=True)

    def refused(handle, enqueue):
        fake_trt.fail_exec = 1
        assert not enqueue()  # TensorRT returns false when the capture fails
        fake_trt.fail_exec = 1  # ...and its next plain enqueue still reports it
        raise cuda_graph.CudaGraphError("the enqueue failed during stream capture")

    monkeypatch.setattr(cuda_graph, "capture", refused)
    fake_trt.fail_exec = 0
    be(_batch([1, 2]))  # context 0 warm-up
    be(_batch([3, 4]))  # context 1 warm-up
    old, n0 = be._slots[0].context, len(cuda.calls)
    with pytest.warns(Warning, match="CUDA graph capture failed"):
        b, _ = be(_batch([5, 6]))  # context 0: capture refused -> sync, plain retry fails -> new context
    assert list(b[:, 0, 0]) == [5, 6] and not be.cuda_graph
    new = be._slots[0].context
    assert new is not old and new.addr == old.addr and new.shape == (2, 3, 64, 64)
    assert len(fake_trt.contexts) == 3 and be._slots[1].context.profile == 1
    # refused capture, stream waited for, failed plain retry, new context (shape set), its enqueue
    assert cuda.calls[n0:] == ["htod", "exec", "sync", "exec", "shape", "exec", "dtoh", "dtoh", "sync"]
    b, _ = be(_batch([7, 8]))
    assert list(b[:, 0, 0]) == [7, 8]
    be.close()


def test_refused_capture_plain_retry_succeeds_without_a_new_context(tmp_path, monkeypatch):
    from yolo4.runtime import cuda_graph

    def refused(handle, enqueue):
        raise cuda_graph.CudaGraphError("cuStreamEndCapture failed: CUDA_ERROR_STREAM_CAPTURE_INVALIDATED (901)")

    monkeypatch.setattr(cuda_graph, "capture", refused)
    be, cuda, fake_trt = _fake_backend(tmp_path, monkeypatch, contexts=1, cuda_graph=True)
    be(_batch([1]))
    with pytest.warns(Warning, match="INVALIDATED"):
        b, _ = be(_batch([2]))
    assert list(b[:, 0, 0]) == [2] and len(fake_trt.contexts) == 1
    be.close()


def test_cuda_graph_failure_falls_back_to_plain_enqueue(tmp_path, monkeypatch):
    from yolo4.runtime import cuda_graph

    def failing(handle, enqueue):
        raise cuda_graph.CudaGraphError("cuStreamBeginCapture failed: CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED (900)")

    monkeypatch.setattr(cuda_graph, "capture", failing)
    be, cuda, _ = _fake_backend(tmp_path, monkeypatch, contexts=1, cuda_graph=True)
    be(_batch([1]))
    with pytest.warns(Warning, match="CUDA graph capture failed .*STREAM_CAPTURE_UNSUPPORTED"):
        b, _ = be(_batch([2]))
    assert list(b[:, 0, 0]) == [2] and not be.cuda_graph
    be(_batch([3]))
    assert cuda.calls.count("exec") == 3


def test_gpu_preprocessing_needs_the_tensorrt_backend():
    from yolo4.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
    from yolo4.runtime.detector import Detector

    class Stub(OnnxRuntimeBackend):
        def __init__(self):
            self.info, self._fixed_batch = INFO, None

    with pytest.raises(Yolo4Error, match="GPU preprocessing needs the TensorRT backend"):
        Detector(Stub(), preprocess_on="gpu")


def test_submit_frames_preprocesses_into_the_context_input(tmp_path, monkeypatch):
    """--preprocess gpu: the preprocessor writes into the slot's device input, then the engine runs
    (stand-in preprocessor and device memory: sequencing only)."""
    from yolo4.runtime import gpu_preprocess
    from yolo4.runtime.preprocess import Transform

    made = []

    class FakePre:
        def __init__(self, input_hw, letter_box, max_batch, dtype=np.float32):
            made.append((tuple(input_hw), letter_box, max_batch, np.dtype(dtype)))
            self.closed = False

        def run(self, images, dst_ptr, stream):
            cuda.check(stream)  # on the context's stream, before its enqueue
            mem = cuda.addresses[dst_ptr]
            x = np.zeros((len(images), 3, 64, 64), np.float32)
            x[:, 0, 0, 0] = [im[0, 0, 0] for im in images]
            mem.data[:x.nbytes] = x.tobytes()
            cuda.calls.append("preprocess")
            return [Transform(1.0, 1.0, 0.0, 0.0, im.shape[1], im.shape[0]) for im in images]

        def close(self):
            self.closed = True

    monkeypatch.setattr(gpu_preprocess, "GpuPreprocessor", FakePre)
    be, cuda, _ = _fake_backend(tmp_path, monkeypatch)
    frames = [np.full((20, 30, 3), v, np.uint8) for v in (7, 9)]
    pending, transforms = be.submit_frames(frames)
    assert made == [((64, 64), True, 4, F32)] and [t.orig_w for t in transforms] == [30, 30]
    boxes, _ = pending.result()
    assert list(boxes[:, 0, 0]) == [7, 9]
    assert cuda.calls.index("preprocess") < cuda.calls.index("exec") and "htod" not in cuda.calls
    with pytest.raises(ValueError, match="1..4 frames"):
        be.submit_frames(frames * 3)
    pre = be._gpu_pre
    be.close()
    assert pre.closed


def test_cli_gpu_preprocessing_needs_an_engine(tmp_path):
    for cmd in (["infer", "x.jpg"], ["eval", "--data", "coco128"], ["benchmark", "--end-to-end"]):
        p = run_cli(*cmd, "--onnx", tmp_path / "m.onnx", "--preprocess", "gpu")
        assert_user_error(p, "--preprocess gpu needs a TensorRT engine")
    p = run_cli("infer", "x.jpg", "--onnx", tmp_path / "m.onnx", "--preprocess", "tpu")
    assert p.returncode == 2 and "'tpu' is not one of cpu, gpu" in p.stderr


# ------------------------------------------------------------------------------------------------
# closing with work in flight, DLA, NMS outputs, padding (stand-ins: sequencing only, NOT integration)
# ------------------------------------------------------------------------------------------------

def test_close_with_batches_in_flight_synchronizes_before_freeing(tmp_path, monkeypatch):
    """Ctrl-C in a video loop closes the backend while both contexts have a batch on the GPU: every
    stream is waited for before any buffer is freed; collecting such a batch afterwards is one
    clear RuntimeError."""
    be, cuda, _ = _fake_backend(tmp_path, monkeypatch)
    p1, p2 = be.submit(_batch([1, 2])), be.submit(_batch([3, 4]))
    n0 = len(cuda.tagged)
    streams = [s.stream.handle for s in be._slots]
    be.close()
    assert sorted(h for c, h in cuda.tagged[n0:] if c == "sync") == sorted(streams)
    first_free = cuda.calls.index("free")
    assert cuda.calls.count("sync") == 2 and cuda.calls.index("sync") < first_free
    assert max(i for i, c in enumerate(cuda.calls) if c == "sync") < first_free
    assert all(m.freed for m in cuda.allocs) and cuda.pushed == 0
    for p in (p1, p2):
        with pytest.raises(RuntimeError, match="closed before this batch's outputs were collected"):
            p.result()


def test_results_collected_before_close_stay_valid(tmp_path, monkeypatch):
    be, cuda, _ = _fake_backend(tmp_path, monkeypatch)
    p = be.submit(_batch([1, 2]))
    b, _ = p.result()
    be.close()
    assert list(p.result()[0][:, 0, 0]) == [1, 2] and p.result()[0] is b


def test_dla_core_set_before_deserializing(tmp_path, monkeypatch):
    """An engine built for DLA core 1 deserializes with ``IRuntime.DLA_core = 1`` (else core 0)."""
    be, _, fake_trt = _fake_backend(tmp_path, monkeypatch, meta=dict(dla_core=1, precision="fp16"),
                                    runtime_dla_cores=2)
    assert fake_trt.runtimes[-1]().deserialized_on == 1
    be.close()
    be, _, fake_trt = _fake_backend(tmp_path, monkeypatch)  # a GPU engine leaves the runtime alone
    assert fake_trt.runtimes[-1]().deserialized_on == -1
    be.close()


def test_dla_engine_on_a_machine_without_that_core_is_one_line(tmp_path, monkeypatch):
    with pytest.raises(ModelFileError, match="built for DLA core 1, this machine has 0 DLA core"):
        _fake_backend(tmp_path, monkeypatch, meta=dict(dla_core=1, precision="fp16"), runtime_dla_cores=0)


def test_nms_engine_int32_outputs_through_the_backend(tmp_path, monkeypatch):
    """An engine ending with NMS (EfficientNMS_TRT's layout: int32 counts and classes) goes through
    the backend: buffers sized by each tensor's own dtype, int32 outputs returned as int32."""
    be, cuda, _ = _fake_backend(tmp_path, monkeypatch, descs=SMALL_NMS)
    assert be.nms == "trt" and [m.data.__len__() for m in cuda.allocs[:5]] == [4 * 3 * 64 * 64 * 4, 4 * 4,
                                                                             4 * 5 * 4 * 4, 4 * 5 * 4, 4 * 5 * 4]
    num, boxes, scores, classes = be(_batch([3, 1, 2]))
    assert num.dtype == np.int32 and classes.dtype == np.int32 and boxes.dtype == np.float32
    assert num[:, 0].tolist() == [3, 1, 2] and classes[:, 0].tolist() == [4, 2, 3]
    assert boxes.shape == (3, 5, 4) and scores[:, 4].tolist() == [3.0, 1.0, 2.0]
    be.close()


def _stand_in_preprocessor(get_cuda, dtype_in=F32):
    """A stand-in ``GpuPreprocessor`` class (the CUDA kernel cannot run here): it writes each frame's
    first pixel into pixel [0, 0, 0] of its image of the input buffer (``dtype_in``, which the backend
    must ask for), zeros elsewhere, through ``get_cuda()``'s fake device memory."""
    from yolo4.runtime.preprocess import Transform

    class FakePre:
        def __init__(self, input_hw, letter_box, max_batch, dtype=np.float32):
            assert np.dtype(dtype) == np.dtype(dtype_in)

        def run(self, images, dst_ptr, stream):
            x = np.zeros((len(images), 3, 64, 64), dtype_in)
            x[:, 0, 0, 0] = [im[0, 0, 0] for im in images]
            get_cuda().addresses[dst_ptr].write(x.tobytes())
            return [Transform(1.0, 1.0, 0.0, 0.0, im.shape[1], im.shape[0]) for im in images]

        def close(self):
            pass

    return FakePre


@pytest.mark.parametrize("dtype", [F32, np.dtype("float16")])
def test_submit_frames_zeroes_the_padding_rows_of_a_short_batch(tmp_path, monkeypatch, dtype):
    """One frame on a profile whose minimum is 2: the second image of the input is set to zeros on
    the device (``memset_d8_async`` of exactly its bytes, float32 or float16 input), as the CPU path pads."""
    from yolo4.runtime import gpu_preprocess

    monkeypatch.setattr(gpu_preprocess, "GpuPreprocessor", _stand_in_preprocessor(lambda: cuda, dtype))
    profile = {"min": [2, 3, 64, 64], "opt": [2, 3, 64, 64], "max": [4, 3, 64, 64]}
    descs = [TensorDesc("images", True, (-1, 3, 64, 64), dtype)] + SMALL[1:]
    be, cuda, fake_trt = _fake_backend(tmp_path, monkeypatch, descs=descs, meta=dict(profile=profile), contexts=1)
    image = 3 * 64 * 64 * dtype.itemsize
    dev_in = be._slots[0].dev["images"]
    assert len(dev_in.data) == 4 * image
    dev_in.write(np.full(4 * 3 * 64 * 64, 9.0, dtype).tobytes())  # stale input of an earlier batch
    pending, _ = be.submit_frames([np.full((20, 30, 3), 7, np.uint8)])
    assert ("memset", (image, image)) in cuda.tagged and fake_trt.shapes[-1] == (2, 3, 64, 64)
    x = np.frombuffer(dev_in.read(2 * image), dtype).reshape(2, 3, 64, 64)
    assert x[0, 0, 0, 0] == 7 and not x[1].any()
    boxes, _ = pending.result()
    assert boxes.shape == (1, 3, 4) and boxes[0, 0, 0] == 7
    be.close()


def test_stand_in_device_memory_and_streams_are_strict():
    """The stand-ins refuse what the driver refuses, so a backend bug cannot pass silently."""
    cuda = FakeCuda()
    ctx = cuda.Device(0).retain_primary_context()
    with pytest.raises(AssertionError, match="without a current context"):
        cuda.Stream()
    ctx.push()
    stream, mem = cuda.Stream(flags=1), cuda.mem_alloc(16)
    with pytest.raises(AssertionError, match="overflows"):
        cuda.memcpy_htod_async(mem, np.zeros(5, np.float32), stream)
    with pytest.raises(AssertionError, match="overflows"):
        cuda.memcpy_dtoh_async(np.zeros(5, np.float32), mem, stream)
    ctx.pop()
    with pytest.raises(AssertionError, match="without its context current"):
        stream.synchronize()
    with pytest.raises(AssertionError, match="without its context current"):
        cuda.memcpy_htod_async(mem, np.zeros(4, np.float32), stream)


def test_release_mismatch_on_a_gpu_names_both_sides_and_the_rebuild_command(tmp_path, monkeypatch):
    """With a GPU, the refusal of an engine of another release (before pycuda is imported) names the
    engine's TensorRT and GPU, this machine's TensorRT, and the command that rebuilds it
    (:func:`~yolo4.engine_meta.check_engine_compat`'s message, used as is)."""
    engine = _engine(tmp_path, trt_version="8.6.1.6", gpu_name="NVIDIA A100")
    monkeypatch.setattr(tb, "_import_tensorrt", lambda *a: FakeTensorRT(FakeCuda(), []))
    monkeypatch.setattr(tb, "cuda_device", lambda i: CudaDevice(0, "NVIDIA A100", "8.0"))

    def no_pycuda(where):
        raise AssertionError("pycuda imported before the release check")

    monkeypatch.setattr(tb, "_import_pycuda", no_pycuda)
    with pytest.raises(ModelFileError) as e:
        create_backend("tensorrt", path=engine)
    line = str(e.value)
    for needle in ("TensorRT 8.6.1 on NVIDIA A100", "this machine has TensorRT 10.13.3 on NVIDIA A100 (compute capability 8.0)",
                   "yolo4 build-engine /models/m.onnx"):
        assert needle in line, (needle, line)


def test_version_compatible_engine_allows_its_lean_runtime(tmp_path, monkeypatch):
    """A ``--version-compatible`` engine embeds host code: ``IRuntime.engine_host_code_allowed``
    (TensorRT 8.6+) is set before deserializing; other engines leave it alone."""
    if "version_compatible" not in {f.name for f in dataclasses.fields(EngineMeta)}:
        pytest.skip("EngineMeta has no version_compatible field yet (engine_meta.py)")
    seen = []

    def patch(fake_trt):
        class Runtime(fake_trt.Runtime):
            engine_host_code_allowed = False

            def deserialize_cuda_engine(self, plan):
                seen.append(self.engine_host_code_allowed)
                return super().deserialize_cuda_engine(plan)

        fake_trt.Runtime = Runtime

    for compatible in (True, False):
        cuda = FakeCuda()
        fake_trt = FakeTensorRT(cuda, SMALL)
        patch(fake_trt)
        monkeypatch.setattr(tb, "_import_tensorrt", lambda *a, t=fake_trt: t)
        monkeypatch.setattr(tb, "_import_pycuda", lambda where, c=cuda: c)
        monkeypatch.setattr(tb, "cuda_device", lambda i: CudaDevice(0, "NVIDIA A100", "8.0"))
        engine = _engine(tmp_path, name="v%d.engine" % compatible, version_compatible=compatible)
        tb.TensorRTBackend(engine).close()
    assert seen == [True, False]


def test_close_after_a_faulted_stream_warns_once_and_still_frees(tmp_path, monkeypatch):
    """A context whose work failed (its synchronize raises, as pycuda's LaunchError does) does not
    stop the release: one warning naming it, every buffer freed, the CUDA context released."""
    be, cuda, _ = _fake_backend(tmp_path, monkeypatch)
    be.submit(_batch([1, 2]))
    bad = be._slots[0].stream

    def fault():
        raise RuntimeError("cuStreamSynchronize failed: an illegal memory access was encountered")

    bad.synchronize = fault
    with pytest.warns(Warning, match="context 0: cuStreamSynchronize failed: an illegal memory access"):
        be.close()
    assert all(m.freed for m in cuda.allocs) and cuda.calls[-1] == "detach" and cuda.pushed == 0


# ------------------------------------------------------------------------------------------------
# opening an engine: what TensorRT and pycuda are handed, and each refusal (stand-ins, NOT integration)
# ------------------------------------------------------------------------------------------------

def _released(cuda):
    """Everything allocated is freed, no context is left current, and the primary context is released."""
    return all(m.freed for m in cuda.allocs) and cuda.pushed == 0 and cuda.calls[-1] == "detach"


def test_open_hands_tensorrt_the_plan_a_warning_logger_and_the_device(tmp_path, monkeypatch):
    engine = _engine(tmp_path, num_profiles=2)
    engine.write_bytes(b"serialized plan \x00\x01")
    cuda = FakeCuda()
    fake_trt = FakeTensorRT(cuda, SMALL)
    asked = []
    monkeypatch.setattr(tb, "_import_tensorrt", lambda *a: fake_trt)
    monkeypatch.setattr(tb, "_import_pycuda", lambda where: cuda)
    monkeypatch.setattr(tb, "cuda_device", lambda i: asked.append(i) or CudaDevice(i, "NVIDIA A100", "8.0"))
    be = tb.TensorRTBackend(engine, device=1)
    assert asked == [1] and cuda.devices == [1]  # the GPU asked for, for the driver and for pycuda
    assert fake_trt.runtimes[-1]().plan == b"serialized plan \x00\x01"  # the engine file, byte for byte
    assert [lg.level for lg in fake_trt.loggers] == [fake_trt.Logger.WARNING]
    assert fake_trt.runtimes[-1]().logger is fake_trt.loggers[0]
    # TensorRT's own plugins registered once, in the default namespace, with the runtime's logger
    assert fake_trt.plugin_inits == [(fake_trt.loggers[0], "")] and be.plugins == []
    assert be.pipeline_depth == 2 and be.graph_stats == [(0, 0), (0, 0)]
    be.close()
    assert be.pipeline_depth == 1 and _released(cuda)


def test_no_gpu_names_the_device_and_the_onnx_the_engine_was_built_from(tmp_path, monkeypatch):
    engine = _engine(tmp_path, built_onnx="/models/m-fp16.onnx")
    monkeypatch.setattr(tb, "_import_tensorrt", lambda *a: FakeTensorRT(FakeCuda(), []))
    monkeypatch.setattr(tb, "_import_pycuda", lambda where: FakeCuda())
    monkeypatch.setattr(tb, "cuda_device", lambda i: None)
    with pytest.raises(Yolo4Error) as e:
        tb.TensorRTBackend(engine, device=3)
    assert str(e.value) == (f"{engine}: no CUDA GPU 3 (no NVIDIA driver or no such device): a TensorRT engine runs "
                            "on an NVIDIA GPU; use the ONNX model on ONNX Runtime here (--onnx /models/m-fp16.onnx)")
    with pytest.raises(ModelFileError) as e:
        tb.TensorRTBackend(tmp_path / "gone.engine")
    assert str(e.value) == f"{tmp_path / 'gone.engine'}: engine not found"


def test_an_engine_tensorrt_cannot_deserialize_is_one_line(tmp_path, monkeypatch):
    cuda = FakeCuda()
    fake_trt = FakeTensorRT(cuda, SMALL)
    fake_trt.no_engine = True
    _install(monkeypatch, fake_trt, cuda)
    engine = _engine(tmp_path)
    with pytest.raises(ModelFileError) as e:
        tb.TensorRTBackend(engine)
    assert str(e.value) == (f"{engine}: TensorRT could not deserialize the engine (see the TensorRT message above); "
                            "rebuild it with `yolo4 build-engine`")
    assert _released(cuda)


@pytest.mark.parametrize("descs, needle", [
    # a tensor type numpy cannot hold, named with the tensor
    ([SMALL[0], SMALL[1], TensorDesc("scores", False, (-1, 3, 2), F32)],
     "tensor 'scores': TensorRT data type BF16 has no numpy equivalent (engine I/O must be one of BOOL, FLOAT, HALF, "
     "INT32, INT64, INT8, UINT8)"),
    # two inputs, or an input that is not 4-D
    (SMALL + [TensorDesc("sizes", True, (-1, 2), F32)],
     "expected one input [B,3,H,W], got [('images', [-1, 3, 64, 64]), ('sizes', [-1, 2])]"),
    ([TensorDesc("images", True, (-1, 3, 4096), F32)] + SMALL[1:],
     "expected one input [B,3,H,W], got [('images', [-1, 3, 4096])]"),
    # outputs a yolo4 engine does not have, and a dynamic dimension besides the batch
    ([SMALL[0], TensorDesc("features", False, (-1, 3, 4), F32)],
     "expected outputs 'boxes' [B,N,4] and 'scores' [B,N,C], or num_detections, detection_boxes, detection_scores, "
     "detection_classes; got ['features']"),
    ([SMALL[0], SMALL[1], TensorDesc("scores", False, (-1, -1, 2), F32)],
     "tensor 'scores' has a dynamic dimension besides the batch: [-1, -1, 2]"),
])
def test_unexpected_engine_io_is_one_line_naming_the_engine(tmp_path, monkeypatch, descs, needle):
    cuda = FakeCuda()
    fake_trt = FakeTensorRT(cuda, descs)
    fake_trt.dtype_names = {"scores": "BF16"} if "BF16" in needle else {}
    _install(monkeypatch, fake_trt, cuda)
    engine = _engine(tmp_path)
    with pytest.raises(ModelFileError) as e:
        tb.TensorRTBackend(engine)
    assert str(e.value) == f"{engine}: {needle}"
    assert cuda.allocs == [] and _released(cuda)


@pytest.mark.parametrize("knob, needle", [
    (dict(no_context_from=1), "could not create execution context 2 of 2 (out of GPU memory? try --contexts 1)"),
    (dict(no_context_from=0), "could not create execution context 1 of 2"),
    (dict(refuse_profile=True), "TensorRT refused optimization profile 1 (the engine has 2)"),
    (dict(refuse_address="scores"), "TensorRT refused the address of tensor 'scores'"),
])
def test_context_setup_refusals_are_one_line_and_free_everything(tmp_path, monkeypatch, knob, needle):
    cuda = FakeCuda()
    fake_trt = FakeTensorRT(cuda, SMALL)
    for k, v in knob.items():
        setattr(fake_trt, k, v)
    _install(monkeypatch, fake_trt, cuda)
    engine = _engine(tmp_path, num_profiles=2)
    with pytest.raises(ModelFileError) as e:
        tb.TensorRTBackend(engine)
    assert needle in str(e.value) and str(engine) in str(e.value)
    assert cuda.allocs and _released(cuda)


def test_dla_core_equal_to_the_number_of_cores_is_refused(tmp_path, monkeypatch):
    """Cores are numbered from 0: an engine for core 1 needs a machine with 2."""
    with pytest.raises(ModelFileError) as e:
        _fake_backend(tmp_path, monkeypatch, meta=dict(dla_core=1, precision="fp16"), runtime_dla_cores=1)
    assert str(e.value) == (f"{tmp_path / 'm.engine'}: the engine was built for DLA core 1, this machine has 1 DLA "
                            "core(s): run it on the Jetson it was built for, or rebuild it with `yolo4 build-engine` "
                            "(without --dla-core for the GPU)")
    be, _, fake_trt = _fake_backend(tmp_path, monkeypatch, meta=dict(dla_core=0, precision="fp16"),
                                    runtime_dla_cores=1)
    assert fake_trt.runtimes[-1]().deserialized_on == 0
    be.close()


@pytest.mark.parametrize("kind", ["efficient", "plugin"])
def test_nms_kind_and_params_come_from_the_metadata(tmp_path, monkeypatch, kind):
    """An NMS-ended engine keeps the kind its metadata names (``trt`` only when it names none); an
    engine without the NMS outputs has no NMS, whatever the metadata says."""
    loaded, other = [], tmp_path / "libother.so"
    if kind == "plugin":  # the DIoU-NMS library the engine needs, as `yolo4 build-plugin` leaves it
        from yolo4 import plugins

        lib = tmp_path / "libdiou_nms_plugin.so"
        lib.write_bytes(b"")
        other.write_bytes(b"")
        monkeypatch.setenv("YOLO4_PLUGIN_LIB", str(lib))
        monkeypatch.setattr(plugins, "_loaded", {})
        monkeypatch.setattr(plugins, "_cdll", lambda path: loaded.append(path) or object())
    be, _, _ = _fake_backend(tmp_path, monkeypatch, descs=SMALL_NMS, meta=dict(
        model=dict(INFO.to_metadata(), **nms_metadata(kind, NmsParams(max_output_boxes=5))),
        plugin_libraries=[str(other)] if kind == "plugin" else []))
    assert be.nms == kind and be.nms_params == NmsParams(max_output_boxes=5)
    if kind == "plugin":  # the library the build loaded, then the DIoU-NMS one
        assert be.plugins == loaded == [str(other), str(tmp_path / "libdiou_nms_plugin.so")]
    be.close()
    be, _, _ = _fake_backend(tmp_path, monkeypatch, descs=SMALL, meta=dict(
        model=dict(INFO.to_metadata(), **nms_metadata("efficient", NmsParams(max_output_boxes=5)))))
    assert be.nms is None and be.nms_params is None
    be.close()


# ------------------------------------------------------------------------------------------------
# running batches: shapes, padding, buffers, refusals (stand-ins, NOT integration)
# ------------------------------------------------------------------------------------------------

def test_fixed_batch_engine_on_stand_ins(tmp_path, monkeypatch):
    """A fixed-batch engine (input [2,3,64,64], no optimization profile to pick): every enqueue is at
    its batch, a short batch is zero-padded, a long one split; two contexts, both on profile 0."""
    descs = [TensorDesc("images", True, (2, 3, 64, 64), F32), TensorDesc("boxes", False, (2, 3, 4), F32),
             TensorDesc("scores", False, (2, 3, 2), F32)]
    fixed = {"min": [2, 3, 64, 64], "opt": [2, 3, 64, 64], "max": [2, 3, 64, 64]}
    be, cuda, fake_trt = _fake_backend(tmp_path, monkeypatch, descs=descs,
                                       meta=dict(input_shape=[2, 3, 64, 64], profile=fixed, num_profiles=1))
    assert be.fixed_batch == 2 and be.max_batch == 2 and be.contexts == 2
    assert not any(c.startswith("profile") for c in cuda.calls)
    assert [len(m.data) for m in cuda.allocs] == [2 * 3 * 64 * 64 * 4, 2 * 3 * 4 * 4, 2 * 3 * 2 * 4] * 2
    boxes, scores = be(_batch([1, 2, 3]))
    assert boxes.shape == (3, 3, 4) and scores.shape == (3, 3, 2) and list(boxes[:, 0, 0]) == [1, 2, 3]
    assert fake_trt.shapes == [(2, 3, 64, 64)] * 2  # once per context
    # the second chunk's padding image went to the device as zeros
    x = np.frombuffer(be._slots[1].dev["images"].read(2 * 3 * 64 * 64 * 4), np.float32).reshape(2, 3, 64, 64)
    assert x[0, 0, 0, 0] == 3 and not x[1].any()
    be.close()


def test_padding_rows_are_zeroed_over_an_earlier_batch(tmp_path, monkeypatch):
    """One image on a profile whose minimum is 2, after a batch of 2 on the same context: the padding
    image sent to the device is zeros, not the earlier batch's second image."""
    profile = {"min": [2, 3, 64, 64], "opt": [2, 3, 64, 64], "max": [4, 3, 64, 64]}
    be, cuda, fake_trt = _fake_backend(tmp_path, monkeypatch, meta=dict(profile=profile), contexts=1)
    stale = np.full((2, 3, 64, 64), 5.0, np.float32)
    be(stale)
    b, s = be(_batch([7]))
    assert b.shape == (1, 3, 4) and s.shape == (1, 3, 2) and b[0, 0, 0] == 7
    x = np.frombuffer(be._slots[0].dev["images"].read(2 * 3 * 64 * 64 * 4), np.float32).reshape(2, 3, 64, 64)
    assert x[0, 0, 0, 0] == 7 and not x[0, 1:].any() and not x[1].any()
    assert fake_trt.shapes == [(2, 3, 64, 64)]  # the same shape twice: set once
    assert cuda.calls[1:] == ["htod", "shape", "exec", "dtoh", "dtoh", "sync", "htod", "exec", "dtoh", "dtoh", "sync"]
    be.close()


def test_float16_engine_io_is_converted_both_ways(tmp_path, monkeypatch):
    """An engine with float16 I/O: the float32 batch is uploaded as float16 (half the bytes) and the
    outputs come back as float32, as the Backend contract says."""
    f16 = np.dtype("float16")
    descs = [TensorDesc("images", True, (-1, 3, 64, 64), f16), TensorDesc("boxes", False, (-1, 3, 4), f16),
             TensorDesc("scores", False, (-1, 3, 2), f16)]
    be, cuda, _ = _fake_backend(tmp_path, monkeypatch, descs=descs, contexts=1)
    assert [len(m.data) for m in cuda.allocs] == [4 * 3 * 64 * 64 * 2, 4 * 3 * 4 * 2, 4 * 3 * 2 * 2]
    b, s = be(_batch([0.5, 3.0]))
    assert b.dtype == np.float32 and s.dtype == np.float32 and list(b[:, 1, 2]) == [0.5, 3.0]
    be.close()


def test_outputs_are_copies_not_views_of_the_reused_buffers(tmp_path, monkeypatch):
    be, _, _ = _fake_backend(tmp_path, monkeypatch, contexts=1)
    b1, s1 = be(_batch([1, 2]))
    be(_batch([8, 9]))  # the same context and buffers
    assert list(b1[:, 0, 0]) == [1, 2] and list(s1[:, 2, 1]) == [1, 2]
    assert b1.flags.c_contiguous and b1.flags.owndata
    be.close()


def test_submit_of_exactly_max_batch_returns_before_the_batch_is_done(tmp_path, monkeypatch):
    be, cuda, _ = _fake_backend(tmp_path, monkeypatch)
    p = be.submit(_batch([1, 2, 3, 4]))
    assert isinstance(p, tb.TrtPending) and "exec" in cuda.calls and "sync" not in cuda.calls
    assert list(p.result()[0][:, 0, 0]) == [1, 2, 3, 4] and cuda.calls.count("sync") == 1
    done = be.submit(_batch([1, 2, 3, 4, 5]))  # above max_batch: run at once, in chunks
    assert cuda.calls.count("sync") == 3 and list(done.result()[0][:, 0, 0]) == [1, 2, 3, 4, 5]
    be.close()
    with pytest.raises(RuntimeError, match="TensorRTBackend is closed"):
        be.submit(_batch([1]))


def test_submit_frames_bounds(tmp_path, monkeypatch):
    from yolo4.runtime import gpu_preprocess

    monkeypatch.setattr(gpu_preprocess, "GpuPreprocessor", _stand_in_preprocessor(lambda: cuda))
    be, cuda, _ = _fake_backend(tmp_path, monkeypatch)
    frames = [np.full((8, 8, 3), v, np.uint8) for v in (1, 2, 3, 4)]
    pending, transforms = be.submit_frames(frames)  # max_batch frames: one enqueue, nothing to pad
    assert len(transforms) == 4 and list(pending.result()[0][:, 0, 0]) == [1, 2, 3, 4]
    assert "memset" not in cuda.calls
    pending, _ = be.submit_frames(frames[:1])  # one: the profile's minimum is 1, no padding either
    assert list(pending.result()[0][:, 0, 0]) == [1] and "memset" not in cuda.calls
    with pytest.raises(ValueError, match=r"submit_frames takes 1\.\.4 frames, got 0"):
        be.submit_frames([])
    be.close()
    with pytest.raises(RuntimeError, match="TensorRTBackend is closed"):
        be.submit_frames(frames)


def test_refused_input_shape_and_failed_enqueue_name_the_engine(tmp_path, monkeypatch):
    be, cuda, fake_trt = _fake_backend(tmp_path, monkeypatch, contexts=1)
    fake_trt.refuse_shape = True
    with pytest.raises(RuntimeError) as e:
        be(_batch([1, 2]))
    assert str(e.value) == (f"{be.path}: TensorRT refused input shape [2, 3, 64, 64] (profile "
                            "{'min': [1, 3, 64, 64], 'opt': [2, 3, 64, 64], 'max': [4, 3, 64, 64]})")
    fake_trt.refuse_shape = False
    fake_trt.fail_exec = 1
    with pytest.raises(RuntimeError) as e:
        be(_batch([1, 2]))
    assert str(e.value) == f"{be.path}: TensorRT execution failed (see the TensorRT message above)"
    assert cuda.pushed == 0
    b, _ = be(_batch([3]))  # the next batch runs
    assert list(b[:, 0, 0]) == [3]
    be.close()


def test_refused_capture_drops_the_graphs_of_the_old_context(tmp_path, monkeypatch):
    """A context with a graph at one shape whose capture at another shape is refused and whose plain
    retry fails: the new context starts without the old one's graphs (destroyed) nor warm-ups, so the
    first shape runs plainly on it, never a graph of the discarded context."""
    from yolo4.runtime import cuda_graph

    log = _graph_stand_in(monkeypatch)
    good = cuda_graph.capture
    be, cuda, fake_trt = _fake_backend(tmp_path, monkeypatch, contexts=1, cuda_graph=True)
    log["trt"] = fake_trt
    be(_batch([1, 2]))
    be(_batch([1, 2]))  # captured at [2,3,64,64]
    be(_batch([1, 2, 3]))  # warm-up at [3,3,64,64]
    assert len(log["captured"]) == 1 and be.graph_stats == [(1, 1)]

    def refused(handle, enqueue):
        fake_trt.fail_exec = 2  # the capture's enqueue, then the plain retry on the same context
        assert not enqueue()
        raise cuda_graph.CudaGraphError("the enqueue failed during stream capture")

    monkeypatch.setattr(cuda_graph, "capture", refused)
    old = be._slots[0].context
    with pytest.warns(Yolo4Warning, match="CUDA graph capture failed"):
        b, _ = be(_batch([4, 5, 6]))
    assert list(b[:, 0, 0]) == [4, 5, 6] and be._slots[0].context is not old
    assert log["destroyed"] == [1] and be._slots[0].graphs == {} and be._slots[0].warmed_shapes == {(3, 3, 64, 64)}
    monkeypatch.setattr(cuda_graph, "capture", good)
    n = len(log["launched"])
    b, _ = be(_batch([7, 8]))  # plainly, on the new context
    assert list(b[:, 0, 0]) == [7, 8] and len(log["launched"]) == n and fake_trt.last_context is be._slots[0].context
    assert be.graph_stats == [(1, 1)]
    be.close()
    assert log["destroyed"] == [1]  # not destroyed twice


def test_refused_capture_failing_on_the_new_context_too_is_an_error(tmp_path, monkeypatch):
    from yolo4.runtime import cuda_graph

    be, cuda, fake_trt = _fake_backend(tmp_path, monkeypatch, contexts=1, cuda_graph=True)

    def refused(handle, enqueue):
        fake_trt.fail_exec = 3  # the capture, the plain retry, and the new context's enqueue
        assert not enqueue()
        raise cuda_graph.CudaGraphError("the enqueue failed during stream capture")

    monkeypatch.setattr(cuda_graph, "capture", refused)
    be(_batch([1]))
    with pytest.warns(Warning, match="CUDA graph capture failed"), pytest.raises(RuntimeError) as e:
        be(_batch([2]))
    assert str(e.value) == (f"{be.path}: TensorRT execution failed after a refused CUDA graph capture, also on a "
                            "new execution context (see the TensorRT message above)")
    assert cuda.pushed == 0
    be.close()


def test_empty_output_tensor_gets_a_one_byte_buffer(tmp_path, monkeypatch):
    """A zero-size output (a dimension of 0) plans 0 bytes; the device buffer is still one byte
    (cuMemAlloc refuses 0) and the output comes back empty."""
    descs = SMALL + [TensorDesc("extra", False, (-1, 0, 4), F32)]
    plan = {b.name: b for b in plan_buffers(descs, 3)}
    assert plan["extra"].shape == (3, 0, 4) and plan["extra"].size == 0 and plan["extra"].nbytes == 0
    be, cuda, _ = _fake_backend(tmp_path, monkeypatch, descs=descs, contexts=1)
    assert [len(m.data) for m in cuda.allocs] == [4 * 3 * 64 * 64 * 4, 4 * 3 * 4 * 4, 4 * 3 * 2 * 4, 1]
    b, s = be(_batch([1, 2]))
    assert list(b[:, 0, 0]) == [1, 2] and s.shape == (2, 3, 2)
    be.close()


def test_plan_buffers_fixed_batch_of_zero_is_refused():
    with pytest.raises(ValueError, match="tensor 'boxes' has a fixed batch of 0, not 1"):
        plan_buffers([TensorDesc("boxes", False, (0, 3, 4), F32)], 1)


def test_capped_contexts_warning_text():
    n, warning = tb.usable_contexts(3, True, 2)
    assert n == 2 and warning == ("the engine has 2 optimization profile(s), so 2 execution context(s) run at "
                                  "once (rebuild with `yolo4 build-engine --contexts 3` for 3)")
    assert tb.usable_contexts(None, True, 0) == (1, "") and tb.usable_contexts(1, False, 0) == (1, "")


def test_constructor_warns_when_fewer_contexts_than_asked(tmp_path, monkeypatch):
    with pytest.warns(Yolo4Warning, match="the engine has 2 optimization profile"):
        be, _, _ = _fake_backend(tmp_path, monkeypatch, contexts=3)
    assert be.contexts == 2
    be.close()


# ------------------------------------------------------------------------------------------------
# imports, messages
# ------------------------------------------------------------------------------------------------

def test_import_tensorrt_says_what_to_install(monkeypatch):
    def absent(name):
        raise ImportError(f"No module named {name!r}", name=name)

    monkeypatch.setattr(tb.importlib, "import_module", absent)
    with pytest.raises(Yolo4Error) as e:
        tb._import_tensorrt("tensorrt-rtx", "1.2.0.54", "/x/m.engine")
    assert str(e.value) == ("/x/m.engine: running this engine needs the tensorrt_rtx Python package (the engine "
                            "was built with TensorRT for RTX 1.2.0), which is not installed: pip install tensorrt-rtx")

    def broken(name):
        raise ImportError("libnvinfer.so.10: cannot open\n  shared object file", name="tensorrt_bindings")

    monkeypatch.setattr(tb.importlib, "import_module", broken)
    with pytest.raises(Yolo4Error) as e:
        tb._import_tensorrt("tensorrt", "10.13.3.9", "/x/m.engine")
    assert str(e.value) == ("/x/m.engine: import tensorrt failed: libnvinfer.so.10: cannot open shared object file "
                            "(is the TensorRT / CUDA library path set up?)")
    monkeypatch.setattr(tb.importlib, "import_module", lambda name: ("module", name))
    assert tb._import_tensorrt("tensorrt-rtx", "1.2.0.54", "/x/m.engine") == ("module", "tensorrt_rtx")


def test_import_pycuda_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycuda", None)  # an import of it fails, installed or not
    monkeypatch.delitem(sys.modules, "pycuda.driver", raising=False)
    with pytest.raises(ImportError) as why:
        import pycuda.driver  # noqa: F401
    with pytest.raises(Yolo4Error) as e:
        tb._import_pycuda("/x/m.engine")
    assert str(e.value) == (f"/x/m.engine: running a TensorRT engine needs pycuda ({why.value}): pip install "
                            "'yolo4[trt]' (or pycuda)")


def test_close_warning_names_an_exception_without_a_message_by_its_type(tmp_path, monkeypatch):
    be, cuda, _ = _fake_backend(tmp_path, monkeypatch)

    class LaunchError(Exception):
        pass

    def fault():
        raise LaunchError()

    def fault2():
        raise LaunchError("unspecified\n   launch failure")

    be._slots[0].stream.synchronize = fault
    be._slots[1].stream.synchronize = fault2
    with pytest.warns(Yolo4Warning) as rec:
        be.close()
    assert [str(w.message) for w in rec] == [f"{be.path}: closing with work in flight that failed (context 0: "
                                             "LaunchError; context 1: unspecified launch failure)"]
    assert _released(cuda)


def test_pure_parts_edge_cases():
    """Output selection by name whatever the engine's order; a dotted DataType name; the full refusals."""
    swapped = [TINY[0], TINY[2], TINY[1]]
    assert select_outputs(swapped) == (["boxes", "scores"], False)
    other = [TINY[0], TINY[1], TensorDesc("extra", False, (-1, 2535, 80), F32)]
    assert select_outputs(other) == (["boxes", "extra"], False)  # two outputs, only one of them named
    with pytest.raises(ValueError) as e:
        select_outputs([TINY[0], TINY[1]])
    assert str(e.value) == ("expected outputs 'boxes' [B,N,4] and 'scores' [B,N,C], or num_detections, "
                            "detection_boxes, detection_scores, detection_classes; got ['boxes']")
    assert numpy_dtype("tensorrt.DataType.HALF") == np.float16
    with pytest.raises(ValueError) as e:
        numpy_dtype("DataType.BF16")
    assert str(e.value) == ("TensorRT data type BF16 has no numpy equivalent (engine I/O must be one of BOOL, FLOAT, "
                            "HALF, INT32, INT64, INT8, UINT8)")
    default = "/cache/plugins/libdiou_nms_plugin.so"
    # another library recorded, the DIoU-NMS one needed: both, the default added after it
    assert plugin_libraries_to_load(["/opt/libother.so"], True, default, {default}.__contains__) == \
        ["/opt/libother.so", default]
    assert plugin_libraries_to_load(["/opt/libother.so"], False, default, {default}.__contains__) == \
        ["/opt/libother.so"]


def test_batch_of_the_wrong_size_is_refused_before_the_gpu(tmp_path, monkeypatch):
    be, cuda, _ = _fake_backend(tmp_path, monkeypatch)
    n = len(cuda.calls)
    with pytest.raises(ValueError, match=r"^batch is 32x32 \(HxW\) but the model input is 64x64$"):
        be.submit(np.zeros((1, 3, 32, 32), np.float32))
    assert len(cuda.calls) == n
    be.close()


def test_driver_failure_at_open_is_reported_as_is(tmp_path, monkeypatch):
    """cuInit failing (pycuda raises) leaves nothing to release: the driver's own error comes through."""
    cuda = FakeCuda()

    def no_device():
        raise RuntimeError("cuInit failed: no CUDA-capable device is detected")

    cuda.init = no_device
    monkeypatch.setattr(tb, "_import_tensorrt", lambda *a: FakeTensorRT(cuda, SMALL))
    monkeypatch.setattr(tb, "_import_pycuda", lambda where: cuda)
    monkeypatch.setattr(tb, "cuda_device", lambda i: CudaDevice(0, "NVIDIA A100", "8.0"))
    with pytest.raises(RuntimeError, match="^cuInit failed: no CUDA-capable device is detected$"):
        tb.TensorRTBackend(_engine(tmp_path))
    assert cuda.allocs == [] and cuda.pushed == 0
