"""Implicit INT8 calibrators for TensorRT 8.5 - 10.x: entropy (``IInt8EntropyCalibrator2``) and
min-max (``IInt8MinMaxCalibrator``), fed by a :class:`~yolo4.calib.images.CalibrationSet` and backed
by a :class:`~yolo4.calib.cache.CalibrationCache`. Python 3.8, torch-free; ``tensorrt`` is passed in
and ``pycuda`` imported on the first batch, so this module imports without either.

Where implicit calibration exists: TensorRT 8.5 (JetPack 5, Xavier) to 10.x, deprecated from 10.1;
gone in TensorRT 11 and absent from TensorRT for RTX (strongly typed: INT8 only through a Q/DQ ONNX).
:func:`make_calibrator` says so when the module passed in lacks the base class.

How the builder uses one (the calibrator only feeds data; the builder sets the shapes)::

    calib = make_calibrator(trt, "entropy", calib_set, cache)
    config.set_flag(trt.BuilderFlag.INT8)
    config.int8_calibrator = calib
    # dynamic batch: a calibration profile whose kOPT shape is calib_set.shape ([B, 3, H, W]);
    # TensorRT reads exactly that many floats from the pointer get_batch returns
    config.set_calibration_profile(profile)
    plan = builder.build_serialized_network(network, config)
    calib.raise_if_failed()   # TensorRT swallows errors raised in get_batch: re-raise them here
    calib.free()

Sequencing: ``get_batch`` returns the device pointer of the next padded batch
(:meth:`CalibrationSet.iter_batches` with ``pad=True``: every batch holds exactly ``batch_size``
images), copied into ONE device buffer allocated on the first batch (none when the cache is reused),
and None after the last batch, when the buffer is freed. An error while making a batch (an unreadable
image) ends calibration (None), is logged, and is kept for :meth:`raise_if_failed`: TensorRT would
otherwise build an engine calibrated on part of the images. ``read_calibration_cache`` returns
:meth:`CalibrationCache.load` (read once), ``write_calibration_cache`` saves through
:meth:`CalibrationCache.save` (a failed write is a warning, the engine still builds).

The device copy is a small "uploader" object (:class:`PycudaUploader`: a page-locked host staging
array and one ``cuda.mem_alloc`` buffer in the device's retained primary context, pushed and popped
around each allocation, copy and free; never ``pycuda.autoinit``), injectable so the sequencing is
testable without a GPU.
"""

import math
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from ..errors import Yolo4Error
from .cache import CalibrationCache
from .images import CalibrationSet

__all__ = ["METHODS", "QDQ_ONLY_METHODS", "check_method", "make_calibrator", "PycudaUploader",
           "CalibrationFeed"]

Log = Optional[Callable[[str], Any]]

#: Implicit calibration methods -> the TensorRT base class (``tensorrt.<name>``).
METHODS: Dict[str, str] = {"entropy": "IInt8EntropyCalibrator2", "minmax": "IInt8MinMaxCalibrator"}
#: Methods of explicit (Q/DQ) quantization only, named in the error for a better message.
QDQ_ONLY_METHODS = ("percentile",)


def check_method(method: str) -> str:
    """``method`` normalized (lower case, stripped) when it is an implicit calibration method.

    Raises:
        Yolo4Error: anything else, listing the valid methods ("percentile" is only for explicit Q/DQ).
    """
    m = str(method).strip().lower()
    if m in METHODS:
        return m
    valid = ", ".join(METHODS)
    if m in QDQ_ONLY_METHODS:
        raise Yolo4Error(f"calibration method {method!r} is only for explicit Q/DQ quantization (a Q/DQ "
                         f"ONNX); TensorRT calibrators take: {valid}")
    raise Yolo4Error(f"unknown calibration method {method!r}: use one of {valid} ('percentile' is only "
                     "for explicit Q/DQ quantization)")


