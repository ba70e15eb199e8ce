"""equilibrium: AdamW over a learning-rate × weight-decay grid at one width, and the
steady-state norms' exponents in η and λ (DESIGN.md, fact 4)."""

from collections import Counter

import polars as pl

from ...report.text import TABLE
from ...run import provenance
from ...study.kind import Analysis, StudyKind
from . import analysis as equilibrium
from . import claims, report
from .study import read


def analyse(plan: dict, specs, records: pl.DataFrame) -> Analysis:
    result = equilibrium.analyse(records, plan, specs)
    verdicts = claims.judge(result, plan)
    steady = result.norms.join(result.state, on=equilibrium.RUN_KEYS)
    checks = Counter(verdicts.checks["status"].to_list())
    return Analysis(
        result.fits, {"steady.csv": steady, "equilibrium.csv": result.fits}, dict(checks), (result, verdicts)
    )


def render(plan: dict, analysis: Analysis, meta: dict, parts: list) -> str:
    return report.render(plan, *analysis.detail, meta)


def _ci(r: dict, name: str) -> str:
    return f"{r[name]:+.2f} [{r[name + '_low']:+.2f}, {r[name + '_high']:+.2f}]"


def summary(analysis: Analysis) -> str:
    table = pl.DataFrame(
        [
            {
                "variant": r["variant"],
                "mode": r["mode"],
                "module": r["module"],
                "invariant": r["invariant"],
                "p [95%]": _ci(r, "p"),
                "q [95%]": _ci(r, "q"),
                "R²": r["r2"],
                "r (η/λ)": r["r"],
                "R² (η/λ)": r["r2_ratio"],
            }
            for r in analysis.detail[0].wide["weight_fro"].iter_rows(named=True)
        ]
    )
    with pl.Config(**TABLE, fmt_str_lengths=40):
        return f"steady-state ‖W‖_F ∝ η^p · λ^q (r: the exponent of η/λ alone):\n{table}"


KIND = StudyKind(
    "equilibrium",
    read=read,
    analyse=analyse,
    expectations=lambda plan, exponents: plan["expect"],
    render=render,
    summary=summary,
    describe=lambda specs, analysis: provenance.data(specs),
    exponents_file="equilibrium.csv",
    swept=True,
)
