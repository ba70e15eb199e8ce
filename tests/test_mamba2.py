"""The Mamba2 and hybrid families: the chunked SSD scan is the recurrence it claims to be,
the dt probe records dt, and both families train in every mode."""

import pytest
import torch
import torch.nn.functional as F
from mup import set_base_shapes
from torch.nn.utils import parametrize

from muscale.errors import InputError
from muscale.measure.probes import Probes
from muscale.models import families, modes
from muscale.models.families import Hooks, hybrid, mamba2
from muscale.run import coordcheck

T = 21


def scan_inputs(batch=2, heads=3, head_dim=4, d_state=5):
    x = torch.randn(batch, T, heads, head_dim)
    dt = F.softplus(torch.randn(batch, T, heads))
    # Decays from mild to strong (dt·A down to about −30), where a careless segment sum loses precision.
    A = -torch.empty(heads).uniform_(0.1, 8.0)
    return x, dt, A, torch.randn(batch, T, d_state), torch.randn(batch, T, d_state)


@pytest.mark.parametrize("chunk", [1, 4, 7, 8, T, 32])  # 4 and 8 do not divide T; T and 32 are one chunk
def test_chunked_scan_is_the_recurrence(chunk):
    x, dt, A, B, C = scan_inputs()
    reference = mamba2.ssd_sequential(x, dt, A, B, C)
    assert reference.abs().max() > 0.1
    torch.testing.assert_close(mamba2.ssd_chunked(x, dt, A, B, C, chunk), reference, rtol=1e-4, atol=1e-5)


def scan_driven_mixer():
    """A mixer whose output is all scan: D = 0 removes the skip path, and dt ≈ 0.5 makes the
    state carry real weight (at Mamba2's init dt ≤ 0.1 the scan is small next to D·x)."""
    mixer = mamba2.Mixer(32, Hooks(), chunk=4)
    with torch.no_grad():
        mixer.D.zero_()
        mixer.dt_bias.fill_(0.0)
    return mixer


def test_mixer_equals_mixer_with_sequential_scan(monkeypatch):
    mixer, u = scan_driven_mixer(), torch.randn(2, 10, 32)
    chunked = mixer(u)
    monkeypatch.setattr(mamba2, "ssd_chunked", lambda x, dt, A, B, C, chunk: mamba2.ssd_sequential(x, dt, A, B, C))
    torch.testing.assert_close(chunked, mixer(u), rtol=1e-4, atol=1e-5)


def test_mixer_is_causal():
    mixer, u = scan_driven_mixer(), torch.randn(2, 10, 32)
    changed = u.clone()
    changed[:, 6:] += 1.0
    before, after = mixer(u), mixer(changed)
    torch.testing.assert_close(before[:, :6], after[:, :6])
    assert not torch.allclose(before[:, 6:], after[:, 6:])


def test_dt_probe_records_dt():
    model, tokens = mamba2.build(32, Hooks(), layers=1), torch.randint(0, 256, (2, 16))
    probes = Probes(model)
    with torch.no_grad(), probes.watch(0):
        model(tokens)
    rows = probes.collect(0)
    recorded = {
        m: v
        for mod, r, m, v in zip(rows["module"], rows["role"], rows["metric"], rows["value"])
        if mod == "blocks.0.ssm.dt" and r == "ssm_dt"
    }
    ssm = model.blocks[0].ssm
    with torch.no_grad():
        raw = ssm.dt_proj(model.blocks[0].norm(model.embed(tokens)))
        dt = F.softplus(raw + ssm.dt_bias)
    assert recorded["act_rms"] == pytest.approx(dt.square().mean().sqrt().item(), rel=1e-5)
    assert recorded["act_mean"] == pytest.approx(dt.mean().item(), rel=1e-5)


def test_dt_proj_is_the_dt_rows_of_one_in_proj():
    """in_proj and dt_proj are drawn one after the other: together, exactly the matrix Mamba2's
    single in_proj of the same seed would have, the dt rows last."""
    torch.manual_seed(0)
    ssm = mamba2.Mixer(32, Hooks())
    torch.manual_seed(0)
    whole = torch.nn.Linear(32, ssm.in_proj.out_features + ssm.n_heads, bias=False).weight
    assert torch.equal(torch.cat([ssm.in_proj.weight, ssm.dt_proj.weight]), whole)


