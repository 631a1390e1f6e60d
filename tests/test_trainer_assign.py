"""Trainer assignment: darknet's ``iou_thresh`` / ``iou_thresh_kind`` rule and ``scale_x_y`` (src/yolo_layer.c)."""

import math

import numpy as np
import pytest
import torch

from yolo4.trainer.assign import assign, assign_layer, centred_iou, wh_iou

from .test_trainer_loss import V4_ANCHORS, pairs, tiny_specs, yolo_specs

torch.set_num_threads(2)

GRIDS = [(32, 32), (16, 16), (8, 8)]           # yolov4 at 256 x 256: strides 8, 16, 32


def _v4(**kw):
    return yolo_specs(V4_ANCHORS, [([0, 1, 2], 8), ([3, 4, 5], 16), ([6, 7, 8], 32)], 3, **kw)


def _centred_reference(wh1, wh2, kind):
    """numpy port of darknet box_iou_kind for two boxes at (0, 0) (box.c box_iou/box_giou/box_ciou)."""
    (w1, h1), (w2, h2) = wh1, wh2
    inter = min(w1, w2) * min(h1, h2)
    union = w1 * h1 + w2 * h2 - inter
    iou = inter / union
    if kind == "giou":
        c = max(w1, w2) * max(h1, h2)
        return iou - (c - union) / c
    if kind == "ciou":
        v = 4 / math.pi ** 2 * (math.atan(w2 / h2) - math.atan(w1 / h1)) ** 2
        return iou - v * v / (1 - iou + v + 1e-6)
    return iou                                  # iou; diou of boxes sharing a centre is the IoU


@pytest.mark.parametrize("kind", ["iou", "giou", "diou", "ciou"])
def test_centred_iou_matches_darknet_box_iou_kind(kind):
    wh1 = torch.tensor([[40.0, 40.0], [10.0, 30.0]], dtype=torch.float64)
    wh2 = torch.tensor(V4_ANCHORS, dtype=torch.float64)
    got = centred_iou(wh1, wh2, kind)
    want = np.array([[_centred_reference(a, b, kind) for b in wh2.tolist()] for a in wh1.tolist()])
    assert np.allclose(got.numpy(), want, atol=1e-9)
    if kind in ("iou", "diou"):
        assert torch.equal(got, wh_iou(wh1, wh2))
    else:
        assert (got < wh_iou(wh1, wh2) - 1e-6).any()


def test_iou_thresh_boundary_adds_exactly_the_anchors_above_it():
    # truth 40x40 vs anchor 3 (36x75): IoU 1440/2860 = .5035; anchor 4 (76x55): 1600/4180 = .3828
    targets = torch.tensor([[0, 0, 100.0, 60.0, 40.0, 40.0]])
    _, l16, _ = assign(targets, _v4(iou_thresh=0.50), GRIDS)
    assert l16.a.tolist() == [0]
    _, l16, _ = assign(targets, _v4(iou_thresh=0.51), GRIDS)
    assert l16.a.numel() == 0
    _, l16, _ = assign(targets, _v4(iou_thresh=0.38), GRIDS)
    assert sorted(l16.a.tolist()) == [0, 1]
    # the best anchor (2) is assigned once, never duplicated by the threshold rule
    l8, _, _ = assign(targets, _v4(iou_thresh=0.0), GRIDS)
    assert sorted(l8.a.tolist()) == [0, 1, 2]


def test_iou_thresh_kind_giou_is_stricter():
    # 40x40 vs 36x75: GIoU = .5035 - (40*75 - 2860)/(40*75) = .4569 < .48 < IoU .5035
    targets = torch.tensor([[0, 0, 100.0, 60.0, 40.0, 40.0]])
    _, l16, _ = assign(targets, _v4(iou_thresh=0.48), GRIDS)
    assert l16.a.tolist() == [0]
    _, l16, _ = assign(targets, _v4(iou_thresh=0.48, iou_thresh_kind="giou"), GRIDS)
    assert l16.a.numel() == 0
    _, l16, _ = assign(targets, _v4(iou_thresh=0.45, iou_thresh_kind="giou"), GRIDS)
    assert l16.a.tolist() == [0]


def test_iou_thresh_kind_ciou_uses_normalized_aspect_ratios():
    # darknet compares w / net_w and h / net_h: on a 512 x 256 input (stride 16 grid 16 x 32) the
    # aspect ratios (and so CIoU's v) differ from the pixel ones
    spec = _v4(iou_thresh=0.4, iou_thresh_kind="ciou")[1]
    truth = (40.0, 40.0)
    net = (512.0, 256.0)
    norm = [_centred_reference((truth[0] / net[0], truth[1] / net[1]), (w / net[0], h / net[1]), "ciou")
            for w, h in V4_ANCHORS]
    pixel = [_centred_reference(truth, a, "ciou") for a in V4_ANCHORS]
    thresh = 0.5 * (norm[3] + pixel[3])        # anchor 3 (slot 0) lies between the two values
    assert min(norm[3], pixel[3]) < thresh < max(norm[3], pixel[3])
    spec.iou_thresh = thresh
    lt = assign_layer(torch.tensor([[0, 0, 100.0, 60.0, *truth]]), spec, (16, 32))
    assert (0 in lt.a.tolist()) == (norm[3] > thresh)


def test_scale_x_y_leaves_the_assignment_to_the_truths_own_cell():
    # darknet: i = (int)(truth.x * l.w) whatever scale_x_y (no neighbour-cell positives)
    targets = torch.tensor([[0, 0, 96.5, 63.9, 130.0, 165.0],     # just right of / above a border
                            [0, 1, 95.9, 64.0, 130.0, 165.0]])
    got = {s: pairs(assign_layer(targets, tiny_specs(scale_x_y=s)[0], (8, 8))) for s in (1.0, 1.05, 2.0)}
    assert got[1.0] == got[1.05] == got[2.0] == [(0, 0, 1, 1, 3), (1, 0, 1, 2, 2)]
