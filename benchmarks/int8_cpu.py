"""End-to-end CPU latency of yolov4-tiny, batch 1: FP32 ONNX vs Q/DQ INT8 ONNX on ONNX Runtime, and
OpenCV DNN, timed in alternating blocks in one run (see ``infer_cpu.measure``).

Each timed iteration = read the JPEG, preprocess, forward, post-process (threshold + DIoU-NMS). The
INT8 models are made here (``yolo4 export --int8``'s code) unless given: the ``tensorrt`` Q/DQ layout
(Q/DQ on Conv inputs, what TensorRT wants; ONNX Runtime cannot fuse it into integer kernels) and the
``onnxruntime`` layout (U8S8 Q/DQ around every op, ONNX Runtime's QLinearConv path).

    YOLO4_ASSET_MIRROR=../shared/data python benchmarks/int8_cpu.py [--runs 30] [--threads N]
        [--calib-images 64] [--fp32 F.onnx --int8 Q.onnx --int8-ort Q2.onnx]

Prints a Markdown table (median and p90 ms, speed-up over FP32 ONNX Runtime).
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from infer_cpu import measure, opencv_pipeline, print_table  # noqa: E402

from yolo4.assets import resolve_cfg, resolve_weights  # noqa: E402
from yolo4.data.images import imread  # noqa: E402
from yolo4.pipeline import open_backend  # noqa: E402
from yolo4.runtime.backends.onnxruntime_backend import physical_cores  # noqa: E402
from yolo4.runtime.detector import Detector  # noqa: E402


def onnx_pipeline(path, conf, iou, threads):
    det = Detector(open_backend(onnx=str(path), threads=threads, log=lambda m: None), score_threshold=conf,
                   iou_threshold=iou)

    def run(p):
        return len(det.detect([imread(p)])[0].scores)

    return run


def make_models(work: Path, size: int, calib_images: int):
    """FP32 export and both Q/DQ layouts of yolov4-tiny, calibrated on the first coco128 images."""
    from yolo4.calib.images import CalibrationSet
    from yolo4.calib.qdq import quantize_qdq
    from yolo4.convert import export_onnx
    from yolo4.data.datasets import load_dataset
    from yolo4.pipeline import load_torch_model

    module = load_torch_model("yolov4-tiny", "yolov4-tiny", None, None, log=lambda m: None)
    fp32 = work / "fp32.onnx"
    export_onnx(module, fp32, img_size=(size, size), log=lambda m: None)
    paths = sorted(r.path for r in load_dataset("coco128", "train").records)[:calib_images]
    cs = CalibrationSet.from_paths(paths, (size, size), False, 8)
    out = {"fp32": fp32}
    for layout in ("tensorrt", "onnxruntime"):
        out[layout] = quantize_qdq(fp32, work / ("int8-%s.onnx" % layout), cs, layout=layout,
                                   log=lambda m: None).path
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--img-size", type=int, default=416, help="input size in pixels (default 416)")
    ap.add_argument("--runs", type=int, default=30, help="timed iterations per pipeline (default 30)")
    ap.add_argument("--threads", type=int, default=None, help="threads for every pipeline (default: physical cores)")
    ap.add_argument("--calib-images", type=int, default=64, help="coco128 images to calibrate on (default 64)")
    ap.add_argument("--fp32", help="FP32 ONNX (default: export yolov4-tiny)")
    ap.add_argument("--int8", help="Q/DQ ONNX, tensorrt layout (default: quantize --fp32)")
    ap.add_argument("--int8-ort", help="Q/DQ ONNX, onnxruntime layout (default: quantize --fp32)")
    ap.add_argument("--conf", type=float, default=0.25)
    ap.add_argument("--iou", type=float, default=0.45)
    a = ap.parse_args(argv)

    mirror = os.environ.get("YOLO4_ASSET_MIRROR")
    images = sorted((Path(mirror) / "darknet" / "images").glob("*.jpg")) if mirror else []
    if not images:
        sys.exit("no images: set YOLO4_ASSET_MIRROR (e.g. ../shared/data)")
    threads = a.threads or physical_cores()
    cv2.setNumThreads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        models = {"fp32": a.fp32, "tensorrt": a.int8, "onnxruntime": a.int8_ort}
        if not all(models.values()):
            made = make_models(Path(tmp), a.img_size, a.calib_images)
            models = {k: v or made[k] for k, v in models.items()}
        pipes = [
            ("ONNX Runtime FP32", lambda: onnx_pipeline(models["fp32"], a.conf, a.iou, threads)),
            ("ONNX Runtime INT8 Q/DQ (tensorrt layout)",
             lambda: onnx_pipeline(models["tensorrt"], a.conf, a.iou, threads)),
            ("ONNX Runtime INT8 Q/DQ (onnxruntime layout)",
             lambda: onnx_pipeline(models["onnxruntime"], a.conf, a.iou, threads)),
            ("OpenCV DNN %s FP32" % cv2.__version__,
             lambda: opencv_pipeline(resolve_cfg("yolov4-tiny"), resolve_weights("yolov4-tiny"), a.img_size,
                                     a.conf, a.iou)),
        ]
        fns = [make() for _, make in pipes]
        rows = [(name, med, p90, fn(images[0]))
                for (name, _), fn, (med, p90) in zip(pipes, fns, measure(fns, images, a.runs))]
    import onnxruntime

    print_table("yolov4-tiny %dx%d, batch 1, %d threads, %d images, %d runs, onnxruntime %s; "
                "read+preprocess+forward+NMS" % (a.img_size, a.img_size, threads, len(images), a.runs,
                                                  onnxruntime.__version__), rows, "ORT FP32", images[0].name)

if __name__ == "__main__":
    main()
