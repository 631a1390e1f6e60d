"""Torch-free inference runtime (Python 3.8): preprocessing, darknet post-processing and DIoU-NMS,
backends (ONNX Runtime, TensorRT + pycuda, torch adapter), the GPU preprocessing kernel and CUDA graphs,
the detector, sources and video outputs, drawing, COCO eval, benchmarks and INT8-vs-FP32 agreement.

One file per concern; import the submodules directly, e.g.
``from yolo4.runtime.detector import Detector``. Nothing here imports torch, onnxruntime or
TensorRT at import time.
"""
