"""The model is named once: ``--model PATH`` (the form from the suffix) and its older spellings
(``--cfg``/``--weights``, ``--checkpoint``, ``--onnx``, ``--engine``) resolve to one
:class:`yolo4.pipeline.ModelSource`, declared once for infer, eval, benchmark and export."""

import pytest
import typer
from typer.testing import CliRunner

from yolo4.cli import app
from yolo4.errors import CfgError, ModelFileError, WeightsError, Yolo4Error
from yolo4.pipeline import ModelSource, open_backend

from .conftest import assert_user_error, run_cli

#: each command's arguments up to the model options (nothing before ``model.open`` needs a file)
COMMANDS = {"infer": ["infer", "x.jpg", "--no-save"], "eval": ["eval", "--data", "d.yaml"],
            "benchmark": ["benchmark"]}
MODEL_OPTIONS = ("--model", "--cfg", "--weights", "--checkpoint", "--onnx", "--engine", "--backend",
                 "--names", "--img-size")


class _Opened(Exception):
    pass


def _source_of(monkeypatch, *args) -> ModelSource:
    """The ModelSource a command line hands to ``ModelSource.open`` (in process; nothing is opened)."""
    seen = []

    def fake_open(self, *a, **kw):
        seen.append(self)
        raise _Opened

    monkeypatch.setattr(ModelSource, "open", fake_open)
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert seen and isinstance(result.exception, _Opened), result.output
    return seen[0]


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("path, option", [("m.onnx", "--onnx"), ("m.engine", "--engine"), ("m.plan", "--engine"),
                                          ("m.pt", "--checkpoint"), ("m.pth", "--checkpoint"),
                                          ("M.ONNX", "--onnx"), ("m.cfg", "--cfg"), ("yolov4-tiny", "--cfg")])
def test_model_is_its_older_option(monkeypatch, command, path, option):
    args = COMMANDS[command]
    new = _source_of(monkeypatch, *args, "--model", path, "--img-size", "320")
    old = _source_of(monkeypatch, *args, option, path, "--img-size", "320")
    assert new == old and new.path == path and new.model is None and new.img_size == 320
    assert new.form == {"--onnx": "onnx", "--engine": "engine", "--checkpoint": "checkpoint", "--cfg": "cfg"}[option]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_model_cfg_takes_weights(monkeypatch, command):
    args = COMMANDS[command]
    new = _source_of(monkeypatch, *args, "--model", "a/m.cfg", "--weights", "w.weights", "--backend", "torch")
    assert new == _source_of(monkeypatch, *args, "--cfg", "a/m.cfg", "--weights", "w.weights", "--backend", "torch")
    assert (new.form, new.cfg, new.weights, new.backend) == ("cfg", "a/m.cfg", "w.weights", "torch")


def test_every_model_command_declares_the_same_options():
    """Declared once: the same options, help and defaults on every command (benchmark has no --names,
    export takes no --onnx/--engine/--backend)."""
    cmd = typer.main.get_command(app)
    decls = {}
    for name in ("infer", "eval", "benchmark", "export"):
        params = {p.opts[0]: p for p in cmd.commands[name].params if p.opts[0] in MODEL_OPTIONS}
        decls[name] = params
        for opt, p in params.items():
            assert p.default is None and not p.required, (name, opt)
            if opt != "--model":
                assert p.help == decls["infer"][opt].help, (name, opt)
    assert list(decls["infer"]) == list(decls["eval"]) == list(MODEL_OPTIONS)
    assert list(decls["benchmark"]) == [o for o in MODEL_OPTIONS if o != "--names"]
    assert list(decls["export"]) == ["--model", "--cfg", "--weights", "--checkpoint", "--names", "--img-size"]
    assert ".onnx" in decls["infer"]["--model"].help and ".onnx" not in decls["export"]["--model"].help


