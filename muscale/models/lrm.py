"""Learnable multipliers (arXiv 2601.04890): W̄ = s·W or W̄_ij = r_i·W_ij·c_j.

Applied with torch's parametrizations, so every `nn.Linear` of any model — built-in or
user — gets them without changing its module names, and `weight` reads as W̄.

Where they go is chosen per role (`placement`): none, a scalar s, a row vector r (one
per output feature), a column vector c (one per input feature), or both r and c. The
default leaves the loss no direction it cannot see between two learnable factors: a scalar
on the head and one on the query (the QK product: the logits see s_q·s_k only, so a scalar
on the key as well would add nothing but such a direction), row vectors on the outputs
that feed the residual stream (attn_out, mlp_down, ssm_out), on the SSM's time-step
projection (ssm_dt_proj: the one learnable scale on dt, the SSM's clock) and on the layers of
an MLP. `PAPER_PLACEMENT` — rows and columns on every projector, as the multipliers issue first read
the paper — makes r_v·c_o, r_up·c_down and each column vector against the norm gain before
it directions that only weight decay holds (`mult_drift`, measure/multipliers.py), so the per-layer size of
such a multiplier follows no power of width. One pair no placement on the head avoids: its
multiplier against the final norm's gain, judged as their product (`mult_path`).
`lrm-scalar` puts a scalar on every matrix.

Two implementations with one parameter layout (so one state dict, one optimizer and the
same probes serve both):

* `autograd` writes the product into the forward pass and lets autograd differentiate it.
* `fused` keeps W̄ as a plain tensor, recomputed only when W or a multiplier has changed
  in place (an optimizer step, a loaded state dict: their version counters move), so the
  forward and backward run on W̄ alone. Once backward has accumulated G = ∂L/∂W̄, a hook on
  W̄ turns it into the factors' gradients in closed form and frees it: the gradients land
  on W, r, c (s) at the end of backward as autograd would put them there, so any training
  loop, clipping included, runs unchanged. W̄ is refreshed lazily, at the first forward
  after a change; a change written through `.data`, which moves no version counter, is
  not seen."""

import copy
import math

import torch
from torch import nn
from torch.nn.utils import parametrize

from .roles import is_conv1d, role_of

PLACEMENT_KINDS = ("none", "scalar", "row", "col", "both")
SWAPPED = {"row": "col", "col": "row"}  # a vector's side in a matrix stored transposed
# The roles a placement can name: every role a matrix layer can have (norms own no matrix).
PLACEABLE_ROLES = (
    "embed",
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_qkv",
    "attn_out",
    "mlp_up",
    "mlp_gate",
    "mlp_down",
    "head",
    "ssm_in",
    "ssm_dt_proj",
    "ssm_out",
    "hidden",
    "other",
)
DEFAULT_PLACEMENT = dict.fromkeys(PLACEABLE_ROLES, "none") | {
    "head": "scalar",
    "attn_q": "scalar",
    "attn_out": "row",
    "mlp_down": "row",
    "ssm_out": "row",
    "ssm_dt_proj": "row",
    "embed": "row",
    "hidden": "row",
    "other": "row",
}
PAPER_PLACEMENT = dict.fromkeys(PLACEABLE_ROLES, "both") | {"attn_q": "scalar", "attn_k": "none", "head": "row"}


def placement(kind: str, overrides: tuple[tuple[str, str], ...] = ()) -> dict[str, str]:
    """Role → multiplier kind: `vector` modes start from DEFAULT_PLACEMENT, `scalar` from a
    scalar everywhere; `overrides` win."""
    default = DEFAULT_PLACEMENT if kind == "vector" else dict.fromkeys(PLACEABLE_ROLES, "scalar")
    return default | dict(overrides)


class _Multiplier(nn.Module):
    """`log`: the parameters hold θ and the multiplier is e^θ, so an Adam step, which moves a
    parameter by about its LR, moves log s instead of s: a width factor of 16 is 2.8 in log
    space whichever way it goes, where a linear s would need 15 to grow and take steps of its
    LR near 1/16. Probes, merge and the symmetries read values through `value`."""

    log = False

    def _stored(self, size, init: float) -> nn.Parameter:
        return nn.Parameter(torch.full(size, math.log(init) if self.log else init))

    def value(self, p: torch.Tensor) -> torch.Tensor:
        return p.exp() if self.log else p

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return self.effective(weight)


