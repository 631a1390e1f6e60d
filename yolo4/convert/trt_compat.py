"""The one TensorRT compatibility layer: every difference between TensorRT 8.5 ... 11.x and TensorRT
for RTX that the engine builder meets lives here, and nowhere else.

What differs (sources: TensorRT developer guides and migration guides of each release, the Python
API of 8.6.1 / 10.13 / 11.4 as ``../shared/tools/trt-stubs.sh`` extracts it, and TensorRT for RTX's
documentation):

================================  ==========  ==========  ==========  =================
                                  8.5 - 8.6   10.x        11.x        TensorRT for RTX
================================  ==========  ==========  ==========  =================
EXPLICIT_BATCH creation flag      required    ignored     removed     absent
STRONGLY_TYPED creation flag      absent      optional    always on   always on
BuilderFlag.FP16 / INT8           yes         deprecated  removed     absent
INT8 calibrators (implicit)       yes         deprecated  removed     absent
Q/DQ ONNX (explicit INT8)         + INT8 flag strongly    strongly    strongly
                                              typed       typed       typed
IProgressMonitor                  absent      yes         yes         yes
DLA (Jetson)                      yes         yes         no          no
plugin libraries                  yes         yes         yes         no (cannot load them)
set_compute_capability            absent      absent      absent      yes (ahead of time)
timing cache                      yes         yes         yes         no effect, needs a GPU
VERSION_COMPATIBLE flag           8.6 on      yes         yes         no (no lean runtime)
hardware_compatibility_level      8.6 on      yes         yes         ignored ("unsupported")
MemoryPoolType.TACTIC_DRAM        8.6 on      yes         yes         yes
BuilderFlag.TF32 (on by default)  yes         yes         yes         yes
precision constraints flags       yes         yes         removed     absent
================================  ==========  ==========  ==========  =================

"Strongly typed" (TensorRT 10 "Strongly Typed Networks"; TensorRT 11 migration guide "Migrating from
Weak Typing to Strong Typing"): every tensor runs in the type the ONNX gives it, so an FP16 engine
needs an FP16 ONNX (:mod:`yolo4.convert.fp16`) and an INT8 engine a Q/DQ ONNX
(:mod:`yolo4.calib.qdq`); the precision flags and calibrators are gone. :class:`TrtFeatures` is that
table as code (constructed from a version string, so the decisions are testable without TensorRT);
:func:`plan_precision` turns a request (``--fp16`` / ``--int8`` / ``--quantization``) and the ONNX's
own precision into what to build, or one line saying what to do instead.

The other functions wrap one builder call each, with the version branch inside. ``tensorrt`` /
``tensorrt_rtx`` are imported by :func:`load_tensorrt` only. For mypy each function sees the real
``tensorrt`` API of the release whose stubs are on MYPYPATH (``if TYPE_CHECKING: import tensorrt``);
a line that exists in only some releases carries a ``type: ignore[...]`` naming the releases
without it (tests/test_trt_mypy.py checks 8.6.1, 10.13 and 11.4).

Python 3.8, torch-free, onnx-free.
"""

import contextlib
import importlib
import importlib.util
import json
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from ..errors import ModelFileError, Yolo4Error
from ..fileio import atomic_write_bytes

__all__ = ["FLAVOURS", "MODULES", "MIN_TENSORRT", "INSTALL_HINT", "QUANTIZATION_MODES", "TrtFeatures",
           "TrtApi", "PrecisionPlan", "installed_flavours", "load_tensorrt", "check_precision_request",
           "plan_precision",
           "make_logger", "create_network", "parse_onnx", "apply_precision", "set_int8_calibrator",
           "keep_layers_float", "prefer_precision_constraints", "set_workspace", "check_build_options", "set_dla",
           "compute_capabilities", "set_compute_capabilities",
           "load_plugin_libraries", "set_tactic_dram", "set_tf32", "set_version_compatible", "HARDWARE_LEVELS",
           "hardware_level", "set_hardware_compatibility", "dla_layer_counts", "make_progress_monitor", "attach_progress_monitor", "load_timing_cache", "save_timing_cache",
           "set_detailed_profiling", "build_serialized", "inspect_engine", "summarize_layer_info",
           "BuildLogger"]

PathLike = Union[str, "os.PathLike[str]"]
Log = Callable[[str], Any]

#: flavour -> Python module
MODULES: Dict[str, str] = {"tensorrt": "tensorrt", "tensorrt-rtx": "tensorrt_rtx"}
#: flavours in the order ``--backend``'s default tries them
FLAVOURS: Tuple[str, ...] = ("tensorrt", "tensorrt-rtx")
#: the oldest TensorRT this builder supports (JetPack 5.1 on Xavier)
MIN_TENSORRT = (8, 5)
#: the one-line answer to "no TensorRT installed"
INSTALL_HINT = ("no TensorRT Python package is installed: pip install tensorrt (on a Jetson: JetPack's "
                "python3-libnvinfer), or pip install tensorrt-rtx for GeForce/RTX GPUs")
QUANTIZATION_MODES = ("implicit", "explicit", "auto")

