"""muscale's probes on a user's own training loop, writing the records muscale's loop writes,
so that a directory of such runs is fitted, reported and gated like a coordinate check
(`muscale fit runs/`, recorded.py).

Step t's records describe the model after t optimizer steps: its matrices W_t, the update
W_t − W_{t−1}, and the activations of a forward that sees W_t: the training forward of
iteration t, or, with a probe batch, a forward on it. `step(t)` comes after iteration t's
optimizer step, so the next recorded step is prepared there (its weights measured, the hooks
armed or the probe run) and fetched, in one host transfer, at the call that brings its loss.
An unrecorded step costs two set lookups."""

import contextlib
import json
import time
from pathlib import Path

import polars as pl
import torch
from torch import nn

from ..config.spec import MODE_TABLE
from ..errors import InputError
from ..measure.metrics import METRICS, POOLED
from ..measure.probes import Probes
from ..models import lrm
from . import store
from .train import RUN_KEYS, SCHEMA

RUN_FILE = "run.json"
# Fetched steps are written at most this often, and at close: a crash loses at most the
# last FLUSH_SECONDS of records, and a run recording every step does not fsync every step.
FLUSH_SECONDS = 30.0
# Log-spaced by default: every step up to 8, then four per doubling (10, 11, 13, 16, 19, …),
# about fifty records over ten thousand steps.
PER_OCTAVE = 4
LAST_STEP = 2**40


def held_by(run_dir: Path) -> str | None:
    """What makes `run_dir` unfit for a new run (it holds one already), or None."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        return None
    try:
        held = json.loads(path.read_text(encoding="utf-8"))
        return f"{run_dir} already holds a run (width {held['width']}, seed {held['seed']}, mode {held['mode']})"
    except (ValueError, KeyError):
        return f"{run_dir} already holds a {RUN_FILE}"


def write_meta(run_dir: Path, meta: dict) -> None:
    store.write_atomic(Path(run_dir) / RUN_FILE, json.dumps(meta, indent=1))


def write_records(run_dir: Path, frame: pl.DataFrame) -> None:
    """A file of records, named by its first step, written atomically and fsynced."""
    with store.atomic_path(Path(run_dir) / "records" / f"steps-{frame['step'].min():09d}.parquet") as tmp:
        frame.write_parquet(tmp)


def log_spaced(per_octave: int = PER_OCTAVE, last: int = LAST_STEP) -> frozenset[int]:
    steps, k = {0}, 0
    while (s := round(2 ** (k / per_octave))) <= last:
        steps.add(s)
        k += 1
    return frozenset(steps)


def schedule(every: int | None, steps) -> tuple[frozenset[int] | range, str]:
    """The recorded steps and how run.json names them: a given list, every `every` steps, or log-spaced."""
    if steps is not None and every is not None:
        raise InputError("every", "both every= and steps= were given", "give one of them")
    if steps is not None:
        listed = sorted({int(s) for s in steps})
        if not listed or listed[0] < 0:
            raise InputError("steps", f"{list(steps)} is empty or has a negative step", "list steps ≥ 0")
        return frozenset(listed), "steps " + ",".join(map(str, listed))
    if every is not None:
        if int(every) < 1:
            raise InputError("every", f"{every} is not positive", "record every N ≥ 1 steps")
        return range(0, LAST_STEP, int(every)), f"every {int(every)}"
    return log_spaced(), f"log-spaced, {PER_OCTAVE} per doubling"


class _Ranks:
    """This process's place under torch.distributed (rank 0 of 1 without it)."""

    def __init__(self):
        on = torch.distributed.is_available() and torch.distributed.is_initialized()
        self.rank = torch.distributed.get_rank() if on else 0
        self.size = torch.distributed.get_world_size() if on else 1

    def agree(self, meta: dict) -> None:
        """Every rank must record the same run; a mismatch is one line on every rank, before
        any collective could wait on a rank that differs."""
        if self.size == 1:
            return
        seen: list = [None] * self.size
        torch.distributed.all_gather_object(seen, meta)
        for key in meta:
            if any(s[key] != seen[0][key] for s in seen):
                values = ", ".join(f"{s[key]} on rank {r}" for r, s in enumerate(seen))
                raise InputError(
                    key, f"differs across the {self.size} ranks ({values})", "give every rank's Recorder the same run"
                )

    def pool(self, keys: list[tuple[str, str, str]], values: torch.Tensor) -> torch.Tensor:
        """Each statistic of every rank's share of the batch combined as metrics.POOLED says:
        sums of squares for an RMS, the largest for a maximum, the mean for the rest."""
        if self.size == 1:
            return values
        counts = [torch.zeros(1, dtype=torch.long, device=values.device) for _ in range(self.size)]
        torch.distributed.all_gather(counts, torch.tensor([len(keys)], device=values.device))
        if len({int(c) for c in counts}) > 1:
            raise InputError(
                "step",
                f"the ranks recorded {', '.join(str(int(c)) for c in counts)} statistics at one step",
                "run the same forward passes on every rank between two rec.step calls",
            )
        how = [POOLED.get(metric, "mean") for _, _, metric in keys]
        rms = torch.tensor([h == "rms" for h in how], device=values.device)
        largest = torch.tensor([h == "max" for h in how], device=values.device)
        summed = torch.where(rms, values.square(), values)
        torch.distributed.all_reduce(summed)
        pooled = torch.where(rms, (summed / self.size).sqrt(), summed / self.size)
        if largest.any():
            top = values.clone()
            torch.distributed.all_reduce(top, op=torch.distributed.ReduceOp.MAX)
            pooled = torch.where(largest, top, pooled)
        return pooled