def test_model_errors_through_the_installed_command(tmp_path):
    """Unknown suffix, two model options, a form the command does not take, a .weights file: one line,
    exit 2, before anything is loaded."""
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"not read")
    assert_user_error(run_cli("infer", "x.jpg", "--model", tmp_path / "m.txt", "--no-save"),
                      "m.txt", "unknown model file type", ".onnx")
    assert_user_error(run_cli("eval", "--data", "coco128", "--model", onnx_file, "--onnx", onnx_file),
                      "give one model", "--model", "--onnx")
    assert_user_error(run_cli("benchmark", "--model", onnx_file, "--cfg", "yolov4-tiny"), "--model and --cfg")
    assert_user_error(run_cli("export", "--model", onnx_file, "-o", tmp_path / "o.onnx"),
                      "m.onnx", "--model got an ONNX model")
    assert_user_error(run_cli("infer", "x.jpg", "--model", tmp_path / "w.weights", "--no-save"),
                      "w.weights", "give it as --weights")
    assert not (tmp_path / "o.onnx").exists()


def test_missing_model_file_is_named(tmp_path):
    cfg = tmp_path / "m.cfg"
    cfg.write_text("[net]\nwidth=32\nheight=32\nchannels=3\n")
    for args, missing in ((("benchmark", "--model", tmp_path / "gone.onnx"), "gone.onnx"),
                          (("infer", "x.jpg", "--no-save", "--model", tmp_path / "gone.pt"), "gone.pt"),
                          (("benchmark", "--model", cfg, "--weights", tmp_path / "gone.weights"), "gone.weights")):
        p = run_cli(*args)
        assert_user_error(p, str(tmp_path / missing), "not found")
        assert "warning" not in p.stderr  # checked before anything loads (no "no --weights given")


def test_model_cfg_with_weights_detects(shared_data):
    """``--model CFG --weights W`` runs the darknet model, as ``--cfg CFG --weights W`` does."""
    dog = shared_data / "darknet" / "images" / "dog.jpg"
    p = run_cli("infer", dog, "--model", shared_data / "darknet" / "cfg" / "yolov4-tiny.cfg",
                "--weights", shared_data / "weights" / "yolov4-tiny.weights", "--backend", "torch",
                "--img-size", "416", "--no-save")
    assert p.returncode == 0, p.stderr
    assert "dog 0.8" in p.stdout and "truck" in p.stdout, p.stdout


# ---------------------------------------------------------------- the Python API


def test_resolve_and_check(tmp_path):
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"x")
    src = ModelSource(model=str(onnx_file)).resolve()
    assert src == ModelSource(onnx=str(onnx_file)).resolve() and src.resolve() is src
    src.check()  # there: nothing raised
    assert ModelSource(model="yolov4-tiny").resolve() == ModelSource(cfg="yolov4-tiny").resolve()
    with pytest.raises(Yolo4Error, match="give one model, not --cfg and --checkpoint"):
        ModelSource(cfg="a.cfg", checkpoint="b.pt").resolve()
    with pytest.raises(Yolo4Error, match="give a model: --model FILE, --cfg"):
        ModelSource(weights="w.weights").resolve()
    with pytest.raises(Yolo4Error, match="--onnx expects an ONNX model, got a yolo4 checkpoint"):
        ModelSource(onnx="m.pt").resolve()
    with pytest.raises(Yolo4Error, match="--model got a TensorRT engine: give a darknet cfg or a yolo4"):
        ModelSource(model="m.engine").resolve(("cfg", "checkpoint"))
    with pytest.raises(Yolo4Error, match="--onnx got an ONNX model"):
        src.load_torch()  # a resolved ONNX source is no torch model either
    for source, error in ((ModelSource(model=str(tmp_path / "a.cfg")), CfgError),
                          (ModelSource(cfg="yolov4-tiny", weights=str(tmp_path / "w.weights")), WeightsError),
                          (ModelSource(model=str(tmp_path / "a.pt")), WeightsError),
                          (ModelSource(model=str(tmp_path / "a.plan")), ModelFileError)):
        with pytest.raises(error, match="not found") as e:
            source.check()
        assert str(tmp_path) in str(e.value)
    with pytest.raises(Yolo4Error, match="--img-size"):
        ModelSource(onnx=str(onnx_file), img_size=100).check()


def test_open_backend_takes_model(tmp_path):
    missing = tmp_path / "gone.onnx"
    with pytest.raises(ModelFileError, match="ONNX model file not found") as e:
        open_backend(model=str(missing), log=lambda m: None)
    assert str(missing) in str(e.value)
    with pytest.raises(Yolo4Error, match="give one model, not --model and --onnx"):
        open_backend(model=str(missing), onnx=str(missing))
