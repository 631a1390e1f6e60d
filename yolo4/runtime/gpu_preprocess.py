"""GPU preprocessing for the TensorRT runtime: uint8 BGR frames -> the engine's input, in one CUDA kernel.

:func:`yolo4.runtime.preprocess.preprocess` is the one definition of what a model sees; this module does
the same on the device so that a TensorRT engine's input never goes through host float32 memory: the
frames are uploaded as uint8 (a quarter of the bytes) and one kernel launch per batch
(``yolo4/plugins/preprocess/preprocess.cu``) resizes them (plain stretch, or darknet's letterbox with 0.5
padding), swaps BGR -> RGB, divides by 255 and writes ``[B, 3, H, W]`` float32 or float16 straight into
the engine's input buffer.

Same result as :func:`~yolo4.runtime.preprocess.preprocess`: the geometry comes from
:func:`~yolo4.runtime.preprocess.letterbox_geometry` (:func:`kernel_params`), the transforms returned are
equal to the CPU path's, and the kernel reproduces ``cv2.resize(INTER_LINEAR)`` of the uint8 image with
OpenCV's fixed-point weights and rounding (``preprocessCommon.h``) before the division, so the values are
the CPU path's bit for bit wherever OpenCV computes the same uint8 (every case in
``tests/test_gpu_preprocess.py``); the guaranteed bound is 1/255 per value, and the padding is exactly 0.5.

The library: ``libyolo4_preprocess.so``, written by ``yolo4 build-plugin`` beside the DIoU-NMS plugin
(:func:`yolo4.plugins.build.default_preprocess_path`); its CPU build (the same arithmetic, host pointers,
:func:`yolo4.plugins.build.build_preprocess_host_library`) is what the test suite checks without a GPU
through :meth:`PreprocessApi.run_host`.

Python 3.8, torch-free; pycuda is imported only by :class:`GpuPreprocessor`.
"""

import ctypes
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import Yolo4Error
from .preprocess import Transform, _as_bgr, letterbox_geometry

__all__ = ["STATUS_SUCCESS", "STATUS_BAD_PARAM", "MAX_IMAGES_PER_LAUNCH", "PreprocessImage", "ImageParams",
           "kernel_params", "PreprocessApi", "load_preprocess_library", "GpuPreprocessor"]

PathLike = Union[str, "os.PathLike[str]"]

#: ``yolo4_preprocess_launch`` status codes (positive: a ``cudaError_t``)
STATUS_SUCCESS, STATUS_BAD_PARAM = 0, -1
#: images per kernel launch (``YOLO4_PREPROCESS_MAX_BATCH``); a larger batch takes several launches
MAX_IMAGES_PER_LAUNCH = 64
#: byte alignment of each frame in the staging and device buffers
_ALIGN = 256


class PreprocessImage(ctypes.Structure):
    """``YoloPreprocessImage`` of ``yolo4/plugins/preprocess/preprocessCommon.h``, field for field.

    ``data``: address of an ``HxWx3 uint8`` BGR frame (device for the CUDA library, host for the CPU
    build); ``width``/``height`` in pixels; ``stride`` in bytes between rows; ``new_w``/``new_h``/``pad_x``/
    ``pad_y``: the content's size and offset in the network input, in input pixels; ``letterbox``: 1 or 0.
    """

    _fields_ = [("data", ctypes.c_void_p), ("width", ctypes.c_int32), ("height", ctypes.c_int32),
                ("stride", ctypes.c_int32), ("new_w", ctypes.c_int32), ("new_h", ctypes.c_int32),
                ("pad_x", ctypes.c_int32), ("pad_y", ctypes.c_int32), ("letterbox", ctypes.c_int32),
                ("reserved", ctypes.c_int32)]


@dataclass(frozen=True)
class ImageParams:
    """What the kernel needs to know about one image, and the :class:`Transform` the CPU path returns.

    Attributes:
        src_w, src_h: the frame's size in pixels.
        new_w, new_h: size of the resized content in the network input, in input pixels.
        pad_x, pad_y: the content's offset in the input, in input pixels (0 for a plain resize).
        letter_box: True = letterbox (outside the content is 0.5), False = plain resize.
        transform: ``x_in = x_orig * scale_x + pad_x`` (equal to :func:`preprocess`'s).
    """

    src_w: int
    src_h: int
    new_w: int
    new_h: int
    pad_x: int
    pad_y: int
    letter_box: bool
    transform: Transform

    def struct(self, data: int, stride: int) -> PreprocessImage:
        """The C struct for the frame at address ``data`` whose rows are ``stride`` bytes apart."""
        return PreprocessImage(data=int(data), width=self.src_w, height=self.src_h, stride=int(stride),
                               new_w=self.new_w, new_h=self.new_h, pad_x=self.pad_x, pad_y=self.pad_y,
                               letterbox=1 if self.letter_box else 0, reserved=0)


