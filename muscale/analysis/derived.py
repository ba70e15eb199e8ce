"""Quantities derived from the records after the runs, never in the probes:

* `mult_scale`, per layer: the size of its learnable multiplier, |s| or the product of the
  RMS of its row and column vectors (whichever it has).
* `mult_qk`, per attention (at its QK-logit point, role attn_qk): the size of what
  multiplies the logits, the product of the query's and the key's output-side multipliers
  (|s|, or the row vector's RMS; a projection without one counts 1): s_q·s_k for scalars.
  The logits are the raw logits times this, so "logits flat" is "α(mult_qk) = −α(raw)".
* `update_rel`, per matrix: ‖ΔW‖_F / ‖W‖_F of the recorded step, the relative (angular)
  update, which the weight-decay equilibrium sets to about sqrt(2ηλ) whatever the width.

The width study derives all three; the coordinate check of an lrm mode derives `mult_qk`,
to judge it against the raw logits' exponent (fit.py)."""

import polars as pl

DERIVED = ("mult_scale", "mult_qk", "update_rel")
# What each derived metric is computed from.
SOURCES = {
    "mult_scale": ("mult_scalar", "mult_row_rms", "mult_col_rms"),
    "mult_qk": ("mult_scalar", "mult_row_rms"),
    "update_rel": ("update_fro", "weight_fro"),
}
_MULT = ("mult_scalar", "mult_row_rms", "mult_col_rms")


def derived(records: pl.DataFrame, metrics: tuple[str, ...] = DERIVED) -> pl.DataFrame:
    """The derived rows of `metrics` (see above), in the records' columns; only those asked
    for are built (a coordinate check wants `mult_qk` alone, not a pivot of every matrix)."""
    run = [c for c in records.columns if c not in ("module", "role", "metric", "value")]
    out = []
    if {"mult_scale", "mult_qk"} & set(metrics):
        wide = _wide(records, run, _MULT)
    if "mult_scale" in metrics:
        scale = (
            pl.col("mult_scalar")
            .abs()
            .fill_null(pl.col("mult_row_rms").fill_null(1.0) * pl.col("mult_col_rms").fill_null(1.0))
        )
        out.append(
            wide.filter(pl.any_horizontal(pl.col(m).is_not_null() for m in _MULT)).select(
                *run, "module", "role", metric=pl.lit("mult_scale"), value=scale
            )
        )
    if "mult_qk" in metrics:
        side = pl.col("mult_scalar").abs().fill_null(pl.col("mult_row_rms").fill_null(1.0))
        qk = (
            wide.filter(pl.col("role").is_in(["attn_q", "attn_k"]))
            .with_columns(module=pl.col("module").str.replace(r"\.[^.]+$", "") + ".qk")
            .group_by(*run, "module")
            .agg(value=side.product())
        )
        out.append(qk.select(*run, "module", role=pl.lit("attn_qk"), metric=pl.lit("mult_qk"), value="value"))
    if "update_rel" in metrics:
        norms = _wide(records, run, ("update_fro", "weight_fro")).drop_nulls(["update_fro", "weight_fro"])
        out.append(
            norms.select(
                *run, "module", "role", metric=pl.lit("update_rel"), value=pl.col("update_fro") / pl.col("weight_fro")
            )
        )
    return pl.concat([frame.select(records.columns).cast(records.schema) for frame in out] or [records.clear()])


def _wide(records: pl.DataFrame, run: list[str], metrics: tuple[str, ...]) -> pl.DataFrame:
    """One row per (run, step, module) with a column per metric (null where not recorded)."""
    rows = records.filter(pl.col("metric").is_in(metrics))
    wide = rows.pivot(on="metric", index=[*run, "module", "role"], values="value") if rows.height else rows
    return wide.with_columns(pl.lit(None, pl.Float64).alias(m) for m in metrics if m not in wide.columns)
