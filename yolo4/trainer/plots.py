"""Training logs beside ``results.csv``: TensorBoard scalars and PNG plots.

* :class:`ScalarLogger`: one TensorBoard scalar per ``results.csv`` column and epoch under
  ``<run>/tensorboard`` (``torch.utils.tensorboard.SummaryWriter``), only when the ``tensorboard``
  package imports; otherwise it does nothing (one ``note:`` line).
* :func:`plot_results` -> ``results.png``: the mean loss components (box, obj, cls, total; per image,
  as :mod:`.loss` returns them), the learning rate, and mAP@.5 / mAP@[.5:.95] per epoch, read from
  ``results.csv``.
* :func:`plot_labels` -> ``labels.png``: boxes per class (with the class names) and the histograms of
  box width and height in original-image pixels, from the training split's records (no image read).
* :func:`plot_pr_curve` -> ``pr_curve.png``: the final validation's precision-recall curves at IoU 0.5,
  per class and their mean, when the metrics hold them (``metrics["pr_curve"]``, the output of
  :func:`yolo4.runtime.coco_eval.pr_curve_from_cocoeval`); else what :func:`yolo4.runtime.coco_eval.evaluate` returns: each
  class's precision and recall at its score threshold and its AP@.5.

matplotlib is optional: without it :func:`plot_run` logs one ``note:`` line and writes nothing. The
figures are drawn on matplotlib's Agg canvas (no display, no ``pyplot`` state) and written
atomically (:func:`yolo4.fileio.atomic_write_bytes`). A failing plot logs one ``warning:`` line; it
never fails the run.
"""

import csv
import io
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..fileio import atomic_write_bytes

PathLike = Union[str, "os.PathLike[str]"]

#: figure resolution, dots per inch (a figure of W x H inches is W*DPI x H*DPI pixels)
DPI = 100
#: ``results.png`` size in inches (width, height): 1200 x 600 pixels at :data:`DPI`
RESULTS_SIZE = (12.0, 6.0)
#: ``labels.png`` size in inches: 1500 x 500 pixels
LABELS_SIZE = (15.0, 5.0)
#: ``pr_curve.png`` size in inches: 900 x 700 pixels
PR_SIZE = (9.0, 7.0)
#: per-class curves are named in the legend up to this many classes (more: grey, unnamed)
MAX_LEGEND = 20
#: results.csv columns plotted in ``results.png``, in panel order, with their titles
RESULT_PANELS = (("box", "box loss"), ("obj", "objectness loss"), ("cls", "class loss"),
                 ("loss", "total loss"), ("lr", "learning rate"), (("map50", "map50_95"), "mAP"))

NO_MATPLOTLIB = "note: matplotlib is not installed; no PNG plots (pip install matplotlib)"
NO_TENSORBOARD = "note: tensorboard is not installed; no TensorBoard scalars (pip install tensorboard)"


# ---- TensorBoard --------------------------------------------------------------------------------

