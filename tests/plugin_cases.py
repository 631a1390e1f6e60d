"""The DIoU-NMS plugin's test cases, shared by every build of its stages that the suite runs: the CPU
build (tests/test_plugin_host.py) and the real CUDA kernels on the CPU through HIP-CPU
(tests/test_plugin_hipcpu.py). Each build's ``NmsApi.run_host`` must equal the numpy reference
:func:`yolo4.runtime.postprocess.postprocess` exactly (see test_plugin_host's docstring for the precision
argument).
"""

import ctypes
import subprocess
import zlib
from pathlib import Path
from typing import Optional

import numpy as np

from yolo4.nms_params import NmsParams
from yolo4.plugins import DiouNMSParameters, NmsApi, nms_parameters
from yolo4.runtime.postprocess import postprocess
from yolo4.runtime.preprocess import Transform


def frames_for(norm_wh):
    """Transforms whose content_wh is exactly norm_wh (the reference's per-image frame)."""
    if norm_wh is None:
        return None
    return [Transform(scale_x=float(w), scale_y=float(h), pad_x=0.0, pad_y=0.0, orig_w=1, orig_h=1)
            for w, h in np.asarray(norm_wh, np.float32)]


def assert_same(outputs, ref):
    """The plugin's fixed-shape outputs hold exactly the reference's detections, then padding."""
    num, boxes, scores, classes = outputs
    assert num.shape == (len(ref), 1) and num.dtype == np.int32
    for i, r in enumerate(ref):
        n = int(num[i, 0])
        assert n == len(r), f"image {i}: {n} detections, reference {len(r)}"
        assert np.array_equal(classes[i, :n], r.class_ids), f"image {i}: classes differ"
        assert np.array_equal(scores[i, :n].astype(np.float32), r.scores), f"image {i}: scores differ"
        assert np.array_equal(boxes[i, :n].astype(np.float32), r.boxes), f"image {i}: boxes differ"
        assert (classes[i, n:] == -1).all() and (scores[i, n:] == 0).all() and (boxes[i, n:] == 0).all()


def run_both(api, boxes, scores, params, input_hw=(416, 416), norm_wh=None):
    ref = postprocess(boxes, scores, params, input_hw, transforms=frames_for(norm_wh))
    out = api.run_host(boxes, scores, params, input_hw, norm_wh)
    assert_same(out, ref)
    return sum(len(r) for r in ref)


def random_case(rng, b, n, c, dtype=np.float32, size=416):
    """Boxes anywhere in the input, skewed scores (few above 0.25, many above 0.001)."""
    cx, cy = rng.uniform(0, size, (2, b, n))
    w, h = rng.uniform(4, size / 3, (2, b, n))
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1).astype(dtype)
    scores = (rng.uniform(0, 1, (b, n, 1)) ** 3 * rng.uniform(0, 1, (b, n, c)) ** 4).astype(dtype)
    return boxes, scores


def cluster_case(rng, b, n, c, dtype=np.float32, size=416, clusters=20, jitter=0.15, coarse=True):
    """Jittered copies of a few boxes (heavy overlap: long suppression chains), Dirichlet class
    scores, optionally rounded to 1/64 (many exact ties across boxes and classes)."""
    centre = rng.uniform(0, size, (b, clusters, 2))
    wh = rng.uniform(10, size / 4, (b, clusters, 2))
    k = rng.integers(0, clusters, (b, n))
    ctr = np.take_along_axis(centre, k[..., None], 1)
    s = np.take_along_axis(wh, k[..., None], 1)
    ctr = ctr + rng.normal(0, jitter, ctr.shape) * s
    s = s * np.exp(rng.normal(0, jitter, s.shape))
    boxes = np.concatenate([ctr - s / 2, ctr + s / 2], -1).astype(dtype)
    scores = rng.uniform(0, 1, (b, n, 1)) * rng.dirichlet(np.full(c, 0.3), (b, n))
    if coarse:
        scores = np.round(scores * 64) / 64
    return boxes, scores.astype(dtype)


