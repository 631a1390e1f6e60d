"""ONNX -> TensorRT engine (FP32 / FP16 / INT8) with its metadata sidecar: :func:`build_engine`.

What it does, in order:

1. checks the options and files (one line per mistake, before anything slow);
2. loads TensorRT (:func:`yolo4.convert.trt_compat.load_tensorrt`: ``tensorrt`` first, else
   ``tensorrt_rtx``) and reads the ONNX's yolo4 metadata (:class:`~yolo4.model_info.ModelInfo`),
   precision (Q/DQ nodes -> INT8, float16 initializers -> FP16, else FP32) and input shape
   (:func:`yolo4.onnx_facts.read_onnx_facts`);
3. decides how to build the asked precision on this release
   (:func:`~yolo4.convert.trt_compat.plan_precision`): builder flags on 8.5 - 10.x; on strongly typed
   releases (11.x, TensorRT for RTX) an FP16 engine is built from an FP16 ONNX (an FP32 one is
   converted by :func:`yolo4.convert.fp16.convert_to_fp16` into ``<engine stem>-fp16.onnx``) and an
   INT8 engine from a Q/DQ ONNX (:func:`yolo4.calib.qdq.quantize_qdq` writes ``<engine stem>-int8.onnx``);
   implicit INT8 (8.5 - 10.x) uses a TensorRT calibrator (:mod:`yolo4.calib.calibrators`) with a
   calibration cache, the YOLO decode kept in FP32;
4. registers plugin creators before the ONNX parser is made: TensorRT's own always
   (``init_libnvinfer_plugins``; the 10.x parser no longer does it), ``--plugin-lib`` libraries, and
   the DIoU-NMS plugin of ``yolo4 build-plugin`` for an ONNX exported with ``--nms plugin`` (whose
   layer runs in FP32 in weakly typed FP16/INT8 builds);
5. builds with an optimization profile for the dynamic batch (default 1, 4, 8; DLA needs a fixed
   one and reports how many layers can run on it), TF32 as asked (``--no-tf32``), the cross-machine
   options (``--version-compatible``, ``--hardware-compatibility-level``, TensorRT >= 8.6), memory
   pools sized for a Jetson, an elapsed-time display (phases from ``IProgressMonitor`` where the
   release has it), TensorRT's log at WARNING (INFO with ``verbose``);
6. writes the engine atomically, then its sidecar ``<engine>.json``
   (:mod:`yolo4.engine_meta`), and reports precision, layers per precision (engine
   inspector, or the build log's layer table where no GPU can deserialize the plan), size, build
   time and the process's peak host memory.

Torch-free (the runtime side of a Jetson has no torch); ``tensorrt``, ``onnx`` and the calibration
modules are imported inside the functions. Python 3.8.
"""

import hashlib
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from .. import __version__
from ..calib.defaults import DEFAULT_IMPLICIT_METHOD, DEFAULT_METHOD, DEFAULT_NUM_IMAGES
from ..engine_meta import AHEAD_OF_TIME, EngineMeta, cuda_device, write_engine_meta
from ..errors import ModelFileError, Yolo4Error
from ..fileio import atomic_write_bytes, check_writable_file
from ..onnx_facts import OnnxFacts, import_onnx, onnx_precision, read_onnx_facts
from . import trt_compat as compat

__all__ = ["build_engine", "DEFAULT_CONTEXTS", "BuildResult", "OnnxFacts", "read_onnx_facts", "onnx_precision", "parse_batch",
           "DEFAULT_BATCH", "CALIB_METHODS", "DEFAULT_CALIB_IMAGES", "JETSON_WORKSPACE_MIB"]

PathLike = Union[str, "os.PathLike[str]"]
Log = Callable[[str], Any]

#: execution contexts a dynamic-batch engine is built for (one optimization profile each): two let the
#: runtime upload and post-process one batch while the GPU runs the other
DEFAULT_CONTEXTS = 2
#: ``(min, opt, max)`` batch of the optimization profile of a dynamic-batch ONNX
DEFAULT_BATCH = (1, 4, 8)
#: ``--calib-method`` values: entropy and minmax for both quantizations, percentile explicit only
CALIB_METHODS = ("entropy", "minmax", "percentile")
#: default calibration method per quantization (TensorRT's recommendation for CNNs; the Q/DQ
#: quantizer's measured best on yolov4-tiny, :mod:`yolo4.calib.qdq`)
DEFAULT_CALIB_METHOD = {"implicit": DEFAULT_IMPLICIT_METHOD, "explicit": DEFAULT_METHOD}
DEFAULT_CALIB_IMAGES = DEFAULT_NUM_IMAGES  # the name this module exported; defined in yolo4.calib.defaults


# ------------------------------------------------------------------------------------------------
# the ONNX (its facts are read by yolo4.onnx_facts, re-exported here) and the batch profile
# ------------------------------------------------------------------------------------------------

