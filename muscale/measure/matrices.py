"""Norms of every layer's matrix and of its last recorded update, spectral ones included."""

from collections.abc import Callable

import torch
from torch import nn

from ..models import lrm
from ..models.roles import is_conv1d
from ..models.spectral import finite_or_nan, top_singular
from .metrics import any_of, statistics
from .shards import whole

# Lanczos rounds (one product with W and one with Wᵀ each): from a random vector, from the
# last recorded step's top vector for W, and for W's update (benchmarks/spectral_accuracy.py:
# within 2.4% of an exact SVD, where the power iteration needed 16/4/8 rounds for 3.4%).
SPECTRAL_COLD, SPECTRAL_WARM, SPECTRAL_UPDATE = 12, 3, 4
# Below this smaller dimension an exact answer costs less than Lanczos' error is worth.
EXACT_SPECTRAL_BELOW = 64
# σ₁(W) starts from its last top vector turned toward the update's, so it needs the update's σ₁.
WEIGHT_TOP = {"weight_spec", "spec_ratio"}
UPDATE_TOP = {"update_spec"} | WEIGHT_TOP


class TopSingular:
    """σ₁ of a matrix or of its update, each warm-started from its own last top vector. The
    random start vectors are drawn up front in one order (every matrix's, then every
    update's), so that one σ₁ does not depend on which others are measured."""

    def __init__(self, shapes: dict[str, torch.Size], device: torch.device):
        gen = torch.Generator(device).manual_seed(0)
        self._start = {
            key: torch.randn(shape[1], generator=gen, device=device, dtype=torch.float32)
            for key, shape in shapes.items()
            if min(shape) > EXACT_SPECTRAL_BELOW
        }
        self.top: dict[str, torch.Tensor] = {}

    def sigma(self, key: str, w: torch.Tensor, steps: int, toward: torch.Tensor | None = None) -> torch.Tensor:
        """Largest singular value: exact for thin matrices, else Lanczos from the key's
        previous top vector (plus `toward`, where the top vector is turning to)."""
        if min(w.shape) <= EXACT_SPECTRAL_BELOW:
            # The top eigenvalue of the small Gram matrix: exact, and cheaper than an SVD.
            gram = w.T @ w if w.shape[1] <= w.shape[0] else w @ w.T
            return finite_or_nan(gram, lambda g: torch.linalg.eigvalsh(g)[-1].clamp_min(0).sqrt())
        v = self.top.get(key)
        if v is None:
            v, steps = self._start[key], SPECTRAL_COLD
        elif toward is not None:
            # Singular vectors have no sign: align before adding, or the two could cancel.
            v = v + toward * torch.where(torch.dot(v, toward) < 0, -1.0, 1.0)
        sigma, self.top[key] = top_singular(w, v, steps)
        return sigma


class Matrices:
    """Every probed layer's matrix W, with its fans. The update is W after the optimizer
    step less the copy `snapshot` kept before it: both are made only when an update metric
    or σ₁(W) is wanted, and σ₁ only for the metrics of UPDATE_TOP."""

    def __init__(self, layers: list[tuple[str, nn.Module, str]], wanted: set[str], add: Callable, device: torch.device):
        self.wanted, self.add = wanted, add
        self.layers = []
        for name, module, role in layers if any_of("matrix", wanted) else []:
            w = lrm.matrix(module)
            if w is not None:
                stored_in_out = isinstance(module, nn.Embedding) or is_conv1d(module)
                fan_out, fan_in = (w.shape[1], w.shape[0]) if stored_in_out else w.shape
                self.layers.append((name, role, w, fan_out, fan_in))
        self.of_matrix, self.of_update = statistics("matrix", wanted), statistics("update", wanted)
        self.weight_top, self.update_top = bool(WEIGHT_TOP & wanted), bool(UPDATE_TOP & wanted)
        self.updates = self.update_top or bool(self.of_update)
        shapes = {
            **{name: w.shape for name, _, w, _, _ in self.layers},
            **{name + "/update": w.shape for name, _, w, _, _ in self.layers},
        }
        self.spectral = TopSingular(shapes, device) if self.update_top else None
        self._prev: dict[str, torch.Tensor] = {}
        self._last_step = -1

    @torch.no_grad()
    def snapshot(self):
        """Keep W before an optimizer step whose result will be recorded (a sharded W as its
        shard: it is gathered only at the recorded step)."""
        for name, _, w, _, _ in self.layers if self.updates else []:
            if name in self._prev:
                self._prev[name].copy_(w)
            else:
                self._prev[name] = w.detach().clone()

    def collect(self, step: int):
        for name, role, w, fan_out, fan_in in self.layers:
            w = whole(w.detach()).float()
            toward = None
            if step > 0 and name in self._prev:
                toward = self._update(name, role, w, step)
            if self.weight_top:
                spec = self.spectral.sigma(name, w, SPECTRAL_WARM, toward)
            for metric, fn in self.of_matrix:
                self.add(name, role, metric, fn(w))
            if "weight_spec" in self.wanted:
                self.add(name, role, "weight_spec", spec)
            if "spec_ratio" in self.wanted:
                self.add(name, role, "spec_ratio", spec / (fan_out / fan_in) ** 0.5)
        self._last_step = step

    def _update(self, name: str, role: str, w: torch.Tensor, step: int) -> torch.Tensor | None:
        """Records the update's metrics; returns its top vector, where σ₁(W) will turn to."""
        prev = whole(self._prev[name])
        # prev is spent here (snapshot() refills it before the next recorded step): the
        # update is written over it rather than into a fresh matrix.
        delta = torch.sub(w, prev, out=prev) if prev.dtype == w.dtype else w - prev.float()
        for metric, fn in self.of_update:
            self.add(name, role, metric, fn(delta))
        if not self.update_top:
            return None
        # Adam's momentum keeps consecutive updates aligned: the previous step's top vector
        # is a good start; updates recorded far apart start nearly cold.
        steps = SPECTRAL_UPDATE if self._last_step == step - 1 else SPECTRAL_COLD
        sigma = self.spectral.sigma(name + "/update", delta, steps)
        if "update_spec" in self.wanted:
            self.add(name, role, "update_spec", sigma)
        return self.spectral.top.get(name + "/update")
