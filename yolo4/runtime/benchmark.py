"""Latency and throughput of a loaded backend per batch size (``yolo4 benchmark``).

Two modes: *engine-only* times the backend's forward pass on a preprocessed batch
(``backend(batch)``); *end-to-end* times what a user waits for per batch: decode the JPEGs, preprocess,
forward, threshold + NMS, all through :class:`~yolo4.runtime.detector.Detector` (the one pre- and
post-processing). Inputs are the images of a folder, else darknet's sample images from the asset
mirror, else a deterministic synthetic image (:func:`yolo4.runtime.agreement.reference_input`). Warm-up
iterations are not timed; each timed iteration is one batch. Python 3.8, torch-free (onnxruntime
and torch are only looked at when the backend already loaded them).
"""

import os
import platform
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import Yolo4Error

__all__ = ["parse_batches", "latency_stats", "benchmark_inputs", "device_info", "run_benchmark",
           "format_table", "format_device"]

Log = Callable[[str], Any]

#: the statistics of one batch size, in the order of the table's columns
STAT_KEYS = ("mean_ms", "p50_ms", "p90_ms", "p99_ms", "ms_per_image", "images_per_s")


def parse_batches(text: str) -> List[int]:
    """``"1,4,8"`` -> ``[1, 4, 8]`` (order kept, duplicates dropped).

    Raises:
        ValueError: empty, not integers, or a batch size < 1 (the message says which).
    """
    parts = [p.strip() for p in str(text).split(",")]
    if not any(parts):
        raise ValueError("give batch sizes as comma-separated integers, e.g. 1,4,8")
    out: List[int] = []
    for p in parts:
        try:
            b = int(p)
        except ValueError:
            raise ValueError("%r is not an integer batch size (give e.g. 1,4,8)" % p) from None
        if b < 1:
            raise ValueError("batch sizes must be >= 1, got %d" % b)
        if b not in out:
            out.append(b)
    return out


def latency_stats(seconds: Sequence[float], batch: int) -> Dict[str, float]:
    """Statistics of per-batch wall-clock times.

    Args:
        seconds: one duration per timed iteration (seconds, each one batch of ``batch`` images).
        batch: images per iteration.

    Returns:
        ``mean_ms``, ``p50_ms``, ``p90_ms``, ``p99_ms`` (milliseconds per batch; percentiles with
        linear interpolation, numpy's default), ``ms_per_image`` (mean / batch) and ``images_per_s``
        (batch / mean seconds).

    Raises:
        ValueError: no durations, a negative one, or ``batch < 1``.
    """
    t = np.asarray(list(seconds), np.float64)
    if t.size == 0:
        raise ValueError("no timings")
    if batch < 1:
        raise ValueError("batch must be >= 1")
    if (t < 0).any() or not np.isfinite(t).all():
        raise ValueError("timings must be finite and >= 0")
    ms = t * 1000.0
    mean = float(ms.mean())
    p50, p90, p99 = (float(v) for v in np.percentile(ms, [50, 90, 99]))
    return {"mean_ms": mean, "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "ms_per_image": mean / batch,
            "images_per_s": (1000.0 * batch / mean) if mean > 0 else float("inf")}


def _image_paths(images: Optional[str]) -> Tuple[List[str], str]:
    """Image files of ``images`` (a folder), else darknet's samples; ``(paths, description)``."""
    from ..data.images import IMAGE_SUFFIXES
    from .agreement import sample_images

    if images is not None:
        if not os.path.isdir(images):
            raise Yolo4Error("--images must be a folder of images", images)
        paths = [os.path.join(images, n) for n in sorted(os.listdir(images))
                 if os.path.splitext(n)[1].lower() in IMAGE_SUFFIXES and os.path.isfile(os.path.join(images, n))]
        if not paths:
            raise Yolo4Error("no images in this folder (%s)" % ", ".join(IMAGE_SUFFIXES), images)
        return paths, "%d image(s) from %s" % (len(paths), images)
    paths = sample_images()
    if paths:
        return paths, "darknet's %d sample image(s) (%s)" % (len(paths), ", ".join(os.path.basename(p) for p in paths))
    return [], "synthetic input"


def _read_all(paths: Sequence[str]) -> List[np.ndarray]:
    from ..data.images import imread

    return [imread(p) for p in paths]  # an unreadable image is an ImageReadError (one line)


