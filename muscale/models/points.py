"""Probe points: identities a model's forward calls with tensors it already holds, so that
probes can measure quantities no module outputs (attention logits, the SSM time step).

A point changes no math and costs nothing unless a probe hooks it: `measure` (what is
recorded as the point's activation) and the functions `extras` names (further metrics) only
run inside a probe's hook, each only when its metric is asked for. A point's `role` names
what it measures."""

from collections.abc import Callable

import torch
from torch import nn


class ProbePoint(nn.Module):
    role = "other"

    def forward(self, *tensors: torch.Tensor):
        return tensors[0] if len(tensors) == 1 else tensors

    def measure(self, *tensors: torch.Tensor) -> torch.Tensor:
        return tensors[0]

    def extras(self) -> dict[str, Callable[..., torch.Tensor]]:
        """Further metrics by name, each a function of the tensors the point is called with."""
        return {}


class QKLogits(ProbePoint):
    """Called with the query and key the attention uses (B, H, T, head_dim), after rotary.
    Measures the causal pre-softmax logits q·kᵀ·scale, and the attention's mean entropy."""

    role = "attn_qk"

    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def _logits(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        if k.shape[1] != q.shape[1]:
            k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
        return (q.float() @ k.float().transpose(-1, -2)) * self.scale

    def measure(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """The logits a causal mask keeps, flattened: masked entries are not logits."""
        t = q.shape[-2]
        keep = torch.ones(t, t, dtype=torch.bool, device=q.device).tril()
        return self._logits(q, k)[..., keep]

    def extras(self) -> dict[str, Callable[..., torch.Tensor]]:
        return {"attn_entropy": self._entropy}

    def _entropy(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        t = q.shape[-2]
        mask = torch.ones(t, t, dtype=torch.bool, device=q.device).tril()
        logp = torch.log_softmax(self._logits(q, k).masked_fill(~mask, float("-inf")), dim=-1)
        entropy = -(logp.exp() * logp.masked_fill(~mask, 0.0)).sum(-1)
        return entropy.mean()


class SSMTimeStep(ProbePoint):
    """Called with dt after the softplus, (B, T, heads)."""

    role = "ssm_dt"

    def extras(self) -> dict[str, Callable[..., torch.Tensor]]:
        return {"act_mean": lambda dt: dt.float().mean()}
