"""One run: build the model of a spec, train it, let probes observe, return long records."""

import contextlib
from pathlib import Path

import polars as pl
import torch
from torch import nn

from ..config.spec import RunSpec
from ..measure.probes import Probes
from ..models import losses, modes, optim
from ..models.data import PROBE_INDEX
from ..models.families import resolve
from . import checkpoint

# The records' columns: the run's keys, then one row per statistic. Series built straight from
# lists: polars' expression engine (a literal column per key) costs more than a small run's step.
RUN_KEYS = (
    "run_id",
    "family",
    "mode",
    "optimizer",
    "lr",
    "weight_decay",
    "width",
    "seed",
    "horizon",
    "depth",
    "depth_rule",
)
SCHEMA = {
    "run_id": pl.String,
    "family": pl.String,
    "mode": pl.String,
    "optimizer": pl.String,
    "lr": pl.Float64,
    "weight_decay": pl.Float64,
    "width": pl.Int32,
    "seed": pl.Int32,
    "horizon": pl.String,
    "depth": pl.Int32,  # null: the family's own depth, no depth axis
    "depth_rule": pl.String,  # the depth rule, alpha=A for a general one (config/depth.py)
    "step": pl.Int64,
    "module": pl.String,
    "role": pl.String,
    "metric": pl.String,
    "value": pl.Float64,
}


def pick_device(device: str) -> torch.device:
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


class _Loss:
    """The run's loss on the model's output (losses.output_of), checked against the targets'
    shape at the first call, so a model that does not fit its data fails in one line."""

    def __init__(self, spec: RunSpec, model: nn.Module):
        self.spec, self.model, self.fn, self.checked = spec, model, losses.resolve(spec.loss), False

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        output = losses.output_of(self.model(x))
        if not self.checked:
            losses.check(self.spec.loss, self.spec.family, output, y)
            self.checked = True
        return self.fn(output, y)


def _eval_loss(loss: _Loss, family, spec: RunSpec, device: torch.device) -> torch.Tensor:
    """Mean loss on held-out batches (indices below the probe batch's), on the device."""
    values = []
    for k in range(spec.eval_batches):
        x, y = (t.to(device) for t in family.batch(PROBE_INDEX - 1 - k, spec.batch_size, spec.seq_len))
        values.append(loss(x, y))
    return torch.stack(values).mean()


def run(spec: RunSpec, device: torch.device | str = "cpu", model_path: Path | None = None) -> pl.DataFrame:
    """Short horizon: the training forward on the fixed batch is the measurement. Long
    horizon: train on streamed batches, measure on the fixed batch at recorded steps.

    A run whose loss or a recorded statistic turns non-finite stops at that recorded step
    with a `diverged` row (the probes leave the non-finite values out); with `eval_batches`,
    held-out loss is recorded too, and so does a run whose held-out loss rises above
    `diverge_factor` × its start: a diverging learning rate is a result of a sweep, not a
    crash. With `model_path`, the trained model is saved there as a checkpoint."""
    device = pick_device(str(device))
    family = resolve(spec.family, spec.batch, spec.data)
    model, multipliers = modes.build(spec, family)
    model.to(device).train()
    opt = optim.build(spec, model, multipliers)
    compute = _Loss(spec, model)
    probes = Probes(model, spec.metrics, opt, laziness=spec.depth is not None)
    fixed = [t.to(device) for t in family.batch(PROBE_INDEX, spec.batch_size, spec.seq_len)]
    recorded = set(spec.record_steps)
    columns: dict[str, list] = {"step": [], "module": [], "role": [], "metric": [], "value": []}
    train_losses, start, diverged = [], None, False
    for step in range(spec.steps + 1):
        measured = {}
        if spec.horizon == "short":
            with probes.watch(step) if step in recorded else contextlib.nullcontext():
                loss = compute(*fixed)
            measured["loss"] = loss
        elif step in recorded:
            model.eval()
            with torch.no_grad():
                with probes.watch(step):
                    measured["loss"] = compute(*fixed)
                if spec.eval_batches:
                    measured["eval_loss"] = _eval_loss(compute, family, spec, device)
            model.train()
        if step in recorded:
            rows = probes.collect(step, **measured)
            for key, values in rows.items():
                columns[key].extend(values)
            diverged = probes.nonfinite
            if "eval_loss" in measured and not diverged:
                value = rows["value"][rows["metric"].index("eval_loss")]
                start = value if start is None else start
                diverged = value > spec.diverge_factor * start
        if step == spec.steps or diverged:
            break
        if spec.horizon != "short":
            x, y = (t.to(device) for t in family.batch(spec.data_offset + step, spec.batch_size, spec.seq_len))
            loss = compute(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if spec.eval_batches:  # the training losses are recorded only beside held-out ones
            train_losses.append(loss.detach())
        if step + 1 in recorded:
            probes.snapshot()
        opt.step()
    if model_path is not None:
        checkpoint.save(model_path, spec, model)
    if spec.eval_batches or diverged:
        _append_losses(columns, torch.stack(train_losses).tolist() if train_losses else [], diverged, step)
    n = len(columns["step"])
    keys = {name: [getattr(spec, name)] * n for name in RUN_KEYS}
    return pl.DataFrame([pl.Series(name, values, dtype=SCHEMA[name]) for name, values in (keys | columns).items()])


def _append_losses(columns: dict[str, list], train_losses: list[float], diverged: bool, last_step: int):
    """The training loss of every step (fetched once, at the end) and the run's fate."""
    n = len(train_losses)
    for key, values in (
        ("step", list(range(n)) + [last_step]),
        ("module", ["loss"] * (n + 1)),
        ("role", ["loss"] * (n + 1)),
        ("metric", ["train_loss"] * n + ["diverged"]),
        ("value", train_losses + [float(diverged)]),
    ):
        columns[key].extend(values)
