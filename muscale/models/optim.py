"""Optimizers and parameter groups per mode.

Matrices get weight decay, vectors (norm gains, biases) do not; multipliers get a group
of their own and are never width-scaled by μP rules: they are meant to learn the width
dependence themselves.

Gradient clipping scales the global gradient norm of every parameter but the learnable
multipliers down to `clip`: the paper (arXiv 2601.04890) found that counting the
multipliers' gradients, which are sums over a whole matrix and so large, over-clips the
matrices. `clip_multipliers` counts and scales them too.

Muon (`torch.optim.Muon`) takes the 2-D hidden matrices, AdamW everything else. Muon's
update of an A×B (fan_out × fan_in) matrix is lr·T·O: O is the orthogonalised momentum,
singular values ≈ 1 (0.5…1.5 after torch's 5 Newton–Schulz steps) so ‖O‖₂ ≈ 1 at any
shape, and T is torch's adjustment, `original` T = sqrt(max(1, A/B)) or `match_rms_adamw`
T = 0.2·sqrt(max(A, B)), which gives every entry AdamW's update RMS of about 0.2·lr.
Spectral μP asks ‖ΔW‖₂ ∝ sqrt(A/B) (an RMS→RMS operator norm of ΔW that stays Θ(1)).
With S(A, B) = T(A, B) / sqrt(A/B), ‖ΔW‖₂ ≈ lr·S·sqrt(A/B), so the μP modes multiply
each matrix's lr by m = S(A₀, B₀) / S(A, B), with (A₀, B₀) its base shape in mup: then
lr·m·T = lr·S(A₀, B₀)·sqrt(A/B) ∝ sqrt(fan_out/fan_in), equal to the base model's own
update at the base width, whichever adjustment torch applies. For a matrix whose two
dims both grow with width (A/B fixed): `original` needs m = 1 (torch's adjustment is
spectral μP already); `match_rms_adamw` needs m = sqrt(max(A₀, B₀) / max(A, B)) =
1/sqrt(width_mult). Muon's weight decay is divided by m, so its decoupled decay lr·λ
stays what it is at the base width, as MuAdamW keeps it; the AdamW part is MuAdamW.

Adam's ε. Under μP every per-entry gradient shrinks like 1/width_mult relative to the
base model: hidden matrices, and also the embedding, the readout and the norm gains,
since the backward signal reaching the residual stream is Θ(1/width) (measured on the
transformer at widths 64…512, at init: gradient RMS ∝ d^-1.0 for all of them but the
query and key, d^-1.5 under the 1/head_dim attention scale; MuSGD's ×width_mult on
vector-like learning rates says the same). Once sqrt(v̂) falls below ε,
ε dominates Adam's denominator and the update shrinks with width. `adam_eps_scaling`
gives each parameter ε / width_mult, mup's infshape.width_mult() (fan_in's multiplier
for a matrix, the width dim's for a vector), so ε keeps its place relative to sqrt(v̂)
at every width; parameters without a width dim keep ε, and so do the learnable
multipliers, whose scale is theirs to learn. Only the μP modes scale ε: elsewhere there
are no base shapes to measure width against. The `eps_share` probe records per layer
the fraction of entries where sqrt(v̂) < ε.

A depth rule (config/depth.py) gives the parameters inside the blocks its learning rate and
Adam ε; the learnable multipliers keep theirs.

Spectral weight decay takes each matrix group's decoupled λ, as the optimizer (μP's
included) would have applied it, out of the optimizer and applies it to the top singular
direction alone after the step (spectral.py)."""

import collections
import math

import torch
from mup import MuAdam, MuAdamW, MuReadout, MuSGD
from torch import nn

from ..config.spec import RunSpec, fixed_weight_decay, has_mup_lr, multiplier_lr
from . import depth, lrm
from .roles import role_of
from .spectral import SpectralDecay

_PLAIN = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
_MUP = {"adam": MuAdam, "adamw": MuAdamW, "sgd": MuSGD}
ADAM_EPS = 1e-8  # torch's default, which every Adam group starts from


