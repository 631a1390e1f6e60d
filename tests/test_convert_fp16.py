"""FP16 export: float16 weights/compute, float32 graph I/O, YOLO decode kept float32, outputs close
to torch. Plus the Cast clean-up passes on hand-built graphs."""

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxconverter_common")

from yolo4.convert import export_onnx, reference_input  # noqa: E402
from yolo4.convert.fp16 import float32_outputs, remove_cast_round_trips  # noqa: E402
from yolo4.convert.graph import decode_nodes, op_counts  # noqa: E402
from yolo4.model_info import ModelInfo  # noqa: E402

HW = (416, 416)


@pytest.fixture(scope="module")
def tiny_fp16(tiny, tmp_path_factory):
    return export_onnx(tiny, tmp_path_factory.mktemp("fp16") / "tiny-fp16.onnx", img_size=416, fp16=True)


@pytest.mark.shared
def test_fp16_types(tiny_fp16):
    model = onnx.load(str(tiny_fp16.path))
    onnx.checker.check_model(model, full_check=True)
    for v in list(model.graph.input) + list(model.graph.output):
        assert v.type.tensor_type.elem_type == TensorProto.FLOAT, v.name
    inits = {t.name: t for t in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) == 21
    for n in convs:  # every conv weight and bias is float16, and so is its compute
        for name in n.input[1:]:
            assert inits[name].data_type == TensorProto.FLOAT16, name
    fp16_bytes = sum(numpy_helper.to_array(t).nbytes for t in inits.values() if t.data_type == TensorProto.FLOAT16)
    fp32_bytes = sum(numpy_helper.to_array(t).nbytes for t in inits.values() if t.data_type == TensorProto.FLOAT)
    assert 11e6 < fp16_bytes < 13e6  # 6.06 M parameters x 2 bytes
    assert fp32_bytes < 1000  # only the decode's anchor constants stay float32
    # the decode after the head convs runs in float32: Exp/Sigmoid never see float16 tensors
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    for n in inferred.graph.node:
        if n.op_type in ("Exp", "Sigmoid"):
            assert types[n.input[0]] == TensorProto.FLOAT, n.name
    assert op_counts(model)["Cast"] <= 8  # casts only at the fp16/fp32 borders
    meta = ModelInfo.from_metadata({p.key: p.value for p in model.metadata_props})
    assert meta.input_hw == HW and len(meta.names) == 80
    assert tiny_fp16.fp16 and tiny_fp16.verify.passed


