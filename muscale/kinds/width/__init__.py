"""Claims about width exponents (study files' `kind = "width"`): schemes × families × widths
× seeds on the long horizon, width exponents of every recorded and derived metric, and the
study's claims judged on them (DESIGN.md, fact 5)."""

import polars as pl

from ...analysis.derived import derived
from ...analysis.fit import fit_exponents
from ...report.text import TABLE
from ...run import provenance
from ...study.kind import Analysis, StudyKind
from . import analysis as claims
from . import report
from .clock import on_base_clock
from .study import read


def analyse(plan: dict, specs, records: pl.DataFrame) -> Analysis:
    if plan.get("clock"):
        records = on_base_clock(records, specs, plan["clock"])
    records = pl.concat([records, derived(records)])
    exponents = fit_exponents(records)
    verdicts, modules = claims.judge(exponents, claims.from_plan(plan))
    counts = dict(verdicts.group_by("status").len().iter_rows()) if verdicts.height else {}
    return Analysis(
        exponents,
        {"exponents.csv": exponents, "claims.csv": verdicts},
        counts,
        (records, claims.outcome(verdicts), modules),
    )


def expectations(plan: dict, exponents: pl.DataFrame) -> list[dict]:
    """The gated claims, as gate rows once the fits say which modules each covers."""
    return claims.baseline(claims.from_plan(plan), exponents)


def render(plan: dict, analysis: Analysis, meta: dict, parts: list) -> str:
    records, outcome, modules = analysis.detail
    return report.render(plan["title"], records, analysis.exponents, outcome, modules, meta)


def describe(specs, analysis: Analysis) -> dict[str, str]:
    return provenance.data(specs) | provenance.training(specs)


def summary(analysis: Analysis) -> str:
    verdicts = analysis.tables["claims.csv"]
    if verdicts.is_empty():
        return "the study makes no claims"
    with pl.Config(**TABLE | {"tbl_width_chars": 200}, fmt_str_lengths=40):
        table = verdicts.select(
            "name",
            "mode",
            "family",
            "metric",
            "expected",
            pl.col("tolerance").alias("±"),
            pl.col("alpha_median").alias("α"),
            pl.format("[{}, {}]", pl.col("ci_low").round(2), pl.col("ci_high").round(2)).alias("interval"),
            pl.format("{}/{}/{}", "reproduced", "not reproduced", "inconclusive").alias("modules"),
            "gate",
            "status",
        )
        return (
            "claims at the last step (α: median over the modules a claim covers; interval: their 95% "
            f"intervals' envelope; modules: reproduced/not/inconclusive):\n{table}"
        )


KIND = StudyKind(
    "width",
    read=read,
    analyse=analyse,
    expectations=expectations,
    render=render,
    summary=summary,
    describe=describe,
    exponents_file="exponents.csv",
    swept=True,
)
