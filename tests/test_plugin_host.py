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
from pathlib import Path

import numpy as np
import pytest

from yolo4.nms_params import NmsParams
from yolo4.plugins import DiouNMSParameters, NmsApi, nms_parameters

from .conftest import SHARED_DATA
from .plugin_cases import (
    CLUSTER_SEEDS,
    KINDS,
    RANDOM_CASES,
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
SRC = REPO / "yolo4" / "plugins" / "diou_nms"


@pytest.fixture(scope="session")
def host(tmp_path_factory):
    """The CPU build of the plugin's C API (g++ only)."""
    if not shutil.which("g++"):
        pytest.skip("g++ is not installed")
    from yolo4.plugins.build import build_host_library

    return NmsApi(ctypes.CDLL(str(build_host_library(tmp_path_factory.mktemp("host")))))


@pytest.mark.parametrize("case", RANDOM_CASES, ids=case_ids(RANDOM_CASES))
def test_random_batches(host, case):
    boxes, scores, params, norm = matrix_case(case)
    run_both(host, boxes, scores, params, norm_wh=norm)


@pytest.mark.parametrize("seed", range(CLUSTER_SEEDS))
def test_overlapping_clusters_and_score_ties(host, seed):
    """Long suppression chains across tiles (groups longer than the 256-candidate tile), exact score
    ties within and across classes (the reference's order: score, then class, then input index)."""
    run_both(host, *seeded_cluster_case(seed))


def test_long_group_spans_many_tiles(host):
    """One class, 3000 candidates in a few tight clusters: kept boxes of earlier tiles suppress later ones."""
    boxes, scores = long_group_case()
    for kind in KINDS:
        kept = run_both(host, boxes, scores, NmsParams(score_threshold=0.0, nms_kind=kind, max_output_boxes=3000))
        assert 6 <= kept < 3000


def test_edge_cases(host):
    check_edge_cases(host)


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
    return yolov4_tiny_outputs(tiny, shared_data)


@pytest.mark.shared
@pytest.mark.parametrize("conf", (0.25, 0.005))
@pytest.mark.parametrize("kind", KINDS)
def test_real_yolov4_tiny_outputs(host, tiny_outputs, conf, kind):
    """The plugin's algorithm on the real network outputs of darknet's sample images: every darknet
    setting (detection conf 0.25, mAP conf 0.005; the three nms_kinds), letterbox frames per image,
    and the float16 outputs an FP16 engine would give."""
    assert check_tiny_outputs(host, tiny_outputs, conf, kind) >= 12  # dog, bicycle, truck, person, horses ...


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
    return glue_builder(tmp_path_factory.mktemp("glue"), trt, cuda_include)


@pytest.mark.shared
@pytest.mark.parametrize("version,glue", GLUE_BUILDS, ids=[f"trt{v}-v{g}" for v, g in GLUE_BUILDS])
def test_glue_runs_like_tensorrt(glue_library, version, glue):
    check_glue(glue_library(version), glue)


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
