"""Darknet's hand-derived IoU-family box gradients (``dx_box_iou``), vectorized in torch.

Source: AlexeyAB/darknet ``src/box.c`` ``dx_box_iou`` (from g-darknet, Rezatofighi et al. 2019, and
DIoU-darknet, Zheng et al. AAAI 2020), applied by ``src/yolo_layer.c`` ``delta_yolo_box``. darknet does
not differentiate its IoU loss: it writes ``delta`` (the direction that *raises* the IoU kind) from
these formulas, which differ from the exact derivative (autograd) in three places:

* the IoU / GIoU part's width and height terms are ``d/dr - d/dl`` and ``d/db - d/dt`` (the exact
  derivative halves them: ``r = x + w/2``);
* the DIoU / CIoU distance term's x, y derivative subtracts the enclosing box's share
  (``2 (t_x - p_x) C - C' S``, the exact one adds it);
* the CIoU aspect-ratio term's w, h derivative drops the ``1 / (w^2 + h^2)`` factor (as the DIoU paper
  recommends, section 3.3), and ``alpha`` is held constant.

With no overlap (``Iw <= 0`` or ``Ih <= 0``) GIoU keeps only its enclosing-box term and DIoU / CIoU only
their distance (and aspect) terms; plain IoU keeps darknet's unclamped intersection there.

:func:`darknet_box_delta` returns darknet's ``(dx, dy, dw, dh)`` for boxes in 0..1 image units; the loss
(:mod:`.loss`, ``box_grad="darknet"``) applies them to the raw x, y, w, h outputs as
``delta_yolo_box`` does. Torch only (the trainer); no gradient.
"""

import math

import torch

__all__ = ["darknet_box_delta"]


