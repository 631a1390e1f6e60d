"""Darknet module -> ONNX (decode in graph, no NMS), simplified, optionally FP16, verified with ORT.

The exported graph::

    images  float32 [B, 3, H, W]   RGB 0..1, letterboxed or plainly resized as the cfg says
    boxes   float32 [B, N, 4]      x1, y1, x2, y2 in input pixels
    scores  float32 [B, N, C]      objectness x class probability

N = sum over ``[yolo]`` layers of anchors x (H/stride) x (W/stride), order layer, anchor, row, col;
B is the symbolic dimension ``"batch"`` unless a fixed batch is asked for. It is the module's decoded
forward (``raw=False``), so every backend gets the same outputs and runs the same post-processing
(``yolo4.runtime.postprocess``: darknet DIoU-NMS).

Opset and Mish
--------------
The default opset is 17: the ONNX parsers of TensorRT 8.5 (JetPack 5, Jetson Xavier) and 8.6 read
opsets up to 17 (onnx-tensorrt ``release/8.5-GA`` and ``8.6-GA``, ``docs/operators.md``). ONNX only
gained a ``Mish`` operator in opset 18, and TensorRT's parser has an importer for it only from
TensorRT 10.0 (8.x and 9.x lack it), so below opset 18 Mish (yolov4, yolov4-csp, yolov4x-mish
backbones) is written as ``Mul(x, Tanh(Softplus(x)))`` — three ops every runtime knows and TensorRT
fuses into one pointwise kernel (``mish_mode="decomposed"``). At opset >= 18 (TensorRT >= 10) the
chains are fused into native ``Mish`` nodes (``mish_mode="native"``). The PyTorch TorchScript
exporter (used here, ``dynamo=False``: deterministic, needs no onnxscript) always emits the
decomposition, so the fusion is done on the ONNX graph (:func:`yolo4.convert.graph.fuse_mish`).
The files keep the IR version the exporter picks for the opset: 8 up to opset 18 (TensorRT 8.5's
bundled ONNX 1.12 reads IR <= 8), 9 for opsets 19-20.

Every file is written atomically (``yolo4.fileio.atomic_path``: temporary file next to the output,
then ``os.replace``) and only after it passed verification (:mod:`yolo4.convert.verify`), so a failed
export never leaves a half-written or wrong model. The export cache is :mod:`yolo4.convert.export_cache`.
"""

import contextlib
import dataclasses
import io
import logging
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import onnx
import torch

from .. import __version__
from ..errors import ModelFileError, Yolo4Error
from ..fileio import atomic_path
from ..model_info import ModelInfo, check_input_size
from .graph import MISH_MIN_OPSET, fuse_mish, has_mish_decomposition, op_counts
from .verify import (
    OUTPUT_NAMES,
    ExportVerificationError,
    VerifyResult,
    _cpu_fp32,
    _Eval,
    _first_line,
    verify_onnx,
)

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 17
#: oldest opset accepted (Resize with nearest/asymmetric modes, Upsample gone) and newest the
#: TorchScript exporter writes.
MIN_OPSET, MAX_OPSET = 11, 20
INPUT_NAME = "images"

