"""A coordinate check: validated request → run specs → runs → records."""

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import polars as pl

from . import launch, losses, store
from .errors import InputError
from .families import reference, resolve
from .spec import (MODES, MULT_WEIGHT_DECAY, OPTIMIZERS, RunSpec, canonical_mode, default_horizon, multiplier_kind,
                   multiplier_lr)
from .validate import (check_beta2, check_family, check_metrics, check_mult_param, check_multipliers, check_optimizer,
                       check_output,
                       check_placement, check_positive, check_widths)


@dataclass(frozen=True)
class CoordCheck:
    """A coordinate check as a study: what its plan.json saves (sweep.write_plan)."""

    title: str
    specs: tuple[RunSpec, ...]
    path: Path | None = None  # asked for on the command line, not read from a file
    parts: dict = field(default_factory=dict)
    kind = "coord_check"

    def settings(self) -> dict:
        return {}

    def baseline(self) -> list[dict]:
        return []


def plan(mode: str = "lrm", family: str = "transformer", widths: Iterable[int] | None = None,
         steps: int | None = None, seeds: int | None = None, optimizer: str | None = None,
         lr: float | None = None, weight_decay: float | None = None, batch_size: int | None = None,
         seq_len: int | None = None, batch: str | None = None, options: dict | None = None,
         mult_lr: float | None = None, mult_weight_decay: float = MULT_WEIGHT_DECAY, base_width: int = 64,
         mup_multipliers: dict | None = None, clip: float | None = None,
         clip_multipliers: bool = False, muon_adjust_lr: str | None = None,
         adam_eps_scaling: bool = False, weight_decay_kind: str = "decoupled",
         lrm_impl: str | None = None, multipliers: dict | None = None, mult_init: float = 1.0,
         metrics: Iterable[str] | None = None, mult_param: str | None = None,
         beta2: float | None = None, data: str = "synthetic",
         loss: str | Callable = "cross_entropy") -> list[RunSpec]:
    """Validate everything a user can get wrong before any run starts or any file is written.
    `family`, `batch` and `loss` may be module-level functions (families.reference)."""
    if mode not in MODES:
        raise InputError("--mode", f"unknown mode '{mode}'", f"use one of {', '.join(MODES)}")
    family, batch, loss = reference(family, "--family"), reference(batch, "--batch"), reference(loss, "--loss")
    fam = resolve(family, batch, data)
    losses.resolve(loss)
    h = default_horizon(mode, family)
    widths = tuple(h.widths if widths is None else widths)
    check_widths(widths)
    optimizer = optimizer or h.optimizer
    if optimizer not in OPTIMIZERS:
        raise InputError("--optimizer", f"unknown optimizer '{optimizer}'", f"use one of {', '.join(OPTIMIZERS)}")
    for name, value, integer in (("--steps", steps, True), ("--seeds", seeds, True), ("--lr", lr, False),
                                 ("--batch-size", batch_size, True), ("--seq-len", seq_len, True),
                                 ("--base-width", base_width, True), ("--mult-lr", mult_lr, False)):
        check_positive(name, value, integer)
    for name, value in (("--weight-decay", weight_decay), ("--mult-weight-decay", mult_weight_decay)):
        if value is not None and not 0 <= value < math.inf:
            raise InputError(name, f"{value} is not a finite number ≥ 0", f"give {name} a finite value ≥ 0")
    options = dict(h.options) | {k: str(v) for k, v in (options or {}).items()}
    check_family(fam, widths, base_width, options, mode)
    check_multipliers(mup_multipliers or {}, mode)
    check_placement(multipliers or {}, mode, mult_init)
    metrics = check_metrics(metrics)
    check_output(fam, widths[0], options, loss, batch_size or h.batch_size, seq_len or h.seq_len)
    check_mult_param(mode, mult_param)
    beta2 = h.beta2 if beta2 is None else check_beta2(beta2, optimizer)
    check_optimizer(mode, optimizer, h.weight_decay if weight_decay is None else weight_decay, clip, clip_multipliers,
                    muon_adjust_lr, adam_eps_scaling, weight_decay_kind, lrm_impl)
    common = dict(family=family, mode=canonical_mode(mode), optimizer=optimizer,
                  lr=h.lr if lr is None else lr, steps=steps or h.steps, horizon=h.name,
                  weight_decay=h.weight_decay if weight_decay is None else weight_decay,
                  batch_size=batch_size or h.batch_size, seq_len=seq_len or h.seq_len, batch=batch,
                  mult_lr=multiplier_lr(mode, h.mult_lr if mult_lr is None else mult_lr),
                  mult_weight_decay=mult_weight_decay, base_width=base_width,
                  family_options=tuple(sorted(options.items())),
                  mup_multipliers=tuple(sorted((k, float(v)) for k, v in (mup_multipliers or {}).items())),
                  clip=clip, clip_multipliers=clip_multipliers, adam_eps_scaling=adam_eps_scaling,
                  weight_decay_kind=weight_decay_kind, muon_adjust_lr=muon_adjust_lr or RunSpec.muon_adjust_lr,
                  lrm_impl=lrm_impl or RunSpec.lrm_impl, multipliers=tuple(sorted((multipliers or {}).items())),
                  mult_init=float(mult_init), metrics=metrics, data=data, loss=loss,
                  beta2=beta2 if optimizer != "sgd" else None,
                  mult_param=mult_param or (h.mult_param if multiplier_kind(mode) else RunSpec.mult_param))
    return [RunSpec(width=w, seed=s, **common) for s in range(seeds or h.seeds) for w in widths]


def execute(specs: list[RunSpec], out: Path | None = None, device: str = "auto", jobs: int = 1,
            on_run: Callable[[RunSpec], None] = lambda spec: None, save_models: bool = False) -> pl.DataFrame:
    """Run specs, stopping at the first crash; with `out`, finished runs are read back
    instead of re-run (with `save_models`, only those whose model was saved too). Records
    come back in spec order whatever order workers finish in."""
    done = {s: pl.read_parquet(store.record_path(out, s)) for s in specs if out is not None and store.is_done(out, s)
            and (not save_models or store.model_path(out, s).exists())}
    for spec in done:
        on_run(spec)
    done.update(launch.local([s for s in specs if s not in done], out, device, jobs, on_run,
                             save_models=save_models))
    return pl.concat([done[s] for s in specs])


def coord_check(mode: str = "lrm", family: str = "transformer", *, out: Path | str | None = None,
                device: str = "auto", jobs: int = 1, **kwargs) -> pl.DataFrame:
    """The Python API of `muscale coord-check`: the records of every run as one DataFrame.
    Keyword arguments are those of `plan` (widths, steps, seeds, optimizer, lr, …)."""
    specs = plan(mode, family, **kwargs)
    return execute(specs, Path(out) if out is not None else None, device, jobs)
