"""The layer order of the ``yolo4`` package: no import, eager or lazy (inside a function), goes from a
lower layer to a higher one, and no two units import each other, directly or round a circle.

A *unit* is a subpackage (``yolo4.runtime``, with everything under it) or a top-level module
(``yolo4.errors``, ``yolo4.pipeline``); the root ``yolo4/__init__.py`` is the unit ``yolo4``. Units
of one layer do not import each other, except on the ground floor, whose leaves (the errors, file
IO and the contracts every layer reads: ``ModelInfo``, ``NmsParams``, the engine metadata, the
ONNX facts) may use one another as long as no circle forms. A lower layer that needs something from
a higher one takes a callback (``calib.sensitivity.sensitivity_search(evaluate=...)``).

Every module under ``yolo4/`` is parsed with :mod:`ast`, so an import that only runs inside a
function counts as much as one at the top. Imports by computed name (``importlib.import_module``
of a registry entry) are not seen.
"""

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "yolo4"

#: the layers, lowest first; a unit may import units of lower layers (and itself) only
LAYERS: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    ("ground floor", ("yolo4", "yolo4.errors", "yolo4.fileio", "yolo4.model_info", "yolo4.nms_params",
                      "yolo4.engine_meta", "yolo4.onnx_facts", "yolo4.assets")),
    ("data", ("yolo4.data",)),
    ("model, plugins", ("yolo4.model", "yolo4.plugins")),
    ("runtime", ("yolo4.runtime",)),
    ("calib", ("yolo4.calib",)),
    ("convert, trainer", ("yolo4.convert", "yolo4.trainer")),
    ("pipeline, selftest", ("yolo4.pipeline", "yolo4.selftest")),
    ("cli", ("yolo4.cli",)),
)
GROUND = 0
RANK: Dict[str, int] = {unit: i for i, (_, units) in enumerate(LAYERS) for unit in units}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: Dict[str, Path] = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def unit_of(module: str) -> str:
    """``yolo4.runtime.backends.base`` -> ``yolo4.runtime``; ``yolo4`` -> ``yolo4``."""
    return ".".join(module.split(".")[:2])


def imports(module: str) -> Iterator[Tuple[int, str, str]]:
    """``(line, imported module, the import as written)`` for every yolo4 import of ``module``, at any
    depth of the file; ``from P import name`` names the module ``P.name`` when that is a module."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "yolo4" or alias.name.startswith("yolo4."):
                    yield node.lineno, alias.name, "import " + alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target != "yolo4" and not target.startswith("yolo4."):
                continue
            written = "from %s%s import %s" % ("." * node.level, node.module or "",
                                               ", ".join(a.name for a in node.names))
            for alias in node.names:
                sub = target + "." + alias.name
                yield node.lineno, sub if sub in MODULES else target, written


def _edges() -> List[Tuple[str, int, str, str, str]]:
    """``(file, line, importing module, imported module, the import as written)``, every unit-crossing import."""
    out = []
    for module in MODULES:
        for line, target, written in sorted(set(imports(module))):
            if unit_of(target) != unit_of(module):
                out.append((str(MODULES[module].relative_to(REPO)), line, module, target, written))
    return out


def _layer(unit: str) -> str:
    return LAYERS[RANK[unit]][0]


def test_every_unit_has_a_layer():
    missing = sorted({unit_of(m) for m in MODULES} - set(RANK))
    assert not missing, "add these to LAYERS in tests/test_layers.py: %s" % ", ".join(missing)
    gone = sorted(set(RANK) - {unit_of(m) for m in MODULES})
    assert not gone, "LAYERS names units that do not exist: %s" % ", ".join(gone)


def test_no_import_climbs_a_layer():
    bad = []
    for file, line, module, target, written in _edges():
        src, dst = RANK.get(unit_of(module)), RANK.get(unit_of(target))
        if src is None or dst is None:
            continue  # test_every_unit_has_a_layer reports it
        if dst > src or (dst == src and src != GROUND):
            how = "up" if dst > src else "sideways"
            bad.append("%s:%d: %s  (%s [%s] -> %s [%s]: %s)" % (
                file, line, written, unit_of(module), _layer(unit_of(module)), target,
                _layer(unit_of(target)), how))
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def _cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_between_units():
    graph: Dict[str, Set[str]] = {}
    where: Dict[Tuple[str, str], str] = {}
    for file, line, module, target, written in _edges():
        a, b = unit_of(module), unit_of(target)
        graph.setdefault(a, set()).add(b)
        where.setdefault((a, b), "%s:%d: %s" % (file, line, written))
    msgs = []
    for comp in _cycles(graph):
        members = set(comp)
        links = [where[(a, b)] for a in comp for b in sorted(graph[a] & members)]
        msgs.append("%s:\n  %s" % (" <-> ".join(comp), "\n  ".join(links)))
    assert not msgs, "import cycles between units:\n" + "\n".join(msgs)


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    """The parser itself: relative, absolute, function-level and ``from P import module`` forms."""
    found = {(target, written) for _, target, written in imports("yolo4.runtime.backends.tensorrt_backend")}
    assert ("yolo4.plugins", "from ...plugins import default_plugin_path, load_plugin_library") in found  # lazy
    assert any(t == "yolo4.runtime.backends.base" for t, _ in found)  # relative, same package
    eb = {target for _, target, _ in imports("yolo4.convert.engine_builder")}
    assert "yolo4.convert.trt_compat" in eb  # from . import trt_compat
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