def kernel_params(images_hw: Sequence[Tuple[int, int]], input_hw: Tuple[int, int],
                  letter_box: bool) -> List[ImageParams]:
    """Per-image kernel parameters, from :func:`~yolo4.runtime.preprocess.letterbox_geometry` (the one
    place the geometry lives).

    Args:
        images_hw: each frame's ``(height, width)`` in pixels (e.g. ``img.shape[:2]``).
        input_hw: network input ``(height, width)`` in pixels.
        letter_box: True = darknet letterbox, False = plain resize.

    Returns:
        One :class:`ImageParams` per frame; ``[p.transform for p in ...]`` equals the transforms
        :func:`~yolo4.runtime.preprocess.preprocess` returns for the same frames.

    Raises:
        ValueError: a non-positive frame or input size.
    """
    out = []
    for hw in images_hw:
        h, w = int(hw[0]), int(hw[1])
        new_w, new_h, pad_x, pad_y = letterbox_geometry((w, h), input_hw, letter_box)
        t = Transform(scale_x=new_w / w, scale_y=new_h / h, pad_x=float(pad_x), pad_y=float(pad_y),
                      orig_w=w, orig_h=h)
        out.append(ImageParams(src_w=w, src_h=h, new_w=new_w, new_h=new_h, pad_x=pad_x, pad_y=pad_y,
                               letter_box=bool(letter_box), transform=t))
    return out


def _check_dtype(dtype: Any) -> bool:
    """True for float16, False for float32; ValueError otherwise."""
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float16)):
        raise ValueError(f"dtype must be float32 or float16, got {dt}")
    return dt == np.dtype(np.float16)


