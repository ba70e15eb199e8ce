"""What is measured, per module and step: one collector per target, composed.

Statistics stay on the device as 0-d tensors and are fetched in one transfer per recorded
step. Probes only read: hooks see detached outputs, weight statistics run under no_grad,
so the training step is bit-for-bit the one of a bare loop."""

import contextlib
import math

import torch
from torch import nn

from ..models import depth, lrm
from ..models.points import ProbePoint
from ..models.roles import role_of
from .activations import Activations
from .laziness import Laziness
from .matrices import Matrices
from .metrics import METRICS
from .multipliers import Multipliers
from .optimizer import OptimizerState


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


class Rows:
    """A recorded step's statistics, kept on the device until `fetch`."""

    def __init__(self):
        self.keys: list[tuple[str, str, str]] = []
        self.values: list[torch.Tensor] = []

    def add(self, module: str, role: str, metric: str, value: torch.Tensor):
        self.keys.append((module, role, metric))
        self.values.append(value.float())

    def clear(self):
        self.keys, self.values = [], []

    def fetch(self, step: int, pool=None) -> tuple[dict[str, list], bool]:
        """The rows as columns, and whether a value was non-finite: a diverging run's
        non-finite statistics are left out, the trainer stops the run there, and fits never
        see them. The one host transfer of the step. `pool(keys, values)` combines the
        stacked values with other processes' first (the recorder under torch.distributed)."""
        stacked = torch.stack(self.values) if self.values else None
        if pool is not None and stacked is not None:
            stacked = pool(self.keys, stacked)
        values = stacked.tolist() if stacked is not None else []
        keep = [i for i, v in enumerate(values) if math.isfinite(v)]
        keys, values = [self.keys[i] for i in keep], [values[i] for i in keep]
        nonfinite = len(keep) < len(self.values)
        self.clear()
        modules, roles, metrics = (list(column) for column in zip(*keys)) if keys else ([], [], [])
        return {
            "step": [step] * len(values),
            "module": modules,
            "role": roles,
            "metric": metrics,
            "value": values,
        }, nonfinite


class Probes:
    """`metrics` limits what is recorded (None: everything); losses are always recorded.
    `laziness`: measure each block's distance from its linearisation (laziness.py), which
    costs four forwards of every block per recorded step: for runs with a depth.
    Each collector computes what its wanted metrics need and nothing else: a spectral norm
    only for weight_spec, spec_ratio or update_spec. `optimizer` (an optim.Optimizer) is
    read for what it did: clip factor, Adam's state."""

    def __init__(self, model: nn.Module, metrics: tuple[str, ...] | None = None, optimizer=None, laziness=False):
        wanted = set(METRICS if metrics is None else metrics)
        self.rows = Rows()
        blocks = depth.blocks(model)
        self.layers = [(name, module, role_of(name, module)) for name, module in _probed(model)] + [
            (name, module, "block") for name, module in blocks
        ]
        self.laziness = Laziness(blocks, wanted, self.rows.add, laziness)
        self.activations = Activations(model, self.layers, wanted, self.rows.add)
        self.matrices = Matrices(self.layers, wanted, self.rows.add, next(model.parameters()).device)
        self.multipliers = Multipliers(model, self.layers, wanted, self.rows.add)
        self.optimizer = OptimizerState(optimizer, self.layers, wanted, self.rows.add)
        self.nonfinite = False

    @contextlib.contextmanager
    def watch(self, step: int, training: bool = False):
        """Record activation statistics of every forward pass inside the block as `step`;
        with `training`, only of those that build a graph (a user's training forward, not an
        evaluation loop run between two steps)."""
        with self.activations.watch(step, training), self.multipliers.watch(step), self.laziness.watch(step, training):
            yield

    def snapshot(self):
        """Keep W before an optimizer step whose result will be recorded, for update norms."""
        self.matrices.snapshot()

    @torch.no_grad()
    def measure(self, step: int):
        """The state's statistics at `step`: matrices and their updates, multipliers, the
        optimizer's state. Kept on the device until `fetch`."""
        self.matrices.collect(step)
        self.multipliers.collect()
        self.optimizer.collect(step)

    def fetch(self, step: int, pool=None, **losses: torch.Tensor) -> dict[str, list]:
        """Every statistic of `step` kept so far as columns, `losses` by metric name."""
        for metric, value in losses.items():
            self.rows.add("loss", "loss", metric, torch.as_tensor(value).detach())
        columns, self.nonfinite = self.rows.fetch(step, pool)
        return columns

    def collect(self, step: int, **losses: torch.Tensor) -> dict[str, list]:
        """All statistics of `step` as columns, `losses` by metric name."""
        self.measure(step)
        return self.fetch(step, **losses)
