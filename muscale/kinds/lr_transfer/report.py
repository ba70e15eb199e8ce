"""One self-contained HTML report per learning-rate transfer sweep.

What a reader needs to tell whether the optimal learning rate moves with width: per
setting the drift exponent α of η* ∝ width^α with its interval and verdict; the loss vs
learning-rate curves η* was read from, with diverged runs and unbracketed optima shown as
such; η* against width with the fitted line; the tables behind both; and the training
curves at each width's best grid learning rate, to see that the runs learned at all.

The numbers and verdicts all come from analysis.py (final losses → optima → drift, per
width; the study's checks; the sweep's verdict); this module arranges them (polars) into
the template's rows and figures.py draws them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl

from ...report.figures import width_palette
from ...report.frames import setting_order, with_setting
from ...report.templates import environment
from ...report.text import DASH, finite, interval, signed
from . import figures
from .analysis import SETTING, Transfer

__all__ = ["render"]

# A verdict's colour, in the coord-check report's classes: a drift is flagged, not failed (analysis.verdict).
VERDICT_KIND = {"transfers": "pass", "drifts": "warn", "no fit": "info"}
STATUS_KIND = {"bracketed": "pass", "unbracketed": "warn", "all diverged": "fail"}
SMOOTH_STEPS = 12  # the training loss is a running mean over steps / SMOOTH_STEPS steps (at least one)


class _Sweep:
    """The sweep's numbers, each frame labelled with its setting (mode, plus family / optimizer when they vary)."""

    def __init__(self, records: pl.DataFrame, fitted: Transfer):
        self.tolerance, self.verdict = fitted.tolerance, fitted.verdict
        self.axis, self.setting = axis, setting = fitted.axis, fitted.setting
        losses, best, widths = fitted.losses, fitted.best, fitted.widths
        self.drift = fitted.drift
        self.checks = {tuple(r[k] for k in setting): r for r in fitted.checks.iter_rows(named=True)}

        labels = with_setting(losses.select(setting).unique(), ("family", "optimizer", "depth_rule"))
        self.settings = setting_order(labels)

        def tag(df: pl.DataFrame) -> pl.DataFrame:
            return df.join(labels, on=setting, nulls_equal=True).with_columns(pl.col(axis).cast(pl.Int64))

        self.drift = self.drift.join(labels, on=setting, nulls_equal=True)
        self.widths = tag(widths)
        self.runs = tag(losses).with_columns(failed=pl.col("diverged"))
        alive = self.runs.filter(~pl.col("failed"))
        self.grid = sorted(set(self.runs["log2_lr"].to_list()))
        self.all_widths = sorted(set(self.runs[axis].to_list()))
        # η* per width: the seed mean of the vertex and of its loss; hollow unless every seed's was bracketed.
        self.stars = (
            tag(best)
            .filter(pl.col("log2_lr_opt").is_finite())
            .group_by("setting", axis)
            .agg(pl.col("log2_lr_opt").mean(), pl.col("loss_opt").mean(), pl.col("bracketed").all())
        )
        # The grid point with the lowest seed-mean final loss among runs that did not diverge.
        self.best_grid = (
            alive.group_by("setting", axis, "log2_lr")
            .agg(pl.col("eval_loss").mean())
            .group_by("setting", axis)
            .agg(pl.col("log2_lr").sort_by("eval_loss", "log2_lr").first())
        )
        chosen = alive.join(self.best_grid, on=("setting", axis, "log2_lr")).select("run_id", "setting", axis)
        self.curves, self.window = _curves(records, chosen, axis)
        self.fates = self.runs.group_by("setting", axis).agg(runs=pl.len(), failed=pl.col("failed").sum())

    def ordered(self, df: pl.DataFrame, *by: str) -> pl.DataFrame:
        """Rows in the settings' order (modes as spec.MODES lists them), then by `by`."""
        return df.sort(pl.col("setting").replace_strict({s: i for i, s in enumerate(self.settings)}), *by)