# ------------------------------------------------------------------------------------------------
# what each release can do
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrtFeatures:
    """What one TensorRT release offers the builder (the table of the module docstring).

    Args:
        flavour: ``"tensorrt"`` or ``"tensorrt-rtx"``.
        version: the module's ``__version__``, e.g. ``"8.5.2.2"``, ``"10.13.3.9"``, ``"1.7.1.116"``.
    """

    flavour: str
    version: str

    @property
    def version_tuple(self) -> Tuple[int, ...]:
        out = []
        for part in str(self.version).split("."):
            m = re.match(r"\d+", part)
            if not m:
                break
            out.append(int(m.group()))
        return tuple(out) or (0,)

    @property
    def major(self) -> int:
        return self.version_tuple[0]

    @property
    def rtx(self) -> bool:
        return self.flavour == "tensorrt-rtx"

    @property
    def name(self) -> str:
        """``TensorRT 10.13.3`` / ``TensorRT for RTX 1.7.1`` (for messages)."""
        short = ".".join(str(v) for v in self.version_tuple[:3])
        return ("TensorRT for RTX %s" if self.rtx else "TensorRT %s") % short

    @property
    def supported(self) -> bool:
        """TensorRT >= 8.5 (any TensorRT for RTX)."""
        return self.rtx or self.version_tuple[:2] >= MIN_TENSORRT

    @property
    def strongly_typed_only(self) -> bool:
        """Every network is strongly typed: TensorRT 11+ and TensorRT for RTX."""
        return self.rtx or self.major >= 11

    @property
    def can_be_strongly_typed(self) -> bool:
        """A strongly typed network can be asked for (``STRONGLY_TYPED``): TensorRT 10+ and RTX."""
        return self.rtx or self.major >= 10

    @property
    def precision_flags(self) -> bool:
        """``BuilderFlag.FP16`` / ``INT8`` exist (weak typing): TensorRT 8.5 - 10.x."""
        return not self.strongly_typed_only

    @property
    def calibrators(self) -> bool:
        """INT8 calibrators (implicit quantization) exist: TensorRT 8.5 - 10.x (deprecated from 10.1)."""
        return not self.strongly_typed_only

    @property
    def explicit_batch_flag(self) -> bool:
        """``create_network`` needs ``EXPLICIT_BATCH`` (8.x; ignored in 10, removed in 11)."""
        return not self.rtx and self.major < 10

    @property
    def qdq_needs_int8_flag(self) -> bool:
        """A Q/DQ network builds only with ``BuilderFlag.INT8`` (weakly typed TensorRT 8.x)."""
        return not self.can_be_strongly_typed

    @property
    def progress_monitor(self) -> bool:
        """``IProgressMonitor`` / ``config.progress_monitor`` exist (TensorRT 10+, RTX)."""
        return self.rtx or self.major >= 10

    @property
    def dla(self) -> bool:
        """DLA can be targeted (TensorRT 8.5 - 10.x on Jetson; not 11.x, not RTX)."""
        return not self.rtx and self.major < 11

    @property
    def plugin_libraries(self) -> bool:
        """Custom plugin libraries can be loaded (not TensorRT for RTX)."""
        return not self.rtx

    @property
    def compute_capability_targets(self) -> bool:
        """Engines are built ahead of time for chosen compute capabilities (TensorRT for RTX only)."""
        return self.rtx

    @property
    def timing_cache(self) -> bool:
        """A timing cache helps the build. TensorRT for RTX: "no effect on the built engine" and it
        "forces the ahead-of-time compilation step to query your system for a GPU" (1.1 release notes)."""
        return not self.rtx

    @property
    def version_compatible(self) -> bool:
        """``BuilderFlag.VERSION_COMPATIBLE`` builds a plan later releases run (TensorRT >= 8.6).
        TensorRT for RTX has the flag but cannot build with it (it needs ``libnvinfer_lean``, which
        it does not ship; its engines run only on the release that built them)."""
        return not self.rtx and self.version_tuple[:2] >= (8, 6)

    @property
    def hardware_compatibility(self) -> bool:
        """``config.hardware_compatibility_level`` exists and is honoured (TensorRT >= 8.6; TensorRT
        for RTX logs "setHardwareCompatibilityLevel() is unsupported" and builds for its
        ``--compute-capability`` targets instead)."""
        return not self.rtx and self.version_tuple[:2] >= (8, 6)

    @property
    def tactic_dram_pool(self) -> bool:
        """``MemoryPoolType.TACTIC_DRAM`` exists (TensorRT >= 8.6, RTX)."""
        return self.rtx or self.version_tuple[:2] >= (8, 6)

    @property
    def default_quantization(self) -> str:
        """What ``--quantization auto`` means: ``implicit`` below 11, ``explicit`` on 11.x and RTX."""
        return "implicit" if self.calibrators else "explicit"

    def resolve_quantization(self, mode: str) -> str:
        """``implicit`` / ``explicit`` for ``mode`` (one of :data:`QUANTIZATION_MODES`).

        Raises:
            Yolo4Error: an unknown mode; ``implicit`` where calibrators do not exist.
        """
        m = str(mode).strip().lower()
        if m not in QUANTIZATION_MODES:
            raise Yolo4Error(f"--quantization must be one of {', '.join(QUANTIZATION_MODES)}, got {mode!r}")
        if m == "auto":
            return self.default_quantization
        if m == "implicit" and not self.calibrators:
            raise Yolo4Error(f"{self.name} has no INT8 calibrators (strongly typed: INT8 comes from a Q/DQ "
                             "ONNX): use --quantization explicit (or auto)")
        return m


class TrtApi:
    """A loaded TensorRT module and its :class:`TrtFeatures`.

    Attributes:
        trt: the ``tensorrt`` or ``tensorrt_rtx`` module.
        flavour: ``"tensorrt"`` or ``"tensorrt-rtx"``.
        features: :class:`TrtFeatures` of its version.
    """

    def __init__(self, module: Any, flavour: str, version: Optional[str] = None) -> None:
        self.trt = module
        self.flavour = flavour
        self.features = TrtFeatures(flavour, version or str(getattr(module, "__version__", "0")))

    @property
    def version(self) -> str:
        return self.features.version

    def __repr__(self) -> str:
        return "TrtApi(%s)" % self.features.name


def installed_flavours() -> List[str]:
    """The flavours whose module can be found (not imported), in :data:`FLAVOURS` order."""
    out = []
    for flavour in FLAVOURS:
        try:
            if importlib.util.find_spec(MODULES[flavour]) is not None:
                out.append(flavour)
        except (ImportError, ValueError):
            continue
    return out


