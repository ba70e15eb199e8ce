"""Running the `muscale` command in-process, as its console script does, for tests."""

import sys

from muscale.cli import main


def run_cli(monkeypatch, capsys, *args):
    """Exit code, stdout and stderr of `muscale ARGS`; a command that returns exits 0."""
    monkeypatch.setattr(sys, "argv", ["muscale", *args])
    try:
        main()
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    out = capsys.readouterr()
    return code, out.out, out.err
