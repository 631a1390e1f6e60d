"""The `yolo4` command as users run it: a real subprocess, exit codes, one-line errors, outputs."""

import json
import re

import pytest

from .conftest import assert_usage_error, assert_user_error, run_cli


@pytest.mark.parametrize("cmd", ["train", "export", "infer", "eval"])
def test_help_states_units_and_defaults(cmd):
    p = run_cli(cmd, "--help", env={"COLUMNS": "200"})
    assert p.returncode == 0, p.stderr
    assert "pixels" in p.stdout
    if cmd in ("infer", "eval"):
        assert "default: 0.45" in p.stdout  # NMS threshold default shown


#: every command with --batch and what one batch is there (its unit first)
BATCH_MEANINGS = {"train": "images per optimizer step", "export": "images per forward pass, fixed in the ONNX",
                  "build-engine": "images per forward pass, the optimization profile's MIN,OPT,MAX",
                  "infer": "frames (or images) per inference call", "eval": "images per forward pass",
                  "benchmark": "images per forward pass, one or more comma-separated"}


def _option_help(help_text: str, option: str) -> str:
    """The help of ``option`` in a click ``--help`` page, its wrapped lines joined."""
    parts, keep = [], False
    for line in help_text.splitlines():
        if line.startswith("  -"):  # "  --name METAVAR  help..." (the help may start on the next line)
            keep = line.split()[0] == option
            line = "".join(re.split(r" {2,}", line.strip(), maxsplit=1)[1:])
        if keep:
            parts.append(line)
    return " ".join(" ".join(parts).split())


def test_every_batch_option_is_in_the_help_pattern_list():
    import typer

    from yolo4.cli import app
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    with_batch = {name for name, cmd in commands.items() if any("--batch" in p.opts for p in cmd.params)}
    assert with_batch == set(BATCH_MEANINGS)


@pytest.mark.parametrize("cmd", sorted(BATCH_MEANINGS))
def test_batch_help_follows_one_pattern(cmd):
    """``--batch`` means one thing per command, said the same way: ``batch size: <unit> per <what>
    [default: ...]``."""
    p = run_cli(cmd, "--help")
    assert p.returncode == 0, p.stderr
    text = _option_help(p.stdout, "--batch")
    assert re.match(r"batch size: (images|frames) ", text), text
    assert text.startswith("batch size: " + BATCH_MEANINGS[cmd]), text
    assert re.search(r"\[default: [^\]]+\]", text), text


def test_top_level_help_and_version():
    p = run_cli("--help")
    assert p.returncode == 0 and "train" in p.stdout and "YOLO4_ASSET_MIRROR" in p.stdout
    v = run_cli("--version")
    assert v.returncode == 0 and v.stdout.startswith("yolo4 ")


def test_missing_cfg_file(tmp_path):
    missing = tmp_path / "nope.cfg"
    assert_user_error(run_cli("export", "--cfg", missing, "--output", tmp_path / "m.onnx"), str(missing))
    assert not (tmp_path / "m.onnx").exists()


def test_unknown_model_name(tmp_path):
    assert_user_error(run_cli("export", "--cfg", "yolov9-imaginary", "--output", tmp_path / "m.onnx"),
                      "yolov9-imaginary")


def test_unknown_cfg_section_names_file_and_line(tmp_path):
    cfg = tmp_path / "bad.cfg"
    cfg.write_text("[net]\nwidth=64\nheight=64\nchannels=3\n\n[convolutional]\nfilters=8\nsize=3\n"
                   "stride=1\npad=1\nactivation=leaky\n\n[reorgx]\nstride=2\n")
    assert_user_error(run_cli("export", "--cfg", cfg, "--output", tmp_path / "m.onnx"), "%s:13" % cfg)


def test_bad_activation_names_file_and_line(tmp_path):
    cfg = tmp_path / "bad.cfg"
    cfg.write_text("[net]\nwidth=64\nheight=64\nchannels=3\n\n[convolutional]\nfilters=8\nsize=3\n"
                   "stride=1\npad=1\nactivation=sparkle\n")
    assert_user_error(run_cli("export", "--cfg", cfg, "--output", tmp_path / "m.onnx"), "%s:11" % cfg)


def test_truncated_weights_names_sizes(shared_data, tmp_path):
    src = shared_data / "weights" / "yolov4-tiny.weights"
    bad = tmp_path / "trunc.weights"
    bad.write_bytes(src.read_bytes()[:1_000_000])
    line = assert_user_error(run_cli("export", "--cfg", shared_data / "darknet/cfg/yolov4-tiny.cfg",
                                     "--weights", bad, "--output", tmp_path / "m.onnx"), str(bad))
    assert "24251276" in line.replace(",", "") and "1000000" in line.replace(",", "")
    assert not (tmp_path / "m.onnx").exists()


