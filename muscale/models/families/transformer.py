"""Decoder-only LM: token embedding, pre-RMSNorm blocks, causal attention with optional
grouped KV heads and rotary positions, SwiGLU MLP, untied head."""

import dataclasses
import functools

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import InputError
from .. import data
from ..points import QKLogits

WIDTH_RULES = (
    "d = d_model; heads fixed, head_dim = d / heads; kv_heads fixed (GQA); "
    "SwiGLU hidden = mlp_ratio · d; vocab and sequence length fixed"
)


def check_width(width: int, options: dict) -> str | None:
    heads, kv = int(options.get("heads", 4)), int(options.get("kv_heads", options.get("heads", 4)))
    if width % heads:
        return f"width {width} is not divisible by heads={heads}"
    if heads % kv:
        return f"heads={heads} is not divisible by kv_heads={kv}"
    if (width // heads) % 2:
        return f"head_dim {width // heads} must be even for rotary embeddings"
    return None


@functools.cache
def _rotation(t: int, dim: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotary angles, once per shape: every forward of every layer needs
    the same tables, and rebuilding them was a tenth of a small model's step."""
    inv_freq = 10000.0 ** (-torch.arange(0, dim, 2, device=device, dtype=dtype) / dim)
    angles = torch.arange(t, device=device, dtype=dtype)[:, None] * inv_freq
    return angles.cos(), angles.sin()


def rotary(x: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding on (B, H, T, head_dim)."""
    cos, sin = _rotation(x.shape[-2], x.shape[-1], x.device, x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), -1).flatten(-2)


class Attention(nn.Module):
    """`zero_query` starts the query projection at zero, as `mup` recommends: under μP's
    1/head_dim scale the logits at init would otherwise shrink like d^(-1/2) with width."""

    def __init__(self, width: int, heads: int, kv_heads: int, hooks, zero_query: bool = False):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, width // heads
        self.q = nn.Linear(width, width, bias=False)
        self.k = nn.Linear(width, kv_heads * self.head_dim, bias=False)
        self.v = nn.Linear(width, kv_heads * self.head_dim, bias=False)
        self.o = nn.Linear(width, width, bias=False)
        if zero_query:
            nn.init.zeros_(self.q.weight)
        self.scale = hooks.attn_scale(self.head_dim, width)
        self.qk = QKLogits(self.scale)
        self.in_mult, self.key_mult, self.out_mult = hooks.fixed("attn_in"), hooks.fixed("key"), hooks.fixed("attn_out")

    def forward(self, x):
        b, t, _ = x.shape
        x = self.in_mult(x)
        q = rotary(self.q(x).view(b, t, self.heads, self.head_dim).transpose(1, 2))
        k = rotary(self.key_mult(self.k(x)).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2))
        v = self.v(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        self.qk(q, k)
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, scale=self.scale, enable_gqa=self.kv_heads != self.heads
        )
        return self.out_mult(self.o(y.transpose(1, 2).reshape(b, t, -1)))


class SwiGLU(nn.Module):
    def __init__(self, width: int, hidden: int, hooks):
        super().__init__()
        self.gate = nn.Linear(width, hidden, bias=False)
        self.up = nn.Linear(width, hidden, bias=False)
        self.down = nn.Linear(hidden, width, bias=False)
        self.gate_mult, self.down_mult = hooks.fixed("mlp_gate"), hooks.fixed("mlp_down")

    def forward(self, x):
        return self.down_mult(self.down(F.silu(self.gate(self.gate_mult(x))) * self.up(x)))


class Block(nn.Module):
    def __init__(self, width, heads, kv_heads, mlp_ratio, hooks, zero_query):
        super().__init__()
        self.attn_norm = nn.RMSNorm(width)
        self.attn = Attention(width, heads, kv_heads, hooks, zero_query)
        self.mlp_norm = nn.RMSNorm(width)
        self.mlp = SwiGLU(width, int(mlp_ratio * width), hooks)

    def forward(self, x):
        x = x + self.attn(self.attn_norm(x))
        return x + self.mlp(self.mlp_norm(x))


class Transformer(nn.Module):
    def __init__(
        self, width, hooks, layers=2, heads=4, kv_heads=None, mlp_ratio=4.0, vocab=data.VOCAB, zero_query=False
    ):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.embed_mult = hooks.fixed("embed")
        self.blocks = nn.ModuleList(
            Block(width, heads, kv_heads or heads, mlp_ratio, hooks, zero_query) for _ in range(layers)
        )
        self.final_norm = nn.RMSNorm(width)
        self.head = hooks.readout(width, vocab)
        self.head_mult = hooks.fixed("head")

    def forward(self, tokens):
        x = self.embed_mult(self.embed(tokens))
        for block in self.blocks:
            x = block(x)
        return self.head_mult(self.head(self.final_norm(x)))


# The attention scales a family's `attn_scale` option may ask for in place of the mode's own
# (μP's 1/head_dim, else SP's 1/sqrt(head_dim)). `mup` is the learnable-multiplier paper's
# set-up: with 1/head_dim the QK multiplier product's own target is d⁻², where under
# 1/sqrt(head_dim) it is minus the raw logits' exponent (DESIGN.md, fact 5).
ATTN_SCALES = {"sp": lambda head_dim, width: head_dim**-0.5, "mup": lambda head_dim, width: 1.0 / head_dim}


def with_attn_scale(hooks, attn_scale: str | None):
    """`hooks` with the attention scale `attn_scale` names; None keeps the mode's."""
    if attn_scale is None:
        return hooks
    if attn_scale not in ATTN_SCALES:
        raise InputError(
            "--option",
            f"attn_scale={attn_scale!r} is not a choice",
            f"use attn_scale={' or attn_scale='.join(ATTN_SCALES)}",
        )
    return dataclasses.replace(hooks, attn_scale=ATTN_SCALES[attn_scale])


def flag(value) -> bool:
    """An on/off family option, from the command line's text or a study's TOML."""
    return str(value).lower() in ("1", "true", "yes", "on")


def build(
    width: int,
    hooks,
    layers=2,
    heads=4,
    kv_heads=None,
    mlp_ratio=4.0,
    vocab=data.VOCAB,
    zero_query=False,
    attn_scale=None,
) -> Transformer:
    return Transformer(
        width,
        with_attn_scale(hooks, attn_scale),
        int(layers),
        int(heads),
        int(kv_heads) if kv_heads else None,
        float(mlp_ratio),
        vocab,
        flag(zero_query),
    )
