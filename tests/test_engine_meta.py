"""The engine metadata sidecar (yolo4/engine_meta.py): write/read round trip, missing and
corrupt sidecars, and the compatibility check that refuses an engine from another TensorRT flavour,
release or GPU before TensorRT is asked to deserialize it."""

import dataclasses
import json
import warnings

import pytest

from yolo4.engine_meta import (
    AHEAD_OF_TIME,
    EngineMeta,
    check_engine_compat,
    cuda_device,
    engine_meta_path,
    parse_compute_capability,
    read_engine_meta,
    rebuild_command,
    write_engine_meta,
)
from yolo4.errors import ModelFileError, Yolo4Warning
from yolo4.model_info import ModelInfo

INFO = ModelInfo(names=["person", "bicycle", "café"], input_hw=(416, 320), letter_box=True,
                 anchors=[[(10.0, 14.0), (23.0, 27.0)]], strides=[32], cfg_sha256="ab" * 32, yolo4_version="0.1.0")


def _meta(**kw):
    base = dict(model=INFO.to_metadata(), input_name="images", input_shape=[-1, 3, 416, 320],
                profile={"min": [1, 3, 416, 320], "opt": [4, 3, 416, 320], "max": [8, 3, 416, 320]},
                output_names=["boxes", "scores"], precision="int8", quantization="implicit",
                trt_flavour="tensorrt", trt_version="8.5.2.2", gpu_name="Xavier", compute_capability="7.2",
                onnx_sha256="cd" * 32, onnx_path="/models/tiny.onnx", calib_digest="ef" * 32,
                calib_method="entropy", calib_images=500, dla_core=0, plugin_libraries=["/opt/libdiounms.so"],
                layer_precisions={"int8": 20, "fp16": 3, "fp32": 5}, build_time_s=312.5,
                built_at="2026-01-02T03:04:05+00:00", yolo4_version="0.1.0")
    base.update(kw)
    return EngineMeta(**base)


def _rtx_meta(**kw):
    return _meta(trt_flavour="tensorrt-rtx", trt_version="1.7.1.116", gpu_name=AHEAD_OF_TIME,
                 compute_capability=AHEAD_OF_TIME, precision="fp16", quantization="none", dla_core=None,
                 calib_digest="", calib_method="", calib_images=0, plugin_libraries=[], **kw)


def test_round_trip(tmp_path):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"plan")
    meta = _meta()
    path = write_engine_meta(engine, meta)
    assert path == tmp_path / "model.engine.json" == engine_meta_path(engine)
    assert meta.path == str(path)
    back = read_engine_meta(engine)
    assert back == meta and back.path == str(path)
    assert back.model_info() == INFO
    assert back.batch_range == (1, 4, 8) and back.dynamic_batch and not back.ahead_of_time
    data = json.loads(path.read_text(encoding="utf-8"))
    assert "path" not in data and data["format_version"] == 1
    assert data["profile"]["opt"] == [4, 3, 416, 320]
    # every field is one line (shapes included), except the model facts
    text = path.read_text(encoding="utf-8")
    assert '"input_shape": [-1, 3, 416, 320],' in text


def test_fixed_batch_and_rtx_round_trip(tmp_path):
    engine = tmp_path / "rtx.engine"
    meta = _rtx_meta(input_shape=[2, 3, 416, 320], target_compute_capabilities=["8.6", "8.9"],
                     profile={k: [2, 3, 416, 320] for k in ("min", "opt", "max")})
    write_engine_meta(engine, meta)
    back = read_engine_meta(engine)
    assert back == meta and back.ahead_of_time and not back.dynamic_batch and back.batch_range == (2, 2, 2)


def test_missing_sidecar_names_the_file(tmp_path):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"plan")
    with pytest.raises(ModelFileError) as e:
        read_engine_meta(engine)
    msg = str(e.value)
    assert "model.engine.json" in msg and "missing" in msg and "yolo4 build-engine" in msg and "\n" not in msg


@pytest.mark.parametrize("content, needle", [
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe\x00garbage", "not UTF-8"),
    (b"[1, 2]", "not a JSON object"),
    (b"{}", "missing model"),
])
def test_corrupt_sidecar(tmp_path, content, needle):
    engine = tmp_path / "m.engine"
    engine_meta_path(engine).write_bytes(content)
    with pytest.raises(ModelFileError) as e:
        read_engine_meta(engine)
    msg = str(e.value)
    assert needle in msg and "m.engine.json" in msg and "yolo4 build-engine" in msg and "\n" not in msg


