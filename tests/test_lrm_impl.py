"""Two implementations of learnable multipliers that train alike, and merging them away:
`fused` (forward and backward on W̄, factor gradients in closed form) against `autograd`
(the product in the forward pass), and `lrm.merge` / `muscale merge` for inference."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from clirun import run_cli
from studies_for_tests import TINY

import muscale
from muscale import api
from muscale.config.spec import merged_mode
from muscale.errors import InputError
from muscale.models import lrm, modes, optim
from muscale.models.families import resolve
from muscale.run import checkpoint

STEPS = 5
# Every kind of multiplier on every matrix, the default mix and the paper's (lrm.PAPER_PLACEMENT).
EVERYWHERE = {kind: ("lrm", {role: kind for role in lrm.PLACEABLE_ROLES}) for kind in ("row", "col", "both")}
PLACEMENTS = EVERYWHERE | {"scalar": ("lrm-scalar", {}), "default": ("lrm", {}), "paper": ("lrm", lrm.PAPER_PLACEMENT)}


pytestmark = pytest.mark.usefixtures("one_thread")


def build(mode, impl, **kw):
    spec = muscale.plan(
        mode, "transformer", widths=(32, 64), seeds=1, lrm_impl=impl, **dict(optimizer="adam", lr=1e-2) | kw
    )[0]
    family = resolve("transformer")
    model, mults = modes.build(spec, family)
    return spec, family, model, mults


def factors(model):
    """W and every multiplier, by name, in the layout both impls share."""
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def train(mode, impl, dtype=torch.float32, steps=STEPS, **kw):
    spec, family, model, mults = build(mode, impl, **kw)
    model.to(dtype)
    opt = optim.build(spec, model, mults)
    losses = []
    for step in range(steps):
        x, y = family.batch(step, 4, 16)
        loss = F.cross_entropy(model(x).reshape(-1, 256).float(), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, factors(model)


def max_rel(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(((a[k] - b[k]).norm() / b[k].norm().clamp_min(1e-30)).item() for k in a)


@pytest.mark.parametrize("mode", ["lrm", "lrm-scalar", "mup+lrm"])
def test_fused_and_autograd_train_alike(mode):
    auto_losses, auto = train(mode, "autograd")
    fused_losses, fused = train(mode, "fused")
    assert torch.allclose(torch.tensor(fused_losses), torch.tensor(auto_losses), rtol=1e-5, atol=0)
    assert any("parametrizations.weight.0" in k for k in auto)
    assert max_rel(fused, auto) < 1e-5


def test_fused_and_autograd_record_alike():
    """The probes read W, the multipliers and Adam's state alike through either impl."""
    run = dict(widths=(16, 32), steps=3, seeds=1, device="cpu", mult_lr=0.05)
    auto = muscale.coord_check("lrm", "transformer", lrm_impl="autograd", **run)
    fused = muscale.coord_check("lrm", "transformer", lrm_impl="fused", **run)
    assert auto.height == fused.height and set(auto["metric"]) >= {"mult_row_rms", "update_spec", "eps_share"}
    assert torch.allclose(
        torch.tensor(fused["value"].to_list()), torch.tensor(auto["value"].to_list()), rtol=1e-4, atol=1e-6
    )  # mult_drift, a difference of float32 logs, is exact to ~1e-7 only


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("clip_multipliers", [False, True], ids=["clip-matrices", "clip-all"])
def test_fused_and_autograd_train_alike_in_float64_with_adamw_and_clipping(placement, clip_multipliers):
    mode, where = PLACEMENTS[placement]
    run = dict(
        steps=20,
        optimizer="adamw",
        weight_decay=0.1,
        mult_weight_decay=0.01,
        clip=0.5,
        clip_multipliers=clip_multipliers,
        multipliers=where,
    )
    _, auto = train(mode, "autograd", torch.float64, **run)
    _, fused = train(mode, "fused", torch.float64, **run)
    assert max_rel(fused, auto) < 1e-10


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_log_multipliers_fused_and_autograd_train_alike_in_float64(placement):
    """s = e^θ: the fused hook's ∂L/∂θ = s·∂L/∂s against autograd through exp."""
    mode, where = PLACEMENTS[placement]
    run = dict(
        steps=20,
        optimizer="adamw",
        weight_decay=0.1,
        mult_weight_decay=0.01,
        clip=0.5,
        multipliers=where,
        mult_param="log",
        mult_lr=0.05,
    )
    _, auto = train(mode, "autograd", torch.float64, **run)
    _, fused = train(mode, "fused", torch.float64, **run)
    assert any((v.abs() > 1e-3).any() for k, v in auto.items() if "parametrizations.weight.0" in k)  # θ moved
    assert max_rel(fused, auto) < 1e-10


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_fused_and_autograd_train_alike_in_float32_with_adamw_and_clipping(placement):
    mode, where = PLACEMENTS[placement]
    run = dict(steps=20, optimizer="adamw", weight_decay=0.1, clip=0.5, multipliers=where)
    _, auto = train(mode, "autograd", **run)
    _, fused = train(mode, "fused", **run)
    assert max_rel(fused, auto) < 1e-5


