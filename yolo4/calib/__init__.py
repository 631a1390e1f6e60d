"""INT8 calibration (torch-free, Python 3.8): calibration-image sampling, TensorRT calibrators with
a cache, and Q/DQ post-training quantization through ONNX Runtime's quantization tools.

Empty in this release: it arrives with the TensorRT engine builder. Calibration images will go through
:func:`yolo4.runtime.preprocess.preprocess`, the same preprocessing as inference.
"""