KINDS = ("greedynms", "diounms", "default")
# (B, N, C, nms_kind, dtype, class_agnostic, top_k, max_output_boxes, per-image frame, conf)
RANDOM_CASES = [
    (1, 2535, 80, "greedynms", "f4", False, 30000, 300, False, 0.25),   # yolov4-tiny-416-sized, defaults
    (2, 3000, 80, "greedynms", "f4", False, 30000, 300, False, 0.001),  # mAP threshold: thousands of candidates
    (3, 1500, 41, "diounms", "f4", False, 2000, 150, False, 0.05),
    (4, 800, 20, "default", "f4", False, 30000, 1000, False, 0.05),
    (2, 2000, 80, "greedynms", "f4", True, 30000, 300, False, 0.05),    # class agnostic
    (3, 1200, 30, "diounms", "f4", True, 500, 40, False, 0.01),
    (2, 2500, 80, "greedynms", "f4", False, 700, 100, False, 0.001),    # top_k far below the candidates
    (2, 1000, 10, "greedynms", "f4", False, 30000, 7, False, 0.01),     # max_output_boxes below the kept
    (3, 1000, 25, "greedynms", "f4", False, 30000, 300, True, 0.05),    # norm_wh: letterbox frames
    (2, 1000, 25, "diounms", "f4", True, 3000, 300, True, 0.05),
    (3, 1500, 80, "greedynms", "f2", False, 30000, 300, False, 0.05),   # float16 boxes and scores
    (2, 1500, 33, "default", "f2", True, 400, 50, True, 0.02),
    (5, 300, 3, "greedynms", "f4", False, 30000, 300, False, 0.0),      # every positive score a candidate
    (1, 1, 1, "diounms", "f4", False, 1, 1, False, 0.0),
    (8, 600, 20, "greedynms", "f4", False, 30000, 200, True, 0.01),     # B = 8, letterbox frames
]


def case_ids(cases):
    """pytest ids of RANDOM_CASES entries."""
    return ["B%d-N%d-C%d-%s-%s%s-top%d-K%d%s-conf%g" % (b, n, c, kind, dt, "-agnostic" if ag else "", top, k,
                                                     "-normwh" if nw else "", conf)
            for b, n, c, kind, dt, ag, top, k, nw, conf in cases]


def matrix_case(case):
    """(boxes, scores, params, norm_wh or None) of a RANDOM_CASES entry (seeded by the entry)."""
    b, n, c, kind, dt, agnostic, top_k, k, per_image, conf = case
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    boxes, scores = random_case(rng, b, n, c, np.dtype(dt).type)
    params = NmsParams(score_threshold=conf, iou_threshold=0.45, nms_kind=kind, beta_nms=0.8, max_output_boxes=k,
                       top_k=top_k, class_agnostic=agnostic)
    norm = rng.uniform(250, 416, (b, 2)).astype(np.float32) if per_image else None
    return boxes, scores, params, norm


#: seeds of seeded_cluster_case the suites run
CLUSTER_SEEDS = 12


def seeded_cluster_case(seed):
    """(boxes, scores, params): overlapping clusters, B 1-3, N 200-3000, C 1-80, float16 every third seed,
    score ties every other, every nms_kind, class agnostic every fourth, random top_k and max_output_boxes."""
    rng = np.random.default_rng(1000 + seed)
    b, n, c = int(rng.integers(1, 4)), int(rng.integers(200, 3000)), int(rng.integers(1, 81))
    dtype = np.float16 if seed % 3 == 1 else np.float32
    boxes, scores = cluster_case(rng, b, n, c, dtype, coarse=seed % 2 == 0)
    params = NmsParams(score_threshold=float(rng.choice([0.0, 0.001, 0.05])),
                       iou_threshold=float(rng.uniform(0.3, 0.7)), nms_kind=KINDS[seed % 3],
                       beta_nms=float(rng.uniform(0.3, 2.0)), max_output_boxes=int(rng.integers(1, 3000)),
                       top_k=int(rng.integers(1, 6000)), class_agnostic=seed % 4 == 3)
    return boxes, scores, params


def long_group_case():
    """One class, 3000 candidates in a few tight clusters (a group spanning 12 NMS tiles)."""
    rng = np.random.default_rng(7)
    return cluster_case(rng, 1, 3000, 1, clusters=6, jitter=0.3, coarse=False)


