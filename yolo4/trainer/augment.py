"""Training-time image augmentation, numpy/cv2: darknet's detector bag of freebies.

Geometry is the shared :func:`yolo4.runtime.preprocess.resize_one` (plain resize, or letterbox when
the cfg says ``letter_box=1``): darknet trains with the resize it infers with, so this module never
resizes by itself. Per image (:func:`prepare_sample`, darknet ``load_data_detection`` in ``src/data.c``
and ``image_data_augmentation`` in ``src/image_opencv.cpp``):

- **jitter** (``[yolo] jitter``): each side of the original image is moved by a random
  ``U(-jitter, jitter) * size`` (in: crop, out: pad with the image's mean colour, as darknet's
  ``image_data_augmentation``), then the crop goes through the shared resize. This is darknet's
  random scale/translate/aspect jitter.
- **rotation / shear** (``[net] angle``, darknet's key, which darknet uses only for classifiers;
  ``[net] shear``, a yolo4 extension with ultralytics' name; both in degrees, both 0 = off by
  default): one affine warp of the network-size image about its centre, rotation by
  ``U(-angle, angle)`` then shear by ``U(-shear, shear)`` in x and in y (ultralytics
  ``random_perspective``: ``M = T @ S @ R @ C``), bilinear, the border filled with the letterbox grey
  :data:`~yolo4.runtime.preprocess.PAD_VALUE_U8`. Boxes: the 4 corners are transformed, the
  enclosing box clipped to the image; a box is dropped under :data:`MIN_BOX_PX`, when its clipped
  area is under :data:`WARP_MIN_AREA` of its transformed (enclosing, unclipped) area or when its
  aspect ratio exceeds :data:`WARP_MAX_ASPECT` (ultralytics ``box_candidates``). Applied after the
  jitter and resize, before flip and HSV, so each mosaic / CutMix / MixUp part gets its own warp.
  With both 0 nothing is drawn from the random generator (the other draws stay as they were).
- **horizontal flip** with probability ``flip`` (darknet ``flip=1``: 50 %).
- **HSV** (darknet ``[net] hue``, ``saturation``, ``exposure``; ``random_distort_image``):
  ``dhue ~ U(-hue, hue)`` (fraction of the hue circle), ``dsat = rand_scale(saturation)``,
  ``dexp = rand_scale(exposure)`` where ``rand_scale(s)`` is ``U(1, s)`` or its inverse with
  probability 1/2; then ``H += dhue`` (wrapping), ``S *= dsat``, ``V *= dexp`` (saturating at 255).
- **blur** (``[net] blur=N``, ``load_data_detection`` + ``image_data_augmentation``): one of three with
  equal probability: nothing; the background blurred (17x17 Gaussian everywhere outside the boxes);
  the whole image blurred with a ``(N // 2) * 2 + 1`` Gaussian kernel, where ``N`` is first lowered
  to ``min box side // 8`` (so ``N=1``, or a small object, means background blur). Applied last,
  once per training sample (darknet blurs each of the images a mosaic is made of).

Mixing (``[net] mosaic``, ``cutmix``, ``mixup``; parsed as darknet ``src/parser.c``
``parse_net_options`` does, see :meth:`AugmentConfig.from_cfg`): a sample is mixed with probability
1/2 (darknet ``if (random_gen() % 2 == 0) use_mixup = 0``), the other half it is a plain sample.
Darknet draws that once per loaded batch; here it is drawn per sample from the sample's own seeded
generator, so a sample is the same whatever the batch, worker count or resume point.

- **Mosaic** (darknet's geometry, ``load_data_detection`` ``use_mixup == 3``; not ultralytics'
  ``load_mosaic``, which pastes the images un-jittered at their own scale on a 2x canvas): a centre
  ``(cut_x, cut_y)`` uniform in ``[0.2, 0.8]`` of the input; each of 4 images goes through the whole
  per-image pipeline at the network size (with probability 1/2 its jitter window is pushed to the
  image corner that points away from the centre, darknet's "move each 2nd image to the corner"),
  and the quadrant takes the part of it next to the centre, skipping jitter/letterbox padding there
  (darknet's ``left_shift`` ... ``bot_shift``). Boxes are clipped to their own quadrant (darknet's
  ``mosaic_bound=1`` rule, used always: with darknet's default ``mosaic_bound=0`` a box cut by the
  centre lines would extend over another image's pixels) and dropped under :data:`MIN_BOX_PX`.
  Darknet refuses ``letter_box=1`` with mosaic; here the letterbox bars are padding like jitter's.
- **CutMix** (darknet has it only for classifiers, ``load_data_augment``; the detector prints that it is
  unsupported): a rectangle of side ``U(0.3, 0.8)`` of the input at a uniform position is copied
  from a second sample. The first sample's boxes are trimmed where the rectangle covers a whole side
  of them and kept when at least :data:`CUTMIX_MIN_VISIBLE` of their area stays visible; the second
  sample's boxes are clipped to the rectangle and kept when at least that fraction of them is inside.
- **MixUp** (darknet ``use_mixup == 1``: ``blend_images_cv(ai, 0.5, old_img, 0.5)`` + ``blend_truth``):
  ``0.5 * a + 0.5 * b`` (the fixed darknet weight, not a Beta draw) and the two label sets concatenated.

Boxes are ``[M, 4] float32`` x1, y1, x2, y2 in pixels of the image they belong to; classes ``[M] int64``.
"""

