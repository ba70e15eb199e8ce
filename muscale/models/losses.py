"""Losses, and what a model's forward returns as the loss sees it.

Real models do not all return a tensor: nanoGPT returns `(logits, loss)`, Hugging Face a
`ModelOutput` with `.logits`, others a dict. The first tensor of those is the output the
loss and the width exponents are about; probes keep seeing the modules inside as before."""

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F

from ..errors import InputError
from .references import load

LOSSES = ("cross_entropy", "mse")


def output_of(result) -> torch.Tensor:
    """A tensor; a tuple or list's first element; a mapping's "logits"; an object's `.logits`."""
    if isinstance(result, torch.Tensor):
        return result
    if isinstance(result, tuple | list) and result and isinstance(result[0], torch.Tensor):
        return result[0]
    if isinstance(result, Mapping) and isinstance(result.get("logits"), torch.Tensor):
        return result["logits"]
    if isinstance(getattr(result, "logits", None), torch.Tensor):
        return result.logits
    raise InputError(
        "--family",
        f"the model's forward returned {type(result).__name__}, which holds no output tensor",
        "return a tensor, a tuple or list whose first element is one, or a mapping or object with logits",
    )


def cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(output.reshape(-1, output.shape[-1]).float(), target.reshape(-1))


def mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(output.float(), target.float())


def _shape_problem(name: str, output: torch.Tensor, target: torch.Tensor) -> str | None:
    """Why `output` cannot meet `target` under a built-in loss, or None."""
    if name == "mse":
        return None if output.shape == target.shape else "mse needs equal shapes"
    if target.is_floating_point():
        return "cross_entropy needs integer class targets"
    return None if output.shape[:-1] == target.shape else "cross_entropy needs output (…, classes) for targets (…)"


def check(name: str, family: str, output: torch.Tensor, target: torch.Tensor):
    """One line naming the family, both shapes and the fix when a model's output does not fit
    its data; called once per run, on the fixed batch, so its one host sync costs nothing."""
    problem = _shape_problem(name, output, target) if name in LOSSES else None
    if problem is None and name == "cross_entropy" and target.numel() and int(target.max()) >= output.shape[-1]:
        problem = f"targets reach class {int(target.max())}"
    if problem:
        raise InputError(
            "--family",
            f"{family} outputs shape {tuple(output.shape)} for targets of shape {tuple(target.shape)} ({problem})",
            "make the model's output fit the data, or choose --loss (cross_entropy, mse or package.module:function)",
        )


def resolve(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A built-in loss by name, else `package.module:function` taking (output, target) and
    returning a scalar tensor."""
    builtin = {"cross_entropy": cross_entropy, "mse": mse}
    return builtin[name] if name in builtin else load(name, "--loss", LOSSES)
