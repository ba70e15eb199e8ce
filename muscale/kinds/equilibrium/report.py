"""One self-contained HTML report per noise–weight-decay equilibrium study.

What a reader needs to judge ‖W‖ ∝ sqrt(η/λ): which matrices are scale-invariant and how
that was measured; the steady-state norms against η/λ, a line per λ (an invariant
matrix's lines fall onto one line of slope ½); the fitted exponents with intervals, R² and
the gate's verdicts; that the runs did settle; and, for learnable scalar multipliers, the
effective norm |s|·‖W‖ and the held-out loss beside SP's. A table of claims says in plain
words what was and was not reproduced.

The numbers all come from analysis.py; this module arranges and draws them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import matplotlib
import numpy as np
import polars as pl
import seaborn as sns
from matplotlib.lines import Line2D

from ...analysis import gate
from ...report import figures
from ...report.templates import environment
from ...report.text import DASH, finite, interval, signed
from . import analysis as equilibrium
from .study import TOLERANCE

__all__ = ["render"]

MODE_STYLE = {"sp": "-", "lrm-scalar": "--"}
NO_CLAIM = "measured"  # the check column of a row the study expects nothing of


class _Study:
    """The study's numbers, arranged: fits wide per quantity, checks by exponent, variants by name."""

    def __init__(self, plan: Mapping, analysis: equilibrium.Analysis):
        self.plan, self.a = plan, analysis
        self.settings = plan["equilibrium"]
        self.variants = {v["name"]: v for v in self.settings["variants"]}
        self.modes = [m for m in MODE_STYLE if m in set(analysis.state["mode"].to_list())]
        self.checks = gate.check(analysis.fits, list(plan["expect"]))
        self.by_key = {(c.mode, c.family, c.module, c.metric): c for c in self.checks}
        expected = plan["expect"]
        self.band = expected[0]["tolerance"] if expected else TOLERANCE
        self.wide = {q: equilibrium.wide(analysis.fits, q) for q in equilibrium.QUANTITIES}

    def check(self, mode: str, variant: str, module: str, variable: str) -> gate.Check | None:
        return self.by_key.get((mode, variant, module, equilibrium.exponent_name("weight_fro", variable)))

    def follows(self, row: Mapping) -> bool:
        """Whether a fit's p and q both lie within the band around +½ and −½."""
        return (
            finite(row["p"])
            and finite(row["q"])
            and abs(row["p"] - 0.5) <= self.band
            and abs(row["q"] + 0.5) <= self.band
        )


# ---------------------------------------------------------------- rows for the template


def _banner(study: _Study) -> dict:
    checks = study.checks
    failed = [c for c in checks if c.status != "pass"]
    chips = []
    for row in study.wide["weight_fro"].filter(pl.col("invariant")).iter_rows(named=True):
        statuses = {
            study.check(row["mode"], row["variant"], row["module"], v).status
            for v in ("eta", "lambda")
            if study.check(row["mode"], row["variant"], row["module"], v)
        }
        kind = "fail" if statuses - {"pass"} else "pass" if statuses else "info"
        chips.append(
            {
                "kind": kind,
                "text": f"{row['variant']} · {row['mode']} · {row['module']}: "
                f"p = {signed(row['p'], 2)}, q = {signed(row['q'], 2)}",
            }
        )
    if not checks:
        return {
            "overall": "info",
            "chips": chips,
            "line": "MEASURED — the study has no [expect] table; the exponents below are as measured",
        }
    p, q = (
        next(c for c in checks if c.metric == equilibrium.exponent_name("weight_fro", v)) for v in ("eta", "lambda")
    )
    line = (
        f"{'FAIL' if failed else 'PASS'} — {len(checks) - len(failed)} of {len(checks)} expected exponents of "
        f"scale-invariant matrices met (‖W‖ ∝ η^p·λ^q, p = {p.expected:+g}, q = {q.expected:+g}, "
        f"± {p.tolerance:g})"
    )
    return {"overall": "fail" if failed else "pass", "line": line, "chips": chips}


