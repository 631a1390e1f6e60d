"""Training-time image augmentation, numpy/cv2, one image and its boxes at a time.

Geometry is the shared :func:`yolo4.runtime.preprocess.resize_one` (plain resize, or letterbox when
the cfg says ``letter_box=1``): darknet trains with the resize it infers with, so this module never
resizes by itself. On top of it:

- **jitter** (``[yolo] jitter``, darknet ``load_data_detection`` in ``src/data.c``): each side of the
  original image is moved by a random ``U(-jitter, jitter) * size`` (in: crop, out: pad with the
  image's mean colour, as darknet's ``image_data_augmentation``), then the crop goes through the
  shared resize. This is darknet's random scale/translate/aspect jitter.
- **horizontal flip** with probability ``flip`` (darknet ``flip=1``: 50 %).
- **HSV** (darknet ``[net] hue``, ``saturation``, ``exposure``; ``random_distort_image``):
  ``dhue ~ U(-hue, hue)`` (fraction of the hue circle), ``dsat = rand_scale(saturation)``,
  ``dexp = rand_scale(exposure)`` where ``rand_scale(s)`` is ``U(1, s)`` or its inverse with
  probability 1/2; then ``H += dhue`` (wrapping), ``S *= dsat``, ``V *= dexp`` (saturating at 255).

Mosaic, CutMix, MixUp, blur and the rest of the YOLOv4 bag of freebies slot in here later.

Boxes are ``[M, 4] float32`` x1, y1, x2, y2 in pixels of the image they belong to; classes ``[M] int64``.
"""

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import cv2
import numpy as np

from ..runtime.preprocess import resize_one

#: boxes narrower or lower than this many input pixels after augmentation are dropped
#: (darknet ``fill_truth_detection``: ``w < lowest_w = 1.0 / net_w``)
MIN_BOX_PX = 1.0


@dataclass
class AugmentConfig:
    """Augmentation strengths (darknet semantics; 0 / 1.0 disables each).

    Attributes:
        flip: probability of a horizontal flip (darknet ``flip=1`` -> 0.5).
        hue: ``[net] hue``, max hue shift as a fraction of the hue circle (0.1 in the yolov4 cfgs).
        saturation: ``[net] saturation``, max saturation scale (1.5).
        exposure: ``[net] exposure``, max value (brightness) scale (1.5).
        jitter: ``[yolo] jitter``, max move of each image side as a fraction of its size (0.3).
    """

    flip: float = 0.5
    hue: float = 0.0
    saturation: float = 1.0
    exposure: float = 1.0
    jitter: float = 0.0

    @classmethod
    def from_cfg(cls, net: Dict[str, Any], jitter: Optional[float] = None) -> "AugmentConfig":
        """From the ``[net]`` options (strings or numbers) and the ``[yolo]`` jitter."""
        def f(key, default):
            try:
                return float(net.get(key, default))
            except (TypeError, ValueError):
                return float(default)
        flip = 0.5 if f("flip", 1) else 0.0
        return cls(flip=flip, hue=f("hue", 0.0), saturation=f("saturation", 1.0),
                   exposure=f("exposure", 1.0), jitter=float(jitter or 0.0))


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
    dw, dh = int(w * jitter), int(h * jitter)
    if dw <= 0 and dh <= 0:
        return img, boxes
    pl, pr = (int(v) for v in rng.integers(-dw, dw + 1, size=2))
    pt, pb = (int(v) for v in rng.integers(-dh, dh + 1, size=2))
    sw, sh = w - pl - pr, h - pt - pb
    if sw < 2 or sh < 2:
        return img, boxes
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
    return out, b


def hflip(img: np.ndarray, boxes: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Mirror ``img`` (HxWx3) left-right and its ``[M,4]`` x1,y1,x2,y2 boxes (pixels)."""
    w = img.shape[1]
    b = boxes.copy()
    b[:, 0], b[:, 2] = w - boxes[:, 2], w - boxes[:, 0]
    return np.ascontiguousarray(img[:, ::-1]), b


def prepare_sample(img: np.ndarray, boxes: np.ndarray, classes: np.ndarray, input_hw: Tuple[int, int],
                   letter_box: bool, aug: Optional[AugmentConfig] = None,
                   rng: Optional[np.random.Generator] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One training sample: (jitter) -> shared resize -> (flip, HSV) -> clip and drop tiny boxes.

    Args:
        img: original ``HxWx3 uint8`` BGR image.
        boxes: ``[M, 4]`` float x1,y1,x2,y2 in original pixels; classes: ``[M]`` int class ids.
        input_hw: network input ``(height, width)``; letter_box: the cfg's ``[net] letter_box``.
        aug: strengths, or None for no augmentation (validation-style geometry only).
        rng: numpy Generator (required when ``aug`` is given).

    Returns:
        ``(image, boxes, classes)``: ``[H, W, 3] uint8`` BGR network-size image, ``[M', 4] float32``
        x1,y1,x2,y2 in input pixels clipped to the image, ``[M'] int64``; boxes under
        :data:`MIN_BOX_PX` on a side after clipping are dropped.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    classes = np.asarray(classes, np.int64).reshape(-1)
    if aug is not None and aug.jitter > 0:
        img, boxes = jitter_crop(img, boxes, aug.jitter, rng)
    out, t = resize_one(img, input_hw, letter_box)
    b = boxes.copy()
    b[:, [0, 2]] = b[:, [0, 2]] * t.scale_x + t.pad_x
    b[:, [1, 3]] = b[:, [1, 3]] * t.scale_y + t.pad_y
    if aug is not None:
        if aug.flip > 0 and rng.random() < aug.flip:
            out, b = hflip(out, b)
        if aug.hue > 0 or aug.saturation > 1 or aug.exposure > 1:
            out = random_hsv(out, aug, rng)
    H, W = out.shape[:2]
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, W)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, H)
    keep = ((b[:, 2] - b[:, 0]) >= MIN_BOX_PX) & ((b[:, 3] - b[:, 1]) >= MIN_BOX_PX)
    return out, b[keep].astype(np.float32), classes[keep]
