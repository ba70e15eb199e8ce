"""One run: build the model of a spec, train it, let probes observe, return long records."""

import contextlib

import polars as pl
import torch
import torch.nn.functional as F

from . import modes, optim
from .data import PROBE_INDEX
from .families import resolve
from .probes import Probes
from .spec import RunSpec


def pick_device(device: str) -> torch.device:
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def _loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(output.reshape(-1, output.shape[-1]).float(), target.reshape(-1))


def run(spec: RunSpec, device: torch.device | str = "cpu") -> pl.DataFrame:
    """Short horizon: the training forward on the fixed batch is the measurement. Long
    horizon: train on streamed batches, measure on the fixed batch at recorded steps."""
    device = pick_device(str(device))
    family = resolve(spec.family, spec.batch)
    model, multipliers = modes.build(spec, family)
    model.to(device).train()
    opt = optim.build(spec, model, multipliers)
    probes = Probes(model)
    fixed = [t.to(device) for t in family.batch(PROBE_INDEX, spec.batch_size, spec.seq_len)]
    recorded = set(spec.record_steps)
    columns: dict[str, list] = {"step": [], "module": [], "role": [], "metric": [], "value": []}
    for step in range(spec.steps + 1):
        if spec.horizon == "short":
            with probes.watch(step) if step in recorded else contextlib.nullcontext():
                loss = _loss(model(fixed[0]), fixed[1])
            measured = loss
        elif step in recorded:
            model.eval()
            with torch.no_grad(), probes.watch(step):
                measured = _loss(model(fixed[0]), fixed[1])
            model.train()
        if step in recorded:
            for key, values in probes.collect(step, measured).items():
                columns[key].extend(values)
        if step == spec.steps:
            break
        if spec.horizon == "long":
            x, y = (t.to(device) for t in family.batch(step, spec.batch_size, spec.seq_len))
            loss = _loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if step + 1 in recorded:
            probes.snapshot()
        opt.step()
    keys = {"run_id": spec.run_id, "family": spec.family, "mode": spec.mode, "optimizer": spec.optimizer,
            "lr": spec.lr, "weight_decay": spec.weight_decay, "width": spec.width, "seed": spec.seed,
            "horizon": spec.horizon}
    frame = pl.DataFrame(columns, schema={"step": pl.Int64, "module": pl.String, "role": pl.String,
                                          "metric": pl.String, "value": pl.Float64})
    return frame.with_columns(**{k: pl.lit(v) for k, v in keys.items()}).select(*keys, *columns)

