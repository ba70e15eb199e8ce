"""Optimizers and parameter groups per mode.

Matrices get weight decay, vectors (norm gains, biases) do not; multipliers get a group
of their own and are never width-scaled by μP rules: they are meant to learn the width
dependence themselves."""

import torch
from mup import MuAdam, MuAdamW, MuSGD
from torch import nn

from .spec import RunSpec, has_mup

_PLAIN = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
_MUP = {"adam": MuAdam, "adamw": MuAdamW, "sgd": MuSGD}


def build(spec: RunSpec, model: nn.Module, multipliers: list[nn.Parameter]) -> torch.optim.Optimizer:
    mult_ids = {id(p) for p in multipliers}
    main = [p for p in model.parameters() if p.requires_grad and id(p) not in mult_ids]
    groups = [
        {"params": [p for p in main if p.ndim >= 2], "weight_decay": spec.weight_decay},
        {"params": [p for p in main if p.ndim < 2], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    cls = (_MUP if has_mup(spec.mode) else _PLAIN)[spec.optimizer]
    # foreach: one fused kernel per op over all tensors; on CPU torch defaults to a loop.
    opt = cls(groups, lr=spec.lr, foreach=True)
    if multipliers:
        opt.add_param_group({"params": multipliers, "weight_decay": spec.mult_weight_decay,
                             "lr": spec.lr if spec.mult_lr is None else spec.mult_lr})
    return opt
