"""The metadata sidecar of a TensorRT engine (``model.engine`` -> ``model.engine.json``): what the
runtime needs besides the plan, and what decides whether the plan may run here.

A TensorRT engine (a "plan") is tied to the TensorRT release that built it and to the GPU it was
built for: "By default, TensorRT engines are compatible only with the version of TensorRT used to
build them" and an engine is optimized for one compute capability (TensorRT developer guide,
"Version Compatibility" / "Hardware Compatibility"), unless it was built version-compatible
(``BuilderFlag.VERSION_COMPATIBLE``, TensorRT >= 8.6: it runs on that release and later ones, "engines
built with TensorRT 8 work with TensorRT 9 and TensorRT 10 runtimes"; the runtime must then allow host
code, the embedded lean runtime) or hardware-compatible (``HardwareCompatibilityLevel.AMPERE_PLUS``,
>= 8.6: any Ampere or later GPU, not JetPack; ``SAME_COMPUTE_CAPABILITY``: any GPU of the same compute
capability). TensorRT for RTX engines are built ahead of
time for a set of compute capabilities ("CPU-Only AOT and TensorRT-RTX Engines", by default Ampere
and later: 8.0, 8.6, 8.9, 12.0) and "are not compatible between different releases of TensorRT-RTX"
(TensorRT-RTX "Engine Compatibility"). Deserializing a mismatched plan fails deep inside TensorRT
with a cryptic message (e.g. "Serialization assertion ... magic tag does not match"), so
:func:`check_engine_compat` says in one line what differs and what to do before TensorRT is asked.

File format: UTF-8 JSON object, one per engine, written atomically beside it; keys are the fields of
:class:`EngineMeta` (``format_version`` 1). The model facts are the ONNX ``metadata_props`` of the
ONNX the engine was built from (:meth:`yolo4.model_info.ModelInfo.to_metadata`), unchanged.

A ground-floor contract: the engine builder writes it, the runtime reads it. Python 3.8, imports
neither torch, onnx nor TensorRT. :func:`cuda_device` asks the CUDA driver (``libcuda``, through
ctypes) for the GPU's name and compute capability, so the check needs no pycuda either.
"""

import ctypes
import ctypes.util
import json
import os
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .errors import ModelFileError, Yolo4Warning
from .fileio import atomic_write_text
from .model_info import ModelInfo

__all__ = ["EngineMeta", "CudaDevice", "ENGINE_META_VERSION", "PRECISIONS", "QUANTIZATIONS", "FLAVOURS",
           "AHEAD_OF_TIME", "RTX_DEFAULT_MIN_CC", "HARDWARE_COMPATIBILITY", "AMPERE_MIN_CC", "engine_meta_path",
           "write_engine_meta", "read_engine_meta", "check_engine_compat", "rebuild_command", "cuda_device",
           "flavour_name", "parse_compute_capability"]

PathLike = Union[str, "os.PathLike[str]"]

#: ``format_version`` written by this release; a sidecar with a higher one is refused.
ENGINE_META_VERSION = 1
#: engine precisions (the narrowest precision its layers were allowed)
PRECISIONS = ("fp32", "fp16", "int8")
#: ``none`` (FP32/FP16), ``implicit`` (TensorRT calibrator scales), ``explicit`` (Q/DQ nodes in the ONNX)
QUANTIZATIONS = ("none", "implicit", "explicit")
#: TensorRT flavours: NVIDIA TensorRT (``tensorrt`` module) and TensorRT for RTX (``tensorrt_rtx``)
FLAVOURS = ("tensorrt", "tensorrt-rtx")
#: ``gpu_name`` / ``compute_capability`` of an engine built ahead of time (TensorRT for RTX)
AHEAD_OF_TIME = "ahead-of-time"
#: the oldest compute capability TensorRT for RTX targets by default (Ampere; Turing 7.5 only on request)
RTX_DEFAULT_MIN_CC = (8, 0)
#: ``hardware_compatibility`` values (``yolo4 build-engine --hardware-compatibility-level``)
HARDWARE_COMPATIBILITY = ("none", "ampere+", "same-compute-capability")
#: the oldest compute capability an ``ampere+`` engine runs on
AMPERE_MIN_CC = (8, 0)
#: the first release that builds (and runs) version-compatible engines
VERSION_COMPATIBLE_MIN = (8, 6)

