"""Muon: torch's Muon takes the 2-D hidden matrices and only those, in every mode; under μP
its update obeys the spectral condition ‖ΔW‖₂ ∝ sqrt(fan_out/fan_in) with either of
torch's lr adjustments, and a coordinate check catches Muon without that width scaling."""

import re

import polars as pl
import pytest
import torch
from studies_for_tests import TINY

import muscale
from muscale import api
from muscale.config.spec import MODES
from muscale.errors import InputError
from muscale.models import losses, modes, optim
from muscale.models.data import PROBE_INDEX
from muscale.models.families import resolve

HIDDEN = re.compile(r"blocks\.\d\.(attn\.[qkvo]|mlp\.(gate|up|down))\.(weight|parametrizations\.weight\.original)$")


def built(mode, width=32, **kw):
    """Two blocks in every mode (the long horizon's default is one): 14 hidden matrices."""
    spec = muscale.plan(
        mode, "transformer", widths=(width, 2 * width), seeds=1, optimizer="muon", **{"options": {"layers": 2}} | kw
    )[0]
    model, mults = modes.build(spec, resolve("transformer"))
    return spec, model, optim.build(spec, model, mults)


def first_step(model, opt, spec):
    """The change of every 2-D parameter in one step from a fresh optimizer."""
    x, y = resolve("transformer").batch(PROBE_INDEX, spec.batch_size, spec.seq_len)
    losses.cross_entropy(model(x), y).backward()
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.ndim == 2}
    opt.step()
    return {n: p.detach() - before[n] for n, p in model.named_parameters() if p.ndim == 2}


@pytest.mark.parametrize("mode", MODES)
def test_muon_group_holds_the_hidden_matrices_and_only_those(mode):
    _, model, opt = built(mode)
    names = {id(p): n for n, p in model.named_parameters()}
    muon, adamw = opt.optimizers
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    in_muon = {names[id(p)] for g in muon.param_groups for p in g["params"]}
    in_adamw = {names[id(p)] for g in adamw.param_groups for p in g["params"]}
    assert in_muon == {n for n in names.values() if HIDDEN.search(n)} and len(in_muon) == 14
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}  # lrm-frozen-scales: the norm gains
    assert in_adamw == set(names.values()) - in_muon - frozen
    assert "embed.weight" in in_adamw and ("final_norm.weight" in in_adamw) == (not frozen)
    assert any(n.startswith("head.") for n in in_adamw)


@pytest.mark.parametrize(
    "mode,adjust,scale",
    [
        ("sp", "match_rms_adamw", 1.0),
        ("mup", "original", 1.0),  # torch's `original` already gives ‖ΔW‖₂ ∝ sqrt(fan_out/fan_in)
        ("mup", "match_rms_adamw", 0.5),  # 1/sqrt(width_mult) at width 4 × base 64
    ],
)
def test_muon_lr_per_mode_and_adjustment(mode, adjust, scale):
    spec, _, opt = built(mode, width=256, muon_adjust_lr=adjust, weight_decay=0.1)
    (group,) = opt.optimizers[0].param_groups
    assert group["adjust_lr_fn"] == adjust
    assert group["lr"] == pytest.approx(spec.lr * scale)
    assert group["lr"] * group["weight_decay"] == pytest.approx(spec.lr * 0.1)  # decay per step as at the base


def test_one_muon_step_moves_every_hidden_matrix_and_nothing_else_has_momentum():
    spec, model, opt = built("sp")
    changed = first_step(model, opt, spec)
    for name, delta in changed.items():
        assert delta.abs().max() > 0, name
    muon = opt.optimizers[0]
    assert all("momentum_buffer" in muon.state[p] for g in muon.param_groups for p in g["params"])


@pytest.mark.parametrize("adjust", ["original", "match_rms_adamw"])
def test_mup_muon_update_has_the_spectral_norm_of_the_base_model(adjust, monkeypatch):
    """‖ΔW‖₂ / sqrt(fan_out/fan_in) of the first step at width 128 equals width 32's (same
    lr); without the width scaling, match_rms_adamw's grows like sqrt(width)."""

    def ratios():
        per_width = []
        for width in (32, 128):
            spec, model, opt = built("mup", width=width, muon_adjust_lr=adjust)
            deltas = first_step(model, opt, spec)
            per_width.append(
                {
                    n: (torch.linalg.matrix_norm(d, ord=2) / (d.shape[0] / d.shape[1]) ** 0.5).item()
                    for n, d in deltas.items()
                    if HIDDEN.search(n)
                }
            )
        return [per_width[1][n] / per_width[0][n] for n in per_width[0]]

    assert all(abs(r - 1) < 0.15 for r in ratios())
    if adjust == "match_rms_adamw":
        monkeypatch.setattr(optim, "muon_width_scale", lambda p, adjust: 1.0)
        assert all(abs(r - 2) < 0.3 for r in ratios())


def hidden_exponents(mode, jobs=2):
    records = muscale.coord_check(
        mode,
        "transformer",
        widths=(64, 128, 256),
        steps=3,
        seeds=1,
        optimizer="muon",
        device="cpu",
        jobs=jobs,
        metrics=("act_rms", "dact_rms"),
    )
    ex = muscale.fit_exponents(records)
    return ex.filter(~pl.col("role").is_in(["embed", "head", "loss", "attn_qk", "optimizer"]))


def alphas(ex, metric):
    return ex.filter((pl.col("metric") == metric) & (pl.col("step") >= 1))["alpha"].abs()


@pytest.mark.science
def test_mup_muon_coordinate_check_is_flat():
    ex = hidden_exponents("mup")
    # Measured: act_rms max |α| 0.10 (already at init), dact_rms median 0.02, max 0.11.
    assert alphas(ex, "act_rms").max() < 0.15
    assert alphas(ex, "dact_rms").median() < 0.1


@pytest.mark.science
def test_teeth_mup_muon_without_width_scaling_grows(monkeypatch):
    """μP model, Muon's lr not scaled with width: match_rms_adamw's update RMS is fixed, so
    ‖ΔW‖₂ grows like sqrt(width) and so does the change of activations. In-process (jobs=1),
    since the patch does not reach worker processes."""
    monkeypatch.setattr(optim, "muon_width_scale", lambda p, adjust: 1.0)
    ex = hidden_exponents("mup", jobs=1)
    # Measured: act_rms max |α| 0.34 at step 3, dact_rms median 0.41.
    assert alphas(ex, "act_rms").max() > 0.25
    assert alphas(ex, "dact_rms").median() > 0.3


def test_study_adjusts_the_muon_runs_and_refuses_an_adjustment_without_them(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text(
        TINY.replace(
            'modes = ["sp", "mup"]',
            'modes = ["sp", "mup"]\noptimizers = ["adamw", "muon"]\nmuon_adjust_lr = "original"',
        )
    )
    specs = api.load(path).specs
    assert {(s.optimizer, s.muon_adjust_lr) for s in specs} == {("adamw", "match_rms_adamw"), ("muon", "original")}
    path.write_text(TINY.replace('modes = ["sp", "mup"]', 'modes = ["sp", "mup"]\nmuon_adjust_lr = "original"'))
    with pytest.raises(InputError, match=r"study.toml:\d+: muon_adjust_lr: "):
        api.load(path)
