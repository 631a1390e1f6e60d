"""Darknet ``.cfg`` files: parse, validate, write, re-head.

A cfg is an INI-like list of sections (``[net]``, ``[convolutional]``, ``[route]`` ...), each with
``key=value`` lines; sections repeat. The rules follow AlexeyAB darknet ``src/parser.c`` and
``src/option_list.c``:

- every whitespace character on a line is removed (``layers = -1, 23`` is ``layers=-1,23``);
- lines starting with ``#`` or ``;`` are comments (an inline ``#`` comment is also cut off);
- a key repeated inside one section keeps its FIRST value (darknet's ``option_find`` walks the
  list from the front);
- keys darknet does not use for a section are kept in :attr:`Section.options` (training keys in
  ``[net]`` are many) and otherwise ignored.

:func:`build_specs` turns the parsed sections into typed, validated layer descriptions
(:class:`ConvSpec`, :class:`RouteSpec`, ...) with channel counts and strides, without torch: the
``.weights`` size checks and the torch module builder both use them. Every bad value of an option the
model uses raises :class:`yolo4.errors.CfgError` naming the file and the line.
"""

import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from yolo4.errors import CfgError

__all__ = [
    "Section", "parse_cfg", "write_cfg", "read_cfg_text", "build_specs", "rehead_cfg_text", "patch_cfg_text",
    "NetSpec", "ConvSpec", "RouteSpec", "ShortcutSpec", "MaxPoolSpec", "UpsampleSpec", "YoloSpec",
    "DropoutSpec", "LayerSpec", "ACTIVATIONS", "SECTION_ALIASES",
]

#: darknet activation names this package implements (darknet ``src/activations.c`` formulas).
ACTIVATIONS = ("linear", "leaky", "mish", "swish", "logistic", "relu", "relu6", "tanh", "elu", "selu",
               "gelu")

#: darknet section names (and their aliases, darknet ``string_to_layer_type``) -> canonical name.
SECTION_ALIASES = {
    "net": "net", "network": "net",
    "convolutional": "convolutional", "conv": "convolutional",
    "route": "route",
    "shortcut": "shortcut",
    "maxpool": "maxpool", "max": "maxpool",
    "upsample": "upsample",
    "yolo": "yolo",
    "dropout": "dropout",
}

#: options that change a [convolutional] in ways this package does not implement.
_UNSUPPORTED_CONV = ("antialiasing", "binary", "xnor", "share_index", "deform", "sway", "rotate",
                     "stretch", "stretch_sway", "flipped", "assisted_excitation", "coordconv")

_NUM_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_INT_RE = re.compile(r"^[+-]?\d+$")


