"""Output verification: run two model forms on one deterministic input and judge the difference.

Any two forms of a model that follow the decoded-output contract can be compared: a PyTorch module
(:func:`torch_callable`), an ONNX Runtime session, a TensorRT engine, or any backend of
``yolo4.runtime.backends`` — all are callables ::

    model(x float32 [B, 3, H, W] RGB 0..1) -> (boxes float32 [B, N, 4] x1y1x2y2 input px,
                                               scores float32 [B, N, C] objectness x class prob)

:func:`compare_backends` runs both on :func:`reference_input` (darknet's sample images when the asset
mirror has them, else a seeded synthetic image) and checks ``max |candidate - reference|`` per output
against the tolerances of the candidate's precision (:data:`TOLERANCES`: a :class:`Tolerance` per
output name, per precision). :func:`verify_onnx` is its ONNX-Runtime-vs-PyTorch use by the exporter;
the TensorRT engine builder compares an engine with ONNX Runtime the same way.

torch-free at import time (Python 3.8): torch is imported only inside :func:`torch_callable` and
:func:`_cpu_fp32`, onnx / onnxruntime / cv2 only inside the functions that use them, so the engine
builder reuses this module on a Jetson without torch.
"""

import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import ModelFileError, Yolo4Error
from ..runtime.agreement import reference_input  # lives in the runtime (its benchmark uses it); kept here too

#: graph output names of the decoded model (no NMS in the graph), in call-result order
OUTPUT_NAMES = ("boxes", "scores")

#: a model form as a callable: x float32 [B,3,H,W] -> (boxes [B,N,4], scores [B,N,C]) as arrays
ModelCallable = Callable[[np.ndarray], Sequence[np.ndarray]]


class ExportVerificationError(Yolo4Error):
    """A converted model's outputs differ from the reference's beyond tolerance (or in shape)."""


@dataclass(frozen=True)
class Tolerance:
    """Allowed ``max |candidate - reference|`` of one output::

        allowed = rtol * max(scale, scale_floor) + atol

    where ``scale`` = ``max |reference output|`` (for boxes ~ the input size in px, for scores <= 1).

    Attributes:
        rtol: relative to the output's scale (dimensionless).
        atol: absolute, in the output's unit (px for boxes, probability for scores).
        scale_floor: lower bound on ``scale``, so an all-near-zero output is not judged by a ~0 tolerance.
    """

    rtol: float = 0.0
    atol: float = 0.0
    scale_floor: float = 0.0

    def allowed(self, scale: float) -> float:
        """The allowed max abs diff for an output of this ``scale`` (max |reference|)."""
        return self.rtol * max(float(scale), self.scale_floor) + self.atol


#: per precision of the candidate, per output: the verification tolerance.
#: fp32: 1e-4 x scale (scale floored at 0.01) — reordered float32 arithmetic only.
#: fp16: boxes 1e-2 x box scale (~4 px at 416), scores 0.02 absolute — float16 weights have 11
#: significant bits; the decode runs in float32 (``yolo4.convert.fp16``). Measured on the real
#: yolov4-tiny and dog.jpg: ~0.25 px and ~2.5e-3.
#: INT8 (engine builder, later) adds an ``"int8"`` entry here.
TOLERANCES: Dict[str, Dict[str, Tolerance]] = {
    "fp32": {"boxes": Tolerance(rtol=1e-4, scale_floor=1e-2),
             "scores": Tolerance(rtol=1e-4, scale_floor=1e-2)},
    "fp16": {"boxes": Tolerance(rtol=1e-2, scale_floor=1.0),
             "scores": Tolerance(atol=2e-2)},
}


@dataclass
class VerifyResult:
    """Candidate vs reference comparison on one deterministic input.

    Attributes:
        max_abs_diff: ``{"boxes": px, "scores": probability}`` max |candidate - reference| (inf when the
            candidate output has a non-finite value).
        output_scale: ``{"boxes": px, "scores": ...}`` max |reference output| (the scale diffs are judged by).
        tolerance: ``{"boxes": ..., "scores": ...}`` allowed max abs diff (same units as the diff).
        batch: batch size of the input used.
        input_source: what the input was (image names, ``"seeded random"`` or ``"given input"``).
        precision: key of :data:`TOLERANCES` the candidate was judged with (``"fp32"``, ``"fp16"``),
            or ``"custom"`` for caller-given tolerances.
        reference, candidate: labels of the two model forms (``"PyTorch"``, ``"ONNX Runtime"``).
    """

    max_abs_diff: Dict[str, float]
    output_scale: Dict[str, float]
    tolerance: Dict[str, float]
    batch: int
    input_source: str
    precision: str = "fp32"
    reference: str = "reference"
    candidate: str = "candidate"

    @property
    def passed(self) -> bool:
        return all(self.max_abs_diff[k] <= self.tolerance[k] for k in self.max_abs_diff)

    def summary(self) -> str:
        return ", ".join(f"{k} max|diff| {self.max_abs_diff[k]:.3g} (scale {self.output_scale[k]:.3g}, "
                         f"tol {self.tolerance[k]:.3g})" for k in self.max_abs_diff)


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


