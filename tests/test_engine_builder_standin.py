"""The engine builder's calls into TensorRT 8.5.2 / 8.6.1 / 10.13, driven through a STAND-IN of the
``tensorrt`` module (issue 15: 1.2, 1.3, 1.5, 1.6, 1.9; issue 16: 3).

TensorRT's libraries cannot be installed here, so :func:`make_trt` builds a stand-in module with the
classes, methods, enum members and pool types of one release (read from the headers in
``../shared/trt-headers`` and the bindings' stubs of ``../shared/tools/trt-stubs.sh``) and the rules
the real one enforces where they matter to the builder:

- the ONNX parser finds a plugin node's creator only in the registry: TensorRT's own plugins
  (``EfficientNMS_TRT``) are registered by ``init_libnvinfer_plugins`` (the 8.5 parser did it by
  itself; the 10.x parser does not), the DIoU-NMS plugin by loading its library;
- the builder config takes only attributes the release has (``hardware_compatibility_level`` from
  8.6), flags and memory pools of its enums (``VERSION_COMPATIBLE``, ``TACTIC_DRAM`` from 8.6), TF32 on
  by default, and ``set_calibration_profile`` returns a bool;
- a layer's precision cannot be set in a strongly typed network; 8.x networks need EXPLICIT_BATCH.

What the builder set is read back from the stand-in after ``build_serialized_network``. Not
exercised: a real TensorRT build, a GPU, a DLA (the real builds are the TensorRT for RTX tests in
tests/test_engine_build.py and below).
"""

import enum
import subprocess
import sys
import types

import cv2
import numpy as np
import pytest

from tests.conftest import assert_user_error
from tests.test_engine_build import _small_onnx
from yolo4 import plugins
from yolo4.convert import engine_builder as eb
from yolo4.engine_meta import CudaDevice, read_engine_meta
from yolo4.errors import Yolo4Error

onnx = pytest.importorskip("onnx")

_FLAGS_85 = ["FP16", "INT8", "DEBUG", "GPU_FALLBACK", "STRICT_TYPES", "REFIT", "DISABLE_TIMING_CACHE", "TF32",
             "SPARSE_WEIGHTS", "SAFETY_SCOPE", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS",
             "DIRECT_IO", "REJECT_EMPTY_ALGORITHMS", "ENABLE_TACTIC_HEURISTIC"]
_FLAGS_86 = _FLAGS_85 + ["VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME", "FP8"]
_FLAGS_10 = [f for f in _FLAGS_86 if f not in ("STRICT_TYPES", "ENABLE_TACTIC_HEURISTIC")] + [
    "ERROR_ON_TIMING_CACHE_MISS", "BF16", "DISABLE_COMPILATION_CACHE", "STRIP_PLAN", "WEIGHTLESS", "REFIT_IDENTICAL",
    "WEIGHT_STREAMING", "INT4", "REFIT_INDIVIDUAL", "STRICT_NANS", "MONITOR_MEMORY", "FP4", "EDITABLE_TIMING_CACHE",
    "DISTRIBUTIVE_INDEPENDENCE"]
_POOLS_85 = ["WORKSPACE", "DLA_MANAGED_SRAM", "DLA_LOCAL_DRAM", "DLA_GLOBAL_DRAM"]
RELEASES = {
    "8.5.2.2": dict(flags=_FLAGS_85, pools=_POOLS_85, hw=None, parser_inits_plugins=True, major=8),
    "8.6.1.6": dict(flags=_FLAGS_86, pools=_POOLS_85 + ["TACTIC_DRAM"], hw=["NONE", "AMPERE_PLUS"],
                    parser_inits_plugins=True, major=8),
    "10.13.3.9": dict(flags=_FLAGS_10, pools=_POOLS_85 + ["TACTIC_DRAM", "TACTIC_SHARED_MEMORY"],
                      hw=["NONE", "AMPERE_PLUS", "SAME_COMPUTE_CAPABILITY"], parser_inits_plugins=False, major=10),
}
TRT_OWN_PLUGINS = ("EfficientNMS_TRT", "BatchedNMSDynamic_TRT")
PLUGIN_OPS = ("DIoUNMS_TRT",) + TRT_OWN_PLUGINS
XAVIER_NX = CudaDevice(0, "Xavier", "7.2", integrated=True, total_memory=7 << 30)
A100 = CudaDevice(0, "NVIDIA A100-SXM4-40GB", "8.0", integrated=False, total_memory=40 << 30)