class ScalarLogger:
    """TensorBoard scalars of the per-epoch ``results.csv`` rows, or nothing when tensorboard is absent.

    Args:
        log_dir: the event files' folder (``<run>/tensorboard``).
        start_epoch: epochs already done (a resumed run): events of later epochs left by the
            interrupted run are dropped (``purge_step``).
        log: receives the one ``note:`` line when tensorboard is missing, and a ``warning:`` line if
            writing fails (after which the logger stops).
    """

    def __init__(self, log_dir: PathLike, start_epoch: int = 0, log: Callable[[str], Any] = print) -> None:
        self.log = log
        self.writer: Any = None
        try:
            from torch.utils.tensorboard import SummaryWriter  # ImportError without tensorboard
        except Exception:
            log(NO_TENSORBOARD)
            return
        try:
            self.writer = SummaryWriter(log_dir=os.fspath(log_dir),
                                        purge_step=int(start_epoch) + 1 if start_epoch else None)
        except Exception as e:  # noqa: BLE001 - logs never fail a run
            log(f"warning: no TensorBoard scalars: {type(e).__name__}: {e}")

    def add(self, row: Mapping[str, Any]) -> None:
        """Write one ``results.csv`` row (its numeric columns, step = ``row["epoch"]``, 1-based).

        Scalars: ``loss/box``, ``loss/obj``, ``loss/cls``, ``loss/total`` (mean per-image loss of the
        epoch), ``lr`` (last step's base rate), ``metrics/mAP50``, ``metrics/mAP50-95``,
        ``metrics/fitness`` (0..1; absent in epochs without validation), ``time_s`` (seconds).
        """
        if self.writer is None:
            return
        names = {"box": "loss/box", "obj": "loss/obj", "cls": "loss/cls", "loss": "loss/total", "lr": "lr",
                 "map50": "metrics/mAP50", "map50_95": "metrics/mAP50-95", "fitness": "metrics/fitness",
                 "time_s": "time_s"}
        try:
            step = int(row["epoch"])
            for key, tag in names.items():
                v = row.get(key)
                if v is not None:
                    self.writer.add_scalar(tag, float(v), step)
            self.writer.flush()
        except Exception as e:  # noqa: BLE001
            self.log(f"warning: TensorBoard scalars stopped: {type(e).__name__}: {e}")
            self.close()

    def close(self) -> None:
        """Flush and close the event file (idempotent)."""
        w, self.writer = self.writer, None
        if w is not None:
            try:
                w.close()
            except Exception:  # noqa: BLE001
                pass


# ---- data for the plots (no matplotlib) ------------------------------------------------------------

def read_results(csv_path: PathLike) -> Dict[str, np.ndarray]:
    """``results.csv`` as columns: ``{name: float64 [N]}``, NaN where a cell is empty (no validation
    that epoch). Units: losses per image, ``lr`` per step, mAP 0..1, ``time_s`` seconds."""
    with open(os.fspath(csv_path), newline="") as f:
        rows = list(csv.DictReader(f))
    cols: Dict[str, np.ndarray] = {}
    for key in (rows[0].keys() if rows else []):
        vals = []
        for r in rows:
            try:
                vals.append(float(r[key]) if r.get(key) not in (None, "") else np.nan)
            except ValueError:
                vals.append(np.nan)
        cols[key] = np.asarray(vals, np.float64)
    return cols


