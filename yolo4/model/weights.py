"""Darknet ``.weights`` files: read, write (byte-exact), sizes (darknet ``src/parser.c``).

Layout (little-endian): header ``int32 major, int32 minor, int32 revision``, then ``seen`` as
``uint64`` when ``major*10 + minor >= 2`` (and both < 1000) else ``int32``; then, for each
``[convolutional]`` in cfg order, float32 arrays: ``biases[n]``, and with ``batch_normalize=1``
``scales[n], rolling_mean[n], rolling_variance[n]``; then ``weights[n * c/groups * size * size]``
(the torch Conv2d layout ``[n, c/groups, k, k]``); a conv with ``share_index`` (it uses another
conv's parameters) has no record. A weighted ``[shortcut]`` (``weights_type`` per_feature /
per_channel) holds its ``n+1`` / ``(n+1)*c`` float32 weights at its place in layer order (darknet
``load_shortcut_weights``, ``save_shortcut_weights``). No other layer type used here has weights.
"""

import os
import struct
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from yolo4.errors import WeightsError
from yolo4.fileio import atomic_write_bytes
from yolo4.model.cfg import ConvSpec, LayerSpec, ShortcutSpec

__all__ = ["header_size", "weights_file_size", "read_darknet_weights", "load_weights",
           "save_darknet_weights", "atomic_write_bytes", "conv_arrays", "layer_arrays", "assign_arrays",
           "darknet_weights_bytes", "layer_num_floats", "random_weights"]

PathLike = Union[str, "os.PathLike[str]"]


def header_size(major: int, minor: int) -> int:
    """Bytes of the header: 20 with a 64-bit ``seen`` (major*10+minor >= 2), else 16."""
    return 20 if _seen64(major, minor) else 16


def _seen64(major: int, minor: int) -> bool:
    return (major * 10 + minor) >= 2 and major < 1000 and minor < 1000


def layer_num_floats(sp: LayerSpec) -> int:
    """Float32 values layer ``sp`` holds in a .weights file: a conv's :meth:`~ConvSpec.num_params`, a
    weighted shortcut's :meth:`~ShortcutSpec.num_weights`, else 0."""
    if isinstance(sp, ConvSpec):
        return sp.num_params()
    if isinstance(sp, ShortcutSpec):
        return sp.num_weights()
    return 0


def weights_file_size(specs: Sequence[LayerSpec], major: int = 0, minor: int = 2,
                      upto: Optional[int] = None) -> int:
    """Exact .weights size in bytes implied by a cfg's layer specs.

    Args:
        specs: ``build_specs(...)[1]``.
        major, minor: header version (20-byte header for 0.2+, 16 bytes before).
        upto: count only darknet layers ``< upto`` (partial files such as ``yolov4.conv.137``).
    """
    n = sum(layer_num_floats(sp) for sp in specs if upto is None or sp.index < upto)
    return header_size(major, minor) + 4 * n


