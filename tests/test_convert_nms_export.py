"""``yolo4 export --nms plugin|efficient|trt``: the appended nodes and their attributes, output names,
shapes and dtypes, metadata; every mode run on ONNX Runtime against the numpy reference (synthetic
decoded graphs with clustered boxes, then the real yolov4-tiny on darknet's sample images); the
Detector, infer and eval on NMS-ended files; CLI errors."""

import json
import shutil
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.conftest import assert_usage_error, assert_user_error, run_cli
from yolo4.convert.nms_export import (
    EFFICIENT_NMS_VERSION,
    PLUGIN_DOMAIN,
    TRT_TOPK_MAX,
    append_nms,
    export_nms,
    graph_params,
)
from yolo4.convert.verify import ExportVerificationError
from yolo4.errors import ModelFileError, Yolo4Error, Yolo4Warning
from yolo4.model_info import ModelInfo
from yolo4.nms_params import (
    EFFICIENT_NMS_MAX_CANDIDATES,
    NMS_OUTPUT_NAMES,
    PLUGIN_NAMESPACE,
    PLUGIN_OP,
    PLUGIN_VERSION,
    NmsParams,
)
from yolo4.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend, nms_node_params
from yolo4.runtime.detector import Detector, reference_nms_outputs

pytest.importorskip("onnxruntime")

HW = (64, 64)
MODES = ("plugin", "efficient", "trt")


def _synthetic_onnx(path, boxes, scores, batch="batch", opset=17):
    """A decoded yolo4-like graph without weights: per image m = mean(images); boxes = B + m * J
    (J: fixed jitter, so images differ), scores = m * S. Outputs [batch, N, 4] and [batch, N, C]."""
    n, c = scores.shape
    jitter = np.random.default_rng(0).normal(0, 2, (1, n, 4)).astype(np.float32)
    inits = [onnx.numpy_helper.from_array(np.asarray(boxes, np.float32)[None], "B"),
             onnx.numpy_helper.from_array(jitter, "J"),
             onnx.numpy_helper.from_array(np.asarray(scores, np.float32)[None], "S")]
    if opset >= 18:  # ReduceMean's axes: an attribute up to opset 17, an input from 18
        mean = helper.make_node("ReduceMean", ["images", "axes"], ["m4"], keepdims=1)
        inits.append(onnx.numpy_helper.from_array(np.array([1, 2, 3], np.int64), "axes"))
    else:
        mean = helper.make_node("ReduceMean", ["images"], ["m4"], axes=[1, 2, 3], keepdims=1)
    nodes = [mean, helper.make_node("Reshape", ["m4", "shape3"], ["m"]),  # [B,1,1]
             helper.make_node("Mul", ["m", "J"], ["mj"]),
             helper.make_node("Add", ["mj", "B"], ["boxes"]),
             helper.make_node("Mul", ["m", "S"], ["scores"])]
    inits.append(onnx.numpy_helper.from_array(np.array([0, 1, 1], np.int64), "shape3"))
    graph = helper.make_graph(nodes, "synthetic", [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                                                                 [batch, 3, *HW])],
                              [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [batch, n, 4]),
                               helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, n, c])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    info = ModelInfo(names=[f"c{i}" for i in range(c)], input_hw=HW, nms_kind="greedynms", beta_nms=0.6)
    helper.set_model_props(model, info.to_metadata())
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def _clustered(seed, n=300, c=4):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 48, (n, 2))
    wh = rng.uniform(3, 24, (n, 2))
    boxes = np.concatenate([xy, xy + wh], 1)
    boxes[n // 2:] = boxes[:n - n // 2] + rng.normal(0, 1.5, (n - n // 2, 4))
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 0.5)
    return boxes.astype(np.float32), (rng.uniform(0, 1, (n, c)) ** 2).astype(np.float32)


def _inputs(b=3):
    """Image 0 all ones (m = 1), image 1 grey .6, image 2 black (m = 0: no detection at all)."""
    x = np.ones((b, 3, *HW), np.float32)
    x[1] *= 0.6
    x[2] = 0
    return x


def _attrs(node):
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def _dims(vi):
    return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]


