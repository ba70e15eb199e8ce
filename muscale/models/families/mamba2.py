"""Mamba2 LM: the transformer's token embedding, final norm and untied head around pre-RMSNorm
blocks of a Mamba2 mixer (SSD scan in plain torch) and a SwiGLU MLP.

Width rules, chosen so that every dimension either grows in proportion to d or stays
fixed, which is what μP (and mup's base/delta shapes) needs to tell matrices from vectors:
d = d_model; d_inner = expand · d; the SSM head_dim is fixed, so the number of SSM heads
d_inner / ssm_head_dim grows with d; d_state fixed with one B/C group shared by all heads;
conv kernel fixed. A_log, dt_bias, D (one per head) and the depthwise conv weights have
a single width-scaled dim, so mup treats them as vector-like and gives them
width-independent learning rates; in_proj, dt_proj and out_proj are hidden matrices.

Mamba2's one input projection is two layers here: in_proj (z, x, B, C) and dt_proj (dt, one
row per head), drawn from the generator in that order, so the matrices are those of a single
in_proj. A multiplier placed on dt_proj then scales the SSM's clock alone; one on in_proj's dt
rows could not be placed without scaling x, B and C too, whose scale the depthwise conv's
per-channel weights can trade away exactly."""

import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import data
from ..points import SSMTimeStep
from .transformer import SwiGLU, Transformer

SSM_RULES = (
    "d_inner = expand · d; ssm_head_dim fixed, SSM heads = d_inner / ssm_head_dim; d_state fixed, "
    "one B/C group; conv kernel fixed; A_log, dt_bias, D and conv weights vector-like "
    "(width-independent LR under mup), in_proj, dt_proj and out_proj hidden matrices"
)
WIDTH_RULES = f"d = d_model; {SSM_RULES}; SwiGLU hidden = mlp_ratio · d; vocab and sequence length fixed"
CONV_KERNEL = 4


def check_width(width: int, options: dict) -> str | None:
    expand, head_dim = int(options.get("expand", 2)), int(options.get("ssm_head_dim", 16))
    if (expand * width) % head_dim:
        return f"d_inner = expand·width = {expand * width} is not divisible by ssm_head_dim={head_dim}"
    if int(options.get("chunk", 8)) < 1:
        return f"chunk={options['chunk']} must be ≥ 1"
    return None


def ssd_sequential(x, dt, A, B, C):
    """The SSM as its recurrence, one step at a time: the reference `ssd_chunked` must match.
    x (batch, T, heads, head_dim); dt (batch, T, heads) after softplus; A (heads,) < 0;
    B, C (batch, T, d_state), one group shared by all heads."""
    state = x.new_zeros(x.shape[0], x.shape[2], x.shape[3], B.shape[-1])
    ys = []
    for t in range(x.shape[1]):
        decay = torch.exp(dt[:, t] * A)[..., None, None]
        state = decay * state + torch.einsum("bh,bn,bhp->bhpn", dt[:, t], B[:, t], x[:, t])
        ys.append(torch.einsum("bn,bhpn->bhp", C[:, t], state))
    return torch.stack(ys, 1)


def segsum(a: torch.Tensor) -> torch.Tensor:
    """(..., L) → (..., L, L) with [i, j] = a[j+1] + … + a[i] for j ≤ i, −inf above the
    diagonal. Summing the masked values, not differencing a cumsum, keeps the exponent
    exact where decays are strong."""
    n = a.shape[-1]
    lower = torch.ones(n, n, dtype=torch.bool, device=a.device).tril()
    sums = a[..., None].expand(*a.shape, n).masked_fill(~lower.tril(-1), 0).cumsum(-2)
    return sums.masked_fill(~lower, float("-inf"))


def ssd_chunked(x, dt, A, B, C, chunk: int):
    """The same SSM as `ssd_sequential` by the SSD algorithm: within a chunk a masked
    quadratic (attention-like) form, between chunks a recurrence on the chunk-end states.
    T is padded to a multiple of `chunk` with dt = 0, steps that leave the state alone."""
    b, t, h, p = x.shape
    pad = -t % chunk
    x, dt, B, C = (F.pad(v, (0, 0) * (v.ndim - 2) + (0, pad)) for v in (x, dt, B, C))
    c = (t + pad) // chunk
    xs = (x * dt[..., None]).view(b, c, chunk, h, p)
    B, C = B.view(b, c, chunk, -1), C.view(b, c, chunk, -1)
    a = (dt * A).view(b, c, chunk, h).permute(0, 3, 1, 2)  # (b, h, c, l)
    cum = a.cumsum(-1)
    # Within each chunk: y_l = Σ_{s≤l} (C_l·B_s) · exp(a_{s+1} + … + a_l) · x_s dt_s.
    y = torch.einsum("bcln,bcsn,bhcls,bcshp->bclhp", C, B, torch.exp(segsum(a)), xs)
    # Each chunk's end state from its own inputs, then carried across chunks.
    states = torch.einsum("bcln,bhcl,bclhp->bchpn", B, torch.exp(cum[..., -1:] - cum), xs)
    states = torch.cat([torch.zeros_like(states[:, :1]), states], 1)
    carried = torch.einsum("bhzc,bchpn->bzhpn", torch.exp(segsum(F.pad(cum[..., -1], (1, 0)))), states)[:, :-1]
    y = y + torch.einsum("bcln,bchpn,bhcl->bclhp", C, carried, torch.exp(cum))
    return y.reshape(b, c * chunk, h, p)[:, :t]