def test_onnx_without_metadata(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 32, 32])
    model = helper.make_model(helper.make_graph([helper.make_node("Identity", ["images"], ["out"])], "g", [x], [y]))
    path = tmp_path / "plain.onnx"
    onnx.save(model, str(path))
    img = tmp_path / "a.png"
    import cv2
    import numpy as np

    cv2.imwrite(str(img), np.zeros((8, 8, 3), np.uint8))
    assert_user_error(run_cli("infer", img, "--onnx", path, "--no-save"), str(path))


def test_only_corrupt_input_is_an_error(tmp_path, shared_data):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    p = run_cli("infer", bad, "--cfg", "yolov4-tiny", "--weights", "yolov4-tiny", "--backend", "torch",
                "--no-save", "--save-json", tmp_path / "d.json")
    assert_user_error(p, str(bad))
    assert not (tmp_path / "d.json").exists()


def test_infer_real_weights_dog_onnxruntime(shared_data, tmp_path):
    """Acceptance: real yolov4-tiny on dog.jpg at 416 finds dog, truck and bicycle (reference figures
    measured with OpenCV's darknet importer: 0.87, 0.82, 0.61); a corrupt image beside it is skipped."""
    dog = shared_data / "darknet" / "images" / "dog.jpg"
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"garbage")
    out = tmp_path / "out"
    js = tmp_path / "dets.json"
    p = run_cli("infer", dog, bad, "--cfg", "yolov4-tiny", "--weights", "yolov4-tiny", "--img-size", "416",
                "--output-dir", out, "--save-json", js)
    assert p.returncode == 0, p.stderr
    assert "broken.jpg" in p.stderr and "Traceback" not in p.stderr
    data = json.loads(js.read_text())
    assert [d["image"] for d in data] == [str(dog)]
    dets = data[0]["detections"]
    best = {}
    for d in dets:
        best[d["class_name"]] = max(best.get(d["class_name"], 0), d["score"])
        x1, y1, x2, y2 = d["bbox_xyxy"]
        assert 0 <= x1 < x2 <= 768 and 0 <= y1 < y2 <= 576  # dog.jpg is 768x576: original pixels
    for name, ref in (("dog", 0.87), ("truck", 0.82), ("bicycle", 0.61)):
        assert abs(best[name] - ref) < 0.02, (name, best)
    dog_box = next(d["bbox_xyxy"] for d in dets if d["class_name"] == "dog")
    assert dog_box[0] < 384 and dog_box[1] > 200  # the dog sits bottom-left in darknet's sample
    assert (out / "dog.jpg").is_file()
    assert "dog 0.87" in p.stdout


def test_eval_reports_bad_labels_with_file_and_line(shared_data, tmp_path):
    root = tmp_path / "ds"
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    src = shared_data / "darknet" / "images" / "dog.jpg"
    (root / "images" / "val" / "dog.jpg").write_bytes(src.read_bytes())
    (root / "labels" / "val" / "dog.txt").write_text("16 0.3 0.6 0.3 0.5\n85 0.5 0.5 0.1 0.1\n1 0.5 0.5 0 0.2\n")
    yaml = root / "data.yaml"
    from yolo4.data.names import COCO_NAMES

    yaml.write_text("path: %s\ntrain: images/val\nval: images/val\nnames: %s\n"
                    % (root, json.dumps(list(COCO_NAMES))))
    p = run_cli("eval", "--data", yaml, "--cfg", "yolov4-tiny", "--weights", "yolov4-tiny", "--backend", "torch",
                "--img-size", "320", "--save-json", tmp_path / "m.json")
    assert p.returncode == 0, p.stderr
    assert "dog.txt:2" in p.stderr and "dog.txt:3" in p.stderr
    m = json.loads((tmp_path / "m.json").read_text())
    assert 0.0 <= m["map50_95"] <= m["map50"] <= 1.0


