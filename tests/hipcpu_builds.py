"""The HIP-CPU builds of the CUDA kernel files, shared by tests/test_plugin_hipcpu*.py.

``../shared/hip-cpu`` (the HIP CPU Runtime, a CUDA-name shim and the launch rewriter; override with
``$YOLO4_HIP_CPU``) and TBB from the ``tbb-devel`` wheel (headers and ``libtbb.so`` under this venv's prefix)
compile the unchanged ``.cu`` files with g++ (:func:`yolo4.plugins.build.build_hipcpu_library`). A build takes
1-3 minutes, so the libraries are cached in pytest's cache folder (``.pytest_cache/d/yolo4-hipcpu``, keyed by
the sources' content): a suite compiles each variant once, and a later run reuses it.
"""

import os
import shutil
import sys
from pathlib import Path
from typing import Optional

import pytest

from .conftest import SHARED_DATA

HIP_CPU = Path(os.environ.get("YOLO4_HIP_CPU") or SHARED_DATA.parent / "hip-cpu")
TBB_PREFIX = Path(sys.prefix)


def missing_prerequisite() -> Optional[str]:
    """Why the HIP-CPU builds cannot run here, or None."""
    if os.environ.get("YOLO4_OLDEST_LANE"):  # scripts/test-oldest.sh: the main suite compiles and runs them
        return "the oldest-versions lane leaves the HIP-CPU builds (minutes of g++) to the main suite"
    if not shutil.which("g++"):
        return "g++ is not installed"
    if not (HIP_CPU / "include" / "hip" / "hip_runtime.h").is_file():
        return f"{HIP_CPU} absent: the HIP CPU Runtime (../shared/hip-cpu, or $YOLO4_HIP_CPU) is needed"
    if not (TBB_PREFIX / "include" / "tbb").is_dir() or not (TBB_PREFIX / "lib" / "libtbb.so").exists():
        return f"tbb-devel is not installed in {TBB_PREFIX} (pip install tbb-devel; part of the dev extra)"
    return None


def build_dir(request, tmp_path_factory) -> Path:
    """pytest's cache folder for the libraries (a temp folder when the cache plugin is off)."""
    cache = getattr(request.config, "cache", None)
    return Path(cache.mkdir("yolo4-hipcpu")) if cache is not None else tmp_path_factory.mktemp("hipcpu")


def build(request, tmp_path_factory, which: str, sanitize: str = "") -> Path:
    """The HIP-CPU library of ``which`` (``diou_nms`` / ``preprocess``), or a skip with the reason."""
    reason = missing_prerequisite()
    if reason:
        pytest.skip(reason)
    from yolo4.plugins.build import build_hipcpu_library

    return build_hipcpu_library(which, build_dir(request, tmp_path_factory), HIP_CPU, TBB_PREFIX, sanitize=sanitize)
