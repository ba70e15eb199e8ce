"""What every study across widths shares: its keys, and their validation and expansion into
the RunSpec fields of each family × mode × optimizer (the lr_transfer and claims kinds)."""

from dataclasses import dataclass

from ..config.options import study_keys
from ..config.spec import (
    MODES,
    OPTIMIZERS,
    RunSpec,
    canonical_mode,
    has_mup,
    has_mup_lr,
    multiplier_kind,
    multiplier_lr,
)
from ..models.data import resolve_source
from ..models.families import resolve
from ..models.losses import resolve as resolve_loss
from ..run.validate import (
    check_beta2,
    check_data_order,
    check_depths,
    check_family,
    check_mult_param,
    check_multipliers,
    check_optimizer,
    check_placement,
    check_positive,
    check_widths,
)
from .studyfile import Reader

# key: (type, default; None = required, help): the keys every study across widths may take,
# with the defaults of a sweep where they are not RunSpec's.
KEYS = {"title": (str, "", "a heading for the report")} | study_keys(
    "family",
    "mode",
    "optimizer",
    "widths",
    "depths",
    "base_depth",
    "depth_param",
    "depth_alpha",
    "seeds",
    "steps",
    "batch_size",
    "seq_len",
    "weight_decay",
    "mult_weight_decay",
    "multipliers",
    "mult_init",
    "base_width",
    "data",
    "data_order",
    "metrics",
    "eval_batches",
    "options",
    "mup_multipliers",
    "clip",
    "clip_multipliers",
    "muon_adjust_lr",
    "adam_eps_scaling",
    "weight_decay_kind",
    "lrm_impl",
    "loss",
    "mult_param",
    "beta2",
    optimizers=["adam"],
    depths=[],
    depth_params=["sp"],
    seeds=1,
    steps=200,
    seq_len=64,
    data="stdlib",
    metrics=[],
    eval_batches=4,
    base_width=None,
    muon_adjust_lr=None,
    lrm_impl=None,
)
# Optimizer keys that apply to some runs only: a study sets them on the runs they apply to,
# and refuses them, as the command line does, when they apply to none.
SCOPED = {
    "clip_multipliers": lambda mode, optimizer: multiplier_kind(mode) is not None,
    "muon_adjust_lr": lambda mode, optimizer: optimizer == "muon",
    "adam_eps_scaling": lambda mode, optimizer: optimizer != "sgd" and has_mup_lr(mode),
    "lrm_impl": lambda mode, optimizer: multiplier_kind(mode) is not None,
}
TRAINING = ("clip", "clip_multipliers", "muon_adjust_lr", "adam_eps_scaling", "weight_decay_kind", "lrm_impl")
# The keys of a study on the long horizon (the width and depth-profile kinds): AdamW, two seeds
# for an interval, and lr, weight decay and the multipliers' lr as explicit choices (the
# equilibrium and the multipliers depend on them).
LONG = (
    {
        key: KEYS[key]
        for key in (
            "title",
            "families",
            "modes",
            "widths",
            "depths",
            "base_depth",
            "depth_params",
            "depth_alpha",
            "steps",
            "batch_size",
            "seq_len",
            "mult_weight_decay",
            "multipliers",
            "mult_init",
            "base_width",
            "data",
            "data_order",
            "options",
            "mup_multipliers",
            "loss",
            "mult_param",
            "beta2",
            *TRAINING,
        )
    }
    | study_keys(
        "optimizer",
        "seeds",
        "lr",
        "weight_decay",
        "mult_lr",
        optimizers=["adamw"],
        seeds=2,
        lr=None,
        weight_decay=None,
        mult_lr=None,
    )
    | {"eta_lambda_steps": (float, 5.0, "the least lr·weight_decay·steps: the equilibrium needs a few 1/(η·λ)")}
)


@dataclass(frozen=True)
class Runs:
    """What the keys every study across widths shares say (across_widths)."""

    families: list[str]
    modes: list[str]
    widths: tuple[int, ...]
    depths: tuple[int | None, ...]  # (None,): the family's own depth
    base_width: int
    options: dict[str, str]
    # Per family × mode × optimizer, the RunSpec fields those keys give.
    fields: list[dict]


