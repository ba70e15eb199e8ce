"""The equilibrium report's figures, drawn with matplotlib on Agg from frames the view
(report.py) has arranged: steady-state norms and held-out loss against η/λ, and the norms'
trajectories towards their steady state; a colour per λ, a line style per mode."""

from __future__ import annotations

import matplotlib
import numpy as np
import polars as pl
import seaborn as sns
from matplotlib.lines import Line2D

from ...report import figures
from ...report.text import pow2

MODE_STYLE = {"sp": "-", "lrm-scalar": "--"}


def lambda_palette(lambdas: list[float]) -> dict[float, tuple]:
    return dict(zip(lambdas, sns.color_palette("viridis", len(lambdas))))


def _legend(fig, palette: dict, modes: list[str], extra: tuple = ()) -> None:
    handles = tuple(Line2D([], [], color="0.3", linestyle=MODE_STYLE[m], label=m) for m in modes) + extra
    figures.add_legend(fig, {f"λ = {pow2(lam)}": c for lam, c in palette.items()}, "weight decay", extra=handles)


def _panel_title(variant: str, module: str, invariant: bool) -> str:
    return f"{variant} · {module}" + (" (invariant)" if invariant else "")


@matplotlib.rc_context(figures.RC)
def norm_figure(
    means: pl.DataFrame, column: str, ylabel: str, panels: list[tuple[str, str, bool]], palette: dict, modes: list[str]
) -> str:
    """Steady-state `column` against η/λ, log–log: a panel per (variant, matrix), a line per λ and
    mode (seed mean). Dotted: slope ½ through the SP points' centre, where an invariant matrix's lines fall."""
    fig, axes = figures.panel_grid(len(panels), 3, "η / λ", ylabel)
    for ax, (variant, module, invariant) in zip(axes, panels):
        figures.set_title(ax, _panel_title(variant, module, invariant))
        part = means.filter((pl.col("variant") == variant) & (pl.col("module") == module))
        for (mode, lam), line in part.partition_by("mode", "weight_decay", as_dict=True).items():
            ax.plot(
                line["ratio"].to_numpy(),
                line[column].to_numpy(),
                color=palette[lam],
                linestyle=MODE_STYLE[mode],
                marker="o",
                markersize=3,
                linewidth=1.1,
            )
        anchor = part.filter(pl.col("mode") == modes[0])
        if anchor.height:
            x, y = np.log(anchor["ratio"].to_numpy()), np.log(anchor[column].to_numpy())
            ends = np.array([x.min(), x.max()])
            ax.plot(np.exp(ends), np.exp(y.mean() + 0.5 * (ends - x.mean())), color="0.5", linestyle=":", linewidth=1.0)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
    _legend(fig, palette, modes, (Line2D([], [], color="0.5", linestyle=":", label="slope ½"),))
    return figures.to_png(fig)


@matplotlib.rc_context(figures.RC)
def loss_figure(state: pl.DataFrame, variants: list[str], palette: dict, modes: list[str]) -> str:
    """Steady-state held-out loss against η/λ, a panel per variant, a line per λ and mode (seed mean)."""
    fig, axes = figures.panel_grid(len(variants), 3, "η / λ", "held-out loss")
    means = (
        state.filter(~pl.col("diverged"))
        .group_by("variant", "mode", "lr", "weight_decay")
        .agg(pl.col("loss").mean())
        .with_columns(ratio=pl.col("lr") / pl.col("weight_decay"))
        .sort("lr", "weight_decay")
    )
    for ax, variant in zip(axes, variants):
        figures.set_title(ax, variant)
        part = means.filter(pl.col("variant") == variant)
        for (mode, lam), line in part.partition_by("mode", "weight_decay", as_dict=True).items():
            ax.plot(
                line["ratio"].to_numpy(),
                line["loss"].to_numpy(),
                color=palette[lam],
                linestyle=MODE_STYLE[mode],
                marker="o",
                markersize=3,
                linewidth=1.1,
            )
        ax.set_xscale("log", base=2)
    _legend(fig, palette, modes)
    return figures.to_png(fig)


@matplotlib.rc_context(figures.RC)
def trajectory_figure(
    trajectories: pl.DataFrame,
    panels: list[tuple[str, str, bool]],
    palette: dict,
    modes: list[str],
    horizon: float,
    fraction: float,
) -> str:
    """‖W‖_F over the run's steady state against η·λ·step, a line per run: a run that settled ends
    flat at 1 in its shaded last part."""
    fig, axes = figures.panel_grid(len(panels), 3, "η · λ · step", "‖W‖_F / steady state")
    for ax, (variant, module, invariant) in zip(axes, panels):
        figures.set_title(ax, _panel_title(variant, module, invariant))
        part = trajectories.filter((pl.col("variant") == variant) & (pl.col("module") == module))
        for (_, mode, lam), line in part.partition_by("run_id", "mode", "weight_decay", as_dict=True).items():
            ax.plot(
                line["eta_lambda_step"].to_numpy(),
                line["relative"].to_numpy(),
                color=palette[lam],
                linestyle=MODE_STYLE[mode],
                linewidth=0.9,
                alpha=0.8,
            )
        ax.axhline(1.0, color="0.5", linewidth=0.7, linestyle=":")
        ax.axvspan((1 - fraction) * horizon, horizon, color="0.93", zorder=0)
        ax.set_yscale("log")
        ax.set_xlim(0, horizon)
    _legend(fig, palette, modes)
    return figures.to_png(fig)
