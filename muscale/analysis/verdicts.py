"""The one rule every kind judges an exponent by, and the one way a claim adds up the
exponents behind it. The coordinate check, the width studies and the gate all call these, so
a row cannot pass in one and be inconclusive in another.

With band = expected ± tolerance and I the exponent's 95% interval:

* pass: settled, and I lies wholly inside the band;
* fail: settled, and I lies wholly outside it;
* warn: settled, the point estimate outside the band and I reaching into it;
* inconclusive: settled, the point inside the band but I reaching past it, or no interval
  at all (one seed and two widths): the data cannot tell;
* unsettled: a long-horizon exponent still moving (settle.py), judged neither way;
* info: nothing is expected of it.

A point estimate inside the band is not evidence while its interval is wider than the band:
two seeds with slopes +0.3 and −0.6 average −0.15, inside ±0.15 of 0, with the interval
[−5.9, +5.6]. Such a row is inconclusive, never a pass."""

import math

import polars as pl

VERDICTS = ("pass", "fail", "warn", "inconclusive", "unsettled", "info")
# A claim is as bad as its worst exponent: one fail fails it, one still moving leaves it open.
WORST_FIRST = ("fail", "unsettled", "warn", "inconclusive", "pass", "info")
# A study's words for a verdict: what its claims' statuses say.
STATUSES = ("reproduced", "not reproduced", "inconclusive", "unsettled", "no data")
STATUS_OF_VERDICT = {
    "pass": "reproduced",
    "fail": "not reproduced",
    "warn": "inconclusive",
    "inconclusive": "inconclusive",
    "unsettled": "unsettled",
}


def judge(
    alpha: str = "alpha",
    ci_low: str = "ci_low",
    ci_high: str = "ci_high",
    expected: str = "expected",
    tolerance: str = "tolerance",
    settled: str | None = "settled",
) -> pl.Expr:
    """The verdict of each row, from its columns. A null `settled` (short horizons, or an
    exponent at a step that is not judged for settling) counts as settled."""
    return judge_band(
        pl.col(expected) - pl.col(tolerance), pl.col(expected) + pl.col(tolerance), alpha, ci_low, ci_high, settled
    )


def judge_band(
    lo: pl.Expr,
    hi: pl.Expr,
    alpha: str = "alpha",
    ci_low: str = "ci_low",
    ci_high: str = "ci_high",
    settled: str | None = "settled",
) -> pl.Expr:
    """`judge` against the band [lo, hi] itself: a one-sided claim ("rises", "exceeds the
    contrast") is the band [0, ∞), judged by the same rule. A null bound is info."""
    a, low, high = (pl.col(c).fill_nan(None) for c in (alpha, ci_low, ci_high))
    moving = pl.lit(False) if settled is None else pl.col(settled).fill_null(True).not_()
    return (
        pl.when(lo.is_null() | hi.is_null())
        .then(pl.lit("info"))
        .when(moving)
        .then(pl.lit("unsettled"))
        .when(a.is_null())
        .then(pl.lit("inconclusive"))
        .when((low >= lo) & (high <= hi))
        .then(pl.lit("pass"))
        .when((high < lo) | (low > hi))
        .then(pl.lit("fail"))
        .when((a < lo) | (a > hi))
        .then(pl.lit("warn"))
        .otherwise(pl.lit("inconclusive"))
    )


def judge_one(
    alpha: float | None,
    ci_low: float | None,
    ci_high: float | None,
    expected: float,
    tolerance: float,
    settled: bool | None = None,
) -> str:
    """`judge` for one exponent held as numbers (the gate's checks)."""

    def known(v: float | None) -> float | None:
        return None if v is None or math.isnan(v) else v

    frame = pl.DataFrame(
        {
            "alpha": [known(alpha)],
            "ci_low": [known(ci_low)],
            "ci_high": [known(ci_high)],
            "expected": [expected],
            "tolerance": [tolerance],
            "settled": [settled],
        },
        schema_overrides={"settled": pl.Boolean},
    )
    return frame.select(verdict=judge())["verdict"].item()


def combine(verdicts: list[str]) -> str:
    """A claim's verdict from its exponents': the worst, in WORST_FIRST's order."""
    return next((v for v in WORST_FIRST if v in verdicts), "info")


CLAIM_KEYS = ("mode", "family", "optimizer", "lr", "role", "metric")
# On a depth grid a claim is also held at one depth rule and one value of the other axis.
GRID_KEYS = ("depth_rule", "width", "depth")


def claims(exponents: pl.DataFrame) -> pl.DataFrame:
    """The claims judged exponents stand behind: one per mode, family, optimizer, learning
    rate, role and metric that has an expectation, with the modules and steps behind it, the
    range of their α, the widest reach of their intervals, how many rows got each verdict and
    the claim's verdict (`combine` of theirs), worst first. A banner counts these, not the
    rows: a claim about the head's logits is one claim however many steps and seeds stand
    behind it."""
    keys = [k for k in CLAIM_KEYS + GRID_KEYS if k in exponents.columns]
    judged = exponents.filter(pl.col("verdict") != "info")
    rank = {v: i for i, v in enumerate(WORST_FIRST)}
    return (
        judged.group_by(keys, maintain_order=True)
        .agg(
            modules=pl.col("module").unique(maintain_order=True),
            first_step=pl.col("step").min(),
            last_step=pl.col("step").max(),
            expected=pl.col("expected").first(),
            tolerance=pl.col("tolerance").first(),
            alpha_min=pl.col("alpha").min(),
            alpha_max=pl.col("alpha").max(),
            ci_low=pl.col("ci_low").min(),
            ci_high=pl.col("ci_high").max(),
            rows=pl.len(),
            **{v: (pl.col("verdict") == v).sum() for v in VERDICTS[:-1]},
            worst=pl.col("verdict").replace_strict(rank, return_dtype=pl.Int64).min(),
        )
        .sort("worst", maintain_order=True)
        .with_columns(verdict=pl.col("worst").replace_strict(dict(enumerate(WORST_FIRST)), return_dtype=pl.String))
        .drop("worst")
    )
