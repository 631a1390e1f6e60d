"""Glue between the CLI and the library: open a model as a backend, run detection over sources or a
dataset, write the results. The CLI stays thin and these functions are usable from Python.

torch and onnx are imported only when the chosen model form needs them.
"""

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from .calib.defaults import DEFAULT_LAYOUT, DEFAULT_METHOD, DEFAULT_NUM_IMAGES, DEFAULT_SEED
from .errors import CfgError, ModelFileError, WeightsError, Yolo4Error, renamed_keywords
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

#: the options that name a model, in the order a conflict names them: (field, option)
_MODEL_OPTIONS = (("model", "--model"), ("cfg", "--cfg"), ("checkpoint", "--checkpoint"), ("onnx", "--onnx"),
                  ("engine", "--engine"))
#: every model form, the default of :meth:`ModelSource.resolve`
ALL_FORMS = ("cfg", "checkpoint", "onnx", "engine")
#: a model file (or a cfg's weights file) that is not there: (error class, message)
_NOT_FOUND = {"cfg": (CfgError, "cfg file not found"), "weights": (WeightsError, "weights file not found"),
              "checkpoint": (WeightsError, "checkpoint file not found"),
              "onnx": (ModelFileError, "ONNX model file not found"),
              "engine": (ModelFileError, "engine not found")}


def _is_path(value: str) -> bool:
    """A file path rather than a known model name (``yolov4-tiny``): it has a folder or a suffix."""
    return "/" in value or os.sep in value or bool(os.path.splitext(value)[1])


@dataclass(frozen=True)
class ModelSource:
    """What names the model of ``yolo4 infer / eval / benchmark / export`` and :func:`open_backend`.

    One of ``model`` (a file whose suffix gives the form, :data:`yolo4.runtime.backends.MODEL_FORMS`:
    .onnx, .engine/.plan, .pt/.pth, .cfg; a name without a suffix is a known darknet model, as
    ``cfg``), ``cfg`` (a path or known name, with ``weights``), ``checkpoint``, ``onnx`` or ``engine``;
    and how it runs: ``backend``, ``names``, ``img_size``. :meth:`resolve` moves ``model`` to the field
    of its form and sets ``form``, so ``ModelSource(model="x.onnx").resolve() ==
    ModelSource(onnx="x.onnx").resolve()``.
    """

    model: Optional[str] = None
    cfg: Optional[str] = None
    weights: Optional[str] = None
    checkpoint: Optional[str] = None
    onnx: Optional[str] = None
    engine: Optional[str] = None
    backend: Optional[str] = None
    names: Optional[str] = None
    img_size: Optional[int] = None
    #: set by :meth:`resolve`: cfg, checkpoint, onnx or engine (the field that holds the model)
    form: Optional[str] = None

    @property
    def path(self) -> str:
        """The model's path (or a cfg's known name), once resolved."""
        src = self.resolve()
        return getattr(src, src.form)

    def resolve(self, forms: Optional[Sequence[str]] = None) -> "ModelSource":
        """This source with its one model in the field of its form (``form`` set); looks at no file.

        Raises:
            Yolo4Error (one line): no model; two model options (naming both); a ``.weights`` file or a
                suffix that is no model form (naming the file); an option given another form's file; a
                form not in ``forms`` (the forms the caller takes; default :data:`ALL_FORMS`).
        """
        forms = forms or ALL_FORMS
        if self.form is not None:
            given = [(dict(_MODEL_OPTIONS)[self.form], getattr(self, self.form))]
        else:
            given = [(opt, getattr(self, f)) for f, opt in _MODEL_OPTIONS if getattr(self, f) is not None]
        if not given:
            opts = ["--model FILE"] + ["--cfg (with --weights)" if f == "cfg" else "--" + f for f in forms]
            raise Yolo4Error("give a model: %s or %s" % (", ".join(opts[:-1]), opts[-1]))
        if len(given) > 1:
            raise Yolo4Error("give one model, not %s" % " and ".join(opt for opt, _ in given))
        opt, value = given[0]
        suffix = os.path.splitext(value)[1].lower()
        if suffix == ".weights":
            raise Yolo4Error(f"{opt} got a darknet .weights file: give it as --weights, with its --cfg",
                             value)
        if opt in ("--model", "--cfg") and not suffix:
            form = "cfg"  # a known model name (yolov4-tiny)
        else:
            from .runtime.backends import model_form

            form = model_form(value)  # an unknown suffix: one line naming the file and the known ones
            if opt != "--model" and form != opt[2:]:
                raise Yolo4Error(f"{opt} expects {_FORM_NAMES[opt[2:]]}, got {_FORM_NAMES[form]}", value)
        if form not in forms:
            raise Yolo4Error("%s got %s: give %s" % (opt, _FORM_NAMES[form],
                                                     " or ".join(_FORM_NAMES[f] for f in forms)), value)
        return self if self.form is not None else replace(self, model=None, form=form, **{form: value})

    def check(self) -> None:
        """The checks that look at the model: ``img_size`` in range, the model file there (and a cfg's
        weights file; known names are resolved when loading). Raises Yolo4Error naming the file."""
        from .model_info import check_input_size

        src = self.resolve()
        if src.img_size is not None:
            check_input_size(src.img_size)
        files = [(src.form, src.path)]
        if src.form == "cfg" and src.weights:
            files.append(("weights", src.weights))
        for kind, p in files:
            if (kind not in ("cfg", "weights") or _is_path(p)) and not os.path.exists(p):
                error, message = _NOT_FOUND[kind]
                raise error(message, p)

    def open(self, threads: Optional[int] = None, log: Log = print, contexts: Optional[int] = None,
             cuda_graph: bool = False):
        """The backend that runs this model: :func:`open_backend` (see it for the arguments)."""
        return open_backend(self.backend, self.cfg, self.weights, self.checkpoint, self.onnx, self.img_size,
                            self.names, threads, log=log, engine=self.engine, contexts=contexts,
                            cuda_graph=cuda_graph, model=self.model)

    def load_torch(self, log: Log = print) -> Tuple[Any, Any, Tuple[int, int]]:
        """The PyTorch model of a cfg or checkpoint (:func:`load_torch_model`), after :meth:`check`:
        ``(module, its ModelInfo, input (h, w))``; one warning when its class names are generic."""
        src = self.resolve(("cfg", "checkpoint"))
        src.check()
        return _torch_model(src, log)


