"""yolo4.model: darknet cfg -> torch module, darknet .weights IO, checkpoints (torch).

Public API::

    load_darknet(cfg, weights=None, names=None, num_classes=None) -> Darknet
    load_weights(module, path, upto=None)
    save_darknet_weights(module, path) -> Path
    save_cfg(module, path) -> Path
    load_checkpoint(path) -> Darknet
    Darknet(cfg_path) ; Darknet(text=cfg_text, path=name_for_messages) ; Darknet(sections)
    parse_cfg(path) -> [Section] ; parse_cfg_text(text, path=None) -> [Section] ; write_cfg(sections) -> str
    build_specs(sections) -> (NetSpec, [LayerSpec]) ; check_input_hw(net, specs, size) -> (h, w)
"""

import os
from pathlib import Path
from typing import List, Optional, Sequence, Union

from yolo4.errors import AssetError, CfgError, DataError, WeightsError
from yolo4.model.cfg import (
    Section,
    build_specs,
    check_input_hw,
    network_stride,
    parse_cfg,
    parse_cfg_text,
    patch_cfg_text,
    read_cfg_text,
    rehead_edits,
    write_cfg,
)
from yolo4.model.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, read_checkpoint
from yolo4.model.darknet import Darknet
from yolo4.model.layers import YoloLayer
from yolo4.model.weights import (
    assign_arrays,
    atomic_write_bytes,
    load_weights,
    read_darknet_weights,
    save_darknet_weights,
    weights_file_size,
)

__all__ = ["Darknet", "YoloLayer", "Section", "load_darknet", "load_weights", "save_darknet_weights",
           "save_cfg", "load_checkpoint", "parse_cfg", "parse_cfg_text", "write_cfg", "build_specs",
           "check_input_hw", "network_stride", "weights_file_size", "CHECKPOINT_FORMAT", "read_checkpoint"]

NamesArg = Union[None, str, "os.PathLike[str]", Sequence[str]]


def _resolve(kind: str, source) -> str:
    """A path for ``source``: an existing path as is, else a known asset name via yolo4.assets."""
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"{kind} must be a path or a known name, got {type(source).__name__!r}")
    p = os.fspath(source)
    if os.path.exists(p):
        return p
    err = CfgError if kind == "cfg" else WeightsError
    if not isinstance(source, str) or "/" in p or os.sep in p or os.path.splitext(p)[1]:
        raise err(f"{kind} file not found", p)  # a path, not a model name
    try:
        from yolo4 import assets
    except ImportError:
        raise err("file not found", p) from None
    fn = assets.resolve_cfg if kind == "cfg" else assets.resolve_weights
    try:
        return os.fspath(fn(p))
    except AssetError:
        raise
    except OSError as e:  # pragma: no cover - resolver should raise AssetError
        raise err(f"file not found ({e})", p) from None


def _load_names(names: NamesArg) -> Optional[List[str]]:
    if names is None:
        return None
    if isinstance(names, (str, os.PathLike)):
        from yolo4.data.names import resolve_names

        return resolve_names(names)
    return [str(n) for n in names]


def load_darknet(cfg: Union[str, "os.PathLike[str]"], weights: Optional[Union[str, "os.PathLike[str]"]] = None,
                 names: NamesArg = None, num_classes: Optional[int] = None) -> Darknet:
    """Build a :class:`Darknet` from a cfg and optionally load darknet .weights; eval mode.

    Args:
        cfg: cfg path or known model name (``"yolov4-tiny"``, resolved by ``yolo4.assets.resolve_cfg``).
        weights: .weights path or known name (``yolo4.assets.resolve_weights``), or None (random
            init: torch defaults, head convs with the priors of :meth:`Darknet.init_heads`).
        names: class names (list), a ``.names`` file, or a built-in list (``"coco"``, ``"voc"``);
            None = unknown (``model_info()`` then gives COCO's names to an 80-class model).
        num_classes: re-head for this many classes: every ``[yolo]`` gets ``classes=num_classes``
            and the conv before it ``filters=(num_classes+5)*len(mask)``; all other layers load
            from ``weights`` (read against the ORIGINAL cfg), the head convs get a fresh init
            (weights N(0, 0.01); bias: box 0, objectness log(8/cells), classes log(0.6/(C−0.99))).
            ``module.cfg_text`` is the re-headed cfg (comments kept). None or equal to the cfg's
            classes = no re-head.

    Returns:
        the module, eval mode, float32 on the CPU.

    Raises:
        CfgError: bad cfg (file and line). WeightsError: weights missing or of the wrong size.
        AssetError: unknown model name / unavailable asset. DataError: names length != classes.
    """
    text, path = read_cfg_text(_resolve("cfg", cfg))
    sections = parse_cfg_text(text, path=path, validate=False)  # warnings (unknown keys ...) once
    _, orig_specs = build_specs(sections)
    heads: List[int] = []
    orig_classes = next(sp.classes for sp in orig_specs if sp.type == "yolo")
    rehead = num_classes is not None and (
        int(num_classes) != orig_classes or
        len({sp.classes for sp in orig_specs if sp.type == "yolo"}) > 1)
    if rehead:
        if int(num_classes) < 1:
            raise CfgError(f"num_classes must be >= 1, got {num_classes}", path)
        edits, heads = rehead_edits(orig_specs, int(num_classes))
        text = patch_cfg_text(text, sections, edits)
        sections = parse_cfg_text(text, path=path, validate=False, warn=False)
    model = Darknet(sections, text=text, init=weights is None)
    name_list = _load_names(names)
    if name_list is not None and len(name_list) != model.num_classes:
        where = os.fspath(names) if isinstance(names, (str, os.PathLike)) else None
        raise DataError(f"{len(name_list)} class names given for a {model.num_classes}-class model "
                        f"(cfg classes={model.num_classes})", where)
    model.names = name_list
    if weights is not None:
        wpath = _resolve("weights", weights)
        header, arrays = read_darknet_weights(wpath, orig_specs)
        assign_arrays(model, arrays, skip=heads, path=wpath)
        model.darknet_header = header
        if heads:
            model.init_heads(heads)
    return model.eval()


def save_cfg(module: Darknet, path: Union[str, "os.PathLike[str]"]) -> Path:
    """Write ``module.cfg_text`` (re-headed cfgs carry their new classes/filters) atomically."""
    text = module.cfg_text if module.cfg_text.endswith("\n") else module.cfg_text + "\n"
    return atomic_write_bytes(path, text.encode("utf-8"))
