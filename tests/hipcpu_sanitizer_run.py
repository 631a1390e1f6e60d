"""The DIoU-NMS case matrix through a sanitizer build (UBSan, or ASan + UBSan) of the real kernels on
HIP-CPU, with every buffer the kernels touch placed against an inaccessible guard page, in a process of its
own (a report or a fault ends it; tests/test_plugin_hipcpu.py starts it). Usage::

    python -m tests.hipcpu_sanitizer_run LIBRARY tail   # buffers end at a guard page: overruns fault
    python -m tests.hipcpu_sanitizer_run LIBRARY head   # buffers start after one: underruns fault
    python -m tests.hipcpu_sanitizer_run LIBRARY overflow       # controls: a workspace 256 bytes short,
    python -m tests.hipcpu_sanitizer_run LIBRARY short-scores   # a scores buffer one value short (reads),
    python -m tests.hipcpu_sanitizer_run LIBRARY ubsan-control  # a signed overflow inside a kernel,
    python -m tests.hipcpu_sanitizer_run LIBRARY heap-overflow  # a short workspace from malloc (ASan's)

The guard pages give the UBSan build AddressSanitizer's heap bounds checks on every kernel buffer without
ASan's cost (its build takes 18-26 CPU-minutes against about 7). What neither covers: an access that stays
inside the workspace but lands in the wrong one of its arrays (the layout's arrays are adjacent), which the
outputs' equality with the reference shows.

Exit 0 and ``cases N detections M`` when every case equals the numpy reference; a sanitizer report (exit !=
0), SIGSEGV, or an assertion error otherwise.
"""

import ctypes
import mmap
import sys

import numpy as np

from yolo4.nms_params import NmsParams
from yolo4.plugins import nms_parameters
from yolo4.runtime.postprocess import postprocess

from .plugin_cases import (
    CLUSTER_SEEDS,
    RANDOM_CASES,
    HipCpuNmsApi,
    assert_same,
    frames_for,
    long_group_case,
    matrix_case,
    seeded_cluster_case,
)

PAGE = mmap.PAGESIZE
PROT_NONE = 0
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


class Guarded:
    """``nbytes`` of read-write memory next to a PROT_NONE page: ending exactly at the page after it
    (``tail``; the start aligned down to ``align``, so the end is exact when ``nbytes`` is a multiple of it) or
    starting right after the page before it (``head``)."""

    def __init__(self, nbytes: int, tail: bool, align: int):
        pages = max(1, -(-nbytes // PAGE))
        self.mm = mmap.mmap(-1, (pages + 2) * PAGE)
        base = ctypes.addressof(ctypes.c_char.from_buffer(self.mm))
        for at in (base, base + (pages + 1) * PAGE):
            if _libc.mprotect(at, PAGE, PROT_NONE) != 0:
                raise OSError(ctypes.get_errno(), "mprotect")
        off = (pages + 1) * PAGE - nbytes if tail else PAGE
        self.offset = off - off % align
        self.ptr = base + self.offset
        self.nbytes = nbytes

    def array(self, shape, dtype):
        count = int(np.prod(shape))
        return np.frombuffer(self.mm, dtype, count=count, offset=self.offset).reshape(shape)


def guarded_run(api, boxes, scores, params, norm_wh=None, tail=True, ws_short=0, scores_short=0):
    """The kernels on guarded copies of the inputs, guarded outputs and a guarded workspace; the outputs
    (copied out of the guarded memory) as ``NmsApi.run_host`` returns them."""
    b, n, c = scores.shape
    k = params.max_output_boxes
    p = nms_parameters(params, (416, 416), b, n, c, half=boxes.dtype == np.float16,
                       per_image_frame=norm_wh is not None)
    keep = []

    def put(a, short=0):
        g = Guarded(a.nbytes - short, tail, a.itemsize)
        flat = np.ascontiguousarray(a).reshape(-1).view(np.uint8)[:a.nbytes - short]
        g.array((flat.size,), np.uint8)[:] = flat
        keep.append(g)
        return g.ptr

    def out(shape, dtype, fill):
        g = Guarded(int(np.prod(shape)) * np.dtype(dtype).itemsize, tail, np.dtype(dtype).itemsize)
        a = g.array(shape, dtype)
        a[...] = fill
        keep.append(g)
        return g, a

    size = api.workspace_size(p)
    assert size > 0 and size % 256 == 0, size  # a multiple of 256: a tail-guarded workspace ends exactly
    ws = Guarded(size - ws_short, tail, 256)
    ws.array((ws.nbytes,), np.uint8)[:] = 0xBE  # nothing the kernels read is left uninitialized by them
    outs = [out((b, 1), np.int32, -7), out((b, k, 4), boxes.dtype, 7), out((b, k), boxes.dtype, 7),
            out((b, k), np.int32, 7)]
    nw = None if norm_wh is None else put(np.ascontiguousarray(norm_wh, np.float32))
    status = api.launch(p, put(boxes), put(scores, scores_short), nw, *[g.ptr for g, _ in outs], ws.ptr)
    assert status == 0, status
    return tuple(a.copy() for _, a in outs)


def check(api, boxes, scores, params, norm_wh, tail):
    ref = postprocess(boxes, scores, params, (416, 416), transforms=frames_for(norm_wh))
    assert_same(guarded_run(api, boxes, scores, params, norm_wh, tail), ref)
    return sum(len(r) for r in ref)


def ubsan_control(lib):
    """A signed integer overflow inside a kernel launch (hipcpuUbsanControl): UBSan must end the process."""
    x = np.array([np.iinfo(np.int32).max], np.int32)
    lib.hipcpuUbsanControl.argtypes = [ctypes.c_void_p]
    lib.hipcpuUbsanControl(x.ctypes.data)
    return int(x[0])


def main(argv):
    lib = ctypes.CDLL(argv[1])
    api = HipCpuNmsApi(lib)
    mode = argv[2]
    if mode == "ubsan-control":
        print("no report; the kernel wrote", ubsan_control(lib))
        return 0
    if mode == "heap-overflow":  # malloc'd buffers (numpy), for ASan's redzones
        boxes = np.zeros((1, 100, 4), np.float32)
        scores = np.full((1, 100, 2), 0.5, np.float32)
        p = nms_parameters(NmsParams(), (416, 416), 1, 100, 2)
        ws = np.empty(api.workspace_size(p) - 256, np.uint8)
        out = [np.zeros(s, t) for s, t in (((1, 1), np.int32), ((1, 100, 4), np.float32), ((1, 100), np.float32),
                                           ((1, 100), np.int32))]
        api.launch(p, boxes.ctypes.data, scores.ctypes.data, None, *[o.ctypes.data for o in out], ws.ctypes.data)
        print("no report")
        return 0
    if mode in ("overflow", "short-scores"):
        boxes, scores, params, _ = matrix_case(RANDOM_CASES[0])
        guarded_run(api, boxes, scores, params, ws_short=256 if mode == "overflow" else 0,
                    scores_short=4 if mode == "short-scores" else 0)
        print("no fault")
        return 0
    tail = {"tail": True, "head": False}[mode]
    cases = detections = 0
    for case in RANDOM_CASES:
        boxes, scores, params, norm = matrix_case(case)
        detections += check(api, boxes, scores, params, norm, tail)
        cases += 1
    for seed in range(CLUSTER_SEEDS):
        detections += check(api, *seeded_cluster_case(seed), None, tail)
        cases += 1
    boxes, scores = long_group_case()
    detections += check(api, boxes, scores, NmsParams(score_threshold=0.0, max_output_boxes=3000), None, tail)
    print(f"cases {cases + 1} detections {detections}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