def _torch_model(src: ModelSource, log: Log) -> Tuple[Any, Any, Tuple[int, int]]:
    """:meth:`ModelSource.load_torch` without the checks (:func:`open_backend` made them)."""
    module = load_torch_model(src.cfg, src.weights, src.checkpoint, src.names, log=log)
    info = module.model_info()
    hw = module.check_input_size(src.img_size if src.img_size is not None else info.input_hw, "--img-size")
    warn_generic_names(info, log)
    return module, info, hw


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
                 threads: Optional[int] = None, log: Log = print, engine: Optional[str] = None,
                 contexts: Optional[int] = None, cuda_graph: bool = False, model: Optional[str] = None):
    """Open any model form as a :class:`yolo4.runtime.backends.base.Backend`.

    The model is named as in :class:`ModelSource` (``model`` takes its form from the suffix; the
    others are its older spellings). The backend is chosen from the model form
    (:func:`yolo4.runtime.backends.model_form`) unless named: ``--onnx`` runs on ONNX Runtime; a
    cfg/weights or a checkpoint runs on ``onnxruntime`` (default, through an ONNX file exported once
    into the cache) or on ``torch`` directly.

    Args:
        backend: ``onnxruntime``, ``torch``, or None for the model form's default.
        img_size: network input size in pixels (square, a multiple of the model's stride); default:
            a checkpoint's training size, the cfg's ``[net]`` width/height, or the ONNX model's
            fixed size.
        names: class-names file or built-in list (``coco``, ``voc``) replacing the model's names.
        threads: ONNX Runtime intra-op threads (default: physical cores).
        contexts, cuda_graph: TensorRT engines only: execution contexts to pipeline over (default:
            2 where the engine allows) and CUDA-graph capture
            (:class:`~yolo4.runtime.backends.tensorrt_backend.TensorRTBackend`).
        model: a model file of any form (``.onnx``, ``.engine``/``.plan``, ``.pt``/``.pth``, ``.cfg``)
            or a known model name; instead of ``cfg``, ``checkpoint``, ``onnx`` or ``engine``.

    Raises:
        Yolo4Error (one line) for unknown backends, a backend that cannot run the model form, missing
        files, an ONNX model without yolo4 metadata, names of the wrong count.
    """
    from .data.names import resolve_names
    from .runtime.backends import BACKENDS, backends_for, canonical_kind, create_backend, default_backend

    src = ModelSource(model, cfg, weights, checkpoint, onnx, engine, backend, names, img_size).resolve()
    form, path = src.form, src.path
    kinds = backends_for(form)
    kind = default_backend(form) if backend is None else canonical_kind(backend)
    if kind not in kinds:
        if kind not in BACKENDS and kind not in kinds:
            raise Yolo4Error("unknown backend %r: choose one of %s" % (backend, ", ".join(sorted(BACKENDS))))
        raise Yolo4Error("%s runs on --backend %s, not %r" % (_FORM_NAMES[form], " or ".join(kinds), backend))
    src.check()  # early, before any loading; the stride is checked again below
    name_list = resolve_names(names) if names is not None else None
    if form == "engine":
        return _open_engine(kind, path, log, contexts=contexts, cuda_graph=cuda_graph)
    if contexts is not None or cuda_graph:
        log("warning: --contexts and --cuda-graph apply to TensorRT engines (--engine); ignored")
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
    module, info, hw = _torch_model(src, log)
    if kind == "torch":
        return create_backend("torch", module=module, input_hw=hw)
    from .convert import export_cached

    onnx_path = export_cached(module, img_size=hw, log=log)  # the file carries the resolved names
    return create_backend("onnxruntime", path=str(onnx_path), threads=threads)


