"""Training hyperparameters with darknet's key names: a flat YAML file, ``--set key=value``, the cfg.

A hyperparameter file is a flat YAML mapping of darknet cfg keys to numbers::

    learning_rate: 0.001   # [net]
    hue: 0.1               # [net]
    mosaic: 1              # [net]
    iou_normalizer: 0.07   # every [yolo]
    jitter: 0.2            # every [yolo]

Each key belongs to ``[net]`` or to ``[yolo]`` (then it is set in every ``[yolo]`` section), decided
by the darknet key tables :data:`yolo4.model.cfg.keys.KNOWN_KEYS`. Two keys darknet reads in both
are resolved as the trainer uses them: ``learning_rate`` is ``[net]``'s (a ``[yolo]`` one is a
per-layer multiplier) and ``label_smooth_eps`` is ``[yolo]``'s (the detection loss reads it there).
Keys that define the model rather than its training (``width``, ``classes``, ``anchors``, ...), keys
of other sections (``filters``), unknown keys and values that are not numbers are errors, one line
``file:line: ...`` (:class:`HypError`).

:data:`EVOLVABLE` lists the keys ``yolo4 train --evolve`` mutates (:mod:`.evolve`), with bounds.
Imports yolo4.model.cfg (and so torch, through yolo4.model).
"""

import dataclasses
import math
import os
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from ..errors import CfgError
from ..fileio import atomic_write_text, compose_yaml
from ..model.cfg.keys import KNOWN_KEYS, suggest_key
from ..model.cfg.section import NUM_RE
from ..model.cfg.specs import DEFAULT_NET, YoloSpec

__all__ = ["HypError", "Gene", "EVOLVABLE", "HYP_SECTIONS", "section_of", "load_hyp", "parse_overrides",
           "apply_hyp", "hyp_of", "save_hyp", "format_value"]

PathLike = Union[str, "os.PathLike[str]"]


class HypError(CfgError):
    """A hyperparameter YAML or ``--set`` option that cannot be used (names the file and line)."""


@dataclasses.dataclass(frozen=True)
class Gene:
    """How :func:`yolo4.trainer.evolve.mutate` changes one key.

    Attributes:
        lo, hi: bounds the mutated value is clipped to (in the key's own darknet units).
        gain: mutation scale 0..1 (ultralytics' meta "gain": 0 = never mutated, 1 = full sigma).
        kind: ``mul`` (value x factor, ultralytics' rule: for scale-free keys such as the learning
            rate; a 0 stays 0), ``add`` (value + (factor - 1) x (hi - lo): for keys whose useful
            range starts at 0 or 1, so ``hue=0`` can move), ``flag`` (a 0/1 darknet switch, flipped
            with probability ``sigma x gain`` when mutated).
        integer: darknet reads the key as an int (written without a decimal point).
    """

    lo: float
    hi: float
    gain: float = 1.0
    kind: str = "add"
    integer: bool = False


