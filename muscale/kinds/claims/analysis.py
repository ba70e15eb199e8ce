"""Width studies (study kind "width"): each scheme (mode) × family × width × seed trained on
the long horizon, width exponents fitted at every recorded step, and the claims the study
makes about them marked reproduced, not reproduced or inconclusive from the numbers.

Derived quantities are computed here, from the records, never in the probes:

* `mult_scale`, per layer: the size of its learnable multiplier, |s| or the product of the
  RMS of its row and column vectors (whichever it has).
* `mult_qk`, per attention (at its QK-logit point, role attn_qk): the size of what
  multiplies the logits, the product of the query's and the key's output-side multipliers
  (|s|, or the row vector's RMS; a projection without one counts 1): s_q·s_k for scalars.
* `update_rel`, per matrix: ‖ΔW‖_F / ‖W‖_F of the recorded step, the relative (angular)
  update, which the weight-decay equilibrium sets to about sqrt(2ηλ) whatever the width.

A claim names a mode, a metric, the roles it covers (none: every role with the metric),
an expected α and a tolerance; it is judged at the last recorded step, per family, on every
module it covers. With band = α ± tolerance and I the module's 95% interval of α: the
module reproduces the claim when I lies inside the band, fails to when I lies wholly
outside it, and is inconclusive otherwise (the interval is too wide to tell). A claim is
reproduced when all its modules are, not reproduced when any is not, else inconclusive.
`muscale gate` checks the claims marked `gate = true`; its rule (fail only when α and its
whole interval miss the band) fails exactly the modules judged not reproduced."""

import dataclasses
from dataclasses import dataclass

import polars as pl

from ...gate import KEY
from ...spec import RunSpec, multiplier_kind

DERIVED = ("mult_scale", "mult_qk", "update_rel")
STATUSES = ("reproduced", "not reproduced", "inconclusive", "no data")
_MULT = ("mult_scalar", "mult_row_rms", "mult_col_rms")


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


def from_plan(plan: dict) -> list[Claim]:
    """The claims a width study saved in its plan.json."""
    return [Claim(**c | {"roles": tuple(c["roles"])}) for c in plan["claims"]]


def training(specs: list[RunSpec]) -> dict[str, str]:
    """How each scheme trained, as report metadata: the settings behind every exponent."""
    out = {}
    for s in {dataclasses.replace(s, width=0, seed=0) for s in specs}:
        text = (f"{s.optimizer}, lr {s.lr:g}, weight decay {s.weight_decay:g} on matrices (η·λ·steps = "
                f"{s.lr * s.weight_decay * s.steps:.3g}), {s.steps} steps of {s.batch_size}×{s.seq_len} tokens "
                f"({s.data}), options {dict(s.family_options) or 'none'}")
        if multiplier_kind(s.mode):
            placement = ", ".join(f"{k}={v}" for k, v in s.multipliers) or "the mode's default"
            text += (f"; multipliers: lr {s.lr if s.mult_lr is None else s.mult_lr:g}, weight decay "
                     f"{s.mult_weight_decay:g}, start {s.mult_init:g}, placement {placement}")
        out[f"training ({s.family}, {s.mode})"] = text
    return dict(sorted(out.items()))


def derived(records: pl.DataFrame) -> pl.DataFrame:
    """The derived rows (see above), in the records' columns."""
    run = [c for c in records.columns if c not in ("module", "role", "metric", "value")]
    wide = _wide(records, run, _MULT)
    scale = pl.col("mult_scalar").abs().fill_null(pl.col("mult_row_rms").fill_null(1.0)
                                                  * pl.col("mult_col_rms").fill_null(1.0))
    out = [wide.filter(pl.any_horizontal(pl.col(m).is_not_null() for m in _MULT))
           .select(*run, "module", "role", metric=pl.lit("mult_scale"), value=scale)]
    side = pl.col("mult_scalar").abs().fill_null(pl.col("mult_row_rms").fill_null(1.0))
    qk = (wide.filter(pl.col("role").is_in(["attn_q", "attn_k"]))
          .with_columns(module=pl.col("module").str.replace(r"\.[^.]+$", "") + ".qk")
          .group_by(*run, "module").agg(value=side.product()))
    out.append(qk.select(*run, "module", role=pl.lit("attn_qk"), metric=pl.lit("mult_qk"), value="value"))
    norms = _wide(records, run, ("update_fro", "weight_fro")).drop_nulls(["update_fro", "weight_fro"])
    out.append(norms.select(*run, "module", "role", metric=pl.lit("update_rel"),
                            value=pl.col("update_fro") / pl.col("weight_fro")))
    return pl.concat([frame.select(records.columns).cast(records.schema) for frame in out])


def _wide(records: pl.DataFrame, run: list[str], metrics: tuple[str, ...]) -> pl.DataFrame:
    """One row per (run, step, module) with a column per metric (null where not recorded)."""
    rows = records.filter(pl.col("metric").is_in(metrics))
    wide = rows.pivot(on="metric", index=[*run, "module", "role"], values="value") if rows.height else rows
    return wide.with_columns(pl.lit(None, pl.Float64).alias(m) for m in metrics if m not in wide.columns)


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
        lo, hi = claim.alpha - claim.tolerance, claim.alpha + claim.tolerance
        rows = _covered(exponents, claim).with_columns(
            claim=pl.lit(i),
            status=pl.when((pl.col("ci_low") >= lo) & (pl.col("ci_high") <= hi)).then(pl.lit("reproduced"))
            .when((pl.col("ci_high") < lo) | (pl.col("ci_low") > hi)).then(pl.lit("not reproduced"))
            .otherwise(pl.lit("inconclusive")))
        modules.append(rows)
        for family in sorted(set(rows["family"].to_list())) or ["—"]:
            got = rows.filter(pl.col("family") == family)
            seen = set(got["status"].to_list())
            status = ("no data" if not seen else "not reproduced" if "not reproduced" in seen
                      else "reproduced" if seen == {"reproduced"} else "inconclusive")
            alphas = got["alpha"]
            verdicts.append({"claim": i, "name": claim.name, "mode": claim.mode, "family": family,
                             "metric": claim.metric, "roles": ", ".join(claim.roles) or "all",
                             "expected": claim.alpha, "tolerance": claim.tolerance, "gate": claim.gate,
                             "step": got["step"].max(), "modules": got.height,
                             "alpha_min": alphas.min(), "alpha_median": alphas.median(), "alpha_max": alphas.max(),
                             "ci_low": got["ci_low"].min(), "ci_high": got["ci_high"].max(),
                             **{s: int((got["status"] == s).sum()) for s in STATUSES[:3]},
                             "status": status, "note": claim.note})
    return pl.DataFrame(verdicts), pl.concat(modules) if modules else exponents.clear()


def baseline(claims: list[Claim], exponents: pl.DataFrame) -> list[dict]:
    """The gated claims as gate rows, one per module each covers; a claim that covers no
    fitted module is one row whose α is missing, so the gate fails it rather than skip it."""
    rows = []
    for claim in (c for c in claims if c.gate):
        expect = {"expected": claim.alpha, "tolerance": claim.tolerance}
        covered = _covered(exponents, claim)
        rows += [dict(zip(KEY, key)) | expect for key in covered.select(KEY).iter_rows()]
        if covered.is_empty():
            rows.append({"mode": claim.mode, "family": "any", "optimizer": "any",
                         "module": ", ".join(claim.roles) or "any", "metric": claim.metric, "step": -1} | expect)
    return rows
