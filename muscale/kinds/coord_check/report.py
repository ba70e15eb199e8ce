"""One self-contained HTML report per coordinate check.

Everything a reader needs to tell a bug from a finding (verdicts, worst
exponents, α over training, the raw coord-check curves, R² and CIs) in one
file that opens offline: figures are inlined, nothing is fetched. The exponents
and their verdicts come from analysis.py; this module arranges and draws them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl
import seaborn as sns

from ...config.spec import MODES, SETTLE_FROM
from ...models.roles import ROLES
from ...report import figures
from ...report.frames import alpha_trajectories, loss_panel, ordered, over_seeds, require, setting_order, with_setting
from ...report.templates import environment
from ...report.text import DASH, finite, interval, signed
from .analysis import COLLAPSE_BELOW, VERDICTS, CoordCheck

__all__ = ["render"]

# What the report draws of the records: the runs' keys and values.
RECORD_COLUMNS = (
    "family",
    "mode",
    "optimizer",
    "lr",
    "weight_decay",
    "width",
    "seed",
    "horizon",
    "step",
    "role",
    "metric",
    "value",
)
# act_l1 is left to the table: it scales like act_rms, and every panel costs ~60 ms to draw.
COORD_METRICS = ("act_rms", "dact_rms", "update_spec", "spec_ratio", "mult_scalar", "mult_row_rms", "mult_col_rms")
WORST_ROWS = 10
# Per-module drill-down: value vs width and fit residuals of these metrics, one figure per module.
DRILL_METRICS = ("act_rms", "dact_rms")
# ~0.15 s and ~15 kB per module; past this many, only the modules with the largest misses are drawn.
DRILL_MAX_MODULES = 12
DRIFT_SHOWN = 8
# The learned multipliers drawn per width against step: their sizes and symmetric pairs' products.
LEARNED = ("mult_scalar", "mult_row_rms", "mult_col_rms", "mult_path")
MULTIPLIERS_SHOWN = 16
# Drawn against depth, per block position and for the head (positions.py).
DEPTH_METRICS = ("act_rms", "contrib_rms", "built_rms", "dcontrib_rms", "nonlin_rel", "dact_rms")
DEPTH_COLORS = dict(zip(DEPTH_METRICS, sns.color_palette("colorblind", len(DEPTH_METRICS))))
VERDICT_RANK = {v: i for i, v in enumerate(VERDICTS)}


def _model_order(exponents: pl.DataFrame, records: pl.DataFrame) -> pl.DataFrame:
    """Modules in the order the probes recorded them (layer order), not alphabetical (blocks.10 before blocks.2)."""
    mode_rank = {m: i for i, m in enumerate(MODES)}
    module_rank = records.select("module").unique(maintain_order=True).with_row_index("module_rank")
    return (
        exponents.join(module_rank, on="module", how="left")
        .sort(
            pl.col("mode").replace_strict(mode_rank, default=len(mode_rank)),
            "mode",
            "family",
            "optimizer",
            "module_rank",
            "module",
            "metric",
            "step",
            nulls_last=True,
        )
        .drop("module_rank")
    )


def _exponent_row(r: dict) -> dict:
    ci = interval(r["ci_low"], r["ci_high"]) or DASH
    expected = DASH
    if finite(r["expected"]):
        expected = signed(r["expected"], 2)
        if finite(r["tolerance"]):
            expected += f" ± {r['tolerance']:.2f}"
    return {
        "setting": r["setting"],
        "module": r["module"],
        "role": r["role"],
        "metric": r["metric"],
        "step": r["step"],
        "alpha": signed(r["alpha"]),
        "ci": ci,
        "r2": f"{r['r2']:.3f}" if finite(r["r2"]) else DASH,
        "n": f"{r['n_widths']}×{r['n_seeds']}",
        "expected": expected,
        "deviation": f"{r['deviation']:.3f}" if finite(r.get("deviation")) else DASH,
        "verdict": r["verdict"],
    }


def _banner(check: CoordCheck) -> dict:
    """Counts claims, not fitted rows (verdicts.claims): how many statements were tested."""
    claims = check.claims
    counts = dict.fromkeys(VERDICTS, 0) | dict(claims["verdict"].value_counts().rows())
    n = claims.height
    told = [f"{counts['pass']} pass"] + [
        f"{counts[v]} {words}"
        for v, words in (
            ("unsettled", "still moving (not judged)"),
            ("warn", "warned"),
            ("inconclusive", "inconclusive"),
        )
        if counts[v]
    ]
    if check.verdict == "info":
        line = (
            "INFO ONLY — no exponents were fitted"
            if check.exponents.is_empty()
            else "INFO ONLY — no exponent had an expectation to check against"
        )
    elif check.verdict == "pass":
        line = f"PASS — all {n} claims pass, each exponent's whole interval inside its band"
    elif check.verdict == "fail":
        line = f"FAIL — {counts['fail']} of {n} claims fail; {', '.join(told)}"
    else:
        line = f"WARN — none of {n} claims fails; {', '.join(told)}"
    overall = check.verdict if check.verdict in ("pass", "fail", "info") else "warn"
    return {"overall": overall, "line": line, "counts": [(v, counts[v]) for v in VERDICTS[:-1]]}


def _setting(row: Mapping) -> str:
    return " · ".join(str(row[k]) for k in ("mode", "family", "optimizer") if k in row)


def _claim_rows(claims: pl.DataFrame) -> list[dict]:
    """verdicts.claims' rows, worst first as they come."""
    out = []
    for r in claims.iter_rows(named=True):
        steps = str(r["last_step"]) if r["first_step"] == r["last_step"] else f"{r['first_step']}–{r['last_step']}"
        alphas = (
            signed(r["alpha_min"])
            if r["alpha_min"] == r["alpha_max"]
            else f"{signed(r['alpha_min'])} … {signed(r['alpha_max'])}"
        )
        out.append(
            {
                "setting": _setting(r),
                "role": r["role"],
                "metric": r["metric"],
                "modules": ", ".join(r["modules"]),
                "steps": steps,
                "alpha": alphas,
                "ci": interval(r["ci_low"], r["ci_high"]) or DASH,
                "expected": f"{signed(r['expected'], 2)} ± {r['tolerance']:.2f}",
                "counts": " / ".join(str(r[v]) for v in VERDICTS[:-1]),
                "verdict": r["verdict"],
            }
        )
    return out