def _open_engine(kind: str, path: str, log: Log, contexts: Optional[int] = None, cuda_graph: bool = False):
    """A TensorRT engine on the TensorRT backend: it reads the metadata sidecar first (a missing or
    foreign sidecar, another TensorRT release or GPU, TensorRT or pycuda not installed: one line each),
    then loads plugins and deserializes."""
    from .runtime.backends import create_backend

    if not os.path.isfile(path):
        raise Yolo4Error("engine not found", path)
    return create_backend(kind, path=path, contexts=contexts, cuda_graph=cuda_graph)


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


@renamed_keywords(iou="iou_threshold")
def run_infer(sources: Sequence[str], backend, conf: float = 0.25, iou_threshold: float = 0.45,
              max_det: int = 300, output_dir: Optional[str] = "runs/infer",
              save_json: Optional[str] = None, batch: int = 1, progress: bool = True,
              log: Log = print, vid_stride: int = 1, show: bool = False, save_jsonl: Optional[str] = None,
              reconnect: int = 5, fps_overlay: bool = True,
              open_capture: Optional[Callable[..., Any]] = None, preprocess_on: str = "cpu") -> List[Dict[str, Any]]:
    """Detect objects in images, folders, globs, video files, cameras, streams and GStreamer pipelines.

    Sources are processed in the order given; videos, cameras and streams are decoded on a background
    thread each (:class:`~yolo4.runtime.frame_reader.FrameReader`: a file never drops frames, a live
    source keeps the newest frames and is reopened with back-off when it drops). Frames (and still
    images) are grouped into batches of up to ``batch`` per :meth:`Detector.detect` call, across
    sources, order kept. Annotated images are written to ``output_dir/<name>``, videos (files and
    live sources) to ``output_dir/<stem>.mp4`` with an FPS overlay; two inputs with the same name get
    ``<stem>_2<ext>``, ... A corrupt or missing input is skipped with a one-line warning. The speed
    line (ms per image: preprocess, inference, NMS) is logged at the end, with the frames dropped,
    skipped and the reconnects when not zero.

    Args:
        sources: see :func:`yolo4.runtime.sources.iter_sources`; also GStreamer pipeline strings.
        backend: a :class:`~yolo4.runtime.backends.base.Backend`.
        conf, iou_threshold, max_det: score threshold, NMS IoU threshold (0..1; ``iou=``, its old
            name, still works for one release, with a deprecation warning), detections per image.
        output_dir: folder for annotated media; None = none written.
        save_json: write the returned list as one JSON file at the end.
        batch: frames per :meth:`Detector.detect` call (>= 1).
        vid_stride: process every ``vid_stride``-th frame of videos and live sources.
        show: show annotated frames in a window when a display exists (``q`` / Esc stops the run
            as if the sources ended); otherwise one warning line.
        save_jsonl: write one JSON object per image/frame, ``{"source", "frame" (None for an image),
            "time_s" (position in a video file / seconds since a live source opened; None for an
            image), "detections": [...]}``, as it goes (temp file renamed at the end).
        reconnect: reopen attempts of a live source that drops (0 = end it at once).
        fps_overlay: draw the loop's frames per second (last 30 frames) on videos and ``show``.
        open_capture: the capture factory for videos and live sources (default ``cv2.VideoCapture``).
        preprocess_on: ``"cpu"`` or ``"gpu"`` (:class:`Detector`; TensorRT engines only).

    Batches are submitted to the backend and up to ``backend.pipeline_depth`` of them are in flight
    (TensorRT: one per execution context) while earlier ones are drawn and written.

    Returns:
        ``[{"image": path, "frame": int (videos only), "output": annotated file (when written),
        "detections": [...]}]`` with bbox_xyxy in original-image pixels, for still images and video
        files only: live sources are unbounded, their results go to ``save_jsonl`` (and the
        outputs) only. Also written to ``save_json`` when given.

    Raises:
        Yolo4Error: no input could be read; a video writer cannot be opened.
        KeyboardInterrupt: on Ctrl-C, after stopping the readers and finishing every output written
            so far (videos, ``save_json``, ``save_jsonl``); one line ``interrupted after N frames``.
        ValueError: ``batch`` or ``vid_stride`` < 1, ``reconnect`` < 0.
    """
    import cv2

    from .data.images import imread
    from .errors import ImageReadError
    from .runtime.detector import Detector
    from .runtime.draw import draw_detections
    from .runtime.frame_reader import Frame, FrameReader
    from .runtime.sources import IMAGE, LIVE, expand_sources, source_kind
    from .runtime.video_out import FpsMeter, JsonLinesOutput, VideoOutput, Viewer, draw_fps, video_fps

    if batch < 1 or vid_stride < 1 or reconnect < 0:
        raise ValueError("batch and vid_stride must be >= 1, reconnect >= 0")
    names = backend.info.names
    detector = Detector(backend, batch_size=batch, preprocess_on=preprocess_on, score_threshold=conf,
                        iou_threshold=iou_threshold, max_output_boxes=max_det)
    results: List[Dict[str, Any]] = []
    writers: Dict[str, Any] = {}
    outputs: Dict[str, Path] = {}
    used: set = set()
    live: set = set()
    readers: List[Any] = []
    out_dir = Path(output_dir) if output_dir else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    jsonl = JsonLinesOutput(save_jsonl) if save_jsonl else None
    viewer = Viewer(log) if show else None
    meter = FpsMeter(30)
    counts = {"skipped": 0, "frames": 0}

    def frames():
        for src in expand_sources(list(sources)):
            if isinstance(src, ImageReadError):
                yield Frame(src.path or "", None, src, None)
                continue
            kind = source_kind(src)
            if kind == IMAGE:
                try:
                    yield Frame(src, None, imread(src), None)
                except ImageReadError as e:
                    yield Frame(src, None, e, None)
                continue
            if kind == LIVE:
                live.add(src)
            reader = FrameReader(src, vid_stride, live=kind == LIVE,
                                 queue_size=max(2, batch) if kind == LIVE else max(8, 2 * batch),
                                 reconnect=reconnect, open_capture=open_capture or cv2.VideoCapture, log=log)
            readers.append(reader)
            with reader:
                yield from reader

    inflight: List[Any] = []  # (chunk, ticket): up to detector.pipeline_depth batches on the device

    def process(chunk: List[Any]) -> bool:
        """Submit a batch; handle the oldest in flight once the pipeline is full. False = stop."""
        inflight.append((chunk, detector.submit([f.image for f in chunk])))
        if len(inflight) >= detector.pipeline_depth:
            return handle(*inflight.pop(0))
        return True

    def drain() -> bool:
        go_on = True
        while inflight and go_on:
            go_on = handle(*inflight.pop(0))
        inflight.clear()
        return go_on

    def handle(chunk: List[Any], ticket: Any) -> bool:
        dets = detector.collect(ticket)
        fps = meter.tick(len(chunk))
        go_on = True
        for f, det in zip(chunk, dets):
            key, is_video = str(f.path), f.frame_index is not None
            rec: Dict[str, Any] = {"image": key}
            if is_video:
                rec["frame"] = int(f.frame_index)
            if out_dir is not None:
                if key not in outputs:
                    name = Path(key).name if not is_video else _video_output_stem(key, key in live) + ".mp4"
                    outputs[key] = out_dir / unique_name(name or "stream.mp4", used)
                rec["output"] = str(outputs[key])
            rec["detections"] = detections_to_json(det, names)
            if key not in live:
                results.append(rec)
            if jsonl is not None:
                jsonl.write({"source": key, "frame": rec.get("frame"),
                             "time_s": None if f.time_s is None else round(float(f.time_s), 4),
                             "detections": rec["detections"]})
            counts["frames"] += 1
            if out_dir is None and viewer is None:
                continue
            drawn = draw_detections(f.image, det, names)
            if out_dir is not None and not is_video:
                _atomic_imwrite(outputs[key], drawn)
            if fps_overlay and (is_video or viewer is not None):
                draw_fps(drawn, fps)
            if out_dir is not None and is_video:
                if key not in writers:
                    writers[key] = VideoOutput(outputs[key], video_fps(key) / vid_stride, drawn.shape[1],
                                               drawn.shape[0])
                writers[key].write(drawn)
            if viewer is not None and not viewer.show(drawn):
                go_on = False
        return go_on

    def finish() -> None:
        for r in readers:
            r.close()
        for w in writers.values():
            w.close()
        if jsonl is not None:
            jsonl.close()
        if save_json:
            atomic_write_text(save_json, json.dumps(results, indent=1))

    try:
        items = frames()
        if progress:
            from tqdm import tqdm
            items = tqdm(items, desc="infer", unit="frame", leave=False)
        pending: List[Any] = []
        stopped = False
        meter.start()
        held: List[ImageReadError] = []  # a first unreadable input, said once: as the error if alone
        for f in items:
            if isinstance(f.image, ImageReadError):
                counts["skipped"] += 1
                if held:
                    log("warning: skipped %s" % held.pop())
                if counts["skipped"] == 1 and not pending and not counts["frames"]:
                    held.append(f.image)
                else:
                    log("warning: skipped %s" % f.image)
                continue
            if held:
                log("warning: skipped %s" % held.pop())
            pending.append(f)
            if len(pending) >= batch:
                chunk, pending = pending, []
                if not process(chunk):
                    stopped = True
                    break
        if pending and not stopped:
            stopped = not process(pending)
        if not stopped:
            drain()
        for r in readers:
            r.close()
        if counts["skipped"] == 1 and not counts["frames"] and held:
            raise held.pop()  # the one input, and why it cannot be read
        if held:
            log("warning: skipped %s" % held.pop())
        if counts["skipped"] and not counts["frames"]:
            raise Yolo4Error("no readable image or video among %d input(s)" % counts["skipped"],
                             sources[0] if len(sources) == 1 else None)
        finish()
    except KeyboardInterrupt:
        try:
            drain()  # the batches already on the device: their frames are written too
        except KeyboardInterrupt:
            pass
        finish()
        log("interrupted after %d frames: outputs finished" % counts["frames"])
        raise
    finally:
        for r in readers:
            r.close()
        for w in writers.values():
            w.abort()
        if jsonl is not None:
            jsonl.abort()
        if viewer is not None:
            viewer.close()
    if counts["skipped"]:
        log("%d input(s) skipped (unreadable)" % counts["skipped"])
    extra = []
    for label, n in (("frame(s) dropped (live source faster than inference)", sum(r.stats.dropped for r in readers)),
                     ("undecodable frame(s) skipped", sum(r.stats.skipped for r in readers)),
                     ("reconnect(s)", sum(r.stats.reconnects for r in readers))):
        if n:
            extra.append("%d %s" % (n, label))
    if extra:
        log("; ".join(extra))
    if detector.timings.images:
        log(detector.timings.summary(backend.info.input_hw))
    return results


