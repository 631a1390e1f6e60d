"""Image -> network input, and network boxes -> image boxes. The one implementation.

Every consumer (the ONNX Runtime / TensorRT / torch backends through :class:`~yolo4.runtime.detector.Detector`,
``yolo4 eval``, INT8 calibration and the trainer's validation) prepares images here, so a model
never sees differently prepared pixels at calibration, evaluation and deployment time.

Two resize modes, chosen by the cfg's ``[net] letter_box`` (carried in :class:`ModelInfo`):

* plain resize (``letter_box=0``, darknet's default): the image is stretched to the network size
  with ``cv2.resize(..., interpolation=cv2.INTER_LINEAR)``, as darknet built with OpenCV does
  (src/image_opencv.cpp ``load_image_resize``) and as OpenCV's DNN darknet importer does.
  Darknet's pure-C ``resize_image`` (src/image.c) is an align-corners bilinear; the two differ by
  sub-pixel sampling only.
* letterbox (``letter_box=1``): darknet's ``letterbox_image`` (src/image.c): keep the aspect ratio,
  ``new_w, new_h`` = (``netw``, ``h*netw // w``) when ``netw/w < neth/h`` else (``w*neth // h``,
  ``neth``) with integer division, paste at ``((netw-new_w)//2, (neth-new_h)//2)`` on a canvas
  filled with 0.5 grey. :func:`preprocess` pads with exactly 0.5; the uint8 :func:`resize_one`
  pads with 128 (128/255 = 0.502, the nearest uint8 to 127.5).

Coordinates: network-input pixels run over ``[0, W] x [0, H]``; original-image pixels over
``[0, orig_w] x [0, orig_h]``; boxes are ``x1, y1, x2, y2``. The mapping is per axis
``x_in = x_orig * scale_x + pad_x`` (darknet src/yolo_layer.c ``correct_yolo_boxes`` inverts the
same geometry, with separate ratios ``new_w/netw`` and ``new_h/neth`` per axis).

Python 3.8, torch-free.
"""

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import cv2
import numpy as np

__all__ = ["PAD_VALUE", "PAD_VALUE_U8", "Transform", "letterbox_geometry", "resize_one", "preprocess",
           "scale_boxes_to_original"]

#: letterbox padding in the float input (darknet src/image.c ``letterbox_image``: ``fill_image(boxed, .5)``)
PAD_VALUE = 0.5
#: letterbox padding of the uint8 image from :func:`resize_one` (nearest uint8 to 0.5 * 255)
PAD_VALUE_U8 = 128


@dataclass(frozen=True)
class Transform:
    """How one image was mapped into the network input: ``x_in = x_orig * scale_x + pad_x``.

    Attributes:
        scale_x, scale_y: input pixels per original pixel along x and y (float). Plain resize:
            ``W / orig_w`` and ``H / orig_h``; letterbox: ``new_w / orig_w`` and ``new_h / orig_h``.
        pad_x, pad_y: offset of the image content in the input, in input pixels (0 for plain resize).
        orig_w, orig_h: original image size in pixels.
    """

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    orig_w: int
    orig_h: int

    @property
    def content_wh(self) -> Tuple[float, float]:
        """``(width, height)`` in input pixels of the region the image content occupies.

        Darknet measures boxes relative to this region (src/yolo_layer.c ``correct_yolo_boxes``),
        which is what DIoU-NMS sees; :func:`yolo4.runtime.postprocess.postprocess` accepts it.
        """
        return (self.orig_w * self.scale_x, self.orig_h * self.scale_y)


def letterbox_geometry(orig_wh: Tuple[int, int], input_hw: Tuple[int, int],
                       letter_box: bool) -> Tuple[int, int, int, int]:
    """Size and offset of the resized content inside the network input.

    Args:
        orig_wh: original image ``(width, height)`` in pixels.
        input_hw: network input ``(height, width)`` in pixels.
        letter_box: True for darknet's ``letterbox_image`` geometry, False for a plain resize.

    Returns:
        ``(new_w, new_h, pad_x, pad_y)`` in input pixels, all int. Integer arithmetic exactly as
        darknet src/image.c ``letterbox_image`` (``new_h = (im.h * w) / im.w`` etc., C int division).

    Raises:
        ValueError: a non-positive image or input size.
    """
    w, h = int(orig_wh[0]), int(orig_wh[1])
    net_h, net_w = int(input_hw[0]), int(input_hw[1])
    if w <= 0 or h <= 0 or net_w <= 0 or net_h <= 0:
        raise ValueError(f"image size {w}x{h} and input size {net_w}x{net_h} must be positive")
    if not letter_box:
        return net_w, net_h, 0, 0
    if net_w / w < net_h / h:
        new_w, new_h = net_w, (h * net_w) // w
    else:
        new_w, new_h = (w * net_h) // h, net_h
    new_w, new_h = max(new_w, 1), max(new_h, 1)
    return new_w, new_h, (net_w - new_w) // 2, (net_h - new_h) // 2


def _as_bgr(img: np.ndarray) -> np.ndarray:
    """Accept HxWx3 BGR (the contract), or HxW grey / HxWx4 BGRA; return HxWx3 uint8."""
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {img.dtype}")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.ndim == 3 and img.shape[2] == 3:
        return img
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if img.ndim == 3 and img.shape[2] == 1:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    raise ValueError(f"expected an HxWx3 BGR image, got shape {img.shape}")


