"""One image size limit for datasets and inference: large images are read, decompression bombs are
refused in one line (never a Pillow DecompressionBombError/Warning, never an exhausted memory)."""

import struct
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from yolo4.data import MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE, image_size, image_size_problem, imread, load_dataset
from yolo4.data.images import opencv_applies_png_exif
from yolo4.errors import ImageReadError

LIMIT = 1 << 30  # OpenCV's CV_IO_MAX_IMAGE_PIXELS default


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png(path: Path, w: int, h: int, rows: bool = True) -> Path:
    """A 1-bit grayscale PNG of zeros, compressed row by row (a 15000x15000 one is ~27 kB and takes
    ~0.1 s). ``rows=False`` writes only the IHDR's claim and a few compressed bytes: the shape of a
    decompression bomb, whose header promises far more than the file holds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    z = zlib.compressobj(9)
    if rows:
        row = bytes(1 + (w + 7) // 8)
        data = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    else:
        data = z.compress(bytes(64)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", data) + _chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def aerial(tmp_path_factory):
    """A real 15000x15000 PNG (225 megapixels: above Pillow's 179-megapixel error limit) in a YOLO set."""
    root = tmp_path_factory.mktemp("aerial")
    _png(root / "images" / "tile.png", 15000, 15000)
    (root / "labels").mkdir()
    (root / "labels" / "tile.txt").write_text("0 0.5 0.5 0.1 0.2\n")
    (root / "data.yaml").write_text("path: .\nval: images\nnames: [car]\n")
    return root


def test_the_limit_is_opencvs_default():
    assert MAX_IMAGE_PIXELS == LIMIT and MAX_IMAGE_SIDE == 1 << 20
    assert image_size_problem(32768, 32768) is None  # exactly 2^30
    assert "above the limit of 1073741824 pixels" in image_size_problem(32769, 32768)
    assert image_size_problem(1 << 20, 1) is None
    assert "side above the limit of 1048576" in image_size_problem((1 << 20) + 1, 1)
    assert image_size_problem(0, 5) is not None and image_size_problem(5, -1) is not None


def test_a_15000_square_png_has_its_header_size_without_pillow_warnings(aerial):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning would raise here
        assert image_size(aerial / "images" / "tile.png") == (15000, 15000)


def test_a_15000_square_png_in_a_dataset_is_a_record(aerial):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        split = load_dataset(aerial / "data.yaml")
    assert split.warnings == []
    rec = split.records[0]
    assert (rec.width, rec.height) == (15000, 15000)
    np.testing.assert_allclose(rec.boxes, [[0.45 * 15000, 0.4 * 15000, 0.55 * 15000, 0.6 * 15000]])


def test_a_15000_square_png_is_decoded_by_imread(aerial):
    img = imread(aerial / "images" / "tile.png")  # ~675 MB, ~2.5 s
    assert img.shape == (15000, 15000, 3) and img.dtype == np.uint8
    assert not img[::997, ::991].any()
    del img


def test_pillow_warning_range_is_silent(tmp_path):
    # 10000x10000 = 1e8 pixels: between Pillow's warning (89.5 M) and error (179 M) limits.
    path = _png(tmp_path / "p.png", 10000, 10000, rows=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert image_size(path) == (10000, 10000)


@pytest.mark.parametrize("w, h, ok", [(32768, 32768, True), (32769, 32768, False), (1 << 20, 1, True),
                                      ((1 << 20) + 1, 1, False), (100000, 200000, False)])
def test_header_sizes_at_the_limit(tmp_path, w, h, ok):
    path = _png(tmp_path / "claim.png", w, h, rows=False)
    if ok:
        assert image_size(path) == (w, h)
    else:
        with pytest.raises(ImageReadError) as info:
            image_size(path)
        assert str(info.value).startswith(f"{path}: image size {w}x{h}") and "limit" in str(info.value)


def test_opencv_refuses_what_the_limit_refuses(tmp_path):
    # The limit is OpenCV's: its decoder does not read the refused images either (it returns None or,
    # above CV_IO_MAX_IMAGE_PIXELS, raises cv2.error, which imread turns into ImageReadError).
    for w, h in ((32769, 32768), ((1 << 20) + 1, 1)):
        buf = np.fromfile(str(_png(tmp_path / "c.png", w, h, rows=False)), np.uint8)
        try:
            img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        except cv2.error as e:
            assert "CV_IO_MAX_IMAGE" in str(e)
            img = None
        assert img is None, (w, h)


def test_imread_refuses_a_bomb_from_its_header_in_one_line(tmp_path):
    path = _png(tmp_path / "bomb.png", 100000, 200000, rows=False)  # claims 20 gigapixels, 140 bytes
    with pytest.raises(ImageReadError) as info:
        imread(path)
    assert str(info.value) == (f"{path}: image size 100000x200000 (20000000000 pixels) is above the limit "
                               "of 1073741824 pixels")


def test_a_bomb_in_a_dataset_is_a_skipped_image(tmp_path):
    _png(tmp_path / "images" / "bomb.png", 100000, 200000, rows=False)
    _png(tmp_path / "images" / "ok.png", 16, 8)
    (tmp_path / "data.yaml").write_text("path: .\nval: images\nnames: [a]\n")
    split = load_dataset(tmp_path / "data.yaml")
    assert [(r.width, r.height) for r in split.records] == [(16, 8)]
    assert split.warnings == ["images/bomb.png: image size 100000x200000 (20000000000 pixels) is above the "
                              "limit of 1073741824 pixels; image skipped"]


def test_image_size_reads_a_png_header_without_decoding_the_pixels(tmp_path, aerial, monkeypatch):
    from PIL import PngImagePlugin

    # Pillow's PngImageFile.getexif() decodes the whole image when the EXIF block is not in the header.
    loads = []
    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", lambda self: loads.append(self.size))
    assert image_size(aerial / "images" / "tile.png") == (15000, 15000)
    path = tmp_path / "broken_pixels.png"
    ihdr = struct.pack(">IIBBBBB", 40, 30, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"not zlib at all")
                     + _chunk(b"IEND", b""))
    assert image_size(path) == (40, 30)
    assert loads == []
    with pytest.raises(ImageReadError, match="cannot decode"):
        imread(path)


def test_png_exif_rotation_agrees_with_imread(tmp_path):
    from PIL import Image

    path = tmp_path / "rotated.png"
    exif = Image.Exif()
    exif[0x0112] = 8  # "rotate 270 CW to display"
    Image.fromarray(np.zeros((20, 40, 3), np.uint8)).save(path, exif=exif.tobytes())
    h, w = imread(path).shape[:2]
    # OpenCV 4.5.4 (JetPack 5.1's, the oldest-versions lane) ignores a PNG's eXIf orientation
    assert (h, w) == ((40, 20) if opencv_applies_png_exif() else (20, 40))
    assert image_size(path) == (w, h)


def test_a_png_chunk_claiming_more_than_the_file_is_refused_before_decoding(tmp_path):
    # OpenCV's PNG reader allocates what a chunk header claims: this 61-byte file used to take seconds
    # and 4 GB of memory to fail.
    path = tmp_path / "chunk.png"
    ihdr = struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + b"\xff\xff\xff\xffIDAT" + bytes(20))
    with pytest.raises(ImageReadError) as info:
        imread(path)
    assert str(info.value) == (f"{path}: cannot decode image (corrupt PNG: chunk 'IDAT' at byte 33 claims "
                               "4294967295 bytes, the file has 61)")
    assert image_size(path) == (8, 8)  # the header itself is fine
    ok = _png(tmp_path / "ok.png", 8, 8)
    assert imread(ok).shape == (8, 8, 3)
