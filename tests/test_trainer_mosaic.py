"""Trainer BoF: mosaic, CutMix, MixUp, blur, the mixing switch, determinism, bad images, preview.

Synthetic scenes: each image has its own background colour and coloured rectangles whose class id
names their colour, so every output box can be checked to still cover its own colour.
"""

import cv2
import numpy as np
import pytest
import torch

from yolo4.data.records import ImageRecord
from yolo4.trainer.augment import (
    MIN_BOX_PX,
    AugmentConfig,
    blur_background,
    choose_mix,
    cutmix,
    gaussian_blur,
    mixup,
    mosaic,
    mosaic_tile,
    random_blur,
)
from yolo4.trainer.dataset import YoloDataset, collate

#: BGR colour of class k (distinct hues, saturated so HSV-free tests read them back exactly)
COLOURS = [(0, 0, 255), (0, 255, 0), (255, 0, 0), (0, 255, 255), (255, 0, 255), (255, 255, 0)]
#: background of image j
BACKS = [(40, 40, 40), (90, 90, 90), (140, 140, 140), (200, 200, 200)]


def _scene(j, w=240, h=180):
    """Image j: background BACKS[j], two rectangles of classes j and (j + 1) % 6."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = BACKS[j]
    boxes = np.array([[20 + 10 * j, 30, 110 + 10 * j, 120], [140, 15 + 5 * j, 220, 160]], np.float32)
    classes = np.array([j, (j + 1) % 6], np.int64)
    for (x1, y1, x2, y2), c in zip(boxes.astype(int), classes):
        img[y1:y2, x1:x2] = COLOURS[c]
    return img, boxes, classes


def _covers_colour(img, box, cls, frac=0.9):
    x1, y1 = (int(np.ceil(v)) for v in box[:2])      # whole pixels inside the box (edges resample)
    x2, y2 = (int(np.floor(v)) for v in box[2:])
    sub = img[y1:y2, x1:x2].astype(int)
    if sub.size == 0:
        return False
    match = np.all(np.abs(sub - np.array(COLOURS[cls])) <= 40, axis=2)
    return match.mean() >= frac


def _records(tmp_path, n=4):
    recs = []
    for j in range(n):
        img, boxes, classes = _scene(j % 4)
        p = tmp_path / f"im{j}.png"
        cv2.imwrite(str(p), img)
        recs.append(ImageRecord(str(p), img.shape[1], img.shape[0], boxes, classes, j + 1))
    return recs


# ---- mosaic --------------------------------------------------------------------------------------

def test_mosaic_puts_four_images_in_four_quadrants_and_clips_boxes():
    hw = (192, 256)
    aug = AugmentConfig(flip=0.0)                  # geometry only: plain resize of each image
    tiles = [mosaic_tile(*_scene(k), hw, False, aug, np.random.default_rng(k), tile=k) for k in range(4)]
    cx, cy = 100, 80
    img, boxes, classes = mosaic(tiles, (cx, cy))
    assert img.shape == (192, 256, 3) and img.dtype == np.uint8
    assert boxes.dtype == np.float32 and classes.dtype == np.int64 and len(boxes) == len(classes)
    quads = {0: (0, 0, cx, cy), 1: (cx, 0, 256, cy), 2: (0, cy, cx, 192), 3: (cx, cy, 256, 192)}
    for k, (x1, y1, x2, y2) in quads.items():
        q = img[y1:y2, x1:x2].reshape(-1, 3)
        # the quadrant holds image k: its background is the most common grey there
        greys = [np.mean(np.all(q == np.array(b), axis=1)) for b in BACKS]
        assert int(np.argmax(greys)) == k, (k, greys)
        assert greys[k] > 0.2
    # each box lies inside one quadrant and still covers its colour; classes come from that image
    for b, c in zip(boxes, classes):
        assert b[2] - b[0] >= MIN_BOX_PX and b[3] - b[1] >= MIN_BOX_PX
        k = [k for k, (x1, y1, x2, y2) in quads.items()
             if b[0] >= x1 - 1e-4 and b[2] <= x2 + 1e-4 and b[1] >= y1 - 1e-4 and b[3] <= y2 + 1e-4]
        assert len(k) == 1, b
        assert int(c) in (k[0], (k[0] + 1) % 6)
        assert _covers_colour(img, b, int(c)), (b, c)
    # boxes of every image are present (each quadrant shows part of a coloured rectangle)
    assert {0, 1, 2, 3} <= set(classes.tolist()) | {(c - 1) % 6 for c in classes.tolist()}


def test_mosaic_takes_the_content_next_to_the_centre_and_drops_slivers():
    hw = (100, 100)
    img = np.zeros((100, 100, 3), np.uint8)
    img[:] = (10, 10, 10)
    img[:, 98:] = COLOURS[0]                         # a 2-px sliver at the right edge
    boxes = np.array([[98, 0, 100, 100]], np.float32)
    tile = mosaic_tile(img, boxes, np.array([0]), hw, False, AugmentConfig(flip=0.0), np.random.default_rng(0), 0)
    other = mosaic_tile(np.full((100, 100, 3), 200, np.uint8), np.zeros((0, 4), np.float32),
                        np.zeros(0, np.int64), hw, False, AugmentConfig(flip=0.0), np.random.default_rng(0), 1)
    out, b, c = mosaic([tile, other, other, other], (30, 40))
    # top-left quadrant = the right-bottom 30x40 corner of tile 0: the sliver sits at its right edge
    assert np.array_equal(out[0:40, 28:30], np.broadcast_to(np.array(COLOURS[0], np.uint8), (40, 2, 3)))
    assert b.tolist() == [[28.0, 0.0, 30.0, 40.0]] and c.tolist() == [0]
    # a centre that leaves under 1 px of the box in the quadrant drops it
    tile2 = (tile[0], np.array([[98.0, 0, 99.5, 100]], np.float32), tile[2], tile[3])
    _, b2, _ = mosaic([tile2, other, other, other], (30, 40))
    assert len(b2) == 1                              # 1.5 px wide: kept
    tile3 = (tile[0], np.array([[69.5, 0, 70.5, 100]], np.float32), tile[2], tile[3])
    _, b3, _ = mosaic([tile3, other, other, other], (30, 40))
    assert len(b3) == 0                              # only 0.5 px inside the quadrant: dropped


def test_mosaic_skips_jitter_padding_at_the_centre():
    """A tile whose content ends before the right edge (padding) still meets the centre line."""
    img = np.full((100, 100, 3), 200, np.uint8)
    content = np.array([0, 0, 60, 100], np.float32)  # columns 60.. are padding (grey 0)
    img[:, 60:] = 0
    tile = (img, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), content)
    out, _, _ = mosaic([tile, tile, tile, tile], (50, 50))
    assert np.all(out[:50, :50] == 200)              # no padding in the top-left quadrant


@pytest.mark.parametrize("seed", range(6))
def test_mosaic_samples_keep_boxes_on_their_colours(tmp_path, seed):
    aug = AugmentConfig(flip=0.5, jitter=0.3, mosaic=1.0)
    ds = YoloDataset(_records(tmp_path), (160, 192), False, aug, seed=seed)
    for i in range(len(ds)):
        img, boxes, classes = ds.sample(i)
        assert img.shape == (160, 192, 3)
        assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2] <= 192) and np.all(boxes[:, 3] <= 160)
        for b, c in zip(boxes, classes):
            if min(b[2] - b[0], b[3] - b[1]) < 4:
                continue                              # resampling blurs the edge of tiny slivers
            assert _covers_colour(img, b, int(c), 0.75), (seed, i, b, c)


# ---- mixup / cutmix ------------------------------------------------------------------------------

def _net_sample(j, hw=(120, 160)):
    return mosaic_tile(*_scene(j), hw, False, AugmentConfig(flip=0.0), np.random.default_rng(0), 0)[:3]


def test_mixup_blends_half_and_half_and_concatenates_labels():
    a, b = _net_sample(0), _net_sample(3)
    img, boxes, classes = mixup(a, b)
    expect = np.floor(a[0].astype(np.float64) * 0.5 + b[0].astype(np.float64) * 0.5 + 0.5)
    assert np.abs(img.astype(np.float64) - expect).max() <= 1
    assert np.array_equal(boxes, np.concatenate([a[1], b[1]])) and classes.tolist() == [0, 1, 3, 4]
    assert not np.array_equal(img, a[0]) and not np.array_equal(img, b[0])


def test_cutmix_pastes_the_rectangle_and_filters_boxes():
    a, b = _net_sample(0), _net_sample(3)
    rect = (60, 0, 160, 120)                          # the right part of the image, full height
    img, boxes, classes = cutmix(a, b, rect)
    assert np.array_equal(img[:, 60:], b[0][:, 60:]) and np.array_equal(img[:, :60], a[0][:, :60])
    a_boxes = boxes[:len([c for c in classes.tolist() if c in (0, 1)])]
    # a's class-0 box (x 13..73 at this scale) loses its right part: trimmed at x=60, still >= half
    # visible; a's class-1 box is entirely under the rectangle: dropped; b's boxes clipped inside it
    assert classes.tolist()[0] == 0 and 1 not in classes.tolist()[:1]
    assert a_boxes[0][2] == pytest.approx(60.0)
    for bb, c in zip(boxes, classes):
        assert _covers_colour(img, bb, int(c), 0.8), (bb, c)
    for bb in boxes[1:]:
        assert bb[0] >= 60 and bb[2] <= 160
    assert {3, 4} <= set(classes.tolist())


def test_cutmix_drops_a_box_mostly_covered():
    a = (np.zeros((100, 100, 3), np.uint8), np.array([[10, 10, 50, 50]], np.float32), np.array([2]))
    b = (np.full((100, 100, 3), 255, np.uint8), np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
    _, boxes, _ = cutmix(a, b, (0, 0, 45, 45))      # covers 35x35 of 40x40: 77 % hidden
    assert len(boxes) == 0
    _, boxes, _ = cutmix(a, b, (40, 40, 90, 90))     # covers 10x10: kept unchanged
    assert boxes.tolist() == [[10, 10, 50, 50]]


# ---- blur ----------------------------------------------------------------------------------------

def _textured(h=96, w=128):
    y, x = np.mgrid[0:h, 0:w]
    low = 60 + 100 * (x / w) + 40 * (y / h)
    high = 40 * (((x // 2) + (y // 2)) % 2)           # 4-px checkerboard
    return np.clip(low + high, 0, 255).astype(np.uint8)[..., None].repeat(3, 2)


def _lowpass(img):
    return cv2.resize(img.astype(np.float32), (img.shape[1] // 16, img.shape[0] // 16),
                      interpolation=cv2.INTER_AREA)


def _hf_energy(img):
    return float(np.var(cv2.Laplacian(img[..., 0].astype(np.float32), cv2.CV_32F)))


def test_blur_removes_high_frequencies_only():
    img = _textured()
    out = gaussian_blur(img, 7)
    assert _hf_energy(out) < 0.1 * _hf_energy(img)
    assert np.abs(_lowpass(out) - _lowpass(img))[1:-1, 1:-1].max() < 3.0


def test_background_blur_keeps_boxes_sharp():
    img = _textured()
    box = np.array([[20, 10, 70, 60]], np.float32)
    out = blur_background(img, box)
    assert np.array_equal(out[10:60, 20:70], img[10:60, 20:70])
    assert _hf_energy(out[70:, 80:]) < 0.1 * _hf_energy(img[70:, 80:])


def test_random_blur_draws_darknet_modes_and_respects_small_objects():
    img = _textured()
    big = np.array([[0, 0, 100, 90]], np.float32)    # min side 90 -> level up to 11
    kinds = set()
    for s in range(30):
        out = random_blur(img, big, 5, np.random.default_rng(s))
        if out is img:
            kinds.add("none")
        elif np.array_equal(out[:90, :100], img[:90, :100]):
            kinds.add("background")
        else:
            kinds.add("whole")
    assert kinds == {"none", "background", "whole"}
    tiny = np.array([[0, 0, 10, 10]], np.float32)    # min side 10 -> 10 // 8 = 1 -> background only
    for s in range(30):
        out = random_blur(img, tiny, 5, np.random.default_rng(s))
        assert out is img or np.array_equal(out[:10, :10], img[:10, :10])


def test_dataset_blur_changes_samples(tmp_path):
    recs = _records(tmp_path, 2)
    plain = YoloDataset(recs, (96, 128), False, AugmentConfig(flip=0.0), seed=0)
    blurred = YoloDataset(recs, (96, 128), False, AugmentConfig(flip=0.0, blur=9), seed=0)
    changed = 0
    for e in range(6):
        plain.set_epoch(e)
        blurred.set_epoch(e)
        a, b = plain.sample(0), blurred.sample(0)
        assert np.array_equal(a[1], b[1])             # blur is the last step: same boxes
        changed += not np.array_equal(a[0], b[0])
    assert changed >= 2


# ---- the switch, cfg keys, determinism -------------------------------------------------------------

def test_from_cfg_follows_darknet_parse_net_options():
    f = AugmentConfig.from_cfg
    assert (f({}).mosaic, f({}).cutmix, f({}).mixup, f({}).blur) == (0.0, 0.0, 0.0, 0)
    assert (f({"mosaic": "1"}).mosaic, f({"mosaic": 1}).mixup) == (0.5, 0.0)
    assert (f({"mosaic": 1, "mixup": 1}).mosaic, f({"mosaic": 1, "mixup": 1}).mixup) == (0.5, 0.0)
    a = f({"mosaic": 1, "cutmix": 1})
    assert (a.mosaic, a.cutmix) == (0.25, 0.25)
    assert f({"cutmix": 1}).cutmix == 0.5 and f({"mixup": 1}).mixup == 0.5 and f({"mixup": 3}).mosaic == 0.5
    assert f({"blur": "5"}).blur == 5


def test_choose_mix_half_of_the_samples():
    aug = AugmentConfig(mosaic=0.25, cutmix=0.25)
    rng = np.random.default_rng(0)
    modes = [choose_mix(aug, rng) for _ in range(4000)]
    assert 0.45 < modes.count("none") / 4000 < 0.55
    assert 0.2 < modes.count("mosaic") / 4000 < 0.3 and 0.2 < modes.count("cutmix") / 4000 < 0.3
    rng = np.random.default_rng(0)
    assert choose_mix(AugmentConfig(), rng) == "none" and rng.random() == np.random.default_rng(0).random()


ALL_ON = AugmentConfig(flip=0.5, hue=0.1, saturation=1.5, exposure=1.5, jitter=0.3,
                       mosaic=0.3, cutmix=0.3, mixup=0.3, blur=5)


def test_every_augmentation_is_a_function_of_seed_epoch_index(tmp_path):
    recs = _records(tmp_path, 6)
    d1 = YoloDataset(recs, (96, 128), False, ALL_ON, seed=7)
    d2 = YoloDataset(recs, (96, 128), False, ALL_ON, seed=7)
    d2.set_epoch(3)
    later = [d2[i] for i in range(6)]
    d1.set_epoch(3)
    for i in reversed(range(6)):                     # any order, fresh objects
        a = d1[i]
        assert torch.equal(a[0], later[i][0]) and torch.equal(a[1], later[i][1])
    d1.set_epoch(4)
    assert any(not torch.equal(d1[i][0], later[i][0]) for i in range(6))
    d3 = YoloDataset(recs, (96, 128), False, ALL_ON, seed=8)
    d3.set_epoch(3)
    assert any(not torch.equal(d3[i][0], later[i][0]) for i in range(6))


def test_loader_batches_do_not_depend_on_workers(tmp_path):
    ds = YoloDataset(_records(tmp_path, 6), (64, 96), False, ALL_ON, seed=1)
    ds.set_epoch(2)

    def batches(workers):
        dl = torch.utils.data.DataLoader(ds, batch_size=3, sampler=[5, 0, 3, 1, 4, 2], num_workers=workers,
                                         collate_fn=collate)
        return list(dl)

    for (i0, t0, n0), (i2, t2, n2) in zip(batches(0), batches(2)):
        assert torch.equal(i0, i2) and torch.equal(t0, t2) and torch.equal(n0, n2)


def test_unreadable_images_do_not_kill_the_epoch(tmp_path):
    recs = _records(tmp_path, 3)
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    recs.insert(1, ImageRecord(str(tmp_path / "bad.jpg"), 240, 180, np.zeros((0, 4), np.float32),
                               np.zeros(0, np.int64), 9))
    ds = YoloDataset(recs, (64, 96), False, AugmentConfig(mosaic=0.5, mixup=0.5), seed=0)
    with pytest.warns(Warning, match="unreadable"):
        out = [ds[i] for i in range(len(ds))]
    assert all(o[0].shape == (3, 64, 96) for o in out)
