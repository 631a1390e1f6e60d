"""Preprocessing: plain resize / darknet letterbox geometry, channel order, scaling, inverse mapping."""

import cv2
import numpy as np
import pytest

from yolo4.runtime.preprocess import (
    PAD_VALUE_U8,
    Transform,
    letterbox_geometry,
    preprocess,
    resize_one,
    scale_boxes_to_original,
)


def _solid(w, h, bgr):
    img = np.empty((h, w, 3), np.uint8)
    img[:] = bgr
    return img


def test_plain_resize_shape_dtype_channels_and_scale():
    img = _solid(640, 480, (10, 100, 200))  # B, G, R
    batch, (t,) = preprocess([img], (320, 416), letter_box=False)
    assert batch.shape == (1, 3, 320, 416)
    assert batch.dtype == np.float32 and batch.flags.c_contiguous
    # RGB order, /255
    assert np.allclose(batch[0, 0], 200 / 255) and np.allclose(batch[0, 1], 100 / 255)
    assert np.allclose(batch[0, 2], 10 / 255)
    assert t == Transform(scale_x=416 / 640, scale_y=320 / 480, pad_x=0.0, pad_y=0.0, orig_w=640, orig_h=480)


def test_plain_resize_is_cv2_inter_linear_and_matches_resize_one():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (123, 77, 3), dtype=np.uint8)
    batch, _ = preprocess([img], (64, 96), letter_box=False)
    expected = cv2.resize(img, (96, 64), interpolation=cv2.INTER_LINEAR)[:, :, ::-1].transpose(2, 0, 1) / 255.0
    assert np.allclose(batch[0], expected, atol=1e-6)
    resized, t = resize_one(img, (64, 96), letter_box=False)
    assert resized.dtype == np.uint8 and resized.shape == (64, 96, 3)
    assert np.array_equal(resized, cv2.resize(img, (96, 64), interpolation=cv2.INTER_LINEAR))
    assert t.scale_x == 96 / 77 and t.scale_y == 64 / 123


