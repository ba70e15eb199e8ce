"""Where a report's numbers came from: the command, the versions and the machine (every
report), and the data its runs read (studies)."""

import dataclasses
import datetime
import importlib.metadata
import shlex
import subprocess
import sys
from pathlib import Path

import torch

from ..config.spec import RunSpec, multiplier_kind
from ..models.data import resolve_source


def environment(device: str) -> dict[str, str]:
    def version(pkg):
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    commit = (
        subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path.cwd()
        ).stdout.strip()
        if Path(".git").exists()
        else ""
    )
    return {
        "command": shlex.join(["muscale", *sys.argv[1:]]),
        "muscale": version("muscale"),
        "torch": torch.__version__,
        "mup": version("mup"),
        "device": device,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "git commit": commit or "none",
    }


def data(specs) -> dict[str, str]:
    """The data sources of `specs`, each with its fingerprint, so a re-fit shows what the runs read."""
    sources = sorted({s.data for s in specs})
    return {"data": ", ".join(f"{name} (fingerprint {resolve_source(name).fingerprint})" for name in sources)}


def training(specs: list[RunSpec]) -> dict[str, str]:
    """How each scheme of a study on the long horizon trained, as report metadata: the
    settings behind every exponent, once per family and mode whatever its widths and depths."""
    out, steps = {}, {}
    for spec in specs:
        key = dataclasses.replace(spec, width=0, depth=None, seed=0, steps=0)
        steps.setdefault(key, {})[spec.width] = spec.steps
    for s, own in steps.items():
        width, count = min(own.items())
        uniform = len(set(own.values())) == 1
        clock = count if uniform else count * s.base_width // width
        length = (
            f"{clock} steps"
            if uniform
            else ", ".join(f"{n} steps at width {w}" for w, n in sorted(own.items()))
            + f" (matched η·λ·t, read on width {s.base_width}'s clock of {clock})"
        )
        text = (
            f"{s.optimizer}, lr {s.lr:g}, weight decay {s.weight_decay:g} on matrices (η·λ·steps = "
            f"{s.lr * s.weight_decay * clock:.3g}), {length} of {s.batch_size}×{s.seq_len} tokens "
            f"({s.data}), options {dict(s.family_options) or 'none'}"
        )
        if multiplier_kind(s.mode):
            placement = ", ".join(f"{k}={v}" for k, v in s.multipliers) or "the mode's default"
            text += (
                f"; multipliers: lr {s.lr if s.mult_lr is None else s.mult_lr:g}, weight decay "
                f"{s.mult_weight_decay:g}, start {s.mult_init:g}, placement {placement}"
            )
        out[f"training ({s.family}, {s.mode})"] = text
    return dict(sorted(out.items()))
