"""Learnable multipliers (arXiv 2601.04890): W̄ = s·W or W̄_ij = r_i·W_ij·c_j.

Applied with torch's parametrizations, so every `nn.Linear` of any model — built-in or
user — gets them without changing its module names, and `weight` reads as W̄."""

import torch
from torch import nn
from torch.nn.utils import parametrize


class VectorMultiplier(nn.Module):
    def __init__(self, fan_out: int, fan_in: int, init: float = 1.0):
        super().__init__()
        self.row = nn.Parameter(torch.full((fan_out,), init))
        self.col = nn.Parameter(torch.full((fan_in,), init))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return self.row[:, None] * weight * self.col[None, :]


class ScalarMultiplier(nn.Module):
    def __init__(self, init: float = 1.0):
        super().__init__()
        self.scalar = nn.Parameter(torch.tensor(init))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return self.scalar * weight


MULTIPLIERS = (VectorMultiplier, ScalarMultiplier)


def apply(model: nn.Module, kind: str) -> list[nn.Parameter]:
    """Wrap every linear layer; returns the multiplier parameters for their own optimizer group."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    for linear in linears:
        original = linear.weight
        mult = VectorMultiplier(*original.shape) if kind == "vector" else ScalarMultiplier()
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
