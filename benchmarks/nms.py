"""Darknet's DIoU-NMS on the CPU: yolo4's vectorized numpy reference vs a per-box Python loop.

Two loops, both per image and class after thresholding in numpy, with darknet's DIoU penalty and
frame so all three give the same detections (checked on every batch): the per-box Python loop
(darknet's ``diounms_sort`` ported box by box: for each surviving box, compare every later one), and
the peers' way (tensorrt_demos' ``_nms_boxes``: sort by score, then ``while`` boxes remain: keep the
first, compute its overlap with the rest in numpy, drop those above the threshold). A per-image
loop's time for a batch is the sum of its images' times (each distinct image timed once). Both start from the decoded outputs (``boxes [B,N,4]``,
``scores [B,N,C]``) and end with per-image detections (score > conf, greedynms, NMS 0.45, at most
300 per image).

Input, at yolov4-416 candidate counts (N = 10,647 boxes x C = 80 classes): real yolov4-tiny outputs
at 832x832 (10,140 boxes: the real score distribution) on darknet's sample images and their mirror
images, boxes scaled to a 416 frame, plus 507 rows copied from the start of the same outputs with
boxes jittered by N(0, 2 px) to reach 10,647; batches cycle through the 6 images. Without the asset
mirror (or with ``--synthetic``), a synthetic distribution with about the same candidate counts
stands in: box centres uniform, sizes log-uniform 8..200 px, objectness Beta(0.03, 20) (background),
class probabilities a softmax of N(0, 3) logits; 0.5 % of the boxes are objects: jittered copies
(N(0, 6 px), sizes x exp(N(0, 0.1))) of 5 boxes per image, objectness Beta(8, 2), +8 on one logit.

    YOLO4_ASSET_MIRROR=../shared/data python benchmarks/nms.py [--runs 5] [--batches 1,8,32]

Prints a Markdown table: candidates per image (score > conf), milliseconds per batch (median of
``--runs``) of each, speed-up. Timings only here, never asserted in tests.
"""

import argparse
import os
import statistics
import time

import numpy as np

from yolo4.nms_params import NmsParams
from yolo4.runtime.postprocess import postprocess

N, C, SIZE = 10647, 80, 416


def real_outputs():
    """[6, 10647, 4] boxes (416 frame) and [6, 10647, 80] scores from yolov4-tiny, or None."""
    if not os.environ.get("YOLO4_ASSET_MIRROR"):
        return None
    try:
        from yolo4.convert import reference_input
        from yolo4.pipeline import open_backend

        be = open_backend(None, cfg="yolov4-tiny", weights="yolov4-tiny", img_size=832, log=lambda m: None)
        x, src = reference_input((832, 832), 6)
        if src == "seeded random":
            return None
        boxes, scores = be(x)
        be.close()
    except Exception as e:  # noqa: BLE001 - no weights, no onnxruntime: fall back to synthetic
        print(f"(real outputs unavailable: {e}; synthetic scores)")
        return None
    boxes = boxes * (SIZE / 832.0)
    extra = N - boxes.shape[1]
    rng = np.random.default_rng(0)
    eb = boxes[:, :extra] + rng.normal(0, 2, (boxes.shape[0], extra, 4)).astype(np.float32)
    eb[..., 2:] = np.maximum(eb[..., 2:], eb[..., :2] + 1)
    return (np.concatenate([boxes, eb], 1).astype(np.float32),
            np.concatenate([scores, scores[:, :extra]], 1).astype(np.float32))


def synthetic_outputs(images=6, seed=0):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, SIZE, (images, N, 2))
    wh = np.exp(rng.uniform(np.log(8), np.log(200), (images, N, 2)))
    fg = rng.random((images, N)) < 0.005  # object boxes: jittered copies of 5 per image
    base = rng.integers(0, 5, (images, N))
    xy[fg] = xy[:, :5][np.nonzero(fg)[0], base[fg]] + rng.normal(0, 6, (int(fg.sum()), 2))
    wh[fg] = wh[:, :5][np.nonzero(fg)[0], base[fg]] * np.exp(rng.normal(0, 0.1, (int(fg.sum()), 2)))
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], -1).clip(0, SIZE)
    obj = rng.beta(0.03, 20, (images, N, 1))
    obj[fg, 0] = rng.beta(8, 2, int(fg.sum()))
    logits = rng.normal(0, 3, (images, N, C))
    logits[fg, base[fg] * 7 % C] += 8
    cls = np.exp(logits - logits.max(-1, keepdims=True))
    cls /= cls.sum(-1, keepdims=True)
    return boxes.astype(np.float32), (obj * cls).astype(np.float32)


def loop_nms(boxes, scores, conf, iou_thresh, beta, max_det):
    """The peers' way, per image and class, with darknet's DIoU (boxes divided by the input size)."""
    out = []
    for b in range(boxes.shape[0]):
        n_idx, c_idx = np.nonzero(scores[b] > conf)
        s_all = scores[b, n_idx, c_idx]
        bx_all = boxes[b, n_idx].astype(np.float64) / SIZE
        kept = []
        for c in np.unique(c_idx):
            sel = np.flatnonzero(c_idx == c)
            bx, s = bx_all[sel], s_all[sel]
            x1, y1, x2, y2 = bx[:, 0], bx[:, 1], bx[:, 2], bx[:, 3]
            areas = (x2 - x1) * (y2 - y1)
            order = np.argsort(-s, kind="stable")
            while order.size > 0:
                i = order[0]
                kept.append(sel[i])
                rest = order[1:]
                iw = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
                ih = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
                inter = iw * ih
                union = areas[i] + areas[rest] - inter
                ov = np.where((inter > 0) & (union > 0), inter / np.where(union > 0, union, 1), 0.0)
                cw = np.maximum(x2[i], x2[rest]) - np.minimum(x1[i], x1[rest])
                ch = np.maximum(y2[i], y2[rest]) - np.minimum(y1[i], y1[rest])
                c2 = cw * cw + ch * ch
                d2 = ((x1[i] + x2[i]) - (x1[rest] + x2[rest])) ** 2 / 4 + ((y1[i] + y2[i]) - (y1[rest] + y2[rest])) ** 2 / 4
                ov = ov - np.where(c2 > 0, (d2 / np.where(c2 > 0, c2, 1)) ** beta, 0.0)
                order = rest[ov <= iou_thresh]
        kept = np.asarray(kept, np.int64)
        kept = kept[np.argsort(-s_all[kept], kind="stable")][:max_det]
        out.append((s_all[kept], c_idx[kept]))
    return out


