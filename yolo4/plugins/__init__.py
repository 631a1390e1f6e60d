"""The batched DIoU-NMS TensorRT plugin (``DIoUNMS_TRT``): where its sources and library are, loading
it, and its C API from Python.

The plugin (C++/CUDA, ``yolo4/plugins/diou_nms``) is compiled on the user's machine against the installed
TensorRT by ``yolo4 build-plugin`` (:mod:`yolo4.plugins.build`), which writes
:func:`default_plugin_path` unless told otherwise. :func:`load_plugin_library` loads a library with
``ctypes`` (``RTLD_GLOBAL``), which registers its plugin creator with TensorRT's global registry;
load it before parsing an ONNX with a ``DIoUNMS_TRT`` node or deserializing an engine that has one.

:class:`NmsApi` calls the library's two C functions (``diouNMSWorkspaceSize``, ``diouNMSLaunch``;
``yolo4/plugins/diou_nms/diouNMSKernels.h``) with a :class:`DiouNMSParameters` made from
:class:`~yolo4.nms_params.NmsParams` by :func:`nms_parameters`. The plugin library exports
them for device pointers; the CPU build of the same stages (:func:`yolo4.plugins.build.build_host_library`,
what the test suite checks against the numpy reference) takes host arrays (:meth:`NmsApi.run_host`).

Python 3.8, torch-free, TensorRT-free (TensorRT is imported only to find its bundled libraries
when the plugin library cannot find ``libnvinfer`` itself).
"""

import ctypes
import os
from pathlib import Path
from typing import Any, Optional, Tuple, Union

from ..errors import Yolo4Error
from ..nms_params import PLUGIN_NAMESPACE, PLUGIN_OP, PLUGIN_VERSION, NmsParams

__all__ = ["PLUGIN_LIBRARY_NAME", "PLUGIN_OP", "PLUGIN_VERSION", "PLUGIN_NAMESPACE", "DiouNMSParameters",
           "NmsApi", "plugin_source_dir", "default_plugin_path", "load_plugin_library", "nms_parameters"]

PathLike = Union[str, "os.PathLike[str]"]

#: file name of the plugin library ``yolo4 build-plugin`` writes
PLUGIN_LIBRARY_NAME = "libdiou_nms_plugin.so"
#: ``DiouNMSParameters.dataType`` codes
TYPE_FLOAT, TYPE_HALF = 0, 1
#: ``DiouNMSParameters.frameMode`` codes: (input_width, input_height), or the per-image ``norm_wh`` input
FRAME_INPUT, FRAME_PER_IMAGE = 0, 1
#: ``diouNMSLaunch`` status codes (positive: a ``cudaError_t``)
STATUS_SUCCESS, STATUS_BAD_PARAM = 0, -1

_loaded = {}  # absolute path -> (ctypes.CDLL, info string)


class DiouNMSParameters(ctypes.Structure):
    """``DiouNMSParameters`` of ``yolo4/plugins/diou_nms/diouNMSParameters.h``, field for field."""

    _fields_ = [("scoreThreshold", ctypes.c_float), ("iouThreshold", ctypes.c_float),
                ("betaNms", ctypes.c_float), ("nmsKind", ctypes.c_int32), ("maxOutputBoxes", ctypes.c_int32),
                ("topK", ctypes.c_int32), ("classAgnostic", ctypes.c_int32), ("inputWidth", ctypes.c_int32),
                ("inputHeight", ctypes.c_int32), ("batchSize", ctypes.c_int32), ("numBoxes", ctypes.c_int32),
                ("numClasses", ctypes.c_int32), ("dataType", ctypes.c_int32), ("frameMode", ctypes.c_int32)]


