"""What the learnable-multipliers paper measures, under μP's short-horizon promise: the change
of attention QK logits, the SSM time step dt and the SSM projectors, over widths 64…512 at
steps 1…5 (Adam, 2×16 tokens, 2 seeds). SP must grow; μP must not; and the μP model that
keeps 1/sqrt(head_dim) attention (the scale many implementations silently keep) must grow."""

import polars as pl
import pytest
import torch

import muscale
from muscale.models import modes, optim
from muscale.models.families import Hooks

pytestmark = pytest.mark.science

WIDTHS = (64, 128, 256, 512)
ATTENTION = ["transformer", "hybrid"]
SSM = ["mamba2", "hybrid"]
# What the tests assert on; recording the rest (spectral and update norms) would double their cost.
METRICS = ("act_rms", "act_l1", "dact_rms")


def exponents(mode: str, family: str, jobs: int = 2) -> pl.DataFrame:
    records = muscale.coord_check(
        mode, family, widths=WIDTHS, steps=5, seeds=2, device="cpu", jobs=jobs, metrics=METRICS
    )
    return muscale.fit_exponents(records).filter(pl.col("step") >= 1)


def qk_change(ex: pl.DataFrame) -> pl.DataFrame:
    return ex.filter((pl.col("role") == "attn_qk") & (pl.col("metric") == "dact_rms")).select("module", "step", "alpha")


@pytest.mark.parametrize("family", ATTENTION)
def test_sp_qk_logit_change_grows(results, family):
    """Grows at every layer and step, like d^0.5 or faster in the median. (The hybrid's second
    block grows like d^0.41…0.48 at steps 1–2; docs/science.md, "Attention logits and SSMs".)"""
    alphas = qk_change(results((family, "sp"), lambda: exponents("sp", family)))
    assert alphas.height == 2 * 5, alphas
    assert alphas["alpha"].min() > 0 and alphas["alpha"].median() > 0.5, alphas


@pytest.mark.parametrize("family", ATTENTION)
@pytest.mark.parametrize("mode", ["mup", "mup+lrm"])
def test_mup_qk_logit_change_stays_flat(results, family, mode):
    alphas = qk_change(results((family, mode), lambda: exponents(mode, family)))["alpha"].abs()
    assert alphas.median() < 0.35, alphas


@pytest.mark.parametrize("family", ATTENTION)
def test_teeth_sqrt_head_dim_attention_under_mup_grows(results, family, monkeypatch):
    """The μP model with SP's attention scale, in-process (the patch does not reach workers)."""
    mup = qk_change(results((family, "mup"), lambda: exponents("mup", family)))
    mup_hooks = modes.hooks

    def sqrt_scale(mode, base_width, multipliers=()):
        h = mup_hooks(mode, base_width, multipliers)
        return Hooks(readout=h.readout, attn_scale=lambda head_dim, width: head_dim**-0.5, multipliers=multipliers)

    monkeypatch.setattr(modes, "hooks", sqrt_scale)
    kept = qk_change(results((family, "mup-sqrt"), lambda: exponents("mup", family, jobs=1)))
    both = mup.join(kept, on=["module", "step"], suffix="_sqrt")
    assert both.height == 2 * 5
    assert (both["alpha_sqrt"] - both["alpha"]).min() >= 0.3, both


def ssm_exponents(ex: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    ex = ex.filter(pl.col("role").is_in(["ssm_dt", "ssm_in", "ssm_out"]))
    return ex.filter(pl.col("metric").is_in(["act_rms", "act_l1"])), ex.filter(pl.col("metric") == "dact_rms")


@pytest.mark.parametrize("family", SSM)
@pytest.mark.parametrize("mode", ["mup", "mup+lrm"])
def test_mup_dt_and_projectors_stay_flat(results, family, mode):
    acts, dacts = ssm_exponents(results((family, mode), lambda: exponents(mode, family)))
    assert set(acts["role"]) == {"ssm_dt", "ssm_in", "ssm_out"}
    assert acts["alpha"].abs().max() < 0.15, acts.sort("alpha")
    assert dacts["alpha"].abs().median() < 0.15, dacts.sort("alpha")


def test_teeth_ssm_under_mup_with_plain_adam_grows(results, monkeypatch):
    """μP's learning-rate scaling switched off on mamba2: the projectors' change must grow."""
    monkeypatch.setitem(optim._MUP, "adam", torch.optim.Adam)
    _, dacts = ssm_exponents(results(("mamba2", "mup-plain-adam"), lambda: exponents("mup", "mamba2", jobs=1)))
    assert dacts["alpha"].abs().median() >= 0.15, dacts.sort("alpha")
