"""What is measured, per module and step.

Statistics stay on the device as 0-d tensors and are fetched in one transfer per recorded
step. Probes only read: hooks see detached outputs, weight statistics run under no_grad,
so the training step is bit-for-bit the one of a bare loop."""

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..models import lrm
from ..models.points import ProbePoint
from ..models.roles import is_conv1d, role_of
from ..models.spectral import finite_or_nan, top_singular
from . import symmetry

# Lanczos rounds (one product with W and one with Wᵀ each): from a random vector, from the
# last recorded step's top vector for W, and for W's update (benchmarks/spectral_accuracy.py:
# within 2.4% of an exact SVD, where the power iteration needed 16/4/8 rounds for 3.4%).
SPECTRAL_COLD, SPECTRAL_WARM, SPECTRAL_UPDATE = 12, 3, 4
# Below this smaller dimension an exact answer costs less than Lanczos' error is worth.
EXACT_SPECTRAL_BELOW = 64


def _probed(model: nn.Module):
    """Modules that own parameters, and probe points, less the plumbing lrm adds. A block
    that owns only vectors around layers of its own (a Mamba2 mixer's A_log, dt_bias, D) is
    left out: its output is its last layer's, which is probed already."""
    for name, module in model.named_modules():
        if not name or "parametrizations" in name or isinstance(module, lrm.MULTIPLIERS):
            continue
        if isinstance(module, ProbePoint) or lrm.matrix(module) is not None:
            yield name, module
            continue
        own = list(module.parameters(recurse=False))
        block = all(p.ndim < 2 for p in own) and any(True for c in module.children() for _ in c.parameters())
        if own and not block:
            yield name, module


def rms(t: torch.Tensor) -> torch.Tensor:
    return t.square().mean().sqrt()


@dataclass(frozen=True)
class Metric:
    """A recorded statistic: its group (a group none of whose metrics is wanted costs nothing),
    what it is a statistic of, and for a statistic of that one tensor its function. Where `fn`
    is None the metric needs more than the tensor (state kept between steps, the layer's
    input, a probe point's own measure), and Probes or the probe point computes it."""

    group: str  # activation, matrix, multiplier or optimizer
    of: str  # output, point, matrix, update, scalar, row, col, pair or optimizer
    fn: Callable[[torch.Tensor], torch.Tensor] | None = None


VECTOR_STATISTICS = {"rms": rms, "mean": torch.mean, "min": torch.min, "max": torch.max}
# Every metric, as mup's FDICT holds its statistics: a new statistic of a layer's output, its
# matrix, its update or a multiplier vector is one row with its function.
METRIC_TABLE = {
    "act_l1": Metric("activation", "output", lambda y: y.abs().mean()),  # mean |y|, mup's l1
    "act_rms": Metric("activation", "output", rms),
    "dact_rms": Metric("activation", "output"),  # RMS of y_t − y_0 on the same batch
    "act_max": Metric("activation", "point"),  # largest |y| at a probe point (QK logits, SSM dt)
    "act_mean": Metric("activation", "point"),  # the SSM's mean dt
    "attn_entropy": Metric("activation", "point"),  # mean entropy of the causal attention rows
    # What a multiplied layer would output without its multiplier (x·Wᵀ with the trained W), and
    # the QK logits without the query's and key's scalars: raw ∝ d, multiplier ∝ d⁻¹, product flat.
    "raw_act_rms": Metric("activation", "output"),
    "weight_fro": Metric("matrix", "matrix", torch.linalg.vector_norm),
    # ‖W‖_F / sqrt(numel): the per-entry size the noise–WD equilibrium fixes.
    "weight_rms": Metric("matrix", "matrix", lambda w: torch.linalg.vector_norm(w) / w.numel() ** 0.5),
    "weight_spec": Metric("matrix", "matrix"),  # σ₁(W): exact for thin matrices, else Lanczos, warm-started
    "spec_ratio": Metric("matrix", "matrix"),  # σ₁(W) / sqrt(fan_out / fan_in), flat under μP
    "update_fro": Metric("matrix", "update", torch.linalg.vector_norm),  # of the last optimizer step
    "update_spec": Metric("matrix", "update"),
    "mult_scalar": Metric("multiplier", "scalar"),
    # log(a/b) of a symmetric pair (symmetry.py) since step 0, and a·b, the one combination the
    # output sees.
    "mult_drift": Metric("multiplier", "pair"),
    "mult_path": Metric("multiplier", "pair"),
    # A vector multiplier's statistics by the layer's side: row scales its outputs, col its inputs.
    **{
        f"mult_{side}_{stat}": Metric("multiplier", side, fn)
        for side in ("row", "col")
        for stat, fn in VECTOR_STATISTICS.items()
    },
    # The last step's clip factor min(1, NORM/‖g‖) (module and role "optimizer"), and per layer
    # the share of entries where Adam's ε outweighs sqrt(v̂).
    "clip_factor": Metric("optimizer", "optimizer"),
    "eps_share": Metric("optimizer", "optimizer"),
}
METRICS = tuple(METRIC_TABLE)


