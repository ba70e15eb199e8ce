"""μP's promise (DESIGN.md fact 1) on the built-in families, with cases that must fail.

Short horizon, Adam, widths 64…1024, a small fixed batch (μP's promise is for width ≫
tokens per batch). Hidden = every layer but the input layer (embed), the readout and the
loss: SP's input layer change does not grow with width, so it says nothing here. Attention
logits have checks of their own (test_attention_ssm_science.py)."""

import polars as pl
import pytest
import torch

import muscale
from muscale.models import optim

pytestmark = pytest.mark.science

WIDTHS = (64, 128, 256, 512, 1024)
# What the tests assert on; recording the rest (spectral and update norms) would double their cost.
METRICS = ("act_rms", "act_l1", "dact_rms")
FAMILIES = ["mlp", "transformer"]


def exponents(mode, family, jobs=2, **kw):
    records = muscale.coord_check(mode, family, widths=WIDTHS, device="cpu", jobs=jobs, metrics=METRICS, **kw)
    return muscale.fit_exponents(records).filter(~pl.col("role").is_in(["embed", "head", "loss", "attn_qk"]))


def act_alphas(ex):
    return ex.filter(pl.col("metric").is_in(["act_rms", "act_l1"]))["alpha"]


def dact_alphas(ex, from_step=1):
    return ex.filter((pl.col("metric") == "dact_rms") & (pl.col("step") >= from_step))["alpha"]


def mup_holds(ex) -> bool:
    acts, dacts = act_alphas(ex).abs(), dact_alphas(ex).abs()
    return acts.max() < 0.15 and dacts.median() < 0.15 and dacts.max() < 0.35


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mode", ["mup", "mup+lrm"])
def test_mup_activations_and_changes_stay_flat(results, family, mode):
    ex = results((family, mode), lambda: exponents(mode, family))
    acts, dacts = act_alphas(ex), dact_alphas(ex)
    assert acts.abs().max() < 0.15, ex.filter(pl.col("metric").is_in(["act_rms", "act_l1"])).sort("alpha")
    assert dacts.abs().median() < 0.15
    assert dacts.abs().max() < 0.35
    assert "fail" not in set(ex.filter(pl.col("metric") == "dact_rms")["verdict"])


@pytest.mark.parametrize("family", FAMILIES)
def test_sp_activation_change_grows_with_width(results, family):
    ex = results((family, "sp"), lambda: exponents("sp", family))
    assert dact_alphas(ex, from_step=2).median() > 0.5


@pytest.mark.parametrize("family", FAMILIES)
def test_teeth_mup_model_with_plain_adam_fails(results, family, monkeypatch):
    """μP's per-layer learning-rate scaling switched off: the model is μP, the optimizer is
    not. In-process (jobs=1), since the patch does not reach worker processes."""
    monkeypatch.setitem(optim._MUP, "adam", torch.optim.Adam)
    ex = results((family, "mup-plain-adam"), lambda: exponents("mup", family, jobs=1))
    assert not mup_holds(ex)
    assert "fail" in set(ex["verdict"])


def test_teeth_width_dependent_gain_fails(results):
    ex = results("gain", lambda: exponents("mup", "families_for_tests:gain_mlp", batch="families_for_tests:mlp_batch"))
    assert not mup_holds(ex)
    hidden = ex.filter((pl.col("module") == "hidden.0") & (pl.col("metric") == "act_rms"))
    assert (hidden["alpha"] - 0.5).abs().max() < 0.1
