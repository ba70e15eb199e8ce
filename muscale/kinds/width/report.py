"""One self-contained HTML report per width study.

What a reader needs to judge the study's claims: each claim with the fitted exponents
behind it and whether they reproduce it; per scheme and family the width exponent, with its
interval, of every layer's matrix, activation, update and multiplier sizes at the end;
the learned multipliers' values per width; α against training step; the loss; metadata.
The numbers and verdicts come from analysis.py (derived metrics, fits, claim verdicts and
what they add up to); this module only words and arranges them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl
import seaborn as sns

from ...config.spec import SETTLE_FROM, SETTLE_TOLERANCE
from ...models.roles import ROLES
from ...report.frames import alpha_trajectories, loss_panel, ordered, setting_order, with_setting
from ...report.templates import environment
from ...report.text import DASH, finite, interval, signed
from .analysis import OUTCOME, STATUSES, Outcome

__all__ = ["render"]

# The exponent table's columns: matrix, activation, update and multiplier sizes.
TABLE_METRICS = (
    "weight_fro",
    "weight_rms",
    "act_rms",
    "raw_act_rms",
    "update_fro",
    "update_spec",
    "update_rel",
    "mult_scale",
    "mult_path",
    "mult_qk",
)
MULTIPLIER_METRICS = ("mult_scale", "mult_qk")
TRAJECTORY_COLORS = dict(
    zip(("act_rms", "weight_fro", "update_rel", "mult_scale", "mult_qk"), sns.color_palette("deep"))
)


def render(
    title: str,
    records: pl.DataFrame,
    exponents: pl.DataFrame,
    outcome: Outcome,
    modules: pl.DataFrame,
    meta: Mapping[str, str],
) -> str:
    """`records`: the runs' records with the derived rows (derived.py); `exponents`: their fits;
    `outcome`: analysis.outcome of the claims; `modules`: analysis.judge's module rows behind them."""
    records = with_setting(records, ("family",))
    exponents = with_setting(exponents, ("family",))
    return (
        environment(Path(__file__).parent)
        .get_template("template.html.j2")
        .render(
            title=title,
            banner=_banner(outcome),
            claims=_claim_rows(outcome.claims, modules),
            tables=_alpha_tables(records, exponents),
            multipliers=_multiplier_values(records),
            trajectories=alpha_trajectories(exponents, TRAJECTORY_COLORS),
            loss=loss_panel(records, log_steps=True),
            meta=meta,
            settle=(SETTLE_TOLERANCE, round(100 * (1 - SETTLE_FROM))),
        )
    )


def _banner(outcome: Outcome) -> dict:
    verdicts = outcome.claims
    if verdicts.is_empty():
        return {"overall": outcome.verdict, "line": "the study makes no claims", "counts": [(s, 0) for s in STATUSES]}
    controls = verdicts.filter(pl.col("control"))
    verdicts = verdicts.filter(~pl.col("control"))
    counts = {s: int((verdicts["status"] == s).sum()) for s in STATUSES}
    line = f"{counts['reproduced']} of {verdicts.height} claims reproduced"
    if controls.height:
        line += (
            f"; {int((controls['status'] == 'not reproduced').sum())} of {controls.height} must-fail "
            "controls fail as they must"
        )
    if outcome.findings:
        line += (
            f"; {outcome.findings} control{'s' if outcome.findings > 1 else ''} reproduced: a finding, "
            "the claim holds without what it credits"
        )
    if outcome.missed:
        line += f"; the gate fails on {outcome.missed} gated claim{'s' if outcome.missed > 1 else ''}"
    return {"overall": outcome.verdict, "line": line, "counts": list(counts.items())}


