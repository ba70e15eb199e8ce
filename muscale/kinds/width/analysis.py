"""Width studies (study kind "width"): each scheme (mode) × family × width × seed trained on
the long horizon, width exponents fitted at every recorded step, and the claims the study
makes about them marked reproduced, not reproduced or inconclusive from the numbers.

Claims may name the metrics derived from the records (derived.py) as well as recorded ones.

A claim names a mode, a metric, the roles it covers (none: every role with the metric),
an expected α and a tolerance; it is judged at the last recorded step, per family, on every
module it covers, by the one rule every kind uses (verdicts.py): with band = α ± tolerance
and I the module's 95% interval of α, the module reproduces the claim when I lies inside
the band, fails to when I lies wholly outside it, and is inconclusive otherwise (the
interval is too wide to tell). A claim is
reproduced when all its modules are, not reproduced when any is not, else inconclusive.
A module whose α is not settled (settle.py: one more doubling of the run, at α's slope
against ln(step) over its last third, would move it by more than SETTLE_TOLERANCE, or that
slope is too uncertain to tell) is `unsettled` and judged neither way; a claim with no module against
it but an unsettled one is unsettled. A `control` claim names the scheme where the claim
must not hold (`lrm-frozen-scales`): "not reproduced" is its pass; a control that does not
fail is not a pass either, and one that is reproduced is a finding (the claim holds without
what it credits), reported as such.
`muscale gate` checks the claims marked `gate = true`; its rule (fail only when α and its
whole interval miss the band) fails exactly the modules judged not reproduced; unsettled
modules are left out of the gate, as they are of every verdict, so a gated claim with no
settled module fails the gate: it cannot be decided yet.
The study's own verdict (`outcome`) fails when the gate would; it passes when every claim is
reproduced and every control fails as it must, and warns otherwise (a finding included)."""

from dataclasses import dataclass

import polars as pl

from ...analysis import verdicts as rule
from ...analysis.gate import KEY
from ...analysis.verdicts import STATUS_OF_VERDICT, STATUSES


@dataclass(frozen=True)
class Claim:
    name: str
    mode: str
    metric: str
    alpha: float
    tolerance: float
    roles: tuple[str, ...] = ()
    # Gated claims are expectations `muscale gate` fails on; the others are reported only.
    gate: bool = False
    note: str = ""
    # A must-fail control: a scheme where the claim should not hold (multipliers frozen), so
    # that "reproduced" elsewhere means something; reproduced here, the claim has no teeth.
    control: bool = False


def from_plan(plan: dict) -> list[Claim]:
    """The claims a width study saved in its plan.json."""
    return [Claim(**c | {"roles": tuple(c["roles"])}) for c in plan["claims"]]


def _covered(exponents: pl.DataFrame, claim: Claim) -> pl.DataFrame:
    """The claim's rows: its mode, metric and roles, at each family's last recorded step."""
    rows = exponents.filter((pl.col("mode") == claim.mode) & (pl.col("metric") == claim.metric))
    if claim.roles:
        rows = rows.filter(pl.col("role").is_in(claim.roles))
    return rows.filter(pl.col("step") == pl.col("step").max().over("family"))


def judge(exponents: pl.DataFrame, claims: list[Claim]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(one row per claim × family with its status, one row per claim × module behind it).
    A claim that covers no fitted module gets one row, family "—", status "no data"."""
    modules, verdicts = [], []
    for i, claim in enumerate(claims):
        rows = (
            _covered(exponents, claim)
            .with_columns(claim=pl.lit(i), claim_alpha=pl.lit(claim.alpha), claim_tolerance=pl.lit(claim.tolerance))
            .with_columns(judged=rule.judge(expected="claim_alpha", tolerance="claim_tolerance"))
            .with_columns(status=pl.col("judged").replace_strict(STATUS_OF_VERDICT))
            .drop("claim_alpha", "claim_tolerance")
        )
        modules.append(rows.drop("judged"))
        for family in sorted(set(rows["family"].to_list())) or ["—"]:
            got = rows.filter(pl.col("family") == family)
            judged = got["judged"].to_list()
            status = STATUS_OF_VERDICT[rule.combine(judged)] if judged else "no data"
            alphas = got["alpha"]
            verdicts.append(
                {
                    "claim": i,
                    "name": claim.name,
                    "mode": claim.mode,
                    "family": family,
                    "metric": claim.metric,
                    "roles": ", ".join(claim.roles) or "all",
                    "expected": claim.alpha,
                    "tolerance": claim.tolerance,
                    "gate": claim.gate,
                    "step": got["step"].max(),
                    "modules": got.height,
                    "alpha_min": alphas.min(),
                    "alpha_median": alphas.median(),
                    "alpha_max": alphas.max(),
                    "ci_low": got["ci_low"].min(),
                    "ci_high": got["ci_high"].max(),
                    **{s: int((got["status"] == s).sum()) for s in STATUSES[:4]},
                    "status": status,
                    "note": claim.note,
                    "control": claim.control,
                }
            )
    return pl.DataFrame(verdicts), pl.concat(modules) if modules else exponents.clear()


def baseline(claims: list[Claim], exponents: pl.DataFrame) -> list[dict]:
    """The gated claims as gate rows, one per module each covers; a claim that covers no
    fitted module is one row whose α is missing, so the gate fails it rather than skip it."""
    rows = []
    for claim in (c for c in claims if c.gate):
        expect = {"expected": claim.alpha, "tolerance": claim.tolerance}
        covered = _covered(exponents, claim).filter(pl.col("settled").fill_null(True))
        rows += [dict(zip(KEY, key)) | expect for key in covered.select(KEY).iter_rows()]
        if covered.is_empty():
            rows.append(
                {
                    "mode": claim.mode,
                    "family": "any",
                    "optimizer": "any",
                    "module": ", ".join(claim.roles) or "any",
                    "metric": claim.metric,
                    "step": -1,
                }
                | expect
            )
    return rows


@dataclass(frozen=True)
class Outcome:
    """What the claims add up to: the study's verdict, and each claim's."""

    verdict: str  # pass, warn, fail; info when the study makes no claims
    # judge's claim rows with `outcome`: pass, fail, warn or info (a control passes by not being
    # reproduced), and `finding`: true on a control that was reproduced
    claims: pl.DataFrame
    missed: int  # gated claims the gate fails on
    findings: int  # controls reproduced: their claims hold without what they credit


# What a status means for a claim, and for a module behind one; a control's is turned around.
OUTCOME = dict(zip(STATUSES, ("pass", "fail", "warn", "warn", "info")))
CONTROL_OUTCOME = {"not reproduced": "pass"}


def outcome(verdicts: pl.DataFrame) -> Outcome:
    """`verdicts`: judge's claim rows."""
    if verdicts.is_empty():
        return Outcome("info", verdicts, 0, 0)
    claims = verdicts.with_columns(
        outcome=pl.when(pl.col("control"))
        .then(pl.col("status").replace_strict(CONTROL_OUTCOME, default="warn"))
        .otherwise(pl.col("status").replace_strict(OUTCOME)),
        finding=pl.col("control") & (pl.col("status") == "reproduced"),
    )
    missed = claims.filter(
        ~pl.col("control") & pl.col("gate") & pl.col("status").is_in(["not reproduced", "no data"])
    ).height
    passed = (claims["outcome"] == "pass").all()
    verdict = "fail" if missed else "pass" if passed else "warn"
    return Outcome(verdict, claims, missed, int(claims["finding"].sum()))
