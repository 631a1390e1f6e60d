"""``yolo4`` command line: one verb per job (train, export, build-engine, build-plugin, infer, eval,
benchmark, selftest).

Thin by design: parses options, calls :mod:`yolo4.pipeline` / the library, and turns user errors
(:class:`yolo4.errors.Yolo4Error`) into a one-line ``error: ...`` on stderr with exit status 2.
Usage errors (unknown command or option, a value out of range, a missing argument) are typer's:
a usage message and exit status 2. ``--verbose`` shows the traceback of a user error instead.
Warnings about the input (:class:`yolo4.errors.Yolo4Warning`) print as one ``warning: ...`` line.
Ctrl-C ends with ``aborted`` and exit status 130; finished outputs are never left half-written.
"""

import functools
import inspect
import json
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

import typer

from . import __version__
from .calib.defaults import (
    DEFAULT_IMPLICIT_METHOD,
    DEFAULT_LAYOUT,
    DEFAULT_METHOD,
    DEFAULT_NUM_IMAGES,
    DEFAULT_PERCENTILE,
    DEFAULT_SEED,
)
from .errors import Yolo4Error, Yolo4Warning

if TYPE_CHECKING:
    from .pipeline import ModelSource

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="YOLOv4 from training to deployment: darknet cfg/weights -> PyTorch -> ONNX -> (TensorRT). "
    "Without a GPU every command runs on ONNX Runtime on the CPU. Named models (yolov4, yolov4-tiny, "
    "yolov4-csp, yolov4x-mish, yolov3, ...) are fetched with a sha256 check into $YOLO4_CACHE_DIR "
    "(default ~/.cache/yolo4); $YOLO4_ASSET_MIRROR names a local folder that stands in for the network.",
)

_state = {"verbose": False}

CFG_HELP = "darknet .cfg path or known model name (e.g. yolov4-tiny)."
WEIGHTS_HELP = "darknet .weights path or known model name (same names as --cfg)."
CKPT_HELP = "checkpoint .pt written by `yolo4 train` (holds cfg, names, weights and its training size)."
ONNX_HELP = "ONNX model written by `yolo4 export` (runs on ONNX Runtime): FP32, FP16 or Q/DQ INT8."
ENGINE_HELP = ("TensorRT engine written by `yolo4 build-engine` (with its .json metadata beside it); "
               "runs on --backend tensorrt, on an NVIDIA GPU.")
BACKEND_HELP = ("inference backend: onnxruntime (CPU, or CUDA when available) or torch [default: "
                "onnxruntime; a cfg or checkpoint is exported to ONNX once and cached].")
CONTEXTS_HELP = ("TensorRT engines: execution contexts to pipeline batches over (the next batch uploads "
                 "while one runs) [default: 2 where the engine has the optimization profiles for it, "
                 "see build-engine --contexts].")
CUDA_GRAPH_HELP = ("TensorRT engines: capture each context's enqueue in a CUDA graph after one warm-up "
                   "and relaunch it (fewer kernel launches; fixed batch size works best).")
PREPROCESS_HELP = ("where images are resized and normalised: cpu (OpenCV) or gpu (one CUDA kernel into "
                   "the engine's input; TensorRT engines, needs `yolo4 build-plugin`).")
IMG_HELP = ("network input size in pixels, square, multiple of 32 [default: a checkpoint's training "
            "size, else the cfg's [net] width/height].")
NAMES_HELP = ("class names: a file with one name per line, or coco / voc (built in) [default: the "
              "checkpoint's, or COCO's for an 80-class model].")
CALIB_DATA_HELP = ("calibration images: a folder, a glob, a .txt list, or a dataset (YAML, COCO json, VOC "
                   "folder, coco128, ...; its train split, class-balanced when labelled).")
CALIB_IMAGES_HELP = "number of calibration images (seeded selection; fewer than 200 warns)."
EXIST_OK_HELP = "write into OUTPUT_DIR even if it exists [default: a new numbered folder, e.g. runs/infer2]."


def _version(value: bool):
    if value:
        typer.echo("yolo4 %s" % __version__)
        raise typer.Exit()


@app.callback()
def _main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="show tracebacks on errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="print the version and exit."),
):
    _state["verbose"] = verbose


def _log(msg: str) -> None:
    typer.echo(msg, err=msg.startswith("warning"))


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if issubclass(category, Yolo4Warning):
        typer.echo("warning: %s" % " ".join(str(message).split()), err=True)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


#: optional dependencies -> the extra that installs them (a command missing one exits 2 with one line)
_OPTIONAL_EXTRAS = {"torch": "train", "matplotlib": "train", "onnx": "export", "onnxsim": "export",
                    "onnxruntime": "export", "onnxconverter_common": "export",
                    "onnxruntime_extensions": "export", "tensorrt": "trt", "pycuda": "trt",
                    "tensorrt_rtx": "rtx"}


def _command(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run a command body: user errors -> one ``error:`` line and exit 2; Ctrl-C -> exit 130."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        warnings.showwarning = _show_warning
        try:
            return func(*args, **kwargs)
        except Yolo4Error as e:
            if _state["verbose"]:
                raise
            typer.echo("error: %s" % e, err=True)
            raise typer.Exit(2) from None
        except ModuleNotFoundError as e:  # an optional dependency this command needs (e.g. torch on a Jetson)
            extra = _OPTIONAL_EXTRAS.get((e.name or "").split(".")[0])
            if extra is None or _state["verbose"]:
                raise
            typer.echo("error: yolo4 %s needs %s, which is not installed (pip install 'yolo4[%s]')"
                       % (func.__name__.rstrip("_").replace("_", "-"), e.name.split(".")[0], extra), err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("aborted", err=True)
            raise typer.Exit(130) from None
        finally:
            warnings.showwarning = _default_showwarning

    return wrapper


#: --model's help per model form it may be
_MODEL_SUFFIXES = {"onnx": ".onnx (as --onnx)", "engine": ".engine/.plan (--engine)",
                   "checkpoint": ".pt/.pth (--checkpoint)", "cfg": ".cfg (--cfg, with --weights)"}
MODEL_HELP = ("model file, its form from the suffix: %s, or a known model name (e.g. yolov4-tiny); the "
              "options below name one form each.")

#: the options that name the model and how it runs, declared once for infer, eval, benchmark and export
_MODEL_OPTIONS = (("model", str, MODEL_HELP), ("cfg", str, CFG_HELP), ("weights", str, WEIGHTS_HELP),
                  ("checkpoint", str, CKPT_HELP), ("onnx", str, ONNX_HELP), ("engine", str, ENGINE_HELP),
                  ("backend", str, BACKEND_HELP), ("names", str, NAMES_HELP), ("img_size", int, IMG_HELP))


def _model_options(without: Tuple[str, ...] = (), forms: Optional[Tuple[str, ...]] = None):
    """Give a command the model options of :data:`_MODEL_OPTIONS` (less ``without``) in place of its
    ``model`` parameter, which receives them as one :class:`yolo4.pipeline.ModelSource`, resolved
    (two model options, an unknown suffix, a form not in ``forms``: one line, before the command runs)."""
    suffixes = ", ".join(text for form, text in _MODEL_SUFFIXES.items() if forms is None or form in forms)
    specs = [(name, kind, help_ % suffixes if name == "model" else help_)
             for name, kind, help_ in _MODEL_OPTIONS if name not in without]

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(func)
        params = list(sig.parameters.values())
        at = [p.name for p in params].index("model")
        added = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Optional[kind],
                                   default=typer.Option(None, help=help_)) for name, kind, help_ in specs]
        params[at:at + 1] = added

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            from .pipeline import ModelSource

            src = ModelSource(**{name: kwargs.pop(name) for name, _, _ in specs})
            return func(*args, model=src.resolve(forms), **kwargs)

        wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]  # typer reads it
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return decorate


