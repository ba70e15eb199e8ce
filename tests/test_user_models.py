"""A user's own model, as it is: nn.Sequential module names through the gate, forwards that
return tuples, mappings or objects, their own losses, options and streamed batches, the
Python API with functions, and one clear line for what does not fit."""

import pickle
import sys

import families_for_tests
import polars as pl
import pytest
import torch
from clirun import assert_input_error, run_cli

import muscale
from muscale.errors import InputError
from muscale.models import losses
from muscale.run import coordcheck

pytestmark = pytest.mark.usefixtures("undrawn")  # what they check is in the HTML, not its pixels

SEQUENTIAL = ("--family", "families_for_tests:sequential", "--batch", "families_for_tests:classifier_batch")
TINY = ("--mode", "sp", "--widths", "32,64,128", "--steps", "2", "--seeds", "2", "--device", "cpu", "--jobs", "1")


def check(monkeypatch, capsys, out, *args):
    code, stdout, stderr = run_cli(monkeypatch, capsys, "coord-check", *TINY, "--out", str(out), *args)
    assert code == 0, stderr
    return pl.read_parquet(out / "records" / "*.parquet")


def test_sequential_round_trip_through_baseline_and_gate(monkeypatch, capsys, tmp_path):
    """Module names 0, 2, 4 stay strings from exponents.csv to the baseline and the gate, which
    passes on the model's own results and fails on a variant whose init depends on width."""
    check(monkeypatch, capsys, tmp_path / "own", *SEQUENTIAL, "--steps", "5")
    exponents = pl.read_csv(tmp_path / "own" / "exponents.csv", infer_schema=False)
    assert {"0", "2", "4"} <= set(exponents["module"]) and exponents["module"].to_list().index("loss") > 100
    baseline = tmp_path / "baseline.toml"
    code, _, stderr = run_cli(
        monkeypatch, capsys, "baseline", str(tmp_path / "own"), "-o", str(baseline), "--metric", "act_rms"
    )
    assert code == 0, stderr
    code, stdout, _ = run_cli(monkeypatch, capsys, "gate", str(tmp_path / "own"), "--baseline", str(baseline))
    assert code == 0 and "0 failed" in stdout
    check(
        monkeypatch,
        capsys,
        tmp_path / "gain",
        "--family",
        "families_for_tests:sequential_width_gain",
        "--batch",
        "families_for_tests:classifier_batch",
        "--steps",
        "5",
    )
    code, stdout, _ = run_cli(monkeypatch, capsys, "gate", str(tmp_path / "gain"), "--baseline", str(baseline))
    assert code == 1 and "2" in stdout


@pytest.mark.parametrize("family", ["nanogpt_style", "dict_output"])
def test_tuple_and_mapping_outputs_are_checked_like_tensors(monkeypatch, capsys, tmp_path, family):
    records = check(monkeypatch, capsys, tmp_path, "--family", f"families_for_tests:{family}")
    loss = records.filter(pl.col("metric") == "loss")
    assert loss.height == 3 * 2 * 3 and loss["value"].is_finite().all()
    assert records.filter(pl.col("role") == "head").height > 0


def test_output_of_every_kind_of_forward_result():
    t = torch.ones(2, 3)

    class WithLogits:
        logits = t

    for result in (t, (t, None), [t], {"logits": t, "loss": None}, WithLogits()):
        assert losses.output_of(result) is t
    with pytest.raises(InputError, match="--family"):
        losses.output_of({"hidden": t})


def test_mse_on_a_regression_batch_trains_and_a_user_loss_is_used(monkeypatch, capsys, tmp_path):
    regression = ("--family", "families_for_tests:regressor", "--batch", "families_for_tests:regression_batch")
    mse = check(monkeypatch, capsys, tmp_path / "mse", *regression, "--loss", "mse")
    doubled = check(monkeypatch, capsys, tmp_path / "doubled", *regression, "--loss", "families_for_tests:doubled_mse")

    def loss_at(records, step):
        rows = records.filter((pl.col("metric") == "loss") & (pl.col("step") == step)).sort("width", "seed")
        return rows["value"].to_numpy()

    assert (loss_at(mse, 2) < loss_at(mse, 0)).all()
    assert loss_at(doubled, 0) == pytest.approx(2 * loss_at(mse, 0), rel=1e-6)