def parse_batch(text: Union[str, Sequence[int], None]) -> Optional[Tuple[int, int, int]]:
    """``"1,4,8"`` -> ``(1, 4, 8)``; ``"4"`` -> ``(4, 4, 4)``; None -> None.

    Raises:
        Yolo4Error: not 1 or 3 positive integers with MIN <= OPT <= MAX.
    """
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")] if isinstance(text, str) else [str(v) for v in text]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or min(values) < 1 or not values[0] <= values[1] <= values[2]:
        raise Yolo4Error(f"--batch must be MIN,OPT,MAX positive integers with MIN <= OPT <= MAX (e.g. 1,4,8), "
                         f"got {text!r}")
    return values[0], values[1], values[2]


def _profile_shapes(facts: OnnxFacts, batch: Optional[Tuple[int, int, int]]) -> Dict[str, List[int]]:
    """min/opt/max input shapes: the batch from ``batch`` (dynamic) or the ONNX (fixed); symbolic
    height/width from the model's ``input_hw``."""
    shape = list(facts.input_shape)
    h, w = facts.info.input_hw
    rest = [shape[1] if shape[1] > 0 else 3, shape[2] if shape[2] > 0 else h, shape[3] if shape[3] > 0 else w]
    if shape[0] > 0:
        fixed = shape[0]
        if batch is not None and batch != (fixed, fixed, fixed):
            raise Yolo4Error(f"the ONNX has a fixed batch of {fixed}: drop --batch (or export with a dynamic "
                             "batch: yolo4 export without --batch)", facts.path)
        mn = opt = mx = fixed
    else:
        mn, opt, mx = batch if batch is not None else DEFAULT_BATCH
    return {"min": [mn] + rest, "opt": [opt] + rest, "max": [mx] + rest}


