"""Moved to :mod:`yolo4.engine_meta` (a ground-floor contract: the engine builder writes it, the
runtime reads it); this path stays importable for existing code."""

from ..engine_meta import (
    AHEAD_OF_TIME,
    AMPERE_MIN_CC,
    ENGINE_META_VERSION,
    FLAVOURS,
    HARDWARE_COMPATIBILITY,
    PRECISIONS,
    QUANTIZATIONS,
    RTX_DEFAULT_MIN_CC,
    CudaDevice,
    EngineMeta,
    check_engine_compat,
    cuda_device,
    engine_meta_path,
    flavour_name,
    parse_compute_capability,
    read_engine_meta,
    rebuild_command,
    write_engine_meta,
)

__all__ = ["EngineMeta", "CudaDevice", "ENGINE_META_VERSION", "PRECISIONS", "QUANTIZATIONS", "FLAVOURS",
           "AHEAD_OF_TIME", "RTX_DEFAULT_MIN_CC", "HARDWARE_COMPATIBILITY", "AMPERE_MIN_CC", "engine_meta_path",
           "write_engine_meta", "read_engine_meta", "check_engine_compat", "rebuild_command", "cuda_device",
           "flavour_name", "parse_compute_capability"]
