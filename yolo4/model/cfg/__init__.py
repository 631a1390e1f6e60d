"""Darknet ``.cfg`` files: parse, validate, shape-check, write, re-head (torch-free).

A cfg is an INI-like list of sections (``[net]``, ``[convolutional]``, ``[route]`` ...), each with
``key=value`` lines; sections repeat. The rules follow AlexeyAB darknet ``src/parser.c`` and
``src/option_list.c``. The package is split by concern:

- :mod:`~yolo4.model.cfg.text`: files and texts -> :class:`Section` lists (:func:`parse_cfg` takes a
  file path, :func:`parse_cfg_text` a text), :func:`write_cfg`, :func:`patch_cfg_text`,
  :func:`rehead_cfg_text`; unknown and repeated keys are :class:`yolo4.errors.CfgWarning`;
- :mod:`~yolo4.model.cfg.keys`: section names and the keys darknet reads per section type;
- :mod:`~yolo4.model.cfg.specs`: the typed layer descriptions (:class:`ConvSpec`, :class:`YoloSpec` ...);
- :mod:`~yolo4.model.cfg.builders`: :func:`build_specs`, one builder per section type;
- :mod:`~yolo4.model.cfg.shapes`: every layer's ``(channels, height, width)`` at an input size
  (:func:`infer_shapes`), the network's stride (:func:`network_stride`) and the check of another input
  size (:func:`check_input_hw`);
- :mod:`~yolo4.model.cfg.limits`: upper bounds on sizes, parameters and activations.

Every bad value of an option the model uses, and every cfg that parses but cannot run at its
``[net]`` size, raises :class:`yolo4.errors.CfgError` naming the file and the line, before any tensor
is allocated.
"""

from yolo4.model.cfg.builders import SPEC_BUILDERS, build_specs
from yolo4.model.cfg.keys import COMMON_LAYER_KEYS, KNOWN_KEYS, SECTION_ALIASES, suggest_key
from yolo4.model.cfg.limits import (
    MAX_ACTIVATION,
    MAX_ANCHORS,
    MAX_CHANNELS,
    MAX_CLASSES,
    MAX_INPUT_SIDE,
    MAX_KERNEL,
    MAX_PARAMS,
    MAX_STRIDE,
)
from yolo4.model.cfg.section import TEXT_NAME, Section
from yolo4.model.cfg.shapes import Shape, check_input_hw, infer_shapes, network_stride
from yolo4.model.cfg.specs import (
    ACTIVATIONS,
    DEFAULT_NET,
    SHORTCUT_WEIGHTS_NORMALIZATIONS,
    SHORTCUT_WEIGHTS_TYPES,
    AvgPoolSpec,
    ContrastiveSpec,
    ConvSpec,
    DropoutSpec,
    LayerSpec,
    LocalAvgPoolSpec,
    MaxPoolSpec,
    NetSpec,
    Reorg3dSpec,
    RouteSpec,
    SamSpec,
    ScaleChannelsSpec,
    ShortcutSpec,
    UpsampleSpec,
    YoloSpec,
)
from yolo4.model.cfg.text import (
    parse_cfg,
    parse_cfg_text,
    patch_cfg_text,
    read_cfg_text,
    rehead_cfg_text,
    rehead_edits,
    write_cfg,
)

__all__ = [
    "Section", "parse_cfg", "parse_cfg_text", "write_cfg", "read_cfg_text", "build_specs", "rehead_cfg_text",
    "rehead_edits", "patch_cfg_text", "NetSpec", "ConvSpec", "RouteSpec", "ShortcutSpec", "MaxPoolSpec",
    "UpsampleSpec", "YoloSpec", "DropoutSpec", "LayerSpec", "SamSpec", "ScaleChannelsSpec", "AvgPoolSpec",
    "LocalAvgPoolSpec", "Reorg3dSpec", "ContrastiveSpec", "SHORTCUT_WEIGHTS_TYPES", "SHORTCUT_WEIGHTS_NORMALIZATIONS", "ACTIVATIONS", "SECTION_ALIASES", "DEFAULT_NET",
    "KNOWN_KEYS", "COMMON_LAYER_KEYS", "suggest_key", "SPEC_BUILDERS", "TEXT_NAME", "Shape", "infer_shapes",
    "network_stride", "check_input_hw", "MAX_INPUT_SIDE", "MAX_CHANNELS", "MAX_KERNEL", "MAX_STRIDE",
    "MAX_CLASSES", "MAX_ANCHORS", "MAX_PARAMS", "MAX_ACTIVATION",
]
