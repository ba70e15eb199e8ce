"""Probes measure what they say: spectral norms against an exact SVD, roles by name, and
no effect on the training step."""

import contextlib

import pytest
import torch

import muscale
from muscale.measure import matrices
from muscale.measure.matrices import EXACT_SPECTRAL_BELOW
from muscale.measure.probes import Probes
from muscale.models import losses, modes, optim, spectral
from muscale.models.data import PROBE_INDEX
from muscale.models.families import resolve
from muscale.models.roles import role_of


def trained_with_probes(mode, width, steps=5):
    """Train the mlp by hand, comparing every recorded spectral norm with the exact one."""
    spec = muscale.plan(mode, "mlp", widths=(width, 2 * width), seeds=1, steps=steps)[0]
    model, mults = modes.build(spec, resolve("mlp"))
    opt = optim.build(spec, model, mults)
    probes = Probes(model)
    x, y = resolve("mlp").batch(PROBE_INDEX, spec.batch_size, spec.seq_len)
    worst, prev = {"weight_spec": 0.0, "update_spec": 0.0}, {}
    for step in range(steps + 1):
        with probes.watch(step):
            loss = losses.cross_entropy(model(x), y)
        rows = probes.collect(step, loss=loss)
        for module, metric, value in zip(rows["module"], rows["metric"], rows["value"]):
            if metric in worst:
                w = dict(model.named_modules())[module].weight.detach()
                exact = torch.linalg.matrix_norm(w if metric == "weight_spec" else w - prev[module], ord=2).item()
                worst[metric] = max(worst[metric], abs(value - exact) / exact)
        prev = {n: m.weight.detach().clone() for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
        if step < steps:
            opt.zero_grad()
            loss.backward()
            probes.snapshot()
            opt.step()
    return worst


@pytest.mark.parametrize("width", [4 * EXACT_SPECTRAL_BELOW, 16 * EXACT_SPECTRAL_BELOW])
@pytest.mark.parametrize("mode", ["sp", "mup"])
def test_spectral_norms_match_an_exact_svd(mode, width):
    worst = trained_with_probes(mode, width)
    assert worst["weight_spec"] < 0.05, worst
    assert worst["update_spec"] < 0.05, worst


def known_spectrum(values: list[float], shape=(300, 200)) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    u = torch.linalg.qr(torch.randn(shape[0], len(values), generator=gen, dtype=torch.float64))[0]
    v = torch.linalg.qr(torch.randn(shape[1], len(values), generator=gen, dtype=torch.float64))[0]
    return u @ torch.diag(torch.tensor(values, dtype=torch.float64)) @ v.T


def test_lanczos_beats_the_power_iteration_at_equal_cost_where_the_gap_is_small():
    """σ₂/σ₁ = 0.98 and a bulk just below, as in a random matrix at init: from the same start,
    12 Lanczos rounds land near σ₁ = 1 (never above it), 12 power-iteration rounds do not."""
    w = known_spectrum([1.0, 0.98] + [0.95 - 0.005 * i for i in range(100)])
    start = torch.randn(w.shape[1], generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    lanczos, _ = spectral.top_singular(w, start, 12)
    power, _ = spectral.power_iteration(w, start, 12)
    assert 1.0 - 2e-3 < lanczos.item() <= 1.0 + 1e-12
    assert 1.0 - power.item() > 5 * (1.0 - lanczos.item())


def test_lanczos_survives_a_matrix_of_lower_rank_than_its_rounds():
    """An SGD update at batch 8 has rank ≤ 8: the Krylov space runs out, which must not
    turn into NaN, and σ₁ is then exact."""
    w = known_spectrum([3.0, 2.0, 1.0])
    sigma, v = spectral.top_singular(w, torch.ones(w.shape[1], dtype=torch.float64), 8)
    assert sigma.item() == pytest.approx(3.0, rel=1e-10)
    assert torch.isfinite(v).all() and torch.linalg.vector_norm(w @ v).item() == pytest.approx(3.0, rel=1e-8)


def test_probes_do_not_change_the_training_step():
    spec = muscale.plan("mup", "mlp", widths=(64, 128), seeds=1, steps=3)[0]
    final = []
    for probe in (True, False):
        model, mults = modes.build(spec, resolve("mlp"))
        opt = optim.build(spec, model, mults)
        probes = Probes(model, optimizer=opt)
        x, y = resolve("mlp").batch(PROBE_INDEX, spec.batch_size, spec.seq_len)
        for step in range(4):
            with probes.watch(step) if probe else contextlib.nullcontext():
                loss = losses.cross_entropy(model(x), y)
            if probe:
                probes.collect(step, loss=loss)
                probes.snapshot()
            opt.zero_grad()
            loss.backward()
            opt.step()
        final.append(loss.item())
    assert final[0] == final[1]


@pytest.mark.parametrize(
    "name,role",
    [
        ("embed", "embed"),
        ("blocks.0.attn.q", "attn_q"),
        ("blocks.3.attn.k", "attn_k"),
        ("blocks.0.attn.v", "attn_v"),
        ("blocks.0.attn.o", "attn_out"),
        ("blocks.1.mlp.gate", "mlp_gate"),
        ("blocks.1.mlp.up", "mlp_up"),
        ("blocks.1.mlp.down", "mlp_down"),
        ("head", "head"),
        ("blocks.0.attn_norm", "norm"),
        ("final_norm", "norm"),
        ("hidden.2", "hidden"),
        ("model.layers.0.self_attn.q_proj", "attn_q"),
        ("lm_head", "head"),
        ("transformer.h.0.mlp.c_proj", "mlp_down"),
        ("transformer.h.0.attn.c_proj", "attn_out"),
        ("transformer.h.0.attn.c_attn", "attn_qkv"),
        ("transformer.h.0.mlp.c_fc", "mlp_up"),
    ],
)
def test_roles_from_names(name, role):
    assert role_of(name, torch.nn.Linear(2, 2)) == role


def test_a_statistic_is_one_row_of_the_metric_table(monkeypatch):
    """A new statistic of layer outputs and of matrices, added as table rows alone, is
    recorded for every layer and every matrix with the value its function gives."""
    from muscale.measure import metrics

    monkeypatch.setitem(
        metrics.METRIC_TABLE, "act_absmax", metrics.Metric("activation", "output", lambda y: y.abs().max())
    )
    monkeypatch.setitem(
        metrics.METRIC_TABLE, "weight_absmax", metrics.Metric("matrix", "matrix", lambda w: w.abs().max())
    )
    spec = muscale.plan("sp", "mlp", widths=(16, 32), seeds=1, steps=1)[0]
    model, _ = modes.build(spec, resolve("mlp"))
    recorder = Probes(model, metrics=("act_absmax", "weight_absmax"))
    x, _ = resolve("mlp").batch(PROBE_INDEX, spec.batch_size, spec.seq_len)
    outputs = {}
    hooks = [
        m.register_forward_hook(lambda m, a, y, n=n: outputs.__setitem__(n, y.detach()))
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear)
    ]
    with recorder.watch(0):
        model(x)
    for h in hooks:
        h.remove()
    rows = recorder.collect(0)
    got = {(mod, metric): value for mod, metric, value in zip(rows["module"], rows["metric"], rows["value"])}
    linears = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    assert linears and {m for _, m in got} == {"act_absmax", "weight_absmax"}
    for name, module in linears.items():
        assert got[name, "act_absmax"] == pytest.approx(outputs[name].abs().max().item())
        assert got[name, "weight_absmax"] == pytest.approx(module.weight.abs().max().item())


@pytest.mark.parametrize(
    "metric,spectral",
    [
        ("weight_rms", False),  # a Frobenius norm: no singular value
        ("update_fro", False),  # the update, but not its σ₁
        ("weight_spec", True),
        ("update_spec", True),
    ],
)
def test_the_spectral_routine_runs_only_for_a_metric_that_needs_it(monkeypatch, metric, spectral):
    """Width 128: every hidden matrix is past EXACT_SPECTRAL_BELOW, so σ₁ would be Lanczos'."""
    calls = []
    routine = matrices.top_singular
    monkeypatch.setattr(matrices, "top_singular", lambda *args: calls.append(args) or routine(*args))
    spec = muscale.plan("mup", "mlp", widths=(2 * EXACT_SPECTRAL_BELOW, 4 * EXACT_SPECTRAL_BELOW), seeds=1)[0]
    model, mults = modes.build(spec, resolve("mlp"))
    opt = optim.build(spec, model, mults)
    probes = Probes(model, (metric,), opt)
    x, y = resolve("mlp").batch(PROBE_INDEX, spec.batch_size, spec.seq_len)
    recorded = []
    for step in range(3):
        with probes.watch(step):
            loss = losses.cross_entropy(model(x), y)
        recorded += probes.collect(step, loss=loss)["metric"]
        opt.zero_grad()
        loss.backward()
        probes.snapshot()
        opt.step()
    assert metric in recorded
    assert bool(calls) == spectral, len(calls)
