"""CompleteP's laziness criterion, per block: how far a block's change since init is from its
linearisation in its own parameters.

With θ₀ the block's parameters at init and Δθ = θ_t − θ₀, on the input the block sees now,

    nonlin_rel = RMS(f(θ_t) − f(θ₀) − J·Δθ) / RMS(f(θ_t) − f(θ₀))

is 0 for a block that moves like its linearisation (lazy) and Θ(1) for one that learns
features. Its size follows ‖Δθ‖, which a depth rule's learning rate sets: under Adam
nonlin_rel ∝ L^(α−1), flat under CompleteP (α = 1) and shrinking like L^−½ under depth-μP
(Dey et al., arXiv 2505.01618). J·Δθ is the central difference (f(θ₀ + εΔθ) − f(θ₀ − εΔθ))/2ε,
in float64 so that its error stays far below the nonlinear part: forward-mode autograd has no
rule for the attention kernels. Only for runs with a depth (Probes' `laziness`): it costs four
forwards of every block per recorded step and a copy of every block's parameters."""

import contextlib
import copy
from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call

from .metrics import rms

EPSILON = 1e-3


def _tensor(output):
    return output[0] if isinstance(output, tuple) else output


def _double(value):
    """A block's argument in float64: tensors, and those inside tuples (Hugging Face's rotary cos, sin)."""
    if isinstance(value, torch.Tensor):
        return value.detach().double() if value.is_floating_point() else value
    if isinstance(value, tuple | list):
        return type(value)(_double(v) for v in value)
    return value


class Laziness:
    """Measured inside each watched forward, before the block runs: the parameters are then
    exactly those the forward uses, in muscale's loop and in a recorder's alike."""

    def __init__(self, blocks: list[tuple[str, nn.Module]], wanted: set[str], add: Callable, on: bool):
        self.add = add
        self.blocks = blocks if on and "nonlin_rel" in wanted else []
        # θ₀ as a float64 copy of each block: the copy runs without the probes' hooks, which
        # would otherwise record its forwards, and with the model's own (a depth rule's).
        self.copies = {name: copy.deepcopy(b).double().requires_grad_(False) for name, b in self.blocks}
        self.start = {name: dict(c.named_parameters()) for name, c in self.copies.items()}

    @contextlib.contextmanager
    def watch(self, step: int, training: bool = False):
        """At step 0 nothing has moved: no hooks."""
        handles = (
            []
            if step == 0
            else [b.register_forward_pre_hook(self._hook(n, training), with_kwargs=True) for n, b in self.blocks]
        )
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def _hook(self, name: str, training: bool):
        def hook(block, args, kwargs):
            if training and not torch.is_grad_enabled():
                return
            with torch.no_grad():
                self._measure(name, block, tuple(_double(a) for a in args), {k: _double(v) for k, v in kwargs.items()})

        return hook

    def _measure(self, name: str, block: nn.Module, args: tuple, kwargs: dict):
        start, twin = self.start[name], self.copies[name]
        delta = {k: p.detach().double() - start[k] for k, p in block.named_parameters()}

        def at(s: float) -> torch.Tensor:
            return _tensor(functional_call(twin, {k: start[k] + s * delta[k] for k in start}, args, kwargs))

        f0 = at(0.0)
        change = at(1.0) - f0
        linear = (at(EPSILON) - at(-EPSILON)) / (2 * EPSILON)
        # A block that has not moved has no nonlinear part either: 0, and no host sync to ask.
        moved = rms(change).clamp_min(torch.finfo(change.dtype).tiny)
        self.add(name, "block", "nonlin_rel", rms(change - linear) / moved)
