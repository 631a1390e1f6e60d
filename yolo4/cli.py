"""``yolo4`` command line: one verb per job (train, export, infer, eval).

Thin by design: parses options, calls :mod:`yolo4.pipeline` / the library, and turns user errors
(:class:`yolo4.errors.Yolo4Error`) into a one-line ``error: ...`` on stderr with exit status 2.
``--verbose`` shows the traceback instead.
"""

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from . import __version__
from .errors import Yolo4Error

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
CKPT_HELP = "checkpoint .pt written by `yolo4 train` (holds cfg, names and weights)."
ONNX_HELP = "ONNX model written by `yolo4 export` (runs on --backend onnxruntime)."
BACKEND_HELP = "inference backend: onnxruntime (CPU, or CUDA when available) or torch."
IMG_HELP = "network input size in pixels, square, multiple of 32 [default: the cfg's [net] width/height]."
NAMES_HELP = "class-names file, one name per line [default: the checkpoint's, or COCO's for 80 classes]."


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


@app.command()
def train(
    cfg: str = typer.Option(..., help=CFG_HELP),
    data: str = typer.Option(..., help="dataset: YAML (path/train/val/names), COCO json, VOC folder, "
                             "or a known name (coco128, raccoon, chess; read from $YOLO4_ASSET_MIRROR)."),
    weights: Optional[str] = typer.Option(None, help="pretrained " + WEIGHTS_HELP + " Heads are re-made "
                                          "when the dataset's class count differs from the cfg's."),
    epochs: int = typer.Option(10, min=1, help="number of passes over the training split."),
    batch: int = typer.Option(8, min=1, help="images per optimizer step."),
    img_size: Optional[int] = typer.Option(None, help=IMG_HELP),
    output_dir: Path = typer.Option(Path("runs/train"), help="where last.pt, best.pt, best.weights, "
                                    "best.cfg and results.csv are written."),
    resume: bool = typer.Option(False, help="continue from OUTPUT_DIR/last.pt."),
    workers: int = typer.Option(2, min=0, help="data-loading worker processes."),
    lr: Optional[float] = typer.Option(None, help="initial learning rate per image batch "
                                       "[default: derived from the cfg's learning_rate]."),
    max_images: Optional[int] = typer.Option(None, min=1, help="use at most this many training images "
                                             "(quick runs)."),
    seed: int = typer.Option(0, help="random seed."),
):
    """Train (fine-tune) a darknet cfg on a dataset; writes checkpoints and darknet .weights."""
    from .trainer.train import train as run_train

    summary = run_train(cfg=cfg, data=data, weights=weights, epochs=epochs, batch_size=batch,
                        img_size=img_size, output_dir=str(output_dir), resume=resume, workers=workers,
                        lr=lr, max_images=max_images, seed=seed, log=_log)
    for key in ("best", "last", "weights", "cfg"):
        if summary.get(key):
            typer.echo("%-8s %s" % (key, summary[key]))


@app.command()
def export(
    output: Path = typer.Option(..., "--output", "-o", help="ONNX file to write."),
    cfg: Optional[str] = typer.Option(None, help=CFG_HELP),
    weights: Optional[str] = typer.Option(None, help=WEIGHTS_HELP),
    checkpoint: Optional[str] = typer.Option(None, help=CKPT_HELP),
    names: Optional[str] = typer.Option(None, help=NAMES_HELP),
    img_size: Optional[int] = typer.Option(None, help=IMG_HELP),
    batch: Optional[int] = typer.Option(None, min=1, help="fixed batch size [default: dynamic batch]."),
    fp16: bool = typer.Option(False, "--fp16", help="FP16 weights and compute, float32 inputs/outputs "
                              "(for TensorRT strongly typed builds)."),
    no_simplify: bool = typer.Option(False, "--no-simplify", help="skip onnxsim."),
    opset: int = typer.Option(17, help="ONNX opset. < 18: Mish as Softplus/Tanh/Mul (TensorRT 8.5 "
                              "parses it); >= 18: native Mish op."),
):
    """Export to ONNX: input `images` [B,3,H,W] RGB 0..1, outputs `boxes` [B,N,4] x1,y1,x2,y2 input
    pixels and `scores` [B,N,C]; checks ONNX Runtime against PyTorch."""
    from .convert.onnx_export import export_onnx
    from .pipeline import _hw, load_torch_model

    module = load_torch_model(cfg, weights, checkpoint, names, log=_log)
    res = export_onnx(module, output, img_size=_hw(img_size), batch=batch, fp16=fp16,
                      simplify=not no_simplify, opset=opset, log=_log)
    typer.echo("wrote %s (opset %d, Mish: %s, %s, %s)" % (
        res.path, res.opset, res.mish_mode, "dynamic batch" if batch is None else "fixed batch %d" % batch,
        "fp16" if fp16 else "fp32"))


