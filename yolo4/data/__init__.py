"""Datasets, class names and image IO. Torch-free, Python 3.8.

- :func:`load_dataset` (YOLO txt, COCO json, Pascal VOC xml -> :class:`DatasetSplit`)
- :func:`load_names` (darknet ``.names`` files)
- :func:`imread`, :func:`image_size` (``HxWx3 uint8`` BGR; header-only size), both within one size
  limit (:data:`MAX_IMAGE_PIXELS`, :data:`MAX_IMAGE_SIDE`, :func:`image_size_problem`)
"""

from .datasets import (
    FORMATS,
    KNOWN_DATASETS,
    DatasetConfig,
    dataset_config,
    label_path,
    load_dataset,
    read_dataset_yaml,
)
from .images import (
    IMAGE_SUFFIXES,
    MAX_IMAGE_PIXELS,
    MAX_IMAGE_SIDE,
    VIDEO_SUFFIXES,
    image_size,
    image_size_problem,
    imread,
    is_image_file,
    is_video_file,
)
from .names import load_names
from .records import DatasetSplit, ImageRecord

__all__ = [
    "FORMATS", "KNOWN_DATASETS", "DatasetConfig", "dataset_config", "label_path", "load_dataset",
    "read_dataset_yaml", "IMAGE_SUFFIXES", "MAX_IMAGE_PIXELS", "MAX_IMAGE_SIDE", "VIDEO_SUFFIXES",
    "image_size", "image_size_problem", "imread", "is_image_file", "is_video_file", "load_names",
    "DatasetSplit", "ImageRecord",
]