def test_infer_video_writes_annotated_video_and_frames(shared_data, tmp_path):
    import cv2
    import numpy as np

    im = cv2.imread(str(shared_data / "darknet" / "images" / "dog.jpg"))
    src = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"MJPG"), 10, (im.shape[1], im.shape[0]))
    for i in range(4):
        w.write(np.roll(im, 8 * i, axis=1))
    w.release()
    out, js = tmp_path / "out", tmp_path / "d.json"
    p = run_cli("infer", src, "--cfg", "yolov4-tiny", "--weights", "yolov4-tiny", "--output-dir", out,
                "--save-json", js)
    assert p.returncode == 0, p.stderr
    recs = json.loads(js.read_text())
    assert [r["frame"] for r in recs] == [0, 1, 2, 3]
    assert all("dog" in {d["class_name"] for d in r["detections"]} for r in recs)
    cap = cv2.VideoCapture(str(out / "clip.mp4"))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 4 and cap.get(cv2.CAP_PROP_FPS) == 10
    cap.release()
    assert sorted(x.name for x in out.iterdir()) == ["clip.mp4"]  # no temp file left behind


def test_verbose_shows_traceback(tmp_path):
    p = run_cli("--verbose", "export", "--cfg", tmp_path / "nope.cfg", "--output", tmp_path / "m.onnx")
    assert p.returncode != 0 and "Traceback" in p.stderr and "nope.cfg" in p.stderr


def test_unknown_backend_and_dataset(tmp_path):
    assert_user_error(run_cli("infer", "x.jpg", "--cfg", "yolov4-tiny", "--backend", "tensorflow"), "tensorflow")
    assert_user_error(run_cli("eval", "--data", tmp_path / "none.yaml", "--cfg", "yolov4-tiny", "--backend",
                              "torch"), "none.yaml")


@pytest.mark.slow
def test_eval_coco128_torch_and_onnxruntime_agree(shared_data, tmp_path):
    """Acceptance: mAP of the real yolov4-tiny on coco128 at 416 (conf 0.001, DIoU-NMS 0.45) through
    `yolo4 eval` agrees within 0.001 between the torch and onnxruntime backends."""
    res = {}
    for backend in ("torch", "onnxruntime"):
        js = tmp_path / (backend + ".json")
        p = run_cli("eval", "--data", "coco128", "--cfg", "yolov4-tiny", "--weights", "yolov4-tiny",
                    "--img-size", "416", "--backend", backend, "--save-json", js)
        assert p.returncode == 0, p.stderr
        res[backend] = json.loads(js.read_text())
        assert res[backend]["num_images"] == 128
    print("coco128 yolov4-tiny 416:", {b: (m["map50_95"], m["map50"]) for b, m in res.items()})
    for key in ("map50_95", "map50"):
        assert abs(res["torch"][key] - res["onnxruntime"][key]) < 0.001
    # a real detector, not noise: the official tiny model scores well above chance on COCO images
    assert res["torch"]["map50"] > 0.3


# ---------------------------------------------------------------- usage errors of the installed command


@pytest.mark.parametrize("args, needle", [
    ((), "Commands"),
    (("frob",), "No such command"),
    (("infer",), "Missing argument"),
    (("infer", "x.jpg", "--bogus"), "No such option"),
    (("infer", "x.jpg", "--conf", "2"), "--conf"),
    (("eval",), "Missing option '--data'"),
    (("export", "--cfg", "yolov4-tiny"), "Missing option '--output'"),
    (("train", "--epochs", "0"), "--epochs"),
])
def test_console_script_usage_errors_exit_2(args, needle):
    """The installed `yolo4` script (not `python -m`): usage message, exit 2, never a traceback."""
    assert_usage_error(run_cli(*args, script=True), needle)


# ---------------------------------------------------------------- outputs checked before the work


