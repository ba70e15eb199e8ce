"""Probes measure what they say: spectral norms against an exact SVD, roles by name, and
no effect on the training step."""

import contextlib

import pytest
import torch

import muscale
from muscale import modes, optim, train
from muscale.data import PROBE_INDEX
from muscale.families import resolve
from muscale.probes import EXACT_SPECTRAL_BELOW, Probes
from muscale.roles import role_of


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
            loss = train._loss(model(x), y)
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


def test_probes_do_not_change_the_training_step():
    spec = muscale.plan("mup", "mlp", widths=(64, 128), seeds=1, steps=3)[0]
    losses = []
    for probe in (True, False):
        model, mults = modes.build(spec, resolve("mlp"))
        opt = optim.build(spec, model, mults)
        probes = Probes(model, optimizer=opt)
        x, y = resolve("mlp").batch(PROBE_INDEX, spec.batch_size, spec.seq_len)
        for step in range(4):
            with probes.watch(step) if probe else contextlib.nullcontext():
                loss = train._loss(model(x), y)
            if probe:
                probes.collect(step, loss=loss)
                probes.snapshot()
            opt.zero_grad()
            loss.backward()
            opt.step()
        losses.append(loss.item())
    assert losses[0] == losses[1]


@pytest.mark.parametrize("name,role", [
    ("embed", "embed"), ("blocks.0.attn.q", "attn_q"), ("blocks.3.attn.k", "attn_k"), ("blocks.0.attn.v", "attn_v"),
    ("blocks.0.attn.o", "attn_out"), ("blocks.1.mlp.gate", "mlp_gate"), ("blocks.1.mlp.up", "mlp_up"),
    ("blocks.1.mlp.down", "mlp_down"), ("head", "head"), ("blocks.0.attn_norm", "norm"), ("final_norm", "norm"),
    ("hidden.2", "hidden"), ("model.layers.0.self_attn.q_proj", "attn_q"), ("lm_head", "head"),
    ("transformer.h.0.mlp.c_proj", "mlp_down"), ("transformer.h.0.attn.c_proj", "attn_out"),
])
def test_roles_from_names(name, role):
    assert role_of(name, torch.nn.Linear(2, 2)) == role
