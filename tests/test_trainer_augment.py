"""Trainer: augmentation keeps boxes on their pixels; HSV semantics; LR schedule; parameter groups."""

import math

import cv2
import numpy as np
import pytest
import torch

from yolo4.trainer.augment import AugmentConfig, hflip, hsv_jitter, jitter_crop, prepare_sample, rand_scale
from yolo4.trainer.schedule import BurnInCosine, clip_burn_in


def _scene(w=300, h=200):
    """Black image with two white rectangles; boxes = their pixel extents (x2/y2 exclusive)."""
    img = np.zeros((h, w, 3), np.uint8)
    boxes = np.array([[30, 40, 110, 120], [180, 20, 280, 90]], np.float32)
    for x1, y1, x2, y2 in boxes.astype(int):
        img[y1:y2, x1:x2] = 255
    return img, boxes, np.array([0, 1], np.int64)


def _white_extent(img, box):
    """Bounding box of the white pixels inside ``box`` (+2 px margin) of a resized image."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    x1, y1 = max(x1 - 2, 0), max(y1 - 2, 0)
    sub = img[y1:y2 + 2, x1:x2 + 2, 0] > 200      # not the 128 letterbox grey
    ys, xs = np.nonzero(sub)
    return np.array([xs.min() + x1, ys.min() + y1, xs.max() + 1 + x1, ys.max() + 1 + y1], np.float32)


@pytest.mark.parametrize("letter_box", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_boxes_follow_their_pixels_through_jitter_flip_and_resize(letter_box, seed):
    img, boxes, classes = _scene()
    aug = AugmentConfig(flip=0.5, jitter=0.2)
    out, b, c = prepare_sample(img, boxes, classes, (160, 192), letter_box, aug, np.random.default_rng(seed))
    assert out.shape == (160, 192, 3) and out.dtype == np.uint8
    assert b.dtype == np.float32 and c.dtype == np.int64 and len(b) == len(c)
    assert np.all(b[:, 0] >= 0) and np.all(b[:, 2] <= 192) and np.all(b[:, 1] >= 0) and np.all(b[:, 3] <= 160)
    for box in b:
        if (box[2] - box[0]) < 6 or (box[3] - box[1]) < 6:
            continue  # mostly cropped away: too few pixels to measure
        assert np.abs(_white_extent(out, box) - box).max() <= 2.0, (box, _white_extent(out, box))


def test_no_augmentation_is_the_shared_resize():
    from yolo4.runtime.preprocess import resize_one

    img, boxes, classes = _scene()
    out, b, c = prepare_sample(img, boxes, classes, (128, 128), True)
    ref, t = resize_one(img, (128, 128), True)
    assert np.array_equal(out, ref)
    expect = boxes * np.array([t.scale_x, t.scale_y, t.scale_x, t.scale_y], np.float32) + \
        np.array([t.pad_x, t.pad_y, t.pad_x, t.pad_y], np.float32)
    assert np.allclose(b, expect) and c.tolist() == [0, 1]


def test_hflip_mirrors_boxes():
    img, boxes, _ = _scene()
    out, b = hflip(img, boxes)
    assert np.array_equal(out, img[:, ::-1])
    assert b.tolist() == [[190, 40, 270, 120], [20, 20, 120, 90]]


def test_jitter_pads_outside_with_the_mean_colour_and_drops_nothing_inside():
    img = np.full((100, 100, 3), 10, np.uint8)
    img[:50] = 30                                  # mean = 20
    boxes = np.array([[10, 10, 40, 40]], np.float32)
    rng = np.random.default_rng(5)
    crop, b = jitter_crop(img, boxes, 0.3, rng)
    assert crop.dtype == np.uint8 and crop.ndim == 3
    # every pixel is either image content (10 / 30) or the mean fill (20)
    assert set(np.unique(crop).tolist()) <= {10, 20, 30}
    assert np.all(b[:, [0, 2]] >= 0) and np.all(b[:, [0, 2]] <= crop.shape[1])


def test_hsv_jitter_darknet_semantics():
    red = np.zeros((4, 4, 3), np.uint8)
    red[:] = (0, 0, 200)                           # BGR red: H=0, S=255, V=200
    # +1/3 of the hue circle turns red into green
    g = hsv_jitter(red, 1 / 3, 1.0, 1.0)
    assert g[0, 0, 1] > 150 and g[0, 0, 0] < 30 and g[0, 0, 2] < 30
    # exposure scales V: half as bright
    dark = hsv_jitter(red, 0.0, 1.0, 0.5)
    assert abs(int(dark[0, 0, 2]) - 100) <= 2
    # saturation 0 -> grey
    grey = hsv_jitter(red, 0.0, 0.0, 1.0)
    assert int(grey[0, 0].max()) - int(grey[0, 0].min()) <= 1
    # negative hue shift wraps
    m = hsv_jitter(red, -1 / 3, 1.0, 1.0)             # red - 120 deg = blue
    assert m[0, 0, 0] > 150 and m[0, 0, 1] < 30


def test_rand_scale_range():
    rng = np.random.default_rng(0)
    v = np.array([rand_scale(1.5, rng) for _ in range(2000)])
    assert v.min() >= 1 / 1.5 - 1e-9 and v.max() <= 1.5 + 1e-9
    assert 0.4 < np.mean(v >= 1) < 0.6
    assert rand_scale(1.0, rng) == 1.0


def test_augment_config_from_cfg_net_options():
    a = AugmentConfig.from_cfg({"hue": 0.1, "saturation": 1.5, "exposure": "1.5", "flip": 1}, 0.3)
    assert (a.flip, a.hue, a.saturation, a.exposure, a.jitter) == (0.5, 0.1, 1.5, 1.5, 0.3)
    assert AugmentConfig.from_cfg({"flip": 0}).flip == 0.0


def test_burn_in_then_cosine():
    s = BurnInCosine(lr=0.01, total_iters=100, burn_in=10, power=4, final_ratio=0.01)
    # darknet burn-in: lr * (batch_num / burn_in)^4, batch_num = it + 1
    assert s(0) == pytest.approx(0.01 * (1 / 10) ** 4)
    assert s(4) == pytest.approx(0.01 * (5 / 10) ** 4)
    assert s(10) == pytest.approx(0.01)
    assert s(99) == pytest.approx(0.0001)
    mid = 10 + (99 - 10) / 2
    assert s(int(mid)) == pytest.approx(0.01 * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * (int(mid) - 10) / 89))))
    lrs = [s(i) for i in range(10, 100)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert clip_burn_in(1000, 60) == 6 and clip_burn_in(3, 600) == 3 and clip_burn_in(0, 10) == 0


def test_weight_decay_only_on_conv_weights():
    from yolo4.trainer.train import param_groups

    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, bias=False), torch.nn.BatchNorm2d(4),
                            torch.nn.Conv2d(4, 2, 1, bias=True))
    decayed, plain = param_groups(m, 5e-4)
    assert decayed["weight_decay"] == 5e-4 and plain["weight_decay"] == 0.0
    assert {id(p) for p in decayed["params"]} == {id(m[0].weight), id(m[2].weight)}
    assert {id(p) for p in plain["params"]} == {id(m[1].weight), id(m[1].bias), id(m[2].bias)}


def test_dataset_and_collate(tmp_path):
    from yolo4.data.records import ImageRecord
    from yolo4.trainer.dataset import YoloDataset, collate

    img, boxes, classes = _scene()
    paths = []
    for i in range(2):
        p = tmp_path / f"im{i}.png"
        cv2.imwrite(str(p), img)
        paths.append(p)
    recs = [ImageRecord(str(paths[0]), 300, 200, boxes, classes, 1),
            ImageRecord(str(paths[1]), 300, 200, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), 2)]
    ds = YoloDataset(recs, (96, 128), False, AugmentConfig(flip=0.5, hue=0.1, saturation=1.5, exposure=1.5),
                     seed=3)
    a, b = ds[0], ds[0]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])      # same epoch + index: same draw
    ds.set_epoch(1)
    images, targets, idx = collate([ds[0], ds[1]])
    assert images.shape == (2, 3, 96, 128) and images.dtype == torch.uint8
    assert targets.shape == (2, 6) and targets.dtype == torch.float32
    assert targets[:, 0].tolist() == [0.0, 0.0] and sorted(targets[:, 1].tolist()) == [0.0, 1.0]
    # plain resize 300x200 -> 128x96: box widths scale by 128/300, heights by 96/200 (flip keeps sizes)
    wh = sorted(targets[:, 4:6].tolist())
    assert wh[0] == pytest.approx([80 * 128 / 300, 80 * 96 / 200], abs=1e-3)
    assert wh[1] == pytest.approx([100 * 128 / 300, 70 * 96 / 200], abs=1e-3)
    assert idx.tolist() == [0, 1]
