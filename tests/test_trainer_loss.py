"""Trainer: darknet anchor assignment, ignore rule, IoU family, loss gradients, overfitting."""

import dataclasses
import math
import os

import numpy as np
import pytest
import torch

from yolo4.model.cfg import YoloSpec, build_specs, parse_cfg_text
from yolo4.trainer.assign import assign, assign_layer, wh_iou
from yolo4.trainer.loss import YoloLoss, bbox_iou, decode_layer

torch.set_num_threads(2)
# GNU OpenMP's thread pool does not survive a fork: a process forked from one that has run these tests
# (mutmut's workers, scripts/mutation.sh) would wait forever at its first parallel op; single-threaded there
os.register_at_fork(after_in_child=lambda: torch.set_num_threads(1))

# yolov4-tiny.cfg: anchors shared by both [yolo]; masks 3,4,5 (stride 32) and 1,2,3 (stride 16)
TINY_ANCHORS = [(10, 14), (23, 27), (37, 58), (81, 82), (135, 169), (344, 319)]
# yolov4.cfg: 9 anchors, masks 0,1,2 (stride 8), 3,4,5 (16), 6,7,8 (32), iou_thresh=0.213
V4_ANCHORS = [(12, 16), (19, 36), (40, 28), (36, 75), (76, 55), (72, 146), (142, 110), (192, 243), (459, 401)]


def yolo_specs(anchors, heads, classes, **options):
    """The :class:`YoloSpec` s a darknet cfg makes: a cfg with one ``[yolo]`` per ``(mask, stride)`` of
    ``heads`` (``[maxpool]`` s down to the stride, ``[route]`` back, a 1x1 conv), each with ``anchors``,
    ``classes`` and the ``[yolo]`` ``options`` (``iou_loss="ciou"``, ``ignore_thresh=0.7``, ...)."""
    lines = ["[net]", "width=256", "height=256", "channels=3"]
    at_stride, n, stride = {}, 0, 1
    while stride < max(s for _, s in heads):
        lines += ["[maxpool]", "size=2", "stride=2"]
        stride *= 2
        at_stride[stride] = n
        n += 1
    anchor_text = ", ".join(f"{w},{h}" for w, h in anchors)
    for mask, s in heads:
        lines += ["[route]", f"layers={at_stride[s]}",
                  "[convolutional]", f"filters={len(mask) * (classes + 5)}", "size=1", "activation=linear",
                  "[yolo]", "mask=" + ",".join(map(str, mask)), f"anchors={anchor_text}", f"classes={classes}",
                  f"num={len(anchors)}"] + [f"{k}={v}" for k, v in options.items()]
    _, layers = build_specs(parse_cfg_text("\n".join(lines) + "\n"))
    specs = [ly for ly in layers if isinstance(ly, YoloSpec)]
    assert [(sp.mask, sp.stride) for sp in specs] == [(list(m), s) for m, s in heads]
    return specs


def tiny_specs(num_classes=2, **kw):
    options = dict(scale_x_y=1.0, iou_loss="ciou", iou_normalizer=0.07, ignore_thresh=0.7)
    options.update(kw)
    return yolo_specs(TINY_ANCHORS, [([3, 4, 5], 32), ([1, 2, 3], 16)], num_classes, **options)


def v4_specs(iou_thresh=0.213):
    return yolo_specs(V4_ANCHORS, [([0, 1, 2], 8), ([3, 4, 5], 16), ([6, 7, 8], 32)], 3, iou_thresh=iou_thresh)


def pairs(lt):
    return sorted(zip(lt.t.tolist(), lt.b.tolist(), lt.a.tolist(), lt.gj.tolist(), lt.gi.tolist()))


def test_wh_iou_is_centred_box_iou():
    # (0,0,4,2) vs (0,0,2,4): intersection 2x2=4, union 8+8-4=12
    got = wh_iou(torch.tensor([[4.0, 2.0]]), torch.tensor([[2.0, 4.0], [4.0, 2.0]]))
    assert torch.allclose(got, torch.tensor([[4 / 12, 1.0]]))


def test_truth_matching_one_anchor_lands_in_its_layer_cell_and_slot():
    specs = tiny_specs()
    # image 0: a 130x165 box centred at (100, 40) best matches anchor 4 (135,169): layer 0 (mask 3,4,5),
    # slot 1, cell (floor(40/32), floor(100/32)) = (1, 3). image 1: a 22x26 box at (70, 150) best matches
    # anchor 1 (23,27): layer 1 (mask 1,2,3), slot 0, cell (floor(150/16), floor(70/16)) = (9, 4).
    targets = torch.tensor([[0, 1, 100.0, 40.0, 130.0, 165.0],
                            [1, 0, 70.0, 150.0, 22.0, 26.0]])
    l0, l1 = assign(targets, specs, [(5, 5), (10, 10)])
    assert pairs(l0) == [(0, 0, 1, 1, 3)]
    assert pairs(l1) == [(1, 1, 0, 9, 4)]


def test_anchor_shared_by_two_masks_and_unused_anchor():
    specs = tiny_specs()
    # 80x80 best matches anchor 3 (81,82), in both masks: layer 0 slot 0 and layer 1 slot 2.
    # 10x14 best matches anchor 0, in no mask: no positive anywhere (darknet yolov4-tiny behaviour).
    targets = torch.tensor([[0, 0, 50.0, 70.0, 80.0, 80.0],
                            [0, 1, 20.0, 20.0, 10.0, 14.0]])
    l0, l1 = assign(targets, specs, [(5, 5), (10, 10)])
    assert pairs(l0) == [(0, 0, 0, 2, 1)]
    assert pairs(l1) == [(0, 0, 2, 4, 3)]


