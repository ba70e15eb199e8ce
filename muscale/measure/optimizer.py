"""What the optimizer did at the last step: the clip factor, and where Adam's ε outweighed sqrt(v̂)."""

from collections.abc import Callable

import torch
from torch import nn

from ..models import lrm
from .shards import whole


class OptimizerState:
    """Reads an optim.Optimizer (None: records nothing) after its step. Each layer's own
    Adam-trained tensors (matrix, bias, gain) are gathered only when `eps_share` is wanted."""

    def __init__(self, optimizer, layers: list[tuple[str, nn.Module, str]], wanted: set[str], add: Callable):
        self.optimizer, self.wanted, self.add = optimizer, wanted, add
        adam = {
            id(p): g
            for g in (optimizer.param_groups if optimizer and "eps_share" in wanted else [])
            if "betas" in g
            for p in g["params"]
        }
        self.layers = []
        for name, module, role in layers if adam else []:
            own = {id(p): p for p in (lrm.matrix(module), *module.parameters(recurse=False)) if p is not None}
            tensors = [(p, adam[i]) for i, p in own.items() if i in adam]
            if tensors:
                self.layers.append((name, role, tensors))

    def _eps_share(self, tensors: list[tuple[torch.Tensor, dict]]) -> torch.Tensor | None:
        """Share of entries with sqrt(v̂) < ε, v̂ = exp_avg_sq / (1 − β₂^t) read from Adam's state,
        tested as exp_avg_sq < ε²·(1 − β₂^t): one pass over the state instead of four."""
        below, total = [], 0
        for p, group in tensors:
            state = self.optimizer.state.get(p, {})
            if "exp_avg_sq" in state:
                threshold = group["eps"] ** 2 * (1 - group["betas"][1] ** state["step"])
                below.append(torch.count_nonzero(whole(state["exp_avg_sq"]) < threshold))
                total += p.numel()
        return torch.stack(below).sum() / total if below else None

    def collect(self, step: int):
        for name, role, tensors in self.layers:
            share = self._eps_share(tensors)
            if share is not None:
                self.add(name, role, "eps_share", share)
        # Only muscale's optimizers clip and keep the factor; a user's own optimizer has none.
        factor = getattr(self.optimizer, "clip_factor", None)
        clipped = step > 0 and factor is not None
        if clipped and "clip_factor" in self.wanted:
            self.add("optimizer", "optimizer", "clip_factor", factor)