class StandInState:
    """What the stand-in saw (events in order) and its knobs."""

    def __init__(self, version):
        self.version = version
        self.events = []
        self.registry = set()
        self.num_dla_cores = 0
        self.calib_profile_ok = True
        self.built = []  # (network, config) of each build_serialized_network


def _enum(name, members):
    return enum.IntEnum(name, [(m, i) for i, m in enumerate(members)])  # pybind11 enums: int() works


def make_trt(version="10.13.3.9", state=None):
    """A stand-in ``tensorrt`` module of ``version`` (a key of :data:`RELEASES`); ``trt._state`` is
    its :class:`StandInState`."""
    rel = RELEASES[version]
    st = state or StandInState(version)
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt._state = st
    trt.BuilderFlag = _enum("BuilderFlag", rel["flags"])
    trt.MemoryPoolType = _enum("MemoryPoolType", rel["pools"])
    if rel["hw"]:
        trt.HardwareCompatibilityLevel = _enum("HardwareCompatibilityLevel", rel["hw"])
    trt.DeviceType = _enum("DeviceType", ["GPU", "DLA"])
    trt.ProfilingVerbosity = _enum("ProfilingVerbosity", ["LAYER_NAMES_ONLY", "NONE", "DETAILED"])
    trt.LayerInformationFormat = _enum("LayerInformationFormat", ["ONELINE", "JSON"])
    trt.TensorIOMode = _enum("TensorIOMode", ["NONE", "INPUT", "OUTPUT"])
    creation = ["EXPLICIT_BATCH"] + (["STRONGLY_TYPED"] if rel["major"] >= 10 else [])
    trt.NetworkDefinitionCreationFlag = _enum("NetworkDefinitionCreationFlag", creation)
    trt.DataType = _enum("DataType", ["FLOAT", "HALF", "INT8", "INT32", "BOOL"])
    trt.float32, trt.float16, trt.int8, trt.int32 = (trt.DataType.FLOAT, trt.DataType.HALF, trt.DataType.INT8,
                                                     trt.DataType.INT32)
    layer_types = ["CONVOLUTION", "ACTIVATION", "ELEMENTWISE", "SHUFFLE", "IDENTITY", "PLUGIN_V2", "SHAPE",
                   "CONSTANT", "UNARY", "QUANTIZE", "DEQUANTIZE"] + (["PLUGIN_V3"] if rel["major"] >= 10 else [])
    trt.LayerType = _enum("LayerType", layer_types)
    onnx_dtypes = {1: trt.float32, 10: trt.float16, 3: trt.int8, 6: trt.int32, 9: trt.DataType.BOOL}

    class ILogger:
        def __init__(self):
            pass

    class IInt8Calibrator:
        def __init__(self):
            pass

    trt.ILogger = ILogger
    trt.IInt8EntropyCalibrator2 = type("IInt8EntropyCalibrator2", (IInt8Calibrator,), {})
    trt.IInt8MinMaxCalibrator = type("IInt8MinMaxCalibrator", (IInt8Calibrator,), {})
    if rel["major"] >= 10:
        class IProgressMonitor:
            def __init__(self):
                pass

        trt.IProgressMonitor = IProgressMonitor

    def init_libnvinfer_plugins(logger, namespace):
        assert isinstance(logger, ILogger) and namespace == ""
        st.registry.update(TRT_OWN_PLUGINS)
        st.events.append("init_libnvinfer_plugins")
        return True

    trt.init_libnvinfer_plugins = init_libnvinfer_plugins

    class Tensor:
        def __init__(self, name, dtype, shape=()):
            self.name, self.dtype, self.shape = name, dtype, shape

    class Layer:
        def __init__(self, network, name, type_, outputs):
            self._network, self.name, self.type = network, name, type_
            self._outputs = outputs
            self._precision = None
            self.output_types = {}

        @property
        def num_outputs(self):
            return len(self._outputs)

        def get_output(self, k):
            return self._outputs[k]

        @property
        def precision(self):
            return self._precision or trt.float32

        @precision.setter
        def precision(self, dt):
            if self._network.strongly_typed:
                raise RuntimeError("ILayer::setPrecision: not allowed on a strongly typed network")
            self._precision = dt

        def set_output_type(self, k, dt):
            if self._network.strongly_typed:
                raise RuntimeError("ILayer::setOutputType: not allowed on a strongly typed network")
            self.output_types[k] = dt

    class Network:
        def __init__(self, flags):
            self.flags = flags
            self.strongly_typed = rel["major"] >= 10 and bool(flags & (1 << 1))
            self.explicit_batch = bool(flags & 1) or rel["major"] >= 10
            self.inputs, self.outputs, self.layers = [], [], []

        num_inputs = property(lambda self: len(self.inputs))
        num_outputs = property(lambda self: len(self.outputs))
        num_layers = property(lambda self: len(self.layers))

        def get_input(self, i):
            return self.inputs[i]

        def get_output(self, i):
            return self.outputs[i]

        def get_layer(self, i):
            return self.layers[i]

    class ParserError:
        def __init__(self, desc, node_name, op):
            self._desc, self._name, self._op = desc, node_name, op

        def desc(self):
            return self._desc

        def node(self):
            return 0

        def node_name(self):
            return self._name

        def node_operator(self):
            return self._op

    class OnnxParser:
        def __init__(self, network, logger):
            if rel["parser_inits_plugins"]:  # onnx-tensorrt 8.5-GA ModelImporter: initLibNvInferPlugins
                st.registry.update(TRT_OWN_PLUGINS)
            st.events.append("OnnxParser")
            self.network, self.errors = network, []

        num_errors = property(lambda self: len(self.errors))

        def get_error(self, i):
            return self.errors[i]

        def parse_from_file(self, path):
            net = self.network
            if not net.explicit_batch:
                self.errors.append(ParserError("network must have an explicit batch dimension", "", ""))
                return False
            model = onnx.load(path, load_external_data=False)
            g = model.graph
            types_ = {v.name: onnx_dtypes[v.type.tensor_type.elem_type] for v in list(g.output) + list(g.input)}
            inits = {t.name for t in g.initializer}
            for v in g.input:
                if v.name not in inits:
                    dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim)
                    net.inputs.append(Tensor(v.name, types_[v.name], dims))
            made = {}
            kinds = {"Conv": "CONVOLUTION", "LeakyRelu": "ACTIVATION", "Sigmoid": "ACTIVATION", "Mul": "ELEMENTWISE",
                     "Add": "ELEMENTWISE", "Reshape": "SHUFFLE", "Transpose": "SHUFFLE", "Identity": "IDENTITY",
                     "Cast": "IDENTITY", "Shape": "SHAPE", "Constant": "CONSTANT", "QuantizeLinear": "QUANTIZE",
                     "DequantizeLinear": "DEQUANTIZE"}
            for n in g.node:
                if n.op_type in PLUGIN_OPS or n.domain not in ("", "ai.onnx"):
                    if n.op_type not in st.registry:
                        self.errors.append(ParserError(
                            "Plugin not found, are the plugin name, version, and namespace correct?", n.name,
                            n.op_type))
                        return False
                    kind = "PLUGIN_V2"
                else:
                    kind = kinds.get(n.op_type, "UNARY")
                outs = []
                for o in n.output:
                    dt = types_.get(o, trt.float32)
                    if n.op_type == "Cast":
                        dt = onnx_dtypes[[a.i for a in n.attribute if a.name == "to"][0]]
                    elif n.op_type == "QuantizeLinear":
                        dt = trt.int8
                    t = Tensor(o, dt)
                    made[o] = t
                    outs.append(t)
                net.layers.append(Layer(net, n.name, getattr(trt.LayerType, kind), outs))
            for v in g.output:
                net.outputs.append(made[v.name])
            return True

    trt.OnnxParser = OnnxParser

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, mn, opt, mx):
            self.shapes[name] = (list(mn), list(opt), list(mx))

    attributes = {"int8_calibrator", "profiling_verbosity", "default_device_type", "DLA_core"}
    if rel["hw"]:
        attributes.add("hardware_compatibility_level")
    if rel["major"] >= 10:
        attributes.add("progress_monitor")

    class Config:
        def __init__(self):
            self._flags = {trt.BuilderFlag.TF32}  # TensorRT's default: TF32 on
            self.pools = {}
            self.profiles = []
            self.calibration_profile = None
            if rel["hw"]:
                self.hardware_compatibility_level = trt.HardwareCompatibilityLevel.NONE
            self.default_device_type = trt.DeviceType.GPU
            self.DLA_core = -1

        def __setattr__(self, name, value):
            if not name.startswith("_") and name not in attributes | {"pools", "profiles", "calibration_profile"}:
                raise AttributeError(f"'tensorrt.IBuilderConfig' object has no attribute '{name}' "
                                     f"(TensorRT {version})")
            object.__setattr__(self, name, value)

        def set_flag(self, flag):
            assert isinstance(flag, trt.BuilderFlag), flag
            self._flags.add(flag)

        def clear_flag(self, flag):
            assert isinstance(flag, trt.BuilderFlag), flag
            self._flags.discard(flag)

        def get_flag(self, flag):
            return flag in self._flags

        def set_memory_pool_limit(self, pool, size):
            assert isinstance(pool, trt.MemoryPoolType), pool
            assert isinstance(size, int) and size > 0
            self.pools[pool.name] = size

        def add_optimization_profile(self, p):
            self.profiles.append(p)
            return len(self.profiles) - 1

        num_optimization_profiles = property(lambda self: len(self.profiles))

        def set_calibration_profile(self, p):
            self.calibration_profile = p
            return bool(st.calib_profile_ok) and p in self.profiles

        def can_run_on_DLA(self, layer):
            assert self.default_device_type == trt.DeviceType.DLA
            return layer.type in (trt.LayerType.CONVOLUTION, trt.LayerType.ACTIVATION)

    class Builder:
        def __init__(self, logger):
            assert isinstance(logger, ILogger)

        @property
        def num_DLA_cores(self):
            return st.num_dla_cores

        def create_network(self, flags=0):
            return Network(int(flags))

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            st.built.append((network, config))
            st.events.append("build_serialized_network")
            return b"stand-in plan"

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, plan):
            return None  # no GPU: the builder falls back to the build log's layer table

    trt.Builder, trt.Runtime = Builder, Runtime
    return trt


