"""Image file IO shared by datasets, calibration and inference. Python 3.8, torch-free.

Images are read with OpenCV (``cv2.imdecode`` on the file's bytes, so paths with non-ASCII characters
work on every platform) and returned as ``HxWx3 uint8`` BGR, OpenCV's and darknet's channel order
(darknet's ``load_image_cv`` also decodes with OpenCV). EXIF orientation is applied by OpenCV's
decoder (for PNG not by OpenCV 4.5.4, JetPack's: :func:`opencv_applies_png_exif`), and :func:`image_size`
reports the size *after* what this OpenCV applies, so the two always agree.

Size limit
----------
One limit holds for every image the project reads, in datasets and at inference:
:data:`MAX_IMAGE_PIXELS` (2^30 pixels) and :data:`MAX_IMAGE_SIDE` (2^20 pixels per side), checked by
:func:`image_size_problem`. They are OpenCV's own decoder defaults (``CV_IO_MAX_IMAGE_PIXELS``,
``CV_IO_MAX_IMAGE_WIDTH``/``HEIGHT``): a lower limit would refuse images the decoder reads (a
15000x15000 aerial tile, 225 megapixels and ~675 MB as BGR, is read), a higher one would accept
images it refuses. Pillow's own decompression-bomb guard (an error above ~179 megapixels, a
warning above ~89) is *not* used: :func:`image_size` reads the header through Pillow's format
plugins without it, and applies this limit instead. :func:`imread` checks the header against the
same limit before decoding, so a small file whose header claims 20 gigapixels is refused in one
line instead of exhausting memory.
"""

import functools
import os
import struct
from typing import Any, Optional, Tuple, Union

import numpy as np

from ..errors import ImageReadError

PathLike = Union[str, "os.PathLike[str]"]

#: File suffixes (lower case) read as still images, by folder listings and by ``iter_sources``.
IMAGE_SUFFIXES = (".bmp", ".jpg", ".jpeg", ".jpe", ".png", ".tif", ".tiff", ".webp", ".pbm", ".pgm",
                  ".ppm", ".pnm")

#: File suffixes (lower case) read as videos by ``iter_sources``.
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".wmv", ".webm", ".flv",
                  ".ts", ".asf", ".3gp")

#: Most pixels (width x height) of an image the project reads: OpenCV's ``CV_IO_MAX_IMAGE_PIXELS``.
MAX_IMAGE_PIXELS = 1 << 30
#: Longest side, in pixels, of an image the project reads: OpenCV's ``CV_IO_MAX_IMAGE_WIDTH``.
MAX_IMAGE_SIDE = 1 << 20

# EXIF Orientation values that transpose the image (90 or 270 degree rotations).
_EXIF_ORIENTATION = 0x0112
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)


@functools.lru_cache(maxsize=None)
def opencv_applies_png_exif() -> bool:
    """Whether this OpenCV's PNG decoder applies an eXIf chunk's orientation, as its JPEG decoder
    always does. OpenCV 4.5.4 (JetPack 5.1's, and opencv-python-headless 4.5.4.60) does not, newer
    releases do; found once by decoding a 2x1 PNG with orientation 6 ("rotate 90 CW"). Needs Pillow
    (it is only asked when Pillow read the header)."""
    import io

    import cv2
    from PIL import Image

    exif = Image.Exif()
    exif[_EXIF_ORIENTATION] = 6
    buf = io.BytesIO()
    Image.new("RGB", (2, 1)).save(buf, "PNG", exif=exif.tobytes())
    img = cv2.imdecode(np.frombuffer(buf.getvalue(), np.uint8), cv2.IMREAD_COLOR)
    return img is not None and img.shape[:2] == (2, 1)


def is_image_file(path: PathLike) -> bool:
    """True when ``path``'s suffix (case-insensitive) is one of :data:`IMAGE_SUFFIXES`."""
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_SUFFIXES


def is_video_file(path: PathLike) -> bool:
    """True when ``path``'s suffix (case-insensitive) is one of :data:`VIDEO_SUFFIXES`."""
    return os.path.splitext(os.fspath(path))[1].lower() in VIDEO_SUFFIXES


def image_size_problem(width: int, height: int) -> Optional[str]:
    """Why an image of ``width`` x ``height`` pixels cannot be read, or None when it can.

    The one size rule of the project: both sides 1..:data:`MAX_IMAGE_SIDE` and
    ``width * height <= MAX_IMAGE_PIXELS``. Used by :func:`image_size`, :func:`imread` and the dataset
    readers (for sizes written in COCO json / VOC xml files).
    """
    if width < 1 or height < 1:
        return f"image size {width}x{height} is empty"
    if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE:
        return f"image size {width}x{height} has a side above the limit of {MAX_IMAGE_SIDE} pixels"
    if width * height > MAX_IMAGE_PIXELS:
        return (f"image size {width}x{height} ({width * height} pixels) is above the limit of "
                f"{MAX_IMAGE_PIXELS} pixels")
    return None


def imread(path: PathLike) -> np.ndarray:
    """Read an image file.

    Args:
        path: image file (any of :data:`IMAGE_SUFFIXES`; the content decides, not the suffix).

    Returns:
        ``np.ndarray`` of shape ``[H, W, 3]``, dtype ``uint8``, BGR channel order, EXIF orientation
        applied. Grayscale images are expanded to 3 channels, alpha is dropped, 16-bit images are
        scaled to 8 bits (OpenCV ``IMREAD_COLOR`` semantics).

    Raises:
        ImageReadError: the file does not exist, cannot be read, its header claims a size beyond
            :func:`image_size_problem`'s limit (checked before decoding), or it cannot be decoded.
    """
    spath = os.fspath(path)
    if not os.path.isfile(spath):
        raise ImageReadError("image file not found", spath)
    try:
        header = _pillow_header(spath)
    except ImageReadError:
        header = None  # a header Pillow cannot parse: OpenCV decides (with the same limit)
    if header is not None:
        problem = image_size_problem(header[0], header[1])
        if problem is not None:
            raise ImageReadError(problem, spath)
    return _decode(spath)