def _pq(row: Mapping) -> str:
    return (
        f"p = {signed(row['p'], 2)} {interval(row['p_low'], row['p_high'])}, "
        f"q = {signed(row['q'], 2)} {interval(row['q_low'], row['q_high'])}"
    )


def _claims(study: _Study) -> list[dict]:
    """(a), (b), (c) of the study, each with what was measured and a plain verdict."""
    norms, effective = study.wide["weight_fro"], study.wide["effective_fro"]
    claims = []
    for mode in study.modes:
        rows = norms.filter(pl.col("invariant") & (pl.col("mode") == mode)).to_dicts()
        if not rows:
            continue
        checked = [c for c in study.checks if c.mode == mode]
        verdict = (
            ("reproduced" if all(c.status == "pass" for c in checked) else "not reproduced")
            if checked
            else ("follows √(η/λ)" if all(study.follows(r) for r in rows) else "does not follow √(η/λ)")
        )
        claims.append(
            {
                "claim": f"(a) {mode}: a scale-invariant matrix settles at ‖W‖ ∝ √(η/λ)",
                "measured": [f"{r['variant']} {r['module']}: {_pq(r)}" for r in rows],
                "verdict": verdict,
                "kind": "pass" if verdict in ("reproduced", "follows √(η/λ)") else "fail",
            }
        )
    for mode in study.modes:
        rows = norms.filter(~pl.col("invariant") & (pl.col("mode") == mode)).to_dicts()
        if not rows:
            continue
        pinned = [r for r in rows if study.follows(r)]
        claims.append(
            {
                "claim": f"(b) {mode}: ‖W‖ of a matrix whose scale the output sees (reported as measured)",
                "measured": [
                    f"{r['variant']} {r['module']}: {_pq(r)}; η/λ alone: r = {signed(r['r'], 2)}, "
                    f"R² = {r['r2_ratio']:.2f}"
                    for r in rows
                ],
                "verdict": f"{len(pinned)} of {len(rows)} within ±{study.band:g} of ±½",
                "kind": "info",
            }
        )
    if "lrm-scalar" in study.modes and "sp" in study.modes:
        keys = ["variant", "module"]
        sp = norms.filter(~pl.col("invariant") & (pl.col("mode") == "sp")).select(*keys, "p", "q", "r")
        w = norms.filter(pl.col("mode") == "lrm-scalar").select(*keys, "p", "q", "r")
        eff = effective.filter(pl.col("mode") == "lrm-scalar").select(*keys, "p", "q", "r")
        joined = sp.join(w, on=keys, suffix="_w").join(eff, on=keys, suffix="_eff").sort(keys).to_dicts()
        claims.append(
            {
                "claim": "(c) lrm-scalar: the multiplier takes the scale, W is left to the equilibrium",
                "measured": [
                    f"{r['variant']} {r['module']}: SP ‖W‖ r = {signed(r['r'], 2)}; with s: ‖W‖ "
                    f"r = {signed(r['r_w'], 2)} (p = {signed(r['p_w'], 2)}, q = {signed(r['q_w'], 2)}),"
                    f" ‖s·W‖ r = {signed(r['r_eff'], 2)}"
                    for r in joined
                ],
                "verdict": f"{sum(study.follows({'p': r['p_w'], 'q': r['q_w']}) for r in joined)} of "
                f"{len(joined)} matrices' W within ±{study.band:g} of ±½ with s",
                "kind": "info",
            }
        )
        claims.append(
            {
                "claim": "(c) lrm-scalar: held-out loss at steady state against SP's",
                "measured": _loss_lines(study),
                "verdict": "as measured",
                "kind": "info",
            }
        )
    return claims


