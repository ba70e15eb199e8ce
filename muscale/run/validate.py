"""Validations every way of asking for runs shares (the command line, study files): each
raises an InputError naming the option, which a study reader re-aims at its own key."""

import inspect
import math
from collections.abc import Iterable

import torch

from ..config.depth import DEPTH_PARAMS, scaled
from ..config.spec import (
    DATA_ORDERS,
    LRM_IMPLS,
    MULT_PARAMS,
    MUON_ADJUST_LR,
    WEIGHT_DECAY_KINDS,
    RunSpec,
    has_mup,
    has_mup_lr,
    multiplier_kind,
)
from ..errors import InputError
from ..measure.metrics import METRICS
from ..models import depth, losses, lrm, modes
from ..models.data import PROBE_INDEX
from ..models.families import BUILTIN, MULTIPLIER_POINTS
from ..models.modes import hooks
from ..models.references import unknown_options


def check_positive(name: str, value, integer: bool = False):
    if value is None:
        return
    if integer and (not isinstance(value, int) or isinstance(value, bool)):
        raise InputError(name, f"{value!r} is not a whole number", f"give {name} a whole number ≥ 1")
    if not value > 0 or not math.isfinite(value):
        raise InputError(name, f"{value} is not a positive finite number", f"give {name} a finite value > 0")


def _increasing(flag: str, values: tuple[int, ...], least: int, example: str):
    noun = flag.removeprefix("--")
    if not values:
        raise InputError(flag, f"no {noun} given", f"give a comma list such as {example}")
    if any(v <= 0 for v in values):
        raise InputError(flag, f"{list(values)} has a non-positive value", f"use {noun} ≥ 1")
    if len(values) < least or any(b <= a for a, b in zip(values, values[1:])):
        raise InputError(
            flag,
            f"{list(values)} is not strictly increasing with at least {least} {noun}",
            f"list {least} or more {noun} from small to large, such as {example}",
        )


def check_widths(widths: tuple[int, ...], depths: tuple[int, ...] = ()):
    """Two widths at least, or one in a check over two depths or more."""
    _increasing("--widths", widths, 1 if len(depths) >= 2 else 2, "64,128,256")


def check_depths(family, depths: tuple[int, ...], base_depth, depth_param: str, depth_alpha, options: dict):
    """The depth axis and its rule: a family that can be built at a depth, a rule that has its
    depths and its α. `options` are the user's own (a depth set twice is refused)."""
    if depth_param not in DEPTH_PARAMS:
        raise InputError(
            "--depth-param", f"unknown depth rule '{depth_param}'", f"use one of {', '.join(DEPTH_PARAMS)}"
        )
    if (depth_alpha is None) != (depth_param != "alpha"):
        raise InputError(
            "--depth-alpha",
            "--depth-alpha goes with --depth-param alpha, and only with it",
            "give both, e.g. --depth-param alpha --depth-alpha 0.75, or neither",
        )
    if depth_alpha is not None and not (math.isfinite(depth_alpha) and depth_alpha >= 0):
        raise InputError("--depth-alpha", f"{depth_alpha} is not a finite number ≥ 0", "give α ≥ 0, e.g. 0.75")
    check_positive("--base-depth", base_depth, integer=True)
    if not depths:
        if scaled(depth_param) or base_depth is not None:
            raise InputError(
                "--depths",
                f"a depth rule ({depth_param}, --base-depth) needs the depths it scales with",
                "give --depths, e.g. --depths 2,4,8",
            )
        return
    _increasing("--depths", depths, 1, "2,4,8,16")
    keyword = family.depth_keyword()
    if keyword is None:
        raise InputError(
            "--depths",
            f"{family.name} takes no depth parameter",
            "give the function a depth=… keyword that sets its number of blocks",
        )
    if keyword in options:
        raise InputError("--depths", f"--option {keyword}= and --depths both set the depth", f"drop {keyword}=")


def check_multipliers(multipliers: dict, mode: str):
    if not multipliers:
        return
    if not has_mup(mode):
        raise InputError(
            "--mup-multiplier",
            f"fixed μP multipliers do not apply in mode {mode}",
            "use mode mup or mup+lrm, or drop them",
        )
    unknown = set(multipliers) - set(MULTIPLIER_POINTS)
    if unknown:
        raise InputError(
            "--mup-multiplier",
            f"no multiplier point {', '.join(sorted(unknown))}",
            f"use one of {', '.join(MULTIPLIER_POINTS)}",
        )
    for key, value in multipliers.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise InputError(
                "--mup-multiplier",
                f"{key}={value!r} is not a positive number",
                f"give {key} a value > 0, e.g. {key}=2.0",
            )


