"""Running the `muscale` command in-process, as its console script does, for tests."""

import sys

import pytest

from muscale.cli import main


def run_cli(monkeypatch, capsys, *args):
    """Exit code, stdout and stderr of `muscale ARGS` (the command must exit)."""
    monkeypatch.setattr(sys, "argv", ["muscale", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err
