"""A model's blocks and its residual branches: where a depth rule's multiplier goes.

The branch multiplier scales what each branch adds to the residual stream. muscale puts it
on the branch's last projection (a layer of role attn_out, mlp_down or ssm_out inside a
block: the built-in families, Hugging Face's llama, qwen2 and gpt2, nanoGPT), which is the
same thing wherever the branch ends in that projection; a model whose branches end
otherwise marks its residual adds with `muscale.Residual`, and muscale scales those instead."""

import torch
from torch import nn

from ..errors import InputError
from .roles import role_of

BRANCH_OUTPUTS = ("attn_out", "mlp_down", "ssm_out")


class Residual(nn.Module):
    """x + multiplier·branch, for a model's residual add: `x = self.residual(x, self.attn(self.norm(x)))`.
    The multiplier is 1 until a depth rule sets it."""

    def __init__(self):
        super().__init__()
        self.multiplier = 1.0

    def forward(self, x: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        return torch.add(x, branch, alpha=self.multiplier)

    def extra_repr(self) -> str:
        return f"multiplier={self.multiplier:g}"


class _Scale:
    def __init__(self, factor: float):
        self.factor = factor

    def __call__(self, module, args, output):
        return output * self.factor


def _holds_layers(module: nn.Module) -> bool:
    own = any(True for _ in module.parameters(recurse=False)) or hasattr(module, "parametrizations")
    return not own and any(True for _ in module.children())


def blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The residual blocks: the entries of the list of modules that holds most parameters,
    where those entries are modules of layers and not layers themselves (an MLP's list of
    Linear layers is no list of blocks, parametrized or not)."""
    lists = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.ModuleList | nn.Sequential) and len(m) and all(_holds_layers(c) for c in m)
    ]
    if not lists:
        return []
    name, held = max(lists, key=lambda nm: sum(p.numel() for p in nm[1].parameters()))
    prefix = f"{name}." if name else ""
    return [(f"{prefix}{i}", block) for i, block in enumerate(held)]


def apply(model: nn.Module, multiplier: float, family: str) -> None:
    """Multiply every residual branch of `model` by `multiplier`, refusing a model that has none."""
    residuals = [m for m in model.modules() if isinstance(m, Residual)]
    for m in residuals:
        m.multiplier = multiplier
    if residuals:
        return
    outputs = [
        module
        for prefix, block in blocks(model)
        for name, module in block.named_modules(prefix=prefix)
        if role_of(name, module) in BRANCH_OUTPUTS
    ]
    if not outputs:
        raise InputError(
            "--depth-param",
            f"{family} has no residual branch muscale can scale (no attn_out, mlp_down or ssm_out layer in a block)",
            "wrap each residual add in muscale.Residual: x = self.residual(x, branch(x))",
        )
    for module in outputs:
        module.register_forward_hook(_Scale(multiplier))