# --------------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------------
@dataclass
class Section:
    """One ``[type]`` block of a cfg.

    Attributes:
        type: canonical section name (``net``, ``convolutional``, ``route``, ``shortcut``, ``maxpool``,
            ``upsample``, ``yolo``, ``dropout``); aliases (``conv``, ``max``, ``network``) are mapped.
        options: ``{key: raw value}`` with all whitespace removed, first occurrence of a key wins.
        line: 1-based line of the ``[type]`` header.
        option_lines: ``{key: 1-based line}`` of each kept option.
        path: the cfg file (str) or None when parsed from text; used in error messages.
    """

    type: str
    options: Dict[str, str] = field(default_factory=dict)
    line: int = 0
    option_lines: Dict[str, int] = field(default_factory=dict)
    path: Optional[str] = None

    # -- errors ------------------------------------------------------------------------------------
    def error(self, message: str, key: Optional[str] = None) -> CfgError:
        """A :class:`CfgError` at ``key``'s line (or the header line) of this section."""
        line = self.option_lines.get(key, self.line) if key is not None else self.line
        return CfgError(f"[{self.type}] {message}", self.path, line)

    # -- typed getters -----------------------------------------------------------------------------
    def has(self, key: str) -> bool:
        return key in self.options

    def get_str(self, key: str, default: Optional[str] = None) -> str:
        """Raw string value; ``default`` when absent (CfgError when absent and default is None)."""
        if key in self.options:
            return self.options[key]
        if default is None:
            raise self.error(f"missing required option {key!r}")
        return default

    def get_int(self, key: str, default: Optional[int] = None) -> int:
        """Integer value (darknet ``atoi``-strict: must be an integer literal). CfgError otherwise."""
        if key not in self.options:
            if default is None:
                raise self.error(f"missing required option {key!r}")
            return default
        v = self.options[key]
        if not _INT_RE.match(v):
            raise self.error(f"{key}={v} is not an integer", key)
        return int(v)

    def get_float(self, key: str, default: Optional[float] = None) -> float:
        """Float value (``.7``, ``1e-3`` accepted). CfgError when not a number."""
        if key not in self.options:
            if default is None:
                raise self.error(f"missing required option {key!r}")
            return default
        v = self.options[key]
        if not _NUM_RE.match(v):
            raise self.error(f"{key}={v} is not a number", key)
        return float(v)

    def get_ints(self, key: str, default: Optional[Sequence[int]] = None) -> List[int]:
        """Comma-separated integers (empty items skipped, as darknet). CfgError otherwise."""
        if key not in self.options:
            if default is None:
                raise self.error(f"missing required option {key!r}")
            return list(default)
        items = [s for s in self.options[key].split(",") if s != ""]
        if not items or not all(_INT_RE.match(s) for s in items):
            raise self.error(f"{key}={self.options[key]} is not a list of integers", key)
        return [int(s) for s in items]

    def get_floats(self, key: str, default: Optional[Sequence[float]] = None) -> List[float]:
        """Comma-separated numbers (empty items skipped, as darknet). CfgError otherwise."""
        if key not in self.options:
            if default is None:
                raise self.error(f"missing required option {key!r}")
            return list(default)
        items = [s for s in self.options[key].split(",") if s != ""]
        if not items or not all(_NUM_RE.match(s) for s in items):
            raise self.error(f"{key}={self.options[key]} is not a list of numbers", key)
        return [float(s) for s in items]

    def get_choice(self, key: str, choices: Sequence[str], default: str) -> str:
        v = self.options.get(key, default)
        if v not in choices:
            raise self.error("{}={} is not one of {}".format(key, v, ", ".join(choices)), key)
        return v


# --------------------------------------------------------------------------------------------------
# Parse / write
# --------------------------------------------------------------------------------------------------
def _looks_like_text(source: str) -> bool:
    return "\n" in source or source.lstrip().startswith("[")


def read_cfg_text(source: Union[str, "os.PathLike[str]"]) -> Tuple[str, Optional[str]]:
    """Return ``(text, path or None)`` for a cfg path or a cfg text.

    A ``PathLike`` is always a path; a ``str`` is cfg text when it contains a newline or starts with
    ``[``, else a path. Raises CfgError when the file cannot be read.
    """
    if isinstance(source, str) and _looks_like_text(source):
        return source, None
    path = os.fspath(source)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(), path
    except OSError as e:
        raise CfgError("cannot read cfg file (%s)" % (e.strerror or e), path) from None