def across_widths(r: Reader, top: dict, depth_sweep: bool = False) -> Runs:
    """Validate the keys a study across widths shares (families, modes, optimizers, widths,
    its depth and depth rules, seeds, steps, batches, weight decays, multipliers, options,
    training keys)."""
    families = r.listed("families", top["families"], str)
    modes = r.listed("modes", top["modes"], str, MODES)
    optimizers = r.listed("optimizers", top["optimizers"], str, OPTIMIZERS)
    widths = tuple(r.listed("widths", top["widths"], int))
    depths = tuple(r.listed("depths", top["depths"], int)) if top["depths"] else ()
    if len(depths) > 1 and not depth_sweep:
        raise r.error(
            "depths",
            f"{list(depths)}: this kind of study runs at one depth",
            "list one depth, or sweep depth in an lr_transfer study or with `muscale coord-check --depths …`",
        )
    if len(depths) > 1 and len(top["widths"]) > 1:
        raise r.error("widths", "a sweep over depths runs at one width", "list one width, or one depth")
    depth_params = r.listed("depth_params", top["depth_params"], str)
    if top["depth_alpha"] is not None and "alpha" not in depth_params:
        raise r.error("depth_alpha", "goes with the depth rule alpha, which depth_params lacks", "add alpha or drop it")
    r.check(check_widths, widths, depths, key="widths")
    for key in ("seeds", "steps", "batch_size", "seq_len", "base_width"):
        r.check(check_positive, key, top[key], True, key=key)
    for key in ("weight_decay", "mult_weight_decay"):
        if top[key] < 0:
            raise r.error(key, f"{top[key]} is negative", f"give {key} a value ≥ 0")
    r.check(resolve_loss, top["loss"], key="loss")
    base_width = top["base_width"] or widths[0]
    options = {k: str(v) for k, v in top["options"].items()}
    for mode in modes:
        if has_mup(mode):
            r.check(check_multipliers, top["mup_multipliers"], mode, key="mup_multipliers")
    training = _training(r, top, modes, optimizers)
    if any(multiplier_kind(m) for m in modes) or top["mult_param"] != KEYS["mult_param"][1]:
        r.check(
            check_mult_param,
            next((m for m in modes if multiplier_kind(m)), modes[0]),
            top["mult_param"],
            key="mult_param",
        )
    if top["beta2"] is not None:
        r.check(check_beta2, top["beta2"], next((o for o in optimizers if o != "sgd"), optimizers[0]), key="beta2")
    placement = tuple(sorted(top["multipliers"].items()))
    r.check(
        check_placement, top["multipliers"], next((m for m in modes if multiplier_kind(m)), modes[0]), top["mult_init"]
    )
    r.check(check_data_order, top["data_order"], key="data_order")
    for family in families:
        fam = r.check(resolve, family, None, top["data"])
        for depth_param in depth_params:
            alpha = top["depth_alpha"] if depth_param == "alpha" else None
            r.check(check_depths, fam, depths, top["base_depth"], depth_param, alpha, options)
        for mode in modes:
            for depth_param in depth_params:
                at_depth = depths[0] if depths else None
                r.check(
                    check_family, fam, widths, base_width, options, mode, at_depth, depth_param, context=f"{family}: "
                )
        if family != "mlp":
            r.check(resolve_source(top["data"]).check, top["seq_len"], key="seq_len")
    fields = [
        dict(
            family=family,
            mode=canonical_mode(mode),
            optimizer=optimizer,
            steps=top["steps"],
            weight_decay=top["weight_decay"],
            batch_size=top["batch_size"],
            seq_len=top["seq_len"],
            mult_weight_decay=top["mult_weight_decay"],
            base_width=base_width,
            multipliers=placement if multiplier_kind(mode) else (),
            mult_init=top["mult_init"] if multiplier_kind(mode) else 1.0,
            family_options=tuple(sorted(options.items())),
            data=top["data"],
            data_order=top["data_order"],
            loss=top["loss"],
            mup_multipliers=tuple(sorted(top["mup_multipliers"].items())) if has_mup(mode) else (),
            mult_param=top["mult_param"] if multiplier_kind(mode) else KEYS["mult_param"][1],
            beta2=top["beta2"] if optimizer != "sgd" else None,
            depth_param=depth_param,
            depth_alpha=top["depth_alpha"] if depth_param == "alpha" else None,
            base_depth=(top["base_depth"] or min(depths)) if depths else None,
            **training[mode, optimizer],
        )
        for family in families
        for mode in modes
        for optimizer in optimizers
        for depth_param in depth_params
    ]
    return Runs(families, modes, widths, depths or (None,), base_width, options, fields)