def yolov4_tiny_outputs(tiny, shared_data):
    """yolov4-tiny's decoded outputs on dog/person/horses at 416, plain resize and letterbox:
    {letter_box: (boxes [3, N, 4] float32, scores [3, N, 80] float32, transforms)} (a module fixture's body)."""
    import torch

    from yolo4.data.images import imread
    from yolo4.runtime.preprocess import preprocess

    images = [imread(shared_data / "darknet" / "images" / f"{n}.jpg") for n in ("dog", "person", "horses")]
    out = {}
    for letter_box in (False, True):
        batch, transforms = preprocess(images, (416, 416), letter_box)
        with torch.no_grad():
            boxes, scores = tiny(torch.from_numpy(batch))
        out[letter_box] = (boxes.numpy().astype(np.float32), scores.numpy().astype(np.float32), transforms)
    return out




def check_tiny_outputs(api, tiny_outputs, conf, kind):
    """api.run_host on yolov4-tiny's outputs (plain and letterbox frames, float32 and float16) equals the
    reference; returns the number of detections compared."""
    params = NmsParams(score_threshold=conf, nms_kind=kind, beta_nms=0.6)
    total = 0
    for letter_box, (boxes, scores, transforms) in tiny_outputs.items():
        norm = np.array([t.content_wh for t in transforms], np.float32) if letter_box else None
        ref = postprocess(boxes, scores, params, (416, 416), transforms=transforms if letter_box else None)
        assert_same(api.run_host(boxes, scores, params, (416, 416), norm), ref)
        total += sum(len(r) for r in ref)
        half_b, half_s = boxes.astype(np.float16), scores.astype(np.float16)
        ref16 = postprocess(half_b, half_s, params, (416, 416), transforms=transforms if letter_box else None)
        assert_same(api.run_host(half_b, half_s, params, (416, 416), norm), ref16)
        total += sum(len(r) for r in ref16)
    return total


def check_edge_cases(host):
    """All padding (nothing above the threshold), identical boxes, zero-area boxes, raw pixels, a
    non-square frame, an empty batch."""
    rng = np.random.default_rng(3)
    boxes, scores = random_case(rng, 2, 50, 4)
    p = NmsParams(score_threshold=1.0)  # nothing above 1.0: all padding
    num, b, s, c = host.run_host(boxes, scores, p, (416, 416))
    assert (num == 0).all() and (c == -1).all() and (s == 0).all() and (b == 0).all()
    run_both(host, boxes, scores, p)
    # identical boxes: only the best of each class survives (IoU 1, penalty 0)
    same = np.repeat(np.array([[[10, 20, 110, 220]]], np.float32), 40, axis=1)
    sc = rng.uniform(0.3, 1, (1, 40, 3)).astype(np.float32)
    for kind in KINDS:
        assert run_both(host, same, sc, NmsParams(nms_kind=kind)) == 3
    # zero-area boxes: IoU 0, nothing suppressed
    flat = np.zeros((1, 30, 4), np.float32)
    assert run_both(host, flat, sc[:, :30], NmsParams()) == 90
    # ... also over several NMS tiles: a box is never compared with itself (a tile stride one short, which
    # hands the last box of a tile to the next one again, would keep a zero-area box twice)
    flat = np.zeros((1, 600, 4), np.float32)
    sc = rng.uniform(0.3, 1, (1, 600, 1)).astype(np.float32)
    assert run_both(host, flat, sc, NmsParams(max_output_boxes=1000)) == 600
    # raw pixels (no frame) and a non-square frame
    run_both(host, boxes, scores, NmsParams(score_threshold=0.01), input_hw=None)
    run_both(host, boxes, scores, NmsParams(score_threshold=0.01), input_hw=(320, 640))
    # an empty batch
    num, *_ = host.run_host(boxes[:0], scores[:0], NmsParams(), (416, 416))
    assert num.shape == (0, 1)


# ---- the TensorRT glue driven as TensorRT drives it (diou_nms/test/glueHostCheck.cpp) ---------------------
SRC = Path(__file__).resolve().parents[1] / "yolo4" / "plugins" / "diou_nms"


