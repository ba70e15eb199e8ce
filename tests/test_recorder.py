"""muscale.Recorder in a training loop that is not muscale's: the records its own loop would
write, `muscale fit` on a directory of such runs (what it leaves out, said once each), the
gate on them with teeth, and one-line errors for what a user can get wrong."""

import json
import runpy
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import torch
from clirun import assert_input_error, run_cli
from torch import nn

import muscale
from muscale.errors import InputError
from muscale.models import losses, modes, optim
from muscale.models.data import PROBE_INDEX
from muscale.models.families import resolve
from muscale.run import recorded, recorder, train

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "plain_loop.py"
COLUMNS = ["step", "module", "metric"]


def hand_loop(spec, run_dir):
    """muscale's loop written as a user would: on the short horizon the training forward on
    the fixed batch is measured, on the long one the fixed batch is the recorder's probe."""
    family = resolve(spec.family)
    model, multipliers = modes.build(spec, family)
    opt = optim.build(spec, model, multipliers)
    fixed = family.batch(PROBE_INDEX, spec.batch_size, spec.seq_len)
    long = spec.horizon == "long"
    rec = muscale.Recorder(
        model,
        run_dir,
        width=spec.width,
        seed=spec.seed,
        mode=spec.mode,
        optimizer=opt,
        steps=spec.record_steps,
        probe=fixed[0] if long else None,
    )
    for step in range(spec.steps):
        x, y = family.batch(spec.data_offset + step, spec.batch_size, spec.seq_len) if long else fixed
        loss = losses.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        rec.step(step, loss=loss)
    rec.close()
    return recorded.read(Path(run_dir).parent)[0]


@pytest.mark.parametrize("mode", ["sp", "mup", "lrm-scalar"])
def test_a_hand_written_loop_records_what_muscales_own_loop_records(mode, tmp_path):
    """Step t is the model after t updates in both: the same activations (and their change
    since step 0), weights, updates, multipliers and Adam state, to float precision."""
    spec = muscale.plan(mode, "mlp", widths=(64, 128), seeds=1, steps=6)[1]
    ours = train.run(spec)
    theirs = hand_loop(spec, tmp_path / "runs" / "w128")
    if spec.horizon == "long":  # muscale's own long loop records the fixed batch's loss
        theirs = theirs.filter(pl.col("metric") != "loss")
    joined = ours.join(theirs, on=COLUMNS, suffix="_rec")
    assert {"act_l1", "update_fro", "weight_spec", "eps_share"} <= set(joined["metric"])
    assert ("dact_rms" in set(joined["metric"])) == (spec.horizon == "long")
    if mode == "lrm-scalar":
        assert "mult_scalar" in set(joined["metric"])
    # Every statistic the recorder wrote has its twin in muscale's records.
    assert joined.height == theirs.height
    worst = joined.select(((pl.col("value") - pl.col("value_rec")).abs() / pl.col("value").abs().clip(1e-12)).max())
    assert worst.item() < 1e-5


def test_without_a_probe_an_evaluation_forward_between_steps_is_not_recorded(tmp_path):
    spec = muscale.plan("sp", "mlp", widths=(64, 128), seeds=1, steps=2)[0]
    family = resolve(spec.family)
    model, _ = modes.build(spec, family)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = family.batch(PROBE_INDEX, spec.batch_size, spec.seq_len)
    rec = muscale.Recorder(model, tmp_path / "r" / "a", width=64, optimizer=opt, every=1)
    for step in range(2):
        loss = losses.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            model(x * 100)  # an evaluation on other data: its activations are no step's
        rec.step(step, loss=loss)
    rec.close()
    records = recorded.read(tmp_path / "r")[0]
    assert records.filter(pl.col("metric") == "act_l1").group_by("step", "module").len()["len"].max() == 1
    # A recorded activation is the training forward's: x, not 100·x, so far below 100× the input's.
    first = records.filter((pl.col("metric") == "act_l1") & (pl.col("step") == 0)).sort("module")
    assert first.height and first["value"].max() < 10


def sweep(out: Path, modes_: str, seeds: int = 2, start_seed: int = 0):
    """The plain-loop example of the docs, run as a user runs it."""
    subprocess.run(
        [sys.executable, str(EXAMPLE), "--out", str(out), "--modes", modes_, "--seeds", str(seeds)]
        + (["--first-seed", str(start_seed)] if start_seed else []),
        check=True,
        cwd=ROOT,
    )