def _training(r: Reader, top: dict, modes: list[str], optimizers: list[str]) -> dict[tuple[str, str], dict]:
    """The optimizer keys of each mode × optimizer, validated as coord-check validates them."""
    runs = {}
    for mode in modes:
        for optimizer in optimizers:
            fields = {
                key: top[key] if SCOPED.get(key, lambda m, o: True)(mode, optimizer) else KEYS[key][1]
                for key in TRAINING
            }
            r.check(lambda: check_optimizer(mode, optimizer, top["weight_decay"], **fields))
            runs[mode, optimizer] = {key: value for key, value in fields.items() if value is not None}
    for key, applies in SCOPED.items():
        if top[key] != KEYS[key][1] and not any(applies(m, o) for m in modes for o in optimizers):
            fields = runs[modes[0], optimizers[0]] | {key: top[key]}
            r.check(lambda: check_optimizer(modes[0], optimizers[0], top["weight_decay"], **fields))
    return runs


def on_long_horizon(r: Reader, top: dict, runs: Runs, metrics: tuple[str, ...] | None) -> tuple[RunSpec, ...]:
    """The runs of a study on the long horizon (its keys: LONG), each family × mode ×
    optimizer × width × depth × seed once. The weight-decay equilibrium ‖W‖ ∝ sqrt(η/λ)
    settles in about 1/(η·λ) steps, so fewer than `eta_lambda_steps` of them are refused; an
    interval over seeds needs two seeds at least; the multipliers' learning rate is required
    where a scheme has them and refused where none has (it would reach no run)."""
    if top["seeds"] < 2:
        raise r.error("seeds", f"{top['seeds']} seed gives no interval over seeds", "give seeds = 2 or more")
    learnable = any(multiplier_kind(m) for m in runs.modes)
    if learnable and top["mult_lr"] is None:
        raise r.error("mult_lr", "missing", "add mult_lr = … (the learnable multipliers' learning rate)")
    if not learnable and top["mult_lr"] is not None:
        raise r.error("mult_lr", "no scheme of this study has learnable multipliers", "drop mult_lr")
    for key in ("lr", "weight_decay", *(("mult_lr",) if learnable else ()), "eta_lambda_steps"):
        r.check(check_positive, key, top[key], key=key)
    budget = top["lr"] * top["weight_decay"] * top["steps"]
    if budget < top["eta_lambda_steps"]:
        raise r.error(
            "steps",
            f"lr·weight_decay·steps = {budget:.3g} is below eta_lambda_steps = "
            f"{top['eta_lambda_steps']:g}: weight decay has not settled the matrix norms",
            f"give steps ≥ {top['eta_lambda_steps'] / (top['lr'] * top['weight_decay']):.0f}, "
            "or raise lr or weight_decay",
        )
    return tuple(
        RunSpec(
            **fields,
            lr=top["lr"],
            width=width,
            depth=depth,
            seed=seed,
            horizon="long",
            metrics=metrics,
            mult_lr=multiplier_lr(fields["mode"], top["mult_lr"]) if multiplier_kind(fields["mode"]) else None,
        )
        for fields in runs.fields
        for width in runs.widths
        for depth in runs.depths
        for seed in range(top["seeds"])
    )
