"""The DIoU-NMS plugin's algorithm, run on the CPU, equals the numpy reference exactly.

``yolo4/plugins/diou_nms/diouNMSHost.cpp`` implements the plugin's C API (``diouNMSWorkspaceSize``,
``diouNMSLaunch``) with the CUDA build's stages, workspace layout and ``__host__ __device__`` functions
(``diouNMSCommon.cuh``: the DIoU arithmetic, the suppression predicate, the tile matrix and its greedy
resolution, the output rows), compiled with g++ only. Here it must give what
:func:`yolo4.runtime.postprocess.postprocess` gives: the same detections in the same order, classes
equal, scores equal, boxes equal (both copy the input values) -- on random batches (several B, N up to
a few thousand, C up to 80, all three nms_kinds, class-agnostic, top_k below the candidate count,
max_output_boxes below the kept count, per-image frames, float16, many exact score ties, heavily
overlapping clusters) and on the real yolov4-tiny outputs of darknet's sample images.

Then the TensorRT glue itself (``yolo4/plugins/diou_nms/test/glueHostCheck.cpp``): built against the headers of
8.5.2, 10.13.3 and 11.1 with the CPU kernels behind the same C API, it is created from ONNX-style
plugin fields, checked (names, fields, types, shapes, formats), serialized and deserialized and enqueued
on host buffers, as TensorRT would, by each glue (IPluginV2DynamicExt; IPluginV3 from 10.0); its
outputs equal the reference's too.

Precision: the plugin computes IoU and the DIoU penalty in float32 (the penalty's pow in double), the
reference in float64. A pair whose overlap lies within float32 rounding (~1e-7) of ``iou_threshold``
can be decided differently; random boxes essentially never produce one, and the cases here are
seeded, so they are deterministic. Everything else (candidate selection, ordering, ties) is exact.
"""

import ctypes
import shutil
import zlib
from pathlib import Path
from typing import Optional

import numpy as np
import pytest

from yolo4.plugins import DiouNMSParameters, NmsApi, nms_parameters
from yolo4.runtime.nms_params import NmsParams
from yolo4.runtime.postprocess import postprocess
from yolo4.runtime.preprocess import Transform

from .conftest import SHARED_DATA

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "yolo4" / "plugins" / "diou_nms"


@pytest.fixture(scope="session")
def host(tmp_path_factory):
    """The CPU build of the plugin's C API (g++ only)."""
    if not shutil.which("g++"):
        pytest.skip("g++ is not installed")
    from yolo4.plugins.build import build_host_library

    return NmsApi(ctypes.CDLL(str(build_host_library(tmp_path_factory.mktemp("host")))))


def _frames(norm_wh):
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
    ref = postprocess(boxes, scores, params, input_hw, transforms=_frames(norm_wh))
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
]


def _ids(cases):
    return ["B%d-N%d-C%d-%s-%s%s-top%d-K%d%s-conf%g" % (b, n, c, kind, dt, "-agnostic" if ag else "", top, k,
                                                     "-normwh" if nw else "", conf)
            for b, n, c, kind, dt, ag, top, k, nw, conf in cases]


@pytest.mark.parametrize("case", RANDOM_CASES, ids=_ids(RANDOM_CASES))
def test_random_batches(host, case):
    b, n, c, kind, dt, agnostic, top_k, k, per_image, conf = case
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    boxes, scores = random_case(rng, b, n, c, np.dtype(dt).type)
    params = NmsParams(score_threshold=conf, iou_threshold=0.45, nms_kind=kind, beta_nms=0.8, max_output_boxes=k,
                       top_k=top_k, class_agnostic=agnostic)
    norm = rng.uniform(250, 416, (b, 2)).astype(np.float32) if per_image else None
    run_both(host, boxes, scores, params, norm_wh=norm)


@pytest.mark.parametrize("seed", range(12))
def test_overlapping_clusters_and_score_ties(host, seed):
    """Long suppression chains across tiles (groups longer than the 256-candidate tile), exact score
    ties within and across classes (the reference's order: score, then class, then input index)."""
    rng = np.random.default_rng(1000 + seed)
    b, n, c = int(rng.integers(1, 4)), int(rng.integers(200, 3000)), int(rng.integers(1, 81))
    dtype = np.float16 if seed % 3 == 1 else np.float32
    boxes, scores = cluster_case(rng, b, n, c, dtype, coarse=seed % 2 == 0)
    params = NmsParams(score_threshold=float(rng.choice([0.0, 0.001, 0.05])),
                       iou_threshold=float(rng.uniform(0.3, 0.7)), nms_kind=KINDS[seed % 3],
                       beta_nms=float(rng.uniform(0.3, 2.0)), max_output_boxes=int(rng.integers(1, 3000)),
                       top_k=int(rng.integers(1, 6000)), class_agnostic=seed % 4 == 3)
    run_both(host, boxes, scores, params)


