"""Which matrices are scale-invariant: the model's output does not move when W alone is scaled.

The loss of such a matrix (one followed by a normalization without gain, say) cannot see
‖W‖, so its gradient is orthogonal to W and, under AdamW, only gradient noise and weight
decay set its norm: ‖W‖ ∝ sqrt(η/λ), the noise–weight-decay equilibrium. Whether a matrix
is one is measured on the model rather than declared by its family, so user families are
classified too: W is scaled by 2 and by ½ (exactly, powers of two) and the outputs on a
batch compared. A normalization's ε makes the invariance approximate (a relative change
near 1e-5 at init for the mlp's LayerNorm); a matrix the output sees changes it by order 1."""

import torch
from torch import nn

from ..models import lrm

TOLERANCE = 1e-3  # largest relative change of the output that still counts as invariant
FACTORS = (2.0, 0.5)


@torch.no_grad()
def output_change(model: nn.Module, inputs: torch.Tensor) -> dict[str, float]:
    """Per matrix (by module name): the largest change of the output, relative to the
    output's largest entry, when that matrix alone is scaled by 2 or by ½."""
    model.eval()
    reference = model(inputs)
    scale = reference.abs().max()
    changes = {}
    for name, module in model.named_modules():
        w = lrm.matrix(module)
        if w is None:
            continue
        worst = 0.0
        for factor in FACTORS:
            w.mul_(factor)
            worst = max(worst, float((model(inputs) - reference).abs().max() / scale))
            w.div_(factor)
        changes[name] = worst
    return changes