def _worst(exponents: pl.DataFrame) -> list[dict]:
    """Largest misses at each setting's last checked step; an unfittable α (NaN) counts as the worst miss."""
    checked = exponents.filter(pl.col("expected").fill_nan(None).is_not_null())
    last = checked.filter(pl.col("step") == pl.col("step").max().over("setting"))
    deviation = (pl.col("alpha") - pl.col("expected")).abs().fill_null(float("nan"))
    worst = last.with_columns(deviation=deviation).sort("deviation", descending=True).head(WORST_ROWS)
    return [_exponent_row(r) for r in worst.iter_rows(named=True)]


def _curves(records: pl.DataFrame, metrics: tuple[str, ...], by: str, axis: str = "width") -> pl.DataFrame:
    """Per setting, `by` (role or module), metric, step and point of `axis`: the mean over each
    seed's modules, then the line and band over seeds, of the positive finite values."""
    return (
        records.filter(
            pl.col("metric").is_in(metrics)
            & (pl.col("role") != "loss")
            & pl.col("value").is_finite()
            & (pl.col("value") > 0)
        )
        .group_by("setting", by, "metric", "step", axis, "seed")
        .agg(pl.col("value").mean())
        .pipe(over_seeds, "setting", by, "metric", "step", axis)
    )


def _coord_checks(records: pl.DataFrame) -> list[dict]:
    stats = _curves(records, COORD_METRICS, "role")
    settings = setting_order(records.filter(pl.col("role") != "loss"))
    by_role = stats.partition_by("role", as_dict=True)
    out = []
    for role in ordered(stats["role"], ROLES):
        part = by_role[(role,)]
        metrics = [m for m in COORD_METRICS if m in set(part["metric"].to_list())]
        out.append({"role": role, "png": figures.coord_check(part, settings, metrics)})
    return out


def _residuals(curves: pl.DataFrame) -> pl.DataFrame:
    """ln(seed mean) minus its least-squares line on ln(width), per width, at each curve's last step.

    The same line `fit_exponents` fits (its slope is α), so a curved residual says the power law misses.
    `curves`: setting, module, metric, step, width, mean.
    """
    group = ("setting", "module", "metric")
    x, y = pl.col("x"), pl.col("y")
    return (
        curves.filter(pl.col("step") == pl.col("step").max().over(group))
        .with_columns(x=pl.col("width").cast(pl.Float64).log(), y=pl.col("mean").log())
        .with_columns(slope=(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum()).over(group))
        .with_columns(residual=y - y.mean().over(group) - pl.col("slope") * (x - x.mean().over(group)))
        .select("setting", "module", "metric", "width", "residual")
    )