def load_tensorrt(backend: Optional[str] = None, log: Optional[Log] = None) -> TrtApi:
    """Import TensorRT.

    Args:
        backend: ``"tensorrt"``, ``"tensorrt-rtx"`` (``"tensorrt_rtx"``, ``"rtx"`` also accepted), or
            None = the first installed of :data:`FLAVOURS` (``tensorrt`` first).
        log: receives a ``warning: ...`` line when ``tensorrt`` is installed but fails to import and
            ``tensorrt_rtx`` is used instead.

    Returns:
        :class:`TrtApi`.

    Raises:
        Yolo4Error: an unknown backend; the asked (or any) TensorRT is not installed or fails to import
            (one line saying what to install); a TensorRT older than 8.5.
    """
    if backend is None:
        candidates = list(FLAVOURS)
    else:
        b = str(backend).strip().lower().replace("_", "-")
        b = {"rtx": "tensorrt-rtx", "trt": "tensorrt"}.get(b, b)
        if b not in MODULES:
            raise Yolo4Error(f"--backend must be one of {', '.join(FLAVOURS)}, got {backend!r}")
        candidates = [b]
    errors = []
    for flavour in candidates:
        try:
            module = importlib.import_module(MODULES[flavour])
        except ImportError as e:
            if getattr(e, "name", None) != MODULES[flavour]:  # installed, but its libraries fail to load
                errors.append(f"import {MODULES[flavour]} failed: {' '.join(str(e).split())}")
            continue
        api = TrtApi(module, flavour)
        if errors and log is not None:
            log(f"warning: {errors[0]}; using {api.features.name}")
        if not api.features.supported:
            raise Yolo4Error(f"{api.features.name} is too old: the engine builder needs TensorRT >= "
                             f"{MIN_TENSORRT[0]}.{MIN_TENSORRT[1]} (JetPack 5.1 or later)")
        return api
    if errors:
        raise Yolo4Error(errors[0] + " (is the TensorRT / CUDA library path set up?)")
    if backend is not None and candidates == ["tensorrt"]:
        raise Yolo4Error("--backend tensorrt: the tensorrt Python package is not installed: pip install "
                         "tensorrt (on a Jetson: JetPack's python3-libnvinfer)")
    if backend is not None:
        raise Yolo4Error("--backend tensorrt-rtx: the tensorrt_rtx Python package is not installed: pip "
                         "install tensorrt-rtx (TensorRT for RTX, GeForce/RTX GPUs)")
    raise Yolo4Error(INSTALL_HINT)


# ------------------------------------------------------------------------------------------------
# precision: request + ONNX -> what to build
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PrecisionPlan:
    """How to build the asked precision with one TensorRT release.

    Attributes:
        precision: the engine's precision, ``fp32`` / ``fp16`` / ``int8``.
        quantization: ``none`` / ``implicit`` (calibrator) / ``explicit`` (Q/DQ).
        convert: None, ``"fp16"`` (make an FP16 ONNX first: :mod:`yolo4.convert.fp16`) or ``"qdq"``
            (make a Q/DQ ONNX first: :func:`yolo4.calib.int8.quantize_int8`).
        strongly_typed: build a strongly typed network.
        fp16_flag: set ``BuilderFlag.FP16`` (weak typing).
        int8_flag: set ``BuilderFlag.INT8`` (weak typing).
        note: one line for the user about a choice made for them, or "".
    """

    precision: str
    quantization: str
    convert: Optional[str]
    strongly_typed: bool
    fp16_flag: bool
    int8_flag: bool
    note: str = ""

    @property
    def calibrator(self) -> bool:
        """An INT8 calibrator feeds the build (implicit quantization)."""
        return self.quantization == "implicit"


_PERCENTILE = ("--calib-method percentile is only for --quantization explicit (TensorRT's calibrators are "
               "entropy and minmax)")


def check_precision_request(onnx_precision: str, fp16: bool = False, int8: bool = False,
                            quantization: str = "auto", calib_method: Optional[str] = None) -> str:
    """The checks of a precision request that hold on every release (run before TensorRT loads).

    Returns:
        ``quantization`` normalized (lower case).

    Raises:
        Yolo4Error: ``fp16`` and ``int8``; an unknown quantization; ``percentile`` with ``implicit``;
            a request the ONNX cannot meet (``--fp16`` of a Q/DQ ONNX, ``--int8`` of an FP16 ONNX,
            ``implicit`` of a Q/DQ ONNX).
    """
    if fp16 and int8:
        raise Yolo4Error("--fp16 and --int8 exclude each other (an INT8 engine keeps its unquantized "
                         "layers in float)")
    if onnx_precision not in ("fp32", "fp16", "int8"):
        raise Yolo4Error(f"unknown ONNX precision {onnx_precision!r}")
    q_mode = str(quantization).strip().lower()
    if q_mode not in QUANTIZATION_MODES:
        raise Yolo4Error(f"--quantization must be one of {', '.join(QUANTIZATION_MODES)}, got {quantization!r}")
    if onnx_precision == "int8":
        if fp16:
            raise Yolo4Error("the ONNX is a Q/DQ INT8 model: build it with --int8 (or no precision option); "
                             "--fp16 needs the FP32 or FP16 export")
        if q_mode == "implicit":
            raise Yolo4Error("the ONNX is already quantized (Q/DQ nodes, explicit quantization): drop "
                             "--quantization implicit")
    elif onnx_precision == "fp16" and int8:
        raise Yolo4Error("--int8 needs the FP32 export: the ONNX has FP16 weights (export without --fp16)")
    elif int8 and q_mode == "implicit" and (calib_method or "").strip().lower() == "percentile":
        raise Yolo4Error(_PERCENTILE)
    return q_mode


def plan_precision(features: TrtFeatures, onnx_precision: str, fp16: bool = False, int8: bool = False,
                   quantization: str = "auto", calib_method: Optional[str] = None) -> PrecisionPlan:
    """Decide how to build.

    Args:
        features: the TensorRT release (:class:`TrtFeatures`).
        onnx_precision: the ONNX's own precision, ``fp32`` / ``fp16`` / ``int8`` (Q/DQ nodes).
        fp16, int8: ``--fp16`` / ``--int8`` (neither = the ONNX's precision).
        quantization: ``--quantization``: ``implicit`` / ``explicit`` / ``auto``.
        calib_method: ``--calib-method`` when given (``percentile`` exists for explicit only).

    Returns:
        :class:`PrecisionPlan`.

    Raises:
        Yolo4Error: as :func:`check_precision_request`; a request this release cannot meet (one line
            saying what to do instead).
    """
    q_mode = check_precision_request(onnx_precision, fp16, int8, quantization, calib_method)
    strong = features.can_be_strongly_typed
    if onnx_precision == "int8":  # a Q/DQ ONNX: explicit quantization, whatever the release
        note = "" if int8 else "the ONNX is Q/DQ INT8: building an INT8 engine (explicit quantization)"
        return PrecisionPlan("int8", "explicit", None, strong, False, not strong, note)
    if onnx_precision == "fp16":
        note = "" if fp16 else "the ONNX is FP16: building an FP16 engine"
        return PrecisionPlan("fp16", "none", None, strong, not strong, False, note)
    # an FP32 ONNX
    if int8:
        q = features.resolve_quantization(q_mode)
        if q == "implicit":
            if (calib_method or "").strip().lower() == "percentile":  # auto -> implicit
                raise Yolo4Error(_PERCENTILE + f"; --quantization auto is implicit on {features.name}")
            # INT8 + FP16: layers without an INT8 kernel fall back to FP16 rather than FP32
            return PrecisionPlan("int8", "implicit", None, False, True, True)
        return PrecisionPlan("int8", "explicit", "qdq", strong, False, not strong)
    if fp16:
        if features.precision_flags:
            return PrecisionPlan("fp16", "none", None, False, True, False)
        return PrecisionPlan("fp16", "none", "fp16", True, False, False,
                             f"{features.name} is strongly typed: converting the FP32 ONNX to FP16 first")
    return PrecisionPlan("fp32", "none", None, features.strongly_typed_only, False, False)


