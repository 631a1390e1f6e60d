"""Which darknet cfgs with a ``[yolo]`` build and run, and how close they come to OpenCV's importer.

Usage::

    python benchmarks/model_zoo.py CFG_DIR [--size 160] [--native] [--no-opencv] [--only NAME ...]

``CFG_DIR`` is a folder of darknet ``.cfg`` files (e.g. AlexeyAB darknet's ``cfg/`` extracted to /tmp);
every file holding a ``[yolo]`` section is tried. Per cfg the table gives:

- ``build``: the cfg parses and builds (``ok``, or the one-line CfgError);
- ``run``: a forward pass at ``--size`` (rounded up to a multiple of the network's stride; ``--native``
  uses the cfg's ``[net]`` size) on random weights: seconds, or the error;
- ``opencv``: the same random weights written as a darknet ``.weights`` file through
  :func:`yolo4.model.save_darknet_weights`, read by ``cv2.dnn.readNetFromDarknet``, and the raw
  ``[yolo]`` inputs compared: max abs difference and max difference relative to the head's largest
  value (our batch-norm epsilon set to OpenCV's 1e-6, see tests/test_model_opencv.py), or why not
  (OpenCV reads no ``share_index``: it gets a file with the shared values repeated per conv; it
  ignores ``dilation``: cfgs with dilated convs are compared with dilation 1 in our model too, marked
  ``(dilation off)``).

Random weights: He-normal kernels, batch-norm gamma ~1 and beta ~0 with running statistics taken
from the activations of the input itself, so that deep models neither vanish nor explode.
Prints a markdown table and the totals (built N/total, ran, compared with OpenCV M).
"""

import argparse
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from yolo4.model import Darknet, load_darknet, save_darknet_weights
from yolo4.model.weights import random_weights


def _with_size(text: str, size: int) -> str:
    text = re.sub(r"(?m)^\s*width\s*=.*$", f"width={size}", text, count=1)
    return re.sub(r"(?m)^\s*height\s*=.*$", f"height={size}", text, count=1)


def opencv_heads(cfg: Path, weights: Path, blob: np.ndarray) -> List[np.ndarray]:
    """The raw input of every ``[yolo]`` in OpenCV's net (the layer before the permute of each yolo_N)."""
    import cv2

    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    if hasattr(net, "enableWinograd"):
        net.enableWinograd(False)
    names = list(net.getLayerNames())
    yolos = sorted((n for n in names if n.startswith("yolo_")), key=lambda n: int(n.split("_")[1]))
    feeds = [names[names.index(y) - 2] for y in yolos]
    net.setInput(blob)
    return list(net.forward(feeds))


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    m = re.search(r"error: \([^)]*\) (.*?) in function", text)
    line = m.group(1) if m else (text.splitlines() or [type(e).__name__])[0]
    return re.sub(r"\s+", " ", line)[:110]


@torch.no_grad()
def opencv_weights_bytes(model: Darknet) -> bytes:
    """The .weights bytes OpenCV's importer expects: as :func:`save_darknet_weights`, but a conv with
    ``share_index`` gets a record of its own (OpenCV ignores ``share_index`` and reads one per conv),
    holding the shared values."""
    import struct

    from yolo4.model.cfg import ConvSpec, ShortcutSpec
    from yolo4.model.weights import conv_arrays

    parts = [struct.pack("<3iQ", 0, 2, 5, 0)]
    for sp in model.specs:
        if isinstance(sp, ShortcutSpec) and sp.num_weights():
            parts.append(model.layers[sp.index].weight.detach().numpy().astype("<f4").tobytes())
        elif isinstance(sp, ConvSpec):
            rec = conv_arrays(model.layers[sp.index])
            keys = ("bias", "scale", "mean", "var", "weight") if sp.batch_normalize else ("bias", "weight")
            parts.extend(rec[k].detach().numpy().astype("<f4").tobytes() for k in keys)
    return b"".join(parts)


