"""Inference backends behind one interface (:class:`~yolo4.runtime.backends.base.Backend`), and the
one registry of backend kinds and model-file forms.

``create_backend(kind, **kwargs)`` builds one by name; each backend module imports its heavy
dependency (onnxruntime, torch, ...) only when a backend of that kind is created.
``model_form(path)`` tells what a model file is from its suffix, and ``default_backend(form)`` which
backend runs it when the user names none.

==============  =====================================================  ==========================
kind            class                                                  main kwargs
==============  =====================================================  ==========================
``onnxruntime``  :class:`.onnxruntime_backend.OnnxRuntimeBackend`      ``path``, threads, providers
``torch``       :class:`.torch_backend.TorchBackend`                   ``module`` | ``cfg`` | ``checkpoint``
``tensorrt``    :class:`.tensorrt_backend.TensorRTBackend`             ``path`` (+ ``.json`` sidecar), device
==============  =====================================================  ==========================

Model forms (by file suffix): ``onnx`` (``.onnx``: ONNX Runtime), ``engine`` (``.engine``, ``.plan``:
TensorRT or TensorRT for RTX, flavour from the engine's metadata), ``checkpoint`` (``.pt``, ``.pth``: a ``yolo4 train``
checkpoint) and ``cfg`` (``.cfg`` + ``.weights``: darknet). The PyTorch forms run on ``torch``
directly or on ``onnxruntime`` through a cached export (the embedded default).
"""

import importlib
import os
from typing import Dict, Tuple, Union

from ...errors import Yolo4Error
from .base import Backend

__all__ = ["Backend", "BACKENDS", "MODEL_FORMS", "create_backend", "register_backend", "model_form",
           "default_backend", "backends_for"]

#: kind -> (module path relative to this package, class name); imported lazily
BACKENDS: Dict[str, Tuple[str, str]] = {
    "onnxruntime": (".onnxruntime_backend", "OnnxRuntimeBackend"),
    "torch": (".torch_backend", "TorchBackend"),
    "tensorrt": (".tensorrt_backend", "TensorRTBackend"),
}

#: model-file suffix -> model form
MODEL_FORMS: Dict[str, str] = {
    ".onnx": "onnx",
    ".engine": "engine", ".plan": "engine",
    ".pt": "checkpoint", ".pth": "checkpoint",
    ".cfg": "cfg",
}

#: model form -> backend kinds that can run it, the default first
_FORM_BACKENDS: Dict[str, Tuple[str, ...]] = {
    "onnx": ("onnxruntime",),
    "engine": ("tensorrt",),
    "checkpoint": ("onnxruntime", "torch"),
    "cfg": ("onnxruntime", "torch"),
}

_ALIASES = {"ort": "onnxruntime", "onnx": "onnxruntime", "pytorch": "torch", "trt": "tensorrt"}


def register_backend(kind: str, module: str, class_name: str) -> None:
    """Register a backend kind (e.g. ``"tensorrt"``) as ``module`` (absolute, or relative to this
    package when it starts with a dot) and ``class_name``, imported when first created."""
    BACKENDS[kind] = (module, class_name)


def canonical_kind(kind: str) -> str:
    """``kind`` with aliases resolved (``ort`` -> ``onnxruntime``, ``pytorch`` -> ``torch``)."""
    return _ALIASES.get(kind.strip().lower(), kind.strip().lower())


def model_form(path: Union[str, "os.PathLike[str]"]) -> str:
    """The model form of a file by its suffix (case-insensitive): ``onnx``, ``engine``, ``checkpoint``
    or ``cfg``.

    Raises:
        Yolo4Error: an unknown suffix (one line naming the file and the known suffixes).
    """
    p = os.fspath(path)
    form = MODEL_FORMS.get(os.path.splitext(p)[1].lower())
    if form is None:
        raise Yolo4Error("unknown model file type: expected one of %s" % ", ".join(sorted(MODEL_FORMS)), p)
    return form


def backends_for(form: str) -> Tuple[str, ...]:
    """Backend kinds that can run a model form, the default first."""
    return _FORM_BACKENDS[form]


def default_backend(form: str) -> str:
    """The backend that runs a model form when the user names none (ONNX Runtime for ONNX and the
    PyTorch forms, TensorRT for engines)."""
    return _FORM_BACKENDS[form][0]


def create_backend(kind: str, **kwargs: object) -> Backend:
    """Create a backend by kind.

    Args:
        kind: ``"onnxruntime"`` (alias ``"ort"``, ``"onnx"``), ``"torch"`` (alias ``"pytorch"``),
            ``"tensorrt"`` (alias ``"trt"``), or a kind added with :func:`register_backend`.
        **kwargs: passed to the backend class (see the table in this module's docstring).

    Returns:
        The backend (use it as a context manager, or call ``close()``).

    Raises:
        ValueError: unknown ``kind`` (the message lists the known ones).
        ModelFileError, CfgError, WeightsError: from the backend's loader.
    """
    key = canonical_kind(kind)
    if key not in BACKENDS:
        raise ValueError(f"unknown backend {kind!r}; known backends: {', '.join(sorted(BACKENDS))}")
    module_name, class_name = BACKENDS[key]
    module = importlib.import_module(module_name, __name__)
    return getattr(module, class_name)(**kwargs)
