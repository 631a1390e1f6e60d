"""Moved to :mod:`yolo4.nms_params` (a ground-floor contract that the plugins and the exporter read
too); this path stays importable for existing code."""

from ..nms_params import (
    DEFAULT_MAX_CANDIDATES,
    GREEDY_NMS_BETA,
    NMS_KIND_CODES,
    NMS_KINDS,
    NMS_OUTPUT_NAMES,
    PLUGIN_NAMESPACE,
    PLUGIN_OP,
    PLUGIN_VERSION,
    NmsParams,
    effective_beta,
)

__all__ = ["NmsParams", "NMS_KINDS", "GREEDY_NMS_BETA", "effective_beta", "DEFAULT_MAX_CANDIDATES", "PLUGIN_OP",
           "PLUGIN_VERSION", "PLUGIN_NAMESPACE", "NMS_KIND_CODES", "NMS_OUTPUT_NAMES"]
