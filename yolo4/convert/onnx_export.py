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

Every file is written atomically (temporary file next to the output, then ``os.replace``) and only
after it passed verification, so a failed export never leaves a half-written or wrong model.
"""

import contextlib
import copy
import dataclasses
import hashlib
import io
import json
import logging
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import onnx
import torch

from .. import __version__
from ..errors import ModelFileError, Yolo4Error
from ..fileio import sibling_temp
from .graph import MISH_MIN_OPSET, fuse_mish, has_mish_decomposition, op_counts

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 17
#: oldest opset accepted (Resize with nearest/asymmetric modes, Upsample gone) and newest the
#: TorchScript exporter writes.
MIN_OPSET, MAX_OPSET = 11, 20
INPUT_NAME = "images"
OUTPUT_NAMES = ("boxes", "scores")
#: fp32 verification tolerance, relative to the output's scale (max |reference|)
FP32_RTOL = 1e-4
#: fp16 tolerances: boxes relative to the box scale (1% of ~input size px), scores absolute
FP16_BOX_RTOL = 1e-2
FP16_SCORE_ATOL = 2e-2

ImgSize = Union[int, Sequence[int]]


class ExportVerificationError(Yolo4Error):
    """The exported ONNX model's outputs differ from the PyTorch module's beyond tolerance."""


@dataclass
class VerifyResult:
    """ONNX Runtime vs PyTorch comparison on one deterministic input.

    Attributes:
        max_abs_diff: ``{"boxes": px, "scores": probability}`` max |ORT - torch|.
        output_scale: ``{"boxes": px, "scores": ...}`` max |torch output| (the scale diffs are judged by).
        tolerance: ``{"boxes": ..., "scores": ...}`` allowed max abs diff.
        batch: batch size of the input used.
        input_source: what the input was (image paths, or ``"seeded random"``).
    """

    max_abs_diff: Dict[str, float]
    output_scale: Dict[str, float]
    tolerance: Dict[str, float]
    batch: int
    input_source: str

    @property
    def passed(self) -> bool:
        return all(self.max_abs_diff[k] <= self.tolerance[k] for k in self.max_abs_diff)

    def summary(self) -> str:
        return ", ".join(f"{k} max|diff| {self.max_abs_diff[k]:.3g} (scale {self.output_scale[k]:.3g}, tol {self.tolerance[k]:.3g})" for k in self.max_abs_diff)


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


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def _norm_img_size(img_size: Optional[ImgSize], module) -> Tuple[int, int]:
    if img_size is None:
        hw = tuple(int(v) for v in module.input_hw)
    elif isinstance(img_size, (int, np.integer)):
        hw = (int(img_size), int(img_size))
    else:
        hw = tuple(int(v) for v in img_size)
    if len(hw) != 2 or min(hw) <= 0 or hw[0] % 32 or hw[1] % 32:
        raise Yolo4Error(f"image size must be (height, width) positive multiples of 32, got {img_size!r}")
    return hw  # type: ignore[return-value]


def _check_opset(opset: Optional[int]) -> int:
    opset = DEFAULT_OPSET if opset is None else int(opset)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise Yolo4Error(f"ONNX opset {opset} unsupported: choose {MIN_OPSET}..{MAX_OPSET} (17 for TensorRT "
                         "8.5/JetPack 5, >= 18 for a native Mish op)")
    return opset


def _cpu_fp32(module: torch.nn.Module) -> torch.nn.Module:
    """The module itself if it is on the CPU in float32, else a CPU float32 deep copy."""
    params = list(module.parameters()) + list(module.buffers())
    if all(p.device.type == "cpu" and (not p.is_floating_point() or p.dtype == torch.float32) for p in params):
        return module
    return copy.deepcopy(module).to("cpu").float()


class _Eval:
    """Context manager: module in eval mode inside, previous mode restored after."""

    def __init__(self, module):
        self.module, self.was_training = module, module.training

    def __enter__(self):
        self.module.eval()
        return self.module

    def __exit__(self, *exc):
        self.module.train(self.was_training)


def _torch_forward(module, x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    with _Eval(module), torch.no_grad():
        boxes, scores = module(torch.from_numpy(x))
    return boxes.float().numpy(), scores.float().numpy()


def _model_info(module, names, input_hw):
    info = module.model_info(names)
    return dataclasses.replace(info, input_hw=tuple(input_hw), yolo4_version=info.yolo4_version or __version__)


def reference_input(input_hw: Tuple[int, int], batch: int = 1, letter_box: bool = False
                    ) -> Tuple[np.ndarray, str]:
    """A deterministic, real-looking network input for export verification.

    Uses darknet's sample images (``$YOLO4_ASSET_MIRROR/darknet/images/*.jpg``: dog, horses, person;
    then their mirror images) when the asset mirror has them, preprocessed as the runtime does
    (``yolo4.runtime.preprocess``; plain resize or letterbox); otherwise a seeded random image made of
    smooth colour blocks (so the network sees edges and flat regions, not white noise).

    Args:
        input_hw: (height, width) in pixels.
        batch: number of images.
        letter_box: letterbox instead of plain resize.

    Returns:
        (x float32 [batch, 3, H, W] RGB 0..1, description of the source).
    """
    h, w = input_hw
    mirror = os.environ.get("YOLO4_ASSET_MIRROR")
    paths: List[Path] = []
    if mirror:
        paths = sorted((Path(mirror) / "darknet" / "images").glob("*.jpg"))
        paths.sort(key=lambda p: p.name != "dog.jpg")  # dog first: the README's reference image
    if paths:
        try:
            import cv2

            imgs = []
            for i in range(batch):
                img = cv2.imread(str(paths[i % len(paths)]), cv2.IMREAD_COLOR)
                if img is None:
                    raise OSError(str(paths[i % len(paths)]))
                if (i // len(paths)) % 2:
                    img = img[:, ::-1].copy()
                imgs.append(img)
            from ..runtime.preprocess import preprocess

            x, _ = preprocess(imgs, (h, w), letter_box)
            names = [paths[i % len(paths)].name + ("(flipped)" if (i // len(paths)) % 2 else "")
                     for i in range(batch)]
            return np.ascontiguousarray(x, dtype=np.float32), ", ".join(names)
        except Exception as e:  # noqa: BLE001 - any failure falls back to the synthetic input
            logger.debug("reference images unusable (%s); using seeded random input", e)
    rng = np.random.default_rng(0)
    bh, bw = max(1, h // 16), max(1, w // 16)
    low = rng.random((batch, 3, bh, bw), dtype=np.float32)
    x = np.repeat(np.repeat(low, 16, axis=2), 16, axis=3)[:, :, :h, :w]
    x = np.clip(x + rng.normal(0, 0.02, x.shape).astype(np.float32), 0, 1)
    return np.ascontiguousarray(x, dtype=np.float32), "seeded random"


def _ort_session(path_or_bytes):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(path_or_bytes, so, providers=["CPUExecutionProvider"])


def verify_onnx(module: torch.nn.Module, path: Union[str, os.PathLike, bytes], batch: Optional[int] = None,
                fp16: Optional[bool] = None, x: Optional[np.ndarray] = None) -> VerifyResult:
    """Compare an exported model (ONNX Runtime, CPUExecutionProvider) with the PyTorch module.

    Args:
        module: the Darknet module the file was exported from (any device; compared on a CPU copy).
        path: ONNX file (or its serialized bytes).
        batch: batch size to run; None = the file's fixed batch, or 2 for a dynamic batch (a batch
            other than the traced 1, so a batch size frozen into the graph shows up as an error).
        fp16: judge with the FP16 tolerances; None = detect from the file's initializers.
        x: input float32 [B,3,H,W] to use instead of :func:`reference_input`.

    Returns:
        :class:`VerifyResult`. Tolerances: float32, max|diff| <= 1e-4 x scale per output (scale =
        max |torch output|: ~input size px for boxes, <= 1 for scores; scale floored at 0.01);
        float16, boxes <= 1e-2 x box
        scale, scores <= 0.02 absolute (fp16 weights have 11 significant bits; the decode runs in
        float32, see ``yolo4.convert.fp16``). Note for FP16 files: ONNX Runtime's CPU provider runs
        ops that lack a float16 kernel in float32 (inserting, and folding, Casts), so this checks
        the float16 weights and the graph rather than every float16 activation; the tests check
        true float16 arithmetic with ONNX's reference evaluator.

    Raises:
        ModelFileError: the file cannot be loaded by ONNX Runtime.
    """
    try:
        sess = _ort_session(os.fspath(path) if not isinstance(path, bytes) else path)
    except Exception as e:  # noqa: BLE001
        raise ModelFileError(f"ONNX Runtime cannot load the model: {_first_line(e)}",
                             None if isinstance(path, bytes) else path) from e
    inp = sess.get_inputs()[0]
    _, _, h, w = inp.shape
    if x is None:
        fixed = inp.shape[0] if isinstance(inp.shape[0], int) else None
        b = batch or fixed or 2
        meta = sess.get_modelmeta().custom_metadata_map
        letter_box = meta.get("letter_box", "false").lower() == "true"
        x, source = reference_input((int(h), int(w)), b, letter_box)
    else:
        source = "given input"
    if fp16 is None:
        model = onnx.load_from_string(path) if isinstance(path, bytes) else onnx.load(os.fspath(path))
        fp16 = any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    ref = _torch_forward(_cpu_fp32(module), x)
    got = sess.run(list(OUTPUT_NAMES), {inp.name: x})
    diff, scale, tol = {}, {}, {}
    for name, r, g in zip(OUTPUT_NAMES, ref, got):
        if r.shape != g.shape:
            raise ExportVerificationError(f"output {name} has shape {g.shape} in ONNX Runtime, {r.shape} in PyTorch")
        d = np.abs(r.astype(np.float64) - g.astype(np.float64))
        diff[name] = float(np.nanmax(d)) if np.isfinite(g).all() else float("inf")
        scale[name] = float(np.abs(r).max())
    if fp16:
        tol = {"boxes": FP16_BOX_RTOL * max(scale["boxes"], 1.0), "scores": FP16_SCORE_ATOL}
    else:
        tol = {k: FP32_RTOL * max(scale[k], 1e-2) for k in scale}
    return VerifyResult(diff, scale, tol, int(x.shape[0]), source)


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


def _atomic_write(data: bytes, output: Path) -> Tuple[Path, "callable"]:
    """Write ``data`` to a temporary file beside ``output``; return (tmp path, commit function)."""
    tmp = sibling_temp(output)
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp), lambda: os.replace(tmp, output)


def export_onnx(module: torch.nn.Module, output: Union[str, os.PathLike], img_size: Optional[ImgSize] = None,
                batch: Optional[int] = None, fp16: bool = False, simplify: bool = True,
                opset: Optional[int] = None, names: Optional[Sequence[str]] = None,
                verify: Union[bool, str] = True, log: Optional[Callable[[str], None]] = None) -> ExportResult:
    """Export a Darknet module's decoded forward to ONNX.

    Args:
        module: ``yolo4.model.Darknet`` (or any module with its contract: ``forward(x)`` -> (boxes
            [B,N,4] x1y1x2y2 input px, scores [B,N,C]); ``.input_hw``; ``.model_info(names)``).
            Any device/dtype: exported from a CPU float32 copy when needed; not modified.
        output: path of the ``.onnx`` file (parent folders created).
        img_size: input size, int (square) or (height, width), multiples of 32; None = the cfg's
            ``[net] height/width``.
        batch: fixed batch size, or None for a dynamic batch dimension named ``"batch"``.
        fp16: FP16 weights and compute, float32 graph inputs/outputs (``yolo4.convert.fp16``; needs
            onnxconverter-common). For TensorRT strongly typed builds (TensorRT 11 has no FP16 flag).
        simplify: run onnxsim (dynamic batch kept); on failure or a failed onnxsim check the
            unsimplified model is kept and a warning issued.
        opset: ai.onnx opset, 11..20; None = 17 (TensorRT 8.5 / JetPack 5). Below 18, Mish is
            Softplus/Tanh/Mul; from 18, native ``Mish`` (see the module docstring).
        names: class names stored in the metadata; None = the module's.
        verify: True = run the file in ONNX Runtime (CPU) vs the PyTorch module on a real-looking input
            (:func:`verify_onnx`) and raise if it is out of tolerance; ``"warn"`` = warn instead;
            False = skip.
        log: callable receiving one-line progress messages (e.g. ``print``); also sent to the
            ``yolo4.convert.onnx_export`` logger.

    Returns:
        :class:`ExportResult`. metadata_props = ``module.model_info(names).to_metadata()`` with
        ``input_hw`` = the exported size; producer ``yolo4`` / version.

    Raises:
        Yolo4Error: bad img_size / opset / batch.
        ExportVerificationError: verification failed (``verify=True``); nothing is written.
        ModelFileError: the output cannot be written.
    """
    output = Path(output)
    input_hw = _norm_img_size(img_size, module)
    opset = _check_opset(opset)
    if batch is not None and int(batch) < 1:
        raise Yolo4Error(f"batch must be >= 1 (or None for a dynamic batch), got {batch!r}")
    batch = None if batch is None else int(batch)
    src = _cpu_fp32(module)
    try:
        meta = _model_info(src, names, input_hw).to_metadata()
    except ValueError as e:  # e.g. a names file with the wrong number of classes
        raise Yolo4Error(str(e)) from e

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
    try:
        tmp, commit = _atomic_write(data, output)
    except OSError as e:
        raise ModelFileError(f"cannot write: {e.strerror}", output) from e
    result = None
    try:
        if verify:
            result = verify_onnx(src, tmp, fp16=fp16)
            _say(log, f"ONNX Runtime vs PyTorch on {result.input_source}: {result.summary()}")
            if not result.passed:
                msg = f"exported model differs from PyTorch: {result.summary()}"
                if verify == "warn":
                    warnings.warn(msg, stacklevel=2)
                else:
                    raise ExportVerificationError(msg, output)
        commit()
    finally:
        Path(tmp).unlink(missing_ok=True)
    return ExportResult(path=output, opset=opset, mish_mode=mish_mode,
                        max_abs_diff=max(result.max_abs_diff.values()) if result else None,
                        output_scale=max(result.output_scale.values()) if result else None,
                        simplified=simplified, fp16=fp16, batch=batch, input_hw=input_hw,
                        node_count=len(model.graph.node), verify=result)


# ---------------------------------------------------------------------------------------------- cache

def cache_dir() -> Path:
    """``$YOLO4_CACHE_DIR`` or ``~/.cache/yolo4``."""
    return Path(os.environ.get("YOLO4_CACHE_DIR") or Path.home() / ".cache" / "yolo4").expanduser()


def state_digest(module: torch.nn.Module) -> str:
    """sha256 hex of the module's state_dict (names, dtypes, shapes, values): identifies its weights."""
    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        t = v.detach().to("cpu").contiguous()
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def export_cached(module: torch.nn.Module, cache_key: Optional[str] = None, img_size: Optional[ImgSize] = None,
                  batch: Optional[int] = None, fp16: bool = False, simplify: bool = True,
                  opset: Optional[int] = None, names: Optional[Sequence[str]] = None,
                  cache: Optional[Union[str, os.PathLike]] = None,
                  log: Optional[Callable[[str], None]] = None) -> Path:
    """Export once into the cache and reuse: ``<cache>/onnx/<sha256>.onnx``.

    The file name is the sha256 of the cfg text, ``cache_key`` (the weights' identity, e.g. the
    sha256 of the .weights/.pt file; None = :func:`state_digest` of the module), the input size,
    batch, opset, fp16/simplify flags, class names and the yolo4 version. A hit returns the path
    without touching torch.onnx; a miss runs :func:`export_onnx` (verified) and writes atomically,
    so concurrent processes at worst export twice.

    Args:
        module, img_size, batch, fp16, simplify, opset, names: as :func:`export_onnx`.
        cache_key: string identifying the module's weights.
        cache: cache root; None = ``$YOLO4_CACHE_DIR`` or ``~/.cache/yolo4``.
        log: progress messages callable, as :func:`export_onnx` (silent on a cache hit).

    Returns:
        Path of the cached ONNX file.
    """
    input_hw = _norm_img_size(img_size, module)
    opset = _check_opset(opset)
    key_src = {
        "cfg_text": getattr(module, "cfg_text", ""),
        "weights": cache_key if cache_key is not None else state_digest(module),
        "input_hw": list(input_hw), "batch": batch, "opset": opset, "fp16": bool(fp16),
        "simplify": bool(simplify), "names": list(names) if names is not None else getattr(module, "names", None),
        "yolo4_version": __version__,
    }
    digest = hashlib.sha256(json.dumps(key_src, sort_keys=True).encode()).hexdigest()
    path = Path(cache) if cache is not None else cache_dir()
    path = path / "onnx" / (digest + ".onnx")
    if path.is_file() and path.stat().st_size > 0:
        return path
    export_onnx(module, path, img_size=input_hw, batch=batch, fp16=fp16, simplify=simplify, opset=opset,
                names=names, verify=True, log=log)
    return path
