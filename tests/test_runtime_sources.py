"""iter_sources over files, folders, globs and videos; unreadable inputs become ImageReadError items."""

import cv2
import numpy as np
import pytest

from yolo4.errors import ImageReadError
from yolo4.runtime.sources import SourceItem, iter_sources


def _write_image(path, value):
    img = np.full((20, 30, 3), value, np.uint8)
    assert cv2.imwrite(str(path), img)
    return img


@pytest.fixture()
def folder(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    _write_image(d / "b.png", 200)
    _write_image(d / "a.jpg", 100)
    (d / "x.jpg").write_bytes(b"this is not a jpeg \x00\xff\xd8 garbage" * 20)
    (d / "notes.txt").write_text("not an image")
    (d / "sub").mkdir()
    _write_image(d / "sub" / "c.png", 50)
    return d


def test_folder_sorted_with_corrupt_file_as_error_item(folder):
    items = list(iter_sources([folder]))
    assert [p.split("/")[-1] for p, _, _ in items] == ["a.jpg", "b.png", "x.jpg"]  # sorted, no txt, no subdir
    (pa, fa, ia), (_, _, ib), (px, fx, ix) = items
    assert isinstance(items[0], SourceItem) and fa is None
    assert ia.shape == (20, 30, 3) and ia.dtype == np.uint8
    assert abs(int(ia.mean()) - 100) <= 2 and np.array_equal(ib, np.full((20, 30, 3), 200, np.uint8))
    assert isinstance(ix, ImageReadError) and fx is None
    assert str(ix).startswith(str(folder / "x.jpg"))


def test_files_globs_and_missing(folder, tmp_path):
    items = list(iter_sources([folder / "b.png", str(folder / "**" / "*.png"), tmp_path / "nope.jpg",
                               str(tmp_path / "*.bmp")]))
    names = [p.split("/")[-1] for p, _, _ in items]
    assert names == ["b.png", "b.png", "c.png", "nope.jpg", "*.bmp"]
    assert all(isinstance(i, np.ndarray) for _, _, i in items[:3])
    missing, nomatch = items[3].image, items[4].image
    assert isinstance(missing, ImageReadError) and "nope.jpg" in str(missing)
    assert isinstance(nomatch, ImageReadError) and "no files match" in str(nomatch)


def test_video_frames_and_stride(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (32, 24))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write MJPG/AVI")
    for i in range(5):
        writer.write(np.full((24, 32, 3), 40 * i, np.uint8))
    writer.release()
    items = list(iter_sources([path]))
    assert [f for _, f, _ in items] == [0, 1, 2, 3, 4]
    assert all(img.shape == (24, 32, 3) for _, _, img in items)
    assert [abs(int(img.mean()) - 40 * i) <= 3 for i, (_, _, img) in enumerate(items)] == [True] * 5
    assert [f for _, f, _ in iter_sources([path], vid_stride=2)] == [0, 2, 4]


def test_corrupt_video_is_an_error_item(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    (item,) = list(iter_sources([bad]))
    assert item.frame_index is None and isinstance(item.image, ImageReadError)
    assert "bad.mp4" in str(item.image)