@pytest.mark.parametrize(
    "run",
    [
        dict(optimizer="muon"),
        dict(optimizer="sgd", lr=0.1),
        dict(optimizer="adamw", weight_decay=0.1, weight_decay_kind="spectral"),
    ],
    ids=["muon", "sgd", "spectral-decay"],
)
def test_fused_sees_every_optimizers_in_place_update(run):
    """W̄ is refreshed from version counters, which every optimizer's in-place step moves."""
    _, auto = train("lrm", "autograd", torch.float64, **run)
    _, fused = train("lrm", "fused", torch.float64, **run)
    assert max_rel(fused, auto) < 1e-10


def spread(mults, param, low=0.5, high=1.5):
    """Multipliers set to values between low and high (stored as their logs when `log`), so a
    missing factor shows."""
    with torch.no_grad():
        for i, p in enumerate(mults):
            values = torch.linspace(low, high, p.numel()).reshape(p.shape).roll(i)
            p.copy_(values.log() if param == "log" else values)


@pytest.mark.parametrize("param", ["linear", "log"])
@pytest.mark.parametrize("placement", PLACEMENTS)
def test_fused_factor_gradients_equal_autograds(placement, param):
    mode, where = PLACEMENTS[placement]
    grads = {}
    for impl in ("autograd", "fused"):
        _, family, model, _ = build(mode, impl, multipliers=where, mult_param=param)
        spread(lrm.multipliers(model), param)
        x, y = family.batch(0, 4, 16)
        F.cross_entropy(model(x).reshape(-1, 256), y.reshape(-1)).backward()
        grads[impl] = {k: p.grad for k, p in model.named_parameters()}
    assert all(g is not None for g in grads["fused"].values())
    for k, g in grads["autograd"].items():
        assert torch.allclose(grads["fused"][k], g, rtol=1e-5, atol=1e-7), k


def test_teeth_a_wrong_fused_gradient_breaks_the_equality(monkeypatch):
    def drop_col(self, grad, weight):
        """The matrix's gradient without the column factor c_j."""
        grads = right(self, grad, weight)
        if self.col is not None:
            grads[0].div_(self.col[None, :])
        return grads

    right = lrm.FusedVectorMultiplier.factor_grads

    # The paper's placement has column vectors to drop; linear, so `col` holds c itself.
    run = dict(mult_lr=0.05, multipliers=lrm.PAPER_PLACEMENT, mult_param="linear")
    _, auto = train("lrm", "autograd", **run)
    monkeypatch.setattr(lrm.FusedVectorMultiplier, "factor_grads", drop_col)
    _, wrong = train("lrm", "fused", **run)
    assert max_rel(wrong, auto) > 1e-3