class Optimizer:
    """A run's optimizer: gradient clipping, its torch optimizers, then spectral weight
    decay, stepped as one so the trainer, the probes and the tests see the same object and
    order of operations."""

    def __init__(
        self, optimizers: list[torch.optim.Optimizer], clipped: list[nn.Parameter] = (), max_norm: float | None = None
    ):
        self.optimizers, self.clipped, self.max_norm = optimizers, list(clipped), max_norm
        self.decay = SpectralDecay(self.param_groups)
        # The factor the last step's gradients were scaled by, on the device (None: no clipping).
        self.clip_factor: torch.Tensor | None = None

    @property
    def param_groups(self) -> list[dict]:
        return [g for opt in self.optimizers for g in opt.param_groups]

    @property
    def state(self) -> collections.ChainMap:
        return collections.ChainMap(*(opt.state for opt in self.optimizers))

    def zero_grad(self, set_to_none: bool = True):
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    @torch.no_grad()
    def step(self):
        if self.max_norm is not None:
            total = nn.utils.clip_grad_norm_(self.clipped, self.max_norm, foreach=True)
            # torch's own coefficient, so the record is what the gradients were multiplied by.
            self.clip_factor = (self.max_norm / (total + 1e-6)).clamp(max=1.0)
        for group in self.param_groups:
            if group.get("mult_decay"):
                _decay_multipliers(group)
        for opt in self.optimizers:
            opt.step()
        self.decay.step()


def _decay_multipliers(group: dict):
    """s ← s·(1 − η·λ) before the step, as AdamW orders it, in every optimizer: inside Adam or
    SGD an L2 term would be added to the gradient, and at init it outweighs the multipliers'
    own gradients many times over. A log-parametrised multiplier shrinks the same s, θ ← θ +
    log(1 − η·λ)."""
    factor = 1 - group["lr"] * group["mult_decay"]
    if group["mult_log"]:
        torch._foreach_add_(group["params"], math.log(factor))
    else:
        torch._foreach_mul_(group["params"], factor)


def hidden_matrices(model: nn.Module) -> list[nn.Parameter]:
    """The trained 2-D weights of every layer between the embedding and the readout: what
    Muon orthogonalises. The embedding and the head each have one dim that is not a
    hidden feature space (tokens, classes), where an orthogonal update means nothing."""
    return [
        w
        for name, module in model.named_modules()
        if (w := lrm.matrix(module)) is not None
        and w.requires_grad
        and not isinstance(module, nn.Embedding | MuReadout)
        and role_of(name, module) not in ("embed", "head")
    ]


def _spectral_step(adjust: str, fan_out: int, fan_in: int) -> float:
    """S: ‖ΔW‖₂ / sqrt(fan_out/fan_in) of a Muon step per unit lr, from torch's adjustment T."""
    t = math.sqrt(max(1, fan_out / fan_in)) if adjust == "original" else 0.2 * math.sqrt(max(fan_out, fan_in))
    return t / math.sqrt(fan_out / fan_in)


def muon_width_scale(p: nn.Parameter, adjust: str) -> float:
    """m = S(base shape) / S(shape), for a parameter that mup gave base shapes."""
    base = [d.base_dim if d.isinf() else d.dim for d in p.infshape]
    return _spectral_step(adjust, *base) / _spectral_step(adjust, *p.shape)


def _muon(spec: RunSpec, params: list[nn.Parameter], inside: set[int]) -> torch.optim.Muon:
    by_scale = collections.defaultdict(list)
    depth_lr = spec.depth_factors()[0]
    for p in params:
        m = muon_width_scale(p, spec.muon_adjust_lr) if has_mup_lr(spec.mode) else 1.0
        by_scale[m * depth_lr if id(p) in inside else m].append(p)
    groups = [
        {
            "params": ps,
            "lr": spec.lr * m,
            "weight_decay": spec.weight_decay / (1 if fixed_weight_decay(spec.mode) else m),
        }
        for m, ps in by_scale.items()
    ]
    return torch.optim.Muon(groups, lr=spec.lr, weight_decay=spec.weight_decay, adjust_lr_fn=spec.muon_adjust_lr)


