"""The multipliers' depth profile (study files' `kind = "depth_profile"`): schemes × families
× depths × seeds on the long horizon at one width, each block's contribution to the residual
stream, its branch outputs and its multipliers against the layer index, and the
learnable-multiplier paper's claims about that profile judged against `sp` (analysis.py)."""

import polars as pl

from ...analysis.gate import KEY
from ...report.text import TABLE
from ...run import provenance
from ...study.kind import Analysis, StudyKind
from . import analysis as profile
from . import report
from .study import read

# The judged table as `muscale baseline` and `gate` read it: a contrast is its own metric.
GRID = ("depth", "width", "depth_rule")


def analyse(plan: dict, specs, records: pl.DataFrame) -> Analysis:
    result = profile.analyse(records)
    table = result.statistics.with_columns(
        metric=pl.concat_str("metric", pl.lit("_vs_") + pl.col("against"), ignore_nulls=True)
    )
    exponents = table.select(*KEY, *GRID, "alpha", "ci_low", "ci_high", "n_seeds", "settled", "claim", "verdict")
    counts = dict(result.claims.group_by("status").len().iter_rows()) if result.claims.height else {}
    return Analysis(
        exponents,
        {"profile.csv": exponents, "claims.csv": result.claims.drop("depths", "modules")},
        counts,
        (records, result),
    )


def summary(analysis: Analysis) -> str:
    claims = analysis.tables["claims.csv"]
    if claims.is_empty():
        return "the study makes no claims"
    with pl.Config(**TABLE | {"tbl_width_chars": 200}, fmt_str_lengths=40):
        table = claims.select(
            "claim",
            "mode",
            "family",
            pl.format("{} … {}", pl.col("alpha_min").round(2), pl.col("alpha_max").round(2)).alias("range"),
            pl.format("[{}, {}]", pl.col("ci_low").round(2), pl.col("ci_high").round(2)).alias("interval"),
            "status",
        )
        return f"depth-profile claims at the last step (each judged > 0 at every depth and role):\n{table}"


KIND = StudyKind(
    "depth_profile",
    read=read,
    analyse=analyse,
    expectations=lambda plan, exponents: [],
    render=lambda plan, analysis, meta, parts: report.render(plan["title"], *analysis.detail, meta),
    summary=summary,
    describe=lambda specs, analysis: provenance.data(specs) | provenance.training(specs),
    exponents_file="profile.csv",
    swept=True,
)
