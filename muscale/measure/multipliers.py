"""The learnable multipliers' values, and the symmetric pairs they form (symmetry.py)."""

import contextlib
from collections.abc import Callable

import torch
from torch import nn

from ..models import lrm
from . import symmetry
from .metrics import any_of, statistics

PAIR_METRICS = {"mult_drift", "mult_path"}


class Multipliers:
    """Each multiplied layer's scalar, or its vectors' statistics by side; and each symmetric
    pair's drift since step 0 and product. The pairs, norm gains' found by tracing the step-0
    forward, are looked for only when a pair metric is wanted."""

    def __init__(self, model: nn.Module, layers: list[tuple[str, nn.Module, str]], wanted: set[str], add: Callable):
        self.model, self.wanted, self.add = model, wanted, add
        self.layers = (
            [
                (name, role, module.parametrizations.weight[0])
                for name, module, role in layers
                if hasattr(module, "parametrizations")
            ]
            if any_of("multiplier", wanted)
            else []
        )
        self.sides = {side: statistics(side, wanted) for side in ("row", "col")}
        self.pairs = symmetry.pairs(model) if PAIR_METRICS & wanted else []
        self._drift0: dict[str, torch.Tensor] = {}

    @contextlib.contextmanager
    def watch(self, step: int):
        trace = symmetry.GainTrace(self.model) if step == 0 and self.pairs else None
        try:
            yield
        finally:
            if trace is not None:
                self.pairs += trace.finish()

    def collect(self):
        for name, role, mult in self.layers:
            if isinstance(mult, lrm.ScalarMultiplier):
                if "mult_scalar" in self.wanted:
                    self.add(name, role, "mult_scalar", mult.value(mult.scalar).detach())
                continue
            for side, vec in mult.sides().items():
                vec = vec.detach().float()
                for metric, fn in self.sides[side]:
                    self.add(name, role, metric, fn(vec))
        for pair in self.pairs:
            if "mult_drift" in self.wanted:
                ratio = pair.log_ratio()
                self.add(pair.name, pair.role, "mult_drift", ratio - self._drift0.setdefault(pair.name, ratio))
            if "mult_path" in self.wanted and not pair.name.endswith("[mult~W]"):
                self.add(pair.name, pair.role, "mult_path", pair.a() * pair.b())
