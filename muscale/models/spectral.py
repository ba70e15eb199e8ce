"""Top singular values and directions, warm-started from the previous call's vector: the
power iteration (spectral weight decay, which needs u₁ and v₁ only roughly) and Lanczos
(the probes, which report σ₁). A trained matrix turns slowly, so a few rounds per step from
last step's vector keep up with it."""

import math

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


def top_singular(w: torch.Tensor, v: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """σ₁ and its right vector from `steps` rounds of Golub–Kahan–Lanczos bidiagonalization
    started at v, each round one product with W and one with Wᵀ, as a power iteration's.

    Why not the power iteration: a random or freshly trained matrix has σ₂/σ₁ close to 1,
    where the power iteration's error shrinks like (σ₂/σ₁)^(2k) and Lanczos' like a
    Chebyshev polynomial in the gap: at equal cost it gets σ₁ to a fraction of a percent
    where the power iteration is off by several. Bases are re-orthogonalized in full (they
    hold `steps` vectors); σ from the small bidiagonal is a lower bound on σ₁."""
    tiny = torch.finfo(w.dtype).tiny
    rights = [v / torch.linalg.vector_norm(v).clamp_min(tiny)]
    lefts, alphas, betas = [], [], []
    for j in range(steps):
        u = torch.mv(w, rights[j])
        if lefts:
            basis = torch.stack(lefts, 1)
            u = u - basis @ (basis.T @ u)
        alpha = torch.linalg.vector_norm(u)
        lefts.append(u / alpha.clamp_min(tiny))
        x = torch.mv(w.T, lefts[j])
        basis = torch.stack(rights, 1)
        x = x - basis @ (basis.T @ x)
        beta = torch.linalg.vector_norm(x)
        rights.append(x / beta.clamp_min(tiny))
        alphas.append(alpha)
        betas.append(beta)
    bidiag = torch.diag(torch.stack(alphas))
    if steps > 1:
        bidiag = bidiag + torch.diag(torch.stack(betas[:-1]), 1)
    sigma, top = finite_or_nan(bidiag, _top_pair)
    return sigma, torch.stack(rights[:steps], 1) @ top


def _top_pair(small: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    _, sigma, vh = torch.linalg.svd(small)
    return sigma[0], vh[0]


def finite_or_nan(small: torch.Tensor, solve):
    """`solve(small)`, NaN where `small` holds a non-finite entry: LAPACK raises on NaN, and a
    diverging run's matrices are where a probe meets one. Masked on the device, no sync."""
    finite = torch.isfinite(small).all()
    out = solve(torch.where(finite, small, torch.zeros_like(small)))
    nan = torch.tensor(math.nan, device=small.device, dtype=small.dtype)
    return tuple(torch.where(finite, o, nan) for o in out) if isinstance(out, tuple) else torch.where(finite, out, nan)


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