def test_unwritable_outputs_fail_before_the_model_loads(tmp_path):
    """Each output problem is reported before the (missing) model is even looked at."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should go")
    missing_cfg = tmp_path / "missing.cfg"
    assert_user_error(run_cli("infer", "x.jpg", "--cfg", missing_cfg, "--output-dir", blocker / "out"),
                      "blocker", "file is in the way")
    assert_user_error(run_cli("infer", "x.jpg", "--cfg", missing_cfg, "--no-save", "--save-json", tmp_path),
                      "is a folder")
    assert_user_error(run_cli("eval", "--data", "coco128", "--cfg", missing_cfg, "--save-json",
                              blocker / "m.json"), "blocker")
    assert_user_error(run_cli("train", "--cfg", missing_cfg, "--data", "coco128", "--output-dir",
                              blocker / "run"), "blocker")
    assert_user_error(run_cli("export", "--cfg", missing_cfg, "--output", tmp_path), "is a folder")
    assert blocker.read_text() == "a file where a folder should go"


# ---------------------------------------------------------------- numbered run folders, unique outputs


def test_run_folders_are_numbered_and_same_names_do_not_overwrite(shared_data, tmp_path):
    dog = shared_data / "darknet" / "images" / "dog.jpg"
    other = tmp_path / "other"
    other.mkdir()
    (other / "dog.jpg").symlink_to(shared_data / "darknet" / "images" / "horses.jpg")
    args = ("--cfg", "yolov4-tiny", "--weights", "yolov4-tiny", "--img-size", "320", "--backend", "torch")
    p1 = run_cli("infer", dog, other / "dog.jpg", *args, cwd=tmp_path)
    assert p1.returncode == 0, p1.stderr
    first = sorted(x.name for x in (tmp_path / "runs" / "infer").iterdir())
    assert first == ["dog.jpg", "dog_2.jpg"]
    assert "Speed:" in p1.stdout and "ms inference" in p1.stdout
    p2 = run_cli("infer", dog, *args, cwd=tmp_path)
    assert p2.returncode == 0, p2.stderr
    assert (tmp_path / "runs" / "infer2" / "dog.jpg").is_file()
    assert sorted(x.name for x in (tmp_path / "runs" / "infer").iterdir()) == first
    p3 = run_cli("infer", dog, *args, "--exist-ok", cwd=tmp_path)
    assert p3.returncode == 0 and not (tmp_path / "runs" / "infer3").exists()


# ---------------------------------------------------------------- class names never go missing


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_offline_local_cfg_weights_get_coco_names(shared_data, tmp_path, backend):
    """An air-gapped user with only darknet's two files (no mirror, no network) sees real names."""
    (tmp_path / "yolov4-tiny.cfg").symlink_to(shared_data / "darknet" / "cfg" / "yolov4-tiny.cfg")
    (tmp_path / "yolov4-tiny.weights").symlink_to(shared_data / "weights" / "yolov4-tiny.weights")
    dog = shared_data / "darknet" / "images" / "dog.jpg"
    env = {"YOLO4_OFFLINE": "1", "YOLO4_ASSET_MIRROR": None, "YOLO4_CACHE_DIR": tmp_path / "cache"}
    p = run_cli("infer", dog, "--cfg", "./yolov4-tiny.cfg", "--weights", "./yolov4-tiny.weights", "--backend",
                backend, "--no-save", env=env, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    for name in ("dog 0.8", "truck 0.8", "bicycle 0.6"):
        assert name in p.stdout, p.stdout
    assert "class16" not in p.stdout and "warning" not in p.stderr


def test_generic_names_warn_once_and_names_option_fixes_it(tmp_path):
    cfg = tmp_path / "two.cfg"
    cfg.write_text("[net]\nwidth=64\nheight=64\nchannels=3\n\n[convolutional]\nfilters=8\nsize=3\nstride=2\n"
                   "pad=1\nactivation=leaky\n\n[convolutional]\nfilters=21\nsize=1\nstride=1\nactivation=linear\n\n"
                   "[yolo]\nmask=0,1,2\nanchors=10,14, 23,27, 37,58\nclasses=2\nnum=3\n")
    import cv2
    import numpy as np

    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.full((64, 64, 3), 127, np.uint8))
    p = run_cli("infer", img, "--cfg", cfg, "--backend", "torch", "--no-save", "--conf", "0.0001")
    assert p.returncode == 0, p.stderr
    warns = [ln for ln in p.stderr.splitlines() if "--names" in ln]
    assert len(warns) == 1 and warns[0].startswith("warning:")
    names = tmp_path / "two.names"
    names.write_text("cat\ndog\n")
    q = run_cli("infer", img, "--cfg", cfg, "--backend", "torch", "--no-save", "--conf", "0.0001",
                "--names", names)
    assert q.returncode == 0 and "--names" not in q.stderr
    assert "class0" not in q.stdout and ("cat" in q.stdout or "dog" in q.stdout)
    bad = tmp_path / "three.names"
    bad.write_text("a\nb\nc\n")
    assert_user_error(run_cli("infer", img, "--cfg", cfg, "--backend", "torch", "--no-save", "--names", bad),
                      "three.names")