def _diou(a, b, beta):
    """darknet src/box.c box_diou on (x1, y1, x2, y2) tuples: IoU - ((d^2 / c^2) ** beta)."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    inter = iw * ih if iw > 0 and ih > 0 else 0.0
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    iou = inter / union if inter > 0 and union > 0 else 0.0
    cw = max(a[2], b[2]) - min(a[0], b[0])
    ch = max(a[3], b[3]) - min(a[1], b[1])
    c2 = cw * cw + ch * ch
    if c2 == 0:
        return iou
    dx = (a[0] + a[2] - b[0] - b[2]) / 2
    dy = (a[1] + a[3] - b[1] - b[3]) / 2
    return iou - ((dx * dx + dy * dy) / c2) ** beta


def naive_nms(boxes, scores, conf, iou_thresh, beta, max_det):
    """darknet's do_nms_sort / diounms_sort ported box by box to Python (thresholding in numpy)."""
    out = []
    for b in range(boxes.shape[0]):
        n_idx, c_idx = np.nonzero(scores[b] > conf)
        s_all = scores[b, n_idx, c_idx].tolist()
        bx_all = (boxes[b, n_idx].astype(np.float64) / SIZE).tolist()
        cls = c_idx.tolist()
        kept = []
        for c in sorted(set(cls)):
            cand = sorted((k for k in range(len(cls)) if cls[k] == c), key=lambda k: -s_all[k])
            alive = [True] * len(cand)
            for i in range(len(cand)):
                if not alive[i]:
                    continue
                kept.append(cand[i])
                bi = bx_all[cand[i]]
                for j in range(i + 1, len(cand)):
                    if alive[j] and _diou(bi, bx_all[cand[j]], beta) > iou_thresh:
                        alive[j] = False
        kept.sort(key=lambda k: -s_all[k])
        kept = kept[:max_det]
        out.append((np.asarray([s_all[k] for k in kept], np.float32), np.asarray([cls[k] for k in kept])))
    return out


def per_image(fn, boxes6, scores6, runs, conf):
    """A per-image loop's batch time is the sum of its images' times: each distinct image is timed
    (median of ``runs``) once, the batch adds them up (its results are the per-image results)."""
    res, ms = [], []
    for i in range(boxes6.shape[0]):
        r, t = timed(fn, runs, boxes6[i:i + 1], scores6[i:i + 1], conf, 0.45, 0.6, 300)
        res += r
        ms.append(t)
    return res, ms


def timed(fn, runs, *args, **kwargs):
    """``(fn(*args, **kwargs), median milliseconds of runs calls)``."""
    res = fn(*args, **kwargs)
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn(*args, **kwargs)
        ts.append(time.perf_counter() - t0)
    return res, 1000.0 * statistics.median(ts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--synthetic", action="store_true", help="use the synthetic distribution")
    args = ap.parse_args()
    data = None if args.synthetic else real_outputs()
    source = "yolov4-tiny outputs on darknet's sample images (+ mirrors)"
    if data is None:
        data, source = synthetic_outputs(), "synthetic (see the docstring)"
    boxes6, scores6 = data
    print(f"input: {source}; N = {boxes6.shape[1]} boxes x C = {scores6.shape[2]} classes, greedynms (DIoU, "
          f"beta 0.6), NMS 0.45, at most 300 per image; median of {args.runs} runs\n")
    print("| conf | B | candidates / image | numpy reference | per-box Python loop | speed-up | "
          "tensorrt_demos-style loop | speed-up |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for conf in (0.001, 0.25):
        naive, naive_ms = per_image(naive_nms, boxes6, scores6, max(1, args.runs // 2), conf)
        demos, demos_ms = per_image(loop_nms, boxes6, scores6, args.runs, conf)
        for b in (int(v) for v in args.batches.split(",")):
            idx = np.arange(b) % boxes6.shape[0]
            boxes, scores = boxes6[idx], scores6[idx]
            params = NmsParams(score_threshold=conf)
            cand = float((scores > conf).sum()) / b
            ref, t_ref = timed(postprocess, args.runs, boxes, scores, params, input_hw=(SIZE, SIZE))
            for other in (naive, demos):
                if not all(len(r) == len(o[0]) and np.array_equal(np.sort(r.scores), np.sort(o[0]))
                           for r, o in zip(ref, (other[i] for i in idx))):
                    raise SystemExit(f"the loops and the reference disagree at conf {conf}, batch {b}")
            t_naive = sum(naive_ms[i] for i in idx)
            t_demos = sum(demos_ms[i] for i in idx)
            print(f"| {conf:g} | {b} | {cand:,.0f} | {t_ref:,.1f} ms | {t_naive:,.1f} ms | {t_naive / t_ref:,.1f}x | "
                  f"{t_demos:,.1f} ms | {t_demos / t_ref:,.1f}x |")


if __name__ == "__main__":
    main()
