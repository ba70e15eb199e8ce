"""Golden files (tests/gold/build.py): `muscale fit` over stored records of every study kind
writes what it wrote when they were stored, every bundled study still expands to the same
run ids, and a sweep directory written then resumes with nothing to run."""

import io
import json
import shutil
import sys
from pathlib import Path

import polars as pl
import pytest
from clirun import run_cli
from polars.testing import assert_frame_equal

from muscale import api
from muscale.run import launch

sys.path.insert(0, str(Path(__file__).parent / "gold"))
import build

pytestmark = pytest.mark.usefixtures("undrawn")  # what they check is in the HTML, not its pixels

NAMES = sorted(p.name for p in build.INPUTS.iterdir())
SWEEPS = sorted(p.parent.name for p in build.INPUTS.glob("*/plan.json"))


def test_every_study_kind_has_a_stored_input():
    assert {"lr_transfer", "equilibrium", "claims", "depth_profile"} <= set(SWEEPS)
    assert any(not (build.INPUTS / n / "plan.json").exists() for n in NAMES)  # an old coordinate check


@pytest.mark.parametrize("name", NAMES)
def test_fit_writes_what_it_wrote_when_the_records_were_stored(name, tmp_path):
    """Reports byte for byte once scrubbed; CSVs to 1e-9 relative, since polars sums a group
    in the order its rows arrive, which varies from one process to the next in the last bits."""
    got = build.fit(name, tmp_path)
    expected = {
        str(p.relative_to(build.EXPECTED / name)): p.read_text(encoding="utf-8")
        for p in sorted((build.EXPECTED / name).rglob("*"))
        if p.is_file()
    }
    assert sorted(got) == sorted(expected)
    for file, text in expected.items():
        if file.endswith(".html"):
            assert got[file] == text, f"{name}/{file} differs from its golden file"
        else:
            assert_frame_equal(
                pl.read_csv(io.StringIO(got[file])), pl.read_csv(io.StringIO(text)), rel_tol=1e-9, abs_tol=1e-12
            )


def test_bundled_studies_expand_to_the_stored_run_ids():
    stored = json.loads((build.EXPECTED / "plans.json").read_text(encoding="utf-8"))
    studies = sorted((build.ROOT / "studies").glob("*.toml"))
    assert sorted(stored) == [p.name for p in studies]
    for path in studies:
        assert build.plan_ids(path) == stored[path.name], path.name


@pytest.mark.parametrize("name", SWEEPS)
def test_a_stored_sweep_directory_resumes_with_nothing_to_run(name, monkeypatch, capsys, tmp_path):
    out = tmp_path / name
    shutil.copytree(build.INPUTS / name, out)

    def run_one(spec, *args, **kwargs):
        raise AssertionError(f"{spec.run_id} ran again")

    monkeypatch.setattr(launch, "run_one", run_one)
    monkeypatch.setattr(api, "write", lambda result, device: out / "report.html")  # the fit test covers what it writes
    code, stdout, stderr = run_cli(
        monkeypatch, capsys, "sweep", str(out / "study.toml"), "--out", str(out), "--jobs", "1", "--device", "cpu"
    )
    assert code == 0, stderr
    assert "failed=0 pending=0" in stdout, stdout
