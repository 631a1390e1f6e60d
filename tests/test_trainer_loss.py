"""Trainer: darknet anchor assignment, ignore rule, IoU family, loss gradients, overfitting."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from yolo4.model.cfg import YoloSpec, build_specs, parse_cfg_text
from yolo4.trainer.assign import assign, assign_layer, wh_iou
from yolo4.trainer.loss import YoloLoss, bbox_iou, decode_layer

torch.set_num_threads(2)

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


def test_loss_decreases_overfitting_two_images(shared_data):
    from yolo4.model import load_darknet
    from yolo4.trainer.dataset import YoloDataset, collate
    from yolo4.trainer.train import param_groups

    torch.manual_seed(0)
    recs = _coco128_records(shared_data, ["000000000009", "000000000025"])
    model = load_darknet(shared_data / "darknet/cfg/yolov4-tiny.cfg",
                         shared_data / "weights/yolov4-tiny.weights", num_classes=80).train()
    images, targets, _ = collate([YoloDataset(recs, (128, 128), False)[i] for i in range(2)])
    assert targets.shape[0] == sum(len(r.boxes) for r in recs)
    x = images.float() / 255
    loss_fn = YoloLoss([yl.spec for yl in model.yolo_layers])
    opt = torch.optim.SGD(param_groups(model, 5e-4), lr=2.61e-3, momentum=0.9)
    losses = []
    for _ in range(20):
        loss, items = loss_fn(model(x, raw=True), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(items["loss"])
        assert items["positives"] > 0
    assert all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-3:]) < 0.2 * losses[0], losses


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
    g_dk, spec = _one_positive("ciou", "darknet")
    g_chain, _ = _one_positive("ciou", "chain")
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
    gets ``delta = obj_normalizer * (iou - p)`` (target iou, not ignored); a positive there keeps that
    target instead of 1; below the threshold, negatives 0 and positives 1 as without it."""
    spec, raw, targets = _overlap_setup(0.0)
    smooth = dataclasses.replace(spec, objectness_smooth=1)
    raw[0, 2, 2, 2] = math.log(30 / 23)                  # slot 0: 30x58, IoU 30/37 with the truth
    iou = 30 / 37
    assert _obj_grad(spec, raw, targets) == 0.0          # ignored without smoothing
    assert _obj_grad(smooth, raw, targets) == pytest.approx(0.5 - iou, abs=1e-5)
    # under the threshold (ignore_thresh .85) a plain negative either way: target 0
    assert _obj_grad(dataclasses.replace(smooth, ignore_thresh=0.85), raw, targets) == pytest.approx(0.5, abs=1e-6)
    # the positive (slot 1, anchor 37x58) made 30x58 too: target iou with smoothing, 1 without, and
    # 1 again when its IoU is under the threshold
    raw[0, 6 + 2, 2, 2] = math.log(30 / 37)

    def pos_grad(sp):
        r = raw.clone().requires_grad_(True)
        YoloLoss([sp])([r], targets)[0].backward()
        return r.grad[0, 6 + 4, 2, 2].item()

    assert pos_grad(smooth) == pytest.approx(0.5 - iou, abs=1e-5)
    assert pos_grad(spec) == pytest.approx(0.5 - 1.0, abs=1e-6)
    assert pos_grad(dataclasses.replace(smooth, ignore_thresh=0.85)) == pytest.approx(0.5 - 1.0, abs=1e-6)
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
        assert r.grad[0, 6:10, 2, 2].abs().max().item() < 1e-5         # at the optimum
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
