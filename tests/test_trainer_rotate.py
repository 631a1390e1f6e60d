"""Trainer: optional rotation/shear augmentation ([net] angle, shear): the warp and its boxes, the
ultralytics box_candidates rule, nothing drawn when off, determinism, the cfg/--set keys."""

import math
import warnings

import numpy as np
import pytest

from yolo4.model.cfg.text import parse_cfg_text
from yolo4.runtime.preprocess import PAD_VALUE_U8, resize_one
from yolo4.trainer.augment import (
    MIN_BOX_PX,
    WARP_MAX_ASPECT,
    WARP_MIN_AREA,
    AugmentConfig,
    _crop,
    _jitter_offsets,
    affine_matrix,
    clip_boxes,
    hflip,
    mosaic_tile,
    prepare_sample,
    random_blur,
    random_hsv,
    random_warp,
    warp_sample,
)
from yolo4.trainer.hyp import apply_hyp, parse_overrides, section_of

S = 160  # square test image side


def _rect_image(box, size=(S, S), bg=PAD_VALUE_U8):
    """Grey image (the pad grey, so the warp border is invisible) with one white filled rectangle."""
    img = np.full((size[0], size[1], 3), bg, np.uint8)
    x1, y1, x2, y2 = (int(v) for v in box)
    img[y1:y2, x1:x2] = 255
    return img, np.array([box], np.float32), np.array([3], np.int64)


def _extent(mask):
    """x1, y1, x2, y2 (pixel edges) of the True pixels of a 2-D mask."""
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def _rotated_corners(box, angle_deg, centre=(S / 2, S / 2)):
    """Reference: the box's 4 corners rotated counter-clockwise (as displayed, y down) about ``centre``."""
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    x1, y1, x2, y2 = box
    pts = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float64) - centre
    return np.stack([c * pts[:, 0] + s * pts[:, 1], -s * pts[:, 0] + c * pts[:, 1]], 1) + centre


def _enclosing(pts):
    return np.array([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()])


# ---- the pure warp -----------------------------------------------------------------------------

def test_affine_matrix_identity_centre_and_ultralytics_composition():
    assert np.allclose(affine_matrix((S, 2 * S)), [[1, 0, 0], [0, 1, 0]])
    m = affine_matrix((120, 200), 33.0, 7.0, -4.0)
    assert m.shape == (2, 3)
    assert np.allclose(m @ [100, 60, 1], [100, 60])          # the image centre is fixed
    # rotation part = cv2's convention, shear about the centre: M = T @ S @ R @ C
    m_rot = affine_matrix((S, S), 30.0)
    pts = _rotated_corners((20, 30, 60, 50), 30.0)
    got = np.stack([m_rot @ [x, y, 1] for x, y in [(20, 30), (60, 30), (60, 50), (20, 50)]])
    assert np.allclose(got, pts)
    sh = affine_matrix((S, S), 0.0, 10.0, 0.0)
    assert np.allclose(sh[:, :2], [[1, math.tan(math.radians(10))], [0, 1]])


@pytest.mark.parametrize("angle, shx, shy", [(15, 0, 0), (30, 0, 0), (-40, 0, 0), (7, 0, 0),
                                             (0, 10, -5), (0, -8, 0), (25, 8, 6)])
def test_warped_box_encloses_white_pixels_tightly(angle, shx, shy):
    img, boxes, classes = _rect_image((50, 60, 110, 90))
    out, b, c = warp_sample(img, boxes, classes, angle, shx, shy)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert b.shape == (1, 4) and b.dtype == np.float32 and c.tolist() == [3]
    any_white = _extent(out[..., 0] > PAD_VALUE_U8)     # every pixel with some white in it
    mostly_white = _extent(out[..., 0] >= 200)
    # the box encloses all white pixels (a pixel touched at its edge may hang over by < 1.1 px) ...
    assert np.all(any_white[:2] >= b[0, :2] - 1.1) and np.all(any_white[2:] <= b[0, 2:] + 1.1), (any_white, b)
    # ... and is tight: the mostly-white pixels reach within ~1 px of each side
    assert np.all(np.abs(mostly_white - b[0]) <= 1.5), (mostly_white, b)
    assert not np.array_equal(out, img)


