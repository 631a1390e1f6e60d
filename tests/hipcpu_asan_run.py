"""The DIoU-NMS case matrix through the AddressSanitizer + UBSan HIP-CPU build of the real kernels, in a
process of its own (the sanitizer runtimes must be preloaded into Python: tests/test_plugin_hipcpu.py starts
it with ``LD_PRELOAD``). Usage::

    python -m tests.hipcpu_asan_run LIBRARY            # every case; prints "cases N detections M"
    python -m tests.hipcpu_asan_run LIBRARY --overflow # positive control: a workspace 256 bytes short

Exit 0 when every case equals the numpy reference; an assertion error or a sanitizer report otherwise.
"""

import ctypes
import sys

import numpy as np

from yolo4.plugins import nms_parameters
from yolo4.runtime.nms_params import NmsParams

from .plugin_cases import (
    CLUSTER_SEEDS,
    RANDOM_CASES,
    HipCpuNmsApi,
    long_group_case,
    matrix_case,
    run_both,
    seeded_cluster_case,
)


def overflow(api):
    """Launch with a workspace 256 bytes shorter than diouNMSWorkspaceSize: CUB's scratch, last in the
    layout, runs past the allocation (ASan must report a heap-buffer-overflow)."""
    boxes = np.zeros((1, 100, 4), np.float32)
    scores = np.full((1, 100, 2), 0.5, np.float32)
    p = nms_parameters(NmsParams(), (416, 416), 1, 100, 2)
    ws = np.empty(api.workspace_size(p) - 256, np.uint8)
    out = [np.zeros(s, t) for s, t in (((1, 1), np.int32), ((1, 100, 4), np.float32), ((1, 100), np.float32),
                                       ((1, 100), np.int32))]
    api.launch(p, boxes.ctypes.data, scores.ctypes.data, None, *[o.ctypes.data for o in out], ws.ctypes.data)


def main(argv):
    api = HipCpuNmsApi(ctypes.CDLL(argv[1]))
    if "--overflow" in argv:
        overflow(api)
        print("no overflow reported")
        return 0
    cases = detections = 0
    for case in RANDOM_CASES:
        boxes, scores, params, norm = matrix_case(case)
        detections += run_both(api, boxes, scores, params, norm_wh=norm)
        cases += 1
    for seed in range(CLUSTER_SEEDS):
        detections += run_both(api, *seeded_cluster_case(seed))
        cases += 1
    boxes, scores = long_group_case()
    detections += run_both(api, boxes, scores, NmsParams(score_threshold=0.0, max_output_boxes=3000))
    print(f"cases {cases + 1} detections {detections}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
