"""Families: a model builder `build(width)` plus its data.

Built-in builders take the mode's `Hooks` so that a mode turns them μP (readout layer,
attention scale) without a second copy of the model. User families are
`package.module:function` with `function(width, **options) -> nn.Module`; `hf:MODEL_TYPE`
is a Hugging Face architecture at random init (families/hf.py, the `hf` extra)."""

import dataclasses
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ...errors import InputError
from .. import data
from ..references import load

# Where Falcon-H1 puts fixed μP multipliers (the tuned baseline learnable multipliers are
# compared against); a built-in family applies the ones it has, a key absent means 1.
MULTIPLIER_POINTS = {
    "embed": "embedding output",
    "head": "LM head output (after the final norm)",
    "key": "key projection output, before rotary",
    "attn_in": "attention input (the normed hidden state)",
    "attn_out": "attention output (after o_proj)",
    "ssm_in": "SSM input (before in_proj)",
    "ssm_out": "SSM output (after out_proj)",
    "in_proj_z": "in_proj's z block",
    "in_proj_x": "in_proj's x block",
    "in_proj_B": "in_proj's B block",
    "in_proj_C": "in_proj's C block",
    "in_proj_dt": "in_proj's dt block",
    "mlp_gate": "MLP gate input",
    "mlp_down": "MLP down-projection output",
}


@dataclass(frozen=True)
class Hooks:
    """What a mode changes inside a built-in model."""

    readout: Callable[[int, int], nn.Module] = lambda fan_in, fan_out: nn.Linear(fan_in, fan_out, bias=False)
    attn_scale: Callable[[int, int], float] = lambda head_dim, width: head_dim**-0.5
    multipliers: tuple[tuple[str, float], ...] = ()
    # μP's base width; None outside μP. Families that init hidden matrices at one std (hf) rescale by it.
    base_width: int | None = None

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

    # The keyword a built-in builder takes its number of blocks by (hf: num_hidden_layers).
    depth_option: str = "layers"

    def depth_keyword(self) -> str | None:
        """How this family is built at a depth: a built-in's option, a user function's own
        `depth` parameter, or None where the function has none."""
        if self.builtin:
            return self.depth_option
        return "depth" if "depth" in inspect.signature(self.build).parameters else None

    def make(self, width: int, hooks: Hooks, options: dict, depth: int | None = None) -> nn.Module:
        if depth is not None:
            options = options | {self.depth_keyword(): depth}
        if self.builtin:
            vocab = {} if self.vocab is None else {"vocab": self.vocab}
            return self.build(width, hooks, **options, **vocab)
        model = self.build(width, **{k: _literal(v) for k, v in options.items()})
        if not isinstance(model, nn.Module):
            raise InputError(
                "--family",
                f"{self.name}({width}) returned {type(model).__name__}, not an nn.Module",
                "make the function return a torch.nn.Module",
            )
        return model


def _literal(value: str) -> int | float | str:
    """A user family's option as the number it spells, else the string."""
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _user_batch(ref: str) -> Callable[[int, int, int], Batch]:
    """`fn()` gives one fixed batch; `fn(step, batch_size)` streams them: step ≥ 0 for training,
    negative for held-out batches (−1 is the fixed batch probes measure on)."""
    fn = load(ref, "--batch")
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    streams = sum(p.kind in positional for p in inspect.signature(fn).parameters.values()) >= 2

    def batch(index: int, batch_size: int, seq_len: int) -> Batch:
        out = fn(index, batch_size) if streams else fn()
        if not (isinstance(out, tuple) and len(out) == 2 and all(isinstance(t, torch.Tensor) for t in out)):
            raise InputError(
                "--batch",
                f"{ref}({'step, batch_size' if streams else ''}) must return (inputs, targets) tensors",
                "return a tuple of two tensors",
            )
        return out

    return batch


def width_rules(name: str) -> str:
    """What a family keeps fixed and what grows with width, for the report; "" for a user's."""
    if name.startswith("hf:"):
        from .hf import WIDTH_RULES

        return WIDTH_RULES
    return BUILTIN[name].width_rules if name in BUILTIN else ""


def resolve(name: str, batch: str | None = None, source: str = "synthetic") -> Family:
    """The family `name` fed by the token source `source` (see `data.resolve_source`), or
    by the user's `batch` function for a model that is not a token LM."""
    if name.startswith("hf:"):
        try:
            from . import hf  # transformers is an optional extra, imported only when asked for
        except ImportError as exc:
            raise InputError(
                "--family", f"{name} needs the optional extra muscale[hf] ({exc})", "pip install 'muscale[hf]'"
            ) from None
        if batch is not None:
            raise InputError(
                "--batch",
                f"family {name} is a token LM fed by the data source",
                "drop --batch, or wrap the model in a package.module:function family",
            )
        model_type = name.partition(":")[2]
        hf.known(model_type)
        tokens = data.resolve_source(source)
        return Family(
            name,
            functools.partial(hf.build, model_type),
            tokens.batch,
            builtin=True,
            check_width=functools.partial(hf.check_width, model_type),
            width_rules=hf.WIDTH_RULES,
            vocab=tokens.vocab,
        )
    if name in BUILTIN:
        if batch is not None:
            raise InputError(
                "--batch",
                f"built-in family '{name}' brings its own data",
                "drop --batch or use a package.module:function family",
            )
        family = BUILTIN[name]
        if family.vocab is None:
            if source != "synthetic":
                raise InputError(
                    "data",
                    f"family {name} is not a token LM and brings its own data",
                    "use data = synthetic for it, or a token LM family",
                )
            return family
        tokens = data.resolve_source(source)
        return dataclasses.replace(family, batch=tokens.batch, vocab=tokens.vocab)
    build = load(name, "--family", (*BUILTIN, "hf:MODEL_TYPE"))
    if batch is not None:
        if source != "synthetic":
            raise InputError("data", "a --batch function and a token source were both given", "drop one of them")
        return Family(name, build, _user_batch(batch), builtin=False)
    return Family(name, build, data.resolve_source(source).batch, builtin=False)


from . import hybrid, mamba2, mlp, transformer  # noqa: E402  (families register below, after Family exists)

BUILTIN = {
    "mlp": Family(
        "mlp", mlp.build, lambda i, b, t: data.mlp_batch(i, b), True, width_rules=mlp.WIDTH_RULES, depth_option="depth"
    ),
    "transformer": Family(
        "transformer",
        transformer.build,
        data.token_batch,
        True,
        vocab=data.VOCAB,
        check_width=transformer.check_width,
        width_rules=transformer.WIDTH_RULES,
    ),
    "mamba2": Family(
        "mamba2",
        mamba2.build,
        data.token_batch,
        True,
        vocab=data.VOCAB,
        check_width=mamba2.check_width,
        width_rules=mamba2.WIDTH_RULES,
    ),
    "hybrid": Family(
        "hybrid",
        hybrid.build,
        data.token_batch,
        True,
        vocab=data.VOCAB,
        check_width=hybrid.check_width,
        width_rules=hybrid.WIDTH_RULES,
    ),
}
