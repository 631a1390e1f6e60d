"""Upper bounds on cfg values, so that a typo or a fuzzed cfg is a one-line :class:`CfgError` before any
tensor is allocated, never an attempt to allocate gigabytes or a forward pass that does not end.

Each bound is far above every published darknet cfg (the 87 cfgs of AlexeyAB ``cfg/``: largest input
1536 px, widest layer output 2560 channels, largest kernel 13 (SPP maxpool), largest stride 4, at
most 16 anchors (``num``), 9418 classes (yolo9000); the largest YOLO, yolov4-p6, holds 128 M
parameters and its largest layer output at 1280 px is 52 M values) while keeping a model built from
any accepted cfg within a few GiB.
"""

__all__ = ["MAX_INPUT_SIDE", "MAX_CHANNELS", "MAX_KERNEL", "MAX_STRIDE", "MAX_CLASSES", "MAX_ANCHORS",
           "MAX_PARAMS", "MAX_ACTIVATION"]

#: ``[net] width`` / ``height`` in pixels
MAX_INPUT_SIDE = 8192
#: ``filters`` of a ``[convolutional]``, and the channels of any layer output (a ``[route]`` concat)
MAX_CHANNELS = 16384
#: ``size``, ``dilation`` and ``padding`` of a ``[convolutional]`` / ``[maxpool]``
MAX_KERNEL = 64
#: ``stride`` of a ``[convolutional]`` / ``[maxpool]`` / ``[upsample]``
MAX_STRIDE = 64
#: ``classes`` of a ``[yolo]``
MAX_CLASSES = 10000
#: ``num`` (anchors) of a ``[yolo]``
MAX_ANCHORS = 512
#: parameters (float32 values of the ``.weights`` file) of the whole network: 2**29 = 2 GiB float32,
#: ~4x yolov4-p6
MAX_PARAMS = 2 ** 29
#: values in one layer's output for one image at the checked input size: 2**28 = 1 GiB float32,
#: ~5x the largest layer output of yolov4-p6 at 1280 px
MAX_ACTIVATION = 2 ** 28
