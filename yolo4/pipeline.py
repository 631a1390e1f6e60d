"""Glue between the CLI and the library: open a model as a backend, run detection over sources or a
dataset, write the results. The CLI stays thin and these functions are usable from Python.

torch and onnx are imported only when the chosen model form needs them.
"""

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .errors import Yolo4Error
from .fileio import atomic_write_bytes, atomic_write_text

BACKENDS = ("onnxruntime", "torch")


def _hw(img_size: Optional[int]) -> Optional[Tuple[int, int]]:
    if img_size is None:
        return None
    if img_size <= 0 or img_size % 32:
        raise Yolo4Error("--img-size must be a positive multiple of 32 pixels, got %d" % img_size)
    return (img_size, img_size)


def load_torch_model(cfg: Optional[str] = None, weights: Optional[str] = None,
                     checkpoint: Optional[str] = None, names: Optional[str] = None, log=print):
    """Build the PyTorch Darknet module from ``cfg`` (+ ``weights``) or a training ``checkpoint``.

    Args:
        cfg: darknet .cfg path or known model name (``yolov4-tiny``); with ``weights`` (path or name).
        checkpoint: a ``yolo4 train`` checkpoint (.pt); takes precedence over cfg/weights.
        names: class-names file (one per line); default: the checkpoint's names, else COCO's for
            80-class cfgs.

    Returns:
        ``yolo4.model.Darknet`` in eval mode with ``.names`` set.

    Raises:
        Yolo4Error: neither a cfg nor a checkpoint given; CfgError/WeightsError/AssetError from loading.
    """
    from .model import load_checkpoint, load_darknet

    name_list = None
    if names is not None:
        from .data.names import resolve_names as load_names
        name_list = load_names(names)
    if checkpoint is not None:
        module = load_checkpoint(checkpoint)
        if name_list is not None:
            module.names = name_list
        return module
    if cfg is None:
        raise Yolo4Error("give a model: --cfg (with --weights), --checkpoint or --onnx")
    if weights is None:
        log("warning: no --weights given: %s runs with randomly initialised weights" % cfg)
    return load_darknet(cfg, weights, names=name_list)


def open_backend(backend: str = "onnxruntime", cfg: Optional[str] = None, weights: Optional[str] = None,
                 checkpoint: Optional[str] = None, onnx: Optional[str] = None,
                 img_size: Optional[int] = None, names: Optional[str] = None,
                 threads: Optional[int] = None, log=print):
    """Open any model form as a :class:`yolo4.runtime.backends.base.Backend`.

    ``--onnx`` runs on ONNX Runtime. A cfg/weights or checkpoint runs on ``torch`` directly, or on
    ``onnxruntime`` through an ONNX file exported once into the cache (``YOLO4_CACHE_DIR``/onnx).

    Args:
        backend: ``onnxruntime`` (default, CPU or CUDA provider) or ``torch``.
        img_size: network input size in pixels (square, multiple of 32); default: the cfg's [net]
            width/height, or the ONNX model's fixed size.
        threads: ONNX Runtime intra-op threads (default: physical cores).

    Raises:
        Yolo4Error (one line) for unknown backends, missing files, an ONNX model without yolo4 metadata.
    """
    from .runtime.backends import create_backend

    if backend not in BACKENDS:
        raise Yolo4Error("unknown backend %r: choose one of %s" % (backend, ", ".join(BACKENDS)))
    hw = _hw(img_size)
    if onnx is not None:
        if backend != "onnxruntime":
            raise Yolo4Error("--onnx runs on --backend onnxruntime, not %r" % backend)
        be = create_backend("onnxruntime", path=onnx, threads=threads)
        if hw is not None and tuple(be.info.input_hw) != hw:
            log("warning: %s has a fixed input size %dx%d; --img-size %d ignored"
                % (onnx, be.info.input_hw[1], be.info.input_hw[0], img_size))
        if names is not None:
            from .data.names import resolve_names as load_names
            be.info.names = load_names(names)
        return be
    module = load_torch_model(cfg, weights, checkpoint, names, log=log)
    if backend == "torch":
        return create_backend("torch", module=module, input_hw=hw)
    from .convert.onnx_export import export_cached

    path = export_cached(module, img_size=hw, log=log)
    be = create_backend("onnxruntime", path=str(path), threads=threads)
    if module.names:
        be.info.names = list(module.names)
    return be


def detections_to_json(det, names: Sequence[str]) -> List[Dict[str, Any]]:
    """Detections (original-image pixels) -> the ``--save-json`` list of dicts."""
    out = []
    for box, score, cls in zip(det.boxes.tolist(), det.scores.tolist(), det.class_ids.tolist()):
        out.append({
            "class_id": int(cls),
            "class_name": names[int(cls)] if 0 <= int(cls) < len(names) else str(cls),
            "score": round(float(score), 6),
            "bbox_xyxy": [round(float(v), 2) for v in box],
        })
    return out


