"""The sweep report's three figures, drawn with matplotlib on Agg from frames the view
(report.py) has arranged: loss against learning rate with η* marked, η* against width with
the fitted drift, and the loss curves at each width's best grid learning rate."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import polars as pl
import seaborn as sns
from matplotlib.collections import LineCollection
from matplotlib.lines import Line2D
from matplotlib.transforms import blended_transform_factory

from ...report import figures
from ...report.text import finite

OPTIMUM_PANEL = (4.2, 3.0)
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
    runs: pl.DataFrame, stars: pl.DataFrame, settings: list[str], palette: dict, grid: list[float], axis: str = "width"
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
        lost = _transfer_panel(ax, by_setting[(setting,)], stars_by.get((setting,)), palette, axis)
        ax.set_xlim(grid[0] - step / 2, grid[-1] + step / 2)
        figures.fixed_ticks(ax.xaxis, grid[:: math.ceil(len(grid) / 8)])
        figures.set_title(ax, setting + (f" · all diverged: {axis} {', '.join(map(str, lost))}" if lost else ""))
    figures.add_legend(fig, palette, axis, extra=_MARKERS)
    return figures.to_png(fig)


def _transfer_panel(ax, part: pl.DataFrame, stars: pl.DataFrame | None, palette: dict, axis: str) -> list[int]:
    """Draw one setting; returns the widths (or depths) whose every run diverged."""
    alive = part.filter(~pl.col("failed"))
    means = alive.group_by(axis, "log2_lr").agg(pl.col("eval_loss").mean()).sort(axis, "log2_lr")
    lines = [
        (w, np.column_stack([g["log2_lr"].to_numpy(), g["eval_loss"].to_numpy()]))
        for (w,), g in means.partition_by(axis, as_dict=True, maintain_order=True).items()
    ]
    ax.add_collection(LineCollection([xy for _, xy in lines], colors=[palette[w] for w, _ in lines], linewidths=1.2))
    ax.scatter(
        alive["log2_lr"].to_numpy(),
        alive["eval_loss"].to_numpy(),
        s=8,
        linewidths=0,
        alpha=0.35,
        c=[palette[w] for w in alive[axis].to_list()],
    )
    ys = alive["eval_loss"].to_list()
    if stars is not None:
        for bracketed, group in stars.partition_by("bracketed", as_dict=True).items():
            colors = [palette[w] for w in group[axis].to_list()]
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
    rows = sorted(set(dead[axis].to_list()))
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
        xs = dead.filter(pl.col(axis) == width)["log2_lr"].unique().to_numpy()
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
    return sorted(set(rows) - set(alive[axis].to_list()))


@matplotlib.rc_context(figures.RC)
def optimum_figure(
    per_width: pl.DataFrame, drift: pl.DataFrame, settings: list[str], grid: list[float], axis: str = "width"
) -> str:
    """log2 η* vs width (log2 axis), a marker set per setting with its interval over seeds, and the fitted
    drift line of slope α through the points' mean. Dotted: the edges of the learning-rate grid.

    `per_width`: setting, width, log2_lr_opt, ci_low, ci_high, bracketed. `drift`: setting, alpha, ci_low, ci_high."""
    fig, axes = figures.figure_grid(1, 1, OPTIMUM_PANEL)
    ax = axes[0, 0]
    colors = dict(zip(settings, sns.color_palette("deep", len(settings))))
    fits = {r["setting"]: r for r in drift.iter_rows(named=True)}
    widths = sorted(set(per_width[axis].to_list()))
    handles = []
    for i, setting in enumerate(settings):
        part = per_width.filter(pl.col("setting") == setting).sort(axis)
        if part.is_empty():
            continue
        color = colors[setting]
        # markers of different settings side by side, not on top of each other (equal η* is the point of transfer)
        dodge = 2.0 ** (0.05 * (i - (len(settings) - 1) / 2))
        x, y = part[axis].to_numpy().astype(float) * dodge, part["log2_lr_opt"].to_numpy()
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
    ax.set_xlabel(axis)
    ax.set_ylabel("log₂ η*")
    _widen_right(fig, max(len(line) for h in handles for line in h.get_label().splitlines()))
    figures.add_legend(fig, {}, f"setting: η* ∝ {axis}$^α$", extra=tuple(handles))
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
def curves_figure(curves: pl.DataFrame, settings: list[str], palette: dict, window: int, axis: str = "width") -> str:
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
        for (width, metric), line in part.partition_by(axis, "metric", as_dict=True).items():
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
    figures.add_legend(fig, palette, axis, extra=extra)
    return figures.to_png(fig)
