"""Glue between the CLI and the library: open a model as a backend, run detection over sources or a
dataset, write the results. The CLI stays thin and these functions are usable from Python.

torch and onnx are imported only when the chosen model form needs them.
"""

import json
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .errors import Yolo4Error
from .fileio import atomic_write_bytes, atomic_write_text, unique_name

Log = Callable[[str], Any]


def load_torch_model(cfg: Optional[str] = None, weights: Optional[str] = None,
                     checkpoint: Optional[str] = None, names: Optional[str] = None, log: Log = print):
    """Build the PyTorch Darknet module from ``cfg`` (+ ``weights``) or a training ``checkpoint``.

    Args:
        cfg: darknet .cfg path or known model name (``yolov4-tiny``); with ``weights`` (path or name).
        checkpoint: a ``yolo4 train`` checkpoint (.pt); takes precedence over cfg/weights.
        names: class-names file (one per line) or a built-in list (``coco``, ``voc``); default: the
            checkpoint's names, else COCO's for 80-class cfgs (see ``yolo4.data.names``).

    Returns:
        ``yolo4.model.Darknet`` in eval mode with ``.names`` set (None = the model's defaults). A
        checkpoint's ``input_hw`` is the size it was trained at.

    Raises:
        Yolo4Error: neither a cfg nor a checkpoint given; CfgError/WeightsError/AssetError/DataError
            from loading.
    """
    from .data.names import resolve_names
    from .model import load_checkpoint, load_darknet

    name_list = resolve_names(names) if names is not None else None
    if checkpoint is not None:
        module = load_checkpoint(checkpoint)
        if name_list is not None:
            if len(name_list) != module.num_classes:
                raise Yolo4Error(f"{len(name_list)} class names given for a {module.num_classes}-class "
                                 "checkpoint", names)
            module.names = name_list
        return module
    if cfg is None:
        raise Yolo4Error("give a model: --cfg (with --weights), --checkpoint or --onnx")
    if weights is None:
        log("warning: no --weights given: %s runs with randomly initialised weights" % cfg)
    return load_darknet(cfg, weights, names=names)  # a file path: errors name it


_FORM_NAMES = {"onnx": "an ONNX model", "cfg": "a darknet cfg", "checkpoint": "a yolo4 checkpoint (.pt)",
               "engine": "a TensorRT engine"}


def _model_form(cfg: Optional[str], checkpoint: Optional[str], onnx: Optional[str],
                engine: Optional[str] = None) -> Tuple[str, str]:
    """``(form, path)`` of the one model given; the file suffix must agree with the option."""
    from .runtime.backends import model_form

    given = [(opt, v) for opt, v in (("--cfg", cfg), ("--checkpoint", checkpoint), ("--onnx", onnx),
                                     ("--engine", engine)) if v is not None]
    if not given:
        raise Yolo4Error("give a model: --cfg (with --weights), --checkpoint, --onnx or --engine")
    if len(given) > 1:
        raise Yolo4Error("give one model, not %s" % " and ".join(opt for opt, _ in given))
    opt, value = given[0]
    expected = {"--cfg": "cfg", "--checkpoint": "checkpoint", "--onnx": "onnx", "--engine": "engine"}[opt]
    if opt == "--cfg" and not os.path.splitext(value)[1]:
        return "cfg", value  # a known model name (yolov4-tiny)
    if os.path.splitext(value)[1].lower() == ".weights":
        raise Yolo4Error(f"{opt} got a darknet .weights file: give it as --weights, with its --cfg", value)
    form = model_form(value)
    if form != expected:
        raise Yolo4Error(f"{opt} expects {_FORM_NAMES[expected]}, got {_FORM_NAMES[form]}", value)
    return form, value


def warn_generic_names(info, log: Log) -> None:
    """One warning when a model's class names are the generic ``class0..`` (nobody named them)."""
    from .data.names import BUILTIN_NAMES, is_generic

    if is_generic(info.names):
        log(f"warning: the model's {info.num_classes} classes have no names (shown as class0..class"
            f"{info.num_classes - 1}); pass --names FILE (one name per line) or --names "
            f"{'|'.join(BUILTIN_NAMES)}")