def _resize_content(img: np.ndarray, input_hw: Tuple[int, int], letter_box: bool):
    """Resize ``img`` (HxWx3 uint8) to its content size; return (resized, Transform, pad_x, pad_y)."""
    img = _as_bgr(img)
    h, w = img.shape[:2]
    new_w, new_h, pad_x, pad_y = letterbox_geometry((w, h), input_hw, letter_box)
    if (new_w, new_h) == (w, h):
        resized = img
    elif (w, h) == (1, 1):  # OpenCV 4.5.4 (JetPack 5.1's) refuses a 1x1x3 array; bilinear = the one pixel
        resized = np.ascontiguousarray(np.broadcast_to(img, (new_h, new_w, 3)))
    else:
        resized = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    t = Transform(scale_x=new_w / w, scale_y=new_h / h, pad_x=float(pad_x), pad_y=float(pad_y),
                  orig_w=int(w), orig_h=int(h))
    return resized, t, pad_x, pad_y


def resize_one(img: np.ndarray, input_hw: Tuple[int, int], letter_box: bool) -> Tuple[np.ndarray, Transform]:
    """Resize one image to the network input size, in uint8 BGR (the trainer's entry point).

    Args:
        img: ``HxWx3 uint8`` BGR image (HxW grey and HxWx4 BGRA are converted).
        input_hw: network input ``(height, width)`` in pixels.
        letter_box: True = letterbox (keep aspect, pad with :data:`PAD_VALUE_U8`), False = plain resize.

    Returns:
        ``(resized, transform)``: ``resized`` is ``[H, W, 3] uint8`` BGR (C-contiguous, a new array
        unless no resize was needed), ``transform`` maps original pixels to input pixels.

    Raises:
        ValueError: not a uint8 image of a supported shape, or a non-positive size.
    """
    resized, t, pad_x, pad_y = _resize_content(img, input_hw, letter_box)
    net_h, net_w = int(input_hw[0]), int(input_hw[1])
    if not letter_box:
        return np.ascontiguousarray(resized), t
    out = np.full((net_h, net_w, 3), PAD_VALUE_U8, np.uint8)
    out[pad_y:pad_y + resized.shape[0], pad_x:pad_x + resized.shape[1]] = resized
    return out, t


def preprocess(images: Sequence[np.ndarray], input_hw: Tuple[int, int],
               letter_box: bool) -> Tuple[np.ndarray, List[Transform]]:
    """Prepare a batch of BGR images as the network input.

    Args:
        images: sequence of ``HxWx3 uint8`` BGR images (any sizes; grey/BGRA converted).
        input_hw: network input ``(height, width)`` in pixels (multiples of 32 for a darknet model).
        letter_box: True = darknet ``letterbox_image`` (pad exactly 0.5), False = plain resize.

    Returns:
        ``(batch, transforms)``: ``batch`` is ``[B, 3, H, W] float32`` C-contiguous, RGB, values
        ``pixel / 255`` in 0..1; ``transforms[i]`` is the :class:`Transform` of ``images[i]``.

    Raises:
        ValueError: an empty list, or an image that is not uint8 of a supported shape.
    """
    if len(images) == 0:
        raise ValueError("preprocess() needs at least one image")
    net_h, net_w = int(input_hw[0]), int(input_hw[1])
    batch = np.empty((len(images), 3, net_h, net_w), np.float32)
    if letter_box:
        batch.fill(PAD_VALUE)
    transforms = []
    scale = np.float32(1.0 / 255.0)
    for i, img in enumerate(images):
        resized, t, pad_x, pad_y = _resize_content(img, input_hw, letter_box)
        rh, rw = resized.shape[:2]
        # BGR HWC uint8 -> RGB CHW float32 / 255, written straight into the batch
        chw = resized[:, :, ::-1].transpose(2, 0, 1)
        np.multiply(chw, scale, out=batch[i, :, pad_y:pad_y + rh, pad_x:pad_x + rw], dtype=np.float32)
        transforms.append(t)
    return batch, transforms


def scale_boxes_to_original(boxes: np.ndarray, transform: Transform, clip: bool = True) -> np.ndarray:
    """Map boxes from network-input pixels back to original-image pixels.

    Inverse of the :class:`Transform`: ``x_orig = (x_in - pad_x) / scale_x`` (likewise y), then
    clipped to ``[0, orig_w] x [0, orig_h]`` as darknet src/detector.c ``print_cocos`` does.

    Args:
        boxes: ``[K, 4]`` x1, y1, x2, y2 in input pixels (any float dtype).
        transform: the image's :class:`Transform` from :func:`preprocess` / :func:`resize_one`.
        clip: clip to the image (default True).

    Returns:
        ``[K, 4] float32`` x1, y1, x2, y2 in original-image pixels (a new array).
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    b[:, [0, 2]] = (b[:, [0, 2]] - transform.pad_x) / transform.scale_x
    b[:, [1, 3]] = (b[:, [1, 3]] - transform.pad_y) / transform.scale_y
    if clip:
        b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0.0, float(transform.orig_w))
        b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0.0, float(transform.orig_h))
    return b.astype(np.float32)
