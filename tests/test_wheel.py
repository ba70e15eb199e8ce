"""A regular install renders every kind's report. The editable install `make setup` makes
reads templates from the source tree, so it cannot show a template the wheel leaves out:
this test builds the wheel, installs it into a fresh virtual environment that sees neither
the source tree nor the editable install, and re-fits the golden inputs of every study kind
with that environment's `muscale`."""

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
INPUTS = ROOT / "tests" / "gold" / "inputs"
SOURCE = ("muscale", "pyproject.toml", "README.md", "LICENSE")


def build_wheel(source: Path, out: Path) -> Path:
    """The wheel of a copy of `source`, so that building leaves nothing in the work tree."""
    tree = out / "src"
    for name in SOURCE:
        if (source / name).is_dir():
            shutil.copytree(source / name, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif (source / name).exists():
            shutil.copy(source / name, tree / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out / "dist"),
            str(tree),
        ],
        check=True,
        capture_output=True,
    )
    return next((out / "dist").glob("muscale-*.whl"))


def fresh_venv(wheel: Path, where: Path) -> Path:
    """A venv with the wheel installed and this environment's dependencies on its path, but not
    its site directory: the editable install's finder is registered by a .pth file there."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        check=True,
        capture_output=True,
    )
    return where / "bin"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(ROOT, tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    return fresh_venv(wheel, tmp_path_factory.mktemp("venv"))


def test_the_wheel_ships_every_template(wheel):
    in_tree = {str(p.relative_to(ROOT)) for p in (ROOT / "muscale").rglob("*.j2")}
    assert len(in_tree) >= 5  # the shared one and one per study kind
    assert in_tree <= set(zipfile.ZipFile(wheel).namelist())


def test_the_installed_muscale_is_the_wheels(installed, tmp_path):
    where = subprocess.run(
        [installed / "python", "-c", "import muscale; print(muscale.__file__)"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert where.startswith(str(installed.parent)) and str(ROOT) not in where


@pytest.mark.parametrize("name", sorted(p.name for p in INPUTS.iterdir()))
def test_the_installed_wheel_renders_each_kinds_report(installed, tmp_path, name):
    shutil.copytree(INPUTS / name, tmp_path / name)
    done = subprocess.run([installed / "muscale", "fit", name], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    report = (tmp_path / name / "report.html").read_text(encoding="utf-8")
    assert "<img" in report and "</html>" in report


def test_the_installed_wheel_records_a_plain_loop_and_fits_it(installed, tmp_path):
    """muscale.Recorder and its integrations ship: the plain-loop example, run by the wheel's
    Python from outside the source tree, then `muscale fit` of the wheel."""
    example = shutil.copy(ROOT / "examples" / "plain_loop.py", tmp_path / "plain_loop.py")
    for command in (
        [installed / "python", example, "--out", "runs", "--widths", "64,128", "--seeds", "1", "--steps", "2"],
        [installed / "python", "-c", "import muscale.integrations.hf, muscale.integrations.lightning"],
        [installed / "muscale", "fit", "runs"],
    ):
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "runs" / "exponents.csv").is_file() and (tmp_path / "runs" / "report.html").is_file()