def run_one(cfg: Path, size: Optional[int], opencv: bool, tmp: Path) -> Dict[str, str]:
    row = {"cfg": cfg.name, "build": "", "size": "", "run": "", "opencv": "", "abs": "", "rel": ""}
    text = cfg.read_text(encoding="utf-8", errors="replace")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = Darknet(text=text, path=str(cfg), init=False)
        if size is not None:
            s = model.stride
            side = max(s, -(-size // s) * s)
            text = _with_size(text, side)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = Darknet(text=text, path=str(cfg), init=False)
        row["build"] = "ok"
    except Exception as e:  # noqa: BLE001 - the table reports every failure
        row["build"] = _first_line(e)
        return row
    h, w = model.input_hw
    row["size"] = f"{h}x{w}"
    rng = np.random.default_rng(0)
    small = rng.random((1, 3, max(1, h // 8), max(1, w // 8)), dtype=np.float32)
    blob = torch.nn.functional.interpolate(torch.from_numpy(small), size=(h, w), mode="bilinear",
                                           align_corners=False).clamp(0, 1).contiguous()
    try:
        random_weights(model, blob)
        t0 = time.perf_counter()
        with torch.no_grad():
            model(blob, raw=True)
        row["run"] = f"{time.perf_counter() - t0:.2f}s"
    except Exception as e:  # noqa: BLE001
        row["run"] = _first_line(e)
        return row
    if not opencv:
        row["opencv"] = "skipped"
        return row
    try:
        import cv2  # noqa: F401
    except ImportError:
        row["opencv"] = "no cv2"
        return row
    path = tmp / cfg.name
    path.write_text(text, encoding="utf-8")
    weights = save_darknet_weights(model, tmp / (cfg.stem + ".weights"))
    cv_weights = weights
    if any(getattr(sp, "share_index", None) is not None for sp in model.specs):
        cv_weights = tmp / (cfg.stem + ".opencv.weights")
        cv_weights.write_bytes(opencv_weights_bytes(model))
    try:
        ref = opencv_heads(path, cv_weights, blob.numpy())
    except Exception as e:  # noqa: BLE001
        row["opencv"] = "opencv: " + _first_line(e)
        return row
    ours_model = load_darknet(path, weights)
    for m in ours_model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eps = 1e-6
    dilated = [blk for blk in ours_model.conv_layers if blk.spec.dilation > 1]
    for blk in dilated:  # OpenCV's importer ignores `dilation`: compare the rest with it off in both
        blk.conv.dilation = (1, 1)
        blk.conv.padding = (blk.spec.padding // blk.spec.dilation,) * 2
    with torch.no_grad():
        ours = [t.numpy() for t in ours_model(blob, raw=True)]
    if len(ref) != len(ours) or any(r.shape != o.shape for r, o in zip(ref, ours)):
        row["opencv"] = f"heads differ: {[r.shape for r in ref]} vs {[o.shape for o in ours]}"
        return row
    abs_d = max(float(np.abs(r - o).max()) for r, o in zip(ref, ours))
    rel_d = max(float(np.abs(r - o).max() / max(np.abs(r).max(), 1e-30)) for r, o in zip(ref, ours))
    row["opencv"] = ("ok" if rel_d < 1e-3 else "DIFFERS") + (" (dilation off)" if dilated else "")
    row["abs"], row["rel"] = f"{abs_d:.2e}", f"{rel_d:.2e}"
    return row


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cfg_dir", type=Path)
    ap.add_argument("--size", type=int, default=160, help="input side (rounded up to the stride)")
    ap.add_argument("--native", action="store_true", help="run at each cfg's [net] size")
    ap.add_argument("--no-opencv", action="store_true", help="skip the OpenCV comparison")
    ap.add_argument("--only", nargs="*", help="cfg names (stems) to try")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfgs = sorted(p for p in args.cfg_dir.glob("*.cfg")
                  if re.search(r"(?m)^\s*\[yolo\]", p.read_text(encoding="utf-8", errors="replace")))
    if args.only:
        cfgs = [p for p in cfgs if p.stem in set(args.only)]
    rows = []
    with tempfile.TemporaryDirectory() as td:
        for cfg in cfgs:
            row = run_one(cfg, None if args.native else args.size, not args.no_opencv, Path(td))
            rows.append(row)
            print(f"# {row['cfg']}: {row['build']} | {row['run']} | {row['opencv']} {row['rel']}",
                  file=sys.stderr, flush=True)
    cols = ["cfg", "build", "size", "run", "opencv", "abs", "rel"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(r[c] for c in cols) + " |")
    n = len(rows)
    built = sum(r["build"] == "ok" for r in rows)
    ran = sum(r["run"].endswith("s") and r["run"][:-1].replace(".", "").isdigit() for r in rows)
    compared = sum(r["opencv"].startswith("ok") for r in rows)
    print(f"\nbuilt {built}/{n}, ran {ran}/{n}, matched OpenCV {compared}/{n} "
          f"(relative difference < 1e-3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