def test_long_group_spans_many_tiles(host):
    """One class, 3000 candidates in a few tight clusters: kept boxes of earlier tiles suppress later ones."""
    rng = np.random.default_rng(7)
    boxes, scores = cluster_case(rng, 1, 3000, 1, clusters=6, jitter=0.3, coarse=False)
    for kind in KINDS:
        kept = run_both(host, boxes, scores, NmsParams(score_threshold=0.0, nms_kind=kind, max_output_boxes=3000))
        assert 6 <= kept < 3000


def test_edge_cases(host):
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
    # raw pixels (no frame) and a non-square frame
    run_both(host, boxes, scores, NmsParams(score_threshold=0.01), input_hw=None)
    run_both(host, boxes, scores, NmsParams(score_threshold=0.01), input_hw=(320, 640))
    # an empty batch
    num, *_ = host.run_host(boxes[:0], scores[:0], NmsParams(), (416, 416))
    assert num.shape == (0, 1)


def test_bad_parameters_are_refused(host):
    ok = dict(scoreThreshold=0.25, iouThreshold=0.45, betaNms=0.6, nmsKind=1, maxOutputBoxes=10, topK=100,
              classAgnostic=0, inputWidth=416, inputHeight=416, batchSize=1, numBoxes=10, numClasses=2,
              dataType=0, frameMode=0)
    assert host.workspace_size(DiouNMSParameters(**ok)) > 0
    for field, value in (("nmsKind", 3), ("maxOutputBoxes", 0), ("topK", 0), ("dataType", 2),
                         ("scoreThreshold", 1.5), ("iouThreshold", -0.1), ("numBoxes", -1)):
        p = DiouNMSParameters(**dict(ok, **{field: value}))
        assert host.workspace_size(p) == 0, field
        assert host.launch(p, 1, 1, None, 1, 1, 1, 1, 1) == -1, field


def test_parameters_struct_matches_plugin_attributes():
    p = NmsParams(score_threshold=0.1, iou_threshold=0.5, nms_kind="diounms", beta_nms=1.5, max_output_boxes=7,
                  top_k=99, class_agnostic=True)
    s = nms_parameters(p, (320, 640), 2, 100, 80, half=True, per_image_frame=True)
    attrs = p.plugin_attributes((320, 640))
    assert (s.scoreThreshold, s.iouThreshold, s.betaNms) == tuple(np.float32([0.1, 0.5, 1.5]))
    assert (s.nmsKind, s.maxOutputBoxes, s.topK, s.classAgnostic, s.inputWidth, s.inputHeight) == (
        attrs["nms_kind"], 7, 99, 1, 640, 320)
    assert (s.batchSize, s.numBoxes, s.numClasses, s.dataType, s.frameMode) == (2, 100, 80, 1, 1)
    # the C struct's size: 14 four-byte fields (diouNMSParameters.h)
    assert ctypes.sizeof(DiouNMSParameters) == 56


# ---- the real model ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_outputs(tiny, shared_data):
    """yolov4-tiny's decoded outputs on dog/person/horses at 416, plain resize and letterbox."""
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


@pytest.mark.shared
@pytest.mark.parametrize("conf", (0.25, 0.005))
@pytest.mark.parametrize("kind", KINDS)
def test_real_yolov4_tiny_outputs(host, tiny_outputs, conf, kind):
    """The plugin's algorithm on the real network outputs of darknet's sample images: every darknet
    setting (detection conf 0.25, mAP conf 0.005; the three nms_kinds), letterbox frames per image,
    and the float16 outputs an FP16 engine would give."""
    params = NmsParams(score_threshold=conf, nms_kind=kind, beta_nms=0.6)
    total = 0
    for letter_box, (boxes, scores, transforms) in tiny_outputs.items():
        norm = np.array([t.content_wh for t in transforms], np.float32) if letter_box else None
        ref = postprocess(boxes, scores, params, (416, 416), transforms=transforms if letter_box else None)
        assert_same(host.run_host(boxes, scores, params, (416, 416), norm), ref)
        total += sum(len(r) for r in ref)
        half_b, half_s = boxes.astype(np.float16), scores.astype(np.float16)
        ref16 = postprocess(half_b, half_s, params, (416, 416), transforms=transforms if letter_box else None)
        assert_same(host.run_host(half_b, half_s, params, (416, 416), norm), ref16)
    assert total >= 6  # dog, bicycle, truck, person, horses ...