def check_placement(placement: dict, mode: str, init: float = 1.0):
    """Per-role multiplier kinds (lrm.placement) and their start value."""
    if (placement or init != 1.0) and multiplier_kind(mode) is None:
        raise InputError("--multiplier", f"mode {mode} has no learnable multipliers", "use an lrm mode, or drop it")
    for role, kind in placement.items():
        if role not in lrm.PLACEABLE_ROLES:
            raise InputError(
                "--multiplier",
                f"no role '{role}' to place multipliers on",
                f"use one of {', '.join(lrm.PLACEABLE_ROLES)}",
            )
        if kind not in lrm.PLACEMENT_KINDS:
            raise InputError(
                "--multiplier",
                f"{role}={kind!r} is not a multiplier kind",
                f"use one of {', '.join(lrm.PLACEMENT_KINDS)}, e.g. {role}=scalar",
            )
    if isinstance(init, bool) or not isinstance(init, int | float) or not init > 0:
        raise InputError(
            "--mult-init", f"{init!r} is not a positive number", "start the multipliers at a value > 0, e.g. 1.0"
        )


def check_optimizer(
    mode: str,
    optimizer: str,
    weight_decay: float,
    clip: float | None = None,
    clip_multipliers: bool = False,
    muon_adjust_lr: str | None = None,
    adam_eps_scaling: bool = False,
    weight_decay_kind: str = "decoupled",
    lrm_impl: str | None = None,
):
    """The optimizer options that make sense only together, or only for some modes."""
    if lrm_impl is not None and lrm_impl not in LRM_IMPLS:
        raise InputError("--lrm-impl", f"unknown implementation '{lrm_impl}'", f"use one of {', '.join(LRM_IMPLS)}")
    if lrm_impl is not None and multiplier_kind(mode) is None:
        raise InputError("--lrm-impl", f"mode {mode} has no learnable multipliers", "use an lrm mode, or drop it")
    if weight_decay_kind not in WEIGHT_DECAY_KINDS:
        raise InputError(
            "--weight-decay-kind", f"unknown kind '{weight_decay_kind}'", f"use one of {', '.join(WEIGHT_DECAY_KINDS)}"
        )
    if weight_decay_kind == "spectral" and not weight_decay:
        raise InputError(
            "--weight-decay-kind",
            "spectral decay with weight decay 0 does nothing",
            "give --weight-decay a value > 0 too",
        )
    if adam_eps_scaling and optimizer == "sgd":
        raise InputError("--adam-eps-scaling", "SGD has no ε", "use adam, adamw or muon, or drop it")
    if adam_eps_scaling and not has_mup_lr(mode):
        raise InputError(
            "--adam-eps-scaling",
            f"mode {mode} has no base shapes to scale ε by",
            "use mode mup, mup-lr or mup+lrm, or drop it",
        )
    if muon_adjust_lr is not None and optimizer != "muon":
        raise InputError(
            "--muon-adjust-lr", f"applies to Muon, not to optimizer {optimizer}", "add --optimizer muon, or drop it"
        )
    if muon_adjust_lr is not None and muon_adjust_lr not in MUON_ADJUST_LR:
        raise InputError(
            "--muon-adjust-lr", f"unknown adjustment '{muon_adjust_lr}'", f"use one of {', '.join(MUON_ADJUST_LR)}"
        )
    check_positive("--clip", clip)
    if clip_multipliers and clip is None:
        raise InputError("--clip-multipliers", "has no effect without --clip", "give --clip NORM too, or drop it")
    if clip_multipliers and multiplier_kind(mode) is None:
        raise InputError(
            "--clip-multipliers", f"mode {mode} has no learnable multipliers", "use an lrm mode, or drop it"
        )


