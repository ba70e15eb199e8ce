"""Every example of "Check your own model" (docs/guide/own-model.md, linked from the README)
runs as written: its files are written out, its commands run from their directory (muscale's
in-process, at smaller widths and fewer steps and seeds; `python FILE` as a process). A guide
whose examples do not run teaches people to distrust the guide."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from clirun import run_cli

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "guide" / "own-model.md"
# Appended to every coord-check: click takes an option's last value.
SMALL = ("--widths", "16,32", "--steps", "2", "--seeds", "1", "--jobs", "1", "--device", "cpu")


def section() -> str:
    """The whole page: every python and bash block in it is an example."""
    return GUIDE.read_text(encoding="utf-8")


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", section(), flags=re.S)


def files() -> dict[str, str]:
    out = {}
    for code in blocks("python"):
        first = code.splitlines()[0]
        assert re.fullmatch(r"# \w+\.py", first), f"a python example must start with its file name: {first}"
        out[first[2:]] = code
    return out


def scripts() -> list[list[str]]:
    """Each bash block: commands run in order in one directory (a gate reads what a check wrote)."""
    return [[line for line in code.splitlines() if line.strip()] for code in blocks("bash")]


def test_the_section_has_every_kind_of_example():
    names, lines = files(), " ".join(" ".join(script) for script in scripts())
    assert {"tiny_gpt.py", "classifier.py", "regression.py", "api_check.py"} <= set(names)
    for needle in ("hf:gpt2", "hf:llama", "--batch", "--loss mse", "--option depth=3", "muscale gate"):
        assert needle in lines, needle


# The first example (a nanoGPT-style family) runs in the default suite; the others, about half
# a minute each, run with `pytest -m slow` to keep CI inside its budget.
@pytest.mark.parametrize(
    "script",
    [
        pytest.param(script, id=script[0][:60], marks=() if i == 0 else pytest.mark.slow)
        for i, script in enumerate(scripts())
    ],
)
def test_readme_example_runs(monkeypatch, capsys, tmp_path, script):
    if "hf:" in " ".join(script):
        pytest.importorskip("transformers")
    for name, code in files().items():
        (tmp_path / name).write_text(code)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for command in script:
        run(monkeypatch, capsys, tmp_path, command)


def run(monkeypatch, capsys, cwd: Path, command: str):
    words = shlex.split(command)
    if words[0].startswith("PYTHONPATH="):
        words = words[1:]  # the in-process run has cwd on sys.path already
    if words[0] == "python":
        done = subprocess.run(
            [sys.executable, *words[1:]],
            cwd=cwd,
            capture_output=True,
            text=True,
            env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"},
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert "alpha" in done.stdout
        return
    assert words[0] == "muscale"
    extra = SMALL if words[1] == "coord-check" else ()
    if "hf:" in command:
        extra = (*extra[:1], "32,64", *extra[2:])
    code, stdout, stderr = run_cli(monkeypatch, capsys, *words[1:], *extra)
    assert code == 0, stderr