@pytest.mark.shared
def test_real_dog_detections(host, tiny_outputs):
    """dog.jpg at conf 0.25, NMS 0.45 (greedynms): dog, truck, bicycle -- the reference figures."""
    boxes, scores, _ = tiny_outputs[False]
    num, _, det_scores, classes = host.run_host(boxes[:1], scores[:1], NmsParams(), (416, 416))
    found = set(classes[0, :int(num[0, 0])].tolist())
    assert {16, 7, 1} <= found, found  # COCO ids: dog, truck, bicycle


# ---- the TensorRT glue on the CPU --------------------------------------------------------------------
GLUE_BUILDS = (("8.5.2", 2), ("10.13.3", 2), ("10.13.3", 3), ("11.1", 2), ("11.1", 3))


@pytest.fixture(scope="session")
def glue_library(tmp_path_factory):
    """version -> the glue + CPU kernels + driver library built against that release's headers."""
    trt = SHARED_DATA.parent / "trt-headers"
    if not trt.is_dir():
        pytest.skip(f"{trt} absent: TensorRT headers unavailable")
    if not shutil.which("g++"):
        pytest.skip("g++ is not installed")
    from yolo4.errors import Yolo4Error
    from yolo4.plugins.build import find_cuda

    try:
        cuda_include = find_cuda().include_dir
    except Yolo4Error as e:
        pytest.skip(f"no CUDA headers (the TensorRT headers include cuda_runtime_api.h): {e}")
    out = tmp_path_factory.mktemp("glue")
    built = {}

    def get(version):
        if version not in built:
            import subprocess

            lib = out / f"libglue_check-{version}.so"
            cmd = ["g++", "-std=c++17", "-O2", "-shared", "-fPIC", "-ffp-contract=off", "-Wall", "-Wextra",
                   "-DDIOU_NMS_REGISTER=0", "-isystem", str(trt / version / "include"), "-isystem", str(cuda_include),
                   str(SRC / "diouNMSPlugin.cpp"), str(SRC / "diouNMSHost.cpp"), str(SRC / "test" / "glueHostCheck.cpp"),
                   "-o", str(lib)]
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            assert p.returncode == 0, p.stderr[-3000:]
            dll = ctypes.CDLL(str(lib))
            dll.glueCheck.argtypes = [ctypes.c_int, ctypes.POINTER(DiouNMSParameters)] + [ctypes.c_void_p] * 7 + [
                ctypes.c_char_p, ctypes.c_int]
            dll.glueRejects.argtypes = [ctypes.c_int]
            built[version] = dll
        return built[version]

    return get


def _run_glue(dll, glue, boxes, scores, params, input_hw, norm: Optional[np.ndarray]):
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


@pytest.mark.shared
@pytest.mark.parametrize("version,glue", GLUE_BUILDS, ids=[f"trt{v}-v{g}" for v, g in GLUE_BUILDS])
def test_glue_runs_like_tensorrt(glue_library, version, glue):
    dll = glue_library(version)
    rng = np.random.default_rng(11)
    for dtype, per_image, kind in ((np.float32, False, "greedynms"), (np.float16, True, "diounms"),
                                   (np.float32, True, "default")):
        boxes, scores = random_case(rng, 3, 900, 20, dtype)
        params = NmsParams(score_threshold=0.02, nms_kind=kind, beta_nms=0.9, max_output_boxes=60, top_k=1500,
                           class_agnostic=kind == "default")
        norm = rng.uniform(250, 416, (3, 2)).astype(np.float32) if per_image else None
        ref = postprocess(boxes, scores, params, (416, 416), transforms=_frames(norm))
        assert_same(_run_glue(dll, glue, boxes, scores, params, (416, 416), norm), ref)
    assert dll.glueRejects(glue) == 5  # score 1.5, iou -0.1, nms_kind 3, max_output_boxes 0, class_agnostic 2


def test_loading_a_missing_library_says_how_to_build_it(tmp_path, monkeypatch):
    from yolo4.errors import Yolo4Error
    from yolo4.plugins import default_plugin_path, load_plugin_library, plugin_source_dir

    monkeypatch.setenv("YOLO4_PLUGIN_LIB", str(tmp_path / "lib.so"))
    assert default_plugin_path() == tmp_path / "lib.so"
    with pytest.raises(Yolo4Error, match="yolo4 build-plugin"):
        load_plugin_library()
    monkeypatch.delenv("YOLO4_PLUGIN_LIB")
    assert default_plugin_path().name == "libdiou_nms_plugin.so"
    assert plugin_source_dir() == SRC