def _video_output_stem(source: str, is_live: bool) -> str:
    """The file stem of the annotated video of ``source``: a video file's stem; for a live source a
    safe name: ``camera0``, the last part of a URL's path (or its host), ``gstreamer``."""
    import re

    if not is_live:
        return Path(source).stem
    if source.isdigit():
        return "camera" + source
    if "!" in source:
        return "gstreamer"
    rest = source.split("://", 1)[-1].split("?", 1)[0].rstrip("/")
    part = rest.rsplit("/", 1)[-1] if "/" in rest else rest.split("@")[-1]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.splitext(part)[0]).strip("._") or "stream"


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


@renamed_keywords(iou="iou_threshold")
def run_eval(data: str, backend, conf: float = 0.001, iou_threshold: float = 0.45, max_det: int = 300,
             batch: int = 8, split: str = "val", save_json: Optional[str] = None,
             match_names: bool = False, pr_conf: float = 0.25, progress: bool = True,
             log: Log = print, preprocess_on: str = "cpu") -> Dict[str, Any]:
    """COCO mAP@[.5:.95] and mAP@.5 (pycocotools) of a backend on a labelled dataset split.

    The model's class names must be the dataset's, in the same order (``match_names`` maps them by
    name instead). Logs the per-class table (instances, P, R, AP50, AP50-95) and the speed line.

    Returns the metrics dict of :func:`yolo4.runtime.coco_eval.evaluate` plus ``data``, ``split``,
    ``conf``, ``iou`` (``iou_threshold``), ``input_hw`` and ``speed_ms`` (per image: preprocess,
    inference, nms); also written to ``save_json``. ``iou=``, the old name of ``iou_threshold``,
    still works for one release, with a deprecation warning.
    """
    import numpy as np

    from .data.datasets import load_dataset
    from .runtime.coco_eval import evaluate, format_per_class, predict_split
    from .runtime.detector import Detector
    from .runtime.postprocess import Detections

    ds = load_dataset(data, split)
    ds.report_warnings(log, split, limit=20)
    mapping = class_mapping(ds.names, backend.info.names, by_name=match_names, source=str(data), log=log)
    detector = Detector(backend, batch_size=batch, preprocess_on=preprocess_on, score_threshold=conf,
                        iou_threshold=iou_threshold, max_output_boxes=max_det)
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
    metrics.update({"data": str(data), "split": split, "conf": conf, "iou": iou_threshold,
                    "input_hw": list(backend.info.input_hw),
                    "speed_ms": {k: round(v, 3) for k, v in detector.timings.per_image_ms().items()}})
    if save_json:
        atomic_write_text(save_json, json.dumps(metrics, indent=1))
    return metrics


