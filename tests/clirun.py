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


def assert_input_error(monkeypatch, capsys, out, needle: str, *args):
    """`muscale ARGS` must exit 2 with one line holding `needle`, no traceback, and `out` unwritten."""
    code, _, stderr = run_cli(monkeypatch, capsys, *args)
    assert code == 2, stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr, stderr
    assert needle in stderr
    assert not out.exists()
