"""ONNX -> TensorRT engine builder (yolo4/convert/engine_builder.py, trt_compat.py).

- The compatibility decisions per TensorRT release (which flags exist, what ``--quantization auto``
  means, how each precision is built) from version strings: pure functions, no TensorRT needed.
- The layer-precision summary on the three forms of TensorRT's layer table (inspector JSON, 8.x/10.x
  build log, TensorRT for RTX build log).
- Real builds with TensorRT for RTX, which builds ahead of time on a CPU: a small synthetic ONNX
  (fixed batch, FP16, Q/DQ detection) and the real yolov4-tiny in FP32, FP16 and INT8 (Q/DQ from
  :func:`yolo4.calib.qdq.quantize_qdq` calibrated on coco128), through the installed ``yolo4`` command.
- User errors: one ``error:`` line and exit status 2.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import assert_usage_error, assert_user_error, run_cli
from yolo4.convert import trt_compat as compat
from yolo4.convert.engine_builder import DEFAULT_BATCH, OnnxFacts, _profile_shapes, parse_batch
from yolo4.engine_meta import AHEAD_OF_TIME, read_engine_meta
from yolo4.errors import Yolo4Error
from yolo4.model_info import ModelInfo

F = compat.TrtFeatures
V8, V86, V10, V11 = F("tensorrt", "8.5.2.2"), F("tensorrt", "8.6.1.6"), F("tensorrt", "10.13.3.9"), \
    F("tensorrt", "11.4.0.106")
RTX = F("tensorrt-rtx", "1.7.1.116")

try:
    import tensorrt_rtx  # noqa: F401

    HAVE_RTX = True
except ImportError:
    HAVE_RTX = False

needs_rtx = pytest.mark.skipif(not HAVE_RTX, reason="tensorrt_rtx (TensorRT for RTX) is not installed: "
                                                    "pip install tensorrt-rtx")


# ------------------------------------------------------------------------------------------------
# what each release can do (version strings only)
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("f, expected", [
    (V8, dict(strongly_typed_only=False, can_be_strongly_typed=False, precision_flags=True, calibrators=True,
              explicit_batch_flag=True, qdq_needs_int8_flag=True, progress_monitor=False, dla=True,
              plugin_libraries=True, compute_capability_targets=False, timing_cache=True,
              default_quantization="implicit")),
    (V86, dict(explicit_batch_flag=True, progress_monitor=False, default_quantization="implicit")),
    (V10, dict(strongly_typed_only=False, can_be_strongly_typed=True, precision_flags=True, calibrators=True,
               explicit_batch_flag=False, qdq_needs_int8_flag=False, progress_monitor=True, dla=True,
               plugin_libraries=True, compute_capability_targets=False, default_quantization="implicit")),
    (V11, dict(strongly_typed_only=True, can_be_strongly_typed=True, precision_flags=False, calibrators=False,
               explicit_batch_flag=False, progress_monitor=True, dla=False, plugin_libraries=True,
               compute_capability_targets=False, timing_cache=True, default_quantization="explicit")),
    (RTX, dict(strongly_typed_only=True, precision_flags=False, calibrators=False, explicit_batch_flag=False,
               progress_monitor=True, dla=False, plugin_libraries=False, compute_capability_targets=True,
               timing_cache=False, default_quantization="explicit")),
])
def test_features_per_release(f, expected):
    for name, value in expected.items():
        assert getattr(f, name) == value, (f.name, name)
    assert f.supported


def test_feature_names_and_versions():
    assert V10.name == "TensorRT 10.13.3" and RTX.name == "TensorRT for RTX 1.7.1"
    assert F("tensorrt", "10.0.1.6").version_tuple == (10, 0, 1, 6)
    assert F("tensorrt", "8.6.1.post1").version_tuple == (8, 6, 1)
    assert not F("tensorrt", "8.4.3.1").supported and not F("tensorrt", "7.2.3").supported


def test_quantization_auto_and_implicit():
    assert [f.resolve_quantization("auto") for f in (V8, V10, V11, RTX)] == \
        ["implicit", "implicit", "explicit", "explicit"]
    assert V10.resolve_quantization("EXPLICIT") == "explicit"
    for f, name in ((V11, "TensorRT 11.4.0"), (RTX, "TensorRT for RTX 1.7.1")):
        with pytest.raises(Yolo4Error) as e:
            f.resolve_quantization("implicit")
        assert str(e.value) == (f"{name} has no INT8 calibrators (strongly typed: INT8 comes from a Q/DQ ONNX): "
                                "use --quantization explicit (or auto)")
    with pytest.raises(Yolo4Error, match="--quantization must be one of implicit, explicit, auto"):
        V10.resolve_quantization("qat")


def _plan(f, onnx_precision, **kw):
    p = compat.plan_precision(f, onnx_precision, **kw)
    return (p.precision, p.quantization, p.convert, p.strongly_typed, p.fp16_flag, p.int8_flag)


@pytest.mark.parametrize("f, onnx, kw, expected", [
    # FP32 ONNX
    (V8, "fp32", {}, ("fp32", "none", None, False, False, False)),
    (RTX, "fp32", {}, ("fp32", "none", None, True, False, False)),
    (V8, "fp32", {"fp16": True}, ("fp16", "none", None, False, True, False)),
    (V10, "fp32", {"fp16": True}, ("fp16", "none", None, False, True, False)),
    (V11, "fp32", {"fp16": True}, ("fp16", "none", "fp16", True, False, False)),
    (RTX, "fp32", {"fp16": True}, ("fp16", "none", "fp16", True, False, False)),
    (V8, "fp32", {"int8": True}, ("int8", "implicit", None, False, True, True)),
    (V10, "fp32", {"int8": True}, ("int8", "implicit", None, False, True, True)),
    (V8, "fp32", {"int8": True, "quantization": "explicit"}, ("int8", "explicit", "qdq", False, False, True)),
    (V10, "fp32", {"int8": True, "quantization": "explicit"}, ("int8", "explicit", "qdq", True, False, False)),
    (V11, "fp32", {"int8": True}, ("int8", "explicit", "qdq", True, False, False)),
    (RTX, "fp32", {"int8": True, "calib_method": "percentile"}, ("int8", "explicit", "qdq", True, False, False)),
    # FP16 ONNX: FP16 whatever is asked, strongly typed where possible
    (V8, "fp16", {}, ("fp16", "none", None, False, True, False)),
    (V10, "fp16", {"fp16": True}, ("fp16", "none", None, True, False, False)),
    (RTX, "fp16", {}, ("fp16", "none", None, True, False, False)),
    # Q/DQ ONNX: explicit INT8; the INT8 flag on 8.x only
    (V8, "int8", {}, ("int8", "explicit", None, False, False, True)),
    (V86, "int8", {"int8": True}, ("int8", "explicit", None, False, False, True)),
    (V10, "int8", {}, ("int8", "explicit", None, True, False, False)),
    (RTX, "int8", {"int8": True, "quantization": "auto"}, ("int8", "explicit", None, True, False, False)),
])
def test_plan_precision(f, onnx, kw, expected):
    assert _plan(f, onnx, **kw) == expected


def test_plan_notes():
    assert compat.plan_precision(RTX, "fp16").note == "the ONNX is FP16: building an FP16 engine"
    assert "Q/DQ INT8" in compat.plan_precision(V10, "int8").note
    assert "converting the FP32 ONNX to FP16" in compat.plan_precision(V11, "fp32", fp16=True).note
    assert compat.plan_precision(V10, "fp32", fp16=True).note == ""
    assert compat.plan_precision(V10, "int8", int8=True).note == ""


@pytest.mark.parametrize("f, onnx, kw, needle", [
    (V10, "fp32", {"fp16": True, "int8": True}, "--fp16 and --int8 exclude each other"),
    (V10, "fp32", {"int8": True, "quantization": "implicit", "calib_method": "percentile"},
     "--calib-method percentile is only for --quantization explicit"),
    (V8, "fp32", {"int8": True, "calib_method": "percentile"},
     "--quantization auto is implicit on TensorRT 8.5.2"),
    (RTX, "fp32", {"int8": True, "quantization": "implicit", "calib_method": "percentile"},
     "--calib-method percentile is only for --quantization explicit"),
    (RTX, "fp32", {"int8": True, "quantization": "implicit"}, "TensorRT for RTX 1.7.1 has no INT8 calibrators"),
    (V11, "fp32", {"int8": True, "quantization": "implicit"}, "TensorRT 11.4.0 has no INT8 calibrators"),
    (V10, "int8", {"fp16": True}, "the ONNX is a Q/DQ INT8 model: build it with --int8"),
    (V10, "int8", {"int8": True, "quantization": "implicit"}, "already quantized"),
    (RTX, "fp16", {"int8": True}, "--int8 needs the FP32 export"),
    (V10, "fp32", {"quantization": "sometimes"}, "--quantization must be one of"),
])
def test_plan_refusals(f, onnx, kw, needle):
    with pytest.raises(Yolo4Error) as e:
        compat.plan_precision(f, onnx, **kw)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_check_precision_request_needs_no_tensorrt():
    assert compat.check_precision_request("fp32", int8=True, quantization="Explicit") == "explicit"
    with pytest.raises(Yolo4Error, match="percentile is only for --quantization explicit"):
        compat.check_precision_request("fp32", int8=True, quantization="implicit", calib_method="Percentile")


# ------------------------------------------------------------------------------------------------
# layer precisions from TensorRT's layer table
# ------------------------------------------------------------------------------------------------

# TensorRT 8.x/10.x build log with detailed profiling (format as trtexec --verbose prints it)
LOG_8X = """Engine Layer Information:
Layer(Reformat): Reformatting CopyNode for Input Tensor 0 to Conv_0, Tactic: 0x0, images[Float(4,3,416,416)] -> Reformatted Input Tensor 0 to Conv_0[Int8(4,3,416,416)]
Layer(CaskConvolution): Conv_0 + LeakyRelu_1, Tactic: 0x1025026069226666066, Reformatted Input Tensor 0 to Conv_0[Int8(4,3,416,416)] -> 191[Int8(4,32,208,208)]
Layer(CaskConvolution): Conv_2, Tactic: 0x7, 191[Int8(4,32,208,208)] -> 193[Half(4,64,104,104)]
Layer(Constant): anchors, Tactic: 0x0,  -> anchors[Float(1,3,2)]
Layer(ElementWise): Mul_9, Tactic: 0x1, 193[Half(4,64,104,104)], anchors[Float(1,3,2)] -> boxes[Float(4,2535,4)]
Layer(Shuffle): Reshape_3, Tactic: 0x0, shape[Int32(3)] -> s[Int32(3)]
"""

# TensorRT for RTX 1.7 verbose build log (abridged from a real build of yolov4-tiny)
LOG_RTX = """Layers:
Name: __mye4402_0_myl0_0, LayerType: shape_call, Inputs: [], Constants: [], Outputs: [], TacticName: , StreamId: 0, Metadata:
Name: /layers.0/conv/Conv_myl0_2, LayerType: correlation, Inputs: [ { Name: a, Dimensions: [-1,4,416,416], Datatype: Int8, Format: (NHWC) Channel major format }], Constants: [ { Name: w, Dimensions: [32,4,3,3], Datatype: Int8, Format: x }, { Name: b, Dimensions: [1,32,1,1], Datatype: Float, Format: x }], Outputs: [ { Name: o, Dimensions: [-1,32,208,208], Datatype: Float, Format: x }], TacticName: __myelin_CASK_STUB, StreamId: 0, Metadata: [ONNX Layer: /layers.0/conv/Conv]
Name: __myl_Quan_myl0_3, LayerType: kgen, Inputs: [ { Name: o, Dimensions: [-1,32,208,208], Datatype: Float, Format: x }], Constants: [], Outputs: [ { Name: q, Dimensions: [-1,32,208,208], Datatype: Int8, Format: x }], TacticName: t, StreamId: 0, Metadata:
Name: __myl_Cast_myl0_4, LayerType: kgen, Inputs: [ { Name: q, Datatype: Half, Format: x }], Outputs: [ { Name: r, Datatype: Float, Format: x }], TacticName: t, StreamId: 0, Metadata:
Name: __mye21257_myl0_35, LayerType: wait, Inputs: [], Constants: [], Outputs: [], TacticName: , StreamId: 1, EventId: 1, Metadata:

I/O Tensors:
 Name: images, IOMode: Input, DataType: Float, Dimensions: [-1,3,416,416]
"""

# engine inspector, LayerInformationFormat.JSON with ProfilingVerbosity.DETAILED
INSPECTOR_JSON = json.dumps({"Layers": [
    {"Name": "Conv_0", "LayerType": "CaskConvolution",
     "Inputs": [{"Name": "images", "Location": "Device", "Dimensions": [4, 3, 416, 416],
                 "Format/Datatype": "Four wide channel vectorized row major Int8 format"}],
     "Outputs": [{"Name": "191", "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}]},
    {"Name": "Conv_2", "LayerType": "CaskConvolution",
     "Inputs": [{"Name": "191", "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}],
     "Outputs": [{"Name": "193", "Format/Datatype": "Row major linear FP32"}]},
    {"Name": "Decode", "LayerType": "PointWiseV2",
     "Inputs": [{"Name": "193", "Format/Datatype": "Row major linear FP32"},
                {"Name": "idx", "Format/Datatype": "Row major linear INT32"}]},
    {"Name": "Shape", "LayerType": "Shuffle", "Inputs": [{"Name": "s", "Format/Datatype": "Row major linear Int64"}]},
    "a layer name only (LAYER_NAMES_ONLY)",
], "Bindings": ["images", "boxes"]})


@pytest.mark.parametrize("text, expected", [
    (LOG_8X, {"int8": 2, "fp16": 1, "fp32": 1}),
    (LOG_RTX, {"int8": 1, "fp16": 1, "fp32": 1}),
    (INSPECTOR_JSON, {"int8": 1, "fp16": 1, "fp32": 1}),
    (None, {}), ("", {}), ("{broken json", {}), ("no layer table here", {}),
])
def test_summarize_layer_info(text, expected):
    assert compat.summarize_layer_info(text) == expected


def test_build_logger_routes_by_severity():
    lines = []
    state = compat.BuildLogger(lines.append, verbose=False)
    state.handle(2, "a warning\n")
    state.handle(3, "info, hidden")
    state.handle(1, "an   error")
    state.handle(4, "Layers:\nName: x")
    with state.muted():
        state.handle(1, "hidden error")
    assert lines == ["warning: TensorRT: a warning", "TensorRT error: an   error"]
    assert state.errors == ["an error"] and state.layer_info == "Layers:\nName: x"
    verbose = compat.BuildLogger(lines.append, verbose=True)
    verbose.handle(3, "info shown")
    assert lines[-1] == "TensorRT: info shown"


def test_build_logger_holds_parser_errors():
    lines = []
    state = compat.BuildLogger(lines.append)
    with state.errors_held():
        state.handle(1, "While parsing node number 0")
        state.handle(2, "a warning still shows")
    assert lines == ["warning: TensorRT: a warning still shows"] and state.errors == ["While parsing node number 0"]


@pytest.mark.parametrize("flavour, version, kw, needle", [
    ("tensorrt", "10.3.0", {"compute_capability": ["8.6"]}, "--compute-capability is for --backend tensorrt-rtx"),
    ("tensorrt", "11.4.0", {"dla_core": 0}, "--dla-core needs a Jetson (Xavier/Orin) with TensorRT 8.5 - 10.x"),
    ("tensorrt-rtx", "1.7.1", {"dla_core": 1}, "TensorRT for RTX 1.7.1 has no DLA support"),
    ("tensorrt-rtx", "1.7.1", {"plugin_libs": ["libdiounms.so"]}, "TensorRT for RTX cannot load plugin libraries"),
])
def test_build_options_a_release_cannot_honour(flavour, version, kw, needle):
    api = compat.TrtApi(None, flavour, version)  # only the release's features are consulted
    with pytest.raises(Yolo4Error, match=re.escape(needle)):
        compat.check_build_options(api, **kw)
    assert compat.check_build_options(compat.TrtApi(None, "tensorrt", "8.5.2"), dla_core=0,
                                      plugin_libs=["libdiounms.so"]) == []


def test_parse_batch_and_profile():
    assert parse_batch("1,4,8") == (1, 4, 8) and parse_batch(" 2 ") == (2, 2, 2) and parse_batch(None) is None
    assert parse_batch([1, 2, 3]) == (1, 2, 3)
    for bad in ("4,2,8", "0,1,2", "1,2", "a,b,c", "1,2,3,4", ""):
        with pytest.raises(Yolo4Error, match="--batch must be MIN,OPT,MAX"):
            parse_batch(bad)
    info = ModelInfo(names=["a"], input_hw=(320, 416))
    dyn = OnnxFacts(Path("m.onnx"), info, "fp32", "images", [-1, 3, -1, -1], ["boxes", "scores"])
    assert DEFAULT_BATCH == (1, 4, 8)
    assert _profile_shapes(dyn, None) == {"min": [1, 3, 320, 416], "opt": [4, 3, 320, 416], "max": [8, 3, 320, 416]}
    assert _profile_shapes(dyn, (2, 2, 16))["max"] == [16, 3, 320, 416]
    fixed = OnnxFacts(Path("m.onnx"), info, "fp32", "images", [2, 3, 320, 416], ["boxes", "scores"])
    assert _profile_shapes(fixed, None) == _profile_shapes(fixed, (2, 2, 2)) == {k: [2, 3, 320, 416] for k in
                                                                                ("min", "opt", "max")}
    with pytest.raises(Yolo4Error, match="fixed batch of 2: drop --batch"):
        _profile_shapes(fixed, (1, 4, 8))


# ------------------------------------------------------------------------------------------------
# a small synthetic yolo4 ONNX (FP32, FP16 or Q/DQ) for fast checks
# ------------------------------------------------------------------------------------------------

def _small_onnx(path, kind="fp32", batch="batch", metadata=True):
    """images [B,3,64,64] -> Conv(8) -> LeakyRelu -> Conv(4) = boxes, Sigmoid(Conv(3)) = scores."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.RandomState(0)
    dt = np.float16 if kind == "fp16" else np.float32
    inits = [numpy_helper.from_array((rng.randn(8, 3, 3, 3) * 0.2).astype(dt), "w1"),
             numpy_helper.from_array((rng.randn(4, 8, 1, 1) * 0.2).astype(dt), "w2"),
             numpy_helper.from_array((rng.randn(3, 8, 1, 1) * 0.2).astype(dt), "w3")]
    nodes, src = [], "images"
    if kind == "fp16":
        nodes.append(helper.make_node("Cast", ["images"], ["x16"], to=TensorProto.FLOAT16))
        src = "x16"
    if kind == "int8":
        inits += [numpy_helper.from_array(np.array(1 / 127, np.float32), "s"),
                  numpy_helper.from_array(np.array(0, np.int8), "zp")]
        nodes += [helper.make_node("QuantizeLinear", ["images", "s", "zp"], ["xq"]),
                  helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["xdq"]),
                  helper.make_node("QuantizeLinear", ["w1", "s", "zp"], ["wq"]),
                  helper.make_node("DequantizeLinear", ["wq", "s", "zp"], ["wdq"])]
        src, w1 = "xdq", "wdq"
    else:
        w1 = "w1"
    nodes += [helper.make_node("Conv", [src, w1], ["c1"], pads=[1, 1, 1, 1], name="/layers.0/conv/Conv"),
              helper.make_node("LeakyRelu", ["c1"], ["a1"], alpha=0.1, name="/layers.0/act/LeakyRelu"),
              helper.make_node("Conv", ["a1", "w2"], ["b"], name="/layers.1/conv/Conv"),
              helper.make_node("Conv", ["a1", "w3"], ["c3"], name="/layers.2/conv/Conv"),
              helper.make_node("Sigmoid", ["c3"], ["s3"], name="/layers.2/Sigmoid")]
    if kind == "fp16":
        nodes += [helper.make_node("Cast", ["b"], ["boxes"], to=TensorProto.FLOAT),
                  helper.make_node("Cast", ["s3"], ["scores"], to=TensorProto.FLOAT)]
    else:
        nodes += [helper.make_node("Identity", ["b"], ["boxes"]), helper.make_node("Identity", ["s3"], ["scores"])]
    graph = helper.make_graph(
        nodes, "small", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, 64, 64])],
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [batch, 4, 64, 64]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, 3, 64, 64])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    if metadata:
        info = ModelInfo(names=["red", "green", "blue"], input_hw=(64, 64), anchors=[[(10.0, 14.0)]], strides=[32])
        helper.set_model_props(model, info.to_metadata())
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return Path(path)


