"""Adam's ε: the eps_share probe reads Adam's own state correctly, and --adam-eps-scaling
gives every parameter with a width dim ε / width_mult, following its μP gradient scale."""

import pytest
from studies_for_tests import TINY

import muscale
from muscale import api
from muscale.errors import InputError
from muscale.measure.probes import Probes
from muscale.models import losses, modes, optim
from muscale.models.data import PROBE_INDEX
from muscale.models.families import resolve
from muscale.models.optim import ADAM_EPS


def test_eps_share_is_the_share_recomputed_from_adams_state():
    spec = muscale.plan("mup", "transformer", widths=(64, 128), seeds=1, optimizer="adamw")[0]
    model, mults = modes.build(spec, resolve("transformer"))
    opt = optim.build(spec, model, mults)
    probes = Probes(model, optimizer=opt)
    x, y = resolve("transformer").batch(PROBE_INDEX, spec.batch_size, spec.seq_len)
    for _ in range(2):
        opt.zero_grad()
        losses.cross_entropy(model(x), y).backward()
        opt.step()
    for group in opt.param_groups:
        group["eps"] = 3e-4  # an ε some entries fall below, so shares are neither 0 nor 1
    rows = probes.collect(2)
    recorded = {m: v for m, k, v in zip(rows["module"], rows["metric"], rows["value"]) if k == "eps_share"}
    modules = dict(model.named_modules())
    assert set(recorded) == {n for n, m in modules.items() if list(m.parameters(recurse=False))}
    for name, share in recorded.items():
        below = total = 0
        for p in modules[name].parameters(recurse=False):
            state = opt.state[p]
            v_hat = state["exp_avg_sq"] / (1 - 0.999 ** state["step"].item())
            below += (v_hat.sqrt() < 3e-4).sum().item()
            total += p.numel()
        assert share == pytest.approx(below / total, abs=1e-7), name
    assert sum(0 < v < 1 for v in recorded.values()) > len(recorded) / 2  # the comparison has teeth


@pytest.mark.parametrize("width", [128, 256])
@pytest.mark.parametrize("optimizer", ["adam", "muon"])
def test_eps_scaling_divides_eps_by_the_width_multiplier(width, optimizer):
    spec = muscale.plan(
        "mup+lrm", "transformer", widths=(width, 2 * width), seeds=1, optimizer=optimizer, adam_eps_scaling=True
    )[0]
    model, mults = modes.build(spec, resolve("transformer"))
    opt = optim.build(spec, model, mults)
    eps = {id(p): g["eps"] for g in opt.param_groups if "betas" in g for p in g["params"]}
    names = {id(p): n for n, p in model.named_parameters()}
    mult_ids = {id(p) for p in mults}
    scaled = ADAM_EPS * 64 / width  # base width 64: every width dim has grown by width / 64
    for i, e in eps.items():
        # Multipliers keep ε: their scale is theirs to learn.
        assert e == pytest.approx(ADAM_EPS if i in mult_ids else scaled, rel=1e-12), names[i]
    trained = {n for i, n in names.items() if i in eps}
    assert {"embed.weight", "final_norm.weight", "head.parametrizations.weight.original"} <= trained
    assert ("blocks.0.attn.q.parametrizations.weight.original" in trained) == (optimizer == "adam")


def test_without_eps_scaling_every_group_keeps_torchs_eps():
    spec = muscale.plan("mup", "transformer", widths=(256, 512), seeds=1, optimizer="adam")[0]
    model, mults = modes.build(spec, resolve("transformer"))
    assert {g["eps"] for g in optim.build(spec, model, mults).param_groups} == {ADAM_EPS}


def test_study_scales_eps_where_it_applies_and_refuses_it_where_it_never_does(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text(TINY.replace('modes = ["sp", "mup"]', 'modes = ["sp", "mup"]\nadam_eps_scaling = true'))
    assert {(s.mode, s.adam_eps_scaling) for s in api.load(path).specs} == {("sp", False), ("mup", True)}
    path.write_text(TINY.replace('modes = ["sp", "mup"]', 'modes = ["sp"]\nadam_eps_scaling = true'))
    with pytest.raises(InputError, match=r"study.toml:\d+: adam_eps_scaling: "):
        api.load(path)


def test_eps_share_is_recorded_by_a_run():
    records = muscale.coord_check("mup", "mlp", widths=(32, 64), steps=2, seeds=1, device="cpu")
    shares = records.filter(records["metric"] == "eps_share")
    assert set(shares["module"]) == {"input", "hidden.0", "head"} and set(shares["step"]) == {1, 2}
    assert shares["value"].is_between(0, 1).all()
