"""Depth-profile studies (study kind "depth_profile"): how a trained model's blocks differ
along its depth, and the learnable-multiplier paper's two claims about it, with `sp` as the
contrast: under learnable multipliers each block's residual output grows with its layer
index, and the layers of one kind take scales that differ from block to block (under `sp`
the weight-decay equilibrium pins every matrix's norm to the same √(η/λ), DESIGN.md fact 5).

Each statistic is one number per run and recorded step, so that the seeds give it an
interval by the one rule (intervals.py):

* `contrib_rise`: the slope of ln contrib_rms (what block k adds to the stream) against
  k / (L − 1), k = 0…L−1: ln(last / first) for a profile that rises steadily, read alike
  at every depth;
* `branch_spread`, per branch role (attn_out, mlp_down, ssm_out): the standard deviation
  over the blocks of ln act_rms of that role's output, how far one kind of layer's scale
  differs from block to block;
* `mult_spread`, per multiplied role: the same of ln mult_scale (derived.py), shown, never
  judged: `sp` has no multiplier to contrast it with.

A contrast is a multiplier mode's statistic less `sp`'s at the same family, depth and step,
its interval Welch's over the two modes' seeds. The claims, for each multiplier mode and
family, over every depth of the study:

* `rises`: contrib_rise > 0;
* `rises beyond sp`: contrib_rise − sp's > 0;
* `scales diversify beyond sp`: branch_spread − sp's > 0, for every branch role.

Each row is judged at its last recorded step by the one rule (verdicts.judge_band) with the
band [0, ∞), its settledness read from its own trajectory over the last third of the run
(settle.py), as a width exponent's is; a claim is as bad as its worst row (verdicts.combine)."""

from dataclasses import dataclass

import numpy as np
import polars as pl

from ...analysis import intervals, settle
from ...analysis import verdicts as rule
from ...analysis.derived import derived
from ...analysis.positions import block_index
from ...config.spec import MODES, multiplier_kind

CONTRAST = "sp"
BRANCH_ROLES = ("attn_out", "mlp_down", "ssm_out")
# What each run is told apart by, and each statistic's series over steps.
RUN = ("mode", "family", "optimizer", "width", "depth", "depth_rule", "seed", "step")
SERIES = ("mode", "family", "optimizer", "width", "depth", "depth_rule", "metric", "module")
# claim name → (statistic, whether it is judged against the contrast)
CLAIMS = {
    "rises": ("contrib_rise", False),
    "rises beyond sp": ("contrib_rise", True),
    "scales diversify beyond sp": ("branch_spread", True),
}
# A one-sided claim's band: the statistic, or its excess over sp, is positive.
BAND = (0.0, float("inf"))


@dataclass(frozen=True)
class Profile:
    # The records behind the figures: contrib_rms, the branch outputs' act_rms and mult_scale
    # per block, with its index `block`.
    layers: pl.DataFrame
    # Per statistic, mode (and contrast), family, depth, module and step: alpha (the mean
    # over seeds, or its excess over sp's), ci_low, ci_high, n_seeds, settled, against (null,
    # or "sp"), claim (the claim it stands behind, or null) and verdict.
    statistics: pl.DataFrame
    # The judged statistics (contrib_rise, branch_spread) at every recorded step, for their
    # trajectories: the columns of `statistics` but claim and verdict.
    trajectories: pl.DataFrame
    # One row per claim, mode and family: the rows behind it and its status.
    claims: pl.DataFrame
    verdict: str  # pass when every claim is reproduced, fail when one is not, warn otherwise; info with none


def analyse(records: pl.DataFrame) -> Profile:
    layers = _layers(records)
    stats = _statistics(layers)
    summary = _over_seeds(stats)
    table = pl.concat([summary.drop("sd"), _contrasts(summary)], how="diagonal_relaxed")
    table = _settled(table)
    judged = _judged(table)
    claims = _claims(judged)
    judged_metrics = {metric for metric, _ in CLAIMS.values()}
    return Profile(layers, judged, table.filter(pl.col("metric").is_in(judged_metrics)), claims, _verdict(claims))


def _layers(records: pl.DataFrame) -> pl.DataFrame:
    run = [c for c in records.columns if c not in ("module", "role", "metric", "value")]
    scales = derived(records, ("mult_scale",))
    rows = pl.concat([records, scales]).filter(
        ((pl.col("metric") == "contrib_rms") & (pl.col("role") == "block"))
        | ((pl.col("metric") == "act_rms") & pl.col("role").is_in(BRANCH_ROLES))
        | (pl.col("metric") == "mult_scale")
    )
    return (
        rows.with_columns(block=block_index(pl.col("module")))
        .filter(pl.col("block").is_not_null() & (pl.col("value") > 0) & (pl.col("depth") >= 2))
        .select(*run, "module", "role", "metric", "block", "value")
    )