def test_iou_thresh_assigns_every_anchor_above_threshold():
    # truth 40x40; centred IoU with the yolov4 anchors (hand-computed):
    #   (12,16) 192/1600=.12  (19,36) 684/1600=.4275  (40,28) 1120/1600=.70 (best)
    #   (36,75) 1440/2860=.503  (76,55) 1600/4180=.383  (72,146) 1600/10512=.152  larger ones < .05
    targets = torch.tensor([[0, 2, 100.0, 60.0, 40.0, 40.0]])
    grids = [(32, 32), (16, 16), (8, 8)]
    l8, l16, l32 = assign(targets, v4_specs(0.213), grids)
    assert sorted(l8.a.tolist()) == [1, 2]          # anchors 1 (.43) and 2 (best)
    assert sorted(l16.a.tolist()) == [0, 1]         # anchors 3 (.50) and 4 (.38); 5 (.15) is below
    assert l32.a.numel() == 0
    assert set(l8.gj.tolist()) == {60 // 8} and set(l8.gi.tolist()) == {100 // 8}
    assert set(l16.gj.tolist()) == {60 // 16} and set(l16.gi.tolist()) == {100 // 16}
    # iou_thresh=1 (the default, yolov4-tiny): only the best anchor
    l8, l16, l32 = assign(targets, v4_specs(1.0), grids)
    assert l8.a.tolist() == [2] and l16.a.numel() == 0 and l32.a.numel() == 0


def test_cell_of_a_truth_on_the_right_edge_is_clamped():
    spec = tiny_specs()[0]
    lt = assign_layer(torch.tensor([[0, 0, 160.0, 160.0, 130.0, 165.0]]), spec, (5, 5))
    assert lt.gi.tolist() == [4] and lt.gj.tolist() == [4]


def test_ciou_of_identical_boxes_is_one():
    b = torch.tensor([[10.0, 20.0, 30.0, 40.0], [5.0, 5.0, 1.0, 3.0]])
    for kind in ("iou", "giou", "diou", "ciou"):
        assert torch.allclose(bbox_iou(b, b, kind), torch.ones(2), atol=1e-6), kind


def test_iou_family_on_hand_computed_boxes():
    a = torch.tensor([0.0, 0.0, 2.0, 2.0])
    # shifted by 1 along x, same shape: inter 1x2=2, union 6 -> IoU 1/3; enclosing 3x2 -> c^2=13, d^2=1;
    # GIoU = 1/3 - (6-6)/6; equal aspect ratios -> v = 0 -> CIoU = DIoU
    b = torch.tensor([1.0, 0.0, 2.0, 2.0])
    assert bbox_iou(a, b, "iou").item() == pytest.approx(1 / 3, abs=1e-6)
    assert bbox_iou(a, b, "giou").item() == pytest.approx(1 / 3, abs=1e-6)
    assert bbox_iou(a, b, "diou").item() == pytest.approx(1 / 3 - 1 / 13, abs=1e-6)
    assert bbox_iou(a, b, "ciou").item() == pytest.approx(1 / 3 - 1 / 13, abs=1e-6)
    # same centre, 2x2 vs 4x2: IoU 4/8; d = 0; v = 4/pi^2 (atan(4/2) - atan(2/2))^2, alpha = v/(1-IoU+v)
    c = torch.tensor([0.0, 0.0, 4.0, 2.0])
    v = 4 / math.pi ** 2 * (math.atan(2.0) - math.atan(1.0)) ** 2
    alpha = v / (0.5 + v)
    assert bbox_iou(a, c, "ciou").item() == pytest.approx(0.5 - alpha * v, abs=1e-6)
    # disjoint boxes: IoU 0; GIoU = -(enclosing - union)/enclosing; (0,0,2,2) vs (4,0,2,2): C = 6x2=12, U=8
    d = torch.tensor([4.0, 0.0, 2.0, 2.0])
    assert bbox_iou(a, d, "iou").item() == pytest.approx(0.0, abs=1e-6)
    assert bbox_iou(a, d, "giou").item() == pytest.approx(-4 / 12, abs=1e-6)


def _logit(p):
    return math.log(p / (1 - p))


def test_ignore_rule_and_objectness_gradients():
    """A non-responsible prediction that already covers a truth (IoU > ignore_thresh) gets no
    objectness gradient; other negatives get d/dlogit = sigmoid(logit) / B (darknet delta 0 - p);
    the responsible one gets sigmoid - 1 < 0."""
    spec = tiny_specs(num_classes=1)[1]                # stride 16, mask 1,2,3 -> anchors 23x27, 37x58, 81x82
    B, A, C, H, W = 1, 3, 1, 4, 4
    raw = torch.zeros(B, A * (5 + C), H, W)
    # truth 37x58 centred on cell (2, 2)'s centre (40, 40): responsible = slot 1 (anchor 37x58)
    targets = torch.tensor([[0, 0, 40.0, 40.0, 37.0, 58.0]])
    # slot 0 at the same cell predicts exactly the truth: sigmoid(0)=.5 -> centre 40; w = 23 e^tw = 37
    raw[0, 0 * 6 + 2, 2, 2] = math.log(37 / 23)
    raw[0, 0 * 6 + 3, 2, 2] = math.log(58 / 27)
    raw = raw.requires_grad_(True)
    loss, items = YoloLoss([spec])([raw], targets)
    loss.backward()
    g = raw.grad.view(B, A, 6, H, W)[0, :, 4]          # objectness gradients [A, H, W]
    assert g[0, 2, 2].item() == 0.0                    # ignored
    assert g[1, 2, 2].item() == pytest.approx(0.5 - 1.0, abs=1e-6)   # positive: sigmoid(0) - 1
    assert g[2, 0, 0].item() == pytest.approx(0.5, abs=1e-6)         # plain negative: sigmoid(0) - 0
    assert items["positives"] == 1
    # without the ignore rule (threshold 1) the same prediction is pushed down like any negative
    spec_no_ignore = dataclasses.replace(spec, ignore_thresh=1.0)
    raw2 = raw.detach().clone().requires_grad_(True)
    YoloLoss([spec_no_ignore])([raw2], targets)[0].backward()
    assert raw2.grad.view(B, A, 6, H, W)[0, 0, 4, 2, 2].item() == pytest.approx(0.5, abs=1e-6)


def test_class_and_box_terms_at_the_positive():
    spec = tiny_specs(num_classes=3)[1]
    raw = torch.zeros(1, 3 * 8, 4, 4)
    raw[0, 1 * 8 + 5 + 2, 2, 2] = _logit(0.9)          # slot 1 says class 2 with p=.9
    targets = torch.tensor([[0, 2, 40.0, 40.0, 37.0, 58.0]])
    raw.requires_grad_(True)
    loss, items = YoloLoss([spec])([raw], targets)
    # class BCE at the positive: -log(.9) for class 2 and -log(1-.5) for classes 0 and 1
    assert items["cls"] == pytest.approx(-math.log(0.9) - 2 * math.log(0.5), rel=1e-5)
    # predicted box = anchor 37x58 at the cell centre = the truth -> CIoU 1 -> box loss 0
    assert items["box"] == pytest.approx(0.0, abs=1e-5)


def test_decode_matches_the_model(shared_data):
    from yolo4.model import load_darknet

    model = load_darknet(shared_data / "darknet/cfg/yolov4-tiny.cfg", num_classes=3)
    x = torch.rand(1, 3, 128, 160)
    with torch.no_grad():
        raw = model(x, raw=True)
        boxes, scores = model(x)
    specs = [yl.spec for yl in model.yolo_layers]
    assert [s.mask for s in specs] == [[3, 4, 5], [1, 2, 3]] and [s.stride for s in specs] == [32, 16]
    assert specs[0].iou_loss == "ciou" and specs[0].scale_x_y == pytest.approx(1.05)
    mine = []
    for r, s in zip(raw, specs):
        xy, wh, _, obj, cls = decode_layer(r, s)
        b = torch.cat((xy - wh / 2, xy + wh / 2), -1).reshape(1, -1, 4)
        mine.append((b, (torch.sigmoid(obj)[..., None] * torch.sigmoid(cls)).reshape(1, -1, 3)))
    assert torch.allclose(torch.cat([m[0] for m in mine], 1), boxes, atol=1e-4)
    assert torch.allclose(torch.cat([m[1] for m in mine], 1), scores, atol=1e-6)


def _coco128_records(root, stems):
    from yolo4.data.images import imread
    from yolo4.data.records import ImageRecord

    recs = []
    for stem in stems:
        path = root / "coco128/images/train2017" / (stem + ".jpg")
        h, w = imread(path).shape[:2]
        lab = np.loadtxt(root / "coco128/labels/train2017" / (stem + ".txt"), ndmin=2)
        cx, cy, bw, bh = lab[:, 1] * w, lab[:, 2] * h, lab[:, 3] * w, lab[:, 4] * h
        boxes = np.stack((cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2), 1).astype(np.float32)
        recs.append(ImageRecord(str(path), w, h, boxes, lab[:, 0].astype(np.int64), len(recs)))
    return recs


def _sgd_losses(model, loss_fn, x, targets, steps=20):
    """``steps`` SGD steps (lr 0.00261, momentum 0.9, decay 5e-4) on one batch: the loss of each step;
    every step must find positives."""
    from yolo4.trainer.train import param_groups

    opt = torch.optim.SGD(param_groups(model, 5e-4), lr=2.61e-3, momentum=0.9)
    losses = []
    for _ in range(steps):
        loss, items = loss_fn(model(x, raw=True), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(items["loss"])
        assert items["positives"] > 0
    return losses


def test_loss_decreases_overfitting_two_images(shared_data):
    from yolo4.model import load_darknet
    from yolo4.trainer.dataset import YoloDataset, collate

    torch.manual_seed(0)
    recs = _coco128_records(shared_data, ["000000000009", "000000000025"])
    model = load_darknet(shared_data / "darknet/cfg/yolov4-tiny.cfg",
                         shared_data / "weights/yolov4-tiny.weights", num_classes=80).train()
    images, targets, _ = collate([YoloDataset(recs, (128, 128), False)[i] for i in range(2)])
    assert targets.shape[0] == sum(len(r.boxes) for r in recs)
    x = images.float() / 255
    loss_fn = YoloLoss([yl.spec for yl in model.yolo_layers])
    losses = _sgd_losses(model, loss_fn, x, targets)
    assert all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-3:]) < 0.2 * losses[0], losses


def test_new_coords_model_trains_on_two_images(shared_data, tmp_path):
    """yolov4-tiny made scaled-YOLOv4 style (``activation=logistic`` before each ``[yolo]``,
    ``new_coords=1``, ``objectness_smooth=1``, ``scale_x_y=2``): the squared objectness / class terms
    and darknet's smoothed objectness targets still fit two images (20 SGD steps)."""
    import re

    from yolo4.model import load_darknet
    from yolo4.trainer.dataset import YoloDataset, collate

    text = (shared_data / "darknet/cfg/yolov4-tiny.cfg").read_text()
    text, n = re.subn(r"activation=linear\n+\[yolo\]\n",
                      "activation=logistic\n\n[yolo]\nnew_coords=1\nobjectness_smooth=1\n", text)
    assert n == 2
    (tmp_path / "nc.cfg").write_text(text.replace("scale_x_y = 1.05", "scale_x_y = 2.0"))
    torch.manual_seed(0)
    recs = _coco128_records(shared_data, ["000000000009", "000000000025"])
    model = load_darknet(tmp_path / "nc.cfg", shared_data / "weights/yolov4-tiny.weights", num_classes=80).train()
    loss_fn = YoloLoss([yl.spec for yl in model.yolo_layers])
    assert {(s.new_coords, s.objectness_smooth) for s in loss_fn.specs} == {(1, 1)}
    images, targets, _ = collate([YoloDataset(recs, (128, 128), False)[i] for i in range(2)])
    x = images.float() / 255
    losses = _sgd_losses(model, loss_fn, x, targets)
    assert all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-3:]) < 0.65 * losses[0], losses


def _one_positive(iou_loss, box_grad, tx=0.3):
    spec = yolo_specs(TINY_ANCHORS, [([1, 2, 3], 16)], 1, iou_loss=iou_loss, iou_normalizer=0.5,
                      ignore_thresh=1.0)[0]
    raw = torch.zeros(1, 18, 4, 4)
    raw[0, 6 + 0, 2, 2] = tx                           # slot 1, raw x
    raw.requires_grad_(True)
    # truth 37x58 (slot 1's anchor) centred at x = (2 + 0.75) * 16 = 44, y = 40
    targets = torch.tensor([[0, 0, 44.0, 40.0, 37.0, 58.0]])
    YoloLoss([spec], box_grad=box_grad)([raw], targets)[0].backward()
    return raw.grad[0, 6 + 0, 2, 2].item(), spec


