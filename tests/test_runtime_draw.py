"""draw_detections: boxes and labels land where the detections are, in stable per-class colours."""

import numpy as np

from yolo4.runtime.draw import class_color, draw_detections
from yolo4.runtime.postprocess import Detections


def test_draws_box_and_label_on_a_copy():
    img = np.zeros((200, 300, 3), np.uint8)
    det = Detections(np.array([[50, 60, 150, 160]], np.float32), np.array([0.9], np.float32),
                     np.array([2], np.int64))
    out = draw_detections(img, det, names=["a", "b", "car"], thickness=2)
    assert out.shape == img.shape and out.dtype == np.uint8 and not img.any()  # input untouched
    color = np.array(class_color(2), np.uint8)
    # the box edge (left side, middle) has the class colour; the box interior is untouched
    assert np.array_equal(out[110, 50], color)
    assert not out[100:150, 60:140].any()
    # the label sits above the box (filled with the class colour)
    assert (out[30:58, 50:100] == color).all(axis=-1).sum() > 100
    # nothing far away from the detection is drawn
    assert not out[170:, 200:].any()


def test_class_colours_stable_and_distinct():
    assert class_color(5) == class_color(5)
    colours = [class_color(i) for i in range(80)]
    assert all(0 <= c <= 255 for col in colours for c in col)
    assert all(colours[i] != colours[i + 1] for i in range(79))


def test_empty_detections_and_unknown_names():
    img = np.full((50, 50, 3), 7, np.uint8)
    assert np.array_equal(draw_detections(img, Detections()), img)
    det = Detections(np.array([[5, 20, 40, 45]], np.float32), np.array([0.5], np.float32), np.array([9]))
    assert draw_detections(img, det, names=["only"]).any()  # id without a name is drawn as "9"