def image_size(path: PathLike) -> Tuple[int, int]:
    """Size of an image from its file header, without decoding the pixels.

    Args:
        path: image file.

    Returns:
        ``(width, height)`` in pixels, as :func:`imread` would return them (EXIF orientations 5-8,
        i.e. 90/270 degree rotations, swap width and height).

    Raises:
        ImageReadError: the file does not exist, its header cannot be parsed, or the size is beyond
            :func:`image_size_problem`'s limit (message gives the size and the limit).

    Reads the header with Pillow's format plugins, without Pillow's decompression-bomb check (the
    limit above applies instead); falls back to a full OpenCV decode when Pillow is not installed or
    does not read the format's header.
    """
    spath = os.fspath(path)
    if not os.path.isfile(spath):
        raise ImageReadError("image file not found", spath)
    header = _pillow_header(spath)
    if header is None:  # formats Pillow lacks but OpenCV reads; raises if undecodable
        img = _decode(spath)
        return int(img.shape[1]), int(img.shape[0])
    w, h, orientation = header
    problem = image_size_problem(w, h)
    if problem is not None:
        raise ImageReadError(problem, spath)
    if orientation in _TRANSPOSING_ORIENTATIONS:
        w, h = h, w
    return w, h


def _decode(spath: str) -> np.ndarray:
    import cv2  # lazy: keeps ``import yolo4.data`` light

    try:
        buf = np.fromfile(spath, dtype=np.uint8)
    except OSError as e:
        raise ImageReadError(f"cannot read image file ({e.strerror or e})", spath) from None
    problem = _png_chunk_problem(buf)
    if problem is not None:
        raise ImageReadError(problem, spath)
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    except cv2.error:  # e.g. a header above OpenCV's own size limit
        img = None
    if img is None or img.ndim != 3 or img.shape[2] != 3:
        raise ImageReadError("cannot decode image (corrupt or unsupported format)", spath)
    return img


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_chunk_problem(buf: np.ndarray) -> Optional[str]:
    """Why a PNG's chunk lengths are impossible, or None. OpenCV's PNG reader allocates what a chunk
    header claims before reading it: a 65-byte file whose chunk claims 4 GB takes seconds and 4 GB of
    memory to refuse. No chunk may claim more bytes than the whole file has."""
    if buf[:8].tobytes() != _PNG_SIGNATURE:
        return None
    data = memoryview(buf)
    offset = 8
    while offset + 8 <= len(data):
        length = int.from_bytes(bytes(data[offset:offset + 4]), "big")
        kind = bytes(data[offset + 4:offset + 8])
        if length > len(data):
            return (f"cannot decode image (corrupt PNG: chunk {kind.decode('latin-1')!r} at byte {offset} "
                    f"claims {length} bytes, the file has {len(data)})")
        if kind == b"IEND":
            break
        offset += 12 + length
    return None


def _pillow_header(spath: str) -> Optional[Tuple[int, int, Optional[int]]]:
    """``(width, height, EXIF orientation or None)`` from the file header via Pillow's plugins.

    Returns None when Pillow is absent, no plugin recognizes the file, or the plugin itself refuses a
    large size (WebP enforces Pillow's limit inside its reader): the caller then lets OpenCV decide.
    This is :func:`PIL.Image.open` without its ``_decompression_bomb_check``: the plugin registry
    (``Image.ID``/``Image.OPEN``, filled by ``preinit``/``init``) is walked the way ``open`` walks it.

    Raises:
        ImageReadError: a plugin recognized the file but cannot parse its header.
    """
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a declared dependency
        return None
    try:
        with open(spath, "rb") as fp:
            prefix = fp.read(16)
            tried = set()
            for loader in (Image.preinit, Image.init):
                loader()
                for fmt in list(Image.ID):
                    if fmt in tried:
                        continue
                    tried.add(fmt)
                    factory, accept = Image.OPEN[fmt]
                    accepted = accept(prefix) if accept else True
                    if not accepted or isinstance(accepted, str):  # a str is a "maybe" warning
                        continue
                    fp.seek(0)
                    try:
                        im = factory(fp, spath)
                    except (SyntaxError, IndexError, TypeError, struct.error):
                        continue  # not this format after all (Image.open's rule)
                    return _size_and_orientation(im)
    except Image.DecompressionBombError:
        return None
    except Exception as e:  # Pillow plugins raise many types on corrupt headers
        raise ImageReadError(f"cannot read image header ({type(e).__name__}: {e})", spath) from None
    return None


def _size_and_orientation(im: Any) -> Tuple[int, int, Optional[int]]:
    w, h = im.size
    orientation = None
    # PngImageFile.getexif() decodes the whole image to look for an eXIf chunk after the pixels:
    # only an eXIf chunk before them (where Pillow and most writers put it) is read here.
    if getattr(im, "format", None) != "PNG" or ("exif" in im.info and opencv_applies_png_exif()):
        try:
            orientation = im.getexif().get(_EXIF_ORIENTATION)
        except Exception:  # a broken EXIF block must not hide a readable size
            orientation = None
    return int(w), int(h), orientation
