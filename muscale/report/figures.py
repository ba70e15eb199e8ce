"""Report figures, returned as base64 PNG strings so the HTML is one offline file.

Figures are built on `matplotlib.figure.Figure`, not pyplot: they render
on an Agg canvas, nothing is registered in pyplot's global figure list (so nothing can
leak), and the caller's backend (a notebook's, say) is left alone.

Every figure draws frames already reduced by polars to columns mean, lo, hi.
A report has a hundred panels or more, and matplotlib spends most of its time
per panel on tick objects, so drawing is kept lean: seaborn supplies palettes
but not lineplot (the same mean line and errorbar=("pi", 100) band, ~0.1 s
more per panel), each panel is three collections, axes are not shared and
the layout is fixed in inches (shared axes and constrained layout grow
superlinearly), and ticks are few, without minor ticks or TeX labels.
"""

from __future__ import annotations

import base64
import io
import math

import matplotlib
import numpy as np
import polars as pl
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator
from PIL import Image

DPI = 80
PANEL = (3.0, 2.3)  # inches per panel, gaps included
# Per-module drill-down figures: one per module, so smaller panels at a lower dpi keep a
# thirty-module report to a few hundred kB.
MODULE_DPI = 80
MODULE_PANEL = (2.4, 1.9)
MARGIN = {"left": 0.6, "right": 1.25, "top": 0.25, "bottom": 0.45}  # inches; the legend sits in the right one
STEP_LOG_LABEL = "step + 1 (log₂ scale)"
_PLAIN = FuncFormatter(lambda v, _: f"{v:g}")

# Colours fixed per metric so a metric looks the same in every trajectory figure.
TRAJECTORY_COLORS = dict(
    zip(
        (
            "act_rms",
            "dact_rms",
            "mult_scalar",
            "mult_row_rms",
            "mult_col_rms",
            "mult_path",
            "weight_rms",
            "raw_act_rms",
        ),
        sns.color_palette("deep"),
    )
)

RC = {
    "font.size": 7.5,
    "axes.titlesize": 8,
    "axes.labelsize": 7.5,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.title_fontsize": 7.5,
}


def figure_grid(nrows: int, ncols: int, panel: tuple[float, float] = PANEL, dpi: int = DPI) -> tuple[Figure, object]:
    width = ncols * panel[0] + MARGIN["left"] + MARGIN["right"]
    height = nrows * panel[1] + MARGIN["top"] + MARGIN["bottom"]
    fig = Figure(figsize=(width, height), dpi=dpi)
    axes = fig.subplots(
        nrows,
        ncols,
        squeeze=False,
        gridspec_kw={
            "left": MARGIN["left"] / width,
            "right": 1 - MARGIN["right"] / width,
            "bottom": MARGIN["bottom"] / height,
            "top": 1 - MARGIN["top"] / height,
            "wspace": 0.3,
            "hspace": 0.45,
        },
    )
    return fig, axes


def panel_grid(n: int, ncols: int, xlabel: str, ylabel: str) -> tuple[Figure, list]:
    """`n` panels in rows of at most `ncols`, the y label on the left column and the x label on the bottom
    row, spare axes hidden. Returns the figure and the `n` axes in reading order."""
    ncols = min(ncols, n)
    fig, axes = figure_grid(math.ceil(n / ncols), ncols)
    for k, ax in enumerate(axes.flat):
        if k >= n:
            ax.set_axis_off()
            continue
        if k % ncols == 0:
            ax.set_ylabel(ylabel)
        if k >= n - ncols:
            ax.set_xlabel(xlabel)
    return fig, list(axes.flat[:n])


def set_title(ax, text: str) -> None:
    ax.set_title(text, parse_math=False)  # a '$' in a user's role or setting name is not TeX


def add_legend(fig: Figure, colors: dict, title: str, extra: tuple = ()) -> None:
    """A colour per key, then `extra` handles (what a figure's markers mean), in the right margin."""
    handles = [Line2D([], [], color=c, marker="o", markersize=3, label=str(k)) for k, c in colors.items()]
    handles += list(extra)
    top = 1 - MARGIN["top"] / fig.get_figheight()
    fig.legend(handles=handles, title=title, loc="upper right", bbox_to_anchor=(1, top), frameon=False)


def width_palette(widths: list) -> dict:
    """A sequential colour per width, darker = wider, the same in every figure that draws a line per width."""
    return dict(zip(widths, sns.color_palette("flare", len(widths))))


