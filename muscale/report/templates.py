"""The jinja environment of a kind's report: its own folder first, then this one's
common.html.j2 (styles, tables, the metadata block) that every report imports."""

import functools
from pathlib import Path

import jinja2


@functools.cache
def environment(folder: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader([folder, Path(__file__).parent]),
        autoescape=True,  # always, not by extension: the templates are .html.j2 and module names are user text
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