from dataclasses import dataclass, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..runtime.preprocess import PAD_VALUE_U8, resize_one

#: boxes narrower or lower than this many input pixels after augmentation are dropped
#: (darknet ``fill_truth_detection``: ``w < lowest_w = 1.0 / net_w``)
MIN_BOX_PX = 1.0
#: the mosaic centre is drawn in ``[MOSAIC_MIN_OFFSET, 1 - MOSAIC_MIN_OFFSET]`` of each side (darknet
#: ``load_data_detection``: ``min_offset = 0.2``)
MOSAIC_MIN_OFFSET = 0.2
#: CutMix rectangle sides as fractions of the input sides (darknet ``load_data_augment``: 0.3 .. 0.8)
CUTMIX_MIN, CUTMIX_MAX = 0.3, 0.8
#: CutMix keeps a box when at least this fraction of its area stays visible
CUTMIX_MIN_VISIBLE = 0.5
#: MixUp weight of the first sample (darknet ``blend_images_cv(ai, 0.5, old_img, 0.5)``)
MIXUP_WEIGHT = 0.5
#: background blur kernel (darknet ``image_data_augmentation``: ``blur == 1`` -> ``cv::Size(17, 17)``)
BACKGROUND_BLUR_KSIZE = 17
#: rotation/shear keeps a box when its clipped area is at least this fraction of its transformed
#: (enclosing, unclipped) area (ultralytics ``box_candidates`` ``area_thr=0.1``)
WARP_MIN_AREA = 0.1
#: ... and its aspect ratio ``max(w / h, h / w)`` is under this (ultralytics ``box_candidates`` ``ar_thr=20``)
WARP_MAX_ASPECT = 20.0
#: mixing modes drawn by :func:`choose_mix`
MIX_MODES = ("none", "mosaic", "cutmix", "mixup")


@dataclass
class AugmentConfig:
    """Augmentation strengths (darknet semantics; 0 / 1.0 disables each).

    Attributes:
        flip: probability of a horizontal flip (darknet ``flip=1`` -> 0.5).
        hue: ``[net] hue``, max hue shift as a fraction of the hue circle (0.1 in the yolov4 cfgs).
        saturation: ``[net] saturation``, max saturation scale (1.5).
        exposure: ``[net] exposure``, max value (brightness) scale (1.5).
        jitter: ``[yolo] jitter``, max move of each image side as a fraction of its size (0.3).
        mosaic: probability that a sample is a 4-image mosaic (``[net] mosaic=1`` -> 0.5).
        cutmix: probability of CutMix (``[net] cutmix=1`` -> 0.5; with ``mosaic=1`` 0.25 each,
            darknet's ``mixup=4`` alternation).
        mixup: probability of MixUp (``[net] mixup=1`` without mosaic/cutmix -> 0.5).
        blur: ``[net] blur`` (int, 0 = off): see the module docstring.
        angle: ``[net] angle``, max rotation in degrees (``U(-angle, angle)``; 0 = off).
        shear: ``[net] shear`` (yolo4 extension), max shear in degrees, x and y (0 = off).

    ``mosaic + cutmix + mixup`` must be at most 1 (the rest is the plain-sample probability).
    """

    flip: float = 0.5
    hue: float = 0.0
    saturation: float = 1.0
    exposure: float = 1.0
    jitter: float = 0.0
    mosaic: float = 0.0
    cutmix: float = 0.0
    mixup: float = 0.0
    blur: int = 0
    angle: float = 0.0
    shear: float = 0.0

    @classmethod
    def from_cfg(cls, net: Dict[str, Any], jitter: Optional[float] = None) -> "AugmentConfig":
        """From the ``[net]`` options (strings or numbers) and the ``[yolo]`` jitter.

        Darknet ``src/parser.c`` ``parse_net_options``: ``mixup`` (default 0) is overridden by
        ``mosaic`` + ``cutmix`` -> 4, ``cutmix`` -> 2, ``mosaic`` -> 3; then 1 = MixUp, 2 = CutMix,
        3 = mosaic, 4 = mosaic or CutMix (``load_data_augment``: ``rand_int(2, 3)``). Whichever it is
        applies to half the samples (``load_data_detection``). ``flip`` defaults to 1, ``blur`` to 0.
        A cfg without these keys (yolov4-tiny) gives no mixing and no blur; ``yolov4.cfg`` has ``mosaic=1``.
        ``angle`` and ``shear`` (degrees, default 0 = off) are read as floats; a negative value is
        taken as its absolute value (the draw is symmetric, ``U(-a, a)``, so the sign carries nothing).
        """
        def f(key, default):
            try:
                return float(net.get(key, default))
            except (TypeError, ValueError):
                return float(default)
        flip = 0.5 if f("flip", 1) else 0.0
        code = int(f("mixup", 0))
        mosaic, cutmix = bool(int(f("mosaic", 0))), bool(int(f("cutmix", 0)))
        if mosaic and cutmix:
            code = 4
        elif cutmix:
            code = 2
        elif mosaic:
            code = 3
        p = {1: (0.0, 0.0, 0.5), 2: (0.0, 0.5, 0.0), 3: (0.5, 0.0, 0.0), 4: (0.25, 0.25, 0.0)}.get(
            code, (0.0, 0.0, 0.0))
        return cls(flip=flip, hue=f("hue", 0.0), saturation=f("saturation", 1.0),
                   exposure=f("exposure", 1.0), jitter=float(jitter or 0.0),
                   mosaic=p[0], cutmix=p[1], mixup=p[2], blur=max(int(f("blur", 0)), 0),
                   angle=abs(f("angle", 0.0)), shear=abs(f("shear", 0.0)))

    @property
    def warping(self) -> bool:
        """True when rotation or shear is on."""
        return self.angle > 0 or self.shear > 0

    @property
    def mixing(self) -> bool:
        """True when any of mosaic / CutMix / MixUp is on."""
        return self.mosaic > 0 or self.cutmix > 0 or self.mixup > 0