_REQUIRED = ("model", "input_name", "input_shape", "profile", "precision", "quantization", "trt_flavour",
             "trt_version", "compute_capability")


@dataclass
class EngineMeta:
    """What an engine file carries beside the plan (the sidecar ``<engine>.json``).

    Attributes:
        model: yolo4 model facts, ``{key: str}`` as :meth:`ModelInfo.to_metadata` (the source ONNX's
            ``metadata_props``); :meth:`model_info` parses them.
        input_name: the engine's input tensor (``images``).
        input_shape: its shape as built, ``[B, 3, H, W]``; -1 marks the dynamic batch dimension.
        profile: the optimization profile, ``{"min": [...], "opt": [...], "max": [...]}`` (full input
            shapes; all three equal for a fixed-batch engine).
        output_names: the engine's output tensors (``boxes``, ``scores``).
        precision: ``fp32`` / ``fp16`` / ``int8`` (:data:`PRECISIONS`).
        quantization: ``none`` / ``implicit`` / ``explicit`` (:data:`QUANTIZATIONS`).
        trt_flavour: ``tensorrt`` or ``tensorrt-rtx`` (:data:`FLAVOURS`).
        trt_version: the builder's ``__version__`` (e.g. ``10.3.0.30``, ``1.7.1.116``).
        gpu_name: the GPU the engine was built on, or :data:`AHEAD_OF_TIME` (TensorRT for RTX).
        compute_capability: the GPU's compute capability (``"8.6"``), or :data:`AHEAD_OF_TIME`.
        target_compute_capabilities: TensorRT for RTX: the compute capabilities the engine was built
            for (``["8.6"]``); empty = TensorRT for RTX's defaults (8.0 and later).
        onnx_sha256: sha256 hex of the ONNX file given to the builder.
        onnx_path: that file, absolute, as it was at build time.
        built_onnx: the ONNX TensorRT actually parsed when the builder made one (FP16 or Q/DQ), else "".
        calib_digest: :meth:`yolo4.calib.images.CalibrationSet.digest` of the INT8 calibration images, or "".
        calib_method: calibration method (``entropy``, ``minmax``, ``percentile``), or "".
        calib_images: number of calibration images (0 without calibration).
        dla_core: the DLA core the engine runs on (Jetson), or None for the GPU; the runtime sets
            ``runtime.DLA_core`` to it before deserializing.
        plugin_libraries: plugin libraries loaded for the build (absolute paths); the runtime must load
            them before deserializing.
        layer_precisions: ``{precision: number of engine layers}`` as reported by TensorRT (engine
            inspector or build log), empty when TensorRT did not say.
        num_profiles: optimization profiles in the engine (identical copies of :attr:`profile`, one per
            execution context the runtime may run at once; 1 for engines from before yolo4 recorded it).
        build_time_s: TensorRT build time in seconds (``build_serialized_network``; with implicit INT8
            it includes the calibration pass).
        tf32: ``BuilderFlag.TF32`` was left on (TensorRT's default: FP32 layers may run in TF32 on
            Ampere and later); False after ``--no-tf32``.
        version_compatible: built with ``BuilderFlag.VERSION_COMPATIBLE`` (runs on this TensorRT
            release and later ones, lean runtime embedded: the runtime must allow host code).
        hardware_compatibility: :data:`HARDWARE_COMPATIBILITY`: ``none`` (this GPU architecture),
            ``ampere+`` (any GPU of compute capability 8.0 or later) or ``same-compute-capability``.
        workspace_mib: the builder's workspace pool limit in MiB, or None for TensorRT's default.
        peak_host_memory_mib: the building process's peak resident memory (``ru_maxrss``) in MiB.
        built_at: UTC time of the build, ISO 8601.
        yolo4_version: the yolo4 release that built it.
        format_version: :data:`ENGINE_META_VERSION`.
        path: the sidecar file this was read from (not stored in the file).
    """

    model: Dict[str, str]
    input_name: str
    input_shape: List[int]
    profile: Dict[str, List[int]]
    precision: str
    quantization: str
    trt_flavour: str
    trt_version: str
    compute_capability: str
    gpu_name: str = ""
    output_names: List[str] = field(default_factory=list)
    target_compute_capabilities: List[str] = field(default_factory=list)
    onnx_sha256: str = ""
    onnx_path: str = ""
    built_onnx: str = ""
    calib_digest: str = ""
    calib_method: str = ""
    calib_images: int = 0
    dla_core: Optional[int] = None
    plugin_libraries: List[str] = field(default_factory=list)
    layer_precisions: Dict[str, int] = field(default_factory=dict)
    num_profiles: int = 1
    build_time_s: float = 0.0
    tf32: bool = True
    version_compatible: bool = False
    hardware_compatibility: str = "none"
    workspace_mib: Optional[int] = None
    peak_host_memory_mib: float = 0.0
    built_at: str = ""
    yolo4_version: str = ""
    format_version: int = ENGINE_META_VERSION
    path: Optional[str] = field(default=None, compare=False)

    def model_info(self) -> ModelInfo:
        """The model's :class:`ModelInfo` (names, input size, resize mode, anchors).

        Raises:
            ModelFileError: the stored model facts do not parse (names the sidecar).
        """
        return ModelInfo.from_metadata(self.model, self.path)

    @property
    def batch_range(self) -> Tuple[int, int, int]:
        """``(min, opt, max)`` batch sizes of the optimization profile."""
        return (int(self.profile["min"][0]), int(self.profile["opt"][0]), int(self.profile["max"][0]))

    @property
    def dynamic_batch(self) -> bool:
        """True when the engine takes any batch in :attr:`batch_range` (input batch dimension -1)."""
        return bool(self.input_shape) and int(self.input_shape[0]) < 0

    @property
    def ahead_of_time(self) -> bool:
        """True for an engine built ahead of time for a set of compute capabilities (TensorRT for RTX)."""
        return self.compute_capability == AHEAD_OF_TIME

    def to_dict(self) -> Dict[str, Any]:
        """The JSON object written to the sidecar (every field but :attr:`path`)."""
        d = asdict(self)
        d.pop("path", None)
        return d