def test_darknet_box_gradient_skips_the_decode_derivative():
    # plain IoU: darknet's dx_box_iou x term is the exact derivative (box_grad.py), so the two differ by
    # the decode's derivative alone
    g_dk, spec = _one_positive("iou", "darknet")
    g_chain, _ = _one_positive("iou", "chain")
    assert g_dk < 0                                    # pushes x towards the truth (to the right)
    sig = 1 / (1 + math.exp(-0.3))
    # chain rule: d x_norm / d tx = sigmoid'(tx) * scale_x_y / W (W = 4 cells); darknet uses 1
    assert g_chain / g_dk == pytest.approx(sig * (1 - sig) * 1.0 / 4, rel=1e-4)


def test_darknet_mse_box_delta():
    # darknet delta_yolo_box (MSE): delta_x = scale * (tx - x) * iou_normalizer with x = sigmoid(0) = .5,
    # tx = .75, scale = 2 - w*h (normalized): the loss gradient is -delta
    g, spec = _one_positive("mse", "darknet", tx=0.0)
    scale = 2 - (37 / 64) * (58 / 64)
    assert g == pytest.approx(-scale * (0.75 - 0.5) * 0.5, rel=1e-5)


# --- each [yolo] loss key has a test that fails without it ------------------------------------------

def _box_kinds_reference(a, b):
    """numpy port of darknet box.c (value form; DIoU as the paper / dx_box_iou): a, b = (cx, cy, w, h)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    al, ar, at, ab = a[0] - a[2] / 2, a[0] + a[2] / 2, a[1] - a[3] / 2, a[1] + a[3] / 2
    bl, br, bt, bb = b[0] - b[2] / 2, b[0] + b[2] / 2, b[1] - b[3] / 2, b[1] + b[3] / 2
    inter = max(0.0, min(ar, br) - max(al, bl)) * max(0.0, min(ab, bb) - max(at, bt))
    union = a[2] * a[3] + b[2] * b[3] - inter
    iou = inter / union
    cw, ch = max(ar, br) - min(al, bl), max(ab, bb) - min(at, bt)
    giou = iou - (cw * ch - union) / (cw * ch)
    d = ((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2) / (cw ** 2 + ch ** 2)
    v = 4 / math.pi ** 2 * (math.atan(b[2] / b[3]) - math.atan(a[2] / a[3])) ** 2
    alpha = v / (1 - iou + v + 1e-6)
    return {"iou": iou, "giou": giou, "diou": iou - d, "ciou": iou - d - alpha * v}


# one 1-class layer, stride 16, 4x4 cells, mask 1,2,3 (anchors 23x27, 37x58, 81x82). Truth 50x40 at
# (44, 36): best anchor 37x58 (centred IoU 1480/2666) -> slot 1, cell (2, 2). All-zero outputs predict
# slot 1's anchor at the cell centre: (40, 40, 37, 58) (sigmoid(0) = .5 for any scale_x_y).
KIND_TRUTH = [44.0, 36.0, 50.0, 40.0]
KIND_PRED = [40.0, 40.0, 37.0, 58.0]


def _kind_spec(**kw):
    options = dict(iou_loss="ciou", iou_normalizer=0.5, ignore_thresh=1.0)
    options.update(kw)
    return yolo_specs(TINY_ANCHORS, [([1, 2, 3], 16)], 1, **options)[0]


def _kind_items(spec, raw=None):
    raw = torch.zeros(1, 18, 4, 4) if raw is None else raw
    return YoloLoss([spec])([raw], torch.tensor([[0, 0] + KIND_TRUTH]))[1]


def test_bbox_iou_matches_darknet_box_c_on_general_boxes():
    ref = _box_kinds_reference(KIND_PRED, KIND_TRUTH)
    for kind, want in ref.items():
        got = bbox_iou(torch.tensor(KIND_PRED, dtype=torch.float64), torch.tensor(KIND_TRUTH, dtype=torch.float64),
                       kind).item()
        assert got == pytest.approx(want, abs=1e-7), kind
    assert len({round(v, 6) for v in ref.values()}) == 4        # the four kinds differ on these boxes


@pytest.mark.parametrize("kind", ["iou", "giou", "diou", "ciou"])
def test_box_loss_is_one_minus_the_selected_iou_kind(kind):
    want = 0.5 * (1 - _box_kinds_reference(np.array(KIND_PRED) / 64, np.array(KIND_TRUTH) / 64)[kind])
    items = _kind_items(_kind_spec(iou_loss=kind))
    assert items["box"] == pytest.approx(want, rel=1e-5)
    assert items["positives"] == 1


def test_mse_box_loss_value():
    # darknet delta_yolo_box (MSE): tx = 44/16 - 2 = .75, ty = 36/16 - 2 = .25, tw = log(50/37),
    # th = log(40/58) against x = y = .5, w = h = 0; scale = 2 - (50/64)(40/64)
    items = _kind_items(_kind_spec(iou_loss="mse"))
    sq = 0.25 ** 2 + 0.25 ** 2 + math.log(50 / 37) ** 2 + math.log(40 / 58) ** 2
    assert items["box"] == pytest.approx(0.5 * (2 - 50 * 40 / 64 ** 2) * 0.5 * sq, rel=1e-5)


def test_darknet_default_iou_loss_is_mse():
    spec = yolo_specs(TINY_ANCHORS, [([1, 2, 3], 16)], 1)[0]
    assert (spec.iou_loss, spec.iou_normalizer, spec.cls_normalizer, spec.obj_normalizer) == ("mse", 0.75, 1.0, 1.0)
    assert (spec.ignore_thresh, spec.iou_thresh, spec.label_smooth_eps, spec.scale_x_y) == (0.5, 1.0, 0.0, 1.0)


def test_normalizers_scale_their_own_term_only():
    torch.manual_seed(0)
    raw = torch.randn(1, 18, 4, 4) * 0.5
    base = _kind_items(_kind_spec(iou_normalizer=1.0, obj_normalizer=1.0, cls_normalizer=1.0), raw)
    assert min(base["box"], base["obj"], base["cls"]) > 0
    for key, term, w in (("iou_normalizer", "box", 0.07), ("obj_normalizer", "obj", 0.4),
                         ("cls_normalizer", "cls", 2.5)):
        norms = dict(iou_normalizer=1.0, obj_normalizer=1.0, cls_normalizer=1.0)
        norms[key] = w
        got = _kind_items(_kind_spec(**norms), raw)
        for t in ("box", "obj", "cls"):
            assert got[t] == pytest.approx(base[t] * (w if t == term else 1.0), rel=1e-5), (key, t)


def _overlap_setup(cls_logit):
    """The ignore-test layout: slot 0 of cell (2, 2) predicts the truth exactly but is not responsible."""
    spec = tiny_specs(num_classes=1)[1]                 # ignore_thresh .7
    raw = torch.zeros(1, 18, 4, 4)
    raw[0, 2, 2, 2] = math.log(37 / 23)
    raw[0, 3, 2, 2] = math.log(58 / 27)
    raw[0, 5, 2, 2] = cls_logit
    return spec, raw, torch.tensor([[0, 0, 40.0, 40.0, 37.0, 58.0]])


def _obj_grad(spec, raw, targets):
    raw = raw.clone().requires_grad_(True)
    YoloLoss([spec])([raw], targets)[0].backward()
    return raw.grad[0, 4, 2, 2].item()                   # slot 0's objectness at cell (2, 2)


def test_ignore_thresh_zeroes_objectness_only_above_the_threshold():
    spec, raw, targets = _overlap_setup(0.0)
    # slot 0 reduced to 30x58 (IoU with the truth 30/37 = .81): ignored at .7 and .8, not at .85
    raw[0, 2, 2, 2] = math.log(30 / 23)
    assert _obj_grad(spec, raw, targets) == 0.0
    assert _obj_grad(dataclasses.replace(spec, ignore_thresh=0.8), raw, targets) == 0.0
    assert _obj_grad(dataclasses.replace(spec, ignore_thresh=0.85), raw, targets) == pytest.approx(0.5, abs=1e-6)


def test_ignore_needs_a_class_probability_above_quarter():
    # darknet compare_yolo_class: the overlapping prediction is only ignored when some class p > .25
    spec, raw, targets = _overlap_setup(_logit(0.3))
    assert _obj_grad(spec, raw, targets) == 0.0
    spec, raw, targets = _overlap_setup(_logit(0.2))
    assert _obj_grad(spec, raw, targets) == pytest.approx(0.5, abs=1e-6)


def test_objectness_smooth_pulls_overlapping_predictions_to_their_iou():
    """darknet process_batch with objectness_smooth=1: a prediction with best_match_iou > ignore_thresh
    gets ``delta = obj_normalizer * (iou - p)`` (target iou, not ignored); a positive keeps the delta it
    got as a prediction: that IoU above the threshold, and ``0 - p`` below it (target 0, not 1: darknet
    writes a positive's ``1 - p`` only ``if (l.delta[obj_index] == 0)``, after every prediction's delta
    was set to ``obj_normalizer * (0 - p)``); only a positive with p exactly 0 gets target 1."""
    spec, raw, targets = _overlap_setup(0.0)
    smooth = dataclasses.replace(spec, objectness_smooth=1)
    raw[0, 2, 2, 2] = math.log(30 / 23)                  # slot 0: 30x58, IoU 30/37 with the truth
    iou = 30 / 37
    assert _obj_grad(spec, raw, targets) == 0.0          # ignored without smoothing
    assert _obj_grad(smooth, raw, targets) == pytest.approx(0.5 - iou, abs=1e-5)
    # under the threshold (ignore_thresh .85) a plain negative either way: target 0
    assert _obj_grad(dataclasses.replace(smooth, ignore_thresh=0.85), raw, targets) == pytest.approx(0.5, abs=1e-6)
    # the positive (slot 1, anchor 37x58) made 30x58 too: target iou with smoothing, 1 without, and
    # 0 with smoothing when its IoU is under the threshold (darknet's pre-set 0 - p stays)
    raw[0, 6 + 2, 2, 2] = math.log(30 / 37)

    def pos_grad(sp, logit=0.0):
        r = raw.clone()
        r[0, 6 + 4, 2, 2] = logit
        r.requires_grad_(True)
        YoloLoss([sp])([r], targets)[0].backward()
        return r.grad[0, 6 + 4, 2, 2].item()

    assert pos_grad(smooth) == pytest.approx(0.5 - iou, abs=1e-5)
    assert pos_grad(spec) == pytest.approx(0.5 - 1.0, abs=1e-6)
    below = dataclasses.replace(smooth, ignore_thresh=0.85)
    assert pos_grad(below) == pytest.approx(0.5 - 0.0, abs=1e-6)
    assert pos_grad(below, _logit(0.2)) == pytest.approx(0.2, abs=1e-6)
    # sigmoid(-200) is exactly 0 in float32: darknet's pre-set delta is 0, so the positive writes 1 - p
    assert torch.sigmoid(torch.tensor(-200.0)).item() == 0.0
    assert pos_grad(below, -200.0) == pytest.approx(-1.0, abs=1e-6)
    assert pos_grad(smooth, -200.0) == pytest.approx(-iou, abs=1e-5)      # above: max(0, iou - 0) = iou
    # darknet's class condition holds here too: no class p > .25 -> best_match_iou 0 -> plain negative
    spec2, raw2, targets2 = _overlap_setup(_logit(0.2))
    raw2[0, 2, 2, 2] = math.log(30 / 23)
    assert _obj_grad(dataclasses.replace(spec2, objectness_smooth=1), raw2, targets2) == pytest.approx(0.5, abs=1e-6)


def test_focal_loss_class_gradients_are_darknets_deltas():
    """darknet delta_yolo_class with focal_loss=1: delta_n = (y_n - p_n) * 0.5 * grad(pt),
    grad(pt) = -(1 - pt)(2 pt ln pt + pt - 1), pt = p of the truth's class (written out from the C
    source here); the BCE gradient is -delta. Without focal_loss: p_n - y_n."""
    spec = tiny_specs(num_classes=3)[1]
    raw = torch.zeros(1, 3 * 8, 4, 4)
    logits = torch.tensor([_logit(0.3), _logit(0.6), _logit(0.1)])
    raw[0, 8 + 5:8 + 8, 2, 2] = logits                   # slot 1 (the positive) at cell (2, 2)
    targets = torch.tensor([[0, 1, 40.0, 40.0, 37.0, 58.0]])

    def cls_grad(sp):
        r = raw.clone().requires_grad_(True)
        YoloLoss([sp])([r], targets)[0].backward()
        return r.grad[0, 8 + 5:8 + 8, 2, 2]

    p = torch.sigmoid(logits)
    y = torch.tensor([0.0, 1.0, 0.0])
    pt = float(p[1])
    factor = 0.5 * -(1 - pt) * (2 * pt * math.log(pt) + pt - 1)
    assert torch.allclose(cls_grad(spec), p - y, atol=1e-6)
    focal = cls_grad(dataclasses.replace(spec, focal_loss=1))
    assert torch.allclose(focal, (p - y) * factor, atol=1e-6)
    assert 0 < factor < 0.5
    # label smoothing is not applied in darknet's focal branch
    smoothed = cls_grad(dataclasses.replace(spec, focal_loss=1, label_smooth_eps=0.2))
    assert torch.allclose(smoothed, focal, atol=1e-7)
    # two truths on one slot (classes 1 then 2): the factor comes from the first truth's class; the
    # second truth's class keeps the plain term (darknet's ``if (delta[...])`` branch sets y - p)
    hot = torch.tensor([[0.0, 1.0, 1.0]])
    w = YoloLoss.focal_weights(logits[None], hot, torch.tensor([0, 0]), torch.tensor([1, 2]), probs=False)
    assert torch.allclose(w, torch.tensor([[factor, factor, 1.0]]), atol=1e-7)


def test_smooth_class_targets():
    from yolo4.trainer.loss import smooth_class_targets

    hot = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
    assert torch.equal(smooth_class_targets(hot, 0.0), hot)
    assert torch.allclose(smooth_class_targets(hot, 0.1), torch.tensor([[0.05, 0.95, 0.05], [0.95, 0.05, 0.95]]))


def test_label_smooth_eps_in_the_class_loss():
    # darknet delta_yolo_class: y_true = y (1 - eps) + eps/2 -> .95 / .05 for eps = .1 (3 classes)
    spec = tiny_specs(num_classes=3, label_smooth_eps=0.1)[1]
    assert spec.label_smooth_eps == 0.1
    raw = torch.zeros(1, 3 * 8, 4, 4)
    raw[0, 8 + 5 + 2, 2, 2] = _logit(0.9)
    raw.requires_grad_(True)
    loss, items = YoloLoss([spec])([raw], torch.tensor([[0, 2, 40.0, 40.0, 37.0, 58.0]]))
    want = -(0.95 * math.log(0.9) + 0.05 * math.log(0.1)) + 2 * math.log(2)
    assert items["cls"] == pytest.approx(want, rel=1e-5)
    loss.backward()
    g = raw.grad[0, 8 + 5:8 + 8, 2, 2]                    # d/dlogit = p - y_true
    assert torch.allclose(g, torch.tensor([0.5 - 0.05, 0.5 - 0.05, 0.9 - 0.95]), atol=1e-6)


def test_scale_x_y_makes_a_truth_on_the_cell_border_reachable():
    # truth 37x58 with its centre on the left border of cell (2, 2): x = 32. With scale_x_y = 1.2 the
    # decode x = sigmoid(tx) * 1.2 - .1 reaches 0 at tx = log(1/11) (sigmoid 1/12); with 1 it never does.
    targets = torch.tensor([[0, 0, 32.0, 40.0, 37.0, 58.0]])
    raw = torch.zeros(1, 18, 4, 4)
    raw[0, 6, 2, 2] = math.log(1 / 11)
    for iou_loss in ("ciou", "mse"):
        spec = _kind_spec(iou_loss=iou_loss, scale_x_y=1.2)
        xy, _, _, _, _ = decode_layer(raw, spec)
        assert xy[0, 1, 2, 2].tolist() == pytest.approx([32.0, 40.0], abs=1e-4)
        lt = assign_layer(targets, spec, (4, 4))
        assert pairs(lt) == [(0, 0, 1, 2, 2)]
        r = raw.clone().requires_grad_(True)
        loss, items = YoloLoss([spec])([r], targets)
        assert items["box"] == pytest.approx(0.0, abs=1e-6), iou_loss
        loss.backward()
        # at the optimum: no x, y gradient; w, h: none for mse, while darknet's dx_box_iou is one-sided where
        # the boxes' edges tie (dI = 0, dU = dX: it shrinks w, h by 2/w, 2/h, box_grad.py); the exact
        # derivative (box_grad="chain") is 0
        g = r.grad[0, 6:10, 2, 2]
        assert g[:2].abs().max().item() < 1e-5, iou_loss
        if iou_loss == "mse":
            assert g[2:].abs().max().item() < 1e-5
        else:
            assert g[2:].tolist() == pytest.approx([0.5 * 2 / (37 / 64), 0.5 * 2 / (58 / 64)], rel=1e-4)
            rc = raw.clone().requires_grad_(True)
            YoloLoss([spec], box_grad="chain")([rc], targets)[0].backward()
            assert rc.grad[0, 6:10, 2, 2].abs().max().item() < 1e-5
        # the same outputs under scale_x_y = 1 stop short of the border: a box loss remains
        assert _kind_items(dataclasses.replace(spec, scale_x_y=1.0), raw)["box"] > 1e-3, iou_loss


def test_iou_thresh_adds_positives_in_the_loss():
    # yolov4 layout, truth 40x40: best anchor 2 (40x28) plus anchor 1 (19x36, IoU .43) at stride 8,
    # anchors 3 and 4 at stride 16 with iou_thresh = .213; only anchor 2 with iou_thresh = 1
    targets = torch.tensor([[0, 2, 100.0, 60.0, 40.0, 40.0]])
    raws = [torch.zeros(1, 3 * 8, s, s) for s in (32, 16, 8)]
    for thresh, positives, obj_pos in ((0.213, 4, [1, 2]), (1.0, 1, [2])):
        specs = v4_specs(thresh)
        rs = [r.clone().requires_grad_(True) for r in raws]
        loss, items = YoloLoss(specs)(rs, targets)
        assert items["positives"] == positives
        loss.backward()
        g = rs[0].grad.view(1, 3, 8, 32, 32)[0, :, 4, 60 // 8, 100 // 8]   # objectness of the truth's cell
        assert [a for a in range(3) if g[a] < 0] == obj_pos


def test_unimplemented_yolo_keys_warn():
    from yolo4.errors import Yolo4Warning

    with pytest.warns(Yolo4Warning, match=r"\[yolo\] truth_thresh: not implemented"):
        YoloLoss(tiny_specs(objectness_smooth=1, focal_loss=1, truth_thresh=0.9))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        YoloLoss(tiny_specs())


# two truths of different classes on one slot: same cell (2, 2) of the stride-16 4x4 layer, same best
# anchor 37x58 (slot 1); the other anchors of the mask stay far below iou_thresh = .9 (IoU about .3)
SHARED_TRUTHS = [[0, 0, 36.0, 38.0, 37.0, 58.0], [0, 1, 44.0, 42.0, 40.0, 56.0]]
SHARED_RAW = (0.8, -0.6, -0.3, 0.25)                 # slot 1's raw x, y, w, h at cell (2, 2)


def _shared_slot(iou_loss, truths):
    # iou_thresh < 1: current darknet averages a shared slot's box deltas only then (process_batch)
    spec = yolo_specs(TINY_ANCHORS, [([1, 2, 3], 16)], 2, iou_loss=iou_loss, iou_normalizer=0.5,
                      ignore_thresh=1.0, iou_thresh=0.9)[0]
    raw = torch.zeros(1, 3 * 7, 4, 4)
    raw[0, 7:11, 2, 2] = torch.tensor(SHARED_RAW)
    raw.requires_grad_(True)
    loss, items = YoloLoss([spec])([raw], torch.tensor(truths))
    loss.backward()
    return raw.grad[0, 7:11, 2, 2].tolist(), items


def test_truths_sharing_a_slot_average_their_box_deltas():
    """darknet averages_yolo_deltas: truths assigned to one (anchor, cell) accumulate their
    delta_yolo_box deltas (``+=``), which are then divided by the number of classes on the slot (here
    2: two truths of different classes). MSE delta per truth, written out from delta_yolo_box:
    ``iou_normalizer * (2 - w*h) * (t - out)``, t = (x*W - i, y*H - j, log(w/anchor_w),
    log(h/anchor_h)), out = (sigmoid(tx), sigmoid(ty), tw, th); the loss gradient is -delta. Without
    the averaging the gradient doubles. The CIoU box loss is likewise the mean of the two
    ``1 - CIoU`` (numpy port of box.c)."""
    rx, ry, rw, rh = SHARED_RAW
    out = np.array([1 / (1 + math.exp(-rx)), 1 / (1 + math.exp(-ry)), rw, rh])

    def delta(truth):
        _, _, cx, cy, w, h = truth
        t = np.array([cx / 16 - 2, cy / 16 - 2, math.log(w / 37), math.log(h / 58)])
        return 0.5 * (2 - (w / 64) * (h / 64)) * (t - out)

    d1, d2 = delta(SHARED_TRUTHS[0]), delta(SHARED_TRUTHS[1])
    g_one, items_one = _shared_slot("mse", SHARED_TRUTHS[:1])
    assert items_one["positives"] == 1
    assert g_one == pytest.approx((-d1).tolist(), rel=1e-4, abs=1e-7)        # one truth: not divided
    g, items = _shared_slot("mse", SHARED_TRUTHS)
    assert items["positives"] == 2
    assert g == pytest.approx((-(d1 + d2) / 2).tolist(), rel=1e-4, abs=1e-7)
    assert np.abs(d1 + d2).min() > 0.05                 # every component is far from 0: a sum differs

    pred = np.array([(out[0] + 2) * 16, (out[1] + 2) * 16, 37 * math.exp(rw), 58 * math.exp(rh)]) / 64
    ciou = [_box_kinds_reference(pred, np.array(t[2:]) / 64)["ciou"] for t in SHARED_TRUTHS]
    _, items_ciou = _shared_slot("ciou", SHARED_TRUTHS)
    assert items_ciou["box"] == pytest.approx(0.5 * ((1 - ciou[0]) + (1 - ciou[1])) / 2, rel=1e-4)


# --- behaviour the mutation run of yolo4/trainer/loss.py found unchecked -------------------------------

def test_bbox_iou_names_an_unknown_kind():
    b = torch.tensor([0.0, 0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"unknown IoU kind 'dice' \(one of iou, giou, diou, ciou\)"):
        bbox_iou(b, b, "dice")


def test_bbox_iou_of_zero_size_boxes_is_zero_not_nan():
    # two identical zero-size boxes: intersection 0, union 0, enclosing box 0, d = 0, w/h = 0/0 -> the eps
    # terms (box.c's division guards) give 0 for every kind (GIoU: iou - (C - U)/C = 0 - (eps - eps)/eps)
    p = torch.tensor([[3.0, 4.0, 0.0, 0.0]])
    for kind in ("iou", "giou", "diou", "ciou"):
        assert bbox_iou(p, p, kind).tolist() == [0.0], kind


def test_bbox_iou_defaults_to_plain_iou():
    # (0, 0, 2, 2) vs (1, 0, 2, 2): intersection 1 x 2, union 6
    assert bbox_iou(torch.tensor([0.0, 0.0, 2.0, 2.0]), torch.tensor([1.0, 0.0, 2.0, 2.0])).item() == pytest.approx(1 / 3)


def test_ciou_of_a_zero_height_box():
    # box.c box_ciou: a zero-height box's aspect ratio w / 0 is +inf, atan = pi/2; against a square (atan 1 =
    # pi/4) with the same centre: IoU 0, d = 0, v = 4/pi^2 (pi/4)^2 = 1/4, alpha = v / (1 - 0 + v + 1e-6)
    flat, square = torch.tensor([0.0, 0.0, 2.0, 0.0]), torch.tensor([0.0, 0.0, 2.0, 2.0])
    want = -0.25 * 0.25 / (1.25 + 1e-6)
    assert bbox_iou(flat, square, "ciou").item() == pytest.approx(want, rel=1e-5)
    assert bbox_iou(square, flat, "ciou").item() == pytest.approx(want, rel=1e-5)


def test_decode_layer_channels_anchors_and_cells():
    """darknet get_yolo_box on a 2 x 3 grid (H x W), two anchors: per anchor the channel group is
    x, y, w, h, obj, classes; x = (i + sigmoid(tx)) * stride, y = (j + sigmoid(ty)) * stride,
    w = anchor_w * exp(tw) with tw clamped at 20 (training safety)."""
    spec = yolo_specs(TINY_ANCHORS, [([4, 5], 32)], 2)[0]            # anchors 135x169, 344x319
    raw = torch.zeros(1, 2 * 7, 2, 3)
    raw[0, 7:14, 1, 2] = torch.tensor([1.0, -2.0, 0.5, 25.0, 0.3, -0.7, 1.1])   # anchor 1, row 1, col 2
    xy, wh, t, obj, cls = decode_layer(raw, spec)
    assert xy.shape == wh.shape == (1, 2, 2, 3, 2) and t.shape == (1, 2, 2, 3, 4) and cls.shape == (1, 2, 2, 3, 2)
    sig = 1 / (1 + math.exp(-1.0)), 1 / (1 + math.exp(2.0))
    assert xy[0, 1, 1, 2].tolist() == pytest.approx([(2 + sig[0]) * 32, (1 + sig[1]) * 32], rel=1e-6)
    assert wh[0, 1, 1, 2].tolist() == pytest.approx([344 * math.exp(0.5), 319 * math.exp(20.0)], rel=1e-5)
    assert t[0, 1, 1, 2].tolist() == pytest.approx([1.0, -2.0, 0.5, 25.0])
    assert obj[0, 1, 1, 2].item() == pytest.approx(0.3)
    assert cls[0, 1, 1, 2].tolist() == pytest.approx([-0.7, 1.1])
    # all-zero outputs: the cell centre and the anchor; row 1, col 0 of anchor 0 is (16, 48), 135x169
    assert xy[0, 0, 1, 0].tolist() == [16.0, 48.0] and wh[0, 0, 1, 0].tolist() == [135.0, 169.0]
    assert xy[0, 1, 0, 2].tolist() == [80.0, 16.0] and wh[0, 1, 0, 2].tolist() == [344.0, 319.0]
    # new_coords=1 (inputs already logistic): x = (tx * s - (s - 1)/2 + i) * stride, w = 4 tw^2 anchor_w
    nc = dataclasses.replace(spec, new_coords=1, scale_x_y=2.0)
    xy, wh, _, _, _ = decode_layer(raw.clamp(0, 1), nc)
    assert xy[0, 1, 1, 2].tolist() == pytest.approx([(1.0 * 2 - 0.5 + 2) * 32, (0.0 * 2 - 0.5 + 1) * 32])
    assert wh[0, 1, 1, 2].tolist() == pytest.approx([4 * 0.25 * 344, 4 * 1.0 * 319])
    with pytest.raises(ValueError, match=r"yolo layer expects 14 channels \(2 anchors x \(5 \+ 2 classes\)\), got 13"):
        decode_layer(torch.zeros(1, 13, 2, 3), spec)
    # the decode keeps the outputs' dtype (bfloat16 under autocast): anchors and grid follow it
    xy, wh, _, _, _ = decode_layer(raw.to(torch.bfloat16), spec)
    assert xy.dtype == wh.dtype == torch.bfloat16
    assert wh[0, 0, 1, 0].tolist() == [135.0, 169.0] and xy[0, 1, 0, 2].tolist() == [80.0, 16.0]


def test_loss_names_bad_arguments():
    with pytest.raises(ValueError, match=r"box_grad must be 'darknet' or 'chain', got 'autograd'"):
        YoloLoss(tiny_specs(), box_grad="autograd")
    with pytest.raises(ValueError, match=r"iou_loss=l1 is not supported \(mse, iou, giou, diou, ciou\)"):
        YoloLoss([dataclasses.replace(tiny_specs()[0], iou_loss="l1")])
    with pytest.raises(ValueError, match=r"^1 raw outputs for 2 yolo layers$"):
        YoloLoss(tiny_specs())([torch.zeros(1, 21, 4, 4)], torch.zeros(0, 6))


def test_unimplemented_keys_are_named_together_outside_the_loss_module():
    from yolo4.errors import Yolo4Warning
    from yolo4.trainer import loss as loss_module

    with pytest.warns(Yolo4Warning) as rec:
        YoloLoss(tiny_specs(counters_per_class="100,200", truth_thresh=0.9))
    assert [str(r.message) for r in rec] == [
        "[yolo] counters_per_class, truth_thresh: not implemented by the trainer's loss, trained as darknet's defaults"]
    # stacklevel: the warning points at the code that built the loss (this file; under mutmut, its wrapper),
    # not at the line inside the loss module
    assert os.path.basename(rec[0].filename) != os.path.basename(loss_module.__file__)


def test_no_truths_every_prediction_is_a_negative():
    # darknet: delta = obj_normalizer * (0 - p) at each of the 2 x 3 x 4 x 4 predictions; sigmoid(0) = .5 ->
    # BCE log 2 each; the batch mean halves the sum; no box or class term, no positives
    for smooth in (0, 1):
        spec = _kind_spec(obj_normalizer=0.4, objectness_smooth=smooth)
        raw = torch.zeros(2, 18, 4, 4, requires_grad=True)
        loss, items = YoloLoss([spec])([raw], torch.zeros(0, 6))
        assert items["positives"] == 0 and items["box"] == 0.0 and items["cls"] == 0.0
        assert items["obj"] == pytest.approx(0.4 * 96 * math.log(2) / 2, rel=1e-6)
        assert loss.item() == pytest.approx(items["obj"], rel=1e-6) and items["loss"] == pytest.approx(items["obj"])
        loss.backward()
        g = raw.grad.view(2, 3, 6, 4, 4)
        assert torch.allclose(g[:, :, 4], torch.full((2, 3, 4, 4), 0.4 * 0.5 / 2))
        assert g[:, :, :4].abs().max().item() == 0.0 and g[:, :, 5].abs().max().item() == 0.0


def test_ignore_in_a_layer_without_positives():
    """A truth whose best anchor (135x169) is in layer 0's mask only: layer 1 has no positive, yet its
    prediction that covers the truth is ignored (process_batch runs on every layer), or pulled to its
    IoU with objectness_smooth; the other predictions of layer 1 get obj_normalizer * p."""
    targets = torch.tensor([[0, 0, 72.0, 72.0, 130.0, 165.0]])
    raws = [torch.zeros(1, 18, 8, 8), torch.zeros(1, 18, 16, 16)]      # 256 x 256: strides 32, 16
    raws[1][0, 12 + 2, 4, 4] = math.log(130 / 81)                       # layer 1 slot 2 (81x82) at the
    raws[1][0, 12 + 3, 4, 4] = math.log(165 / 82)                       # cell (4, 4) centred on (72, 72)
    # the positive (layer 0, slot 1, cell (2, 2)) predicts 135x169 at (80, 80): intersection 124.5 x 159,
    # IoU 19795.5 / (22815 + 21450 - 19795.5) = .809 > .7 -> target 1, or that IoU with objectness_smooth
    pos_iou = 124.5 * 159 / (135 * 169 + 130 * 165 - 124.5 * 159)
    for smooth, want, pos_target in ((0, 0.0, 1.0), (1, 0.4 * (0.5 - 1.0), pos_iou)):
        specs = tiny_specs(num_classes=1, obj_normalizer=0.4, objectness_smooth=smooth)
        rs = [r.clone().requires_grad_(True) for r in raws]
        loss, items = YoloLoss(specs)(rs, targets)
        assert items["positives"] == 1
        loss.backward()
        assert pairs(assign_layer(targets, specs[0], (8, 8))) == [(0, 0, 1, 2, 2)]
        assert rs[0].grad[0, 6 + 4, 2, 2].item() == pytest.approx(0.4 * (0.5 - pos_target), abs=1e-6)
        g1 = rs[1].grad[0, 12 + 4]
        assert g1[4, 4].item() == pytest.approx(want, abs=1e-5), smooth
        assert g1[0, 0].item() == pytest.approx(0.4 * 0.5, abs=1e-7)


def test_ignore_thresh_is_strict():
    """darknet: ignored when ``best_match_iou > ignore_thresh``. Truth 74x58 at (40, 40) (best anchor 81x82,
    slot 2); slot 1 at the same cell predicts 37x58 there: IoU exactly 2146 / 4292 = .5."""
    targets = torch.tensor([[0, 0, 40.0, 40.0, 74.0, 58.0]])
    raw = torch.zeros(1, 18, 4, 4)
    for thresh, ignored in ((0.5, False), (0.49, True)):
        spec = _kind_spec(ignore_thresh=thresh)
        assert _obj_grad6(spec, raw, targets, 1, 2, 2) == (0.0 if ignored else pytest.approx(0.5, abs=1e-7))
        xy, wh, _, _, _ = decode_layer(raw, spec)
        truths, tvalid = targets[None, :, 2:], torch.ones(1, 1, dtype=torch.bool)
        loss = YoloLoss([spec])
        assert loss.match_iou(xy, wh, truths, tvalid)[0, 1, 2, 2].item() == 0.5
        assert loss.ignore_mask(xy, wh, spec, truths, tvalid)[0, 1, 2, 2].item() is ignored
        # with the class condition: no class probability > .25 -> never ignored
        low = torch.full((1, 3, 4, 4, 1), 0.2)
        assert loss.ignore_mask(xy, wh, spec, truths, tvalid, low)[0, 1, 2, 2].item() is False


def _obj_grad6(spec, raw, targets, a, j, i):
    raw = raw.clone().requires_grad_(True)
    YoloLoss([spec])([raw], targets)[0].backward()
    return raw.grad[0, a * 6 + 4, j, i].item()


def test_match_iou_class_condition_padding_and_no_truths():
    """best_match_iou: the best IoU with the image's valid truths (padding rows never count), 0 unless
    some class probability is > .25 (darknet compare_yolo_class, strict), no truths -> 0."""
    loss = YoloLoss(tiny_specs())
    xy, wh = torch.tensor([40.0, 40.0]).view(1, 1, 1, 1, 2), torch.tensor([37.0, 58.0]).view(1, 1, 1, 1, 2)
    truths = torch.tensor([[[40.0, 40.0, 74.0, 58.0], [40.0, 40.0, 37.0, 58.0]]])   # IoU .5, padding IoU 1
    tvalid = torch.tensor([[True, False]])
    assert loss.match_iou(xy, wh, truths, tvalid).flatten().tolist() == [0.5]
    quarter = torch.tensor(0.25)
    for p, want in ((quarter, 0.0), (torch.nextafter(quarter, torch.tensor(1.0)), 0.5)):
        cls_prob = torch.stack((torch.tensor(0.1), p)).view(1, 1, 1, 1, 2)
        assert loss.match_iou(xy, wh, truths, tvalid, cls_prob).flatten().tolist() == [want]
    none = loss.match_iou(xy, wh, torch.zeros(1, 0, 4), torch.zeros(1, 0, dtype=torch.bool))
    assert none.shape == (1, 1, 1, 1) and none.item() == 0.0


def _sig(v):
    return 1 / (1 + math.exp(-v))


def test_batch_of_two_images_slots_ignore_and_mean():
    """Three truths over two images (rows out of image order): every objectness gradient of the batch,
    worked out cell by cell (darknet: -delta / B), the class gradients, and the per-image-mean items."""
    spec = _kind_spec(ignore_thresh=0.7)                   # stride 16, 4 x 4, anchors 23x27, 37x58, 81x82
    targets = torch.tensor([[1, 0, 56.0, 24.0, 81.0, 82.0],     # image 1: anchor 81x82 -> slot 2, cell (1, 3)
                            [0, 0, 40.0, 40.0, 37.0, 58.0],     # image 0: slot 1, cell (2, 2)
                            [0, 0, 8.0, 8.0, 23.0, 27.0]],      # image 0: slot 0, cell (0, 0)
                           dtype=torch.float64)                 # (the loss keeps the outputs' float32)
    raw = torch.zeros(2, 18, 4, 4)
    raw[0, 6 + 0, 2, 2] = 0.4                              # image 0's slot-1 positive off centre in x
    # image 1, slot 1 at (1, 3) predicts image 1's truth: ignored. With all-zero outputs, image 0's slot 2
    # at (1, 3) predicts image 1's truth and image 1's slots 0 at (0, 0) and 1 at (2, 2) image 0's truths:
    # each is a plain negative in its own image (only the image's own truths count)
    raw[1, 6 + 2, 1, 3] = math.log(81 / 37)
    raw[1, 6 + 3, 1, 3] = math.log(82 / 58)
    raw.requires_grad_(True)
    loss, items = YoloLoss([spec])([raw], targets)
    loss.backward()
    g = raw.grad.view(2, 3, 6, 4, 4)
    want_obj = torch.full((2, 3, 4, 4), 0.5 / 2)           # negatives: sigmoid(0) / B
    want_cls = torch.zeros(2, 3, 4, 4)
    for b, a, j, i in ((0, 1, 2, 2), (0, 0, 0, 0), (1, 2, 1, 3)):
        want_obj[b, a, j, i] = want_cls[b, a, j, i] = (0.5 - 1) / 2
    want_obj[1, 1, 1, 3] = 0.0
    assert torch.allclose(g[:, :, 4], want_obj, atol=1e-7)
    assert torch.allclose(g[:, :, 5], want_cls, atol=1e-7)
    assert items["positives"] == 3
    # per image mean: obj BCE log 2 at 48 + 47 (one ignored) predictions, cls log 2 at 3 positives, box
    # 0.5 (1 - CIoU) of the one positive not on its truth
    pred = np.array([(2 + _sig(0.4)) * 16, 40, 37, 58]) / 64
    box = 0.5 * (1 - _box_kinds_reference(pred, np.array([40, 40, 37, 58]) / 64)["ciou"])
    assert items["obj"] == pytest.approx(95 * math.log(2) / 2, rel=1e-6)
    assert items["cls"] == pytest.approx(3 * math.log(2) / 2, rel=1e-6)
    assert items["box"] == pytest.approx(box / 2, rel=1e-4)
    assert items["loss"] == pytest.approx(items["box"] + items["obj"] + items["cls"], rel=1e-6)
    assert loss.item() == pytest.approx(items["loss"], rel=1e-6) and loss.dtype == torch.float32


def _ciou_torch(p, g):
    """box.c box_ciou in float64 torch, ``alpha`` held constant (the paper's gradient): p, g = (cx, cy, w, h)."""
    pl, pr, pt, pb = p[0] - p[2] / 2, p[0] + p[2] / 2, p[1] - p[3] / 2, p[1] + p[3] / 2
    gl, gr, gt, gb = g[0] - g[2] / 2, g[0] + g[2] / 2, g[1] - g[3] / 2, g[1] + g[3] / 2
    inter = (torch.min(pr, gr) - torch.max(pl, gl)).clamp(min=0) * (torch.min(pb, gb) - torch.max(pt, gt)).clamp(min=0)
    iou = inter / (p[2] * p[3] + g[2] * g[3] - inter)
    c2 = (torch.max(pr, gr) - torch.min(pl, gl)) ** 2 + (torch.max(pb, gb) - torch.min(pt, gt)) ** 2
    d2 = (p[0] - g[0]) ** 2 + (p[1] - g[1]) ** 2
    v = 4 / math.pi ** 2 * (torch.atan(g[2] / g[3]) - torch.atan(p[2] / p[3])) ** 2
    alpha = (v / (1 - iou + v + 1e-6)).detach()
    return iou - d2 / c2 - alpha * v


# a non-square layer: stride 16, 4 rows x 6 columns (96 x 64 px). Truth 50x40 at (44, 20): best anchor
# 37x58 (IoU 1480/2666) -> slot 1, cell row 1, column 2; its raw x, y, w, h are NS_RAW
NS_TRUTH = [44.0, 20.0, 50.0, 40.0]
NS_RAW = (0.8, -0.6, -0.3, 0.25)


def _ns_run(spec, raw_xywh=NS_RAW, dtype=torch.float32):
    raw = torch.zeros(1, 18, 4, 6, dtype=dtype)
    raw[0, 6:10, 1, 2] = torch.tensor(raw_xywh, dtype=dtype)
    raw.requires_grad_(True)
    loss, items = YoloLoss([spec])([raw], torch.tensor([[0, 0] + NS_TRUTH]))
    loss.backward()
    assert items["positives"] == 1
    return items, raw.grad[0, 6:10, 1, 2].tolist()


def test_mse_box_on_a_non_square_grid():
    """darknet delta_yolo_box (MSE) at cell (row 1, col 2): t = (44/16 - 2, 20/16 - 1, log(50/37),
    log(40/58)), out = (sigmoid(tx), sigmoid(ty), tw, th), scale = 2 - (50/96)(40/64) (w, h relative to the
    96 x 64 input); loss 0.5 scale iou_normalizer |t - out|^2, gradient on the raw outputs scale
    iou_normalizer (out - t) (no logistic derivative)."""
    items, grad = _ns_run(_kind_spec(iou_loss="mse"))
    rx, ry, rw, rh = NS_RAW
    diff = np.array([_sig(rx) - 0.75, _sig(ry) - 0.25, rw - math.log(50 / 37), rh - math.log(40 / 58)])
    scale = 2 - (50 / 96) * (40 / 64)
    assert items["box"] == pytest.approx(0.5 * scale * 0.5 * float((diff ** 2).sum()), rel=1e-5)
    assert grad == pytest.approx((scale * 0.5 * diff).tolist(), rel=1e-5)


def test_ciou_box_value_and_darknet_gradients_on_a_non_square_grid():
    """1 - CIoU in 0..1 image units (x / 96, y / 64); darknet's raw-output gradients: minus its dx_box_iou
    delta (the scalar port in test_trainer_box_grad.py) on x, y as is, on w, h times exp(tw), exp clamped
    at tw = 20 (as the decode), times iou_normalizer."""
    from .test_trainer_box_grad import _dx_box_iou

    spec = _kind_spec()
    net = torch.tensor([96.0, 64.0, 96.0, 64.0], dtype=torch.float64)
    truth = torch.tensor(NS_TRUTH, dtype=torch.float64) / net
    for raw_xywh in (NS_RAW, (0.8, -0.6, 21.0, 0.25)):
        rx, ry, rw, rh = raw_xywh
        ew = math.exp(min(rw, 20.0))
        pred = (torch.tensor([(2 + _sig(rx)) * 16, (1 + _sig(ry)) * 16, 37 * ew, 58 * math.exp(rh)],
                             dtype=torch.float64) / net).requires_grad_(True)
        ref_loss = 0.5 * (1 - _ciou_torch(pred, truth))
        ref_loss.backward()
        delta = np.array(_dx_box_iou(pred.detach().tolist(), truth.tolist(), "ciou"))
        want = (-0.5 * delta * np.array([1.0, 1.0, ew, math.exp(rh)])).tolist()
        items, grad = _ns_run(spec, raw_xywh, torch.float64)
        assert items["box"] == pytest.approx(ref_loss.item(), rel=1e-6)
        assert grad == pytest.approx(want, rel=1e-5)


def test_focal_loss_class_term_is_weighted_by_cls_normalizer():
    spec = tiny_specs(num_classes=3, focal_loss=1)[1]
    raw = torch.zeros(1, 3 * 8, 4, 4)
    logits = torch.tensor([_logit(0.3), _logit(0.6), _logit(0.1)])
    raw[0, 8 + 5:8 + 8, 2, 2] = logits
    targets = torch.tensor([[0, 1, 40.0, 40.0, 37.0, 58.0]])
    p = torch.sigmoid(logits)
    pt = float(p[1])
    factor = 0.5 * -(1 - pt) * (2 * pt * math.log(pt) + pt - 1)
    for norm in (1.0, 2.5):
        r = raw.clone().requires_grad_(True)
        YoloLoss([dataclasses.replace(spec, cls_normalizer=norm)])([r], targets)[0].backward()
        assert torch.allclose(r.grad[0, 8 + 5:8 + 8, 2, 2], norm * factor * (p - torch.tensor([0.0, 1.0, 0.0])),
                              atol=1e-6)


def test_new_coords_box_value_and_ignore_on_probabilities():
    """new_coords=1 (yolov4-csp): outputs are already logistic; x = (tx * 2 - .5 + i) * stride with
    scale_x_y 2, w = 4 tw^2 anchor; darknet's class condition of the ignore rule reads the class outputs
    as probabilities (no second logistic)."""
    targets = torch.tensor([[0, 0, 40.0, 40.0, 37.0, 58.0]])
    spec = _kind_spec(new_coords=1, scale_x_y=2.0, ignore_thresh=0.7)
    raw = torch.full((1, 18, 4, 4), 0.5)
    raw[0, 6:10, 2, 2] = torch.tensor([0.6, 0.3, 0.55, 0.45])           # the positive, slot 1
    raw[0, 2, 2, 2] = math.sqrt(37 / (4 * 23))                         # slot 0 predicts the truth
    raw[0, 3, 2, 2] = math.sqrt(58 / (4 * 27))
    pred = np.array([(0.6 * 2 - 0.5 + 2) * 16, (0.3 * 2 - 0.5 + 2) * 16, 4 * 0.55 ** 2 * 37, 4 * 0.45 ** 2 * 58])
    want_box = 0.5 * (1 - _box_kinds_reference(pred / 64, targets[0, 2:].numpy() / 64)["ciou"])
    for p_cls, ignored in ((0.3, True), (0.2, False)):             # sigmoid(.2) would be .55 > .25
        raw[0, 5, 2, 2] = p_cls
        r = raw.clone().requires_grad_(True)
        loss, items = YoloLoss([spec])([r], targets)
        assert items["box"] == pytest.approx(want_box, rel=1e-5)
        assert items["positives"] == 1
        loss.backward()
        g0 = r.grad[0, 4, 2, 2].item()
        assert (g0 == 0.0) if ignored else (g0 > 0.1), p_cls
        assert r.grad[0, 6 + 4, 2, 2].item() < 0                       # the positive is pushed up


def test_new_coords_focal_factor_reads_the_probability():
    """focal_loss=1 with new_coords=1: darknet's factor alpha * grad(pt) scales each class term of the
    slot, pt the class output itself (already a probability, no logistic): focal / plain gradient = factor."""
    spec = tiny_specs(num_classes=3, new_coords=1)[1]
    raw = torch.full((1, 3 * 8, 4, 4), 0.5)
    raw[0, 8 + 5:8 + 8, 2, 2] = torch.tensor([0.3, 0.6, 0.1])        # the positive (slot 1), truth class 1
    targets = torch.tensor([[0, 1, 40.0, 40.0, 37.0, 58.0]])

    def cls_grad(sp):
        r = raw.clone().requires_grad_(True)
        YoloLoss([sp])([r], targets)[0].backward()
        return r.grad[0, 8 + 5:8 + 8, 2, 2]

    pt = 0.6
    factor = 0.5 * -(1 - pt) * (2 * pt * math.log(pt) + pt - 1)
    plain, focal = cls_grad(spec), cls_grad(dataclasses.replace(spec, focal_loss=1))
    p_minus_y = torch.tensor([0.3, 0.6 - 1.0, 0.1])                # -delta, on the probability itself
    assert torch.allclose(plain, p_minus_y, atol=1e-6)
    assert torch.allclose(focal, p_minus_y * factor, atol=1e-6)


def test_new_coords_objectness_and_class_gradients_are_darknets_deltas_on_the_probability():
    """new_coords=1: the [yolo] input is the conv's logistic output p and darknet's delta ``t - p`` is
    applied to it as is (the conv's logistic backward then multiplies p (1 - p)): the loss gradient on
    the raw output is ``-delta`` -- objectness ``obj_normalizer * (p - t)`` at a negative, the positive
    and (with objectness_smooth) an overlapping prediction, classes ``cls_normalizer * (p - y)`` with
    label smoothing's targets. (Cross-entropy on p had given ``(p - t) / (p (1 - p))`` here, >= 4x.)"""
    spec = _kind_spec(new_coords=1, scale_x_y=2.0, obj_normalizer=0.4, ignore_thresh=0.7, label_smooth_eps=0.1)
    targets = torch.tensor([[0, 0, 40.0, 40.0, 37.0, 58.0]])
    raw = torch.full((1, 18, 4, 4), 0.5)
    raw[0, 4, 0, 0] = 0.3                                          # slot 0 at (0, 0): a plain negative
    raw[0, 6:10, 2, 2] = torch.tensor([0.5, 0.5, 0.5, 0.5])        # the positive (slot 1, anchor 37x58)
    raw[0, 6 + 4, 2, 2] = 0.8
    raw[0, 6 + 5, 2, 2] = 0.6                                      # its class (0) probability
    raw[0, 2, 2, 2] = math.sqrt(37 / (4 * 23))                     # slot 0 at (2, 2) predicts the truth
    raw[0, 3, 2, 2] = math.sqrt(58 / (4 * 27))
    raw[0, 4, 2, 2] = 0.9
    raw[0, 5, 2, 2] = 0.3                                          # class p > .25: may be ignored

    def grads(sp):
        r = raw.clone().requires_grad_(True)
        YoloLoss([sp])([r], targets)[0].backward()
        return r.grad[0]

    g = grads(spec)
    assert g[4, 0, 0].item() == pytest.approx(0.4 * (0.3 - 0.0), abs=1e-6)       # negative
    assert g[6 + 4, 2, 2].item() == pytest.approx(0.4 * (0.8 - 1.0), abs=1e-6)   # positive
    assert g[4, 2, 2].item() == 0.0                                               # ignored (IoU 1 > .7)
    assert g[6 + 5, 2, 2].item() == pytest.approx(0.6 - 0.95, abs=1e-6)          # y_true = 1 - eps/2
    assert g[5, 2, 2].item() == 0.0                                               # not a positive: no class term
    g = grads(dataclasses.replace(spec, objectness_smooth=1, cls_normalizer=2.0))
    assert g[4, 2, 2].item() == pytest.approx(0.4 * (0.9 - 1.0), abs=1e-5)       # pulled to its IoU (1)
    # the positive's own box: x = (.5 * 2 - .5 + 2) * 16 = 40, w = 4 * .5^2 * 37
    # = 37: it predicts the truth too, IoU 1 > .7 -> target 1
    assert g[6 + 4, 2, 2].item() == pytest.approx(0.4 * (0.8 - 1.0), abs=1e-5)
    assert g[6 + 5, 2, 2].item() == pytest.approx(2.0 * (0.6 - 0.95), abs=1e-6)


def test_mse_box_with_new_coords_uses_darknets_sqrt_target():
    """darknet delta_yolo_box, iou_loss=mse with new_coords=1: ``tw = sqrt(truth_w * net_w / (4 anchor_w))``
    against the raw w output (no log, no exp): the loss gradient on the raw w, h is
    ``-scale * (tw - w) * iou_normalizer``, scale = 2 - truth area (normalized)."""
    spec = _kind_spec(iou_loss="mse", new_coords=1, scale_x_y=2.0)  # iou_normalizer .5
    truth = [44.0, 36.0, 50.0, 40.0]                                 # KIND_TRUTH: best anchor 37x58 -> slot 1
    raw = torch.full((1, 18, 4, 4), 0.5)
    raw[0, 6 + 2, 2, 2], raw[0, 6 + 3, 2, 2] = 0.6, 0.4
    raw.requires_grad_(True)
    YoloLoss([spec])([raw], torch.tensor([[0, 0] + truth]))[0].backward()
    scale = 2 - 50 * 40 / 64 ** 2
    tw, th = math.sqrt(50 / (4 * 37)), math.sqrt(40 / (4 * 58))
    g = raw.grad[0, 6:10, 2, 2]
    assert g[2].item() == pytest.approx(-scale * (tw - 0.6) * 0.5, rel=1e-5)
    assert g[3].item() == pytest.approx(-scale * (th - 0.4) * 0.5, rel=1e-5)
    # x, y: tx = 44/16 - 2 = .75 against the scaled output .5 * 2 - .5 = .5 (darknet: on the raw x as is)
    assert g[0].item() == pytest.approx(-scale * (0.75 - 0.5) * 0.5, rel=1e-5)
    assert g[1].item() == pytest.approx(-scale * (0.25 - 0.5) * 0.5, rel=1e-5)


def test_decode_and_match_iou_stay_on_the_inputs_device():
    # the "meta" device (shapes only) stands in for a GPU: a helper tensor (anchors, grid) made on the
    # default CPU device instead of the input's raises when combined with the input
    meta = torch.device("meta")
    spec = yolo_specs(TINY_ANCHORS, [([4, 5], 32)], 2)[0]
    xy, wh, t, obj, cls = decode_layer(torch.zeros(2, 14, 2, 3, device=meta), spec)
    assert {v.device for v in (xy, wh, t, obj, cls)} == {meta} and xy.shape == (2, 2, 2, 3, 2)
    best = YoloLoss([spec]).match_iou(xy, wh, torch.zeros(2, 3, 4, device=meta),
                                      torch.ones(2, 3, dtype=torch.bool, device=meta), cls)
    assert best.device == meta and best.shape == (2, 2, 2, 3)


def test_ciou_keeps_box_c_alpha_epsilon_on_elongated_boxes():
    # a square against a flat box (aspect 20): v is large, so box_ciou's ``+ 0.000001`` in alpha moves the
    # value by about 7.5e-8 -- float64 resolves it against the numpy port of box.c
    a, b = [0.5, 0.5, 0.2, 0.2], [0.5, 0.5, 0.4, 0.02]
    got = bbox_iou(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64), "ciou").item()
    assert got == pytest.approx(_box_kinds_reference(a, b)["ciou"], abs=1e-8)