@pytest.mark.parametrize("kind", ["fp32", "fp16", "int8"])
def test_onnx_facts(tmp_path, kind):
    from yolo4.convert.engine_builder import read_onnx_facts

    facts = read_onnx_facts(_small_onnx(tmp_path / "m.onnx", kind))
    assert facts.precision == kind and facts.input_name == "images" and facts.input_shape == [-1, 3, 64, 64]
    assert facts.output_names == ["boxes", "scores"] and facts.info.names == ["red", "green", "blue"]
    fixed = read_onnx_facts(_small_onnx(tmp_path / "f.onnx", kind, batch=2))
    assert fixed.input_shape == [2, 3, 64, 64]


def test_no_tensorrt_at_all_is_one_line(tmp_path):
    """With neither tensorrt nor tensorrt_rtx importable: one line naming what to install, exit 2."""
    model = _small_onnx(tmp_path / "m.onnx")
    code = ("import sys\n"
            "sys.modules['tensorrt'] = None\n"  # an import of either now fails as 'not installed'
            "sys.modules['tensorrt_rtx'] = None\n"
            "from yolo4.cli import main\n"
            f"main(['build-engine', {str(model)!r}, '-o', {str(tmp_path / 'm.engine')!r}])\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    line = assert_user_error(p, "pip install tensorrt", "python3-libnvinfer", "pip install tensorrt-rtx")
    assert line == "error: " + compat.INSTALL_HINT
    assert not (tmp_path / "m.engine").exists()


# ------------------------------------------------------------------------------------------------
# CLI user errors (the files are checked before TensorRT loads)
# ------------------------------------------------------------------------------------------------

def test_cli_missing_onnx(tmp_path):
    p = run_cli("build-engine", tmp_path / "nope.onnx", "-o", tmp_path / "m.engine")
    assert_user_error(p, "nope.onnx", "ONNX model not found")


def test_cli_not_an_onnx_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_text("this is not a protobuf\n")
    p = run_cli("build-engine", bad, "-o", tmp_path / "m.engine")
    assert_user_error(p, "bad.onnx", "not an ONNX model")
    assert not (tmp_path / "m.engine").exists()


def test_cli_onnx_without_yolo4_metadata(tmp_path):
    model = _small_onnx(tmp_path / "plain.onnx", metadata=False)
    p = run_cli("build-engine", model, "-o", tmp_path / "m.engine")
    assert_user_error(p, "plain.onnx", "no yolo4 metadata", "yolo4 export")


def test_cli_percentile_needs_explicit(tmp_path):
    model = _small_onnx(tmp_path / "m.onnx")
    p = run_cli("build-engine", model, "-o", tmp_path / "m.engine", "--int8", "--quantization", "implicit",
                "--calib-method", "percentile", "--calib-data", tmp_path)
    assert_user_error(p, "--calib-method percentile is only for --quantization explicit")


def test_cli_option_errors(tmp_path):
    model = _small_onnx(tmp_path / "m.onnx")
    assert_user_error(run_cli("build-engine", model, "-o", tmp_path / "m.engine", "--fp16", "--int8"),
                      "--fp16 and --int8 exclude each other")
    assert_user_error(run_cli("build-engine", model, "-o", tmp_path / "m.engine", "--batch", "8,4,1"),
                      "--batch must be MIN,OPT,MAX")
    assert_user_error(run_cli("build-engine", model, "-o", model), "would overwrite the ONNX model")
    assert_usage_error(run_cli("build-engine", model), "--output")
    assert_usage_error(run_cli("build-engine", model, "-o", tmp_path / "m.engine", "--workspace", "0"),
                       "--workspace")


# ------------------------------------------------------------------------------------------------
# real builds: TensorRT for RTX on the CPU
# ------------------------------------------------------------------------------------------------

def _build(*args):
    """``yolo4 build-engine --backend tensorrt-rtx ...`` through the installed command; asserts success."""
    p = run_cli("build-engine", "--backend", "tensorrt-rtx", *args)
    assert p.returncode == 0, p.stdout + p.stderr
    return p


@pytest.mark.tensorrt
@needs_rtx
def test_rtx_small_model_fixed_batch(tmp_path):
    model = _small_onnx(tmp_path / "fixed.onnx", batch=2)
    engine = tmp_path / "out" / "fixed.engine"
    p = _build(model, "-o", engine, "--verbose", "--timing-cache", tmp_path / "tc.bin")
    assert "fixed batch 2" in p.stdout
    assert "TensorRT: " in p.stdout  # INFO lines with --verbose
    assert "--timing-cache is ignored" in p.stderr and not (tmp_path / "tc.bin").exists()
    meta = read_engine_meta(engine)
    assert meta.input_shape == [2, 3, 64, 64] and meta.batch_range == (2, 2, 2) and not meta.dynamic_batch
    assert meta.num_profiles == 1  # a fixed batch needs no profile per execution context
    assert meta.precision == "fp32" and meta.gpu_name == AHEAD_OF_TIME and meta.target_compute_capabilities == []
    assert engine.stat().st_size > 0 and f"engine:   {engine.resolve()}" in p.stdout
    p = run_cli("build-engine", "--backend", "tensorrt-rtx", model, "-o", tmp_path / "x.engine", "--batch", "1,4,8")
    assert_user_error(p, "fixed batch of 2", "drop --batch")
    # eval/infer --engine read the metadata first; here (no pycuda or no GPU) they say what is missing
    p = run_cli("infer", "x.jpg", "--engine", engine)
    line = assert_user_error(p, str(engine))
    assert "pip install 'yolo4[trt]' (or pycuda)" in line or "no CUDA GPU" in line, line
    (tmp_path / "bare.engine").write_bytes(b"plan")
    assert_user_error(run_cli("eval", "--data", "coco128", "--engine", tmp_path / "bare.engine"), "bare.engine")
    assert_user_error(run_cli("eval", "--data", "coco128", "--engine", tmp_path / "none.engine"),
                      "none.engine", "not found")


@pytest.mark.tensorrt
@needs_rtx
def test_rtx_small_model_precision_follows_the_onnx(tmp_path):
    for kind in ("fp16", "int8"):
        engine = tmp_path / f"{kind}.engine"
        p = _build(_small_onnx(tmp_path / f"{kind}.onnx", kind), "-o", engine, "--compute-capability", "86")
        meta = read_engine_meta(engine)
        assert meta.precision == kind and meta.target_compute_capabilities == ["8.6"]
        assert meta.quantization == ("explicit" if kind == "int8" else "none")
        assert meta.layer_precisions.get(kind, 0) >= 1, meta.layer_precisions
        assert ("the ONNX is FP16" if kind == "fp16" else "the ONNX is Q/DQ INT8") in p.stdout
        assert meta.num_profiles == 2  # default --contexts 2: one profile per execution context
    engine = tmp_path / "one.engine"
    _build(_small_onnx(tmp_path / "one.onnx"), "-o", engine, "--contexts", "1")
    assert read_engine_meta(engine).num_profiles == 1 and read_engine_meta(engine).dynamic_batch


@pytest.mark.tensorrt
@needs_rtx
def test_cli_parser_error_is_one_line(tmp_path):
    """An op TensorRT cannot import: the parser's first error, with the node, in one line."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 64, 64])
    y = helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["batch", 3, 64, 64])
    graph = helper.make_graph([helper.make_node("FancyNMS", ["images"], ["boxes"], domain="example.custom",
                                                name="my_nms")], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                    helper.make_opsetid("example.custom", 1)])
    model.ir_version = 8
    helper.set_model_props(model, ModelInfo(names=["a"], input_hw=(64, 64)).to_metadata())
    path = tmp_path / "custom.onnx"
    onnx.save(model, str(path))
    p = run_cli("build-engine", path, "-o", tmp_path / "m.engine", "--backend", "tensorrt-rtx")
    assert_user_error(p, "custom.onnx", "TensorRT cannot parse the ONNX at node my_nms (FancyNMS)")
    assert "TensorRT error" not in p.stdout + p.stderr  # the parser's multi-line log is not repeated


@pytest.mark.tensorrt
@needs_rtx
def test_cli_rtx_refusals(tmp_path):
    model = _small_onnx(tmp_path / "m.onnx")
    lib = tmp_path / "libplugin.so"
    lib.write_bytes(b"")
    out = ["-o", tmp_path / "m.engine", "--backend", "tensorrt-rtx"]
    line = assert_user_error(run_cli("build-engine", model, *out, "--compute-capability", "9.9"),
                             "--compute-capability 9.9", "TensorRT for RTX")
    assert "8.6" in line and "12.0" in line  # the valid values are listed
    assert_user_error(run_cli("build-engine", model, *out, "--int8", "--quantization", "implicit",
                              "--calib-data", tmp_path), "has no INT8 calibrators", "--quantization explicit")
    assert_user_error(run_cli("build-engine", model, *out, "--dla-core", "0", "--fp16"),
                      "--dla-core needs a Jetson (Xavier/Orin)")
    assert_user_error(run_cli("build-engine", model, *out, "--plugin-lib", lib),
                      "TensorRT for RTX cannot load plugin libraries")
    assert_user_error(run_cli("build-engine", model, *out, "--int8"), "needs calibration images", "--calib-data")
    assert not (tmp_path / "m.engine").exists()


@pytest.mark.tensorrt
@needs_rtx
def test_cli_rtx_no_tf32_peak_memory_and_compat_refusals(tmp_path):
    """A real TensorRT for RTX build with --no-tf32 records it and prints peak host memory and the build
    time; the two cross-machine options are refused in one line (RTX engines are tied to their release
    and built ahead of time for --compute-capability targets instead)."""
    model = _small_onnx(tmp_path / "m.onnx")
    engine = tmp_path / "m.engine"
    p = _build(model, "-o", engine, "--no-tf32")
    meta = read_engine_meta(engine)
    assert meta.tf32 is False and meta.version_compatible is False and meta.hardware_compatibility == "none"
    assert "TF32 off" in p.stdout
    summary = [ln for ln in p.stdout.splitlines() if ln.startswith("summary: ")]
    assert summary and re.search(r"built in [0-9.:]+( s)?, peak host memory \d+ MiB$", summary[0]), summary
    assert meta.peak_host_memory_mib > 50  # a process that imported TensorRT for RTX and onnx
    out = ["-o", tmp_path / "x.engine", "--backend", "tensorrt-rtx"]
    assert_user_error(run_cli("build-engine", model, *out, "--version-compatible"),
                      "--version-compatible: TensorRT for RTX 1.", "run only on the TensorRT for RTX release")
    assert_user_error(run_cli("build-engine", model, *out, "--hardware-compatibility-level", "ampere+"),
                      "--hardware-compatibility-level: TensorRT for RTX", "--compute-capability")
    assert not (tmp_path / "x.engine").exists()


@pytest.mark.tensorrt
@needs_rtx
def test_rtx_really_cannot_build_version_or_hardware_compatible(tmp_path):
    """Why the refusals above: the real TensorRT for RTX fails a VERSION_COMPATIBLE build (it would
    embed libnvinfer_lean, which it does not ship) and ignores hardware_compatibility_level."""
    import tensorrt_rtx as trt

    lines = []
    api = compat.TrtApi(trt, "tensorrt-rtx")
    logger = compat.make_logger(api, lines.append)

    def build(configure):
        builder = trt.Builder(logger)
        network = compat.create_network(api, builder, True)
        compat.parse_onnx(api, network, logger, _small_onnx(tmp_path / "m.onnx", batch=1))
        config = builder.create_builder_config()
        configure(config)
        return config, compat.build_serialized(api, builder, network, config)

    config, plan = build(lambda c: c.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE))
    assert plan is None and any("libnvinfer_lean" in e for e in logger.state.errors), logger.state.errors

    def ampere_plus(c):
        c.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS

    config, plan = build(ampere_plus)
    assert plan is not None and config.hardware_compatibility_level == trt.HardwareCompatibilityLevel.NONE
    assert any("setHardwareCompatibilityLevel() is unsupported" in ln for ln in lines), lines
    config, plan = build(lambda c: c.clear_flag(trt.BuilderFlag.TF32))  # --no-tf32 is honoured
    assert plan is not None and not config.get_flag(trt.BuilderFlag.TF32)


@pytest.mark.tensorrt
@needs_rtx
def test_rtx_refuses_an_onnx_ending_with_the_diou_plugin(tmp_path):
    from tests.test_engine_builder_standin import _nms_onnx

    model = _nms_onnx(tmp_path / "p.onnx", "plugin")
    p = run_cli("build-engine", model, "-o", tmp_path / "p.engine", "--backend", "tensorrt-rtx")
    assert_user_error(p, "p.onnx", "DIoU-NMS plugin (exported with --nms plugin)", "cannot load",
                      "--nms none")


@pytest.fixture(scope="module")
def tiny_onnx_path(tiny, tmp_path_factory):
    """The real yolov4-tiny exported once (FP32, dynamic batch, 416x416)."""
    from yolo4.convert import export_onnx

    out = tmp_path_factory.mktemp("engine") / "yolov4-tiny.onnx"
    export_onnx(tiny, out, img_size=416, verify=False, log=None)
    return out


@pytest.mark.tensorrt
@pytest.mark.shared
@needs_rtx
def test_rtx_yolov4_tiny_fp32(tiny_onnx_path, tmp_path):
    engine = tmp_path / "tiny.engine"
    p = _build(tiny_onnx_path, "-o", engine, "--compute-capability", "8.6", "--batch", "1,4,8")
    assert engine.stat().st_size > 10 << 20  # the FP32 weights alone are 24 MB
    meta = read_engine_meta(engine)
    assert meta.profile == {"min": [1, 3, 416, 416], "opt": [4, 3, 416, 416], "max": [8, 3, 416, 416]}
    assert meta.input_name == "images" and meta.input_shape == [-1, 3, 416, 416]
    assert meta.output_names == ["boxes", "scores"]
    assert (meta.precision, meta.quantization) == ("fp32", "none")
    assert meta.trt_flavour == "tensorrt-rtx" and meta.compute_capability == AHEAD_OF_TIME
    assert meta.target_compute_capabilities == ["8.6"]
    assert set(meta.layer_precisions) == {"fp32"} and meta.layer_precisions["fp32"] > 20
    assert meta.model_info().input_hw == (416, 416) and len(meta.model_info().names) == 80
    assert meta.onnx_path == str(tiny_onnx_path.resolve()) and len(meta.onnx_sha256) == 64
    assert "layers by precision: FP32" in p.stdout and f"metadata: {engine.resolve()}.json" in p.stdout


@pytest.mark.tensorrt
@pytest.mark.shared
@needs_rtx
def test_rtx_yolov4_tiny_fp16(tiny_onnx_path, tmp_path):
    """--fp16 on a strongly typed TensorRT converts the FP32 ONNX (yolo4.convert.fp16) and says so;
    the converted FP16 ONNX then builds as FP16 by itself."""
    engine = tmp_path / "tiny.engine"
    p = _build(tiny_onnx_path, "-o", engine, "--compute-capability", "8.6", "--batch", "1,4,8", "--fp16")
    fp16_onnx = tmp_path / "tiny-fp16.onnx"
    assert fp16_onnx.is_file() and f"wrote {fp16_onnx}" in p.stdout
    meta = read_engine_meta(engine)
    assert (meta.precision, meta.quantization) == ("fp16", "none") and meta.built_onnx == str(fp16_onnx)
    lp = meta.layer_precisions
    assert lp["fp16"] > 20 and lp["fp16"] > 5 * lp.get("fp32", 0), lp  # the decode stays FP32
    assert 0 < engine.stat().st_size < 20 << 20  # half of the FP32 engine's weights
    again = tmp_path / "again.engine"
    p = _build(fp16_onnx, "-o", again)
    assert "the ONNX is FP16: building an FP16 engine" in p.stdout and "converted" not in p.stdout
    assert read_engine_meta(again).precision == "fp16"


@pytest.mark.tensorrt
@pytest.mark.shared
@needs_rtx
def test_rtx_yolov4_tiny_int8(tiny_onnx_path, tmp_path):
    """--int8 on TensorRT for RTX = explicit: a Q/DQ ONNX from the lead's quantizer (8 coco128 images),
    then a strongly typed build whose layer table has INT8 layers."""
    pytest.importorskip("onnxruntime.quantization", reason="the Q/DQ quantizer needs onnxruntime")
    import yolo4.calib.qdq  # noqa: F401  (the project's own module: missing = a failure, not a skip)
    engine = tmp_path / "tiny.engine"
    p = _build(tiny_onnx_path, "-o", engine, "--compute-capability", "8.6", "--batch", "1,4,8", "--int8",
               "--calib-data", "coco128", "--calib-images", "8")
    qdq = tmp_path / "tiny-int8.onnx"
    assert qdq.is_file() and "Q/DQ INT8 ONNX: wrote" in p.stdout
    import onnx

    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(qdq), load_external_data=False).graph.node)
    meta = read_engine_meta(engine)
    assert (meta.precision, meta.quantization) == ("int8", "explicit")
    assert meta.calib_method == "minmax" and meta.calib_images == 8 and len(meta.calib_digest) == 64
    assert meta.built_onnx == str(qdq)
    assert meta.layer_precisions.get("int8", 0) >= 10, meta.layer_precisions  # 18 convolutions are INT8
    assert "layers by precision: INT8" in p.stdout
    assert 0 < engine.stat().st_size < 15 << 20


# ------------------------------------------------------------------------------------------------
# progress and Ctrl-C
# ------------------------------------------------------------------------------------------------

class _Tty:
    def __init__(self, tty):
        self.text, self.tty = "", tty

    def write(self, s):
        self.text += s

    def flush(self):
        pass

    def isatty(self):
        return self.tty


def test_progress_line_on_a_terminal_and_lines_elsewhere():
    import time

    from yolo4.convert.engine_builder import _Progress

    term = _Tty(True)
    p = _Progress(print, term, tick=0.02)
    p.start()
    p.on_phase("Building engine", 2, 6)
    time.sleep(0.15)
    p.stop()
    assert "building engine: " in term.text and "[Building engine 2/6]" in term.text
    assert term.text.endswith("\r\033[K")  # the line is erased when the build ends
    lines = []
    pipe = _Tty(False)
    p = _Progress(lines.append, pipe, tick=0.02, line_every=0.05)
    p.start()
    time.sleep(0.2)
    p.stop()
    assert pipe.text == "" and lines and all(ln.startswith("still building: ") for ln in lines)


@pytest.mark.tensorrt
@needs_rtx
def test_ctrl_c_stops_the_build(tmp_path, monkeypatch):
    """A real SIGINT during a real build: TensorRT stops at its next step (IProgressMonitor), nothing is
    written, the SIGINT handler is restored, and TensorRT's own "BuildCanceled" error is not shown."""
    import os
    import signal

    from yolo4.convert import engine_builder as eb

    sent = []
    original = eb._Progress.on_phase

    def on_phase(self, name, step, steps):
        if not sent and step >= 1:
            sent.append(name)
            os.kill(os.getpid(), signal.SIGINT)
        original(self, name, step, steps)

    monkeypatch.setattr(eb._Progress, "on_phase", on_phase)
    lines = []
    engine = tmp_path / "m.engine"
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        eb.build_engine(_small_onnx(tmp_path / "m.onnx"), engine, backend="tensorrt-rtx", log=lines.append)
    assert sent and signal.getsignal(signal.SIGINT) is before
    assert not engine.exists() and not (tmp_path / "m.engine.json").exists()
    assert not any("BuildCanceled" in ln for ln in lines), lines