@dataclass(frozen=True)
class CudaDevice:
    """A CUDA device as the driver reports it.

    Attributes:
        index: device ordinal (as CUDA_VISIBLE_DEVICES numbers them).
        name: e.g. ``"NVIDIA GeForce RTX 3090"``, ``"Xavier"``, ``"Orin"``.
        compute_capability: ``"major.minor"``, e.g. ``"8.6"``, ``"7.2"``.
        integrated: an integrated GPU sharing the host's memory (Jetson; ``CU_DEVICE_ATTRIBUTE_INTEGRATED``).
        total_memory: device memory in bytes (``cuDeviceTotalMem``; a Jetson's whole RAM), 0 = unknown.
    """

    index: int
    name: str
    compute_capability: str
    integrated: bool = False
    total_memory: int = 0


def engine_meta_path(engine_path: PathLike) -> Path:
    """The sidecar of ``engine_path``: the same name plus ``.json`` (``model.engine.json``)."""
    p = Path(os.fspath(engine_path))
    return p.with_name(p.name + ".json")


def _dumps(d: Mapping[str, Any]) -> str:
    """JSON with one field per line (shapes and lists on their line; the model facts indented)."""
    items = list(d.items())
    lines = []
    for i, (k, v) in enumerate(items):
        if isinstance(v, dict) and len(v) > 4:
            body = json.dumps(v, indent=2, ensure_ascii=False).replace("\n", "\n  ")
        else:
            body = json.dumps(v, ensure_ascii=False)
        lines.append("  %s: %s%s" % (json.dumps(k), body, "," if i < len(items) - 1 else ""))
    return "{\n" + "\n".join(lines) + "\n}\n"