@pytest.mark.parametrize("change, needle", [
    ({"input_shape": "1x3x416x416"}, "input_shape must be a list of int"),
    ({"precision": "int4"}, "precision 'int4'"),
    ({"quantization": "qat"}, "quantization 'qat'"),
    ({"trt_flavour": "onnxruntime"}, "trt_flavour"),
    ({"profile": {"min": [1, 3, 416, 320], "max": [8, 3, 416, 320]}}, "profile must have min, opt and max"),
    ({"profile": {"min": [1, 3], "opt": [4, 3], "max": [8, 3]}}, "profile min has 2 dimensions"),
    ({"model": {"names": 3}}, "model must be an object of strings"),
    ({"dla_core": -1}, "dla_core"),
    ({"layer_precisions": {"int8": "many"}}, "layer_precisions"),
    ({"format_version": 99}, "newer than this yolo4 reads"),
    ({"tf32": "yes"}, "tf32 must be true or false"),
    ({"version_compatible": 1}, "version_compatible must be true or false"),
    ({"hardware_compatibility": "hopper+"}, "hardware_compatibility 'hopper+'"),
    ({"workspace_mib": 0}, "workspace_mib"),
    ({"peak_host_memory_mib": "big"}, "peak_host_memory_mib must be a number"),
])
def test_invalid_fields(tmp_path, change, needle):
    engine = tmp_path / "m.engine"
    data = _meta().to_dict()
    data.update(change)
    engine_meta_path(engine).write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ModelFileError) as e:
        read_engine_meta(engine)
    assert needle in str(e.value) and "m.engine.json" in str(e.value)


def test_unknown_keys_are_ignored_and_model_facts_checked(tmp_path):
    engine = tmp_path / "m.engine"
    data = _meta().to_dict()
    data["written_by_a_newer_yolo4"] = True
    data["model"] = {"names": "[]", "input_hw": "[416, 416]"}  # parses as JSON, but no class names
    engine_meta_path(engine).write_text(json.dumps(data), encoding="utf-8")
    meta = read_engine_meta(engine)
    with pytest.raises(ModelFileError) as e:
        meta.model_info()
    assert "m.engine.json" in str(e.value)


def test_write_failure_is_one_line(tmp_path):
    folder = tmp_path / "m.engine.json"
    folder.mkdir()  # a folder where the sidecar goes
    with pytest.raises(ModelFileError) as e:
        write_engine_meta(tmp_path / "m.engine", _meta())
    assert "cannot write the engine metadata" in str(e.value)


# -- compatibility --------------------------------------------------------------------------------

def _read(tmp_path, meta):
    engine = tmp_path / "m.engine"
    write_engine_meta(engine, meta)
    return read_engine_meta(engine)


def test_compat_accepts_the_same_release_and_gpu(tmp_path):
    meta = _read(tmp_path, _meta())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_engine_compat(meta, "tensorrt", "8.5.2.2", "7.2", gpu_name="Xavier")
        check_engine_compat(meta, "tensorrt", "8.5.2.1", (7, 2))  # another build number of 8.5.2
        check_engine_compat(meta, "tensorrt", "8.5.2", "sm_72", gpu_name=None)


@pytest.mark.parametrize("flavour, version, cc, needles", [
    ("tensorrt", "8.6.1.6", "7.2", ["built with TensorRT 8.5.2", "this machine has TensorRT 8.6.1 on Orin (compute capability 7.2)",
      "yolo4 build-engine"]),
    ("tensorrt", "10.3.0.30", "7.2", ["TensorRT 8.5.2", "TensorRT 10.3.0"]),
    ("tensorrt-rtx", "1.7.1.116", "8.6", ["TensorRT 8.5.2", "TensorRT for RTX 1.7.1", "yolo4 build-engine"]),
    ("tensorrt", "8.5.2.2", "8.7", ["compute capability 7.2 (Xavier)", "this GPU (Orin) is 8.7", "yolo4 build-engine"]),
    ("tensorrt", "8.5.2.2", "7.5", ["compute capability 7.2", "is 7.5"]),
])
def test_compat_refuses_another_release_or_gpu(tmp_path, flavour, version, cc, needles):
    meta = _read(tmp_path, _meta())
    with pytest.raises(ModelFileError) as e:
        check_engine_compat(meta, flavour, version, cc, gpu_name="Orin")
    msg = str(e.value)
    assert msg.startswith(str(tmp_path / "m.engine") + ":"), msg  # names the engine
    assert "\n" not in msg
    for n in needles:
        assert n in msg, (n, msg)


def test_compat_same_capability_other_gpu_warns(tmp_path):
    meta = _read(tmp_path, _meta(gpu_name="NVIDIA A10", compute_capability="8.6"))
    with pytest.warns(Yolo4Warning, match="built on NVIDIA A10, this GPU is NVIDIA GeForce RTX 3090"):
        check_engine_compat(meta, "tensorrt", "8.5.2.2", "8.6", gpu_name="NVIDIA GeForce RTX 3090")