def _hyp_cfg(cfg: str, overrides: Dict[str, float], out: Path) -> str:
    """Write the cfg with ``overrides`` (darknet keys) applied to ``out/<stem>-hyp.cfg`` and the values to
    ``out/hyp.yaml``; return the new cfg's path."""
    from .assets import resolve_cfg
    from .fileio import atomic_write_text
    from .model.cfg.text import read_cfg_text
    from .trainer.hyp import apply_hyp, save_hyp

    src = resolve_cfg(cfg)
    text, where = read_cfg_text(src)
    out.mkdir(parents=True, exist_ok=True)
    dst = out / (Path(src).stem + "-hyp.cfg")
    atomic_write_text(dst, apply_hyp(text, overrides, where))
    save_hyp(out / "hyp.yaml", overrides, header=["applied to %s" % where])
    _log("hyperparameters: %s -> %s" % (", ".join("%s=%g" % kv for kv in overrides.items()), dst))
    return str(dst)


def _evolve(generations: int, cfg: str, overrides: Dict[str, float], out: Path, seed: int,
            run: Callable[[str, Path], Dict[str, Any]]) -> None:
    """``train --evolve N``: N generations, each a training run in ``out/gen_NNNN`` of the cfg with the
    generation's hyperparameters."""
    import shutil

    from .assets import resolve_cfg
    from .fileio import atomic_write_text
    from .model.cfg.text import read_cfg_text
    from .trainer.evolve import evolve
    from .trainer.hyp import apply_hyp, hyp_of

    src = resolve_cfg(cfg)
    text, where = read_cfg_text(src)
    base = dict(hyp_of(text, path=where), **overrides)

    def run_fn(h: Dict[str, float], gen_dir: Path) -> Dict[str, Any]:
        gen_dir = Path(gen_dir)
        if (gen_dir / "last.pt").exists():  # an interrupted generation: train it again from the start
            shutil.rmtree(gen_dir)
            gen_dir.mkdir(parents=True)
        gen_cfg = gen_dir / (Path(src).stem + "-hyp.cfg")
        atomic_write_text(gen_cfg, apply_hyp(text, h, where))
        summary = run(str(gen_cfg), gen_dir)
        rows = [r for r in summary.get("epochs", []) if r.get("map50") is not None]
        return {"map50": rows[-1]["map50"], "map50_95": rows[-1]["map50_95"]} if rows else {}

    res = evolve(base, generations, run_fn, out, seed=seed, log=_log)
    typer.echo("best: generation %d, fitness %.4f (mAP@.5 %.4f, mAP@[.5:.95] %.4f)" % (
        res["generation"], res["fitness"], res["map50"] or 0.0, res["map50_95"] or 0.0))
    typer.echo("evolve table:  %s" % Path(res["csv"]).resolve())
    typer.echo("best hyp file: %s   (yolo4 train --hyp it)" % Path(res["yaml"]).resolve())


def _check_preprocess(value: str, engine: Optional[str]) -> str:
    """``--preprocess``: cpu or gpu (a usage error otherwise); gpu needs an engine (checked before any
    model is loaded)."""
    v = value.strip().lower()
    if v not in ("cpu", "gpu"):
        raise typer.BadParameter(f"{value!r} is not one of cpu, gpu", param_hint="--preprocess")
    if v == "gpu" and not engine:
        raise Yolo4Error("--preprocess gpu needs a TensorRT engine (--engine); ONNX Runtime and torch "
                         "preprocess on the CPU")
    return v


def _run_dir(output_dir: Optional[Path], default: str, exist_ok: bool) -> Path:
    """The folder a run writes to, numbered (``runs/infer2``) unless ``exist_ok``; checked writable."""
    from .fileio import check_writable_dir, increment_dir

    path = increment_dir(output_dir if output_dir is not None else Path(default), exist_ok)
    return check_writable_dir(path, "output folder")