def write_engine_meta(engine_path: PathLike, meta: EngineMeta) -> Path:
    """Write ``meta`` beside ``engine_path`` atomically; returns the sidecar path.

    Raises:
        ModelFileError: the file cannot be written (one line naming it).
    """
    out = engine_meta_path(engine_path)
    text = _dumps(meta.to_dict())
    try:
        atomic_write_text(out, text)
    except OSError as e:
        raise ModelFileError(f"cannot write the engine metadata ({e.strerror or e})", out) from None
    meta.path = str(out)
    return out


def _list_of(value: Any, kind: type, what: str) -> list:
    if not isinstance(value, list) or not all(isinstance(v, kind) and not isinstance(v, bool) for v in value):
        raise ValueError(f"{what} must be a list of {kind.__name__}")
    return value


def _from_dict(d: Mapping[str, Any], path: str) -> EngineMeta:
    """Validate and convert the sidecar's JSON object (raises ValueError/TypeError/KeyError)."""
    if not isinstance(d, dict):
        raise ValueError("not a JSON object")
    version = d.get("format_version", 1)
    if not isinstance(version, int) or version > ENGINE_META_VERSION:
        raise ModelFileError(f"engine metadata format {version!r} is newer than this yolo4 reads "
                             f"({ENGINE_META_VERSION}); upgrade yolo4 or rebuild with `yolo4 build-engine`", path)
    missing = [k for k in _REQUIRED if k not in d]
    if missing:
        raise KeyError("missing " + ", ".join(missing))
    known = {f.name for f in fields(EngineMeta)} - {"path"}
    kw = {k: v for k, v in d.items() if k in known}
    model = kw["model"]
    if not isinstance(model, dict) or not all(isinstance(v, str) for v in model.values()):
        raise ValueError("model must be an object of strings")
    _list_of(kw["input_shape"], int, "input_shape")
    prof = kw["profile"]
    if not isinstance(prof, dict) or sorted(prof) != ["max", "min", "opt"]:
        raise ValueError("profile must have min, opt and max")
    for k in ("min", "opt", "max"):
        _list_of(prof[k], int, "profile " + k)
        if len(prof[k]) != len(kw["input_shape"]):
            raise ValueError(f"profile {k} has {len(prof[k])} dimensions, the input {len(kw['input_shape'])}")
    if kw["precision"] not in PRECISIONS:
        raise ValueError(f"precision {kw['precision']!r} is not one of {', '.join(PRECISIONS)}")
    if kw["quantization"] not in QUANTIZATIONS:
        raise ValueError(f"quantization {kw['quantization']!r} is not one of {', '.join(QUANTIZATIONS)}")
    if kw["trt_flavour"] not in FLAVOURS:
        raise ValueError(f"trt_flavour {kw['trt_flavour']!r} is not one of {', '.join(FLAVOURS)}")
    for k in ("input_name", "trt_version", "compute_capability", "gpu_name", "onnx_sha256", "onnx_path",
              "built_onnx", "calib_digest", "calib_method", "built_at", "yolo4_version"):
        if k in kw and not isinstance(kw[k], str):
            raise ValueError(f"{k} must be a string")
    for k in ("output_names", "target_compute_capabilities", "plugin_libraries"):
        if k in kw:
            _list_of(kw[k], str, k)
    if "layer_precisions" in kw:
        lp = kw["layer_precisions"]
        if not isinstance(lp, dict) or not all(isinstance(v, int) for v in lp.values()):
            raise ValueError("layer_precisions must be an object of integers")
    if kw.get("dla_core") is not None and (not isinstance(kw["dla_core"], int) or kw["dla_core"] < 0):
        raise ValueError("dla_core must be a non-negative integer or null")
    if "num_profiles" in kw and (not isinstance(kw["num_profiles"], int) or isinstance(kw["num_profiles"], bool)
                                 or kw["num_profiles"] < 1):
        raise ValueError("num_profiles must be a positive integer")
    for k in ("build_time_s", "peak_host_memory_mib"):
        if k in kw and (not isinstance(kw[k], (int, float)) or isinstance(kw[k], bool)):
            raise ValueError(f"{k} must be a number")
    for k in ("tf32", "version_compatible"):
        if k in kw and not isinstance(kw[k], bool):
            raise ValueError(f"{k} must be true or false")
    if "hardware_compatibility" in kw and kw["hardware_compatibility"] not in HARDWARE_COMPATIBILITY:
        raise ValueError(f"hardware_compatibility {kw['hardware_compatibility']!r} is not one of "
                         f"{', '.join(HARDWARE_COMPATIBILITY)}")
    ws = kw.get("workspace_mib")
    if ws is not None and (not isinstance(ws, int) or isinstance(ws, bool) or ws < 1):
        raise ValueError("workspace_mib must be a positive integer or null")
    meta = EngineMeta(**kw)
    meta.path = path
    return meta


