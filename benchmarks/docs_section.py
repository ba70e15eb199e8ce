"""The timed scripts write their own section of docs/benchmarks.md, so no number there is
typed by hand and each says when, where and at which commit it was measured.

A script runs its main inside `written(__file__)`: what it prints still goes to the terminal,
and, when it finishes without an error, replaces the script's section of the file (the
command, the machine, the commit, and the printed output verbatim). `--no-docs` leaves the
file alone, for a trial run or a run with non-default options nobody should read as the
reference."""

import contextlib
import datetime
import io
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
HEADER = """# Benchmarks

Each section below is written by the script it names (benchmarks/docs_section.py): the command,
the machine, the commit, and what the script printed. Nothing here is written by hand; re-run a
script to refresh its section.
"""


class _Tee(io.TextIOBase):
    def __init__(self, *streams):
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


def _commit() -> str:
    done = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def _sections(text: str) -> dict[str, str]:
    parts = re.split(r"^(?=## benchmarks/)", text, flags=re.M)
    return {p.splitlines()[0][3:].strip(): p for p in parts[1:]}


def _write(script: str, argv: list[str], output: str) -> None:
    sections = _sections(DOCS.read_text(encoding="utf-8")) if DOCS.exists() else {}
    machine = f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}"
    sections[script] = (
        f"## {script}\n\n`python {' '.join([script, *argv])}` on {datetime.date.today()}, "
        f"{machine}, commit {_commit()}:\n\n```\n{output.rstrip()}\n```\n\n"
    )
    body = "".join(sections[name] for name in sorted(sections))
    tmp = DOCS.with_suffix(".md.tmp")
    tmp.write_text(HEADER + "\n" + body.rstrip() + "\n", encoding="utf-8")
    tmp.replace(DOCS)


@contextlib.contextmanager
def written(file: str):
    """Tee stdout while the body runs; on success, store it as `file`'s section."""
    script = str(Path(file).resolve().relative_to(ROOT))
    argv = [a for a in sys.argv[1:] if a != "--no-docs"]
    docs = "--no-docs" not in sys.argv[1:]
    sys.argv[1:] = argv
    buffer = io.StringIO()
    with contextlib.redirect_stdout(_Tee(sys.stdout, buffer)):
        yield
    if docs:
        _write(script, argv, buffer.getvalue())
