"""Width exponents: α in value ∝ d^α, its interval over seeds, R², and a verdict.

Slopes are closed-form least squares (cov/var of logs) done as polars aggregations, so a
fit over tens of thousands of groups costs one pass over the records."""

import numpy as np
import polars as pl

from ..config.spec import LONG_MODES
from . import intervals, positions, settle
from .expectations import depth_expectation, expectation
from .verdicts import judge

KEYS = ["mode", "family", "optimizer", "lr", "module", "role", "metric", "step"]
# Signed log-ratios that start at 0 (probes' mult_drift): no power of width; drawn against step.
UNFITTED = ("mult_drift",)


def _slope(x: str, y: str) -> pl.Expr:
    return pl.cov(x, y) / pl.col(x).var()


def grid_keys(records: pl.DataFrame, axis: str) -> list[str]:
    """The keys a fit along `axis` holds fixed besides KEYS: on a depth grid the depth rule
    and the other axis. Records without a depth (every width check) have none."""
    if "depth" not in records.columns or records["depth"].is_null().all():
        return []
    return ["depth_rule", "depth" if axis == "width" else "width"]


def fit_exponents(records: pl.DataFrame, axis: str = "width") -> pl.DataFrame:
    """α in value ∝ d^α (axis width), or β in value ∝ L^β (axis depth: blocks compared by
    position, positions.py), at each value of the other axis."""
    if axis == "depth":
        records = positions.by_position(records)
    keys = [k for k in KEYS if k in records.columns] + grid_keys(records, axis)
    data = records.filter(pl.col("value").is_finite() & ~pl.col("metric").is_in(UNFITTED)).with_columns(
        x=pl.col(axis).cast(pl.Float64).log()
    )
    count = f"n_{axis}s"
    setting = ["mode", *grid_keys(records, axis)]
    points = data.group_by(setting).agg(total=pl.col(axis).n_unique())
    # A group is fitted only when every point of the axis has a positive value in every seed.
    clean = (
        data.group_by(keys)
        .agg(ok=(pl.col("value") > 0).all(), n=pl.col(axis).n_unique())
        .join(points, on=setting, nulls_equal=True)
        .filter(pl.col("ok") & (pl.col("n") == pl.col("total")) & (pl.col("n") >= 2))
        .select(keys)
    )
    # A key left unknown (a recorder run without a learning rate) is null, and null matches null.
    data = data.join(clean, on=keys, nulls_equal=True).with_columns(y=pl.col("value").log())
    means = (
        data.group_by(keys + [axis, "x"])
        .agg(v=pl.col("value").mean())
        .with_columns(y=pl.col("v").log())
        .group_by(keys)
        .agg(
            alpha=_slope("x", "y"),
            r2=pl.corr("x", "y") ** 2,
            n_points=pl.len(),
            sxx=((pl.col("x") - pl.col("x").mean()) ** 2).sum(),
            syy=((pl.col("y") - pl.col("y").mean()) ** 2).sum(),
        )
    )
    seeds = (
        data.group_by(keys + ["seed"])
        .agg(slope=_slope("x", "y"))
        .group_by(keys)
        .agg(seed_sd=pl.col("slope").std(), n_seeds=pl.len())
    )
    fits = _settled(means.join(seeds, on=keys, nulls_equal=True).sort(keys), keys, _long_modes(records))
    expect = _width_expectation if axis == "width" else depth_expectation
    return (
        _verdicts(_intervals(fits), keys, expect)
        .rename({"n_points": count})
        .select(
            *keys, "alpha", "ci_low", "ci_high", "r2", count, "n_seeds", "expected", "tolerance", "settled", "verdict"
        )
    )


def _width_expectation(row: dict) -> tuple[float | None, float | None]:
    return expectation(row["mode"], row["role"], row["metric"])


def _long_modes(records: pl.DataFrame) -> list[str]:
    if "horizon" not in records.columns:
        return []
    return records.filter(pl.col("horizon") == "long")["mode"].unique().to_list()


def _settled(fits: pl.DataFrame, keys: list[str], long_modes: list[str]) -> pl.DataFrame:
    """`settled` on each long-horizon row at its last step, by settle.py's rule on the series'
    α over the last third of the run. Null elsewhere: a short horizon judges every step, and a
    trajectory's earlier points are not judged."""
    series = [k for k in keys if k != "step"]
    last = pl.col("step") == pl.col("step").max().over(series)
    verdicts = settle.settled(fits.filter(pl.col("mode").is_in(long_modes)), series)
    fits = fits.join(verdicts.rename({"settled": "window_settled"}), on=series, how="left", nulls_equal=True)
    return fits.with_columns(
        settled=pl.when(pl.col("mode").is_in(long_modes) & last).then("window_settled").otherwise(None),
        last_step=last,
    ).drop("window_settled")