def read_engine_meta(engine_path: PathLike) -> EngineMeta:
    """Read the sidecar of ``engine_path`` (:func:`engine_meta_path`).

    Args:
        engine_path: the engine file (``model.engine``); its sidecar is ``model.engine.json``.

    Returns:
        :class:`EngineMeta` with :attr:`~EngineMeta.path` set.

    Raises:
        ModelFileError: the sidecar is missing, unreadable, not JSON, lacks a field or has a field of
            the wrong type or value (one line naming the sidecar and saying to rebuild).
    """
    path = engine_meta_path(engine_path)
    rebuild = "rebuild the engine with `yolo4 build-engine`"
    try:
        with open(str(path), encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ModelFileError(f"engine metadata is missing (every yolo4 engine has a {path.name} beside it); "
                             f"{rebuild}", path) from None
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else "not UTF-8 text"
        raise ModelFileError(f"cannot read the engine metadata ({why}); {rebuild}", path) from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ModelFileError(f"engine metadata is not valid JSON ({e}); {rebuild}", path) from None
    try:
        return _from_dict(data, str(path))
    except ModelFileError:
        raise
    except KeyError as e:
        raise ModelFileError(f"invalid engine metadata ({e.args[0]}); {rebuild}", path) from None
    except (ValueError, TypeError) as e:
        raise ModelFileError(f"invalid engine metadata ({e}); {rebuild}", path) from None


def flavour_name(flavour: str, version: str) -> str:
    """Human name of a TensorRT build: ``TensorRT 10.3.0`` / ``TensorRT for RTX 1.7.1``."""
    short = ".".join(str(version).split(".")[:3])
    return ("TensorRT for RTX %s" if flavour == "tensorrt-rtx" else "TensorRT %s") % short


def parse_compute_capability(value: Union[str, Sequence[int]]) -> Tuple[int, int]:
    """``"8.6"``, ``"86"``, ``"sm_86"``, ``"SM86"`` or ``(8, 6)`` -> ``(8, 6)``.

    Raises:
        ValueError: anything else.
    """
    if not isinstance(value, str):
        major, minor = (int(v) for v in value)
        return major, minor
    text = value.strip().lower()
    for prefix in ("sm_", "sm"):
        if text.startswith(prefix):
            text = text[len(prefix):]
            break
    if "." in text:
        a, b = text.split(".", 1)
        if a.isdigit() and b.isdigit() and len(b) == 1:
            return int(a), int(b)
    elif text.isdigit() and len(text) >= 2:
        return int(text[:-1]), int(text[-1])
    raise ValueError(f"not a compute capability: {value!r} (e.g. 8.6)")


def _cc_text(value: Union[str, Sequence[int]]) -> str:
    major, minor = parse_compute_capability(value)
    return "%d.%d" % (major, minor)


def _version3(version: str) -> Tuple[int, ...]:
    """``"10.3.0.30"`` -> ``(10, 3, 0)`` (digits of each of the first three parts; missing ones 0)."""
    out = []
    for part in str(version).split(".")[:3]:
        digits = ""
        for ch in part:
            if not ch.isdigit():
                break
            digits += ch
        out.append(int(digits) if digits else 0)
    return tuple(out + [0] * (3 - len(out)))


def rebuild_command(meta: EngineMeta, engine: Optional[str] = None) -> str:
    """The ``yolo4 build-engine`` command line that rebuilds the engine of ``meta`` with the same
    options (for refusal messages): the source ONNX, precision, batch profile, contexts, DLA core,
    TF32, compatibility options, TensorRT for RTX targets. INT8 from a calibration pass needs its
    images again: ``--calib-data DATA`` (the images are not recorded, only their digest)."""
    import shlex

    where = engine or (meta.path[:-len(".json")] if meta.path and meta.path.endswith(".json") else "MODEL.engine")
    parts = ["yolo4", "build-engine", shlex.quote(meta.onnx_path or "MODEL.onnx"), "-o", shlex.quote(where)]
    if meta.trt_flavour == "tensorrt-rtx":
        parts += ["--backend", "tensorrt-rtx"]
        for t in meta.target_compute_capabilities:
            parts += ["--compute-capability", t]
    if meta.precision == "fp16":
        parts.append("--fp16")
    elif meta.precision == "int8" and (meta.quantization == "implicit" or meta.built_onnx):
        parts += ["--int8", "--calib-data", "DATA"]
        if meta.calib_images:
            parts += ["--calib-images", str(meta.calib_images)]
        if meta.quantization == "explicit":
            parts += ["--quantization", "explicit"]
    if meta.dynamic_batch:
        parts += ["--batch", "%d,%d,%d" % meta.batch_range]
        if meta.num_profiles != 2:
            parts += ["--contexts", str(meta.num_profiles)]
    if meta.dla_core is not None:
        parts += ["--dla-core", str(meta.dla_core)]
    if not meta.tf32:
        parts.append("--no-tf32")
    if meta.version_compatible:
        parts.append("--version-compatible")
    if meta.hardware_compatibility != "none":
        parts += ["--hardware-compatibility-level", meta.hardware_compatibility]
    for lib in meta.plugin_libraries:
        parts += ["--plugin-lib", shlex.quote(lib)]
    return " ".join(parts)


def _built_on(meta: EngineMeta) -> str:
    """``TensorRT 8.5.2 on Xavier (compute capability 7.2)`` (TensorRT for RTX: the release only)."""
    text = flavour_name(meta.trt_flavour, meta.trt_version)
    if meta.ahead_of_time:
        return text
    if meta.gpu_name or meta.compute_capability:
        text += " on %s(compute capability %s)" % (meta.gpu_name + " " if meta.gpu_name else "",
                                                   meta.compute_capability or "?")
    return text


def check_engine_compat(meta: EngineMeta, flavour: str, version: str,
                        compute_capability: Optional[Union[str, Sequence[int]]],
                        gpu_name: Optional[str] = None) -> None:
    """Refuse an engine this TensorRT and GPU cannot run, in one line, before TensorRT is asked.

    Rules (module docstring: sources):

    - the TensorRT flavour must match;
    - the release must match in major.minor.patch (the build number may differ), except for a
      version-compatible engine (:attr:`EngineMeta.version_compatible`), which runs on its release
      and any later one (8.6 or later);
    - the GPU: an engine built ahead of time (TensorRT for RTX) runs on its target compute
      capabilities (8.0 and later for the default targets); an ``ampere+`` engine on any compute
      capability >= 8.0; any other on the compute capability it was built for. The same compute
      capability on another GPU model runs, possibly with slower kernels: a
      :class:`~yolo4.errors.Yolo4Warning` says so (not for ``same-compute-capability`` or ``ampere+``
      engines, which were built to move).

    Each refusal names the engine, what it was built with and on, this machine's TensorRT and GPU,
    and the ``yolo4 build-engine`` command that rebuilds it (:func:`rebuild_command`).

    Args:
        meta: the engine's metadata (:func:`read_engine_meta`).
        flavour: the runtime's flavour, ``tensorrt`` or ``tensorrt-rtx``.
        version: the runtime's ``__version__``.
        compute_capability: the GPU's, ``"8.6"`` or ``(8, 6)`` (:func:`cuda_device`); None when no GPU
            was found: the flavour and release are checked, not the GPU.
        gpu_name: the GPU's name, for the warning and messages; None = not compared.

    Raises:
        ModelFileError: another flavour, a release the engine cannot run on, or a GPU it was not
            built for (one line).
    """
    where = meta.path[:-len(".json")] if meta.path and meta.path.endswith(".json") else meta.path
    built = _built_on(meta)
    here = flavour_name(flavour, version)
    rebuild = f"rebuild it here with `{rebuild_command(meta, where)}`"
    cc: Optional[Tuple[int, int]] = None
    here_gpu = f"{here} (no GPU found)"
    if compute_capability is not None:
        try:
            cc = parse_compute_capability(compute_capability)
        except ValueError as e:
            raise ModelFileError(str(e), where) from None
        here_gpu = f"{here} on {gpu_name or 'a GPU'} (compute capability %d.%d)" % cc
    if meta.trt_flavour != flavour:
        raise ModelFileError(f"the engine was built with {built}, this machine has {here_gpu}: engines of one "
                             f"cannot run on the other; {rebuild}", where)
    mine, theirs = _version3(version), _version3(meta.trt_version)
    if meta.version_compatible:
        if mine < theirs or mine[:2] < VERSION_COMPATIBLE_MIN:
            raise ModelFileError(f"the engine was built with {built}, version-compatible (it runs on "
                                 f"{flavour_name(meta.trt_flavour, meta.trt_version)} and later releases), this "
                                 f"machine has {here_gpu}: an older release; {rebuild}", where)
    elif mine != theirs:
        hint = "" if flavour == "tensorrt-rtx" else (" (build it with --version-compatible, TensorRT 8.6 or "
                                                     "later, to run it on later releases)")
        raise ModelFileError(f"the engine was built with {built}, this machine has {here_gpu}: an engine runs "
                             f"only on the TensorRT release that built it{hint}; {rebuild}", where)
    if cc is None:
        return
    cc_s = "%d.%d" % cc
    gpu = f" ({gpu_name})" if gpu_name else ""
    if meta.ahead_of_time:
        targets = []
        for t in meta.target_compute_capabilities:
            try:
                targets.append(parse_compute_capability(t))
            except ValueError:
                raise ModelFileError(f"invalid engine metadata (target compute capability {t!r}); "
                                     f"{rebuild}", where) from None
        if targets and cc not in targets:
            listed = ", ".join("%d.%d" % t for t in targets)
            raise ModelFileError(f"the engine was built ahead of time for compute capability {listed}, this "
                                 f"GPU{gpu} is {cc_s}; rebuild it with `yolo4 build-engine --compute-capability "
                                 f"{cc_s}`", where)
        if not targets and cc < RTX_DEFAULT_MIN_CC:
            raise ModelFileError(f"the engine was built for TensorRT for RTX's default targets (compute "
                                 f"capability 8.0 and later), this GPU{gpu} is {cc_s}; rebuild it with "
                                 f"`yolo4 build-engine --compute-capability {cc_s}`", where)
        return
    if meta.hardware_compatibility == "ampere+":
        if cc < AMPERE_MIN_CC:
            raise ModelFileError(f"the engine was built with {built}, hardware-compatible for Ampere and later "
                                 f"GPUs (compute capability 8.0+), this GPU{gpu} is {cc_s} with {here}; "
                                 f"{rebuild}", where)
        return
    try:
        built_cc = _cc_text(meta.compute_capability)
    except ValueError:
        raise ModelFileError(f"invalid engine metadata (compute capability {meta.compute_capability!r}); "
                             f"{rebuild}", where) from None
    if built_cc != cc_s:
        on = f" ({meta.gpu_name})" if meta.gpu_name else ""
        raise ModelFileError(f"the engine was built for a GPU of compute capability {built_cc}{on} with "
                             f"{flavour_name(meta.trt_flavour, meta.trt_version)}, this GPU{gpu} is {cc_s} with "
                             f"{here}: a TensorRT engine runs only on the GPU architecture it was built for "
                             f"(--hardware-compatibility-level ampere+ builds one for every Ampere+ GPU); "
                             f"{rebuild}", where)
    if (gpu_name and meta.gpu_name and gpu_name != meta.gpu_name
            and meta.hardware_compatibility != "same-compute-capability"):
        warnings.warn(f"{where}: the engine was built on {meta.gpu_name}, this GPU is {gpu_name} (same "
                      f"compute capability {cc_s}): it runs, but TensorRT chose its kernels for the other "
                      "model; rebuild it here for the best speed", Yolo4Warning, stacklevel=2)


# ------------------------------------------------------------------------------------------------
# the GPU, from the CUDA driver API (libcuda), without pycuda
# ------------------------------------------------------------------------------------------------

_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76
_CU_DEVICE_ATTRIBUTE_INTEGRATED = 18


def _libcuda() -> Optional[ctypes.CDLL]:
    names = ["libcuda.so.1", "libcuda.so"] if os.name != "nt" else ["nvcuda.dll"]
    found = ctypes.util.find_library("cuda")
    if found and found not in names:
        names.append(found)
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def cuda_device(index: int = 0) -> Optional[CudaDevice]:
    """The CUDA device ``index`` as the driver reports it (``cuInit``, ``cuDeviceGetName``,
    ``cuDeviceGetAttribute`` (compute capability, ``INTEGRATED``), ``cuDeviceTotalMem_v2`` of the CUDA
    driver API), or None when there is no driver or no such device (e.g. a CPU-only machine building
    TensorRT for RTX engines ahead of time). ``integrated``/``total_memory`` stay False/0 when the
    driver does not answer them."""
    lib = _libcuda()
    if lib is None:
        return None
    try:
        if lib.cuInit(0) != 0:
            return None
        count = ctypes.c_int(0)
        if lib.cuDeviceGetCount(ctypes.byref(count)) != 0 or not 0 <= index < count.value:
            return None
        dev = ctypes.c_int(0)
        if lib.cuDeviceGet(ctypes.byref(dev), int(index)) != 0:
            return None
        buf = ctypes.create_string_buffer(256)
        if lib.cuDeviceGetName(buf, ctypes.c_int(len(buf)), dev) != 0:
            return None
        major, minor = ctypes.c_int(0), ctypes.c_int(0)
        if (lib.cuDeviceGetAttribute(ctypes.byref(major), _CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev) != 0
                or lib.cuDeviceGetAttribute(ctypes.byref(minor), _CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                                            dev) != 0):
            return None
    except (AttributeError, OSError):  # a stub libcuda without these symbols
        return None
    integrated, total = ctypes.c_int(0), ctypes.c_size_t(0)
    try:
        if lib.cuDeviceGetAttribute(ctypes.byref(integrated), _CU_DEVICE_ATTRIBUTE_INTEGRATED, dev) != 0:
            integrated.value = 0
        if lib.cuDeviceTotalMem_v2(ctypes.byref(total), dev) != 0:
            total.value = 0
    except (AttributeError, OSError):
        pass
    return CudaDevice(int(index), buf.value.decode("utf-8", "replace"), "%d.%d" % (major.value, minor.value),
                      bool(integrated.value), int(total.value))