def _drilldown(records: pl.DataFrame, exponents: pl.DataFrame) -> tuple[list[dict], int]:
    """One collapsible section per module with act_rms/dact_rms records: its curves, residuals and last-step fits.

    Returns the sections in layer order and how many modules were left out: past DRILL_MAX_MODULES,
    the modules with the largest miss at the last step are kept, then those whose act_rms/dact_rms
    depend most on width. The summary shows the worst verdict of any of the module's fits.
    """
    data = records.filter(
        pl.col("metric").is_in(DRILL_METRICS)
        & (pl.col("role") != "loss")
        & pl.col("value").is_finite()
        & (pl.col("value") > 0)
    )
    if data.is_empty():
        return [], 0
    curves = (
        data.group_by("setting", "module", "metric", "step", "width", "seed")
        .agg(pl.col("value").mean())
        .pipe(over_seeds, "setting", "module", "metric", "step", "width")
    )
    residuals = _residuals(curves)
    module_order = data.select("module", "role").unique("module", maintain_order=True)
    modules = module_order["module"].to_list()
    roles = dict(module_order.rows())

    last = exponents.filter(pl.col("step") == pl.col("step").max().over("setting"))
    miss = (
        last.filter(pl.col("expected").fill_nan(None).is_not_null())
        .with_columns(d=(pl.col("alpha") - pl.col("expected")).abs().fill_nan(None).fill_null(float("inf")))
        .group_by("module")
        .agg(pl.col("d").max())
    )
    omitted = 0
    if len(modules) > DRILL_MAX_MODULES:
        # checked modules first, largest miss first; then the largest width dependence of act_rms/dact_rms
        worst = dict(miss.rows())
        steepest = dict(
            last.filter(pl.col("metric").is_in(DRILL_METRICS))
            .group_by("module")
            .agg(pl.col("alpha").abs().fill_nan(float("inf")).max())
            .rows()
        )
        rank = sorted(modules, key=lambda m: (-worst.get(m, -1.0), -(steepest.get(m) or 0.0)))
        keep = set(rank[:DRILL_MAX_MODULES])
        omitted = len(modules) - len(keep)
        modules = [m for m in modules if m in keep]

    verdicts = dict(exponents.group_by("module").agg(pl.col("verdict").unique()).rows())
    fits = last.filter(pl.col("metric").is_in(DRILL_METRICS))
    by_module = {k[0]: v for k, v in curves.partition_by("module", as_dict=True).items()}
    resid_by_module = {k[0]: v for k, v in residuals.partition_by("module", as_dict=True).items()}
    out = []
    for i, module in enumerate(modules):
        part = by_module[module]
        settings = setting_order(records.filter(pl.col("module") == module))
        metrics = [m for m in DRILL_METRICS if m in set(part["metric"].to_list())]
        seen = verdicts.get(module) or ["info"]
        rows = fits.filter(pl.col("module") == module).sort("setting", "metric")
        out.append(
            {
                "anchor": f"module-{i}",
                "module": module,
                "role": roles[module],
                "verdict": min(seen, key=lambda v: VERDICT_RANK.get(v, len(VERDICT_RANK))),
                "fits": [_exponent_row(r) for r in rows.iter_rows(named=True)],
                "png": figures.module_drilldown(
                    part, resid_by_module.get(module, residuals.clear()), settings, metrics
                ),
            }
        )
    return out, omitted


def _drift(records: pl.DataFrame) -> dict | None:
    """The symmetric directions of learnable multipliers (probes' mult_drift): per role and
    width the trajectory of the pair furthest from 0 at the end, and the pairs that moved most
    by the end at the largest width."""
    keys = ["setting", "mode", "role", "module", "step", "width"]
    pairs = (
        records.filter((pl.col("metric") == "mult_drift") & pl.col("value").is_finite())
        .group_by(*keys, "seed")
        .agg(pl.col("value").mean())
    )
    if pairs.is_empty():
        return None
    means = pairs.group_by(keys).agg(pl.col("value").mean())
    last = means.filter(pl.col("step") == pl.col("step").max().over("setting"))
    furthest = last.sort(pl.col("value").abs()).group_by("setting", "role", "width").agg(pl.col("module").last())
    lines = pairs.join(furthest, on=["setting", "role", "width", "module"]).pipe(
        over_seeds, "setting", "mode", "role", "step", "width"
    )
    panels = [
        (s, r) for s in setting_order(lines) for r in ordered(lines.filter(pl.col("setting") == s)["role"], ROLES)
    ]
    top = (
        last.filter(pl.col("width") == pl.col("width").max().over("setting"))
        .sort(pl.col("value").abs(), descending=True)
        .head(DRIFT_SHOWN)
    )
    return {
        "png": figures.drift(lines, panels),
        "top": [r | {"value": signed(r["value"])} for r in top.iter_rows(named=True)],
    }


