"""Hyperparameter evolution (``yolo4 train --evolve N``): ultralytics' genetic search on darknet keys.

Generation 0 trains the base hyperparameters unchanged; every later generation picks a parent among
the best ``parents`` generations so far (chance weighted by fitness; ``parent="weighted"``: their
fitness-weighted mean), mutates it (:func:`mutate`: each key with probability 0.8, sigma 0.2, as
ultralytics yolov5 ``train.py``), clips to :data:`yolo4.trainer.hyp.EVOLVABLE`'s bounds and trains.
Fitness is :func:`yolo4.trainer.validate.fitness`, ``0.1 * mAP@.5 + 0.9 * mAP@[.5:.95]``.

Files in ``out_dir``:

- ``evolve.csv``: one row per generation, columns ``generation, fitness, map50, map50_95`` then every
  hyperparameter (darknet key names and units); a failed generation has fitness 0 and empty mAP
  cells. Rewritten atomically after every generation.
- ``hyp_evolved.yaml``: the best hyperparameters so far (:func:`yolo4.trainer.hyp.save_hyp` format,
  a comment header with its generation and metrics), usable as ``yolo4 train --hyp``.
- ``gen_0000/``, ``gen_0001/``, ...: the folder handed to ``run_fn`` per generation.

Resumable: with ``evolve.csv`` present, the search continues at the next generation; generation
``g``'s random draws come from ``numpy.random.default_rng([seed, g])``, so an interrupted and
resumed search makes the same choices as one run straight through.
"""

import csv
import io
import math
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from ..errors import Yolo4Error
from ..fileio import atomic_write_text
from .hyp import EVOLVABLE, Gene, format_value, save_hyp
from .validate import fitness as _fitness

__all__ = ["MUTATION_PROB", "SIGMA", "CSV_NAME", "YAML_NAME", "mutate", "select_parent", "read_table",
           "evolve"]

#: probability that a key is mutated in a generation (ultralytics ``mp``)
MUTATION_PROB = 0.8
#: mutation sigma (ultralytics ``s``)
SIGMA = 0.2
CSV_NAME = "evolve.csv"
YAML_NAME = "hyp_evolved.yaml"
_FIXED = ("generation", "fitness", "map50", "map50_95")

PathLike = Union[str, "os.PathLike[str]"]
Row = Dict[str, Any]


def _round_sig(v: float, digits: int = 5) -> float:
    """``v`` rounded to ``digits`` significant digits (ultralytics rounds to 5 decimals, which would
    zero a learning rate of 1e-6)."""
    if v == 0 or not math.isfinite(v):
        return v
    return float("%.*g" % (digits, v))


def _clip(key: str, v: float, gene: Optional[Gene]) -> float:
    if gene is None:
        return v
    v = min(max(v, gene.lo), gene.hi)
    return float(round(v)) if gene.integer else _round_sig(v)


def mutate(hyp: Mapping[str, float], rng: np.random.Generator, genes: Optional[Mapping[str, Gene]] = None,
           prob: float = MUTATION_PROB, sigma: float = SIGMA) -> Dict[str, float]:
    """A mutated copy of ``hyp`` (ultralytics yolov5 ``train.py`` evolve rule, per key's :class:`Gene`).

    Factor ``v = clip(gain * [u < prob] * N(0, 1) * U(0, 1) * sigma + 1, 0.3, 3.0)`` per key; ``mul`` keys
    become ``x * v``, ``add`` keys ``x + (v - 1) * (hi - lo)``, ``flag`` keys (0/1) flip with
    probability ``sigma * gain`` when selected. Redrawn until at least one key changes. Keys without a
    gene (or gain 0) are copied. Values are clipped to the bounds, integers rounded, the rest kept to 5
    significant digits.

    Args:
        hyp: ``{key: value}`` in darknet units.
        rng: the random source (draws a fixed number of values per attempt, so a seed reproduces).
        genes: default :data:`yolo4.trainer.hyp.EVOLVABLE`.
        prob, sigma: mutation probability and sigma.

    Returns:
        the new ``{key: value}`` (same keys, same order).
    """
    genes = EVOLVABLE if genes is None else genes
    keys = [k for k in hyp if k in genes and genes[k].gain > 0]
    out = {k: float(v) for k, v in hyp.items()}
    if not keys:
        return out
    gain = np.array([genes[k].gain for k in keys])
    for _ in range(1000):
        sel = rng.random(len(keys)) < prob
        normal = rng.standard_normal(len(keys))
        scale = rng.random()
        flips = rng.random(len(keys))
        v = (gain * sel * normal * scale * sigma + 1.0).clip(0.3, 3.0)
        new = dict(out)
        for i, k in enumerate(keys):
            g, x = genes[k], out[k]
            if g.kind == "flag":
                y = (1.0 - round(x)) if sel[i] and flips[i] < sigma * g.gain else x
            elif g.kind == "mul":
                y = x * v[i]
            else:
                y = x + (v[i] - 1.0) * (g.hi - g.lo)
            new[k] = _clip(k, y, g)
        if any(new[k] != _clip(k, out[k], genes[k]) for k in keys):
            return new
    return new