def _same(got, want):
    return all(len(g) == len(w) and np.array_equal(g.boxes, w.boxes) and np.array_equal(g.scores, w.scores)
               and np.array_equal(g.class_ids, w.class_ids) for g, w in zip(got, want)) and len(got) == len(want)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    d = tmp_path_factory.mktemp("nms-synthetic")
    return _synthetic_onnx(d / "raw.onnx", *_clustered(0))


# ------------------------------------------------------------------------------ nodes and metadata

def test_plugin_node_and_attributes(synthetic):
    model = onnx.load(str(synthetic))
    p = NmsParams(score_threshold=0.05, iou_threshold=0.5, nms_kind="diounms", beta_nms=0.8, max_output_boxes=50,
                  top_k=1000, class_agnostic=True)
    done = append_nms(model, "plugin", p)
    assert done == p
    (node,) = [n for n in model.graph.node if n.op_type == PLUGIN_OP]
    assert node.domain == PLUGIN_DOMAIN == "trt.plugins" and list(node.input) == ["boxes", "scores"]
    assert tuple(node.output) == NMS_OUTPUT_NAMES
    attrs = _attrs(node)
    want = dict(p.plugin_attributes(HW), plugin_version=PLUGIN_VERSION, plugin_namespace=PLUGIN_NAMESPACE)
    assert set(attrs) == set(want)
    for k, v in want.items():  # floats are float32 attributes; ints int; strings str
        assert attrs[k] == (pytest.approx(v, rel=1e-7) if isinstance(v, float) else v), k
        assert type(attrs[k]) is type(v), k
    assert attrs["nms_kind"] == 2 and attrs["class_agnostic"] == 1 and (attrs["input_height"], attrs["input_width"]) == HW
    assert {o.domain: o.version for o in model.opset_import}[PLUGIN_DOMAIN] == 1
    _check_outputs(model, "batch", 50)
    meta = {m.key: m.value for m in model.metadata_props}
    assert meta["nms"] == "plugin" and NmsParams(**json.loads(meta["nms_params"])) == p
    assert ModelInfo.from_metadata(meta).input_hw == HW  # the model's own keys still read
    onnx.checker.check_model(model)
    assert nms_node_params(PLUGIN_OP, attrs) == (p, HW, -1)  # what ONNX Runtime reads back: the same struct


def _check_outputs(model, batch, k):
    outs = {o.name: o for o in model.graph.output}
    assert tuple(outs) == NMS_OUTPUT_NAMES
    assert [(_dims(outs[n]), outs[n].type.tensor_type.elem_type) for n in NMS_OUTPUT_NAMES] == [
        ([batch, 1], TensorProto.INT32), ([batch, k, 4], TensorProto.FLOAT), ([batch, k], TensorProto.FLOAT),
        ([batch, k], TensorProto.INT32)]


def test_efficient_node_and_attributes(synthetic):
    model = onnx.load(str(synthetic))
    p = NmsParams(score_threshold=0.3, iou_threshold=0.6, max_output_boxes=100)  # greedynms: not EfficientNMS's
    done = append_nms(model, "efficient", p)
    assert done.nms_kind == "default" and done.top_k == EFFICIENT_NMS_MAX_CANDIDATES == 4096
    (node,) = [n for n in model.graph.node if n.op_type == "EfficientNMS_TRT"]
    assert node.domain == PLUGIN_DOMAIN
    attrs = _attrs(node)
    assert attrs == {"score_threshold": pytest.approx(0.3), "iou_threshold": pytest.approx(0.6),
                     "max_output_boxes": 100, "background_class": -1, "score_activation": 0, "class_agnostic": 0,
                     "box_coding": 0, "plugin_version": EFFICIENT_NMS_VERSION}
    _check_outputs(model, "batch", 100)
    assert json.loads({m.key: m.value for m in model.metadata_props}["nms_params"])["nms_kind"] == "default"
    params, hw, pad = nms_node_params("EfficientNMS_TRT", attrs)
    assert params == done and hw is None and pad == 0