@pytest.mark.parametrize("wh, input_hw, expected", [
    # darknet letterbox_image: netw/w < neth/h -> new_w = netw, new_h = h*netw//w (C int division)
    ((640, 480), (416, 416), (416, 480 * 416 // 640, 0, (416 - 312) // 2)),   # 416x312, pad_y 52
    ((500, 333), (608, 608), (608, 333 * 608 // 500, 0, (608 - 404) // 2)),   # 404.9 -> 404, pad_y 102
    # otherwise new_h = neth, new_w = w*neth//h
    ((300, 700), (416, 416), (300 * 416 // 700, 416, (416 - 178) // 2, 0)),   # 178.3 -> 178, pad_x 119
    ((640, 480), (320, 640), (320 * 640 // 480, 320, (640 - 426) // 2, 0)),   # non-square input
])
def test_letterbox_geometry_matches_darknet_integer_arithmetic(wh, input_hw, expected):
    assert letterbox_geometry(wh, input_hw, True) == expected
    assert letterbox_geometry(wh, input_hw, False) == (input_hw[1], input_hw[0], 0, 0)


def test_letterbox_pads_exactly_half_grey_and_centres_content():
    img = _solid(640, 480, (0, 0, 255))  # pure red
    batch, (t,) = preprocess([img], (416, 416), letter_box=True)
    # content 416x312 at rows 52..363
    assert np.all(batch[0, :, :52, :] == 0.5) and np.all(batch[0, :, 364:, :] == 0.5)
    assert np.all(batch[0, 0, 52:364, :] == 1.0) and np.all(batch[0, 1:, 52:364, :] == 0.0)
    assert (t.pad_x, t.pad_y) == (0.0, 52.0)
    assert t.scale_x == 416 / 640 and t.scale_y == 312 / 480
    assert t.content_wh == (416.0, 312.0)

    u8, t2 = resize_one(img, (416, 416), letter_box=True)
    assert t2 == t
    assert np.all(u8[:52] == PAD_VALUE_U8) and np.all(u8[364:] == PAD_VALUE_U8) and PAD_VALUE_U8 == 128
    assert np.all(u8[52:364] == (0, 0, 255))


def test_batch_of_mixed_sizes():
    imgs = [_solid(100, 50, (0, 0, 0)), _solid(30, 90, (255, 255, 255)), np.zeros((40, 40), np.uint8)]
    batch, ts = preprocess(imgs, (64, 64), letter_box=True)
    assert batch.shape == (3, 3, 64, 64)
    assert [(t.orig_w, t.orig_h) for t in ts] == [(100, 50), (30, 90), (40, 40)]
    # 30x90 -> new_w = 30*64//90 = 21, pad_x = (64-21)//2 = 21
    assert np.all(batch[1, :, :, :21] == 0.5) and np.all(batch[1, :, :, 21:42] == 1.0)
    assert np.all(batch[1, :, :, 42:] == 0.5)
    assert np.all(batch[2] == 0.0)  # grey input expanded, square -> no padding


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        preprocess([], (64, 64), False)
    with pytest.raises(ValueError, match="uint8"):
        preprocess([np.zeros((10, 10, 3), np.float32)], (64, 64), False)
    with pytest.raises(ValueError, match="HxWx3"):
        preprocess([np.zeros((10, 10, 2), np.uint8)], (64, 64), False)


@pytest.mark.parametrize("letter_box", [False, True])
def test_inverse_mapping_recovers_a_drawn_rectangle(letter_box):
    """Draw a white rectangle, find it in the network input, map it back: same place (within resampling)."""
    w, h = 500, 300
    img = np.zeros((h, w, 3), np.uint8)
    x1, y1, x2, y2 = 120, 60, 320, 240  # pixel columns x1..x2-1, rows y1..y2-1
    img[y1:y2, x1:x2] = 255
    batch, (t,) = preprocess([img], (256, 320), letter_box)
    mask = batch[0, 0] > 0.75  # 0.5-grey padding stays below
    ys, xs = np.nonzero(mask)
    found_in = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
    back = scale_boxes_to_original(found_in, t)
    assert np.allclose(back, [[x1, y1, x2, y2]], atol=2.5)


def test_scale_boxes_round_trip_and_clip():
    t = Transform(scale_x=0.5, scale_y=0.25, pad_x=10.0, pad_y=20.0, orig_w=200, orig_h=400)
    orig = np.array([[10, 40, 110, 240], [0, 0, 200, 400]], np.float32)
    fwd = orig.copy()
    fwd[:, [0, 2]] = orig[:, [0, 2]] * 0.5 + 10
    fwd[:, [1, 3]] = orig[:, [1, 3]] * 0.25 + 20
    assert np.allclose(scale_boxes_to_original(fwd, t), orig)
    # a box hanging over the padding is clipped to the image
    out = scale_boxes_to_original(np.array([[0, 0, 500, 500]], np.float32), t)
    assert out.dtype == np.float32 and np.allclose(out, [[0, 0, 200, 400]])
    unclipped = scale_boxes_to_original(np.array([[0, 0, 500, 500]], np.float32), t, clip=False)
    assert np.allclose(unclipped, [[-20, -80, 980, 1920]])
    assert scale_boxes_to_original(np.zeros((0, 4), np.float32), t).shape == (0, 4)


def test_bgra_and_one_channel_grey_are_converted():
    """HxWx4 BGRA: the alpha channel is dropped; HxWx1 grey: copied to the three channels."""
    bgra = np.empty((30, 40, 4), np.uint8)
    bgra[:] = (10, 100, 200, 0)
    bgra[:, 20:, 3] = 255  # the alpha varies: it must not matter
    batch, (t,) = preprocess([bgra], (32, 32), letter_box=False)
    assert (t.orig_w, t.orig_h) == (40, 30)
    assert np.allclose(batch[0, 0], 200 / 255) and np.allclose(batch[0, 1], 100 / 255)
    assert np.allclose(batch[0, 2], 10 / 255)
    u8, _ = resize_one(bgra, (32, 32), letter_box=False)
    assert u8.shape == (32, 32, 3) and np.all(u8 == (10, 100, 200))

    grey = np.full((30, 40, 1), 77, np.uint8)
    batch, _ = preprocess([grey], (32, 32), letter_box=False)
    assert batch.shape == (1, 3, 32, 32) and np.allclose(batch[0], 77 / 255)
    u8, _ = resize_one(grey, (32, 32), letter_box=True)  # 40x30 -> 32x24 at pad_y 4
    assert u8.shape == (32, 32, 3) and np.all(u8[4:28] == 77) and np.all(u8[:4] == PAD_VALUE_U8)


def test_image_already_at_the_content_size_is_not_resampled():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    batch, (t,) = preprocess([img], (64, 96), letter_box=False)
    assert np.allclose(batch[0], img[:, :, ::-1].transpose(2, 0, 1) / 255.0, atol=1e-6)
    assert (t.scale_x, t.scale_y, t.pad_x, t.pad_y) == (1.0, 1.0, 0.0, 0.0)
    u8, _ = resize_one(img, (64, 96), letter_box=True)
    assert np.array_equal(u8, img)
    # letterbox: a 96x48 image in a 96x96 input keeps its size, at rows 24..71
    half = img[:48]
    batch, (t,) = preprocess([half], (96, 96), letter_box=True)
    assert (t.scale_x, t.scale_y, t.pad_y) == (1.0, 1.0, 24.0)
    assert np.allclose(batch[0, :, 24:72], half[:, :, ::-1].transpose(2, 0, 1) / 255.0, atol=1e-6)
    assert np.all(batch[0, :, :24] == 0.5) and np.all(batch[0, :, 72:] == 0.5)


@pytest.mark.parametrize("letter_box", [False, True])
def test_one_pixel_image_fills_its_content(letter_box):
    """A 1x1 image: bilinear resampling of one pixel is that pixel everywhere in the content.
    Letterbox into 4x6 (HxW): netw/w = 6 > neth/h = 4, so new_w = 1 * 4 // 1 = 4, new_h = 4, pad_x = 1."""
    img = np.array([[[7, 8, 9]]], np.uint8)
    batch, (t,) = preprocess([img], (4, 6), letter_box)
    u8, _ = resize_one(img, (4, 6), letter_box)
    cols = slice(1, 5) if letter_box else slice(0, 6)
    assert np.allclose(batch[0, :, :, cols], np.array([9, 8, 7])[:, None, None] / 255)
    assert np.all(u8[:, cols] == (7, 8, 9)) and u8.shape == (4, 6, 3)
    if letter_box:
        assert (t.pad_x, t.scale_x, t.scale_y) == (1.0, 4.0, 4.0)
        assert np.all(batch[0, :, :, [0, 5]] == 0.5) and np.all(u8[:, [0, 5]] == PAD_VALUE_U8)


def test_one_row_and_one_column_images_are_bilinear():
    """Pixels 0 and 200 stretched from 2 to 4 (OpenCV's half-pixel centres): source x = (x + 0.5) / 2 - 0.5
    = -0.25, 0.25, 0.75, 1.25 -> 0, 0.75*0 + 0.25*200, 0.25*0 + 0.75*200, 200 = 0, 50, 150, 200."""
    row = np.zeros((1, 2, 3), np.uint8)
    row[0, 1] = 200
    u8, t = resize_one(row, (2, 4), letter_box=False)
    assert np.all(u8[..., 0] == [[0, 50, 150, 200]] * 2) and (t.orig_w, t.orig_h) == (2, 1)
    col = row.transpose(1, 0, 2).copy()  # 1 wide, 2 high
    batch, (t,) = preprocess([col], (4, 2), letter_box=False)
    assert np.allclose(batch[0, 1] * 255, [[0, 0], [50, 50], [150, 150], [200, 200]], atol=1e-4)
    assert (t.orig_w, t.orig_h) == (1, 2)


@pytest.mark.parametrize("wh, input_hw, bad", [
    ((0, 5), (64, 32), "image size 0x5 and input size 32x64"),
    ((5, 0), (64, 32), "image size 5x0 and input size 32x64"),
    ((5, 5), (64, 0), "image size 5x5 and input size 0x64"),
    ((5, 5), (0, 32), "image size 5x5 and input size 32x0"),
    ((-3, 5), (64, 32), "image size -3x5"),
])
def test_letterbox_geometry_rejects_each_non_positive_size(wh, input_hw, bad):
    for letter_box in (False, True):
        with pytest.raises(ValueError, match=bad):
            letterbox_geometry(wh, input_hw, letter_box)


def test_one_pixel_sizes_are_valid_and_keep_one_pixel_of_content():
    """Each size may be 1. A 1x1000 (WxH) image in 416x416: netw/w = 416 >= neth/h = .416, so new_h = 416,
    new_w = 1 * 416 // 1000 = 0 -> at least 1, pad_x = (416 - 1) // 2 = 207; 1000x1 likewise in y."""
    assert letterbox_geometry((1, 1), (1, 1), True) == (1, 1, 0, 0)
    assert letterbox_geometry((1, 7), (3, 1), False) == (1, 3, 0, 0)
    assert letterbox_geometry((7, 1), (1, 3), True) == (3, 1, 0, 0)   # netw/w = 3/7 < neth/h = 1
    assert letterbox_geometry((1, 1000), (416, 416), True) == (1, 416, 207, 0)
    assert letterbox_geometry((1000, 1), (416, 416), True) == (416, 1, 0, 207)
    img = np.full((1, 1000, 3), 255, np.uint8)
    batch, (t,) = preprocess([img], (416, 416), letter_box=True)
    assert np.all(batch[0, :, 207] == 1.0) and np.all(batch[0, :, :207] == 0.5) and np.all(batch[0, :, 208:] == 0.5)
    assert t.content_wh == (416.0, 1.0)


def test_resize_one_letterbox_non_square_input_is_uint8_hxw():
    """640x480 into 320x640 (HxW): netw/w = 1 >= neth/h = .667, so new_w = 640 * 320 // 480 = 426,
    new_h = 320, pad_x = (640 - 426) // 2 = 107."""
    img = _solid(640, 480, (1, 2, 3))
    u8, t = resize_one(img, (320, 640), letter_box=True)
    assert u8.shape == (320, 640, 3) and u8.dtype == np.uint8 and u8.flags.c_contiguous
    assert np.all(u8[:, 107:533] == (1, 2, 3))
    assert np.all(u8[:, :107] == PAD_VALUE_U8) and np.all(u8[:, 533:] == PAD_VALUE_U8)
    assert (t.pad_x, t.pad_y) == (107.0, 0.0)


def test_scale_boxes_to_original_computes_in_float64_from_any_dtype():
    """(x - pad) / scale in float64, then float32: integer boxes are not truncated, float16 boxes not
    rounded to float16 (100 / 3 = 33.33 here; 33.34 in float16)."""
    t = Transform(scale_x=3.0, scale_y=2.0, pad_x=0.0, pad_y=1.0, orig_w=1000, orig_h=1000)
    want = np.array([[100 / 3, 99 / 2, 200 / 3, 199 / 2]], np.float32)
    for boxes in ([[100, 100, 200, 200]], np.array([[100, 100, 200, 200]], np.float16),
                  np.array([[100, 100, 200, 200]], np.int32)):
        out = scale_boxes_to_original(boxes, t)
        assert out.dtype == np.float32 and np.array_equal(out, want)


def test_empty_batch_message():
    with pytest.raises(ValueError, match="needs at least one image"):
        preprocess([], (64, 64), True)
