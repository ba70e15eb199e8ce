"""The gate: a table of cases for the pure decision, then the commands end to end,
including muscale gating itself against its committed baseline."""

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import polars as pl
import pytest
import torch
from clirun import run_cli

from muscale.analysis import gate
from muscale.cli import main
from muscale.errors import USAGE
from muscale.models import optim

ROOT = Path(__file__).resolve().parent.parent
CI_BASELINE = ROOT / "baselines" / "mlp-mup.toml"
# The check the committed baseline was made from (`make baseline` refreshes it).
CI_CHECK = [
    "coord-check",
    "--mode",
    "mup",
    "--family",
    "mlp",
    "--widths",
    "64,128,256,512",
    "--steps",
    "3",
    "--seeds",
    "2",
    "--device",
    "cpu",
    "--jobs",
    "1",
]


def case(alpha, ci=(None, None), expected=0.0, tol=0.1, settled=None):
    return gate.Check("mup", "mlp", "adam", "hidden.0", "act_rms", 1, expected, tol, alpha, *ci, settled)


@pytest.mark.parametrize(
    "check,status",
    [
        (case(0.05, (0.01, 0.09)), "pass"),  # the whole interval inside the band
        (case(0.05, (0.0, 0.1)), "pass"),  # reaching its edge
        (case(0.05, (-0.2, 0.3)), "inconclusive"),  # inside, but the interval is wider than the band
        (case(0.05), "inconclusive"),  # inside with no interval (one seed, two widths): cannot tell
        (case(-0.15, (-5.87, 5.57), tol=0.15), "inconclusive"),  # two seeds with slopes +0.3 and −0.6
        (case(0.3, (0.05, 0.55)), "warn"),  # outside, but the interval reaches the band: noise
        (case(0.3), "warn"),  # outside with no interval
        (case(0.3, (0.2, 0.4)), "fail"),  # the whole interval outside the band: drift
        (case(-0.3, (-0.4, -0.2)), "fail"),  # the same below
        (case(0.3, (0.2, 0.4), settled=False), "unsettled"),  # still moving: judged neither way
        (case(None), "missing"),  # the baseline expects it, the results lack it
        (case(float("nan")), "missing"),  # a fit that could not be made
        (case(1.02, (0.95, 1.08), expected=1.0), "pass"),  # non-zero expectations work the same way
    ],
)
def test_check_status(check, status):
    assert check.status == status


def test_exit_code_fails_on_any_failure_or_missing():
    assert gate.exit_code([case(0.0), case(0.05)]) == gate.OK
    assert gate.exit_code([case(0.0), case(0.3, (0.2, 0.4))]) == gate.FAIL
    assert gate.exit_code([case(0.0), case(None)]) == gate.FAIL


def coord_check(monkeypatch, capsys, out):
    monkeypatch.setattr(sys, "argv", ["muscale", *CI_CHECK, "--out", str(out)])
    main()
    capsys.readouterr()


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    """One μP check and its baseline, shared by the end-to-end cases."""
    out = tmp_path_factory.mktemp("gate")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["muscale", *CI_CHECK, "--out", str(out / "run")])
        main()
        mp.setattr(
            sys,
            "argv",
            [
                "muscale",
                "baseline",
                str(out / "run"),
                "-o",
                str(out / "baseline.toml"),
                "--metric",
                "act_rms",
                "--metric",
                "dact_rms",
            ],
        )
        main()
    return out


def test_gate_passes_on_the_results_that_made_the_baseline(monkeypatch, capsys, checked, tmp_path):
    junit = tmp_path / "junit.xml"
    code, stdout, _ = run_cli(
        monkeypatch,
        capsys,
        "gate",
        str(checked / "run"),
        "--baseline",
        str(checked / "baseline.toml"),
        "--junit",
        str(junit),
    )
    n = len(gate.read_baseline(checked / "baseline.toml"))
    assert code == gate.OK and ", 0 failed" in stdout
    suite = ET.parse(junit).getroot().find("testsuite")
    assert len(suite.findall("testcase")) == n and suite.get("failures") == "0"
    # Two seeds: an exponent whose interval is wider than the band cannot pass, only not fail.
    skipped = len(suite.findall("testcase/skipped"))
    assert f"{n - skipped} passed, 0 failed" in stdout


def test_gate_fails_a_broken_mup_naming_the_rows(monkeypatch, capsys, checked, tmp_path):
    """μP's per-layer learning-rate scaling switched off (plain Adam on the μP model)."""
    monkeypatch.setitem(optim._MUP, "adam", torch.optim.Adam)
    coord_check(monkeypatch, capsys, tmp_path / "broken")
    junit = tmp_path / "junit.xml"
    code, stdout, _ = run_cli(
        monkeypatch,
        capsys,
        "gate",
        str(tmp_path / "broken"),
        "--baseline",
        str(checked / "baseline.toml"),
        "--junit",
        str(junit),
    )
    assert code == gate.FAIL
    failing = [line for line in stdout.splitlines() if line.startswith("FAIL")]
    assert failing and any("hidden.0 dact_rms" in line for line in failing)
    assert int(ET.parse(junit).getroot().find("testsuite").get("failures")) == len(failing)


def test_gate_fails_when_a_metric_is_missing(monkeypatch, capsys, checked, tmp_path):
    run_dir = tmp_path / "partial"
    run_dir.mkdir()
    pl.read_csv(checked / "run" / "exponents.csv").filter(pl.col("metric") != "dact_rms").write_csv(
        run_dir / "exponents.csv"
    )
    code, stdout, _ = run_cli(monkeypatch, capsys, "gate", str(run_dir), "--baseline", str(checked / "baseline.toml"))
    assert code == gate.FAIL and "MISSING" in stdout and "dact_rms" in stdout


@pytest.mark.parametrize("content", ["not = [toml", "[muscale]\nbaseline = 1\n", "[[exponent]]\nmode = 'mup'\n"])
def test_unreadable_baseline_is_a_usage_error(monkeypatch, capsys, checked, tmp_path, content):
    bad = tmp_path / "bad.toml"
    bad.write_text(content)
    code, _, stderr = run_cli(monkeypatch, capsys, "gate", str(checked / "run"), "--baseline", str(bad))
    assert code == USAGE and "--baseline" in stderr and len(stderr.strip().splitlines()) == 1


def test_github_annotations_name_each_failure(monkeypatch, capsys, checked, tmp_path):
    run_dir = tmp_path / "partial"
    run_dir.mkdir()
    pl.read_csv(checked / "run" / "exponents.csv").filter(pl.col("metric") != "act_rms").write_csv(
        run_dir / "exponents.csv"
    )
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    code, stdout, _ = run_cli(monkeypatch, capsys, "gate", str(run_dir), "--baseline", str(checked / "baseline.toml"))
    annotations = [line for line in stdout.splitlines() if line.startswith("::error")]
    assert code == gate.FAIL and annotations and all("act_rms" in a for a in annotations)


def test_muscale_gates_itself_against_its_committed_baseline(monkeypatch, capsys, checked):
    """On the shared check: it is the command `make baseline` ran."""
    code, stdout, _ = run_cli(monkeypatch, capsys, "gate", str(checked / "run"), "--baseline", str(CI_BASELINE))
    assert code == gate.OK, stdout
