"""Which depth rule a model implements, read from a depth check's exponents at init.

A pre-norm block's branch output has a depth-free size at init, so what block k adds to the
stream shrinks like L^−α with the branch multiplier alone (expectations.py): minus the fitted
exponent of contrib_rms at step 0, averaged over the block positions, is the α the model
behaves like, whatever it claims. Where muscale applied a rule itself, an α̂ beyond the
rule's own says the model scales its branches with depth a second time (an init such as
GPT-2's 1/sqrt(2L) on the output projections, on top of the multiplier)."""

import polars as pl

from ..config.depth import exponent_of, named
from .expectations import DEPTH_TOLERANCE

CONTRIBUTION = (pl.col("role") == "block") & (pl.col("metric") == "contrib_rms") & (pl.col("step") == 0)


def inferred(depth_exponents: pl.DataFrame) -> pl.DataFrame:
    """Per setting (mode, family, optimizer, lr, depth rule, width): α̂ with its interval, the
    rule it is nearest to, and whether depth is counted twice."""
    setting = [k for k in ("mode", "family", "optimizer", "lr", "depth_rule", "width") if k in depth_exponents.columns]
    rows = depth_exponents.filter(CONTRIBUTION)
    if rows.is_empty():
        return pl.DataFrame(
            schema={
                **{k: depth_exponents.schema[k] for k in setting},
                "alpha": pl.Float64,
                "ci_low": pl.Float64,
                "ci_high": pl.Float64,
                "behaves_like": pl.String,
                "counted_twice": pl.Boolean,
            }
        )
    out = rows.group_by(setting, maintain_order=True).agg(
        alpha=-pl.col("alpha").mean(), ci_low=-pl.col("ci_high").mean(), ci_high=-pl.col("ci_low").mean()
    )
    claimed = [exponent_of(r) for r in out["depth_rule"].to_list()]
    twice = [
        a is not None and a > 0 and low is not None and low > a + DEPTH_TOLERANCE
        for a, low in zip(claimed, out["ci_low"].to_list())
    ]
    return out.with_columns(
        behaves_like=pl.Series([named(a) for a in out["alpha"].to_list()], dtype=pl.String),
        counted_twice=pl.Series(twice, dtype=pl.Boolean),
    )


def sentence(row: dict) -> str:
    """One line for the summary and the report."""
    half = (row["ci_high"] - row["ci_low"]) / 2 if row["ci_low"] is not None else float("nan")
    line = (
        f"{row['mode']} {row['family']} (depth rule {row['depth_rule']}, width {row['width']}): behaves like "
        f"α = {row['alpha']:.2f} ± {half:.2f}: {row['behaves_like']}"
    )
    if row["counted_twice"]:
        line += (
            f"; depth counted twice: its branches shrink like L^−{row['alpha']:.2f} at init where the rule's "
            f"multiplier gives L^−{exponent_of(row['depth_rule']):g}, so the model's own init scales with depth too "
            "(such as GPT-2's 1/sqrt(2L) on the output projections)"
        )
    return line
