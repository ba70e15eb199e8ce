"""muscale: width-scaling and μP transfer analysis.

The public functions load on first use: worker processes import this package to train a
run and should not pay for the plotting and statistics stack they never touch."""

import importlib

_API = {
    "coord_check": "run.coordcheck",
    "plan": "run.coordcheck",
    "fit_exponents": "analysis.fit",
    "write_report": "kinds.coord_check",
    "Recorder": "run.recorder",
    "Residual": "models.depth",
}
# The modules the documented API reaches through (`muscale.lrm.merge(model)`,
# `muscale.checkpoint.load(path)`, `muscale.importers.mup(df, out)`, `muscale.options.OPTIONS`, `muscale.api`): their names stay
# short wherever the layers put them.
_MODULES = {
    "api": "api",
    "checkpoint": "run.checkpoint",
    "importers": "run.importers",
    "lrm": "models.lrm",
    "options": "config.options",
}

__all__ = [*_API, *_MODULES]


def __getattr__(name: str):
    if name in _MODULES:
        return importlib.import_module(f".{_MODULES[name]}", __name__)
    if name not in _API:
        raise AttributeError(f"module 'muscale' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