def glue_builder(out: Path, trt_headers: Path, cuda_include: Path, kernels: Optional[Path] = None):
    """version -> the glue + glueHostCheck.cpp library built against ``trt_headers/<version>/include``, with
    the CPU build of the stages (diouNMSHost.cpp) or, given ``kernels``, linked against that library of the
    C API (the HIP-CPU build of the real kernels); each version built once."""
    built = {}

    def get(version):
        if version not in built:
            lib = out / f"libglue_check-{version}.so"
            cmd = ["g++", "-std=c++17", "-O2", "-shared", "-fPIC", "-ffp-contract=off", "-Wall", "-Wextra",
                   "-DDIOU_NMS_REGISTER=0", "-isystem", str(trt_headers / version / "include"), "-isystem",
                   str(cuda_include), str(SRC / "diouNMSPlugin.cpp"), str(SRC / "test" / "glueHostCheck.cpp"),
                   "-o", str(lib)]
            if kernels is None:
                cmd.append(str(SRC / "diouNMSHost.cpp"))
            else:
                cmd += [str(kernels), "-Wl,-rpath," + str(kernels.parent), "-Wl,--no-undefined"]
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            assert p.returncode == 0, p.stderr[-3000:]
            dll = ctypes.CDLL(str(lib))
            dll.glueCheck.argtypes = [ctypes.c_int, ctypes.POINTER(DiouNMSParameters)] + [ctypes.c_void_p] * 7 + [
                ctypes.c_char_p, ctypes.c_int]
            dll.glueRejects.argtypes = [ctypes.c_int]
            built[version] = dll
        return built[version]

    return get


def run_glue(dll, glue, boxes, scores, params, input_hw, norm: Optional[np.ndarray]):
    """glueCheck: create, check, serialize, deserialize and enqueue glue ``glue`` (2: IPluginV2DynamicExt,
    3: IPluginV3) on host buffers; returns the four outputs."""
    b, n, c = scores.shape
    k = params.max_output_boxes
    s = nms_parameters(params, input_hw, b, n, c, half=boxes.dtype == np.float16, per_image_frame=norm is not None)
    num = np.zeros((b, 1), np.int32)
    det_boxes = np.zeros((b, k, 4), boxes.dtype)
    det_scores = np.zeros((b, k), boxes.dtype)
    det_classes = np.zeros((b, k), np.int32)
    msg = ctypes.create_string_buffer(4096)
    rc = dll.glueCheck(glue, ctypes.byref(s), boxes.ctypes.data, scores.ctypes.data,
                       None if norm is None else norm.ctypes.data, num.ctypes.data, det_boxes.ctypes.data,
                       det_scores.ctypes.data, det_classes.ctypes.data, msg, len(msg))
    assert rc == 0, msg.value.decode()
    return num, det_boxes, det_scores, det_classes


def check_glue(dll, glue):
    """Three enqueues (float32; float16 with norm_wh; class agnostic with norm_wh) equal the reference, and
    the creator rejects the five bad fields."""
    rng = np.random.default_rng(11)
    for dtype, per_image, kind in ((np.float32, False, "greedynms"), (np.float16, True, "diounms"),
                                   (np.float32, True, "default")):
        boxes, scores = random_case(rng, 3, 900, 20, dtype)
        params = NmsParams(score_threshold=0.02, nms_kind=kind, beta_nms=0.9, max_output_boxes=60, top_k=1500,
                           class_agnostic=kind == "default")
        norm = rng.uniform(250, 416, (3, 2)).astype(np.float32) if per_image else None
        ref = postprocess(boxes, scores, params, (416, 416), transforms=frames_for(norm))
        assert_same(run_glue(dll, glue, boxes, scores, params, (416, 416), norm), ref)
    assert dll.glueRejects(glue) == 5  # score 1.5, iou -0.1, nms_kind 3, max_output_boxes 0, class_agnostic 2


# ---- the HIP-CPU build of the real kernels ---------------------------------------------------------------
class HipCpuNmsApi(NmsApi):
    """:class:`NmsApi` over the HIP-CPU build of ``diouNMSKernels.cu`` (host memory is device memory there):
    each launch is followed by ``hipcpu_sync()``, since the kernels run asynchronously as on a GPU."""

    def __init__(self, lib):
        super().__init__(lib)
        lib.hipcpu_stream.restype = ctypes.c_void_p
        self.stream = lib.hipcpu_stream()  # not the null stream (see build_hipcpu_library)
        assert self.stream

    def launch(self, *args, **kwargs):
        if len(args) < 10:
            kwargs.setdefault("stream", self.stream)
        status = super().launch(*args, **kwargs)
        sync = self.lib.hipcpu_sync()
        assert sync == 0, f"the kernels failed: hipError_t {sync}"
        return status