def rand_scale(s: float, rng: np.random.Generator) -> float:
    """Darknet ``rand_scale``: ``U(1, s)``, or its inverse with probability 1/2 (s >= 1)."""
    s = max(float(s), 1.0)
    scale = float(rng.uniform(1.0, s)) if s > 1.0 else 1.0
    return scale if rng.random() < 0.5 else 1.0 / scale


def hsv_jitter(img: np.ndarray, dhue: float, dsat: float, dexp: float) -> np.ndarray:
    """Shift hue by ``dhue`` (fraction of the circle) and scale saturation/value, darknet-style.

    Args:
        img: ``HxWx3 uint8`` BGR. dhue: in [-0.5, 0.5]; dsat, dexp: positive scales.

    Returns:
        a new ``HxWx3 uint8`` BGR image (OpenCV 8-bit HSV: H in 0..179, wraps; S, V saturate at 255).
    """
    if dhue == 0 and dsat == 1 and dexp == 1:
        return img
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
    x = np.arange(256, dtype=np.float32)
    lut_h = np.mod(np.round(x + dhue * 180.0), 180).astype(np.uint8)
    lut_s = np.clip(np.round(x * dsat), 0, 255).astype(np.uint8)
    lut_v = np.clip(np.round(x * dexp), 0, 255).astype(np.uint8)
    h, s, v = cv2.split(hsv)
    hsv = cv2.merge((cv2.LUT(h, lut_h), cv2.LUT(s, lut_s), cv2.LUT(v, lut_v)))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def random_hsv(img: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """:func:`hsv_jitter` with darknet's random draws (``random_distort_image``)."""
    dhue = float(rng.uniform(-cfg.hue, cfg.hue)) if cfg.hue > 0 else 0.0
    return hsv_jitter(img, dhue, rand_scale(cfg.saturation, rng), rand_scale(cfg.exposure, rng))


def _jitter_offsets(w: int, h: int, jitter: float,
                    rng: np.random.Generator) -> Optional[Tuple[int, int, int, int]]:
    """Darknet's ``pleft, pright, ptop, pbot`` each ``U(-jitter, jitter) * side`` (int); None if no room."""
    dw, dh = int(w * jitter), int(h * jitter)
    if dw <= 0 and dh <= 0:
        return None
    pl, pr = (int(v) for v in rng.integers(-dw, dw + 1, size=2))
    pt, pb = (int(v) for v in rng.integers(-dh, dh + 1, size=2))
    return pl, pr, pt, pb


def _crop(img: np.ndarray, boxes: np.ndarray,
          offsets: Optional[Tuple[int, int, int, int]]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop window ``[pl, w - pr) x [pt, h - pb)``, outside padded with the mean colour.

    Returns ``(crop, boxes, content)``: boxes shifted and clipped into the crop, and ``content``
    ``[4] float32`` x1,y1,x2,y2 of the image content (not padding) inside the crop.
    """
    h, w = img.shape[:2]
    full = np.array([0, 0, w, h], np.float32)
    if offsets is None:
        return img, boxes, full
    pl, pr, pt, pb = offsets
    sw, sh = w - pl - pr, h - pt - pb
    if sw < 2 or sh < 2:
        return img, boxes, full
    mean = tuple(float(c) for c in cv2.mean(img)[:3])
    out = np.empty((sh, sw, 3), np.uint8)
    out[:] = np.round(mean).astype(np.uint8)
    # intersection of the crop window [pl, pl+sw) x [pt, pt+sh) with the image
    x0, y0, x1, y1 = max(pl, 0), max(pt, 0), min(pl + sw, w), min(pt + sh, h)
    if x1 > x0 and y1 > y0:
        out[y0 - pt:y1 - pt, x0 - pl:x1 - pl] = img[y0:y1, x0:x1]
    b = boxes.astype(np.float32).copy()
    b[:, [0, 2]] = np.clip(b[:, [0, 2]] - pl, 0, sw)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]] - pt, 0, sh)
    content = np.array([x0 - pl, y0 - pt, max(x1 - pl, x0 - pl), max(y1 - pt, y0 - pt)], np.float32)
    return out, b, content


def jitter_crop(img: np.ndarray, boxes: np.ndarray, jitter: float,
                rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Darknet's jitter: move each side by ``U(-jitter, jitter) * size``; crop or pad with the mean colour.

    Args:
        img: ``HxWx3 uint8``; boxes: ``[M, 4]`` float x1,y1,x2,y2 in ``img`` pixels.
        jitter: max fraction (darknet ``[yolo] jitter``, e.g. 0.3).

    Returns:
        ``(crop, boxes)``: the new image (``h' x w' x 3 uint8``, ``w' = w - pleft - pright`` >= 2 px)
        and the boxes shifted into it and clipped to it (degenerate ones are left for the caller to drop).
    """
    h, w = img.shape[:2]
    crop, b, _ = _crop(img, boxes, _jitter_offsets(w, h, jitter, rng))
    return crop, b


def _to_corner(offsets: Tuple[int, int, int, int], tile: int, flip: bool) -> Tuple[int, int, int, int]:
    """Darknet's "move each 2nd image to the corner" for mosaic tile 0..3 (TL, TR, BL, BR).

    The crop window keeps its size and is aligned with the image corner that ends up pointing away
    from the mosaic centre (the flip comes after the crop, so it mirrors the horizontal choice).
    """
    pl, pr, pt, pb = offsets
    if (tile in (0, 2)) != flip:            # keep the image's left edge
        pl, pr = 0, pl + pr
    else:
        pl, pr = pl + pr, 0
    if tile in (0, 1):
        pt, pb = 0, pt + pb
    else:
        pt, pb = pt + pb, 0
    return pl, pr, pt, pb


def hflip(img: np.ndarray, boxes: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Mirror ``img`` (HxWx3) left-right and its ``[M,4]`` x1,y1,x2,y2 boxes (pixels)."""
    w = img.shape[1]
    b = boxes.copy()
    b[:, 0], b[:, 2] = w - boxes[:, 2], w - boxes[:, 0]
    return np.ascontiguousarray(img[:, ::-1]), b


def _geometry(img: np.ndarray, boxes: np.ndarray, classes: np.ndarray, input_hw: Tuple[int, int],
              letter_box: bool, aug: Optional[AugmentConfig], rng: Optional[np.random.Generator],
              tile: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(jitter) -> shared resize -> (rotation/shear) -> (flip, HSV).

    Returns ``(image, boxes, classes, content)``; boxes and the content rectangle are not clipped
    yet, except after a rotation/shear (clipped to the image, :func:`warp_sample`'s rule applied).
    Random draws, in order: jitter offsets, flip, [mosaic tile: corner move], [angle, shear x,
    shear y: only those that are on], hue/saturation/exposure.
    """
    offsets = None
    if aug is not None and aug.jitter > 0:
        offsets = _jitter_offsets(img.shape[1], img.shape[0], aug.jitter, rng)
    flip = aug is not None and aug.flip > 0 and rng.random() < aug.flip
    if tile is not None and offsets is not None and rng.random() < 0.5:
        offsets = _to_corner(offsets, tile, flip)
    img, boxes, content = _crop(img, boxes, offsets)
    out, t = resize_one(img, input_hw, letter_box)
    b = np.concatenate([boxes, content[None]], 0)
    b[:, [0, 2]] = b[:, [0, 2]] * t.scale_x + t.pad_x
    b[:, [1, 3]] = b[:, [1, 3]] * t.scale_y + t.pad_y
    if aug is not None and aug.warping:
        out, kb, classes, content = random_warp(out, b[:-1], classes, aug, rng, content=b[-1])
        b = np.concatenate([kb, content[None]], 0)
    if flip:
        out, b = hflip(out, b)
    if aug is not None and (aug.hue > 0 or aug.saturation > 1 or aug.exposure > 1):
        out = random_hsv(out, aug, rng)
    return out, b[:-1], classes, b[-1]


# ---- rotation / shear --------------------------------------------------------------------------

def affine_matrix(size_hw: Tuple[int, int], angle_deg: float = 0.0, shear_x_deg: float = 0.0,
                  shear_y_deg: float = 0.0) -> np.ndarray:
    """The rotation + shear about the image centre, ultralytics ``random_perspective``'s ``T @ S @ R @ C``.

    Args:
        size_hw: ``(height, width)`` of the image (the centre is ``(width / 2, height / 2)``).
        angle_deg: rotation in degrees, counter-clockwise as displayed (``cv2.getRotationMatrix2D``).
        shear_x_deg, shear_y_deg: shear angles in degrees (``x += tan(shear_x) * y``,
            ``y += tan(shear_y) * x``, about the centre).

    Returns:
        ``[2, 3] float64`` affine matrix in box coordinates (pixel edges: pixel ``i`` spans
        ``[i, i + 1)``, as the ``x1, y1, x2, y2`` boxes); :func:`warp_sample` shifts it by half a
        pixel for ``cv2.warpAffine``, which works on pixel centres.
    """
    h, w = float(size_hw[0]), float(size_hw[1])
    c = np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1]], np.float64)
    r = np.eye(3)
    r[:2] = cv2.getRotationMatrix2D(angle=float(angle_deg), center=(0, 0), scale=1.0)
    s = np.eye(3)
    s[0, 1] = np.tan(np.deg2rad(float(shear_x_deg)))
    s[1, 0] = np.tan(np.deg2rad(float(shear_y_deg)))
    t = np.array([[1, 0, w / 2], [0, 1, h / 2], [0, 0, 1]], np.float64)
    return (t @ s @ r @ c)[:2]