def test_rotation_matches_the_rotated_corners():
    box = (20, 30, 60, 50)
    img, boxes, classes = _rect_image(box)
    for angle in (12.0, -27.0):
        _, b, _ = warp_sample(img, boxes, classes, angle)
        assert np.allclose(b[0], _enclosing(_rotated_corners(box, angle)), atol=1e-3)


def test_rotation_by_90_swaps_width_and_height():
    img, boxes, classes = _rect_image((20, 30, 60, 50))      # 40 wide, 20 high, off-centre
    out, b, _ = warp_sample(img, boxes, classes, 90.0)
    assert np.allclose(b[0], [30, 100, 50, 140], atol=1e-3)  # 20 wide, 40 high, moved about the centre
    assert np.array_equal(_extent(out[..., 0] > PAD_VALUE_U8), b[0])
    assert np.array_equal(_extent(out[..., 0] == 255), b[0])


def test_border_uses_the_pad_grey():
    img = np.full((S, S, 3), 30, np.uint8)
    out, _, _ = warp_sample(img, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), 45.0)
    assert out[0, 0].tolist() == [PAD_VALUE_U8] * 3 and out[S // 2, S // 2].tolist() == [30] * 3
    out7, _, _ = warp_sample(img, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), 45.0, pad=7)
    assert out7[0, 0].tolist() == [7] * 3


# ---- box filtering (ultralytics box_candidates) --------------------------------------------------

def test_mostly_out_box_dropped_partly_out_box_kept_clipped():
    img = np.full((S, S, 3), PAD_VALUE_U8, np.uint8)
    mostly_out, partly_out, inside = (0, 0, 24, 24), (0, 0, 30, 30), (70, 70, 90, 100)
    boxes = np.array([mostly_out, partly_out, inside], np.float32)
    # 35 deg: the 24 px corner box keeps a 2 px wide strip, 6 % of its rotated box (the rule, not the
    # MIN_BOX_PX or aspect tests, drops it)
    t = _enclosing(_rotated_corners(mostly_out, 35.0))
    cl = np.clip(t, 0, S)
    w2, h2 = cl[2] - cl[0], cl[3] - cl[1]
    assert w2 >= MIN_BOX_PX and max(w2 / h2, h2 / w2) < WARP_MAX_ASPECT
    assert 0 < w2 * h2 < WARP_MIN_AREA * (t[2] - t[0]) * (t[3] - t[1])
    _, b, c = warp_sample(img, boxes, np.array([0, 1, 2]), 35.0)
    assert c.tolist() == [1, 2]
    expect = np.clip(_enclosing(_rotated_corners(partly_out, 35.0)), 0, S)
    assert expect[0] == 0 and np.allclose(b[0], expect, atol=1e-3)          # clipped at the left edge
    assert np.allclose(b[1], _enclosing(_rotated_corners(inside, 35.0)), atol=1e-3)
    # wholly outside: dropped; at 20 deg the corner box keeps 41 % and stays
    _, b, c = warp_sample(img, np.array([(0, 0, 12, 12), partly_out], np.float32), np.array([0, 1]), 45.0)
    assert c.tolist() == [1]
    _, b, c = warp_sample(img, np.array([partly_out], np.float32), np.array([1]), 20.0)
    assert c.tolist() == [1] and b[0, 0] == 0


def test_aspect_ratio_rule_drops_slivers():
    img = np.full((S, S, 3), PAD_VALUE_U8, np.uint8)
    boxes = np.array([[20, 40, 140, 44], [20, 80, 140, 88]], np.float32)   # 120x4 (ar 30), 120x8 (ar 15)
    _, b, c = warp_sample(img, boxes, np.array([0, 1]), 0.01)
    assert c.tolist() == [1] and np.allclose(b[0], boxes[1], atol=0.05)


# ---- the random wrapper and the pipeline ---------------------------------------------------------

def test_off_draws_nothing_and_returns_the_input():
    img, boxes, classes = _rect_image((50, 60, 110, 90))
    rng = np.random.default_rng(5)
    state = rng.bit_generator.state
    out, b, c, content = random_warp(img, boxes, classes, AugmentConfig(angle=0.0, shear=0.0), rng)
    assert rng.bit_generator.state == state
    assert out is img and np.array_equal(b, boxes) and np.array_equal(c, classes)
    assert content.tolist() == [0, 0, S, S]
    random_warp(img, boxes, classes, AugmentConfig(angle=10.0), rng)
    assert rng.bit_generator.state != state                 # on: it draws from the sample's rng


