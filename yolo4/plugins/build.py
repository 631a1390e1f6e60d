"""Compile the DIoU-NMS plugin library on the user's machine, against the TensorRT installed there.

``yolo4 build-plugin`` calls :func:`build_plugin`: it finds TensorRT's headers and ``libnvinfer``
(:func:`find_tensorrt`) and the CUDA toolkit (:func:`find_cuda`), compiles the kernels with nvcc for
the GPU architectures asked for (default: every target of :data:`TARGET_ARCHS` the local nvcc can
build, plus PTX of the newest for later GPUs), the TensorRT glue with the host C++ compiler, links
``libdiou_nms_plugin.so`` into a temp file beside the destination and moves it into place. The
kernel objects are cached by content (sources, flags, nvcc version), so a rebuild against another
TensorRT only recompiles the glue.

``yolo4/plugins/diou_nms/CMakeLists.txt`` builds the same library with CMake, for those who prefer it.

:func:`build_host_library` compiles the CPU build of the same stages (g++ only) that the test suite
checks against the numpy reference.

Python 3.8, torch-free, TensorRT-free.
"""

import glob
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple, Union

from ..errors import Yolo4Error
from ..fileio import atomic_path, atomic_write_text
from . import PLUGIN_LIBRARY_NAME, default_plugin_path, load_plugin_library, plugin_source_dir

__all__ = ["TARGET_ARCHS", "CudaToolkit", "TensorRTInstall", "BuildResult", "find_cuda", "find_tensorrt",
           "tensorrt_header_version", "select_archs", "compile_kernels", "build_plugin", "build_kernels_library",
           "build_host_library", "build_hipcpu_library", "HIPCPU_KERNELS",
           "KERNEL_SOURCES", "GLUE_SOURCES",
           "PREPROCESS_LIBRARY_NAME", "PREPROCESS_SOURCES", "preprocess_source_dir", "default_preprocess_path",
           "build_preprocess_library", "build_preprocess_host_library"]

PathLike = Union[str, "os.PathLike[str]"]

#: GPU architectures the plugin targets: V100 (70), Xavier (72), T4 (75), A100 (80), RTX 30xx/A10 (86),
#: Orin (87), RTX 40xx/L4 (89), H100 (90). Each build keeps those its nvcc supports.
TARGET_ARCHS = ("70", "72", "75", "80", "86", "87", "89", "90")
#: files the kernels are compiled from; the glue adds the TensorRT headers
KERNEL_SOURCES = ("diouNMSKernels.cu", "diouNMSKernels.h", "diouNMSCommon.cuh", "diouNMSParameters.h")
GLUE_SOURCES = ("diouNMSPlugin.cpp", "diouNMSPlugin.h", "diouNMSCompat.h", "diouNMSKernels.h", "diouNMSParameters.h")

NVCC_FLAGS = ("-std=c++17", "-O3", "-Xcompiler", "-fPIC,-fvisibility=hidden,-Wall,-Wextra")
CXX_FLAGS = ("-std=c++17", "-O2", "-fPIC", "-fvisibility=hidden")

_TRT_INCLUDE_DIRS = ("/usr/include/x86_64-linux-gnu", "/usr/include/aarch64-linux-gnu", "/usr/include",
                     "/usr/local/include", "/opt/tensorrt/include", "/usr/local/tensorrt/include")
_TRT_LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
                 "/usr/local/lib", "/opt/tensorrt/lib", "/usr/local/tensorrt/lib")
_SYSTEM_LIB_DIRS = frozenset(("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
                              "/lib", "/lib64"))


@dataclass
class CudaToolkit:
    """A CUDA toolkit: its root (``include/cuda_runtime_api.h``), nvcc, release and the GPU
    architectures its nvcc compiles for (``"75"``, ``"87"``, ...)."""

    root: Path
    nvcc: Path
    version: Tuple[int, int]
    archs: Tuple[str, ...]

    @property
    def include_dir(self) -> Path:
        return self.root / "include"


@dataclass
class TensorRTInstall:
    """TensorRT headers (the folder with ``NvInfer.h``), their release, and ``libnvinfer`` (None when
    only the headers were found)."""

    include_dir: Path
    version: Tuple[int, int, int]
    nvinfer: Optional[Path] = None

    @property
    def version_str(self) -> str:
        return "%d.%d.%d" % self.version


@dataclass
class BuildResult:
    """What :func:`build_plugin` wrote: the library, the TensorRT and CUDA it was built with, the
    architectures, and the library's own description (``diouNmsPluginInfo``; None when it could
    not be loaded here)."""

    path: Path
    tensorrt: TensorRTInstall
    cuda: CudaToolkit
    archs: Tuple[str, ...]
    info: Optional[str] = None
    seconds: float = 0.0
    warnings: List[str] = field(default_factory=list)


