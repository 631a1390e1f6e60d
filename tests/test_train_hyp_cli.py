"""``yolo4 train --hyp/--set/--evolve`` through the installed command: darknet keys written onto the
cfg the run trains, the genetic search's table and best file, resuming the search, and the refusals."""

import csv

import pytest

from tests.conftest import assert_user_error, run_cli

TINY = ("--cfg", "yolov4-tiny", "--weights", "yolov4-tiny", "--data", "raccoon", "--epochs", "1",
        "--img-size", "160", "--max-images", "8", "--batch", "4", "--workers", "0")


@pytest.mark.shared
def test_hyp_and_set_are_written_onto_the_cfg(shared_data, tmp_path):
    hyp = tmp_path / "h.yaml"
    hyp.write_text("learning_rate: 0.002\niou_normalizer: 0.1\nhue: 0.05\n")
    out = tmp_path / "run"
    p = run_cli("train", *TINY, "--hyp", hyp, "--set", "hue=0.2", "--output-dir", out,
                env={"YOLO4_ASSET_MIRROR": shared_data})
    assert p.returncode == 0, p.stderr
    cfg = (out / "yolov4-tiny-hyp.cfg").read_text()
    assert "hue=0.2" in cfg and "learning_rate=0.002" in cfg and cfg.count("iou_normalizer=0.1") == 2
    assert "hue: 0.2" in (out / "hyp.yaml").read_text()
    assert (out / "last.pt").is_file() and (out / "best.cfg").read_text().count("iou_normalizer=0.1") == 2


@pytest.mark.shared
def test_evolve_writes_the_table_and_continues(shared_data, tmp_path):
    out = tmp_path / "evo"
    env = {"YOLO4_ASSET_MIRROR": shared_data}
    p = run_cli("train", *TINY, "--evolve", "2", "--output-dir", out, "--exist-ok", env=env)
    assert p.returncode == 0, p.stderr
    rows = list(csv.DictReader((out / "evolve.csv").open()))
    assert [r["generation"] for r in rows] == ["0", "1"] and float(rows[0]["fitness"]) > 0
    assert rows[0]["hue"] != rows[1]["hue"] or rows[0]["jitter"] != rows[1]["jitter"] or \
        rows[0]["learning_rate"] != rows[1]["learning_rate"] or rows[0]["mosaic"] != rows[1]["mosaic"]
    assert (out / "hyp_evolved.yaml").is_file() and "best hyp file" in p.stdout
    p = run_cli("train", *TINY, "--evolve", "3", "--output-dir", out, "--exist-ok", env=env)
    assert p.returncode == 0, p.stderr
    assert [r["generation"] for r in csv.DictReader((out / "evolve.csv").open())] == ["0", "1", "2"]


def test_refusals(tmp_path):
    assert_user_error(run_cli("train", "--cfg", "yolov4-tiny", "--data", "raccoon", "--evolve", "2", "--lr", "0.1",
                              "--output-dir", tmp_path / "a"), "--lr would override")
    assert_user_error(run_cli("train", "--cfg", "yolov4-tiny", "--data", "raccoon", "--hyp", tmp_path / "no.yaml",
                              "--output-dir", tmp_path / "b"), "no.yaml", "not found")
    bad = tmp_path / "bad.yaml"
    bad.write_text("hue: 0.1\nfilters: 3\n")
    assert_user_error(run_cli("train", "--cfg", "yolov4-tiny", "--data", "raccoon", "--hyp", bad,
                              "--output-dir", tmp_path / "c"), "bad.yaml:2")
