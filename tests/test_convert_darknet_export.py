"""``yolo4 export --format darknet``: .cfg + .weights + .names that darknet's readers take.

Checked against the real yolov4-tiny (the .weights written back is byte-identical to darknet's
release file) and against OpenCV's independent darknet importer (cv2.dnn.readNetFromDarknet) on a
re-headed 2-class model with perturbed batch-norm statistics: OpenCV's raw [yolo] inputs equal
ours. Batch-norm epsilon as in tests/test_model_opencv.py (OpenCV uses 1e-6, darknet 1e-5).
"""

import numpy as np
import pytest
import torch

from tests.conftest import assert_user_error, run_cli
from yolo4.convert.darknet_export import cfg_with_size, darknet_paths, export_darknet
from yolo4.model import load_darknet

cv2 = pytest.importorskip("cv2")


def test_paths_and_cfg_size():
    assert [p.name for p in darknet_paths("out/best.weights")] == ["best.weights", "best.cfg", "best.names"]
    assert [p.name for p in darknet_paths("best")] == ["best.weights", "best.cfg", "best.names"]
    text = "# c\n[net]\nwidth=608\nheight=608\nchannels=3\n[convolutional]\nfilters=8\n"
    out = cfg_with_size(text, (320, 416))
    assert "width=416\nheight=320\n" in out and out.startswith("# c\n[net]\n") and "filters=8" in out
    assert "width=416\nheight=320" in cfg_with_size("[net]\nchannels=3\n", (320, 416))


@pytest.mark.shared
def test_real_yolov4_tiny_round_trip_is_byte_identical(shared_data, tmp_path):
    out = tmp_path / "tiny.weights"
    p = run_cli("export", "--format", "darknet", "--cfg", shared_data / "darknet" / "cfg" / "yolov4-tiny.cfg",
                "--weights", shared_data / "weights" / "yolov4-tiny.weights", "-o", out, "--img-size", "320")
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == (shared_data / "weights" / "yolov4-tiny.weights").read_bytes()
    cfg = (tmp_path / "tiny.cfg").read_text()
    assert "width=320" in cfg and "height=320" in cfg
    assert len((tmp_path / "tiny.names").read_text().splitlines()) == 80
    assert f"wrote {out.resolve()}" in p.stdout


@pytest.mark.shared
def test_reheaded_model_reads_back_in_opencv(shared_data, tmp_path):
    model = load_darknet(shared_data / "darknet" / "cfg" / "yolov4-tiny.cfg",
                         shared_data / "weights" / "yolov4-tiny.weights", names=["cat", "dog"], num_classes=2)
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():  # non-trivial BN statistics, so a mix-up of scales/means/variances shows
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.add_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
            m.running_var.mul_(1 + torch.rand(m.running_var.shape, generator=gen))
            m.eps = 1e-6  # OpenCV's
    res = export_darknet(model, tmp_path / "two.weights", input_hw=(320, 320))
    assert res.names.read_text() == "cat\ndog\n" and res.input_hw == (320, 320)
    net = cv2.dnn.readNetFromDarknet(str(res.cfg), str(res.weights))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    if hasattr(net, "enableWinograd"):
        net.enableWinograd(False)
    img = cv2.imread(str(shared_data / "darknet" / "images" / "dog.jpg"))
    blob = cv2.dnn.blobFromImage(img, 1 / 255.0, (320, 320), swapRB=True, crop=False)
    names = list(net.getLayerNames())
    feeds = [names[names.index(y) - 2] for y in names if y.startswith("yolo_")]
    net.setInput(blob)
    ref = net.forward(feeds)
    with torch.no_grad():
        ours = [t.numpy() for t in model(torch.from_numpy(blob), raw=True)]
    assert [r.shape for r in ref] == [o.shape for o in ours] == [(1, 21, 10, 10), (1, 21, 20, 20)]
    for r, o in zip(ref, ours):
        assert np.abs(r - o).max() < 1e-4, np.abs(r - o).max()


def test_onnx_only_options_are_refused(tmp_path):
    p = run_cli("export", "--format", "darknet", "--cfg", "yolov4-tiny", "-o", tmp_path / "x.weights", "--fp16")
    assert p.returncode == 2 and "--fp16 apply to ONNX exports" in p.stderr
    p = run_cli("export", "--format", "caffe", "--cfg", "yolov4-tiny", "-o", tmp_path / "x")
    assert p.returncode == 2 and "'caffe' is not one of onnx, darknet" in p.stderr
    assert not list(tmp_path.iterdir())


def test_unwritable_output_is_one_line(tmp_path):
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "x.cfg").mkdir()  # a folder where the cfg should go
    p = run_cli("export", "--format", "darknet", "--cfg", "yolov4-tiny", "-o", tmp_path / "ro" / "x.weights")
    assert_user_error(p, "x.cfg")
    assert not (tmp_path / "ro" / "x.weights").exists()