def label_stats(records: Sequence[Any], num_classes: int) -> Tuple[np.ndarray, np.ndarray]:
    """Boxes per class and box sizes of a split, from its records (``boxes`` x1,y1,x2,y2 in original
    pixels, ``classes`` ids).

    Returns:
        ``counts``: int64 ``[num_classes]``, boxes of each class id (ids outside 0..C-1 ignored);
        ``wh``: float64 ``[N, 2]``, width and height of every box in original-image pixels.
    """
    classes = [np.asarray(r.classes, np.int64).reshape(-1) for r in records]
    boxes = [np.asarray(r.boxes, np.float64).reshape(-1, 4) for r in records]
    ids = np.concatenate(classes + [np.zeros(0, np.int64)])
    ids = ids[(ids >= 0) & (ids < num_classes)]
    counts = np.bincount(ids, minlength=num_classes).astype(np.int64)
    b = np.concatenate(boxes + [np.zeros((0, 4), np.float64)])
    wh = np.stack([b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)
    return counts, wh


# ---- figures ------------------------------------------------------------------------------------

def _figure(size: Tuple[float, float]):
    """A matplotlib Figure on an Agg canvas (no pyplot, no display); ImportError without matplotlib."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: PathLike) -> Path:
    """Render ``fig`` to PNG at :data:`DPI` and write it atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return atomic_write_bytes(path, buf.getvalue())


def plot_results(csv_path: PathLike, path: Optional[PathLike] = None) -> Path:
    """``results.png`` (1200 x 600 px): one panel per loss component (box, obj, cls, total; mean
    per-image loss of each epoch), the learning rate, and mAP@.5 / mAP@[.5:.95] (0..1) against the
    epoch (1-based). Epochs without validation are gaps in the mAP panel.

    Args:
        csv_path: the run's ``results.csv``.
        path: the PNG; default ``results.png`` beside the csv.

    Returns:
        The PNG's path.
    """
    cols = read_results(csv_path)
    path = Path(csv_path).with_name("results.png") if path is None else Path(path)
    epochs = cols.get("epoch", np.zeros(0))
    fig = _figure(RESULTS_SIZE)
    axes = fig.subplots(2, 3).ravel()
    for ax, (keys, title) in zip(axes, RESULT_PANELS):
        for key in (keys if isinstance(keys, tuple) else (keys,)):
            y = cols.get(key)
            if y is None:
                continue
            ok = np.isfinite(y)
            label = {"map50": "mAP@.5", "map50_95": "mAP@[.5:.95]"}.get(key, key)
            ax.plot(epochs[ok], y[ok], marker="o", markersize=3, label=label)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if isinstance(keys, tuple):
            ax.set_ylim(0.0, 1.0)
            ax.legend(loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def plot_labels(records: Sequence[Any], names: Sequence[str], path: PathLike) -> Path:
    """``labels.png`` (1500 x 500 px) of a split's labels, from its records (no image is read): boxes
    per class (bars named by class), the histograms of box width and of box height (original-image
    pixels), and width against height (2-D histogram, pixels).

    Returns:
        The PNG's path.
    """
    counts, wh = label_stats(records, len(names))
    fig = _figure(LABELS_SIZE)
    ax1, ax2, ax3 = fig.subplots(1, 3)
    x = np.arange(len(names))
    ax1.bar(x, counts, color="tab:blue")
    ax1.set_xticks(x)
    ax1.set_xticklabels([str(n) for n in names], rotation=90, fontsize=8 if len(names) <= 30 else 5)
    ax1.set_title(f"boxes per class ({int(counts.sum())} boxes, {len(records)} images)")
    ax1.set_ylabel("boxes")
    if len(wh):
        top = float(max(wh.max(), 1.0))
        bins = np.linspace(0.0, top, 41)
        ax2.hist(wh[:, 0], bins=bins, alpha=0.6, label="width")
        ax2.hist(wh[:, 1], bins=bins, alpha=0.6, label="height")
        ax2.legend()
        ax3.hist2d(wh[:, 0], wh[:, 1], bins=[bins, bins], cmap="viridis", cmin=1)   # empty bins blank
    ax2.set_title("box width / height")
    ax2.set_xlabel("pixels (original image)")
    ax2.set_ylabel("boxes")
    ax3.set_title("box width vs height")
    ax3.set_xlabel("width (pixels)")
    ax3.set_ylabel("height (pixels)")
    fig.tight_layout()
    return _save(fig, path)


def plot_pr_curve(metrics: Mapping[str, Any], names: Sequence[str], path: PathLike,
                  title: str = "final validation") -> Path:
    """``pr_curve.png`` (900 x 700 px) of a validation's :func:`yolo4.runtime.coco_eval.evaluate` result.

    With ``metrics["pr_curve"]`` (:func:`yolo4.runtime.coco_eval.pr_curve_from_cocoeval`'s dict): precision (0..1) against
    recall (0..1) at IoU 0.5, one line per class with ground truth (named up to
    :data:`MAX_LEGEND` classes, with its AP@.5) and their mean (bold, mAP@.5). Without it (the
    evaluation does not return its ``COCOeval``): what the metrics hold, each class's precision and
    recall over the detections scoring above ``metrics["pr_score_threshold"]`` (one point per class,
    the overall one bold) and each class's AP@.5 in the legend; the title says it is not a curve.

    Returns:
        The PNG's path.
    """
    fig = _figure(PR_SIZE)
    ax = fig.subplots(1, 1)
    per_class = list(metrics.get("per_class") or [])
    curve = metrics.get("pr_curve")
    many = len(names) > MAX_LEGEND
    if curve is not None:
        r = np.asarray(curve["recall"], np.float64)
        p = np.asarray(curve["precision"], np.float64)
        ids = list(curve.get("class_ids", range(len(p))))
        for k, cid in enumerate(ids):
            if not np.isfinite(p[k]).any():
                continue
            name = str(names[cid]) if 0 <= cid < len(names) else str(cid)
            ap = float(np.nanmean(p[k]))
            ax.plot(r, p[k], linewidth=1, color="grey" if many else None,
                    label=None if many else f"{name} {ap:.3f}")
        has = np.isfinite(p).any(axis=1)
        if has.any():
            mean = np.nanmean(p[has], axis=0)
            ax.plot(r, mean, linewidth=3, color="tab:blue",
                    label=f"all classes {float(np.nanmean(mean)):.3f} mAP@{float(curve.get('iou', 0.5)):g}")
        ax.set_title(f"precision-recall at IoU {float(curve.get('iou', 0.5)):g} ({title})")
    else:
        thr = metrics.get("pr_score_threshold")
        for row in per_class:
            if row.get("recall", -1.0) < 0 or row.get("precision", -1.0) < 0:
                continue
            ax.scatter([row["recall"]], [row["precision"]], s=30, color="grey" if many else None,
                       label=None if many else f"{row['name']} AP@.5 {row['ap50']:.3f}")
        if metrics.get("recall", -1.0) >= 0 and metrics.get("precision", -1.0) >= 0:
            ax.scatter([metrics["recall"]], [metrics["precision"]], s=120, marker="*", color="tab:blue",
                       label=f"all classes mAP@.5 {float(metrics.get('map50', -1.0)):.3f}")
        if not ax.collections:
            ax.text(0.5, 0.5, f"no detection scored > {thr}: precision and recall undefined\n"
                    f"mAP@.5 {float(metrics.get('map50', -1.0)):.3f}", ha="center", va="center",
                    transform=ax.transAxes)
        ax.set_title(f"precision / recall at IoU 0.5, score > {thr} ({title}; points, not curves:\n"
                     f"the evaluation does not return its precision-recall curve)", fontsize=10)
    ax.set_xlim(0.0, 1.02)     # room for points at recall 1
    ax.set_ylim(0.0, 1.05)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_run(out_dir: PathLike, records: Sequence[Any], names: Sequence[str],
             metrics: Optional[Mapping[str, Any]] = None, log: Callable[[str], Any] = print) -> List[Path]:
    """The end-of-run plots in ``out_dir``: ``results.png`` (from its ``results.csv``), ``labels.png``
    (the training ``records``), ``pr_curve.png`` (``metrics`` of the final validation, when given
    and non-empty). Never raises: without matplotlib one ``note:`` line, a failing plot one
    ``warning:`` line.

    Returns:
        The PNGs written.
    """
    try:
        import matplotlib  # noqa: F401
    except Exception:
        log(NO_MATPLOTLIB)
        return []
    out = Path(out_dir)
    jobs: List[Tuple[str, Callable[[], Path]]] = []
    if (out / "results.csv").is_file():
        jobs.append(("results.png", lambda: plot_results(out / "results.csv", out / "results.png")))
    jobs.append(("labels.png", lambda: plot_labels(records, names, out / "labels.png")))
    if metrics and metrics.get("per_class") is not None:
        jobs.append(("pr_curve.png", lambda: plot_pr_curve(metrics, names, out / "pr_curve.png")))
    written = []
    for name, job in jobs:
        try:
            written.append(job())
        except Exception as e:  # noqa: BLE001 - a plot never fails the run
            log(f"warning: {name} not written: {type(e).__name__}: {e}")
    return written