def _synthetic_jpeg(input_hw: Tuple[int, int], letter_box: bool, folder: str) -> List[str]:
    """The deterministic synthetic input as a JPEG in ``folder`` (so end-to-end still decodes one)."""
    import cv2

    from .agreement import reference_input

    x, _ = reference_input(tuple(input_hw), batch=1, letter_box=letter_box)
    bgr = np.ascontiguousarray((x[0].transpose(1, 2, 0)[:, :, ::-1] * 255.0).round().astype(np.uint8))
    path = os.path.join(folder, "synthetic.jpg")
    if not cv2.imwrite(path, bgr):
        raise Yolo4Error("cannot write the synthetic benchmark image", path)
    return [path]


def benchmark_inputs(paths: Sequence[str], input_hw: Tuple[int, int], letter_box: bool, batch: int) -> np.ndarray:
    """The engine-only input: ``[batch, 3, H, W] float32``, the images (cycled) preprocessed as the
    runtime does, or the synthetic :func:`~yolo4.runtime.agreement.reference_input` when ``paths`` is empty."""
    from .preprocess import preprocess

    if not paths:
        from .agreement import reference_input

        return reference_input(tuple(input_hw), batch=batch, letter_box=letter_box)[0]
    imgs = _read_all(paths)
    x, _ = preprocess([imgs[i % len(imgs)] for i in range(batch)], tuple(input_hw), letter_box)
    return x


def _cpu_model() -> Optional[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")) and ":" in line:
                    return line.split(":", 1)[1].strip() or None
    except OSError:
        pass
    return platform.processor() or None


def device_info(backend: Any, threads: Optional[int] = None) -> Dict[str, Any]:
    """What ran: backend name, threads, ONNX Runtime version and providers (ONNX Runtime backends),
    torch version (torch backend), CPU model (``/proc/cpuinfo`` when available), machine, Python."""
    import sys

    name = getattr(backend, "name", type(backend).__name__)
    out: Dict[str, Any] = {"backend": name, "threads": None}
    providers = getattr(backend, "providers", None)
    if providers is not None:
        out["providers"] = list(providers)
    if name == "onnxruntime":
        ort = sys.modules.get("onnxruntime")
        out["onnxruntime"] = getattr(ort, "__version__", None)
        from .backends.onnxruntime_backend import physical_cores

        out["threads"] = int(threads or physical_cores())
    elif name == "torch" and "torch" in sys.modules:
        torch = sys.modules["torch"]
        out["threads"] = int(torch.get_num_threads())
        out["torch"] = getattr(torch, "__version__", None)
    for attr in ("device_name", "gpu_name"):  # e.g. a GPU backend's device
        v = getattr(backend, attr, None)
        if isinstance(v, str) and v:
            out["gpu"] = v
            break
    out["cpu"] = _cpu_model()
    out["cpu_count"] = os.cpu_count()
    out["machine"] = platform.machine()
    out["python"] = platform.python_version()
    return out


def _timed(fn: Callable[[int], Any], warmup: int, iterations: int, desc: str, progress: bool) -> List[float]:
    """Run ``fn(i)`` ``warmup`` times untimed, then ``iterations`` times timed (seconds each)."""
    for i in range(warmup):
        fn(i)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=iterations, desc=desc, unit="it", leave=False)
    times: List[float] = []
    try:
        for i in range(iterations):
            t0 = time.perf_counter()
            fn(warmup + i)
            times.append(time.perf_counter() - t0)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return times


