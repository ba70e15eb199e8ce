"""Gradient clipping: the recorded factor is the one applied, and multipliers are left out
of the norm and of the scaling unless asked for."""

import polars as pl
import pytest
import torch
from studies_for_tests import TINY
from torch.nn.utils import parametrize

import muscale
from muscale import api
from muscale.errors import InputError
from muscale.models import losses, modes, optim
from muscale.models.data import PROBE_INDEX
from muscale.models.families import resolve


def one_backward(clip, clip_multipliers=False, shift=1.0):
    """A tiny lrm MLP after one backward pass, with its optimizer, before the step. `shift`
    moves scale from every row multiplier into its matrix (r/shift, shift·W: the same
    function), which makes the multipliers' gradients `shift` times larger."""
    spec = muscale.plan(
        "lrm",
        "mlp",
        widths=(16, 32),
        seeds=1,
        steps=1,
        clip=clip,
        clip_multipliers=clip_multipliers,
        multipliers={"head": "row"},
        mult_param="linear",
    )[0]
    model, mults = modes.build(spec, resolve("mlp"))
    with torch.no_grad():
        for m in model.modules():
            if parametrize.is_parametrized(m, "weight"):
                m.parametrizations.weight.original.mul_(shift)
                m.parametrizations.weight[0].row.div_(shift)
    opt = optim.build(spec, model, mults)
    x, y = resolve("mlp").batch(PROBE_INDEX, spec.batch_size, spec.seq_len)
    losses.cross_entropy(model(x), y).backward()
    return model, mults, opt


def norm(params):
    return torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])).item()


def test_clip_factor_is_the_manual_one_and_only_matrices_are_scaled():
    model, mults, opt = one_backward(clip=0.05)
    mult_ids = {id(p) for p in mults}
    matrices = [p for p in model.parameters() if id(p) not in mult_ids]
    before = {p: p.grad.clone() for p in model.parameters()}
    expected = min(1.0, 0.05 / (norm(matrices) + 1e-6))
    assert expected < 0.5  # the test clips for real
    opt.optimizers[0].step = lambda: None  # look at the clipped gradients, not a step
    opt.step()
    assert opt.clip_factor.item() == pytest.approx(expected, rel=1e-6)
    for p in matrices:
        torch.testing.assert_close(p.grad, before[p] * expected)
    for p in mults:
        assert torch.equal(p.grad, before[p])


def test_clip_multipliers_counts_and_scales_them():
    model, mults, opt = one_backward(clip=0.05, clip_multipliers=True, shift=30.0)
    params = list(model.parameters())
    before = {p: p.grad.clone() for p in params}
    expected = min(1.0, 0.05 / (norm(params) + 1e-6))
    opt.optimizers[0].step = lambda: None
    opt.step()
    assert opt.clip_factor.item() == pytest.approx(expected, rel=1e-6)
    for p in mults:
        torch.testing.assert_close(p.grad, before[p] * expected)
    # Large multiplier gradients: counting them clips the matrices much harder.
    _, _, without = one_backward(clip=0.05, shift=30.0)
    without.optimizers[0].step = lambda: None
    without.step()
    assert opt.clip_factor.item() < 0.5 * without.clip_factor.item()


def test_clip_factor_is_recorded_at_every_step_after_the_first():
    records = muscale.coord_check("lrm", "mlp", widths=(16, 32), steps=3, seeds=1, device="cpu", clip=0.05)
    rows = records.filter(pl.col("metric") == "clip_factor")
    assert set(rows["module"]) == {"optimizer"} and set(rows["role"]) == {"optimizer"}
    assert sorted(set(rows["step"])) == [1, 2, 3]
    assert ((rows["value"] > 0) & (rows["value"] <= 1)).all() and (rows["value"] < 1).any()
    unclipped = muscale.coord_check("lrm", "mlp", widths=(16, 32), steps=1, seeds=1, device="cpu")
    assert unclipped.filter(pl.col("metric") == "clip_factor").is_empty()


def test_study_sets_clipping_on_the_runs_it_applies_to(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text(TINY.replace('modes = ["sp", "mup"]', 'modes = ["sp", "lrm"]\nclip = 1.0\nclip_multipliers = true'))
    specs = api.load(path).specs
    assert {(s.mode, s.clip, s.clip_multipliers) for s in specs} == {("sp", 1.0, False), ("lrm", 1.0, True)}


@pytest.mark.parametrize(
    "extra,key", [("clip = 0.0", "clip"), ("clip = 1.0\nclip_multipliers = true", "clip_multipliers")]
)  # no lrm mode
def test_study_refuses_clipping_that_cannot_apply(tmp_path, extra, key):
    path = tmp_path / "study.toml"
    path.write_text(TINY.replace('modes = ["sp", "mup"]', f'modes = ["sp", "mup"]\n{extra}'))
    with pytest.raises(InputError, match=rf"study.toml:\d+: {key}: "):
        api.load(path)