@pytest.mark.shared
def test_fp16_outputs_close_to_torch(tiny, tiny_fp16):
    """Tolerance: boxes 1e-2 x box scale (~5 px at 416), scores 0.02 absolute. Measured on dog.jpg:
    ~0.25 px and ~2.5e-3 (float16 weights: 11 significant bits)."""
    sess = onnxruntime.InferenceSession(str(tiny_fp16.path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x, _ = reference_input(HW, batch)
        boxes, scores = sess.run(["boxes", "scores"], {"images": x})
        assert boxes.dtype == np.float32 and scores.dtype == np.float32
        assert np.isfinite(boxes).all() and np.isfinite(scores).all()
        with torch.no_grad():
            ref_boxes, ref_scores = (t.numpy() for t in tiny(torch.from_numpy(x)))
        box_diff = float(np.abs(boxes - ref_boxes).max())
        score_diff = float(np.abs(scores - ref_scores).max())
        assert box_diff <= 1e-2 * float(np.abs(ref_boxes).max()), box_diff
        assert score_diff < 0.02, score_diff
        # the confident detections keep their class and score
        top = ref_scores.reshape(batch, -1).argmax(1)
        np.testing.assert_allclose(scores.reshape(batch, -1)[np.arange(batch), top],
                                   ref_scores.reshape(batch, -1)[np.arange(batch), top], atol=0.01)


@pytest.mark.shared
def test_fp16_dynamic_batch_kept(tiny_fp16):
    model = onnx.load(str(tiny_fp16.path))
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def _value(name, dtype=TensorProto.FLOAT, shape=(4,)):
    return helper.make_tensor_value_info(name, dtype, list(shape))


def test_cast_round_trip_removal():
    """x -> Cast16 -> Cast32 -> Exp is bypassed (Exp reads x); a real fp16 consumer keeps its Cast."""
    nodes = [
        helper.make_node("Cast", ["x"], ["x16"], to=TensorProto.FLOAT16, name="c16"),
        helper.make_node("Cast", ["x16"], ["x32"], to=TensorProto.FLOAT, name="c32"),
        helper.make_node("Exp", ["x32"], ["e"], name="exp"),
        helper.make_node("Neg", ["x16"], ["n16"], name="neg16"),
        helper.make_node("Cast", ["n16"], ["n"], to=TensorProto.FLOAT, name="n32"),
    ]
    g = helper.make_graph(nodes, "g", [_value("x")], [_value("e"), _value("n")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    x = np.array([10.0001, -3.3, 0.1, 11.5], np.float32)

    def run(m):
        so = onnxruntime.SessionOptions()
        so.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
        return onnxruntime.InferenceSession(m.SerializeToString(), so,
                                            providers=["CPUExecutionProvider"]).run(None, {"x": x})

    e_before, _ = run(model)
    assert remove_cast_round_trips(model) == 1
    onnx.checker.check_model(model, full_check=True)
    names = [n.name for n in model.graph.node]
    assert "c32" not in names and "c16" in names  # c16 still feeds the float16 Neg
    e_after, _ = run(model)
    np.testing.assert_allclose(e_after, np.exp(x.astype(np.float64)), rtol=1e-6)  # exact input now
    assert np.abs(e_before / np.exp(x.astype(np.float64)) - 1).max() > 1e-4  # was fp16-rounded before
    neg = next(n for n in model.graph.node if n.name == "neg16")
    assert list(neg.input) == ["x16"]  # the float16 branch is untouched (ORT itself may fold its
    # Cast pair at run time, so its values are not compared)


def test_float32_outputs_adds_final_cast():
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="relu")]
    g = helper.make_graph(nodes, "g", [_value("x", TensorProto.FLOAT16)], [_value("y", TensorProto.FLOAT16)])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    assert float32_outputs(model, ["y"]) == 1
    onnx.checker.check_model(model, full_check=True)
    assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    out = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": np.array([-1, 2, 3, 4], np.float16)})[0]
    assert out.dtype == np.float32 and out.tolist() == [0, 2, 3, 4]


def test_decode_nodes_stop_at_convolutions():
    w = numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c1"], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r"], name="relu"),           # feeds conv2: backbone
        helper.make_node("Conv", ["r", "w"], ["c2"], name="conv2"),
        helper.make_node("Sigmoid", ["c2"], ["s"], name="sig"),         # after the last conv: decode
        helper.make_node("Exp", ["c1"], ["e"], name="exp"),             # branch off conv1, no conv after
        helper.make_node("Add", ["s", "e"], ["y"], name="add"),
    ]
    g = helper.make_graph(nodes, "g", [_value("x", shape=(1, 1, 2, 2))], [_value("y", shape=(1, 1, 2, 2))],
                          initializer=[w])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    assert decode_nodes(model) == ["sig", "exp", "add"]


@pytest.mark.shared
def test_fp16_decode_does_not_overflow(tiny, tmp_path):
    """True float16 arithmetic (ONNX's numpy reference evaluator, which does not fold Casts as ONNX
    Runtime's CPU provider may) on a model whose box logits are pushed to t_w ~ 11.5: exp(t_w) x
    anchor overflows float16 (max 65504) but not float32. The exported FP16 model, whose decode
    stays float32, keeps every box finite and close to torch; converting the decode too would not."""
    import copy

    from onnx.reference import ReferenceEvaluator

    from yolo4.convert.fp16 import convert_to_fp16

    m = copy.deepcopy(tiny)
    conv = m.head_convs()[0].conv
    with torch.no_grad():
        conv.bias[2] += 11.5  # t_w of anchor 0 of the first [yolo] layer (channel a*(5+C) + 2)
    hw = (64, 64)
    x, _ = reference_input(hw, 1)
    with torch.no_grad():
        ref_boxes, ref_scores = (t.numpy() for t in m(torch.from_numpy(x)))
    assert np.abs(ref_boxes).max() > 65504 and np.isfinite(ref_boxes).all()
    res = export_onnx(m, tmp_path / "big.onnx", img_size=hw, fp16=True, verify=False)
    boxes, scores = ReferenceEvaluator(str(res.path)).run(None, {"images": x})
    assert boxes.dtype == np.float32 and np.isfinite(boxes).all()
    assert np.abs(boxes - ref_boxes).max() <= 1e-2 * np.abs(ref_boxes).max()
    assert np.abs(scores - ref_scores).max() < 0.02
    # the same model with the decode in float16 too: the wide boxes become infinite
    fp32 = export_onnx(m, tmp_path / "big32.onnx", img_size=hw, verify=False)
    all16 = convert_to_fp16(onnx.load(str(fp32.path)), keep_decode_fp32=False)
    with np.errstate(over="ignore", invalid="ignore"):
        boxes16, _ = ReferenceEvaluator(all16).run(None, {"images": x})
    assert not np.isfinite(boxes16).all()
