"""The Python API over result directories of every kind, called directly (the CLI tests keep
the end-to-end paths): a directory's plan names its kind, a directory without one reads as a
coordinate check, a coordinate check writes its plan and resumes with nothing to run, and the
gate without a baseline checks what the kind expects."""

import json
import shutil
import sys
from pathlib import Path

import polars as pl
import pytest

from muscale import api, kinds
from muscale.analysis import gate
from muscale.run import coordcheck, launch

sys.path.insert(0, str(Path(__file__).parent / "gold"))
import build

pytestmark = pytest.mark.usefixtures("undrawn")  # what they check is in the HTML, not its pixels


@pytest.fixture
def stored(tmp_path):
    def copy(name: str) -> Path:
        out = tmp_path / name
        shutil.copytree(build.INPUTS / name, out)
        return out

    return copy


# Rendered here once per kind: coord_check_lrm's kind is coord_check_mup's, and test_gold
# compares every stored input's report with its golden file.
RENDERED_BY_ANOTHER = {"coord_check_lrm"}


@pytest.mark.parametrize("name", sorted(p.name for p in build.INPUTS.iterdir()))
def test_analyse_finds_the_kind_and_its_tables(name, stored):
    out = stored(name)
    result = api.analyse(out)
    plan = json.loads((out / "plan.json").read_text()) if (out / "plan.json").exists() else {"kind": "coord_check"}
    assert result.kind is kinds.KINDS[plan["kind"]]
    expected = {p.name for p in (build.EXPECTED / name).glob("*.csv")}
    assert set(result.analysis.tables) == expected and result.kind.exponents_file in expected
    assert set(gate.KEY) <= set(result.analysis.exponents.columns)
    assert (result.states is None) == (not result.kind.swept)
    if name not in RENDERED_BY_ANOTHER:
        html = result.kind.render(result.plan, result.analysis, {}, [])
        assert html.rstrip().endswith("</html>") and not (out / "report.html").exists()  # render writes nothing


@pytest.mark.parametrize("name", ["claims", "equilibrium", "lr_transfer"])
def test_gate_without_a_baseline_checks_what_the_kind_expects(name, stored):
    out = stored(name)
    result = api.analyse(out)
    for file, table in result.analysis.tables.items():  # what api.write writes before its reports
        table.write_csv(out / file)
    exponents = pl.read_csv(out / result.kind.exponents_file)
    rows = result.kind.expectations(result.plan, exponents)
    assert rows
    assert api.gate(out) == gate.check(exponents, rows)


def test_a_coordinate_check_writes_its_plan_and_resumes_with_nothing_to_run(tmp_path, monkeypatch, one_thread):
    specs = coordcheck.plan("mup", "mlp", widths=(16, 32), steps=1, seeds=1)
    study = coordcheck.CoordCheck("mup mlp", tuple(specs))
    out = tmp_path / "check"
    first = api.run(study, out, "cpu", 1)
    assert api.read_plan(out)[0]["kind"] == "coord_check" and [s.run_id for s in api.read_plan(out)[1]] == [
        s.run_id for s in specs
    ]

    def run_one(spec, *args, **kwargs):
        raise AssertionError(f"{spec.run_id} ran again")

    monkeypatch.setattr(launch, "run_one", run_one)
    again = api.run(study, out, "cpu", 1)
    assert again.analysis.exponents.equals(first.analysis.exponents)
    (out / "plan.json").unlink()  # as older versions left it
    assert api.analyse(out).kind is kinds.DIRECTORY_DEFAULT is kinds.KINDS["coord_check"]