def test_trt_graph_is_standard_onnx(synthetic):
    model = onnx.load(str(synthetic))
    done = append_nms(model, "trt", NmsParams(max_output_boxes=20))
    assert done.nms_kind == "default"
    ops = {n.op_type for n in model.graph.node}
    assert {"NonMaxSuppression", "TopK", "GatherND"} <= ops and PLUGIN_OP not in ops
    assert all(n.domain == "" for n in model.graph.node) and [o.domain for o in model.opset_import] == [""]
    (nms,) = [n for n in model.graph.node if n.op_type == "NonMaxSuppression"]
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    assert inits[nms.input[2]].tolist() == [20] and inits[nms.input[3]].tolist() == pytest.approx([0.45])
    assert inits[nms.input[4]].tolist() == pytest.approx([0.25]) and _attrs(nms)["center_point_box"] == 0
    _check_outputs(model, "batch", 20)
    onnx.checker.check_model(model, full_check=True)


def test_fixed_batch_and_opsets(tmp_path):
    """A fixed batch stays fixed in the outputs; ReduceSum/ReduceMax change signature at opsets 13/18."""
    boxes, scores = _clustered(1, n=60, c=3)
    for opset in (12, 17, 18):
        path = _synthetic_onnx(tmp_path / f"b3-{opset}.onnx", boxes, scores, batch=3, opset=opset)
        for mode in MODES:
            out = tmp_path / f"{mode}-{opset}.onnx"
            res = export_nms(path, out, mode, NmsParams(score_threshold=0.05, max_output_boxes=30,
                                                        class_agnostic=(opset == 18)))
            assert res.matched == res.images == 3, (mode, opset)
            _check_outputs(onnx.load(str(out)), 3, 30)


# ---------------------------------------------------------------------------------- ONNX Runtime

CASES = [(mode, NmsParams(score_threshold=0.02, iou_threshold=iou, nms_kind=kind, class_agnostic=agn,
                          max_output_boxes=k))
         for mode in MODES for kind, iou, agn, k in (("greedynms", 0.45, False, 300), ("diounms", 0.3, True, 40),
                                                    ("default", 0.6, False, 7))]


@pytest.mark.parametrize("mode,params", CASES, ids=[f"{m}-{p.nms_kind}-{p.class_agnostic}-{p.max_output_boxes}"
                                                    for m, p in CASES])
def test_every_mode_on_onnxruntime_equals_the_reference(synthetic, tmp_path, mode, params):
    """ORT on the NMS-ended file == the decoded file + the numpy reference with the graph's parameters
    (plugin: the model's DIoU kind; efficient / trt: IoU), to the bit, for every output."""
    out = tmp_path / f"{mode}.onnx"
    res = export_nms(synthetic, out, mode, params)
    assert res.nodes >= 1 and res.checked
    done = graph_params(mode, params)
    x = _inputs()
    with OnnxRuntimeBackend(synthetic) as raw, OnnxRuntimeBackend(out) as be:
        assert be.nms == mode and be.nms_params == done
        assert be.nms_impl == ("onnxruntime" if mode == "trt" else "onnxruntime-extensions")
        got = be(x)
        boxes, scores = raw(x)
    want = reference_nms_outputs(boxes, scores, done, input_hw=HW if mode == "plugin" else None,
                                 pad_class=0 if mode == "efficient" else -1)  # EfficientNMS pads class 0
    num = got[0][:, 0].tolist()
    assert num[2] == 0 and 0 < num[1] and (num[0] == 7 if params.max_output_boxes == 7 else num[0] > 7)
    for g, w, name in zip(got, want, NMS_OUTPUT_NAMES):
        assert g.dtype == w.dtype and g.shape == w.shape, name
        assert np.array_equal(g, w), name


def test_split_fallback_equals_the_custom_op(synthetic, tmp_path):
    """Without onnxruntime-extensions the graph is cut at the plugin node and the reference runs after
    it on the node's attributes: the same outputs."""
    x = _inputs()
    for mode in ("plugin", "efficient"):
        out = export_nms(synthetic, tmp_path / f"{mode}.onnx", mode, NmsParams(score_threshold=0.1)).path
        with OnnxRuntimeBackend(out, nms_ops="extensions") as a, OnnxRuntimeBackend(out, nms_ops="split") as b:
            assert b.nms == mode and b.nms_impl == "numpy reference after the graph"
            for u, v in zip(a(x), b(x)):
                assert np.array_equal(u, v)
    with pytest.raises(ValueError, match="nms_ops"):
        OnnxRuntimeBackend(out, nms_ops="tensorrt")


