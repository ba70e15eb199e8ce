"""The coordinate check (`muscale coord-check`): a family at several widths, the width
exponent of every layer's metrics at every recorded step, verdicts against μP's promise.
Its runs come from the command line (coordcheck.plan), not from a study file; a result
directory without a plan.json, as older versions wrote them, reads as one."""

import polars as pl

from ...analysis.derived import derived
from ...analysis.divergence import diverged_runs
from ...analysis.fit import first_and_last, fit_exponents
from ...config.spec import LONG_MODES
from ...models.families import width_rules
from ...report.text import TABLE
from ...study.kind import Analysis, StudyKind
from . import report

WORST_SHOWN = 8
# unsettled: a long-horizon claim whose exponent still moved over the last part of the run.
VERDICTS = ("pass", "warn", "fail", "unsettled", "info")


def analyse(plan: dict, specs, records: pl.DataFrame) -> Analysis:
    """A long horizon's QK multiplier product is derived from the records, to be judged
    against the raw logits (fit.py)."""
    if records["mode"].is_in(LONG_MODES).any():
        records = pl.concat([records, derived(records, ("mult_qk",))])
    exponents = fit_exponents(records)
    return Analysis(
        exponents, {"exponents.csv": exponents}, dict(exponents.group_by("verdict").len().iter_rows()), records
    )


def describe(specs, analysis: Analysis) -> dict[str, str]:
    """The width rules of each built-in or Hugging Face family the records hold (a directory of
    old has no specs), and the runs that diverged."""
    families = analysis.detail["family"].unique().sort()
    meta = {f"width rules ({f})": width_rules(f) for f in families if width_rules(f)}
    if diverged := diverged_runs(analysis.detail):
        meta["diverged runs (stopped at their first non-finite step)"] = ", ".join(diverged)
    return meta


def render(plan: dict, analysis: Analysis, meta: dict, parts: list) -> str:
    return report.render(analysis.detail, analysis.exponents, meta)


def summary(analysis: Analysis) -> str:
    exponents = analysis.exponents
    lines = [" ".join(f"{v}={analysis.verdicts.get(v, 0)}" for v in VERDICTS)]
    checked = exponents.filter(pl.col("expected").is_not_null())
    with pl.Config(**TABLE, fmt_str_lengths=40):
        if checked.height:
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
        table = first_and_last(exponents)
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