def _transform_boxes(boxes: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``[M, 4]`` boxes -> the ``[M, 4] float32`` boxes enclosing their 4 corners mapped by ``m`` (2x3)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    xs = b[:, [0, 2, 2, 0]]
    ys = b[:, [1, 1, 3, 3]]
    nx = m[0, 0] * xs + m[0, 1] * ys + m[0, 2]
    ny = m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
    return np.stack([nx.min(1), ny.min(1), nx.max(1), ny.max(1)], 1).astype(np.float32)


def _clip(boxes: np.ndarray, w: int, h: int) -> np.ndarray:
    b = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, w)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, h)
    return b


def box_candidates(before: np.ndarray, after: np.ndarray, min_side: float = MIN_BOX_PX,
                   area_thr: float = WARP_MIN_AREA, ar_thr: float = WARP_MAX_ASPECT) -> np.ndarray:
    """Which warped boxes to keep (ultralytics ``utils/augmentations.py`` ``box_candidates``).

    Args:
        before: ``[M, 4]`` the transformed boxes before clipping; after: the same clipped to the image.
        min_side: both sides of ``after`` at least this (:data:`MIN_BOX_PX`; ultralytics ``wh_thr=2``).
        area_thr: ``after`` area at least this fraction of ``before``'s.
        ar_thr: ``max(w / h, h / w)`` of ``after`` under this.

    Returns:
        ``[M] bool``.
    """
    eps = 1e-9
    w1, h1 = before[:, 2] - before[:, 0], before[:, 3] - before[:, 1]
    w2, h2 = after[:, 2] - after[:, 0], after[:, 3] - after[:, 1]
    ar = np.maximum(w2 / (h2 + eps), h2 / (w2 + eps))
    return (w2 >= min_side) & (h2 >= min_side) & (w2 * h2 >= area_thr * (w1 * h1 + eps)) & (ar < ar_thr)


