"""End-to-end CPU latency of yolov4-tiny, batch 1: yolo4's torch and onnxruntime backends vs OpenCV DNN.

Each timed iteration = read the JPEG from disk, preprocess, forward, post-process (threshold + NMS),
on the same images, the same input size and the same thread count. OpenCV DNN runs its own
darknet importer with the pipeline its samples use (blobFromImage, forward, NMSBoxesBatched).

    YOLO4_ASSET_MIRROR=../shared/data python benchmarks/infer_cpu.py [--img-size 416] [--runs 30] [--threads N]

Prints a Markdown table (median and p90 latency in milliseconds, ratio to OpenCV DNN).
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from yolo4.assets import resolve_cfg, resolve_weights
from yolo4.data.images import imread
from yolo4.pipeline import open_backend
from yolo4.runtime.backends.onnxruntime_backend import physical_cores
from yolo4.runtime.detector import Detector


def opencv_pipeline(cfg, weights, size, conf, iou):
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    out_names = net.getUnconnectedOutLayersNames()

    def run(path):
        img = cv2.imread(str(path))
        h, w = img.shape[:2]
        blob = cv2.dnn.blobFromImage(img, 1 / 255.0, (size, size), swapRB=True, crop=False)
        net.setInput(blob)
        rows = np.concatenate(net.forward(out_names), 0)  # [N, 5 + C]: cx, cy, w, h (0..1), obj, obj*cls
        cls_scores = rows[:, 5:]
        idx, cls = np.nonzero(cls_scores > conf)
        b = rows[idx, :4] * np.array([w, h, w, h], np.float32)
        xywh = np.stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2, b[:, 2], b[:, 3]], 1)
        keep = cv2.dnn.NMSBoxesBatched(xywh.tolist(), cls_scores[idx, cls].tolist(), cls.tolist(), conf, iou)
        return len(keep)

    return run


def yolo4_pipeline(kind, size, conf, iou, threads):
    backend = open_backend(kind, cfg="yolov4-tiny", weights="yolov4-tiny", img_size=size, threads=threads,
                           log=lambda m: None)
    det = Detector(backend, score_threshold=conf, iou_threshold=iou)

    def run(path):
        return len(det.detect([imread(path)])[0].scores)

    return run


def measure(fns, images, runs, block=10, warmup=3):
    """Time the pipelines in alternating blocks of ``block`` iterations (A, B, C, A, B, C, ...), so
    load from elsewhere on the machine falls on all alike, while one pipeline's idle worker threads
    (ONNX Runtime spins after a run) do not run during another's timed block: each block starts
    with one untimed iteration. Returns [(median ms, p90 ms)] in the order of ``fns``."""
    for fn in fns:
        for _ in range(warmup):
            fn(images[0])
    times = [[] for _ in fns]
    i = 0
    while len(times[0]) < runs:
        for k, fn in enumerate(fns):
            fn(images[i % len(images)])
            for j in range(block):
                t0 = time.perf_counter()
                fn(images[(i + j) % len(images)])
                times[k].append((time.perf_counter() - t0) * 1000.0)
        i += block
    out = []
    for ts in times:
        ts.sort()
        out.append((statistics.median(ts), ts[int(0.9 * (len(ts) - 1))]))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--img-size", type=int, default=416, help="input size in pixels (default 416)")
    ap.add_argument("--runs", type=int, default=30, help="timed iterations per backend (default 30)")
    ap.add_argument("--threads", type=int, default=None, help="threads for every backend (default: physical cores)")
    ap.add_argument("--conf", type=float, default=0.25)
    ap.add_argument("--iou", type=float, default=0.45)
    ap.add_argument("--images", default=None, help="image folder (default: $YOLO4_ASSET_MIRROR/darknet/images)")
    a = ap.parse_args(argv)

    mirror = os.environ.get("YOLO4_ASSET_MIRROR")
    folder = Path(a.images or (Path(mirror) / "darknet" / "images" if mirror else ""))
    images = sorted(p for p in folder.glob("*.jpg")) if str(folder) else []
    if not images:
        sys.exit("no images: pass --images or set YOLO4_ASSET_MIRROR (e.g. ../shared/data)")
    threads = a.threads or physical_cores()
    cv2.setNumThreads(threads)
    import torch

    torch.set_num_threads(threads)

    rows = []
    pipes = [
        ("OpenCV DNN %s" % cv2.__version__, lambda: opencv_pipeline(resolve_cfg("yolov4-tiny"),
                                                                     resolve_weights("yolov4-tiny"),
                                                                     a.img_size, a.conf, a.iou)),
        ("yolo4 torch %s" % torch.__version__, lambda: yolo4_pipeline("torch", a.img_size, a.conf, a.iou, threads)),
        ("yolo4 onnxruntime", lambda: yolo4_pipeline("onnxruntime", a.img_size, a.conf, a.iou, threads)),
    ]
    fns = [make() for _, make in pipes]
    for (name, _), fn, (med, p90) in zip(pipes, fns, measure(fns, images, a.runs)):
        rows.append((name, med, p90, fn(images[0])))
    print_table("yolov4-tiny %dx%d, batch 1, %d threads, %d images, %d runs; read+preprocess+forward+NMS"
                % (a.img_size, a.img_size, threads, len(images), a.runs), rows, "OpenCV DNN", images[0].name)


def print_table(title, rows, ref_name, image_name):
    """Markdown table of ``rows`` = [(pipeline, median ms, p90 ms, detections)], speed vs the first row."""
    ref = rows[0][1]
    print(title)
    print()
    print("| pipeline | median ms | p90 ms | vs %s | dets on %s |" % (ref_name, image_name))
    print("|---|---|---|---|---|")
    for name, med, p90, n in rows:
        print("| %s | %.1f | %.1f | %.2fx | %d |" % (name, med, p90, ref / med, n))


if __name__ == "__main__":
    main()
