"""Learning-rate transfer: the loss-optimal learning rate per width (or depth) and how it drifts.

A sweep over two depths or more at one width is a depth sweep: its axis is depth, each
depth rule is a setting of its own, and the drift is η* ∝ L^β. Everything below reads
"width" as the sweep's axis.

η* per (setting, width, seed) is the vertex of the parabola through the best grid point
and its two neighbours in log2 η; diverged runs are left out. When the best point sits
on the grid's edge, or a neighbour diverged, there is no bracket and η* is that grid
point, flagged. The drift exponent α in η* ∝ d^α is fitted like any width exponent
(fit.py): per seed, with an interval over seeds. The study's expectations are checked here,
as `muscale gate` checks them, so that the report only shows what was decided."""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from ...analysis import gate, positions
from ...analysis.divergence import fate
from ...analysis.fit import fit_exponents
from ...analysis.intervals import over_seeds
from ...analysis.verdicts import combine
from ...errors import InputError
from ...report.frames import require

SETTING = ["family", "mode", "optimizer"]
# A depth sweep's settings also differ by depth rule, at the one width it runs.
DEPTH_SETTING = [*SETTING, "depth_rule", "width"]
SWEEP_COLUMNS = ("run_id", "family", "mode", "optimizer", "lr", "width", "seed", "step", "metric", "value")


def _check_records(records: pl.DataFrame) -> None:
    require(records, SWEEP_COLUMNS, "records")
    present = sorted(records["metric"].unique().to_list())
    if "eval_loss" not in present:
        seen = f"it has {', '.join(present)}" if present else "it has no rows"
        raise InputError(
            "records",
            f"no eval_loss rows ({seen}); η* is read from each run's final held-out loss",
            "pass the records of a learning-rate sweep (`muscale sweep`, eval_batches ≥ 1)",
        )


def axis_of(records: pl.DataFrame) -> str:
    """depth for a sweep over two depths or more, else width."""
    return "depth" if positions.over_depths(records) else "width"


def setting_of(axis: str) -> list[str]:
    return DEPTH_SETTING if axis == "depth" else SETTING


def final_losses(records: pl.DataFrame, axis: str = "width") -> pl.DataFrame:
    """One row per run: its last held-out loss and whether it diverged."""
    last = (
        records.filter(pl.col("metric") == "eval_loss")
        .sort("step")
        .group_by("run_id")
        .agg(pl.col("value").last().alias("eval_loss"), pl.col("step").max().alias("step"))
    )
    setting = setting_of(axis)
    keys = records.select("run_id", *setting, axis, "seed", "lr").unique()
    return (
        keys.join(last, on="run_id")
        .join(fate(records), on="run_id", how="left")
        .with_columns(log2_lr=pl.col("lr").log(2).round(6))
        .sort(*setting, axis, "seed", "lr")
    )


def _vertex(points: list[tuple[float, float, bool]]) -> tuple[float, float, bool]:
    """(log2 η*, loss at η*, bracketed) from (log2 lr, loss, diverged) sorted by lr."""
    kept = [(x, y, d) for x, y, d in points if math.isfinite(y)]
    alive = [i for i, (_, _, d) in enumerate(kept) if not d]
    if not alive:
        return math.nan, math.nan, False
    i = min(alive, key=lambda j: kept[j][1])
    x, y, _ = kept[i]
    if i == 0 or i == len(kept) - 1 or kept[i - 1][2] or kept[i + 1][2]:
        return x, y, False
    (x0, y0, _), (x2, y2, _) = kept[i - 1], kept[i + 1]
    h0, h2 = x - x0, x2 - x
    # Parabola through three points with unequal spacing allowed.
    a = ((y2 - y) / h2 + (y0 - y) / h0) / (h0 + h2)
    b = (y2 - y) / h2 - a * h2
    if a <= 0:
        return x, y, False
    shift = -b / (2 * a)
    return x + shift, y + b * shift + a * shift**2, True


def optima(losses: pl.DataFrame, axis: str = "width") -> pl.DataFrame:
    """η* per setting, width and seed."""
    rows = []
    keys = [*setting_of(axis), axis, "seed"]
    for key, group in losses.group_by(*keys, maintain_order=True):
        points = list(zip(group["log2_lr"], group["eval_loss"], group["diverged"]))
        x, y, bracketed = _vertex(points)
        rows.append(
            dict(
                zip(keys, key),
                log2_lr_opt=x,
                loss_opt=y,
                bracketed=bracketed,
                n_diverged=int(group["diverged"].sum()),
                step=int(group["step"].max()),
            )
        )
    return pl.DataFrame(rows)


