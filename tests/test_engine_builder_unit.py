"""The engine builder's own decisions, line by line (yolo4/convert/engine_builder.py): what it reads
from an ONNX, the profile shapes, the refusals (whole one-line messages, with the file), the lines it
prints (build description, summary, progress), what it hands TensorRT and what its sidecar records.

TensorRT cannot be installed here: the builds go through the STAND-IN ``tensorrt`` module of
tests/test_engine_builder_standin.py (:func:`make_trt`), given a few more of the real module's
behaviours by :func:`_extend` (a logger the builder talks to during the build, a build that can
fail or be cancelled, a timing cache, an engine inspector, a calibrator that TensorRT asks for its
cache and then writes it). No GPU, no real TensorRT build; each test takes well under a second.
"""

import hashlib
import os
import re
import signal
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest

from tests.test_engine_build import INSPECTOR_JSON, LOG_8X, _small_onnx, _Tty
from yolo4.convert import engine_builder as eb
from yolo4.convert import trt_compat as compat
from yolo4.engine_meta import CudaDevice, read_engine_meta
from yolo4.errors import ModelFileError, Yolo4Error
from yolo4.model_info import ModelInfo

onnx = pytest.importorskip("onnx")
standin = pytest.importorskip("tests.test_engine_builder_standin")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

make_trt, Log, XAVIER_NX, A100 = standin.make_trt, standin.Log, standin.XAVIER_NX, standin.A100
_nms_onnx, _calib_dir = standin._nms_onnx, standin._calib_dir
ORIN = CudaDevice(0, "Orin", "8.7", integrated=True, total_memory=32 << 30)

F = compat.TrtFeatures
V8, V86, V10 = F("tensorrt", "8.5.2.2"), F("tensorrt", "8.6.1.6"), F("tensorrt", "10.13.3.9")
RTX = F("tensorrt-rtx", "1.7.1.116")
PLAN = b"stand-in plan"


# ------------------------------------------------------------------------------------------------
# the stand-in TensorRT, with what these tests need of the real one
# ------------------------------------------------------------------------------------------------

def _extend(trt):
    """More of TensorRT's behaviour on a :func:`make_trt` stand-in; the knobs live on ``trt._state``:

    - ``build_log``: ``(severity, message)`` TensorRT logs during the build (1 error, 2 warning,
      3 info, 4 verbose);
    - ``plan``: what the build returns (None: the build failed);
    - ``on_build(network, config)``: run during the build (e.g. a Ctrl-C);
    - ``inspector``: the engine inspector's JSON (None: the plan cannot be deserialized, no GPU);
    - ``max_profiles``: optimization profiles the config keeps (None: all);
    - ``dla_takes_nothing``: ``can_run_on_DLA`` says no to every layer.

    Like the real bindings, ``Runtime`` and ``OnnxParser`` take an ``ILogger`` only.

    A config has a timing cache (``create_timing_cache`` / ``set_timing_cache`` / ``get_timing_cache``,
    serialized as ``b"timings:" + what it was made from``), and the build asks an INT8 calibrator for
    its cache and, when it has none, "calibrates" (no GPU here: no batches) and writes one."""
    st = trt._state
    st.build_log, st.plan, st.on_build, st.inspector = [], PLAN, None, None
    st.max_profiles, st.dla_takes_nothing, st.monitor_said = None, False, []
    base = trt.Builder
    config_cls = type(base.create_builder_config(None))

    class TimingCache:
        def __init__(self, data):
            self.data = bytes(data)

        def serialize(self):
            return b"timings:" + self.data

    def add_profile(self, p):
        if st.max_profiles is not None and len(self.profiles) >= st.max_profiles:
            return -1
        self.profiles.append(p)
        return len(self.profiles) - 1

    def can_run_on_dla(self, layer, _orig=config_cls.can_run_on_DLA):
        return False if st.dla_takes_nothing else _orig(self, layer)

    config_cls.create_timing_cache = lambda self, data: TimingCache(data)
    config_cls.set_timing_cache = lambda self, cache, ignore_mismatch: object.__setattr__(
        self, "_timing", cache) or True
    config_cls.get_timing_cache = lambda self: getattr(self, "_timing", None)
    config_cls.add_optimization_profile = add_profile
    config_cls.can_run_on_DLA = can_run_on_dla

    class Builder(base):
        def __init__(self, logger):
            base.__init__(self, logger)
            self._logger = logger

        def build_serialized_network(self, network, config):
            plan = base.build_serialized_network(self, network, config)
            calibrator = getattr(config, "int8_calibrator", None)
            if calibrator is not None and calibrator.read_calibration_cache() is None:
                calibrator.write_calibration_cache(b"stand-in scales")
            if st.on_build is not None:
                st.on_build(network, config)
            for severity, message in st.build_log:
                self._logger.log(severity, message)
            return plan if st.plan is PLAN else st.plan

    class Runtime:
        def __init__(self, logger):
            if not isinstance(logger, trt.ILogger):  # pybind11: "incompatible constructor arguments"
                raise TypeError("Runtime(): incompatible constructor arguments")

        def deserialize_cuda_engine(self, plan):
            if not isinstance(plan, (bytes, bytearray, memoryview)):
                raise TypeError("deserialize_cuda_engine(): incompatible function arguments")
            if st.inspector is None:
                return None
            inspector = types.SimpleNamespace(get_engine_information=lambda fmt: st.inspector)
            return types.SimpleNamespace(create_engine_inspector=lambda: inspector)

    base_parser = trt.OnnxParser

    class OnnxParser(base_parser):
        def __init__(self, network, logger):
            if not isinstance(logger, trt.ILogger):  # pybind11: "incompatible constructor arguments"
                raise TypeError("OnnxParser(): incompatible constructor arguments")
            base_parser.__init__(self, network, logger)

    trt.Builder, trt.Runtime, trt.OnnxParser = Builder, Runtime, OnnxParser
    return trt


@pytest.fixture
def trt_stand_in(monkeypatch, tmp_path):
    """``install(version, device)``: an extended stand-in ``tensorrt`` of ``version`` in ``sys.modules``
    (``tensorrt_rtx`` absent), ``cuda_device(0)`` answering ``device`` (any other index fails), and the
    DIoU-NMS plugin library of the stand-in fixture at ``$YOLO4_PLUGIN_LIB``."""
    from yolo4 import plugins

    lib = tmp_path / "plugins" / "libdiou_nms_plugin.so"
    lib.parent.mkdir()
    lib.write_bytes(b"\x7fELF stand-in")
    monkeypatch.setenv("YOLO4_PLUGIN_LIB", str(lib))
    monkeypatch.setattr(plugins, "_loaded", {})

    def install(version="10.13.3.9", device=None):
        trt = _extend(make_trt(version))

        def cdll(path):
            trt._state.events.append("load " + path)
            trt._state.registry.add("DIoUNMS_TRT")
            return types.SimpleNamespace()

        def cuda_device(index=0):
            assert index == 0, index
            return device

        monkeypatch.setattr(plugins, "_cdll", cdll)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        monkeypatch.setitem(sys.modules, "tensorrt_rtx", None)
        monkeypatch.setattr(eb, "cuda_device", cuda_device)
        trt._plugin_lib = str(lib)
        return trt

    return install


@pytest.fixture(autouse=True)
def _in_tmp_path(monkeypatch, tmp_path):
    """Each test runs in its own folder: a file written to a relative path stays there."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def no_tensorrt(monkeypatch):
    """Neither ``tensorrt`` nor ``tensorrt_rtx`` importable."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", None)


def _config(trt):
    (network, config), = trt._state.built
    return network, config


def _raises(exc, fn, *args, **kwargs):
    with pytest.raises(exc) as e:
        fn(*args, **kwargs)
    return str(e.value)


# ------------------------------------------------------------------------------------------------
# small ONNX files
# ------------------------------------------------------------------------------------------------

