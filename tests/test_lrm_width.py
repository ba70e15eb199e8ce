"""What learnable multipliers learn across width, on the simplest layer whose scale the loss
sees (DESIGN.md, fact 5): a byte LM that is an embedding, a gainless RMSNorm and a head with
one scalar multiplier (`lrm-scalar`), on the stdlib's bytes. On the default long horizon the matrix's
per-entry size is pinned by AdamW's equilibrium, its raw logits grow with width, and the
multiplier learns d⁻¹ so that the logits stay flat, settled over the last part of the run.
(On the synthetic Markov tokens the multiplier learns d⁻¹ too but the logits shrink, like
d^−0.33 over widths 16…128: docs/science.md, "A head-only byte LM".) Teeth: with the
multiplier frozen the logits are not flat; a tenth of the horizon has not settled."""

import math

import polars as pl
import pytest

import muscale
from muscale.config.spec import SETTLE_FROM, default_horizon, record_steps
from muscale.models import modes
from muscale.models.families import resolve
from muscale.models.families.transformer import Attention

FAMILY = "families_for_tests:head_lm"
METRICS = ("act_rms", "raw_act_rms", "weight_rms", "mult_scalar")
HORIZON = default_horizon("lrm-scalar", FAMILY)


def head(results, key, **kw) -> dict[str, dict]:
    """The head's last-step fits by metric."""

    def fit():
        records = muscale.coord_check("lrm-scalar", FAMILY, device="cpu", jobs=2, metrics=METRICS, data="stdlib", **kw)
        ex = muscale.fit_exponents(records).filter(pl.col("module") == "head")
        return {r["metric"]: r for r in ex.filter(pl.col("step") == ex["step"].max()).iter_rows(named=True)}

    return results(key, fit)


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="measured at the default horizon (4 seeds, 1000 steps): the logits pass, settled (+0.01 "
    "[−0.02, +0.03]); the multiplier is at −0.96 [−0.96, −0.95] but still approaching −1 at 0.11 per "
    "doubling of the run (−0.89 at step 667), so the settle test calls it unsettled",
)
def test_the_head_multiplier_learns_inverse_width_and_the_logits_stay_flat(results):
    fits = head(results, "default")
    mult, logits = fits["mult_scalar"], fits["act_rms"]
    assert -1.25 <= mult["alpha"] <= -0.75, mult
    assert abs(logits["alpha"]) <= 0.15, logits
    assert mult["settled"] and logits["settled"]
    assert mult["verdict"] == logits["verdict"] == "pass"
    assert abs(fits["weight_rms"]["alpha"]) <= 0.15, fits["weight_rms"]  # the equilibrium's per-entry size
    assert fits["raw_act_rms"]["alpha"] > 0.6, fits["raw_act_rms"]  # what the multiplier undoes


@pytest.mark.slow
def test_teeth_a_frozen_multiplier_fails_the_claims(results):
    """The multiplier frozen at 1 (lr 1e-12): the logits are the raw logits, which grow with
    the aligned input, so the claim that they stay flat must not pass, and with its interval
    wholly above the band it fails. (The multiplier's own d⁻¹ claim is no test here: a constant
    fails it by construction.)"""
    fits = head(results, "frozen", mult_lr=1e-12)
    logits = fits["act_rms"]
    assert logits["settled"] and logits["verdict"] == "fail", logits
    assert logits["ci_low"] > 0.15 and logits["alpha"] == pytest.approx(fits["raw_act_rms"]["alpha"], abs=0.01)