@app.command()
def infer(
    sources: List[str] = typer.Argument(..., help="images, folders, globs or video files."),
    cfg: Optional[str] = typer.Option(None, help=CFG_HELP),
    weights: Optional[str] = typer.Option(None, help=WEIGHTS_HELP),
    checkpoint: Optional[str] = typer.Option(None, help=CKPT_HELP),
    onnx: Optional[str] = typer.Option(None, help=ONNX_HELP),
    backend: str = typer.Option("onnxruntime", help=BACKEND_HELP),
    names: Optional[str] = typer.Option(None, help=NAMES_HELP),
    img_size: Optional[int] = typer.Option(None, help=IMG_HELP),
    conf: float = typer.Option(0.25, min=0.0, max=1.0, help="score threshold (objectness x class "
                               "probability)."),
    iou: float = typer.Option(0.45, min=0.0, max=1.0, help="NMS threshold (DIoU for nms_kind=greedynms)."),
    max_det: int = typer.Option(300, min=1, help="maximum detections per image."),
    output_dir: Optional[Path] = typer.Option(Path("runs/infer"), help="where annotated images/videos "
                                              "are written."),
    no_save: bool = typer.Option(False, "--no-save", help="do not write annotated media."),
    save_json: Optional[Path] = typer.Option(None, help="write detections as JSON (bbox_xyxy in "
                                             "original-image pixels)."),
    threads: Optional[int] = typer.Option(None, min=1, help="ONNX Runtime threads [default: cores]."),
):
    """Detect objects in images, folders, globs or videos; prints a table, writes annotated media."""
    from .pipeline import open_backend, run_infer

    be = open_backend(backend, cfg, weights, checkpoint, onnx, img_size, names, threads, log=_log)
    out_dir = None if no_save else str(output_dir)
    results = run_infer(sources, be, conf=conf, iou=iou, max_det=max_det, output_dir=out_dir,
                        save_json=str(save_json) if save_json else None, log=_log)
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


@app.command(name="eval")
def eval_(
    data: str = typer.Option(..., help="dataset: YAML, COCO json, VOC folder or known name (coco128, "
                             "raccoon, chess)."),
    cfg: Optional[str] = typer.Option(None, help=CFG_HELP),
    weights: Optional[str] = typer.Option(None, help=WEIGHTS_HELP),
    checkpoint: Optional[str] = typer.Option(None, help=CKPT_HELP),
    onnx: Optional[str] = typer.Option(None, help=ONNX_HELP),
    backend: str = typer.Option("onnxruntime", help=BACKEND_HELP),
    names: Optional[str] = typer.Option(None, help=NAMES_HELP),
    img_size: Optional[int] = typer.Option(None, help=IMG_HELP),
    conf: float = typer.Option(0.001, min=0.0, max=1.0, help="score threshold."),
    iou: float = typer.Option(0.45, min=0.0, max=1.0, help="NMS threshold."),
    batch: int = typer.Option(8, min=1, help="images per forward pass."),
    split: str = typer.Option("val", help="dataset split to evaluate (train, val, test)."),
    save_json: Optional[Path] = typer.Option(None, help="write the metrics as JSON."),
    threads: Optional[int] = typer.Option(None, min=1, help="ONNX Runtime threads [default: cores]."),
):
    """COCO mAP@[.5:.95] and mAP@.5 (pycocotools) on a labelled dataset."""
    from .pipeline import open_backend, run_eval

    be = open_backend(backend, cfg, weights, checkpoint, onnx, img_size, names, threads, log=_log)
    m = run_eval(data, be, conf=conf, iou=iou, batch=batch, split=split,
                 save_json=str(save_json) if save_json else None, log=_log)
    typer.echo(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.items()}))
    typer.echo("mAP@[.5:.95] %.4f   mAP@.5 %.4f   (%s images, backend %s)"
               % (m["map50_95"], m["map50"], m.get("num_images", "?"), backend))


def main(argv: Optional[List[str]] = None) -> None:
    """Console-script entry point: runs the typer app, mapping user errors to exit status 2."""
    try:
        app(args=argv, standalone_mode=False)
    except Yolo4Error as e:
        if _state["verbose"]:
            raise
        typer.echo("error: %s" % e, err=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as e:  # click usage errors carry their own exit code
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, click.exceptions.Exit):
            sys.exit(e.exit_code)
        raise


if __name__ == "__main__":
    main()