def _loss_lines(study: _Study) -> list[str]:
    alive = study.a.state.filter(~pl.col("diverged"))
    grid = alive.group_by("variant", "mode", "lr", "weight_decay").agg(pl.col("loss").mean())
    lines = []
    for (variant,), part in grid.partition_by("variant", as_dict=True, maintain_order=True).items():
        paired = part.filter(pl.col("mode") == "sp").join(
            part.filter(pl.col("mode") == "lrm-scalar"), on=["lr", "weight_decay"], suffix="_s"
        )
        if paired.is_empty():
            continue
        better = int((paired["loss_s"] < paired["loss"]).sum())
        best = {m: part.filter(pl.col("mode") == m).sort("loss").row(0, named=True) for m in ("sp", "lrm-scalar")}
        lines.append(
            f"{variant}: lrm-scalar lower at {better} of {paired.height} grid points; mean difference "
            f"{(paired['loss_s'] - paired['loss']).mean():+.3f}; best "
            + ", ".join(
                f"{m} {b['loss']:.3f} at η = {_pow2(b['lr'])}, λ = {_pow2(b['weight_decay'])}" for m, b in best.items()
            )
        )
    return lines


def _pow2(x: float) -> str:
    return f"2^{math.log2(x):g}"


def _invariance_rows(study: _Study) -> list[dict]:
    return [
        {
            "variant": name,
            "family": v["family"],
            "options": ", ".join(f"{k}={val}" for k, val in v["options"].items()) or DASH,
            "module": module,
            "role": v["roles"][module],
            "change": f"{change:.1e}",
            "invariant": "yes" if module in v["invariant"] else "no",
        }
        for name, v in study.variants.items()
        for module, change in v["change"].items()
    ]


def _fit_rows(study: _Study) -> list[dict]:
    rows = []
    for quantity, table in study.wide.items():
        for r in table.iter_rows(named=True):
            if quantity == "effective_fro" and r["mode"] == "sp":
                continue  # without a multiplier the effective norm is ‖W‖ itself
            checks = [study.check(r["mode"], r["variant"], r["module"], v) for v in ("eta", "lambda")]
            checks = [c for c in checks if c is not None] if quantity == "weight_fro" else []
            status = NO_CLAIM if not checks else "pass" if all(c.status == "pass" for c in checks) else "fail"
            rows.append(
                {
                    "variant": r["variant"],
                    "mode": r["mode"],
                    "module": r["module"],
                    "role": r["role"],
                    "invariant": "yes" if r["invariant"] else "no",
                    "quantity": "‖W‖" if quantity == "weight_fro" else "‖s·W‖",
                    "p": signed(r["p"]),
                    "p_ci": interval(r["p_low"], r["p_high"]) or DASH,
                    "q": signed(r["q"]),
                    "q_ci": interval(r["q_low"], r["q_high"]) or DASH,
                    "r2": f"{r['r2']:.3f}" if finite(r["r2"]) else DASH,
                    "r": signed(r["r"]),
                    "r_ci": interval(r["r_low"], r["r_high"]) or DASH,
                    "r2_ratio": f"{r['r2_ratio']:.3f}" if finite(r["r2_ratio"]) else DASH,
                    "n_points": r["n_points"],
                    "n_seeds": r["n_seeds"],
                    "expected": f"{checks[0].expected:+g}, {checks[1].expected:+g} ± {checks[0].tolerance:g}"
                    if len(checks) == 2
                    else DASH,
                    "check": status,
                    "kind": {"pass": "pass", "fail": "fail"}.get(status, "info"),
                }
            )
    return rows