def _pre_change_sample(img, boxes, classes, hw, letter_box, aug, rng):
    """prepare_sample as it was before rotation/shear: jitter, flip, resize, HSV, clip, blur."""
    offsets = _jitter_offsets(img.shape[1], img.shape[0], aug.jitter, rng) if aug.jitter > 0 else None
    flip = aug.flip > 0 and rng.random() < aug.flip
    crop, b, _ = _crop(img, boxes, offsets)
    out, t = resize_one(crop, hw, letter_box)
    b = b.copy()
    b[:, [0, 2]] = b[:, [0, 2]] * t.scale_x + t.pad_x
    b[:, [1, 3]] = b[:, [1, 3]] * t.scale_y + t.pad_y
    if flip:
        out, b = hflip(out, b)
    out = random_hsv(out, aug, rng)
    b, classes = clip_boxes(b, classes, (0, 0, hw[1], hw[0]))
    out = random_blur(out, b, aug.blur, rng)
    return out, b, classes


def _scene():
    img = np.zeros((200, 300, 3), np.uint8)
    img[:, :, 1] = np.arange(300, dtype=np.uint8)[None] // 2        # some colour for the HSV step
    boxes = np.array([[30, 40, 110, 120], [180, 20, 280, 90]], np.float32)
    for x1, y1, x2, y2 in boxes.astype(int):
        img[y1:y2, x1:x2] = 255
    return img, boxes, np.array([0, 1], np.int64)


