"""Inference backends behind one interface (:class:`~yolo4.runtime.backends.base.Backend`).

``create_backend(kind, **kwargs)`` builds one by name; each backend module imports its heavy
dependency (onnxruntime, torch, ...) only when a backend of that kind is created.

==============  =====================================================  ==========================
kind            class                                                  main kwargs
==============  =====================================================  ==========================
``onnxruntime``  :class:`.onnxruntime_backend.OnnxRuntimeBackend`      ``path``, threads, providers
``torch``       :class:`.torch_backend.TorchBackend`                   ``module`` | ``cfg`` | ``checkpoint``
==============  =====================================================  ==========================
"""

import importlib
from typing import Dict, Tuple

from .base import Backend

__all__ = ["Backend", "BACKENDS", "create_backend", "register_backend"]

#: kind -> (module path relative to this package, class name); imported lazily
BACKENDS: Dict[str, Tuple[str, str]] = {
    "onnxruntime": (".onnxruntime_backend", "OnnxRuntimeBackend"),
    "torch": (".torch_backend", "TorchBackend"),
}

_ALIASES = {"ort": "onnxruntime", "onnx": "onnxruntime", "pytorch": "torch"}


def register_backend(kind: str, module: str, class_name: str) -> None:
    """Register a backend kind (e.g. ``"tensorrt"``) as ``module`` (absolute, or relative to this
    package when it starts with a dot) and ``class_name``, imported when first created."""
    BACKENDS[kind] = (module, class_name)


def create_backend(kind: str, **kwargs: object) -> Backend:
    """Create a backend by kind.

    Args:
        kind: ``"onnxruntime"`` (alias ``"ort"``, ``"onnx"``) or ``"torch"`` (alias ``"pytorch"``),
            or a kind added with :func:`register_backend`.
        **kwargs: passed to the backend class (see the table in this module's docstring).

    Returns:
        The backend (use it as a context manager, or call ``close()``).

    Raises:
        ValueError: unknown ``kind`` (the message lists the known ones).
        ModelFileError, CfgError, WeightsError: from the backend's loader.
    """
    key = _ALIASES.get(kind, kind)
    if key not in BACKENDS:
        raise ValueError(f"unknown backend {kind!r}; known backends: {', '.join(sorted(BACKENDS))}")
    module_name, class_name = BACKENDS[key]
    module = importlib.import_module(module_name, __name__)
    return getattr(module, class_name)(**kwargs)
