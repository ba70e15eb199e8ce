"""A coordinate check: validated request → run specs → runs → records."""

import inspect
from pathlib import Path
from typing import Callable, Iterable

import polars as pl
import torch

from . import launch, lrm, store
from .errors import InputError
from .families import MULTIPLIER_POINTS, resolve
from .modes import hooks
from .probes import METRICS
from .spec import (LRM_IMPLS, MODES, MULT_PARAMS, MULT_WEIGHT_DECAY, MUON_ADJUST_LR, OPTIMIZERS, WEIGHT_DECAY_KINDS, RunSpec,
                   canonical_mode, default_horizon, has_mup, has_mup_lr, multiplier_kind)


def check_positive(name: str, value, integer: bool = False):
    if value is None:
        return
    if integer and (not isinstance(value, int) or isinstance(value, bool)):
        raise InputError(name, f"{value!r} is not a whole number", f"give {name} a whole number ≥ 1")
    if not value > 0:
        raise InputError(name, f"{value} is not positive", f"give {name} a value > 0")


def check_widths(widths: tuple[int, ...]):
    if not widths:
        raise InputError("--widths", "no widths given", "give a comma list such as 64,128,256")
    if any(w <= 0 for w in widths):
        raise InputError("--widths", f"{list(widths)} has a non-positive width", "use widths ≥ 1")
    if len(widths) < 2 or any(b <= a for a, b in zip(widths, widths[1:])):
        raise InputError("--widths", f"{list(widths)} is not strictly increasing with at least two widths",
                         "list two or more widths from small to large, such as 64,128,256")


def check_multipliers(multipliers: dict, mode: str):
    if not multipliers:
        return
    if not has_mup(mode):
        raise InputError("--mup-multiplier", f"fixed μP multipliers do not apply in mode {mode}",
                         "use mode mup or mup+lrm, or drop them")
    unknown = set(multipliers) - set(MULTIPLIER_POINTS)
    if unknown:
        raise InputError("--mup-multiplier", f"no multiplier point {', '.join(sorted(unknown))}",
                         f"use one of {', '.join(MULTIPLIER_POINTS)}")
    for key, value in multipliers.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise InputError("--mup-multiplier", f"{key}={value!r} is not a positive number",
                             f"give {key} a value > 0, e.g. {key}=2.0")


def check_placement(placement: dict, mode: str, init: float = 1.0):
    """Per-role multiplier kinds (lrm.placement) and their start value."""
    if (placement or init != 1.0) and multiplier_kind(mode) is None:
        raise InputError("--multiplier", f"mode {mode} has no learnable multipliers", "use an lrm mode, or drop it")
    for role, kind in placement.items():
        if role not in lrm.ROLES:
            raise InputError("--multiplier", f"no role '{role}' to place multipliers on",
                             f"use one of {', '.join(lrm.ROLES)}")
        if kind not in lrm.KINDS:
            raise InputError("--multiplier", f"{role}={kind!r} is not a multiplier kind",
                             f"use one of {', '.join(lrm.KINDS)}, e.g. {role}=scalar")
    if isinstance(init, bool) or not isinstance(init, int | float) or not init > 0:
        raise InputError("--mult-init", f"{init!r} is not a positive number",
                         "start the multipliers at a value > 0, e.g. 1.0")


def check_optimizer(mode: str, optimizer: str, weight_decay: float, clip: float | None = None,
                    clip_multipliers: bool = False, muon_adjust_lr: str | None = None,
                    adam_eps_scaling: bool = False, weight_decay_kind: str = "decoupled",
                    lrm_impl: str | None = None):
    """The optimizer options that make sense only together, or only for some modes."""
    if lrm_impl is not None and lrm_impl not in LRM_IMPLS:
        raise InputError("--lrm-impl", f"unknown implementation '{lrm_impl}'", f"use one of {', '.join(LRM_IMPLS)}")
    if lrm_impl is not None and multiplier_kind(mode) is None:
        raise InputError("--lrm-impl", f"mode {mode} has no learnable multipliers", "use an lrm mode, or drop it")
    if weight_decay_kind not in WEIGHT_DECAY_KINDS:
        raise InputError("--weight-decay-kind", f"unknown kind '{weight_decay_kind}'",
                         f"use one of {', '.join(WEIGHT_DECAY_KINDS)}")
    if weight_decay_kind == "spectral" and not weight_decay:
        raise InputError("--weight-decay-kind", "spectral decay with weight decay 0 does nothing",
                         "give --weight-decay a value > 0 too")
    if adam_eps_scaling and optimizer == "sgd":
        raise InputError("--adam-eps-scaling", "SGD has no ε", "use adam, adamw or muon, or drop it")
    if adam_eps_scaling and not has_mup_lr(mode):
        raise InputError("--adam-eps-scaling", f"mode {mode} has no base shapes to scale ε by",
                         "use mode mup, mup-lr or mup+lrm, or drop it")
    if muon_adjust_lr is not None and optimizer != "muon":
        raise InputError("--muon-adjust-lr", f"applies to Muon, not to optimizer {optimizer}",
                         "add --optimizer muon, or drop it")
    if muon_adjust_lr is not None and muon_adjust_lr not in MUON_ADJUST_LR:
        raise InputError("--muon-adjust-lr", f"unknown adjustment '{muon_adjust_lr}'",
                         f"use one of {', '.join(MUON_ADJUST_LR)}")
    check_positive("--clip", clip)
    if clip_multipliers and clip is None:
        raise InputError("--clip-multipliers", "has no effect without --clip", "give --clip NORM too, or drop it")
    if clip_multipliers and multiplier_kind(mode) is None:
        raise InputError("--clip-multipliers", f"mode {mode} has no learnable multipliers",
                         "use an lrm mode, or drop it")