def to_png(fig: Figure) -> str:
    """Quantized to a 256-colour palette: a quarter of the bytes of Agg's RGBA, no visible change on line art."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    image = Image.fromarray(np.asarray(canvas.buffer_rgba())).convert("RGB")
    buf = io.BytesIO()
    image.quantize(256, method=Image.Quantize.FASTOCTREE).save(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _band_lines(ax, part: pl.DataFrame, x: str, hue: str, palette: dict) -> None:
    """Line at the mean, band from lo to hi, one per hue level."""
    polys, lines, colors = [], [], []
    for (level,), line in part.sort(hue, x).partition_by(hue, as_dict=True, maintain_order=True).items():
        xs, mean = line[x].to_numpy(), line["mean"].to_numpy()
        polys.append(np.column_stack([np.r_[xs, xs[::-1]], np.r_[line["lo"].to_numpy(), line["hi"].to_numpy()[::-1]]]))
        lines.append(np.column_stack([xs, mean]))
        colors.append(palette[level])
    ax.add_collection(PolyCollection(polys, facecolors=colors, alpha=0.2, linewidths=0))
    ax.add_collection(LineCollection(lines, colors=colors, linewidths=1.1))
    points = np.concatenate(lines)
    ax.scatter(
        points[:, 0],
        points[:, 1],
        s=5,
        linewidths=0,
        c=np.repeat(np.asarray(colors), [len(line) for line in lines], axis=0),
    )


def fixed_ticks(axis, ticks: list[float]) -> None:
    """Fixed ticks inside the view only: matplotlib builds every tick a locator returns, visible or not."""
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(_PLAIN)


def log2_x_axis(ax, hi: float, ticks: list[float] | None = None) -> None:
    """Powers of two up to `hi` (at most seven) unless the ticks are given."""
    ax.set_xscale("log", base=2)
    if ticks is None:
        powers = [2.0**k for k in range(math.floor(math.log2(hi)) + 1)]
        ticks = powers[:: math.ceil(len(powers) / 7)]
    fixed_ticks(ax.xaxis, ticks)


def _log10_y(ax) -> None:
    """Log y spanning at least a decade: autoscaled log axes blow seed noise on a flat line up into a fake trend."""
    ax.set_yscale("log")
    lo, hi = ax.get_ylim()
    if hi / lo < 10:
        mid = math.sqrt(lo * hi)
        lo, hi = mid / math.sqrt(10), mid * math.sqrt(10)
        ax.set_ylim(lo, hi)
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    mantissas = (1, 2, 5) if len(decades) <= 3 else (1,)
    ticks = [m * 10.0**k for k in decades[:: math.ceil(len(decades) / 6)] for m in mantissas]
    fixed_ticks(ax.yaxis, [t for t in ticks if lo <= t <= hi])


def _coord_panel(ax, part, title: str, points: list, palette: dict, bottom: bool, axis: str) -> None:
    """Value vs width (or depth), log–log, one line per step with its seed band."""
    set_title(ax, title)
    if part is None:
        ax.set_axis_off()
        ax.text(0.5, 0.5, "not recorded", ha="center", va="center", color="0.5", transform=ax.transAxes)
        return
    _band_lines(ax, part, axis, "step", palette)
    log2_x_axis(ax, points[-1], points)
    _log10_y(ax)
    if bottom:
        ax.set_xlabel(axis)


@matplotlib.rc_context(RC)
def coord_check(data: pl.DataFrame, settings: list[str], metrics: list[str], axis: str = "width") -> str:
    """One role: value vs width (or depth) on log-log axes, a row per setting, a panel per
    metric, a line per step.

    `data`: setting, metric, step, the axis, mean, lo, hi (the band is the spread over seeds).
    """
    steps = sorted(data["step"].unique().to_list())
    widths = sorted(data[axis].unique().to_list())
    palette = dict(zip(steps, sns.color_palette("crest", len(steps))))
    panels = data.partition_by("setting", "metric", as_dict=True)
    fig, axes = figure_grid(len(settings), len(metrics))
    for i, setting in enumerate(settings):
        for j, metric in enumerate(metrics):
            _coord_panel(
                axes[i, j],
                panels.get((setting, metric)),
                f"{setting} · {metric}",
                widths,
                palette,
                bottom=i == len(settings) - 1,
                axis=axis,
            )
    add_legend(fig, palette, "step")
    return to_png(fig)


@matplotlib.rc_context(RC)
def alpha_trajectory(
    data: pl.DataFrame,
    roles: list[str],
    colors: dict = TRAJECTORY_COLORS,
    settle_from: float | None = None,
    ylabel: str = "α  (value ∝ width^α)",
) -> str:
    """One setting: fitted α vs training step, a panel per role, a line per metric, coloured
    as `colors` says (every metric in `data` needs a colour); `settle_from` shades the window
    from that step to the last, over which a settled α moved less than its tolerance.

    `data`: role, metric, step, mean, lo, hi (α over the role's modules and its CI envelope).
    """
    ncols = min(4, len(roles))
    last_step = data["step"].max()
    fig, axes = figure_grid(math.ceil(len(roles) / ncols), ncols)
    panels = data.with_columns((pl.col("step") + 1).alias("step + 1")).partition_by("role", as_dict=True)
    for k, (ax, role) in enumerate(zip(axes.flat, roles)):
        _band_lines(ax, panels[(role,)], "step + 1", "metric", colors)
        if settle_from is not None:
            ax.axvspan(settle_from + 1, last_step + 1, color="0.9", zorder=0)
        log2_x_axis(ax, last_step + 1)
        ax.axhline(0, color="0.25", linewidth=0.8)
        lo, hi = ax.get_ylim()
        ax.set_ylim(min(lo, -0.5), max(hi, 0.5))
        set_title(ax, role)
        if k % ncols == 0:
            ax.set_ylabel(ylabel)
        if k >= len(roles) - ncols:
            ax.set_xlabel(STEP_LOG_LABEL)
    for ax in axes.flat[len(roles) :]:
        ax.set_axis_off()
    present = set(data["metric"].to_list())
    add_legend(fig, {m: c for m, c in colors.items() if m in present}, "metric")
    return to_png(fig)


@matplotlib.rc_context(RC)
def drift(data: pl.DataFrame, panels: list[tuple[str, str]]) -> str:
    """Symmetric directions: log(size A / size B) since init vs step, a panel per (setting, role),
    a line per width, drawn for the role's pair furthest from 0 at each step.

    `data`: setting, role, step, width, mean, lo, hi (the band is the spread over seeds).
    """
    return by_width_against_step(data, panels, "role", "log(A / B) since init", centred=True)


@matplotlib.rc_context(RC)
def by_width_against_step(
    data: pl.DataFrame, panels: list[tuple[str, str]], key: str, ylabel: str, centred: bool = False
) -> str:
    """A value against step, a panel per (setting, `key`), a line per width: whether each width's
    learned multiplier (or drift) converged. `centred`: a y-axis symmetric about 0, so float
    noise is not blown up into a trend; else a log y-axis.

    `data`: setting, `key`, step, width, mean, lo, hi (the band is the spread over seeds).
    """
    palette = width_palette(sorted(data["width"].unique().to_list()))
    fig, axes = panel_grid(len(panels), 4, STEP_LOG_LABEL, ylabel)
    parts = data.with_columns((pl.col("step") + 1).alias("step + 1")).partition_by("setting", key, as_dict=True)
    for ax, (setting, name) in zip(axes, panels):
        _band_lines(ax, parts[(setting, name)], "step + 1", "width", palette)
        log2_x_axis(ax, data["step"].max() + 1)
        if centred:
            ax.axhline(0, color="0.25", linewidth=0.8)
            lo, hi = ax.get_ylim()
            bound = max(abs(lo), abs(hi), 0.05)
            ax.set_ylim(-bound, bound)
        else:
            ax.set_yscale("log")
        set_title(ax, f"{setting} · {name}" if len({s for s, _ in panels}) > 1 else name)
    add_legend(fig, palette, "width")
    return to_png(fig)


@matplotlib.rc_context(RC)
def loss_curves(data: pl.DataFrame, settings: list[str], log_steps: bool) -> str:
    """Loss vs step, a panel per setting, a line per width.

    `data`: setting, step, width, mean, lo, hi (the band is the spread over seeds).
    """
    palette = width_palette(sorted(data["width"].unique().to_list()))
    ncols = min(3, len(settings))
    fig, axes = figure_grid(math.ceil(len(settings) / ncols), ncols)
    panels = data.with_columns((pl.col("step") + 1).alias("step + 1")).partition_by("setting", as_dict=True)
    for ax, setting in zip(axes.flat, settings):
        _band_lines(ax, panels[(setting,)], "step + 1" if log_steps else "step", "width", palette)
        if log_steps:
            log2_x_axis(ax, data["step"].max() + 1)
        set_title(ax, setting)
        ax.set_xlabel(STEP_LOG_LABEL if log_steps else "step")
        ax.set_ylabel("loss")
    for ax in axes.flat[len(settings) :]:
        ax.set_axis_off()
    add_legend(fig, palette, "width")
    return to_png(fig)


@matplotlib.rc_context(RC)
def module_drilldown(curves: pl.DataFrame, residuals: pl.DataFrame, settings: list[str], metrics: list[str]) -> str:
    """One module: a row per setting; a value-vs-width panel per metric (a line per step) and a residual panel.

    `curves`: setting, metric, step, width, mean, lo, hi (band: spread over seeds).
    `residuals`: setting, metric, width, residual (ln of the seed mean minus the fitted line, at the last step).
    """
    steps = sorted(curves["step"].unique().to_list())
    widths = sorted(set(curves["width"].to_list()) | set(residuals["width"].to_list()))
    palette = dict(zip(steps, sns.color_palette("crest", len(steps))))
    panels = curves.partition_by("setting", "metric", as_dict=True)
    resid = residuals.partition_by("setting", as_dict=True)
    fig, axes = figure_grid(len(settings), len(metrics) + 1, MODULE_PANEL, MODULE_DPI)
    for i, setting in enumerate(settings):
        for j, metric in enumerate(metrics):
            _coord_panel(
                axes[i, j],
                panels.get((setting, metric)),
                f"{setting} · {metric}" if len(settings) > 1 else metric,
                widths,
                palette,
                bottom=i == len(settings) - 1,
                axis="width",
            )
        ax = axes[i, len(metrics)]
        set_title(ax, "fit residual, last step")
        part = resid.get((setting,))
        if part is None or part.is_empty():
            ax.set_axis_off()
            continue
        for (metric,), line in (
            part.sort("metric", "width").partition_by("metric", as_dict=True, maintain_order=True).items()
        ):
            ax.plot(
                line["width"].to_numpy(),
                line["residual"].to_numpy(),
                marker="o",
                markersize=3,
                linewidth=1,
                color=TRAJECTORY_COLORS.get(metric, "0.3"),
                label=str(metric),
            )
        ax.axhline(0, color="0.25", linewidth=0.8)
        log2_x_axis(ax, widths[-1], widths)
        lo, hi = ax.get_ylim()
        bound = max(abs(lo), abs(hi), 0.05)  # symmetric, and never zoomed into float noise
        ax.set_ylim(-bound, bound)
        fixed_ticks(ax.yaxis, [-bound * 0.8, -bound * 0.4, 0.0, bound * 0.4, bound * 0.8])
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:+.2g}" if v else "0"))
        ax.set_ylabel("ln value − fit")
        ax.legend(loc="best", frameon=False, fontsize=6, handlelength=1.2)
        if i == len(settings) - 1:
            ax.set_xlabel("width")
    add_legend(fig, palette, "step")
    return to_png(fig)


@matplotlib.rc_context(RC)
def grid_lines(
    data: pl.DataFrame, rows: list, columns: list[str], x: str, palette: dict, xlabel: str, log_y: bool = True
) -> str:
    """A panel per (row, column), a line per `line` level with its band, the row named on
    the left: a depth profile (x = block index, a row per depth) or statistics against step
    (x = "step + 1", log₂). With `log_y` values on a log axis, else centred on 0.

    `data`: row, column, `x`, line, mean, lo, hi.
    """
    fig, axes = figure_grid(len(rows), len(columns))
    parts = data.partition_by("row", "column", as_dict=True)
    for i, row in enumerate(rows):
        for j, column in enumerate(columns):
            ax = axes[i, j]
            set_title(ax, f"{row} · {column}")
            part = parts.get((row, column))
            if part is None:
                ax.set_axis_off()
                continue
            _band_lines(ax, part, x, "line", palette)
            if x == "step + 1":
                log2_x_axis(ax, data[x].max())
            else:
                ax.autoscale_view()
                fixed_ticks(ax.xaxis, sorted(set(part[x].to_list())))
            if log_y:
                _log10_y(ax)
            else:
                ax.axhline(0, color="0.25", linewidth=0.8)
                ax.autoscale_view()
            if i == len(rows) - 1:
                ax.set_xlabel(xlabel)
    present = set(data["line"].to_list())
    add_legend(fig, {k: c for k, c in palette.items() if k in present}, "")
    return to_png(fig)