def read_darknet_weights(path: PathLike, specs: Sequence[LayerSpec], upto: Optional[int] = None
                         ) -> Tuple[Tuple[int, int, int, int], Dict[int, Dict[str, np.ndarray]]]:
    """Read a .weights file against a cfg (darknet ``load_weights_upto``), checking its size first.

    Args:
        path: the .weights file.
        specs: layer specs of the cfg the file was written for.
        upto: read only darknet layers ``< upto`` (the file must then hold exactly those).

    Returns:
        ``(header, arrays)``: header ``(major, minor, revision, seen)``; arrays
        ``{layer index: {"bias", ["scale", "mean", "var",] "weight"}}`` float32 numpy, weight shaped
        ``[n, c/groups, k, k]``; for a weighted shortcut ``{"weight"}`` shaped ``[n+1]``
        (per_feature) or ``[n+1, c]`` (per_channel).

    Raises:
        WeightsError: missing/unreadable file, or a size other than the cfg implies (the message
            gives expected and actual bytes).
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise WeightsError("cannot read weights file (%s)" % (e.strerror or e), path) from None
    if len(data) < 12:
        raise WeightsError(f"not a darknet weights file: {len(data)} bytes, shorter than the header", path)
    major, minor, revision = struct.unpack_from("<3i", data, 0)
    if _seen64(major, minor):
        (seen,) = struct.unpack_from("<Q", data, 12) if len(data) >= 20 else (0,)
    else:
        (seen,) = struct.unpack_from("<i", data, 12) if len(data) >= 16 else (0,)
    expected = weights_file_size(specs, major, minor, upto)
    if len(data) != expected:
        raise WeightsError(f"size mismatch with the cfg: expected {expected} bytes, got {len(data)} bytes "
                           f"(header {major}.{minor}.{revision})", path)
    floats = np.frombuffer(data, dtype="<f4", offset=header_size(major, minor))
    arrays: Dict[int, Dict[str, np.ndarray]] = {}
    pos = 0
    for sp in specs:
        if upto is not None and sp.index >= upto:
            continue
        if isinstance(sp, ShortcutSpec) and sp.num_weights():
            cnt = sp.num_weights()
            shape_sc = (cnt,) if sp.weights_type == "per_feature" else (cnt // sp.out_channels, sp.out_channels)
            arrays[sp.index] = {"weight": floats[pos:pos + cnt].astype(np.float32).reshape(shape_sc)}
            pos += cnt
            continue
        if not isinstance(sp, ConvSpec) or not sp.num_params():
            continue
        n = sp.filters
        rec: Dict[str, np.ndarray] = {}
        keys = ("bias", "scale", "mean", "var") if sp.batch_normalize else ("bias",)
        for k in keys:
            rec[k] = floats[pos:pos + n].astype(np.float32)
            pos += n
        shape = (n, sp.in_channels // sp.groups, sp.size, sp.size)
        cnt = int(np.prod(shape))
        rec["weight"] = floats[pos:pos + cnt].astype(np.float32).reshape(shape)
        pos += cnt
        arrays[sp.index] = rec
    return (major, minor, revision, int(seen)), arrays


def conv_arrays(block) -> Dict[str, torch.Tensor]:
    """The darknet records of a :class:`~yolo4.model.layers.ConvBlock` as torch tensors
    (``bias``, ``scale``, ``mean``, ``var``, ``weight``; BN terms only with batch_normalize)."""
    if block.bn is not None:
        return {"bias": block.bn.bias, "scale": block.bn.weight, "mean": block.bn.running_mean,
                "var": block.bn.running_var, "weight": block.conv.weight}
    return {"bias": block.conv.bias, "weight": block.conv.weight}


def layer_arrays(block) -> Dict[str, torch.Tensor]:
    """The darknet records of a layer module as torch tensors: :func:`conv_arrays` for a
    :class:`~yolo4.model.layers.ConvBlock`, ``{"weight"}`` for a weighted
    :class:`~yolo4.model.layers.Shortcut`."""
    if hasattr(block, "conv"):
        return conv_arrays(block)
    weight = getattr(block, "weight", None)
    return {} if weight is None else {"weight": weight}


@torch.no_grad()
def assign_arrays(module, arrays: Dict[int, Dict[str, np.ndarray]], skip: Sequence[int] = (),
                  path: Optional[str] = None) -> List[int]:
    """Copy darknet arrays into a Darknet module's conv layers and weighted shortcuts; returns the layer
    indices loaded.

    Raises:
        WeightsError: an array's shape differs from the module's.
    """
    loaded = []
    for idx, rec in arrays.items():
        if idx in skip:
            continue
        block = module.layers[idx]
        dst = layer_arrays(block)
        for k, arr in rec.items():
            t = dst.get(k)
            if t is None:
                raise WeightsError(f"layer {idx} has no {k!r} parameters for the weights file's record", path)
            if tuple(t.shape) != tuple(arr.shape):
                raise WeightsError(f"layer {idx} {k}: weights have shape {tuple(arr.shape)}, model {tuple(t.shape)}", path)
            t.copy_(torch.from_numpy(np.ascontiguousarray(arr)).to(t.dtype))
        loaded.append(idx)
    return loaded


def load_weights(module, path: PathLike, upto: Optional[int] = None) -> None:
    """Load a darknet .weights file into a :class:`~yolo4.model.darknet.Darknet` (in place).

    Args:
        module: the Darknet module (its cfg must be the one the file was written for).
        path: .weights file.
        upto: load only darknet layers ``< upto`` from a partial file (e.g. ``yolov4.conv.137`` with
            ``upto=137``); the other layers keep their values.

    Sets ``module.darknet_header`` to the file's ``(major, minor, revision, seen)``.

    Raises:
        WeightsError: missing file or a size that does not match the cfg (expected vs actual bytes).
    """
    header, arrays = read_darknet_weights(path, module.specs, upto)
    assign_arrays(module, arrays, path=os.fspath(path))
    module.darknet_header = header


@torch.no_grad()
def darknet_weights_bytes(module) -> bytes:
    """The .weights file content of a Darknet module (header = ``module.darknet_header``)."""
    major, minor, revision, seen = getattr(module, "darknet_header", (0, 2, 5, 0))
    parts = [struct.pack("<3i", major, minor, revision)]
    parts.append(struct.pack("<Q", int(seen)) if _seen64(major, minor) else struct.pack("<i", int(seen)))
    for sp in module.specs:
        if isinstance(sp, ShortcutSpec) and sp.num_weights():
            w = module.layers[sp.index].weight
            parts.append(w.detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4").tobytes())
            continue
        if not isinstance(sp, ConvSpec) or not sp.num_params():
            continue
        rec = conv_arrays(module.layers[sp.index])
        keys = ("bias", "scale", "mean", "var", "weight") if sp.batch_normalize else ("bias", "weight")
        for k in keys:
            parts.append(rec[k].detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4").tobytes())
    return b"".join(parts)


def save_darknet_weights(module, path: PathLike) -> Path:
    """Write a Darknet module as a darknet .weights file, atomically (darknet ``save_weights``).

    The header is ``module.darknet_header`` (the values read by :func:`load_weights`, else
    ``(0, 2, 5, 0)``), so load -> save reproduces a file byte for byte. Returns the path.
    """
    return atomic_write_bytes(path, darknet_weights_bytes(module))


@torch.no_grad()
def random_weights(model: torch.nn.Module, x: torch.Tensor, seed: int = 0) -> None:
    """Random weights with sane scales, in place, for comparing a cfg's graph without trained weights
    (OpenCV's importer, the model zoo): He-normal conv weights (``std sqrt(2 / fan_in)``; a conv
    without batch norm ``sqrt(1 / fan_in)`` and bias ``N(0, 0.1)``), BN ``gamma ~ 1 + N(0, 0.2)``,
    ``beta ~ N(0, 0.2)``, and running statistics calibrated on the activations of ``x`` itself (mean
    ``0.1 * rms * N(0, 1)``, variance ``mean square * U(0.5, 2)``), so deep models neither vanish nor
    explode and the heads depend on the input. A conv with ``share_index`` (the parameters of an
    earlier conv) is left alone. Leaves the model in eval mode.

    Args:
        model: a :class:`yolo4.model.Darknet` (``conv_layers``, ``model(x, raw=True)``).
        x: ``[B, 3, H, W]`` float32 input 0..1 (the calibration batch).
        seed: seeds the draws (``torch.Generator``).
    """
    import math

    g = torch.Generator().manual_seed(seed)

    def calibrate(bn, inputs):
        t = inputs[0]
        n = t.shape[1]
        ms = t.pow(2).mean((0, 2, 3)) + 1e-2
        bn.running_mean.copy_(0.1 * ms.sqrt() * torch.randn(n, generator=g))
        bn.running_var.copy_(ms * (0.5 + 1.5 * torch.rand(n, generator=g)))

    hooks = []
    seen = set()
    for blk in model.conv_layers:
        w = blk.conv.weight
        if id(w) in seen:  # share_index: the parameters of an earlier conv
            continue
        seen.add(id(w))
        n, fan_in = w.shape[0], w[0].numel()
        if blk.bn is not None:
            w.copy_(torch.randn(w.shape, generator=g) * math.sqrt(2.0 / fan_in))
            blk.bn.weight.copy_(1 + 0.2 * torch.randn(n, generator=g))
            blk.bn.bias.copy_(0.2 * torch.randn(n, generator=g))
            hooks.append(blk.bn.register_forward_pre_hook(calibrate))
        else:
            w.copy_(torch.randn(w.shape, generator=g) * math.sqrt(1.0 / fan_in))
            blk.conv.bias.copy_(0.1 * torch.randn(n, generator=g))
    model.eval()
    try:
        model(x, raw=True)
    finally:
        for h in hooks:
            h.remove()
