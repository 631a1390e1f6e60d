"""Export a model as darknet files: ``.cfg`` + ``.weights`` + ``.names``.

What darknet itself, OpenCV DNN (``cv2.dnn.readNetFromDarknet``), tkDNN and DeepStream's
``nvdsinfer_custom_impl_Yolo`` read. The ``.weights`` file is darknet's layout (src/parser.c
``save_weights``: a header of major 0, minor 2, revision 0 and a 64-bit ``seen``, then per layer
biases, batch-norm scales/means/variances when ``batch_normalize=1``, and weights), written by
:func:`yolo4.model.save_darknet_weights`. The ``.cfg`` is the model's own cfg text (a re-headed
cfg carries its new ``classes``/``filters``) with ``[net] width``/``height`` set to the size the
model runs at (a checkpoint's training size), so darknet and OpenCV default to it. All three files
are written to temp files and renamed, the ``.weights`` last.
"""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

from ..fileio import atomic_write_text

__all__ = ["DarknetExport", "export_darknet", "darknet_paths", "cfg_with_size"]

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class DarknetExport:
    """The files written by :func:`export_darknet` (absolute paths) and the network size (H, W)."""

    weights: Path
    cfg: Path
    names: Path
    input_hw: Tuple[int, int]


def darknet_paths(output: PathLike) -> Tuple[Path, Path, Path]:
    """``(weights, cfg, names)`` for ``-o``: ``best.weights`` -> best.weights, best.cfg, best.names;
    another suffix (or none) is replaced the same way (``best`` -> best.weights, ...)."""
    p = Path(os.fspath(output))
    stem = p.with_suffix("") if p.suffix in (".weights", ".cfg", ".names") else p
    return (stem.parent / (stem.name + ".weights"), stem.parent / (stem.name + ".cfg"),
            stem.parent / (stem.name + ".names"))


def cfg_with_size(text: str, input_hw: Tuple[int, int], path: Optional[str] = None) -> str:
    """``text`` with ``[net] width``/``height`` set to ``input_hw = (H, W)`` (other lines kept)."""
    from ..model.cfg.text import parse_cfg_text, patch_cfg_text

    sections = parse_cfg_text(text, path=path, validate=False, warn=False)
    net = next(i for i, s in enumerate(sections) if s.type == "net")
    h, w = int(input_hw[0]), int(input_hw[1])
    return patch_cfg_text(text, sections, [(net, "width", str(w)), (net, "height", str(h))])


def export_darknet(module, output: PathLike, input_hw: Optional[Tuple[int, int]] = None,
                   names: Optional[Sequence[str]] = None) -> DarknetExport:
    """Write ``module`` (a :class:`yolo4.model.Darknet`) as darknet's ``.cfg``/``.weights``/``.names``.

    Args:
        module: the model (from a cfg + weights or a checkpoint).
        output: the ``.weights`` path (the ``.cfg`` and ``.names`` go beside it, same stem).
        input_hw: network size ``(H, W)`` in pixels for ``[net]`` (default ``module.input_hw``).
        names: class names, one per class (default the model's).

    Raises:
        ValueError: names of the wrong count.
        OSError: a file cannot be written (nothing is left half-written).
    """
    from ..model import save_darknet_weights

    weights, cfg, names_path = darknet_paths(output)
    hw = tuple(int(v) for v in (input_hw or module.input_hw))
    info = module.model_info()
    names = list(names) if names is not None else list(info.names)
    if len(names) != info.num_classes:
        raise ValueError(f"{len(names)} class names for a {info.num_classes}-class model")
    atomic_write_text(cfg, cfg_with_size(module.cfg_text, (hw[0], hw[1]), getattr(module, "cfg_path", None)))
    atomic_write_text(names_path, "".join(f"{n}\n" for n in names))
    save_darknet_weights(module, str(weights))
    return DarknetExport(weights.resolve(), cfg.resolve(), names_path.resolve(), (hw[0], hw[1]))