def export_int8(fp32_onnx: str, output: str, calib_data: str, calib_images: int = DEFAULT_NUM_IMAGES,
                calib_method: str = DEFAULT_METHOD, exclude: Sequence[str] = (),
                target_drop: Optional[float] = None, val_data: Optional[str] = None,
                layout: str = DEFAULT_LAYOUT, seed: int = DEFAULT_SEED, log: Log = print) -> Dict[str, Any]:
    """FP32 export -> Q/DQ INT8 ONNX (``yolo4 export --int8``), then INT8 vs FP32 on the sample images.

    The INT8 job is :func:`yolo4.calib.int8.quantize_int8` (calibration set, ranges, Q/DQ ONNX, and
    the sensitivity search when ``target_drop`` is given, measured with :func:`onnx_evaluator`; report
    written to ``<output stem>-int8-report.md``), the one ``yolo4 build-engine --int8`` runs too.
    Every default is the CLI's, from :mod:`yolo4.calib.defaults`. Behaviour change: ``calib_method``
    defaulted to ``"percentile"`` here (``minmax`` on the command line); it is ``minmax`` now, so a
    Python caller gets the INT8 model ``yolo4 export --int8`` writes.

    Returns:
        ``{"path", "quantized", "excluded", "report", "agreement"}`` (report/agreement may be None).

    Raises:
        Yolo4Error: as :func:`yolo4.calib.int8.quantize_int8` (bad calibration source, a pattern
            matching nothing, ...).
    """
    from .calib.int8 import quantize_int8

    job = quantize_int8(fp32_onnx, output, calib_data, calib_images=calib_images, calib_method=calib_method,
                        exclude=exclude, layout=layout, seed=seed, target_drop=target_drop, val_data=val_data,
                        make_evaluator=onnx_evaluator, log=log)
    res, report_path = job.result, job.report_path
    log("wrote %s (Q/DQ INT8: %s)" % (res.path, res.summary()))
    agreement = None
    from .runtime.agreement import sample_images

    samples = sample_images()
    if samples:
        agreement = compare_detections(fp32_onnx, str(res.path), samples)
        log("INT8 vs FP32 on %s: %s" % (", ".join(Path(p).name for p in samples), agreement.summary()))
    return {"path": str(res.path), "quantized": res.quantized, "excluded": res.excluded,
            "report": str(report_path) if report_path else None, "agreement": agreement}


def onnx_evaluator(data: str, split: str = "val", batch: int = 8
                   ) -> Callable[[Union[str, "os.PathLike[str]"]], float]:
    """``evaluate(onnx_path) -> mAP@[.5:.95]`` (0..1) of an ONNX model on ONNX Runtime on ``data``'s
    ``split`` (:func:`run_eval`, quietly): what :func:`yolo4.calib.sensitivity.sensitivity_search`
    measures each step with."""

    def evaluate(path: Union[str, "os.PathLike[str]"]) -> float:
        be = open_backend(onnx=os.fspath(path), log=lambda m: None)
        try:
            m = run_eval(data, be, batch=batch, split=split, progress=False, log=lambda m: None)
        finally:
            close = getattr(be, "close", None)
            if callable(close):
                close()
        return float(m["map50_95"])

    return evaluate


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
