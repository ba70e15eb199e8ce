"""One self-contained HTML report per learning-rate transfer sweep.

What a reader needs to tell whether the optimal learning rate moves with width: per
setting the drift exponent α of η* ∝ width^α with its interval and verdict; the loss vs
learning-rate curves η* was read from, with diverged runs and unbracketed optima shown as
such; η* against width with the fitted line; the tables behind both; and the training
curves at each width's best grid learning rate, to see that the runs learned at all.

The numbers all come from analysis.py (final losses → optima → drift, per width);
this module only arranges them (polars) and draws them (matplotlib on Agg, three figures).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
import polars as pl
import seaborn as sns
from matplotlib.collections import LineCollection
from matplotlib.lines import Line2D
from matplotlib.transforms import blended_transform_factory

from ...analysis import gate
from ...errors import InputError
from ...report import figures
from ...report.frames import require, setting_order, with_setting
from ...report.templates import environment
from ...report.text import DASH, finite, interval, signed
from ...run.store import write_atomic
from . import analysis as transfer

__all__ = ["write_sweep_report"]

SWEEP_COLUMNS = ("run_id", "family", "mode", "optimizer", "lr", "width", "seed", "step", "metric", "value")
SETTING = transfer.SETTING
# A verdict's colour, in the coord-check report's classes. A drift is flagged, not failed: under SP it is the
# expected result, and the sweep has no per-mode expectation to hold it against.
VERDICT_KIND = {"transfers": "pass", "drifts": "warn", "no fit": "info"}
STATUS_KIND = {"bracketed": "pass", "unbracketed": "warn", "all diverged": "fail"}
SMOOTH_STEPS = 12  # the training loss is a running mean over steps / SMOOTH_STEPS steps (at least one)
OPTIMUM_PANEL = (4.2, 3.0)


def write_sweep_report(
    title: str,
    records: pl.DataFrame,
    path: str | os.PathLike,
    meta: Mapping[str, str] | None = None,
    tolerance: float = 0.25,
    expect: Sequence[Mapping] = (),
    parts: Sequence[Mapping] = (),
) -> Path:
    """Analyse and render the report of a learning-rate sweep fully in memory, then swap the file in.

    `records`: the long records of the sweep's runs (eval_loss, train_loss and diverged rows).
    `tolerance`: the largest |α| of η* ∝ width^α that still counts as transfer.
    `expect`: the study's expectations as gate rows (`TransferStudy.baseline()`); each is checked
    exactly as `muscale gate` checks it, and the banner then reports those checks.
    `parts`: the study's coordinate checks ({name, href relative to the report, verdicts:
    verdict → count}), linked from the report."""
    _check(records)
    path = Path(path)
    write_atomic(path, render(title, records, transfer.analyse(records, tolerance), meta or {}, expect, parts))
    return path


def render(
    title: str,
    records: pl.DataFrame,
    fitted: transfer.Transfer,
    meta: Mapping[str, str],
    expect: Sequence[Mapping],
    parts: Sequence[Mapping],
) -> str:
    """The report of records already analysed (`fitted`)."""
    _check(records)
    return _render(title, _Sweep(records, fitted, expect), meta, parts)


def _check(records: pl.DataFrame) -> None:
    require(records, SWEEP_COLUMNS, "records")
    present = sorted(records["metric"].unique().to_list())
    if "eval_loss" not in present:
        seen = f"it has {', '.join(present)}" if present else "it has no rows"
        raise InputError(
            "records",
            f"no eval_loss rows ({seen}); η* is read from each run's final held-out loss",
            "pass the records of a learning-rate sweep (`muscale sweep`, eval_batches ≥ 1)",
        )


class _Sweep:
    """The sweep's numbers, each frame labelled with its setting (mode, plus family / optimizer when they vary)."""

    def __init__(self, records: pl.DataFrame, fitted: transfer.Transfer, expect: Sequence[Mapping]):
        self.tolerance = fitted.tolerance
        losses, best, widths = fitted.losses, fitted.best, fitted.widths
        self.drift = fitted.drift
        self.checks = {(c.family, c.mode, c.optimizer): c for c in gate.check(self.drift, list(expect))}

        labels = with_setting(losses.select(SETTING).unique(), ("family", "optimizer"))
        self.settings = setting_order(labels)

        def tag(df: pl.DataFrame) -> pl.DataFrame:
            return df.join(labels, on=SETTING).with_columns(pl.col("width").cast(pl.Int64))

        self.drift = self.drift.join(labels, on=SETTING)
        self.widths = tag(widths)
        self.runs = tag(losses).with_columns(failed=pl.col("diverged"))
        alive = self.runs.filter(~pl.col("failed"))
        self.grid = sorted(set(self.runs["log2_lr"].to_list()))
        self.all_widths = sorted(set(self.runs["width"].to_list()))
        # η* per width: the seed mean of the vertex and of its loss; hollow unless every seed's was bracketed.
        self.stars = (
            tag(best)
            .filter(pl.col("log2_lr_opt").is_finite())
            .group_by("setting", "width")
            .agg(pl.col("log2_lr_opt").mean(), pl.col("loss_opt").mean(), pl.col("bracketed").all())
        )
        # The grid point with the lowest seed-mean final loss among runs that did not diverge.
        self.best_grid = (
            alive.group_by("setting", "width", "log2_lr")
            .agg(pl.col("eval_loss").mean())
            .group_by("setting", "width")
            .agg(pl.col("log2_lr").sort_by("eval_loss", "log2_lr").first())
        )
        chosen = alive.join(self.best_grid, on=("setting", "width", "log2_lr")).select("run_id", "setting", "width")
        self.curves, self.window = _curves(records, chosen)
        self.fates = self.runs.group_by("setting", "width").agg(runs=pl.len(), failed=pl.col("failed").sum())

    def ordered(self, df: pl.DataFrame, *by: str) -> pl.DataFrame:
        """Rows in the settings' order (modes as spec.MODES lists them), then by `by`."""
        return df.sort(pl.col("setting").replace_strict({s: i for i, s in enumerate(self.settings)}), *by)