def run_benchmark(backend: Any, batches: Sequence[int] = (1,), iterations: int = 50, warmup: int = 5,
                  end_to_end: bool = False, images: Optional[str] = None, threads: Optional[int] = None,
                  progress: bool = True, log: Log = print, preprocess_on: str = "cpu") -> Dict[str, Any]:
    """Time ``backend`` at each batch size.

    Args:
        backend: a loaded :class:`~yolo4.runtime.backends.base.Backend`.
        batches: batch sizes (a fixed-batch model is measured at its own batch only; the others are
            reported as skipped and logged).
        iterations: timed iterations per batch size (each one batch).
        warmup: untimed iterations before them.
        end_to_end: time JPEG decoding + preprocessing + forward + NMS (:class:`Detector`) instead
            of the forward pass alone.
        images: folder of images [default: darknet's sample images, else a synthetic image].
        threads: the ONNX Runtime thread count the backend was opened with (reported only).
        preprocess_on: end to end only: ``"cpu"`` or ``"gpu"`` (TensorRT: the preprocessing kernel).

    Returns:
        ``{"mode", "model", "device", "input", "iterations", "warmup", "skipped_batches",
        "results": [{"batch", "mean_ms", "p50_ms", "p90_ms", "p99_ms", "ms_per_image",
        "images_per_s", "iterations"}]}`` (milliseconds per batch unless named per image).

    Raises:
        ValueError: ``iterations < 1``, ``warmup < 0`` or no batch sizes.
        Yolo4Error: an unusable ``images`` folder or image.
    """
    if iterations < 1 or warmup < 0:
        raise ValueError("iterations must be >= 1 and warmup >= 0")
    batches = [int(b) for b in batches]
    if not batches or min(batches) < 1:
        raise ValueError("give batch sizes >= 1")
    info = backend.info
    hw = tuple(int(v) for v in info.input_hw)
    fixed = getattr(backend, "fixed_batch", None)
    skipped: List[int] = []
    if fixed is not None:
        skipped = [b for b in batches if b != fixed]
        if skipped:
            log("note: the model has a fixed batch size of %d: measuring batch %d only (not %s)"
                % (fixed, fixed, ", ".join(str(b) for b in skipped)))
        batches = [int(fixed)]
    paths, source = _image_paths(images)
    results: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="yolo4-bench-") as tmp:
        if end_to_end:
            from ..data.images import imread
            from .detector import Detector

            if not paths:
                paths = _synthetic_jpeg(hw, bool(info.letter_box), tmp)
            _read_all(paths)  # a bad image fails here, before any timing
        for b in batches:
            if end_to_end:
                detector = Detector(backend, batch_size=b, preprocess_on=preprocess_on)

                def step(i: int, b: int = b, detector: Any = detector) -> Any:
                    chunk = [imread(paths[(i * b + k) % len(paths)]) for k in range(b)]
                    return detector.detect(chunk)
            else:
                x = benchmark_inputs(paths, hw, bool(info.letter_box), b)

                def step(i: int, x: np.ndarray = x) -> Any:
                    return backend(x)
            times = _timed(step, warmup, iterations, "batch %d" % b, progress)
            row: Dict[str, Any] = {"batch": b}
            row.update(latency_stats(times, b))
            row["iterations"] = len(times)
            results.append(row)
    return {
        "mode": "end-to-end" if end_to_end else "engine-only",
        "model": {"input_hw": list(hw), "num_classes": int(info.num_classes), "letter_box": bool(info.letter_box),
                  "fixed_batch": fixed, "nms_in_graph": getattr(backend, "nms", None)},
        "device": device_info(backend, threads),
        "input": source,
        "iterations": int(iterations),
        "warmup": int(warmup),
        "skipped_batches": skipped,
        "results": results,
    }


def format_table(result: Dict[str, Any]) -> str:
    """The results as a text table, one row per batch size."""
    head = ("batch", "mean ms", "p50 ms", "p90 ms", "p99 ms", "ms/image", "images/s")
    rows = [head]
    for r in result["results"]:
        rows.append((str(r["batch"]),) + tuple("%.2f" % r[k] for k in STAT_KEYS[:5]) + ("%.1f" % r["images_per_s"],))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def format_device(result: Dict[str, Any]) -> str:
    """One line: mode, input size, backend, threads, ONNX Runtime version/providers, CPU."""
    d = result["device"]
    parts = ["%s, %dx%d (WxH)" % (result["mode"], result["model"]["input_hw"][1], result["model"]["input_hw"][0]),
             "backend %s" % d["backend"]]
    if d.get("threads") is not None:
        parts.append("%d thread%s" % (d["threads"], "" if d["threads"] == 1 else "s"))
    if d.get("onnxruntime"):
        parts.append("ONNX Runtime %s" % d["onnxruntime"])
    if d.get("providers"):
        parts.append("providers %s" % ", ".join(d["providers"]))
    if d.get("torch"):
        parts.append("torch %s" % d["torch"])
    if d.get("gpu"):
        parts.append("GPU %s" % d["gpu"])
    if d.get("cpu"):
        parts.append("CPU %s (%s logical cores)" % (d["cpu"], d.get("cpu_count") or "?"))
    return "; ".join(parts)
