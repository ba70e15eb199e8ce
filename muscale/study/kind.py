"""What a study kind is: the contract every folder under muscale/kinds/ fulfils, so that the
API, the command line and the gate handle any kind the same way (kinds/__init__.py registers
them)."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl


@dataclass(frozen=True)
class Analysis:
    """What a kind makes of its records. Everything downstream (files, report, gate, summary)
    reads this, never the records again."""

    # Fitted exponents in the gate's format (gate.KEY columns, alpha, ci_low, ci_high).
    exponents: pl.DataFrame
    # File name → table, written beside the report in this order.
    tables: dict[str, pl.DataFrame]
    # Verdict → how many rows have it, in the kind's own words (pass/warn/fail/info, transfers/drifts, …).
    verdicts: dict[str, int]
    # What the kind's render and summary need besides the above.
    detail: Any


@dataclass(frozen=True)
class StudyKind:
    name: str
    # (studyfile.Reader, the parsed TOML less `kind`) → a validated study with `specs`, `parts`,
    # `settings()` and `baseline()`; None for a kind no study file asks for.
    read: Callable | None
    # (plan, specs, records) → Analysis; it reads records only.
    analyse: Callable[[dict, list, pl.DataFrame], Analysis]
    # (plan, exponents) → the gate's rows when no baseline is given.
    expectations: Callable[[dict, pl.DataFrame], list[dict]]
    # (plan, analysis, meta, parts) → the report's HTML; it draws, never fits or judges.
    render: Callable[[dict, Analysis, dict, list], str]
    # (analysis) → what the command line prints.
    summary: Callable[[Analysis], str]
    # (specs, analysis) → the report metadata this kind adds (data fingerprints, training settings, …).
    describe: Callable[[list | None, Analysis], dict]
    # Which of its tables holds the exponents `muscale gate` and `muscale baseline` read.
    exponents_file: str
    # Trained by `muscale sweep`: runs that fail are recorded and the rest go on; states are reported.
    swept: bool
