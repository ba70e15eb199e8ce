"""lr_transfer (a study file's default kind): the loss-optimal learning rate per width and
its drift with width, η* ∝ d^α, or over depths at one width, η* ∝ L^α per depth rule;
coordinate checks beside the sweep are linked from its report."""

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl

from ...report.text import TABLE
from ...run import provenance
from ...run.store import write_atomic
from ...study.kind import Analysis, StudyKind
from . import analysis as transfer
from . import report
from .study import read


def analyse(plan: dict, specs, records: pl.DataFrame) -> Analysis:
    fitted = transfer.analyse(records, plan["tolerance"], plan["expect"])
    return Analysis(
        fitted.drift,
        {"optima.csv": fitted.widths, "transfer.csv": fitted.drift},
        dict(fitted.drift.group_by("verdict").len().iter_rows()),
        (records, fitted),
    )


def render(plan: dict, analysis: Analysis, meta: dict, parts: list) -> str:
    records, fitted = analysis.detail
    return report.render(plan["title"], records, fitted, meta, parts)


def write_sweep_report(
    title: str,
    records: pl.DataFrame,
    path: str | os.PathLike,
    meta: Mapping[str, str] | None = None,
    tolerance: float = 0.25,
    expect: Sequence[Mapping] = (),
    parts: Sequence[Mapping] = (),
) -> Path:
    """Analyse and render the report of a learning-rate sweep fully in memory, then swap the file in.

    `records`: the long records of the sweep's runs (eval_loss, train_loss and diverged rows).
    `tolerance`, `expect`: as analysis.analyse takes them; the banner reports the checks of
    `expect` when there are any. `parts`: as report.render takes them."""
    path = Path(path)
    write_atomic(path, report.render(title, records, transfer.analyse(records, tolerance, expect), meta or {}, parts))
    return path


def summary(analysis: Analysis) -> str:
    fitted = analysis.detail[1]
    with pl.Config(**TABLE):
        table = analysis.exponents.select(
            *fitted.setting, "alpha", "ci_low", "ci_high", "r2", "unbracketed", "diverged_runs", "verdict"
        )
        symbol = "L" if fitted.axis == "depth" else "d"
        return f"optimal learning rate vs {fitted.axis}, η* ∝ {symbol}^α:\n{table}"


KIND = StudyKind(
    "lr_transfer",
    read=read,
    analyse=analyse,
    expectations=lambda plan, exponents: plan["expect"],
    render=render,
    summary=summary,
    describe=lambda specs, analysis: provenance.data(specs),
    exponents_file="transfer.csv",
    swept=True,
)