def test_compat_rtx_targets(tmp_path):
    meta = _read(tmp_path, _rtx_meta(target_compute_capabilities=["8.6", "8.9"]))
    check_engine_compat(meta, "tensorrt-rtx", "1.7.1.116", "8.9", gpu_name="NVIDIA GeForce RTX 4090")
    with pytest.raises(ModelFileError) as e:
        check_engine_compat(meta, "tensorrt-rtx", "1.7.1.116", "12.0", gpu_name="NVIDIA GeForce RTX 5090")
    msg = str(e.value)
    assert "ahead of time for compute capability 8.6, 8.9" in msg and "--compute-capability 12.0" in msg
    with pytest.raises(ModelFileError, match="built with TensorRT for RTX 1.7.1, this machine has TensorRT for RTX 1.8.0"):
        check_engine_compat(meta, "tensorrt-rtx", "1.8.0.5", "8.6")
    with pytest.raises(ModelFileError, match="engines of one cannot run on the other"):
        check_engine_compat(meta, "tensorrt", "10.13.3.9", "8.6")


def test_compat_rtx_default_targets_are_ampere_and_later(tmp_path):
    meta = _read(tmp_path, _rtx_meta(target_compute_capabilities=[]))
    for cc in ("8.0", "8.6", "8.9", "12.0"):
        check_engine_compat(meta, "tensorrt-rtx", "1.7.1.116", cc)
    with pytest.raises(ModelFileError) as e:
        check_engine_compat(meta, "tensorrt-rtx", "1.7.1.116", "7.5", gpu_name="NVIDIA GeForce RTX 2080 Ti")
    assert "default targets" in str(e.value) and "--compute-capability 7.5" in str(e.value)


def test_compat_bad_values(tmp_path):
    meta = _read(tmp_path, _meta())
    with pytest.raises(ModelFileError, match="not a compute capability"):
        check_engine_compat(meta, "tensorrt", "8.5.2.2", "seven")
    broken = dataclasses.replace(meta, compute_capability="x.y")
    with pytest.raises(ModelFileError, match="invalid engine metadata"):
        check_engine_compat(broken, "tensorrt", "8.5.2.2", "7.2")


@pytest.mark.parametrize("text, cc", [("8.6", (8, 6)), ("86", (8, 6)), ("sm_86", (8, 6)), ("SM120", (12, 0)),
                                      ("12.1", (12, 1)), (" 7.2 ", (7, 2)), ((8, 7), (8, 7))])
def test_parse_compute_capability(text, cc):
    assert parse_compute_capability(text) == cc


@pytest.mark.parametrize("bad", ["", "8", "8.", "8.10", "sm_", "ampere", "8,6"])
def test_parse_compute_capability_refuses(bad):
    with pytest.raises(ValueError):
        parse_compute_capability(bad)


def test_cuda_device_never_raises():
    dev = cuda_device(0)  # None on a machine without a CUDA driver (CI); the GPU on a lent machine
    assert dev is None or (dev.name and parse_compute_capability(dev.compute_capability))
    assert cuda_device(10_000) is None


# -- engines across machines: version- and hardware-compatible engines (issue 16, 3) ----------------

def test_compat_fields_round_trip_and_old_sidecars_default(tmp_path):
    meta = _read(tmp_path, _meta(tf32=False, version_compatible=True, hardware_compatibility="ampere+",
                                 workspace_mib=1024, peak_host_memory_mib=2345.6))
    assert (meta.tf32, meta.version_compatible, meta.hardware_compatibility, meta.workspace_mib,
            meta.peak_host_memory_mib) == (False, True, "ampere+", 1024, 2345.6)
    old = _meta().to_dict()
    for k in ("tf32", "version_compatible", "hardware_compatibility", "workspace_mib", "peak_host_memory_mib"):
        old.pop(k)
    engine = tmp_path / "old.engine"
    engine_meta_path(engine).write_text(json.dumps(old), encoding="utf-8")
    back = read_engine_meta(engine)  # a sidecar written before these fields existed
    assert (back.tf32, back.version_compatible, back.hardware_compatibility, back.workspace_mib) == \
        (True, False, "none", None)


