"""One ``[type]`` block of a darknet cfg, with darknet's typed option getters (``src/option_list.c``).

The getters are strict where darknet's ``atoi``/``atof`` are lenient (``filters=8.5`` or
``size=three`` are errors here, not 8 and 0) and check each value against the bounds the caller
gives, so every bad value raises :class:`yolo4.errors.CfgError` at the option's line.
"""

import math
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from yolo4.errors import CfgError

__all__ = ["Section", "TEXT_NAME", "NUM_RE", "INT_RE", "location"]

#: file name used in messages for a cfg parsed from text without a ``path`` (as Python's ``<string>``)
TEXT_NAME = "<cfg text>"

NUM_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
INT_RE = re.compile(r"^[+-]?\d+$")


def location(path: Optional[str], line: Optional[int]) -> str:
    """``path:line`` (or ``path``) as error and warning messages start; :data:`TEXT_NAME` for no path."""
    where = path if path is not None else TEXT_NAME
    return where if line is None else f"{where}:{line}"


@dataclass
class Section:
    """One ``[type]`` block of a cfg.

    Attributes:
        type: canonical section name (``net``, ``convolutional``, ``route``, ``shortcut``, ``maxpool``,
            ``upsample``, ``yolo``, ``dropout``); aliases (``conv``, ``max``, ``network``) are mapped.
        options: ``{key: raw value}`` with all whitespace removed, first occurrence of a key wins
            (darknet ``option_find`` walks the list from the front).
        line: 1-based line of the ``[type]`` header.
        option_lines: ``{key: 1-based line}`` of each kept option.
        path: the cfg file (str), or the name given for a cfg text (None: ``<cfg text>``); used in
            error messages.
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
        return CfgError(f"[{self.type}] {message}", self.path if self.path is not None else TEXT_NAME, line)

    def where(self, key: Optional[str] = None) -> str:
        """``path:line`` of ``key`` (or of the header)."""
        return location(self.path, self.option_lines.get(key, self.line) if key is not None else self.line)

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

    def _bounded(self, key: str, v, lo, hi):
        if lo is not None and v < lo:
            raise self.error(f"{key}={self.options[key]} is out of range (must be >= {lo})", key)
        if hi is not None and v > hi:
            raise self.error(f"{key}={self.options[key]} is out of range (must be <= {hi})", key)
        return v

    def get_int(self, key: str, default: Optional[int] = None, lo: Optional[int] = None,
                hi: Optional[int] = None) -> int:
        """Integer value (an integer literal, unlike darknet's ``atoi``), checked against ``lo..hi``
        when the key is present (the default is not checked). CfgError otherwise."""
        if key not in self.options:
            if default is None:
                raise self.error(f"missing required option {key!r}")
            return default
        v = self.options[key]
        if not INT_RE.match(v):
            raise self.error(f"{key}={v} is not an integer", key)
        return self._bounded(key, int(v), lo, hi)

    def get_float(self, key: str, default: Optional[float] = None, lo: Optional[float] = None,
                  hi: Optional[float] = None) -> float:
        """Finite float value (``.7``, ``1e-3`` accepted), checked against ``lo..hi`` when present."""
        if key not in self.options:
            if default is None:
                raise self.error(f"missing required option {key!r}")
            return default
        v = self.options[key]
        if not NUM_RE.match(v):
            raise self.error(f"{key}={v} is not a number", key)
        f = float(v)
        if not math.isfinite(f):
            raise self.error(f"{key}={v} is not a finite number", key)
        return self._bounded(key, f, lo, hi)

    def get_ints(self, key: str, default: Optional[Sequence[int]] = None) -> List[int]:
        """Comma-separated integers (empty items skipped, as darknet). CfgError otherwise."""
        if key not in self.options:
            if default is None:
                raise self.error(f"missing required option {key!r}")
            return list(default)
        items = [s for s in self.options[key].split(",") if s != ""]
        if not items or not all(INT_RE.match(s) for s in items):
            raise self.error(f"{key}={self.options[key]} is not a list of integers", key)
        return [int(s) for s in items]

    def get_floats(self, key: str, default: Optional[Sequence[float]] = None) -> List[float]:
        """Comma-separated finite numbers (empty items skipped, as darknet). CfgError otherwise."""
        if key not in self.options:
            if default is None:
                raise self.error(f"missing required option {key!r}")
            return list(default)
        items = [s for s in self.options[key].split(",") if s != ""]
        if not items or not all(NUM_RE.match(s) and math.isfinite(float(s)) for s in items):
            raise self.error(f"{key}={self.options[key]} is not a list of finite numbers", key)
        return [float(s) for s in items]

    def get_choice(self, key: str, choices: Sequence[str], default: str) -> str:
        v = self.options.get(key, default)
        if v not in choices:
            raise self.error("{}={} is not one of {}".format(key, v, ", ".join(choices)), key)
        return v