def parse_cfg(source: Union[str, "os.PathLike[str]"], path: Optional[str] = None,
              validate: bool = True) -> List[Section]:
    """Parse a darknet cfg (darknet ``src/parser.c`` ``read_cfg``).

    Args:
        source: a cfg file path (str or PathLike), or the cfg text itself (a str holding a newline or
            starting with ``[``).
        path: name used in error messages when ``source`` is text.
        validate: also check every option the model uses (:func:`build_specs`), so a bad
            ``activation=``, a non-integer ``filters=``, an out-of-range ``[route]`` index raise here.

    Returns:
        list of :class:`Section`, file order, ``[net]`` first.

    Raises:
        CfgError: unreadable file, unknown section, a line outside a section or without ``=``, a
            first section that is not ``[net]``, and (``validate``) any bad option value; the message
            names the file and the 1-based line.
    """
    text, file_path = read_cfg_text(source)
    where = file_path if file_path is not None else path
    sections: List[Section] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = "".join(raw.split())  # darknet strip(): every whitespace character goes
        if not line or line[0] in "#;":
            continue
        if "#" in line:
            line = line[:line.index("#")]
            if not line:
                continue
        if line[0] == "[":
            if not line.endswith("]") or len(line) < 3:
                raise CfgError(f"bad section header {raw.strip()!r}", where, lineno)
            name = line[1:-1].lower()
            canon = SECTION_ALIASES.get(name)
            if canon is None:
                raise CfgError("unsupported section [{}] (supported: {})".format(
                    name, ", ".join(sorted(set(SECTION_ALIASES.values())))), where, lineno)
            sections.append(Section(canon, {}, lineno, {}, where))
            continue
        if "=" not in line:
            raise CfgError(f"expected key=value, got {raw.strip()!r}", where, lineno)
        if not sections:
            raise CfgError(f"option {raw.strip()!r} before the first [section]", where, lineno)
        key, value = line.split("=", 1)
        if not key:
            raise CfgError(f"empty key in {raw.strip()!r}", where, lineno)
        sec = sections[-1]
        if key not in sec.options:  # darknet: first occurrence wins
            sec.options[key] = value
            sec.option_lines[key] = lineno
    if not sections:
        raise CfgError("no sections in cfg", where)
    if sections[0].type != "net":
        raise CfgError(f"the first section must be [net], got [{sections[0].type}]", where,
                       sections[0].line)
    for s in sections[1:]:
        if s.type == "net":
            raise CfgError("[net] may only be the first section", where, s.line)
    if validate:
        build_specs(sections)
    return sections


def write_cfg(sections: Sequence[Section]) -> str:
    """Render sections as cfg text (``[type]`` then ``key=value`` lines, blank line between).

    Comments and spacing of the original file are not kept; :func:`parse_cfg` of the result gives
    the same types and options.
    """
    out = []
    for s in sections:
        out.append(f"[{s.type}]")
        out.extend(f"{k}={v}" for k, v in s.options.items())
        out.append("")
    return "\n".join(out)


def patch_cfg_text(text: str, sections: Sequence[Section],
                   edits: Sequence[Tuple[int, str, str]]) -> str:
    """Return ``text`` with options changed in place, keeping comments and layout.

    Args:
        text: the cfg text ``sections`` were parsed from.
        sections: its parsed sections (for line numbers).
        edits: ``(section index, key, new value)``; an existing option's line is replaced by
            ``key=value``, a missing one is inserted right after the section header.
    """
    lines = text.splitlines()
    replace: Dict[int, str] = {}
    insert: Dict[int, List[str]] = {}
    for si, key, value in edits:
        sec = sections[si]
        if key in sec.option_lines:
            replace[sec.option_lines[key] - 1] = f"{key}={value}"
        else:
            insert.setdefault(sec.line - 1, []).append(f"{key}={value}")
    out = []
    for i, ln in enumerate(lines):
        out.append(replace.get(i, ln))
        out.extend(insert.get(i, []))
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------------
# Typed layer descriptions
# --------------------------------------------------------------------------------------------------
@dataclass
class NetSpec:
    """``[net]``: input geometry and every other key (training keys) auto-typed in ``options``."""

    width: int
    height: int
    channels: int
    letter_box: bool
    options: Dict[str, Any]
    section: Section


@dataclass
class LayerSpec:
    """Common fields of a layer (index = position after ``[net]``, darknet's layer number)."""

    index: int
    section: Section
    in_channels: int
    out_channels: int
    stride: int  # input pixels per output cell (cumulative down-sampling)

    @property
    def type(self) -> str:
        return self.section.type