def _check_input_hw(input_hw: Tuple[int, int]) -> Tuple[int, int]:
    h, w = int(input_hw[0]), int(input_hw[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"input size {w}x{h} must be positive")
    return h, w


class PreprocessApi:
    """The C API of a library built from ``yolo4/plugins/preprocess`` (the CUDA library or the CPU build).

    Args:
        lib: a loaded ``ctypes.CDLL``.
        path: its file, for messages.

    Raises:
        Yolo4Error: the library lacks the entry points or was built with another ``YoloPreprocessImage``.
    """

    def __init__(self, lib: Any, path: Optional[PathLike] = None) -> None:
        self.lib = lib
        self.path = os.fspath(path) if path is not None else None
        try:
            self._launch = lib.yolo4_preprocess_launch
            size_fn = lib.yolo4_preprocess_image_struct_size
            device_fn = lib.yolo4_preprocess_is_device
        except AttributeError:
            raise Yolo4Error("not a yolo4 GPU preprocessing library (no yolo4_preprocess_launch): rebuild it "
                             "with `yolo4 build-plugin`", self.path) from None
        self._launch.restype = ctypes.c_int
        self._launch.argtypes = [ctypes.POINTER(PreprocessImage), ctypes.c_int, ctypes.c_void_p, ctypes.c_int,
                                 ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
        size_fn.restype = ctypes.c_int
        size_fn.argtypes = []
        device_fn.restype = ctypes.c_int
        device_fn.argtypes = []
        if size_fn() != ctypes.sizeof(PreprocessImage):
            raise Yolo4Error(f"GPU preprocessing library built with another YoloPreprocessImage ({size_fn()} "
                             f"bytes, expected {ctypes.sizeof(PreprocessImage)}): rebuild it with "
                             "`yolo4 build-plugin`", self.path)
        #: True for the CUDA library (device pointers), False for the CPU build (host pointers)
        self.is_device = bool(device_fn())

    def launch(self, images: "ctypes.Array[PreprocessImage]", batch: int, dst: int, dst_h: int, dst_w: int,
               half: bool, stream: Optional[int]) -> int:
        """``yolo4_preprocess_launch``: enqueue (CUDA library) or run (CPU build) the preprocessing.

        Args:
            images: ``batch`` :class:`PreprocessImage` (device addresses for the CUDA library).
            dst: address of ``[batch, 3, dst_h, dst_w]`` float32 (or float16 when ``half``).
            stream: a ``CUstream``/``cudaStream_t`` handle (pycuda ``Stream.handle``); None or 0 = the
                default stream. Ignored by the CPU build.

        Returns:
            :data:`STATUS_SUCCESS`, :data:`STATUS_BAD_PARAM` (nothing enqueued), or a ``cudaError_t`` (> 0).
        """
        return int(self._launch(images, int(batch), ctypes.c_void_p(int(dst)), int(dst_h), int(dst_w),
                                1 if half else 0, ctypes.c_void_p(int(stream) if stream else None)))

    def run_host(self, images: Sequence[np.ndarray], input_hw: Tuple[int, int], letter_box: bool,
                 dtype: Any = np.float32) -> Tuple[np.ndarray, List[Transform]]:
        """Run the CPU build on host arrays, as :func:`~yolo4.runtime.preprocess.preprocess` is called.

        Args:
            images: ``HxWx3 uint8`` BGR frames (grey / BGRA converted like :func:`preprocess`); a frame
                whose pixels are contiguous but whose rows are not (a crop of a larger frame) is passed
                with its row stride, not copied.
            input_hw: network input ``(height, width)`` in pixels.
            letter_box: True = letterbox, False = plain resize.
            dtype: ``np.float32`` or ``np.float16``.

        Returns:
            ``(batch, transforms)``: ``[B, 3, H, W]`` of ``dtype``, RGB, ``pixel / 255`` (0.5 padding), and
            the per-image :class:`Transform`.

        Raises:
            ValueError: no images, a bad image or dtype. Yolo4Error: the CUDA library (device pointers) or
            a launch the library rejects.
        """
        if self.is_device:
            raise Yolo4Error("run_host needs the CPU build of the preprocessing (build_preprocess_host_library)",
                             self.path)
        if len(images) == 0:
            raise ValueError("run_host() needs at least one image")
        half = _check_dtype(dtype)
        net_h, net_w = _check_input_hw(input_hw)
        frames = []
        for img in images:
            f = _as_bgr(img)
            if f.strides[1:] != (3, 1) or f.strides[0] < 3 * f.shape[1]:
                f = np.ascontiguousarray(f)
            frames.append(f)
        params = kernel_params([f.shape[:2] for f in frames], (net_h, net_w), letter_box)
        structs = (PreprocessImage * len(frames))(*[p.struct(f.ctypes.data, f.strides[0])
                                                    for p, f in zip(params, frames)])
        out = np.empty((len(frames), 3, net_h, net_w), np.uint16 if half else np.float32)
        status = self.launch(structs, len(frames), out.ctypes.data, net_h, net_w, half, None)
        if status != STATUS_SUCCESS:
            raise Yolo4Error(f"yolo4_preprocess_launch rejected its parameters (status {status})", self.path)
        return (out.view(np.float16) if half else out), [p.transform for p in params]


def load_preprocess_library(path: Optional[PathLike] = None) -> PreprocessApi:
    """Load ``libyolo4_preprocess.so`` (or its CPU build) with ctypes.

    Args:
        path: the library [default: :func:`yolo4.plugins.build.default_preprocess_path`].

    Raises:
        Yolo4Error: the library is missing (run ``yolo4 build-plugin``), cannot be loaded, or is not one.
    """
    if path is None:
        from ..plugins.build import default_preprocess_path

        p = default_preprocess_path()
    else:
        p = Path(path)
    key = os.path.abspath(os.fspath(p))
    if not os.path.isfile(key):
        raise Yolo4Error("GPU preprocessing library libyolo4_preprocess.so not found: build it with "
                         "`yolo4 build-plugin`", key)
    try:
        lib = ctypes.CDLL(key)
    except OSError as e:
        raise Yolo4Error(f"cannot load the GPU preprocessing library ({' '.join(str(e).split())}): rebuild it "
                         "with `yolo4 build-plugin`", key) from None
    return PreprocessApi(lib, key)


def _import_pycuda() -> Any:
    try:
        import pycuda.driver as cuda
    except Exception as e:  # ImportError, or pycuda's own errors without a driver
        msg = " ".join(str(e).split()) or type(e).__name__
        raise Yolo4Error(f"GPU preprocessing needs pycuda ({msg}): pip install 'yolo4[trt]' (or pycuda)") from None
    return cuda


class GpuPreprocessor:
    """Uploads uint8 frames and preprocesses them on the GPU into an engine's input buffer.

    Owns a page-locked staging buffer and a device uint8 buffer, both allocated at the first
    :meth:`run` and grown only when a batch's frames need more bytes. Needs a current CUDA context
    (the TensorRT backend's).

    Args:
        input_hw: network input ``(height, width)`` in pixels.
        letter_box: True = darknet letterbox (pad 0.5), False = plain resize (the model's ``letter_box``).
        max_batch: most frames per :meth:`run` (the engine's batch; the input buffer's first dimension).
        dtype: the input buffer's type, ``np.float32`` or ``np.float16``.
        library: ``libyolo4_preprocess.so`` [default: :func:`yolo4.plugins.build.default_preprocess_path`].

    Raises:
        ValueError: a bad size, batch or dtype.
        Yolo4Error: the library is missing or unusable (run ``yolo4 build-plugin``), pycuda is missing.
    """

    def __init__(self, input_hw: Tuple[int, int], letter_box: bool, max_batch: int, dtype: Any = np.float32,
                 library: Optional[PathLike] = None) -> None:
        self.input_hw = _check_input_hw(input_hw)
        self.letter_box = bool(letter_box)
        if int(max_batch) < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.max_batch = int(max_batch)
        self.half = _check_dtype(dtype)
        self.dtype = np.dtype(np.float16 if self.half else np.float32)
        self.api = load_preprocess_library(library)
        if not self.api.is_device:
            raise Yolo4Error("this is the CPU build of the preprocessing, not libyolo4_preprocess.so: build it "
                             "with `yolo4 build-plugin`", self.api.path)
        self._cuda = _import_pycuda()
        self._host: Any = None  # page-locked uint8 staging
        self._dev: Any = None  # device uint8 frames
        self._capacity = 0
        self._done: Any = None  # event after the last launch: staging and device frames free again

    def output_nbytes(self, batch: int) -> int:
        """Bytes of ``[batch, 3, H, W]`` of :attr:`dtype`: what ``dst_ptr`` must hold for ``batch`` frames."""
        return int(batch) * 3 * self.input_hw[0] * self.input_hw[1] * self.dtype.itemsize

    def _reserve(self, nbytes: int) -> None:
        if nbytes <= self._capacity:
            return
        cuda = self._cuda
        size = max(nbytes, self._capacity * 3 // 2)
        size = (size + (1 << 20) - 1) // (1 << 20) * (1 << 20)  # whole MiB
        if self._dev is not None:
            self._dev.free()
        self._host = None
        self._dev = cuda.mem_alloc(size)
        self._host = cuda.pagelocked_empty(size, np.uint8)
        self._capacity = size

    def run(self, images: Sequence[np.ndarray], dst_ptr: int, stream: Any) -> List[Transform]:
        """Enqueue the upload of ``images`` and their preprocessing into ``dst_ptr`` on ``stream``.

        Nothing is synchronized: the input is ready when ``stream`` reaches this point (enqueue the
        engine on the same stream). A later call waits for this one's copy and kernel before reusing
        the staging buffer.

        Args:
            images: 1 .. ``max_batch`` ``HxWx3 uint8`` BGR frames of any sizes (HxW grey / HxWx4 BGRA are
                converted on the CPU like :func:`~yolo4.runtime.preprocess.preprocess` does).
            dst_ptr: device address of ``[len(images), 3, H, W]`` :attr:`dtype` (the engine's input
                binding; :meth:`output_nbytes` bytes).
            stream: a ``pycuda.driver.Stream`` (or None: the default stream).

        Returns:
            The per-image :class:`Transform` (equal to :func:`preprocess`'s).

        Raises:
            ValueError: no images, more than ``max_batch``, or an image that is not uint8 of a supported shape.
            Yolo4Error: the launch failed (the status, a ``cudaError_t``, is in the message).
        """
        n = len(images)
        if n == 0 or n > self.max_batch:
            raise ValueError(f"run() takes 1 to {self.max_batch} images, got {n}")
        cuda = self._cuda
        frames = [_as_bgr(img) for img in images]
        params = kernel_params([f.shape[:2] for f in frames], self.input_hw, self.letter_box)
        offsets, total = [], 0
        for f in frames:
            offsets.append(total)
            total += (f.nbytes + _ALIGN - 1) // _ALIGN * _ALIGN
        if self._done is not None:
            self._done.synchronize()  # the previous batch's copy (and kernel) no longer need the buffers
        self._reserve(total)
        for f, off in zip(frames, offsets):
            np.copyto(self._host[off:off + f.nbytes].reshape(f.shape), f)
        cuda.memcpy_htod_async(self._dev, self._host[:total], stream)
        base = int(self._dev)
        structs = (PreprocessImage * n)(*[p.struct(base + off, 3 * p.src_w) for p, off in zip(params, offsets)])
        handle = stream.handle if stream is not None else None
        status = self.api.launch(structs, n, dst_ptr, self.input_hw[0], self.input_hw[1], self.half, handle)
        if status != STATUS_SUCCESS:
            what = "bad parameters" if status == STATUS_BAD_PARAM else "cudaError_t %d" % status
            raise Yolo4Error(f"GPU preprocessing launch failed ({what})", self.api.path)
        if self._done is None:
            self._done = cuda.Event()
        self._done.record(stream)
        return [p.transform for p in params]

    def close(self) -> None:
        """Free the buffers (after the stream finished with them)."""
        if self._done is not None:
            self._done.synchronize()
        if self._dev is not None:
            self._dev.free()
        self._dev, self._host, self._capacity, self._done = None, None, 0, None