@pytest.fixture
def stand_in(monkeypatch, tmp_path):
    """``install(version, device)``: the stand-in ``tensorrt`` of ``version`` in ``sys.modules``,
    ``cuda_device`` answering ``device``, and a stand-in ``ctypes`` loader for plugin libraries that
    registers ``DIoUNMS_TRT`` (the library at ``$YOLO4_PLUGIN_LIB``, made here)."""
    lib = tmp_path / "plugins" / "libdiou_nms_plugin.so"
    lib.parent.mkdir()
    lib.write_bytes(b"\x7fELF stand-in")
    monkeypatch.setenv("YOLO4_PLUGIN_LIB", str(lib))
    monkeypatch.setattr(plugins, "_loaded", {})
    loaded = []

    def install(version="10.13.3.9", device=None):
        trt = make_trt(version)

        def cdll(path):
            loaded.append(path)
            trt._state.events.append("load " + path)
            trt._state.registry.add("DIoUNMS_TRT")
            return types.SimpleNamespace()

        monkeypatch.setattr(plugins, "_cdll", cdll)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        monkeypatch.setattr(eb, "cuda_device", lambda index=0: device)
        trt._loaded_libs, trt._plugin_lib = loaded, str(lib)
        return trt

    return install


class Log(list):
    def __call__(self, msg):
        self.append(msg)


