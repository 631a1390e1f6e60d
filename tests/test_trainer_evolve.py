"""Hyperparameter evolution (yolo4.trainer.evolve) with fake training runs: mutation bounds and
determinism, improvement on a known fitness landscape, evolve.csv / hyp_evolved.yaml, resume, failures."""

import csv
import math

import numpy as np
import pytest

from yolo4.errors import Yolo4Error
from yolo4.trainer.evolve import evolve, mutate, read_table
from yolo4.trainer.hyp import EVOLVABLE, load_hyp

BASE = {"learning_rate": 0.001, "momentum": 0.9, "decay": 0.0005, "burn_in": 1000.0, "hue": 0.0,
        "saturation": 1.5, "exposure": 1.5, "mosaic": 0.0, "mixup": 0.0, "jitter": 0.3,
        "iou_normalizer": 0.07, "obj_normalizer": 1.0, "cls_normalizer": 1.0, "ignore_thresh": 0.7,
        "iou_thresh": 1.0, "label_smooth_eps": 0.0}


def peak_run(calls=None):
    """A fake training whose mAP peaks at hue=0.3, jitter=0.1 (fitness = map50_95 + 0.1*map50 terms)."""
    def run(hyp, gen_dir):
        assert gen_dir.is_dir()
        if calls is not None:
            calls.append(dict(hyp))
        m = math.exp(-((hyp["hue"] - 0.3) / 0.15) ** 2 - ((hyp["jitter"] - 0.1) / 0.2) ** 2)
        return {"map50": m, "map50_95": 0.5 * m}
    return run


def test_mutate_in_bounds_changes_and_is_deterministic():
    outs = []
    for seed in range(200):
        new = mutate(BASE, np.random.default_rng(seed))
        assert list(new) == list(BASE)
        assert any(new[k] != BASE[k] for k in BASE)
        for k, g in EVOLVABLE.items():
            assert g.lo <= new[k] <= g.hi, (k, new[k])
            if g.integer:
                assert float(new[k]).is_integer()
        outs.append(new)
    assert mutate(BASE, np.random.default_rng(7)) == outs[7]
    assert outs[7] != outs[8]
    # 'add' keys move off 0, flags flip sometimes, gain-0 / unknown keys never move
    assert any(o["hue"] > 0 for o in outs) and any(o["mosaic"] == 1 for o in outs)
    fixed = dict(BASE, scale_x_y=1.05)
    assert all(mutate(fixed, np.random.default_rng(s))["scale_x_y"] == 1.05 for s in range(20))


def test_mutate_clips_out_of_bounds_base():
    new = mutate(dict(BASE, learning_rate=5.0, momentum=0.1), np.random.default_rng(0))
    assert new["learning_rate"] <= EVOLVABLE["learning_rate"].hi and new["momentum"] >= 0.6


def test_evolve_improves_and_writes_files(tmp_path):
    logs = []
    res = evolve(BASE, 30, peak_run(), tmp_path / "ev", seed=0, log=logs.append)
    rows = read_table(tmp_path / "ev" / "evolve.csv")
    assert [r["generation"] for r in rows] == list(range(30))
    assert rows[0]["hue"] == 0.0  # generation 0 = the base hyperparameters
    first = rows[0]["fitness"]
    assert res["fitness"] > first + 0.3 and res["fitness"] == max(r["fitness"] for r in rows)
    assert abs(res["hyp"]["hue"] - 0.3) < 0.1
    assert abs(res["fitness"] - (0.1 * res["map50"] + 0.9 * res["map50_95"])) < 1e-6
    with open(tmp_path / "ev" / "evolve.csv") as f:
        header = next(csv.reader(f))
    assert header == ["generation", "fitness", "map50", "map50_95"] + list(BASE)
    saved = load_hyp(tmp_path / "ev" / "hyp_evolved.yaml")
    assert saved == res["hyp"] and list(saved) == list(BASE)
    assert "fitness" in (tmp_path / "ev" / "hyp_evolved.yaml").read_text().splitlines()[0]
    assert (tmp_path / "ev" / "gen_0029").is_dir()
    assert len(logs) == 30 and logs[-1].startswith("evolve 30/30")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_evolve_improves_for_other_seeds(tmp_path, seed):
    res = evolve(BASE, 30, peak_run(), tmp_path, seed=seed, log=lambda s: None)
    first = read_table(tmp_path / "evolve.csv")[0]["fitness"]
    assert res["fitness"] > 10 * first


def test_evolve_resume_matches_straight_run(tmp_path):
    straight = []
    evolve(BASE, 8, peak_run(straight), tmp_path / "a", seed=3, log=lambda s: None)
    first, second, logs = [], [], []
    evolve(BASE, 5, peak_run(first), tmp_path / "b", seed=3, log=lambda s: None)
    res = evolve(BASE, 8, peak_run(second), tmp_path / "b", seed=3, log=logs.append)
    assert len(first) == 5 and len(second) == 3  # only generations 5, 6, 7 ran
    assert first + second == straight  # same random stream
    assert [r["generation"] for r in read_table(tmp_path / "b" / "evolve.csv")] == list(range(8))
    assert "resuming" in logs[0] and res["generations"] == 8
    # nothing left to do: returns the best without training
    again = []
    assert evolve(BASE, 8, peak_run(again), tmp_path / "b", seed=3, log=lambda s: None)["fitness"] == res["fitness"]
    assert again == []
    with pytest.raises(Yolo4Error, match="other hyperparameter columns"):
        evolve({"hue": 0.1}, 9, peak_run(), tmp_path / "b", log=lambda s: None)


def test_failed_generation_recorded_with_fitness_0(tmp_path):
    n = [0]

    def flaky(hyp, gen_dir):
        n[0] += 1
        if n[0] in (2, 3):
            raise RuntimeError("non-finite loss (nan) at epoch 1\nmore")
        if n[0] == 4:
            return {"map50": float("nan"), "map50_95": 0.1}
        return {"map50": 0.5, "map50_95": 0.25}

    logs = []
    res = evolve(BASE, 5, flaky, tmp_path, log=logs.append)
    rows = read_table(tmp_path / "evolve.csv")
    assert [r["fitness"] for r in rows] == [pytest.approx(0.275), 0.0, 0.0, 0.0, pytest.approx(0.275)]
    assert rows[1]["map50"] is None and rows[1]["map50_95"] is None
    warns = [s for s in logs if s.startswith("warning:")]
    assert len(warns) == 3 and "non-finite loss" in warns[0] and "\n" not in warns[0]
    assert res["generation"] in (0, 4)


def test_evolve_weighted_parent_and_bad_args(tmp_path):
    res = evolve(BASE, 6, peak_run(), tmp_path, parent="weighted", log=lambda s: None)
    for k, g in EVOLVABLE.items():
        assert g.lo <= res["hyp"][k] <= g.hi
    with pytest.raises(Yolo4Error):
        evolve(BASE, 0, peak_run(), tmp_path / "x")
    with pytest.raises(Yolo4Error):
        evolve(BASE, 2, peak_run(), tmp_path / "y", parent="best")
