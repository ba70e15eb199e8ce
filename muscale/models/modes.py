"""Modes: how a family's model is parametrized (sp, mup, mup-lr, lrm, lrm-scalar, mup+lrm).

μP goes through the `mup` package: base and delta shapes built on the meta device (free
at any width), `MuReadout` readout, and μP optimizers in `optim.py`. `mup-lr` is the SP
model (init, forward and plain head untouched) given mup's base shapes only, so that the
μP optimizers scale its learning rates."""

import torch
from mup import MuReadout, set_base_shapes
from torch import nn

from ..config.depth import scaled
from ..config.spec import RunSpec, frozen_gains, has_mup, has_mup_lr, multiplier_kind
from ..errors import InputError
from . import depth, lrm
from .families import Family, Hooks
from .roles import role_of


def hooks(mode: str, base_width: int, multipliers: tuple[tuple[str, float], ...] = ()) -> Hooks:
    """`multipliers`: Falcon-H1's fixed μP multipliers (families.MULTIPLIER_POINTS), μP modes only."""
    if not has_mup(mode):
        return Hooks()
    return Hooks(
        readout=lambda fan_in, fan_out: MuReadout(fan_in, fan_out, bias=False),
        # 1/head_dim, normalised so the scale equals SP's 1/sqrt(head_dim) at the base width.
        attn_scale=lambda head_dim, width: (head_dim * base_width / width) ** 0.5 / head_dim,
        multipliers=multipliers,
        base_width=base_width,
    )


def check_readout(model: nn.Module, mode: str) -> bool:
    """Whether the model's readout is a mup.MuReadout, refusing the modes it does not fit."""
    has_readout = any(isinstance(m, MuReadout) for m in model.modules())
    if has_mup(mode) and not has_readout:
        raise InputError(
            "--family",
            f"mode {mode} needs the model's readout to be a mup.MuReadout",
            "build the output layer with mup.MuReadout, as mup asks",
        )
    if has_mup_lr(mode) and not has_mup(mode) and has_readout:
        raise InputError(
            "--family",
            f"mode {mode} keeps SP's forward, which a mup.MuReadout would change by its width multiplier",
            "build the output layer with nn.Linear, or use mode mup",
        )
    return has_readout


def build(spec: RunSpec, family: Family) -> tuple[nn.Module, list[nn.Parameter]]:
    """The model of one run, seeded immediately before it is built, plus its multipliers."""
    h, options = hooks(spec.mode, spec.base_width, spec.mup_multipliers), dict(spec.family_options)
    if has_mup_lr(spec.mode):
        with torch.device("meta"):
            base = family.make(spec.base_width, h, options, spec.depth)
            delta = family.make(2 * spec.base_width, h, options, spec.depth)
    torch.manual_seed(spec.seed)
    model = family.make(spec.width, h, options, spec.depth)
    if spec.depth is not None and scaled(spec.depth_param):
        depth.apply(model, spec.branch_multiplier, spec.family)
    has_readout = check_readout(model, spec.mode)
    if has_mup(spec.mode):
        set_base_shapes(model, base, delta=delta)
    elif has_mup_lr(spec.mode):
        # Base shapes for the optimizer alone: no μP rescaling of the init, and the plain head
        # (finite fan-out, infinite fan-in) that mup's assertion would refuse is SP's own.
        set_base_shapes(model, base, delta=delta, rescale_params=False, do_assert=False)
    elif has_readout:
        set_base_shapes(model, None)  # mup's own way to run a μP-ready model in standard parametrization
    if frozen_gains(spec.mode):
        for name, module in model.named_modules():
            if role_of(name, module) == "norm" and isinstance(getattr(module, "weight", None), nn.Parameter):
                module.weight.requires_grad_(False)
    kind = multiplier_kind(spec.mode)
    if not kind:
        return model, []
    return model, lrm.apply(
        model, lrm.placement(kind, spec.multipliers), spec.lrm_impl, spec.mult_init, spec.mult_param
    )