#: The keys the evolution mutates: ``key -> Gene(lo, hi, gain, kind, integer)``. Bounds follow
#: ultralytics' yolov5 ``train.py`` evolve ``meta`` (gain, lower, upper) where a counterpart exists,
#: mapped to darknet's units, and darknet's valid ranges (``src/parser.c``, ``src/data.c``):
#:
#: ==================  ==========  ============  =====  ====  ==============================================
#: key                 section     bounds        gain   kind  ultralytics meta / darknet meaning
#: ==================  ==========  ============  =====  ====  ==============================================
#: learning_rate       [net]       1e-5 .. 0.1   1.0    mul   lr0 (1, 1e-5, 1e-1)
#: momentum            [net]       0.6 .. 0.98   0.3    mul   momentum (0.3, 0.6, 0.98)
#: decay               [net]       0 .. 0.001    1.0    mul   weight_decay (1, 0.0, 0.001)
#: burn_in             [net]       0 .. 5000     1.0    mul   warmup_epochs (1, 0, 5); iterations, int
#: hue                 [net]       0 .. 0.5      1.0    add   hsv_h (1, 0, 0.1); fraction of the hue circle
#: saturation          [net]       1 .. 2        1.0    add   hsv_s (1, 0, 0.9); max scale (1 = off)
#: exposure            [net]       1 .. 2        1.0    add   hsv_v (1, 0, 0.9); max scale (1 = off)
#: mosaic              [net]       0 .. 1        1.0    flag  mosaic (1, 0, 1); darknet 0/1 switch
#: mixup               [net]       0 .. 1        1.0    flag  mixup (1, 0, 1); darknet 0/1 switch
#: jitter              [yolo]      0 .. 0.5      1.0    add   translate/scale (1, 0, 0.9); crop fraction
#: iou_normalizer      [yolo]      0.01 .. 2     1.0    mul   box (1, 0.02, 0.2); box-loss weight
#: obj_normalizer      [yolo]      0.2 .. 4      1.0    mul   obj (1, 0.2, 4.0); objectness weight
#: cls_normalizer      [yolo]      0.2 .. 4      1.0    mul   cls (1, 0.2, 4.0); class-loss weight
#: ignore_thresh       [yolo]      0.3 .. 0.9    1.0    add   iou_t (0, 0.1, 0.7); IoU above: no obj loss
#: iou_thresh          [yolo]      0.1 .. 1      1.0    add   anchor_t (1, 2, 8); extra anchors (1 = off)
#: label_smooth_eps    [yolo]      0 .. 0.1      1.0    add   (label_smoothing); class-target smoothing
#: ==================  ==========  ============  =====  ====  ==============================================
#:
#: ``scale_x_y`` is left out on purpose: yolov4.cfg sets it per ``[yolo]`` (1.2 / 1.1 / 1.05) and it
#: changes the inference decode, not only training (it can still be set in a hyp file).
EVOLVABLE: Dict[str, Gene] = {
    "learning_rate": Gene(1e-5, 0.1, 1.0, "mul"),
    "momentum": Gene(0.6, 0.98, 0.3, "mul"),
    "decay": Gene(0.0, 0.001, 1.0, "mul"),
    "burn_in": Gene(0.0, 5000.0, 1.0, "mul", integer=True),
    "hue": Gene(0.0, 0.5, 1.0, "add"),
    "saturation": Gene(1.0, 2.0, 1.0, "add"),
    "exposure": Gene(1.0, 2.0, 1.0, "add"),
    "mosaic": Gene(0.0, 1.0, 1.0, "flag", integer=True),
    "mixup": Gene(0.0, 1.0, 1.0, "flag", integer=True),
    "jitter": Gene(0.0, 0.5, 1.0, "add"),
    "iou_normalizer": Gene(0.01, 2.0, 1.0, "mul"),
    "obj_normalizer": Gene(0.2, 4.0, 1.0, "mul"),
    "cls_normalizer": Gene(0.2, 4.0, 1.0, "mul"),
    "ignore_thresh": Gene(0.3, 0.9, 1.0, "add"),
    "iou_thresh": Gene(0.1, 1.0, 1.0, "add"),
    "label_smooth_eps": Gene(0.0, 0.1, 1.0, "add"),
}

#: keys darknet reads in both [net] and [yolo]: the section the trainer uses them from
_BOTH = {"learning_rate": "net", "label_smooth_eps": "yolo"}

#: keys that define the model (shapes, heads, anchors) or are set by ``yolo4 train`` arguments, not
#: hyperparameters of a hyp file
_STRUCTURAL = frozenset(("width", "height", "channels", "inputs", "classes", "num", "mask", "anchors",
                         "max", "new_coords", "embedding_layer", "map", "counters_per_class"))

#: keys darknet reads with ``option_find_int`` (src/parser.c): the value must be a whole number
_INT_KEYS = frozenset((
    "max_batches", "batch", "subdivisions", "time_steps", "track", "augment_speed", "sequential_subdivisions",
    "try_fix_nan", "weights_reject_freq", "equidistant_point", "use_cuda_graph", "dynamic_minibatch",
    "optimized_memory", "adam", "max_crop", "min_crop", "flip", "blur", "gaussian_noise", "mixup", "cutmix",
    "mosaic", "letter_box", "mosaic_bound", "contrastive", "contrastive_jit_flip", "contrastive_color",
    "unsupervised", "resize_step", "attention", "burn_in", "step", "sgdr_cycle", "sgdr_mult",
    "show_receptive_field", "show_details", "objectness_smooth", "focal_loss", "track_history_size",
    "dets_for_track", "dets_for_show", "clip", "onlyforward", "dont_update", "burnin_update",
    "stopbackward", "train_only_bn", "dontload", "dontloadscales",
))

#: the sections a hyperparameter can belong to
HYP_SECTIONS = ("net", "yolo")

_YOLO_DEFAULTS = {f.name: f.default for f in dataclasses.fields(YoloSpec)
                  if f.default is not dataclasses.MISSING}


def section_of(key: str) -> str:
    """``"net"`` or ``"yolo"``: the section a hyperparameter key is set in.

    Raises:
        ValueError: the key is not a hyperparameter (unknown, of another section, structural), with
            a one-line reason (callers add the file and line).
    """
    if key in _BOTH:
        return _BOTH[key]
    if key in _STRUCTURAL:
        raise ValueError(f"{key!r} defines the model, not a training hyperparameter (set it in the cfg)")
    in_net, in_yolo = key in KNOWN_KEYS["net"], key in KNOWN_KEYS["yolo"]
    if in_net and not in_yolo:
        return "net"
    if in_yolo and not in_net:
        return "yolo"
    if in_net and in_yolo:  # a per-layer key every layer reads (COMMON_LAYER_KEYS) that [net] also has
        return "net"
    others = sorted(t for t, keys in KNOWN_KEYS.items() if key in keys and t not in HYP_SECTIONS)
    if others:
        return _raise(f"{key!r} is a [{others[0]}] key, not a [net] or [yolo] hyperparameter")
    hint = suggest_key("net", key) or suggest_key("yolo", key)
    return _raise(f"unknown hyperparameter {key!r} (not a darknet [net] or [yolo] key)"
                  + (f"; did you mean {hint!r}?" if hint else ""))