def run_infer(sources: Sequence[str], backend, conf: float = 0.25, iou: float = 0.45,
              max_det: int = 300, output_dir: Optional[str] = "runs/infer",
              save_json: Optional[str] = None, batch: int = 1, progress: bool = True,
              log=print) -> List[Dict[str, Any]]:
    """Detect objects in images, folders, globs and videos; annotate and collect JSON results.

    Annotated images are written to ``output_dir/<name>``, videos to ``output_dir/<stem>.mp4``.
    A corrupt or missing image is skipped with a one-line warning; the rest are processed.

    Returns:
        ``[{"image": path, "frame": int (videos only), "detections": [...]}]`` with bbox_xyxy in
        original-image pixels; also written to ``save_json`` when given.
    """

    from .errors import ImageReadError
    from .runtime.detector import Detector
    from .runtime.draw import draw_detections
    from .runtime.sources import iter_sources

    names = backend.info.names
    detector = Detector(backend, conf=conf, iou=iou, max_det=max_det)
    results: List[Dict[str, Any]] = []
    writers: Dict[str, Any] = {}
    out_dir = Path(output_dir) if output_dir else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    skipped = 0
    try:
        items = iter_sources(list(sources))
        if progress:
            from tqdm import tqdm
            items = tqdm(items, desc="infer", unit="img", leave=False)
        for path, frame, image in items:
            if isinstance(image, ImageReadError):
                log("warning: skipped %s" % image)
                skipped += 1
                continue
            det = detector.detect([image])[0]
            rec: Dict[str, Any] = {"image": str(path)}
            if frame is not None:
                rec["frame"] = int(frame)
            rec["detections"] = detections_to_json(det, names)
            results.append(rec)
            if out_dir is not None:
                drawn = draw_detections(image, det, names)
                if frame is None:
                    _atomic_imwrite(out_dir / Path(path).name, drawn)
                else:
                    key = str(path)
                    if key not in writers:
                        writers[key] = _VideoOut(out_dir / (Path(path).stem + ".mp4"), _video_fps(key),
                                                 drawn.shape[1], drawn.shape[0])
                    writers[key].write(drawn)
        for w in writers.values():
            w.close()
    finally:
        for w in writers.values():
            w.abort()
    if skipped and not results:
        raise Yolo4Error("no readable image or video among %d input(s)" % skipped,
                         sources[0] if len(sources) == 1 else None)
    if save_json:
        atomic_write_text(save_json, json.dumps(results, indent=1))
    if skipped:
        log("%d input(s) skipped (unreadable)" % skipped)
    return results


def _video_fps(path: str, default: float = 30.0) -> float:
    """Frame rate of a video file (frames per second); ``default`` for cameras/streams or when unknown."""
    import cv2

    cap = cv2.VideoCapture(path)
    try:
        fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0.0
    finally:
        cap.release()
    return float(fps) if fps and 0 < fps < 1000 else default


class _VideoOut:
    """An annotated video written to a temp file and renamed onto ``target`` only when complete."""

    def __init__(self, target: Path, fps: float, width: int, height: int) -> None:
        import cv2

        from .fileio import sibling_temp

        self.target = target
        self.tmp = sibling_temp(target, target.suffix)
        self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not self.writer.isOpened():
            raise Yolo4Error("cannot open a video writer (codec mp4v)", target)
        self.done = False

    def write(self, frame) -> None:
        self.writer.write(frame)

    def close(self) -> None:
        self.writer.release()
        os.replace(str(self.tmp), str(self.target))
        self.done = True

    def abort(self) -> None:
        if not self.done:
            self.writer.release()
            if self.tmp.exists():
                self.tmp.unlink()


def _atomic_imwrite(path: Path, image) -> None:
    import cv2

    ok, buf = cv2.imencode(path.suffix or ".jpg", image)
    if not ok:
        raise Yolo4Error("cannot encode image for writing", path)
    atomic_write_bytes(path, buf.tobytes())


def run_eval(data: str, backend, conf: float = 0.001, iou: float = 0.45, max_det: int = 300,
             batch: int = 8, split: str = "val", save_json: Optional[str] = None,
             progress: bool = True, log=print) -> Dict[str, Any]:
    """COCO mAP@[.5:.95] and mAP@.5 (pycocotools) of a backend on a labelled dataset split.

    Returns the metrics dict ``{"map50_95", "map50", ...}``; also written to ``save_json``.
    """
    from .data.datasets import load_dataset
    from .runtime.coco_eval import evaluate, predict_split
    from .runtime.detector import Detector

    ds = load_dataset(data, split)
    for w in ds.warnings[:20]:
        log("warning: %s" % w)
    if len(ds.warnings) > 20:
        log("warning: ... and %d more label problems" % (len(ds.warnings) - 20))
    if len(ds.names) != len(backend.info.names):
        raise Yolo4Error("dataset %s has %d classes but the model has %d"
                         % (data, len(ds.names), len(backend.info.names)))
    detector = Detector(backend, conf=conf, iou=iou, max_det=max_det, batch_size=batch)
    preds = predict_split(detector, ds, batch_size=batch, progress=progress, log=log)
    metrics = dict(evaluate(ds, preds))
    metrics.update({"data": str(data), "split": split, "conf": conf, "iou": iou,
                    "input_hw": list(backend.info.input_hw)})
    if save_json:
        atomic_write_text(save_json, json.dumps(metrics, indent=1))
    return metrics