def test_thresholds_are_strict_on_every_mode(tmp_path):
    """Score exactly 0.25 with --conf 0.25 is out, IoU exactly 0.5 with --iou 0.5 does not suppress
    (darknet's > ; ONNX NonMaxSuppression's too). EfficientNMS_TRT compares >= on TensorRT; its ONNX
    Runtime stand-in is the reference."""
    boxes = np.array([[0, 0, 20, 10], [0, 0, 10, 10], [40, 40, 50, 50]], np.float32)  # IoU(0, 1) = 0.5
    scores = np.array([[0.9], [0.8], [0.25]], np.float32)
    path = _synthetic_onnx(tmp_path / "exact.onnx", boxes, scores)
    x = np.ones((1, 3, *HW), np.float32)  # m = 1: boxes and scores exactly as given
    for mode in MODES:
        out = export_nms(path, tmp_path / f"{mode}.onnx", mode,
                         NmsParams(score_threshold=0.25, iou_threshold=0.5)).path
        with OnnxRuntimeBackend(out) as be:
            num, b, s, c = be(x)
        assert num.tolist() == [[2]] and s[0, :2].tolist() == pytest.approx([0.9, 0.8]), mode


def test_detector_on_nms_models_and_the_eval_warning(synthetic, tmp_path):
    out = export_nms(synthetic, tmp_path / "plugin.onnx", "plugin", NmsParams(score_threshold=0.1)).path
    imgs = [np.full((48, 80, 3), v, np.uint8) for v in (255, 150, 0)]
    with OnnxRuntimeBackend(synthetic) as raw, OnnxRuntimeBackend(out) as be:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for conf in (0.1, 0.4):  # the baked threshold, and a higher one applied after the graph
                got = Detector(be, score_threshold=conf, max_output_boxes=25).detect(imgs)
                want = Detector(raw, score_threshold=conf, max_output_boxes=25).detect(imgs)
                assert _same(got, want) and sum(map(len, got)) > 20
        with pytest.warns(Yolo4Warning, match="cannot apply score threshold 0.001") as rec:
            Detector(be, score_threshold=0.001, iou_threshold=0.45)
        assert len(rec) == 1 and "export with --nms none or --conf 0.001" in str(rec[0].message)


def test_nms_export_errors(synthetic, tmp_path):
    model = onnx.load(str(synthetic))
    append_nms(model, "trt", NmsParams())
    with pytest.raises(Yolo4Error, match="already ends with NMS"):
        append_nms(model, "plugin", NmsParams())
    with pytest.raises(Yolo4Error, match="TopK"):
        append_nms(onnx.load(str(synthetic)), "trt", NmsParams(max_output_boxes=TRT_TOPK_MAX))
    with pytest.raises(Yolo4Error, match="--nms must be one of"):
        append_nms(onnx.load(str(synthetic)), "batched", NmsParams())
    with pytest.raises(ValueError, match="score_activation=1"):
        nms_node_params("EfficientNMS_TRT", {"score_threshold": 0.1, "iou_threshold": 0.5, "max_output_boxes": 5,
                                             "score_activation": 1})
    with pytest.raises(ValueError, match="lacks attribute 'beta_nms'"):
        nms_node_params(PLUGIN_OP, {"score_threshold": 0.1, "iou_threshold": 0.5, "nms_kind": 1})


def test_export_nms_writes_nothing_on_a_failed_check(synthetic, tmp_path, monkeypatch):
    import yolo4.convert.nms_export as ne

    monkeypatch.setattr(ne, "_check_on_ort", lambda *a: ("onnxruntime-extensions", 1, 2))
    out = tmp_path / "bad.onnx"
    with pytest.raises(ExportVerificationError, match="differs from the numpy reference on 1 of 2"):
        export_nms(synthetic, out, "plugin", NmsParams())
    assert not out.exists() and not list(tmp_path.glob("*.tmp"))
    logged = []
    export_nms(synthetic, out, "trt", NmsParams(), log=logged.append)  # ORT's own NMS: a warning only
    assert out.exists() and logged[0].startswith("warning: --nms trt on ONNX Runtime")


