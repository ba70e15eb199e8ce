"""The command line: bad input ends in one line and exit 2 with nothing written; a real
run writes records, exponents and a report, and is reproducible."""

import json
import sys

import polars as pl
import pytest
from clirun import run_cli

from muscale.cli import main

pytestmark = pytest.mark.usefixtures("undrawn")  # what they check is in the HTML, not its pixels

BAD = [
    (["--widths", ""], "--widths"),
    (["--widths", "128,64"], "--widths"),
    (["--widths", "64,64,128"], "--widths"),
    (["--widths", "0,64"], "--widths"),
    (["--widths", "-64,64"], "--widths"),
    (["--widths", "64,abc"], "--widths"),
    (["--widths", "66,130"], "--widths"),  # not divisible by the transformer's 4 heads
    (["--family", "nope"], "--family"),
    (["--family", "no_such_package.module:build"], "--family"),
    (["--family", "families_for_tests:missing"], "--family"),
    (["--family", "families_for_tests:not_a_module"], "--family"),
    (["--mode", "nope"], "--mode"),
    (["--optimizer", "nope"], "--optimizer"),
    (["--lr", "-1e-3"], "--lr"),
    (["--steps", "0"], "--steps"),
    (["--seeds", "0"], "--seeds"),
    (["--option", "heads"], "--option"),
    (["--option", "colour=red"], "--option"),
    (["--batch", "families_for_tests:mlp_batch"], "--batch"),  # built-in family with a user batch
    (["--family", "hybrid", "--option", "expand=1.5"], "--option"),
    (["--family", "mamba2", "--widths", "60,120"], "--widths"),  # SSM heads: 2·d not divisible by 16
    (["--mode", "sp", "--mup-multiplier", "embed=2"], "--mup-multiplier"),  # μP modes only
    (["--mode", "mup", "--mup-multiplier", "embd=2"], "--mup-multiplier"),
    (["--mode", "mup", "--mup-multiplier", "embed=-1"], "--mup-multiplier"),
    (["--clip", "0"], "--clip"),
    (["--clip", "-1"], "--clip"),
    (["--clip-multipliers"], "--clip-multipliers"),  # nothing to clip without --clip
    (["--mode", "mup", "--clip", "1", "--clip-multipliers"], "--clip-multipliers"),  # no multipliers in mup
    (["--muon-adjust-lr", "original"], "--muon-adjust-lr"),  # the optimizer is not muon
    (["--optimizer", "muon", "--muon-adjust-lr", "moonshot"], "--muon-adjust-lr"),
    (["--mode", "mup", "--optimizer", "sgd", "--adam-eps-scaling"], "--adam-eps-scaling"),
    (["--mode", "sp", "--adam-eps-scaling"], "--adam-eps-scaling"),  # no base shapes to scale by
    (["--weight-decay-kind", "nuclear"], "--weight-decay-kind"),
    (["--weight-decay-kind", "spectral", "--weight-decay", "0"], "--weight-decay-kind"),  # nothing to decay
    (["--lrm-impl", "triton"], "--lrm-impl"),
    (["--mode", "mup", "--lrm-impl", "fused"], "--lrm-impl"),  # no multipliers to compute
    (["--mode", "sp", "--lrm-impl", "autograd"], "--lrm-impl"),
    (["--metric", "spectral"], "--metric"),
    (["--data", "wikipedia"], "--data"),
    (["--data", "text:/no/such/file.txt"], "--data"),
    (["--mode", "lrm-frozen", "--mult-param", "exp"], "--mult-param"),
    (["--option", "attn_scale=half"], "--option"),
    (["--data-order", "shuffled"], "--data-order"),
]


@pytest.mark.integration
def test_a_worker_killed_outright_ends_a_coordinate_check_in_one_line(monkeypatch, capsys, tmp_path):
    """kill -9 of the worker building the width-32 model: exit 1, the run and the signal named
    in one line, no traceback."""
    marker = tmp_path / "kill-me"
    marker.touch()
    monkeypatch.setenv("MUSCALE_TEST_KILL", str(marker))
    code, _, stderr = run_cli(
        monkeypatch,
        capsys,
        "coord-check",
        "--mode",
        "sp",
        "--family",
        "families_for_tests:killed_once",
        "--widths",
        "16,32",
        "--steps",
        "1",
        "--seeds",
        "1",
        "--jobs",
        "2",
        "--out",
        str(tmp_path / "out"),
    )
    assert code == 1 and len(stderr.strip().splitlines()) == 1, stderr
    assert "width 32" in stderr and "SIGKILL" in stderr and "Traceback" not in stderr


def test_data_reaches_every_run(monkeypatch, capsys, tmp_path):
    """--data picks the training text: here the bytes of a file of the user's."""
    text = tmp_path / "corpus.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 400)
    out = tmp_path / "out"
    code, _, stderr = run_cli(
        monkeypatch,
        capsys,
        "coord-check",
        "--mode",
        "lrm",
        "--widths",
        "16,32",
        "--steps",
        "2",
        "--seeds",
        "1",
        "--data",
        f"text:{text}",
        "--metric",
        "act_rms",
        "--jobs",
        "1",
        "--out",
        str(out),
    )
    assert code == 0, stderr
    runs = json.loads((out / "plan.json").read_text())["runs"]
    assert {r["data"] for r in runs} == {f"text:{text}"}


