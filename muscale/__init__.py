"""muscale: width-scaling and μP transfer analysis.

The public functions load on first use: worker processes import this package to train a
run and should not pay for the plotting and statistics stack they never touch."""

import importlib

_API = {"coord_check": "coordcheck", "plan": "coordcheck", "fit_exponents": "fit", "write_report": "kinds.coord_check.report"}

__all__ = list(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'muscale' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
