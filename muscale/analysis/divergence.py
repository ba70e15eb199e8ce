"""When a run counts as diverged, one rule for every kind: its `diverged` row says so (the
trainer stopped it at a non-finite loss or statistic, or at a held-out loss above
`diverge_factor` × its start), or its last held-out loss is not finite."""

import polars as pl


def fate(records: pl.DataFrame) -> pl.DataFrame:
    """One row per run of `records`: run_id, diverged."""
    flagged = records.filter(pl.col("metric") == "diverged").group_by("run_id").agg(flagged=(pl.col("value") > 0).any())
    last = (
        records.filter(pl.col("metric") == "eval_loss")
        .sort("step")
        .group_by("run_id")
        .agg(lost=~pl.col("value").last().is_finite())
    )
    return (
        records.select("run_id")
        .unique()
        .join(flagged, on="run_id", how="left")
        .join(last, on="run_id", how="left")
        .select("run_id", diverged=pl.col("flagged").fill_null(False) | pl.col("lost").fill_null(False))
    )


def diverged_runs(records: pl.DataFrame) -> list[str]:
    return fate(records).filter(pl.col("diverged"))["run_id"].sort().to_list()
