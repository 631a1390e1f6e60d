"""darknet's box gradients (yolo4.trainer.box_grad.darknet_box_delta) against a line-by-line scalar port of
darknet's ``dx_box_iou`` (src/box.c), and its three documented departures from the exact derivative checked
with autograd on :func:`yolo4.trainer.loss.bbox_iou`."""

import math

import numpy as np
import pytest
import torch

from yolo4.trainer.box_grad import darknet_box_delta
from yolo4.trainer.loss import bbox_iou

KINDS = ["iou", "giou", "diou", "ciou"]


def _dx_box_iou(pred, truth, kind):
    """darknet src/box.c dx_box_iou, one box pair, float64, statement by statement (the returned dxrep's
    dt, db, dl, dr are dx, dy, dw, dh), then yolo_layer.c's fix_nan_inf."""
    px, py, pw, ph = pred
    tx, ty, tw, th = truth
    if pw == 0:
        pw = 1.0
    if ph == 0:
        ph = 1.0
    top, bot, left, right = py - ph / 2, py + ph / 2, px - pw / 2, px + pw / 2
    pred_t, pred_b = min(top, bot), max(top, bot)
    pred_l, pred_r = min(left, right), max(left, right)
    t_top, t_bot, t_left, t_right = ty - th / 2, ty + th / 2, tx - tw / 2, tx + tw / 2
    X = (pred_b - pred_t) * (pred_r - pred_l)
    Xhat = (t_bot - t_top) * (t_right - t_left)
    Ih = min(pred_b, t_bot) - max(pred_t, t_top)
    Iw = min(pred_r, t_right) - max(pred_l, t_left)
    I = Iw * Ih  # noqa: E741
    U = X + Xhat - I
    S = (px - tx) ** 2 + (py - ty) ** 2
    giou_Cw = max(pred_r, t_right) - min(pred_l, t_left)
    giou_Ch = max(pred_b, t_bot) - min(pred_t, t_top)
    giou_C = giou_Cw * giou_Ch
    dX_wrt_t, dX_wrt_b = -(pred_r - pred_l), pred_r - pred_l
    dX_wrt_l, dX_wrt_r = -(pred_b - pred_t), pred_b - pred_t
    dI_wrt_t = -Iw if pred_t > t_top else 0
    dI_wrt_b = Iw if pred_b < t_bot else 0
    dI_wrt_l = -Ih if pred_l > t_left else 0
    dI_wrt_r = Ih if pred_r < t_right else 0
    dU_wrt_t, dU_wrt_b = dX_wrt_t - dI_wrt_t, dX_wrt_b - dI_wrt_b
    dU_wrt_l, dU_wrt_r = dX_wrt_l - dI_wrt_l, dX_wrt_r - dI_wrt_r
    dC_wrt_t = -giou_Cw if pred_t < t_top else 0
    dC_wrt_b = giou_Cw if pred_b > t_bot else 0
    dC_wrt_l = -giou_Ch if pred_l < t_left else 0
    dC_wrt_r = giou_Ch if pred_r > t_right else 0
    p_dt = p_db = p_dl = p_dr = 0.0
    if U > 0:
        p_dt = (U * dI_wrt_t - I * dU_wrt_t) / (U * U)
        p_db = (U * dI_wrt_b - I * dU_wrt_b) / (U * U)
        p_dl = (U * dI_wrt_l - I * dU_wrt_l) / (U * U)
        p_dr = (U * dI_wrt_r - I * dU_wrt_r) / (U * U)
    p_dt = p_dt if top < bot else p_db
    p_db = p_db if top < bot else p_dt
    p_dl = p_dl if left < right else p_dr
    p_dr = p_dr if left < right else p_dl

    def div(a, b):
        return a / b if b != 0 else (math.copysign(math.inf, a) if a != 0 else math.nan)

    if kind == "giou":
        if giou_C > 0:
            p_dt += div(giou_C * dU_wrt_t - U * dC_wrt_t, giou_C * giou_C)
            p_db += div(giou_C * dU_wrt_b - U * dC_wrt_b, giou_C * giou_C)
            p_dl += div(giou_C * dU_wrt_l - U * dC_wrt_l, giou_C * giou_C)
            p_dr += div(giou_C * dU_wrt_r - U * dC_wrt_r, giou_C * giou_C)
        if Iw <= 0 or Ih <= 0:
            p_dt = div(giou_C * dU_wrt_t - U * dC_wrt_t, giou_C * giou_C)
            p_db = div(giou_C * dU_wrt_b - U * dC_wrt_b, giou_C * giou_C)
            p_dl = div(giou_C * dU_wrt_l - U * dC_wrt_l, giou_C * giou_C)
            p_dr = div(giou_C * dU_wrt_r - U * dC_wrt_r, giou_C * giou_C)
    Ct, Cb = min(py - ph / 2, ty - th / 2), max(py + ph / 2, ty + th / 2)
    Cl, Cr = min(px - pw / 2, tx - tw / 2), max(px + pw / 2, tx + tw / 2)
    Cw, Ch = Cr - Cl, Cb - Ct
    C = Cw * Cw + Ch * Ch
    dCt_dx, dCt_dy, dCt_dw, dCt_dh = 0, (1 if pred_t < t_top else 0), 0, (-0.5 if pred_t < t_top else 0)
    dCb_dx, dCb_dy, dCb_dw, dCb_dh = 0, (1 if pred_b > t_bot else 0), 0, (0.5 if pred_b > t_bot else 0)
    dCl_dx, dCl_dy, dCl_dw, dCl_dh = (1 if pred_l < t_left else 0), 0, (-0.5 if pred_l < t_left else 0), 0
    dCr_dx, dCr_dy, dCr_dw, dCr_dh = (1 if pred_r > t_right else 0), 0, (0.5 if pred_r > t_right else 0), 0
    dCw_dx, dCw_dy, dCw_dw, dCw_dh = dCr_dx - dCl_dx, dCr_dy - dCl_dy, dCr_dw - dCl_dw, dCr_dh - dCl_dh
    dCh_dx, dCh_dy, dCh_dw, dCh_dh = dCb_dx - dCt_dx, dCb_dy - dCt_dy, dCb_dw - dCt_dw, dCb_dh - dCt_dh
    p_dx, p_dy = p_dl + p_dr, p_dt + p_db
    p_dw, p_dh = p_dr - p_dl, p_db - p_dt
    if kind in ("diou", "ciou"):
        ex = div(2 * (tx - px) * C - (2 * Cw * dCw_dx + 2 * Ch * dCh_dx) * S, C * C)
        ey = div(2 * (ty - py) * C - (2 * Cw * dCw_dy + 2 * Ch * dCh_dy) * S, C * C)
        ew = div((2 * Cw * dCw_dw + 2 * Ch * dCh_dw) * S, C * C)
        eh = div((2 * Cw * dCw_dh + 2 * Ch * dCh_dh) * S, C * C)
        if kind == "ciou":
            ar_gt, ar_pred = tw / th, pw / ph
            ar_loss = 4 / (math.pi * math.pi) * (math.atan(ar_gt) - math.atan(ar_pred)) ** 2
            alpha = ar_loss / (1 - I / U + ar_loss + 0.000001)
            ew += alpha * 8 / (math.pi * math.pi) * (math.atan(ar_gt) - math.atan(ar_pred)) * ph
            eh += alpha * -8 / (math.pi * math.pi) * (math.atan(ar_gt) - math.atan(ar_pred)) * pw
        if C > 0:
            p_dx, p_dy, p_dw, p_dh = p_dx + ex, p_dy + ey, p_dw + ew, p_dh + eh
        if Iw <= 0 or Ih <= 0:
            p_dx, p_dy, p_dw, p_dh = ex, ey, ew, eh
    return [v if math.isfinite(v) else 0.0 for v in (p_dx, p_dy, p_dw, p_dh)]