def _claim_rows(claims: pl.DataFrame, modules: pl.DataFrame) -> list[dict]:
    out = []
    for v in claims.iter_rows(named=True):
        behind = modules.filter((pl.col("claim") == v["claim"]) & (pl.col("family") == v["family"])).sort("module")
        out.append(
            {
                "name": v["name"],
                "mode": v["mode"],
                "family": v["family"],
                "metric": v["metric"],
                "roles": v["roles"],
                "expected": f"{v['expected']:+.2f} ± {v['tolerance']:.2f}",
                "step": v["step"] if v["step"] is not None else DASH,
                "alpha": signed(v["alpha_median"], 2),
                "range": f"{v['alpha_min']:+.2f} … {v['alpha_max']:+.2f}" if v["modules"] else DASH,
                "envelope": interval(v["ci_low"], v["ci_high"]) or DASH,
                "counts": f"{v['reproduced']} / {v['not reproduced']} / {v['inconclusive']} / {v['unsettled']}",
                "gate": "control (must fail)" if v["control"] else "gated" if v["gate"] else "reported",
                "status": f"{v['status']} (finding)" if v["finding"] else v["status"],
                "kind": v["outcome"],
                "note": v["note"],
                "modules": [
                    {
                        "module": m["module"],
                        "role": m["role"],
                        "alpha": signed(m["alpha"]),
                        "ci": interval(m["ci_low"], m["ci_high"]) or DASH,
                        "status": m["status"],
                        "kind": OUTCOME[m["status"]],
                    }
                    for m in behind.iter_rows(named=True)
                ],
            }
        )
    return out


def _alpha_tables(records: pl.DataFrame, exponents: pl.DataFrame) -> list[dict]:
    """Per setting (scheme, plus family when several): a row per module, α and its interval
    at the last step for each of TABLE_METRICS."""
    last = exponents.filter(
        pl.col("metric").is_in(TABLE_METRICS) & (pl.col("step") == pl.col("step").max().over("setting"))
    )
    order = {m: i for i, m in enumerate(records["module"].unique(maintain_order=True).to_list())}
    tables = []
    for setting in setting_order(last):
        part = last.filter(pl.col("setting") == setting)
        metrics = [m for m in TABLE_METRICS if m in set(part["metric"].to_list())]
        cells = {(r["module"], r["metric"]): r for r in part.iter_rows(named=True)}
        modules = sorted(set(part.select("module", "role").iter_rows()), key=lambda mr: order.get(mr[0], len(order)))
        rows = [
            {"module": module, "role": role, "cells": [_cell(cells.get((module, metric))) for metric in metrics]}
            for module, role in modules
        ]
        tables.append({"setting": setting, "step": part["step"].max(), "metrics": metrics, "rows": rows})
    return tables


def _cell(fit: dict | None) -> dict:
    """α and its interval; an α still moving at the end of the run is marked, as no verdict uses it."""
    if fit is None:
        return {"alpha": "", "ci": ""}
    moving = " unsettled" if fit.get("settled") is False else ""
    return {"alpha": signed(fit["alpha"], 2), "ci": (interval(fit["ci_low"], fit["ci_high"]) or DASH) + moving}


def _multiplier_values(records: pl.DataFrame) -> list[dict]:
    """Per setting with learnable multipliers: each multiplier's size at the last step, mean
    over seeds, by width: the numbers the multiplier exponents are fitted to."""
    rows = records.filter(
        pl.col("metric").is_in(MULTIPLIER_METRICS) & (pl.col("step") == pl.col("step").max().over("setting"))
    )
    out = []
    for setting in setting_order(rows):
        part = rows.filter(pl.col("setting") == setting)
        widths = sorted(set(part["width"].to_list()))
        means = (
            part.group_by("module", "role", "metric", "width")
            .agg(pl.col("value").mean())
            .pivot(on="width", index=["module", "role", "metric"], values="value")
        )
        rank = {r: i for i, r in enumerate(ordered(means["role"], ROLES))}
        table = [
            {
                "module": r["module"],
                "role": r["role"],
                "metric": r["metric"],
                "sizes": [f"{r[str(w)]:.3g}" if finite(r[str(w)]) else DASH for w in widths],
            }
            for r in sorted(means.iter_rows(named=True), key=lambda r: (rank[r["role"]], r["module"], r["metric"]))
        ]
        out.append({"setting": setting, "step": part["step"].max(), "widths": widths, "rows": table})
    return out