def _curves(records: pl.DataFrame, chosen: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Seed-mean train_loss (running mean) and eval_loss per step of the chosen runs, and the window used."""
    rows = (
        records.filter(pl.col("metric").is_in(["train_loss", "eval_loss"]) & pl.col("value").is_finite())
        .select("run_id", "metric", "step", "value")
        .join(chosen, on="run_id")
    )
    if rows.is_empty():
        return rows.select("setting", "width", "metric", "step", "value"), 1
    window = max(1, round(rows["step"].max() / SMOOTH_STEPS))
    means = (
        rows.group_by("setting", "width", "metric", "step")
        .agg(pl.col("value").mean())
        .sort("setting", "width", "metric", "step")
    )
    smooth = pl.col("value").rolling_mean(window, min_samples=1, center=True).over("setting", "width", "metric")
    return means.with_columns(
        value=pl.when(pl.col("metric") == "train_loss").then(smooth).otherwise(pl.col("value"))
    ), window


# ---------------------------------------------------------------- rows for the template


def _check_of(sweep: _Sweep, row: Mapping) -> gate.Check | None:
    return sweep.checks.get((row["family"], row["mode"], row["optimizer"]))


def _banner(sweep: _Sweep) -> dict:
    rows = sweep.ordered(sweep.drift)
    verdicts = rows["verdict"].to_list()
    n, tol = len(verdicts), f"{sweep.tolerance:g}"
    failed = [c for c in sweep.checks.values() if c.status != "pass"]
    if sweep.checks:
        overall = "fail" if failed else "pass"
        line = (
            f"{'FAIL' if failed else 'PASS'} — {len(sweep.checks) - len(failed)} of {len(sweep.checks)} "
            f"expected drift exponents met" + (f"; missed: {', '.join(c.mode for c in failed)}" if failed else "")
        )
    elif "drifts" in verdicts:
        overall = "warn"
        line = f"DRIFTS — η* moves with width in {verdicts.count('drifts')} of {n} setting(s) (|α| > {tol})"
    elif verdicts and set(verdicts) == {"transfers"}:
        overall, line = "pass", f"TRANSFERS — η* stays put in all {n} setting(s) (|α| ≤ {tol})"
    else:
        fitted = verdicts.count("transfers")
        overall = "info"
        line = f"NO FIT — {n - fitted} of {n} setting(s) have too few widths with an optimum to fit" + (
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
    return {"overall": overall, "line": line, "settings": chips}


def _expected(check: gate.Check | None) -> str:
    if check is None:
        return ""
    return f"expected {check.expected:+.2f} ± {check.tolerance:g}: {check.status}"


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
            "n_widths": DASH if r.get("n_widths") is None else r["n_widths"],
            "n_seeds": DASH if r.get("n_seeds") is None else r["n_seeds"],
            "unbracketed": r["unbracketed"],
            "diverged": r["diverged_runs"],
            "tolerance": f"{r['tolerance']:g}",
            "verdict": r["verdict"],
            "kind": VERDICT_KIND[r["verdict"]],
            "expected": DASH if (c := _check_of(sweep, r)) is None else f"{c.expected:+.2f} ± {c.tolerance:g}",
            "check": DASH if c is None else c.status,
        }
        for r in sweep.ordered(sweep.drift).iter_rows(named=True)
    ]


def _width_rows(sweep: _Sweep) -> list[dict]:
    """Every (setting, width) with runs, fully diverged ones included (per_width has no row for them)."""
    table = (
        sweep.fates.join(sweep.widths.drop(*SETTING), on=("setting", "width"), how="left")
        .join(sweep.best_grid, on=("setting", "width"), how="left")
        .join(sweep.runs.select("setting", *SETTING).unique(), on="setting")
        .pipe(sweep.ordered, "width")
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
                "width": r["width"],
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


def _render(title: str, sweep: _Sweep, meta: Mapping[str, str], parts: Sequence[Mapping] = ()) -> str:
    palette = figures.width_palette(sweep.all_widths)
    return (
        environment(Path(__file__).parent)
        .get_template("template.html.j2")
        .render(
            title=title,
            banner=_banner(sweep),
            has_expect=bool(sweep.checks),
            tolerance=f"{sweep.tolerance:g}",
            transfer_png=transfer_figure(sweep.runs, sweep.stars, sweep.settings, palette, sweep.grid),
            optimum_png=(
                optimum_figure(sweep.widths, sweep.drift, sweep.settings, sweep.grid) if sweep.widths.height else None
            ),
            curves_png=curves_figure(sweep.curves, sweep.settings, palette, sweep.window)
            if sweep.curves.height
            else None,
            window=sweep.window,
            drift=_drift_rows(sweep),
            drift_verdicts=list(VERDICT_KIND),
            widths=_width_rows(sweep),
            width_statuses=list(STATUS_KIND),
            meta=meta,
            parts=[
                {
                    **p,
                    "verdicts": " ".join(f"{v}={p['verdicts'].get(v, 0)}" for v in ("pass", "warn", "fail", "info")),
                    "kind": "fail" if p["verdicts"].get("fail") else "warn" if p["verdicts"].get("warn") else "pass",
                }
                for p in parts
            ],
        )
    )


# ---------------------------------------------------------------- drawing


_MARKERS = (
    Line2D([], [], color="0.4", marker="o", markersize=3, alpha=0.4, linestyle="", label="a seed"),
    Line2D(
        [],
        [],
        color="0.3",
        marker="*",
        markersize=8,
        markeredgecolor="0.1",
        markeredgewidth=0.5,
        linestyle="",
        label="η*, bracketed",
    ),
    Line2D(
        [], [], color="0.3", marker="*", markersize=8, markerfacecolor="white", linestyle="", label="η*, unbracketed"
    ),
    Line2D([], [], color="0.3", marker="x", markersize=5, linestyle="", label="diverged"),
)
_BAND_ROW = 0.045  # axes fraction per width of diverged markers at the top of a panel


@matplotlib.rc_context(figures.RC)
def transfer_figure(
    runs: pl.DataFrame, stars: pl.DataFrame, settings: list[str], palette: dict, grid: list[float]
) -> str:
    """Final held-out loss vs log2 learning rate, a panel per setting, a line per width (seed mean).

    `runs`: setting, width, log2_lr, eval_loss, failed. `stars`: setting, width, log2_lr_opt, loss_opt,
    bracketed. The y axis spans the runs that did not diverge; diverged runs sit above it as crosses,
    a row per width."""
    fig, axes = figures.panel_grid(len(settings), 3, "log₂ learning rate", "final held-out loss")
    by_setting = runs.partition_by("setting", as_dict=True)
    stars_by = stars.partition_by("setting", as_dict=True)
    step = min(np.diff(grid)) if len(grid) > 1 else 1.0
    for ax, setting in zip(axes, settings):
        lost = _transfer_panel(ax, by_setting[(setting,)], stars_by.get((setting,)), palette)
        ax.set_xlim(grid[0] - step / 2, grid[-1] + step / 2)
        figures.fixed_ticks(ax.xaxis, grid[:: math.ceil(len(grid) / 8)])
        figures.set_title(ax, setting + (f" · all diverged: width {', '.join(map(str, lost))}" if lost else ""))
    figures.add_legend(fig, palette, "width", extra=_MARKERS)
    return figures.to_png(fig)


def _transfer_panel(ax, part: pl.DataFrame, stars: pl.DataFrame | None, palette: dict) -> list[int]:
    """Draw one setting; returns the widths whose every run diverged."""
    alive = part.filter(~pl.col("failed"))
    means = alive.group_by("width", "log2_lr").agg(pl.col("eval_loss").mean()).sort("width", "log2_lr")
    lines = [
        (w, np.column_stack([g["log2_lr"].to_numpy(), g["eval_loss"].to_numpy()]))
        for (w,), g in means.partition_by("width", as_dict=True, maintain_order=True).items()
    ]
    ax.add_collection(LineCollection([xy for _, xy in lines], colors=[palette[w] for w, _ in lines], linewidths=1.2))
    ax.scatter(
        alive["log2_lr"].to_numpy(),
        alive["eval_loss"].to_numpy(),
        s=8,
        linewidths=0,
        alpha=0.35,
        c=[palette[w] for w in alive["width"].to_list()],
    )
    ys = alive["eval_loss"].to_list()
    if stars is not None:
        for bracketed, group in stars.partition_by("bracketed", as_dict=True).items():
            colors = [palette[w] for w in group["width"].to_list()]
            ax.scatter(
                group["log2_lr_opt"].to_numpy(),
                group["loss_opt"].to_numpy(),
                marker="*",
                s=90,
                zorder=3,
                c=colors if bracketed[0] else "white",
                edgecolors="0.1" if bracketed[0] else colors,
                linewidths=0.5 if bracketed[0] else 1.1,
            )
        ys += stars["loss_opt"].to_list()
    dead = part.filter(pl.col("failed"))
    rows = sorted(set(dead["width"].to_list()))
    top = 0.95 - _BAND_ROW * len(rows)  # where the highest surviving loss sits, in axes fraction
    if ys:
        lo, hi = min(ys), max(ys)
        span = max(hi - lo, abs(hi) * 0.02, 1e-6) / (top - 0.05)  # one surviving loss still gets a readable axis
        ax.set_ylim(lo - 0.05 * span, lo - 0.05 * span + span)
    else:
        ax.set_yticks([])
        ax.text(0.5, 0.45, "every run diverged", ha="center", va="center", color="0.4", transform=ax.transAxes)
    band = blended_transform_factory(ax.transData, ax.transAxes)
    for i, width in enumerate(rows):
        xs = dead.filter(pl.col("width") == width)["log2_lr"].unique().to_numpy()
        ax.scatter(
            xs,
            np.full(len(xs), 0.97 - _BAND_ROW * i),
            marker="x",
            s=14,
            linewidths=1.0,
            color=palette[width],
            transform=band,
            clip_on=False,
            zorder=3,
        )
    if rows:  # the panel's clipped edge: above it, the diverged runs
        ax.plot([0, 1], [top + 0.015] * 2, color="0.7", linewidth=0.6, linestyle=":", transform=ax.transAxes)
    return sorted(set(rows) - set(alive["width"].to_list()))


@matplotlib.rc_context(figures.RC)
def optimum_figure(per_width: pl.DataFrame, drift: pl.DataFrame, settings: list[str], grid: list[float]) -> str:
    """log2 η* vs width (log2 axis), a marker set per setting with its interval over seeds, and the fitted
    drift line of slope α through the points' mean. Dotted: the edges of the learning-rate grid.

    `per_width`: setting, width, log2_lr_opt, ci_low, ci_high, bracketed. `drift`: setting, alpha, ci_low, ci_high."""
    fig, axes = figures.figure_grid(1, 1, OPTIMUM_PANEL)
    ax = axes[0, 0]
    colors = dict(zip(settings, sns.color_palette("deep", len(settings))))
    fits = {r["setting"]: r for r in drift.iter_rows(named=True)}
    widths = sorted(set(per_width["width"].to_list()))
    handles = []
    for i, setting in enumerate(settings):
        part = per_width.filter(pl.col("setting") == setting).sort("width")
        if part.is_empty():
            continue
        color = colors[setting]
        # markers of different settings side by side, not on top of each other (equal η* is the point of transfer)
        dodge = 2.0 ** (0.05 * (i - (len(settings) - 1) / 2))
        x, y = part["width"].to_numpy().astype(float) * dodge, part["log2_lr_opt"].to_numpy()
        lo = part["ci_low"].fill_null(np.nan).to_numpy()
        hi = part["ci_high"].fill_null(np.nan).to_numpy()
        if np.isfinite(lo).any():
            err = np.nan_to_num(np.vstack([y - lo, hi - y]))
            ax.errorbar(x, y, yerr=err, fmt="none", ecolor=color, elinewidth=0.8, capsize=2)
        closed = part["bracketed"].to_numpy()
        ax.scatter(x[closed], y[closed], s=24, color=color, zorder=3)
        ax.scatter(x[~closed], y[~closed], s=24, facecolors="white", edgecolors=color, linewidths=1.1, zorder=3)
        fit = fits.get(setting, {})
        alpha = fit.get("alpha")
        name = setting.replace("$", r"\$")  # legend text is parsed for TeX; a user's '$' is not TeX
        label = f"{name}\nno fit"
        if finite(alpha):
            lx = np.log2(x / dodge)
            ends = np.array([widths[0], widths[-1]], dtype=float)
            ax.plot(ends, y.mean() + alpha * (np.log2(ends) - lx.mean()), color=color, linewidth=1.1)
            half = (fit["ci_high"] - fit["ci_low"]) / 2 if finite(fit["ci_low"]) and finite(fit["ci_high"]) else None
            label = f"{name}\nα = {alpha:+.2f}" + (f" ± {half:.2f}" if half is not None else "")
        handles.append(
            Line2D([], [], color=color, marker="o", markersize=4, label=label, linestyle="-" if finite(alpha) else "")
        )
    for edge in (grid[0], grid[-1]):
        ax.axhline(edge, color="0.6", linewidth=0.7, linestyle=":")
    handles.append(Line2D([], [], color="0.6", linewidth=0.7, linestyle=":", label="grid edge"))
    handles.append(
        Line2D(
            [], [], color="0.3", marker="o", markersize=4, markerfacecolor="white", linestyle="", label="unbracketed"
        )
    )
    figures.log2_x_axis(ax, widths[-1], widths)
    ax.set_xlim(widths[0] / 2**0.3, widths[-1] * 2**0.3)
    # η* lies inside the grid (a vertex between its neighbours, or a grid point): zoom on the optima, never past
    # the grid's edges, and clip intervals wider than that
    ys = per_width["log2_lr_opt"]
    ax.set_ylim(max(ys.min() - 1.5, grid[0] - 0.75), min(ys.max() + 1.5, grid[-1] + 0.75))
    ax.set_xlabel("width")
    ax.set_ylabel("log₂ η*")
    _widen_right(fig, max(len(line) for h in handles for line in h.get_label().splitlines()))
    figures.add_legend(fig, {}, "setting: η* ∝ width$^α$", extra=tuple(handles))
    return figures.to_png(fig)


def _widen_right(fig, chars: int) -> None:
    """Make the right margin wide enough for legend labels of `chars` characters, keeping the axes' size."""
    need = 0.45 + 0.055 * chars  # inches: the handle, then ~0.055 in per character at the legend's 7 pt
    extra = need - figures.MARGIN["right"]
    if extra > 0:
        width = fig.get_figwidth()
        right = fig.subplotpars.right * width
        fig.set_figwidth(width + extra)
        fig.subplots_adjust(left=fig.subplotpars.left * width / (width + extra), right=right / (width + extra))


@matplotlib.rc_context(figures.RC)
def curves_figure(curves: pl.DataFrame, settings: list[str], palette: dict, window: int) -> str:
    """Training loss (running mean) and held-out loss vs step, a panel per setting, a line per width.

    `curves`: setting, width, metric (train_loss | eval_loss), step, value."""
    fig, axes = figures.panel_grid(len(settings), 3, "step", "loss")
    panels = curves.partition_by("setting", as_dict=True)
    for ax, setting in zip(axes, settings):
        figures.set_title(ax, setting)
        part = panels.get((setting,))
        if part is None:
            ax.set_yticks([])
            ax.text(0.5, 0.5, "every run diverged", ha="center", va="center", color="0.4", transform=ax.transAxes)
            continue
        for (width, metric), line in part.partition_by("width", "metric", as_dict=True).items():
            xs, ys = line["step"].to_numpy(), line["value"].to_numpy()
            if metric == "train_loss":
                ax.plot(xs, ys, color=palette[width], linewidth=1.0)
            else:
                ax.scatter(xs, ys, s=12, color=palette[width], edgecolors="white", linewidths=0.5, zorder=3)
    extra = (
        Line2D(
            [],
            [],
            color="0.3",
            linewidth=1.0,
            label="train loss" + (f"\n(mean of {window} steps)" if window > 1 else ""),
        ),
        Line2D(
            [], [], color="0.3", marker="o", markersize=4, markeredgecolor="white", linestyle="", label="held-out loss"
        ),
    )
    figures.add_legend(fig, palette, "width", extra=extra)
    return figures.to_png(fig)
