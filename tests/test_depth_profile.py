"""The multipliers' depth profile (study kind depth_profile): its statistics, the one-sided
claims against sp, and the study from its file to its report and gate."""

import math
import sys
import tomllib
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import tomli_w
from clirun import run_cli
from scipy import stats
from studies_for_tests import assert_study_error, write_study

from muscale.analysis import intervals
from muscale.analysis.verdicts import judge_band
from muscale.config.spec import record_steps
from muscale.kinds.depth_profile import analysis as profile

sys.path.insert(0, str(Path(__file__).parent / "gold"))
import build

STEPS = record_steps(1000, "long")
DEPTHS = (2, 4, 8)
SEEDS = 4
ROLES = {"attn.o": "attn_out", "mlp.down": "mlp_down"}


def _records(rise: dict[str, float], spread: dict[str, float], noise: float = 0.02, moving: float = 0.0):
    """Records of every mode's runs whose block k of L adds exp(rise · k/(L−1)) to the stream
    and whose branch outputs alternate by ±spread in ln from block to block (sd ≈ spread),
    each value off by a seed's own draw in ln of sd `noise`, the same at every step;
    `moving` adds a drift of that much per unit ln(step) to the rise, so the profile has not
    stopped moving."""
    rows = []
    for m, mode in enumerate(rise):
        for depth in DEPTHS:
            for seed in range(SEEDS):
                rng = np.random.default_rng([m, depth, seed])
                off = rng.normal(0, noise, (depth, 1 + len(ROLES)))
                for step in STEPS:
                    slope = rise[mode] + moving * math.log(step + 1)
                    run = {
                        "run_id": f"{mode}-L{depth}-s{seed}",
                        "family": "transformer",
                        "mode": mode,
                        "optimizer": "adamw",
                        "width": 64,
                        "depth": depth,
                        "depth_rule": "sp",
                        "seed": seed,
                        "step": step,
                    }
                    for k in range(depth):
                        x = k / (depth - 1)
                        value = 0.05 * math.exp(slope * x + off[k, 0])
                        rows.append(
                            run | {"module": f"blocks.{k}", "role": "block", "metric": "contrib_rms"} | {"value": value}
                        )
                        for j, (name, role) in enumerate(ROLES.items(), 1):
                            value = 0.02 * math.exp((1 if k % 2 else -1) * spread[mode] + off[k, j])
                            rows.append(
                                run
                                | {"module": f"blocks.{k}.{name}", "role": role, "metric": "act_rms", "value": value}
                            )
                        if mode != "sp":
                            rows.append(
                                run
                                | {"module": f"blocks.{k}.attn.o", "role": "attn_out", "metric": "mult_scalar"}
                                | {"value": math.exp(0.3 * x)}
                            )
    return pl.DataFrame(rows)


def _status(result: profile.Profile) -> dict[str, str]:
    return dict(result.claims.select("claim", "status").iter_rows())


def test_the_statistics_read_the_profile_they_describe():
    result = profile.analyse(_records({"sp": 0.0, "lrm-scalar": 0.8}, {"sp": 0.1, "lrm-scalar": 0.5}, noise=0.0))
    last = result.statistics.filter(pl.col("against").is_null())
    rise = last.filter(metric="contrib_rise").select("mode", "depth", "alpha")
    assert rise.filter(mode="lrm-scalar")["alpha"].to_list() == pytest.approx([0.8] * 3)
    assert rise.filter(mode="sp")["alpha"].to_list() == pytest.approx([0.0] * 3, abs=1e-12)
    spread = last.filter(metric="branch_spread", mode="lrm-scalar")
    # ±0.5 alternating over L blocks: the sample sd of L values, half +0.5 and half −0.5.
    expected = {d: 0.5 * math.sqrt(d / (d - 1)) for d in DEPTHS}
    assert dict(spread.group_by("depth").agg(pl.col("alpha").first()).iter_rows()) == pytest.approx(expected)
    mult = last.filter(metric="mult_spread")
    assert set(mult["mode"]) == {"lrm-scalar"} and (mult["alpha"] > 0).all()
    assert mult["claim"].is_null().all() and set(mult["verdict"]) == {"info"}


def test_a_profile_that_rises_and_diversifies_beyond_sp_reproduces_every_claim():
    result = profile.analyse(_records({"sp": 0.0, "lrm-scalar": 0.8}, {"sp": 0.1, "lrm-scalar": 0.5}))
    assert _status(result) == dict.fromkeys(profile.CLAIMS, "reproduced")
    assert result.verdict == "pass"


def test_teeth_a_falling_profile_and_a_steeper_sp_are_not_reproduced():
    """The broken parametrization: multipliers whose blocks' outputs fall with depth while
    sp's rise; the layers' scales no more diverse than sp's."""
    result = profile.analyse(_records({"sp": 0.9, "lrm-scalar": -0.6}, {"sp": 0.5, "lrm-scalar": 0.1}))
    assert _status(result) == dict.fromkeys(profile.CLAIMS, "not reproduced")
    assert result.verdict == "fail"


def test_seeds_that_disagree_leave_the_claims_inconclusive():
    result = profile.analyse(_records({"sp": 0.0, "lrm-scalar": 0.2}, {"sp": 0.3, "lrm-scalar": 0.35}, noise=0.6))
    assert set(_status(result).values()) <= {"inconclusive", "not reproduced", "reproduced"}
    assert "inconclusive" in _status(result).values()
    rows = result.statistics.filter(pl.col("verdict") == "inconclusive")
    assert ((rows["ci_low"] < 0) & (rows["ci_high"] > 0)).all()


