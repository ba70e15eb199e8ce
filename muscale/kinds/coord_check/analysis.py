"""What a coordinate check makes of its records: the width exponents with their verdicts
(fit.py), over two depths or more the depth exponents and the α the model behaves like
(depth_rule.py), the claims they stand behind (verdicts.py), the check's one verdict, and
each role's median α after the first update and at the end, so that the report and the
summary only read them."""

from dataclasses import dataclass

import polars as pl

from ...analysis import depth_rule, positions
from ...analysis.derived import derived
from ...analysis.fit import first_and_last, fit_exponents
from ...analysis.verdicts import WORST_FIRST, claims, combine
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

# The verdicts a row or a claim can have, worst first (verdicts.py says what each means).
VERDICTS = WORST_FIRST
# A layer whose output shrinks faster than 1/d is being switched off as width grows: nothing
# downstream can use it at large width, whatever the claims say (on the synthetic tokens the
# default check's mlp_down shrank like d^−3.3). Flagged, not judged: no theory expects it.
COLLAPSE_BELOW = -1.0


@dataclass(frozen=True)
class CoordCheck:
    records: pl.DataFrame
    exponents: pl.DataFrame  # fit_exponents
    claims: pl.DataFrame  # verdicts.claims of the exponents, width's and depth's
    verdict: str  # the worst verdict of any claim (verdicts.combine); info when there is none
    first_last: pl.DataFrame  # first_and_last
    collapsed: pl.DataFrame  # collapsed: the layers whose output collapses with width
    depth_exponents: pl.DataFrame | None = None  # fit_exponents(axis="depth") over two depths or more
    inferred: pl.DataFrame | None = None  # depth_rule.inferred: the α each setting behaves like
    inferred_lines: tuple[str, ...] = ()  # depth_rule.sentence of each
    by_position: pl.DataFrame | None = None  # the records with blocks named by position (positions.py)


def of(records: pl.DataFrame, exponents: pl.DataFrame, depth_exponents: pl.DataFrame | None = None) -> CoordCheck:
    """A check from records and the exponents fitted to them (here or by `muscale.fit_exponents`)."""
    require(exponents, EXPONENT_COLUMNS, "exponents")
    judged = claims(exponents)
    inferred = None if depth_exponents is None else depth_rule.inferred(depth_exponents)
    if depth_exponents is not None:
        judged = pl.concat([judged, claims(depth_exponents)], how="diagonal_relaxed")
    return CoordCheck(
        records,
        exponents,
        judged,
        combine(judged["verdict"].to_list()),
        first_and_last(exponents),
        collapsed(exponents),
        depth_exponents,
        inferred,
        tuple(depth_rule.sentence(r) for r in inferred.iter_rows(named=True)) if inferred is not None else (),
        positions.by_position(records) if depth_exponents is not None else None,
    )


def collapsed(exponents: pl.DataFrame) -> pl.DataFrame:
    """The layers whose output RMS shrinks with width faster than COLLAPSE_BELOW at each
    setting's last recorded step, steepest first."""
    setting = [k for k in ("mode", "family", "optimizer", "lr") if k in exponents.columns]
    rows = exponents.filter(
        (pl.col("metric") == "act_rms")
        & (pl.col("role") != "loss")
        & (pl.col("step") == pl.col("step").max().over(setting))
    )
    return (
        rows.filter(pl.col("alpha") < COLLAPSE_BELOW)
        .sort("alpha")
        .select(*setting, "module", "role", "step", "alpha", "ci_low", "ci_high")
    )


def analyse(records: pl.DataFrame) -> CoordCheck:
    """A long horizon's QK multiplier product is derived from the records and shown beside the
    raw and the multiplied logits it links (fit.py judges only the logits)."""
    if records["mode"].is_in(LONG_MODES).any():
        records = pl.concat([records, derived(records, ("mult_qk",))])
    depth = fit_exponents(records, axis="depth") if positions.over_depths(records) else None
    return of(records, fit_exponents(records), depth)