def _train_device() -> str:
    """``cuda`` when torch sees a GPU, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _cli_args(ctx: typer.Context, skip=()) -> List[str]:
    """The command's options as given (values not None), to run it again (``yolo4 train --devices``):
    ``--epochs 3``, ``--no-augment``; flags that are off and options in ``skip`` (parameter names) left out."""
    out: List[str] = []
    for p in ctx.command.params:
        if getattr(p, "param_type_name", None) != "option" or p.name in skip:
            continue
        v = ctx.params.get(p.name)
        if v is None:
            continue
        if p.is_flag:
            if v:
                out.append(p.opts[0])
            elif p.secondary_opts:
                out.append(p.secondary_opts[0])
            continue
        if isinstance(v, (list, tuple)):  # a repeatable option: once per value
            for item in v:
                out += [p.opts[0], str(item)]
            continue
        out += [p.opts[0], str(v)]
    return out


@app.command()
@_command
def train(
    ctx: typer.Context,
    cfg: Optional[str] = typer.Option(None, help=CFG_HELP + " [required unless --resume]"),
    data: Optional[str] = typer.Option(None, help="dataset: YAML (path/train/val/names), COCO json, VOC "
                                       "folder, or a known name (coco128, raccoon, chess; read from "
                                       "$YOLO4_ASSET_MIRROR). [required unless --resume]"),
    weights: Optional[str] = typer.Option(None, help="pretrained " + WEIGHTS_HELP + " Heads are re-made "
                                          "when the dataset's class count differs from the cfg's."),
    epochs: Optional[int] = typer.Option(None, min=0, help="number of passes over the training split "
                                         "[default: 10]; 0 with --preview: write the preview and stop."),
    batch: Optional[int] = typer.Option(None, min=1, help="batch size: images per optimizer step "
                                        "[default: 8]."),
    img_size: Optional[int] = typer.Option(None, help="network input size in pixels, square, multiple of "
                                           "32 [default: the cfg's [net] width/height]."),
    output_dir: Optional[Path] = typer.Option(None, help="where last.pt, best.pt, best.weights, best.cfg, "
                                              "best.names and results.csv are written [default: runs/train, "
                                              "numbered]."),
    exist_ok: bool = typer.Option(False, "--exist-ok", help=EXIST_OK_HELP),
    resume: bool = typer.Option(False, "--resume", help="continue the run in OUTPUT_DIR [default: the most recent "
                                "runs/train*] from its last.pt, exactly as it was started: cfg, data, epochs, "
                                "image size, batch and schedule come from the checkpoint."),
    workers: int = typer.Option(2, min=0, help="data-loading worker processes."),
    lr: Optional[float] = typer.Option(None, min=0.0, help="peak learning rate per optimizer step on the "
                                       "per-image mean loss [default: the model's own classes: the cfg's "
                                       "learning_rate x batch/64, darknet's per-image rate; a new class "
                                       "list (re-made heads): the cfg's learning_rate, and no EMA]."),
    max_images: Optional[int] = typer.Option(None, min=1, help="use at most this many images of each "
                                             "split, training and validation alike (quick runs)."),
    seed: Optional[int] = typer.Option(None, help="random seed [default: 0]."),
    eval_every: Optional[int] = typer.Option(None, min=1, help="validate every N epochs, and after the "
                                             "last [default: 1]."),
    augment: Optional[bool] = typer.Option(None, "--augment/--no-augment", help="flip, HSV and jitter "
                                           "augmentation [default: on]."),
    jitter: Optional[float] = typer.Option(None, min=0.0, max=0.99, help="darknet jitter: random crop "
                                           "as a fraction of the image size, 0..1 [default: the cfg's]."),
    box_grad: Optional[str] = typer.Option(None, help="box-loss gradient: darknet (darknet's scaling) or "
                                           "chain (plain autograd) [default: darknet]."),
    iou_normalizer_scale: Optional[float] = typer.Option(None, help="multiplies every [yolo] iou_normalizer "
                                                         "(the box-loss weight; --set iou_normalizer=X is "
                                                         "multiplied too) [default: 15/7 for a new class list "
                                                         "(re-made heads; yolov4-tiny's 0.07 -> 0.15), else 1]."),
    policy: Optional[str] = typer.Option(None, help="learning-rate policy after darknet's burn-in: cosine, "
                                         "steps (the cfg's steps/scales at the same fractions of this run "
                                         "as of max_batches), sgdr (the cfg's sgdr_cycle/sgdr_mult, same "
                                         "mapping) or constant [default: cosine, whatever the cfg's policy]."),
    optimizer: Optional[str] = typer.Option(None, help="sgd (darknet's, the cfg's momentum), adam or adamw; "
                                            "weight decay (the cfg's decay) on conv weights only [default: "
                                            "adam if the cfg says adam=1, else sgd]."),
    nesterov: Optional[bool] = typer.Option(None, "--nesterov/--no-nesterov", help="Nesterov momentum "
                                            "(sgd only) [default: off]."),
    subdivisions: Optional[int] = typer.Option(None, min=1, help="darknet's subdivisions: accumulate the "
                                               "gradients of this many mini-batches of batch/subdivisions "
                                               "images per optimizer step; must divide --batch [default: 1]."),
    amp: Optional[bool] = typer.Option(None, "--amp/--no-amp", help="mixed precision (float16 autocast + "
                                       "loss scaling), CUDA only [default: on when training on CUDA]."),
    device: Optional[str] = typer.Option(None, help="torch device: cpu, cuda, cuda:1 [default: cuda when "
                                         "available, else cpu]."),
    preview: int = typer.Option(0, min=0, help="first write the first N augmented training batches as "
                                "OUTPUT_DIR/preview/batch{k}.jpg (boxes and class names drawn), then train "
                                "(with --epochs 0: stop after the preview)."),
    devices: Optional[str] = typer.Option(None, help="DDP on this machine: GPU ids (0,1: one process per GPU, "
                                          "nccl) or cpu:N (N CPU processes, gloo); re-launches this command "
                                          "under torch.distributed.run. --batch is the global batch, split "
                                          "across the processes. Multi-node: run torchrun -m yolo4.cli train "
                                          "yourself."),
    sync_bn: bool = typer.Option(False, "--sync-bn", help="DDP on CUDA: batch norm statistics over the "
                                 "global batch (SyncBatchNorm)."),
    cmbn: Optional[bool] = typer.Option(None, "--cmbn/--no-cmbn", help="Cross mini-Batch Normalization "
                                        "(YOLOv4 paper 3.3) with --subdivisions > 1: mini-batch k is normalised "
                                        "with the statistics of mini-batches 1..k of its batch [default: off]."),
    multi_scale: Optional[bool] = typer.Option(None, "--multi-scale/--no-multi-scale", help="random training "
                                               "shapes (YOLOv4 paper 3.4, darknet random=1): a new input size "
                                               "every 10 iterations, 320..608 px at --img-size 416 in steps of "
                                               "[net] resize_step (32); --set random=1.2 narrows the range "
                                               "[default: on when the cfg's last [yolo] says random=1]."),
    hyp: Optional[Path] = typer.Option(None, help="hyperparameter YAML of darknet [net]/[yolo] keys "
                                       "(learning_rate: 0.001, hue: 0.1, mosaic: 1, iou_normalizer: 0.07, "
                                       "...) written onto the cfg (RUN/CFG-hyp.cfg, RUN/hyp.yaml)."),
    set_values: Optional[List[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help="one darknet "
                                                   "[net]/[yolo] key, e.g. --set hue=0.2; repeatable; after "
                                                   "--hyp."),
    evolve: int = typer.Option(0, min=0, metavar="N", help="genetic hyperparameter search: N generations, "
                               "each a run of --epochs (mutation of the best so far, fitness 0.1 mAP@.5 + 0.9 "
                               "mAP@[.5:.95]); writes RUN/evolve.csv and RUN/hyp_evolved.yaml; the same "
                               "command with --output-dir RUN --exist-ok continues it."),
):
    """Train (fine-tune) a darknet cfg on a dataset; writes checkpoints and darknet .weights."""
    from .fileio import check_writable_dir, latest_run_dir
    from .trainer import distributed
    from .trainer.train import train as run_train

    if epochs == 0 and not preview:
        raise typer.BadParameter("0 trains nothing: give 1 or more (0 only with --preview N)",
                                 param_hint="--epochs")
    nproc, launch_device, cuda_visible = 1, None, None
    if devices is not None:
        if distributed.env_world_size() > 1:
            raise Yolo4Error("--devices starts torchrun itself; under torchrun leave it out")
        if device is not None:
            raise Yolo4Error("give --devices (DDP) or --device (one process), not both")
        try:
            nproc, launch_device, cuda_visible = distributed.parse_devices(devices)
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--devices") from None
        if nproc == 1:                      # one process: no torchrun
            device = "cpu" if launch_device == "cpu" else f"cuda:{cuda_visible}"
    world, _ = distributed.setup(device or _train_device()) if nproc == 1 else (distributed.World(), None)
    if resume:
        out = output_dir if output_dir is not None else latest_run_dir(Path("runs/train"))
        if not (out / "last.pt").is_file():
            raise Yolo4Error("nothing to resume: no last.pt in this folder (give the run's --output-dir)", out)
        check_writable_dir(out, "output folder")
    else:
        if cfg is None or data is None:
            raise Yolo4Error("train needs --cfg and --data (or --resume to continue a run)")
        # torchrun: rank 0 picks the numbered folder, every rank uses it
        out = distributed.broadcast_object(world, _run_dir(output_dir, "runs/train", exist_ok)
                                           if world.main else None)
    overrides: Dict[str, float] = {}
    if hyp is not None or set_values or evolve:
        if resume:
            raise Yolo4Error("--hyp, --set and --evolve start a new run; they do not combine with --resume")
        from .trainer.hyp import load_hyp, parse_overrides

        if hyp is not None and not hyp.is_file():
            raise Yolo4Error("hyperparameter file not found", hyp)
        overrides = {**(load_hyp(hyp) if hyp is not None else {}), **parse_overrides(set_values or [])}
    if evolve:
        if nproc > 1 or preview:
            raise Yolo4Error("--evolve runs one process without --preview (give --devices one device)")
        given = [o for o, v in (("--lr", lr), ("--jitter", jitter)) if v is not None]
        if given:
            raise Yolo4Error(f"{', '.join(given)} would override the evolved learning_rate / jitter: set "
                             "them in --hyp or --set instead")
        _evolve(evolve, cfg, overrides, out, seed or 0, lambda c, d: run_train(
            cfg=c, data=data, weights=weights, epochs=epochs, batch_size=batch, img_size=img_size,
            output_dir=str(d), workers=workers, max_images=max_images, seed=seed, augment=augment,
            box_grad=box_grad, policy=policy, optimizer=optimizer, nesterov=nesterov,
            subdivisions=subdivisions, amp=amp, device=device or _train_device(), progress=False,
            cmbn=cmbn, multi_scale=multi_scale, iou_normalizer_scale=iou_normalizer_scale, log=lambda m: None))
        return
    if overrides:
        cfg = _hyp_cfg(cfg, overrides, out)
    if preview and world.main:
        if resume:
            raise Yolo4Error("--preview shows the batches of a new run; it does not combine with --resume")
        from .trainer.preview import write_preview

        write_preview(cfg, data, out, preview, batch_size=batch or 8, img_size=img_size, seed=seed or 0,
                      max_images=max_images, augment=augment is not False, jitter=jitter, log=_log)
    if preview and epochs == 0:
        return
    if nproc > 1:                           # re-launch this command under torchrun; its exit status
        args = _cli_args(ctx, skip=("devices", "output_dir", "exist_ok", "preview", "device"))
        rc = distributed.launch(nproc, ["train", *args, "--output-dir", str(out), "--exist-ok",
                                        "--device", launch_device], cuda_visible)
        if rc:
            raise typer.Exit(rc)
        return
    summary = run_train(cfg=cfg, data=data, weights=weights, epochs=epochs, batch_size=batch,
                        img_size=img_size, output_dir=str(out), resume=resume, workers=workers,
                        lr=lr, max_images=max_images, seed=seed, eval_every=eval_every, augment=augment,
                        jitter=jitter, box_grad=box_grad, policy=policy, optimizer=optimizer,
                        nesterov=nesterov, subdivisions=subdivisions, amp=amp, device=device or _train_device(),
                        log=_log, sync_bn=sync_bn, cmbn=cmbn, multi_scale=multi_scale,
                        iou_normalizer_scale=iou_normalizer_scale)
    if not world.main:
        return
    for key in ("best", "last", "weights", "cfg"):
        if summary.get(key):
            typer.echo("%-8s %s" % (key, summary[key]))


@app.command()
@_command
@_model_options(without=("onnx", "engine", "backend"), forms=("cfg", "checkpoint"))
def export(
    output: Path = typer.Option(..., "--output", "-o", help="file to write: MODEL.onnx, or with --format "
                                "darknet MODEL.weights (+ MODEL.cfg and MODEL.names beside it)."),
    export_format: str = typer.Option("onnx", "--format", help="onnx, or darknet (.cfg + .weights + .names, as "
                               "darknet, OpenCV DNN, tkDNN and DeepStream read them; [net] width/height = "
                               "--img-size)."),
    model: "ModelSource" = None,  # --model, --cfg, --weights, ...: declared once, in _model_options
    batch: Optional[int] = typer.Option(None, min=1, help="batch size: images per forward pass, fixed in "
                                         "the ONNX [default: dynamic, any batch at run time]."),
    fp16: bool = typer.Option(False, "--fp16", help="FP16 weights and compute, float32 inputs/outputs "
                              "(for TensorRT strongly typed builds)."),
    no_simplify: bool = typer.Option(False, "--no-simplify", help="skip onnxsim."),
    opset: int = typer.Option(17, help="ONNX opset. < 18: Mish as Softplus/Tanh/Mul (TensorRT 8.5 "
                              "parses it); >= 18: native Mish op."),
    int8: bool = typer.Option(False, "--int8", help="write a Q/DQ INT8 ONNX (explicit quantization, "
                              "calibrated on --calib-data with ONNX Runtime): for TensorRT builds, and it "
                              "runs on ONNX Runtime too."),
    calib_data: Optional[str] = typer.Option(None, help=CALIB_DATA_HELP),
    calib_images: int = typer.Option(DEFAULT_NUM_IMAGES, min=1, help=CALIB_IMAGES_HELP),
    calib_method: str = typer.Option(DEFAULT_METHOD, help="activation range calibration: minmax (max |x|, "
                                     "as NVIDIA Model Optimizer's INT8 default), percentile (%gth "
                                     "percentile of |x|) or entropy (ONNX Runtime's KL divergence)."
                                     % DEFAULT_PERCENTILE),
    int8_exclude: Optional[List[str]] = typer.Option(None, help="keep these layers in float besides the "
                                                     "defaults (first conv, convs feeding [yolo]): darknet "
                                                     "layer index (12, 12-15) or a glob on ONNX node names. "
                                                     "Repeatable."),
    int8_target_drop: Optional[float] = typer.Option(None, min=0.0, help="search: return the most harmful "
                                                     "layers to float until the mAP@[.5:.95] drop vs FP32 "
                                                     "on --int8-val-data is at most this many AP points "
                                                     "(x100); writes a report beside the output."),
    int8_val_data: Optional[str] = typer.Option(None, help="labelled dataset of the --int8-target-drop "
                                                "search [default: --calib-data]; its val split."),
    qdq_layout: str = typer.Option(DEFAULT_LAYOUT, "--int8-target", "--qdq-layout",
                                   help="the runtime the INT8 model is for, which sets the Q/DQ placement: "
                                   "tensorrt (Q/DQ on Conv inputs, symmetric INT8: what TensorRT fuses, most "
                                   "accurate; slower than FP32 on ONNX Runtime's CPU kernels) or onnxruntime "
                                   "(U8S8 around every Conv, LeakyReLU and max-pool: ~1.8x FP32 speed on "
                                   "ONNX Runtime's CPU kernels, less accurate; TensorRT refuses it). "
                                   "--qdq-layout is the old name."),
    seed: int = typer.Option(DEFAULT_SEED, help="seed of the calibration image selection."),
    nms: str = typer.Option("none", help="NMS at the end of the graph: none (outputs boxes/scores; NMS runs "
                            "after the model, darknet's DIoU-NMS), plugin (yolo4's DIoUNMS_TRT TensorRT plugin: "
                            "darknet's DIoU-NMS, TensorRT 8.5-11, `yolo4 build-plugin`), efficient "
                            "(EfficientNMS_TRT: IoU, TensorRT 8.5-10.x) or trt (ONNX NonMaxSuppression: IoU, "
                            "TensorRT's INMSLayer and any ONNX runtime). All but none output num_detections "
                            "[B,1], detection_boxes [B,K,4], detection_scores [B,K], detection_classes [B,K]; "
                            "every one runs on ONNX Runtime."),
    conf: Optional[float] = typer.Option(None, min=0.0, max=1.0, help="--nms: score threshold baked into the "
                                         "graph, objectness x class probability, 0..1 (kept when > it; lower "
                                         "ones are gone for good: 0.001 for a model to evaluate) [default: 0.25]."),
    iou: Optional[float] = typer.Option(None, min=0.0, max=1.0, help="--nms: NMS IoU threshold, 0..1 (DIoU "
                                        "with the cfg's nms_kind for plugin) [default: 0.45]."),
    max_det: Optional[int] = typer.Option(None, min=1, help="--nms: detections per image, K of the fixed-shape "
                                          "outputs (trt: < 3840) [default: 300]."),
    top_k: Optional[int] = typer.Option(None, min=1, help="--nms: candidates per image entering NMS, best "
                                        "scores first (plugin; efficient always takes 4096; trt: TensorRT's own "
                                        "limit) [default: 30000]."),
):
    """Export to ONNX: input `images` [B,3,H,W] RGB 0..1, outputs `boxes` [B,N,4] x1,y1,x2,y2 input
    pixels and `scores` [B,N,C]; checks ONNX Runtime against PyTorch. With --int8, a Q/DQ INT8 ONNX.
    With --nms, the graph ends with NMS (checked on ONNX Runtime against the numpy reference).
    With --format darknet: MODEL.cfg + MODEL.weights + MODEL.names for darknet, OpenCV DNN, tkDNN, DeepStream."""
    from .convert import export_onnx
    from .fileio import check_writable_file, sibling_temp

    fmt = export_format.strip().lower()
    if fmt not in ("onnx", "darknet"):
        raise typer.BadParameter(f"{export_format!r} is not one of onnx, darknet", param_hint="--format")
    nms_fields = {k: v for k, v in (("score_threshold", conf), ("iou_threshold", iou), ("max_output_boxes", max_det),
                                     ("top_k", top_k)) if v is not None}
    if fmt == "darknet":
        _export_darknet(output, model, {
            "--fp16": fp16, "--int8": int8, "--batch": batch, "--nms": nms != "none", "--no-simplify": no_simplify,
            "--calib-data": calib_data, "--conf/--iou/--max-det/--top-k": nms_fields})
        return
    _check_nms_options(nms, nms_fields)
    check_writable_file(output, "ONNX output")
    if int8:
        _check_int8_options(fp16, calib_data, calib_method, qdq_layout)
    module, info, hw = model.load_torch(_log)
    nms_params = None
    if nms != "none":
        from .convert.nms_export import check_nms_request
        from .nms_params import NmsParams

        nms_params = NmsParams.for_model(info, **nms_fields)
        check_nms_request(nms, nms_params)
    fp32_path = sibling_temp(output, ".fp32.onnx") if int8 else output
    try:
        res = export_onnx(module, fp32_path, img_size=hw, batch=batch, fp16=fp16,
                          simplify=not no_simplify, opset=opset, log=_log)
        if int8:
            from .pipeline import export_int8

            export_int8(fp32_path, output, calib_data, calib_images=calib_images, calib_method=calib_method,
                        exclude=int8_exclude or (), target_drop=int8_target_drop,
                        val_data=int8_val_data, layout=qdq_layout, seed=seed, log=_log)
        if nms_params is not None:
            from .convert.nms_export import export_nms

            try:
                export_nms(output, output, nms, nms_params, log=_log)
            except BaseException:
                Path(output).unlink(missing_ok=True)  # no decoded-only file where an NMS-ended one was asked
                raise
        if int8:
            return
    finally:
        if int8 and Path(fp32_path).exists():
            Path(fp32_path).unlink()
    typer.echo("wrote %s (opset %d, Mish: %s, %s, %s%s)" % (
        res.path, res.opset, res.mish_mode, "dynamic batch" if batch is None else "fixed batch %d" % batch,
        "fp16" if fp16 else "fp32", "" if nms == "none" else ", NMS: " + nms))


def _export_darknet(output: Path, model: "ModelSource", onnx_only: Dict[str, Any]) -> None:
    """``export --format darknet``: .cfg + .weights + .names (ONNX-only options are a usage error)."""
    from .convert.darknet_export import darknet_paths, export_darknet
    from .fileio import check_writable_file

    given = [k for k, v in onnx_only.items() if v]
    if given:
        raise typer.BadParameter(f"{', '.join(given)} apply to ONNX exports, not --format darknet",
                                 param_hint="--format")
    for path, what in zip(darknet_paths(output), ("darknet weights", "darknet cfg", "class names")):
        check_writable_file(path, what)
    module, info, hw = model.load_torch(_log)
    res = export_darknet(module, output, input_hw=hw)
    typer.echo("wrote %s, %s, %s (%d classes, %dx%d)" % (res.weights, res.cfg, res.names, info.num_classes,
                                                         hw[1], hw[0]))


def _check_nms_options(nms: str, fields: dict) -> None:
    from .convert.nms_export import NMS_MODES

    if nms not in NMS_MODES:
        raise typer.BadParameter("choose %s" % ", ".join(NMS_MODES), param_hint="--nms")
    if nms == "none" and fields:
        opts = {"score_threshold": "--conf", "iou_threshold": "--iou", "max_output_boxes": "--max-det",
                "top_k": "--top-k"}
        raise typer.BadParameter("%s set the NMS baked into the graph: add --nms plugin|efficient|trt (without "
                                 "it, NMS runs after the model with infer/eval's own options)"
                                 % "/".join(opts[k] for k in fields), param_hint="--nms")


def _check_int8_options(fp16: bool, calib_data: Optional[str], calib_method: str, layout: str) -> None:
    from .calib.qdq import CALIB_METHODS, QDQ_LAYOUTS

    if fp16:
        raise typer.BadParameter("--int8 and --fp16 exclude each other (the Q/DQ model keeps float "
                                 "layers in FP32; TensorRT picks FP16 for them with --fp16 at build time)",
                                 param_hint="--fp16")
    if not calib_data:
        raise typer.BadParameter("--int8 needs calibration images: a folder, a glob, a .txt list or a "
                                 "dataset (YAML, coco128, ...)", param_hint="--calib-data")
    if calib_method not in CALIB_METHODS:
        raise typer.BadParameter("choose %s" % ", ".join(CALIB_METHODS), param_hint="--calib-method")
    if layout not in QDQ_LAYOUTS:
        raise typer.BadParameter("choose %s" % ", ".join(QDQ_LAYOUTS), param_hint="--int8-target")


@app.command(name="build-engine")
@_command
def build_engine(
    onnx_model: Path = typer.Argument(..., metavar="MODEL.onnx", help="ONNX written by `yolo4 export` "
                                      "(FP32, FP16 with --fp16, or Q/DQ INT8 with --int8)."),
    output: Path = typer.Option(..., "--output", "-o", help="engine file to write (e.g. model.engine); "
                                "its metadata goes beside it as model.engine.json."),
    fp16: bool = typer.Option(False, "--fp16", help="FP16 engine. TensorRT 8.5-10.x: a builder flag; "
                              "TensorRT 11 / for RTX (strongly typed): an FP32 ONNX is first converted to "
                              "ENGINE_STEM-fp16.onnx beside the engine."),
    int8: bool = typer.Option(False, "--int8", help="INT8 engine, calibrated on --calib-data (a Q/DQ ONNX "
                              "needs no calibration)."),
    backend: Optional[str] = typer.Option(None, help="tensorrt or tensorrt-rtx (TensorRT for RTX: builds "
                                          "ahead of time, also without a GPU) [default: whichever is "
                                          "installed, tensorrt first]."),
    compute_capability: Optional[List[str]] = typer.Option(
        None, "--compute-capability", metavar="X.Y", help="TensorRT for RTX only: GPU compute capability to "
        "build for, e.g. 8.6 (RTX 30xx), 8.9 (RTX 40xx), 7.5 (Turing); repeatable [default: TensorRT for RTX's "
        "targets, 8.0 and later]."),
    calib_data: Optional[str] = typer.Option(None, help=CALIB_DATA_HELP),
    calib_images: int = typer.Option(DEFAULT_NUM_IMAGES, min=1, help=CALIB_IMAGES_HELP),
    calib_method: Optional[str] = typer.Option(None, help="entropy or minmax (both quantizations), "
                                               "percentile (explicit only) [default: %s for implicit, "
                                               "%s for explicit]." % (DEFAULT_IMPLICIT_METHOD, DEFAULT_METHOD)),
    calib_cache: Optional[Path] = typer.Option(None, help="implicit INT8: TensorRT calibration cache, "
                                               "reused when made for the same model, images, method and "
                                               "TensorRT [default: ENGINE.calib beside the engine]."),
    quantization: str = typer.Option("auto", help="INT8 quantization: implicit (TensorRT calibrator, "
                                     "TensorRT 8.5-10.x), explicit (a Q/DQ ONNX, written as "
                                     "ENGINE_STEM-int8.onnx beside the engine) or auto (implicit below "
                                     "TensorRT 11, explicit on 11 and TensorRT for RTX)."),
    batch: Optional[str] = typer.Option(None, metavar="MIN,OPT,MAX", help="batch size: images per "
                                        "forward pass, the optimization profile's MIN,OPT,MAX (tuned for "
                                        "OPT, also the calibration batch) [default: 1,4,8 for a "
                                        "dynamic-batch ONNX; a fixed-batch ONNX uses its batch]."),
    workspace: Optional[int] = typer.Option(None, min=1, metavar="MIB", help="builder workspace memory "
                                            "limit in MiB [default: TensorRT's, the GPU's memory; 1024 on a "
                                            "Jetson, whose tactic memory is also capped at half its RAM]."),
    dla_core: Optional[int] = typer.Option(None, min=0, metavar="K", help="Jetson Xavier/Orin: run on this "
                                           "DLA core (FP16/INT8 only, other layers fall back to the GPU; "
                                           "needs a fixed batch: --batch N)."),
    tf32: bool = typer.Option(True, "--tf32/--no-tf32", help="let FP32 layers use TF32 on Ampere and later "
                              "(TensorRT's default); --no-tf32: FP32 means FP32."),
    version_compatible: bool = typer.Option(False, "--version-compatible", help="TensorRT >= 8.6: the engine "
                                            "also runs on later TensorRT releases (embeds the lean runtime; "
                                            "may be slower)."),
    hardware_compatibility_level: Optional[str] = typer.Option(
        None, "--hardware-compatibility-level", metavar="LEVEL", help="TensorRT >= 8.6: ampere+ (runs on any "
        "Ampere or later GPU; build on one, not on a Jetson) or same-compute-capability (later 10.x) "
        "[default: none, this GPU's architecture only]."),
    timing_cache: Optional[Path] = typer.Option(None, help="TensorRT timing cache file: read when present, "
                                                "written after the build (speeds up rebuilds)."),
    plugin_lib: Optional[List[Path]] = typer.Option(None, "--plugin-lib", metavar="LIB.so", help="TensorRT "
                                                    "plugin library to load before parsing; repeatable "
                                                    "(not TensorRT for RTX)."),
    int8_exclude: Optional[List[str]] = typer.Option(None, "--int8-exclude", metavar="PATTERN", help="INT8: "
                                                     "keep these layers in float besides the defaults (first "
                                                     "conv, convs feeding [yolo], decode): darknet layer "
                                                     "index (12, 12-15) or a glob on ONNX node names. "
                                                     "Repeatable."),
    contexts: int = typer.Option(2, min=1, metavar="N", help="execution contexts the engine can run at "
                                 "once: a dynamic-batch engine gets N optimization profiles, and `yolo4 infer` "
                                 "pipelines batches over N contexts (copies and post-processing overlap the "
                                 "GPU work) [default: 2]."),
    verbose: bool = typer.Option(False, "--verbose", help="show TensorRT's log at INFO level [default: "
                                 "warnings and errors]."),
):
    """Build a TensorRT engine (FP32, FP16 or INT8) from an exported ONNX; writes the engine and its
    metadata (model.engine.json: classes, input size, batch profile, precision, TensorRT version, GPU)."""
    from .convert.engine_builder import build_engine as run_build

    res = run_build(onnx_model, output, fp16=fp16, int8=int8, backend=backend,
                    compute_capability=compute_capability or (), calib_data=calib_data,
                    calib_images=calib_images, calib_method=calib_method, calib_cache=calib_cache,
                    quantization=quantization, batch=batch, workspace=workspace, dla_core=dla_core,
                    timing_cache=timing_cache, plugin_libs=plugin_lib or (), int8_exclude=int8_exclude or (),
                    contexts=contexts, verbose=verbose, log=_log, tf32=tf32,
                    version_compatible=version_compatible, hardware_compatibility=hardware_compatibility_level)
    typer.echo("engine:   %s" % res.engine_path.resolve())
    typer.echo("metadata: %s" % res.meta_path.resolve())


@app.command("build-plugin")
@_command
def build_plugin(
    tensorrt_include: Optional[Path] = typer.Option(None, "--tensorrt-include", metavar="DIR", help="TensorRT "
                                                    "headers (the folder with NvInfer.h) [default: $TENSORRT_ROOT/"
                                                    "include, /usr/include/<arch>-linux-gnu (JetPack, Debian "
                                                    "packages), /usr/local/TensorRT*/include, ...]."),
    tensorrt_lib: Optional[Path] = typer.Option(None, "--tensorrt-lib", metavar="DIR", help="folder with "
                                                "libnvinfer.so [default: beside the headers, the pip tensorrt "
                                                "wheels' folder, the system library folders]."),
    cuda: Optional[Path] = typer.Option(None, "--cuda", metavar="DIR", help="CUDA toolkit (with bin/nvcc) "
                                        "[default: $CUDA_HOME, the nvcc on PATH, /usr/local/cuda]."),
    arch: Optional[List[str]] = typer.Option(None, "--arch", metavar="CC", help="GPU compute capability to "
                                             "compile for, e.g. 72 (Xavier), 87 (Orin), 70 (V100), 75 (T4); "
                                             "repeatable [default: 70 72 75 80 86 87 89 90, those the local "
                                             "nvcc supports]."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", metavar="PATH", help="library file or folder "
                                          "[default: $YOLO4_PLUGIN_LIB, else ~/.cache/yolo4/plugins/"
                                          "libdiou_nms_plugin.so, where the runtime looks]."),
):
    """Compile the DIoU-NMS TensorRT plugin (DIoUNMS_TRT: darknet's DIoU-NMS for `export --nms plugin`)
    against the TensorRT and CUDA installed here; writes libdiou_nms_plugin.so, and beside it
    libyolo4_preprocess.so (the TensorRT runtime's GPU preprocessing kernel)."""
    from .plugins.build import build_plugin as run_build

    res = run_build(output=output, tensorrt_include=tensorrt_include, tensorrt_lib=tensorrt_lib, cuda=cuda,
                    archs=arch or (), log=_log)
    for w in res.warnings:
        _log("warning: %s" % w)
    if res.info:
        typer.echo("plugin:   %s" % res.info)
    typer.echo("built in %.0f s for sm_%s" % (res.seconds, ", sm_".join(res.archs)))
    typer.echo("library:  %s" % res.path.resolve())
    # the GPU preprocessing kernel of the TensorRT runtime (no TensorRT needed), beside the plugin
    from .plugins.build import PREPROCESS_LIBRARY_NAME, build_preprocess_library

    try:
        pre = build_preprocess_library(output=res.path.parent / PREPROCESS_LIBRARY_NAME, cuda=cuda,
                                       archs=res.archs, log=_log)
        typer.echo("preprocess: %s" % pre.resolve())
    except Yolo4Error as e:
        _log("warning: the GPU preprocessing library (%s) was not built: %s" % (PREPROCESS_LIBRARY_NAME, e))


@app.command()
@_command
@_model_options()
def infer(
    sources: List[str] = typer.Argument(..., metavar="SOURCES...", help="images, folders, globs, video files, "
                                        "a camera index (0), a stream URL (rtsp://..., http(s)://...) or a "
                                        "GStreamer pipeline in quotes ('nvarguscamerasrc ! ... ! appsink')."),
    model: "ModelSource" = None,  # --model, --cfg, --weights, ...: declared once, in _model_options
    conf: float = typer.Option(0.25, min=0.0, max=1.0, help="score threshold (objectness x class "
                               "probability, 0..1)."),
    iou: float = typer.Option(0.45, min=0.0, max=1.0, help="NMS threshold, 0..1 (DIoU for nms_kind=greedynms)."),
    max_det: int = typer.Option(300, min=1, help="maximum detections per image."),
    output_dir: Optional[Path] = typer.Option(None, help="where annotated images/videos are written "
                                              "[default: runs/infer, numbered]."),
    exist_ok: bool = typer.Option(False, "--exist-ok", help=EXIST_OK_HELP),
    no_save: bool = typer.Option(False, "--no-save", help="do not write annotated media."),
    save_json: Optional[Path] = typer.Option(None, help="write detections as JSON (bbox_xyxy in "
                                             "original-image pixels)."),
    threads: Optional[int] = typer.Option(None, min=1, help="ONNX Runtime threads [default: physical cores]."),
    batch: int = typer.Option(1, min=1, help="batch size: frames (or images) per inference "
                               "call, across sources."),
    vid_stride: int = typer.Option(1, min=1, help="process every N-th frame of videos, cameras and streams "
                                   "(frames)."),
    show: bool = typer.Option(False, "--show", help="show annotated frames in a window when a display "
                              "exists (q or Esc stops)."),
    save_jsonl: Optional[Path] = typer.Option(None, help="write detections as JSON lines, one object per "
                                              "image/frame: source, frame, time_s (seconds), detections."),
    reconnect: int = typer.Option(5, min=0, help="reopen attempts of a camera/stream that drops, with "
                                  "back-off from 0.5 s doubling to 8 s (0 = stop at once)."),
    no_fps_overlay: bool = typer.Option(False, "--no-fps-overlay", help="do not draw frames per second "
                                        "on videos and --show."),
    contexts: Optional[int] = typer.Option(None, min=1, metavar="N", help=CONTEXTS_HELP),
    cuda_graph: bool = typer.Option(False, "--cuda-graph", help=CUDA_GRAPH_HELP),
    preprocess: str = typer.Option("cpu", metavar="cpu|gpu", help=PREPROCESS_HELP),
):
    """Detect objects in images, folders, globs, videos, cameras, streams or GStreamer pipelines; prints a
    table, writes annotated media (Ctrl-C finishes the outputs written so far and exits 130)."""
    from .fileio import check_writable_file
    from .pipeline import run_infer

    preprocess = _check_preprocess(preprocess, model.engine)
    out_dir = None if no_save else _run_dir(output_dir, "runs/infer", exist_ok)
    if save_json:
        check_writable_file(save_json, "JSON output")
    if save_jsonl:
        check_writable_file(save_jsonl, "JSON lines output")
    be = model.open(threads, log=_log, contexts=contexts, cuda_graph=cuda_graph)
    results = run_infer(sources, be, conf=conf, iou_threshold=iou, max_det=max_det,
                        output_dir=str(out_dir) if out_dir is not None else None,
                        save_json=str(save_json) if save_json else None, log=_log, batch=batch,
                        vid_stride=vid_stride, show=show, save_jsonl=str(save_jsonl) if save_jsonl else None,
                        reconnect=reconnect, fps_overlay=not no_fps_overlay, preprocess_on=preprocess)
    for rec in results:
        where = rec["image"] + ("" if "frame" not in rec else " #%d" % rec["frame"])
        dets = ", ".join("%s %.2f" % (d["class_name"], d["score"]) for d in rec["detections"][:12])
        more = len(rec["detections"]) - 12
        typer.echo("%s: %d detection(s)%s%s" % (where, len(rec["detections"]), ": " + dets if dets else "",
                                                " (+%d more)" % more if more > 0 else ""))
    if out_dir is not None:
        typer.echo("annotated media: %s" % Path(out_dir).resolve())
    if save_json:
        typer.echo("detections JSON: %s" % Path(save_json).resolve())
    if save_jsonl:
        typer.echo("detections JSON lines: %s" % Path(save_jsonl).resolve())


@app.command(name="eval")
@_command
@_model_options()
def eval_(
    data: str = typer.Option(..., help="dataset: YAML, COCO json, VOC folder or known name (coco128, "
                             "raccoon, chess)."),
    model: "ModelSource" = None,  # --model, --cfg, --weights, ...: declared once, in _model_options
    conf: float = typer.Option(0.001, min=0.0, max=1.0, help="score threshold of the detections scored, "
                               "0..1 (low, so the precision/recall curve is complete)."),
    iou: float = typer.Option(0.45, min=0.0, max=1.0, help="NMS threshold, 0..1."),
    pr_conf: float = typer.Option(0.25, min=0.0, max=1.0, help="score threshold of the reported precision "
                                  "and recall (at IoU 0.5), 0..1."),
    match_names: bool = typer.Option(False, "--match-names", help="map the model's classes to the "
                                     "dataset's by name (other order, or a subset of the model's classes)."),
    batch: int = typer.Option(8, min=1, help="batch size: images per forward pass."),
    split: str = typer.Option("val", help="dataset split to evaluate (train, val, test)."),
    save_json: Optional[Path] = typer.Option(None, help="write the metrics as JSON."),
    threads: Optional[int] = typer.Option(None, min=1, help="ONNX Runtime threads [default: physical cores]."),
    contexts: Optional[int] = typer.Option(None, min=1, metavar="N", help=CONTEXTS_HELP),
    cuda_graph: bool = typer.Option(False, "--cuda-graph", help=CUDA_GRAPH_HELP),
    preprocess: str = typer.Option("cpu", metavar="cpu|gpu", help=PREPROCESS_HELP),
):
    """COCO mAP@[.5:.95] and mAP@.5 (pycocotools) on a labelled dataset, with per-class AP,
    precision and recall."""
    from .fileio import check_writable_file
    from .pipeline import run_eval

    preprocess = _check_preprocess(preprocess, model.engine)
    if save_json:
        check_writable_file(save_json, "JSON output")
    be = model.open(threads, log=_log, contexts=contexts, cuda_graph=cuda_graph)
    m = run_eval(data, be, conf=conf, iou_threshold=iou, batch=batch, split=split, match_names=match_names,
                 pr_conf=pr_conf, save_json=str(save_json) if save_json else None, log=_log,
                 preprocess_on=preprocess)
    summary = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.items() if k != "per_class"}
    typer.echo(json.dumps(summary))
    typer.echo("mAP@[.5:.95] %.4f   mAP@.5 %.4f   P %.3f R %.3f (score > %g, IoU .5)   (%s images, "
               "backend %s)" % (m["map50_95"], m["map50"], m["precision"], m["recall"], pr_conf,
                                m.get("num_images", "?"), be.name))


@app.command()
@_command
@_model_options(without=("names",))
def benchmark(
    model: "ModelSource" = None,  # --model, --cfg, --weights, ...: declared once, in _model_options
    batch: str = typer.Option("1", metavar="B1,B2,...", help="batch size: images per forward pass, "
                              "one or more comma-separated, each measured (e.g. 1,4,8); a fixed-batch "
                              "model is measured at its own batch only."),
    iterations: int = typer.Option(50, min=1, help="timed iterations per batch size (each one batch)."),
    warmup: int = typer.Option(5, min=0, help="untimed warm-up iterations per batch size before them."),
    end_to_end: bool = typer.Option(False, "--end-to-end", help="time JPEG decoding + preprocessing + "
                                    "forward + threshold/NMS per batch [default: the forward pass on a "
                                    "preprocessed batch only]."),
    images: Optional[Path] = typer.Option(None, help="folder of input images [default: darknet's sample "
                                          "images from $YOLO4_ASSET_MIRROR, else a synthetic image]."),
    threads: Optional[int] = typer.Option(None, min=1, help="ONNX Runtime threads [default: physical cores]."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="write the results as JSON (milliseconds "
                                             "per batch, ms per image, images per second)."),
    contexts: Optional[int] = typer.Option(None, min=1, metavar="N", help=CONTEXTS_HELP),
    cuda_graph: bool = typer.Option(False, "--cuda-graph", help=CUDA_GRAPH_HELP),
    preprocess: str = typer.Option("cpu", metavar="cpu|gpu", help=PREPROCESS_HELP + " With --end-to-end."),
):
    """Latency (mean, p50, p90, p99 in ms per batch) and throughput (images/s) per batch size:
    the backend's forward pass, or with --end-to-end JPEG decoding to detections."""
    from .fileio import atomic_write_text, check_writable_file
    from .runtime.benchmark import format_device, format_table, parse_batches, run_benchmark

    try:
        batches = parse_batches(batch)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--batch") from None
    preprocess = _check_preprocess(preprocess, model.engine)
    if json_path is not None:
        check_writable_file(json_path, "JSON output")
    be = model.open(threads, log=_log, contexts=contexts, cuda_graph=cuda_graph)
    with be:
        res = run_benchmark(be, batches, iterations=iterations, warmup=warmup, end_to_end=end_to_end,
                            images=str(images) if images is not None else None, threads=threads, log=_log,
                            preprocess_on=preprocess)
    typer.echo(format_device(res))
    typer.echo("input: %s; %d timed + %d warm-up iterations per batch size" % (res["input"], iterations, warmup))
    typer.echo(format_table(res))
    if json_path is not None:
        atomic_write_text(json_path, json.dumps(res, indent=2) + "\n")
        typer.echo("results JSON: %s" % json_path.resolve())


@app.command()
@_command
def selftest(
    engine: Optional[Path] = typer.Option(None, help="also compare this engine (from `yolo4 build-engine`) with "
                                          "its source ONNX on ONNX Runtime, on the sample images."),
    onnx: Optional[Path] = typer.Option(None, help="the engine's source ONNX, when it is not where the "
                                        "engine's metadata says."),
    device: int = typer.Option(0, min=0, help="CUDA device index."),
    cuda_graph: bool = typer.Option(False, "--cuda-graph", help="also run --engine with CUDA graphs; its line "
                                    "FAILs when no graph was captured and relaunched."),
):
    """Check this machine: CUDA, driver, TensorRT and pycuda versions, GPU and compute capability; build
    and run tiny engines (FP32, FP16, INT8, with the NMS plugins); the DIoU-NMS plugin against the numpy
    reference; GPU against CPU preprocessing; CUDA graphs. One PASS / FAIL / SKIP line per check; exit
    status 1 on any FAIL."""
    from .selftest import format_check, run_selftest

    if engine is not None and not engine.is_file():
        raise Yolo4Error("engine not found", engine)
    if onnx is not None and not onnx.is_file():
        raise Yolo4Error("ONNX model not found", onnx)
    checks = run_selftest(engine=str(engine) if engine else None, onnx=str(onnx) if onnx else None, device=device,
                          on_check=lambda c: typer.echo(format_check(c)), cuda_graph=cuda_graph)
    counts = {s: sum(c.status == s for c in checks) for s in ("PASS", "FAIL", "SKIP")}
    typer.echo("%d passed, %d failed, %d skipped" % (counts["PASS"], counts["FAIL"], counts["SKIP"]))
    if counts["FAIL"]:
        raise typer.Exit(1)


def main(argv: Optional[List[str]] = None) -> None:
    """Console-script entry point (typer's standalone mode: usage errors exit 2 with a usage line)."""
    args = sys.argv[1:] if argv is None else list(argv)
    if not args:  # the help, and exit 2 as a usage error: click >= 8.2 does so, 8.1 (Python 3.8) exits 0
        try:
            app(args=["--help"], prog_name="yolo4")
        except SystemExit:
            pass
        sys.exit(2)
    app(args=args, prog_name="yolo4")


if __name__ == "__main__":
    main(sys.argv[1:])