def _nms_onnx(path, mode):
    """A small decoded model (boxes [B,N,4], scores [B,N,3]) ending with ``yolo4 export --nms mode``."""
    from onnx import TensorProto, helper, numpy_helper

    from yolo4.convert.nms_export import append_nms
    from yolo4.model_info import ModelInfo
    from yolo4.nms_params import NmsParams

    rng = np.random.RandomState(0)
    inits = [numpy_helper.from_array((rng.randn(4, 3, 1, 1) * 0.2).astype(np.float32), "wb"),
             numpy_helper.from_array((rng.randn(3, 3, 1, 1) * 0.2).astype(np.float32), "ws"),
             numpy_helper.from_array(np.array([0, 4, -1], np.int64), "shape_b"),
             numpy_helper.from_array(np.array([0, 3, -1], np.int64), "shape_s")]
    nodes = [helper.make_node("Conv", ["images", "wb"], ["cb"], name="/layers.0/conv/Conv"),
             helper.make_node("Reshape", ["cb", "shape_b"], ["rb"], name="/decode/Reshape"),
             helper.make_node("Transpose", ["rb"], ["boxes"], perm=[0, 2, 1], name="/decode/Transpose"),
             helper.make_node("Conv", ["images", "ws"], ["cs"], name="/layers.1/conv/Conv"),
             helper.make_node("Sigmoid", ["cs"], ["ss"], name="/decode/Sigmoid"),
             helper.make_node("Reshape", ["ss", "shape_s"], ["rs"], name="/decode/Reshape_1"),
             helper.make_node("Transpose", ["rs"], ["scores"], perm=[0, 2, 1], name="/decode/Transpose_1")]
    graph = helper.make_graph(
        nodes, "nms", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["batch", 1024, 4]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 1024, 3])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    helper.set_model_props(model, ModelInfo(names=["a", "b", "c"], input_hw=(32, 32)).to_metadata())
    append_nms(model, mode, NmsParams(max_output_boxes=20))
    onnx.save(model, str(path))
    return path


