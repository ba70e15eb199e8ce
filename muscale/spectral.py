"""Top singular directions by power iteration, warm-started from the previous call's vector,
and spectral weight decay built on them. A trained matrix turns slowly, so a few
iterations per step from last step's vector keep up with it."""

import torch

COLD_ITERS = 16  # from a random vector: enough for a gap σ₂/σ₁ up to about 0.5
DECAY_ITERS = 2  # per step, from the previous step's vector


def power_iteration(w: torch.Tensor, v: torch.Tensor, iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`iters` rounds of v ← WᵀWv / ‖WᵀWv‖; returns σ₁ ≈ ‖WᵀWv‖ / ‖Wv‖ and the new v."""
    for _ in range(iters):
        u = torch.mv(w, v)
        x = torch.mv(w.T, u)
        norm = torch.linalg.vector_norm(x)
        v = x / norm.clamp_min(1e-30)
    return norm / torch.linalg.vector_norm(u).clamp_min(1e-30), v


class SpectralDecay:
    """W ← W − η·λ·σ₁·u₁v₁ᵀ after each optimizer step, for the matrices of every group that
    carries `spectral_decay` (λ, moved there from the group's own weight decay; η is the
    group's lr). Only the top singular value shrinks, by η·λ·σ₁, the rest of the spectrum
    is left alone. σ₁u₁v₁ᵀ = W v₁v₁ᵀ, so v₁ is all the iteration needs to keep. A tensor of
    more than two dims is decayed as the matrix (dim 0) × (the rest), as Muon treats it."""

    def __init__(self, groups: list[dict]):
        self.groups = [g for g in groups if "spectral_decay" in g]
        self._vec: dict[torch.Tensor, torch.Tensor] = {}
        self._gen: dict[torch.device, torch.Generator] = {}

    def _start(self, w: torch.Tensor) -> torch.Tensor:
        gen = self._gen.setdefault(w.device, torch.Generator(w.device).manual_seed(0))
        return torch.randn(w.shape[1], generator=gen, device=w.device, dtype=w.dtype)

    @torch.no_grad()
    def step(self):
        for group in self.groups:
            for p in group["params"]:
                w = p.flatten(1)
                v = self._vec.get(p)
                _, v = power_iteration(w, self._start(w) if v is None else v, COLD_ITERS if v is None else DECAY_ITERS)
                self._vec[p] = v
                w.addr_(torch.mv(w, v), v, alpha=-group["lr"] * group["spectral_decay"])
