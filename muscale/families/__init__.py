"""Families: a model builder `build(width)` plus its data.

Built-in builders take the mode's `Hooks` so that a mode turns them μP (readout layer,
attention scale) without a second copy of the model. User families are
`package.module:function` with `function(width) -> nn.Module`."""

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .. import data
from ..errors import InputError


# Where Falcon-H1 puts fixed μP multipliers (the tuned baseline learnable multipliers are
# compared against); a built-in family applies the ones it has, a key absent means 1.
MULTIPLIER_POINTS = {
    "embed": "embedding output", "head": "LM head output (after the final norm)",
    "key": "key projection output, before rotary", "attn_in": "attention input (the normed hidden state)",
    "attn_out": "attention output (after o_proj)", "ssm_in": "SSM input (before in_proj)",
    "ssm_out": "SSM output (after out_proj)", "in_proj_z": "in_proj's z block", "in_proj_x": "in_proj's x block",
    "in_proj_B": "in_proj's B block", "in_proj_C": "in_proj's C block", "in_proj_dt": "in_proj's dt block",
    "mlp_gate": "MLP gate input", "mlp_down": "MLP down-projection output",
}


@dataclass(frozen=True)
class Hooks:
    """What a mode changes inside a built-in model."""

    readout: Callable[[int, int], nn.Module] = lambda fan_in, fan_out: nn.Linear(fan_in, fan_out, bias=False)
    attn_scale: Callable[[int, int], float] = lambda head_dim, width: head_dim**-0.5
    multipliers: tuple[tuple[str, float], ...] = ()

    def fixed(self, key: str) -> "Fixed":
        return Fixed(dict(self.multipliers).get(key))


class Fixed(nn.Module):
    """A fixed (not learned) multiplier at one of MULTIPLIER_POINTS; the identity when unset,
    so a model without multipliers computes exactly what it did before."""

    def __init__(self, value: float | None):
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.value is None else x * self.value

    def extra_repr(self) -> str:
        return "" if self.value is None else f"{self.value:g}"


Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class Family:
    name: str
    build: Callable[..., nn.Module]
    batch: Callable[[int, int, int], Batch]
    builtin: bool
    check_width: Callable[[int, dict], str | None] = lambda width, options: None
    width_rules: str = ""
    # A built-in token LM sizes its embedding and head to its data; None for other families.
    vocab: int | None = None

    def make(self, width: int, hooks: Hooks, options: dict) -> nn.Module:
        if self.builtin:
            vocab = {} if self.vocab is None else {"vocab": self.vocab}
            return self.build(width, hooks, **options, **vocab)
        model = self.build(width)
        if not isinstance(model, nn.Module):
            raise InputError("--family", f"{self.name}({width}) returned {type(model).__name__}, not an nn.Module",
                             "make the function return a torch.nn.Module")
        return model


def _import(ref: str, option: str) -> Callable:
    mod_name, _, fn_name = ref.partition(":")
    if not mod_name or not fn_name:
        raise InputError(option, f"'{ref}' is neither a built-in name nor package.module:function",
                         f"use one of {', '.join(BUILTIN)} or package.module:function")
    try:
        fn = getattr(importlib.import_module(mod_name), fn_name)
    except (ImportError, AttributeError) as exc:
        raise InputError(option, f"cannot import '{ref}' ({exc})",
                         "check the module is on PYTHONPATH and defines the function") from None
    if not callable(fn):
        raise InputError(option, f"'{ref}' is not callable", "point at a function")
    return fn


def _user_batch(ref: str) -> Callable[[int, int, int], Batch]:
    fn = _import(ref, "--batch")

    def batch(index: int, batch_size: int, seq_len: int) -> Batch:
        out = fn()
        if not (isinstance(out, tuple) and len(out) == 2 and all(isinstance(t, torch.Tensor) for t in out)):
            raise InputError("--batch", f"{ref}() must return (inputs, targets) tensors",
                             "return a tuple of two tensors")
        return out

    return batch


def resolve(name: str, batch: str | None = None, source: str = "synthetic") -> Family:
    """The family `name` fed by the token source `source` (see `data.resolve_source`), or
    by the user's `batch` function for a model that is not a token LM."""
    if name in BUILTIN:
        if batch is not None:
            raise InputError("--batch", f"built-in family '{name}' brings its own data",
                             "drop --batch or use a package.module:function family")
        family = BUILTIN[name]
        if family.vocab is None:
            if source != "synthetic":
                raise InputError("data", f"family {name} is not a token LM and brings its own data",
                                 "use data = synthetic for it, or a token LM family")
            return family
        tokens = data.resolve_source(source)
        return dataclasses.replace(family, batch=tokens.batch, vocab=tokens.vocab)
    build = _import(name, "--family")
    if batch is not None:
        if source != "synthetic":
            raise InputError("data", "a --batch function and a token source were both given",
                             "drop one of them")
        return Family(name, build, _user_batch(batch), builtin=False)
    return Family(name, build, data.resolve_source(source).batch, builtin=False)


from . import hybrid, mamba2, mlp, transformer  # noqa: E402  (families register below, after Family exists)

BUILTIN = {
    "mlp": Family("mlp", mlp.build, lambda i, b, t: data.mlp_batch(i, b), True, width_rules=mlp.WIDTH_RULES),
    "transformer": Family("transformer", transformer.build, data.token_batch, True, vocab=data.VOCAB,
                          check_width=transformer.check_width, width_rules=transformer.WIDTH_RULES),
    "mamba2": Family("mamba2", mamba2.build, data.token_batch, True, vocab=data.VOCAB,
                     check_width=mamba2.check_width, width_rules=mamba2.WIDTH_RULES),
    "hybrid": Family("hybrid", hybrid.build, data.token_batch, True, vocab=data.VOCAB,
                     check_width=hybrid.check_width, width_rules=hybrid.WIDTH_RULES),
}