def _torch_optimizer(optimizer):
    """The optimizer behind a wrapper (accelerate's, Lightning's, muscale's own), for its name
    and defaults; the wrapper itself is what the probes read state from."""
    for _ in range(4):
        inner = getattr(optimizer, "optimizer", None) or getattr(optimizer, "_optimizer", None)
        inner = inner or next(iter(getattr(optimizer, "optimizers", None) or []), None)
        if inner is None:
            break
        optimizer = inner
    return optimizer


def _number(given, found) -> float | None:
    """A run key given, else found on the optimizer, else None (never NaN, which would make
    two runs with no learning rate two groups)."""
    value = given if given is not None else found
    return None if value is None else float(value)


def _unwrapped(model: nn.Module) -> nn.Module:
    """The model a DDP wrapper holds, so that module names match a single-process run's."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _on(device: torch.device, batch):
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: _on(device, v) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(_on(device, v) for v in batch)
    return batch


class Recorder:
    """Records a run of a user's training loop into `run_dir`.

    width: the model's hidden size, the d of the fits (it must be a dimension of one of its
    matrices). mode: the parametrization's name (sp, mup, lrm, …; muscale's names get their
    expectations, other names are kept as labels). optimizer: read for its name, learning
    rate and weight decay, and for Adam's state. probe: a fixed batch (a tensor, a tuple of
    arguments or a dict of keyword arguments) run through the model on recorded steps, in
    eval mode and without gradients; without one, the training forward is measured, and the
    activation change since step 0 (dact_rms), which needs one input at every step, is not.
    every / steps: the schedule (default log-spaced). start: the step of the next training
    forward (a resumed run). tokens_per_step: matches runs by tokens seen where batch sizes
    differ across widths. depth: the number of blocks, the L of a depth fit; depth_rule: the
    depth rule the model claims (sp, depth-mup, completep, alpha=A: docs/guide/depth.md),
    which the depth claims then hold it to. tags: anything else to keep with the run."""

    def __init__(
        self,
        model: nn.Module,
        run_dir: str | Path,
        *,
        width: int,
        seed: int = 0,
        mode: str = "sp",
        optimizer: torch.optim.Optimizer | None = None,
        lr: float | None = None,
        weight_decay: float | None = None,
        family: str | None = None,
        depth: int | None = None,
        depth_rule: str | None = None,
        horizon: str | None = None,
        probe=None,
        every: int | None = None,
        steps=None,
        start: int = 0,
        metrics: tuple[str, ...] | None = None,
        tokens_per_step: int | None = None,
        tags: dict | None = None,
    ):
        self.model = _unwrapped(model)
        self.run_dir = Path(run_dir)
        self.ranks = _Ranks()
        self.schedule, schedule_name = schedule(every, steps)
        inner = _torch_optimizer(optimizer)
        defaults = getattr(inner, "defaults", {})
        wanted = tuple(m for m in (METRICS if metrics is None else metrics) if probe is not None or m != "dact_rms")
        if unknown := sorted(set(wanted) - set(METRICS)):
            raise InputError("metrics", f"unknown metric {unknown[0]!r}", f"use names from {', '.join(METRICS)}")
        self.meta = {
            "run_id": self.run_dir.name,
            "family": family or type(self.model).__name__,
            "mode": mode,
            "optimizer": type(inner).__name__.lower() if optimizer is not None else "none",
            "lr": _number(lr, defaults.get("lr")),
            "weight_decay": _number(weight_decay, defaults.get("weight_decay")),
            "width": int(width),
            "depth": depth,
            "depth_rule": depth_rule,
            "seed": int(seed),
            "horizon": horizon or (MODE_TABLE[mode].horizon if mode in MODE_TABLE else "short"),
            "schedule": schedule_name,
            "probe": probe is not None,
            "tokens_per_step": tokens_per_step,
            "world_size": self.ranks.size,
            "tags": tags or {},
        }
        if next(self.model.parameters(), None) is None:
            raise self._no_matrix()
        self.probes = Probes(self.model, wanted, optimizer, laziness=depth is not None)
        self._check_model()
        self.ranks.agree({k: v for k, v in self.meta.items() if k != "tags"})
        self.recorded: list[int] = []
        self._claim_dir()
        self.device = next(self.model.parameters()).device
        self.probe = None if probe is None else _on(self.device, probe)
        self._pending: int | None = None
        self._watch = contextlib.ExitStack()
        self._columns: dict[str, list] = {"step": [], "module": [], "role": [], "metric": [], "value": []}
        self._flushed = time.monotonic()
        self._after(start - 1)

    def _check_model(self):
        matrices = [lrm.matrix(m) for _, m, _ in self.probes.layers]
        shapes = [tuple(w.shape) for w in matrices if w is not None]
        if not shapes:
            raise self._no_matrix()
        if not any(self.meta["width"] in shape for shape in shapes):
            dims = sorted({d for shape in shapes for d in shape})
            raise InputError(
                "width",
                f"{self.meta['width']} is not a dimension of any of the model's matrices ({', '.join(map(str, dims))})",
                "give the hidden size the model was built with",
            )

    def _no_matrix(self) -> InputError:
        return InputError(
            "model",
            f"{self.meta['family']} has no layer with a weight matrix muscale can probe",
            "pass the model whose nn.Linear, nn.Embedding or Conv1D layers are trained",
        )

    def _claim_dir(self):
        problem = held_by(self.run_dir) if self.ranks.rank == 0 else None
        if self.ranks.size > 1:
            shared = [problem]
            torch.distributed.broadcast_object_list(shared, src=0)
            problem = shared[0]
        if problem:
            raise InputError("run_dir", problem, "give every run a directory of its own, or delete this one")
        self._write_meta("running")

    def _write_meta(self, status: str):
        if self.ranks.rank == 0:
            write_meta(self.run_dir, self.meta | {"status": status, "recorded": self.recorded})

    def step(self, step: int, **losses) -> None:
        """After iteration `step`'s optimizer step; `losses` (tensors or numbers, `loss=` the
        training loss) are recorded when `step` is. Returns at once on other steps."""
        if step == self._pending:
            self._finish(step, losses)
        if step + 1 in self.schedule or step + 2 in self.schedule:
            self._after(step)

    def _after(self, done: int):
        """The model has taken `done + 1` steps: prepare the next one if it is recorded, and
        keep W for the update of the one after."""
        if done + 1 in self.schedule:
            self._prepare(done + 1)
        if done + 2 in self.schedule:
            self.probes.snapshot()

    def _prepare(self, step: int):
        if self._pending is not None:  # a recorded step whose call never came: its rows go
            self._watch.close()
            self.probes.rows.clear()
        self.probes.measure(step)
        if self.probe is None:
            self._watch.enter_context(self.probes.watch(step, training=True))
        else:
            training = self.model.training
            self.model.eval()
            with torch.no_grad(), self.probes.watch(step):
                self._forward(self.probe)
            self.model.train(training)
        self._pending = step

    def _forward(self, batch):
        if isinstance(batch, dict):
            return self.model(**batch)
        if isinstance(batch, list | tuple):
            return self.model(*batch)
        return self.model(batch)

    def _finish(self, step: int, losses: dict):
        self._watch.close()
        self._pending = None
        columns = self.probes.fetch(step, self.ranks.pool, **losses)
        self.recorded.append(step)
        if self.ranks.rank != 0:
            return
        for key, values in columns.items():
            self._columns[key].extend(values)
        if time.monotonic() - self._flushed >= FLUSH_SECONDS:
            self._flush()

    def _flush(self):
        """The steps fetched since the last flush, as one file."""
        self._flushed = time.monotonic()
        n = len(self._columns["step"])
        if self.ranks.rank != 0 or not n:
            return
        keys = {name: [self.meta[name]] * n for name in RUN_KEYS}
        frame = pl.DataFrame([pl.Series(k, v, dtype=SCHEMA[k]) for k, v in (keys | self._columns).items()])
        self._columns = {key: [] for key in self._columns}
        if frame.select("step", "module", "metric").is_duplicated().any():
            # Several forwards in one step (gradient accumulation): each statistic's mean.
            frame = (
                frame.group_by([c for c in frame.columns if c != "value"], maintain_order=True)
                .agg(pl.col("value").mean())
                .select(frame.columns)
            )
        write_records(self.run_dir, frame)

    def close(self, status: str = "done") -> None:
        """Mark the run finished; a step prepared for a forward that never came is dropped."""
        self._watch.close()
        self.probes.rows.clear()
        self._pending = None
        self._flush()
        self._write_meta(status)

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        """A loop that raised leaves a run `muscale fit` reports as stopped, not finished."""
        self.close("done" if kind is None else "stopped")