def _run_rows(study: _Study) -> list[dict]:
    table = study.a.norms.join(study.a.state.select("run_id", "loss", "diverged"), on="run_id", how="left").sort(
        "variant", "mode", "lr", "weight_decay", "seed", "module"
    )
    return [
        {
            "variant": r["variant"],
            "mode": r["mode"],
            "eta": _pow2(r["lr"]),
            "lam": _pow2(r["weight_decay"]),
            "ratio": f"{math.log2(r['lr'] / r['weight_decay']):+g}",
            "seed": r["seed"],
            "module": r["module"],
            "weight": f"{r['weight_fro']:.4g}",
            "effective": f"{r['effective_fro']:.4g}",
            "loss": f"{r['loss']:.4f}" if finite(r["loss"]) else DASH,
            "fate": "diverged" if r["diverged"] else "steady",
            "kind": "fail" if r["diverged"] else "pass",
        }
        for r in table.iter_rows(named=True)
    ]


def render(plan: Mapping, analysis: equilibrium.Analysis, meta: Mapping[str, str]) -> str:
    """`plan`: the study's plan.json (title, expect, equilibrium settings); `analysis`: its records analysed."""
    study = _Study(plan, analysis)
    means = _seed_means(analysis.norms, analysis.state)
    panels = _panels(study)
    palette = _lambda_palette(sorted(set(analysis.state["weight_decay"].to_list())))
    diverged = analysis.state.filter(pl.col("diverged"))
    return (
        environment(Path(__file__).parent)
        .get_template("template.html.j2")
        .render(
            title=plan["title"],
            banner=_banner(study),
            claims=_claims(study),
            settings={
                "η·λ·steps": f"{study.settings['eta_lambda_steps']:g}",
                "steady state": f"mean over the recorded steps in the last {study.settings['steady_fraction']:g} "
                "of each run",
                "invariance tolerance": f"{study.settings['invariance_tolerance']:g}",
            },
            diverged=[
                f"{r['variant']} {r['mode']} η = {_pow2(r['lr'])}, λ = {_pow2(r['weight_decay'])}, seed {r['seed']}"
                for r in diverged.iter_rows(named=True)
            ],
            invariance=_invariance_rows(study),
            norms_png=norm_figure(means, "weight_fro", "steady-state ‖W‖_F", panels, palette, study.modes),
            effective_png=(
                norm_figure(means, "effective_fro", "steady-state ‖s·W‖_F", panels, palette, study.modes)
                if "lrm-scalar" in study.modes
                else None
            ),
            loss_png=loss_figure(analysis.state, list(study.variants), palette, study.modes),
            trajectory_png=trajectory_figure(
                analysis.trajectories,
                panels,
                palette,
                study.modes,
                study.settings["eta_lambda_steps"],
                study.settings["steady_fraction"],
            ),
            fits=_fit_rows(study),
            fit_checks=["pass", "fail", NO_CLAIM],
            runs=_run_rows(study),
            fates=["steady", "diverged"],
            band=f"{study.band:g}",
            meta=meta,
        )
    )


# ---------------------------------------------------------------- drawing


def _seed_means(norms: pl.DataFrame, state: pl.DataFrame) -> pl.DataFrame:
    alive = norms.join(state.filter(~pl.col("diverged")).select("run_id"), on="run_id")
    return (
        alive.group_by("variant", "mode", "module", "lr", "weight_decay")
        .agg(pl.col("weight_fro").mean(), pl.col("effective_fro").mean())
        .with_columns(ratio=pl.col("lr") / pl.col("weight_decay"))
        .sort("lr", "weight_decay")
    )


def _panels(study: _Study) -> list[tuple[str, str, bool]]:
    """(variant, module, scale-invariant) in the study's order."""
    return [(name, module, module in v["invariant"]) for name, v in study.variants.items() for module in v["change"]]


def _lambda_palette(lambdas: list[float]) -> dict[float, tuple]:
    return dict(zip(lambdas, sns.color_palette("viridis", len(lambdas))))


def _legend(fig, palette: dict, modes: list[str], extra: tuple = ()) -> None:
    handles = tuple(Line2D([], [], color="0.3", linestyle=MODE_STYLE[m], label=m) for m in modes) + extra
    figures.add_legend(fig, {f"λ = {_pow2(lam)}": c for lam, c in palette.items()}, "weight decay", extra=handles)


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