# ------------------------------------------------------------------------------------------ compare

def compare_outputs(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray],
                    precision: Union[str, Mapping[str, Tolerance]] = "fp32",
                    output_names: Sequence[str] = OUTPUT_NAMES, batch: int = 0,
                    input_source: str = "given input", reference_name: str = "reference",
                    candidate_name: str = "candidate") -> VerifyResult:
    """Judge two sets of outputs (already computed on the same input).

    Args:
        reference, candidate: arrays in ``output_names`` order (any float dtype; compared in float64).
        precision: a key of :data:`TOLERANCES` (``"fp32"``, ``"fp16"``) or ``{output name: Tolerance}``.
        output_names: names of the outputs, one per array.
        batch, input_source, reference_name, candidate_name: recorded in the result.

    Returns:
        :class:`VerifyResult` (check ``.passed``).

    Raises:
        ValueError: unknown precision, or a tolerance missing for an output name.
        ExportVerificationError: an output's shape differs between the two (one line).
    """
    if isinstance(precision, str):
        if precision not in TOLERANCES:
            raise ValueError(f"unknown precision {precision!r}: choose one of {', '.join(TOLERANCES)}")
        tols, label = TOLERANCES[precision], precision
    else:
        tols, label = dict(precision), "custom"
    if len(reference) != len(output_names) or len(candidate) != len(output_names):
        raise ExportVerificationError(
            f"expected {len(output_names)} outputs ({', '.join(output_names)}); "
            f"{reference_name} gave {len(reference)}, {candidate_name} {len(candidate)}")
    diff, scale, tol = {}, {}, {}
    for name, r, g in zip(output_names, reference, candidate):
        if name not in tols:
            raise ValueError(f"no tolerance for output {name!r} at precision {label!r}")
        r, g = np.asarray(r), np.asarray(g)
        if r.shape != g.shape:
            raise ExportVerificationError(f"output {name} has shape {g.shape} in {candidate_name}, "
                                          f"{r.shape} in {reference_name}")
        d = np.abs(r.astype(np.float64) - g.astype(np.float64))
        diff[name] = (float(np.nanmax(d)) if d.size else 0.0) if np.isfinite(g).all() else float("inf")
        scale[name] = float(np.abs(r).max()) if r.size else 0.0
        tol[name] = tols[name].allowed(scale[name])
    return VerifyResult(diff, scale, tol, int(batch), input_source, label, reference_name, candidate_name)


def compare_backends(reference: ModelCallable, candidate: ModelCallable,
                     precision: Union[str, Mapping[str, Tolerance]] = "fp32",
                     x: Optional[np.ndarray] = None, batch: int = 2,
                     input_hw: Optional[Tuple[int, int]] = None, letter_box: Optional[bool] = None,
                     output_names: Sequence[str] = OUTPUT_NAMES, reference_name: str = "reference",
                     candidate_name: str = "candidate") -> VerifyResult:
    """Run two model forms on one deterministic input and compare their outputs.

    Args:
        reference: the trusted form (PyTorch, ONNX Runtime on the FP32 file): ``reference(x)`` ->
            arrays in ``output_names`` order.
        candidate: the form under test (ONNX Runtime, a TensorRT engine), same contract.
        precision: tolerances: a key of :data:`TOLERANCES` (the candidate's precision) or
            ``{output name: Tolerance}``.
        x: input float32 [B,3,H,W] RGB 0..1; None = :func:`reference_input` of ``batch`` images.
        batch: batch size of the generated input (2 by default: a batch other than 1 shows a batch
            size frozen into a graph).
        input_hw: (height, width) of the generated input; None = ``.info.input_hw`` of the candidate
            or the reference (yolo4 backends carry a :class:`yolo4.model_info.ModelInfo` as ``.info``).
        letter_box: preprocessing of the generated input; None = ``.info.letter_box``, else False.
        output_names, reference_name, candidate_name: output names / labels for the result and messages.

    Returns:
        :class:`VerifyResult`.

    Raises:
        ValueError: no ``x`` and no input size known; unknown precision.
        ExportVerificationError: output count or shapes differ.
    """
    if x is None:
        info = getattr(candidate, "info", None) or getattr(reference, "info", None)
        if input_hw is None:
            if info is None:
                raise ValueError("compare_backends needs x, input_hw, or a callable with .info")
            input_hw = tuple(info.input_hw)  # type: ignore[assignment]
        if letter_box is None:
            letter_box = bool(getattr(info, "letter_box", False))
        x, source = reference_input((int(input_hw[0]), int(input_hw[1])), int(batch), bool(letter_box))
    else:
        x, source = np.ascontiguousarray(x, dtype=np.float32), "given input"
    ref = [np.asarray(o) for o in reference(x)]
    got = [np.asarray(o) for o in candidate(x)]
    return compare_outputs(ref, got, precision, output_names, int(x.shape[0]), source,
                           reference_name, candidate_name)