def test_the_default_placement_multiplies_dt_alone():
    """lrm's row vector on dt_proj has one entry per SSM head and reaches dt only: scaling it
    changes dt and leaves in_proj's z, x, B, C outputs as they were."""
    model = modes.build(
        coordcheck.plan("lrm", "mamba2", widths=(32, 64), steps=1, seeds=1)[0], families.resolve("mamba2")
    )[0]
    ssm = model.blocks[0].ssm
    mult = ssm.dt_proj.parametrizations.weight[0]
    assert mult.row.shape == (ssm.n_heads,) and mult.col is None
    assert not parametrize.is_parametrized(ssm.in_proj, "weight")
    u = torch.randn(2, 5, 32)
    before = ssm.dt_proj(u)
    with torch.no_grad():
        mult.row.copy_(torch.tensor(2.0).log() if mult.log else torch.tensor(2.0))
    assert torch.allclose(ssm.dt_proj(u), 2 * before)


def test_gradients_reach_the_ssm_parameters():
    model, tokens = mamba2.build(32, Hooks()), torch.randint(0, 256, (2, 17))
    F.cross_entropy(model(tokens[:, :-1]).flatten(0, 1), tokens[:, 1:].flatten()).backward()
    ssm = model.blocks[0].ssm
    for name in ("A_log", "dt_bias", "D"):
        grad = getattr(ssm, name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_mup_sees_the_width_rules():
    """What the width rules promise μP: one width-scaled dim (vector-like, LR not scaled by
    MuAdam) for the per-head and conv parameters, two for the projections."""
    hooks = modes.hooks("mup", 64)
    with torch.device("meta"):
        base, delta = mamba2.build(64, hooks), mamba2.build(128, hooks)
    ssm = set_base_shapes(mamba2.build(256, hooks), base, delta=delta).blocks[0].ssm
    for p in (ssm.A_log, ssm.dt_bias, ssm.D, ssm.conv.weight, ssm.conv.bias, ssm.norm.weight):
        assert p.infshape.ninf() == 1
    for p in (ssm.in_proj.weight, ssm.dt_proj.weight, ssm.out_proj.weight):
        assert p.infshape.ninf() == 2 and p.infshape.width_mult() == 4


@pytest.mark.parametrize("mode", ["sp", "mup", "lrm"])
@pytest.mark.parametrize("family", ["mamba2", "hybrid"])
def test_family_runs_in_every_mode(family, mode):
    specs = coordcheck.plan(mode, family, widths=(32, 64), steps=2, seeds=1, batch_size=2, seq_len=16)
    records = coordcheck.execute(specs, device="cpu")
    roles = set(records["role"])
    assert {"ssm_in", "ssm_dt_proj", "ssm_out", "ssm_dt"} <= roles
    assert family != "hybrid" or "attn_qk" in roles
    assert set(records["width"]) == {32, 64}
    assert records["value"].is_finite().all()


def test_check_width_rejects_bad_widths():
    assert mamba2.check_width(64, {}) is None and hybrid.check_width(64, {}) is None
    assert "ssm_head_dim=16" in mamba2.check_width(36, {})  # d_inner 72
    assert "ssm_head_dim=16" in hybrid.check_width(36, {"heads": "2"})  # attention is fine, the SSM is not
    assert "rotary" in hybrid.check_width(36, {"ssm_head_dim": "8"})  # the SSM is fine, head_dim 9 is not
    with pytest.raises(InputError, match="ssm_head_dim"):
        coordcheck.plan("sp", "mamba2", widths=(32, 36))


@pytest.mark.parametrize("key", ["ssm_in", "ssm_out", "in_proj_z", "in_proj_x", "in_proj_B", "in_proj_C", "in_proj_dt"])
def test_mixer_applies_falcon_h1_multipliers(key):
    plain = scan_driven_mixer()
    scaled = mamba2.Mixer(32, Hooks(multipliers=((key, 0.5),)), chunk=4)
    scaled.load_state_dict(plain.state_dict())
    u = torch.randn(2, 10, 32)
    assert not torch.allclose(plain(u), scaled(u))