def test_focal_factor_at_a_zero_probability_is_finite():
    # darknet: pt = p + 0.000000000000001F keeps log(pt) finite; at p = 0 the factor is
    # alpha * -(1 - 0) * (0 + 0 - 1) = 0.5 (a probability of exactly 0: new_coords, or a saturated logistic)
    w = YoloLoss.focal_weights(torch.tensor([[0.0, 0.7]]), torch.tensor([[1.0, 0.0]]), torch.tensor([0]),
                               torch.tensor([0]), probs=True)
    assert torch.allclose(w, torch.tensor([[0.5, 0.5]]), atol=1e-6)


def test_new_coords_saturated_probabilities_give_finite_bounded_gradients():
    """new_coords=1 outputs are probabilities: one that is exactly 1 at a negative, or exactly 0 at the
    positive (objectness and its class), keeps the loss finite and the gradients bounded (darknet's
    deltas t - p are at most 1 in size)."""
    spec = _kind_spec(new_coords=1, ignore_thresh=0.7)
    raw = torch.full((1, 18, 4, 4), 0.5)
    raw[0, 4, 0, 0] = 1.0                              # slot 0 at (0, 0): a plain negative, p = 1
    raw[0, 6 + 4, 2, 2] = 0.0                          # the positive (slot 1 at (2, 2)): objectness 0
    raw[0, 6 + 5, 2, 2] = 0.0                          # and its truth's class 0
    raw.requires_grad_(True)
    loss, items = YoloLoss([spec])([raw], torch.tensor([[0, 0, 40.0, 40.0, 37.0, 58.0]]))
    assert items["positives"] == 1 and math.isfinite(loss.item())
    loss.backward()
    assert torch.isfinite(raw.grad).all() and raw.grad.abs().max().item() < 1e3
