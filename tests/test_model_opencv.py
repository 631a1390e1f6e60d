"""The torch model against OpenCV's independent darknet importer (cv2.dnn.readNetFromDarknet).

Batch-norm epsilon: AlexeyAB darknet (the YOLOv4 reference) normalizes with sqrt(var + 1e-5)
(src/blas.c normalize_cpu, src/network.c fuse_conv_batchnorm), which our model uses; OpenCV's importer
sets eps=1e-6 (darknet_io.cpp, after pjreddie's darknet). To compare layer arithmetic exactly, the
OpenCV comparisons set our BN eps to OpenCV's; the remaining difference of the darknet-eps model is
checked separately to be eps-sized.
"""

import re

import numpy as np
import pytest
import torch

cv2 = pytest.importorskip("cv2")

from yolo4.model import Darknet, load_darknet, save_darknet_weights  # noqa: E402
from yolo4.model.weights import random_weights  # noqa: E402

COCO_DOG, COCO_TRUCK, COCO_BICYCLE = 16, 7, 1


def _blob(shared_data, size):
    img = cv2.imread(str(shared_data / "darknet" / "images" / "dog.jpg"))
    assert img is not None
    return cv2.dnn.blobFromImage(img, 1 / 255.0, (size, size), swapRB=True, crop=False)


def _opencv_heads(cfg, weights, blob):
    """Raw inputs of every [yolo] in OpenCV's net: the layer feeding the permute before each yolo_N."""
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    if hasattr(net, "enableWinograd"):
        net.enableWinograd(False)  # exact fp32 convolutions
    names = list(net.getLayerNames())
    yolos = [n for n in names if n.startswith("yolo_")]
    assert sorted(yolos) == sorted(net.getUnconnectedOutLayersNames())
    feeds = []
    for y in yolos:
        perm = names[names.index(y) - 1]
        assert perm.startswith("permute_"), names[names.index(y) - 3:names.index(y) + 1]
        feeds.append(names[names.index(y) - 2])  # conv_N (linear head) or logistic_N (new_coords heads)
    net.setInput(blob)
    return feeds, net.forward(feeds)


def _set_bn_eps(model, eps):
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eps = eps


def test_yolov4_tiny_real_weights_vs_opencv(shared_data):
    cfg = shared_data / "darknet" / "cfg" / "yolov4-tiny.cfg"
    weights = shared_data / "weights" / "yolov4-tiny.weights"
    blob = _blob(shared_data, 416)
    feeds, ref = _opencv_heads(cfg, weights, blob)
    assert feeds == ["conv_29", "conv_36"]
    model = load_darknet(cfg, weights)
    with torch.no_grad():
        ours_darknet_eps = [t.numpy() for t in model(torch.from_numpy(blob), raw=True)]
        _set_bn_eps(model, 1e-6)
        ours = [t.numpy() for t in model(torch.from_numpy(blob), raw=True)]
    for r, o, od in zip(ref, ours, ours_darknet_eps):
        assert r.shape == o.shape
        assert np.abs(r - o).max() < 1e-4, np.abs(r - o).max()
        # darknet's eps moves the heads by an eps-sized amount only (< 0.1 % of the head's range)
        assert np.abs(r - od).max() < 1e-3 * np.abs(r).max()


def test_yolov4_tiny_dog_detections(shared_data):
    """README reference figures: dog 0.87, truck 0.82, bicycle 0.61 (416 plain resize, conf 0.25)."""
    model = load_darknet(shared_data / "darknet" / "cfg" / "yolov4-tiny.cfg",
                         shared_data / "weights" / "yolov4-tiny.weights")
    blob = _blob(shared_data, 416)
    with torch.no_grad():
        boxes, scores = model(torch.from_numpy(blob))
    assert boxes.shape == (1, 3 * (13 * 13 + 26 * 26), 4) and scores.shape == (1, 2535, 80)
    s = scores[0].numpy()
    best = s.max(0)
    top3 = np.argsort(-best)[:3]
    assert set(top3.tolist()) == {COCO_DOG, COCO_TRUCK, COCO_BICYCLE}
    assert best[COCO_DOG] == pytest.approx(0.87, abs=0.01)
    assert best[COCO_TRUCK] == pytest.approx(0.82, abs=0.01)
    assert best[COCO_BICYCLE] == pytest.approx(0.61, abs=0.01)
    # the boxes are where the objects are in dog.jpg (768x576 resized to 416x416)
    b = boxes[0].numpy()
    dog = b[s[:, COCO_DOG].argmax()] * [768 / 416, 576 / 416, 768 / 416, 576 / 416]
    truck = b[s[:, COCO_TRUCK].argmax()] * [768 / 416, 576 / 416, 768 / 416, 576 / 416]
    assert 100 < dog[0] < 180 and 190 < dog[1] < 260 and 280 < dog[2] < 360 and 500 < dog[3] < 576
    assert 430 < truck[0] < 500 and 50 < truck[1] < 120 and 640 < truck[2] < 720 and 140 < truck[3] < 200


@pytest.mark.parametrize("name", [
    "yolov4-tiny-3l",
    "yolov3",
    "yolov4",
    "yolov4-csp",
    pytest.param("yolov4x-mish", marks=pytest.mark.slow),  # ~20 s on 2 cores
])
def test_random_weights_vs_opencv(shared_data, tmp_path, name):
    size = 160
    text = (shared_data / "darknet" / "cfg" / (name + ".cfg")).read_text()
    text = re.sub(r"(?m)^width\s*=.*$", f"width={size}", text, count=1)
    text = re.sub(r"(?m)^height\s*=.*$", f"height={size}", text, count=1)
    cfg = tmp_path / (name + ".cfg")
    cfg.write_text(text)
    blob = _blob(shared_data, size)
    gen = Darknet(cfg, init=False)
    random_weights(gen, torch.from_numpy(blob))
    weights = save_darknet_weights(gen, tmp_path / (name + ".weights"))
    del gen
    feeds, ref = _opencv_heads(cfg, weights, blob)
    model = load_darknet(cfg, weights)
    _set_bn_eps(model, 1e-6)
    flipped = np.ascontiguousarray(blob[:, :, ::-1, :])
    with torch.no_grad():
        ours = [t.numpy() for t in model(torch.from_numpy(blob), raw=True)]
        other = [t.numpy() for t in model(torch.from_numpy(flipped), raw=True)]
    assert len(ref) == len(ours) == len(model.yolo_layers)
    for r, o, f, yl in zip(ref, ours, other, model.yolo_layers):
        assert o.shape == r.shape == (1, 255, size // yl.stride, size // yl.stride)
        scale = np.abs(r).max()
        rel = np.abs(r - o).max() / scale
        assert rel < 1e-3, (name, feeds, rel)
        # the comparison is meaningful: the heads vary and depend on the input
        assert r.std() > 0.05 * scale and np.abs(f - o).max() > 0.1 * scale