# ------------------------------------------------------------------------------ PyTorch and ORT

def _cpu_fp32(module):
    """The module itself if it is on the CPU in float32, else a CPU float32 deep copy."""
    import copy

    import torch

    params = list(module.parameters()) + list(module.buffers())
    if all(p.device.type == "cpu" and (not p.is_floating_point() or p.dtype == torch.float32)
           for p in params):
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


def torch_callable(module) -> ModelCallable:
    """A PyTorch module as a numpy callable for :func:`compare_backends` (imports torch).

    Args:
        module: ``yolo4.model.Darknet`` or any module whose ``forward(x)`` returns (boxes, scores);
            any device/dtype: run on a CPU float32 copy when needed, in eval mode, without grad.

    Returns:
        ``f(x float32 [B,3,H,W]) -> (boxes float32 [B,N,4], scores float32 [B,N,C])`` numpy arrays.
    """
    import torch

    src = _cpu_fp32(module)

    def run(x: np.ndarray) -> Tuple[np.ndarray, ...]:
        with _Eval(src), torch.no_grad():
            outs = src(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
        return tuple(o.float().numpy() for o in outs)

    return run


def _ort_session(path_or_bytes):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(path_or_bytes, so, providers=["CPUExecutionProvider"])


def _has_fp16_initializers(path: Union[str, "os.PathLike[str]", bytes]) -> bool:
    import onnx

    model = onnx.load_from_string(path) if isinstance(path, bytes) else onnx.load(os.fspath(path))
    return any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)


def verify_onnx(module, path: Union[str, "os.PathLike[str]", bytes], batch: Optional[int] = None,
                fp16: Optional[bool] = None, x: Optional[np.ndarray] = None) -> VerifyResult:
    """Compare an exported model (ONNX Runtime, CPUExecutionProvider) with the PyTorch module.

    Args:
        module: the Darknet module the file was exported from (any device; compared on a CPU copy).
        path: ONNX file (or its serialized bytes).
        batch: batch size to run; None = the file's fixed batch, or 2 for a dynamic batch (a batch
            other than the traced 1, so a batch size frozen into the graph shows up as an error).
        fp16: judge with the ``"fp16"`` tolerances; None = detect from the file's initializers.
        x: input float32 [B,3,H,W] to use instead of :func:`reference_input`.

    Returns:
        :class:`VerifyResult` (reference ``"PyTorch"``, candidate ``"ONNX Runtime"``), judged with
        :data:`TOLERANCES` (``"fp32"``: max|diff| <= 1e-4 x max(scale, 0.01) per output;
        ``"fp16"``: boxes <= 1e-2 x max(box scale, 1), scores <= 0.02 absolute). Note for FP16 files:
        ONNX Runtime's CPU provider runs ops that lack a float16 kernel in float32 (inserting, and
        folding, Casts), so this checks the float16 weights and the graph rather than every float16
        activation; the tests check true float16 arithmetic with ONNX's reference evaluator.

    Raises:
        ModelFileError: the file cannot be loaded by ONNX Runtime.
        ExportVerificationError: an output's shape differs from PyTorch's.
    """
    try:
        sess = _ort_session(os.fspath(path) if not isinstance(path, bytes) else path)
    except Exception as e:  # noqa: BLE001
        raise ModelFileError(f"ONNX Runtime cannot load the model: {_first_line(e)}",
                             None if isinstance(path, bytes) else path) from e
    inp = sess.get_inputs()[0]
    _, _, h, w = inp.shape
    source = "given input"
    if x is None:
        fixed = inp.shape[0] if isinstance(inp.shape[0], int) else None
        meta = sess.get_modelmeta().custom_metadata_map
        letter_box = meta.get("letter_box", "false").lower() == "true"
        x, source = reference_input((int(h), int(w)), batch or fixed or 2, letter_box)
    if fp16 is None:
        fp16 = _has_fp16_initializers(path)

    def ort_run(a: np.ndarray) -> List[np.ndarray]:
        return sess.run(list(OUTPUT_NAMES), {inp.name: a})

    result = compare_backends(torch_callable(module), ort_run, "fp16" if fp16 else "fp32", x=x,
                              reference_name="PyTorch", candidate_name="ONNX Runtime")
    result.input_source = source
    return result