ImgSize = Union[int, Sequence[int]]


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote.

    Attributes:
        path: the ONNX file.
        opset: ai.onnx opset of the file.
        mish_mode: ``"decomposed"`` (Softplus/Tanh/Mul, opset < 18), ``"native"`` (ONNX ``Mish``,
            opset >= 18) or ``"none"`` (the model has no Mish activation).
        max_abs_diff: max |ORT - torch| over both outputs (in practice the boxes', in px), None when
            not verified. Per output: ``verify.max_abs_diff``.
        output_scale: max |torch output| over both outputs (the box scale, px), None when not
            verified. Per output: ``verify.output_scale``.
        simplified: True when the onnxsim-simplified graph was kept.
        fp16: True when weights/compute are float16 (graph I/O always float32).
        batch: fixed batch size, or None for the dynamic ``"batch"`` dimension.
        input_hw: (height, width) of the graph input in pixels.
        node_count: number of nodes in the written graph.
        verify: the full :class:`VerifyResult`, or None.
    """

    path: Path
    opset: int
    mish_mode: str
    max_abs_diff: Optional[float]
    output_scale: Optional[float]
    simplified: bool
    fp16: bool = False
    batch: Optional[int] = None
    input_hw: Tuple[int, int] = (0, 0)
    node_count: int = 0
    verify: Optional[VerifyResult] = None


# --------------------------------------------------------------------------------------------- helpers

def _say(log: Optional[Callable[[str], None]], msg: str) -> None:
    logger.info(msg)
    if log is not None:
        log(msg)


def export_info(module, img_size: Optional[ImgSize] = None,
                names: Optional[Sequence[str]] = None) -> ModelInfo:
    """The :class:`~yolo4.model_info.ModelInfo` an export of ``module`` writes as ``metadata_props``.

    ``module.model_info(names)`` (names: the given ones, else the module's, else
    ``yolo4.data.names.default_names``: COCO's for an 80-class model), with ``input_hw`` = the
    checked export size and ``yolo4_version`` filled in. The export cache keys on it too, so a cached
    file is never served with other metadata than a fresh export would write.

    Args:
        module: a Darknet-like module (``.model_info(names)``).
        img_size: int (square) or (height, width) in pixels, positive multiples of the model's largest
            stride (32 for YOLOv4); None = the cfg's ``[net] height/width``.
        names: class names, or None (see above).

    Raises:
        Yolo4Error: bad img_size (:func:`yolo4.model_info.check_input_size`), or a names list whose
            length differs from the model's classes.
    """
    try:
        info = module.model_info(names)
    except ValueError as e:  # e.g. a names file with the wrong number of classes
        raise Yolo4Error(str(e)) from e
    hw = check_input_size(img_size, info.max_stride, "img_size", default=tuple(info.input_hw))
    return dataclasses.replace(info, input_hw=hw, yolo4_version=info.yolo4_version or __version__)


def _check_opset(opset: Optional[int]) -> int:
    opset = DEFAULT_OPSET if opset is None else int(opset)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise Yolo4Error(f"ONNX opset {opset} unsupported: choose {MIN_OPSET}..{MAX_OPSET} (17 for TensorRT "
                         "8.5/JetPack 5, >= 18 for a native Mish op)")
    return opset


# ------------------------------------------------------------------------------------------ pipeline

def _torch_export(module, input_hw, batch, opset) -> Tuple[onnx.ModelProto, Dict[str, Tuple[int, ...]]]:
    """Trace-export ``module`` (already CPU float32); return (model, {output: shape at the traced batch})."""
    h, w = input_hw
    dummy = torch.zeros(batch or 1, 3, h, w, dtype=torch.float32)
    shapes: Dict[str, Tuple[int, ...]] = {}

    def record_shapes(_mod, _inp, outs):
        if not isinstance(outs, (tuple, list)) or len(outs) != 2:
            raise TypeError(f"module(x) must return (boxes, scores), got {type(outs).__name__}")
        shapes.update({n: tuple(int(v) for v in o.shape) for n, o in zip(OUTPUT_NAMES, outs)})

    dynamic_axes = None
    if batch is None:
        dynamic_axes = {n: {0: "batch"} for n in (INPUT_NAME,) + OUTPUT_NAMES}
    buf = io.BytesIO()
    handle = module.register_forward_hook(record_shapes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # legacy-exporter deprecation notice
            # constants from torch.tensor()/shape arithmetic in the decode; a batch size frozen into
            # the graph is caught by the verification at a different batch instead
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            with _Eval(module), torch.no_grad():
                torch.onnx.export(module, (dummy,), buf, dynamo=False, opset_version=opset,
                                  input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                                  dynamic_axes=dynamic_axes, do_constant_folding=True, export_params=True)
    finally:
        handle.remove()
    return onnx.load_from_string(buf.getvalue()), shapes


@contextlib.contextmanager
def _quiet_output():
    """Send the process's stdout/stderr (file descriptors 1 and 2, and Python's ``sys.stdout``) to a
    temporary file for the duration; what was printed is logged at debug level.

    onnxsim prints progress (``Checking 0/1...``) and C++ warnings (``WARNING: failed to run
    "Reshape" op ...`` for shape arithmetic on the symbolic batch) straight to the terminal.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile() as tmp:
        saved = [os.dup(1), os.dup(2)]
        py_out = io.StringIO()
        try:
            os.dup2(tmp.fileno(), 1)
            os.dup2(tmp.fileno(), 2)
            with contextlib.redirect_stdout(py_out):
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
        tmp.seek(0)
        text = (py_out.getvalue() + tmp.read().decode("utf-8", "replace")).strip()
    if text:
        logger.debug("onnxsim output:\n%s", text)


def _set_output_shapes(model: onnx.ModelProto, shapes: Dict[str, Tuple[int, ...]], batch: Optional[int]):
    """Write the graph outputs' full shapes: [batch or "batch", N, 4|C].

    The decode's ``reshape(B, -1, k)`` hides N from ONNX shape inference; N and C are fixed by the
    input size and the cfg, so they are written as static dims (runtimes and TensorRT bindings read
    them), the batch stays symbolic unless fixed.
    """
    for out in model.graph.output:
        shape = shapes[out.name]
        dims = out.type.tensor_type.shape.dim
        del dims[:]
        for i, v in enumerate(shape):
            d = dims.add()
            if i == 0 and batch is None:
                d.dim_param = "batch"
            else:
                d.dim_value = int(v)


def _simplify(model: onnx.ModelProto, input_hw, batch) -> Tuple[onnx.ModelProto, bool]:
    """onnxsim with the dynamic batch kept; returns (model, simplified?)."""
    try:
        import onnxsim
    except ImportError:
        warnings.warn("onnxsim not installed: the ONNX model is not simplified (pip install onnxsim)",
                      stacklevel=3)
        return model, False
    h, w = input_hw
    try:
        # no overwrite_input_shapes: the symbolic "batch" dimension stays symbolic; the check runs
        # the original and simplified graphs on one random input of this shape
        with _quiet_output():
            simp, ok = onnxsim.simplify(model, check_n=1,
                                        test_input_shapes={INPUT_NAME: [batch or 2, 3, h, w]})
    except Exception as e:  # noqa: BLE001 - onnxsim can fail in many ways; the model is still valid
        warnings.warn(f"onnxsim failed ({_first_line(e)}); keeping the unsimplified model",
                      stacklevel=3)
        return model, False
    if not ok:
        warnings.warn("onnxsim's check failed (outputs changed); keeping the unsimplified model", stacklevel=3)
        return model, False
    return simp, True


def _mish_mode(model: onnx.ModelProto) -> str:
    if op_counts(model).get("Mish"):
        return "native"
    return "decomposed" if has_mish_decomposition(model) else "none"


def _set_metadata(model: onnx.ModelProto, meta: Dict[str, str]) -> None:
    model.producer_name = "yolo4"
    model.producer_version = __version__
    model.doc_string = f"yolo4 {__version__}: darknet YOLO, decode in graph (boxes x1y1x2y2 input px, scores obj*cls)"
    onnx.helper.set_model_props(model, {k: str(v) for k, v in meta.items()})


def export_onnx(module: torch.nn.Module, output: Union[str, os.PathLike], img_size: Optional[ImgSize] = None,
                batch: Optional[int] = None, fp16: bool = False, simplify: bool = True,
                opset: Optional[int] = None, names: Optional[Sequence[str]] = None,
                verify: Union[bool, str] = True, log: Optional[Callable[[str], None]] = None) -> ExportResult:
    """Export a Darknet module's decoded forward to ONNX.

    Args:
        module: ``yolo4.model.Darknet`` (or any module with its contract: ``forward(x)`` -> (boxes
            [B,N,4] x1y1x2y2 input px, scores [B,N,C]); ``.model_info(names)``).
            Any device/dtype: exported from a CPU float32 copy when needed; not modified.
        output: path of the ``.onnx`` file (parent folders created).
        img_size: input size, int (square) or (height, width) in pixels, positive multiples of the
            model's largest stride (32 for YOLOv4); None = the cfg's ``[net] height/width``.
        batch: fixed batch size, or None for a dynamic batch dimension named ``"batch"``.
        fp16: FP16 weights and compute, float32 graph inputs/outputs (``yolo4.convert.fp16``; needs
            onnxconverter-common). For TensorRT strongly typed builds (TensorRT 11 has no FP16 flag).
        simplify: run onnxsim (dynamic batch kept); on failure or a failed onnxsim check the
            unsimplified model is kept and a warning issued.
        opset: ai.onnx opset, 11..20; None = 17 (TensorRT 8.5 / JetPack 5). Below 18, Mish is
            Softplus/Tanh/Mul; from 18, native ``Mish`` (see the module docstring).
        names: class names stored in the metadata; None = the module's, else COCO's for an 80-class
            model, else ``class0..`` (:func:`export_info`).
        verify: True = run the file in ONNX Runtime (CPU) vs the PyTorch module on a real-looking input
            (:func:`verify_onnx`) and raise if it is out of tolerance; ``"warn"`` = warn instead;
            False = skip.
        log: callable receiving one-line progress messages (e.g. ``print``); also sent to the
            ``yolo4.convert.onnx_export`` logger.

    Returns:
        :class:`ExportResult`. metadata_props = :func:`export_info` ``(module, img_size,
        names).to_metadata()``; producer ``yolo4`` / version.

    Raises:
        Yolo4Error: bad img_size / opset / batch.
        ExportVerificationError: verification failed (``verify=True``); nothing is written.
        ModelFileError: the output cannot be written (folder, temp file or rename; ``.__cause__`` is
            the OSError).
    """
    output = Path(output)
    src = _cpu_fp32(module)
    info = export_info(src, img_size, names)
    input_hw = info.input_hw
    opset = _check_opset(opset)
    if batch is not None and int(batch) < 1:
        raise Yolo4Error(f"batch must be >= 1 (or None for a dynamic batch), got {batch!r}")
    batch = None if batch is None else int(batch)
    meta = info.to_metadata()

    batch_txt = "dynamic" if batch is None else f"fixed {batch}"
    _say(log, f"exporting {output}: {input_hw[1]}x{input_hw[0]}, {batch_txt} batch, opset {opset}, "
              f"{'fp16' if fp16 else 'fp32'}")
    model, shapes = _torch_export(src, input_hw, batch, opset)
    if opset >= MISH_MIN_OPSET:
        n = fuse_mish(model)
        if n:
            _say(log, f"fused {n} Softplus/Tanh/Mul chains into ONNX Mish (opset {opset})")
    _set_output_shapes(model, shapes, batch)
    _set_metadata(model, meta)
    onnx.checker.check_model(model, full_check=True)
    simplified = False
    if simplify:
        n_before = len(model.graph.node)
        model, simplified = _simplify(model, input_hw, batch)
        if simplified:
            onnx.checker.check_model(model, full_check=True)
            _say(log, f"onnxsim: {n_before} -> {len(model.graph.node)} nodes")
    if fp16:
        from .fp16 import convert_to_fp16

        model = convert_to_fp16(model)
        onnx.checker.check_model(model, full_check=True)
    _set_output_shapes(model, shapes, batch)
    _set_metadata(model, meta)
    mish_mode = _mish_mode(model)
    data = model.SerializeToString()
    result = None
    try:
        # the temp file beside the output is verified, then renamed onto it; on any failure it is
        # removed and a previous file at ``output`` is left as it was
        with atomic_path(output) as tmp:
            with open(tmp, "xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            if verify:
                result = verify_onnx(src, tmp, fp16=fp16)
                _say(log, f"ONNX Runtime vs PyTorch on {result.input_source}: {result.summary()}")
                if not result.passed:
                    msg = f"exported model differs from PyTorch: {result.summary()}"
                    if verify == "warn":
                        warnings.warn(msg, stacklevel=2)
                    else:
                        raise ExportVerificationError(msg, output)
    except OSError as e:  # creating the folder, writing the temp file, or the final rename
        raise ModelFileError(f"cannot write: {e.strerror or e}", output) from e
    return ExportResult(path=output, opset=opset, mish_mode=mish_mode,
                        max_abs_diff=max(result.max_abs_diff.values()) if result else None,
                        output_scale=max(result.output_scale.values()) if result else None,
                        simplified=simplified, fp16=fp16, batch=batch, input_hw=input_hw,
                        node_count=len(model.graph.node), verify=result)