def _raise(message: str) -> str:
    raise ValueError(message)


def _number(key: str, text: str) -> float:
    """The float of a value string; ValueError with the reason when it is not a (whole) number."""
    t = text.strip()
    if not NUM_RE.match(t):
        raise ValueError(f"{key}: {t[:40]!r} is not a number")
    v = float(t)
    if not math.isfinite(v):
        raise ValueError(f"{key}: {t[:40]!r} is not a finite number")
    if key in _INT_KEYS and not v.is_integer():
        raise ValueError(f"{key}: darknet reads an integer, got {t[:40]}")
    return v


def load_hyp(path: PathLike) -> Dict[str, float]:
    """Read a hyperparameter YAML (flat ``key: number`` with darknet key names).

    Args:
        path: the YAML file (str or PathLike).

    Returns:
        ``{key: value}`` in file order, values as float in darknet's units (``learning_rate`` per
        iteration, ``hue`` a fraction of the circle, ``burn_in`` iterations, ...). An empty file gives
        ``{}``.

    Raises:
        HypError: unreadable file, invalid YAML, not a flat mapping, an unknown / structural /
            other-section key, a repeated key, a non-numeric value (or a fraction for an integer key);
            one line ``path:line: ...``.
    """
    import yaml

    spath = os.fspath(path)
    _, node = compose_yaml(spath, "hyperparameter YAML", HypError)
    if node is None:
        return {}
    if not isinstance(node, yaml.MappingNode):
        raise HypError("a hyperparameter YAML must be a flat mapping of darknet keys to numbers "
                       "(learning_rate: 0.001)", spath, node.start_mark.line + 1)
    out: Dict[str, float] = {}
    for key_node, value_node in node.value:
        line = key_node.start_mark.line + 1
        if not isinstance(key_node, yaml.ScalarNode) or not str(key_node.value).strip():
            raise HypError("keys must be darknet key names", spath, line)
        key = str(key_node.value).strip()
        if key in out:
            raise HypError(f"{key!r} is given twice", spath, line)
        if not isinstance(value_node, yaml.ScalarNode) or value_node.tag == "tag:yaml.org,2002:null":
            raise HypError(f"{key}: the value must be a number", spath, value_node.start_mark.line + 1)
        if value_node.tag == "tag:yaml.org,2002:bool":
            raise HypError(f"{key}: the value must be a number (darknet switches are 0 or 1), got "
                           f"{value_node.value!r}", spath, value_node.start_mark.line + 1)
        try:
            section_of(key)
            out[key] = _number(key, str(value_node.value))
        except ValueError as e:
            raise HypError(str(e), spath, line) from None
    return out


def parse_overrides(items: Iterable[str], option: str = "--set") -> Dict[str, float]:
    """Parse repeated ``key=value`` command-line overrides (``--set hue=0.2 --set mosaic=1``).

    Args:
        items: the strings as given; a later one of the same key wins.
        option: the option name used in messages.

    Returns:
        ``{key: value}`` (floats, darknet units), in the order given.

    Raises:
        HypError: an item without ``=``, an unknown / structural / other-section key, a non-numeric
            value; one line naming the option and the item.
    """
    out: Dict[str, float] = {}
    for item in items:
        s = str(item)
        if "=" not in s:
            raise HypError(f"{option} {s[:60]!r}: expected key=value (e.g. {option} hue=0.1)")
        key, value = (t.strip() for t in s.split("=", 1))
        try:
            section_of(key)
            out[key] = _number(key, value)
        except ValueError as e:
            raise HypError(f"{option} {s[:60]!r}: {e}") from None
    return out