# ------------------------------------------------------------------------------------------------
# logger, network, parser
# ------------------------------------------------------------------------------------------------

class BuildLogger:
    """What a TensorRT logger does for the builder, independent of TensorRT's class.

    Messages at WARNING and above (INFO too when ``verbose``) go to ``log`` as one line each
    (``warning: TensorRT: ...``, ``TensorRT error: ...``); the layer table TensorRT logs after a build
    (VERBOSE ``Layers:`` in TensorRT for RTX, ``Engine Layer Information:`` in 8.x/10.x with detailed
    profiling) is kept in :attr:`layer_info`, errors in :attr:`errors`. :meth:`muted` silences it, as
    does ``silenced()`` returning True (e.g. after Ctrl-C: TensorRT's "BuildCanceled" is no news).
    ``before_print()`` runs before a line is printed (to erase a progress line).
    """

    def __init__(self, log: Log, verbose: bool = False, before_print: Optional[Callable[[], None]] = None,
                 silenced: Optional[Callable[[], bool]] = None) -> None:
        self.out = log
        self.verbose = verbose
        self.before_print = before_print
        self.silenced = silenced
        self.errors: List[str] = []
        self.layer_info: Optional[str] = None
        self._mute = 0
        self._hold = 0

    @contextlib.contextmanager
    def muted(self) -> Iterator[None]:
        """Drop every message inside the block (a probe expected to fail)."""
        self._mute += 1
        try:
            yield
        finally:
            self._mute -= 1

    @contextlib.contextmanager
    def errors_held(self) -> Iterator[None]:
        """Record errors inside the block without printing them (unless verbose): the caller reports
        them in one line (the ONNX parser's errors)."""
        self._hold += 1
        try:
            yield
        finally:
            self._hold -= 1

    def handle(self, level: int, msg: str) -> None:
        """``level``: 0 internal error, 1 error, 2 warning, 3 info, 4 verbose (TensorRT's Severity)."""
        if self._mute or (self.silenced is not None and self.silenced()):
            return
        if level >= 4:
            if msg.startswith("Layers:") or msg.startswith("Engine Layer Information"):
                self.layer_info = msg
            return
        text = msg.strip()
        if level <= 1:
            self.errors.append(" ".join(text.split()))
            if self._hold and not self.verbose:
                return
        if level <= 2 or (level == 3 and self.verbose):
            if self.before_print is not None:
                self.before_print()
            prefix = {0: "TensorRT internal error: ", 1: "TensorRT error: ", 2: "warning: TensorRT: "}
            self.out(prefix.get(level, "TensorRT: ") + text)


def make_logger(api: TrtApi, log: Log, verbose: bool = False, before_print: Optional[Callable[[], None]] = None,
                silenced: Optional[Callable[[], bool]] = None) -> Any:
    """A ``trt.ILogger`` that forwards to a :class:`BuildLogger` (its ``.state``)."""
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = api.trt
    state = BuildLogger(log, verbose, before_print, silenced)

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.state = state

        def log(self, severity: Any, msg: str) -> None:
            try:
                self.state.handle(int(severity), msg)
            except Exception:  # pragma: no cover - never raise into TensorRT
                pass

    return _Logger()


def create_network(api: TrtApi, builder: Any, strongly_typed: bool) -> Any:
    """``builder.create_network`` with the creation flags this release needs.

    8.x: ``EXPLICIT_BATCH`` (implicit batch is 8.x's default); 10.x: ``STRONGLY_TYPED`` when asked;
    11.x and RTX: strongly typed whatever the flags (``STRONGLY_TYPED`` passed anyway, it exists).

    Raises:
        Yolo4Error: ``strongly_typed`` on a release without strong typing (8.x).
    """
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = api.trt
    f = api.features
    b: trt.Builder = builder
    flags = 0
    if f.explicit_batch_flag:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)  # type: ignore[attr-defined]  # absent in TensorRT 11
    if strongly_typed:
        if not f.can_be_strongly_typed:
            raise Yolo4Error(f"{f.name} cannot build strongly typed networks (TensorRT 10 or later can)")
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)  # type: ignore[attr-defined]  # absent in TensorRT 8.x
    return b.create_network(flags)


def parse_onnx(api: TrtApi, network: Any, logger: Any, path: PathLike) -> Any:
    """Parse ``path`` into ``network`` (external data resolved beside it); returns the parser (keep
    it alive while the network is used).

    Raises:
        ModelFileError: the parser's first error, one line naming the file (node, operator, reason).
    """
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = api.trt
    parser = trt.OnnxParser(network, logger)
    state = getattr(logger, "state", None)
    ctx = state.errors_held() if isinstance(state, BuildLogger) else contextlib.nullcontext()
    with ctx:
        ok = parser.parse_from_file(os.fspath(path))
    if ok:
        return parser
    if parser.num_errors == 0:
        raise ModelFileError("TensorRT's ONNX parser failed without saying why", path)
    err = parser.get_error(0)
    where = ""
    try:  # node_name / node_operator: TensorRT 10+
        name, op = err.node_name(), err.node_operator()
        if name or op:
            where = " at node %s (%s)" % (name or "#%d" % err.node(), op or "?")
    except AttributeError:
        if err.node() >= 0:
            where = " at node #%d" % err.node()
    more = parser.num_errors - 1
    raise ModelFileError("TensorRT cannot parse the ONNX%s: %s%s" % (
        where, " ".join(str(err.desc()).split()), " (+%d more)" % more if more > 0 else ""), path)


# ------------------------------------------------------------------------------------------------
# builder configuration
# ------------------------------------------------------------------------------------------------