@pytest.mark.science
def test_a_plain_loop_sweep_fits_sp_growing_and_mup_flat_and_gates_with_teeth(tmp_path, monkeypatch, capsys):
    """The issue's must-show: an MLP at widths 64…1024 in a plain loop, SP and μP (mup)."""

    def muscale_cli(*args):
        return run_cli(monkeypatch, capsys, *args)

    runs = tmp_path / "runs"
    sweep(runs, "sp,mup")
    assert muscale_cli("fit", str(runs))[0] == 0
    exponents = pl.read_csv(runs / "exponents.csv")
    hidden = exponents.filter((pl.col("module") == "hidden") & (pl.col("metric") == "dact_rms") & (pl.col("step") == 3))
    alpha = dict(hidden.select("mode", "alpha").iter_rows())
    assert alpha["sp"] >= 0.4 and abs(alpha["mup"]) <= 0.1, alpha
    assert (runs / "report.html").is_file()

    baseline = tmp_path / "baseline.toml"
    mup_only = tmp_path / "mup"
    sweep(mup_only, "mup")
    assert muscale_cli("fit", str(mup_only))[0] == 0
    assert muscale_cli("baseline", str(mup_only), "-o", str(baseline))[0] == 0
    again = tmp_path / "mup-again"
    sweep(again, "mup", start_seed=2)  # other seeds: the baseline is not compared with itself
    assert muscale_cli("fit", str(again))[0] == 0
    assert muscale_cli("gate", str(again), "--baseline", str(baseline))[0] == 0

    # Teeth: the same script with μP switched off but still called mup, the regression a CI
    # gate is for. It fails on the exponents' drift, not on rows gone missing.
    broken = tmp_path / "broken"
    train_one = runpy.run_path(str(EXAMPLE))["train"]
    for width in (64, 128, 256, 512, 1024):
        for seed in (2, 3):
            train_one(width, "sp", seed, str(broken), steps=4, lr=1e-2, label="mup")
    assert muscale_cli("fit", str(broken))[0] == 0
    code, output, _ = muscale_cli("gate", str(broken), "--baseline", str(baseline))
    assert code == 1
    assert "FAIL    mup plain-mlp adam hidden dact_rms" in output
    assert "missing" not in output


