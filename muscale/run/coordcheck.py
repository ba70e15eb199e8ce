"""A coordinate check: validated request → run specs → runs → records."""

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from ..config.options import HORIZON_FIELDS, OPTIONS, as_field
from ..config.spec import (
    CHECK_FAMILY,
    CHECK_MODE,
    MODES,
    OPTIMIZERS,
    RunSpec,
    canonical_mode,
    default_horizon,
    multiplier_kind,
    multiplier_lr,
)
from ..errors import InputError
from ..models import losses
from ..models.families import resolve
from ..models.references import reference
from . import launch, store
from .validate import (
    check_beta2,
    check_data_order,
    check_depths,
    check_family,
    check_metrics,
    check_mult_param,
    check_multipliers,
    check_optimizer,
    check_output,
    check_placement,
    check_positive,
    check_widths,
)


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


def plan(mode: str = CHECK_MODE, family: str | Callable = CHECK_FAMILY, **given) -> list[RunSpec]:
    """Validate everything a user can get wrong before any run starts or any file is written.
    `given` holds the options (options.OPTIONS by name: widths, steps, seeds, optimizer, lr, …);
    one left out or None takes its horizon's default, else RunSpec's. `family`, `batch` and
    `loss` may be module-level functions (references.reference)."""
    if unknown := sorted(set(given) - set(OPTIONS)):
        raise TypeError(f"plan() got unexpected options {', '.join(unknown)}; it takes {', '.join(OPTIONS)}")
    o = dict.fromkeys(OPTIONS) | {k: v for k, v in given.items() if v is not None}
    if mode not in MODES:
        raise InputError("--mode", f"unknown mode '{mode}'", f"use one of {', '.join(MODES)}")
    family = reference(family, "--family")
    h = default_horizon(mode, family)
    # What each option is: as given, else the horizon's where it sets one, else RunSpec's
    # default. The checks read `o`, where an option that only some modes take counts as given.
    value = {
        name: o[name] if o[name] is not None else getattr(h, name) if name in HORIZON_FIELDS else opt.default
        for name, opt in OPTIONS.items()
    }
    batch, loss = reference(value["batch"], "--batch"), reference(value["loss"], "--loss")
    if batch is not None and o["data"] is None:
        value["data"] = RunSpec.data  # a batch function brings its own data: no text default applies
    fam = resolve(family, batch, value["data"])
    losses.resolve(loss)
    widths, depths = tuple(value["widths"]), tuple(value["depths"] or ())
    check_widths(widths, depths)
    optimizer = value["optimizer"]
    if optimizer not in OPTIMIZERS:
        raise InputError("--optimizer", f"unknown optimizer '{optimizer}'", f"use one of {', '.join(OPTIMIZERS)}")
    base_width = value["base_width"]
    for name, integer in (
        ("steps", True),
        ("seeds", True),
        ("lr", False),
        ("batch_size", True),
        ("seq_len", True),
        ("base_width", True),
        ("mult_lr", False),
    ):
        check_positive(OPTIONS[name].flag, o[name], integer)
    for name in ("weight_decay", "mult_weight_decay"):
        flag, v = OPTIONS[name].flag, o[name]
        if v is not None and not 0 <= v < math.inf:
            raise InputError(flag, f"{v} is not a finite number ≥ 0", f"give {flag} a finite value ≥ 0")
    given_options = {k: str(v) for k, v in (o["options"] or {}).items()}
    check_depths(fam, depths, o["base_depth"], value["depth_param"], o["depth_alpha"], given_options)
    # A depth check sets the depth itself, in place of the horizon's one block.
    own = {k: v for k, v in h.options if not depths or k != fam.depth_keyword()}
    options = own | given_options
    at_depth = depths[0] if depths else None
    mult_init = value["mult_init"]
    check_family(fam, widths, base_width, options, mode, at_depth, value["depth_param"])
    check_multipliers(o["mup_multipliers"] or {}, mode)
    check_placement(o["multipliers"] or {}, mode, mult_init)
    metrics = check_metrics(o["metrics"])
    check_output(fam, widths[0], options, loss, value["batch_size"], value["seq_len"], at_depth)
    check_mult_param(mode, o["mult_param"])
    beta2 = value["beta2"] if o["beta2"] is None else check_beta2(o["beta2"], optimizer)
    clip_multipliers, adam_eps_scaling = bool(value["clip_multipliers"]), bool(value["adam_eps_scaling"])
    check_optimizer(
        mode,
        optimizer,
        value["weight_decay"],
        o["clip"],
        clip_multipliers,
        o["muon_adjust_lr"],
        adam_eps_scaling,
        value["weight_decay_kind"],
        o["lrm_impl"],
    )
    common = dict(
        family=family,
        mode=canonical_mode(mode),
        optimizer=optimizer,
        lr=value["lr"],
        steps=value["steps"],
        horizon=h.name,
        weight_decay=value["weight_decay"],
        batch_size=value["batch_size"],
        seq_len=value["seq_len"],
        batch=batch,
        mult_lr=multiplier_lr(mode, value["mult_lr"]),
        mult_weight_decay=value["mult_weight_decay"],
        base_width=base_width,
        family_options=as_field("options", options),
        mup_multipliers=as_field("mup_multipliers", o["mup_multipliers"]),
        clip=o["clip"],
        clip_multipliers=clip_multipliers,
        adam_eps_scaling=adam_eps_scaling,
        weight_decay_kind=value["weight_decay_kind"],
        muon_adjust_lr=value["muon_adjust_lr"],
        lrm_impl=value["lrm_impl"],
        multipliers=as_field("multipliers", o["multipliers"]),
        mult_init=float(mult_init),
        metrics=metrics,
        data=value["data"],
        data_order=check_data_order(value["data_order"]),
        loss=loss,
        beta2=beta2 if optimizer != "sgd" else None,
        mult_param=value["mult_param"] if multiplier_kind(mode) else RunSpec.mult_param,
        depth_param=value["depth_param"],
        depth_alpha=o["depth_alpha"],
        base_depth=(o["base_depth"] or min(depths)) if depths else None,
    )
    return [
        RunSpec(width=w, depth=d, seed=s, **common)
        for s in range(value["seeds"])
        for d in depths or (None,)
        for w in widths
    ]


def execute(
    specs: list[RunSpec],
    out: Path | None = None,
    device: str = "auto",
    jobs: int = 1,
    on_run: Callable[[RunSpec], None] = lambda spec: None,
    save_models: bool = False,
) -> pl.DataFrame:
    """Run specs, stopping at the first crash; with `out`, finished runs are read back
    instead of re-run (with `save_models`, only those whose model was saved too). Records
    come back in spec order whatever order workers finish in."""
    done = {
        s: pl.read_parquet(store.record_path(out, s))
        for s in specs
        if out is not None and store.is_done(out, s) and (not save_models or store.model_path(out, s).exists())
    }
    for spec in done:
        on_run(spec)
    done.update(launch.local([s for s in specs if s not in done], out, device, jobs, on_run, save_models=save_models))
    return pl.concat([done[s] for s in specs])


def coord_check(
    mode: str = CHECK_MODE,
    family: str | Callable = CHECK_FAMILY,
    *,
    out: Path | str | None = None,
    device: str = "auto",
    jobs: int = 1,
    **kwargs,
) -> pl.DataFrame:
    """The Python API of `muscale coord-check`: the records of every run as one DataFrame.
    Keyword arguments are the options of `plan` (widths, steps, seeds, optimizer, lr, …)."""
    specs = plan(mode, family, **kwargs)
    return execute(specs, Path(out) if out is not None else None, device, jobs)
