"""Hybrid LM in the style of Falcon-H1: in every block an attention mixer and a Mamba2
mixer read the same normed input in parallel and their outputs are summed into the
residual; then a pre-norm SwiGLU MLP. Width rules are the union of both families'."""

from .. import data
from . import mamba2, transformer

WIDTH_RULES = f"{transformer.WIDTH_RULES}; SSM: {mamba2.SSM_RULES}"


def check_width(width: int, options: dict) -> str | None:
    return transformer.check_width(width, options) or mamba2.check_width(width, options)


class HybridLM(transformer.Transformer):
    """The transformer's frame (embedding, final norm, readout and their multipliers) around
    blocks of attention ∥ Mamba2."""

    def __init__(
        self,
        width,
        hooks,
        layers=2,
        heads=4,
        kv_heads=None,
        mlp_ratio=4.0,
        expand=2,
        ssm_head_dim=16,
        d_state=16,
        chunk=8,
        vocab=data.VOCAB,
        zero_query=False,
    ):
        super().__init__(width, hooks, layers=0, vocab=vocab)
        self.blocks.extend(
            mamba2.Block(
                width,
                mlp_ratio,
                hooks,
                attn=transformer.Attention(width, heads, kv_heads or heads, hooks, zero_query),
                ssm=mamba2.Mixer(width, hooks, expand, ssm_head_dim, d_state, chunk),
            )
            for _ in range(layers)
        )


def build(
    width: int,
    hooks,
    layers=2,
    heads=4,
    kv_heads=None,
    mlp_ratio=4.0,
    expand=2,
    ssm_head_dim=16,
    d_state=16,
    chunk=8,
    vocab=data.VOCAB,
    zero_query=False,
    attn_scale=None,
) -> HybridLM:
    return HybridLM(
        width,
        transformer.with_attn_scale(hooks, attn_scale),
        int(layers),
        int(heads),
        int(kv_heads) if kv_heads else None,
        float(mlp_ratio),
        int(expand),
        int(ssm_head_dim),
        int(d_state),
        int(chunk),
        vocab,
        transformer.flag(zero_query),
    )