class PycudaUploader:
    """One device buffer of ``nbytes`` (allocated once) and a page-locked host staging array; each
    :meth:`upload` copies a batch host -> device synchronously and returns the device pointer.

    The memory lives in the device's retained *primary* context
    (:class:`~yolo4.runtime.cuda_context.PrimaryContext`), the one TensorRT's builder runs in, made
    current only around each allocation, copy and free: ``get_batch`` runs on the builder's thread
    inside ``build_serialized_network``, where a context made by ``import pycuda.autoinit`` would
    become current and give TensorRT a pointer from another context ("invalid resource handle").

    Args:
        nbytes: bytes of one padded batch (``float32``).
        device: CUDA device ordinal the builder uses (default 0).

    Raises:
        Yolo4Error: pycuda cannot be imported (what to install).
    """

    def __init__(self, nbytes: int, device: int = 0) -> None:
        try:
            import pycuda.driver as cuda
        except ImportError as e:
            raise Yolo4Error(f"TensorRT INT8 calibration copies its batches to the GPU with pycuda, which "
                             f"cannot be imported ({e}): pip install 'yolo4[trt]' (or pycuda)") from None
        from ..runtime.cuda_context import PrimaryContext

        self._cuda = cuda
        self.nbytes = int(nbytes)
        self._host: Any = None
        self._device: Any = None
        self._ctx: Optional[PrimaryContext] = PrimaryContext(cuda, device)
        try:
            with self._ctx:
                self._host = cuda.pagelocked_empty(self.nbytes // 4, np.float32)
                self._device = cuda.mem_alloc(self.nbytes)
        except BaseException:
            self.free()
            raise

    def upload(self, batch: np.ndarray) -> int:
        """Copy ``batch`` (float32, exactly ``nbytes``) to the device buffer; returns its address.

        Raises:
            ValueError: a batch of another size.
        """
        if batch.nbytes != self.nbytes:
            raise ValueError(f"batch of {batch.nbytes} bytes for a {self.nbytes}-byte device buffer")
        np.copyto(self._host, batch.reshape(-1), casting="no")
        assert self._ctx is not None, "upload after free"
        with self._ctx:
            self._cuda.memcpy_htod(self._device, self._host)
        return int(self._device)

    def free(self) -> None:
        """Free the device and page-locked buffers (in their context) and release the context."""
        if self._ctx is None:
            return
        with self._ctx:
            if self._device is not None:
                self._device.free()
                self._device = None
            self._host = None  # the page-locked allocation is freed with its last reference
        ctx, self._ctx = self._ctx, None
        ctx.detach()


class CalibrationFeed:
    """What a calibrator does, without TensorRT: the batch sequence, the device copy, the cache.

    The TensorRT subclasses made by :func:`make_calibrator` only forward their four methods here.

    Args:
        calib_set: the images and their preprocessing.
        cache: the calibration cache, or None for none.
        method: ``"entropy"`` or ``"minmax"`` (for messages).
        log: one-line progress messages ("calibration batch k/n"); None = silent.
        uploader: ``factory(nbytes) -> object`` with ``upload(batch) -> int`` (device pointer) and
            ``free()``; default :class:`PycudaUploader`.
    """

    def __init__(self, calib_set: CalibrationSet, cache: Optional[CalibrationCache], method: str,
                 log: Log = print, uploader: Optional[Callable[[int], Any]] = None) -> None:
        self.calib_set = calib_set
        self.cache = cache
        self.method = method
        self.log = log
        self._uploader_factory = uploader or PycudaUploader
        self._uploader: Any = None
        self._batches: Any = None
        self._cache_data: Optional[bytes] = None
        self._cache_read = False
        self.batches_done = 0
        self.finished = False
        #: the exception that stopped calibration, re-raised by :meth:`raise_if_failed`
        self.error: Optional[BaseException] = None

    def _say(self, message: str) -> None:
        if self.log is not None:
            self.log(message)

    @property
    def batch_size(self) -> int:
        return self.calib_set.batch_size

    def next_batch(self, names: Sequence[str]) -> Optional[List[int]]:
        """``[device pointer]`` of the next padded batch for the one input in ``names``; None at the end
        or after an error (kept in :attr:`error`)."""
        if self.finished or self.error is not None:
            return None
        try:
            if len(names) != 1:
                raise Yolo4Error(f"calibration feeds one network input (the image batch), the network "
                                 f"asks for {len(names)}: {', '.join(map(str, names))}")
            if self._batches is None:
                self._say(f"calibrating ({self.method}) on {self.calib_set.describe()}")
                self._batches = self.calib_set.iter_batches(pad=True)
            batch = next(self._batches, None)
            if batch is None:
                self.finished = True
                self._say(f"calibration done: {self.batches_done} batches")
                self.free()
                return None
            if self._uploader is None:
                self._uploader = self._uploader_factory(self.calib_set.batch_nbytes)
            ptr = int(self._uploader.upload(batch))
            self.batches_done += 1
            n = len(self.calib_set)
            step = max(1, math.ceil(n / 10))
            k = self.batches_done
            if k == 1 or k == n or k % step == 0:
                self._say(f"calibration batch {k}/{n}")
            return [ptr]
        except BaseException as e:  # TensorRT swallows exceptions from get_batch: keep it for the builder
            self.error = e
            self._say(f"error: calibration stopped at batch {self.batches_done + 1}/{len(self.calib_set)}: {e}")
            self.free()
            return None

    def read_cache(self) -> Optional[bytes]:
        """The cache's bytes when it is valid for this build (read once), else None."""
        if not self._cache_read:
            self._cache_read = True
            self._cache_data = self.cache.load() if self.cache is not None else None
            if self._cache_data is not None:
                self._say(f"using calibration cache {self.cache.path}: no calibration pass")  # type: ignore[union-attr]
        return self._cache_data

    def write_cache(self, data: Any) -> None:
        """Save TensorRT's cache bytes; a failure is a warning (the engine is built anyway)."""
        payload = bytes(data)
        self._cache_data, self._cache_read = payload, True
        if self.cache is None:
            return
        try:
            self.cache.save(payload)
        except Yolo4Error as e:
            self._say(f"warning: {e}")
            return
        self._say(f"wrote calibration cache {self.cache.path}")

    def raise_if_failed(self) -> None:
        """Re-raise the error that stopped calibration (TensorRT does not propagate it)."""
        if self.error is not None:
            raise self.error

    def free(self) -> None:
        """Free the device buffer (also done after the last batch and on an error)."""
        if self._uploader is not None:
            up, self._uploader = self._uploader, None
            up.free()


_CLASSES: Dict[Any, type] = {}


def _calibrator_class(base: type) -> type:
    """A subclass of the TensorRT calibrator class ``base`` forwarding to a :class:`CalibrationFeed`
    (made once per base: ``tensorrt`` is a module passed in, not imported here)."""
    if base in _CLASSES:
        return _CLASSES[base]

    class Calibrator(base):  # type: ignore[valid-type,misc]
        """TensorRT calibrator over a yolo4 calibration set (see :mod:`yolo4.calib.calibrators`)."""

        def __init__(self, feed: CalibrationFeed) -> None:
            base.__init__(self)  # type: ignore[misc]  # pybind11 trampolines must be initialised explicitly
            self.feed = feed

        def get_batch_size(self) -> int:
            return self.feed.batch_size

        def get_batch(self, names: Sequence[str], *args: Any) -> Optional[List[int]]:
            return self.feed.next_batch(names)

        def read_calibration_cache(self, *args: Any) -> Optional[bytes]:
            return self.feed.read_cache()

        def write_calibration_cache(self, cache: Any, *args: Any) -> None:
            self.feed.write_cache(cache)

        def raise_if_failed(self) -> None:
            self.feed.raise_if_failed()

        def free(self) -> None:
            self.feed.free()

        @property
        def error(self) -> Optional[BaseException]:
            return self.feed.error

    short = base.__name__[1:] if base.__name__.startswith("I") else base.__name__
    Calibrator.__name__ = Calibrator.__qualname__ = "Yolo4" + short
    _CLASSES[base] = Calibrator
    return Calibrator


def make_calibrator(trt: Any, method: str, calib_set: CalibrationSet, cache: Optional[CalibrationCache],
                    log: Log = print, uploader: Optional[Callable[[int], Any]] = None) -> Any:
    """A TensorRT INT8 calibrator over ``calib_set`` (module docstring: how the builder uses it).

    Args:
        trt: the ``tensorrt`` module (8.5 - 10.x).
        method: ``"entropy"`` (``IInt8EntropyCalibrator2``, TensorRT's recommendation for CNNs) or
            ``"minmax"`` (``IInt8MinMaxCalibrator``).
        calib_set: the images; batches come from its one preprocessing, padded to its batch size.
        cache: the calibration cache (:class:`CalibrationCache` with :func:`~yolo4.calib.cache.header_for`),
            or None.
        log: one-line messages (progress "calibration batch k/n", cache use); None = silent.
        uploader: ``factory(nbytes)`` of the host -> device copier; default :class:`PycudaUploader`.

    Returns:
        An instance of a subclass of ``trt.IInt8EntropyCalibrator2`` / ``trt.IInt8MinMaxCalibrator``
        with ``get_batch_size``, ``get_batch``, ``read_calibration_cache``, ``write_calibration_cache``,
        plus ``raise_if_failed()``, ``free()``, ``error`` and ``feed`` (its :class:`CalibrationFeed`).

    Raises:
        Yolo4Error: an unknown method (valid ones listed), or a TensorRT without that calibrator
            (TensorRT 11, TensorRT for RTX: use Q/DQ quantization).
    """
    m = check_method(method)
    base = getattr(trt, METHODS[m], None)
    if base is None:
        version = getattr(trt, "__version__", "?")
        name = getattr(trt, "__name__", "tensorrt")
        raise Yolo4Error(f"{name} {version} has no {METHODS[m]}: implicit INT8 calibration exists in "
                         "TensorRT 8.5 - 10.x only (removed in TensorRT 11, absent from TensorRT for RTX); "
                         "build INT8 from a Q/DQ ONNX instead")
    feed = CalibrationFeed(calib_set, cache, m, log, uploader)
    return _calibrator_class(base)(feed)