def _multipliers(records: pl.DataFrame) -> str | None:
    """Each learned multiplier's size (|s|, a vector's RMS, a symmetric pair's product) per width
    against step, so a reader sees whether it converged; at most MULTIPLIERS_SHOWN of them."""
    rows = records.filter(pl.col("metric").is_in(LEARNED) & pl.col("value").is_finite()).with_columns(
        panel=pl.col("module") + " · " + pl.col("metric"), value=pl.col("value").abs()
    )
    if rows.is_empty():
        return None
    lines = rows.pipe(over_seeds, "setting", "mode", "panel", "step", "width")
    panels = [
        (s, p)
        for s in setting_order(lines)
        for p in sorted(set(lines.filter(pl.col("setting") == s)["panel"].to_list()))
    ][:MULTIPLIERS_SHOWN]
    return figures.by_width_against_step(lines, panels, "panel", "multiplier size")


def _depth_section(check: CoordCheck) -> dict | None:
    """Over two depths or more: the α each setting behaves like, value against depth per block
    position (and the head), β against step, and the depth rows with an expectation."""
    if check.depth_exponents is None or check.by_position is None:
        return None
    keys = ("family", "optimizer", "depth_rule", "width")
    records = with_setting(check.by_position, keys)
    exponents = with_setting(check.depth_exponents, keys)
    stats = _curves(records.filter(pl.col("role").is_in(["block", "head"])), DEPTH_METRICS, "module", "depth")
    settings = setting_order(records.filter(pl.col("role") != "loss"))
    figures_ = []
    for (module,), part in sorted(stats.partition_by("module", as_dict=True).items()):
        metrics = [m for m in DEPTH_METRICS if m in set(part["metric"].to_list())]
        figures_.append({"module": module, "png": figures.coord_check(part, settings, metrics, axis="depth")})
    checked = exponents.filter(pl.col("expected").is_not_null()).sort("setting", "module", "metric", "step")
    return {
        "inferred": check.inferred_lines,
        "figures": figures_,
        "trajectories": alpha_trajectories(exponents, DEPTH_COLORS, ylabel="β  (value ∝ depth^β)"),
        "rows": [_exponent_row(r | {"n_widths": r["n_depths"]}) for r in checked.iter_rows(named=True)],
    }


def render(check: CoordCheck, meta: Mapping[str, str]) -> str:
    require(check.records, RECORD_COLUMNS, "records")
    records = with_setting(check.records, ("family", "optimizer", "lr", "weight_decay", "horizon", "depth"))
    exponents = _model_order(with_setting(check.exponents, ("family", "optimizer", "depth")), records)
    families = sorted(set(records["family"].to_list()) | set(exponents["family"].to_list()))
    modes = ordered(records["mode"].to_list() + exponents["mode"].to_list(), MODES)
    long_horizon = (records["horizon"] == "long").any()
    evolving = long_horizon or exponents["step"].n_unique() >= 3
    # One width (a depth check) has no width dependence to draw.
    widths = records["width"].n_unique() >= 2
    modules, omitted = _drilldown(records, exponents) if widths else ([], 0)
    return (
        environment(Path(__file__).parent)
        .get_template("template.html.j2")
        .render(
            title=f"muscale coordinate check — {', '.join(families)} · {', '.join(modes)}",
            banner=_banner(check),
            claims=_claim_rows(check.claims),
            collapsed=[
                {
                    "setting": _setting(r),
                    "module": r["module"],
                    "role": r["role"],
                    "step": r["step"],
                    "alpha": signed(r["alpha"]),
                    "ci": interval(r["ci_low"], r["ci_high"]) or DASH,
                }
                for r in check.collapsed.iter_rows(named=True)
            ],
            collapse_below=signed(COLLAPSE_BELOW, 0),
            claim_counts=" / ".join(VERDICTS[:-1]),
            verdicts=VERDICTS,
            worst=_worst(exponents),
            first_last=[
                {k: signed(v) if k.startswith("alpha") else v for k, v in r.items()}
                for r in check.first_last.iter_rows(named=True)
            ],
            trajectories=alpha_trajectories(exponents, settle_from=SETTLE_FROM if long_horizon else None)
            if evolving
            else [],
            coord_checks=_coord_checks(records) if widths else [],
            depth=_depth_section(check),
            modules=modules,
            modules_omitted=omitted,
            anchors={m["module"]: m["anchor"] for m in modules},
            drill_metrics=DRILL_METRICS,
            drill_max=DRILL_MAX_MODULES,
            loss=loss_panel(records, log_steps=long_horizon),
            drift=_drift(records),
            multipliers=_multipliers(records),
            log_step_label=figures.STEP_LOG_LABEL,
            exponents=[_exponent_row(r) for r in exponents.iter_rows(named=True)],
            meta=meta,
        )
    )
