"""Checkpoints that are not ours: one line naming the file, never PyTorch's multi-line message, and a
foreign pickle is never executed."""

import os
import pickle
import zipfile

import pytest
import torch

from yolo4.errors import WeightsError
from yolo4.model.checkpoint import load_checkpoint, read_checkpoint


class _Payload:
    """A pickle that would create a file if it were ever unpickled with the full unpickler."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _one_line_naming(e, path):
    msg = str(e.value)
    assert "\n" not in msg
    assert str(path) in msg
    return msg


def test_text_file(tmp_path):
    p = tmp_path / "notes.pt"
    p.write_text("these are my notes\n")
    with pytest.raises(WeightsError) as e:
        read_checkpoint(p)
    assert "not a PyTorch checkpoint" in _one_line_naming(e, p)


@pytest.mark.parametrize("how", ["pickle", "torch.save"])
def test_arbitrary_pickle_is_refused_and_never_executed(tmp_path, how):
    marker = tmp_path / "executed"
    p = tmp_path / "evil.pt"
    if how == "pickle":
        with open(p, "wb") as f:
            pickle.dump(_Payload(str(marker)), f, protocol=2)
    else:
        torch.save({"format": "yolo4-checkpoint", "x": _Payload(str(marker))}, p)
    with pytest.raises(WeightsError) as e:
        load_checkpoint(p)
    msg = _one_line_naming(e, p)
    assert "Weights only load failed" not in msg and "never executed" in msg
    assert not marker.exists()


def test_truncated_zip(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"format": "yolo4-checkpoint", "version": 1, "cfg_text": "", "model": {}}, good)
    data = good.read_bytes()
    bad = tmp_path / "cut.pt"
    bad.write_bytes(data[: len(data) // 2])
    assert zipfile.is_zipfile(good)
    with pytest.raises(WeightsError) as e:
        read_checkpoint(bad)
    assert "corrupt or truncated" in _one_line_naming(e, bad)


def test_other_programs_dict_and_newer_version(tmp_path):
    p = tmp_path / "ultra.pt"
    torch.save({"model": {}, "epoch": 3}, p)
    with pytest.raises(WeightsError, match="not a yolo4 checkpoint"):
        read_checkpoint(p)
    q = tmp_path / "future.pt"
    torch.save({"format": "yolo4-checkpoint", "version": 99, "cfg_text": "", "model": {}}, q)
    with pytest.raises(WeightsError, match="newer"):
        read_checkpoint(q)
    r = tmp_path / "nocfg.pt"
    torch.save({"format": "yolo4-checkpoint", "version": 1, "model": {}}, r)
    with pytest.raises(WeightsError, match="lacks 'cfg_text'"):
        read_checkpoint(r)
    assert os.path.isfile(r)  # reading never removes or rewrites the user's file
