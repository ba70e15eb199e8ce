"""A tiny study file for tests, written as a user would write one: 12 runs of a few steps."""

TINY = """\
title = "tiny sweep"
families = ["transformer"]
modes = ["sp", "mup"]
widths = [16, 32]
steps = 6
batch_size = 2
seq_len = 16
eval_batches = 1
data = "synthetic"

[options]
layers = 1

[lr]
log2_min = -9
log2_max = -3
log2_step = 3
"""


def write_study(tmp_path, text: str):
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path


def assert_study_error(monkeypatch, capsys, tmp_path, text: str, key: str, line: int | None) -> None:
    """`muscale sweep` on a study file holding `text` must exit 2 with one line naming
    file:line: key (file: key when the key has no line), no traceback, and write nothing."""
    from clirun import run_cli

    path = write_study(tmp_path, text)
    out = tmp_path / "out"
    code, _, stderr = run_cli(monkeypatch, capsys, "sweep", str(path), "--out", str(out))
    assert code == 2
    assert (f"{path}:{line}: {key}:" if line else f"{path}: {key}:") in stderr, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
    assert not out.exists()