def nms_parameters(params: NmsParams, input_hw: Optional[Tuple[int, int]], batch: int, num_boxes: int,
                   num_classes: int, half: bool = False, per_image_frame: bool = False) -> DiouNMSParameters:
    """The plugin's parameter struct for ``params`` and a ``[batch, num_boxes, num_classes]`` input.

    Args:
        params: thresholds and limits (the plugin attributes, :meth:`NmsParams.plugin_attributes`).
        input_hw: network input ``(H, W)``: NMS coordinates are divided by ``(W, H)``; None = raw
            pixels (the reference's ``input_hw=None``).
        half: float16 boxes and scores (else float32).
        per_image_frame: the ``norm_wh [B, 2]`` input gives each image's frame instead.
    """
    attrs = params.plugin_attributes(input_hw if input_hw is not None else (0, 0))
    return DiouNMSParameters(
        scoreThreshold=attrs["score_threshold"], iouThreshold=attrs["iou_threshold"], betaNms=attrs["beta_nms"],
        nmsKind=attrs["nms_kind"], maxOutputBoxes=attrs["max_output_boxes"], topK=attrs["top_k"],
        classAgnostic=attrs["class_agnostic"], inputWidth=attrs["input_width"], inputHeight=attrs["input_height"],
        batchSize=int(batch), numBoxes=int(num_boxes), numClasses=int(num_classes),
        dataType=TYPE_HALF if half else TYPE_FLOAT, frameMode=FRAME_PER_IMAGE if per_image_frame else FRAME_INPUT)


class NmsApi:
    """The C API of a library built from ``yolo4/plugins/diou_nms`` (the plugin, a kernels-only build, or the
    CPU build): ``diouNMSWorkspaceSize`` and ``diouNMSLaunch``.

    Args:
        lib: a loaded ``ctypes.CDLL``.
    """

    def __init__(self, lib: Any) -> None:
        self.lib = lib
        self._size = lib.diouNMSWorkspaceSize
        self._size.restype = ctypes.c_size_t
        self._size.argtypes = [ctypes.POINTER(DiouNMSParameters)]
        self._launch = lib.diouNMSLaunch
        self._launch.restype = ctypes.c_int
        self._launch.argtypes = [ctypes.POINTER(DiouNMSParameters)] + [ctypes.c_void_p] * 9

    def workspace_size(self, p: DiouNMSParameters) -> int:
        """Workspace bytes ``launch`` needs for ``p`` (0: invalid parameters)."""
        return int(self._size(ctypes.byref(p)))

    def launch(self, p: DiouNMSParameters, boxes: int, scores: int, norm_wh: Optional[int], num_detections: int,
               detection_boxes: int, detection_scores: int, detection_classes: int, workspace: int,
               stream: Optional[int] = None) -> int:
        """``diouNMSLaunch`` on raw pointers (device pointers for a CUDA build); returns its status."""
        return int(self._launch(ctypes.byref(p), boxes, scores, norm_wh, num_detections, detection_boxes,
                                detection_scores, detection_classes, workspace, stream))

    def run_host(self, boxes: Any, scores: Any, params: NmsParams, input_hw: Optional[Tuple[int, int]] = None,
                 norm_wh: Optional[Any] = None) -> Tuple[Any, Any, Any, Any]:
        """Run a CPU build on numpy arrays.

        Args:
            boxes: ``[B, N, 4]`` float32 or float16 x1, y1, x2, y2 (input pixels).
            scores: ``[B, N, C]``, the same dtype.
            input_hw: the NMS frame ``(H, W)`` (None = raw pixels) unless ``norm_wh`` is given.
            norm_wh: optional ``[B, 2]`` per-image frame ``(w, h)``.

        Returns:
            ``num_detections [B, 1] int32``, ``detection_boxes [B, K, 4]``, ``detection_scores [B, K]``
            (the input dtype), ``detection_classes [B, K] int32``.

        Raises:
            ValueError: bad shapes/dtypes, or the library rejected the parameters.
        """
        import numpy as np

        boxes = np.ascontiguousarray(boxes)
        scores = np.ascontiguousarray(scores)
        if boxes.dtype not in (np.float32, np.float16) or scores.dtype != boxes.dtype:
            raise ValueError(f"boxes and scores must both be float32 or float16, got {boxes.dtype}, {scores.dtype}")
        if boxes.ndim != 3 or boxes.shape[2] != 4 or scores.ndim != 3 or scores.shape[:2] != boxes.shape[:2]:
            raise ValueError(f"expected boxes [B,N,4] and scores [B,N,C], got {boxes.shape} and {scores.shape}")
        b, n, c = scores.shape
        k = params.max_output_boxes
        nw = None if norm_wh is None else np.ascontiguousarray(norm_wh, np.float32).reshape(b, 2)
        p = nms_parameters(params, input_hw, b, n, c, half=boxes.dtype == np.float16, per_image_frame=nw is not None)
        ws = np.empty(max(self.workspace_size(p), 1) + 256, np.uint8)
        ws_ptr = (ws.ctypes.data + 255) // 256 * 256
        num = np.zeros((b, 1), np.int32)
        det_boxes = np.zeros((b, k, 4), boxes.dtype)
        det_scores = np.zeros((b, k), boxes.dtype)
        det_classes = np.zeros((b, k), np.int32)
        status = self.launch(p, boxes.ctypes.data, scores.ctypes.data, None if nw is None else nw.ctypes.data,
                             num.ctypes.data, det_boxes.ctypes.data, det_scores.ctypes.data,
                             det_classes.ctypes.data, ws_ptr)
        if status != STATUS_SUCCESS:
            raise ValueError(f"diouNMSLaunch failed with status {status}")
        return num, det_boxes, det_scores, det_classes


