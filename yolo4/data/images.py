"""Image file IO shared by datasets, calibration and inference. Python 3.8, torch-free.

Images are read with OpenCV (``cv2.imdecode`` on the file's bytes, so paths with non-ASCII characters
work on every platform) and returned as ``HxWx3 uint8`` BGR, OpenCV's and darknet's channel order
(darknet's ``load_image_cv`` also decodes with OpenCV). EXIF orientation is applied by OpenCV's
decoder, and :func:`image_size` reports the size *after* that rotation, so the two always agree.
"""

import os
from typing import Tuple, Union

import numpy as np

from ..errors import ImageReadError

PathLike = Union[str, "os.PathLike[str]"]

#: File suffixes (lower case) read as still images, by folder listings and by ``iter_sources``.
IMAGE_SUFFIXES = (".bmp", ".jpg", ".jpeg", ".jpe", ".png", ".tif", ".tiff", ".webp", ".pbm", ".pgm",
                  ".ppm", ".pnm")

#: File suffixes (lower case) read as videos by ``iter_sources``.
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".wmv", ".webm", ".flv",
                  ".ts", ".asf", ".3gp")

# EXIF Orientation values that transpose the image (90 or 270 degree rotations).
_EXIF_ORIENTATION = 0x0112
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)


def is_image_file(path: PathLike) -> bool:
    """True when ``path``'s suffix (case-insensitive) is one of :data:`IMAGE_SUFFIXES`."""
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_SUFFIXES


def is_video_file(path: PathLike) -> bool:
    """True when ``path``'s suffix (case-insensitive) is one of :data:`VIDEO_SUFFIXES`."""
    return os.path.splitext(os.fspath(path))[1].lower() in VIDEO_SUFFIXES


def imread(path: PathLike) -> np.ndarray:
    """Read an image file.

    Args:
        path: image file (any of :data:`IMAGE_SUFFIXES`; the content decides, not the suffix).

    Returns:
        ``np.ndarray`` of shape ``[H, W, 3]``, dtype ``uint8``, BGR channel order, EXIF orientation
        applied. Grayscale images are expanded to 3 channels, alpha is dropped, 16-bit images are
        scaled to 8 bits (OpenCV ``IMREAD_COLOR`` semantics).

    Raises:
        ImageReadError: the file does not exist, cannot be read, or cannot be decoded as an image.
    """
    import cv2  # lazy: keeps ``import yolo4.data`` light

    spath = os.fspath(path)
    if not os.path.isfile(spath):
        raise ImageReadError("image file not found", spath)
    try:
        buf = np.fromfile(spath, dtype=np.uint8)
    except OSError as e:
        raise ImageReadError(f"cannot read image file ({e.strerror or e})", spath) from None
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if img is None or img.ndim != 3 or img.shape[2] != 3:
        raise ImageReadError("cannot decode image (corrupt or unsupported format)", spath)
    return img


def image_size(path: PathLike) -> Tuple[int, int]:
    """Size of an image from its file header, without decoding the pixels.

    Args:
        path: image file.

    Returns:
        ``(width, height)`` in pixels, as :func:`imread` would return them (EXIF orientations 5-8,
        i.e. 90/270 degree rotations, swap width and height).

    Raises:
        ImageReadError: the file does not exist or its header cannot be parsed.

    Uses Pillow's lazy ``Image.open`` (reads the header only); falls back to a full OpenCV decode when
    Pillow is not installed or does not know the format.
    """
    spath = os.fspath(path)
    if not os.path.isfile(spath):
        raise ImageReadError("image file not found", spath)
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:  # pragma: no cover - Pillow is a declared dependency
        img = imread(spath)
        return int(img.shape[1]), int(img.shape[0])
    try:
        with Image.open(spath) as im:
            w, h = im.size
            try:
                orientation = im.getexif().get(_EXIF_ORIENTATION)
            except Exception:  # a broken EXIF block must not hide a readable size
                orientation = None
    except UnidentifiedImageError:
        img = imread(spath)  # formats Pillow lacks but OpenCV reads; raises if undecodable
        return int(img.shape[1]), int(img.shape[0])
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageReadError(f"cannot read image header ({e})", spath) from None
    if orientation in _TRANSPOSING_ORIENTATIONS:
        w, h = h, w
    return int(w), int(h)