def _statistics(layers: pl.DataFrame) -> pl.DataFrame:
    """Each run's statistics at each recorded step (see the module's docstring)."""
    run = [c for c in RUN if c in layers.columns]
    x = pl.col("block") / (pl.col("depth") - 1)
    y = pl.col("value").log()
    rise = (
        layers.filter(pl.col("metric") == "contrib_rms")
        .group_by(run)
        .agg(value=pl.cov(x, y) / x.var())
        .with_columns(metric=pl.lit("contrib_rise"), module=pl.lit("blocks"))
    )
    spread = [
        layers.filter(pl.col("metric") == source)
        .group_by(*run, "role")
        .agg(value=y.std())
        .select(*run, "value", metric=pl.lit(name), module="role")
        for source, name in (("act_rms", "branch_spread"), ("mult_scale", "mult_spread"))
    ]
    return pl.concat([rise.select(*run, "value", "metric", "module"), *spread])


def _over_seeds(stats: pl.DataFrame) -> pl.DataFrame:
    keys = [c for c in (*SERIES, "step") if c in stats.columns]
    summary = stats.group_by(keys).agg(
        alpha=pl.col("value").mean(), sd=pl.col("value").std(), n_seeds=pl.len().cast(pl.Int64)
    )
    half = intervals.over_seeds(summary["sd"].to_numpy(), summary["n_seeds"].to_numpy())
    return _bounded(summary, half)


def _contrasts(summary: pl.DataFrame) -> pl.DataFrame:
    """Each multiplier mode's statistics less sp's (from _over_seeds' means and spreads), with
    Welch's interval over both modes' seeds."""
    keys = [c for c in (*SERIES, "step") if c in summary.columns and c != "mode"]
    per_mode = summary.select("mode", *keys, mean="alpha", sd="sd", n="n_seeds")
    contrast = per_mode.filter(pl.col("mode") == CONTRAST).drop("mode")
    joined = per_mode.filter(pl.col("mode") != CONTRAST).join(contrast, on=keys, suffix="_sp")
    half = intervals.difference(*(joined[c].to_numpy() for c in ("sd", "n", "sd_sp", "n_sp")))
    out = joined.with_columns(
        alpha=pl.col("mean") - pl.col("mean_sp"),
        n_seeds=pl.min_horizontal("n", "n_sp"),
        against=pl.lit(CONTRAST),
    )
    return _bounded(out, half).select(*keys, "mode", "alpha", "ci_low", "ci_high", "n_seeds", "against")


def _bounded(frame: pl.DataFrame, half: np.ndarray) -> pl.DataFrame:
    h = pl.Series(half, dtype=pl.Float64).fill_nan(None)
    return frame.with_columns(ci_low=pl.col("alpha") - h, ci_high=pl.col("alpha") + h)


def _settled(table: pl.DataFrame) -> pl.DataFrame:
    if "against" not in table.columns:
        table = table.with_columns(against=pl.lit(None, pl.String))
    series = [c for c in (*SERIES, "against") if c in table.columns]
    flags = settle.settled(table.with_columns(pl.col("against").fill_null("")), series)
    return table.join(flags.with_columns(pl.col("against").replace("", None)), on=series, how="left", nulls_equal=True)


def _judged(table: pl.DataFrame) -> pl.DataFrame:
    """The last recorded step of each series, with the claim it stands behind and its verdict."""
    series = [c for c in (*SERIES, "against") if c in table.columns]
    last = table.filter(pl.col("step") == pl.col("step").max().over(series))
    claim = pl.lit(None, pl.String)
    for name, (metric, contrasted) in CLAIMS.items():
        hit = (pl.col("metric") == metric) & (pl.col("against").is_not_null() == contrasted)
        claim = pl.when(hit).then(pl.lit(name)).otherwise(claim)
    learnable = pl.col("mode").is_in([m for m in MODES if multiplier_kind(m)])
    judged = last.with_columns(claim=pl.when(learnable).then(claim))
    lo, hi = (pl.when(pl.col("claim").is_not_null()).then(pl.lit(b)) for b in BAND)
    return judged.with_columns(verdict=rule.judge_band(lo, hi)).sort(
        "family", "mode", "metric", "against", "module", "depth", nulls_last=False
    )


def _claims(table: pl.DataFrame) -> pl.DataFrame:
    rows = table.filter(pl.col("claim").is_not_null())
    if rows.is_empty():
        return pl.DataFrame(schema={"claim": pl.String, "mode": pl.String, "family": pl.String, "status": pl.String})
    order = {name: i for i, name in enumerate(CLAIMS)}
    return (
        rows.group_by("claim", "mode", "family")
        .agg(
            metric=pl.col("metric").first(),
            depths=pl.col("depth").unique().sort(),
            modules=pl.col("module").unique().sort(),
            alpha_min=pl.col("alpha").min(),
            alpha_max=pl.col("alpha").max(),
            ci_low=pl.col("ci_low").min(),
            ci_high=pl.col("ci_high").max(),
            verdicts=pl.col("verdict"),
        )
        .with_columns(
            status=pl.col("verdicts").map_elements(
                lambda v: rule.STATUS_OF_VERDICT[rule.combine(list(v))], return_dtype=pl.String
            ),
            _order=pl.col("claim").replace_strict(order, return_dtype=pl.Int64),
        )
        .sort("family", "mode", "_order")
        .drop("_order", "verdicts")
    )


def _verdict(claims: pl.DataFrame) -> str:
    statuses = set(claims["status"].to_list())
    if not statuses:
        return "info"
    if "not reproduced" in statuses:
        return "fail"
    return "pass" if statuses == {"reproduced"} else "warn"
