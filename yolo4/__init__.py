"""yolo4: YOLOv4 from training to TensorRT deployment.

Subpackages: ``model`` (torch: darknet cfg -> nn.Module, .weights IO), ``data`` (datasets, image IO),
``trainer`` (torch training loop), ``convert`` (ONNX export), ``calib`` (INT8 calibration),
``runtime`` (torch-free preprocessing, post-processing, backends).
"""

__version__ = "0.1.0"