def apply_precision(api: TrtApi, builder: Any, config: Any, plan: PrecisionPlan) -> None:
    """Set the precision flags of ``plan`` (none on strongly typed networks).

    Raises:
        Yolo4Error: the plan asks for a flag this release lacks.
    """
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = api.trt
    c: trt.IBuilderConfig = config
    if not (plan.fp16_flag or plan.int8_flag):
        return
    if not api.features.precision_flags:
        raise Yolo4Error(f"{api.features.name} has no FP16/INT8 builder flags (strongly typed)")
    if plan.int8_flag:
        c.set_flag(trt.BuilderFlag.INT8)  # type: ignore[attr-defined]  # absent in TensorRT 11
    if plan.fp16_flag:
        c.set_flag(trt.BuilderFlag.FP16)  # type: ignore[attr-defined]  # absent in TensorRT 11


def set_int8_calibrator(api: TrtApi, config: Any, calibrator: Any, profile: Any) -> None:
    """Attach an implicit-INT8 calibrator and its calibration profile (dynamic shapes: TensorRT
    calibrates at the profile's kOPT shape).

    Raises:
        Yolo4Error: a release without calibrators (11.x, RTX); TensorRT refuses the calibration
            profile (``set_calibration_profile`` returns False).
    """
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = api.trt
    c: trt.IBuilderConfig = config
    if not api.features.calibrators:
        raise Yolo4Error(f"{api.features.name} has no INT8 calibrators: use --quantization explicit")
    c.int8_calibrator = calibrator  # type: ignore[attr-defined]  # absent in TensorRT 11
    if profile is not None:
        ok = c.set_calibration_profile(profile)  # type: ignore[attr-defined]  # absent in TensorRT 11
        if ok is False:  # "True if the calibration profile was set correctly" (NvInfer.h)
            raise Yolo4Error("TensorRT refused the INT8 calibration profile (see its message above): the "
                             "calibration batch is the profile's OPT; check --batch MIN,OPT,MAX, or use "
                             "--quantization explicit")


def keep_layers_float(api: TrtApi, network: Any, names: Sequence[str]) -> int:
    """Implicit INT8: run the layers whose name is in ``names`` (ONNX node names; TensorRT's ONNX
    parser names layers after them) in FP32, as a preference (``PREFER_PRECISION_CONSTRAINTS``, set by
    the caller through :func:`prefer_precision_constraints`). Returns the number of layers pinned."""
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = api.trt
    net: trt.INetworkDefinition = network
    wanted = set(names)
    count = 0
    for i in range(net.num_layers):
        layer = net.get_layer(i)
        if layer.name not in wanted:
            continue
        floats = [k for k in range(layer.num_outputs) if layer.get_output(k).dtype in (trt.float32, trt.float16)]
        if not floats or layer.type in (trt.LayerType.SHAPE, trt.LayerType.CONSTANT):
            continue  # shape arithmetic and constants have no precision to pin
        layer.precision = trt.float32  # type: ignore[attr-defined]  # absent in TensorRT 11 (strongly typed)
        for k in floats:
            layer.set_output_type(k, trt.float32)  # type: ignore[attr-defined]  # absent in TensorRT 11
        count += 1
    return count


def prefer_precision_constraints(api: TrtApi, config: Any) -> None:
    """``BuilderFlag.PREFER_PRECISION_CONSTRAINTS`` (weak typing only: 8.x - 10.x)."""
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = api.trt
    c: trt.IBuilderConfig = config
    if api.features.precision_flags:
        c.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)  # type: ignore[attr-defined]  # absent in TensorRT 11


def set_workspace(api: TrtApi, config: Any, mib: int) -> None:
    """Limit the builder's workspace memory pool to ``mib`` MiB (``set_memory_pool_limit``)."""
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = api.trt
    c: trt.IBuilderConfig = config
    c.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(mib) << 20)


def set_tactic_dram(api: TrtApi, config: Any, nbytes: int) -> bool:
    """Limit ``MemoryPoolType.TACTIC_DRAM`` to ``nbytes`` (TensorRT >= 8.6, RTX; returns False where the
    pool does not exist). On a Jetson (host and device memory unified) this pool "includes all host
    memory required by TensorRT to build the network" and defaults to 75% of the memory (NvInfer.h)."""
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = api.trt
    c: trt.IBuilderConfig = config
    if not api.features.tactic_dram_pool:
        return False
    c.set_memory_pool_limit(trt.MemoryPoolType.TACTIC_DRAM, int(nbytes))
    return True


def set_tf32(api: TrtApi, config: Any, enabled: bool) -> None:
    """TF32 for FP32 layers on Ampere and later: TensorRT sets ``BuilderFlag.TF32`` by default (FP32
    convolutions then round their inputs to 10 mantissa bits); ``enabled=False`` clears it, so FP32
    means FP32 (every release, RTX included)."""
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = api.trt
    c: trt.IBuilderConfig = config
    if enabled:
        c.set_flag(trt.BuilderFlag.TF32)
    else:
        c.clear_flag(trt.BuilderFlag.TF32)


def set_version_compatible(api: TrtApi, config: Any) -> None:
    """``BuilderFlag.VERSION_COMPATIBLE`` (TensorRT >= 8.6): the plan runs on this release and later
    ones. The lean runtime is embedded in the plan (``EXCLUDE_LEAN_RUNTIME`` is not set): the plan is
    larger, and the runtime that deserializes it must allow host code
    (``runtime.engine_host_code_allowed = True``).

    Raises:
        Yolo4Error: a release without it (8.5, TensorRT for RTX).
    """
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = api.trt
    c: trt.IBuilderConfig = config
    check_build_options(api, version_compatible=True)
    c.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)


#: ``--hardware-compatibility-level`` values -> ``HardwareCompatibilityLevel`` member names
HARDWARE_LEVELS: Dict[str, str] = {"none": "NONE", "ampere+": "AMPERE_PLUS",
                                   "same-compute-capability": "SAME_COMPUTE_CAPABILITY"}


def hardware_level(value: Optional[str]) -> str:
    """``--hardware-compatibility-level`` normalized to a key of :data:`HARDWARE_LEVELS` (None ->
    ``none``; ``AMPERE_PLUS``, ``ampere_plus``, ``same_compute_capability``, ``same-cc`` accepted).

    Raises:
        Yolo4Error: anything else (the valid values listed).
    """
    if value is None:
        return "none"
    v = str(value).strip().lower().replace("_", "-")
    v = {"ampere-plus": "ampere+", "same-cc": "same-compute-capability"}.get(v, v)
    if v not in HARDWARE_LEVELS:
        raise Yolo4Error(f"--hardware-compatibility-level must be one of {', '.join(HARDWARE_LEVELS)}, got {value!r}")
    return v