def _eps_scaled(groups: list[dict]) -> list[dict]:
    """Each group split by its parameters' ε / width_mult (see above); mup keeps the key."""
    out = []
    for group in groups:
        by_eps = collections.defaultdict(list)
        for p in group["params"]:
            by_eps[group.get("eps", ADAM_EPS) / p.infshape.width_mult()].append(p)
        out += [group | {"params": params, "eps": eps} for eps, params in by_eps.items()]
    return out


def _depth_groups(spec: RunSpec, groups: list[dict], inside: set[int]) -> list[dict]:
    """Each group split into the parameters inside the blocks, at the depth rule's learning
    rate and ε (config/depth.py), and the rest (embedding, final norm, head) as they were."""
    lr, eps = spec.depth_factors()
    scaled = {"lr": spec.lr * lr} | ({} if spec.optimizer == "sgd" else {"eps": ADAM_EPS * eps})
    out = []
    for group in groups:
        out += [
            group | {"params": [p for p in group["params"] if id(p) in inside]} | scaled,
            group | {"params": [p for p in group["params"] if id(p) not in inside]},
        ]
    return [g for g in out if g["params"]]


def build(spec: RunSpec, model: nn.Module, multipliers: list[nn.Parameter]) -> Optimizer:
    mult_ids = {id(p) for p in multipliers}
    main = [p for p in model.parameters() if p.requires_grad and id(p) not in mult_ids]
    inside = {id(p) for _, block in depth.blocks(model) for p in block.parameters()} - mult_ids
    muon = {id(p) for p in hidden_matrices(model)} if spec.optimizer == "muon" else set()
    optimizers = [_muon(spec, [p for p in main if id(p) in muon], inside)] if muon else []
    rest = [p for p in main if id(p) not in muon]
    groups = [
        {"params": [p for p in rest if p.ndim >= 2], "weight_decay": spec.weight_decay},
        {"params": [p for p in rest if p.ndim < 2], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    if spec.depth_factors() != (1.0, 1.0):
        groups = _depth_groups(spec, groups, inside)
    if spec.adam_eps_scaling:
        groups = _eps_scaled(groups)
    cls = (_MUP if has_mup_lr(spec.mode) else _PLAIN)["adamw" if spec.optimizer == "muon" else spec.optimizer]
    # foreach: one fused kernel per op over all tensors; on CPU torch defaults to a loop.
    betas = {} if spec.beta2 is None or spec.optimizer == "sgd" else {"betas": (0.9, spec.beta2)}
    opt = cls(groups, lr=spec.lr, foreach=True, **betas)
    if fixed_weight_decay(spec.mode):
        for group in opt.param_groups:  # mup multiplied λ by width_mult wherever it divided η
            group["weight_decay"] = group["weight_decay"] and spec.weight_decay
    if multipliers:
        # Their decay is applied by Optimizer.step, decoupled whatever the optimizer.
        opt.add_param_group(
            {
                "params": multipliers,
                "weight_decay": 0.0,
                "mult_decay": spec.mult_weight_decay,
                "mult_log": spec.mult_param == "log",
                "lr": multiplier_lr(spec.mode, spec.lr if spec.mult_lr is None else spec.mult_lr),
            }
        )
    if spec.weight_decay_kind == "spectral":
        for group in (g for o in optimizers + [opt] for g in o.param_groups):
            if group["weight_decay"] and all(p.ndim >= 2 for p in group["params"]):
                group["spectral_decay"], group["weight_decay"] = group["weight_decay"], 0.0
    clipped = main + (multipliers if spec.clip_multipliers else [])
    return Optimizer(optimizers + [opt], clipped, spec.clip)
