"""User families for tests, imported as `families_for_tests:NAME` (tests/ is on sys.path)."""

import torch
from mup import MuReadout
from torch import nn


class GainMLP(nn.Module):
    """A μP-style MLP whose hidden output carries a width-dependent gain: a broken model
    that a coordinate check must catch."""

    def __init__(self, width: int, gain: float):
        super().__init__()
        self.input = nn.Linear(32, width, bias=False)
        self.hidden = nn.ModuleList([nn.Linear(width, width, bias=False)])
        self.head = MuReadout(width, 10, bias=False)
        self.gain = gain

    def forward(self, x):
        x = torch.relu(self.input(x))
        x = torch.relu(self.hidden[0](x * self.gain))
        return self.head(x)


def gain_mlp(width: int) -> nn.Module:
    return GainMLP(width, (width / 64) ** 0.5)


def not_a_module(width: int):
    return [width]


def mlp_batch():
    from muscale import data
    return data.mlp_batch(data.PROBE_INDEX, 8)


class CrashesWhenWide(nn.Module):
    """A tiny token LM whose forward raises from width 32 on: a run that crashes."""

    def __init__(self, width: int):
        super().__init__()
        self.width = width
        self.embed = nn.Embedding(256, width)
        self.head = MuReadout(width, 256, bias=False)

    def forward(self, tokens):
        if self.width >= 32:
            raise RuntimeError(f"width {self.width} is too wide for this test model")
        return self.head(self.embed(tokens))


def crashes_when_wide(width: int) -> nn.Module:
    return CrashesWhenWide(width)


class HeadLM(nn.Module):
    """The simplest layer whose scale the loss sees (DESIGN.md, fact 5): a byte LM that is an
    embedding, a gainless RMSNorm and a head. The norm leaves the head nothing to trade its
    scale with, so a head multiplier is identifiable."""

    def __init__(self, width: int, vocab: int = 256):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.norm = nn.RMSNorm(width, elementwise_affine=False)
        self.head = nn.Linear(width, vocab, bias=False)

    def forward(self, tokens):
        return self.head(self.norm(self.embed(tokens)))


def head_lm(width: int) -> nn.Module:
    return HeadLM(width)
