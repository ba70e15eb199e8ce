"""One self-contained HTML report per coordinate check.

Everything a reader needs to tell a bug from a finding (verdicts, worst
exponents, α over training, the raw coord-check curves, R² and CIs) in one
file that opens offline: figures are inlined, nothing is fetched.
"""

from __future__ import annotations

import html
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import jinja2
import polars as pl

from muscale.errors import InputError
from muscale.fit import first_and_last
from muscale.roles import ROLES
from muscale.spec import MODES, SETTLE_FROM
from muscale.store import write_atomic
from muscale.report import figures

__all__ = ["write_report", "write_index", "write_sweep_report"]

RECORD_COLUMNS = ("family", "mode", "optimizer", "lr", "weight_decay", "width", "seed", "horizon",
                  "step", "role", "metric", "value")
EXPONENT_COLUMNS = ("mode", "family", "optimizer", "module", "role", "metric", "step", "alpha",
                    "ci_low", "ci_high", "r2", "n_widths", "n_seeds", "expected", "tolerance", "verdict")
# unsettled: a long-horizon exponent still moving over the last part of the run, never judged.
VERDICTS = ("fail", "warn", "unsettled", "pass", "info")
ROLE_ORDER = ROLES
# act_l1 is left to the table: it scales like act_rms, and every panel costs ~60 ms to draw.
COORD_METRICS = ("act_rms", "dact_rms", "update_spec", "spec_ratio",
                 "mult_scalar", "mult_row_rms", "mult_col_rms")
WORST_ROWS = 10
# Per-module drill-down: value vs width and fit residuals of these metrics, one figure per module.
DRILL_METRICS = ("act_rms", "dact_rms")
# ~0.15 s and ~15 kB per module; past this many, only the modules with the largest misses are drawn.
DRILL_MAX_MODULES = 12
DRIFT_SHOWN = 8
VERDICT_RANK = {v: i for i, v in enumerate(VERDICTS)}
DASH = "—"

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent),
    autoescape=True,  # always, not by extension: the template is .html.j2 and module names are user text
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def write_report(records: pl.DataFrame, exponents: pl.DataFrame, path: str | os.PathLike,
                 meta: Mapping[str, str] | None = None) -> Path:
    """Render fully in memory, then swap the file in, so a reader never sees half a report."""
    _require(records, RECORD_COLUMNS, "records")
    _require(exponents, EXPONENT_COLUMNS, "exponents")
    html = _render(records, exponents, meta or {})
    path = Path(path)
    write_atomic(path, html)
    return path


