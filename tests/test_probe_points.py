"""The attention-logit probe point records exactly the logits the attention uses, recomputed
here by hand from the layer's weights, grouped KV heads included; and it changes nothing."""

import pytest
import torch

from muscale.measure.probes import Probes
from muscale.models.families import Hooks, resolve
from muscale.models.families.transformer import rotary


@pytest.mark.parametrize("kv_heads", ["4", "2"])
def test_qk_probe_equals_a_manual_recomputation(kv_heads):
    family = resolve("transformer")
    torch.manual_seed(0)
    model = family.make(64, Hooks(), {"layers": "1", "kv_heads": kv_heads})
    x, _ = family.batch(-1, 2, 8)
    probes = Probes(model, ("act_rms", "act_max", "attn_entropy"))
    with torch.no_grad(), probes.watch(0):
        out = model(x)
    rows = probes.collect(0, loss=out.sum())
    got = {m: v for mod, m, v in zip(rows["module"], rows["metric"], rows["value"]) if mod == "blocks.0.attn.qk"}

    attn = model.blocks[0].attn
    with torch.no_grad():
        h = model.blocks[0].attn_norm(model.embed(x))
        q = rotary(attn.q(h).view(2, 8, 4, 16).transpose(1, 2))
        k = rotary(attn.k(h).view(2, 8, int(kv_heads), 16).transpose(1, 2)).repeat_interleave(4 // int(kv_heads), 1)
        logits = q @ k.transpose(-1, -2) * attn.scale
        causal = torch.ones(8, 8, dtype=torch.bool).tril()
        kept = logits[..., causal]
        p = torch.softmax(logits.masked_fill(~causal, float("-inf")), -1)
        entropy = -(p * p.clamp_min(1e-30).log()).sum(-1).mean()
    assert got["act_rms"] == pytest.approx(kept.square().mean().sqrt().item(), rel=1e-5)
    assert got["act_max"] == pytest.approx(kept.abs().max().item(), rel=1e-5)
    assert got["attn_entropy"] == pytest.approx(entropy.item(), rel=1e-5)


def test_a_watched_forward_computes_what_an_unwatched_one_does():
    family = resolve("hybrid")
    torch.manual_seed(0)
    model = family.make(32, Hooks(), {"layers": "1"})
    x, _ = family.batch(-1, 2, 8)
    with torch.no_grad():
        plain = model(x)
        with Probes(model).watch(0):
            watched = model(x)
    assert torch.equal(plain, watched)


def test_a_mixer_block_is_probed_through_its_layers_not_twice():
    model = resolve("mamba2").make(32, Hooks(), {"layers": "1"})
    names = {name for name, _, _ in Probes(model).layers}
    assert {"blocks.0.ssm.in_proj", "blocks.0.ssm.out_proj", "blocks.0.ssm.dt", "blocks.0.ssm.norm"} <= names
    assert "blocks.0.ssm" not in names  # its output is out_proj's