class VectorMultiplier(_Multiplier):
    """W̄_ij = r_i·W_ij·c_j, with either vector left out (`row` or `col` False). `row` and `col`
    are the stored matrix's sides; `transposed` says the layer stores W as (fan_in, fan_out)
    (GPT-2's Conv1D), so that its stored `col` scales the outputs (`sides`)."""

    transposed = False

    def __init__(
        self, fan_out: int, fan_in: int, init: float = 1.0, row: bool = True, col: bool = True, log: bool = False
    ):
        super().__init__()
        self.log = log
        self.row = self._stored((fan_out,), init) if row else None
        self.col = self._stored((fan_in,), init) if col else None

    def vectors(self) -> dict[str, torch.Tensor]:
        """The values r and c present, by the stored matrix's side."""
        return {side: self.value(v) for side, v in (("row", self.row), ("col", self.col)) if v is not None}

    def sides(self) -> dict[str, torch.Tensor]:
        """The values present by the layer's side: `row` scales its outputs, `col` its inputs,
        whichever way it stores W; what probes record and the symmetries pair."""
        vectors = self.vectors()
        return {SWAPPED[side]: v for side, v in vectors.items()} if self.transposed else vectors

    def effective(self, weight: torch.Tensor) -> torch.Tensor:
        vectors = self.vectors()
        if "row" in vectors:
            weight = vectors["row"][:, None] * weight
        return weight * vectors["col"][None, :] if "col" in vectors else weight

    def scale(self) -> torch.Tensor:
        """The multiplier's overall size: the product of its vectors' RMS."""
        return torch.stack([v.detach().float().square().mean().sqrt() for v in self.vectors().values()]).prod()


class ScalarMultiplier(_Multiplier):
    def __init__(self, init: float = 1.0, log: bool = False):
        super().__init__()
        self.log = log
        self.scalar = self._stored((), init)

    def effective(self, weight: torch.Tensor) -> torch.Tensor:
        return self.value(self.scalar) * weight

    def scale(self) -> torch.Tensor:
        return self.value(self.scalar).detach().float().abs()


MULTIPLIERS = (VectorMultiplier, ScalarMultiplier)


class _Fused:
    """W̄ held as a leaf tensor, its gradient G turned into the factors' in closed form. W̄'s
    storage is written in place at each refresh and G's becomes W's gradient: on a CPU
    every fresh matrix-sized buffer costs page faults, a pass over memory of its own."""

    _bar: torch.Tensor | None = None
    _key: tuple = ()
    _factors: tuple = ()

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        factors = (weight, *self.parameters())
        key = tuple((t.data_ptr(), t._version) for t in factors)
        if key != self._key:
            bar = self._bar
            if bar is None or (bar.shape, bar.dtype, bar.device) != (weight.shape, weight.dtype, weight.device):
                self._bar = bar = torch.empty_like(weight, requires_grad=True)
                bar.register_post_accumulate_grad_hook(self._backward)
            with torch.no_grad():
                self.effective_into(weight, bar)
            self._key, self._factors = key, factors
        return self._bar

    @torch.no_grad()
    def _backward(self, bar: torch.Tensor):
        for p, g in zip(self._factors, self.factor_grads(bar.grad, self._factors[0])):
            if p.requires_grad:
                p.grad = g if p.grad is None else p.grad.add_(g)
        bar.grad = None

    def __deepcopy__(self, memo):
        """A copy computes its own W̄ from its own tensors; the cache is never shared."""
        replica = memo[id(self)] = self.__class__.__new__(self.__class__)
        skip = ("_bar", "_key", "_factors")
        replica.__dict__ = copy.deepcopy({k: v for k, v in self.__dict__.items() if k not in skip}, memo)
        return replica


class FusedVectorMultiplier(_Fused, VectorMultiplier):
    def effective_into(self, weight: torch.Tensor, out: torch.Tensor):
        vectors = self.vectors()
        first, *rest = [
            v
            for v in (
                vectors["row"][:, None] if "row" in vectors else None,
                vectors["col"][None, :] if "col" in vectors else None,
            )
            if v is not None
        ]
        torch.mul(weight, first, out=out)
        for v in rest:
            out.mul_(v)

    def factor_grads(self, grad: torch.Tensor, weight: torch.Tensor) -> list[torch.Tensor]:
        """∂L/∂r_i = Σ_j G_ij·W_ij·c_j, ∂L/∂c_j = Σ_i G_ij·r_i·W_ij, ∂L/∂W_ij = r_i·c_j·G_ij (written
        over G, which is spent); a missing vector counts as ones. Log-parametrised:
        ∂L/∂θ = r·∂L/∂r (c·∂L/∂c)."""
        vectors = self.vectors()
        r, c = vectors.get("row"), vectors.get("col")
        gw = grad * weight
        row = None if r is None else gw.sum(1) if c is None else gw @ c
        col = None if c is None else gw.sum(0) if r is None else r @ gw
        del gw
        if self.log:
            row, col = (None if g is None else g.mul_(v) for g, v in ((row, r), (col, c)))
        if r is not None:
            grad.mul_(r[:, None])
        if c is not None:
            grad.mul_(c[None, :])
        return [g for g in (grad, row, col) if g is not None]