def test_options_reach_a_user_family(monkeypatch, capsys, tmp_path):
    family = ("--family", "families_for_tests:deep_mlp", "--batch", "families_for_tests:classifier_batch")
    plain = set(check(monkeypatch, capsys, tmp_path / "plain", *family)["module"])
    deep = set(
        check(monkeypatch, capsys, tmp_path / "deep", *family, "--option", "depth=3", "--option", "activation=tanh")[
            "module"
        ]
    )
    assert {"6", "8"} <= deep and "6" not in plain


def test_streamed_batches_differ_by_step():
    fam = muscale.models.families.resolve("families_for_tests:sequential", "families_for_tests:classifier_batch")
    x0, _ = fam.batch(0, 4, 0)
    x1, _ = fam.batch(1, 4, 0)
    assert x0.shape == (4, 32) and not torch.equal(x0, x1)
    assert torch.equal(fam.batch(-1, 4, 0)[0], fam.batch(-1, 4, 0)[0])


@pytest.mark.integration
def test_python_api_takes_functions_and_runs_them_in_workers():
    kwargs = dict(widths=(16, 32), steps=1, seeds=1, device="cpu", metrics=["act_rms"])
    records = muscale.coord_check(
        "sp",
        families_for_tests.regressor,
        batch=families_for_tests.regression_batch,
        loss=families_for_tests.doubled_mse,
        jobs=2,
        **kwargs,
    )
    assert set(records["family"]) == {"families_for_tests:regressor"}
    assert records.filter(pl.col("metric") == "loss")["value"].is_finite().all()


def test_python_api_refuses_a_family_no_worker_could_import():
    with pytest.raises(InputError, match="--family: .* not a module-level function"):
        muscale.coord_check(
            "sp", lambda width: families_for_tests.regressor(width), widths=(16, 32), steps=1, seeds=1, device="cpu"
        )


def test_input_error_survives_pickling():
    error = pickle.loads(pickle.dumps(InputError("--lr", "inf is not finite", "give a finite value")))
    assert isinstance(error, InputError) and str(error) == "--lr: inf is not finite; give a finite value"


BAD = [
    (("--lr", "inf"), "--lr"),
    (("--lr", "nan"), "--lr"),
    (("--mode", "lrm", "--mult-lr", "inf"), "--mult-lr"),
    (("--weight-decay", "inf"), "--weight-decay"),
    (("--weight-decay", "nan"), "--weight-decay"),
    (("--family", "families_for_tests:three_classes"), "(2, 16, 3)"),  # 3 classes against 256-class data
    (
        ("--family", "families_for_tests:regressor", "--batch", "families_for_tests:regression_batch"),
        "integer class targets",
    ),  # regression targets under the default cross-entropy
    (
        ("--family", "families_for_tests:regressor", "--batch", "families_for_tests:classifier_batch", "--loss", "mse"),
        "equal shapes",
    ),
    (("--loss", "hinge"), "--loss"),
    (("--loss", "families_for_tests:no_such_loss"), "--loss"),
    (
        (
            "--family",
            "families_for_tests:deep_mlp",
            "--batch",
            "families_for_tests:classifier_batch",
            "--option",
            "colour=red",
        ),
        "depth, activation",
    ),
    # μP asked of a model without MuReadout.
    (
        (
            "--family",
            "families_for_tests:sequential",
            "--batch",
            "families_for_tests:classifier_batch",
            "--mode",
            "mup",
            "--jobs",
            "2",
        ),
        "MuReadout",
    ),
]