def _sha256(path: PathLike) -> str:
    h = hashlib.sha256()
    with open(os.fspath(path), "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _sibling(output: Path, suffix: str) -> Path:
    """``model.engine`` -> ``model-fp16.onnx`` (``suffix="-fp16.onnx"``)."""
    return output.with_name(output.stem + suffix)


# ------------------------------------------------------------------------------------------------
# progress
# ------------------------------------------------------------------------------------------------

class _Progress:
    """Elapsed time while TensorRT builds: a line rewritten every second on a terminal (with the
    current phase where TensorRT reports phases), a line every 30 s otherwise. Ctrl-C during a
    build with a progress monitor asks TensorRT to stop at its next step."""

    def __init__(self, log: Log, stream: Any = None, tick: float = 1.0, line_every: float = 30.0) -> None:
        self.log = log
        self.tick = tick
        self.line_every = line_every
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.phase = ""
        self.cancelled = False
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._t0 = 0.0
        self._lock = threading.Lock()
        self._drawn = False

    def on_phase(self, name: str, step: int, steps: int) -> None:
        self.phase = "%s %d/%d" % (name, step, steps) if steps else name

    def clear(self) -> None:
        """Erase the progress line (before another line is printed)."""
        with self._lock:
            if self.tty and self._drawn:
                self.stream.write("\r\033[K")
                self.stream.flush()
                self._drawn = False

    def _run(self) -> None:
        last_line = 0.0
        while not self._stop.wait(self.tick):
            elapsed = time.time() - self._t0
            if self.tty:
                with self._lock:
                    phase = (" [%s]" % self.phase[:60]) if self.phase else ""
                    self.stream.write("\r\033[Kbuilding engine: %s%s" % (_fmt_time(elapsed), phase))
                    self.stream.flush()
                    self._drawn = True
            elif elapsed - last_line >= self.line_every:
                last_line = elapsed
                self.log("still building: %s elapsed%s" % (_fmt_time(elapsed),
                                                           " [%s]" % self.phase if self.phase else ""))

    def start(self) -> None:
        self._t0 = time.time()
        self._thread = threading.Thread(target=self._run, name="yolo4-build-progress", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.clear()


def _fmt_time(seconds: float) -> str:
    s = int(seconds)
    return "%d:%02d" % (s // 60, s % 60) if s >= 60 else "%.1f s" % seconds


# ------------------------------------------------------------------------------------------------
# the build
# ------------------------------------------------------------------------------------------------

@dataclass
class BuildResult:
    """What :func:`build_engine` wrote.

    Attributes:
        engine_path: the engine file. meta_path: its sidecar (``<engine>.json``).
        meta: the :class:`~yolo4.engine_meta.EngineMeta` written.
        size_bytes: engine size in bytes. build_time_s: TensorRT build time in seconds.
        layer_precisions: ``{precision: layers}`` (empty when TensorRT did not report them).
        built_onnx: the ONNX TensorRT parsed (the input, or the FP16 / Q/DQ one made from it).
        layer_source: where the layer precisions came from: ``inspector``, ``build log`` or "".
    """

    engine_path: Path
    meta_path: Path
    meta: EngineMeta
    size_bytes: int
    build_time_s: float
    layer_precisions: Dict[str, int]
    built_onnx: Path
    layer_source: str = ""


def _check_inputs(onnx_path: Path, output: Path, calib_method: Optional[str], calib_images: int,
                  workspace: Optional[int], dla_core: Optional[int], plugin_libs: Sequence[PathLike],
                  timing_cache: Optional[PathLike], calib_cache: Optional[PathLike]) -> None:
    if not onnx_path.exists():
        raise ModelFileError("ONNX model not found", onnx_path)
    if not onnx_path.is_file():
        raise ModelFileError("not a file (give the .onnx written by `yolo4 export`)", onnx_path)
    if calib_method is not None and calib_method not in CALIB_METHODS:
        raise Yolo4Error(f"--calib-method must be one of {', '.join(CALIB_METHODS)}, got {calib_method!r}")
    if calib_images < 1:
        raise Yolo4Error(f"--calib-images must be >= 1, got {calib_images}")
    if workspace is not None and workspace < 1:
        raise Yolo4Error(f"--workspace must be >= 1 MiB, got {workspace}")
    if dla_core is not None and dla_core < 0:
        raise Yolo4Error(f"--dla-core must be >= 0, got {dla_core}")
    for lib in plugin_libs:
        if not os.path.isfile(os.fspath(lib)):
            raise Yolo4Error("plugin library not found", lib)
    check_writable_file(output, "engine output")
    if output.resolve() == onnx_path.resolve():
        raise Yolo4Error("--output would overwrite the ONNX model: give an .engine path", output)
    if timing_cache is not None:
        check_writable_file(Path(os.fspath(timing_cache)), "timing cache")
    if calib_cache is not None:
        check_writable_file(Path(os.fspath(calib_cache)), "calibration cache")


def build_engine(onnx_path: PathLike, output: PathLike, fp16: bool = False, int8: bool = False,
                 backend: Optional[str] = None, compute_capability: Sequence[str] = (),
                 calib_data: Optional[str] = None, calib_images: int = DEFAULT_CALIB_IMAGES,
                 calib_method: Optional[str] = None, calib_cache: Optional[PathLike] = None,
                 quantization: str = "auto", batch: Union[str, Sequence[int], None] = None,
                 workspace: Optional[int] = None, dla_core: Optional[int] = None,
                 timing_cache: Optional[PathLike] = None, plugin_libs: Sequence[PathLike] = (),
                 int8_exclude: Sequence[str] = (), contexts: int = DEFAULT_CONTEXTS, verbose: bool = False,
                 log: Optional[Log] = print, progress_stream: Any = None, tf32: bool = True,
                 version_compatible: bool = False, hardware_compatibility: Optional[str] = None) -> BuildResult:
    """Build a TensorRT engine from a yolo4 ONNX and write it with its metadata sidecar.

    Args:
        onnx_path: ONNX from ``yolo4 export`` (input ``images`` float32 ``[B,3,H,W]`` RGB 0..1, decoded
            outputs; FP32, FP16, or Q/DQ INT8), with yolo4 ``metadata_props``.
        output: the engine file to write (``.engine``); the sidecar goes to ``<output>.json``.
        fp16: FP16 engine (a flag on 8.5 - 10.x; on strongly typed releases the FP32 ONNX is converted
            to ``<output stem>-fp16.onnx`` first).
        int8: INT8 engine (needs ``calib_data`` unless the ONNX is already Q/DQ).
        backend: ``"tensorrt"`` or ``"tensorrt-rtx"``; None = the installed one (``tensorrt`` first).
        compute_capability: TensorRT for RTX: target compute capabilities (``["8.6"]``); empty = its
            defaults (Ampere and later).
        calib_data: calibration images: a dataset (name, YAML, COCO json, folder), an image folder, a
            glob or a ``.txt`` list (:func:`yolo4.calib.images.calibration_set`).
        calib_images: number of calibration images (default :data:`yolo4.calib.defaults.DEFAULT_NUM_IMAGES`).
        calib_method: ``entropy`` / ``minmax`` (implicit or explicit) / ``percentile`` (explicit only);
            None = ``entropy`` (implicit) / ``minmax`` (explicit).
        calib_cache: implicit INT8: the calibration cache file; None = ``<output>.calib``.
        quantization: ``implicit`` (calibrator, TensorRT 8.5 - 10.x), ``explicit`` (Q/DQ ONNX) or
            ``auto`` (implicit below 11, explicit on 11.x and TensorRT for RTX).
        batch: ``"MIN,OPT,MAX"`` or a 3-sequence: the dynamic batch's profile (default
            :data:`DEFAULT_BATCH`); a fixed-batch ONNX uses its batch.
        workspace: builder workspace limit in MiB; None = TensorRT's default (the GPU's memory), except
            on a Jetson (integrated GPU: host and device memory are one), where it is
            :data:`JETSON_WORKSPACE_MIB` and the tactic memory pool (``TACTIC_DRAM``, 8.6+) half the
            memory, so an 8 GB Jetson builds yolov4-416 INT8 without the kernel's OOM killer.
        dla_core: Jetson DLA core to run on (FP16/INT8 only; GPU fallback on). DLA runs a fixed batch
            only (TensorRT: min = opt = max), so a dynamic-batch profile is refused: give ``--batch N``.
        timing_cache: TensorRT timing cache file, loaded when present and saved after the build.
        plugin_libs: plugin libraries to load before parsing (not TensorRT for RTX).
        int8_exclude: INT8 only: layers to keep in float, darknet layer indices (``"12"``,
            ``"12-15"``, explicit only) or globs on ONNX node names (``"/layers.3*/conv/Conv"``).
        contexts: execution contexts the runtime may run at once (default :data:`DEFAULT_CONTEXTS`):
            a dynamic-batch engine gets this many identical optimization profiles, because TensorRT
            lets one dynamic-shape profile serve one context at a time; the TensorRT backend
            pipelines batches over them. A fixed-batch engine needs none.
        verbose: show TensorRT's log at INFO (default: warnings and errors only).
        log: one-line progress messages (None = silent).
        progress_stream: where the elapsed-time line goes (default stderr).
        tf32: leave ``BuilderFlag.TF32`` on (TensorRT's default); False = FP32 layers run in true FP32
            on Ampere and later (``--no-tf32``).
        version_compatible: ``BuilderFlag.VERSION_COMPATIBLE`` (TensorRT >= 8.6): the engine runs on
            this release and later ones (lean runtime embedded; the runtime allows host code).
        hardware_compatibility: ``ampere+`` (any Ampere or later GPU; build on one, not a Jetson),
            ``same-compute-capability`` (later 10.x) or None/``none`` (TensorRT >= 8.6).

    Returns:
        :class:`BuildResult`.

    Raises:
        Yolo4Error: a bad option, a request the installed TensorRT cannot meet (one line saying what
            to do), no TensorRT installed (what to install), calibration data problems.
        ModelFileError: a missing/invalid ONNX (for a TensorRT parse failure: the parser's first
            error), an output that cannot be written.
        KeyboardInterrupt: Ctrl-C (nothing is written).
    """
    say: Log = log if log is not None else (lambda _m: None)
    onnx_p = Path(os.fspath(onnx_path))
    out = Path(os.fspath(output))
    method = calib_method.strip().lower() if calib_method else None
    _check_inputs(onnx_p, out, method, calib_images, workspace, dla_core, plugin_libs, timing_cache, calib_cache)
    if int(contexts) < 1:
        raise Yolo4Error(f"contexts must be >= 1, got {contexts}")
    batch_range = parse_batch(batch)
    hw_level = compat.hardware_level(hardware_compatibility)
    facts = read_onnx_facts(onnx_p)
    compat.check_precision_request(facts.precision, fp16, int8, quantization, method)
    shapes = _profile_shapes(facts, batch_range)

    api = compat.load_tensorrt(backend, log=say)
    f = api.features
    targets = compat.check_build_options(api, compute_capability, dla_core, plugin_libs, version_compatible,
                                         hw_level)
    _check_dla_batch(dla_core, shapes)
    device = None if f.rtx else cuda_device(0)
    _check_hardware_target(hw_level, device)
    libs = [os.fspath(p) for p in plugin_libs] + _diou_plugin_library(facts, plugin_libs, f, say)

    plan = compat.plan_precision(f, facts.precision, fp16=fp16, int8=int8, quantization=quantization,
                                 calib_method=method)
    if plan.note:
        say(plan.note)
    calibrates = plan.convert == "qdq" or plan.calibrator
    if calibrates and not calib_data:
        raise Yolo4Error(f"--int8 ({plan.quantization} quantization) needs calibration images: --calib-data "
                         "a dataset (e.g. coco128), an image folder, a glob or a .txt list")
    if not calibrates:
        ignored = [o for o, v in (("--calib-data", calib_data), ("--calib-method", method),
                                  ("--calib-cache", calib_cache), ("--int8-exclude", list(int8_exclude)))
                   if v]
        if ignored:
            why = "the ONNX is already Q/DQ-quantized" if facts.precision == "int8" else "they apply to --int8"
            say(f"warning: {', '.join(ignored)} ignored: {why}")
    elif plan.convert == "qdq" and calib_cache is not None:
        say("warning: --calib-cache ignored: it holds TensorRT calibrator scales (implicit quantization); "
            "the Q/DQ quantizer calibrates with ONNX Runtime")
    method = method or DEFAULT_CALIB_METHOD.get(plan.quantization, "")
    if dla_core is not None and plan.precision == "fp32":
        raise Yolo4Error(compat.DLA_PRECISION)
    onnx_sha = _sha256(onnx_p)

    # -- precision conversions (strongly typed releases) ---------------------------------------------
    built_onnx = onnx_p
    calib_set = None
    calib_digest = ""
    if plan.convert == "fp16":
        built_onnx = _make_fp16_onnx(onnx_p, out, say)
    elif plan.convert == "qdq":
        built_onnx, calib_set, calib_digest = _make_qdq_onnx(onnx_p, out, str(calib_data), calib_images, method,
                                                             int8_exclude, say)
    elif plan.calibrator:
        from ..calib.images import calibration_set

        calib_set = calibration_set(str(calib_data), facts.info, num_images=calib_images,
                                    batch_size=shapes["opt"][0], log=say)  # the calibration profile's batch
        calib_digest = calib_set.digest()  # reads every image once (also the cache's key)

    # -- TensorRT ------------------------------------------------------------------------------------
    progress = _Progress(say, progress_stream)
    logger = compat.make_logger(api, say, verbose=verbose, before_print=progress.clear,
                                silenced=lambda: progress.cancelled)
    trt = api.trt
    builder = trt.Builder(logger)
    plugins = compat.load_plugin_libraries(api, logger, libs)  # also TensorRT's own, before the parser
    network = compat.create_network(api, builder, plan.strongly_typed)
    say(f"parsing {built_onnx} ({f.name})")
    parser = compat.parse_onnx(api, network, logger, built_onnx)
    if network.num_inputs != 1:
        raise ModelFileError(f"expected one network input, TensorRT found {network.num_inputs}", built_onnx)
    net_input = network.get_input(0)
    input_name = str(net_input.name)
    input_shape = [int(d) for d in net_input.shape]
    output_names = [str(network.get_output(i).name) for i in range(network.num_outputs)]

    config = builder.create_builder_config()
    compat.set_detailed_profiling(api, config)
    profile = None
    num_profiles = 1
    if any(d < 0 for d in input_shape):
        # one identical profile per execution context the runtime may run at once: TensorRT lets a
        # dynamic-shape profile serve one context at a time (the runtime pipelines over them)
        num_profiles = int(contexts)
        for _ in range(num_profiles):
            p = builder.create_optimization_profile()
            p.set_shape(input_name, shapes["min"], shapes["opt"], shapes["max"])
            config.add_optimization_profile(p)
            profile = profile or p
        if int(config.num_optimization_profiles) != num_profiles:
            raise Yolo4Error(f"TensorRT kept {config.num_optimization_profiles} of {num_profiles} optimization "
                             "profiles; try --contexts 1")
    compat.apply_precision(api, builder, config, plan)
    if targets:
        compat.set_compute_capabilities(api, config, targets)
    workspace_mib = _memory_limits(api, config, workspace, device, say)
    compat.set_tf32(api, config, tf32)
    if version_compatible:
        compat.set_version_compatible(api, config)
    compat.set_hardware_compatibility(api, config, hw_level)
    if dla_core is not None:
        compat.set_dla(api, builder, config, dla_core, plan.precision)
        on_dla, on_gpu = compat.dla_layer_counts(api, network, config)
        say(f"DLA core {dla_core}: {on_dla} of {on_dla + on_gpu} network layers can run on the DLA, {on_gpu} "
            "fall back to the GPU" + ("" if on_dla else " (nothing runs on the DLA)"))
    _pin_plugin_float(api, network, config, facts, plan, say)
    use_timing_cache = timing_cache is not None and compat.load_timing_cache(api, config, timing_cache, say)

    calibrator = None
    cache_path: Optional[Path] = None
    if plan.calibrator:
        calibrator, cache_path = _implicit_calibrator(api, facts, network, config, profile, calib_set,
                                                      calib_digest, method, calib_cache, out, onnx_sha, shapes,
                                                      int8_exclude, say)
    monitor = compat.make_progress_monitor(api, progress.on_phase, lambda: progress.cancelled)
    compat.attach_progress_monitor(api, config, monitor)

    say(_describe_build(f, plan, shapes, input_shape, targets, dla_core, tf32, version_compatible, hw_level,
                        workspace_mib))
    t0 = time.time()
    progress.start()
    restore = _catch_sigint(progress) if monitor is not None else None
    try:
        data = compat.build_serialized(api, builder, network, config)
    finally:
        if restore is not None:
            restore()
        progress.stop()
        if calibrator is not None:
            calibrator.free()
    build_time = time.time() - t0
    peak_mib = _peak_host_memory_mib()
    if progress.cancelled:
        raise KeyboardInterrupt
    if calibrator is not None:
        calibrator.raise_if_failed()
    if data is None:
        why = logger.state.errors[-1] if logger.state.errors else "no reason given (run with --verbose)"
        raise Yolo4Error(f"TensorRT could not build the engine: {why}", built_onnx)
    del parser

    # -- outputs -------------------------------------------------------------------------------------
    if use_timing_cache and timing_cache is not None:
        compat.save_timing_cache(api, config, timing_cache)
    try:
        atomic_write_bytes(out, data)
    except OSError as e:
        raise ModelFileError(f"cannot write the engine ({e.strerror or e})", out) from None
    info_text = compat.inspect_engine(api, logger, data)
    source = "inspector" if info_text else ""
    if not info_text and logger.state.layer_info:
        info_text, source = logger.state.layer_info, "build log"
    layers = compat.summarize_layer_info(info_text)
    if not layers:
        source = ""
    if f.rtx:
        gpu_name, cc = AHEAD_OF_TIME, AHEAD_OF_TIME
    else:
        gpu_name, cc = (device.name, device.compute_capability) if device is not None else ("", "")
    meta = EngineMeta(
        model=facts.model_metadata(), input_name=input_name, input_shape=input_shape,
        profile={k: list(v) for k, v in shapes.items()}, output_names=output_names,
        precision=plan.precision, quantization=plan.quantization, trt_flavour=api.flavour,
        trt_version=api.version, gpu_name=gpu_name, compute_capability=cc, target_compute_capabilities=targets,
        onnx_sha256=onnx_sha, onnx_path=str(onnx_p.resolve()),
        built_onnx=str(built_onnx.resolve()) if built_onnx != onnx_p else "",
        calib_digest=calib_digest,
        calib_method=method if calib_set is not None else "",
        calib_images=len(calib_set.paths) if calib_set is not None else 0,
        dla_core=dla_core, plugin_libraries=plugins, layer_precisions=layers, num_profiles=num_profiles,
        build_time_s=round(build_time, 3), built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        yolo4_version=__version__, tf32=bool(tf32), version_compatible=bool(version_compatible),
        hardware_compatibility=hw_level, workspace_mib=workspace_mib,
        peak_host_memory_mib=round(peak_mib, 1) if peak_mib is not None else 0.0)
    meta_path = write_engine_meta(out, meta)
    size = len(data)
    say(_summary(plan.precision, plan.quantization, layers, source, size, build_time, peak_mib))
    if cache_path is not None and cache_path.is_file():
        say(f"calibration cache: {cache_path}")
    return BuildResult(out, meta_path, meta, size, build_time, layers, built_onnx, source)


# ------------------------------------------------------------------------------------------------
# build options: DLA, hardware target, memory, plugins
# ------------------------------------------------------------------------------------------------

#: builder workspace limit on a Jetson when --workspace is not given (tensorrt_demos builds yolov4 with 1 GiB)
JETSON_WORKSPACE_MIB = 1024
#: share of a Jetson's memory the tactic pool (``TACTIC_DRAM``, TensorRT >= 8.6) may use; TensorRT's
#: own default is 75%, which with the Python process and the OS leaves an 8 GB module out of memory
JETSON_TACTIC_DRAM_SHARE = 0.5


def _check_dla_batch(dla_core: Optional[int], shapes: Dict[str, List[int]]) -> None:
    """DLA runs a fixed batch only: TensorRT puts a layer on the DLA only when the profile's min, opt
    and max are equal; with 1,4,8 every layer would silently run on the GPU.

    Raises:
        Yolo4Error: ``dla_core`` with a profile whose min and max batch differ.
    """
    if dla_core is None or shapes["min"][0] == shapes["max"][0]:
        return
    raise Yolo4Error("--dla-core needs a fixed batch: DLA runs only when the profile's MIN = OPT = MAX "
                     f"(here {shapes['min'][0]},{shapes['opt'][0]},{shapes['max'][0]}, so every layer would run "
                     f"on the GPU); add --batch N, e.g. --batch {shapes['opt'][0]}")


def _check_hardware_target(level: str, device: Any) -> None:
    """``ampere+`` is built on an Ampere or later discrete GPU (TensorRT: "only supported for engines
    built on NVIDIA Ampere and later GPUs"; not on JetPack). Unknown device: TensorRT decides.

    Raises:
        Yolo4Error: ``ampere+`` on a Jetson or a GPU below compute capability 8.0.
    """
    if level != "ampere+" or device is None:
        return
    from ..engine_meta import AMPERE_MIN_CC, parse_compute_capability

    try:
        cc = parse_compute_capability(device.compute_capability)
    except ValueError:
        return
    if getattr(device, "integrated", False) or cc < AMPERE_MIN_CC:
        what = "a Jetson (integrated GPU)" if getattr(device, "integrated", False) else "older than Ampere"
        raise Yolo4Error(f"--hardware-compatibility-level ampere+ builds on an Ampere or later discrete GPU; "
                         f"this GPU ({device.name}, compute capability {device.compute_capability}) is {what}: "
                         "build the engine on this machine without it")


def _memory_limits(api: compat.TrtApi, config: Any, workspace: Optional[int], device: Any,
                   say: Log) -> Optional[int]:
    """Set the workspace pool (``--workspace``, else :data:`JETSON_WORKSPACE_MIB` on a Jetson) and, on
    a Jetson, the tactic pool; returns the workspace limit set in MiB (None: TensorRT's default)."""
    integrated = bool(getattr(device, "integrated", False))
    mib = workspace if workspace is not None else (JETSON_WORKSPACE_MIB if integrated else None)
    if mib is not None:
        compat.set_workspace(api, config, int(mib))
    if mib is None:
        return None
    total = int(getattr(device, "total_memory", 0) or 0)
    if integrated and total > 0:
        share = int(total * JETSON_TACTIC_DRAM_SHARE)
        if compat.set_tactic_dram(api, config, share):
            say("Jetson (memory shared with the CPU): workspace %d MiB, tactic memory %d MiB of %d MiB" % (
                mib, share >> 20, total >> 20))
        else:
            say("Jetson (memory shared with the CPU): workspace %d MiB of %d MiB" % (mib, total >> 20))
    return int(mib)


def _diou_plugin_library(facts: OnnxFacts, plugin_libs: Sequence[PathLike], f: compat.TrtFeatures,
                         say: Log) -> List[str]:
    """The DIoU-NMS plugin library to load for an ONNX exported with ``--nms plugin``: ``[]`` when the
    graph has no ``DIoUNMS_TRT`` node or ``--plugin-lib`` already names the library (same file name),
    else ``[default_plugin_path()]`` (what ``yolo4 build-plugin`` writes and the runtime loads), with
    one line saying so. With other ``--plugin-lib`` libraries and no built plugin, nothing is added
    (one of them may hold the creator; the parser says when none does).

    Raises:
        Yolo4Error: TensorRT for RTX (it cannot load plugins); the library is not built (one line
            saying to run ``yolo4 build-plugin``).
    """
    if not facts.needs_diou_plugin:
        return []
    if f.rtx:
        raise Yolo4Error(f"the ONNX ends with the DIoU-NMS plugin (exported with --nms plugin), which {f.name} "
                         "cannot load: export with --nms none (NMS on the CPU) or build with --backend tensorrt",
                         facts.path)
    from ..plugins import default_plugin_path

    default = os.fspath(default_plugin_path())
    if any(os.path.basename(os.fspath(p)) == os.path.basename(default) for p in plugin_libs):
        return []
    if not os.path.isfile(default):
        if plugin_libs:
            return []
        raise Yolo4Error("DIoU-NMS plugin library not found, and the ONNX ends with DIoUNMS_TRT (exported with "
                         "--nms plugin): build it with `yolo4 build-plugin` (or give --plugin-lib)", default)
    say(f"loading the DIoU-NMS plugin {default} (the ONNX ends with DIoUNMS_TRT: exported with --nms plugin)")
    return [default]


def _pin_plugin_float(api: compat.TrtApi, network: Any, config: Any, facts: OnnxFacts,
                      plan: compat.PrecisionPlan, say: Log) -> None:
    """Weakly typed FP16/INT8 builds: run the ``DIoUNMS_TRT`` layer in FP32 (layer precision, output
    types and ``PREFER_PRECISION_CONSTRAINTS``), so darknet's NMS never sees half-rounded boxes.
    Not for strongly typed networks (the ONNX's types rule) nor an FP16 ONNX (the network is FP16)."""
    if plan.strongly_typed or not (plan.fp16_flag or plan.int8_flag) or facts.precision == "fp16":
        return
    if not facts.plugin_nodes:
        return
    if compat.keep_layers_float(api, network, facts.plugin_nodes):
        compat.prefer_precision_constraints(api, config)
        say("DIoU-NMS plugin layer pinned to FP32 (%s)" % ", ".join(facts.plugin_nodes))


def _peak_host_memory_mib() -> Optional[float]:
    """Peak resident memory of this process in MiB (``getrusage(RUSAGE_SELF).ru_maxrss``: KiB on
    Linux, bytes on macOS); None where the ``resource`` module does not exist (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    rss = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return rss / (1 << 20) if sys.platform == "darwin" else rss / 1024.0


def _make_fp16_onnx(onnx_p: Path, out: Path, say: Log) -> Path:
    """Strongly typed releases: the FP32 ONNX as FP16 (float32 I/O, decode in FP32) beside the engine."""
    onnx = import_onnx()
    try:
        from .fp16 import convert_to_fp16
    except ImportError as e:  # pragma: no cover - onnx present but the converter is not
        raise Yolo4Error(str(e)) from None
    target = _sibling(out, "-fp16.onnx")
    if target.resolve() == onnx_p.resolve():
        raise Yolo4Error(f"the FP16 ONNX would overwrite the input {onnx_p.name}: choose another --output", out)
    model = onnx.load(str(onnx_p))
    try:
        fp16_model = convert_to_fp16(model)
    except ImportError as e:
        raise Yolo4Error(" ".join(str(e).split())) from None
    from ..fileio import atomic_path

    with atomic_path(target, ".onnx") as tmp:
        onnx.save(fp16_model, str(tmp))
    say(f"converted to FP16 (TensorRT builds it strongly typed): wrote {target}")
    return target


def _make_qdq_onnx(onnx_p: Path, out: Path, calib_data: str, calib_images: int, method: str,
                   exclude: Sequence[str], say: Log) -> Tuple[Path, Any, str]:
    """Explicit INT8: the Q/DQ ONNX made by :func:`yolo4.calib.int8.quantize_int8` (what ``yolo4 export
    --int8`` runs, with its defaults for everything the builder does not set), beside the engine;
    returns its path, the calibration set and its digest."""
    from ..calib.int8 import quantize_int8

    target = _sibling(out, "-int8.onnx")
    if target.resolve() == onnx_p.resolve():
        raise Yolo4Error(f"the Q/DQ ONNX would overwrite the input {onnx_p.name}: choose another --output", out)
    job = quantize_int8(onnx_p, target, calib_data, calib_images=calib_images, calib_method=method,
                        exclude=tuple(exclude), log=say)
    res = job.result
    summary = getattr(res, "summary", None)
    say("Q/DQ INT8 ONNX: wrote %s%s" % (res.path, " (%s)" % summary() if callable(summary) else ""))
    digest = getattr(res, "calib_digest", "") or job.calib_set.digest()
    return Path(os.fspath(res.path)), job.calib_set, str(digest)


def _implicit_calibrator(api: compat.TrtApi, facts: OnnxFacts, network: Any, config: Any, profile: Any,
                         calib_set: Any, calib_digest: str, method: str, calib_cache: Optional[PathLike], out: Path,
                         onnx_sha: str, shapes: Dict[str, List[int]], int8_exclude: Sequence[str],
                         say: Log) -> Tuple[Any, Path]:
    """TensorRT 8.5 - 10.x implicit INT8: calibrator + cache + calibration profile; the YOLO decode
    and ``--int8-exclude`` layers pinned to FP32."""
    from ..calib.cache import CalibrationCache, header_for
    from ..calib.calibrators import make_calibrator

    cache_path = Path(os.fspath(calib_cache)) if calib_cache is not None else out.with_name(out.name + ".calib")
    header = header_for(onnx_sha, calib_digest, method, api.version, input_shape=shapes["opt"])
    cache = CalibrationCache(cache_path, header, log=say)
    calibrator = make_calibrator(api.trt, method, calib_set, cache, log=say)
    compat.set_int8_calibrator(api, config, calibrator, profile)
    keep = _float_nodes(facts.path, int8_exclude)
    pinned = compat.keep_layers_float(api, network, keep)
    if pinned:
        compat.prefer_precision_constraints(api, config)
        say(f"implicit INT8: {pinned} layers kept in FP32 (first convolution, YOLO heads and decode, "
            "--int8-exclude)")
    return calibrator, cache_path


def _float_nodes(onnx_path: Path, patterns: Sequence[str]) -> List[str]:
    """ONNX nodes kept in float for INT8: the Q/DQ quantizer's defaults (first convolution, the
    convolutions feeding the YOLO heads, the decode; :func:`yolo4.calib.qdq.default_float_nodes`), so
    implicit and explicit INT8 quantize the same layers, plus ``--int8-exclude`` matches."""
    from ..calib.qdq import default_float_nodes, resolve_exclude

    onnx = import_onnx()
    model = onnx.load(str(onnx_path), load_external_data=False)
    names = list(default_float_nodes(model))
    for n in resolve_exclude(model, patterns, onnx_path):
        if n not in names:
            names.append(n)
    return names


def _describe_build(f: compat.TrtFeatures, plan: compat.PrecisionPlan, shapes: Dict[str, List[int]],
                    input_shape: List[int], targets: Sequence[str], dla_core: Optional[int], tf32: bool = True,
                    version_compatible: bool = False, hw_level: str = "none",
                    workspace_mib: Optional[int] = None) -> str:
    parts = [plan.precision.upper()]
    if plan.quantization != "none":
        parts.append(plan.quantization + " quantization")
    parts.append("strongly typed" if plan.strongly_typed or f.strongly_typed_only else "weakly typed")
    if any(d < 0 for d in input_shape):
        parts.append("batch %d/%d/%d (min/opt/max)" % (shapes["min"][0], shapes["opt"][0], shapes["max"][0]))
    else:
        parts.append("fixed batch %d" % shapes["opt"][0])
    if f.compute_capability_targets:
        parts.append("ahead of time for compute capability " + (", ".join(targets) if targets
                                                                 else "8.0+ (TensorRT for RTX's default)"))
    if dla_core is not None:
        parts.append("DLA core %d (GPU fallback)" % dla_core)
    if not tf32:
        parts.append("TF32 off")
    if version_compatible:
        parts.append("version-compatible (lean runtime embedded)")
    if hw_level != "none":
        parts.append("hardware-compatible: %s" % hw_level)
    if workspace_mib is not None:
        parts.append("workspace %d MiB" % workspace_mib)
    return "building %s engine: %s" % (f.name, ", ".join(parts))


def _summary(precision: str, quantization: str, layers: Dict[str, int], source: str, size: int,
             seconds: float, peak_mib: Optional[float] = None) -> str:
    lp = ", ".join("%s %d" % (k.upper(), v) for k, v in layers.items()) if layers else "not reported"
    q = "" if quantization == "none" else " (%s)" % quantization
    peak = ", peak host memory %.0f MiB" % peak_mib if peak_mib is not None else ""
    return "summary: %s%s engine, layers by precision: %s%s, %.1f MiB, built in %s%s" % (
        precision.upper(), q, lp, " (from the %s)" % source if source else "", size / (1 << 20), _fmt_time(seconds),
        peak)


def _catch_sigint(progress: _Progress) -> Optional[Callable[[], None]]:
    """During a build with a progress monitor, Ctrl-C asks TensorRT to stop (the monitor returns False
    at the next step) instead of waiting for the build to end; returns the restorer (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        progress.cancelled = True

    try:
        signal.signal(signal.SIGINT, handler)
    except (ValueError, OSError):  # pragma: no cover
        return None

    def restore() -> None:
        signal.signal(signal.SIGINT, previous)

    return restore