def _pairs(n=400, seed=0):
    """Box pairs in 0..1 units: overlapping, nested, apart on one or both axes, equal centres, equal sizes."""
    rng = np.random.default_rng(seed)
    pred = np.column_stack([rng.uniform(0.1, 0.9, n), rng.uniform(0.1, 0.9, n),
                            rng.uniform(0.02, 0.6, n), rng.uniform(0.02, 0.6, n)])
    truth = np.column_stack([rng.uniform(0.1, 0.9, n), rng.uniform(0.1, 0.9, n),
                             rng.uniform(0.02, 0.6, n), rng.uniform(0.02, 0.6, n)])
    special = [([0.5, 0.5, 0.2, 0.3], [0.5, 0.5, 0.4, 0.1]),    # same centre: no distance term
               ([0.3, 0.3, 0.2, 0.2], [0.3, 0.3, 0.2, 0.2]),    # identical
               ([0.4, 0.5, 0.1, 0.1], [0.45, 0.5, 0.5, 0.5]),   # nested
               ([0.1, 0.1, 0.1, 0.1], [0.8, 0.8, 0.1, 0.1]),    # apart on both axes
               ([0.2, 0.5, 0.1, 0.4], [0.6, 0.5, 0.1, 0.4]),    # apart on x only, same height
               ([0.5, 0.5, 0.0, 0.3], [0.5, 0.6, 0.2, 0.2])]    # zero predicted width: taken as 1
    pred = np.vstack([pred] + [np.array([p]) for p, _ in special])
    truth = np.vstack([truth] + [np.array([t]) for _, t in special])
    return pred, truth