def _curves(records: pl.DataFrame, chosen: pl.DataFrame, axis: str) -> tuple[pl.DataFrame, int]:
    """Seed-mean train_loss (running mean) and eval_loss per step of the chosen runs, and the window used."""
    rows = (
        records.filter(pl.col("metric").is_in(["train_loss", "eval_loss"]) & pl.col("value").is_finite())
        .select("run_id", "metric", "step", "value")
        .join(chosen, on="run_id")
    )
    if rows.is_empty():
        return rows.select("setting", axis, "metric", "step", "value"), 1
    window = max(1, round(rows["step"].max() / SMOOTH_STEPS))
    means = (
        rows.group_by("setting", axis, "metric", "step")
        .agg(pl.col("value").mean())
        .sort("setting", axis, "metric", "step")
    )
    smooth = pl.col("value").rolling_mean(window, min_samples=1, center=True).over("setting", axis, "metric")
    return means.with_columns(
        value=pl.when(pl.col("metric") == "train_loss").then(smooth).otherwise(pl.col("value"))
    ), window


# ---------------------------------------------------------------- rows for the template


def _check_of(sweep: _Sweep, row: Mapping) -> dict | None:
    return sweep.checks.get(tuple(row[k] for k in sweep.setting))


def _banner(sweep: _Sweep) -> dict:
    rows = sweep.ordered(sweep.drift)
    verdicts = rows["verdict"].to_list()
    n, tol = len(verdicts), f"{sweep.tolerance:g}"
    if sweep.checks:
        missed = [c["mode"] for c in sweep.checks.values() if c["status"] in ("fail", "missing")]
        met = sum(c["status"] == "pass" for c in sweep.checks.values())
        undecided = [c["mode"] for c in sweep.checks.values() if c["status"] not in ("pass", "fail", "missing")]
        line = (
            f"{sweep.verdict.upper()} — {met} of {len(sweep.checks)} expected drift exponents met"
            + (f"; missed: {', '.join(missed)}" if missed else "")
            + (f"; cannot tell yet: {', '.join(undecided)}" if undecided else "")
        )
    elif sweep.verdict == "warn":
        line = f"DRIFTS — η* moves with {sweep.axis} in {verdicts.count('drifts')} of {n} setting(s) (|α| > {tol})"
    elif sweep.verdict == "pass":
        line = f"TRANSFERS — η* stays put in all {n} setting(s) (|α| ≤ {tol})"
    else:
        fitted = verdicts.count("transfers")
        line = f"NO FIT — {n - fitted} of {n} setting(s) have too few {sweep.axis}s with an optimum to fit" + (
            f"; {fitted} transfer(s)" if fitted else ""
        )
    chips = [
        {
            "setting": r["setting"],
            "kind": VERDICT_KIND[r["verdict"]],
            "verdict": r["verdict"],
            "alpha": signed(r["alpha"], 2),
            "ci": interval(r["ci_low"], r["ci_high"]),
            "expected": _expected(_check_of(sweep, r)),
        }
        for r in rows.iter_rows(named=True)
    ]
    return {"overall": sweep.verdict, "line": line, "settings": chips}


def _expected(check: dict | None) -> str:
    if check is None:
        return ""
    return f"expected {check['expected']:+.2f} ± {check['tolerance']:g}: {check['status']}"


def _drift_rows(sweep: _Sweep) -> list[dict]:
    return [
        {
            "family": r["family"],
            "mode": r["mode"],
            "optimizer": r["optimizer"],
            "alpha": signed(r["alpha"]),
            "ci_low": signed(r["ci_low"]),
            "ci_high": signed(r["ci_high"]),
            "r2": f"{r['r2']:.3f}" if finite(r["r2"]) else DASH,
            "n_widths": DASH if r.get(f"n_{sweep.axis}s") is None else r[f"n_{sweep.axis}s"],
            "n_seeds": DASH if r.get("n_seeds") is None else r["n_seeds"],
            "unbracketed": r["unbracketed"],
            "diverged": r["diverged_runs"],
            "tolerance": f"{r['tolerance']:g}",
            "verdict": r["verdict"],
            "kind": VERDICT_KIND[r["verdict"]],
            "expected": DASH if (c := _check_of(sweep, r)) is None else f"{c['expected']:+.2f} ± {c['tolerance']:g}",
            "check": DASH if c is None else c["status"],
        }
        for r in sweep.ordered(sweep.drift).iter_rows(named=True)
    ]


