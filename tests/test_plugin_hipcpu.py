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
4. Once more under UBSan with every kernel buffer against a guard page (tests/hipcpu_sanitizer_run.py, a
   subprocess), with positive controls (slow: about 4 minutes with the build); under ASan + UBSan on request
   (``YOLO4_HIPCPU_ASAN=1``: that build takes 18-26 CPU-minutes).

Every launch goes to a created stream (``hipcpu_stream()``): HIP-CPU drains its null stream from two threads
at once, so a sequence of launches on it can run out of order (seen under UBSan: outputs never written).

Skipped with the reason when ``../shared/hip-cpu``, tbb-devel or g++ is absent.
"""

import ctypes
import os
import signal
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from yolo4.nms_params import NmsParams

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
    cluster_case,
    glue_builder,
    long_group_case,
    matrix_case,
    random_case,
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
    scan, scan2, aggregate = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)
    reduce = np.zeros(5, np.int32)
    assert lib.cubBlockCheck(_ptr(x), 5, _ptr(scan), _ptr(reduce), _ptr(scan2), _ptr(aggregate)) == 0
    blocks = x.reshape(5, 256)
    assert np.array_equal(reduce, blocks.sum(1))
    assert np.array_equal(scan.reshape(5, 256), np.cumsum(blocks, 1) - blocks)
    assert np.array_equal(scan2, scan)
    assert np.array_equal(aggregate.reshape(5, 256), np.repeat(blocks.sum(1, keepdims=True), 256, 1))


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


# ---- 2b. the top_k cut (stage 1a): only what can rank among the top_k enters sort 1 --------------------
def _cut_case(name):
    """(boxes, scores, params) of a case where top_k is below the candidates (every one but ``sparse``'s second
    image): continuous scores, float16 (ties every few values), coarse ties (1/64 steps), all scores equal,
    top_k 1, and a batch whose second image has fewer candidates than top_k (no cut there)."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    if name == "continuous":
        boxes, scores = random_case(rng, 3, 2535, 80)
        return boxes, scores, NmsParams(score_threshold=0.001, top_k=1000, max_output_boxes=300)
    if name == "float16":
        boxes, scores = random_case(rng, 2, 2000, 40, np.float16)
        return boxes, scores, NmsParams(score_threshold=0.001, top_k=500, max_output_boxes=100, nms_kind="diounms")
    if name == "coarse-ties":
        boxes, scores = cluster_case(rng, 2, 3000, 20, coarse=True)
        return boxes, scores, NmsParams(score_threshold=0.0, top_k=300, max_output_boxes=200)
    if name == "all-equal":
        boxes, _ = random_case(rng, 2, 500, 4)
        return boxes, np.full((2, 500, 4), 0.5, np.float32), NmsParams(score_threshold=0.1, top_k=100)
    if name == "top_k-1":
        boxes, scores = random_case(rng, 4, 1000, 10)
        return boxes, scores, NmsParams(score_threshold=0.01, top_k=1, max_output_boxes=5, class_agnostic=True)
    if name == "sparse":
        boxes, scores = random_case(rng, 2, 1500, 30)
        keep = np.zeros(scores[1].size, bool)
        keep[rng.choice(keep.size, 50, replace=False)] = True
        scores[1] = np.where(keep.reshape(scores[1].shape), scores[1] + 0.2, 0.0)
        return boxes, scores, NmsParams(score_threshold=0.05, top_k=200, max_output_boxes=100)
    raise KeyError(name)


CUT_CASES = ("continuous", "float16", "coarse-ties", "all-equal", "top_k-1", "sparse")


def _expected_cut(scores, params):
    """numpy: per image, the candidates sort 1 must see and an upper bound of the cut. Without a cut (at most
    top_k candidates) all of them, cut 0; else those whose float32 bits are >= the top_k-th largest
    candidate's bits with the low 9 bits cleared (the radix select's resolution: bits 30..9)."""
    thr = float(np.asarray(params.score_threshold, scores.dtype))  # the plugin rounds it to the input type
    counts, bounds = [], []
    for img in scores.reshape(scores.shape[0], -1):
        bits = np.sort(img[img > thr].astype(np.float32).view(np.uint32))[::-1]
        if len(bits) <= params.top_k:
            counts.append(len(bits))
            bounds.append(0)
        else:
            kth = int(bits[params.top_k - 1])
            counts.append(int((bits >= (kth >> 9 << 9)).sum()))
            bounds.append(kth)
    return counts, bounds