def select_parent(rows: Sequence[Row], keys: Sequence[str], rng: np.random.Generator, parents: int = 5,
                  parent: str = "single", genes: Optional[Mapping[str, Gene]] = None) -> Dict[str, float]:
    """The hyperparameters to mutate: from the ``parents`` best rows (by fitness), weights
    ``fitness - min + 1e-6`` (ultralytics): ``single`` picks one row by weight, ``weighted`` averages
    them by weight (integer keys rounded).

    Args:
        rows: the table so far (:func:`read_table`), at least one row.
        keys: the hyperparameter columns.
        rng: the random source.
        parents: how many of the best rows take part (>= 1).
        parent: ``single`` or ``weighted``.
    """
    genes = EVOLVABLE if genes is None else genes
    best = sorted(rows, key=lambda r: -float(r["fitness"]))[:max(1, int(parents))]
    fit = np.array([float(r["fitness"]) for r in best])
    w = fit - fit.min() + 1e-6
    if parent == "single" or len(best) == 1:
        i = int(rng.choice(len(best), p=w / w.sum()))
        return {k: float(best[i][k]) for k in keys}
    if parent != "weighted":
        raise ValueError(f"parent must be 'single' or 'weighted', got {parent!r}")
    out = {}
    for k in keys:
        v = float(sum(wi * float(r[k]) for wi, r in zip(w, best)) / w.sum())
        out[k] = _clip(k, v, genes.get(k)) if k in genes else v
    return out


def _cell(v: Any) -> str:
    return "" if v is None else (str(v) if isinstance(v, (int, str)) else "%.8g" % float(v))