def _calib_dir(tmp_path, n=4):
    d = tmp_path / "calib"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        cv2.imwrite(str(d / ("%d.png" % i)), rng.integers(0, 256, (40, 50, 3), dtype=np.uint8))
    return d


def _config(trt):
    (network, config), = trt._state.built
    return network, config


# -- 1.2: TensorRT's own plugins before the parser; the DIoU-NMS plugin loaded by itself -----------

@pytest.mark.parametrize("version", ["8.5.2.2", "10.13.3.9"])
def test_trt_plugins_are_registered_before_the_parser_stand_in(stand_in, tmp_path, version):
    """An ``--nms efficient`` ONNX parses on 10.x only when ``init_libnvinfer_plugins`` ran before the
    parser was made (the 10.x parser registers nothing itself), with no --plugin-lib given."""
    trt = stand_in(version)
    res = eb.build_engine(_nms_onnx(tmp_path / "e.onnx", "efficient"), tmp_path / "e.engine", log=None)
    ev = trt._state.events
    assert ev.index("init_libnvinfer_plugins") < ev.index("OnnxParser") < ev.index("build_serialized_network")
    assert res.meta.output_names[0] == "num_detections" and res.meta.plugin_libraries == []
    assert res.meta.model["nms"] == "efficient" and "nms_params" in res.meta.model  # the runtime reads them
    assert trt._loaded_libs == []  # no DIoU-NMS plugin for EfficientNMS_TRT


def test_diou_plugin_library_is_loaded_by_itself_stand_in(stand_in, tmp_path):
    trt = stand_in("10.13.3.9")
    log = Log()
    res = eb.build_engine(_nms_onnx(tmp_path / "p.onnx", "plugin"), tmp_path / "p.engine", log=log)
    lib = trt._plugin_lib
    assert trt._loaded_libs == [lib]
    assert [m for m in log if "DIoU-NMS plugin" in m and "loading" in m] == [
        f"loading the DIoU-NMS plugin {lib} (the ONNX ends with DIoUNMS_TRT: exported with --nms plugin)"]
    ev = trt._state.events
    assert ev.index("load " + lib) < ev.index("OnnxParser") and ev.index("init_libnvinfer_plugins") < ev.index(
        "OnnxParser")
    meta = read_engine_meta(res.engine_path)
    assert meta.plugin_libraries == [lib] and meta.model["nms"] == "plugin"


def test_diou_plugin_named_by_plugin_lib_is_not_loaded_twice_stand_in(stand_in, tmp_path):
    trt = stand_in("8.6.1.6")
    eb.build_engine(_nms_onnx(tmp_path / "p.onnx", "plugin"), tmp_path / "p.engine", log=None,
                    plugin_libs=[trt._plugin_lib])
    assert trt._loaded_libs == [trt._plugin_lib]


