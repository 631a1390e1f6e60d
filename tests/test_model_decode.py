"""Box decoding against a loop transcription of darknet's yolo_layer.c, and ONNX tracing."""

import math
import warnings

import numpy as np
import pytest
import torch

from yolo4.model import load_darknet


def _sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v))


def darknet_decode(raw, anchors, classes, scale_x_y, new_coords, net_w, net_h):
    """Transcription of darknet forward_yolo_layer (activations, scal_add) + get_yolo_box +
    get_yolo_detections for one batch item: returns [(x1, y1, x2, y2, obj*cls...)] in input pixels,
    order anchor n, row j, col i (darknet's entry order)."""
    A = len(anchors)
    _, lh, lw = raw.shape
    out = []
    for n in range(A):
        for j in range(lh):
            for i in range(lw):
                e = [float(v) for v in raw[n * (classes + 5):(n + 1) * (classes + 5), j, i]]
                if not new_coords:
                    e[0], e[1] = _sigmoid(e[0]), _sigmoid(e[1])
                    e[4:] = [_sigmoid(v) for v in e[4:]]
                e[0] = e[0] * scale_x_y - 0.5 * (scale_x_y - 1)
                e[1] = e[1] * scale_x_y - 0.5 * (scale_x_y - 1)
                bx = (i + e[0]) / lw
                by = (j + e[1]) / lh
                if new_coords:
                    bw = e[2] * e[2] * 4 * anchors[n][0] / net_w
                    bh = e[3] * e[3] * 4 * anchors[n][1] / net_h
                else:
                    bw = math.exp(e[2]) * anchors[n][0] / net_w
                    bh = math.exp(e[3]) * anchors[n][1] / net_h
                cx, cy, w, h = bx * net_w, by * net_h, bw * net_w, bh * net_h
                out.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2] + [e[4] * p for p in e[5:]])
    return np.array(out)


@pytest.mark.parametrize("name,hw", [("yolov4-tiny", (224, 288)), ("yolov4-csp", (160, 96))])
def test_decode_matches_darknet_formulas(shared_data, name, hw):
    cfg = shared_data / "darknet" / "cfg" / (name + ".cfg")
    model = load_darknet(cfg, num_classes=2)  # random weights, small heads for the python loops
    torch.manual_seed(0)
    with torch.no_grad():
        for blk in model.head_convs():  # spread the head outputs so every branch of the decode matters
            blk.conv.weight.normal_(0, 0.05)
        x = torch.rand(2, 3, *hw)
        heads = model(x, raw=True)
        boxes, scores = model(x)
    N = sum(yl.num_anchors * (hw[0] // yl.stride) * (hw[1] // yl.stride) for yl in model.yolo_layers)
    assert boxes.shape == (2, N, 4) and scores.shape == (2, N, 2)
    for b in range(2):
        ref = np.concatenate([
            darknet_decode(h[b].numpy(), yl.anchors, yl.num_classes, yl.scale_x_y, yl.new_coords, hw[1], hw[0])
            for h, yl in zip(heads, model.yolo_layers)])
        np.testing.assert_allclose(boxes[b].numpy(), ref[:, :4], rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(scores[b].numpy(), ref[:, 4:], rtol=1e-5, atol=1e-6)
    assert any(yl.new_coords for yl in model.yolo_layers) == (name == "yolov4-csp")


def test_onnx_export_dynamic_batch(shared_data, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = load_darknet(shared_data / "darknet" / "cfg" / "yolov4-tiny.cfg",
                         shared_data / "weights" / "yolov4-tiny.weights")
    path = tmp_path / "tiny.onnx"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.onnx.export(model, torch.rand(1, 3, 320, 416), str(path), dynamo=False, opset_version=12,
                          input_names=["images"], output_names=["boxes", "scores"],
                          dynamic_axes={"images": {0: "batch"}, "boxes": {0: "batch"}, "scores": {0: "batch"}})
    tracer = [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)]
    assert not tracer, [str(w.message) for w in tracer]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = torch.rand(batch, 3, 320, 416)
        b, s = sess.run(None, {"images": x.numpy()})
        with torch.no_grad():
            tb, ts = model(x)
        assert b.shape == (batch, 3 * (10 * 13 + 20 * 26), 4) and s.shape == (batch, b.shape[1], 80)
        assert np.abs(b - tb.numpy()).max() < 1e-4 * np.abs(tb.numpy()).max()
        assert np.abs(s - ts.numpy()).max() < 1e-4


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_maxpool_darknet_padding_export(shared_data, tmp_path):
    """yolov3-tiny's [maxpool] size=2 stride=1 keeps 13x13 (darknet pads one -inf cell right/bottom);
    the SPP pools of yolov4 (size 5/9/13, stride 1) keep the size too; both export and run in ORT."""
    ort = pytest.importorskip("onnxruntime")
    from yolo4.model.layers import MaxPoolDarknet

    model = load_darknet(shared_data / "darknet" / "cfg" / "yolov3-tiny.cfg")
    pool = model.layers[11]
    assert isinstance(pool, MaxPoolDarknet) and (pool.size, pool.stride) == (2, 1)
    x = torch.randn(2, 4, 13, 13)
    y = pool(x)
    padded = torch.nn.functional.pad(x, (0, 1, 0, 1), value=float("-inf"))
    ref = torch.max(torch.max(padded[..., :-1, :-1], padded[..., 1:, :-1]),
                    torch.max(padded[..., :-1, 1:], padded[..., 1:, 1:]))
    assert torch.equal(y, ref)
    path = tmp_path / "v3tiny.onnx"
    torch.onnx.export(model, torch.rand(1, 3, 416, 416), str(path), dynamo=False, opset_version=13,
                      input_names=["images"], dynamic_axes={"images": {0: "batch"}})
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.rand(2, 3, 416, 416)
    b, s = sess.run(None, {"images": x.numpy()})
    with torch.no_grad():
        tb, ts = model(x)
    assert np.abs(s - ts.numpy()).max() < 1e-4