def plugin_source_dir() -> Path:
    """The plugin's sources (``diouNMSPlugin.cpp``, ``CMakeLists.txt``, ...).

    Looked up in ``$YOLO4_PLUGIN_SOURCE``, then beside this module (``yolo4/plugins/diou_nms``, which
    the package installs as package data).

    Raises:
        Yolo4Error: not found.
    """
    here = Path(__file__).resolve().parent
    env = os.environ.get("YOLO4_PLUGIN_SOURCE", "").strip()
    candidates = ([Path(os.path.expanduser(env))] if env else []) + [here / "diou_nms"]
    for d in candidates:
        if (d / "diouNMSPlugin.cpp").is_file():
            return d
    raise Yolo4Error("the DIoU-NMS plugin sources (yolo4/plugins/diou_nms) are missing from this install: set "
                     "YOLO4_PLUGIN_SOURCE to the yolo4/plugins/diou_nms folder of a yolo4 source checkout")


def default_plugin_path() -> Path:
    """Where ``yolo4 build-plugin`` writes the library and the runtime looks for it:
    ``$YOLO4_PLUGIN_LIB`` if set, else ``<yolo4 cache>/plugins/libdiou_nms_plugin.so``."""
    env = os.environ.get("YOLO4_PLUGIN_LIB", "").strip()
    if env:
        return Path(os.path.expanduser(env))
    from ..assets import cache_dir

    return cache_dir() / "plugins" / PLUGIN_LIBRARY_NAME


def _cdll(path: str) -> Any:
    return ctypes.CDLL(path, mode=getattr(ctypes, "RTLD_GLOBAL", 0))


def load_plugin_library(path: Optional[PathLike] = None) -> str:
    """Load the DIoU-NMS plugin library so TensorRT finds ``DIoUNMS_TRT`` (once per process).

    ``ctypes.CDLL(..., RTLD_GLOBAL)``: the library's static initializer registers its creator in
    TensorRT's global plugin registry (every release from 8.5 on). If ``libnvinfer`` is not on the
    loader path (the ``tensorrt`` pip wheels keep it in their own folder), ``tensorrt`` is imported
    first, which loads it, and the load is retried.

    Args:
        path: the library [default: :func:`default_plugin_path`].

    Returns:
        The library's description (``diouNmsPluginInfo``: op, version, the glue registered, the
        TensorRT it was built against), or ``"unknown"`` for a library without one.

    Raises:
        Yolo4Error: the library is missing (run ``yolo4 build-plugin``) or cannot be loaded.
    """
    p = Path(path) if path is not None else default_plugin_path()
    key = os.path.abspath(os.fspath(p))
    if key in _loaded:
        return _loaded[key][1]
    if not os.path.isfile(key):
        raise Yolo4Error("DIoU-NMS plugin library not found: build it with `yolo4 build-plugin`"
                         + ("" if path is None else " --output DIR"), key)
    try:
        lib = _cdll(key)
    except OSError as first:
        if "libnvinfer" not in str(first):
            raise Yolo4Error(f"cannot load the plugin library ({' '.join(str(first).split())})", key) from None
        try:  # the tensorrt wheels load their bundled libnvinfer when imported
            import tensorrt  # noqa: F401
            lib = _cdll(key)
        except (ImportError, OSError):
            raise Yolo4Error(f"cannot load the plugin library ({' '.join(str(first).split())}); is the TensorRT "
                             "it was built against installed? Rebuild with `yolo4 build-plugin`", key) from None
    info = "unknown"
    fn = getattr(lib, "diouNmsPluginInfo", None)
    if fn is not None:
        fn.restype = ctypes.c_char_p
        fn.argtypes = []
        info = fn().decode("utf-8", "replace")
    _loaded[key] = (lib, info)
    return info