def check_mult_param(mode: str, mult_param: str | None):
    if mult_param is None:
        return
    if mult_param not in MULT_PARAMS:
        raise InputError("--mult-param", f"unknown parametrisation '{mult_param}'", f"use one of {', '.join(MULT_PARAMS)}")
    if multiplier_kind(mode) is None:
        raise InputError("--mult-param", f"mode {mode} has no learnable multipliers", "use an lrm mode, or drop it")


def check_beta2(beta2: float, optimizer: str) -> float:
    if optimizer == "sgd":
        raise InputError("--beta2", "SGD has no second moment", "use adam, adamw or muon, or drop it")
    if isinstance(beta2, bool) or not isinstance(beta2, int | float) or not 0 <= beta2 < 1:
        raise InputError("--beta2", f"{beta2!r} is not in [0, 1)", "give Adam's β₂ as e.g. 0.95")
    return float(beta2)


def check_family(family, widths, base_width, options, mode):
    if family.builtin:
        allowed = set(inspect.signature(family.build).parameters) - {"width", "hooks", "vocab"}
        unknown = set(options) - allowed
        if unknown:
            raise InputError("--option", f"family {family.name} has no option {', '.join(sorted(unknown))}",
                             f"use one of {', '.join(sorted(allowed))}")
    checked = list(widths) + ([base_width, 2 * base_width] if has_mup_lr(mode) else [])
    for w in checked:
        try:
            problem = family.check_width(w, options)
        except ValueError as exc:
            raise InputError("--option", f"an option of {family.name} is not a number ({exc})",
                             "give numeric options as numbers, e.g. layers=2") from None
        if problem:
            option = "--widths" if w in widths else "--base-width"
            raise InputError(option, problem, "choose widths that the family's width rules allow")
    try:
        with torch.device("meta"):
            family.make(widths[0], hooks(mode, base_width), options)
    except InputError:
        raise
    except Exception as exc:
        # A built-in family is known to build, so a failure there comes from its options.
        blame_options = family.builtin and options
        raise InputError("--option" if blame_options else "--family",
                         f"building {family.name} at width {widths[0]} failed: {exc}",
                         "fix the option" if blame_options else "fix the family or its options") from None


def check_metrics(metrics: Iterable[str] | None) -> tuple[str, ...] | None:
    """None or empty: every metric. The loss is always recorded."""
    metrics = tuple(dict.fromkeys(metrics or ()))
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise InputError("--metric", f"unknown metric {', '.join(map(repr, unknown))}",
                         f"use some of {', '.join(METRICS)}")
    return metrics or None


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
         beta2: float | None = None, data: str = "synthetic") -> list[RunSpec]:
    """Validate everything a user can get wrong before any run starts or any file is written."""
    if mode not in MODES:
        raise InputError("--mode", f"unknown mode '{mode}'", f"use one of {', '.join(MODES)}")
    fam = resolve(family, batch, data)
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
        if value is not None and value < 0:
            raise InputError(name, f"{value} is negative", f"give {name} a value ≥ 0")
    options = {k: str(v) for k, v in (options or {}).items()}
    check_family(fam, widths, base_width, options, mode)
    check_multipliers(mup_multipliers or {}, mode)
    check_placement(multipliers or {}, mode, mult_init)
    metrics = check_metrics(metrics)
    check_mult_param(mode, mult_param)
    beta2 = h.beta2 if beta2 is None else check_beta2(beta2, optimizer)
    check_optimizer(mode, optimizer, h.weight_decay if weight_decay is None else weight_decay, clip, clip_multipliers,
                    muon_adjust_lr, adam_eps_scaling, weight_decay_kind, lrm_impl)
    common = dict(family=family, mode=canonical_mode(mode), optimizer=optimizer,
                  lr=h.lr if lr is None else lr, steps=steps or h.steps, horizon=h.name,
                  weight_decay=h.weight_decay if weight_decay is None else weight_decay,
                  batch_size=batch_size or h.batch_size, seq_len=seq_len or h.seq_len, batch=batch,
                  mult_lr=h.mult_lr if mult_lr is None else mult_lr, mult_weight_decay=mult_weight_decay, base_width=base_width,
                  family_options=tuple(sorted(options.items())),
                  mup_multipliers=tuple(sorted((k, float(v)) for k, v in (mup_multipliers or {}).items())),
                  clip=clip, clip_multipliers=clip_multipliers, adam_eps_scaling=adam_eps_scaling,
                  weight_decay_kind=weight_decay_kind, muon_adjust_lr=muon_adjust_lr or RunSpec.muon_adjust_lr,
                  lrm_impl=lrm_impl or RunSpec.lrm_impl, multipliers=tuple(sorted((multipliers or {}).items())),
                  mult_init=float(mult_init), metrics=metrics, data=data, beta2=beta2 if optimizer != "sgd" else None,
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