@pytest.mark.science
def test_teeth_a_tenth_of_the_horizon_is_unsettled(results):
    fits = head(results, "tenth", steps=HORIZON.steps // 10)
    assert fits["mult_scalar"]["settled"] is False and fits["mult_scalar"]["verdict"] == "unsettled"


def test_raw_activations_times_the_multiplier_are_the_activations():
    """raw_act_rms is what the multiplier scales: the head's logits are |s|·(raw logits), the QK
    logits s_q·(raw QK logits), exactly, once the multipliers have moved away from 1."""
    records = muscale.coord_check(
        "lrm",
        "transformer",
        widths=(16, 32),
        steps=4,
        seeds=1,
        device="cpu",
        mult_lr=0.05,
        options={"layers": 1},
        metrics=("act_rms", "raw_act_rms", "mult_scalar"),
    )
    value = {
        (w, m, k): v
        for w, m, k, v in records.filter(pl.col("step") == 4).select("width", "module", "metric", "value").iter_rows()
    }
    for width in (16, 32):
        for point, mult in (("head", "head"), ("blocks.0.attn.qk", "blocks.0.attn.q")):
            s = value[width, mult, "mult_scalar"]
            assert abs(s - 1) > 1e-3
            assert value[width, point, "act_rms"] == pytest.approx(
                abs(s) * value[width, point, "raw_act_rms"], rel=1e-5
            )


@pytest.mark.parametrize(
    ("alpha", "late_alpha", "settled", "verdict"),
    [
        (-1.0, -1.0, True, "pass"),
        (-1.0, -1.05, True, "pass"),
        (-1.0, -0.8, False, "unsettled"),
        (0.0, 0.0, True, "fail"),
        (0.0, -1.0, False, "unsettled"),
    ],
)
def test_settled_reads_the_last_third_of_the_run_and_only_the_last_step(alpha, late_alpha, settled, verdict):
    """An exact power law d^α per step: `alpha` up to 2/3 of the run, then linear in ln(step) to
    `late_alpha` at its end (1000 steps, the long horizon's recorded steps). One more doubling
    at that slope moves α by ln 2 / ln 1.5 ≈ 1.7 times late_alpha − alpha: settled within 0.1
    (spec.SETTLE_TOLERANCE), so for a change of 0.05, not 0.2; an unsettled claim is never
    judged, even when it ends inside its band."""
    start = SETTLE_FROM * 1000

    def alpha_at(t: int) -> float:
        return alpha + (late_alpha - alpha) * max(0.0, math.log(t / start) / math.log(1000 / start)) if t else alpha

    rows = [
        {
            "family": "f",
            "mode": "lrm-scalar",
            "optimizer": "adamw",
            "lr": 1e-3,
            "width": w,
            "seed": s,
            "horizon": "long",
            "step": t,
            "module": "head",
            "role": "head",
            "metric": "mult_scalar",
            "value": w ** alpha_at(t) * (1 + 0.01 * s),
        }
        for w in (16, 32, 64)
        for s in (0, 1)
        for t in record_steps(1000, "long")
    ]
    ex = muscale.fit_exponents(pl.DataFrame(rows))
    last = ex.filter(pl.col("step") == 1000).row(0, named=True)
    assert last["settled"] is settled and last["verdict"] == verdict
    assert ex.filter(pl.col("step") < 1000)["settled"].is_null().all()
    assert set(ex.filter(pl.col("step") < 1000)["verdict"]) == {"info"}


@pytest.mark.parametrize(("logits", "verdict"), [(0.0, "pass"), (0.6, "fail")])
def test_the_qk_claim_is_judged_once_on_the_logits_not_again_on_the_multiplier_product(logits, verdict):
    """logits = raw × s_q·s_k exactly (the test above), so α(mult_qk) = α(logits) − α(raw):
    judging the product against −α(raw) as well would count one fact twice. The logits carry
    the claim; the product is shown, unjudged. The head's act_l1 is its act_rms' fact too."""
    raw = 1.4
    rows = [
        {
            "family": "f",
            "mode": "lrm",
            "optimizer": "adamw",
            "lr": 1e-3,
            "width": w,
            "seed": s,
            "horizon": "long",
            "step": t,
            "module": module,
            "role": role,
            "metric": metric,
            "value": w**alpha * (1 + 0.001 * s),
        }
        for w in (16, 32, 64)
        for s in (0, 1, 2)
        for t in record_steps(1000, "long")
        for module, role, metric, alpha in (
            ("b.attn.qk", "attn_qk", "raw_act_rms", raw),
            ("b.attn.qk", "attn_qk", "act_rms", logits),
            ("b.attn.qk", "attn_qk", "mult_qk", logits - raw),
            ("head", "head", "act_rms", logits),
            ("head", "head", "act_l1", logits),
        )
    ]
    last = muscale.fit_exponents(pl.DataFrame(rows)).filter(pl.col("step") == 1000)
    verdicts = {(r["module"], r["metric"]): r["verdict"] for r in last.iter_rows(named=True)}
    assert verdicts[("b.attn.qk", "act_rms")] == verdict and verdicts[("head", "act_rms")] == verdict
    assert verdicts[("b.attn.qk", "mult_qk")] == "info" and verdicts[("head", "act_l1")] == "info"


@pytest.mark.parametrize("family", ["transformer", "hybrid"])
def test_attn_scale_mup_gives_the_papers_one_over_head_dim_in_any_mode(family):
    """The paper's set-up (1/head_dim) on an lrm model, where the QK product's target is d⁻²;
    without the option lrm keeps SP's 1/sqrt(head_dim), and μP its own 1/head_dim."""

    def scales(mode, **options):
        spec = muscale.plan(mode, family, widths=(16, 32), options={"layers": 1, **options})[1]
        model, _ = modes.build(spec, resolve(family))
        return [(m.scale, m.head_dim) for m in model.modules() if isinstance(m, Attention)]

    ((scale, head_dim),) = scales("lrm", attn_scale="mup")
    assert head_dim == 8 and scale == pytest.approx(1 / 8)
    assert scales("lrm") == [(pytest.approx(8**-0.5), 8)]
    assert scales("sp", attn_scale="sp") == scales("sp")
