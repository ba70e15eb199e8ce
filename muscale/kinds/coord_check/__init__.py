"""The coordinate check (`muscale coord-check`): a family at several widths, the width
exponent of every layer's metrics at every recorded step, verdicts against μP's promise.
Its runs come from the command line (coordcheck.plan), not from a study file; a result
directory without a plan.json, as older versions wrote them, reads as one."""

import os
from collections.abc import Mapping
from pathlib import Path

import polars as pl

from ...analysis.divergence import diverged_runs
from ...analysis.gate import DEPTH_EXPONENTS
from ...analysis.verdicts import VERDICTS, WORST_FIRST
from ...models.families import width_rules
from ...report.text import TABLE
from ...run.store import write_atomic
from ...study.kind import Analysis, StudyKind
from . import analysis as coord
from . import report

WORST_SHOWN = 8


def analyse(plan: dict, specs, records: pl.DataFrame) -> Analysis:
    """The verdict counts are the claims', not the fitted rows' (verdicts.claims), worst first."""
    check = coord.analyse(records)
    exponents = check.exponents
    counts = dict(check.claims.group_by("verdict").len().rows())
    files = {"exponents.csv": exponents}
    if check.depth_exponents is not None:
        files[DEPTH_EXPONENTS] = check.depth_exponents
    return Analysis(exponents, files, {v: counts[v] for v in WORST_FIRST if v in counts}, check)


def describe(specs, analysis: Analysis) -> dict[str, str]:
    """The width rules of each built-in or Hugging Face family the records hold (a directory of
    old has no specs), and the runs that diverged."""
    families = analysis.detail.records["family"].unique().sort()
    meta = {f"width rules ({f})": width_rules(f) for f in families if width_rules(f)}
    if diverged := diverged_runs(analysis.detail.records):
        meta["diverged runs (stopped at their first non-finite step)"] = ", ".join(diverged)
    return meta


def render(plan: dict, analysis: Analysis, meta: dict, parts: list) -> str:
    return report.render(analysis.detail, meta)


def write_report(
    records: pl.DataFrame, exponents: pl.DataFrame, path: str | os.PathLike, meta: Mapping[str, str] | None = None
) -> Path:
    """The report of records and their exponents (`muscale.fit_exponents`), rendered fully in
    memory, then swapped in, so a reader never sees half a report."""
    path = Path(path)
    write_atomic(path, report.render(coord.of(records, exponents), meta or {}))
    return path


def summary(analysis: Analysis) -> str:
    exponents = analysis.exponents
    claims = analysis.detail.claims
    lines = [f"{claims.height} claims: " + " ".join(f"{v}={analysis.verdicts.get(v, 0)}" for v in VERDICTS[:-1])]
    lines += analysis.detail.inferred_lines
    checked = exponents.filter(pl.col("expected").is_not_null())
    with pl.Config(**TABLE, fmt_str_lengths=40):
        if claims.height:
            lines.append("claims, worst first:")
            lines.append(
                str(
                    claims.with_columns(modules=pl.col("modules").list.len()).select(
                        "mode",
                        "role",
                        "metric",
                        "modules",
                        "last_step",
                        "alpha_min",
                        "alpha_max",
                        "ci_low",
                        "ci_high",
                        "expected",
                        "tolerance",
                        "verdict",
                    )
                )
            )
            lines.append("worst exponents (largest |α − expected|):")
            lines.append(
                str(
                    checked.with_columns(off=(pl.col("alpha") - pl.col("expected")).abs())
                    .sort("off", descending=True)
                    .head(WORST_SHOWN)
                    .select(
                        "mode", "module", "metric", "step", "alpha", "ci_low", "ci_high", "r2", "settled", "verdict"
                    )
                )
            )
        if (flat := analysis.detail.collapsed).height:
            lines.append(
                f"collapsing with width (info: act_rms shrinks faster than d^{coord.COLLAPSE_BELOW:g}, "
                "so the layer is switched off at large width):"
            )
            lines.append(str(flat))
        table = analysis.detail.first_last
        if table.height and not checked.height:
            lines.append("width exponents by role, median over modules (α after the first update → at the last step):")
            lines.append(str(table))
    return "\n".join(lines)


KIND = StudyKind(
    "coord_check",
    read=None,
    analyse=analyse,
    expectations=lambda plan, exponents: plan["expect"],
    render=render,
    summary=summary,
    describe=describe,
    exponents_file="exponents.csv",
    swept=False,
)