def test_version_compatible_engine_runs_on_later_releases(tmp_path):
    meta = _read(tmp_path, _meta(trt_version="8.6.1.6", version_compatible=True, gpu_name="Orin",
                                 compute_capability="8.7"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for later in ("8.6.1.6", "8.6.2.3", "10.3.0.30", "10.13.3.9"):
            check_engine_compat(meta, "tensorrt", later, "8.7", gpu_name="Orin")
    with pytest.raises(ModelFileError) as e:
        check_engine_compat(meta, "tensorrt", "8.5.2.2", "8.7", gpu_name="Orin")
    msg = str(e.value)
    for needle in ("built with TensorRT 8.6.1 on Orin (compute capability 8.7), version-compatible",
                   "this machine has TensorRT 8.5.2", "an older release",
                   "rebuild it here with `yolo4 build-engine /models/tiny.onnx -o %s" % (tmp_path / "m.engine"),
                   " --version-compatible "):
        assert needle in msg, (needle, msg)
    assert "\n" not in msg
    plain = _read(tmp_path, _meta(trt_version="8.6.1.6"))
    with pytest.raises(ModelFileError, match="build it with --version-compatible"):
        check_engine_compat(plain, "tensorrt", "10.3.0.30", "7.2")


def test_hardware_compatible_engine_runs_on_any_ampere_or_later_gpu(tmp_path):
    meta = _read(tmp_path, _meta(trt_version="10.3.0.30", hardware_compatibility="ampere+",
                                 gpu_name="NVIDIA A100-SXM4-40GB", compute_capability="8.0", dla_core=None))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # built to move: no "other GPU model" warning either
        for cc, name in (("8.0", "NVIDIA A30"), ("8.6", "NVIDIA A10"), ("8.9", "NVIDIA L4"), ("9.0", "NVIDIA H100")):
            check_engine_compat(meta, "tensorrt", "10.3.0.30", cc, gpu_name=name)
    with pytest.raises(ModelFileError) as e:
        check_engine_compat(meta, "tensorrt", "10.3.0.30", "7.5", gpu_name="Tesla T4")
    msg = str(e.value)
    for needle in ("built with TensorRT 10.3.0 on NVIDIA A100-SXM4-40GB (compute capability 8.0), "
                   "hardware-compatible for Ampere and later", "this GPU (Tesla T4) is 7.5 with TensorRT 10.3.0",
                   "--hardware-compatibility-level ampere+"):
        assert needle in msg, (needle, msg)
    plain = _read(tmp_path, _meta(trt_version="10.3.0.30", gpu_name="NVIDIA A100-SXM4-40GB", compute_capability="8.0"))
    with pytest.raises(ModelFileError) as e:
        check_engine_compat(plain, "tensorrt", "10.3.0.30", "8.6", gpu_name="NVIDIA A10")
    msg = str(e.value)
    assert "compute capability 8.0 (NVIDIA A100-SXM4-40GB) with TensorRT 10.3.0" in msg
    assert "this GPU (NVIDIA A10) is 8.6 with TensorRT 10.3.0" in msg and "ampere+ builds one" in msg


def test_same_compute_capability_engine_moves_without_a_warning(tmp_path):
    meta = _read(tmp_path, _meta(trt_version="10.13.3.9", hardware_compatibility="same-compute-capability",
                                 gpu_name="NVIDIA A10", compute_capability="8.6"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_engine_compat(meta, "tensorrt", "10.13.3.9", "8.6", gpu_name="NVIDIA GeForce RTX 3090")
    with pytest.raises(ModelFileError, match="compute capability 8.6"):
        check_engine_compat(meta, "tensorrt", "10.13.3.9", "8.9", gpu_name="NVIDIA L4")


def test_rebuild_command_repeats_the_build_options(tmp_path):
    meta = _read(tmp_path, _meta(tf32=False, input_shape=[-1, 3, 416, 320]))
    assert rebuild_command(meta) == (
        "yolo4 build-engine /models/tiny.onnx -o %s --int8 --calib-data DATA --calib-images 500 --batch 1,4,8 "
        "--contexts 1 --dla-core 0 --no-tf32 --plugin-lib /opt/libdiounms.so" % (tmp_path / "m.engine"))
    rtx = _rtx_meta(target_compute_capabilities=["8.6"], num_profiles=2, onnx_path="/m/a b.onnx")
    assert rebuild_command(rtx, "x.engine") == ("yolo4 build-engine '/m/a b.onnx' -o x.engine --backend tensorrt-rtx "
                                                "--compute-capability 8.6 --fp16 --batch 1,4,8")
    vc = _meta(precision="fp32", quantization="none", dla_core=None, plugin_libraries=[], num_profiles=2,
               version_compatible=True, hardware_compatibility="ampere+", input_shape=[2, 3, 416, 320])
    assert rebuild_command(vc, "m.engine") == ("yolo4 build-engine /models/tiny.onnx -o m.engine "
                                               "--version-compatible --hardware-compatibility-level ampere+")