def _width_rows(sweep: _Sweep) -> list[dict]:
    """Every (setting, width) with runs, fully diverged ones included (per_width has no row for them)."""
    table = (
        sweep.fates.join(sweep.widths.drop(*sweep.setting), on=("setting", sweep.axis), how="left")
        .join(sweep.best_grid, on=("setting", sweep.axis), how="left")
        .join(sweep.runs.select("setting", *SETTING).unique(), on="setting")
        .pipe(sweep.ordered, sweep.axis)
    )
    rows = []
    for r in table.iter_rows(named=True):
        x = r["log2_lr_opt"]  # null exactly when every run of the width diverged
        status = "all diverged" if not finite(x) else "bracketed" if r["bracketed"] else "unbracketed"
        rows.append(
            {
                "family": r["family"],
                "mode": r["mode"],
                "optimizer": r["optimizer"],
                "width": r[sweep.axis],
                "log2_opt": f"{x:+.2f}" if finite(x) else DASH,
                "opt": f"{2.0**x:.3g}" if finite(x) else DASH,
                "ci_low": f"{r['ci_low']:+.2f}" if finite(r["ci_low"]) else DASH,
                "ci_high": f"{r['ci_high']:+.2f}" if finite(r["ci_high"]) else DASH,
                "n_seeds": r["n_seeds"] or 0,
                "best_grid": f"{r['log2_lr']:+g}" if finite(r["log2_lr"]) else DASH,
                "diverged": f"{r['failed']} of {r['runs']}",
                "status": status,
                "kind": STATUS_KIND[status],
            }
        )
    return rows


def render(
    title: str, records: pl.DataFrame, fitted: Transfer, meta: Mapping[str, str], parts: Sequence[Mapping]
) -> str:
    """The report of records already analysed (`fitted`). `parts`: the study's coordinate checks
    ({name, href relative to the report, verdicts: verdict → count}), linked from the report."""
    sweep = _Sweep(records, fitted)
    palette = width_palette(sweep.all_widths)
    return (
        environment(Path(__file__).parent)
        .get_template("template.html.j2")
        .render(
            title=title,
            banner=_banner(sweep),
            has_expect=bool(sweep.checks),
            tolerance=f"{sweep.tolerance:g}",
            axis=sweep.axis,
            transfer_png=figures.transfer_figure(
                sweep.runs, sweep.stars, sweep.settings, palette, sweep.grid, sweep.axis
            ),
            optimum_png=(
                figures.optimum_figure(sweep.widths, sweep.drift, sweep.settings, sweep.grid, sweep.axis)
                if sweep.widths.height
                else None
            ),
            curves_png=(
                figures.curves_figure(sweep.curves, sweep.settings, palette, sweep.window, sweep.axis)
                if sweep.curves.height
                else None
            ),
            window=sweep.window,
            drift=_drift_rows(sweep),
            drift_verdicts=list(VERDICT_KIND),
            widths=_width_rows(sweep),
            width_statuses=list(STATUS_KIND),
            meta=meta,
            parts=[
                {
                    **p,
                    "verdicts": " ".join(f"{v}={n}" for v, n in p["verdicts"].items()),
                    "kind": "fail"
                    if p["verdicts"].get("fail")
                    else "pass"
                    if set(p["verdicts"]) <= {"pass", "info"}
                    else "warn",
                }
                for p in parts
            ],
        )
    )