def _write_table(path: Path, rows: Sequence[Row], keys: Sequence[str]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(list(_FIXED) + list(keys))
    for r in rows:
        w.writerow([r["generation"], _cell(r["fitness"]), _cell(r["map50"]), _cell(r["map50_95"])]
                   + [format_value(k, r[k]) for k in keys])
    atomic_write_text(path, buf.getvalue())


def read_table(path: PathLike) -> List[Row]:
    """Read ``evolve.csv``: rows as dicts (``generation`` int, ``fitness`` float, ``map50`` /
    ``map50_95`` float or None for a failed generation, each hyperparameter float).

    Raises:
        Yolo4Error: unreadable file, a header without the fixed columns, a bad cell (names the line).
    """
    p = os.fspath(path)
    try:
        with open(p, encoding="utf-8", newline="") as f:
            lines = list(csv.reader(f))
    except OSError as e:
        raise Yolo4Error(f"cannot read the evolution table ({e.strerror or e})", p) from None
    if not lines:
        return []
    header = lines[0]
    if tuple(header[:4]) != _FIXED:
        raise Yolo4Error("not an evolution table: the header must start with " + ",".join(_FIXED), p, 1)
    rows: List[Row] = []
    for n, cells in enumerate(lines[1:], start=2):
        if not cells:
            continue
        if len(cells) != len(header):
            raise Yolo4Error(f"{len(cells)} cells, the header has {len(header)}", p, n)
        try:
            row: Row = {"generation": int(cells[0]), "fitness": float(cells[1])}
            for k, c in zip(header[2:4], cells[2:4]):
                row[k] = float(c) if c.strip() else None
            for k, c in zip(header[4:], cells[4:]):
                row[k] = float(c)
        except ValueError:
            raise Yolo4Error("a cell is not a number", p, n) from None
        rows.append(row)
    return rows


def _header(path: PathLike) -> List[str]:
    with open(os.fspath(path), encoding="utf-8", newline="") as f:
        return next(csv.reader(f), [])


def evolve(base_hyp: Mapping[str, float], generations: int, run_fn: Callable[[Dict[str, float], Path], Mapping],
           out_dir: PathLike, seed: int = 0, log: Callable[[str], Any] = print, parents: int = 5,
           parent: str = "single", genes: Optional[Mapping[str, Gene]] = None) -> Dict[str, Any]:
    """Genetic hyperparameter search (module docstring); resumes from ``out_dir/evolve.csv``.

    Args:
        base_hyp: the starting ``{key: value}`` (darknet units), e.g. :func:`.hyp.hyp_of` of the cfg
            updated with a ``--hyp`` file and ``--set`` options. Every key is a column; keys in
            ``genes`` are mutated, the others stay fixed.
        generations: total number of generations (trainings) of the search, >= 1; a resumed search
            runs only the missing ones.
        run_fn: ``run_fn(hyp, gen_dir) -> {"map50": float, "map50_95": float, ...}`` (both 0..1): one
            training run with these hyperparameters in the folder ``gen_dir`` (created). An exception
            (a non-finite loss, ...) or missing / non-finite mAPs make the generation count as failed
            (fitness 0, one warning line); KeyboardInterrupt stops the search.
        out_dir: folder for ``evolve.csv``, ``hyp_evolved.yaml`` and the ``gen_NNNN`` folders.
        seed: seeds the draws (generation ``g`` uses ``default_rng([seed, g])``).
        log: receives one line per generation (and ``warning: ...`` lines).
        parents: how many of the best generations can be parents.
        parent: ``single`` (one parent drawn by fitness) or ``weighted`` (fitness-weighted mean).
        genes: the mutation table, default :data:`yolo4.trainer.hyp.EVOLVABLE`.

    Returns:
        dict: ``hyp`` (the best ``{key: value}``), ``fitness``, ``map50``, ``map50_95``,
        ``generation`` (of the best), ``generations`` (rows in the table), ``csv``, ``yaml`` (paths, str).

    Raises:
        Yolo4Error: ``generations < 1``, an empty ``base_hyp``, an ``evolve.csv`` that is unreadable or
            has other hyperparameter columns than ``base_hyp``.
    """
    genes = EVOLVABLE if genes is None else genes
    if int(generations) < 1:
        raise Yolo4Error(f"--evolve needs at least 1 generation, got {generations}")
    if parent not in ("single", "weighted"):
        raise Yolo4Error(f"parent must be 'single' or 'weighted', got {parent!r}")
    keys = list(base_hyp)
    if not keys:
        raise Yolo4Error("no hyperparameters to evolve")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, yaml_path = out / CSV_NAME, out / YAML_NAME
    rows: List[Row] = []
    if csv_path.is_file():
        header = _header(csv_path)
        if header and header[4:] != keys:
            raise Yolo4Error("the evolution table has other hyperparameter columns than this search ("
                             + ",".join(header[4:])[:120] + "); use another output folder", csv_path, 1)
        rows = read_table(csv_path)
        if rows:
            log(f"evolve: resuming from {csv_path} ({len(rows)} generations done)")
    start = (max(r["generation"] for r in rows) + 1) if rows else 0
    base = {k: float(v) for k, v in base_hyp.items()}

    for g in range(start, int(generations)):
        rng = np.random.default_rng([int(seed), g])
        if not rows:
            hyp = dict(base)
        else:
            hyp = mutate(select_parent(rows, keys, rng, parents, parent, genes), rng, genes)
        hyp = {k: float(format_value(k, v)) for k, v in hyp.items()}  # as written in the table
        gen_dir = out / ("gen_%04d" % g)
        gen_dir.mkdir(parents=True, exist_ok=True)
        m50: Optional[float] = None
        m5095: Optional[float] = None
        try:
            metrics = run_fn(dict(hyp), gen_dir) or {}
            m50 = float(metrics["map50"])
            m5095 = float(metrics["map50_95"])
            if not (math.isfinite(m50) and math.isfinite(m5095)):
                raise ValueError(f"non-finite mAP (map50={m50}, map50_95={m5095})")
            fit = _fitness({"map50": m50, "map50_95": m5095})
        except Exception as e:  # noqa: BLE001 - a failed training is one bad individual, not the end
            reason = " ".join(str(e).split())[:200] or type(e).__name__
            log(f"warning: evolve generation {g} failed ({type(e).__name__}: {reason}); recorded with fitness 0")
            m50, m5095, fit = None, None, 0.0
        # the row as evolve.csv stores it, so a resumed search sees exactly what a straight one does
        row: Row = {"generation": g, "fitness": float(_cell(fit)),
                    "map50": None if m50 is None else float(_cell(m50)),
                    "map50_95": None if m5095 is None else float(_cell(m5095))}
        row.update(hyp)
        rows.append(row)
        _write_table(csv_path, rows, keys)
        best = max(rows, key=lambda r: float(r["fitness"]))
        _write_best(yaml_path, best, keys, len(rows))
        log(f"evolve {g + 1}/{generations}: fitness {fit:.4f} (best {float(best['fitness']):.4f} at generation "
            f"{best['generation']})")

    if not rows:  # generations <= start is impossible here (start == 0 without rows)
        raise Yolo4Error("the evolution ran no generation")
    best = max(rows, key=lambda r: float(r["fitness"]))
    if not yaml_path.is_file():
        _write_best(yaml_path, best, keys, len(rows))
    return {"hyp": {k: float(best[k]) for k in keys}, "fitness": float(best["fitness"]),
            "map50": best["map50"], "map50_95": best["map50_95"], "generation": int(best["generation"]),
            "generations": len(rows), "csv": str(csv_path), "yaml": str(yaml_path)}


def _write_best(path: Path, best: Row, keys: Sequence[str], n: int) -> None:
    m = ", ".join("%s %s" % (k, "-" if best[k] is None else "%.4f" % best[k]) for k in ("map50", "map50_95"))
    save_hyp(path, {k: best[k] for k in keys},
             header=[f"yolo4 train --evolve: best of {n} generations: generation {best['generation']}, "
                     f"fitness {float(best['fitness']):.4f} (0.1*mAP@.5 + 0.9*mAP@[.5:.95]), {m}",
                     "darknet [net] / [yolo] keys; use with yolo4 train --hyp"])
