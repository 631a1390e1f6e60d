"""The DIoU-NMS TensorRT plugin compiles, for every TensorRT and GPU a user may have.

- The TensorRT glue (``yolo4/plugins/diou_nms/diouNMSPlugin.cpp``) against the public headers of 8.5.2,
  8.6.1, 10.0.1, 10.13.3 and 11.1 (``../shared/trt-headers``): the IPluginV2DynamicExt glue everywhere,
  the IPluginV3 glue from 10.0, and the default build (both where they exist), ``g++ -std=c++17
  -fsyntax-only -Wall -Wextra -Werror`` with the headers as ``-isystem``.
- The CUDA kernels with this machine's nvcc for sm_75 (T4) and sm_87 (Orin), object only, through
  :func:`yolo4.plugins.build.compile_kernels` (the code ``yolo4 build-plugin`` runs; each architecture
  once per session, the object cached for the tests below), without a single warning.
- ``yolo4 build-plugin`` links the whole library against a stand-in ``libnvinfer``
  (``yolo4/plugins/diou_nms/test/stubNvinfer.cpp``: a registry that records what registers itself; TensorRT's
  libraries cannot be installed here), the library loads through :func:`yolo4.plugins.load_plugin_library`
  and registers one creator, ``DIoUNMS_TRT`` version ``1``, of the interface diouNMSCompat.h chooses.

No GPU here: the kernels are compiled, never run on a GPU (``test_plugin_host.py`` runs their stages on the
CPU, ``test_plugin_hipcpu.py`` the kernels themselves through HIP-CPU).
"""

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from yolo4.errors import Yolo4Error

from .conftest import SHARED_DATA, assert_user_error, run_cli

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "yolo4" / "plugins" / "diou_nms"
TRT_VERSIONS = ("8.5.2", "8.6.1", "10.0.1", "10.13.3", "11.1")
#: (release, glue): v2 = IPluginV2DynamicExt only, v3 = IPluginV3 only (10.0+), default = what build-plugin compiles
GLUE_MATRIX = [(v, g) for v in TRT_VERSIONS for g in ("v2", "v3", "default") if g != "v3" or not v.startswith("8.")]
GLUE_DEFINES = {"v2": ["-DDIOU_NMS_WITH_V3=0"], "v3": ["-DDIOU_NMS_WITH_V2=0"], "default": []}
#: what the library registers as DIoUNMS_TRT/1 by release (the ONNX parser imports V3 plugins from 10.0:
#: onnx-tensorrt 10.0-GA FallbackPluginImporter;
#: the V2 creator goes through registerCreator(IPluginCreator&), which 11.x no longer has)
REGISTERED = {"8.5.2": "IPluginCreator", "8.6.1": "IPluginCreator", "10.0.1": "PLUGIN CREATOR_V3ONE",
              "10.13.3": "PLUGIN CREATOR_V3ONE", "11.1": "PLUGIN CREATOR_V3ONE"}
KERNEL_ARCHS = ("75", "87")


@pytest.fixture(scope="session")
def trt_headers():
    """../shared/trt-headers (one include/ per release); skips when absent."""
    d = SHARED_DATA.parent / "trt-headers"
    if not all((d / v / "include" / "NvInferRuntime.h").is_file() for v in TRT_VERSIONS):
        pytest.skip(f"{d} absent: TensorRT headers of {', '.join(TRT_VERSIONS)} unavailable")
    return d


@pytest.fixture(scope="session")
def cxx():
    c = shutil.which("g++")
    if not c:
        pytest.skip("g++ is not installed")
    return c


@pytest.fixture(scope="session")
def cuda():
    """The local CUDA toolkit (nvcc and its headers); skips when absent."""
    from yolo4.plugins.build import find_cuda

    try:
        return find_cuda()
    except Yolo4Error as e:
        pytest.skip(f"no CUDA toolkit: {e}")


