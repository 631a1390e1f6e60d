"""yolo4.data.images (imread, image_size) and yolo4.data.names (load_names)."""

import cv2
import numpy as np
import pytest

from yolo4.data import IMAGE_SUFFIXES, VIDEO_SUFFIXES, image_size, imread, is_image_file, load_names
from yolo4.errors import DataError, ImageReadError


def _gradient(h, w):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 3 % 256, y * 5 % 256, (x + y) % 256], axis=-1).astype(np.uint8)


def test_imread_real_jpeg_is_bgr_uint8(shared_data):
    path = shared_data / "darknet" / "images" / "dog.jpg"
    img = imread(path)
    assert img.shape == (576, 768, 3) and img.dtype == np.uint8
    assert np.array_equal(img, cv2.imread(str(path)))  # same decoder, same channel order
    assert image_size(path) == (768, 576)


def test_imread_non_ascii_path_roundtrip(tmp_path):
    src = _gradient(23, 37)
    path = tmp_path / "ünïcødé 图像 ñ.png"
    ok, buf = cv2.imencode(".png", src)
    assert ok
    buf.tofile(str(path))
    out = imread(path)
    assert np.array_equal(out, src)  # PNG is lossless: exact BGR pixels back
    assert image_size(str(path)) == (37, 23)


def test_imread_grayscale_becomes_three_channels(tmp_path):
    gray = (np.arange(12 * 10) % 256).astype(np.uint8).reshape(12, 10)
    path = tmp_path / "g.png"
    cv2.imwrite(str(path), gray)
    img = imread(path)
    assert img.shape == (12, 10, 3)
    for c in range(3):
        assert np.array_equal(img[:, :, c], gray)


def test_imread_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.jpg"
    with pytest.raises(ImageReadError, match="not found") as info:
        imread(missing)
    assert str(missing) in str(info.value)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg" * 10)
    with pytest.raises(ImageReadError, match="decode") as info:
        imread(corrupt)
    assert str(corrupt) in str(info.value)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageReadError):
        imread(empty)
    with pytest.raises(ImageReadError):
        imread(tmp_path)  # a folder


def test_image_size_errors(tmp_path):
    with pytest.raises(ImageReadError, match="not found"):
        image_size(tmp_path / "nope.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"garbage" * 20)
    with pytest.raises(ImageReadError) as info:
        image_size(bad)
    assert str(bad) in str(info.value)


def test_image_size_follows_exif_rotation_like_imread(tmp_path):
    from PIL import Image

    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(np.zeros((20, 40, 3), np.uint8)).save(path, exif=exif.tobytes())
    h, w = imread(path).shape[:2]
    assert (h, w) == (40, 20)  # OpenCV applies the rotation
    assert image_size(path) == (w, h)


def test_suffix_lists():
    for suffixes in (IMAGE_SUFFIXES, VIDEO_SUFFIXES):
        assert all(s.startswith(".") and s == s.lower() for s in suffixes)
    assert not set(IMAGE_SUFFIXES) & set(VIDEO_SUFFIXES)
    assert {".jpg", ".jpeg", ".png", ".bmp"} <= set(IMAGE_SUFFIXES)
    assert {".mp4", ".avi"} <= set(VIDEO_SUFFIXES)
    assert is_image_file("A/B/IMG_01.JPG") and not is_image_file("clip.mp4")


def test_load_names_strips_and_skips_blank_lines(tmp_path):
    path = tmp_path / "my.names"
    path.write_bytes("\ufeffcat\r\n  dog  \n\n\t\nhot dog\n".encode("utf-8"))
    assert load_names(path) == ["cat", "dog", "hot dog"]


def test_load_names_real_coco(shared_data):
    names = load_names(shared_data / "darknet" / "coco.names")
    assert len(names) == 80 and names[0] == "person" and names[79] == "toothbrush"


def test_load_names_errors(tmp_path):
    with pytest.raises(DataError, match="not found") as info:
        load_names(tmp_path / "absent.names")
    assert "absent.names" in str(info.value)
    blank = tmp_path / "blank.names"
    blank.write_text("\n  \n")
    with pytest.raises(DataError, match="no class name"):
        load_names(blank)
    binary = tmp_path / "bin.names"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DataError, match="UTF-8"):
        load_names(binary)