@pytest.mark.parametrize("name", CUT_CASES)
def test_kernels_top_k_cut(kernels, name):
    """Same outputs as the reference (bit for bit), and sort 1 saw exactly the candidates within the radix
    select's resolution of the top_k-th score: about top_k per image, not every candidate."""
    from yolo4.plugins import nms_parameters

    boxes, scores, params = _cut_case(name)
    run_both(kernels, boxes, scores, params)  # the outputs
    b, n, c = scores.shape
    p = nms_parameters(params, (416, 416), b, n, c, half=scores.dtype == np.float16)
    ws = np.zeros(kernels.workspace_size(p) + 256, np.uint8)
    ws_ptr = (ws.ctypes.data + 255) // 256 * 256
    k = params.max_output_boxes
    out = [np.zeros((b, 1), np.int32), np.zeros((b, k, 4), scores.dtype), np.zeros((b, k), scores.dtype),
           np.zeros((b, k), np.int32)]
    assert kernels.launch(p, boxes.ctypes.data, scores.ctypes.data, None, *[o.ctypes.data for o in out],
                          ws_ptr) == 0
    sorted_, cut = np.zeros(b, np.int32), np.zeros(b, np.uint32)
    inspect = kernels.lib.diouNMSInspect
    inspect.argtypes = [ctypes.c_void_p] * 4
    assert inspect(ctypes.addressof(p), ws_ptr, sorted_.ctypes.data, cut.ctypes.data) == 0
    counts, bounds = _expected_cut(scores, params)
    assert sorted_.tolist() == counts
    for i, bound in enumerate(bounds):
        if bound == 0:
            assert cut[i] == 0
        else:
            assert 0 < cut[i] <= bound and cut[i] >= bound >> 20 << 20
    candidates = (scores.reshape(b, -1) > np.asarray(params.score_threshold, scores.dtype)).sum(1)
    if name == "continuous":  # the point of the cut: a few more than top_k instead of ~1e5 per image
        assert (candidates > 50 * params.top_k).all() and (sorted_ < 1.05 * params.top_k).all()


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


# ---- 4. UBSan and guard pages -----------------------------------------------------------------------------
@pytest.mark.slow
def test_kernels_under_ubsan_with_guard_pages(request, tmp_path_factory):
    """The matrix (random batches, clusters, the long group) through a ``-fsanitize=undefined`` build (aborting
    at the first report), every buffer against a PROT_NONE guard page, once ending at it (overruns fault) and
    once starting after it (underruns fault): no report, no fault, outputs still exact. Positive controls: a
    workspace 256 bytes short and a scores buffer one value short fault (a write and a read past the end),
    and a signed overflow inside a kernel launch is reported. (The guard pages give this build
    AddressSanitizer's heap bounds checks on every kernel buffer; ASan itself is the opt-in test below.)"""
    lib = hipcpu_builds.build(request, tmp_path_factory, "diou_nms", sanitize="undefined")
    env = dict(os.environ, UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1", PYTHONPATH=str(REPO))

    def run(mode):
        return subprocess.run([sys.executable, "-m", "tests.hipcpu_sanitizer_run", str(lib), mode],
                              capture_output=True, text=True, env=env, cwd=REPO, timeout=1800)

    for mode in ("tail", "head"):
        p = run(mode)
        assert p.returncode == 0, (mode, (p.stdout + p.stderr)[-4000:])
        assert "runtime error:" not in p.stderr, p.stderr[-4000:]
        assert f"cases {len(RANDOM_CASES) + CLUSTER_SEEDS + 1} " in p.stdout
    for control in ("overflow", "short-scores"):
        p = run(control)
        assert p.returncode == -signal.SIGSEGV, (control, p.returncode, (p.stdout + p.stderr)[-3000:])
    p = run("ubsan-control")
    assert p.returncode != 0 and "runtime error: signed integer overflow" in p.stderr, p.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("YOLO4_HIPCPU_ASAN"),
                    reason="opt-in (YOLO4_HIPCPU_ASAN=1): the AddressSanitizer build takes 18-26 CPU-minutes, "
                    "beyond CI's budget; the UBSan + guard-page test above runs everywhere")
def test_kernels_under_address_sanitizer(request, tmp_path_factory):
    """The matrix through an ``-fsanitize=address,undefined`` build (the runtimes preloaded into Python), the
    buffers tail-guarded as well: no report (ASan's one warning about libco's stack switch aside), outputs
    exact; positive control: a malloc'd workspace 256 bytes short is a heap-buffer-overflow."""
    lib = hipcpu_builds.build(request, tmp_path_factory, "diou_nms", sanitize="address,undefined")
    runtimes = []
    for name in ("libasan.so", "libubsan.so"):
        path = subprocess.run(["gcc", "-print-file-name=" + name], capture_output=True, text=True).stdout.strip()
        if not os.path.isabs(path):
            pytest.skip(f"gcc has no {name}")
        runtimes.append(path)
    env = dict(os.environ, LD_PRELOAD=" ".join(runtimes), ASAN_OPTIONS="detect_leaks=0:halt_on_error=1",
               UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1", PYTHONPATH=str(REPO))

    def run(mode):
        return subprocess.run([sys.executable, "-m", "tests.hipcpu_sanitizer_run", str(lib), mode],
                              capture_output=True, text=True, env=env, cwd=REPO, timeout=3600)

    p = run("tail")
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    assert "ERROR: AddressSanitizer" not in p.stderr and "runtime error:" not in p.stderr, p.stderr[-4000:]
    assert f"cases {len(RANDOM_CASES) + CLUSTER_SEEDS + 1} " in p.stdout
    p = run("heap-overflow")
    assert p.returncode != 0 and "heap-buffer-overflow" in p.stderr, p.stderr[-3000:]
