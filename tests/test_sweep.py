"""Sweeps: study files are validated before anything runs, runs land on disk one by one so
a killed sweep resumes to exactly the runs of an uninterrupted one, diverging and crashing
runs are recorded as such, and the submitit launcher runs through its local mode."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from clirun import run_cli
from studies_for_tests import TINY, assert_study_error
from studies_for_tests import write_study as write

from muscale import api
from muscale.kinds.lr_transfer import analysis as transfer
from muscale.run import sweep

BAD = [
    # (replace this, with this, the key the error must name, the line it must point at)
    ("steps = 6", "stpes = 6", "stpes", 5),
    ("steps = 6", 'steps = "six"', "steps", 5),
    ("batch_size = 2", "batch_size = 2.5", "batch_size", 6),
    ("log2_max = -3", "log2_max = -12", "lr.log2_max", 16),
    ("log2_step = 3", "log2_step = 0", "lr.log2_step", 17),
    ('families = ["transformer"]', 'families = ["nope"]', "families", 2),
    ('families = ["transformer"]', "families = []", "families", 2),
    ('modes = ["sp", "mup"]', 'modes = ["sp", "muP"]', "modes", 3),
    ("widths = [16, 32]", "widths = [32, 16]", "widths", 4),
    ("widths = [16, 32]", "widths = [18, 34]", "widths", 4),  # not divisible by 4 heads
    ('data = "synthetic"', 'data = "text:/no/such/file"', "data", 9),
    ("layers = 1", "colour = 1", "options", 11),
    ("[lr]", "[learning_rate]", "learning_rate", 14),
    ('data = "synthetic"', 'data = "synthetic"\nloss = "hinge"', "loss", 10),
]


@pytest.mark.parametrize("old,new,key,line", BAD, ids=[n for _, n, _, _ in BAD])
def test_malformed_study_exits_2_naming_key_and_line(monkeypatch, capsys, tmp_path, old, new, key, line):
    assert old in TINY
    assert_study_error(monkeypatch, capsys, tmp_path, TINY.replace(old, new), key, line)


def test_study_without_lr_grid_names_the_table(tmp_path):
    path = write(tmp_path, TINY.split("[lr]")[0])
    with pytest.raises(Exception, match=r"study.toml: lr: missing"):
        api.load(path)


def test_study_loss_reaches_every_run(tmp_path):
    plan = api.load(write(tmp_path, TINY.replace('data = "synthetic"', 'data = "synthetic"\nloss = "mse"')))
    assert {s.loss for s in plan.specs} == {"mse"}
    assert {s.loss for s in api.load(write(tmp_path, TINY)).specs} == {"cross_entropy"}


def test_study_expands_to_every_run(tmp_path):
    plan = api.load(write(tmp_path, TINY))
    assert plan.lrs_log2 == (-9.0, -6.0, -3.0)
    assert len(plan.specs) == 2 * 2 * 3  # modes × widths × learning rates
    assert {s.lr for s in plan.specs} == {2.0**-9, 2.0**-6, 2.0**-3}
    assert {s.base_width for s in plan.specs} == {16}  # default: the smallest width
    assert len({s.run_id for s in plan.specs}) == len(plan.specs)


def _vertex_points(x0: float, xs: list[float]) -> list[tuple[float, float, bool]]:
    return [(x, 2.0 + 0.3 * (x - x0) ** 2, False) for x in xs]


def test_optimum_is_the_vertex_of_the_parabola_around_the_best_point():
    x, y, bracketed = transfer._vertex(_vertex_points(-6.4, [-9, -8, -7, -6, -5, -4]))
    assert bracketed and x == pytest.approx(-6.4) and y == pytest.approx(2.0)


def test_optimum_on_the_grid_edge_or_next_to_divergence_is_unbracketed():
    x, _, bracketed = transfer._vertex(_vertex_points(-9.5, [-9, -8, -7]))
    assert (x, bracketed) == (-9, False)
    points = _vertex_points(-6.9, [-8, -7, -6])
    points[2] = (-6, float("inf"), True)
    x, _, bracketed = transfer._vertex(points)
    assert (x, bracketed) == (-7, False)


def test_drift_exponent_recovers_a_known_slope_and_verdicts():
    rows = [
        {
            "family": "f",
            "mode": mode,
            "optimizer": "adam",
            "width": w,
            "seed": s,
            "log2_lr_opt": -5.0 + slope * (w.bit_length() - 1) + 0.01 * s,
            "loss_opt": 1.0,
            "bracketed": True,
            "n_diverged": 0,
            "step": 10,
        }
        for mode, slope in (("sp", -1.0), ("mup", 0.0))
        for w in (32, 64, 128, 256)
        for s in range(2)
    ]
    drift = transfer.drift(pl.DataFrame(rows), tolerance=0.25)
    alpha = dict(drift.select("mode", "alpha").iter_rows())
    assert alpha["sp"] == pytest.approx(-1.0) and alpha["mup"] == pytest.approx(0.0, abs=1e-9)
    assert dict(drift.select("mode", "verdict").iter_rows()) == {"sp": "drifts", "mup": "transfers"}


EXPECT = """
[expect]
sp = { alpha = 0.0, tolerance = 100.0 }
mup = { alpha = 50.0, tolerance = 0.1 }
"""


def test_sweep_fits_reports_records_divergence_and_gates_on_the_study(monkeypatch, capsys, tmp_path):
    # log2 lr = 6 with Adam blows the model up within a few steps; a third width gives the
    # drift exponent an interval, without which the gate cannot fail it.
    text = (
        TINY.replace("log2_max = -3", "log2_max = 6")
        .replace("log2_min = -9", "log2_min = -6")
        .replace("widths = [16, 32]", "widths = [16, 32, 64]")
    )
    path = write(tmp_path, text + EXPECT)
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(monkeypatch, capsys, "sweep", str(path), "--out", str(out), "--jobs", "1")
    assert code == 0, stderr
    states = sweep.status(out, sweep.read_plan(out)[1])
    diverged = states.filter(pl.col("state") == "diverged")
    assert 6.0 in set(diverged["log2_lr"]) and -6.0 not in set(diverged["log2_lr"])
    assert (out / "report.html").is_file() and (out / "transfer.csv").is_file()
    assert set(pl.read_csv(out / "transfer.csv")["mode"]) == {"sp", "mup"}
    code, stdout, _ = run_cli(monkeypatch, capsys, "status", str(out))
    assert code == 0
    assert f"diverged={diverged.height}" in stdout and "pending=0" in stdout
    # The study's [expect] table is the gate's baseline: sp's band is wide, mup's impossible.
    code, stdout, _ = run_cli(monkeypatch, capsys, "gate", str(out))
    assert code == 1
    assert "PASS    sp transformer adam lr_opt lr_opt" in stdout
    assert "FAIL    mup transformer adam lr_opt lr_opt" in stdout
    assert "1 of 2 expected drift exponents met; missed: mup" in (out / "report.html").read_text()


def test_gate_without_baseline_or_study_expectations_is_a_usage_error(monkeypatch, capsys, tmp_path):
    path = write(tmp_path, TINY.replace("steps = 6", "steps = 2"))
    out = tmp_path / "out"
    assert run_cli(monkeypatch, capsys, "sweep", str(path), "--out", str(out), "--jobs", "1")[0] == 0
    code, _, stderr = run_cli(monkeypatch, capsys, "gate", str(out))
    assert code == 2 and "--baseline" in stderr


def test_expectation_for_a_mode_the_study_does_not_run_names_the_key(tmp_path):
    path = write(tmp_path, TINY + "\n[expect]\nlrm = { alpha = 0.0 }\n")
    with pytest.raises(Exception, match=r"study.toml:20: expect.lrm: is not one of the study's modes"):
        api.load(path)


def test_a_crashing_run_is_recorded_as_failed_and_the_rest_finish(monkeypatch, capsys, tmp_path):
    text = TINY.replace('families = ["transformer"]', 'families = ["families_for_tests:crashes_when_wide"]')
    path = write(tmp_path, text.replace("[options]\nlayers = 1\n", ""))
    out = tmp_path / "out"
    code, _, stderr = run_cli(monkeypatch, capsys, "sweep", str(path), "--out", str(out), "--jobs", "1")
    assert code == 1 and "runs failed" in stderr
    states = sweep.status(out, sweep.read_plan(out)[1])
    assert set(states.filter(pl.col("width") == 32)["state"]) == {"failed"}
    assert set(states.filter(pl.col("width") == 16)["state"]) <= {"done", "diverged"}
    failure = next((out / "failed").glob("*.txt")).read_text()
    assert "too wide" in failure


def _sweep_cmd(path: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "muscale", "sweep", str(path), "--out", str(out), "--jobs", "1", *extra]


@pytest.mark.integration
def test_killed_sweep_resumes_to_exactly_the_runs_of_an_uninterrupted_one(tmp_path):
    path = write(tmp_path, TINY.replace("steps = 6", "steps = 20"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    proc = subprocess.Popen(
        _sweep_cmd(path, killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while len(list((killed / "records").glob("*.parquet"))) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    planned = {s.run_id for s in api.load(path).specs}
    partial = {p.stem for p in (killed / "records").glob("*.parquet")}
    assert 2 <= len(partial) < len(planned), "the sweep was not killed mid-run"
    for p in (killed / "records").glob("*.parquet"):
        pl.read_parquet(p)  # every record on disk is whole
    for out in (killed, whole):
        done = subprocess.run(_sweep_cmd(path, out), env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    resumed = {p.stem for p in (killed / "records").glob("*.parquet")}
    assert resumed == {p.stem for p in (whole / "records").glob("*.parquet")} == planned
    a = transfer.final_losses(sweep.records(killed, api.load(path).specs)).sort("run_id")
    b = transfer.final_losses(sweep.records(whole, api.load(path).specs)).sort("run_id")
    assert a["eval_loss"].to_list() == pytest.approx(b["eval_loss"].to_list(), rel=1e-6)


@pytest.mark.integration
def test_submitit_launcher_runs_a_sweep_through_its_local_mode(tmp_path):
    path = write(tmp_path, TINY.replace('modes = ["sp", "mup"]', 'modes = ["mup"]'))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        _sweep_cmd(path, out, "--launcher", "submitit-local"), env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    states = sweep.status(out, sweep.read_plan(out)[1])
    assert set(states["state"]) <= {"done", "diverged"} and states.height == 6
    assert any((out / "submitit").iterdir()), "submitit kept no job folder"


def test_each_local_worker_takes_its_own_gpu_and_thread_share(monkeypatch):
    import torch

    from muscale.run import launch

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    before = torch.get_num_threads()
    seen = []
    try:
        for slot in range(3):
            launch._pin(slot, 1, gpus=2)
            seen.append(os.environ["CUDA_VISIBLE_DEVICES"])
            assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert seen == ["0", "1", "0"]


PARTS = """
[coord_check]
widths = [16, 32]
steps = 2
seeds = 1
"""


@pytest.mark.integration
def test_study_report_links_its_coordinate_check_parts(monkeypatch, capsys, tmp_path):
    path = write(tmp_path, TINY.replace("steps = 6", "steps = 2") + PARTS)
    out = tmp_path / "out"
    code, _, stderr = run_cli(monkeypatch, capsys, "sweep", str(path), "--out", str(out), "--jobs", "1")
    assert code == 0, stderr
    html = (out / "report.html").read_text()
    for name in ("transformer-sp", "transformer-mup"):
        part = out / "parts" / name
        assert len(list((part / "records").glob("*.parquet"))) == 2  # two widths, one seed
        assert (part / "report.html").is_file() and (part / "exponents.csv").is_file()
        assert f'href="parts/{name}/report.html"' in html
    _, stdout, _ = run_cli(monkeypatch, capsys, "status", str(out))
    assert "coordinate check transformer-mup: 2 of 2 runs done" in stdout


def test_bad_coord_check_part_names_its_key(tmp_path):
    path = write(tmp_path, TINY + PARTS.replace("seeds = 1", "sedes = 1"))
    with pytest.raises(Exception, match=r"study.toml:22: coord_check.sedes: unknown key"):
        api.load(path)


@pytest.mark.integration
def test_a_worker_killed_outright_fails_its_run_and_the_same_command_completes_the_set(monkeypatch, capsys, tmp_path):
    """kill -9 of the worker building a width-32 model: that run is failed with the signal named,
    the others finish; the marker is gone, so the same command again runs it and completes the set."""
    text = TINY.replace('families = ["transformer"]', 'families = ["families_for_tests:killed_once"]')
    path = write(
        tmp_path, text.replace('modes = ["sp", "mup"]', 'modes = ["sp"]').replace("[options]\nlayers = 1\n", "")
    )
    marker = tmp_path / "kill-me"
    marker.touch()
    monkeypatch.setenv("MUSCALE_TEST_KILL", str(marker))
    out = tmp_path / "out"
    code, _, stderr = run_cli(monkeypatch, capsys, "sweep", str(path), "--out", str(out), "--jobs", "2")
    assert code == 1 and "runs failed" in stderr
    states = sweep.status(out, sweep.read_plan(out)[1])
    assert states.filter(pl.col("state") == "failed")["width"].to_list() == [32]
    assert states.filter(pl.col("state") != "failed").height == states.height - 1
    assert "SIGKILL" in next((out / "failed").glob("*.txt")).read_text()
    assert not marker.exists()
    code, _, stderr = run_cli(monkeypatch, capsys, "sweep", str(path), "--out", str(out), "--jobs", "2")
    assert code == 0, stderr
    assert set(sweep.status(out, sweep.read_plan(out)[1])["state"]) <= {"done", "diverged"}