def set_hardware_compatibility(api: TrtApi, config: Any, level: str) -> None:
    """``config.hardware_compatibility_level`` (TensorRT >= 8.6): ``ampere+`` = the plan runs on every
    Ampere or later GPU (fewer tactics: shared memory capped at 48 KiB, no cuDNN/cuBLAS tactics);
    ``same-compute-capability`` = on every GPU of this compute capability (later 10.x releases).

    Raises:
        Yolo4Error: an unknown level; a release without the setting or without that level.
    """
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = api.trt
    c: trt.IBuilderConfig = config
    key = hardware_level(level)
    if key == "none":
        return
    check_build_options(api, hardware_compatibility=key)
    member = getattr(trt.HardwareCompatibilityLevel, HARDWARE_LEVELS[key], None)
    if member is None:
        raise Yolo4Error(f"--hardware-compatibility-level {key}: {api.features.name} does not have it "
                         f"(its levels: {', '.join(k for k, v in HARDWARE_LEVELS.items() if hasattr(trt.HardwareCompatibilityLevel, v))})")
    c.hardware_compatibility_level = member


def dla_layer_counts(api: TrtApi, network: Any, config: Any) -> Tuple[int, int]:
    """``(layers DLA can run, layers left to the GPU)`` of the network, by
    ``config.can_run_on_DLA(layer)`` after :func:`set_dla` (8.5 - 10.x). These are network layers
    before fusion; TensorRT may still move a DLA-capable layer to the GPU (e.g. beyond the DLA's
    limit of loadables per core)."""
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = api.trt
    c: trt.IBuilderConfig = config
    net: trt.INetworkDefinition = network
    dla = gpu = 0
    for i in range(net.num_layers):
        if c.can_run_on_DLA(net.get_layer(i)):
            dla += 1
        else:
            gpu += 1
    return dla, gpu


DLA_PRECISION = "DLA runs FP16 and INT8 only: add --fp16 or --int8 to use --dla-core"


def check_build_options(api: TrtApi, compute_capability: Sequence[str] = (), dla_core: Optional[int] = None,
                        plugin_libs: Sequence[PathLike] = (), version_compatible: bool = False,
                        hardware_compatibility: str = "none") -> List[str]:
    """Refuse the options this release cannot honour, before anything slow.

    Returns:
        The ``compute_capability`` targets as ``"major.minor"`` (TensorRT for RTX), order kept,
        duplicates dropped; ``[]`` when none were given.

    Raises:
        Yolo4Error: ``--compute-capability`` off TensorRT for RTX or an unknown value (the valid ones
            listed); ``--dla-core`` where there is no DLA (RTX, TensorRT 11); ``--plugin-lib`` on
            TensorRT for RTX; ``--version-compatible`` / ``--hardware-compatibility-level`` below 8.6
            or on TensorRT for RTX, or with ``--dla-core`` (hardware compatibility: discrete GPUs).
    """
    from ..engine_meta import parse_compute_capability

    f = api.features
    names: List[str] = []
    if compute_capability:
        if not f.compute_capability_targets:
            raise Yolo4Error(f"--compute-capability is for --backend tensorrt-rtx (ahead-of-time builds); "
                             f"{f.name} builds for the GPU it runs on")
        valid = compute_capabilities(api)
        for t in compute_capability:
            try:
                key = "%d.%d" % parse_compute_capability(t)
            except ValueError:
                key = str(t)
            if key not in valid:
                raise Yolo4Error(f"--compute-capability {t}: {f.name} builds for {', '.join(valid)}")
            if key not in names:
                names.append(key)
    if dla_core is not None and not f.dla:
        raise Yolo4Error(f"--dla-core needs a Jetson (Xavier/Orin) with TensorRT 8.5 - 10.x; {f.name} has no "
                         "DLA support")
    if plugin_libs and not f.plugin_libraries:
        raise Yolo4Error("TensorRT for RTX cannot load plugin libraries: drop --plugin-lib, or build with "
                         "--backend tensorrt")
    if version_compatible and not f.version_compatible:
        if f.rtx:
            raise Yolo4Error(f"--version-compatible: {f.name} engines run only on the TensorRT for RTX release "
                             "that built them (its builder has no lean runtime to embed); rebuild the engine "
                             "after upgrading TensorRT for RTX")
        raise Yolo4Error(f"--version-compatible needs TensorRT 8.6 or later; {f.name} builds engines that run "
                         "on this release only (rebuild the engine on each TensorRT)")
    hw = hardware_level(hardware_compatibility)
    if hw != "none":
        if not f.hardware_compatibility:
            if f.rtx:
                raise Yolo4Error(f"--hardware-compatibility-level: {f.name} ignores it; its engines are built "
                                 "ahead of time for --compute-capability targets (default: 8.0 and later, "
                                 "i.e. Ampere+ already)")
            raise Yolo4Error(f"--hardware-compatibility-level needs TensorRT 8.6 or later; {f.name} builds "
                             "for the GPU architecture it runs on")
        if dla_core is not None:
            raise Yolo4Error("--hardware-compatibility-level is for Ampere and later discrete GPUs, not "
                             "Jetson DLA (TensorRT supports it neither on JetPack nor with --dla-core)")
    return names


def set_dla(api: TrtApi, builder: Any, config: Any, core: int, precision: str) -> None:
    """Run the engine on DLA core ``core``, layers DLA cannot run falling back to the GPU.

    Raises:
        Yolo4Error: a release or device without DLA, a core out of range, or FP32 (DLA runs FP16 and
            INT8 only).
    """
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = api.trt
    b: trt.Builder = builder
    c: trt.IBuilderConfig = config
    check_build_options(api, dla_core=core)
    n = int(b.num_DLA_cores)
    if n == 0:
        raise Yolo4Error("--dla-core needs a Jetson (Xavier/Orin) with DLA cores; this device has none")
    if not 0 <= core < n:
        raise Yolo4Error(f"--dla-core must be 0..{n - 1} on this device, got {core}")
    if precision == "fp32":
        raise Yolo4Error(DLA_PRECISION)
    c.default_device_type = trt.DeviceType.DLA
    c.DLA_core = int(core)
    c.set_flag(trt.BuilderFlag.GPU_FALLBACK)


