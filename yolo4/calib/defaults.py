"""The INT8 defaults, each defined once: ``yolo4 export --int8``, ``yolo4 build-engine --int8``,
:func:`yolo4.pipeline.export_int8`, :func:`yolo4.calib.int8.quantize_int8` and the functions below
them (:func:`~yolo4.calib.images.calibration_set`, :func:`~yolo4.calib.qdq.quantize_qdq`,
:func:`~yolo4.calib.sensitivity.sensitivity_search`) all read their defaults from here, so a Python
caller gets the INT8 model the command line makes.

Standard library only (the CLI reads it to show its option defaults); Python 3.8.
"""

__all__ = ["DEFAULT_NUM_IMAGES", "DEFAULT_BATCH_SIZE", "DEFAULT_SEED", "DEFAULT_METHOD", "DEFAULT_IMPLICIT_METHOD",
           "DEFAULT_PERCENTILE", "DEFAULT_LAYOUT"]

#: Images calibrated on by default (NVIDIA's suggestion for ImageNet-like tasks; tensorrt_demos uses it).
DEFAULT_NUM_IMAGES = 500
#: Images per calibration batch of the Q/DQ quantizer on ONNX Runtime, for a dynamic-batch ONNX (a
#: fixed-batch ONNX is calibrated at its batch: :func:`yolo4.calib.int8.calibration_batch`). TensorRT's
#: implicit calibrators use the optimization profile's batch instead.
DEFAULT_BATCH_SIZE = 8
#: Seed of the calibration image selection.
DEFAULT_SEED = 0
#: Calibration method of explicit (Q/DQ) quantization: max |activation| (NVIDIA Model Optimizer's INT8
#: default; measured best on yolov4-tiny, the README's INT8 table).
DEFAULT_METHOD = "minmax"
#: Calibrator of TensorRT's implicit INT8 (``IInt8EntropyCalibrator2``; TensorRT 8.5 - 10.x).
DEFAULT_IMPLICIT_METHOD = "entropy"
#: Percentile of |activation| kept by the ``percentile`` method.
DEFAULT_PERCENTILE = 99.999
#: Q/DQ placement (``yolo4 export --int8-target``): ``tensorrt`` (Conv inputs, symmetric INT8).
DEFAULT_LAYOUT = "tensorrt"