def _model(nodes, inputs, outputs, inits=(), meta=True, path=None):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    if meta:
        helper.set_model_props(model, ModelInfo(names=["a"], input_hw=(64, 64)).to_metadata())
    if path is not None:
        onnx.save(model, str(path))
    return model


def _vi(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def _identity_onnx(path, shape, **kw):
    return _model([helper.make_node("Identity", ["images"], ["boxes"], name="id")], [_vi("images", shape)],
                  [_vi("boxes", shape)], path=path, **kw)


def _deep_onnx(path):
    """Like tests/test_engine_build.py's small ONNX with two convolutions between the first one and the
    heads (/layers.1, /layers.2): the ones the Q/DQ quantizer makes INT8 by default."""
    rng = np.random.RandomState(0)
    w = lambda name, *shape: numpy_helper.from_array((rng.randn(*shape) * 0.2).astype(np.float32), name)  # noqa: E731
    inits = [w("w0", 8, 3, 3, 3), w("w1", 8, 8, 3, 3), w("w2", 8, 8, 3, 3), w("wb", 4, 8, 1, 1), w("ws", 3, 8, 1, 1)]
    nodes, src = [], "images"
    for k, wname in enumerate(("w0", "w1", "w2")):
        nodes += [helper.make_node("Conv", [src, wname], ["c%d" % k], pads=[1, 1, 1, 1], name="/layers.%d/conv/Conv" % k),
                  helper.make_node("LeakyRelu", ["c%d" % k], ["a%d" % k], alpha=0.1, name="/layers.%d/act/LeakyRelu" % k)]
        src = "a%d" % k
    nodes += [helper.make_node("Conv", [src, "wb"], ["b"], name="/layers.3/conv/Conv"),
              helper.make_node("Conv", [src, "ws"], ["c4"], name="/layers.4/conv/Conv"),
              helper.make_node("Sigmoid", ["c4"], ["s4"], name="/layers.4/Sigmoid"),
              helper.make_node("Identity", ["b"], ["boxes"], name="/decode/boxes"),
              helper.make_node("Identity", ["s4"], ["scores"], name="/decode/scores")]
    graph = helper.make_graph(nodes, "deep", [_vi("images", ["batch", 3, 64, 64])],
                              [_vi("boxes", ["batch", 4, 64, 64]), _vi("scores", ["batch", 3, 64, 64])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    info = ModelInfo(names=["red", "green", "blue"], input_hw=(64, 64), anchors=[[(10.0, 14.0)]], strides=[32])
    helper.set_model_props(model, info.to_metadata())
    onnx.save(model, str(path))
    return Path(path)


# ------------------------------------------------------------------------------------------------
# read_onnx_facts, onnx_precision
# ------------------------------------------------------------------------------------------------

def test_read_onnx_facts_refusals_name_the_file(tmp_path):
    missing = tmp_path / "none.onnx"
    assert _raises(ModelFileError, eb.read_onnx_facts, missing) == f"{missing}: ONNX model not found"
    assert _raises(ModelFileError, eb.read_onnx_facts, tmp_path) == f"{tmp_path}: not a file"
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a protobuf\n")
    try:  # onnx's own reason, on one line
        onnx.load(str(bad))
        why = None
    except Exception as e:  # noqa: BLE001 - whatever onnx raises
        why = " ".join(str(e).split())
    assert why, "onnx accepted a text file"
    assert _raises(ModelFileError, eb.read_onnx_facts, bad) == f"{bad}: not an ONNX model ({why[:120]})"
    empty = tmp_path / "empty.onnx"
    onnx.save(helper.make_model(helper.make_graph([], "g", [], [])), str(empty))
    assert _raises(ModelFileError, eb.read_onnx_facts, empty) == f"{empty}: not an ONNX model (no graph nodes)"
    plain = _small_onnx(tmp_path / "plain.onnx", metadata=False)
    assert _raises(ModelFileError, eb.read_onnx_facts, plain).startswith(f"{plain}: ")


def test_read_onnx_facts_needs_one_4d_input(tmp_path):
    two = tmp_path / "two.onnx"
    _model([helper.make_node("Add", ["images", "extra"], ["boxes"])],
           [_vi("images", [1, 3, 64, 64]), _vi("extra", [1, 3, 64, 64])], [_vi("boxes", [1, 3, 64, 64])], path=two)
    assert _raises(ModelFileError, eb.read_onnx_facts, two) == \
        f"{two}: expected one input tensor [B,3,H,W], found 2"
    flat = tmp_path / "flat.onnx"
    _identity_onnx(flat, [1, 3, 64])
    assert _raises(ModelFileError, eb.read_onnx_facts, flat) == \
        f"{flat}: expected a 4-D input [B,3,H,W], found 3 dimensions"


def test_read_onnx_facts_dimensions(tmp_path):
    """A dimension of 1 is kept; a symbolic one and a 0 (what some exporters write for "unknown") are -1."""
    path = tmp_path / "m.onnx"
    _identity_onnx(path, [1, 1, "h", 0])
    assert eb.read_onnx_facts(path).input_shape == [1, 1, -1, -1]


def test_read_onnx_facts_reads_the_graph_not_the_external_weights(tmp_path):
    """A model saved with external weights whose data file is gone still yields its facts (and its
    float nodes): only the graph is read."""
    src = onnx.load(str(_small_onnx(tmp_path / "src.onnx")))
    path = tmp_path / "ext.onnx"
    onnx.save(src, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="ext.data",
              size_threshold=0)
    (tmp_path / "ext.data").unlink()
    facts = eb.read_onnx_facts(path)
    assert facts.input_shape == [-1, 3, 64, 64] and facts.output_names == ["boxes", "scores"]
    assert "/layers.0/conv/Conv" in eb._float_nodes(path, ())


def test_unnamed_plugin_node_is_named_after_its_op_and_index(tmp_path):
    path = tmp_path / "p.onnx"
    nodes = [helper.make_node("Identity", ["images"], ["x"], name="first"),
             helper.make_node("DIoUNMS_TRT", ["x"], ["boxes"])]
    _model(nodes, [_vi("images", [1, 3, 64, 64])], [_vi("boxes", [1, 3, 64, 64])], path=path)
    facts = eb.read_onnx_facts(path)
    assert facts.plugin_nodes == ["DIoUNMS_TRT_1"] and facts.needs_diou_plugin


def test_no_onnx_package_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert _raises(Yolo4Error, eb.import_onnx) == (
        "reading the ONNX needs the onnx package: pip install onnx (or pip install 'yolo4[export]')")


def _const_model(dtype, attr="value"):
    value = numpy_helper.from_array(np.ones((1,), dtype))
    nodes = [helper.make_node("Identity", ["images"], ["x"], name="id"),
             helper.make_node("Constant", [], ["c"], **{attr: value}),
             helper.make_node("Add", ["x", "c"], ["boxes"])]
    return _model(nodes, [_vi("images", [1, 3, 64, 64])], [_vi("boxes", [1, 3, 64, 64])], meta=False)


def test_onnx_precision_of_constants():
    assert eb.onnx_precision(_const_model(np.float16)) == "fp16"
    assert eb.onnx_precision(_const_model(np.float32)) == "fp32"
    # a float16 tensor in another attribute than a Constant's value is not a float16 constant
    node = helper.make_node("ConstantOfShape", ["images"], ["boxes"],
                            value=numpy_helper.from_array(np.zeros((1,), np.float16)))
    other = _model([node], [_vi("images", [4], TensorProto.INT64)], [_vi("boxes", [1, 3, 64, 64])], meta=False)
    assert eb.onnx_precision(other) == "fp32"


# ------------------------------------------------------------------------------------------------
# the profile, the DLA batch, the hardware target
# ------------------------------------------------------------------------------------------------

def _facts(shape, hw=(320, 416), path="m.onnx", precision="fp32", **kw):
    return eb.OnnxFacts(Path(path), ModelInfo(names=["a"], input_hw=hw), precision, "images", list(shape),
                        ["boxes", "scores"], **kw)


def test_profile_shapes_take_fixed_dimensions_from_the_onnx():
    assert eb._profile_shapes(_facts([-1, 1, 32, 48]), (2, 4, 6)) == {
        "min": [2, 1, 32, 48], "opt": [4, 1, 32, 48], "max": [6, 1, 32, 48]}
    assert eb._profile_shapes(_facts([-1, -1, -1, 1]), None)["opt"] == [4, 3, 320, 1]
    assert eb._profile_shapes(_facts([-1, 1, 1, -1]), None)["min"] == [1, 1, 1, 416]
    assert eb._profile_shapes(_facts([-1, 1, -1, -1]), None)["min"] == [1, 1, 320, 416]
    assert eb._profile_shapes(_facts([1, 3, -1, -1]), None) == {k: [1, 3, 320, 416] for k in ("min", "opt", "max")}
    assert eb._profile_shapes(_facts([1, 3, 8, 8]), (1, 1, 1))["max"] == [1, 3, 8, 8]


def test_fixed_batch_refusal_names_the_onnx():
    facts = _facts([2, 3, 64, 64], path="fixed.onnx")
    assert _raises(Yolo4Error, eb._profile_shapes, facts, (1, 4, 8)) == (
        "fixed.onnx: the ONNX has a fixed batch of 2: drop --batch (or export with a dynamic batch: yolo4 export "
        "without --batch)")


def test_dla_needs_a_fixed_batch_message():
    shapes = eb._profile_shapes(_facts([-1, 3, 64, 64]), (2, 4, 8))
    assert _raises(Yolo4Error, eb._check_dla_batch, 0, shapes) == (
        "--dla-core needs a fixed batch: DLA runs only when the profile's MIN = OPT = MAX (here 2,4,8, so every "
        "layer would run on the GPU); add --batch N, e.g. --batch 4")
    assert eb._check_dla_batch(None, shapes) is None
    assert eb._check_dla_batch(0, eb._profile_shapes(_facts([-1, 3, 64, 64]), (4, 4, 4))) is None


def test_ampere_plus_hardware_target():
    msg = _raises(Yolo4Error, eb._check_hardware_target, "ampere+", ORIN)
    assert msg == ("--hardware-compatibility-level ampere+ builds on an Ampere or later discrete GPU; this GPU "
                   "(Orin, compute capability 8.7) is a Jetson (integrated GPU): build the engine on this machine "
                   "without it")
    # a device that does not say whether it is integrated is taken as discrete
    old = types.SimpleNamespace(name="Tesla T4", compute_capability="7.5")
    assert _raises(Yolo4Error, eb._check_hardware_target, "ampere+", old).endswith(
        "this GPU (Tesla T4, compute capability 7.5) is older than Ampere: build the engine on this machine "
        "without it")
    assert eb._check_hardware_target("ampere+", types.SimpleNamespace(name="RTX", compute_capability="8.6")) is None
    assert eb._check_hardware_target("ampere+", types.SimpleNamespace(name="?", compute_capability="n/a")) is None
    assert eb._check_hardware_target("none", XAVIER_NX) is None and eb._check_hardware_target("ampere+", None) is None


# ------------------------------------------------------------------------------------------------
# memory pools, plugin library
# ------------------------------------------------------------------------------------------------

def _api(version):
    return compat.TrtApi(make_trt(version), "tensorrt")


@pytest.mark.parametrize("version, device, workspace, pools, line", [
    ("8.6.1.6", XAVIER_NX, None, {"WORKSPACE": 1 << 30, "TACTIC_DRAM": (7 << 30) // 2},
     "Jetson (memory shared with the CPU): workspace 1024 MiB, tactic memory 3584 MiB of 7168 MiB"),
    ("8.5.2.2", XAVIER_NX, 300, {"WORKSPACE": 300 << 20},
     "Jetson (memory shared with the CPU): workspace 300 MiB of 7168 MiB"),
    ("10.13.3.9", A100, 512, {"WORKSPACE": 512 << 20}, None),  # a discrete GPU: no tactic pool
    ("10.13.3.9", types.SimpleNamespace(name="GPU"), None, {}, None),  # nothing known: TensorRT's defaults
    ("8.6.1.6", types.SimpleNamespace(name="Jetson", integrated=True), None, {"WORKSPACE": 1 << 30}, None),
])
def test_memory_limits(version, device, workspace, pools, line):
    api = _api(version)
    config = api.trt.Builder.create_builder_config(None)
    log = Log()
    mib = eb._memory_limits(api, config, workspace, device, log)
    assert config.pools == pools
    assert mib == (pools["WORKSPACE"] >> 20 if pools else None)
    assert log == ([line] if line else [])


def test_diou_plugin_library_choice(tmp_path, monkeypatch):
    lib = tmp_path / "libdiou_nms_plugin.so"
    monkeypatch.setenv("YOLO4_PLUGIN_LIB", str(lib))
    facts = _facts([-1, 3, 32, 32], path="p.onnx", plugin_nodes=["nms"])
    assert _raises(Yolo4Error, eb._diou_plugin_library, facts, [], RTX, Log()) == (
        "p.onnx: the ONNX ends with the DIoU-NMS plugin (exported with --nms plugin), which TensorRT for RTX 1.7.1 "
        "cannot load: export with --nms none (NMS on the CPU) or build with --backend tensorrt")
    assert _raises(Yolo4Error, eb._diou_plugin_library, facts, [], V10, Log()) == (
        f"{lib}: DIoU-NMS plugin library not found, and the ONNX ends with DIoUNMS_TRT (exported with --nms "
        "plugin): build it with `yolo4 build-plugin` (or give --plugin-lib)")
    other = tmp_path / "libother.so"
    assert eb._diou_plugin_library(facts, [other], V10, Log()) == []  # the other one may hold the creator
    lib.write_bytes(b"")
    log = Log()
    assert eb._diou_plugin_library(facts, [other], V10, log) == [str(lib)]
    assert log == [f"loading the DIoU-NMS plugin {lib} (the ONNX ends with DIoUNMS_TRT: exported with --nms plugin)"]
    assert eb._diou_plugin_library(facts, [tmp_path / "x" / lib.name], V10, Log()) == []  # named by --plugin-lib
    assert eb._diou_plugin_library(_facts([-1, 3, 32, 32]), [], RTX, Log()) == []


# ------------------------------------------------------------------------------------------------
# printed lines: time, description, summary
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seconds, text", [
    (0.04, "0.0 s"), (12.34, "12.3 s"), (59.0, "59.0 s"), (60.0, "1:00"), (61.9, "1:01"), (119.5, "1:59"),
    (125.0, "2:05"), (3600.0, "60:00"), (3725.0, "62:05"),
])
def test_fmt_time(seconds, text):
    assert eb._fmt_time(seconds) == text


def test_summary_lines():
    assert eb._summary("fp16", "none", {"fp16": 40, "fp32": 3}, "inspector", 3 << 20, 75.0, 1234.4) == (
        "summary: FP16 engine, layers by precision: FP16 40, FP32 3 (from the inspector), 3.0 MiB, built in 1:15, "
        "peak host memory 1234 MiB")
    assert eb._summary("int8", "explicit", {}, "", 3 << 19, 2.5) == (
        "summary: INT8 (explicit) engine, layers by precision: not reported, 1.5 MiB, built in 2.5 s")
    assert eb._summary("int8", "implicit", {"int8": 1}, "build log", 0, 0.0, None) == (
        "summary: INT8 (implicit) engine, layers by precision: INT8 1 (from the build log), 0.0 MiB, built in 0.0 s")


def test_describe_build_lines():
    dyn = eb._profile_shapes(_facts([-1, 3, 64, 64]), (2, 4, 16))
    plan = compat.plan_precision(V10, "fp32")
    assert eb._describe_build(V10, plan, dyn, [-1, 3, 64, 64], [], None) == (
        "building TensorRT 10.13.3 engine: FP32, weakly typed, batch 2/4/16 (min/opt/max)")
    fixed = eb._profile_shapes(_facts([2, 3, 64, 64]), None)
    plan = compat.plan_precision(V86, "fp32", int8=True)
    assert eb._describe_build(V86, plan, fixed, [2, 3, 64, 64], [], 1, tf32=False, version_compatible=True,
                              hw_level="ampere+", workspace_mib=512) == (
        "building TensorRT 8.6.1 engine: INT8, implicit quantization, weakly typed, fixed batch 2, DLA core 1 "
        "(GPU fallback), TF32 off, version-compatible (lean runtime embedded), hardware-compatible: ampere+, "
        "workspace 512 MiB")
    plan = compat.plan_precision(V10, "fp16")
    assert eb._describe_build(V10, plan, dyn, [-1, 3, 64, 64], [], None) == (
        "building TensorRT 10.13.3 engine: FP16, strongly typed, batch 2/4/16 (min/opt/max)")
    plan = compat.plan_precision(RTX, "fp32")
    assert eb._describe_build(RTX, plan, fixed, [2, 3, 64, 64], [], None) == (
        "building TensorRT for RTX 1.7.1 engine: FP32, strongly typed, fixed batch 2, ahead of time for compute "
        "capability 8.0+ (TensorRT for RTX's default)")
    plan = compat.plan_precision(RTX, "fp32", int8=True)
    assert eb._describe_build(RTX, plan, dyn, [-1, 3, 64, 64], ["8.6", "12.0"], None) == (
        "building TensorRT for RTX 1.7.1 engine: INT8, explicit quantization, strongly typed, batch 2/4/16 "
        "(min/opt/max), ahead of time for compute capability 8.6, 12.0")


# ------------------------------------------------------------------------------------------------
# progress line
# ------------------------------------------------------------------------------------------------

_Stream = _Tty  # a stand-in terminal (``tty=True``) or pipe


class _Ticks:
    """A stand-in for the progress thread's stop event: ``wait`` says "not stopped" ``n`` times."""

    def __init__(self, n):
        self.n = n

    def wait(self, timeout):
        self.n -= 1
        return self.n < 0

    def set(self):
        self.n = 0


def test_progress_defaults(monkeypatch):
    err = _Stream(True)
    monkeypatch.setattr(sys, "stderr", err)
    p = eb._Progress(print)
    assert (p.tick, p.line_every, p.stream, p.tty, p.phase, p.cancelled) == (1.0, 30.0, err, True, "", False)
    assert not eb._Progress(print, object()).tty  # a stream without isatty is not a terminal
    p.stop()  # never started: nothing to join, nothing to erase
    assert err.text == ""


def test_progress_phase_text():
    p = eb._Progress(print, _Stream(False))
    p.on_phase("Building engine", 2, 6)
    assert p.phase == "Building engine 2/6"
    p.on_phase("Parsing", 0, 0)
    assert p.phase == "Parsing"


def test_progress_line_on_a_terminal():
    term = _Stream(True)
    p = eb._Progress(print, term, tick=0)
    p.clear()
    assert term.text == ""  # nothing drawn: nothing erased
    p._t0, p._stop = time.time() - 65.5, _Ticks(1)
    p._run()
    assert re.fullmatch("\r\033\\[Kbuilding engine: 1:0[56]", term.text), term.text  # 65.5 s (+ a delay)
    p.clear()
    p.clear()
    assert re.fullmatch("\r\033\\[Kbuilding engine: 1:0[56]\r\033\\[K", term.text)  # erased once
    term.text = ""
    p.on_phase("x" * 70, 1, 2)
    p._stop = _Ticks(1)
    p._run()
    assert re.fullmatch("\r\033\\[Kbuilding engine: 1:0[56] \\[%s\\]" % ("x" * 60), term.text)  # cut to 60


def test_progress_lines_elsewhere():
    lines = []
    p = eb._Progress(lines.append, _Stream(False), tick=0, line_every=30.0)
    p._t0, p._stop = time.time() - 95.5, _Ticks(5)
    p._run()
    assert len(lines) == 1 and re.fullmatch("still building: 1:3[56] elapsed", lines[0])  # one per 30 s
    p.on_phase("Building", 3, 4)
    p._t0, p._stop = time.time() - 95.5, _Ticks(1)
    p._run()
    assert len(lines) == 2 and re.fullmatch(r"still building: 1:3[56] elapsed \[Building 3/4\]", lines[-1])


def test_progress_thread():
    term = _Stream(True)
    p = eb._Progress(print, term, tick=0.01)
    p.start()
    thread = p._thread
    assert thread.daemon and thread.name == "yolo4-build-progress"  # never keeps a Ctrl-C'd process alive
    deadline = time.time() + 5
    while "building engine: " not in term.text and time.time() < deadline:
        time.sleep(0.01)
    p.stop()
    assert not thread.is_alive() and term.text.endswith("\r\033[K")
    assert re.match(r"\r\033\[Kbuilding engine: \d+\.\d s", term.text), term.text


# ------------------------------------------------------------------------------------------------
# small helpers: sha256, peak memory, float nodes, sibling ONNX files
# ------------------------------------------------------------------------------------------------

def test_sha256_of_a_file(tmp_path):
    data = os.urandom((1 << 20) + 12345)  # more than one read
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert eb._sha256(path) == hashlib.sha256(data).hexdigest()


def test_peak_host_memory(monkeypatch):
    resource = pytest.importorskip("resource")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    mib = eb._peak_host_memory_mib()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if sys.platform == "darwin":
        assert before / (1 << 20) <= mib <= after / (1 << 20)
    else:
        assert before / 1024 <= mib <= after / 1024  # Linux: KiB
    monkeypatch.setattr(sys, "platform", "darwin")  # a stand-in macOS: ru_maxrss in bytes
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert eb._peak_host_memory_mib() == pytest.approx(rss / (1 << 20), rel=0.01)
    monkeypatch.setitem(sys.modules, "resource", None)  # Windows has no resource module
    assert eb._peak_host_memory_mib() is None


def test_float_nodes_add_the_excluded_once(tmp_path):
    from yolo4.calib.qdq import default_float_nodes

    path = _small_onnx(tmp_path / "m.onnx")
    defaults = list(default_float_nodes(onnx.load(str(path))))
    extra = ["/layers.0/act/LeakyRelu"]
    assert extra[0] not in defaults, defaults
    assert eb._float_nodes(path, ()) == defaults
    assert eb._float_nodes(path, [extra[0], extra[0]] + defaults[:1]) == defaults + [extra[0]]
    assert _raises(Yolo4Error, eb._float_nodes, path, ["nothing*"]).startswith(
        f"{path}: --int8-exclude 'nothing*' matches no node")


def test_fp16_onnx_beside_the_engine(tmp_path):
    pytest.importorskip("onnxconverter_common")
    src = _small_onnx(tmp_path / "m.onnx")
    log = Log()
    out = eb._make_fp16_onnx(src, tmp_path / "out" / "m.engine", log)
    assert out == tmp_path / "out" / "m-fp16.onnx"
    model = onnx.load(str(out))
    assert eb.onnx_precision(model) == "fp16"
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [TensorProto.FLOAT]  # float32 I/O
    assert log == [f"converted to FP16 (TensorRT builds it strongly typed): wrote {out}"]
    assert eb.onnx_precision(onnx.load(str(src))) == "fp32"  # the input is left alone
    same = _small_onnx(tmp_path / "x-fp16.onnx")
    assert _raises(Yolo4Error, eb._make_fp16_onnx, same, tmp_path / "x.engine", Log()) == (
        f"{tmp_path / 'x.engine'}: the FP16 ONNX would overwrite the input x-fp16.onnx: choose another --output")


def test_fp16_conversion_without_its_converter(tmp_path, monkeypatch):
    from yolo4.convert.fp16 import convert_to_fp16

    src = _small_onnx(tmp_path / "m.onnx")
    monkeypatch.setitem(sys.modules, "onnxconverter_common", None)
    with pytest.raises(ImportError) as e:
        convert_to_fp16(onnx.load(str(src)))
    assert _raises(Yolo4Error, eb._make_fp16_onnx, src, tmp_path / "m.engine", Log()) == " ".join(
        str(e.value).split())
    assert not (tmp_path / "m-fp16.onnx").exists()


def test_fp16_conversion_without_the_converter_module(tmp_path, monkeypatch):
    import importlib

    src = _small_onnx(tmp_path / "m.onnx")
    monkeypatch.setitem(sys.modules, "yolo4.convert.fp16", None)
    with pytest.raises(ImportError) as e:
        importlib.import_module("yolo4.convert.fp16")
    assert _raises(Yolo4Error, eb._make_fp16_onnx, src, tmp_path / "m.engine", Log()) == " ".join(
        str(e.value).split())


def test_plugin_layers_pinned_are_listed(tmp_path):
    """Weakly typed FP16: every DIoUNMS_TRT layer of the network runs in FP32, and the line lists them."""
    api = _api("8.6.1.6")
    trt = api.trt
    trt._state.registry.add("DIoUNMS_TRT")
    path = tmp_path / "two.onnx"
    nodes = [helper.make_node("DIoUNMS_TRT", ["images"], ["x"], name="nms_a"),
             helper.make_node("DIoUNMS_TRT", ["x"], ["boxes"], name="nms_b")]
    _model(nodes, [_vi("images", [1, 3, 64, 64])], [_vi("boxes", [1, 3, 64, 64])], path=path)
    network = trt.Builder(trt.ILogger()).create_network(1)
    assert trt.OnnxParser(network, None).parse_from_file(str(path))
    config = trt.Builder.create_builder_config(None)
    log = Log()
    eb._pin_plugin_float(api, network, config, eb.read_onnx_facts(path), compat.plan_precision(V86, "fp32", fp16=True),
                         log)
    assert [ly._precision for ly in network.layers] == [trt.float32, trt.float32]
    assert log == ["DIoU-NMS plugin layer pinned to FP32 (nms_a, nms_b)"]


def test_qdq_onnx_beside_the_engine(tmp_path):
    pytest.importorskip("onnxruntime.quantization", reason="the Q/DQ quantizer needs onnxruntime")
    src = _deep_onnx(tmp_path / "m.onnx")
    calib_dir = str(_calib_dir(tmp_path))
    log = Log()
    out, calib, digest = eb._make_qdq_onnx(src, tmp_path / "m.engine", calib_dir, 4, "percentile",
                                           ["/layers.2/conv/Conv"], log)
    assert out == tmp_path / "m-int8.onnx" and digest == calib.digest() and len(calib.paths) == 4
    model = onnx.load(str(out))
    assert eb.onnx_precision(model) == "int8"
    assert {m.key: m.value for m in model.metadata_props}["calib_method"] == "percentile"
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    convs = {n.name: [producers.get(i) for i in n.input] for n in model.graph.node if n.op_type == "Conv"}
    assert "DequantizeLinear" in convs["/layers.1/conv/Conv"]  # INT8
    assert "DequantizeLinear" not in convs["/layers.2/conv/Conv"]  # excluded: kept float
    wrote = [m for m in log if m.startswith("Q/DQ INT8 ONNX: wrote ")]
    assert len(wrote) == 1 and re.fullmatch(re.escape(f"Q/DQ INT8 ONNX: wrote {out} (") + r"\d+ Conv layers INT8, "
                                            r"\d+ kept float \(percentile calibration on 4 images, .*\)\)", wrote[0])
    assert len(log) > 1  # the quantizer's own lines go to the same log
    same = _small_onnx(tmp_path / "q-int8.onnx")
    assert _raises(Yolo4Error, eb._make_qdq_onnx, same, tmp_path / "q.engine", calib_dir, 4, "minmax", (),
                   Log()) == (
        f"{tmp_path / 'q.engine'}: the Q/DQ ONNX would overwrite the input q-int8.onnx: choose another --output")


# ------------------------------------------------------------------------------------------------
# refusals before TensorRT is loaded (none installed here)
# ------------------------------------------------------------------------------------------------

def test_option_refusals_before_tensorrt(tmp_path, no_tensorrt):
    model = _small_onnx(tmp_path / "m.onnx")
    out = tmp_path / "m.engine"
    lib = tmp_path / "nope.so"
    folder = tmp_path / "folder"
    folder.mkdir()
    cases = [
        (dict(onnx_path=tmp_path / "none.onnx"), f"{tmp_path / 'none.onnx'}: ONNX model not found"),
        (dict(onnx_path=folder), f"{folder}: not a file (give the .onnx written by `yolo4 export`)"),
        (dict(calib_method=" Median"), "--calib-method must be one of entropy, minmax, percentile, got 'median'"),
        (dict(calib_images=0), "--calib-images must be >= 1, got 0"),
        (dict(workspace=0), "--workspace must be >= 1 MiB, got 0"),
        (dict(dla_core=-1), "--dla-core must be >= 0, got -1"),
        (dict(plugin_libs=[lib]), f"{lib}: plugin library not found"),
        (dict(output=folder), f"{folder}: the engine output is a folder, not a file"),
        (dict(output=model), f"{model}: --output would overwrite the ONNX model: give an .engine path"),
        (dict(timing_cache=folder), f"{folder}: the timing cache is a folder, not a file"),
        (dict(calib_cache=folder), f"{folder}: the calibration cache is a folder, not a file"),
        (dict(contexts=0), "contexts must be >= 1, got 0"),
        (dict(fp16=True, int8=True), None),  # the precision request is checked before TensorRT too
        (dict(int8=True, quantization="implicit", calib_method="Percentile"), None),
    ]
    for kw, expected in cases:
        args = dict(onnx_path=model, output=out, log=None)
        args.update(kw)
        msg = _raises(Yolo4Error, eb.build_engine, **args)
        if expected is None:
            with pytest.raises(Yolo4Error) as e:
                compat.check_precision_request("fp32", kw.get("fp16", False), kw.get("int8", False),
                                               kw.get("quantization", "auto"), kw.get("calib_method", "").lower())
            expected = str(e.value)
        assert msg == expected, kw
    assert eb._check_inputs(model, out, None, 1, 1, 0, [], None, None) is None  # the smallest valid values
    assert not out.exists()


def test_asked_backend_must_be_installed(tmp_path, trt_stand_in):
    trt_stand_in("10.13.3.9")  # tensorrt is there, tensorrt_rtx is not
    assert _raises(Yolo4Error, eb.build_engine, _small_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", log=None,
                   backend="tensorrt-rtx") == (
        "--backend tensorrt-rtx: the tensorrt_rtx Python package is not installed: pip install tensorrt-rtx "
        "(TensorRT for RTX, GeForce/RTX GPUs)")


# ------------------------------------------------------------------------------------------------
# builds through the stand-in
# ------------------------------------------------------------------------------------------------

def test_fp32_build_sidecar_and_lines(tmp_path, trt_stand_in, monkeypatch):
    from yolo4 import __version__

    trt = trt_stand_in("10.13.3.9")
    trt._state.build_log = [(3, "an info line"), (2, "a warning"), (4, LOG_8X)]
    model = _small_onnx(tmp_path / "m.onnx")
    out = tmp_path / "m.engine"
    log = Log()
    res = eb.build_engine(model, out, log=log)
    network, config = _config(trt)
    assert out.read_bytes() == PLAN
    assert (res.engine_path, res.meta_path, res.size_bytes, res.built_onnx) == (
        out, Path(str(out) + ".json"), len(PLAN), model)
    assert res.layer_precisions == {"int8": 2, "fp16": 1, "fp32": 1} and res.layer_source == "build log"
    assert 0 <= res.build_time_s < 3600
    meta = read_engine_meta(out)
    assert meta.onnx_sha256 == hashlib.sha256(model.read_bytes()).hexdigest()
    assert meta.onnx_path == str(model.resolve()) and meta.built_onnx == ""
    assert (meta.precision, meta.quantization, meta.trt_flavour, meta.trt_version) == (
        "fp32", "none", "tensorrt", "10.13.3.9")
    assert (meta.gpu_name, meta.compute_capability, meta.target_compute_capabilities) == ("", "", [])
    assert (meta.calib_method, meta.calib_images, meta.calib_digest, meta.dla_core) == ("", 0, "", None)
    assert meta.layer_precisions == res.layer_precisions and meta.num_profiles == 2
    assert meta.input_name == "images" and meta.input_shape == [-1, 3, 64, 64]
    assert meta.output_names == ["boxes", "scores"] and meta.profile == {
        "min": [1, 3, 64, 64], "opt": [4, 3, 64, 64], "max": [8, 3, 64, 64]}
    assert meta.build_time_s == round(res.build_time_s, 3) and meta.yolo4_version == __version__
    assert meta.built_at.endswith("+00:00")  # UTC, with its offset
    peak = res.meta.peak_host_memory_mib  # MiB with one decimal
    assert isinstance(peak, float) and peak == round(peak, 1) > 0 and meta.peak_host_memory_mib == peak
    assert meta.workspace_mib is None and meta.tf32 and not meta.version_compatible
    assert [list(p.shapes) for p in config.profiles] == [["images"], ["images"]]
    assert config.profiles[0].shapes["images"] == ([1, 3, 64, 64], [4, 3, 64, 64], [8, 3, 64, 64])
    assert config.get_timing_cache() is None and config.progress_monitor is not None
    assert f"parsing {model} (TensorRT 10.13.3)" in log
    assert "building TensorRT 10.13.3 engine: FP32, weakly typed, batch 1/4/8 (min/opt/max)" in log
    assert "warning: TensorRT: a warning" in log and not any("an info line" in m for m in log)  # INFO: --verbose
    summary = [m for m in log if m.startswith("summary: ")]
    m = re.fullmatch(r"summary: FP32 engine, layers by precision: INT8 2, FP16 1, FP32 1 \(from the build log\), "
                     r"0\.0 MiB, built in \d+\.\d s, peak host memory (\d+) MiB", summary[0]) if summary else None
    assert len(summary) == 1 and m, summary
    assert abs(int(m.group(1)) - meta.peak_host_memory_mib) <= 1  # %.0f of the unrounded value
    assert not any(m.startswith("warning: ") and "ignored" in m for m in log)


def test_verbose_build_shows_info_and_inspector_layers(tmp_path, trt_stand_in, monkeypatch):
    trt = trt_stand_in("8.5.2.2")
    trt._state.build_log = [(3, "an info line"), (4, LOG_8X)]
    trt._state.inspector = INSPECTOR_JSON
    monkeypatch.setitem(sys.modules, "resource", None)  # no peak memory (Windows)
    log = Log()
    res = eb.build_engine(_small_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", log=log, verbose=True,
                          backend="tensorrt")
    assert "TensorRT: an info line" in log
    assert res.layer_source == "inspector" and res.layer_precisions == {"int8": 1, "fp16": 1, "fp32": 1}
    summary = [m for m in log if m.startswith("summary: ")][0]
    assert re.fullmatch(r"summary: FP32 engine, layers by precision: INT8 1, FP16 1, FP32 1 \(from the "
                        r"inspector\), 0\.0 MiB, built in \d+\.\d s", summary), summary
    assert res.meta.peak_host_memory_mib == 0.0


def test_layer_table_without_layers_gives_no_source(tmp_path, trt_stand_in):
    trt = trt_stand_in("8.5.2.2")
    trt._state.build_log = [(4, "Engine Layer Information:\n")]
    log = Log()
    res = eb.build_engine(_small_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", log=log)
    assert (res.layer_precisions, res.layer_source) == ({}, "")
    assert any(m.startswith("summary: FP32 engine, layers by precision: not reported, 0.0 MiB") for m in log)


def test_fixed_batch_build_has_one_profile(tmp_path, trt_stand_in):
    trt = trt_stand_in("10.13.3.9", A100)
    log = Log()
    res = eb.build_engine(_small_onnx(tmp_path / "f.onnx", batch=1), tmp_path / "f.engine", log=log)
    _, config = _config(trt)
    assert config.profiles == [] and res.meta.num_profiles == 1
    assert res.meta.profile == {k: [1, 3, 64, 64] for k in ("min", "opt", "max")}
    assert (res.meta.gpu_name, res.meta.compute_capability) == (A100.name, "8.0")
    assert "building TensorRT 10.13.3 engine: FP32, weakly typed, fixed batch 1" in log
    trt_stand_in("10.13.3.9", A100)
    log = Log()
    res = eb.build_engine(_small_onnx(tmp_path / "f.onnx", batch=1), tmp_path / "f.engine", log=log, workspace=512,
                          tf32=False)
    assert "building TensorRT 10.13.3 engine: FP32, weakly typed, fixed batch 1, TF32 off, workspace 512 MiB" in log
    assert res.meta.workspace_mib == 512


def test_contexts_make_that_many_profiles(tmp_path, trt_stand_in):
    trt = trt_stand_in("10.13.3.9")
    res = eb.build_engine(_small_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", log=None, contexts=3,
                          batch="2,2,4")
    _, config = _config(trt)
    assert len(config.profiles) == 3 == res.meta.num_profiles
    assert all(p.shapes == {"images": ([2, 3, 64, 64], [2, 3, 64, 64], [4, 3, 64, 64])} for p in config.profiles)
    trt = trt_stand_in("10.13.3.9")
    res = eb.build_engine(_small_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", log=None, contexts=1)
    assert len(_config(trt)[1].profiles) == 1 == res.meta.num_profiles and res.meta.dynamic_batch
    trt = trt_stand_in("10.13.3.9")
    trt._state.max_profiles = 1
    assert _raises(Yolo4Error, eb.build_engine, _small_onnx(tmp_path / "m.onnx"), tmp_path / "n.engine",
                   log=None) == "TensorRT kept 1 of 2 optimization profiles; try --contexts 1"
    assert trt._state.built == []


@pytest.mark.parametrize("errors, why", [
    ([(1, "first error"), (1, "second error"), (1, "the  last\nerror")], "the last error"),
    ([], "no reason given (run with --verbose)"),
])
def test_failed_build_says_why(tmp_path, trt_stand_in, errors, why):
    trt = trt_stand_in("10.13.3.9")
    trt._state.plan, trt._state.build_log = None, errors
    model = _small_onnx(tmp_path / "m.onnx")
    out = tmp_path / "m.engine"
    assert _raises(Yolo4Error, eb.build_engine, model, out, log=None) == \
        f"{model}: TensorRT could not build the engine: {why}"
    assert not out.exists() and not Path(str(out) + ".json").exists()


def test_engine_that_cannot_be_written(tmp_path, trt_stand_in):
    trt = trt_stand_in("10.13.3.9")
    out = tmp_path / "m.engine"
    trt._state.on_build = lambda network, config: out.mkdir()  # the output became a folder meanwhile
    assert _raises(ModelFileError, eb.build_engine, _small_onnx(tmp_path / "m.onnx"), out, log=None) == \
        f"{out}: cannot write the engine (Is a directory)"


def test_ctrl_c_during_the_build(tmp_path, trt_stand_in):
    """Ctrl-C while TensorRT builds: the progress monitor tells TensorRT to stop, TensorRT's complaint about
    the cancelled build is not shown, nothing is written, and the SIGINT handler is put back."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    trt = trt_stand_in("10.13.3.9")
    st = trt._state

    def ctrl_c(network, config):
        monitor = config.progress_monitor
        monitor.phase_start("Building", None, 3)
        os.kill(os.getpid(), signal.SIGINT)
        st.monitor_said.append(monitor.step_complete("Building", 0))

    st.on_build, st.plan, st.build_log = ctrl_c, None, [(1, "BuildCanceled")]
    before = signal.getsignal(signal.SIGINT)
    log = Log()
    out = tmp_path / "m.engine"
    with pytest.raises(KeyboardInterrupt):
        eb.build_engine(_small_onnx(tmp_path / "m.onnx"), out, log=log)
    assert st.monitor_said == [False] and signal.getsignal(signal.SIGINT) is before
    assert not out.exists() and not any("BuildCanceled" in m for m in log)


class _FastProgress(eb._Progress):
    """The builder's progress display with a 10 ms tick (1 s on a terminal, 30 s elsewhere in real use);
    ``made`` holds the instances."""

    made = []

    def __init__(self, log, stream=None):
        super().__init__(log, stream, tick=0.01, line_every=0.01)
        _FastProgress.made.append(self)


def _wait_for(cond):
    deadline = time.time() + 3
    while not cond() and time.time() < deadline:
        time.sleep(0.005)
    assert cond()


def test_progress_line_during_a_build(tmp_path, trt_stand_in, monkeypatch):
    """On a terminal the elapsed-time line goes to ``progress_stream`` and is erased before TensorRT's
    warning is printed, and when the build ends."""
    monkeypatch.setattr(eb, "_Progress", _FastProgress)
    monkeypatch.setattr(sys, "stderr", _Stream(True))  # not where the line goes
    trt = trt_stand_in("10.13.3.9")
    term = _Stream(True)
    _FastProgress.made = []

    def on_build(network, config):
        _wait_for(lambda: "building engine: " in term.text)
        _FastProgress.made[-1].tick = 60.0  # no more redraws (after the one that may be under way)
        time.sleep(0.05)

    trt._state.on_build = on_build
    trt._state.build_log = [(2, "careful")]
    seen = []
    eb.build_engine(_small_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", progress_stream=term,
                    log=lambda m: seen.append((m, term.text)))
    (at_warning,) = [text for m, text in seen if m == "warning: TensorRT: careful"]
    assert "building engine: " in at_warning and at_warning.endswith("\r\033[K")
    assert term.text.endswith("\r\033[K") and sys.stderr.text == ""


def test_progress_lines_during_a_build_go_to_the_log(tmp_path, trt_stand_in, monkeypatch):
    monkeypatch.setattr(eb, "_Progress", _FastProgress)
    trt = trt_stand_in("10.13.3.9")
    log = Log()
    trt._state.on_build = lambda network, config: _wait_for(lambda: any(m.startswith("still building: ") for m in log))
    pipe = _Stream(False)
    eb.build_engine(_small_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", progress_stream=pipe, log=log)
    assert pipe.text == ""


def test_ctrl_c_without_a_progress_monitor_interrupts_at_once(tmp_path, trt_stand_in):
    """TensorRT 8.x has no progress monitor that could stop a build: Ctrl-C stays Python's KeyboardInterrupt,
    raised at once, not held until the build ends."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    trt = trt_stand_in("8.5.2.2")
    st = trt._state

    def ctrl_c(network, config):
        os.kill(os.getpid(), signal.SIGINT)
        st.monitor_said.append("the build went on")

    st.on_build = ctrl_c
    out = tmp_path / "m.engine"
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own, as in `yolo4 build-engine`
    try:
        with pytest.raises(KeyboardInterrupt):
            eb.build_engine(_small_onnx(tmp_path / "m.onnx"), out, log=None)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)
    assert st.monitor_said == []
    assert not out.exists()


def test_timing_cache_is_saved_and_reused(tmp_path, trt_stand_in):
    cache = tmp_path / "tc.bin"
    model = _small_onnx(tmp_path / "m.onnx")
    trt_stand_in("10.13.3.9")
    log = Log()
    eb.build_engine(model, tmp_path / "a.engine", log=log, timing_cache=cache)
    assert cache.read_bytes() == b"timings:" and not any(m.startswith("timing cache") for m in log)
    trt = trt_stand_in("10.13.3.9")
    eb.build_engine(model, tmp_path / "b.engine", log=log, timing_cache=cache)
    assert f"timing cache: {cache}" in log
    assert _config(trt)[1].get_timing_cache().data == b"timings:"
    assert cache.read_bytes() == b"timings:timings:"


def test_precision_notes_and_ignored_options(tmp_path, trt_stand_in):
    trt_stand_in("10.13.3.9")
    log = Log()
    qdq = _small_onnx(tmp_path / "q.onnx", "int8")
    eb.build_engine(qdq, tmp_path / "q.engine", log=log, calib_data=str(tmp_path))
    assert compat.plan_precision(V10, "int8").note in log
    assert "warning: --calib-data ignored: the ONNX is already Q/DQ-quantized" in log
    trt_stand_in("10.13.3.9")
    log = Log()
    res = eb.build_engine(_small_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", log=log, calib_data="coco128",
                          calib_method="minmax", calib_cache=tmp_path / "c.calib", int8_exclude=["12"])
    assert "warning: --calib-data, --calib-method, --calib-cache, --int8-exclude ignored: they apply to --int8" in log
    assert (res.meta.calib_method, res.meta.calib_images, res.meta.calib_digest) == ("", 0, "")


def test_percentile_refused_where_auto_means_implicit(tmp_path, trt_stand_in):
    """Only the release knows that ``auto`` is implicit there (8.5 - 10.x), and percentile is explicit-only."""
    trt = trt_stand_in("8.5.2.2")
    with pytest.raises(Yolo4Error) as e:
        compat.plan_precision(V8, "fp32", int8=True, calib_method="percentile")
    assert _raises(Yolo4Error, eb.build_engine, _small_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", int8=True,
                   calib_method="percentile", calib_data=str(_calib_dir(tmp_path)), log=None) == str(e.value)
    assert trt._state.built == []


@pytest.mark.parametrize("kw, quantization", [({}, "implicit"), ({"quantization": "explicit"}, "explicit")])
def test_int8_needs_calibration_images(tmp_path, trt_stand_in, kw, quantization):
    trt = trt_stand_in("10.13.3.9")
    assert _raises(Yolo4Error, eb.build_engine, _small_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", int8=True,
                   log=None, **kw) == (
        f"--int8 ({quantization} quantization) needs calibration images: --calib-data a dataset (e.g. coco128), "
        "an image folder, a glob or a .txt list")
    assert trt._state.built == []


def test_implicit_int8_calibrator_cache_and_sidecar(tmp_path, trt_stand_in):
    trt = trt_stand_in("8.5.2.2")
    model = _small_onnx(tmp_path / "m.onnx")
    calib = _calib_dir(tmp_path)
    out = tmp_path / "m.engine"
    log = Log()
    res = eb.build_engine(model, out, int8=True, calib_data=str(calib), calib_images=3, calib_method=" MinMax ",
                          log=log)
    network, config = _config(trt)
    cal = config.int8_calibrator
    assert isinstance(cal, trt.IInt8MinMaxCalibrator) and config.calibration_profile is config.profiles[0]
    cache = cal.feed.cache
    cache_path = tmp_path / "m.engine.calib"
    assert cache.path == str(cache_path) and cache_path.is_file()
    assert cal.feed.calib_set.batch_size == 4  # TensorRT calibrates at the profile's OPT batch
    digest = cal.feed.calib_set.digest()
    assert cache.header == {"model": hashlib.sha256(model.read_bytes()).hexdigest(), "calibration_set": digest,
                            "method": "minmax", "input_shape": "4x3x64x64", "tensorrt": "8.5.2.2"}
    assert f"wrote calibration cache {cache_path}" in log and f"calibration cache: {cache_path}" in log
    assert any(m.startswith("calibration images: 3 of 4 from ") for m in log)
    pinned = [ly.name for ly in network.layers if ly._precision == trt.float32]
    assert pinned and set(pinned) <= set(eb._float_nodes(model, ()))
    assert ("implicit INT8: %d layers kept in FP32 (first convolution, YOLO heads and decode, --int8-exclude)"
            % len(pinned)) in log
    assert config.get_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
    meta = res.meta
    assert (meta.precision, meta.quantization, meta.calib_method, meta.calib_images, meta.calib_digest) == (
        "int8", "implicit", "minmax", 3, digest)
    assert any(m.startswith("summary: INT8 (implicit) engine") for m in log)
    # again with the cache made for it: no calibration pass; another cache file when asked
    trt = trt_stand_in("8.5.2.2")
    log = Log()
    eb.build_engine(model, out, int8=True, calib_data=str(calib), calib_images=3, calib_method="minmax", log=log)
    assert f"using calibration cache {cache_path}: no calibration pass" in log
    trt = trt_stand_in("8.5.2.2")
    mine = tmp_path / "mine.calib"
    log = Log()
    eb.build_engine(model, out, int8=True, calib_data=str(calib), calib_images=3, log=log, calib_cache=mine)
    cal = _config(trt)[1].int8_calibrator
    assert isinstance(cal, trt.IInt8EntropyCalibrator2) and cal.feed.cache.path == str(mine) and mine.is_file()
    assert not any("ignored" in m for m in log)  # --calib-cache is the implicit calibrator's
    trt_stand_in("8.5.2.2")  # the default cache holds minmax scales: not reused for entropy
    log = Log()
    eb.build_engine(model, out, int8=True, calib_data=str(calib), calib_images=3, log=log)
    assert any(m.startswith(f"calibration cache {cache_path} was made for another model/preprocessing/method "
                            "(differs: method: minmax -> entropy)") for m in log), log


def test_explicit_int8_builds_the_qdq_onnx(tmp_path, trt_stand_in):
    pytest.importorskip("onnxruntime.quantization", reason="the Q/DQ quantizer needs onnxruntime")
    trt = trt_stand_in("10.13.3.9")
    model = _deep_onnx(tmp_path / "m.onnx")
    log = Log()
    res = eb.build_engine(model, tmp_path / "m.engine", int8=True, quantization="explicit",
                          calib_data=str(_calib_dir(tmp_path)), calib_images=3, log=log, calib_method="percentile",
                          calib_cache=tmp_path / "c.calib", int8_exclude=["/layers.2/conv/Conv"])
    qdq = tmp_path / "m-int8.onnx"
    network, _ = _config(trt)
    assert network.strongly_typed and res.built_onnx == qdq
    assert f"parsing {qdq} (TensorRT 10.13.3)" in log
    model_q = onnx.load(str(qdq))
    assert eb.onnx_precision(model_q) == "int8"
    props = {m.key: m.value for m in model_q.metadata_props}
    meta = res.meta
    assert (meta.precision, meta.quantization, meta.calib_method, meta.calib_images) == ("int8", "explicit",
                                                                                       "percentile", 3)
    assert meta.calib_digest == props["calib_digest"] and len(meta.calib_digest) == 64
    assert meta.built_onnx == str(qdq.resolve()) and props["calib_method"] == "percentile"
    producers = {o: n.op_type for n in model_q.graph.node for o in n.output}
    convs = {n.name: [producers.get(i) for i in n.input] for n in model_q.graph.node if n.op_type == "Conv"}
    assert "DequantizeLinear" in convs["/layers.1/conv/Conv"]
    assert "DequantizeLinear" not in convs["/layers.2/conv/Conv"]
    assert ("warning: --calib-cache ignored: it holds TensorRT calibrator scales (implicit quantization); the Q/DQ "
            "quantizer calibrates with ONNX Runtime") in log
    assert not (tmp_path / "c.calib").exists()


def test_dla_refusals_and_reports(tmp_path, trt_stand_in):
    model = _small_onnx(tmp_path / "m.onnx")
    trt = trt_stand_in("8.6.1.6", XAVIER_NX)
    trt._state.num_dla_cores = 2
    assert _raises(Yolo4Error, eb.build_engine, model, tmp_path / "m.engine", dla_core=0, batch="1",
                   log=None) == compat.DLA_PRECISION
    assert _raises(Yolo4Error, eb.build_engine, model, tmp_path / "m.engine", dla_core=0, batch="1", fp16=True,
                   hardware_compatibility="ampere+", log=None) == (
        "--hardware-compatibility-level is for Ampere and later discrete GPUs, not Jetson DLA (TensorRT supports "
        "it neither on JetPack nor with --dla-core)")
    trt._state.dla_takes_nothing = True
    log = Log()
    eb.build_engine(model, tmp_path / "m.engine", dla_core=1, batch="1", fp16=True, log=log)
    network, _ = _config(trt)
    n = network.num_layers
    assert f"DLA core 1: 0 of {n} network layers can run on the DLA, {n} fall back to the GPU (nothing runs " \
           "on the DLA)" in log
    assert "building TensorRT 8.6.1 engine: FP16, weakly typed, batch 1/1/1 (min/opt/max), DLA core 1 (GPU fallback), " \
           "workspace 1024 MiB" in log


def test_compute_capability_is_for_tensorrt_for_rtx(tmp_path, trt_stand_in):
    trt = trt_stand_in("10.13.3.9")
    assert _raises(Yolo4Error, eb.build_engine, _small_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine",
                   compute_capability=["8.6"], log=None) == (
        "--compute-capability is for --backend tensorrt-rtx (ahead-of-time builds); TensorRT 10.13.3 builds for "
        "the GPU it runs on")
    assert trt._state.built == []


def test_parser_error_is_one_line_naming_the_node(tmp_path, trt_stand_in):
    trt_stand_in("10.13.3.9")
    path = tmp_path / "custom.onnx"
    node = helper.make_node("FancyNMS", ["images"], ["boxes"], domain="example.custom", name="my_nms")
    graph = helper.make_graph([node], "g", [_vi("images", ["batch", 3, 64, 64])], [_vi("boxes", ["batch", 3, 64, 64])])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("example.custom", 1)])
    m.ir_version = 8
    helper.set_model_props(m, ModelInfo(names=["a"], input_hw=(64, 64)).to_metadata())
    onnx.save(m, str(path))
    log = Log()
    msg = _raises(ModelFileError, eb.build_engine, path, tmp_path / "m.engine", log=log)
    assert msg.startswith(f"{path}: TensorRT cannot parse the ONNX at node my_nms (FancyNMS)") and "\n" not in msg
    assert not any(m.startswith("TensorRT error") for m in log)


def test_plugin_layer_left_alone_in_an_fp16_onnx_on_8_5(tmp_path, trt_stand_in):
    """A weakly typed release building an FP16 ONNX: the network is FP16 already, the plugin layer's types
    come from the ONNX (nothing pinned)."""
    pytest.importorskip("onnxconverter_common")
    from yolo4.convert.fp16 import convert_to_fp16

    trt = trt_stand_in("8.5.2.2")
    path = _nms_onnx(tmp_path / "p.onnx", "plugin")
    onnx.save(convert_to_fp16(onnx.load(str(path))), str(path))
    log = Log()
    eb.build_engine(path, tmp_path / "p.engine", fp16=True, log=log)
    network, config = _config(trt)
    assert all(ly._precision is None and not ly.output_types for ly in network.layers)
    assert not any("pinned" in m for m in log)