def open_backend(backend: Optional[str] = None, cfg: Optional[str] = None, weights: Optional[str] = None,
                 checkpoint: Optional[str] = None, onnx: Optional[str] = None,
                 img_size: Optional[int] = None, names: Optional[str] = None,
                 threads: Optional[int] = None, log: Log = print, engine: Optional[str] = None):
    """Open any model form as a :class:`yolo4.runtime.backends.base.Backend`.

    The backend is chosen from the model form (:func:`yolo4.runtime.backends.model_form`) unless
    named: ``--onnx`` runs on ONNX Runtime; a cfg/weights or a checkpoint runs on ``onnxruntime``
    (default, through an ONNX file exported once into the cache) or on ``torch`` directly.

    Args:
        backend: ``onnxruntime``, ``torch``, or None for the model form's default.
        img_size: network input size in pixels (square, a multiple of the model's stride); default:
            a checkpoint's training size, the cfg's ``[net]`` width/height, or the ONNX model's
            fixed size.
        names: class-names file or built-in list (``coco``, ``voc``) replacing the model's names.
        threads: ONNX Runtime intra-op threads (default: physical cores).

    Raises:
        Yolo4Error (one line) for unknown backends, a backend that cannot run the model form, missing
        files, an ONNX model without yolo4 metadata, names of the wrong count.
    """
    from .data.names import resolve_names
    from .model_info import check_input_size
    from .runtime.backends import BACKENDS, backends_for, canonical_kind, create_backend, default_backend

    form, path = _model_form(cfg, checkpoint, onnx, engine)
    kinds = backends_for(form)
    kind = default_backend(form) if backend is None else canonical_kind(backend)
    if kind not in kinds:
        if kind not in BACKENDS and kind not in kinds:
            raise Yolo4Error("unknown backend %r: choose one of %s" % (backend, ", ".join(sorted(BACKENDS))))
        raise Yolo4Error("%s runs on --backend %s, not %r" % (_FORM_NAMES[form], " or ".join(kinds), backend))
    if img_size is not None:
        check_input_size(img_size)  # early, before any loading; the stride is checked again below
    name_list = resolve_names(names) if names is not None else None
    if form == "engine":
        return _open_engine(kind, path, log)
    if form == "onnx":
        be = create_backend("onnxruntime", path=path, threads=threads)
        if img_size is not None and tuple(be.info.input_hw) != (img_size, img_size):
            log("warning: %s has a fixed input size %dx%d; --img-size %d ignored"
                % (path, be.info.input_hw[1], be.info.input_hw[0], img_size))
        if name_list is not None:
            if len(name_list) != be.info.num_classes:
                raise Yolo4Error(f"{len(name_list)} class names given for a {be.info.num_classes}-class "
                                 "model", names)
            be.info.names = name_list
        warn_generic_names(be.info, log)
        return be
    module = load_torch_model(cfg if form == "cfg" else None, weights, checkpoint, names, log=log)
    info = module.model_info()
    hw = module.check_input_size(img_size if img_size is not None else info.input_hw, "--img-size")
    warn_generic_names(info, log)
    if kind == "torch":
        return create_backend("torch", module=module, input_hw=hw)
    from .convert import export_cached

    onnx_path = export_cached(module, img_size=hw, log=log)  # the file carries the resolved names
    return create_backend("onnxruntime", path=str(onnx_path), threads=threads)


def _open_engine(kind: str, path: str, log: Log):
    """A TensorRT engine on the TensorRT backend: it reads the metadata sidecar first (a missing or
    foreign sidecar, another TensorRT release or GPU, TensorRT or pycuda not installed: one line each),
    then loads plugins and deserializes."""
    from .runtime.backends import create_backend

    if not os.path.isfile(path):
        raise Yolo4Error("engine not found", path)
    return create_backend(kind, path=path)


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
              log: Log = print) -> List[Dict[str, Any]]:
    """Detect objects in images, folders, globs and videos; annotate and collect JSON results.

    Annotated images are written to ``output_dir/<name>``, videos to ``output_dir/<stem>.mp4``; two
    inputs with the same file name get ``<stem>_2<ext>``, ... so no output overwrites another.
    A corrupt or missing image is skipped with a one-line warning; the rest are processed. The
    speed line (ms per image: preprocess, inference, NMS) is logged at the end.

    Returns:
        ``[{"image": path, "frame": int (videos only), "output": annotated file (when written),
        "detections": [...]}]`` with bbox_xyxy in original-image pixels; also written to
        ``save_json`` when given.
    """
    from .errors import ImageReadError
    from .runtime.detector import Detector
    from .runtime.draw import draw_detections
    from .runtime.sources import iter_sources

    names = backend.info.names
    detector = Detector(backend, score_threshold=conf, iou_threshold=iou, max_output_boxes=max_det)
    results: List[Dict[str, Any]] = []
    writers: Dict[str, Any] = {}
    outputs: Dict[str, Path] = {}
    used: set = set()
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
            key = str(path)
            if out_dir is not None:
                if key not in outputs:
                    name = Path(key).name if frame is None else Path(key).stem + ".mp4"
                    outputs[key] = out_dir / unique_name(name or "stream.mp4", used)
                rec["output"] = str(outputs[key])
            rec["detections"] = detections_to_json(det, names)
            results.append(rec)
            if out_dir is not None:
                drawn = draw_detections(image, det, names)
                if frame is None:
                    _atomic_imwrite(outputs[key], drawn)
                else:
                    if key not in writers:
                        writers[key] = _VideoOut(outputs[key], _video_fps(key), drawn.shape[1], drawn.shape[0])
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
    if detector.timings.images:
        log(detector.timings.summary(backend.info.input_hw))
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


