"""What a coordinate check makes of its records: the width exponents with their verdicts
(fit.py), the check's one verdict, and each role's median α after the first update and at
the end, so that the report and the summary only read them."""

from dataclasses import dataclass

import polars as pl

from ...analysis.derived import derived
from ...analysis.fit import first_and_last, fit_exponents
from ...config.spec import LONG_MODES
from ...report.frames import require

# The exponents a check reads, with their verdicts: fit_exponents' columns.
EXPONENT_COLUMNS = (
    "mode",
    "family",
    "optimizer",
    "module",
    "role",
    "metric",
    "step",
    "alpha",
    "ci_low",
    "ci_high",
    "r2",
    "n_widths",
    "n_seeds",
    "expected",
    "tolerance",
    "verdict",
)


# A check is as bad as its worst exponent; an unsettled one is not judged, but leaves the check undone.
WORST_FIRST = ("fail", "warn", "unsettled", "pass")


@dataclass(frozen=True)
class CoordCheck:
    records: pl.DataFrame
    exponents: pl.DataFrame  # fit_exponents
    verdict: str  # the worst of WORST_FIRST any exponent has; info when none has one
    first_last: pl.DataFrame  # first_and_last


def of(records: pl.DataFrame, exponents: pl.DataFrame) -> CoordCheck:
    """A check from records and the exponents fitted to them (here or by `muscale.fit_exponents`)."""
    require(exponents, EXPONENT_COLUMNS, "exponents")
    present = set(exponents["verdict"].to_list())
    verdict = next((v for v in WORST_FIRST if v in present), "info")
    return CoordCheck(records, exponents, verdict, first_and_last(exponents))


def analyse(records: pl.DataFrame) -> CoordCheck:
    """A long horizon's QK multiplier product is derived from the records, to be judged
    against the raw logits (fit.py)."""
    if records["mode"].is_in(LONG_MODES).any():
        records = pl.concat([records, derived(records, ("mult_qk",))])
    return of(records, fit_exponents(records))
