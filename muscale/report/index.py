"""The index page of a folder of reports."""

import html
import os
import re
from pathlib import Path

import jinja2

from ..run.store import write_atomic

_INDEX = jinja2.Environment(autoescape=True).from_string("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>muscale reports</title>
<style>body{font:15px/1.5 system-ui,sans-serif;margin:2em auto;max-width:60em;color:#222}
td,th{padding:.3em .8em;text-align:left;border-bottom:1px solid #ddd}
.pass{color:#1a7f37}.warn{color:#9a6700}.fail{color:#cf222e}.info{color:#57606a}</style></head>
<body><h1>muscale reports</h1><table><tr><th>report</th><th>verdict</th></tr>
{% for r in reports %}<tr><td><a href="{{ r.href }}">{{ r.title }}</a></td><td class="{{ r.overall }}">{{ r.banner }}</td></tr>
{% endfor %}</table></body></html>
""")


def write_index(directory: str | os.PathLike) -> Path:
    """`index.html` listing every report in `directory` with its title and verdict banner,
    read back from the reports themselves so the index cannot disagree with them."""
    directory = Path(directory)
    reports = []
    for page in sorted(directory.glob("*.html")):
        if page.name == "index.html":
            continue
        text = page.read_text(encoding="utf-8")
        title = re.search(r"<title>(.*?)</title>", text, re.S)
        banner = re.search(r'<div class="banner (\w+)">\s*<strong>(.*?)</strong>', text, re.S)
        reports.append(
            {
                "href": page.name,
                "title": html.unescape(title.group(1)) if title else page.name,
                "overall": banner.group(1) if banner else "info",
                "banner": html.unescape(banner.group(2)) if banner else "not a muscale report",
            }
        )
    path = directory / "index.html"
    write_atomic(path, _INDEX.render(reports=reports))
    return path
