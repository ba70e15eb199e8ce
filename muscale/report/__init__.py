"""What every kind's report shares: number formatting (text), frame helpers and shared
panels (frames), figure primitives (figures), the jinja environment and common.html.j2
(templates), and the index page of a folder of reports (index). Each kind's own report
lives with the kind (muscale/kinds/<kind>/report.py)."""

from .index import write_index

__all__ = ["write_index"]