@pytest.fixture(scope="session")
def kernel_objects(cuda, tmp_path_factory):
    """arch -> (object path, nvcc output, seconds): each architecture compiled once per session, into the
    session's yolo4 cache, where `yolo4 build-plugin` below finds it."""
    from yolo4.plugins.build import compile_kernels

    done = {}

    def get(arch):
        if arch not in cuda.archs:
            pytest.skip(f"nvcc {cuda.version} cannot compile sm_{arch}")
        if arch not in done:
            t0 = time.time()
            obj = compile_kernels(cuda, [arch], log=lambda msg: None)
            log = obj.with_suffix(".log")
            done[arch] = (obj, log.read_text() if log.is_file() else "", time.time() - t0)
        return done[arch]

    return get


def _syntax_check(cxx, include, cuda, defines, source=SRC / "diouNMSPlugin.cpp"):
    cmd = [cxx, "-std=c++17", "-fsyntax-only", "-Wall", "-Wextra", "-Werror", *defines,
           "-isystem", str(include), "-isystem", str(cuda.include_dir), str(source)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("version,glue", GLUE_MATRIX, ids=[f"trt{v}-{g}" for v, g in GLUE_MATRIX])
def test_glue_compiles(version, glue, trt_headers, cxx, cuda):
    p = _syntax_check(cxx, trt_headers / version / "include", cuda, GLUE_DEFINES[glue])
    assert p.returncode == 0, p.stderr[-3000:]
    assert "warning" not in p.stderr, p.stderr[-3000:]


def test_v3_glue_needs_tensorrt_10(trt_headers, cxx, cuda):
    """Asking for IPluginV3 on 8.x stops with the compat header's message, not a cascade of errors."""
    p = _syntax_check(cxx, trt_headers / "8.6.1" / "include", cuda, ["-DDIOU_NMS_WITH_V3=1"])
    assert p.returncode != 0 and "IPluginV3 needs TensorRT 10.0 or later" in p.stderr, p.stderr[-2000:]


@pytest.mark.parametrize("version", ("8.5.2", "10.13.3", "11.1"))
def test_test_helpers_compile(version, trt_headers, cxx, cuda):
    """The stand-in libnvinfer and the glue driver of test_plugin_host.py compile too."""
    for f in ("stubNvinfer.cpp", "glueHostCheck.cpp"):
        p = _syntax_check(cxx, trt_headers / version / "include", cuda, ["-DDIOU_NMS_REGISTER=0"], SRC / "test" / f)
        assert p.returncode == 0, (f, p.stderr[-3000:])


@pytest.mark.parametrize("arch", KERNEL_ARCHS, ids=[f"sm_{a}" for a in KERNEL_ARCHS])
def test_kernels_compile(arch, kernel_objects, cuda):
    obj, log, seconds = kernel_objects(arch)
    assert obj.is_file() and obj.stat().st_size > 10_000
    assert "warning" not in log.lower(), log[-3000:]
    cuobjdump = cuda.root / "bin" / "cuobjdump"
    if cuobjdump.is_file():
        listing = subprocess.run([str(cuobjdump), "--list-elf", "--list-ptx", str(obj)], capture_output=True,
                                 text=True).stdout
        assert f"sm_{arch}" in listing, listing
    print(f"sm_{arch}: {seconds:.1f} s")


def test_kernels_library_without_tensorrt(kernel_objects, cuda, tmp_path):
    """The kernels alone link into a library with the C API (for GPU checks with CuPy buffers); without
    a GPU its workspace size falls back to a bound and a launch returns a CUDA error code."""
    import ctypes
    import subprocess as sp

    from yolo4.plugins.build import build_kernels_library

    kernel_objects("75")
    lib = build_kernels_library(tmp_path, ["75"], log=lambda msg: None)
    code = ("import ctypes, sys\n"
            "from yolo4.plugins import NmsApi, nms_parameters\n"
            "from yolo4.nms_params import NmsParams\n"
            "api = NmsApi(ctypes.CDLL(sys.argv[1]))\n"
            "p = nms_parameters(NmsParams(), (416, 416), 2, 2535, 80)\n"
            "f = 1 << 20\n"
            "print(api.workspace_size(p), api.launch(p, f, f, None, f, f, f, f, f))\n")
    q = sp.run([sys.executable, "-c", code, str(lib)], capture_output=True, text=True, cwd=REPO, timeout=120,
               env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert q.returncode == 0, q.stderr[-2000:]
    size, status = map(int, q.stdout.split())
    assert size > 16 * 2 * 2535 * 80 and status > 0
    assert ctypes.CDLL(str(lib)).diouNMSLaunch  # exported


def test_default_architectures(cuda):
    """Every target the local nvcc supports (nvcc 12.x: 70 to 90; nvcc 13: 75 to 90)."""
    from yolo4.plugins.build import TARGET_ARCHS, select_archs

    archs = select_archs((), cuda)
    assert archs == tuple(a for a in TARGET_ARCHS if a in cuda.archs)
    assert select_archs(["8.7", "sm_75", "87"], cuda) == ("75", "87")


def test_header_versions(trt_headers):
    from yolo4.plugins.build import find_tensorrt, tensorrt_header_version

    want = {"8.5.2": (8, 5, 2), "8.6.1": (8, 6, 1), "10.0.1": (10, 0, 1), "10.13.3": (10, 13, 3), "11.1": (11, 1, 0)}
    for v, t in want.items():
        assert tensorrt_header_version(trt_headers / v / "include") == t
        found = find_tensorrt(trt_headers / v / "include", need_library=False)
        assert found.version == t and found.nvinfer is None


# ---- yolo4 build-plugin --------------------------------------------------------------------------------
def _stub_nvinfer(cxx, include, cuda, out_dir, major):
    out_dir.mkdir(parents=True, exist_ok=True)
    lib = out_dir / f"libnvinfer.so.{major}"
    cmd = [cxx, "-std=c++17", "-O1", "-shared", "-fPIC", "-isystem", str(include), "-isystem", str(cuda.include_dir),
           str(SRC / "test" / "stubNvinfer.cpp"), f"-Wl,-soname,libnvinfer.so.{major}", "-o", str(lib)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return lib


LOAD_AND_REPORT = textwrap.dedent("""
    import ctypes, json, sys
    from yolo4.plugins import DiouNMSParameters, NmsApi, load_plugin_library
    info = load_plugin_library(sys.argv[1])
    stub = ctypes.CDLL(sys.argv[2])
    stub.stubRegistered.restype = ctypes.c_char_p
    api = NmsApi(ctypes.CDLL(sys.argv[1]))
    p = DiouNMSParameters(scoreThreshold=0.25, iouThreshold=0.45, betaNms=0.6, nmsKind=1, maxOutputBoxes=100,
                          topK=1000, classAgnostic=0, inputWidth=416, inputHeight=416, batchSize=8, numBoxes=10647,
                          numClasses=80, dataType=0, frameMode=0)
    size = api.workspace_size(p)
    fake = 1 << 20  # never dereferenced on the host: the launch stops at the first CUDA call
    status = api.launch(p, fake, fake, None, fake, fake, fake, fake, fake)  # no GPU here: a CUDA error code
    bad = api.launch(DiouNMSParameters(), 0, 0, None, 0, 0, 0, 0, 0)
    print(json.dumps({"info": info, "registered": stub.stubRegistered().decode(), "workspace": size,
                      "status": status, "bad": bad}))
""")


@pytest.mark.parametrize("version", TRT_VERSIONS)
def test_build_plugin_links_and_registers(version, trt_headers, cxx, cuda, kernel_objects, tmp_path):
    """`yolo4 build-plugin` against each release's headers and a stand-in libnvinfer: the library links
    (--no-undefined), loads, and registers DIoUNMS_TRT/1 in namespace "" with the interface of
    diouNMSCompat.h; its C API answers without a GPU (workspace bound, an error code from the launch)."""
    import json

    if "75" not in cuda.archs:
        pytest.skip("the local nvcc cannot compile sm_75")
    kernel_objects("75")  # compiled once per session; build-plugin reuses the cached object
    include = trt_headers / version / "include"
    stub = _stub_nvinfer(cxx, include, cuda, tmp_path / "trt-lib", int(version.split(".")[0]))
    t0 = time.time()
    p = run_cli("build-plugin", "--tensorrt-include", include, "--tensorrt-lib", stub.parent, "--arch", "75",
                "--output", tmp_path / "out")
    seconds = time.time() - t0
    assert p.returncode == 0, p.stdout + p.stderr
    lib = tmp_path / "out" / "libdiou_nms_plugin.so"
    assert lib.is_file() and f"library:  {lib.resolve()}" in p.stdout, p.stdout
    assert "kernels: cached" in p.stdout, p.stdout  # the session's sm_75 object
    assert not [f for f in lib.parent.iterdir() if f.name.startswith(".")], "temp files left behind"
    q = subprocess.run([sys.executable, "-c", LOAD_AND_REPORT, str(lib), str(stub)], capture_output=True, text=True,
                       cwd=REPO, timeout=300, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert q.returncode == 0, q.stderr[-3000:]
    r = json.loads(q.stdout.strip().splitlines()[-1])
    assert r["registered"] == f"DIoUNMS_TRT|1||{REGISTERED[version]}\n", r
    short = version if version.count(".") == 2 else version + ".0"
    assert r["info"].startswith("DIoUNMS_TRT version 1: ") and f"TensorRT {short} headers" in r["info"], r
    assert ("IPluginV3 registered" in r["info"]) == REGISTERED[version].endswith("V3ONE"), r
    assert f"plugin:   {r['info']}" in p.stdout
    assert r["workspace"] > 16 * 8 * 10647 * 80, r  # the bound used when CUB cannot ask a device
    assert r["status"] > 0 and r["bad"] == -1, r
    print(f"TensorRT {version}: build-plugin {seconds:.1f} s; {r['info']}")


def test_build_plugin_says_which_path_to_give(trt_headers, cxx, cuda, tmp_path):
    include = trt_headers / "10.13.3" / "include"
    p = run_cli("build-plugin", "--tensorrt-include", tmp_path)
    assert_user_error(p, "--tensorrt-include")
    p = run_cli("build-plugin", "--tensorrt-include", include, "--tensorrt-lib", tmp_path)
    assert_user_error(p, "libnvinfer.so of TensorRT 10", "--tensorrt-lib")
    stub = _stub_nvinfer(cxx, include, cuda, tmp_path / "lib", 10)
    p = run_cli("build-plugin", "--tensorrt-include", include, "--tensorrt-lib", stub.parent, "--cuda", tmp_path)
    assert_user_error(p, "CUDA toolkit", "--cuda")


def test_build_plugin_rejects_an_architecture_nvcc_lacks(trt_headers, cxx, cuda, tmp_path):
    old = next((a for a in ("70", "72", "60") if a not in cuda.archs), None)
    if old is None:
        pytest.skip("the local nvcc supports sm_70 and sm_72")
    stub = _stub_nvinfer(cxx, trt_headers / "10.13.3" / "include", cuda, tmp_path / "lib", 10)
    p = run_cli("build-plugin", "--tensorrt-include", trt_headers / "10.13.3" / "include", "--tensorrt-lib",
                stub.parent, "--arch", old, "-o", tmp_path)
    assert_user_error(p, f"sm_{old}", "cannot compile")


@pytest.mark.skipif(not shutil.which("cmake"), reason="cmake is not installed")
def test_cmake_configures(trt_headers, cxx, cuda, tmp_path):
    """CMakeLists.txt finds the TensorRT release from its headers and trims the architectures to nvcc's."""
    stub = _stub_nvinfer(cxx, trt_headers / "11.1" / "include", cuda, tmp_path / "lib", 11)
    p = subprocess.run(["cmake", "-S", str(SRC), "-B", str(tmp_path / "build"),
                        f"-DTENSORRT_INCLUDE_DIR={trt_headers / '11.1' / 'include'}", f"-DTENSORRT_LIB_DIR={stub.parent}",
                        f"-DCMAKE_CUDA_COMPILER={cuda.nvcc}"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    assert "TensorRT 11.1.0" in p.stdout
    want = [a for a in ("70", "72", "75", "80", "86", "87", "89", "90") if a in cuda.archs]
    line = next(ln for ln in p.stdout.splitlines() if "CUDA architectures:" in ln)
    assert line.split(": ", 1)[1] == ";".join([f"{a}-real" for a in want] + [f"{want[-1]}-virtual"]), line