def drift(best: pl.DataFrame, tolerance: float, axis: str = "width") -> pl.DataFrame:
    """Per setting: α of η* ∝ d^α with its interval, and the verdict `transfers` (|α| within
    the tolerance), `drifts`, or `no fit` when fewer than two widths have an optimum. A width
    whose every run diverged has no optimum and is left out of the fit (the report names it).
    A depth sweep's rows carry axis = depth, as `muscale gate` matches them."""
    setting, count = setting_of(axis), f"n_{axis}s"
    usable = best.filter(pl.col("log2_lr_opt").is_finite())
    columns = [*setting, axis]
    as_records = usable.select(*columns, "seed", value=2.0 ** pl.col("log2_lr_opt")).with_columns(
        module=pl.lit("lr_opt"), role=pl.lit("lr"), metric=pl.lit("lr_opt"), step=pl.lit(0)
    )
    fits = (
        fit_exponents(as_records, axis=axis).select(*setting, "alpha", "ci_low", "ci_high", "r2", count, "n_seeds")
        if as_records.height
        else pl.DataFrame(
            schema={
                **{k: best.schema[k] for k in setting},
                **{k: pl.Float64 for k in ("alpha", "ci_low", "ci_high", "r2")},
                count: pl.UInt32,
                "n_seeds": pl.UInt32,
            }
        )
    )
    # Named like a width exponent (module, metric, step), so `muscale baseline` and `gate` take it as one.
    summary = (
        best.group_by(*setting)
        .agg(
            unbracketed=(~pl.col("bracketed")).sum(),
            diverged_runs=pl.col("n_diverged").sum(),
            step=pl.col("step").max(),
        )
        .with_columns(module=pl.lit("lr_opt"), metric=pl.lit("lr_opt"))
    )
    if axis == "depth":
        summary = summary.with_columns(axis=pl.lit("depth"))
    table = summary.join(fits, on=setting, how="left", nulls_equal=True)
    verdict = (
        pl.when(pl.col("alpha").is_null())
        .then(pl.lit("no fit"))
        .when(pl.col("alpha").abs() <= tolerance)
        .then(pl.lit("transfers"))
        .otherwise(pl.lit("drifts"))
    )
    return table.with_columns(tolerance=pl.lit(tolerance), verdict=verdict).sort(*setting)


def per_width(best: pl.DataFrame, axis: str = "width") -> pl.DataFrame:
    """Mean log2 η* per setting and width with a 95% t-interval over seeds (null with one)."""
    setting = setting_of(axis)
    table = (
        best.filter(pl.col("log2_lr_opt").is_finite())
        .group_by(*setting, axis)
        .agg(
            log2_lr_opt=pl.col("log2_lr_opt").mean(),
            sd=pl.col("log2_lr_opt").std(),
            n_seeds=pl.len(),
            bracketed=pl.col("bracketed").all(),
        )
    )
    half = pl.Series(over_seeds(table["sd"].fill_null(np.nan).to_numpy(), table["n_seeds"].to_numpy()))
    return (
        table.with_columns(half=half.fill_nan(None))
        .select(
            *setting,
            axis,
            "log2_lr_opt",
            ci_low=pl.col("log2_lr_opt") - pl.col("half"),
            ci_high=pl.col("log2_lr_opt") + pl.col("half"),
            n_seeds="n_seeds",
            bracketed="bracketed",
        )
        .sort(*setting, axis)
    )


def checks(drift: pl.DataFrame, expect: Sequence[Mapping], axis: str = "width") -> pl.DataFrame:
    """The study's expectations (gate rows), one per setting, each checked as `muscale gate` checks it."""
    setting = setting_of(axis)
    rows = []
    for c in gate.check(drift, list(expect)):
        at = dict(zip(gate.GRID, c.grid))
        values = {"family": c.family, "mode": c.mode, "optimizer": c.optimizer} | {k: at[k] for k in setting[3:]}
        rows.append(values | {"expected": c.expected, "tolerance": c.tolerance, "status": c.status})
    by_setting = {tuple(r[k] for k in setting): r for r in rows}
    return pl.DataFrame(
        list(by_setting.values()),
        schema={
            **{k: drift.schema.get(k, pl.String) for k in setting},
            "expected": pl.Float64,
            "tolerance": pl.Float64,
            "status": pl.String,
        },
    )


def verdict(drift: pl.DataFrame, checked: pl.DataFrame) -> str:
    """The sweep's one verdict. A study that expects drift exponents is judged on them by the
    one rule (verdicts.py): fail when any misses, pass when all pass, warn when some cannot
    be told. Otherwise a drift is flagged (warn), not failed: under SP it is the
    expected result, and there is nothing to hold it against; transfer in every setting
    passes, and too few optima to fit anywhere leaves no verdict (info)."""
    if checked.height:
        judged = combine(["fail" if s == "missing" else s for s in checked["status"].to_list()])
        return judged if judged in ("pass", "fail") else "warn"
    verdicts = drift["verdict"].to_list()
    if "drifts" in verdicts:
        return "warn"
    return "pass" if verdicts and set(verdicts) == {"transfers"} else "info"


@dataclass(frozen=True)
class Transfer:
    """Everything the report, the tables and the gate read, from the records of a sweep."""

    tolerance: float
    axis: str  # axis_of: width, or depth for a depth sweep
    setting: list[str]  # setting_of the axis: what tells the sweep's settings apart
    losses: pl.DataFrame  # final_losses
    best: pl.DataFrame  # optima
    drift: pl.DataFrame  # drift: the exponents
    widths: pl.DataFrame  # per_width
    checks: pl.DataFrame  # checks: the study's expectations, checked
    verdict: str  # verdict: pass, warn, fail or info


def analyse(records: pl.DataFrame, tolerance: float, expect: Sequence[Mapping] = ()) -> Transfer:
    """`tolerance`: the largest |α| of η* ∝ width^α that still counts as transfer; `expect`: the
    study's expectations as gate rows (`TransferStudy.baseline()`)."""
    _check_records(records)
    axis = axis_of(records)
    losses = final_losses(records, axis)
    best = optima(losses, axis)
    fitted = drift(best, tolerance, axis)
    checked = checks(fitted, expect, axis)
    return Transfer(
        tolerance,
        axis,
        setting_of(axis),
        losses,
        best,
        fitted,
        per_width(best, axis),
        checked,
        verdict(fitted, checked),
    )
