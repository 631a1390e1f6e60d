"""Darknet cfg text: read a file, parse text into sections, write sections, patch options in place, re-head.

Files and texts go through different functions, never guessed from the string: :func:`parse_cfg`
(and :func:`read_cfg_text`) take a file path, :func:`parse_cfg_text` takes the cfg text and the name to
use in messages.

Syntax (AlexeyAB darknet ``src/parser.c`` ``read_cfg``, ``src/option_list.c``):

- every whitespace character on a line is removed (``layers = -1, 23`` is ``layers=-1,23``);
- lines starting with ``#`` or ``;`` are comments (an inline ``#`` comment is also cut off);
- a UTF-8 byte-order mark at the start is ignored;
- a key repeated inside one section keeps its FIRST value (darknet's ``option_find`` walks the list
  from the front); the repeat is reported as a :class:`yolo4.errors.CfgWarning`;
- a key darknet does not read for that section type (:data:`~yolo4.model.cfg.keys.KNOWN_KEYS`) is kept
  in :attr:`Section.options`, ignored by the model, and reported as a CfgWarning (darknet prints
  ``Unused field``) with the closest known key suggested.

Warnings are one line starting with ``file:line:`` (``<cfg text>:line:`` for a text parsed without a
name), as the CLI prints them after ``warning:``.
"""

import os
import warnings
from typing import Dict, List, Optional, Sequence, Tuple, Union

from yolo4.errors import CfgError, CfgWarning
from yolo4.model.cfg.builders import build_specs
from yolo4.model.cfg.keys import KNOWN_KEYS, SECTION_ALIASES, suggest_key
from yolo4.model.cfg.section import TEXT_NAME, Section, location
from yolo4.model.cfg.specs import LayerSpec, YoloSpec

__all__ = ["read_cfg_text", "parse_cfg", "parse_cfg_text", "write_cfg", "patch_cfg_text", "rehead_cfg_text",
           "rehead_edits"]

PathLike = Union[str, "os.PathLike[str]"]
_BOM = "\ufeff"