@pytest.mark.parametrize("param", ["linear", "log"])
@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("impl", ["autograd", "fused"])
def test_merge_keeps_the_outputs_and_drops_the_multipliers(placement, impl, param):
    mode, where = PLACEMENTS[placement]
    spec, family, model, mults = build(mode, impl, multipliers=where, mult_param=param)
    spread(mults, param, 0.5, 2.0)
    merged = lrm.merge(model)
    x, _ = family.batch(0, 4, 16)
    assert torch.allclose(merged(x), model(x), rtol=1e-5, atol=1e-6)
    assert not lrm.multipliers(merged) and not any("parametrizations" in k for k in merged.state_dict())
    plain, _ = modes.build(dataclasses.replace(spec, mode=merged_mode(spec.mode)), family)
    plain.load_state_dict(merged.state_dict())
    assert torch.allclose(plain(x), model(x), rtol=1e-5, atol=1e-6)
    assert lrm.multipliers(model)  # the original keeps its multipliers


def test_save_models_then_merge_round_trip(monkeypatch, capsys, tmp_path):
    out = tmp_path / "out"
    code, _, stderr = run_cli(
        monkeypatch,
        capsys,
        "coord-check",
        "--mode",
        "lrm",
        "--lrm-impl",
        "fused",
        "--widths",
        "16,32",
        "--steps",
        "2",
        "--seeds",
        "1",
        "--device",
        "cpu",
        "--jobs",
        "1",
        "--save-models",
        "--metric",
        "act_rms",
        "--out",
        str(out),
    )
    assert code == 0, stderr
    saved = sorted((out / "models").glob("*.pt"))
    assert len(saved) == 2 and not list((out / "models").glob(".*"))
    code, stdout, stderr = run_cli(monkeypatch, capsys, "merge", str(saved[0]), "-o", str(tmp_path / "merged.pt"))
    assert code == 0, stderr
    spec, model, merged = checkpoint.load(saved[0])
    assert not merged and spec.lrm_impl == "fused" and lrm.multipliers(model)
    assert any((p - 1).abs().max() > 0 for p in lrm.multipliers(model))  # trained, not fresh
    _, plain, merged = checkpoint.load(tmp_path / "merged.pt")
    assert merged and not lrm.multipliers(plain)
    x, _ = resolve("transformer").batch(0, 2, 8)
    assert torch.allclose(plain(x), model(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", ["missing", "not_torch", "not_muscale", "no_multipliers", "merged", "output_dir"])
def test_merge_bad_input_is_one_line_exit_2_and_writes_nothing(monkeypatch, capsys, tmp_path, case):
    source, output = tmp_path / "model.pt", tmp_path / "merged.pt"
    if case == "not_torch":
        source.write_text("not a checkpoint")
    elif case == "not_muscale":
        torch.save({"weights": torch.zeros(2)}, source)
    elif case in ("no_multipliers", "merged", "output_dir"):
        spec, _, model, _ = build("lrm", "autograd")
        if case == "no_multipliers":
            spec = dataclasses.replace(spec, mode="sp", lrm_impl="autograd")
            model, _ = modes.build(spec, resolve("transformer"))
        checkpoint.save(source, spec, lrm.merge(model) if case == "merged" else model, merged=case == "merged")
        if case == "output_dir":
            output.mkdir()
    code, _, stderr = run_cli(monkeypatch, capsys, "merge", str(source), "-o", str(output))
    assert code == 2, stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert ("--output" if case == "output_dir" else "CHECKPOINT") in stderr
    assert case == "output_dir" or not output.exists()


def test_study_sets_the_impl_on_lrm_runs_and_refuses_it_where_none_has_multipliers(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text(TINY.replace('modes = ["sp", "mup"]', 'modes = ["sp", "lrm"]\nlrm_impl = "fused"'))
    assert {(s.mode, s.lrm_impl) for s in api.load(path).specs} == {("sp", "autograd"), ("lrm", "fused")}
    path.write_text(TINY.replace('modes = ["sp", "mup"]', 'modes = ["sp"]\nlrm_impl = "fused"'))
    with pytest.raises(InputError, match=r"study.toml:\d+: lrm_impl: "):
        api.load(path)