def test_missing_diou_plugin_is_one_line_stand_in(stand_in, tmp_path, monkeypatch):
    stand_in("10.13.3.9")
    monkeypatch.setenv("YOLO4_PLUGIN_LIB", str(tmp_path / "nowhere" / "libdiou_nms_plugin.so"))
    with pytest.raises(Yolo4Error) as e:
        eb.build_engine(_nms_onnx(tmp_path / "p.onnx", "plugin"), tmp_path / "p.engine", log=None)
    assert "build it with `yolo4 build-plugin`" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "p.engine").exists()


# -- 1.6: the DIoU-NMS layer in FP32 in weakly typed FP16/INT8 builds --------------------------------

@pytest.mark.parametrize("version", ["8.5.2.2", "10.13.3.9"])
def test_plugin_layer_pinned_to_fp32_in_fp16_builds_stand_in(stand_in, tmp_path, version):
    trt = stand_in(version)
    log = Log()
    eb.build_engine(_nms_onnx(tmp_path / "p.onnx", "plugin"), tmp_path / "p.engine", fp16=True, log=log)
    network, config = _config(trt)
    (nms,) = [ly for ly in network.layers if ly.type == trt.LayerType.PLUGIN_V2]
    assert nms._precision == trt.float32
    floats = [k for k in range(nms.num_outputs) if nms.get_output(k).dtype == trt.float32]
    assert sorted(nms.output_types) == floats == [1, 2]  # boxes and scores; the int32 outputs untouched
    assert all(v == trt.float32 for v in nms.output_types.values())
    assert config.get_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS) and config.get_flag(trt.BuilderFlag.FP16)
    assert any(m.startswith("DIoU-NMS plugin layer pinned to FP32") for m in log)
    others = [ly for ly in network.layers if ly is not nms]
    assert all(ly._precision is None for ly in others)


def test_plugin_layer_pinned_in_implicit_int8_stand_in(stand_in, tmp_path):
    trt = stand_in("8.5.2.2")
    eb.build_engine(_nms_onnx(tmp_path / "p.onnx", "plugin"), tmp_path / "p.engine", int8=True,
                    calib_data=str(_calib_dir(tmp_path)), calib_images=4, log=None)
    network, config = _config(trt)
    (nms,) = [ly for ly in network.layers if ly.type == trt.LayerType.PLUGIN_V2]
    assert nms._precision == trt.float32 and config.get_flag(trt.BuilderFlag.INT8)


@pytest.mark.parametrize("kw", [{}, {"fp16_onnx": True}])
def test_plugin_layer_left_alone_in_fp32_and_strongly_typed_builds_stand_in(stand_in, tmp_path, kw):
    trt = stand_in("10.13.3.9")
    path = _nms_onnx(tmp_path / "p.onnx", "plugin")
    if kw:  # an FP16 ONNX: on 10.x a strongly typed network (setting a precision there raises)
        from yolo4.convert.fp16 import convert_to_fp16

        onnx.save(convert_to_fp16(onnx.load(str(path))), str(path))
    eb.build_engine(path, tmp_path / "p.engine", log=None)
    network, config = _config(trt)
    assert network.strongly_typed == bool(kw)
    assert all(ly._precision is None and not ly.output_types for ly in network.layers)
    assert not config.get_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)


# -- 1.5: TF32 --------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["8.5.2.2", "10.13.3.9"])
def test_no_tf32_clears_the_flag_and_is_recorded_stand_in(stand_in, tmp_path, version):
    trt = stand_in(version)
    model = _small_onnx(tmp_path / "m.onnx")
    on = eb.build_engine(model, tmp_path / "on.engine", log=None)
    off = eb.build_engine(model, tmp_path / "off.engine", log=None, tf32=False)
    (_, c_on), (_, c_off) = trt._state.built
    assert c_on.get_flag(trt.BuilderFlag.TF32) and not c_off.get_flag(trt.BuilderFlag.TF32)
    assert read_engine_meta(on.engine_path).tf32 is True and read_engine_meta(off.engine_path).tf32 is False


# -- 1.9: set_calibration_profile's bool --------------------------------------------------------------