@dataclass
class ConvSpec(LayerSpec):
    """``[convolutional]`` (darknet ``src/convolutional_layer.c``)."""

    filters: int = 1
    size: int = 1
    conv_stride: int = 1
    padding: int = 0
    groups: int = 1
    dilation: int = 1
    batch_normalize: bool = False
    activation: str = "logistic"
    stopbackward: int = 0

    def num_params(self) -> int:
        """Floats this layer holds in a .weights file (bias, [scale, mean, var,] kernel)."""
        n = self.filters * (4 if self.batch_normalize else 1)
        return n + self.filters * (self.in_channels // self.groups) * self.size * self.size


@dataclass
class RouteSpec(LayerSpec):
    """``[route]``: concat of ``layers`` (absolute indices), each sliced to ``group_id`` of ``groups``."""

    layers: List[int] = field(default_factory=list)
    groups: int = 1
    group_id: int = 0
    stopbackward: int = 0


@dataclass
class ShortcutSpec(LayerSpec):
    """``[shortcut]``: previous output + outputs of ``from_layers``, then activation."""

    from_layers: List[int] = field(default_factory=list)
    activation: str = "linear"


@dataclass
class MaxPoolSpec(LayerSpec):
    """``[maxpool]`` (darknet ``src/maxpool_layer.c``): total padding ``padding`` (default size-1),
    ``padding // 2`` before, the rest after; out = (in + padding - size) // stride + 1."""

    size: int = 1
    pool_stride: int = 1
    padding: int = 0


@dataclass
class UpsampleSpec(LayerSpec):
    """``[upsample]``: nearest-neighbour up-sampling by ``factor``, times ``scale``."""

    factor: int = 2
    scale: float = 1.0


@dataclass
class DropoutSpec(LayerSpec):
    """``[dropout]``: identity at inference, inverted dropout of ``probability`` in training."""

    probability: float = 0.2


@dataclass
class YoloSpec(LayerSpec):
    """``[yolo]`` (darknet ``src/yolo_layer.c``, ``parse_yolo`` in ``src/parser.c``).

    ``anchors`` are all (w, h) pairs in input pixels; ``mask`` picks this layer's. The other fields are
    darknet's training/inference keys with darknet's defaults.
    """

    classes: int = 20
    num: int = 1
    mask: List[int] = field(default_factory=list)
    anchors: List[Tuple[float, float]] = field(default_factory=list)
    scale_x_y: float = 1.0
    new_coords: int = 0
    nms_kind: str = "default"
    beta_nms: float = 0.6
    iou_thresh: float = 1.0
    ignore_thresh: float = 0.5
    truth_thresh: float = 1.0
    iou_loss: str = "mse"
    iou_thresh_kind: str = "iou"
    iou_normalizer: float = 0.75
    cls_normalizer: float = 1.0
    obj_normalizer: float = 1.0
    delta_normalizer: float = 1.0
    max_delta: float = float("inf")
    objectness_smooth: int = 0
    label_smooth_eps: float = 0.0
    focal_loss: int = 0
    jitter: float = 0.2
    resize: float = 1.0
    random: float = 0.0
    max_boxes: int = 200


# darknet parse_net_options defaults for the keys the trainer may read (src/parser.c)
DEFAULT_NET: Dict[str, Any] = {
    "batch": 1, "subdivisions": 1, "learning_rate": 0.001, "momentum": 0.9, "decay": 0.0001,
    "burn_in": 0, "power": 4.0, "max_batches": 0, "policy": "constant", "steps": [], "scales": [],
    "angle": 0.0, "saturation": 1.0, "exposure": 1.0, "hue": 0.0, "aspect": 1.0, "flip": 1,
    "mosaic": 0, "mixup": 0, "cutmix": 0, "blur": 0, "gaussian_noise": 0, "letter_box": 0,
    "mosaic_bound": 0, "label_smooth_eps": 0.0, "resize_step": 32, "ema_alpha": 0.0,
    "adam": 0, "B1": 0.9, "B2": 0.999, "eps": 1e-7,
}


def _auto(value: str) -> Any:
    """Auto-type a [net] value: int, float, list of numbers (comma), else the string."""
    if _INT_RE.match(value):
        return int(value)
    if _NUM_RE.match(value):
        return float(value)
    if "," in value:
        items = [s for s in value.split(",") if s != ""]
        if items and all(_NUM_RE.match(s) for s in items):
            return [int(s) if _INT_RE.match(s) else float(s) for s in items]
    return value


def _net_spec(sec: Section) -> NetSpec:
    opts = dict(DEFAULT_NET)
    for k, v in sec.options.items():
        opts[k] = _auto(v)
    for k in ("steps", "scales"):  # one-element lists are written without a comma
        if not isinstance(opts[k], list):
            opts[k] = [opts[k]]
    width = sec.get_int("width", 0)
    height = sec.get_int("height", 0)
    channels = sec.get_int("channels", 3)
    if width <= 0 or height <= 0:
        raise sec.error("width and height must be positive integers", "width" if width <= 0 else "height")
    if channels <= 0:
        raise sec.error("channels must be positive", "channels")
    return NetSpec(width, height, channels, bool(sec.get_int("letter_box", 0)), opts, sec)


def _activation(sec: Section, default: str) -> str:
    act = sec.options.get("activation", default)
    if act not in ACTIVATIONS:
        raise sec.error("activation={} is not supported (one of {})".format(act, ", ".join(ACTIVATIONS)),
                        "activation")
    return act


def _positive(sec: Section, key: str, value: float) -> None:
    if value <= 0:
        raise sec.error(f"{key} must be positive", key)


def _abs_index(sec: Section, key: str, rel: int, index: int) -> int:
    j = index + rel if rel < 0 else rel
    if j < 0 or j >= index:
        raise sec.error(f"{key} index {rel} refers to layer {j}, outside 0..{index - 1}", key)
    return j


def build_specs(sections: Sequence[Section]) -> Tuple[NetSpec, List[LayerSpec]]:
    """Validate sections and describe each layer (channels, spatial stride, typed options).

    Args:
        sections: output of :func:`parse_cfg` (``[net]`` first).

    Returns:
        ``(net, layers)``; ``layers[i]`` is darknet layer ``i`` (the section after ``[net]``).

    Raises:
        CfgError: bad option value (non-integer, out of range, unsupported activation or feature),
            route/shortcut index out of range or referring to a ``[yolo]``, channel mismatches, a
            ``[yolo]`` not preceded by a ``[convolutional]`` with ``filters=len(mask)*(classes+5)``.
    """
    if not sections or sections[0].type != "net":
        raise CfgError("the first section must be [net]", sections[0].path if sections else None)
    net = _net_spec(sections[0])
    specs: List[LayerSpec] = []
    c, s = net.channels, 1
    for i, sec in enumerate(sections[1:]):
        t = sec.type
        if t == "convolutional":
            for k in _UNSUPPORTED_CONV:
                if k in sec.options and sec.options[k] not in ("0", ""):
                    raise sec.error(f"option {k}={sec.options[k]} is not supported", k)
            filters = sec.get_int("filters", 1)
            size = sec.get_int("size", 1)
            stride = sec.get_int("stride", 1)
            for k in ("stride_x", "stride_y"):
                if k in sec.options and sec.get_int(k) != stride:
                    raise sec.error(f"{k} different from stride is not supported", k)
            groups = sec.get_int("groups", 1)
            dilation = sec.get_int("dilation", 1)
            for k, v in (("filters", filters), ("size", size), ("stride", stride), ("groups", groups),
                         ("dilation", dilation)):
                _positive(sec, k, v)
            pad = sec.get_int("pad", 0)
            padding = sec.get_int("padding", 0)
            if pad:
                padding = size // 2
            if padding < 0:
                raise sec.error("padding must be >= 0", "padding")
            if c % groups or filters % groups:
                raise sec.error(f"groups={groups} does not divide input channels {c} and filters {filters}", "groups")
            spec = ConvSpec(i, sec, c, filters, s * stride, filters=filters, size=size, conv_stride=stride,
                            padding=padding, groups=groups, dilation=dilation,
                            batch_normalize=bool(sec.get_int("batch_normalize", 0)),
                            activation=_activation(sec, "logistic"),
                            stopbackward=sec.get_int("stopbackward", 0))
        elif t == "route":
            rel = sec.get_ints("layers")
            layers = [_abs_index(sec, "layers", r, i) for r in rel]
            groups = sec.get_int("groups", 1)
            group_id = sec.get_int("group_id", 0)
            _positive(sec, "groups", groups)
            if not 0 <= group_id < groups:
                raise sec.error("group_id must be in 0..groups-1", "group_id")
            out_c, strides = 0, set()
            for j in layers:
                src = specs[j]
                if isinstance(src, YoloSpec):
                    raise sec.error(f"layers refers to a [yolo] layer ({j})", "layers")
                if src.out_channels % groups:
                    raise sec.error(f"groups={groups} does not divide the {src.out_channels} channels of layer {j}", "groups")
                out_c += src.out_channels // groups
                strides.add(src.stride)
            if len(strides) != 1:
                raise sec.error(f"layers {layers} have different spatial sizes", "layers")
            spec = RouteSpec(i, sec, c, out_c, strides.pop(), layers=layers, groups=groups, group_id=group_id,
                             stopbackward=sec.get_int("stopbackward", 0))
        elif t == "shortcut":
            wt = sec.options.get("weights_type", "none")
            if wt != "none":
                raise sec.error(f"weights_type={wt} is not supported", "weights_type")
            froms = [_abs_index(sec, "from", r, i) for r in sec.get_ints("from")]
            for j in froms:
                src = specs[j]
                if isinstance(src, YoloSpec):
                    raise sec.error(f"from refers to a [yolo] layer ({j})", "from")
                if src.out_channels != c or src.stride != s:
                    raise sec.error(f"from layer {j} has shape ({src.out_channels} ch, stride {src.stride}), previous layer "
                                    f"({c} ch, stride {s}): shortcut of different shapes is not supported", "from")
            spec = ShortcutSpec(i, sec, c, c, s, from_layers=froms, activation=_activation(sec, "linear"))
        elif t == "maxpool":
            stride = sec.get_int("stride", 1)
            for k in ("stride_x", "stride_y"):
                if k in sec.options and sec.get_int(k) != stride:
                    raise sec.error(f"{k} different from stride is not supported", k)
            size = sec.get_int("size", stride)
            _positive(sec, "stride", stride)
            _positive(sec, "size", size)
            padding = sec.get_int("padding", size - 1)
            if padding < 0:
                raise sec.error("padding must be >= 0", "padding")
            if sec.get_int("maxpool_depth", 0) or sec.get_int("antialiasing", 0):
                raise sec.error("maxpool_depth / antialiasing are not supported")
            spec = MaxPoolSpec(i, sec, c, c, s * stride, size=size, pool_stride=stride, padding=padding)
        elif t == "upsample":
            factor = sec.get_int("stride", 2)
            if factor <= 0:
                raise sec.error("stride must be positive (down-sampling [upsample] is not supported)", "stride")
            if s % factor:
                raise sec.error(f"upsampling by {factor} below stride {s}", "stride")
            spec = UpsampleSpec(i, sec, c, c, s // factor, factor=factor, scale=sec.get_float("scale", 1.0))
        elif t == "dropout":
            p = sec.get_float("probability", 0.2)
            if not 0 <= p < 1:
                raise sec.error("probability must be in [0, 1)", "probability")
            spec = DropoutSpec(i, sec, c, c, s, probability=p)
        elif t == "yolo":
            spec = _yolo_spec(sec, i, c, s, specs)
        else:  # pragma: no cover - parse_cfg only lets known types through
            raise sec.error("unsupported section")
        specs.append(spec)
        c, s = spec.out_channels, spec.stride
    if not any(isinstance(sp, YoloSpec) for sp in specs):
        raise CfgError("cfg has no [yolo] section", sections[0].path)
    return net, specs


def _yolo_spec(sec: Section, i: int, c: int, s: int, specs: List[LayerSpec]) -> YoloSpec:
    classes = sec.get_int("classes", 20)
    num = sec.get_int("num", 1)
    _positive(sec, "classes", classes)
    _positive(sec, "num", num)
    mask = sec.get_ints("mask", list(range(num)))
    for m in mask:
        if not 0 <= m < num:
            raise sec.error(f"mask index {m} outside 0..num-1 (num={num})", "mask")
    a = sec.get_floats("anchors")
    if len(a) < 2 * num:
        raise sec.error(f"anchors has {len(a)} values, num={num} needs {2 * num}", "anchors")
    anchors = [(a[2 * k], a[2 * k + 1]) for k in range(num)]
    want = len(mask) * (classes + 5)
    if not specs or not isinstance(specs[-1], ConvSpec):
        raise sec.error("[yolo] must directly follow a [convolutional]")
    if c != want:
        raise CfgError(f"[convolutional] filters={c} does not match the next [yolo] (len(mask)={len(mask)}, "
                       f"classes={classes} -> filters={want})", sec.path,
                       specs[-1].section.option_lines.get("filters", specs[-1].section.line))
    new_coords = sec.get_int("new_coords", 0)
    nms_kind = sec.get_choice("nms_kind", ("default", "greedynms", "diounms", "cornersnms"), "default")
    iou_loss = sec.get_choice("iou_loss", ("mse", "iou", "giou", "diou", "ciou"), "mse")
    iou_thresh_kind = sec.get_choice("iou_thresh_kind", ("iou", "giou", "diou", "ciou"), "iou")
    return YoloSpec(
        i, sec, c, c, s, classes=classes, num=num, mask=mask, anchors=anchors,
        scale_x_y=sec.get_float("scale_x_y", 1.0), new_coords=new_coords, nms_kind=nms_kind,
        beta_nms=sec.get_float("beta_nms", 0.6), iou_thresh=sec.get_float("iou_thresh", 1.0),
        ignore_thresh=sec.get_float("ignore_thresh", 0.5), truth_thresh=sec.get_float("truth_thresh", 1.0),
        iou_loss=iou_loss, iou_thresh_kind=iou_thresh_kind,
        iou_normalizer=sec.get_float("iou_normalizer", 0.75), cls_normalizer=sec.get_float("cls_normalizer", 1.0),
        obj_normalizer=sec.get_float("obj_normalizer", 1.0),
        delta_normalizer=sec.get_float("delta_normalizer", 1.0), max_delta=sec.get_float("max_delta", float("inf")),
        objectness_smooth=sec.get_int("objectness_smooth", 0),
        label_smooth_eps=sec.get_float("label_smooth_eps", 0.0), focal_loss=sec.get_int("focal_loss", 0),
        jitter=sec.get_float("jitter", 0.2), resize=sec.get_float("resize", 1.0),
        random=sec.get_float("random", 0.0), max_boxes=sec.get_int("max", 200),
    )


# --------------------------------------------------------------------------------------------------
# Re-heading
# --------------------------------------------------------------------------------------------------
def rehead_cfg_text(text: str, num_classes: int, path: Optional[str] = None) -> Tuple[str, List[int]]:
    """Rewrite a cfg for ``num_classes`` classes, keeping comments and layout.

    Every ``[yolo]`` gets ``classes=num_classes`` and the ``[convolutional]`` right before it
    ``filters=(num_classes+5)*len(mask)`` (the darknet "how to train on custom objects" recipe).

    Returns:
        ``(new text, darknet layer indices of the re-headed convolutions)``.

    Raises:
        CfgError: the cfg is invalid, or num_classes < 1.
    """
    if int(num_classes) < 1:
        raise CfgError(f"num_classes must be >= 1, got {num_classes}", path)
    sections = parse_cfg(text, path=path)
    _, specs = build_specs(sections)
    edits, heads = [], []
    for sp in specs:
        if isinstance(sp, YoloSpec):
            conv = specs[sp.index - 1]
            edits.append((sp.index + 1, "classes", str(int(num_classes))))
            edits.append((conv.index + 1, "filters", str((int(num_classes) + 5) * len(sp.mask))))
            heads.append(conv.index)
    return patch_cfg_text(text, sections, edits), heads