def test_a_profile_still_moving_is_unsettled_and_judged_neither_way():
    result = profile.analyse(_records({"sp": 0.0, "lrm-scalar": 0.8}, {"sp": 0.1, "lrm-scalar": 0.5}, moving=0.3))
    status = _status(result)
    assert status["rises"] == "unsettled" and status["scales diversify beyond sp"] == "reproduced"


def test_welch_interval_of_a_difference_is_scipys():
    rng = np.random.default_rng(1)
    a, b = rng.normal(1.0, 0.3, 5), rng.normal(0.4, 0.8, 4)
    half = intervals.difference(a.std(ddof=1), 5, b.std(ddof=1), 4)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (a.mean() - b.mean() - half, a.mean() - b.mean() + half) == pytest.approx((ci.low, ci.high))
    assert math.isnan(intervals.difference(0.3, 1, 0.8, 4))


@pytest.mark.parametrize(
    "alpha,low,high,settled,verdict",
    [
        (0.5, 0.1, 0.9, True, "pass"),
        (-0.5, -0.9, -0.1, True, "fail"),
        (0.2, -0.1, 0.5, True, "inconclusive"),
        (-0.2, -0.5, 0.1, True, "warn"),
        (0.5, 0.1, 0.9, False, "unsettled"),
    ],
)
def test_a_one_sided_band_is_judged_by_the_one_rule(alpha, low, high, settled, verdict):
    frame = pl.DataFrame({"alpha": [alpha], "ci_low": [low], "ci_high": [high], "settled": [settled]})
    assert frame.select(v=judge_band(pl.lit(0.0), pl.lit(math.inf)))["v"].item() == verdict


# The golden input's study: a few steps at width 16, depths 2 and 3, sp against lrm-scalar.
TINY = build.DEPTH_PROFILE

BAD = [
    ("depths = [2, 3]\n", "", "depths", None),
    ("depths = [2, 3]", "depths = [1, 3]", "depths", 6),
    ('modes = ["sp", "lrm-scalar"]', 'modes = ["lrm", "lrm-scalar"]', "modes", 4),
    ('modes = ["sp", "lrm-scalar"]', 'modes = ["sp", "mup"]', "modes", 4),
    ("widths = [16]\ndepths = [2, 3]", "widths = [16, 32]\ndepths = [2]", "widths", 5),
    ("seeds = 2", "seeds = 1", "seeds", 7),
    ("mult_lr = 0.01\n", "", "mult_lr", None),
    ('families = ["transformer"]', 'families = ["mlp"]\noptions = { norm = "layernorm" }', "families", 3),
]


@pytest.mark.parametrize("old,new,key,line", BAD, ids=[f"{k}-{n!r}" for _, n, k, _ in BAD])
def test_malformed_depth_profile_study_exits_2_naming_key_and_line(monkeypatch, capsys, tmp_path, old, new, key, line):
    assert old in TINY
    assert_study_error(monkeypatch, capsys, tmp_path, TINY.replace(old, new, 1), key, line)


def test_tiny_depth_profile_study_runs_judges_reports_and_gates(monkeypatch, capsys, tmp_path, one_thread):
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(monkeypatch, capsys, "sweep", str(write_study(tmp_path, TINY)), "--out", str(out))
    assert code == 0, stderr
    claims = pl.read_csv(out / "claims.csv")
    assert claims["claim"].to_list() == list(profile.CLAIMS) and set(claims["mode"]) == {"lrm-scalar"}
    table = pl.read_csv(out / "profile.csv")
    assert set(table["depth"]) == {2, 3} and set(table["step"]) == {12}
    assert {"contrib_rise", "contrib_rise_vs_sp", "branch_spread_vs_sp", "mult_spread"} <= set(table["metric"])
    html = (out / "report.html").read_text()
    assert "The profile along the depth" in html and html.count("data:image/png;base64,") >= 3
    # A baseline of the measured profile passes against itself and fails once a settled
    # row is expected far outside its interval.
    baseline = tmp_path / "baseline.toml"
    code, _, stderr = run_cli(monkeypatch, capsys, "baseline", str(out), "-o", str(baseline))
    assert code == 0, stderr
    code, stdout, _ = run_cli(monkeypatch, capsys, "gate", str(out), "--baseline", str(baseline), "--tol", "100")
    assert code == 0 and "FAIL" not in stdout, stdout
    settled = table.filter(pl.col("settled") & pl.col("ci_low").is_not_null()).row(0, named=True)
    rows = tomllib.loads(baseline.read_text())["exponent"]
    for row in rows:
        if all(row.get(k) == settled[k] for k in ("mode", "module", "metric", "depth")):
            row["expected"] = settled["alpha"] + 50
    baseline.write_text(tomli_w.dumps({"exponent": rows}))
    code, stdout, _ = run_cli(monkeypatch, capsys, "gate", str(out), "--baseline", str(baseline))
    assert code == 1 and stdout.count("FAIL") == 1, stdout


def test_a_hugging_face_model_has_a_profile_too(monkeypatch, capsys, tmp_path, one_thread):
    """Blocks, branch outputs and multipliers are found by role in a model muscale did not
    build (hf:llama's model.layers.K.self_attn.o_proj, .mlp.down_proj)."""
    pytest.importorskip("transformers")
    out = tmp_path / "out"
    study = write_study(tmp_path, TINY.replace('["transformer"]', '["hf:llama"]'))
    code, _, stderr = run_cli(monkeypatch, capsys, "sweep", str(study), "--out", str(out))
    assert code == 0, stderr
    table = pl.read_csv(out / "profile.csv")
    spread = table.filter(metric="branch_spread_vs_sp")
    assert set(spread["module"]) == {"attn_out", "mlp_down"} and set(spread["depth"]) == {2, 3}
    assert table.filter(metric="contrib_rise")["alpha"].is_finite().all()
    assert {"attn_q", "mlp_down"} <= set(table.filter(metric="mult_spread")["module"])