def statistics(of: str) -> list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]]:
    """The metrics that are one function of a tensor of kind `of`, in table order."""
    return [(m, d.fn) for m, d in METRIC_TABLE.items() if d.of == of and d.fn is not None]


_VECTOR = object()  # a QK point whose query or key has a vector multiplier: no exact raw logits


def _raw_scale(point: str, modules: dict[str, nn.Module]):
    """The scalar multipliers of a QK point's sibling query and key (an empty list when they
    have none), or _VECTOR when either has a vector one, which no scalar undoes."""
    parent = point.rpartition(".")[0]
    scalars = []
    for name, module in modules.items():
        if name.rpartition(".")[0] != parent or role_of(name, module) not in ("attn_q", "attn_k"):
            continue
        if hasattr(module, "parametrizations"):
            mult = module.parametrizations.weight[0]
            if not isinstance(mult, lrm.ScalarMultiplier):
                return _VECTOR
            scalars.append(mult)
    return scalars


class Probes:
    """`metrics` limits what is recorded (None: everything); losses are always recorded.
    A group none of whose metrics is wanted costs nothing, spectral norms included.
    `optimizer` (an optim.Optimizer) is read for what it did: clip factor, Adam's state."""

    def __init__(self, model: nn.Module, metrics: tuple[str, ...] | None = None, optimizer=None):
        self.wanted = set(METRICS if metrics is None else metrics)
        self.groups = {d.group for m, d in METRIC_TABLE.items() if m in self.wanted}
        self._output, self._matrix, self._update, self._row, self._col = (
            [(m, fn) for m, fn in statistics(of) if m in self.wanted]
            for of in ("output", "matrix", "update", "row", "col")
        )
        self.optimizer = optimizer
        self.layers = [(name, module, role_of(name, module)) for name, module in _probed(model)]
        self.matrices = []
        for name, module, role in self.layers:
            w = lrm.matrix(module)
            if w is not None:
                stored_in_out = isinstance(module, nn.Embedding) or is_conv1d(module)
                fan_out, fan_in = (w.shape[1], w.shape[0]) if stored_in_out else w.shape
                self.matrices.append((name, role, w, fan_out, fan_in))
        self.mults = [
            (name, role, module.parametrizations.weight[0])
            for name, module, role in self.layers
            if hasattr(module, "parametrizations")
        ]
        self.raw = {
            name: _raw_scale(name, dict(model.named_modules())) for name, _, role in self.layers if role == "attn_qk"
        } | {name: None for name, _, _ in self.mults}
        self.model = model
        self.pairs = symmetry.pairs(model) if "mult_drift" in self.wanted else []
        self._drift0: dict[str, torch.Tensor] = {}
        adam = {id(p): g for g in (optimizer.param_groups if optimizer else []) if "betas" in g for p in g["params"]}
        self.adam = []  # each layer's own Adam-trained tensors (matrix, bias, gain) with their group
        for name, module, role in self.layers:
            own = {id(p): p for p in (lrm.matrix(module), *module.parameters(recurse=False)) if p is not None}
            tensors = [(p, adam[i]) for i, p in own.items() if i in adam]
            if tensors:
                self.adam.append((name, role, tensors))
        device = next(model.parameters()).device
        self._gen = torch.Generator(device).manual_seed(0)
        self._vec: dict[str, torch.Tensor] = {}
        self._act0: dict[str, torch.Tensor] = {}
        self._prev: dict[str, torch.Tensor] = {}
        self._keys: list[tuple[str, str, str]] = []
        self._vals: list[torch.Tensor] = []
        self._last_step = -1
        self.nonfinite = False

    def _add(self, module: str, role: str, metric: str, value: torch.Tensor):
        if metric not in self.wanted and role != "loss":
            return
        self._keys.append((module, role, metric))
        self._vals.append(value.float())

    @contextlib.contextmanager
    def watch(self, step: int):
        """Record activation statistics of every forward pass inside the block as `step`."""

        def hook_for(name, role):
            def hook(module, args, output):
                point = isinstance(module, ProbePoint)
                if point:
                    args = tuple(a.detach() for a in args)
                    output = module.measure(*args)
                if not isinstance(output, torch.Tensor):
                    return
                y = output.detach().float()
                for metric, fn in self._output:
                    self._add(name, role, metric, fn(y))
                if name in self.raw and "raw_act_rms" in self.wanted:
                    raw = self._raw_act(name, module, args, y)
                    if raw is not None:
                        self._add(name, role, "raw_act_rms", rms(raw))
                if point:
                    self._add(name, role, "act_max", y.abs().max())
                    for metric, value in module.extras(*args).items():
                        self._add(name, role, metric, value)
                if step == 0:
                    self._act0[name] = y.clone()
                elif name in self._act0 and self._act0[name].shape == y.shape:
                    self._add(name, role, "dact_rms", rms(y - self._act0[name]))

            return hook

        layers = self.layers if "activation" in self.groups else []
        handles = [m.register_forward_hook(hook_for(n, r)) for n, m, r in layers]
        trace = symmetry.GainTrace(self.model) if step == 0 and self.pairs else None
        try:
            yield
        finally:
            for h in handles:
                h.remove()
            if trace is not None:
                self.pairs += trace.finish()

    def _raw_act(self, name: str, module: nn.Module, args: tuple, y: torch.Tensor) -> torch.Tensor | None:
        """A multiplied layer's output with its trained W alone; QK logits over s_q·s_k."""
        scalars = self.raw[name]
        if scalars is None:
            x, w = args[0].detach().float(), lrm.matrix(module).detach().float()
            return x @ w if is_conv1d(module) else torch.nn.functional.linear(x, w)  # Conv1D stores W (in, out)
        if scalars is _VECTOR:
            return None
        return y / torch.stack([s.scale() for s in scalars]).prod() if scalars else y

    @torch.no_grad()
    def snapshot(self):
        """Keep W before an optimizer step whose result will be recorded, for update norms."""
        if "matrix" not in self.groups:
            return
        for name, _, w, _, _ in self.matrices:
            if name in self._prev:
                self._prev[name].copy_(w)
            else:
                self._prev[name] = w.detach().clone()

    def _spectral(self, key: str, w: torch.Tensor, steps: int, toward: torch.Tensor | None = None) -> torch.Tensor:
        """Largest singular value: exact for thin matrices, else Lanczos from the key's
        previous top vector (plus `toward`, where the top vector is turning to)."""
        if min(w.shape) <= EXACT_SPECTRAL_BELOW:
            # The top eigenvalue of the small Gram matrix: exact, and cheaper than an SVD.
            gram = w.T @ w if w.shape[1] <= w.shape[0] else w @ w.T
            return finite_or_nan(gram, lambda g: torch.linalg.eigvalsh(g)[-1].clamp_min(0).sqrt())
        v = self._vec.get(key)
        if v is None:
            v = torch.randn(w.shape[1], generator=self._gen, device=w.device, dtype=w.dtype)
            steps = SPECTRAL_COLD
        elif toward is not None:
            # Singular vectors have no sign: align before adding, or the two could cancel.
            v = v + toward * torch.where(torch.dot(v, toward) < 0, -1.0, 1.0)
        sigma, self._vec[key] = top_singular(w, v, steps)
        return sigma

    def _eps_share(self, tensors: list[tuple[torch.Tensor, dict]]) -> torch.Tensor | None:
        """Share of entries with sqrt(v̂) < ε, v̂ = exp_avg_sq / (1 − β₂^t) read from Adam's state,
        tested as exp_avg_sq < ε²·(1 − β₂^t): one pass over the state instead of four."""
        below, total = [], 0
        for p, group in tensors:
            state = self.optimizer.state.get(p, {})
            if "exp_avg_sq" in state:
                threshold = group["eps"] ** 2 * (1 - group["betas"][1] ** state["step"])
                below.append(torch.count_nonzero(state["exp_avg_sq"] < threshold))
                total += p.numel()
        return torch.stack(below).sum() / total if below else None

    @torch.no_grad()
    def collect(self, step: int, **losses: torch.Tensor) -> dict[str, list]:
        """All statistics of `step` as columns, `losses` by metric name; the one host
        transfer of the step."""
        matrices = self.matrices if "matrix" in self.groups else []
        for name, role, w, fan_out, fan_in in matrices:
            w = w.detach().float()
            toward = None
            if step > 0 and name in self._prev:
                prev = self._prev[name]
                # prev is spent here (snapshot() refills it before the next recorded step):
                # the update is written over it rather than into a fresh matrix.
                delta = torch.sub(w, prev, out=prev) if prev.dtype == w.dtype else w - prev.float()
                for metric, fn in self._update:
                    self._add(name, role, metric, fn(delta))
                # Adam's momentum keeps consecutive updates aligned: the previous step's top
                # vector is a good start; updates recorded far apart start nearly cold.
                steps = SPECTRAL_UPDATE if self._last_step == step - 1 else SPECTRAL_COLD
                self._add(name, role, "update_spec", self._spectral(name + "/update", delta, steps))
                toward = self._vec.get(name + "/update")
            spec = self._spectral(name, w, SPECTRAL_WARM, toward)
            for metric, fn in self._matrix:
                self._add(name, role, metric, fn(w))
            self._add(name, role, "weight_spec", spec)
            self._add(name, role, "spec_ratio", spec / (fan_out / fan_in) ** 0.5)
        for name, role, mult in self.mults:
            if isinstance(mult, lrm.ScalarMultiplier):
                self._add(name, role, "mult_scalar", mult.value(mult.scalar).detach())
                continue
            for side, vec in mult.sides().items():
                vec = vec.detach().float()
                for metric, fn in self._row if side == "row" else self._col:
                    self._add(name, role, metric, fn(vec))
        for pair in self.pairs:
            ratio = pair.log_ratio()
            self._add(pair.name, pair.role, "mult_drift", ratio - self._drift0.setdefault(pair.name, ratio))
            if not pair.name.endswith("[mult~W]"):
                self._add(pair.name, pair.role, "mult_path", pair.a() * pair.b())
        for name, role, tensors in self.adam if "eps_share" in self.wanted else []:
            share = self._eps_share(tensors)
            if share is not None:
                self._add(name, role, "eps_share", share)
        if step > 0 and self.optimizer is not None and self.optimizer.clip_factor is not None:
            self._add("optimizer", "optimizer", "clip_factor", self.optimizer.clip_factor)
        for metric, value in losses.items():
            self._add("loss", "loss", metric, value.detach())
        self._last_step = step
        # A diverging run's non-finite statistics are left out (and `nonfinite` says so): the
        # trainer stops the run there, and fits never see them.
        values = torch.stack(self._vals).tolist() if self._vals else []
        keep = [i for i, v in enumerate(values) if math.isfinite(v)]
        self.nonfinite = len(keep) < len(values)
        keys, values = [self._keys[i] for i in keep], [values[i] for i in keep]
        self._keys, self._vals = [], []
        modules, roles, metrics = (list(column) for column in zip(*keys)) if keys else ([], [], [])
        return {"step": [step] * len(values), "module": modules, "role": roles, "metric": metrics, "value": values}