def test_plugin_model_needs_extensions_or_split(synthetic, tmp_path, monkeypatch):
    import sys

    out = export_nms(synthetic, tmp_path / "p.onnx", "plugin", NmsParams()).path
    monkeypatch.setitem(sys.modules, "onnxruntime_extensions", None)  # not installed
    with OnnxRuntimeBackend(out) as be:  # auto: falls back to the split graph
        assert be.nms_impl == "numpy reference after the graph"
    with pytest.raises(ModelFileError, match="pip install onnxruntime-extensions"):
        OnnxRuntimeBackend(out, nms_ops="extensions")


# ---------------------------------------------------------------------- the real yolov4-tiny

@pytest.fixture(scope="module")
def tiny_files(tiny, tmp_path_factory):
    """yolov4-tiny at 416: decoded ONNX, and NMS-ended copies (default parameters, and conf 0.005)."""
    from yolo4.convert import export_onnx

    d = tmp_path_factory.mktemp("nms-tiny")
    raw = export_onnx(tiny, d / "none.onnx", img_size=416).path
    info = tiny.model_info()
    files = {"none": raw}
    for mode in MODES:
        files[mode] = export_nms(raw, d / f"{mode}.onnx", mode, NmsParams.for_model(info)).path
    for mode in ("plugin", "trt"):
        files[mode + "-low"] = export_nms(raw, d / f"{mode}-low.onnx", mode,
                                          NmsParams.for_model(info, score_threshold=0.005)).path
    return files


@pytest.fixture(scope="module")
def sample_images(shared_data):
    from yolo4.data.images import imread

    paths = sorted((shared_data / "darknet" / "images").glob("*.jpg"))
    assert len(paths) >= 3
    return [imread(p) for p in paths]


@pytest.mark.shared
@pytest.mark.parametrize("conf", [0.25, 0.005])
def test_tiny_plugin_onnx_equals_none_plus_reference(tiny_files, sample_images, conf):
    """The --nms plugin file on ONNX Runtime (DIoUNMS_TRT as a Python op) gives exactly the detections of
    the --nms none file + darknet's DIoU-NMS in numpy, boxes in original-image pixels."""
    plugin = tiny_files["plugin" if conf == 0.25 else "plugin-low"]
    with OnnxRuntimeBackend(tiny_files["none"]) as raw, OnnxRuntimeBackend(plugin) as be:
        assert be.nms_params.nms_kind == "greedynms"
        want = Detector(raw, score_threshold=conf).detect(sample_images)
        for bs in (1, 8):
            got = Detector(be, score_threshold=conf, batch_size=bs).detect(sample_images)
            assert _same(got, want)
    assert sum(map(len, want)) > (10 if conf == 0.25 else 50)


@pytest.mark.shared
@pytest.mark.parametrize("mode,conf", [("trt", 0.25), ("trt", 0.005), ("efficient", 0.25)])
def test_tiny_iou_modes_equal_the_iou_reference(tiny_files, sample_images, mode, conf):
    """--nms trt (ONNX Runtime's NonMaxSuppression) and --nms efficient match the plain-IoU reference."""
    path = tiny_files[mode if conf == 0.25 else mode + "-low"]
    with OnnxRuntimeBackend(tiny_files["none"]) as raw, OnnxRuntimeBackend(path) as be:
        want = Detector(raw, score_threshold=conf, nms_kind="default",
                        top_k=4096 if mode == "efficient" else 30000).detect(sample_images)
        got = Detector(be, score_threshold=conf).detect(sample_images)
    assert _same(got, want)


