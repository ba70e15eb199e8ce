"""Whether a long-horizon exponent has stopped moving, read from its trajectory over the last
third of the run rather than from two points of it.

The rule: regress α on ln(step) over the recorded steps from SETTLE_FROM of the run to its end
(spec.record_steps puts SETTLE_POINTS log-spaced steps there), a slope s with its 95%
half-width h (intervals.slope_from_sums, the one interval rule). One more doubling of the run
at that slope moves α by ln 2·|s|; α is settled when that move is within SETTLE_TOLERANCE and
so is ln 2·h, the least move the window can resolve. A log-slope rather than a slope in steps,
because the approaches that matter are slow in steps and look alike in ln(step). The larger of
the two rather than their sum (the interval's far end), because α jitters from step to step
(residual sd over the last third of the default check on the stdlib bytes: median 0.014, a
quarter of the rows above 0.03; benchmarks/settle_rows.py) and the far end would keep a flat
row at 0.03 unsettled in most draws however long the run. The larger of the two still flags
a trend of twice the tolerance in all but about one draw in forty under any jitter it
settles, and leaves a window too noisy to resolve the tolerance unsettled.
Fewer than three steps in the window give no interval and are never settled.

What it can tell apart. An approach α∞ + c·t^−p has |s| = p·(move left), so the doubling
sees ln 2 / p of the move still to come: all of it for p ≥ 1/ln 2 ≈ 1.44 and for an
exponential approach (its log-slope falls faster still), two thirds of it for t^−1 (flagged
once ≥ 0.14 is left to go), a third of it for t^−½ (once ≥ 0.29 is left). A drift linear in
ln(step) never stops and is flagged once its slope exceeds SETTLE_TOLERANCE / ln 2 ≈ 0.14. The
old two-point rule (α at the end against α at 70% of the run) flagged t^−1 only with ≥ 0.23
left and t^−½ only with ≥ 0.51.

What it cannot. The last third spans ln 1.5 in ln(step), too short to measure curvature under
that jitter, so the decay law is not estimated: an exponential approach at four time constants
and a t^−1 approach with 0.7 of its amplitude have nearly the same slope there, and this rule
calls both by their slope. A slower approach than it assumes (t^−½ with 0.1…0.29 left, a power
below ½) is called settled while it still moves; a jump after the window, or a trend hidden
under jitter the window barely resolves, is not seen either. Only a longer run decides those."""

import math

import polars as pl

from ..config.spec import SETTLE_FROM, SETTLE_TOLERANCE
from . import intervals

# One more doubling of the run, in ln(step).
HORIZON = math.log(2)


def window_slopes(fits: pl.DataFrame, series: list[str]) -> pl.DataFrame:
    """Per series: the slope of α against ln(step) over the last third of the run, its 95%
    half-width, the steps it rests on, the move it projects over one more doubling and the
    least move the window resolves (the half-width over one doubling)."""
    last = pl.col("step").max().over(series)
    window = fits.filter((pl.col("step") >= SETTLE_FROM * last) & (pl.col("step") > 0) & pl.col("alpha").is_finite())
    sums = (
        window.with_columns(u=pl.col("step").cast(pl.Float64).log())
        .group_by(series)
        .agg(
            slope=pl.cov("u", "alpha") / pl.col("u").var(),
            sxx=((pl.col("u") - pl.col("u").mean()) ** 2).sum(),
            syy=((pl.col("alpha") - pl.col("alpha").mean()) ** 2).sum(),
            n_window=pl.len(),
        )
    )
    half = intervals.slope_from_sums(*(sums[c].to_numpy() for c in ("slope", "sxx", "syy", "n_window")))
    sums = sums.with_columns(slope_half=pl.Series(half, dtype=pl.Float64).fill_nan(None))
    sums = sums.drop("sxx", "syy")
    return sums.with_columns(move=pl.col("slope").abs() * HORIZON, resolution=pl.col("slope_half") * HORIZON)


def settled(fits: pl.DataFrame, series: list[str]) -> pl.DataFrame:
    """Per series, whether its projected move and the window's resolution are both within
    SETTLE_TOLERANCE (false where no interval could be had)."""
    within = (pl.col("move") <= SETTLE_TOLERANCE) & (pl.col("resolution") <= SETTLE_TOLERANCE)
    return window_slopes(fits, series).select(*series, settled=within.fill_null(False))