@pytest.mark.parametrize("args,option", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(monkeypatch, capsys, tmp_path, args, option):
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(monkeypatch, capsys, "coord-check", "--out", str(out), *args)
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert option in stderr and "Traceback" not in stderr
    assert not out.exists()


def test_out_pointing_at_a_file_is_refused(monkeypatch, capsys, tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("keep me")
    code, _, stderr = run_cli(
        monkeypatch, capsys, "coord-check", "--mode", "mup", "--family", "mlp", "--out", str(target)
    )
    assert code == 2 and "--out" in stderr and len(stderr.strip().splitlines()) == 1
    assert target.read_text() == "keep me"


def coord_check(monkeypatch, capsys, out, *extra):
    args = [
        "coord-check",
        "--mode",
        "mup",
        "--family",
        "mlp",
        "--widths",
        "32,64,128",
        "--steps",
        "2",
        "--seeds",
        "2",
        "--device",
        "cpu",
        "--jobs",
        "1",
        "--out",
        str(out),
        *extra,
    ]
    monkeypatch.setattr(sys, "argv", ["muscale", *args])
    main()
    return capsys.readouterr().out


def test_coord_check_writes_records_exponents_and_report(monkeypatch, capsys, tmp_path):
    stdout = coord_check(monkeypatch, capsys, tmp_path)
    assert len(list((tmp_path / "records").glob("*.parquet"))) == 6
    assert not list(tmp_path.rglob("*.tmp"))
    ex = pl.read_csv(tmp_path / "exponents.csv")
    assert {
        "mode",
        "module",
        "role",
        "metric",
        "step",
        "alpha",
        "ci_low",
        "ci_high",
        "r2",
        "expected",
        "verdict",
    } <= set(ex.columns)
    assert set(ex["step"]) == {0, 1, 2}
    assert (tmp_path / "report.html").stat().st_size > 10_000
    assert "report:" in stdout and "pass=" in stdout


def test_same_command_twice_gives_identical_records(monkeypatch, capsys, tmp_path):
    coord_check(monkeypatch, capsys, tmp_path / "a")
    coord_check(monkeypatch, capsys, tmp_path / "b")
    a = pl.read_parquet(tmp_path / "a" / "records" / "*.parquet").sort("run_id", "step", "module", "metric")
    b = pl.read_parquet(tmp_path / "b" / "records" / "*.parquet").sort("run_id", "step", "module", "metric")
    assert a.height > 0 and a.equals(b)


def test_metric_keeps_only_the_statistics_asked_for(monkeypatch, capsys, tmp_path):
    coord_check(monkeypatch, capsys, tmp_path, "--metric", "act_l1", "--metric", "update_spec")
    records = pl.read_parquet(tmp_path / "records" / "*.parquet")
    assert set(records["metric"]) == {"act_l1", "update_spec", "loss"}
    assert set(pl.read_csv(tmp_path / "exponents.csv")["metric"]) == {"act_l1", "update_spec", "loss"}


def test_rerun_skips_finished_runs(monkeypatch, capsys, tmp_path):
    coord_check(monkeypatch, capsys, tmp_path)
    files = sorted((tmp_path / "records").glob("*.parquet"))
    stamps = [f.stat().st_mtime_ns for f in files]
    coord_check(monkeypatch, capsys, tmp_path)
    assert [f.stat().st_mtime_ns for f in files] == stamps


def test_console_script_help_names_every_option_with_its_default(monkeypatch, capsys):
    code, help_text, stderr = run_cli(monkeypatch, capsys, "coord-check", "--help")
    assert code == 0, stderr
    for option in (
        "--mode",
        "--family",
        "--batch",
        "--widths",
        "--steps",
        "--seeds",
        "--optimizer",
        "--lr",
        "--weight-decay",
        "--batch-size",
        "--seq-len",
        "--out",
        "--device",
    ):
        assert option in help_text
    assert "Default" in help_text or "default" in help_text


@pytest.mark.parametrize("mode", ["mup", "lrm"])
def test_hybrid_report_has_qk_logit_and_dt_figures_and_exponents(monkeypatch, capsys, tmp_path, mode):
    code, _, stderr = run_cli(
        monkeypatch,
        capsys,
        "coord-check",
        "--family",
        "hybrid",
        "--mode",
        mode,
        "--widths",
        "32,64",
        "--steps",
        "2",
        "--seeds",
        "1",
        "--device",
        "cpu",
        "--jobs",
        "1",
        "--metric",
        "act_rms",
        "--out",
        str(tmp_path),
    )
    assert code == 0, stderr
    ex = pl.read_csv(tmp_path / "exponents.csv")
    for role in ("attn_qk", "ssm_dt", "ssm_in", "ssm_out"):
        assert ex.filter((pl.col("role") == role) & (pl.col("metric") == "act_rms"))["alpha"].is_finite().all()
    html = (tmp_path / "report.html").read_text()
    assert 'alt="coordinate check, role attn_qk"' in html and 'alt="coordinate check, role ssm_dt"' in html
