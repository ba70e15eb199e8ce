"""Learnable multipliers (arXiv 2601.04890): W̄ = s·W or W̄_ij = r_i·W_ij·c_j.

Applied with torch's parametrizations, so every `nn.Linear` of any model — built-in or
user — gets them without changing its module names, and `weight` reads as W̄.

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
import functools

import torch
from torch import nn
from torch.nn.utils import parametrize


class VectorMultiplier(nn.Module):
    def __init__(self, fan_out: int, fan_in: int, init: float = 1.0):
        super().__init__()
        self.row = nn.Parameter(torch.full((fan_out,), init))
        self.col = nn.Parameter(torch.full((fan_in,), init))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return self.effective(weight)

    def effective(self, weight: torch.Tensor) -> torch.Tensor:
        return self.row[:, None] * weight * self.col[None, :]


class ScalarMultiplier(nn.Module):
    def __init__(self, init: float = 1.0):
        super().__init__()
        self.scalar = nn.Parameter(torch.tensor(init))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return self.effective(weight)

    def effective(self, weight: torch.Tensor) -> torch.Tensor:
        return self.scalar * weight


MULTIPLIERS = (VectorMultiplier, ScalarMultiplier)


class _Fused:
    """W̄ held as a leaf tensor; `factor_grads` (G, W) → the gradients of (W, *multipliers)."""

    _bar: torch.Tensor | None = None
    _key: tuple = ()

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        factors = (weight, *self.parameters())
        key = tuple((t.data_ptr(), t._version) for t in factors)
        if key != self._key:
            with torch.no_grad():
                self._bar = self.effective(weight).requires_grad_()
            self._bar.register_post_accumulate_grad_hook(functools.partial(self._backward, factors))
            self._key = key
        return self._bar

    @torch.no_grad()
    def _backward(self, factors: tuple[torch.Tensor, ...], bar: torch.Tensor):
        for p, g in zip(factors, self.factor_grads(bar.grad, factors[0])):
            if p.requires_grad:
                p.grad = g if p.grad is None else p.grad.add_(g)
        bar.grad = None

    def __deepcopy__(self, memo):
        """A copy computes its own W̄ from its own tensors; the cache is never shared."""
        replica = memo[id(self)] = self.__class__.__new__(self.__class__)
        replica.__dict__ = copy.deepcopy({k: v for k, v in self.__dict__.items() if k not in ("_bar", "_key")}, memo)
        return replica


class FusedVectorMultiplier(_Fused, VectorMultiplier):
    def factor_grads(self, grad: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """∂L/∂W_ij = r_i·c_j·G_ij, ∂L/∂r_i = Σ_j G_ij·W_ij·c_j, ∂L/∂c_j = Σ_i G_ij·r_i·W_ij."""
        gw = grad * weight
        return torch.outer(self.row, self.col).mul_(grad), gw @ self.col, self.row @ gw


class FusedScalarMultiplier(_Fused, ScalarMultiplier):
    def factor_grads(self, grad: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """∂L/∂W = s·G, ∂L/∂s = Σ G·W."""
        return grad * self.scalar, (grad * weight).sum()


_CLASSES = {("vector", "autograd"): VectorMultiplier, ("scalar", "autograd"): ScalarMultiplier,
            ("vector", "fused"): FusedVectorMultiplier, ("scalar", "fused"): FusedScalarMultiplier}


def apply(model: nn.Module, kind: str, impl: str = "autograd") -> list[nn.Parameter]:
    """Wrap every linear layer; returns the multiplier parameters for their own optimizer group."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    for linear in linears:
        original = linear.weight
        cls = _CLASSES[kind, impl]
        mult = cls(*original.shape) if kind == "vector" else cls()
        parametrize.register_parametrization(linear, "weight", mult.to(original.device))
        if hasattr(original, "infshape"):
            # mup's MuReadout asks `self.weight.infshape`, which the parametrized W̄ lacks.
            linear.width_mult = original.infshape.width_mult
    return multipliers(model)


def multipliers(model: nn.Module) -> list[nn.Parameter]:
    return [p for m in model.modules() if isinstance(m, MULTIPLIERS) for p in m.parameters()]


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