def test_refused_calibration_profile_is_an_error_stand_in(stand_in, tmp_path):
    trt = stand_in("8.5.2.2")
    trt._state.calib_profile_ok = False
    with pytest.raises(Yolo4Error) as e:
        eb.build_engine(_small_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", int8=True,
                        calib_data=str(_calib_dir(tmp_path)), calib_images=4, log=None)
    assert "TensorRT refused the INT8 calibration profile" in str(e.value) and "\n" not in str(e.value)
    assert trt._state.built == [] and not (tmp_path / "m.engine").exists()


# -- 1.3: DLA --------------------------------------------------------------------------------------

def test_dla_with_a_dynamic_batch_is_refused_stand_in(stand_in, tmp_path):
    trt = stand_in("8.5.2.2", XAVIER_NX)
    trt._state.num_dla_cores = 2
    with pytest.raises(Yolo4Error) as e:
        eb.build_engine(_small_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", fp16=True, dla_core=1, log=None)
    msg = str(e.value)
    assert "--dla-core needs a fixed batch" in msg and "1,4,8" in msg and "--batch 4" in msg and "\n" not in msg
    assert trt._state.built == []


def test_dla_build_reports_layers_and_records_the_core_stand_in(stand_in, tmp_path):
    trt = stand_in("8.5.2.2", XAVIER_NX)
    trt._state.num_dla_cores = 2
    log = Log()
    res = eb.build_engine(_small_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", fp16=True, dla_core=1,
                          batch="2", log=log)
    network, config = _config(trt)
    on_dla = sum(ly.type in (trt.LayerType.CONVOLUTION, trt.LayerType.ACTIVATION) for ly in network.layers)
    assert (on_dla, network.num_layers) == (5, 7)  # 3 convolutions, LeakyRelu, Sigmoid; 2 Identity on the GPU
    assert f"DLA core 1: {on_dla} of {network.num_layers} network layers can run on the DLA, " \
           f"{network.num_layers - on_dla} fall back to the GPU" in log
    assert config.DLA_core == 1 and config.default_device_type == trt.DeviceType.DLA
    assert config.get_flag(trt.BuilderFlag.GPU_FALLBACK)
    meta = read_engine_meta(res.engine_path)
    assert meta.dla_core == 1 and meta.batch_range == (2, 2, 2)


# -- issue 16, 3: engines across machines, memory on a Jetson ----------------------------------------

@pytest.mark.parametrize("kw, needle", [
    ({"version_compatible": True}, "--version-compatible needs TensorRT 8.6 or later; TensorRT 8.5.2"),
    ({"hardware_compatibility": "ampere+"}, "--hardware-compatibility-level needs TensorRT 8.6 or later; "
                                            "TensorRT 8.5.2"),
])
def test_compatibility_options_refused_on_8_5_stand_in(stand_in, tmp_path, kw, needle):
    trt = stand_in("8.5.2.2", A100)
    with pytest.raises(Yolo4Error) as e:
        eb.build_engine(_small_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", log=None, **kw)
    assert needle in str(e.value) and "\n" not in str(e.value) and trt._state.built == []


@pytest.mark.parametrize("version", ["8.6.1.6", "10.13.3.9"])
def test_version_and_hardware_compatible_build_stand_in(stand_in, tmp_path, version):
    trt = stand_in(version, A100)
    log = Log()
    res = eb.build_engine(_small_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", log=log,
                          version_compatible=True, hardware_compatibility="AMPERE_PLUS")
    _, config = _config(trt)
    assert config.get_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    assert not config.get_flag(trt.BuilderFlag.EXCLUDE_LEAN_RUNTIME)  # the lean runtime is embedded
    assert config.hardware_compatibility_level == trt.HardwareCompatibilityLevel.AMPERE_PLUS
    meta = read_engine_meta(res.engine_path)
    assert meta.version_compatible and meta.hardware_compatibility == "ampere+"
    assert meta.gpu_name == A100.name and meta.compute_capability == "8.0"
    assert any("version-compatible (lean runtime embedded)" in m and "hardware-compatible: ampere+" in m
               for m in log)


def test_same_compute_capability_level_only_where_the_release_has_it_stand_in(stand_in, tmp_path):
    stand_in("8.6.1.6", A100)
    with pytest.raises(Yolo4Error, match="same-compute-capability: TensorRT 8.6.1 does not have it"):
        eb.build_engine(_small_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", log=None,
                        hardware_compatibility="same-cc")
    trt = stand_in("10.13.3.9", A100)
    res = eb.build_engine(_small_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", log=None,
                          hardware_compatibility="same-compute-capability")
    assert _config(trt)[1].hardware_compatibility_level == trt.HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY
    assert res.meta.hardware_compatibility == "same-compute-capability"
    with pytest.raises(Yolo4Error, match="must be one of none, ampere"):
        eb.build_engine(_small_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", log=None,
                        hardware_compatibility="hopper+")


@pytest.mark.parametrize("device, needle", [
    (XAVIER_NX, "this GPU (Xavier, compute capability 7.2) is a Jetson (integrated GPU)"),
    (CudaDevice(0, "Tesla T4", "7.5"), "this GPU (Tesla T4, compute capability 7.5) is older than Ampere"),
])
def test_ampere_plus_needs_an_ampere_discrete_gpu_stand_in(stand_in, tmp_path, device, needle):
    trt = stand_in("10.13.3.9", device)
    with pytest.raises(Yolo4Error) as e:
        eb.build_engine(_small_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", log=None,
                        hardware_compatibility="ampere+")
    assert needle in str(e.value) and trt._state.built == []


@pytest.mark.parametrize("version, device, workspace, pools", [
    ("8.6.1.6", XAVIER_NX, None, {"WORKSPACE": 1 << 30, "TACTIC_DRAM": (7 << 30) // 2}),
    ("8.5.2.2", XAVIER_NX, None, {"WORKSPACE": 1 << 30}),  # JetPack 5.1: no TACTIC_DRAM pool
    ("8.6.1.6", XAVIER_NX, 512, {"WORKSPACE": 512 << 20, "TACTIC_DRAM": (7 << 30) // 2}),
    ("10.13.3.9", A100, None, {}),  # a discrete GPU: TensorRT's defaults
    ("10.13.3.9", None, 2048, {"WORKSPACE": 2048 << 20}),
])
def test_memory_pools_sized_for_a_jetson_stand_in(stand_in, tmp_path, version, device, workspace, pools):
    trt = stand_in(version, device)
    log = Log()
    res = eb.build_engine(_small_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", workspace=workspace, log=log)
    assert _config(trt)[1].pools == pools
    assert res.meta.workspace_mib == (pools["WORKSPACE"] >> 20 if pools else None)
    summary = [m for m in log if m.startswith("summary: ")][0]
    assert "built in " in summary and ", peak host memory " in summary and summary.endswith(" MiB")
    assert res.meta.peak_host_memory_mib > 10  # this Python process holds more than 10 MiB


# -- the command line, with the stand-in installed in a subprocess -----------------------------------

def _cli(tmp_path, version, *args):
    model = _small_onnx(tmp_path / "m.onnx")
    code = ("import sys\n"
            "from tests.test_engine_builder_standin import make_trt\n"
            f"sys.modules['tensorrt'] = make_trt({version!r})\n"
            "import yolo4.convert.engine_builder as eb\n"
            "eb.cuda_device = lambda index=0: None\n"
            "from yolo4.cli import main\n"
            f"main(['build-engine', {str(model)!r}, '-o', {str(tmp_path / 'm.engine')!r}] + {list(map(str, args))!r})\n")
    from tests.conftest import REPO

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)


def test_cli_compatibility_options_stand_in(tmp_path):
    p = _cli(tmp_path, "8.5.2.2", "--version-compatible")
    assert_user_error(p, "--version-compatible needs TensorRT 8.6 or later")
    p = _cli(tmp_path, "8.5.2.2", "--hardware-compatibility-level", "ampere+")
    assert_user_error(p, "--hardware-compatibility-level needs TensorRT 8.6 or later")
    p = _cli(tmp_path, "10.13.3.9", "--version-compatible", "--hardware-compatibility-level", "ampere+", "--no-tf32")
    assert p.returncode == 0, p.stdout + p.stderr
    meta = read_engine_meta(tmp_path / "m.engine")
    assert meta.version_compatible and meta.hardware_compatibility == "ampere+" and meta.tf32 is False
    assert "TF32 off" in p.stdout and "peak host memory" in p.stdout
