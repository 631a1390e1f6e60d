"""Torch-free inference runtime (Python 3.8): preprocessing, darknet post-processing and DIoU-NMS,
backends (ONNX Runtime, torch adapter; TensorRT later), detector, sources, drawing, COCO eval.

One file per concern; import the submodules directly, e.g.
``from yolo4.runtime.detector import Detector``. Nothing here imports torch, onnxruntime or
TensorRT at import time.
"""