@pytest.mark.parametrize("letter_box", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_angle_shear_zero_keeps_the_pre_change_sample_and_stream(letter_box, seed):
    img, boxes, classes = _scene()
    base = AugmentConfig(flip=0.5, jitter=0.3, hue=0.1, saturation=1.5, exposure=1.5, blur=5)
    zero = AugmentConfig(flip=0.5, jitter=0.3, hue=0.1, saturation=1.5, exposure=1.5, blur=5,
                         angle=0.0, shear=0.0)
    r_ref, r_base, r_zero = (np.random.default_rng(seed) for _ in range(3))
    ref = _pre_change_sample(img, boxes, classes, (128, 160), letter_box, base, r_ref)
    got_base = prepare_sample(img, boxes, classes, (128, 160), letter_box, base, r_base)
    got_zero = prepare_sample(img, boxes, classes, (128, 160), letter_box, zero, r_zero)
    for got in (got_base, got_zero):
        for x, y in zip(ref, got):
            assert np.array_equal(x, y)
    assert r_ref.bit_generator.state == r_base.bit_generator.state == r_zero.bit_generator.state
    # and with rotation on the sample (and the stream) changes
    r_on = np.random.default_rng(seed)
    on = prepare_sample(img, boxes, classes, (128, 160), letter_box, AugmentConfig(
        flip=0.5, jitter=0.3, hue=0.1, saturation=1.5, exposure=1.5, blur=5, angle=20.0), r_on)
    assert not np.array_equal(on[0], ref[0]) and r_on.bit_generator.state != r_ref.bit_generator.state


def test_random_warp_deterministic_per_seed():
    img, boxes, classes = _rect_image((50, 60, 110, 90))
    aug = AugmentConfig(angle=20.0, shear=5.0)
    outs = [random_warp(img, boxes, classes, aug, np.random.default_rng(s)) for s in (0, 0, 1, 2)]
    assert np.array_equal(outs[0][0], outs[1][0]) and np.array_equal(outs[0][1], outs[1][1])
    assert not np.array_equal(outs[0][0], outs[2][0]) and not np.array_equal(outs[2][0], outs[3][0])
    assert not np.array_equal(outs[0][1], outs[2][1])
    for out, b, _, _ in outs:                               # the boxes follow the pixels
        assert np.all(np.abs(_extent(out[..., 0] >= 200) - b[0]) <= 1.5)
    # the draws are U(-angle, angle) and U(-shear, shear) (x, y), in that order
    r = np.random.default_rng(0)
    a, (sx, sy) = r.uniform(-20, 20), r.uniform(-5, 5, size=2)
    assert np.array_equal(outs[0][0], warp_sample(img, boxes, classes, a, sx, sy)[0])
    only_shear = random_warp(img, boxes, classes, AugmentConfig(shear=5.0), np.random.default_rng(0))
    r = np.random.default_rng(0)
    assert np.array_equal(only_shear[0], warp_sample(img, boxes, classes, 0.0, *r.uniform(-5, 5, size=2))[0])


@pytest.mark.parametrize("letter_box", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_pipeline_boxes_follow_pixels_with_rotation(letter_box, seed):
    img = np.zeros((200, 300, 3), np.uint8)
    img[50:130, 40:200] = 255
    aug = AugmentConfig(flip=0.5, jitter=0.1, angle=30.0, shear=5.0)
    out, b, c = prepare_sample(img, np.array([[40, 50, 200, 130]], np.float32), np.array([4]), (160, 192),
                               letter_box, aug, np.random.default_rng(seed))
    plain, pb, _ = prepare_sample(img, np.array([[40, 50, 200, 130]], np.float32), np.array([4]), (160, 192),
                                  letter_box, AugmentConfig(flip=0.5, jitter=0.1), np.random.default_rng(seed))
    assert c.tolist() == [4] and out.shape == (160, 192, 3)
    assert not np.array_equal(out, plain) and not np.allclose(b, pb)
    assert np.all(np.abs(_extent(out[..., 0] >= 200) - b[0]) <= 2.0), (b, _extent(out[..., 0] >= 200))


def test_mosaic_tile_gets_the_warp():
    img = np.zeros((200, 300, 3), np.uint8)
    img[50:130, 40:200] = 255
    boxes, classes = np.array([[40, 50, 200, 130]], np.float32), np.array([4])
    off = mosaic_tile(img, boxes, classes, (128, 128), True, AugmentConfig(flip=0.0), np.random.default_rng(0), 0)
    on = mosaic_tile(img, boxes, classes, (128, 128), True, AugmentConfig(flip=0.0, angle=30.0),
                     np.random.default_rng(0), 0)
    assert not np.array_equal(on[0], off[0])
    assert np.all(np.abs(_extent(on[0][..., 0] >= 200) - on[1][0]) <= 1.5)
    # the letterbox content rectangle (rows 21..107 of 128) grows to the box around its rotated self
    assert on[3][1] < off[3][1] and on[3][3] > off[3][3]


# ---- configuration -------------------------------------------------------------------------------

def test_from_cfg_reads_angle_and_shear():
    aug = AugmentConfig.from_cfg({"angle": "10", "shear": "2"}, 0.3)
    assert (aug.angle, aug.shear, aug.jitter) == (10.0, 2.0, 0.3)
    assert isinstance(aug.angle, float) and isinstance(aug.shear, float)
    default = AugmentConfig.from_cfg({}, 0.3)
    assert (default.angle, default.shear) == (0.0, 0.0) and not default.warping
    neg = AugmentConfig.from_cfg({"angle": "-15", "shear": -3}, None)
    assert (neg.angle, neg.shear) == (15.0, 3.0) and neg.warping            # negative -> abs


CFG = """[net]
width=64
height=64
channels=3
angle=10
shear=5

[convolutional]
filters=18
size=1
stride=1
activation=linear

[yolo]
mask=0,1,2
anchors=10,14, 23,27, 37,58
classes=1
num=3
jitter=.3
"""


def test_cfg_with_shear_parses_without_warnings_and_set_works():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        secs = parse_cfg_text(CFG)
    assert secs[0].options["shear"] == "5" and secs[0].options["angle"] == "10"
    aug = AugmentConfig.from_cfg(dict(secs[0].options), 0.3)
    assert (aug.angle, aug.shear) == (10.0, 5.0)
    # --set angle=.. / shear=..: float [net] hyperparameters
    assert parse_overrides(["angle=12.5", "shear=3"]) == {"angle": 12.5, "shear": 3.0}
    assert section_of("angle") == "net" and section_of("shear") == "net"
    new = apply_hyp(CFG.replace("angle=10\nshear=5\n", ""), {"angle": 12.5, "shear": 3.0})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net = parse_cfg_text(new)[0].options
    assert net["angle"] == "12.5" and net["shear"] == "3"