def _intervals(fits: pl.DataFrame) -> pl.DataFrame:
    """95% t-interval over seed slopes; with one seed, the regression's own standard error."""
    n, nw = fits["n_seeds"].to_numpy(), fits["n_points"].to_numpy()
    alpha, sxx, syy = (fits[c].to_numpy() for c in ("alpha", "sxx", "syy"))
    seed_sd = fits["seed_sd"].fill_null(np.nan).to_numpy()
    half = np.where(n >= 2, intervals.over_seeds(seed_sd, n), intervals.slope_from_sums(alpha, sxx, syy, nw))
    fits = fits.with_columns(half=pl.Series(half).fill_nan(None))
    return fits.with_columns(ci_low=pl.col("alpha") - pl.col("half"), ci_high=pl.col("alpha") + pl.col("half"))


def _verdicts(fits: pl.DataFrame, keys: list[str], expect) -> pl.DataFrame:
    """Each row's expectation, then its verdict by the one rule (verdicts.py). A quantity is
    judged once: where a module records both act_rms and act_l1 (one fact, its output's
    size), act_rms carries the claim; a head multiplier paired with a norm's gain is judged
    on their product along the path; the QK multiplier product is not judged at all, since
    the logits are the raw logits times it exactly (an identity tests/test_fit.py checks),
    so "QK logits flat" already says what it would."""
    rows = [
        expect(row) if row["mode"] not in LONG_MODES or row["last_step"] else (None, None)
        for row in fits.iter_rows(named=True)
    ]
    fits = fits.with_columns(
        expected=pl.Series([e for e, _ in rows], dtype=pl.Float64),
        tolerance=pl.Series([t for _, t in rows], dtype=pl.Float64),
    )
    group = [k for k in keys if k not in ("module", "role", "metric")]
    paired = ((pl.col("role") == "head") & (pl.col("metric") == "mult_path")).any().over(group)
    alone = (pl.col("role") == "head") & pl.col("metric").is_in(["mult_scalar", "mult_row_rms"])
    same_output = [k for k in keys if k != "metric"]
    has_rms = (pl.col("metric") == "act_rms").any().over(same_output)
    repeated = (paired & alone) | ((pl.col("metric") == "act_l1") & has_rms)
    fits = fits.with_columns(
        expected=pl.when(repeated).then(None).otherwise("expected"),
        tolerance=pl.when(repeated).then(None).otherwise("tolerance"),
    )
    return fits.with_columns(verdict=judge())


SUMMARY_METRICS = ("act_rms", "dact_rms", "mult_scalar", "mult_row_rms", "mult_col_rms")


def first_and_last(exponents: pl.DataFrame) -> pl.DataFrame:
    """Per mode, role and metric: the median α over a role's modules after the first
    update (step 1) and at the last step. This is what the learnable-multiplier claim is
    about: do activations end flat while the multipliers carry the width dependence?"""
    rows = exponents.filter(pl.col("metric").is_in(SUMMARY_METRICS) & (pl.col("step") >= 1))
    if rows.is_empty():
        return pl.DataFrame(
            schema={
                "mode": pl.String,
                "role": pl.String,
                "metric": pl.String,
                "first_step": pl.Int64,
                "alpha_first": pl.Float64,
                "last_step": pl.Int64,
                "alpha_last": pl.Float64,
            }
        )
    bounds = rows.group_by("mode").agg(first_step=pl.col("step").min(), last_step=pl.col("step").max())
    rows = rows.join(bounds, on="mode")

    def median(at: str) -> pl.DataFrame:
        return (
            rows.filter(pl.col("step") == pl.col(at))
            .group_by("mode", "role", "metric", at)
            .agg(pl.col("alpha").median())
        )

    first = median("first_step").rename({"alpha": "alpha_first"})
    last = median("last_step").rename({"alpha": "alpha_last"})
    return (
        first.join(last, on=["mode", "role", "metric"], how="full", coalesce=True)
        .select("mode", "role", "metric", "first_step", "alpha_first", "last_step", "alpha_last")
        .sort("mode", "metric", "role")
    )
