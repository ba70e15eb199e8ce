"""Trained models on disk: {"spec": RunSpec.to_dict(), "state_dict": …}, written atomically.

The spec rebuilds the model (modes.build, as a run does), so the file holds weights only
and loads with torch's weights-only unpickler. A merged checkpoint (`"merged": True`) has
its multipliers folded into the matrices and loads into the model of `merged_mode`."""

import dataclasses
import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

from ..config.spec import RunSpec, merged_mode, multiplier_kind
from ..errors import InputError
from ..models import lrm, modes
from ..models.families import resolve
from .store import atomic_path


def save(path: Path, spec: RunSpec, model: nn.Module, merged: bool = False) -> None:
    content = {"spec": spec.to_dict(), "state_dict": model.state_dict()} | ({"merged": True} if merged else {})
    with atomic_path(path) as tmp:
        torch.save(content, tmp)


def load(path: Path) -> tuple[RunSpec, nn.Module, bool]:
    """The spec, the model on the CPU with its trained weights, and whether it is merged."""
    path = Path(path)
    fix = "give a .pt file from muscale coord-check --save-models"
    if not path.is_file():
        raise InputError("CHECKPOINT", f"{path} is not a file", fix)
    not_ours = InputError("CHECKPOINT", f"{path} is not a muscale checkpoint", fix)
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError):
        raise not_ours from None
    if not isinstance(content, dict) or not {"spec", "state_dict"} <= content.keys():
        raise not_ours
    try:
        spec = RunSpec.from_dict(content["spec"])
    except (KeyError, TypeError, ValueError, AttributeError):
        raise not_ours from None
    state, merged = content["state_dict"], bool(content.get("merged", False))
    built = dataclasses.replace(spec, mode=merged_mode(spec.mode)) if merged else spec
    model, _ = modes.build(built, resolve(built.family, built.batch, built.data))
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise InputError(
            "CHECKPOINT",
            f"{path}'s weights do not fit the model its spec builds",
            "give a checkpoint written by muscale, unchanged",
        ) from None
    return spec, model, merged


def merge(source: Path, output: Path) -> None:
    """`muscale merge`: fold a checkpoint's multipliers into its matrices, for inference."""
    if Path(output).is_dir():
        raise InputError("--output", f"{output} is a directory", "name a file such as merged.pt")
    spec, model, merged = load(source)
    if merged or multiplier_kind(spec.mode) is None:
        raise InputError(
            "CHECKPOINT",
            f"{source} has no learnable multipliers to merge (mode {spec.mode}{', already merged' if merged else ''})",
            "give a checkpoint of an lrm mode",
        )
    save(output, spec, lrm.merge(model), merged=True)