def _check(key: str, value: float) -> float:
    """``value`` as a float; ValueError when it is not finite or not whole for an integer key."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key}: {value!r} is not a number") from None
    if not math.isfinite(v):
        raise ValueError(f"{key}: {value!r} is not a finite number")
    if key in _INT_KEYS and not v.is_integer():
        raise ValueError(f"{key}: darknet reads an integer, got {v:g}")
    return v


def format_value(key: str, value: float) -> str:
    """A value as written in a cfg or hyp file: an int for an integer key (and for whole numbers),
    else up to 8 significant digits (``0.00261``, ``1e-05``)."""
    v = float(value)
    if key in _INT_KEYS or (v.is_integer() and abs(v) < 1e15):
        return str(int(round(v)))
    return "%.8g" % v


def apply_hyp(cfg_text: str, hyp: Mapping[str, float], path: Optional[str] = None) -> str:
    """Return the cfg text with the hyperparameters set, comments and layout kept.

    Args:
        cfg_text: the darknet cfg text.
        hyp: ``{key: value}`` (:func:`load_hyp`, :func:`parse_overrides`); ``[net]`` keys are set in
            ``[net]``, ``[yolo]`` keys in every ``[yolo]`` section; a key a section lacks is inserted
            after its header (:func:`yolo4.model.cfg.patch_cfg_text`).
        path: the cfg's name for messages.

    Returns:
        the new cfg text (validated: it parses and builds).

    Raises:
        HypError: a key that is not a hyperparameter, a ``[yolo]`` key for a cfg without ``[yolo]``.
        CfgError: the cfg is invalid, or a value is out of the range darknet accepts.
    """
    from ..model.cfg.text import parse_cfg_text, patch_cfg_text

    sections = parse_cfg_text(cfg_text, path=path, validate=False, warn=False)
    yolos = [i for i, s in enumerate(sections) if s.type == "yolo"]
    edits: List[Tuple[int, str, str]] = []
    for key, value in hyp.items():
        try:
            sec = section_of(key)
            text = format_value(key, _check(key, value))
        except ValueError as e:
            raise HypError(str(e), path) from None
        if sec == "net":
            edits.append((0, key, text))
        else:
            if not yolos:
                raise HypError(f"{key} is a [yolo] key but the cfg has no [yolo] section", path)
            edits.extend((i, key, text) for i in yolos)
    new = patch_cfg_text(cfg_text, sections, edits)
    parse_cfg_text(new, path=path, validate=True, warn=False)
    return new


def hyp_of(cfg_text: str, keys: Optional[Sequence[str]] = None, path: Optional[str] = None) -> Dict[str, float]:
    """The current values of hyperparameter keys in a cfg text.

    Args:
        cfg_text: the darknet cfg text.
        keys: which keys; default :data:`EVOLVABLE`'s.
        path: the cfg's name for messages.

    Returns:
        ``{key: value}`` in ``keys`` order: ``[net]`` keys from ``[net]``, ``[yolo]`` keys from the
        first ``[yolo]`` section; a key the cfg lacks gets darknet's default (``src/parser.c``:
        :data:`yolo4.model.cfg.specs.DEFAULT_NET`, the :class:`~yolo4.model.cfg.specs.YoloSpec`
        defaults; ``jitter`` 0.2, ``iou_normalizer`` 0.75, ``hue`` 0, ``saturation`` 1, ...). ``[yolo]``
        keys are left out for a cfg without ``[yolo]``.

    Raises:
        HypError: a key that is not a hyperparameter, or a cfg value that is not a number.
        CfgError: the cfg text does not parse.
    """
    from ..model.cfg.text import parse_cfg_text

    sections = parse_cfg_text(cfg_text, path=path, validate=False, warn=False)
    yolo = next((s for s in sections if s.type == "yolo"), None)
    out: Dict[str, float] = {}
    for key in (list(EVOLVABLE) if keys is None else keys):
        try:
            sec_type = section_of(key)
        except ValueError as e:
            raise HypError(str(e), path) from None
        sec = sections[0] if sec_type == "net" else yolo
        if sec is None:
            continue
        if key in sec.options:
            try:
                out[key] = _number(key, sec.options[key])
            except ValueError as e:
                raise HypError(str(e), sec.path if sec.path is not None else path,
                               sec.option_lines.get(key)) from None
        else:
            default = DEFAULT_NET.get(key) if sec_type == "net" else _YOLO_DEFAULTS.get(key)
            if isinstance(default, bool) or not isinstance(default, (int, float)):
                default = 0.0
            out[key] = float(default)
    return out


def save_hyp(path: PathLike, hyp: Mapping[str, float], header: Sequence[str] = ()) -> str:
    """Write a hyperparameter YAML atomically (flat ``key: value``, darknet names, a ``# [section]``
    comment per key); :func:`load_hyp` reads it back.

    Args:
        path: the YAML file (its folder is created).
        hyp: ``{key: value}`` (darknet units).
        header: comment lines written first (without ``#``).

    Returns:
        the path written, as str.
    """
    lines = ["# " + h for h in header]
    for key, value in hyp.items():
        try:
            sec = section_of(key)
        except ValueError as e:
            raise HypError(str(e), os.fspath(path)) from None
        lines.append(f"{key}: {format_value(key, value)}  # [{sec}]")
    atomic_write_text(path, "\n".join(lines) + "\n")
    return os.fspath(path)