def compute_capabilities(api: TrtApi) -> Dict[str, Any]:
    """TensorRT for RTX: ``{"8.6": ComputeCapability.SM86, ...}`` (every named target of this
    release); ``{}`` elsewhere."""
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = api.trt
    if not api.features.compute_capability_targets:
        return {}
    enum = trt.ComputeCapability  # type: ignore[attr-defined]  # TensorRT for RTX only
    out = {}
    for name, value in enum.__members__.items():
        m = re.match(r"^SM(\d+)(\d)$", name)
        if m:
            out["%d.%d" % (int(m.group(1)), int(m.group(2)))] = value
    return dict(sorted(out.items(), key=lambda kv: tuple(int(p) for p in kv[0].split("."))))


def set_compute_capabilities(api: TrtApi, config: Any, targets: Sequence[str]) -> List[str]:
    """TensorRT for RTX: build ahead of time for ``targets`` (``["8.6"]``; ``sm86``/``86`` accepted).

    Returns:
        The targets as ``"major.minor"`` (:func:`check_build_options`).

    Raises:
        Yolo4Error: not TensorRT for RTX; an unknown value (the valid ones listed).
    """
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = api.trt
    c: trt.IBuilderConfig = config
    names = check_build_options(api, compute_capability=targets)
    valid = compute_capabilities(api)
    c.num_compute_capabilities = len(names)  # type: ignore[attr-defined]  # TensorRT for RTX only
    for i, key in enumerate(names):
        c.set_compute_capability(valid[key], i)  # type: ignore[attr-defined]  # TensorRT for RTX only
    return names


def load_plugin_libraries(api: TrtApi, logger: Any, paths: Sequence[PathLike]) -> List[str]:
    """Register plugin creators before the ONNX parser is made: the libraries in ``paths`` (e.g. the
    DIoU-NMS plugin) and, always, TensorRT's own plugins (``init_libnvinfer_plugins(logger, "")``:
    ``EfficientNMS_TRT`` of ``yolo4 export --nms efficient``). Returns the libraries' absolute paths.

    The 8.5 ONNX parser registered TensorRT's own plugins itself (onnx-tensorrt ``ModelImporter.cpp``
    of 8.5-GA); the 10.x parser does not, so without the call a plugin node fails to parse ("Plugin
    not found"). Libraries load through :func:`yolo4.plugins.load_plugin_library`
    (``ctypes.CDLL(..., RTLD_GLOBAL)``: their static ``REGISTER_TENSORRT_PLUGIN`` initializers
    register the creators on every release from 8.5 on; ``IPluginRegistry.load_library`` arrived
    with 8.6 and wants a ``getPluginCreators`` entry point).

    Raises:
        Yolo4Error: TensorRT for RTX given libraries (it cannot load them); a missing or unloadable
            library.
    """
    from ..plugins import load_plugin_library

    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = api.trt
    loaded = []
    if paths:
        check_build_options(api, plugin_libs=paths)
    for p in paths:
        path = os.path.abspath(os.fspath(p))
        if not os.path.isfile(path):
            raise Yolo4Error("plugin library not found", path)
        load_plugin_library(path)  # one-line Yolo4Error when it cannot be loaded
        loaded.append(path)
    trt.init_libnvinfer_plugins(logger, "")
    return loaded


def make_progress_monitor(api: TrtApi, on_phase: Callable[[str, int, int], None],
                          cancelled: Callable[[], bool]) -> Optional[Any]:
    """An ``IProgressMonitor`` (TensorRT 10+, RTX) that reports ``on_phase(phase, step, steps)``
    and stops the build when ``cancelled()`` (``step_complete`` returns False); None on 8.x."""
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = api.trt
    if not api.features.progress_monitor:
        return None

    class _Monitor(trt.IProgressMonitor):  # type: ignore[name-defined]  # absent in TensorRT 8.x
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)  # type: ignore[attr-defined]  # absent in TensorRT 8.x
            self.steps: Dict[str, int] = {}

        # Any: the stubs say int (10.x) or SupportsInt (11.x)
        def phase_start(self, phase_name: str, parent_phase: Optional[str], num_steps: Any) -> None:
            try:
                self.steps[phase_name] = int(num_steps)
                on_phase(phase_name, 0, int(num_steps))
            except Exception:  # pragma: no cover - never raise into TensorRT
                pass

        def step_complete(self, phase_name: str, step: Any) -> bool:
            try:
                on_phase(phase_name, int(step) + 1, self.steps.get(phase_name, 0))
                return not cancelled()
            except Exception:  # pragma: no cover
                return True

        def phase_finish(self, phase_name: str) -> None:
            self.steps.pop(phase_name, None)

    return _Monitor()


def attach_progress_monitor(api: TrtApi, config: Any, monitor: Any) -> None:
    """``config.progress_monitor = monitor`` (TensorRT 10+, RTX; nothing on 8.x or for None)."""
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = api.trt
    c: trt.IBuilderConfig = config
    if monitor is not None and api.features.progress_monitor:
        c.progress_monitor = monitor  # type: ignore[attr-defined]  # absent in TensorRT 8.x


def load_timing_cache(api: TrtApi, config: Any, path: PathLike, log: Log) -> bool:
    """Use the timing cache at ``path`` (a fresh one when the file is absent, unreadable or from
    another TensorRT/GPU, with a line saying so). Returns True when a cache is in use.

    TensorRT for RTX: nothing (see :attr:`TrtFeatures.timing_cache`); a warning line says so.
    """
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = api.trt
    c: trt.IBuilderConfig = config
    if not api.features.timing_cache:
        log(f"warning: --timing-cache is ignored: it has no effect on {api.features.name} engines and would "
            "make the ahead-of-time build need a GPU")
        return False
    data = b""
    p = os.fspath(path)
    if os.path.isfile(p):
        try:
            with open(p, "rb") as fh:
                data = fh.read()
        except OSError as e:
            log(f"warning: cannot read the timing cache {p} ({e.strerror or e}): starting a new one")
    cache = c.create_timing_cache(data) if data else None
    if data and cache is None:
        log(f"warning: the timing cache {p} is not a TensorRT timing cache: starting a new one")
    if cache is None:
        cache = c.create_timing_cache(b"")
    if not c.set_timing_cache(cache, False):
        log(f"warning: the timing cache {p} is from another TensorRT or GPU: starting a new one")
        c.set_timing_cache(c.create_timing_cache(b""), False)
    elif data:
        log(f"timing cache: {p}")
    return True