def class_mapping(dataset_names: Sequence[str], model_names: Sequence[str], by_name: bool = False,
                  source: Optional[str] = None, log: Log = print) -> Optional[List[int]]:
    """How the model's class ids map onto a dataset's, for evaluation.

    Returns:
        None when the ids agree (same names in the same order, or a model with generic names and
        the same class count, with a warning); with ``by_name``, ``mapping[model_id] = dataset_id``
        (-1 for model classes the dataset does not have).

    Raises:
        Yolo4Error: the names differ or come in another order (without ``by_name``), or a dataset
            class the model lacks (with ``by_name``); one line listing the first differences.
    """
    from .data.names import is_generic

    ds, mo = [str(n) for n in dataset_names], [str(n) for n in model_names]
    if ds == mo:
        return None
    if is_generic(mo) and len(mo) == len(ds):
        log("warning: the model's classes have no names; assuming they are the dataset's, in its order")
        return None
    if by_name:
        index = {n: i for i, n in enumerate(ds)}
        missing = [n for n in ds if n not in set(mo)]
        if missing:
            raise Yolo4Error("the model has no class named %s (dataset classes it lacks: %d)"
                             % (", ".join(repr(n) for n in missing[:5]), len(missing)), source)
        return [index.get(n, -1) for n in mo]
    if sorted(ds) == sorted(mo):
        first = next(i for i, (a, b) in enumerate(zip(ds, mo)) if a != b)
        raise Yolo4Error("the dataset's classes are the model's in another order (class %d is %r in the "
                         "dataset, %r in the model); pass --match-names to map them by name"
                         % (first, ds[first], mo[first]), source)
    only_ds = [n for n in ds if n not in set(mo)]
    hint = "; pass --match-names to evaluate the classes both have" if not only_ds else ""
    raise Yolo4Error("the dataset's %d classes differ from the model's %d (dataset-only: %s)%s"
                     % (len(ds), len(mo), ", ".join(repr(n) for n in only_ds[:5]) or "none", hint), source)


def run_eval(data: str, backend, conf: float = 0.001, iou: float = 0.45, max_det: int = 300,
             batch: int = 8, split: str = "val", save_json: Optional[str] = None,
             match_names: bool = False, pr_conf: float = 0.25, progress: bool = True,
             log: Log = print) -> Dict[str, Any]:
    """COCO mAP@[.5:.95] and mAP@.5 (pycocotools) of a backend on a labelled dataset split.

    The model's class names must be the dataset's, in the same order (``match_names`` maps them by
    name instead). Logs the per-class table (instances, P, R, AP50, AP50-95) and the speed line.

    Returns the metrics dict of :func:`yolo4.runtime.coco_eval.evaluate` plus ``data``, ``split``,
    ``conf``, ``iou``, ``input_hw`` and ``speed_ms`` (per image: preprocess, inference, nms); also
    written to ``save_json``.
    """
    import numpy as np

    from .data.datasets import load_dataset
    from .runtime.coco_eval import evaluate, format_per_class, predict_split
    from .runtime.detector import Detector
    from .runtime.postprocess import Detections

    ds = load_dataset(data, split)
    ds.report_warnings(log, split, limit=20)
    mapping = class_mapping(ds.names, backend.info.names, by_name=match_names, source=str(data), log=log)
    detector = Detector(backend, batch_size=batch, score_threshold=conf, iou_threshold=iou,
                        max_output_boxes=max_det)
    preds = predict_split(detector, ds, batch_size=batch, progress=progress, log=log)
    if mapping is not None:
        lut = np.asarray(mapping, np.int64)
        for k, d in preds.items():
            cls = lut[d.class_ids]
            keep = cls >= 0
            preds[k] = Detections(d.boxes[keep], d.scores[keep], cls[keep])
    metrics = dict(evaluate(ds, preds, pr_score_threshold=pr_conf))
    for line in format_per_class(metrics):
        log(line)
    log(detector.timings.summary(backend.info.input_hw))
    metrics.update({"data": str(data), "split": split, "conf": conf, "iou": iou,
                    "input_hw": list(backend.info.input_hw),
                    "speed_ms": {k: round(v, 3) for k, v in detector.timings.per_image_ms().items()}})
    if save_json:
        atomic_write_text(save_json, json.dumps(metrics, indent=1))
    return metrics