def check_mult_param(mode: str, mult_param: str | None):
    if mult_param is None:
        return
    if mult_param not in MULT_PARAMS:
        raise InputError(
            "--mult-param", f"unknown parametrisation '{mult_param}'", f"use one of {', '.join(MULT_PARAMS)}"
        )
    if multiplier_kind(mode) is None:
        raise InputError("--mult-param", f"mode {mode} has no learnable multipliers", "use an lrm mode, or drop it")


def check_beta2(beta2: float, optimizer: str) -> float:
    if optimizer == "sgd":
        raise InputError("--beta2", "SGD has no second moment", "use adam, adamw or muon, or drop it")
    if isinstance(beta2, bool) or not isinstance(beta2, int | float) or not 0 <= beta2 < 1:
        raise InputError("--beta2", f"{beta2!r} is not in [0, 1)", "give Adam's β₂ as e.g. 0.95")
    return float(beta2)


def check_data_order(order: str) -> str:
    if order not in DATA_ORDERS:
        raise InputError("--data-order", f"unknown order {order!r}", f"use one of {', '.join(DATA_ORDERS)}")
    return order


def check_family(family, widths, base_width, options, mode, at_depth=None, depth_param="sp"):
    """`at_depth`: the depth the model is built at (None: its own); a scaling `depth_param`
    needs a residual branch it can scale."""
    if family.builtin:
        params = inspect.signature(family.build).parameters
        allowed = set(params) - {"width", "hooks", "vocab"}
        unknown = set(options) - allowed
        # A builder that takes **options (hf: any config field) checks them itself.
        if unknown and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            raise InputError(
                "--option",
                f"family {family.name} has no option {', '.join(sorted(unknown))}",
                f"use one of {', '.join(sorted(allowed))}",
            )
    elif options and (problem := unknown_options(family.build, options, skip=1)):
        raise InputError(
            "--option", f"{family.name} takes no option {problem}", "pass only options the function accepts as keywords"
        )
    checked = list(widths) + ([base_width, 2 * base_width] if has_mup_lr(mode) else [])
    for w in checked:
        try:
            problem = family.check_width(w, options)
        except ValueError as exc:
            raise InputError(
                "--option",
                f"an option of {family.name} is not a number ({exc})",
                "give numeric options as numbers, e.g. layers=2",
            ) from None
        if problem:
            option = "--widths" if w in widths else "--base-width"
            raise InputError(option, problem, "choose widths that the family's width rules allow")
    try:
        with torch.device("meta"):
            model = family.make(widths[0], hooks(mode, base_width), options, at_depth)
            modes.check_readout(model, mode)
            if scaled(depth_param):
                depth.apply(model, 1.0, family.name)
    except InputError:
        raise
    except Exception as exc:
        # A built-in family is known to build, so a failure there comes from its options.
        blame_options = family.builtin and options
        raise InputError(
            "--option" if blame_options else "--family",
            f"building {family.name} at width {widths[0]} failed: {exc}",
            "fix the option" if blame_options else "fix the family or its options",
        ) from None


def check_output(family, width: int, options: dict, loss: str, batch_size: int, seq_len: int, at_depth=None):
    """A user's model (or a Hugging Face one) against its data and loss, by one forward of the
    narrowest model built as its SP run would be, so a misfit is one line before any run
    starts. The global RNG is left as it was."""
    if family.name in BUILTIN:
        return
    spec = RunSpec(
        family=family.name,
        mode="sp",
        optimizer="adam",
        lr=1.0,
        width=width,
        seed=0,
        steps=1,
        horizon="short",
        family_options=tuple(sorted(options.items())),
        depth=at_depth,
    )
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        model, _ = modes.build(spec, family)
        x, y = family.batch(PROBE_INDEX, batch_size, seq_len)
        try:
            output = losses.output_of(model(x))
        except InputError:
            raise
        except Exception as exc:
            raise InputError(
                "--family",
                f"{family.name} at width {width} failed on its data: {exc}",
                "make the model's forward take the batch --batch or the data source gives",
            ) from None
        losses.check(loss, family.name, output, y)


def check_metrics(metrics: Iterable[str] | None) -> tuple[str, ...] | None:
    """None or empty: every metric. The loss is always recorded."""
    metrics = tuple(dict.fromkeys(metrics or ()))
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise InputError(
            "--metric", f"unknown metric {', '.join(map(repr, unknown))}", f"use some of {', '.join(METRICS)}"
        )
    return metrics or None