def save_timing_cache(api: TrtApi, config: Any, path: PathLike) -> None:
    """Write the config's timing cache to ``path`` atomically.

    Raises:
        Yolo4Error: the file cannot be written.
    """
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = api.trt
    c: trt.IBuilderConfig = config
    cache = c.get_timing_cache()
    if cache is None:
        return
    host: Any = cache.serialize()  # IHostMemory has the buffer protocol (not in the stubs)
    try:
        atomic_write_bytes(path, bytes(memoryview(host)))
    except OSError as e:
        raise Yolo4Error(f"cannot write the timing cache ({e.strerror or e})", path) from None


def set_detailed_profiling(api: TrtApi, config: Any) -> None:
    """``ProfilingVerbosity.DETAILED``: the engine keeps per-layer information (names, types,
    precisions) for the engine inspector and the build log's layer table."""
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = api.trt
    c: trt.IBuilderConfig = config
    c.profiling_verbosity = trt.ProfilingVerbosity.DETAILED


def build_serialized(api: TrtApi, builder: Any, network: Any, config: Any) -> Optional[bytes]:
    """``build_serialized_network`` -> the plan's bytes, or None when TensorRT failed (its log says why)."""
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = api.trt
    b: trt.Builder = builder
    plan: Any = b.build_serialized_network(network, config)  # IHostMemory: a buffer (not in the stubs)
    if plan is None:
        return None
    data = bytes(memoryview(plan))
    return data or None


def inspect_engine(api: TrtApi, logger: Any, plan: bytes) -> Optional[str]:
    """The engine inspector's JSON layer table of ``plan``, or None when it cannot be had.

    The inspector needs a deserialized engine, i.e. a GPU. TensorRT for RTX is not asked: it builds
    on CPU-only machines, and deserializing there fails ("CUDA driver version is insufficient");
    its build log carries the same table (:attr:`BuildLogger.layer_info`). Failures are silent
    (the logger is muted) and give None.
    """
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = api.trt
    if api.features.rtx:
        return None
    state = getattr(logger, "state", None)
    ctx = state.muted() if isinstance(state, BuildLogger) else contextlib.nullcontext()
    try:
        with ctx:
            runtime = trt.Runtime(logger)
            engine = runtime.deserialize_cuda_engine(plan)
            if engine is None:
                return None
            inspector = engine.create_engine_inspector()
            text = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
            del inspector, engine, runtime
            return text
    except Exception:  # no GPU, out of memory, ...: the log's table is the fallback
        return None


# ------------------------------------------------------------------------------------------------
# layer precisions from TensorRT's layer table (inspector JSON, or the build log of any release)
# ------------------------------------------------------------------------------------------------

_DTYPE_RES = (  # narrowest first; the first that matches names the precision
    ("int8", re.compile(r"int8", re.I)),
    ("fp8", re.compile(r"fp8|float8", re.I)),
    ("bf16", re.compile(r"bf16|bfloat16", re.I)),
    ("fp16", re.compile(r"fp16|half", re.I)),
    ("fp32", re.compile(r"fp32|float", re.I)),
)
_ORDER = [name for name, _ in _DTYPE_RES]
_NOT_COMPUTE = re.compile(r"uint8|int32|int64|bool", re.I)
_RTX_DTYPE = re.compile(r"Datatype: ([A-Za-z0-9]+)")
_LOG_DTYPE = re.compile(r"\[([A-Za-z0-9]+)\(")  # 8.x/10.x log: name[Float(1,3,416,416)]


def _precision_of(dtypes: Sequence[str]) -> Optional[str]:
    """The narrowest floating/quantized precision among ``dtypes``; None when there is none (shape,
    index and image tensors: Int32, Int64, Bool, UInt8)."""
    found = []
    for text in dtypes:
        if _NOT_COMPUTE.search(text):
            continue
        for name, rx in _DTYPE_RES:
            if rx.search(text):
                found.append(name)
                break
    return min(found, key=_ORDER.index) if found else None


def _layers_rtx(text: str) -> List[List[str]]:
    out = []
    for line in text.splitlines():
        if not line.startswith("Name:"):
            continue
        m = re.search(r"Inputs: \[(.*?)\], (Constants|Outputs): \[", line)
        out.append(_RTX_DTYPE.findall(m.group(1)) if m else [])
    return out


def _layers_log(text: str) -> List[List[str]]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("Layer("):
            continue
        m = re.search(r"Tactic: [^,]*,(.*) -> ", line)
        out.append(_LOG_DTYPE.findall(m.group(1)) if m else [])
    return out


def _layers_json(text: str) -> List[List[str]]:
    data = json.loads(text)
    layers = data.get("Layers", []) if isinstance(data, dict) else []
    out = []
    for layer in layers:
        if not isinstance(layer, dict):  # LAYER_NAMES_ONLY: just names
            continue
        dts = []
        for t in layer.get("Inputs", []) or []:
            if isinstance(t, dict):
                dts.append(str(t.get("Format/Datatype", t.get("Datatype", ""))))
        out.append(dts)
    return out


def summarize_layer_info(text: Optional[str]) -> Dict[str, int]:
    """``{precision: number of layers}`` from TensorRT's layer table: the engine inspector's JSON
    (:func:`inspect_engine`), TensorRT for RTX's build log (``Layers:`` / ``Datatype: Int8``) or the
    8.x/10.x build log (``Engine Layer Information:`` / ``name[Half(...)]``).

    A layer counts in the precision of the narrowest tensor it reads (its inputs: an INT8
    convolution reads Int8 activations); layers that read nothing typed (constants, shape calls,
    events) are not counted. ``{}`` when ``text`` is None or has no layer table.
    """
    if not text:
        return {}
    stripped = text.lstrip()
    try:
        if stripped.startswith("{"):
            layers = _layers_json(stripped)
        elif stripped.startswith("Layers:"):
            layers = _layers_rtx(stripped)
        else:
            layers = _layers_log(stripped)
    except (ValueError, AttributeError, TypeError):
        return {}
    counts: Dict[str, int] = {}
    for dts in layers:
        p = _precision_of(dts)
        if p is not None:
            counts[p] = counts.get(p, 0) + 1
    return {k: counts[k] for k in _ORDER if k in counts}