@pytest.mark.parametrize("kind", KINDS)
def test_equals_darknets_dx_box_iou(kind):
    pred, truth = _pairs()
    got = darknet_box_delta(torch.tensor(pred), torch.tensor(truth), kind).numpy()
    want = np.array([_dx_box_iou(p, t, kind) for p, t in zip(pred, truth)])
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    assert (np.abs(want) > 1e-6).mean() > 0.5  # the comparison is not among zeros


def _exact(pred, truth, kind):
    """d(kind)/d(x, y, w, h) of the prediction by autograd (alpha held constant, as the paper and darknet)."""
    p = torch.tensor(pred, dtype=torch.float64, requires_grad=True)
    bbox_iou(p, torch.tensor(truth, dtype=torch.float64), kind, eps=0.0).sum().backward()
    return p.grad.numpy()


def test_iou_and_giou_width_terms_are_twice_the_exact_derivative():
    """darknet: dw = d/dr - d/dl, "we do not divide by 2"; dx, dy are exact."""
    pred, truth = [[0.45, 0.42, 0.3, 0.2]], [[0.5, 0.5, 0.25, 0.3]]  # overlapping, neither inside
    for kind in ("iou", "giou"):
        dk = darknet_box_delta(torch.tensor(pred, dtype=torch.float64), torch.tensor(truth, dtype=torch.float64),
                               kind).numpy()[0]
        ex = _exact(pred, truth, kind)[0]
        np.testing.assert_allclose(dk[:2], ex[:2], rtol=1e-9)
        np.testing.assert_allclose(dk[2:], 2 * ex[2:], rtol=1e-9)
        assert np.abs(ex).min() > 1e-3


def test_diou_centre_terms_subtract_the_enclosing_box_share():
    """x, y: darknet has (2 (t - p) C - C' S) / C^2 where d(-S/C)/dx = (2 (t - p) C + C' S) / C^2; the w, h
    terms of the distance part agree with the exact derivative (the IoU part's are doubled)."""
    pred, truth = [[0.3, 0.35, 0.3, 0.2]], [[0.5, 0.5, 0.25, 0.3]]
    p64, t64 = torch.tensor(pred, dtype=torch.float64), torch.tensor(truth, dtype=torch.float64)
    dk_diou = darknet_box_delta(p64, t64, "diou").numpy()[0]
    dk_iou = darknet_box_delta(p64, t64, "iou").numpy()[0]
    ex_dist = _exact(pred, truth, "diou")[0] - _exact(pred, truth, "iou")[0]   # d(-S/C)
    px, py, pw, ph = pred[0]
    tx, ty, tw, th = truth[0]
    cw = max(px + pw / 2, tx + tw / 2) - min(px - pw / 2, tx - tw / 2)
    ch = max(py + ph / 2, ty + th / 2) - min(py - ph / 2, ty - th / 2)
    C, S = cw * cw + ch * ch, (px - tx) ** 2 + (py - ty) ** 2
    # the prediction holds the enclosing box's left and top edges: dC/dx = -2 cw, dC/dy = -2 ch
    assert ex_dist[0] == pytest.approx((2 * (tx - px) * C + (-2 * cw) * S) / C ** 2, rel=1e-9)
    assert dk_diou[0] - dk_iou[0] == pytest.approx((2 * (tx - px) * C - (-2 * cw) * S) / C ** 2, rel=1e-9)
    assert dk_diou[1] - dk_iou[1] == pytest.approx((2 * (ty - py) * C - (-2 * ch) * S) / C ** 2, rel=1e-9)
    np.testing.assert_allclose(dk_diou[2:] - dk_iou[2:], ex_dist[2:], rtol=1e-9)


