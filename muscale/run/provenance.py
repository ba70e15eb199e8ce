"""Where a report's numbers came from: the command, the versions and the machine (every
report), and the data its runs read (studies)."""

import datetime
import importlib.metadata
import shlex
import subprocess
import sys
from pathlib import Path

import torch

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