def darknet_box_delta(pred: torch.Tensor, truth: torch.Tensor, kind: str) -> torch.Tensor:
    """darknet ``dx_box_iou(pred, truth, kind)``: ``(dx, dy, dw, dh)`` that raise the IoU kind.

    Args:
        pred, truth: ``[P, 4]`` float ``(cx, cy, w, h)`` in 0..1 image units (darknet's ``box``);
            a zero predicted width or height is taken as 1 (``delta_yolo_box``: "avoid nan").
        kind: ``iou``, ``giou``, ``diou`` or ``ciou``.

    Returns:
        ``[P, 4]`` float, darknet's ``dxrep`` ``(dt, db, dl, dr)``, which ``delta_yolo_box`` uses as
        ``(dx, dy, dw, dh)`` before its ``exp(tw)`` and ``iou_normalizer`` factors. NaN and inf become 0
        (``fix_nan_inf``). No gradient.

    Raises:
        ValueError: an unknown kind.
    """
    if kind not in ("iou", "giou", "diou", "ciou"):
        raise ValueError(f"darknet's dx_box_iou has no {kind!r} (iou, giou, diou, ciou)")
    with torch.no_grad():
        px, py = pred[:, 0], pred[:, 1]
        pw = torch.where(pred[:, 2] == 0, torch.ones_like(pred[:, 2]), pred[:, 2])
        ph = torch.where(pred[:, 3] == 0, torch.ones_like(pred[:, 3]), pred[:, 3])
        tx, ty, tw, th = truth.unbind(1)
        top, bot, left, right = py - ph / 2, py + ph / 2, px - pw / 2, px + pw / 2
        p_t, p_b = torch.minimum(top, bot), torch.maximum(top, bot)
        p_l, p_r = torch.minimum(left, right), torch.maximum(left, right)
        t_t, t_b, t_l, t_r = ty - th / 2, ty + th / 2, tx - tw / 2, tx + tw / 2
        zero = torch.zeros_like(px)

        X = (p_b - p_t) * (p_r - p_l)
        Xhat = (t_b - t_t) * (t_r - t_l)
        Ih = torch.minimum(p_b, t_b) - torch.maximum(p_t, t_t)
        Iw = torch.minimum(p_r, t_r) - torch.maximum(p_l, t_l)
        I = Iw * Ih  # noqa: E741  (darknet's name; not clamped, as there)
        U = X + Xhat - I
        S = (px - tx) ** 2 + (py - ty) ** 2
        gCw = torch.maximum(p_r, t_r) - torch.minimum(p_l, t_l)
        gCh = torch.maximum(p_b, t_b) - torch.minimum(p_t, t_t)
        gC = gCw * gCh

        dX = {"t": -(p_r - p_l), "b": p_r - p_l, "l": -(p_b - p_t), "r": p_b - p_t}
        dI = {"t": torch.where(p_t > t_t, -Iw, zero), "b": torch.where(p_b < t_b, Iw, zero),
              "l": torch.where(p_l > t_l, -Ih, zero), "r": torch.where(p_r < t_r, Ih, zero)}
        dU = {k: dX[k] - dI[k] for k in dX}
        dC = {"t": torch.where(p_t < t_t, -gCw, zero), "b": torch.where(p_b > t_b, gCw, zero),
              "l": torch.where(p_l < t_l, -gCh, zero), "r": torch.where(p_r > t_r, gCh, zero)}

        p = {k: torch.where(U > 0, (U * dI[k] - I * dU[k]) / (U * U), zero) for k in dX}
        tb_ok, lr_ok = top < bot, left < right
        p_dt = torch.where(tb_ok, p["t"], p["b"])
        p_db = torch.where(tb_ok, p["b"], p_dt)
        p_dl = torch.where(lr_ok, p["l"], p["r"])
        p_dr = torch.where(lr_ok, p["r"], p_dl)

        if kind == "giou":
            g = {k: (gC * dU[k] - U * dC[k]) / (gC * gC) for k in dX}
            some_c = gC > 0
            p_dt, p_db = torch.where(some_c, p_dt + g["t"], p_dt), torch.where(some_c, p_db + g["b"], p_db)
            p_dl, p_dr = torch.where(some_c, p_dl + g["l"], p_dl), torch.where(some_c, p_dr + g["r"], p_dr)
            apart = (Iw <= 0) | (Ih <= 0)
            p_dt, p_db = torch.where(apart, g["t"], p_dt), torch.where(apart, g["b"], p_db)
            p_dl, p_dr = torch.where(apart, g["l"], p_dl), torch.where(apart, g["r"], p_dr)

        p_dx, p_dy = p_dl + p_dr, p_dt + p_db
        p_dw, p_dh = p_dr - p_dl, p_db - p_dt          # darknet: "we do not divide by 2"

        if kind in ("diou", "ciou"):
            Ct = torch.minimum(py - ph / 2, t_t)
            Cb = torch.maximum(py + ph / 2, t_b)
            Cl = torch.minimum(px - pw / 2, t_l)
            Cr = torch.maximum(px + pw / 2, t_r)
            Cw, Ch = Cr - Cl, Cb - Ct
            C = Cw * Cw + Ch * Ch
            one = torch.ones_like(px)
            dCt_dy, dCt_dh = torch.where(p_t < t_t, one, zero), torch.where(p_t < t_t, -0.5 * one, zero)
            dCb_dy, dCb_dh = torch.where(p_b > t_b, one, zero), torch.where(p_b > t_b, 0.5 * one, zero)
            dCl_dx, dCl_dw = torch.where(p_l < t_l, one, zero), torch.where(p_l < t_l, -0.5 * one, zero)
            dCr_dx, dCr_dw = torch.where(p_r > t_r, one, zero), torch.where(p_r > t_r, 0.5 * one, zero)
            dCw_dx, dCw_dw = dCr_dx - dCl_dx, dCr_dw - dCl_dw           # dCw_dy = dCw_dh = 0
            dCh_dy, dCh_dh = dCb_dy - dCt_dy, dCb_dh - dCt_dh           # dCh_dx = dCh_dw = 0
            d_x = (2 * (tx - px) * C - (2 * Cw * dCw_dx) * S) / (C * C)
            d_y = (2 * (ty - py) * C - (2 * Ch * dCh_dy) * S) / (C * C)
            d_w = (2 * Cw * dCw_dw) * S / (C * C)
            d_h = (2 * Ch * dCh_dh) * S / (C * C)
            if kind == "ciou":
                diff = torch.atan(tw / th) - torch.atan(pw / ph)
                ar_loss = 4 / (math.pi * math.pi) * diff * diff
                alpha = ar_loss / (1 - I / U + ar_loss + 0.000001)
                d_w = d_w + alpha * (8 / (math.pi * math.pi) * diff * ph)
                d_h = d_h + alpha * (-8 / (math.pi * math.pi) * diff * pw)
            some_c = C > 0
            p_dx, p_dy = torch.where(some_c, p_dx + d_x, p_dx), torch.where(some_c, p_dy + d_y, p_dy)
            p_dw, p_dh = torch.where(some_c, p_dw + d_w, p_dw), torch.where(some_c, p_dh + d_h, p_dh)
            apart = (Iw <= 0) | (Ih <= 0)
            p_dx, p_dy = torch.where(apart, d_x, p_dx), torch.where(apart, d_y, p_dy)
            p_dw, p_dh = torch.where(apart, d_w, p_dw), torch.where(apart, d_h, p_dh)

        out = torch.stack((p_dx, p_dy, p_dw, p_dh), 1)
        return torch.where(torch.isfinite(out), out, torch.zeros_like(out))