def _apply_affine(img: np.ndarray, boxes: np.ndarray, classes: np.ndarray, m: np.ndarray,
                  pad: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Warp ``img`` by the box-coordinate matrix ``m`` (same size) and transform/clip/filter the boxes."""
    h, w = img.shape[:2]
    # box coordinates are pixel edges, cv2's are pixel centres: p_cv' = m (p_cv + 0.5) - 0.5
    m_cv = m.copy()
    m_cv[:, 2] += 0.5 * (m[:, 0] + m[:, 1]) - 0.5
    out = cv2.warpAffine(img, m_cv, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=(int(pad),) * 3)
    before = _transform_boxes(boxes, m)
    after = _clip(before, w, h)
    keep = box_candidates(before, after)
    return out, after[keep], np.asarray(classes, np.int64).reshape(-1)[keep]


def warp_sample(img: np.ndarray, boxes: np.ndarray, classes: np.ndarray, angle_deg: float = 0.0,
                shear_x_deg: float = 0.0, shear_y_deg: float = 0.0,
                pad: int = PAD_VALUE_U8) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rotate and shear one sample about its centre (:func:`affine_matrix`), keeping its size.

    Args:
        img: ``HxWx3 uint8``; boxes: ``[M, 4]`` x1,y1,x2,y2 pixels of ``img``; classes: ``[M]``.
        angle_deg, shear_x_deg, shear_y_deg: as :func:`affine_matrix`.
        pad: border grey level (default the letterbox :data:`~yolo4.runtime.preprocess.PAD_VALUE_U8`).

    Returns:
        ``(image HxWx3 uint8, boxes [M', 4] float32, classes [M'] int64)``: ``cv2.warpAffine``
        (bilinear, constant border ``pad``); each box is the enclosing box of its 4 transformed
        corners clipped to the image, kept by :func:`box_candidates` (ultralytics' rule).
    """
    m = affine_matrix(img.shape[:2], angle_deg, shear_x_deg, shear_y_deg)
    return _apply_affine(img, np.asarray(boxes, np.float32).reshape(-1, 4), classes, m, pad)


def _warp_draws(aug: AugmentConfig, rng: np.random.Generator) -> Tuple[float, float, float]:
    """``(angle, shear_x, shear_y)`` degrees: ``U(-a, a)`` each, drawn only for the ones that are on."""
    angle = float(rng.uniform(-aug.angle, aug.angle)) if aug.angle > 0 else 0.0
    if aug.shear > 0:
        shx, shy = (float(v) for v in rng.uniform(-aug.shear, aug.shear, size=2))
    else:
        shx = shy = 0.0
    return angle, shx, shy


def random_warp(img: np.ndarray, boxes: np.ndarray, classes: np.ndarray, aug: AugmentConfig,
                rng: np.random.Generator, content: Optional[Sequence[float]] = None,
                pad: int = PAD_VALUE_U8) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`warp_sample` with ``U(-aug.angle, aug.angle)`` and ``U(-aug.shear, aug.shear)`` in x and y
    drawn from ``rng`` (the sample's own generator).

    Args:
        img, boxes, classes: as :func:`warp_sample`; aug: its ``angle`` and ``shear`` are used.
        content: x1,y1,x2,y2 of the image content (not padding; a mosaic tile's), default the whole image.

    Returns:
        ``(image, boxes [M', 4] float32, classes [M'] int64, content [4] float32)``: ``content`` is the
        box enclosing the warped content, clipped to the image. When ``angle`` and ``shear`` are both
        0 the inputs come back unchanged and nothing is drawn from ``rng``.
    """
    h, w = img.shape[:2]
    content = np.asarray([0, 0, w, h] if content is None else content, np.float32).reshape(4)
    if not aug.warping:
        return (img, np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(classes, np.int64).reshape(-1),
                content)
    angle, shx, shy = _warp_draws(aug, rng)
    out, b, c = warp_sample(img, boxes, classes, angle, shx, shy, pad)
    moved = _clip(_transform_boxes(content[None], affine_matrix((h, w), angle, shx, shy)), w, h)[0]
    return out, b, c, moved


def clip_boxes(boxes: np.ndarray, classes: np.ndarray,
               region: Sequence[float]) -> Tuple[np.ndarray, np.ndarray]:
    """Clip ``[M, 4]`` x1,y1,x2,y2 boxes to ``region`` (x1, y1, x2, y2 pixels) and drop the tiny ones.

    Returns ``([M', 4] float32, [M'] int64)``: boxes with a side under :data:`MIN_BOX_PX` after clipping
    are dropped (darknet ``fill_truth_detection`` / ``blend_truth_mosaic``: ``w > lowest_w = 1 / net_w``).
    """
    b = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], region[0], region[2])
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], region[1], region[3])
    keep = ((b[:, 2] - b[:, 0]) >= MIN_BOX_PX) & ((b[:, 3] - b[:, 1]) >= MIN_BOX_PX)
    return b[keep].astype(np.float32), np.asarray(classes, np.int64).reshape(-1)[keep]


def prepare_sample(img: np.ndarray, boxes: np.ndarray, classes: np.ndarray, input_hw: Tuple[int, int],
                   letter_box: bool, aug: Optional[AugmentConfig] = None,
                   rng: Optional[np.random.Generator] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One training sample: (jitter) -> shared resize -> (rotation/shear) -> (flip, HSV) -> clip and drop
    tiny boxes -> (blur).

    Args:
        img: original ``HxWx3 uint8`` BGR image.
        boxes: ``[M, 4]`` float x1,y1,x2,y2 in original pixels; classes: ``[M]`` int class ids.
        input_hw: network input ``(height, width)``; letter_box: the cfg's ``[net] letter_box``.
        aug: strengths, or None for no augmentation (validation-style geometry only). Its mixing
            fields are not used here (:class:`~yolo4.trainer.dataset.YoloDataset` mixes samples).
        rng: numpy Generator (required when ``aug`` is given).

    Returns:
        ``(image, boxes, classes)``: ``[H, W, 3] uint8`` BGR network-size image, ``[M', 4] float32``
        x1,y1,x2,y2 in input pixels clipped to the image, ``[M'] int64``; boxes under
        :data:`MIN_BOX_PX` on a side after clipping are dropped.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    classes = np.asarray(classes, np.int64).reshape(-1)
    out, b, classes, _ = _geometry(img, boxes, classes, input_hw, letter_box, aug, rng)
    H, W = out.shape[:2]
    b, classes = clip_boxes(b, classes, (0, 0, W, H))
    if aug is not None and aug.blur > 0:
        out = random_blur(out, b, aug.blur, rng)
    return out, b, classes


# ---- blur --------------------------------------------------------------------------------------

def gaussian_blur(img: np.ndarray, ksize: int) -> np.ndarray:
    """``cv2.GaussianBlur`` with an odd ``ksize x ksize`` kernel (sigma from the size, as darknet)."""
    k = int(ksize) // 2 * 2 + 1
    return cv2.GaussianBlur(img, (k, k), 0)


def blur_background(img: np.ndarray, boxes: np.ndarray, ksize: int = BACKGROUND_BLUR_KSIZE) -> np.ndarray:
    """Blur everything outside the boxes (darknet ``blur == 1``); box interiors keep their pixels.

    Args:
        img: ``HxWx3 uint8``; boxes: ``[M, 4]`` x1,y1,x2,y2 pixels (truncated to ints as darknet's
            ``cv::Rect``). Returns a new image.
    """
    out = gaussian_blur(img, ksize)
    H, W = img.shape[:2]
    for x1, y1, x2, y2 in np.asarray(boxes, np.float32).reshape(-1, 4):
        left, top = max(int(x1), 0), max(int(y1), 0)
        right, bot = min(int(x1) + int(x2 - x1), W), min(int(y1) + int(y2 - y1), H)
        if right > left and bot > top:
            out[top:bot, left:right] = img[top:bot, left:right]
    return out


def random_blur(img: np.ndarray, boxes: np.ndarray, blur: int, rng: np.random.Generator) -> np.ndarray:
    """Darknet's ``blur=N``: nothing, background blur, or whole-image blur, 1/3 each.

    The whole-image level ``N`` is lowered to ``min box side // 8`` (0 without boxes; darknet
    ``load_data_detection``: ``if ((min_w_h / 8) < blur && blur > 1) blur = min_w_h / 8``); level 1
    means background blur, 0 none, else a ``(N // 2) * 2 + 1`` Gaussian.

    Args:
        img: ``HxWx3 uint8``; boxes: ``[M, 4]`` x1,y1,x2,y2 pixels of ``img``; blur: the cfg's ``N`` > 0.

    Returns:
        ``HxWx3 uint8`` (``img`` itself when nothing is blurred).
    """
    choice = int(rng.integers(0, 3))
    level = 0 if choice == 0 else (1 if choice == 1 else int(blur))
    if level > 1:
        b = np.asarray(boxes, np.float32).reshape(-1, 4)
        min_side = int(np.min(np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]))) if len(b) else 0
        if min_side // 8 < level:
            level = min_side // 8
    if level == 0:
        return img
    if level == 1:
        return blur_background(img, boxes)
    return gaussian_blur(img, level)


# ---- mixing ------------------------------------------------------------------------------------

def choose_mix(aug: Optional[AugmentConfig], rng: np.random.Generator) -> str:
    """One of :data:`MIX_MODES` for a sample: ``mosaic`` with probability ``aug.mosaic``, then
    ``cutmix``, ``mixup``, else ``none``. Draws nothing (returns ``none``) when no mixing is on, so
    configurations without mixing keep their random streams."""
    if aug is None or not aug.mixing:
        return "none"
    u = float(rng.random())
    for mode, p in (("mosaic", aug.mosaic), ("cutmix", aug.cutmix), ("mixup", aug.mixup)):
        if u < p:
            return mode
        u -= p
    return "none"


def mosaic_centre(input_hw: Tuple[int, int], rng: np.random.Generator) -> Tuple[int, int]:
    """Darknet's ``cut_x, cut_y``: ``rand_int(0.2 * side, 0.8 * side)`` (inclusive), input pixels."""
    H, W = int(input_hw[0]), int(input_hw[1])
    lo, hi = MOSAIC_MIN_OFFSET, 1.0 - MOSAIC_MIN_OFFSET
    return int(rng.integers(int(W * lo), int(W * hi) + 1)), int(rng.integers(int(H * lo), int(H * hi) + 1))


MosaicTile = Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def mosaic_tile(img: np.ndarray, boxes: np.ndarray, classes: np.ndarray, input_hw: Tuple[int, int],
                letter_box: bool, aug: AugmentConfig, rng: np.random.Generator, tile: int) -> MosaicTile:
    """One of the 4 mosaic images at the network size (jitter, corner move, resize, rotation/shear, flip, HSV).

    Args:
        img, boxes, classes: as :func:`prepare_sample`; tile: 0..3 = top-left, top-right,
            bottom-left, bottom-right.

    Returns:
        ``(image [H, W, 3] uint8, boxes [M, 4] float32 input pixels (not clipped), classes [M] int64,
        content [4] float32)``: ``content`` is x1,y1,x2,y2 of the image content (not padding).
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    classes = np.asarray(classes, np.int64).reshape(-1)
    out, b, c, content = _geometry(img, boxes, classes, input_hw, letter_box, aug, rng, tile=tile)
    return out, b, c, content


def mosaic(tiles: Sequence[MosaicTile], centre: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Combine 4 network-size tiles around ``centre`` (darknet ``load_data_detection`` ``use_mixup == 3``).

    Quadrant ``k`` (0 TL, 1 TR, 2 BL, 3 BR) takes from tile ``k`` the region next to the centre: for
    a quadrant right of ``cut_x`` the columns from ``left_shift = min(cut_x, content_x1)`` on (its
    content starts right at the centre line), for one left of it the ``cut_x`` columns ending
    ``right_shift = min(W - cut_x, W - content_x2)`` before the right edge; rows likewise. Boxes
    move with their pixels and are clipped to their quadrant, tiny ones dropped (:func:`clip_boxes`).

    Args:
        tiles: 4 results of :func:`mosaic_tile` (same ``H x W``).
        centre: ``(cut_x, cut_y)`` ints in ``(0, W) x (0, H)``.

    Returns:
        ``(image [H, W, 3] uint8, boxes [M, 4] float32 x1,y1,x2,y2 input pixels, classes [M] int64)``.
    """
    H, W = tiles[0][0].shape[:2]
    cx, cy = int(centre[0]), int(centre[1])
    canvas = np.empty((H, W, 3), np.uint8)
    all_b: List[np.ndarray] = []
    all_c: List[np.ndarray] = []
    for k, (img, b, c, content) in enumerate(tiles):
        right, bottom = k in (1, 3), k in (2, 3)
        if right:
            sx0, dx0, qw = min(cx, max(0, int(content[0]))), cx, W - cx
        else:
            sx0, dx0, qw = W - cx - min(W - cx, max(0, W - int(np.ceil(content[2])))), 0, cx
        if bottom:
            sy0, dy0, qh = min(cy, max(0, int(content[1]))), cy, H - cy
        else:
            sy0, dy0, qh = H - cy - min(H - cy, max(0, H - int(np.ceil(content[3])))), 0, cy
        canvas[dy0:dy0 + qh, dx0:dx0 + qw] = img[sy0:sy0 + qh, sx0:sx0 + qw]
        moved = np.asarray(b, np.float32).reshape(-1, 4) + np.array(
            [dx0 - sx0, dy0 - sy0, dx0 - sx0, dy0 - sy0], np.float32)
        kb, kc = clip_boxes(moved, c, (dx0, dy0, dx0 + qw, dy0 + qh))
        all_b.append(kb)
        all_c.append(kc)
    return canvas, np.concatenate(all_b, 0), np.concatenate(all_c, 0)


def mixup(a: Tuple[np.ndarray, np.ndarray, np.ndarray], b: Tuple[np.ndarray, np.ndarray, np.ndarray],
          weight: float = MIXUP_WEIGHT) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MixUp two network-size samples: ``weight * a + (1 - weight) * b``, labels concatenated.

    Args:
        a, b: ``(image [H, W, 3] uint8, boxes [M, 4] float32 x1,y1,x2,y2 pixels, classes [M] int64)``.
        weight: the first image's weight (darknet: 0.5; ``blend_images_cv`` + ``blend_truth``).

    Returns:
        ``(image [H, W, 3] uint8 (rounded), boxes [Ma + Mb, 4] float32, classes [Ma + Mb] int64)``.
    """
    img = cv2.addWeighted(a[0], float(weight), b[0], 1.0 - float(weight), 0.0)
    return img, np.concatenate([a[1], b[1]], 0).astype(np.float32), np.concatenate([a[2], b[2]], 0)


def cutmix_rect(input_hw: Tuple[int, int], rng: np.random.Generator) -> Tuple[int, int, int, int]:
    """Darknet's CutMix rectangle (``load_data_augment``): sides ``rand_int(0.3 * side, 0.8 * side)``,
    position ``rand_int(0, side - cut - 1)``; returns ``(x1, y1, x2, y2)`` ints, input pixels."""
    H, W = int(input_hw[0]), int(input_hw[1])
    cw = int(rng.integers(int(W * CUTMIX_MIN), int(W * CUTMIX_MAX) + 1))
    ch = int(rng.integers(int(H * CUTMIX_MIN), int(H * CUTMIX_MAX) + 1))
    x = int(rng.integers(0, max(W - cw, 1)))
    y = int(rng.integers(0, max(H - ch, 1)))
    return x, y, x + cw, y + ch


def cutmix(a: Tuple[np.ndarray, np.ndarray, np.ndarray], b: Tuple[np.ndarray, np.ndarray, np.ndarray],
           rect: Tuple[int, int, int, int]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paste ``rect`` of sample ``b`` into sample ``a`` (both network size, same shape).

    ``a``'s boxes: the part under the rectangle is trimmed off when the rectangle covers a whole side
    of the box; a box is kept when at least :data:`CUTMIX_MIN_VISIBLE` of its area stays visible.
    ``b``'s boxes: clipped to the rectangle, kept when at least that fraction of each is inside.

    Args:
        a, b: ``(image [H, W, 3] uint8, boxes [M, 4] float32 x1,y1,x2,y2 pixels, classes [M] int64)``.
        rect: ``(x1, y1, x2, y2)`` ints, from :func:`cutmix_rect`.

    Returns:
        ``(image [H, W, 3] uint8, boxes [M', 4] float32, classes [M'] int64)``, ``a``'s boxes first.
    """
    x1, y1, x2, y2 = (int(v) for v in rect)
    img = a[0].copy()
    img[y1:y2, x1:x2] = b[0][y1:y2, x1:x2]
    ab = np.asarray(a[1], np.float32).reshape(-1, 4).copy()
    area = np.maximum(ab[:, 2] - ab[:, 0], 0) * np.maximum(ab[:, 3] - ab[:, 1], 0)
    iw = np.clip(np.minimum(ab[:, 2], x2) - np.maximum(ab[:, 0], x1), 0, None)
    ih = np.clip(np.minimum(ab[:, 3], y2) - np.maximum(ab[:, 1], y1), 0, None)
    visible = area - iw * ih
    keep_a = visible >= CUTMIX_MIN_VISIBLE * np.maximum(area, 1e-9)
    # trim where the rectangle spans the box fully along one axis (the visible part stays a rectangle)
    full_v = (y1 <= ab[:, 1]) & (y2 >= ab[:, 3]) & (iw > 0)
    full_h = (x1 <= ab[:, 0]) & (x2 >= ab[:, 2]) & (ih > 0)
    cut_l = full_v & (x1 <= ab[:, 0]) & (x2 < ab[:, 2])
    cut_r = full_v & (x2 >= ab[:, 2]) & (x1 > ab[:, 0])
    cut_t = full_h & (y1 <= ab[:, 1]) & (y2 < ab[:, 3])
    cut_b = full_h & (y2 >= ab[:, 3]) & (y1 > ab[:, 1])
    ab[cut_l, 0] = x2
    ab[cut_r, 2] = x1
    ab[cut_t, 1] = y2
    ab[cut_b, 3] = y1
    kb_a, kc_a = clip_boxes(ab[keep_a], np.asarray(a[2], np.int64)[keep_a], (0, 0, img.shape[1], img.shape[0]))
    bb = np.asarray(b[1], np.float32).reshape(-1, 4)
    b_area = np.maximum(bb[:, 2] - bb[:, 0], 0) * np.maximum(bb[:, 3] - bb[:, 1], 0)
    inside = bb.copy()
    inside[:, [0, 2]] = np.clip(inside[:, [0, 2]], x1, x2)
    inside[:, [1, 3]] = np.clip(inside[:, [1, 3]], y1, y2)
    in_area = (inside[:, 2] - inside[:, 0]) * (inside[:, 3] - inside[:, 1])
    keep_b = in_area >= CUTMIX_MIN_VISIBLE * np.maximum(b_area, 1e-9)
    kb_b, kc_b = clip_boxes(inside[keep_b], np.asarray(b[2], np.int64)[keep_b], (x1, y1, x2, y2))
    return img, np.concatenate([kb_a, kb_b], 0), np.concatenate([kc_a, kc_b], 0)


def without_mixing(aug: AugmentConfig) -> AugmentConfig:
    """``aug`` with mosaic, CutMix, MixUp and blur off (the per-image part of a mixed sample)."""
    return replace(aug, mosaic=0.0, cutmix=0.0, mixup=0.0, blur=0)