def export_int8(fp32_onnx: str, output: str, calib_data: str, calib_images: int = 500,
                calib_method: str = "percentile", exclude: Sequence[str] = (),
                target_drop: Optional[float] = None, val_data: Optional[str] = None,
                layout: str = "tensorrt", seed: int = 0, log: Log = print) -> Dict[str, Any]:
    """FP32 export -> Q/DQ INT8 ONNX (``yolo4 export --int8``), then INT8 vs FP32 on the sample images.

    Calibration images come from ``calib_data`` (:func:`yolo4.calib.images.calibration_set`,
    prepared by the runtime preprocessing at the model's input size); quantization is
    :func:`yolo4.calib.qdq.quantize_qdq`, or :func:`yolo4.calib.sensitivity.sensitivity_search`
    when ``target_drop`` is given (report written to ``<output stem>-int8-report.md``).

    Returns:
        ``{"path", "quantized", "excluded", "report", "agreement"}`` (report/agreement may be None).

    Raises:
        Yolo4Error: as the functions above (bad calibration source, a pattern matching nothing, ...).
    """
    from .calib.images import calibration_set
    from .convert.engine_builder import read_onnx_facts

    info = read_onnx_facts(fp32_onnx).info
    cs = calibration_set(calib_data, info, num_images=calib_images, batch_size=8, seed=seed, log=log)
    report_path = None
    if target_drop is not None:
        from .calib.sensitivity import sensitivity_search

        rep = sensitivity_search(fp32_onnx, output, cs, val_data or calib_data, target_drop=target_drop,
                                 method=calib_method, exclude=exclude, layout=layout, log=log)
        res = rep.result
        report_path = Path(output).with_name(Path(output).stem + "-int8-report.md")
        atomic_write_text(report_path, rep.markdown())
        log("sensitivity report: %s (drop %.2f AP, target %.2f: %s)" % (
            report_path, rep.drop, target_drop, "met" if rep.met else "NOT met"))
    else:
        from .calib.qdq import quantize_qdq

        res = quantize_qdq(fp32_onnx, output, cs, method=calib_method, exclude=exclude, layout=layout, log=log)
    log("wrote %s (Q/DQ INT8: %s)" % (res.path, res.summary()))
    agreement = None
    from .runtime.agreement import sample_images

    samples = sample_images()
    if samples:
        agreement = compare_detections(fp32_onnx, str(res.path), samples)
        log("INT8 vs FP32 on %s: %s" % (", ".join(Path(p).name for p in samples), agreement.summary()))
    return {"path": str(res.path), "quantized": res.quantized, "excluded": res.excluded,
            "report": str(report_path) if report_path else None, "agreement": agreement}


def compare_detections(reference_onnx: str, candidate_onnx: str, images: Sequence[str], conf: float = 0.25):
    """:class:`yolo4.runtime.agreement.Agreement` of two ONNX models' detections on ``images``
    (score > ``conf``, the model's NMS), both on ONNX Runtime."""
    from .data.images import imread
    from .runtime.agreement import detection_agreement
    from .runtime.detector import Detector

    imgs = [imread(p) for p in images]
    dets = []
    for path in (reference_onnx, candidate_onnx):
        be = open_backend(onnx=path, log=lambda m: None)
        dets.append(Detector(be, score_threshold=conf).detect(imgs))
    return detection_agreement(dets[0], dets[1])
