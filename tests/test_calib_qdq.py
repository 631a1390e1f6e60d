"""Explicit INT8 (Q/DQ ONNX by ONNX Runtime's quantize_static) on the real yolov4-tiny."""

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from yolo4.calib.images import CalibrationSet
from yolo4.calib.qdq import default_float_nodes, quantize_qdq, resolve_exclude
from yolo4.calib.sensitivity import sensitivity_search
from yolo4.convert import export_onnx
from yolo4.errors import Yolo4Error
from yolo4.onnx_facts import onnx_precision
from yolo4.pipeline import onnx_evaluator, open_backend, run_eval

from .conftest import assert_usage_error, assert_user_error, run_cli

pytestmark = pytest.mark.shared
SIZE = 160


def _coco128(shared_data):
    return sorted(str(p) for p in (shared_data / "coco128" / "images" / "train2017").glob("*.jpg"))


@pytest.fixture(scope="module")
def fp32(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("qdq") / "tiny.onnx"
    export_onnx(tiny, out, img_size=SIZE, log=lambda m: None)
    return out


@pytest.fixture(scope="module")
def calib(shared_data):
    return CalibrationSet.from_paths(_coco128(shared_data)[:8], (SIZE, SIZE), False, 4)


@pytest.fixture(scope="module")
def qdq(fp32, calib, tmp_path_factory):
    out = tmp_path_factory.mktemp("qdq") / "tiny-int8.onnx"
    return quantize_qdq(fp32, out, calib, method="minmax", log=lambda m: None)


def _producers(model):
    return {o: n for n in model.graph.node for o in n.output}


def test_tensorrt_layout_quantizes_conv_inputs_only_with_zero_points_zero(fp32, qdq):
    src, q = onnx.load(str(fp32)), onnx.load(str(qdq.path))
    assert onnx_precision(q) == "int8" and onnx_precision(src) == "fp32"
    prod = _producers(q)
    inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    convs = [n for n in q.graph.node if n.op_type == "Conv"]
    int8 = [n.name for n in convs if prod.get(n.input[0]) is not None and prod[n.input[0]].op_type == "DequantizeLinear"]
    assert int8 == qdq.quantized and len(int8) == len(convs) - 3
    # first conv and both [yolo] heads stay float, as the defaults say
    assert set(n.name for n in convs) - set(int8) == {"/layers.0/conv/Conv", "/layers.29/conv/Conv",
                                                      "/layers.36/conv/Conv"}
    for n in convs:
        if n.name in int8:  # weights: per output channel (axis 0), symmetric
            wdq = prod[n.input[1]]
            assert wdq.op_type == "DequantizeLinear"
            scale = inits[wdq.input[1]] if wdq.input[1] in inits else None
            w = inits.get(n.input[1]) if n.input[1] in inits else None
            assert w is None and scale is not None and scale.ndim == 1
            assert dict((a.name, a.i) for a in wdq.attribute).get("axis", 1) == 0
        # no Q/DQ on op outputs: nothing consumes a Conv output through QuantizeLinear
        for other in q.graph.node:
            if other.op_type == "QuantizeLinear" and other.input[0] == n.output[0]:
                pytest.fail("Q on the output of %s" % n.name)
    # every zero point 0 (TensorRT's requirement) and int8
    for n in q.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2:
            zp = inits[n.input[2]]
            assert zp.dtype == np.int8 and not zp.any(), n.name


def test_metadata_kept_and_extended(fp32, qdq, calib):
    src = {p.key: p.value for p in onnx.load(str(fp32)).metadata_props}
    got = {p.key: p.value for p in onnx.load(str(qdq.path)).metadata_props}
    assert {k: got[k] for k in src} == src
    assert got["precision"] == "int8" and got["quantization"] == "qdq" and got["calib_method"] == "minmax"
    assert got["calib_digest"] == calib.digest() and got["calib_images"] == "8"
    assert got["int8_float_nodes"].split(",") == ["/layers.0/conv/Conv", "/layers.29/conv/Conv",
                                                  "/layers.36/conv/Conv"]
    assert not list(qdq.path.parent.glob("*.tmp"))


def test_qdq_model_detects_what_fp32_detects(fp32, qdq, shared_data):
    from yolo4.pipeline import compare_detections

    imgs = [str(p) for p in sorted((shared_data / "darknet" / "images").glob("*.jpg"))]
    a = compare_detections(str(fp32), str(qdq.path), imgs)
    assert a.reference > 0 and a.matched >= a.reference - 1, a.summary()
    assert a.mean_iou > 0.85


def test_onnxruntime_layout_is_u8s8(fp32, calib, tmp_path):
    res = quantize_qdq(fp32, tmp_path / "ort.onnx", calib, method="minmax", layout="onnxruntime",
                       log=lambda m: None)
    q = onnx.load(str(res.path))
    inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    act = [inits[n.input[2]] for n in q.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    assert act and all(z.dtype == np.uint8 for z in act)
    assert any(n.op_type == "QuantizeLinear" and any(c.op_type == "Conv" and c.output[0] == n.input[0]
                                                      for c in q.graph.node) for n in q.graph.node)


def test_exclude_by_layer_index_and_glob(fp32, calib, tmp_path):
    model = onnx.load(str(fp32))
    twelve = resolve_exclude(model, ["12"])
    assert "/layers.12/conv/Conv" in twelve and all("/layers.12/" in n for n in twelve)
    assert "/layers.13/conv/Conv" in resolve_exclude(model, ["12-13"])
    assert resolve_exclude(model, ["/layers.2/*Conv"]) == ["/layers.2/conv/Conv"]
    with pytest.raises(Yolo4Error, match="matches no node"):
        resolve_exclude(model, ["999"])
    res = quantize_qdq(fp32, tmp_path / "x.onnx", calib, method="minmax", exclude=["12", "/layers.2/*Conv"],
                       log=lambda m: None)
    assert "/layers.12/conv/Conv" not in res.quantized and "/layers.2/conv/Conv" not in res.quantized
    assert "/layers.4/conv/Conv" in res.quantized
    assert default_float_nodes(model)[0] == "/layers.0/conv/Conv"


def test_refuses_quantized_fp16_and_wrong_size(fp32, qdq, calib, tiny, tmp_path):
    with pytest.raises(Yolo4Error, match="already quantized"):
        quantize_qdq(qdq.path, tmp_path / "a.onnx", calib, log=lambda m: None)
    f16 = tmp_path / "f16.onnx"
    export_onnx(tiny, f16, img_size=SIZE, fp16=True, log=lambda m: None)
    with pytest.raises(Yolo4Error, match="float16"):
        quantize_qdq(f16, tmp_path / "b.onnx", calib, log=lambda m: None)
    other = CalibrationSet.from_paths(calib.paths[:2], (SIZE + 32, SIZE + 32), False, 2)
    with pytest.raises(Yolo4Error, match="input is"):
        quantize_qdq(fp32, tmp_path / "c.onnx", other, log=lambda m: None)
    assert not (tmp_path / "a.onnx").exists() and not (tmp_path / "c.onnx").exists()


def _val_yaml(shared_data, folder, images):
    """A dataset YAML whose train and val splits are ``images`` (coco128 files, COCO's names)."""
    names = [ln.strip() for ln in open(shared_data / "darknet" / "coco.names") if ln.strip()]
    val = folder / "val.txt"
    val.write_text("\n".join(images) + "\n")
    yaml = folder / "val.yaml"
    yaml.write_text("path: %s\ntrain: %s\nval: %s\nnames: %r\n" % (shared_data / "coco128", val, val, names))
    return yaml


def test_sensitivity_search_returns_layers_until_target(fp32, calib, tmp_path, shared_data):
    """Target 0 AP on 8 held-out images: the search ranks every INT8 layer and returns the most
    harmful one (max_steps=1); a generous target stops at once with nothing returned."""
    yaml = _val_yaml(shared_data, tmp_path, _coco128(shared_data)[-8:])
    evaluate = onnx_evaluator(str(yaml))
    rep = sensitivity_search(fp32, tmp_path / "s.onnx", calib, str(yaml), evaluate, target_drop=100.0,
                             method="minmax", log=lambda m: None)
    assert rep.met and rep.layers == [] and rep.returned() == []
    rep = sensitivity_search(fp32, tmp_path / "s.onnx", calib, str(yaml), evaluate, target_drop=0.0,
                             method="minmax", probe_images=2, max_steps=1, log=lambda m: None)
    assert len(rep.layers) == len(rep.result.quantized) + 1
    harms = [layer.harm for layer in rep.layers]
    assert harms == sorted(harms, reverse=True) and harms[0] > 0
    assert rep.returned() == [rep.layers[0].node] and rep.layers[0].node not in rep.result.quantized
    assert rep.layers[0].drop_after == pytest.approx(rep.drop)
    md = rep.markdown()
    assert rep.layers[0].node in md and "| float |" in md


@pytest.mark.slow
def test_int8_within_one_ap_of_fp32_on_held_out_coco128(tiny, shared_data, tmp_path):
    """The acceptance figure: calibrate on the first 64 coco128 images (sorted), evaluate on the other
    64 at 416; the default Q/DQ INT8 model loses at most 1.0 AP (mAP@[.5:.95] x 100)."""
    imgs = _coco128(shared_data)
    names = [ln.strip() for ln in open(shared_data / "darknet" / "coco.names") if ln.strip()]
    val = tmp_path / "val.txt"
    val.write_text("\n".join(imgs[64:]) + "\n")
    yaml = tmp_path / "val.yaml"
    yaml.write_text("path: %s\ntrain: %s\nval: %s\nnames: %r\n" % (shared_data / "coco128", val, val, names))
    fp32 = tmp_path / "fp32.onnx"
    export_onnx(tiny, fp32, img_size=416, log=lambda m: None)
    res = quantize_qdq(fp32, tmp_path / "int8.onnx", CalibrationSet.from_paths(imgs[:64], (416, 416), False, 8),
                       log=lambda m: None)
    maps = [run_eval(str(yaml), open_backend(onnx=str(p), log=lambda m: None), progress=False,
                     log=lambda m: None)["map50_95"] for p in (fp32, res.path)]
    assert maps[0] > 0.25
    assert 100 * (maps[0] - maps[1]) <= 1.0, maps


def test_cli_export_int8_errors(tmp_path, shared_data):
    out = tmp_path / "m.onnx"
    assert_usage_error(run_cli("export", "--cfg", "yolov4-tiny", "--weights", "yolov4-tiny", "-o", out, "--int8"),
                       "--calib-data")
    assert_usage_error(run_cli("export", "--cfg", "yolov4-tiny", "-o", out, "--int8", "--fp16",
                               "--calib-data", "coco128"), "--fp16")
    assert_usage_error(run_cli("export", "--cfg", "yolov4-tiny", "-o", out, "--int8", "--calib-data",
                               "coco128", "--calib-method", "median"), "--calib-method")
    assert_usage_error(run_cli("export", "--cfg", "yolov4-tiny", "-o", out, "--int8", "--calib-data",
                               "coco128", "--int8-target", "cpu"), "--int8-target")
    assert_user_error(run_cli("export", "--cfg", "yolov4-tiny", "--weights", "yolov4-tiny", "-o", out,
                              "--img-size", SIZE, "--int8", "--calib-data", tmp_path / "nothing-here"),
                      "nothing-here")
    assert not out.exists() and not list(tmp_path.glob(".m.onnx*"))


def test_cli_export_int8_writes_qdq_and_compares(tmp_path, shared_data):
    out = tmp_path / "m-int8.onnx"
    p = run_cli("export", "--cfg", "yolov4-tiny", "--weights", "yolov4-tiny", "-o", out, "--img-size", SIZE,
                "--int8", "--calib-data", "coco128", "--calib-images", 8, "--calib-method", "minmax",
                "--int8-exclude", "12")
    assert p.returncode == 0, p.stderr
    assert "fewer than 200" in p.stderr
    assert "INT8 vs FP32 on dog.jpg" in p.stdout and "detections matched" in p.stdout
    meta = {m.key: m.value for m in onnx.load(str(out)).metadata_props}
    assert meta["precision"] == "int8" and "/layers.12/conv/Conv" in meta["int8_float_nodes"]
    assert [f.name for f in tmp_path.iterdir()] == [out.name]
    p = run_cli("eval", "--data", "coco128", "--onnx", out, "--batch", 16)
    assert p.returncode == 0 and "mAP@[.5:.95]" in p.stdout, p.stderr


def test_cli_export_int8_target_drop_measures_with_the_pipelines_eval(tmp_path, shared_data):
    """``--int8-target-drop``: the pipeline hands its ONNX Runtime eval to the search (calib never
    imports the pipeline); a generous target is met at once and the report is written."""
    out = tmp_path / "m-int8.onnx"
    yaml = _val_yaml(shared_data, tmp_path, _coco128(shared_data)[-4:])
    p = run_cli("export", "--cfg", "yolov4-tiny", "--weights", "yolov4-tiny", "-o", out, "--img-size", SIZE,
                "--int8", "--calib-data", "coco128", "--calib-images", 4, "--int8-target-drop", 100,
                "--int8-val-data", yaml)
    assert p.returncode == 0, p.stderr
    report = (tmp_path / "m-int8-int8-report.md").read_text()
    assert report.startswith("# INT8 sensitivity report") and "target 100.00: met" in report, report
    fp32_map = float(report.split("FP32 mAP@[.5:.95] ")[1].split(";")[0])
    assert fp32_map > 0  # measured, by the pipeline's evaluator
    assert "sensitivity report:" in p.stdout + p.stderr


@pytest.mark.parametrize("flag", ["--int8-target", "--qdq-layout"])
def test_cli_export_int8_target_onnxruntime_sets_the_layout(tmp_path, shared_data, flag):
    """`--int8-target onnxruntime` (old name `--qdq-layout`) writes the U8S8 layout ONNX Runtime fuses."""
    out = tmp_path / "m-int8-ort.onnx"
    p = run_cli("export", "--cfg", "yolov4-tiny", "--weights", "yolov4-tiny", "-o", out, "--img-size", SIZE,
                "--int8", "--calib-data", "coco128", "--calib-images", 4, flag, "onnxruntime")
    assert p.returncode == 0, p.stderr
    model = onnx.load(str(out))
    meta = {m.key: m.value for m in model.metadata_props}
    assert meta["qdq_layout"] == "onnxruntime"
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    act = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    assert act and all(z.dtype == np.uint8 for z in act)  # U8 activations, not the tensorrt target's INT8