def test_ciou_aspect_term_drops_the_w2_plus_h2_factor():
    """Same centre (no distance term), nested boxes: darknet's CIoU - DIoU w, h terms are alpha * 8/pi^2 *
    (atan(wg/hg) - atan(w/h)) * (h, -w); the exact ones carry 1 / (w^2 + h^2) more."""
    pred, truth = [[0.5, 0.5, 0.2, 0.3]], [[0.5, 0.5, 0.5, 0.4]]
    p64, t64 = torch.tensor(pred, dtype=torch.float64), torch.tensor(truth, dtype=torch.float64)
    d_ar = (darknet_box_delta(p64, t64, "ciou") - darknet_box_delta(p64, t64, "diou")).numpy()[0]
    ex_ar = _exact(pred, truth, "ciou")[0] - _exact(pred, truth, "diou")[0]
    w, h = 0.2, 0.3
    np.testing.assert_allclose(d_ar[:2], 0.0, atol=1e-15)
    np.testing.assert_allclose(ex_ar[2:], d_ar[2:] / (w * w + h * h), rtol=1e-6)
    assert d_ar[2] > 0 > d_ar[3]  # towards the truth's wider shape


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="'mse'"):
        darknet_box_delta(torch.zeros(1, 4), torch.ones(1, 4), "mse")


# ---- in the loss: box_grad="darknet" puts delta_yolo_box's deltas on the raw outputs -------------------

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("new_coords", [0, 1])
def test_the_loss_gradient_on_the_raw_box_is_minus_darknets_delta(kind, new_coords):
    """delta_yolo_box: dx, dy as dx_box_iou gives them, dw, dh times exp(tw) (nothing with new_coords), all
    times iou_normalizer; the loss gradient on the raw x, y, w, h is -delta. One 1-class [yolo] layer
    (stride 16, 4x4 cells, yolov4-tiny's mask 1,2,3), one truth 37x58 at (44, 40): slot 1, cell (2, 2)."""
    from yolo4.trainer.loss import YoloLoss, decode_layer

    from .test_trainer_loss import TINY_ANCHORS, yolo_specs

    spec = yolo_specs(TINY_ANCHORS, [([1, 2, 3], 16)], 1, iou_loss=kind, iou_normalizer=0.07,
                      ignore_thresh=1.0, new_coords=new_coords, scale_x_y=1.05)[0]
    raw = torch.zeros(1, 18, 4, 4, dtype=torch.float64)
    # partly overlapping the truth on both axes (nested boxes would give zero IoU gradients)
    raw[0, 6:10, 2, 2] = torch.tensor([2.0, -2.0, -0.1, -0.2] if not new_coords else [0.9, 0.1, 0.493, 0.45],
                                      dtype=torch.float64)
    raw.requires_grad_(True)
    truth = [44.0, 40.0, 37.0, 58.0]
    YoloLoss([spec], box_grad="darknet")([raw], torch.tensor([[0, 0] + truth], dtype=torch.float64))[0].backward()
    got = raw.grad[0, 6:10, 2, 2].numpy()

    xy, wh, t, _, _ = decode_layer(raw.detach(), spec)
    pred = [v / 64 for v in (xy[0, 1, 2, 2].tolist() + wh[0, 1, 2, 2].tolist())]
    delta = np.array(_dx_box_iou(pred, [v / 64 for v in truth], kind))
    if not new_coords:
        delta[2:] *= np.exp(t[0, 1, 2, 2, 2:].numpy())
    np.testing.assert_allclose(got, -0.07 * delta, rtol=1e-9, atol=1e-15)
    assert np.abs(got).min() > 1e-5
