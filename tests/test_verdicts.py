"""The one judging rule (muscale/analysis/verdicts.py), seen through every kind that judges:
the coordinate check's fits, a width study's claims and the gate must agree on the same data."""

import polars as pl
import pytest

import muscale
from muscale.analysis import gate
from muscale.analysis.verdicts import claims, combine
from muscale.kinds.width import analysis as width

WIDTHS = (64, 128, 256, 512)


def records(slopes: dict[int, float], scales: dict[int, float] | None = None) -> pl.DataFrame:
    """One module's act_rms at step 1 of a short μP check, an exact power law scale·d^slope per seed."""
    scales = scales or {}
    return pl.DataFrame(
        [
            {
                "family": "mlp",
                "mode": "mup",
                "optimizer": "adam",
                "lr": 1e-2,
                "width": w,
                "seed": seed,
                "horizon": "short",
                "step": 1,
                "module": "hidden.0",
                "role": "hidden",
                "metric": "act_rms",
                "value": 0.7 * scales.get(seed, 1.0) * w**slope,
            }
            for seed, slope in slopes.items()
            for w in WIDTHS
        ]
    )


def three_ways(slopes: dict[int, float], scales: dict[int, float] | None = None) -> tuple[str, str, str]:
    """(the coordinate check's verdict, a width study's status, the gate's status) of one fit
    against μP's act_rms band, 0 ± 0.15."""
    fitted = muscale.fit_exponents(records(slopes, scales))
    fit = fitted.row(0, named=True)
    assert (fit["expected"], fit["tolerance"]) == (0.0, 0.15)
    claim = width.Claim("flat", "mup", "act_rms", 0.0, 0.15)
    (status,) = width.judge(fitted.with_columns(settled=pl.lit(True)), [claim])[0]["status"]
    check = gate.Check(*(fit[k] for k in gate.KEY), 0.0, 0.15, fit["alpha"], fit["ci_low"], fit["ci_high"])
    return fit["verdict"], status, check.status


def test_two_seeds_that_disagree_are_inconclusive_everywhere():
    """Per-seed slopes +0.3 and −0.6, scaled so that the seed mean's slope lies inside the band
    (the issue's example): its interval is ±5.7, so the estimate inside says nothing."""
    slopes, scales = {0: 0.3, 1: -0.6}, {1: 50.0}
    fit = muscale.fit_exponents(records(slopes, scales)).row(0, named=True)
    assert abs(fit["alpha"]) < 0.15 and fit["ci_high"] - fit["ci_low"] == pytest.approx(2 * 5.72, abs=0.05)
    assert three_ways(slopes, scales) == ("inconclusive", "inconclusive", "inconclusive")


def test_agreeing_flat_seeds_pass_everywhere():
    assert three_ways({0: 0.01, 1: -0.01, 2: 0.0}) == ("pass", "reproduced", "pass")


def test_a_broken_parametrization_still_fails_everywhere():
    """SP's hidden activations under Adam grow like d (DESIGN.md, fact 1): seeds that agree on
    α ≈ 1 put the whole interval outside μP's band, and every kind fails it."""
    assert three_ways({0: 0.95, 1: 1.0, 2: 1.05}) == ("fail", "not reproduced", "fail")


def test_an_estimate_outside_with_an_interval_reaching_in_is_warned_not_failed():
    assert three_ways({0: 0.6, 1: -0.1}) == ("warn", "inconclusive", "warn")


def test_the_gate_fails_only_a_failure_or_a_missing_row():
    def check(alpha, low, high):
        return gate.Check("mup", "mlp", "adam", "h", "act_rms", 1, 0.0, 0.1, alpha, low, high)

    undecided = [check(0.05, -1, 1), check(0.3, 0.05, 0.55), check(0.0, -0.05, 0.05)]
    assert gate.outcome(undecided) == "warn" and gate.exit_code(undecided) == gate.OK
    assert gate.exit_code([*undecided, check(0.5, 0.4, 0.6)]) == gate.FAIL
    assert gate.exit_code([*undecided, check(None, None, None)]) == gate.FAIL
    assert gate.outcome([check(0.0, -0.05, 0.05)]) == "pass" and gate.outcome([]) == "info"


def test_a_claim_counts_once_however_many_rows_stand_behind_it():
    """Two modules of one role over two steps are one claim, as bad as its worst row."""
    rows = pl.DataFrame(
        {
            "mode": ["mup"] * 5,
            "family": ["mlp"] * 5,
            "optimizer": ["adam"] * 5,
            "module": ["h.0", "h.1", "h.0", "h.1", "head"],
            "role": ["hidden"] * 4 + ["head"],
            "metric": ["act_rms"] * 5,
            "step": [1, 1, 2, 2, 2],
            "alpha": [0.0, 0.01, 0.02, 0.9, 0.5],
            "ci_low": [-0.01, 0.0, 0.0, 0.8, -1.0],
            "ci_high": [0.01, 0.02, 0.04, 1.0, 2.0],
            "expected": [0.0] * 4 + [None],
            "tolerance": [0.15] * 4 + [None],
            "verdict": ["pass", "pass", "pass", "fail", "info"],
        }
    )
    (claim,) = claims(rows).iter_rows(named=True)
    assert claim["verdict"] == "fail" and claim["rows"] == 4 and claim["modules"] == ["h.0", "h.1"]
    assert (claim["pass"], claim["fail"], claim["first_step"], claim["last_step"]) == (3, 1, 1, 2)


@pytest.mark.parametrize(
    ("verdicts", "worst"),
    [
        (["pass", "inconclusive"], "inconclusive"),
        (["pass", "warn", "inconclusive"], "warn"),
        (["warn", "unsettled"], "unsettled"),
        (["unsettled", "fail", "pass"], "fail"),
        (["pass", "pass"], "pass"),
        ([], "info"),
    ],
)
def test_a_claim_takes_its_worst_rows_verdict(verdicts, worst):
    assert combine(verdicts) == worst