_INDEX = jinja2.Environment(autoescape=True).from_string("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>muscale reports</title>
<style>body{font:15px/1.5 system-ui,sans-serif;margin:2em auto;max-width:60em;color:#222}
td,th{padding:.3em .8em;text-align:left;border-bottom:1px solid #ddd}
.pass{color:#1a7f37}.warn{color:#9a6700}.fail{color:#cf222e}.info{color:#57606a}</style></head>
<body><h1>muscale reports</h1><table><tr><th>report</th><th>verdict</th></tr>
{% for r in reports %}<tr><td><a href="{{ r.href }}">{{ r.title }}</a></td><td class="{{ r.overall }}">{{ r.banner }}</td></tr>
{% endfor %}</table></body></html>
""")


def write_index(directory: str | os.PathLike) -> Path:
    """`index.html` listing every report in `directory` with its title and verdict banner,
    read back from the reports themselves so the index cannot disagree with them."""
    directory = Path(directory)
    reports = []
    for page in sorted(directory.glob("*.html")):
        if page.name == "index.html":
            continue
        text = page.read_text(encoding="utf-8")
        title = re.search(r"<title>(.*?)</title>", text, re.S)
        banner = re.search(r'<div class="banner (\w+)">\s*<strong>(.*?)</strong>', text, re.S)
        reports.append({"href": page.name, "title": html.unescape(title.group(1)) if title else page.name,
                        "overall": banner.group(1) if banner else "info",
                        "banner": html.unescape(banner.group(2)) if banner else "not a muscale report"})
    path = directory / "index.html"
    write_atomic(path, _INDEX.render(reports=reports))
    return path


def _require(df: pl.DataFrame, columns: Iterable[str], name: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(name, f"missing column(s) {', '.join(missing)}",
                         "pass records/exponents written by this version of muscale")


def _ordered(values: Iterable[str], canonical: tuple[str, ...]) -> list[str]:
    rank = {v: i for i, v in enumerate(canonical)}
    return sorted(set(values), key=lambda v: (rank.get(v, len(rank)), v))


def _with_setting(df: pl.DataFrame, extra_keys: tuple[str, ...]) -> pl.DataFrame:
    """Label rows by mode, plus any other run key that varies, so runs that differ are never averaged together."""
    varying = [k for k in extra_keys if df[k].n_unique() > 1]
    parts = [pl.col("mode")] + [pl.lit(f"{k}=") + pl.col(k).cast(pl.String) for k in varying]
    return df.with_columns(setting=pl.concat_str(parts, separator=" · "))


def _settings(df: pl.DataFrame) -> list[str]:
    rank = {m: i for i, m in enumerate(MODES)}
    pairs = df.select("mode", "setting").unique().rows()
    return [s for _, s in sorted(pairs, key=lambda p: (rank.get(p[0], len(rank)), p[0], p[1]))]


def _model_order(exponents: pl.DataFrame, records: pl.DataFrame) -> pl.DataFrame:
    """Modules in the order the probes recorded them (layer order), not alphabetical (blocks.10 before blocks.2)."""
    mode_rank = {m: i for i, m in enumerate(MODES)}
    module_rank = records.select("module").unique(maintain_order=True).with_row_index("module_rank")
    return (
        exponents.join(module_rank, on="module", how="left")
        .sort(pl.col("mode").replace_strict(mode_rank, default=len(mode_rank)), "mode", "family", "optimizer",
              "module_rank", "module", "metric", "step", nulls_last=True)
        .drop("module_rank")
    )


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def _signed(x: float | None, digits: int = 3) -> str:
    return f"{x:+.{digits}f}" if _finite(x) else DASH


def _interval(lo: float | None, hi: float | None, digits: int = 2) -> str:
    """A 95% interval as text, empty when either end is missing."""
    return f"[{lo:+.{digits}f}, {hi:+.{digits}f}]" if _finite(lo) and _finite(hi) else ""


def _exponent_row(r: dict) -> dict:
    ci = _interval(r["ci_low"], r["ci_high"]) or DASH
    expected = DASH
    if _finite(r["expected"]):
        expected = _signed(r["expected"], 2)
        if _finite(r["tolerance"]):
            expected += f" ± {r['tolerance']:.2f}"
    return {
        "setting": r["setting"], "module": r["module"], "role": r["role"], "metric": r["metric"],
        "step": r["step"], "alpha": _signed(r["alpha"]), "ci": ci,
        "r2": f"{r['r2']:.3f}" if _finite(r["r2"]) else DASH,
        "n": f"{r['n_widths']}×{r['n_seeds']}", "expected": expected,
        "deviation": f"{r['deviation']:.3f}" if _finite(r.get("deviation")) else DASH,
        "verdict": r["verdict"],
    }


def _banner(exponents: pl.DataFrame) -> dict:
    counts = dict.fromkeys(VERDICTS, 0) | dict(exponents["verdict"].value_counts().rows())
    checked = counts["fail"] + counts["warn"] + counts["pass"] + counts["unsettled"]
    unsettled = f"; {counts['unsettled']} unsettled, not judged" if counts["unsettled"] else ""
    if counts["fail"]:
        overall, line = "fail", f"FAIL — {counts['fail']} of {checked} checked exponents outside tolerance{unsettled}"
    elif counts["warn"]:
        overall, line = "warn", f"WARN — {counts['warn']} of {checked} checked exponents flagged, none failed{unsettled}"
    elif counts["unsettled"]:
        overall, line = "warn", f"UNSETTLED — {counts['unsettled']} of {checked} checked exponents still moving, the rest pass"
    elif counts["pass"]:
        overall, line = "pass", f"PASS — all {checked} checked exponents within tolerance"
    elif exponents.is_empty():
        overall, line = "info", "INFO ONLY — no exponents were fitted"
    else:
        overall, line = "info", "INFO ONLY — no exponent had an expectation to check against"
    return {"overall": overall, "line": line, "counts": [(v, counts[v]) for v in VERDICTS]}


def _worst(exponents: pl.DataFrame) -> list[dict]:
    """Largest misses at each setting's last checked step; an unfittable α (NaN) counts as the worst miss."""
    checked = exponents.filter(pl.col("expected").fill_nan(None).is_not_null())
    last = checked.filter(pl.col("step") == pl.col("step").max().over("setting"))
    deviation = (pl.col("alpha") - pl.col("expected")).abs().fill_null(float("nan"))
    worst = last.with_columns(deviation=deviation).sort("deviation", descending=True).head(WORST_ROWS)
    return [_exponent_row(r) for r in worst.iter_rows(named=True)]


def _over_seeds(df: pl.DataFrame, *keys: str) -> pl.DataFrame:
    """Mean line and min–max band over seeds (seaborn's errorbar=("pi", 100))."""
    value = pl.col("value")
    return df.group_by(*keys).agg(value.mean().alias("mean"), value.min().alias("lo"), value.max().alias("hi"))


def _trajectories(exponents: pl.DataFrame, colors: dict = figures.TRAJECTORY_COLORS,
                  long_horizon: bool = False) -> list[dict]:
    """α against step per setting, for the metrics `colors` names; on a long horizon with the
    window that `settled` compares shaded."""
    metrics = list(colors)
    alpha = pl.col("alpha").fill_nan(None)
    data = (
        exponents.filter(pl.col("metric").is_in(metrics) & alpha.is_not_null())
        .with_columns(lo=pl.col("ci_low").fill_nan(None).fill_null(alpha),
                      hi=pl.col("ci_high").fill_nan(None).fill_null(alpha))
        .group_by("setting", "mode", "role", "metric", "step")
        .agg(alpha.mean().alias("mean"), pl.col("lo").min(), pl.col("hi").max())
    )
    out = []
    for setting in _settings(data):
        part = data.filter(pl.col("setting") == setting)
        roles = _ordered(part["role"], ROLE_ORDER)
        settle = SETTLE_FROM * part["step"].max() if long_horizon else None
        out.append({"setting": setting, "png": figures.alpha_trajectory(part, roles, colors, settle)})
    return out


def _coord_checks(records: pl.DataFrame) -> list[dict]:
    stats = (
        records.filter(pl.col("metric").is_in(COORD_METRICS) & (pl.col("role") != "loss")
                       & pl.col("value").is_finite() & (pl.col("value") > 0))
        .group_by("setting", "role", "metric", "step", "width", "seed")
        .agg(pl.col("value").mean())
        .pipe(_over_seeds, "setting", "role", "metric", "step", "width")
    )
    settings = _settings(records.filter(pl.col("role") != "loss"))
    by_role = stats.partition_by("role", as_dict=True)
    out = []
    for role in _ordered(stats["role"], ROLE_ORDER):
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
    data = records.filter(pl.col("metric").is_in(DRILL_METRICS) & (pl.col("role") != "loss")
                          & pl.col("value").is_finite() & (pl.col("value") > 0))
    if data.is_empty():
        return [], 0
    curves = (data.group_by("setting", "module", "metric", "step", "width", "seed").agg(pl.col("value").mean())
              .pipe(_over_seeds, "setting", "module", "metric", "step", "width"))
    residuals = _residuals(curves)
    module_order = data.select("module", "role").unique("module", maintain_order=True)
    modules = module_order["module"].to_list()
    roles = dict(module_order.rows())

    last = exponents.filter(pl.col("step") == pl.col("step").max().over("setting"))
    miss = (last.filter(pl.col("expected").fill_nan(None).is_not_null())
            .with_columns(d=(pl.col("alpha") - pl.col("expected")).abs().fill_nan(None).fill_null(float("inf")))
            .group_by("module").agg(pl.col("d").max()))
    omitted = 0
    if len(modules) > DRILL_MAX_MODULES:
        # checked modules first, largest miss first; then the largest width dependence of act_rms/dact_rms
        worst = dict(miss.rows())
        steepest = dict(last.filter(pl.col("metric").is_in(DRILL_METRICS))
                        .group_by("module").agg(pl.col("alpha").abs().fill_nan(float("inf")).max()).rows())
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
        settings = _settings(records.filter(pl.col("module") == module))
        metrics = [m for m in DRILL_METRICS if m in set(part["metric"].to_list())]
        seen = verdicts.get(module) or ["info"]
        rows = fits.filter(pl.col("module") == module).sort("setting", "metric")
        out.append({
            "anchor": f"module-{i}", "module": module, "role": roles[module],
            "verdict": min(seen, key=lambda v: VERDICT_RANK.get(v, len(VERDICT_RANK))),
            "fits": [_exponent_row(r) for r in rows.iter_rows(named=True)],
            "png": figures.module_drilldown(part, resid_by_module.get(module, residuals.clear()), settings, metrics),
        })
    return out, omitted


def _drift(records: pl.DataFrame) -> dict | None:
    """The symmetric directions of learnable multipliers (probes' mult_drift): per role and
    width the trajectory of the pair furthest from 0 at the end, and the pairs that moved most
    by the end at the largest width."""
    keys = ["setting", "mode", "role", "module", "step", "width"]
    pairs = (records.filter((pl.col("metric") == "mult_drift") & pl.col("value").is_finite())
             .group_by(*keys, "seed").agg(pl.col("value").mean()))
    if pairs.is_empty():
        return None
    means = pairs.group_by(keys).agg(pl.col("value").mean())
    last = means.filter(pl.col("step") == pl.col("step").max().over("setting"))
    furthest = last.sort(pl.col("value").abs()).group_by("setting", "role", "width").agg(pl.col("module").last())
    lines = pairs.join(furthest, on=["setting", "role", "width", "module"]).pipe(
        _over_seeds, "setting", "mode", "role", "step", "width")
    panels = [(s, r) for s in _settings(lines)
              for r in _ordered(lines.filter(pl.col("setting") == s)["role"], ROLE_ORDER)]
    top = last.filter(pl.col("width") == pl.col("width").max().over("setting")).sort(pl.col("value").abs(), descending=True).head(DRIFT_SHOWN)
    return {"png": figures.drift(lines, panels),
            "top": [r | {"value": _signed(r["value"])} for r in top.iter_rows(named=True)]}


def _loss(records: pl.DataFrame, log_steps: bool) -> str | None:
    loss = (
        records.filter((pl.col("metric") == "loss") & pl.col("value").is_finite())
        .pipe(_over_seeds, "setting", "mode", "step", "width")
    )
    if loss.is_empty():
        return None
    return figures.loss_curves(loss, _settings(loss), log_steps)


def _render(records: pl.DataFrame, exponents: pl.DataFrame, meta: Mapping[str, str]) -> str:
    records = _with_setting(records, ("family", "optimizer", "lr", "weight_decay", "horizon"))
    exponents = _with_setting(exponents, ("family", "optimizer"))
    exponents = _model_order(exponents, records)
    families = sorted(set(records["family"].to_list()) | set(exponents["family"].to_list()))
    modes = _ordered(records["mode"].to_list() + exponents["mode"].to_list(), MODES)
    long_horizon = (records["horizon"] == "long").any()
    evolving = long_horizon or exponents["step"].n_unique() >= 3
    modules, omitted = _drilldown(records, exponents)
    return _env.get_template("template.html.j2").render(
        title=f"muscale coordinate check — {', '.join(families)} · {', '.join(modes)}",
        banner=_banner(exponents),
        worst=_worst(exponents),
        first_last=[{k: _signed(v) if k.startswith("alpha") else v for k, v in r.items()}
                    for r in first_and_last(exponents).iter_rows(named=True)],
        trajectories=_trajectories(exponents, long_horizon=long_horizon) if evolving else [],
        coord_checks=_coord_checks(records),
        modules=modules, modules_omitted=omitted, anchors={m["module"]: m["anchor"] for m in modules},
        drill_metrics=DRILL_METRICS, drill_max=DRILL_MAX_MODULES,
        loss=_loss(records, log_steps=long_horizon),
        drift=_drift(records),
        log_step_label=figures.STEP_LOG_LABEL,
        exponents=[_exponent_row(r) for r in exponents.iter_rows(named=True)],
        meta=meta,
    )


# Last: the sweep report builds on the helpers above.
from muscale.report.sweep import write_sweep_report  # noqa: E402
