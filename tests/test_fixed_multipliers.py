"""Falcon-H1-style fixed μP multipliers act exactly where they are placed, and the
zero-initialised query starts every attention logit at zero."""

import dataclasses

import pytest
import torch

from muscale.config.spec import RunSpec
from muscale.measure.probes import Probes
from muscale.models import modes
from muscale.models.families import resolve

SPEC = RunSpec(
    family="transformer",
    mode="mup",
    optimizer="adam",
    lr=1e-2,
    width=64,
    seed=0,
    steps=1,
    horizon="short",
    batch_size=2,
    seq_len=8,
    family_options=(("layers", "1"),),
)


def forward(spec: RunSpec) -> tuple[torch.Tensor, dict]:
    family = resolve(spec.family)
    model, _ = modes.build(spec, family)
    probes = Probes(model, ("act_rms",))
    x, y = family.batch(-1, spec.batch_size, spec.seq_len)
    with torch.no_grad(), probes.watch(0):
        logits = model(x)
    rows = probes.collect(0, loss=logits.sum())
    return logits, dict(zip(rows["module"], rows["value"]))


def test_head_multiplier_scales_the_logits_and_nothing_before_them():
    plain, plain_acts = forward(SPEC)
    halved, acts = forward(dataclasses.replace(SPEC, mup_multipliers=(("head", 0.5),)))
    torch.testing.assert_close(halved, 0.5 * plain)
    assert acts["blocks.0.attn.qk"] == pytest.approx(plain_acts["blocks.0.attn.qk"], rel=1e-6)


def test_key_multiplier_scales_the_attention_logits():
    _, plain = forward(SPEC)
    _, doubled = forward(dataclasses.replace(SPEC, mup_multipliers=(("key", 2.0),)))
    assert doubled["blocks.0.attn.qk"] == pytest.approx(2 * plain["blocks.0.attn.qk"], rel=1e-5)
    assert doubled["blocks.0.attn.q"] == pytest.approx(plain["blocks.0.attn.q"], rel=1e-6)


def test_embedding_multiplier_reaches_the_first_block():
    plain_logits, plain = forward(SPEC)
    logits, scaled = forward(dataclasses.replace(SPEC, mup_multipliers=(("embed", 3.0),)))
    # The embedding's own output is unchanged and RMSNorm removes the scale before the first
    # projections; the residual stream carries it, so the block outputs weigh less at the head.
    assert scaled["embed"] == pytest.approx(plain["embed"], rel=1e-6)
    assert scaled["blocks.0.attn.q"] == pytest.approx(plain["blocks.0.attn.q"], rel=1e-5)
    assert not torch.allclose(logits, plain_logits, rtol=1e-3, atol=0)


def test_zero_query_starts_every_logit_at_zero():
    _, acts = forward(dataclasses.replace(SPEC, family_options=(("layers", "1"), ("zero_query", "1"))))
    assert acts["blocks.0.attn.qk"] == 0.0
    assert acts["blocks.0.attn.k"] > 0