class Tiny(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.input, self.head = nn.Linear(8, width), nn.Linear(width, 2)

    def forward(self, x):
        return self.head(torch.relu(self.input(x)))


def record(run_dir, width=16, seed=0, steps=4, close=True, **kw):
    torch.manual_seed(seed)
    model = Tiny(width)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(4, 8)
    rec = muscale.Recorder(model, run_dir, width=width, seed=seed, optimizer=opt, probe=x, **kw)
    for step in range(steps):
        loss = model(x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        rec.step(step, loss=loss)
    if close:
        rec.close()
    return rec


def test_fit_leaves_out_what_not_every_run_recorded_and_says_so_once_each(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(recorder, "FLUSH_SECONDS", 0.0)  # the run still going has written its steps
    runs = tmp_path / "runs"
    record(runs / "w16", 16, steps=9, every=2)
    record(runs / "w32", 32, steps=9, every=2)
    record(runs / "w64", 64, steps=5, every=2, close=False)  # still running at step 4
    record(runs / "w128", 128, steps=9, every=4)  # another schedule
    records, notes = recorded.read(runs)
    assert sorted(records["step"].unique()) == [0, 4]
    assert sorted(records["width"].unique()) == [16, 32, 64, 128]
    assert any(n.startswith("w64: not closed") and "step 4" in n for n in notes), notes
    assert any("schedules differ (every 2; every 4)" in n for n in notes), notes
    assert any(n.startswith("w16: steps 2, 6, 8 not recorded by every run") for n in notes), notes
    code, _, err = run_cli(monkeypatch, capsys, "fit", str(runs))
    assert code == 0
    assert err.count("left out: ") == len(notes)
    assert "left out of the fit" in (runs / "report.html").read_text(encoding="utf-8")


def test_groups_that_share_the_fits_keys_are_told_apart_not_mixed(tmp_path):
    runs = tmp_path / "runs"
    for width in (16, 32):
        record(runs / f"a{width}", width, every=1, weight_decay=0.0)
        record(runs / f"b{width}", width, every=1, weight_decay=0.1)
    records, _ = recorded.read(runs)
    assert sorted(records["family"].unique()) == ["Tiny (weight_decay 0.0)", "Tiny (weight_decay 0.1)"]


def test_batch_sizes_that_differ_are_matched_by_tokens_seen(tmp_path):
    runs = tmp_path / "runs"
    record(runs / "w16", 16, steps=9, every=1, tokens_per_step=200)
    record(runs / "w32", 32, steps=9, every=1, tokens_per_step=100)
    records, notes = recorded.read(runs)
    assert sorted(records["step"].unique()) == [0, 200, 400, 600, 800]
    assert any("matched by tokens seen" in n for n in notes)


def test_the_default_schedule_is_log_spaced_and_unrecorded_steps_record_nothing(tmp_path):
    rec = record(tmp_path / "runs" / "w16", 16, steps=40)
    assert rec.recorded == [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 13, 16, 19, 23, 27, 32, 38]
    assert sorted(recorded.read(tmp_path / "runs")[0]["step"].unique()) == rec.recorded
    meta = json.loads((tmp_path / "runs" / "w16" / "run.json").read_text())
    assert meta["status"] == "done" and meta["recorded"] == rec.recorded and meta["lr"] == 0.1


def test_records_reach_the_disk_while_the_run_goes_on(tmp_path, monkeypatch):
    """Flushed as they are fetched once FLUSH_SECONDS have passed: a run that dies keeps them."""
    monkeypatch.setattr(recorder, "FLUSH_SECONDS", 0.0)
    rec = record(tmp_path / "runs" / "w16", 16, steps=5, every=2, close=False)
    files = sorted((tmp_path / "runs" / "w16" / "records").glob("*.parquet"))
    assert (
        [pl.read_parquet(f)["step"].unique().to_list() for f in files] == [[0], [2], [4]] == [[s] for s in rec.recorded]
    )


def test_a_recorder_inside_with_marks_a_loop_that_raised_as_stopped(tmp_path):
    model = Tiny(16)
    with pytest.raises(RuntimeError), muscale.Recorder(model, tmp_path / "r" / "w16", width=16) as rec:
        rec.step(0)
        raise RuntimeError("the loop broke")
    assert json.loads((tmp_path / "r" / "w16" / "run.json").read_text())["status"] == "stopped"


@pytest.mark.parametrize(
    "build, field, says",
    [
        (lambda d: muscale.Recorder(Tiny(16), d, width=24), "width", "24 is not a dimension"),
        (lambda d: muscale.Recorder(nn.ReLU(), d, width=16), "model", "no layer with a weight matrix"),
        (lambda d: muscale.Recorder(Tiny(16), d, width=16, every=0), "every", "0 is not positive"),
        (lambda d: muscale.Recorder(Tiny(16), d, width=16, metrics=("act_l2",)), "metrics", "unknown metric"),
    ],
)
def test_a_recorder_refuses_bad_input_in_one_line_before_writing(build, field, says, tmp_path):
    with pytest.raises(InputError) as error:
        build(tmp_path / "run")
    assert error.value.field == field and says in error.value.problem
    assert not (tmp_path / "run").exists()


def test_a_run_directory_is_never_reused_by_another_run(tmp_path):
    record(tmp_path / "runs" / "w16", 16)
    before = sorted(p.read_bytes() for p in (tmp_path / "runs" / "w16").rglob("*") if p.is_file())
    with pytest.raises(InputError, match="already holds a run \\(width 16, seed 0, mode sp\\)"):
        muscale.Recorder(Tiny(32), tmp_path / "runs" / "w16", width=32)
    assert sorted(p.read_bytes() for p in (tmp_path / "runs" / "w16").rglob("*") if p.is_file()) == before


def test_two_runs_at_one_width_and_seed_are_refused_by_fit(tmp_path, monkeypatch, capsys):
    record(tmp_path / "runs" / "a", 16)
    record(tmp_path / "runs" / "b", 16)
    assert_input_error(
        monkeypatch,
        capsys,
        tmp_path / "runs" / "exponents.csv",
        "a and b are both width 16 seed 0",
        "fit",
        str(tmp_path / "runs"),
    )


@pytest.mark.integration
def test_the_nanogpt_example_records_every_width_at_the_default_schedule(tmp_path, monkeypatch, capsys):
    """nanoGPT's loop (gradient accumulation, an evaluation under no_grad, clipping, a
    schedule) with the recorder's lines, run as the guide says, then fitted."""
    for width in (64, 128):
        subprocess.run(
            [sys.executable, str(ROOT / "examples" / "nanogpt_train.py"), "--n_embd", str(width)]
            + ["--max_iters", "12", "--out", str(tmp_path / "gpt")],
            check=True,
            cwd=ROOT,
            capture_output=True,
        )
    records, notes = recorded.read(tmp_path / "gpt")
    assert not notes and sorted(records["step"].unique()) == list(range(9)) + [10, 11]
    assert not records.select("run_id", "step", "module", "metric").is_duplicated().any()
    assert {"attn_qkv", "attn_out", "mlp_up", "mlp_down", "head", "embed"} <= set(records["role"])
    code, _, _ = run_cli(monkeypatch, capsys, "fit", str(tmp_path / "gpt"))
    assert code == 0 and (tmp_path / "gpt" / "exponents.csv").is_file()
