"""One self-contained HTML report per noise–weight-decay equilibrium study.

What a reader needs to judge ‖W‖ ∝ sqrt(η/λ): which matrices are scale-invariant and how
that was measured; the steady-state norms against η/λ, a line per λ (an invariant
matrix's lines fall onto one line of slope ½); the fitted exponents with intervals, R² and
the gate's verdicts; that the runs did settle; and, for learnable scalar multipliers, the
effective norm |s|·‖W‖ and the held-out loss beside SP's. A table of claims says in plain
words what was and was not reproduced.

The numbers come from analysis.py and the verdicts from claims.py; this module words and
arranges them for the template, and figures.py draws them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import polars as pl

from ...report.templates import environment
from ...report.text import DASH, finite, interval, pow2, signed
from . import figures
from .analysis import Analysis
from .claims import MEASURED, Claim, Verdicts

__all__ = ["render"]

NO_CLAIM = "measured"  # the check column of a row the study expects nothing of
CLAIM_KIND = {
    "reproduced": "pass",
    "follows √(η/λ)": "pass",
    "not reproduced": "fail",
    "inconclusive": "warn",
    "does not follow √(η/λ)": "fail",
    MEASURED: "info",
}


def _banner(verdicts: Verdicts) -> dict:
    chips = [
        {
            "kind": {"pass": "pass", "fail": "fail", None: "info"}.get(row["check"], "warn"),
            "text": f"{row['variant']} · {row['mode']} · {row['module']}: "
            f"p = {signed(row['p'], 2)}, q = {signed(row['q'], 2)}",
        }
        for row in verdicts.matrices.filter(pl.col("invariant")).iter_rows(named=True)
    ]
    checks = verdicts.checks
    if checks.is_empty():
        return {
            "overall": verdicts.verdict,
            "chips": chips,
            "line": "MEASURED — the study has no [expect] table; the exponents below are as measured",
        }
    met = int((checks["status"] == "pass").sum())
    p, q, tolerance = verdicts.expected
    line = (
        f"{verdicts.verdict.upper()} — {met} of {checks.height} expected exponents of "
        f"scale-invariant matrices met (‖W‖ ∝ η^p·λ^q, p = {p:+g}, q = {q:+g}, ± {tolerance:g})"
    )
    return {"overall": verdicts.verdict, "line": line, "chips": chips}


def _pq(row: Mapping) -> str:
    return (
        f"p = {signed(row['p'], 2)} {interval(row['p_low'], row['p_high'])}, "
        f"q = {signed(row['q'], 2)} {interval(row['q_low'], row['q_high'])}"
    )


def _claim_row(claim: Claim, band: float) -> dict:
    """A claim in plain words: what it says, what was measured, its verdict."""
    rows = claim.rows
    if claim.name == "invariant":
        text = f"(a) {claim.mode}: a scale-invariant matrix settles at ‖W‖ ∝ √(η/λ)"
        measured = [f"{r['variant']} {r['module']}: {_pq(r)}" for r in rows]
        verdict = claim.verdict
    elif claim.name == "visible":
        text = f"(b) {claim.mode}: ‖W‖ of a matrix whose scale the output sees (reported as measured)"
        measured = [
            f"{r['variant']} {r['module']}: {_pq(r)}; η/λ alone: r = {signed(r['r'], 2)}, R² = {r['r2_ratio']:.2f}"
            for r in rows
        ]
        verdict = f"{claim.within} of {len(rows)} within ±{band:g} of ±½"
    elif claim.name == "multiplier":
        text = "(c) lrm-scalar: the multiplier takes the scale, W is left to the equilibrium"
        measured = [
            f"{r['variant']} {r['module']}: SP ‖W‖ r = {signed(r['r'], 2)}; with s: ‖W‖ "
            f"r = {signed(r['r_w'], 2)} (p = {signed(r['p_w'], 2)}, q = {signed(r['q_w'], 2)}),"
            f" ‖s·W‖ r = {signed(r['r_eff'], 2)}"
            for r in rows
        ]
        verdict = f"{claim.within} of {len(rows)} matrices' W within ±{band:g} of ±½ with s"
    else:
        text = "(c) lrm-scalar: held-out loss at steady state against SP's"
        measured = [
            f"{r['variant']}: lrm-scalar lower at {r['lower']} of {r['points']} grid points; mean difference "
            f"{r['difference']:+.3f}; best "
            + ", ".join(
                f"{m} {b['loss']:.3f} at η = {pow2(b['lr'])}, λ = {pow2(b['weight_decay'])}"
                for m, b in r["best"].items()
            )
            for r in rows
        ]
        verdict = "as measured"
    return {"claim": text, "measured": measured, "verdict": verdict, "kind": CLAIM_KIND[claim.verdict]}


def _invariance_rows(variants: Mapping[str, Mapping]) -> list[dict]:
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
        for name, v in variants.items()
        for module, change in v["change"].items()
    ]


def _fit_rows(a: Analysis, verdicts: Verdicts) -> list[dict]:
    """The fits of ‖W‖ with their checks, then those of ‖s·W‖ (never checked) where there is a multiplier."""
    effective = a.wide["effective_fro"].filter(pl.col("mode") != "sp")  # without a multiplier it is ‖W‖ itself
    rows = []
    for quantity, table in (("‖W‖", verdicts.matrices), ("‖s·W‖", effective)):
        for r in table.iter_rows(named=True):
            status = r.get("check") or NO_CLAIM
            rows.append(
                {
                    "variant": r["variant"],
                    "mode": r["mode"],
                    "module": r["module"],
                    "role": r["role"],
                    "invariant": "yes" if r["invariant"] else "no",
                    "quantity": quantity,
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
                    "expected": f"{r['expected_p']:+g}, {r['expected_q']:+g} ± {r['tolerance']:g}"
                    if r.get("expected_p") is not None
                    else DASH,
                    "check": status,
                    "kind": {"pass": "pass", "fail": "fail", NO_CLAIM: "info"}.get(status, "warn"),
                }
            )
    return rows


def _run_rows(a: Analysis) -> list[dict]:
    table = a.norms.join(a.state.select("run_id", "loss", "diverged"), on="run_id", how="left").sort(
        "variant", "mode", "lr", "weight_decay", "seed", "module"
    )
    return [
        {
            "variant": r["variant"],
            "mode": r["mode"],
            "eta": pow2(r["lr"]),
            "lam": pow2(r["weight_decay"]),
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


def render(plan: Mapping, a: Analysis, verdicts: Verdicts, meta: Mapping[str, str]) -> str:
    """`plan`: the study's plan.json (title, equilibrium settings); `a`: its records analysed;
    `verdicts`: what claims.judge made of them."""
    settings = plan["equilibrium"]
    variants = {v["name"]: v for v in settings["variants"]}
    means = _seed_means(a.norms, a.state)
    panels = [(name, module, module in v["invariant"]) for name, v in variants.items() for module in v["change"]]
    palette = figures.lambda_palette(sorted(set(a.state["weight_decay"].to_list())))
    modes = verdicts.modes
    diverged = a.state.filter(pl.col("diverged"))
    return (
        environment(Path(__file__).parent)
        .get_template("template.html.j2")
        .render(
            title=plan["title"],
            banner=_banner(verdicts),
            claims=[_claim_row(c, verdicts.band) for c in verdicts.claims],
            settings={
                "η·λ·steps": f"{settings['eta_lambda_steps']:g}",
                "steady state": f"mean over the recorded steps in the last {settings['steady_fraction']:g} of each run",
                "invariance tolerance": f"{settings['invariance_tolerance']:g}",
            },
            diverged=[
                f"{r['variant']} {r['mode']} η = {pow2(r['lr'])}, λ = {pow2(r['weight_decay'])}, seed {r['seed']}"
                for r in diverged.iter_rows(named=True)
            ],
            invariance=_invariance_rows(variants),
            norms_png=figures.norm_figure(means, "weight_fro", "steady-state ‖W‖_F", panels, palette, modes),
            effective_png=(
                figures.norm_figure(means, "effective_fro", "steady-state ‖s·W‖_F", panels, palette, modes)
                if "lrm-scalar" in modes
                else None
            ),
            loss_png=figures.loss_figure(a.state, list(variants), palette, modes),
            trajectory_png=figures.trajectory_figure(
                a.trajectories, panels, palette, modes, settings["eta_lambda_steps"], settings["steady_fraction"]
            ),
            fits=_fit_rows(a, verdicts),
            fit_checks=["pass", "fail", NO_CLAIM],
            runs=_run_rows(a),
            fates=["steady", "diverged"],
            band=f"{verdicts.band:g}",
            meta=meta,
        )
    )


def _seed_means(norms: pl.DataFrame, state: pl.DataFrame) -> pl.DataFrame:
    alive = norms.join(state.filter(~pl.col("diverged")).select("run_id"), on="run_id")
    return (
        alive.group_by("variant", "mode", "module", "lr", "weight_decay")
        .agg(pl.col("weight_fro").mean(), pl.col("effective_fro").mean())
        .with_columns(ratio=pl.col("lr") / pl.col("weight_decay"))
        .sort("lr", "weight_decay")
    )
