"""Directions along which a product of learnable factors can move without changing the output.

s·W = (a·s)·(W/a): the loss cannot see such a direction, so only weight decay holds it and
gradient noise makes it wander. The `mult_drift` probe follows each pair below as
log(size A / size B), minus its value at step 0 (sizes are RMS, |s| for a scalar): a value
that keeps growing is a runaway, one that settles is held. Two vectors that start equal and meet only as a product
(r_v·c_o) get equal gradients and, under Adam, equal updates: their pair stays at exactly 0.

The pairs: a layer's multiplier against its matrix; its row vector against its column
vector; siblings whose product the next operation sees linearly — query and key (the
logits see s_q·s_k), value and output projection (attention is linear in v), up and down
projection (SwiGLU is linear in `up`); and a norm's gain against the column multipliers of
the layers that read the norm's output. Those readers are found by tracing one forward, so
a user model gets the gain pairs too; a gain is paired only when every layer that reads it
has a multiplier on its input side (else that layer's matrix, held by weight decay, breaks
the symmetry)."""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..models import lrm
from ..models.roles import is_conv1d, role_of

# (first role, second role, side of the first, side of the second), same parent module.
SIBLINGS = (
    ("attn_q", "attn_k", "row", "row"),
    ("attn_v", "attn_out", "row", "col"),
    ("mlp_up", "mlp_down", "row", "col"),
)


@dataclass(frozen=True)
class Pair:
    name: str
    role: str
    a: Callable[[], torch.Tensor]
    b: Callable[[], torch.Tensor]

    def log_ratio(self) -> torch.Tensor:
        return (self.a() / self.b()).log()


def _rms(t: torch.Tensor) -> Callable[[], torch.Tensor]:
    return lambda: t.detach().float().square().mean().sqrt()


def _value_rms(mult: nn.Module, side: str) -> Callable[[], torch.Tensor]:
    """RMS of a vector multiplier's values on one side of its layer (lrm.VectorMultiplier.sides)."""
    return lambda: mult.sides()[side].detach().float().square().mean().sqrt()


def _geometric_mean(sizes: list[Callable[[], torch.Tensor]]) -> Callable[[], torch.Tensor]:
    """One size for a gain's several readers (q, k and v read the same norm)."""
    return lambda: torch.stack([size().log() for size in sizes]).mean().exp()


def _side(mult: nn.Module, side: str) -> Callable[[], torch.Tensor] | None:
    """The size of what scales a layer's outputs (`row`) or inputs (`col`), if anything does."""
    if isinstance(mult, lrm.ScalarMultiplier):
        return mult.scale
    return _value_rms(mult, side) if side in mult.sides() else None


def _multiplied(model: nn.Module) -> dict[str, tuple[str, nn.Module, nn.Module]]:
    return {
        name: (role_of(name, m), m, m.parametrizations.weight[0])
        for name, m in model.named_modules()
        if parametrize.is_parametrized(m, "weight") and isinstance(m.parametrizations.weight[0], lrm.MULTIPLIERS)
    }


def pairs(model: nn.Module) -> list[Pair]:
    """Every pair but the gains' (see `GainTrace`)."""
    layers = _multiplied(model)
    out = []
    for name, (role, module, mult) in layers.items():
        out.append(Pair(f"{name}[mult~W]", role, mult.scale, _rms(module.parametrizations.weight.original)))
        if isinstance(mult, lrm.VectorMultiplier) and mult.row is not None and mult.col is not None:
            out.append(Pair(f"{name}[row~col]", role, _value_rms(mult, "row"), _value_rms(mult, "col")))
    by_parent = {}
    for name, (role, _, mult) in layers.items():
        by_parent.setdefault(name.rpartition(".")[0], {})[role] = mult
    for parent, roles in by_parent.items():
        for first, second, side_a, side_b in SIBLINGS:
            if first in roles and second in roles:
                a, b = _side(roles[first], side_a), _side(roles[second], side_b)
                if a is not None and b is not None:
                    out.append(Pair(f"{parent}[{first}~{second}]", first, a, b))
    return out


class GainTrace:
    """Hooks for one forward pass that see which layers read each norm's output."""

    def __init__(self, model: nn.Module):
        self.layers = _multiplied(model)
        self.outputs: dict[int, tuple[str, torch.Tensor]] = {}
        self.readers: dict[str, list[str]] = {}
        self.gains = {
            name: m.weight
            for name, m in model.named_modules()
            if role_of(name, m) == "norm"
            and isinstance(getattr(m, "weight", None), nn.Parameter)
            and m.weight.ndim == 1
        }
        modules = dict(model.named_modules())
        self.handles = [modules[n].register_forward_hook(self._norm_hook(n)) for n in self.gains]
        self.handles += [
            m.register_forward_pre_hook(self._reader_hook(n))
            for n, m in modules.items()
            if isinstance(m, nn.Linear) or is_conv1d(m)
        ]

    def _norm_hook(self, name):
        def hook(module, args, output):
            self.outputs[id(output)] = (name, output)  # the tensor is kept, so its id stays its own

        return hook

    def _reader_hook(self, name):
        def hook(module, args):
            source = self.outputs.get(id(args[0])) if args else None
            if source is not None and source[1] is args[0]:
                self.readers.setdefault(source[0], []).append(name)

        return hook

    def finish(self) -> list[Pair]:
        """Remove the hooks; the gain pairs whose every reader has an input-side multiplier."""
        for h in self.handles:
            h.remove()
        self.outputs.clear()
        out = []
        for norm, readers in self.readers.items():
            sides = [_side(self.layers[r][2], "col") if r in self.layers else None for r in dict.fromkeys(readers)]
            if all(side is not None for side in sides):
                # Named after what the gain feeds when that is one role (the final norm: the head).
                roles = {self.layers[r][0] for r in readers}
                role = roles.pop() if len(roles) == 1 else "norm"
                out.append(Pair(f"{norm}[gain~col]", role, _rms(self.gains[norm]), _geometric_mean(sides)))
        return out