def _permuted_coco128_subset(shared_data, root, n, perm):
    """The first ``n`` labelled coco128 images (symlinked) with class ids relabelled ``k -> perm[k]``
    and names listed in that order, so the labels mean exactly what they meant before."""
    from yolo4.data.names import COCO_NAMES

    img_dir, lab_dir = root / "images", root / "labels"
    img_dir.mkdir(parents=True)
    lab_dir.mkdir()
    src_labels = sorted((shared_data / "coco128" / "labels" / "train2017").glob("*.txt"))[:n]
    for lab in src_labels:
        img = shared_data / "coco128" / "images" / "train2017" / (lab.stem + ".jpg")
        (img_dir / img.name).symlink_to(img)
        lines = []
        for ln in lab.read_text().splitlines():
            parts = ln.split()
            if parts:
                lines.append(" ".join([str(perm[int(parts[0])])] + parts[1:]))
        (lab_dir / lab.name).write_text("\n".join(lines) + "\n")
    names = [None] * 80
    for k, name in enumerate(COCO_NAMES):
        names[perm[k]] = name
    yaml = root / "data.yaml"
    yaml.write_text("path: %s\ntrain: images\nval: images\nnames: %s\n" % (root, json.dumps(names)))
    return yaml


def test_eval_refuses_classes_in_another_order_and_maps_them_by_name(shared_data, tmp_path):
    """BCCD-style mistake: a dataset whose class list is the model's in another order scores silently
    wrong today. It is refused; with --match-names it scores exactly like the identity order."""
    ident = _permuted_coco128_subset(shared_data, tmp_path / "ident", 12, list(range(80)))
    perm = list(range(80))[::-1]
    rev = _permuted_coco128_subset(shared_data, tmp_path / "rev", 12, perm)
    model = ("--cfg", "yolov4-tiny", "--weights", "yolov4-tiny", "--img-size", "320", "--backend", "torch")
    assert_user_error(run_cli("eval", "--data", rev, *model), "another order", "--match-names")
    res = {}
    for tag, yaml, extra in (("ident", ident, ()), ("rev", rev, ("--match-names",))):
        js = tmp_path / (tag + ".json")
        p = run_cli("eval", "--data", yaml, *model, *extra, "--save-json", js)
        assert p.returncode == 0, p.stderr
        res[tag] = json.loads(js.read_text())
        assert "AP50-95" in p.stdout and "Speed:" in p.stdout  # per-class table and speed line
    assert res["ident"]["map50"] > 0.2
    for k in ("map50_95", "map50", "precision", "recall"):
        assert res["rev"][k] == pytest.approx(res["ident"][k], abs=1e-9), k


def test_checkpoint_runs_at_its_training_size_by_default(shared_data, tmp_path):
    """A checkpoint trained at 160 px is evaluated and run at 160 px unless --img-size says otherwise
    (not at the cfg's 416)."""
    import torch

    from yolo4.model import load_darknet
    from yolo4.trainer.checkpoint import make_checkpoint, save_checkpoint

    model = load_darknet(shared_data / "darknet/cfg/yolov4-tiny.cfg", shared_data / "weights/yolov4-tiny.weights")
    from yolo4.data.names import COCO_NAMES

    ck = tmp_path / "best.pt"
    save_checkpoint(make_checkpoint(model, list(COCO_NAMES), epoch=1, best_fitness=0.0,
                                    train_args={"img_size": [160, 160]}), ck)
    assert torch.load(ck, weights_only=True)["train_args"]["img_size"] == [160, 160]
    dog = shared_data / "darknet" / "images" / "dog.jpg"
    for backend in ("torch", "onnxruntime"):
        p = run_cli("infer", dog, "--checkpoint", ck, "--backend", backend, "--no-save")
        assert p.returncode == 0, p.stderr
        assert "at 160x160" in p.stdout, p.stdout
    q = run_cli("infer", dog, "--checkpoint", ck, "--backend", "torch", "--no-save", "--img-size", "320")
    assert q.returncode == 0 and "at 320x320" in q.stdout


def test_model_options_must_match_the_model_file(tmp_path):
    """Each model option names its form; a mismatch is one line before anything loads."""
    onnx_file, weights = tmp_path / "m.onnx", tmp_path / "m.weights"
    onnx_file.write_bytes(b"not read")
    weights.write_bytes(b"not read")
    assert_user_error(run_cli("infer", "x.jpg", "--checkpoint", onnx_file, "--no-save"),
                      "m.onnx", "--checkpoint expects a yolo4 checkpoint")
    assert_user_error(run_cli("infer", "x.jpg", "--checkpoint", weights, "--no-save"), "give it as --weights")
    assert_user_error(run_cli("infer", "x.jpg", "--cfg", "yolov4-tiny", "--onnx", onnx_file, "--no-save"),
                      "give one model")
    assert_user_error(run_cli("infer", "x.jpg", "--onnx", onnx_file, "--backend", "torch", "--no-save"),
                      "runs on --backend onnxruntime")
