"""Mish export modes: opset 17 -> Softplus/Tanh/Mul, opset 18 -> native ONNX Mish; both match torch.

yolov4 (Mish backbone, exp box decode, scale_x_y) with seeded random weights at 128x128 keeps it fast;
the weights are re-drawn so activations stay O(1) through the 110 convolutions (the default init
leaves the heads at their bias priors, which would make the comparison vacuous).
"""

import math

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

onnxruntime = pytest.importorskip("onnxruntime")

from yolo4.convert import export_onnx, reference_input  # noqa: E402
from yolo4.convert.graph import fuse_mish, has_mish_decomposition, op_counts  # noqa: E402

HW = (128, 128)


@pytest.fixture(scope="module")
def yolov4(shared_data):
    from yolo4.model import load_darknet

    m = load_darknet(shared_data / "darknet" / "cfg" / "yolov4.cfg")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.Conv2d):
                mod.weight.normal_(0.0, 1.0 / math.sqrt(mod.weight[0].numel()), generator=g)
                if mod.bias is not None:
                    mod.bias.normal_(0.0, 0.5, generator=g)
            elif isinstance(mod, torch.nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5, generator=g)
                mod.bias.normal_(0.0, 0.2, generator=g)
                mod.running_mean.normal_(0.0, 0.1, generator=g)
                mod.running_var.uniform_(0.5, 2.0, generator=g)
    return m


@pytest.fixture(scope="module")
def reference(yolov4):
    """(input [2,3,128,128], torch boxes, torch scores), computed once for both opsets."""
    x, _ = reference_input(HW, 2)
    with torch.no_grad():
        boxes, scores = (t.numpy() for t in yolov4(torch.from_numpy(x)))
    assert scores.max() > 0.3 and scores.std() > 0.05  # the comparison is not vacuous
    return x, boxes, scores


@pytest.mark.shared
@pytest.mark.parametrize("opset", [17, 18])
def test_mish_mode_by_opset(yolov4, reference, tmp_path, opset):
    n_mish = sum(1 for s in yolov4.sections if s.options.get("activation") == "mish")
    assert n_mish == 72  # yolov4.cfg: the CSPDarknet53 backbone
    # verify=False: the comparison with torch is done below, by the test itself
    res = export_onnx(yolov4, tmp_path / f"yolov4-{opset}.onnx", img_size=HW, opset=opset, verify=False)
    model = onnx.load(str(res.path))
    counts = op_counts(model)
    assert res.opset == opset
    assert [i.version for i in model.opset_import if i.domain in ("", "ai.onnx")] == [opset]
    if opset == 17:
        assert res.mish_mode == "decomposed"
        assert "Mish" not in counts
        assert counts["Softplus"] == n_mish and counts["Tanh"] == n_mish
        assert has_mish_decomposition(model)
    else:
        assert res.mish_mode == "native"
        assert counts["Mish"] == n_mish
        assert "Softplus" not in counts and "Tanh" not in counts
    assert model.ir_version <= 8  # TensorRT 8.5's parser (ONNX 1.12) reads IR <= 8
    x, ref_boxes, ref_scores = reference
    sess = onnxruntime.InferenceSession(str(res.path), providers=["CPUExecutionProvider"])
    boxes, scores = sess.run(["boxes", "scores"], {"images": x})
    assert float(np.abs(boxes - ref_boxes).max()) <= 1e-4 * float(np.abs(ref_boxes).max())
    assert float(np.abs(scores - ref_scores).max()) <= 1e-4 * float(np.abs(ref_scores).max())


def test_fuse_mish_on_a_hand_built_graph():
    """fuse_mish fuses x*tanh(softplus(x)) in either Mul operand order, and leaves a chain whose
    Tanh output is used elsewhere alone; ORT gives the same numbers before and after."""
    nodes = [
        helper.make_node("Softplus", ["x"], ["sp"]), helper.make_node("Tanh", ["sp"], ["th"]),
        helper.make_node("Mul", ["th", "x"], ["m1"]),                      # operand order swapped
        helper.make_node("Softplus", ["m1"], ["sp2"]), helper.make_node("Tanh", ["sp2"], ["th2"]),
        helper.make_node("Mul", ["m1", "th2"], ["m2"]),
        helper.make_node("Softplus", ["m2"], ["sp3"]), helper.make_node("Tanh", ["sp3"], ["th3"]),
        helper.make_node("Mul", ["m2", "th3"], ["m3"]),
        helper.make_node("Add", ["m3", "th3"], ["y"]),                     # th3 used twice: no fusion
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    x = np.linspace(-30, 30, 64, dtype=np.float32)
    run = lambda m: onnxruntime.InferenceSession(  # noqa: E731
        m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    before = run(model)
    assert fuse_mish(model) == 2
    onnx.checker.check_model(model, full_check=True)
    c = op_counts(model)
    assert c["Mish"] == 2 and c["Softplus"] == 1 and c["Tanh"] == 1
    np.testing.assert_allclose(run(model), before, rtol=1e-5, atol=1e-6)
    mish = lambda v: v * np.tanh(np.log1p(np.exp(v)))  # noqa: E731
    m3 = mish(mish(mish(x.astype(np.float64))))
    np.testing.assert_allclose(before, m3 + np.tanh(np.log1p(np.exp(mish(mish(x.astype(np.float64)))))),
                               rtol=1e-5, atol=1e-5)
    low = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    with pytest.raises(ValueError, match="opset"):
        fuse_mish(low)
