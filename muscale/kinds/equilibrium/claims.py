"""The equilibrium study's verdicts: its [expect] table checked as `muscale gate` checks it,
and its claims judged on the fits, so that the report words them and decides nothing.

(a) a scale-invariant matrix settles at ‖W‖ ∝ √(η/λ): judged by the checks when the study
expects exponents, else by whether every such matrix's p and q lie within the band of ±½;
(b) the norm of a matrix whose scale the output sees, reported as measured (how many follow
√(η/λ) anyway); (c) under lrm-scalar, whether W is left to the equilibrium once the
multiplier takes the scale, and the held-out loss beside SP's, both as measured."""

from dataclasses import dataclass

import polars as pl

from ...analysis import gate
from . import analysis as equilibrium
from .study import MODES, TOLERANCE

# What a claim reported as measured says for its verdict.
MEASURED = "measured"
# A checked claim's verdict from its checks' (gate.outcome).
CHECKED = {"pass": "reproduced", "fail": "not reproduced"} | dict.fromkeys(
    ("warn", "inconclusive", "unsettled"), "inconclusive"
)


@dataclass(frozen=True)
class Claim:
    """One claim for one mode, with the rows behind it and its verdict."""

    # invariant (a), visible (b), multiplier (c: the fits of SP, W and s·W side by side) or loss (c)
    name: str
    mode: str
    rows: list[dict]
    # reproduced, not reproduced, inconclusive (checked); follows √(η/λ), does not follow √(η/λ) (no [expect]); or MEASURED
    verdict: str
    # (b), (c) multiplier: how many of the rows follow √(η/λ) within the band
    within: int | None = None


@dataclass(frozen=True)
class Verdicts:
    # How near ±½ counts as following √(η/λ): the [expect] table's tolerance, else the default.
    band: float
    # The study's modes in the order the report shows them.
    modes: list[str]
    # One row per [expect] row: mode, variant, module, metric, expected, tolerance, status.
    checks: pl.DataFrame
    # The fits of ‖W‖ (analysis.wide) with their checks: check (pass, fail, or null when none),
    # expected_p and expected_q (null unless both are checked) and tolerance.
    matrices: pl.DataFrame
    # The study's: pass or fail on its checks, warn when they cannot tell, info when it expects nothing.
    verdict: str
    # The exponents the checks hold ‖W‖ to, (p, q, tolerance); None when there are none.
    expected: tuple[float, float, float] | None
    claims: list[Claim]


def judge(result: equilibrium.Analysis, plan: dict) -> Verdicts:
    expect = list(plan["expect"])
    checks = gate.check(result.fits, expect)
    band = expect[0]["tolerance"] if expect else TOLERANCE
    modes = [m for m in MODES if m in set(result.state["mode"].to_list())]
    outcome = gate.outcome(checks)
    verdict = outcome if outcome in ("pass", "fail", "info") else "warn"
    expected = None
    if checks:
        p, q = (
            next(c for c in checks if c.metric == equilibrium.exponent_name("weight_fro", v)) for v in ("eta", "lambda")
        )
        expected = (p.expected, q.expected, p.tolerance)
    table = pl.DataFrame(
        [
            {
                "mode": c.mode,
                "variant": c.family,
                "module": c.module,
                "metric": c.metric,
                "expected": c.expected,
                "tolerance": c.tolerance,
                "status": c.status,
            }
            for c in checks
        ],
        schema={
            "mode": pl.String,
            "variant": pl.String,
            "module": pl.String,
            "metric": pl.String,
            "expected": pl.Float64,
            "tolerance": pl.Float64,
            "status": pl.String,
        },
    )
    return Verdicts(
        band,
        modes,
        table,
        _matrices(result.wide["weight_fro"], checks),
        verdict,
        expected,
        _claims(result, checks, modes, band),
    )