def _run(cmd: Sequence[str], what: str) -> str:
    """Run a compiler command; a failure becomes a Yolo4Error quoting its first error lines."""
    try:
        p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    except OSError as e:
        raise Yolo4Error(f"{what}: cannot run {cmd[0]} ({e.strerror})") from None
    if p.returncode != 0:
        lines = [ln for ln in (p.stderr + p.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if "error" in ln.lower()] or lines
        raise Yolo4Error(f"{what} failed (exit {p.returncode}): " + " | ".join(errors[:3])[:600])
    return p.stdout + p.stderr


# ---- CUDA ------------------------------------------------------------------------------------------
#: (first CUDA release, architectures it adds or keeps): for an nvcc without --list-gpu-arch
_ARCHS_BY_CUDA = (((11, 0), ("70", "72", "75", "80")), ((11, 1), ("86",)), ((11, 4), ("87",)),
                  ((11, 8), ("89", "90")))


def _nvcc_archs(nvcc: Path, version: Tuple[int, int]) -> Tuple[str, ...]:
    try:
        out = subprocess.run([str(nvcc), "--list-gpu-arch"], capture_output=True, text=True).stdout
    except OSError:
        out = ""
    found = {m for m in re.findall(r"compute_(\d+)", out)}
    if not found:  # an nvcc that cannot list them: what its release is known to support
        found = {a for first, archs in _ARCHS_BY_CUDA if version >= first for a in archs}
        if version >= (13, 0):
            found -= {"70", "72"}
    return tuple(sorted(found, key=int))


def _nvcc_version(nvcc: Path) -> Tuple[int, int]:
    try:
        out = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True).stdout
    except OSError:
        return (0, 0)
    m = re.search(r"release (\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def find_cuda(cuda: Optional[PathLike] = None) -> CudaToolkit:
    """The CUDA toolkit: ``cuda`` if given, else ``$CUDA_HOME`` / ``$CUDA_PATH``, the toolkit of the
    ``nvcc`` on ``PATH``, ``/usr/local/cuda``, then the newest ``/usr/local/cuda-*``.

    Raises:
        Yolo4Error: no toolkit with nvcc and ``include/cuda_runtime_api.h`` (names the place to give).
    """
    if cuda is not None:
        candidates = [Path(cuda)]
    else:
        candidates = [Path(os.environ[v]) for v in ("CUDA_HOME", "CUDA_PATH") if os.environ.get(v)]
        on_path = shutil.which("nvcc")
        if on_path:
            candidates.append(Path(on_path).resolve().parent.parent)
        candidates.append(Path("/usr/local/cuda"))
        candidates += sorted((Path(p) for p in glob.glob("/usr/local/cuda-*")), reverse=True)
    for root in candidates:
        nvcc = root / "bin" / "nvcc"
        if (root / "include" / "cuda_runtime_api.h").is_file() and nvcc.is_file():
            version = _nvcc_version(nvcc)
            return CudaToolkit(root=root, nvcc=nvcc, version=version, archs=_nvcc_archs(nvcc, version))
    where = ", ".join(str(c) for c in candidates) or "nowhere"
    raise Yolo4Error(f"CUDA toolkit (bin/nvcc, include/cuda_runtime_api.h) not found in {where}: give --cuda DIR "
                     "(e.g. /usr/local/cuda) or set CUDA_HOME")


def select_archs(requested: Sequence[str], toolkit: CudaToolkit) -> Tuple[str, ...]:
    """The architectures to compile: ``requested`` (``87``, ``8.7``, ``sm_87``), or every
    :data:`TARGET_ARCHS` entry the toolkit's nvcc supports.

    Raises:
        Yolo4Error: an architecture the toolkit cannot compile, or none left.
    """
    supported = set(toolkit.archs)
    if requested:
        archs = []
        for a in requested:
            for part in str(a).split(","):
                key = part.strip().lower().replace("sm_", "").replace("compute_", "").replace(".", "")
                if not key:
                    continue
                if not key.isdigit():
                    raise Yolo4Error(f"--arch {part!r}: expected a compute capability such as 87 or 8.7")
                if supported and key not in supported:
                    raise Yolo4Error(f"--arch {key}: nvcc {toolkit.version[0]}.{toolkit.version[1]} "
                                     f"({toolkit.nvcc}) cannot compile sm_{key} (it supports "
                                     f"{', '.join(sorted(supported, key=int))}); use the CUDA of the target "
                                     "(JetPack 5's CUDA 11.4 for Xavier's sm_72)")
                if key not in archs:
                    archs.append(key)
        if not archs:
            raise Yolo4Error("--arch: no architecture given")
        return tuple(sorted(archs, key=int))
    archs = [a for a in TARGET_ARCHS if a in supported] if supported else list(TARGET_ARCHS)
    if not archs:
        raise Yolo4Error(f"nvcc {toolkit.version[0]}.{toolkit.version[1]} ({toolkit.nvcc}) supports none of the "
                         f"plugin's targets ({', '.join(TARGET_ARCHS)}); give --arch")
    return tuple(archs)


# ---- TensorRT --------------------------------------------------------------------------------------
def tensorrt_header_version(include_dir: PathLike) -> Optional[Tuple[int, int, int]]:
    """(major, minor, patch) from ``NvInferVersion.h`` (10.x+ defines them through
    ``TRT_*_ENTERPRISE``), or None when the folder has no readable version header."""
    p = Path(include_dir) / "NvInferVersion.h"
    try:
        text = p.read_text(errors="replace")
    except OSError:
        return None
    defs = dict(re.findall(r"^\s*#\s*define\s+(\w+)\s+(\w+)", text, flags=re.M))

    def value(name: str) -> Optional[int]:
        v = defs.get(name)
        for _ in range(4):
            if v is None or v.isdigit():
                break
            v = defs.get(v)
        return int(v) if v is not None and v.isdigit() else None

    parts = [value("NV_TENSORRT_" + k) for k in ("MAJOR", "MINOR", "PATCH")]
    if parts[0] is None or parts[1] is None:
        return None
    return (parts[0], parts[1], parts[2] or 0)


def _pip_tensorrt_dirs() -> List[Path]:
    """Folders of the ``tensorrt`` pip packages (``tensorrt_libs`` holds libnvinfer), found without importing."""
    out = []
    for name in ("tensorrt_libs", "tensorrt", "tensorrt_bindings"):
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.submodule_search_locations:
            out += [Path(p) for p in spec.submodule_search_locations]
    return out


def _nvinfer_in(lib_dir: Path, major: int) -> Optional[Path]:
    for name in ("libnvinfer.so", "libnvinfer.so.%d" % major):
        if (lib_dir / name).is_file():
            return lib_dir / name
    found = sorted(glob.glob(str(lib_dir / ("libnvinfer.so.%d.*" % major))))
    return Path(found[0]) if found else None


def find_tensorrt(include: Optional[PathLike] = None, lib: Optional[PathLike] = None,
                  need_library: bool = True) -> TensorRTInstall:
    """TensorRT's headers and ``libnvinfer``.

    Headers: ``include`` if given, else ``$TENSORRT_ROOT/include``, the pip ``tensorrt`` wheels' include
    folder (if they ship one), ``/usr/include/{x86_64,aarch64}-linux-gnu`` (Debian packages, JetPack),
    ``/usr/include``, ``/usr/local/TensorRT*/include`` (tar archives), ``/opt/tensorrt/include``.
    Library (``libnvinfer.so`` or ``libnvinfer.so.<major>``): ``lib`` if given, else beside the headers
    (``../lib``, ``../lib64``), ``$TENSORRT_ROOT/lib``, the pip ``tensorrt_libs`` folder, the system
    library folders.

    Raises:
        Yolo4Error: no headers, headers older than 8.5, or (``need_library``) no libnvinfer of their
            major version; the message names the option to give.
    """
    root = os.environ.get("TENSORRT_ROOT", "").strip()
    if include is not None:
        inc_candidates = [Path(include)]
    else:
        inc_candidates = ([Path(root) / "include"] if root else []) + [d / "include" for d in _pip_tensorrt_dirs()]
        inc_candidates += [Path(d) for d in _TRT_INCLUDE_DIRS]
        inc_candidates += [Path(p) for p in sorted(glob.glob("/usr/local/TensorRT*/include"), reverse=True)]
    inc = next((d for d in inc_candidates if (d / "NvInferVersion.h").is_file() and (d / "NvInferRuntime.h").is_file()),
               None)
    if inc is None:
        if include is not None:
            raise Yolo4Error("no TensorRT headers (NvInferVersion.h, NvInferRuntime.h) in --tensorrt-include", include)
        raise Yolo4Error("TensorRT headers (NvInferVersion.h) not found in " + ", ".join(map(str, inc_candidates))
                         + ": give --tensorrt-include DIR (the folder with NvInfer.h) or set TENSORRT_ROOT")
    version = tensorrt_header_version(inc)
    if version is None:
        raise Yolo4Error("cannot read the TensorRT version from NvInferVersion.h", inc / "NvInferVersion.h")
    if version < (8, 5, 0):
        raise Yolo4Error("TensorRT %d.%d.%d: the DIoU-NMS plugin needs 8.5 or later" % version, inc)
    if lib is not None:
        lib_candidates = [Path(lib)]
    else:
        lib_candidates = [inc.parent / "lib", inc.parent / "lib64"] + ([Path(root) / "lib"] if root else [])
        lib_candidates += _pip_tensorrt_dirs() + [Path(d) for d in _TRT_LIB_DIRS]
    nvinfer = next((p for p in (_nvinfer_in(d, version[0]) for d in lib_candidates if d.is_dir()) if p), None)
    if nvinfer is None and need_library:
        where = "--tensorrt-lib" if lib is not None else ", ".join(map(str, lib_candidates))
        raise Yolo4Error("libnvinfer.so of TensorRT %d not found in %s: give --tensorrt-lib DIR (the folder with "
                         "libnvinfer.so)" % (version[0], where))
    return TensorRTInstall(include_dir=inc, version=version, nvinfer=nvinfer)


# ---- compiling -------------------------------------------------------------------------------------
def _gencode(archs: Sequence[str]) -> List[str]:
    """SASS for each architecture, and PTX of the newest (JIT-compiled on later GPUs)."""
    flags = []
    for a in archs:
        flags += ["-gencode", f"arch=compute_{a},code=sm_{a}"]
    newest = max(archs, key=int)
    return flags + ["-gencode", f"arch=compute_{newest},code=compute_{newest}"]


def _digest(src: Path, names: Sequence[str], extra: Sequence[str]) -> str:
    h = hashlib.sha256()
    for n in names:
        h.update(n.encode() + b"\0" + (src / n).read_bytes() + b"\0")
    for e in extra:
        h.update(e.encode() + b"\0")
    return h.hexdigest()[:24]


def compile_kernels(toolkit: CudaToolkit, archs: Sequence[str], out_dir: Optional[PathLike] = None,
                    log: Callable[[str], None] = print) -> Path:
    """``diouNMSKernels.cu`` -> an object file for ``archs`` (``nvcc -c``), cached by content.

    Args:
        out_dir: where the object goes [default: ``<yolo4 cache>/plugins/objects``]; an object for
            the same sources, flags, architectures and nvcc is reused.

    Raises:
        Yolo4Error: nvcc failed (first error lines quoted).
    """
    src = plugin_source_dir()
    flags = list(NVCC_FLAGS) + _gencode(archs)
    key = _digest(src, KERNEL_SOURCES, flags + [str(toolkit.nvcc), "%d.%d" % toolkit.version])
    if out_dir is None:
        from ..assets import cache_dir

        out_dir = cache_dir() / "plugins" / "objects"
    obj = Path(out_dir) / f"diouNMSKernels-{key}.o"
    if obj.is_file():
        log(f"kernels: cached {obj.name} (sm_{', sm_'.join(archs)})")
        return obj
    log(f"kernels: nvcc {toolkit.version[0]}.{toolkit.version[1]} for sm_{', sm_'.join(archs)} "
        f"(about 20-60 s per architecture) ...")
    with atomic_path(obj, ".o") as tmp:
        output = _run([toolkit.nvcc] + flags + ["-I", src, "-c", src / "diouNMSKernels.cu", "-o", tmp],
                      "nvcc (kernels)")
    atomic_write_text(obj.with_suffix(".log"), output)  # nvcc's warnings, if any, beside the object
    return obj


def _cxx() -> str:
    for c in (os.environ.get("CXX", ""), "g++", "c++", "clang++"):
        if c and shutil.which(c):
            return c
    raise Yolo4Error("no C++ compiler (g++) found: install one or set CXX")


def build_plugin(output: Optional[PathLike] = None, tensorrt_include: Optional[PathLike] = None,
                 tensorrt_lib: Optional[PathLike] = None, cuda: Optional[PathLike] = None,
                 archs: Sequence[str] = (), object_dir: Optional[PathLike] = None, load: bool = True,
                 log: Callable[[str], None] = print) -> BuildResult:
    """Compile and link ``libdiou_nms_plugin.so`` against the installed TensorRT.

    Args:
        output: the library file (``*.so``), or a folder to put ``libdiou_nms_plugin.so`` in [default:
            :func:`default_plugin_path`]. Written atomically (temp file + rename).
        tensorrt_include, tensorrt_lib, cuda: where TensorRT's headers / ``libnvinfer`` and the CUDA
            toolkit are, when not in the usual places (:func:`find_tensorrt`, :func:`find_cuda`).
        archs: GPU architectures (``87``, ``8.7``) [default: every supported target].
        object_dir: cache folder of the kernel objects (:func:`compile_kernels`).
        load: load the new library here to read its description (skipped when it cannot load, e.g.
            TensorRT's libraries need a driver this machine lacks).
        log: progress lines.

    Raises:
        Yolo4Error: TensorRT, CUDA or a compiler not found (the message names the option to give),
            or a compile/link error.
    """
    t0 = time.time()
    src = plugin_source_dir()
    trt = find_tensorrt(tensorrt_include, tensorrt_lib)
    assert trt.nvinfer is not None
    toolkit = find_cuda(cuda)
    sel = select_archs(archs, toolkit)
    out = Path(output) if output is not None else default_plugin_path()
    if out.is_dir() or (output is not None and not out.name.endswith(".so")):
        out = out / PLUGIN_LIBRARY_NAME  # a folder (made if missing)
    cxx = _cxx()
    log(f"TensorRT {trt.version_str}: headers {trt.include_dir}, library {trt.nvinfer}")
    log(f"CUDA {toolkit.version[0]}.{toolkit.version[1]}: {toolkit.root}")
    kernels = compile_kernels(toolkit, sel, object_dir, log=log)
    lib_dir = trt.nvinfer.parent
    with atomic_path(out, ".so") as tmp:
        glue = tmp.with_name(tmp.name + ".glue.o")
        try:
            log(f"glue: {cxx} against TensorRT {trt.version_str} ...")
            _run([cxx] + list(CXX_FLAGS) + ["-isystem", trt.include_dir, "-isystem", toolkit.include_dir,
                                            "-c", src / "diouNMSPlugin.cpp", "-o", glue], f"{cxx} (TensorRT glue)")
            link = [toolkit.nvcc, "-shared", "-o", tmp, glue, kernels, "-L", lib_dir, "-l:" + trt.nvinfer.name,
                    "-Xlinker", "--no-undefined"]
            if str(lib_dir) not in _SYSTEM_LIB_DIRS:
                link += ["-Xlinker", "-rpath," + str(lib_dir)]
            log(f"link: {out.name}")
            _run(link, "link")
        finally:
            if glue.exists():
                glue.unlink()
    res = BuildResult(path=out, tensorrt=trt, cuda=toolkit, archs=sel, seconds=time.time() - t0)
    if load:
        try:
            res.info = load_plugin_library(out)
        except Yolo4Error as e:
            res.warnings.append(f"the library was built but does not load here ({e.message})")
    return res


def build_kernels_library(out_dir: PathLike, archs: Sequence[str] = (), cuda: Optional[PathLike] = None,
                          log: Callable[[str], None] = print) -> Path:
    """The CUDA kernels alone as a shared library (no TensorRT): the C API of ``diouNMSKernels.h`` on
    device pointers, for checking the kernels against the CPU build and the numpy reference on a GPU
    (:class:`yolo4.plugins.NmsApi` with CuPy/pycuda buffers). Rebuilt only when its inputs changed.

    Raises:
        Yolo4Error: no CUDA toolkit, an architecture nvcc lacks, or a compile/link error.
    """
    toolkit = find_cuda(cuda)
    sel = select_archs(archs, toolkit)
    kernels = compile_kernels(toolkit, sel, log=log)
    out = Path(out_dir) / ("libdiou_nms_kernels-%s.so" % kernels.stem.split("-", 1)[1])
    if not out.is_file():
        with atomic_path(out, ".so") as tmp:
            _run([toolkit.nvcc, "-shared", "-o", tmp, kernels, "-Xlinker", "--no-undefined"], "link (kernels)")
    return out


def build_host_library(out_dir: PathLike, cxx: Optional[str] = None) -> Path:
    """The CPU build of the plugin's stages (``diouNMSHost.cpp``, no CUDA): a shared library with the
    same C API, for :meth:`yolo4.plugins.NmsApi.run_host`. Rebuilt only when its sources changed.

    Raises:
        Yolo4Error: no C++ compiler, or a compile error.
    """
    return _host_library(plugin_source_dir(), ("diouNMSHost.cpp", "diouNMSKernels.h", "diouNMSCommon.cuh",
                                               "diouNMSParameters.h"), "libdiou_nms_host", ["-DDIOU_NMS_HOST_ONLY"],
                         out_dir, cxx)


def _host_library(src: Path, names: Sequence[str], stem: str, extra_flags: Sequence[str], out_dir: PathLike,
                  cxx: Optional[str], key_extra: Sequence[str] = (),
                  main_source: Optional[Callable[[Path], Path]] = None, warnings: bool = True) -> Path:
    """g++ ``names[0]`` (the other names: headers it includes, part of the cache key) into
    ``out_dir/<stem>-<digest>.so``, atomically; reused when sources, flags, ``key_extra`` and compiler are
    the same. ``main_source(out_without_suffix)`` (optional) writes the file to compile instead of
    ``names[0]`` (e.g. a rewritten copy) and returns its path."""
    cxx = cxx or _cxx()
    flags = ["-std=c++17", "-O2", "-ffp-contract=off", "-fPIC", "-shared"] + list(extra_flags)
    out = Path(out_dir) / f"{stem}-{_digest(src, names, flags + [cxx] + list(key_extra))}.so"
    if not out.is_file():
        source = main_source(out.with_suffix("")) if main_source is not None else src / names[0]
        link = [f for f in flags if f.startswith(("-l", "-L", "-Wl,"))]  # after the source on the command
        compile_flags = [f for f in flags if f not in link]
        with atomic_path(out, ".so") as tmp:
            _run([cxx] + compile_flags + (["-Wall", "-Wextra"] if warnings else []) + [source, "-o", tmp] + link,
                 f"{cxx} (CPU build)")
    return out


# ---- the CUDA kernels on the CPU (HIP-CPU) --------------------------------------------------------
#: which kernel file each HIP-CPU build compiles, and the headers it includes (cache key)
HIPCPU_KERNELS = {
    "diou_nms": ("diouNMSKernels.cu", "diouNMSKernels.h", "diouNMSCommon.cuh", "diouNMSParameters.h",
                 "test/hipcpu/cub_hipcpu.h", "test/hipcpu/cub/cub.cuh", "test/hipcpu/cubHipcpuCheck.cpp",
                 "test/hipcpu/nmsInspect.cpp"),
    "preprocess": ("preprocess.cu", "preprocessCommon.h"),
}


def build_hipcpu_library(which: str, out_dir: PathLike, hip_cpu: PathLike, tbb_prefix: PathLike,
                         sanitize: str = "", defines: Sequence[str] = (), cxx: Optional[str] = None) -> Path:
    """The unchanged CUDA kernel file ``which`` (``"diou_nms"``: ``diouNMSKernels.cu``; ``"preprocess"``:
    ``preprocess.cu``) compiled with g++ for the CPU against the HIP CPU Runtime, for the test suite.

    ``hip_cpu`` is the HIP-CPU folder (``include/``, ``cuda-shim/``, ``cu2hipcpu.py``: the launch rewriter
    ``k<<<g, b, s, st>>>(...)`` -> ``hipLaunchKernelGGL``), ``tbb_prefix`` a prefix with TBB's headers
    (``include/tbb``) and ``lib/libtbb.so`` (the ``tbb-devel`` wheel's venv). The DIoU-NMS kernels get the CPU
    stand-in of CUB (``diou_nms/test/hipcpu``, first on the include path) and the stand-in's own check entry
    points (``cubHipcpuCheck.cpp``: ``cubBlockCheck``, ``cubScanCheck``, ``cubSortCheck``) and a view of the
    workspace after a launch (``nmsInspect.cpp``: ``diouNMSInspect``). The library exports the file's C
    API plus ``int hipcpu_sync(void)`` (``hipDeviceSynchronize``: launches are asynchronous, as on a GPU; call
    it before reading outputs) and ``void* hipcpu_stream(void)``, a created stream to launch on (HIP-CPU's
    null stream can run a sequence of launches out of order: it is drained from two threads). Pointers are host pointers. Every fiber (GPU thread) gets
    :data:`HIPCPU_FIBER_STACK` bytes of stack (HIP-CPU's own 7 KiB overflow under the sanitizers).
    ``sanitize``: ``-fsanitize=`` these (e.g. ``"undefined"``, aborting at the first report; ``"address"``
    needs its runtime preloaded). ``defines``: extra ``-D`` flags. Cached in ``out_dir`` by content (sources,
    HIP-CPU's headers and rewriter, flags, compiler).

    Raises:
        Yolo4Error: an unknown ``which``, HIP-CPU or TBB missing, or a compile error.
    """
    import sys

    if which not in HIPCPU_KERNELS:
        raise Yolo4Error(f"unknown HIP-CPU kernel file {which!r} (one of {', '.join(HIPCPU_KERNELS)})")
    hip = Path(hip_cpu).resolve()
    tbb = Path(tbb_prefix).resolve()
    rewriter = hip / "cu2hipcpu.py"
    if not (hip / "include" / "hip" / "hip_runtime.h").is_file() or not rewriter.is_file():
        raise Yolo4Error("not a HIP-CPU folder (include/hip/hip_runtime.h, cu2hipcpu.py)", hip)
    if not (tbb / "include" / "tbb").is_dir() or not (tbb / "lib" / "libtbb.so").exists():
        raise Yolo4Error("TBB headers and libtbb.so not found under this prefix (pip install tbb-devel)", tbb)
    src = preprocess_source_dir() if which == "preprocess" else plugin_source_dir()
    names = HIPCPU_KERNELS[which]
    flags = ["-O1"]  # HIP-CPU's templates compile 2x slower at -O2, and run no faster here
    if which != "preprocess":
        flags += ["-I", str(src / "test" / "hipcpu")]  # the CUB stand-in first
    flags += ["-I", str(hip / "cuda-shim"), "-I", str(hip / "include"), "-isystem", str(tbb / "include"),
              "-I", str(src)] + ["-D" + d for d in defines]
    if sanitize:  # no -g: a lighter build
        flags += ["-fsanitize=" + sanitize, "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
    flags += ["-L" + str(tbb / "lib"), "-ltbb", "-lpthread", "-Wl,-rpath," + str(tbb / "lib")]
    hip_files = sorted(str(p) for p in (hip / "include").rglob("*.h*")) + sorted(
        str(p) for p in (hip / "cuda-shim").glob("*.h")) + [str(rewriter)]
    key = [hashlib.sha256(b"".join(Path(p).read_bytes() for p in hip_files)).hexdigest()]

    prologue = _hipcpu_fiber_stack_prologue(hip)
    epilogue = ('\n#include "cubHipcpuCheck.cpp"\n#include "nmsInspect.cpp"\n' if which == "diou_nms" else "") + (
        '\nextern "C" __attribute__((visibility("default"))) int hipcpu_sync(void)\n'
        "{\n    return static_cast<int>(hipDeviceSynchronize());\n}\n"
        # HIP-CPU drains the null stream from two threads at once (Runtime::wait_all_streams_: an async task
        # and the parallel loop over all streams, which holds the null stream too), so launches that arrive
        # while it drains can run out of order: the tests launch on a created stream instead
        '\nextern "C" __attribute__((visibility("default"))) void* hipcpu_stream(void)\n'
        "{\n    static hipStream_t const s = [] {\n        hipStream_t r{};\n"
        "        return hipStreamCreate(&r) == hipSuccess ? r : nullptr;\n    }();\n    return s;\n}\n")
    key += [prologue, epilogue]

    def rewrite(stem: Path) -> Path:
        cpp = stem.with_suffix(".cpp")
        _run([sys.executable, rewriter, src / names[0], cpp], "cu2hipcpu.py")
        cpp.write_text(prologue + cpp.read_text() + epilogue)
        return cpp

    stem = "libhipcpu_%s%s" % (which, "_" + sanitize.replace(",", "_") if sanitize else "")
    return _host_library(src, names, stem, flags, out_dir, cxx, key_extra=key, main_source=rewrite, warnings=False)


#: stack bytes of each HIP-CPU fiber (one per GPU thread of a block) in our builds
HIPCPU_FIBER_STACK = 256 * 1024


def _hipcpu_fiber_stack_prologue(hip: Path) -> str:
    """C++ put before a HIP-CPU translation unit: every fiber gets :data:`HIPCPU_FIBER_STACK` bytes of stack.

    HIP-CPU creates a block's fibers with ``co_create(max(7168, 256), ...)`` (``hip/detail/fiber.hpp``,
    ``tile.hpp``): 7 KiB per GPU thread, with nothing to catch a frame that runs past it (it would write into
    the heap). The kernels' frames fit at -O1; sanitizer-instrumented frames are larger (ASan's redzones
    most of all), so the builds give each fiber more, as a precaution (no overflow was observed). libco's
    header is included first (with the macros ``fiber.hpp`` sets), then ``co_create`` is redefined as a macro
    raising the size, so HIP-CPU's headers stay as they are."""
    libco = hip / "external" / "libco" / "libco.h"
    return ("// yolo4.plugins.build: HIP-CPU's fibers get %d-byte stacks (7 KiB upstream)\n"
            "#define LIBCO_MP\n#if !defined(__clang__) && !defined(_MSC_VER)\n#define LIBCO_MPROTECT\n#endif\n"
            "#include \"%s\"\n#if defined(thread_local)\n#undef thread_local\n#endif\n"
            "#define co_create(bytes, entry) co_create((bytes) > %du ? (bytes) : %du, entry)\n"
            % (HIPCPU_FIBER_STACK, libco, HIPCPU_FIBER_STACK, HIPCPU_FIBER_STACK))


# ---- GPU preprocessing (yolo4/plugins/preprocess) -------------------------------------------------
#: file name of the GPU preprocessing library (no TensorRT; :class:`yolo4.runtime.gpu_preprocess.GpuPreprocessor`)
PREPROCESS_LIBRARY_NAME = "libyolo4_preprocess.so"
#: files the preprocessing kernel is compiled from (the CPU build: ``preprocessHost.cpp`` + the header)
PREPROCESS_SOURCES = ("preprocess.cu", "preprocessCommon.h")


def preprocess_source_dir() -> Path:
    """``yolo4/plugins/preprocess`` (package data), or ``$YOLO4_PLUGIN_SOURCE/../preprocess`` of a source
    checkout when the installed package lacks it.

    Raises:
        Yolo4Error: not found.
    """
    here = Path(__file__).resolve().parent / "preprocess"
    candidates = [here]
    env = os.environ.get("YOLO4_PLUGIN_SOURCE", "").strip()
    if env:
        candidates.append(Path(os.path.expanduser(env)).parent / "preprocess")
    for d in candidates:
        if all((d / n).is_file() for n in PREPROCESS_SOURCES):
            return d
    raise Yolo4Error("the GPU preprocessing sources (yolo4/plugins/preprocess) are missing from this install: "
                     "set YOLO4_PLUGIN_SOURCE to the yolo4/plugins/diou_nms folder of a yolo4 source checkout")


def default_preprocess_path() -> Path:
    """Where ``yolo4 build-plugin`` writes the GPU preprocessing library and the runtime looks for it:
    ``libyolo4_preprocess.so`` beside :func:`yolo4.plugins.default_plugin_path` (``$YOLO4_PLUGIN_LIB``'s
    folder if set, else ``<yolo4 cache>/plugins``)."""
    return default_plugin_path().parent / PREPROCESS_LIBRARY_NAME


def build_preprocess_library(output: Optional[PathLike] = None, cuda: Optional[PathLike] = None,
                             archs: Sequence[str] = (), object_dir: Optional[PathLike] = None,
                             log: Callable[[str], None] = print) -> Path:
    """Compile and link ``libyolo4_preprocess.so`` (``preprocess.cu``: the one-kernel GPU preprocessing,
    C entry point ``yolo4_preprocess_launch``) with nvcc; no TensorRT needed.

    Args:
        output: the library file (``*.so``), or a folder to put ``libyolo4_preprocess.so`` in [default:
            :func:`default_preprocess_path`]. Written atomically (temp file + rename).
        cuda: the CUDA toolkit, when not in the usual places (:func:`find_cuda`).
        archs: GPU architectures (``87``, ``8.7``) [default: every supported target, as the plugin].
        object_dir: cache folder [default: ``<yolo4 cache>/plugins/objects``]: a library built from the same
            sources, flags, architectures and nvcc is copied from there instead of recompiled.
        log: progress lines.

    Returns:
        The library's path (the CUDA runtime linked statically, like the plugin; nvcc's output, warnings
        included, in ``<library>.log`` beside it).

    Raises:
        Yolo4Error: no CUDA toolkit, an architecture nvcc lacks, or a compile/link error (first lines quoted).
    """
    src = preprocess_source_dir()
    toolkit = find_cuda(cuda)
    sel = select_archs(archs, toolkit)
    out = Path(output) if output is not None else default_preprocess_path()
    if out.is_dir() or (output is not None and not out.name.endswith(".so")):
        out = out / PREPROCESS_LIBRARY_NAME
    flags = list(NVCC_FLAGS) + _gencode(sel)
    key = _digest(src, PREPROCESS_SOURCES, flags + [str(toolkit.nvcc), "%d.%d" % toolkit.version])
    if object_dir is None:
        from ..assets import cache_dir

        object_dir = cache_dir() / "plugins" / "objects"
    cached = Path(object_dir) / f"libyolo4_preprocess-{key}.so"
    cached_log = cached.with_name(cached.name + ".log")
    if cached.is_file():
        log(f"preprocess: cached {cached.name} (sm_{', sm_'.join(sel)})")
    else:
        log(f"preprocess: nvcc {toolkit.version[0]}.{toolkit.version[1]} for sm_{', sm_'.join(sel)} ...")
        with atomic_path(cached, ".so") as tmp:
            text = _run([toolkit.nvcc] + flags + ["-shared", "-I", src, src / "preprocess.cu", "-o", tmp,
                                                  "-Xlinker", "--no-undefined"], "nvcc (preprocess)")
        atomic_write_text(cached_log, text)
    with atomic_path(out, ".so") as tmp:
        shutil.copyfile(str(cached), str(tmp))
    atomic_write_text(out.with_name(out.name + ".log"), cached_log.read_text() if cached_log.is_file() else "")
    return out


def build_preprocess_host_library(out_dir: PathLike, cxx: Optional[str] = None) -> Path:
    """The CPU build of the GPU preprocessing (``preprocessHost.cpp``, g++ only): the same C entry point and
    per-pixel arithmetic on host pointers, for :meth:`yolo4.runtime.gpu_preprocess.PreprocessApi.run_host`
    (what the test suite compares with :func:`yolo4.runtime.preprocess.preprocess`). Rebuilt only when its
    sources changed.

    Raises:
        Yolo4Error: no C++ compiler, or a compile error.
    """
    return _host_library(preprocess_source_dir(), ("preprocessHost.cpp", "preprocessCommon.h"),
                         "libyolo4_preprocess_host", ["-fvisibility=hidden"], out_dir, cxx)