def read_cfg_text(path: PathLike) -> Tuple[str, str]:
    """Read a cfg FILE: ``(text, path as str)``.

    Args:
        path: the cfg file (str or PathLike). A cfg text is never accepted here: use
            :func:`parse_cfg_text`.

    Raises:
        CfgError: an empty path, a "path" holding a line break (cfg text passed as a path), or a file
            that cannot be read (one line naming the path).
        TypeError: ``path`` is not a str or PathLike.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"cfg path must be a str or os.PathLike, got {type(path).__name__}")
    p = os.fspath(path)
    if not isinstance(p, str):
        raise TypeError(f"cfg path must be a str path, got {type(p).__name__}")
    if p == "":
        raise CfgError("no cfg file given (the path is empty)")
    if "\n" in p or "\r" in p:
        raise CfgError(f"cfg file name {p[:30]!r}... holds a line break: cfg text is given with parse_cfg_text() "
                       "or Darknet(text=...), not as a path")
    try:
        with open(p, encoding="utf-8", errors="replace") as f:
            return f.read(), p
    except OSError as e:
        raise CfgError("cannot read cfg file (%s)" % (e.strerror or e), p) from None


def parse_cfg(path: PathLike, validate: bool = True, warn: bool = True) -> List[Section]:
    """Parse a darknet cfg FILE (darknet ``src/parser.c`` ``read_cfg``); see :func:`parse_cfg_text`.

    Args:
        path: the cfg file (str or PathLike); errors and warnings name it.
        validate: also :func:`~yolo4.model.cfg.build_specs` (every option the model uses, the shapes
            at the ``[net]`` size).
        warn: report unknown and repeated keys as :class:`yolo4.errors.CfgWarning`.

    Raises:
        CfgError: unreadable or empty file, and everything :func:`parse_cfg_text` raises.
    """
    text, p = read_cfg_text(path)
    return parse_cfg_text(text, path=p, validate=validate, warn=warn)


def _warn(message: str) -> None:
    warnings.warn(message, CfgWarning, stacklevel=3)


def parse_cfg_text(text: str, path: Optional[str] = None, validate: bool = True,
                   warn: bool = True) -> List[Section]:
    """Parse darknet cfg TEXT into sections.

    Args:
        text: the cfg text itself (a str; never read as a file name).
        path: the name used in errors and warnings (the file or checkpoint it came from); None:
            ``<cfg text>``.
        validate: also :func:`~yolo4.model.cfg.build_specs`, so a bad ``activation=``, a non-integer
            ``filters=``, an out-of-range ``[route]`` index, a ``[route]`` of different sizes raise here.
        warn: report unknown keys (per section type, the keys darknet reads) and repeated keys as
            one-line :class:`yolo4.errors.CfgWarning` ``file:line: ...``; False when re-parsing a
            text whose warnings were already given.

    Returns:
        list of :class:`Section`, file order, ``[net]`` first.

    Raises:
        CfgError: an empty text (or only comments), unknown section, a line outside a section or
            without ``=``, a first section that is not ``[net]``, and (``validate``) any bad option
            value or shape; one line naming the file and the 1-based line.
        TypeError: ``text`` is not a str.
    """
    if not isinstance(text, str):
        raise TypeError(f"cfg text must be a str, got {type(text).__name__}")
    where = path if path is not None else TEXT_NAME
    if text.startswith(_BOM):
        text = text[1:]
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
                raise CfgError(f"bad section header {raw.strip()[:60]!r}", where, lineno)
            name = line[1:-1].lower()
            canon = SECTION_ALIASES.get(name)
            if canon is None:
                raise CfgError("unsupported section [{}] (supported: {})".format(
                    name[:40], ", ".join(sorted(set(SECTION_ALIASES.values())))), where, lineno)
            sections.append(Section(canon, {}, lineno, {}, path))
            continue
        if "=" not in line:
            raise CfgError(f"expected key=value, got {raw.strip()[:60]!r}", where, lineno)
        if not sections:
            raise CfgError(f"option {raw.strip()[:60]!r} before the first [section]", where, lineno)
        key, value = line.split("=", 1)
        if not key:
            raise CfgError(f"empty key in {raw.strip()[:60]!r}", where, lineno)
        sec = sections[-1]
        if key in sec.options:  # darknet: first occurrence wins
            if warn:
                first = sec.option_lines[key]
                _warn(f"{location(path, lineno)}: [{sec.type}] duplicate key {key!r}: darknet keeps the first "
                      f"value ({key}={sec.options[key][:40]} at line {first}), this {key}={value[:40]} is ignored")
            continue
        sec.options[key] = value
        sec.option_lines[key] = lineno
        if warn and key not in KNOWN_KEYS.get(sec.type, ()):
            hint = suggest_key(sec.type, key)
            _warn(f"{location(path, lineno)}: [{sec.type}] unknown key {key[:40]!r} is ignored (darknet: Unused "
                  "field)" + (f"; did you mean {hint!r}?" if hint else ""))
    if not sections:
        raise CfgError("empty cfg: no [net] section (the file or text holds no sections)", where)
    if sections[0].type != "net":
        raise CfgError(f"the first section must be [net], got [{sections[0].type}]", where, sections[0].line)
    for s in sections[1:]:
        if s.type == "net":
            raise CfgError("[net] may only be the first section", where, s.line)
    if validate:
        build_specs(sections)
    return sections


def write_cfg(sections: Sequence[Section]) -> str:
    """Render sections as cfg text (``[type]`` then ``key=value`` lines, blank line between).

    Comments and spacing of the original file are not kept; :func:`parse_cfg_text` of the result
    gives the same types and options.
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


def rehead_edits(specs: Sequence[LayerSpec], num_classes: int) -> Tuple[List[Tuple[int, str, str]], List[int]]:
    """The :func:`patch_cfg_text` edits that re-head a cfg for ``num_classes`` classes, and the darknet
    layer indices of the re-headed convolutions (see :func:`rehead_cfg_text`)."""
    edits: List[Tuple[int, str, str]] = []
    heads: List[int] = []
    for sp in specs:
        if isinstance(sp, YoloSpec):
            conv = specs[sp.index - 1]
            edits.append((sp.index + 1, "classes", str(int(num_classes))))
            edits.append((conv.index + 1, "filters", str((int(num_classes) + 5) * len(sp.mask))))
            heads.append(conv.index)
    return edits, heads


def rehead_cfg_text(text: str, num_classes: int, path: Optional[str] = None) -> Tuple[str, List[int]]:
    """Rewrite a cfg TEXT for ``num_classes`` classes, keeping comments and layout.

    Every ``[yolo]`` gets ``classes=num_classes`` and the ``[convolutional]`` right before it
    ``filters=(num_classes+5)*len(mask)`` (the darknet "how to train on custom objects" recipe).

    Args:
        text: the cfg text; path: its name for messages.

    Returns:
        ``(new text, darknet layer indices of the re-headed convolutions)``.

    Raises:
        CfgError: the cfg is invalid (before or after), or num_classes < 1.
    """
    if int(num_classes) < 1:
        raise CfgError(f"num_classes must be >= 1, got {num_classes}", path)
    sections = parse_cfg_text(text, path=path, validate=False)
    _, specs = build_specs(sections)
    edits, heads = rehead_edits(specs, num_classes)
    new = patch_cfg_text(text, sections, edits)
    parse_cfg_text(new, path=path, validate=True, warn=False)
    return new, heads