def _matrices(norms: pl.DataFrame, checks: list[gate.Check]) -> pl.DataFrame:
    by_key = {(c.mode, c.family, c.module, c.metric): c for c in checks}
    columns = {"check": [], "expected_p": [], "expected_q": [], "tolerance": []}
    for r in norms.iter_rows(named=True):
        found = [
            by_key.get((r["mode"], r["variant"], r["module"], equilibrium.exponent_name("weight_fro", v)))
            for v in ("eta", "lambda")
        ]
        found = [c for c in found if c is not None]
        both = len(found) == 2
        columns["check"].append(gate.outcome(found) if found else None)
        columns["expected_p"].append(found[0].expected if both else None)
        columns["expected_q"].append(found[1].expected if both else None)
        columns["tolerance"].append(found[0].tolerance if found else None)
    return norms.with_columns(
        pl.Series("check", columns["check"], pl.String),
        *(pl.Series(k, columns[k], pl.Float64) for k in ("expected_p", "expected_q", "tolerance")),
    )


def _follows(p: float | None, q: float | None, band: float) -> bool:
    """Whether p and q both lie within the band around +½ and −½."""
    return p is not None and q is not None and abs(p - 0.5) <= band and abs(q + 0.5) <= band


def _claims(result: equilibrium.Analysis, checks: list[gate.Check], modes: list[str], band: float) -> list[Claim]:
    norms, effective = result.wide["weight_fro"], result.wide["effective_fro"]
    claims = []
    for mode in modes:
        rows = norms.filter(pl.col("invariant") & (pl.col("mode") == mode)).to_dicts()
        if not rows:
            continue
        checked = [c for c in checks if c.mode == mode]
        verdict = (
            CHECKED[gate.outcome(checked)]
            if checked
            else ("follows √(η/λ)" if all(_follows(r["p"], r["q"], band) for r in rows) else "does not follow √(η/λ)")
        )
        claims.append(Claim("invariant", mode, rows, verdict))
    for mode in modes:
        rows = norms.filter(~pl.col("invariant") & (pl.col("mode") == mode)).to_dicts()
        if rows:
            claims.append(Claim("visible", mode, rows, MEASURED, sum(_follows(r["p"], r["q"], band) for r in rows)))
    if "lrm-scalar" in modes and "sp" in modes:
        keys = ["variant", "module"]
        sp = norms.filter(~pl.col("invariant") & (pl.col("mode") == "sp")).select(*keys, "p", "q", "r")
        w = norms.filter(pl.col("mode") == "lrm-scalar").select(*keys, "p", "q", "r")
        eff = effective.filter(pl.col("mode") == "lrm-scalar").select(*keys, "p", "q", "r")
        joined = sp.join(w, on=keys, suffix="_w").join(eff, on=keys, suffix="_eff").sort(keys).to_dicts()
        claims.append(
            Claim("multiplier", "lrm-scalar", joined, MEASURED, sum(_follows(r["p_w"], r["q_w"], band) for r in joined))
        )
        claims.append(Claim("loss", "lrm-scalar", _losses(result.state), MEASURED))
    return claims


def _losses(state: pl.DataFrame) -> list[dict]:
    """Per variant: at how many grid points lrm-scalar's steady-state loss is below SP's, the
    mean difference, and each mode's best grid point."""
    alive = state.filter(~pl.col("diverged"))
    grid = alive.group_by("variant", "mode", "lr", "weight_decay").agg(pl.col("loss").mean())
    rows = []
    for (variant,), part in grid.partition_by("variant", as_dict=True, maintain_order=True).items():
        paired = part.filter(pl.col("mode") == "sp").join(
            part.filter(pl.col("mode") == "lrm-scalar"), on=["lr", "weight_decay"], suffix="_s"
        )
        if paired.is_empty():
            continue
        rows.append(
            {
                "variant": variant,
                "lower": int((paired["loss_s"] < paired["loss"]).sum()),
                "points": paired.height,
                "difference": (paired["loss_s"] - paired["loss"]).mean(),
                "best": {
                    m: part.filter(pl.col("mode") == m).sort("loss").row(0, named=True) for m in ("sp", "lrm-scalar")
                },
            }
        )
    return rows