class Mixer(nn.Module):
    """A Mamba2 mixer, initialised over Mamba2's ranges, with Falcon-H1's fixed multipliers where the
    hooks set them (SSM input and output, each block of in_proj's output)."""

    def __init__(self, width: int, hooks, expand: int = 2, head_dim: int = 16, d_state: int = 16, chunk: int = 8):
        super().__init__()
        self.d_inner, self.d_state, self.head_dim, self.chunk = expand * width, d_state, head_dim, chunk
        self.n_heads = self.d_inner // head_dim
        conv_dim = self.d_inner + 2 * d_state
        self.in_mult = hooks.fixed("ssm_in")
        self.in_proj = nn.Linear(width, 2 * self.d_inner + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(width, self.n_heads, bias=False)
        self.proj_mults = nn.ModuleList(hooks.fixed(f"in_proj_{part}") for part in ("z", "x", "B", "C", "dt"))
        self.conv = nn.Conv1d(conv_dim, conv_dim, CONV_KERNEL, groups=conv_dim, padding=CONV_KERNEL - 1)
        # Mamba2's init ranges (A in [1, 16], dt log-uniform in [1e-3, 1e-1]) at evenly spaced
        # quantiles instead of random draws: with 8 heads at width 64, random draws made a width's
        # dt statistics a sample of its init, which a coordinate check then fitted as width scaling.
        # A runs against dt so the two are not paired rank for rank.
        quantiles = (torch.arange(self.n_heads, dtype=torch.float32) + 0.5) / self.n_heads
        self.A_log = nn.Parameter((1 + 15 * quantiles.flip(0)).log())
        dt = (math.log(1e-3) + quantiles * (math.log(1e-1) - math.log(1e-3))).exp()
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # softplus(dt_bias) = dt
        self.D = nn.Parameter(torch.ones(self.n_heads))
        self.dt = SSMTimeStep()
        self.norm = nn.RMSNorm(self.d_inner)
        self.out_proj = nn.Linear(self.d_inner, width, bias=False)
        self.out_mult = hooks.fixed("ssm_out")

    def forward(self, u):
        b, t, _ = u.shape
        u = self.in_mult(u)
        parts = (*self.in_proj(u).split([self.d_inner, self.d_inner, self.d_state, self.d_state], -1), self.dt_proj(u))
        z, x, B, C, dt = (mult(part) for mult, part in zip(self.proj_mults, parts))
        # Causal: the conv pads both ends by kernel − 1, the first t outputs see no future.
        xbc = F.silu(self.conv(torch.cat([x, B, C], -1).transpose(1, 2))[..., :t].transpose(1, 2))
        x, B, C = xbc.split([self.d_inner, self.d_state, self.d_state], -1)
        dt = F.softplus(dt + self.dt_bias)
        self.dt(dt)
        x = x.view(b, t, self.n_heads, self.head_dim)
        y = ssd_chunked(x, dt, -torch.exp(self.A_log), B, C, self.chunk) + self.D[:, None] * x
        return self.out_mult(self.out_proj(self.norm(y.reshape(b, t, self.d_inner) * F.silu(z))))


class Block(nn.Module):
    """Pre-norm residual block: the mixers given by keyword (their module names) all read
    the same normed input and their sum joins the residual; then a pre-norm SwiGLU MLP."""

    def __init__(self, width: int, mlp_ratio: float, hooks, **mixers: nn.Module):
        super().__init__()
        self.norm = nn.RMSNorm(width)
        for name, mixer in mixers.items():
            self.add_module(name, mixer)
        self.mixers = tuple(mixers)
        self.mlp_norm = nn.RMSNorm(width)
        self.mlp = SwiGLU(width, int(mlp_ratio * width), hooks)

    def forward(self, x):
        h = self.norm(x)
        x = x + sum(getattr(self, name)(h) for name in self.mixers)
        return x + self.mlp(self.mlp_norm(x))


class Mamba2LM(Transformer):
    """The transformer's frame (embedding, final norm, readout and their multipliers) around
    Mamba2 blocks."""

    def __init__(
        self, width, hooks, layers=2, expand=2, ssm_head_dim=16, d_state=16, chunk=8, mlp_ratio=4.0, vocab=data.VOCAB
    ):
        super().__init__(width, hooks, layers=0, vocab=vocab)
        self.blocks.extend(
            Block(width, mlp_ratio, hooks, ssm=Mixer(width, hooks, expand, ssm_head_dim, d_state, chunk))
            for _ in range(layers)
        )


def build(
    width: int, hooks, layers=2, expand=2, ssm_head_dim=16, d_state=16, chunk=8, mlp_ratio=4.0, vocab=data.VOCAB
) -> Mamba2LM:
    return Mamba2LM(
        width, hooks, int(layers), int(expand), int(ssm_head_dim), int(d_state), int(chunk), float(mlp_ratio), vocab
    )