@pytest.mark.parametrize("args,needle", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(monkeypatch, capsys, tmp_path, args, needle):
    out = tmp_path / "out"
    assert_input_error(
        monkeypatch,
        capsys,
        out,
        needle,
        "coord-check",
        "--mode",
        "sp",
        "--widths",
        "16,32",
        "--steps",
        "1",
        "--seeds",
        "1",
        "--device",
        "cpu",
        "--jobs",
        "1",
        "--out",
        str(out),
        *args,
    )


@pytest.mark.integration
def test_a_user_error_raised_in_a_worker_comes_back_whole(monkeypatch, capsys, tmp_path):
    code, _, stderr = run_cli(
        monkeypatch,
        capsys,
        "coord-check",
        "--mode",
        "sp",
        "--widths",
        "16,32",
        "--steps",
        "1",
        "--seeds",
        "1",
        "--device",
        "cpu",
        "--jobs",
        "2",
        "--out",
        str(tmp_path / "out"),
        "--family",
        "families_for_tests:input_error_when_wide",
    )
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr, stderr
    assert "muscale: error: --option: width 32 needs a wider table; give the family a wider table" in stderr


def test_a_shape_mismatch_names_the_family_and_both_shapes(monkeypatch, capsys, tmp_path):
    code, _, stderr = run_cli(
        monkeypatch,
        capsys,
        "coord-check",
        "--mode",
        "sp",
        "--widths",
        "16,32",
        "--steps",
        "1",
        "--seeds",
        "1",
        "--jobs",
        "1",
        "--out",
        str(tmp_path / "out"),
        "--family",
        "families_for_tests:three_classes",
    )
    assert code == 2
    assert "families_for_tests:three_classes" in stderr and "(2, 16, 3)" in stderr and "(2, 16)" in stderr


def test_a_nan_model_is_recorded_as_diverged_and_the_rest_go_on(monkeypatch, capsys, tmp_path):
    code, _, stderr = run_cli(
        monkeypatch,
        capsys,
        "coord-check",
        "--mode",
        "sp",
        "--family",
        "families_for_tests:nan_when_wide",
        "--widths",
        "16,32,64",
        "--steps",
        "5",
        "--seeds",
        "1",
        "--device",
        "cpu",
        "--jobs",
        "1",
        "--out",
        str(tmp_path),
    )
    assert code == coordcheck_exit_diverged(), stderr
    assert "1 runs diverged" in stderr and "w64" in stderr
    records = pl.read_parquet(tmp_path / "records" / "*.parquet")
    assert records["value"].is_finite().all()
    fate = records.filter(pl.col("metric") == "diverged")
    assert fate["width"].to_list() == [64] and fate["value"].to_list() == [1.0]
    assert records.filter(pl.col("width") == 32)["step"].max() == 5
    assert records.filter(pl.col("width") == 64)["step"].max() < 5
    html = (tmp_path / "report.html").read_text()
    assert "diverged runs" in html and fate["run_id"][0] in html
    assert pl.read_csv(tmp_path / "exponents.csv").height > 0


def coordcheck_exit_diverged() -> int:
    from muscale.cli import DIVERGED

    return DIVERGED


def test_probes_meet_non_finite_matrices_without_crashing():
    from muscale.measure.probes import Probes

    for width in (16, 128):  # the exact spectral norm and Lanczos
        model = torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.Linear(width, 2))
        with torch.no_grad():
            model[0].weight[0, 0] = float("nan")
        probes = Probes(model)
        with probes.watch(0):
            model(torch.randn(3, width))
        rows = probes.collect(0)
        assert probes.nonfinite and all(torch.isfinite(torch.tensor(rows["value"])))
        assert ("1", "weight_spec") in set(zip(rows["module"], rows["metric"]))


def test_api_refuses_a_function_that_does_not_import_back():
    def local(width):
        return families_for_tests.regressor(width)

    with pytest.raises(InputError, match="--family"):
        coordcheck.plan("sp", local)
    assert sys.modules["families_for_tests"].regressor is families_for_tests.regressor