@pytest.mark.shared
def test_cli_export_nms_then_infer_and_eval(tiny_files, tmp_path, shared_data):
    """yolo4 export --nms plugin (subprocess), then infer --onnx gives the --nms none file's JSON, and
    eval (conf 0.001) warns in one line that the baked threshold 0.25 is above it."""
    cfg, weights = shared_data / "darknet/cfg/yolov4-tiny.cfg", shared_data / "weights/yolov4-tiny.weights"
    out = tmp_path / "tiny-nms.onnx"
    p = run_cli("export", "--cfg", cfg, "--weights", weights, "-o", out, "--nms", "plugin", "--iou", "0.45")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "NMS in graph: plugin (DIoUNMS_TRT, greedynms, score > 0.25" in p.stdout and "NMS: plugin" in p.stdout
    dog = shared_data / "darknet/images/dog.jpg"
    res = {}
    for name, model in (("nms", out), ("none", tiny_files["none"])):
        js = tmp_path / f"{name}.json"
        p = run_cli("infer", dog, "--onnx", model, "--no-save", "--save-json", js)
        assert p.returncode == 0 and "warning" not in p.stderr, p.stdout + p.stderr
        res[name] = json.loads(js.read_text())[0]["detections"]
    assert res["nms"] == res["none"] and len(res["nms"]) >= 3
    p = run_cli("eval", "--data", "coco128", "--onnx", out, "--batch", "16")
    assert p.returncode == 0, p.stdout + p.stderr
    warn = [ln for ln in p.stderr.splitlines() if ln.startswith("warning:") and "NMS in its graph" in ln]
    assert len(warn) == 1 and "score threshold 0.001" in warn[0], p.stderr


def test_cli_nms_option_errors(tmp_path):
    p = run_cli("export", "--cfg", "yolov4-tiny", "-o", tmp_path / "x.onnx", "--nms", "batched")
    assert_usage_error(p, "--nms", "plugin")
    p = run_cli("export", "--cfg", "yolov4-tiny", "-o", tmp_path / "x.onnx", "--conf", "0.1")
    assert_usage_error(p, "--conf", "--nms plugin|efficient|trt")
    p = run_cli("export", "--cfg", "yolov4-tiny", "-o", tmp_path / "x.onnx", "--nms", "trt", "--iou", "1.5")
    assert_usage_error(p, "--iou")
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.shared
def test_cli_nms_trt_max_det_limit(tmp_path, shared_data):
    cfg = shared_data / "darknet/cfg/yolov4-tiny.cfg"
    p = run_cli("export", "--cfg", cfg, "-o", tmp_path / "x.onnx", "--nms", "trt", "--max-det", "4000")
    assert_user_error(p, "--max-det 4000", "TopK")
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.shared
def test_cli_int8_with_nms(tmp_path, shared_data):
    """--int8 --nms plugin: the Q/DQ model, then the NMS node (checked on ONNX Runtime) on it."""
    cfg, weights = shared_data / "darknet/cfg/yolov4-tiny.cfg", shared_data / "weights/yolov4-tiny.weights"
    out = tmp_path / "int8-nms.onnx"
    p = run_cli("export", "--cfg", cfg, "--weights", weights, "-o", out, "--img-size", "320", "--int8",
                "--calib-data", shared_data / "darknet/images", "--calib-images", "3", "--nms", "plugin")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "NMS in graph: plugin" in p.stdout and "Q/DQ INT8" in p.stdout
    model = onnx.load(str(out))
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" in ops and ops[-1] == PLUGIN_OP
    with OnnxRuntimeBackend(out) as be:
        assert be.nms == "plugin" and be.info.input_hw == (320, 320)
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob("*.fp32.onnx"))


def test_synthetic_copy_is_not_touched(synthetic, tmp_path):
    """export_nms(src, output) leaves src alone; in place (src == output) it replaces it."""
    copy = shutil.copy(synthetic, tmp_path / "c.onnx")
    export_nms(copy, tmp_path / "n.onnx", "trt", NmsParams())
    assert [o.name for o in onnx.load(str(copy)).graph.output] == ["boxes", "scores"]
    export_nms(copy, copy, "trt", NmsParams())
    assert tuple(o.name for o in onnx.load(str(copy)).graph.output) == NMS_OUTPUT_NAMES