class FusedScalarMultiplier(_Fused, ScalarMultiplier):
    def effective_into(self, weight: torch.Tensor, out: torch.Tensor):
        torch.mul(weight, self.value(self.scalar), out=out)

    def factor_grads(self, grad: torch.Tensor, weight: torch.Tensor) -> list[torch.Tensor]:
        """∂L/∂s = Σ G·W, ∂L/∂W = s·G (written over G); log-parametrised ∂L/∂θ = s·∂L/∂s."""
        s = self.value(self.scalar)
        scalar = torch.tensordot(grad, weight, dims=grad.ndim)
        return [grad.mul_(s), scalar.mul_(s) if self.log else scalar]


def _multiplier(kind: str, impl: str, shape: torch.Size, init: float, log: bool) -> nn.Module:
    if kind == "scalar":
        return (FusedScalarMultiplier if impl == "fused" else ScalarMultiplier)(init, log=log)
    cls = FusedVectorMultiplier if impl == "fused" else VectorMultiplier
    return cls(*shape, init=init, row=kind in ("row", "both"), col=kind in ("col", "both"), log=log)


def apply(
    model: nn.Module, where: dict[str, str], impl: str = "autograd", init: float = 1.0, param: str = "linear"
) -> list[nn.Parameter]:
    """Wrap every linear layer (GPT-2's Conv1D too) whose role `where` gives a kind other than
    none; returns the multiplier parameters for their own optimizer group. `param`: linear or
    log (stores θ, s = e^θ)."""
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear) or is_conv1d(m)]
    for name, linear in linears:
        kind = where.get(role_of(name, linear), "none")
        if kind == "none":
            continue
        transposed = is_conv1d(linear)  # stored (fan_in, fan_out): a row multiplier lies along dim 1
        original = linear.weight
        mult = _multiplier(SWAPPED.get(kind, kind) if transposed else kind, impl, original.shape, init, param == "log")
        if isinstance(mult, VectorMultiplier):
            mult.transposed = transposed
        parametrize.register_parametrization(linear, "weight", mult.to(original.device))
        if hasattr(original, "infshape"):
            # mup's MuReadout asks `self.weight.infshape`, which the parametrized W̄ lacks.
            linear.width_mult = original.infshape.width_mult
    return multipliers(model)


def multipliers(model: nn.Module) -> list[nn.Parameter]:
    return [p for m in model.modules() if isinstance(m, MULTIPLIERS) for p in m.parameters()]


def values(model: nn.Module) -> list[torch.Tensor]:
    """The multipliers' values s, r, c, in the order of `multipliers`, however they are stored."""
    return [m.value(p) for m in model.modules() if isinstance(m, MULTIPLIERS) for p in m.parameters()]


def matrix(module: nn.Module) -> torch.Tensor | None:
    """The trained matrix W of a layer (not W̄), or None when the module owns none."""
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    weight = module._parameters.get("weight")
    return weight if weight is not None and weight.ndim == 2 else None


@torch.no_grad()
def merge(model: nn.Module) -> nn.Module:
    """A copy of `model` with every multiplier folded into its matrix (W ← W̄): a plain model
    for inference, with the same outputs and no multiplier parameters, whichever impl.

    Not torch's remove_parametrizations: it deletes `weight` from the module's class, which
    a deep copy shares with the original, and so would break the model it was given."""
    merged = copy.deepcopy(model)
    for module in list(merged.modules()):
        if parametrize.is_parametrized(module, "weight"):
            plist = module.parametrizations.weight
            weight = plist.original
            weight.copy_(plist[0].effective(weight))
            module.__class__ = type(module).__bases__[0]
            del module.parametrizations
            module.weight = weight
    return merged
