"""What users already log, read into runs `muscale fit` fits: mup's get_coord_data DataFrame
(equal to what muscale's recorder measures on the same runs) and nanoGPT-mup's
coordinate-check CSVs; bad input refused in one line with nothing written."""

import runpy
from functools import partial
from pathlib import Path

import polars as pl
import pytest
import torch
from clirun import assert_input_error, run_cli
from mup.coord_check import get_coord_data

from muscale.run import recorded

ROOT = Path(__file__).resolve().parents[1]
WIDTHS = (64, 128, 256, 512, 1024)


@pytest.fixture(scope="module")
def mup_csvs(tmp_path_factory):
    """mup's own coordinate check of the plain-loop example's MLP, SP and μP, saved as users save it."""
    example = runpy.run_path(str(ROOT / "examples" / "plain_loop.py"))
    gen = torch.Generator().manual_seed(1234)
    batch = (torch.randn(32, 32, generator=gen), torch.randint(0, 10, (32,), generator=gen))
    folder = tmp_path_factory.mktemp("mup")

    def seeded(width, mode):
        """mup seeds once per seed, before all its widths; each model re-seeds with that seed,
        as the example's runs do, so that run (width, seed) has one init on both sides."""
        torch.manual_seed(torch.initial_seed())
        return example["model"](width, mode)

    for mode in ("sp", "mup"):
        models = {w: partial(seeded, w, mode) for w in WIDTHS}
        frame = get_coord_data(
            models, [batch], optimizer="adam", lr=1e-2, mup=mode == "mup", nsteps=4, nseeds=2, cuda=False, lossfn="xent"
        )
        frame.to_csv(folder / f"{mode}.csv", index=False)
    return folder, example


@pytest.mark.science
def test_a_mup_coord_data_frame_is_fitted_and_equals_what_the_recorder_measures(
    mup_csvs, tmp_path, monkeypatch, capsys
):
    folder, example = mup_csvs
    runs = tmp_path / "runs"
    for mode in ("sp", "mup"):
        code, out, _ = run_cli(
            monkeypatch, capsys, "import", "mup", str(folder / f"{mode}.csv"), "--out", str(runs), "--mode", mode
        )
        assert code == 0 and "10 runs" in out
    assert run_cli(monkeypatch, capsys, "fit", str(runs))[0] == 0
    exponents = pl.read_csv(runs / "exponents.csv")
    hidden = exponents.filter((pl.col("module") == "hidden") & (pl.col("metric") == "act_l1") & (pl.col("step") == 3))
    alpha = dict(hidden.select("mode", "alpha").iter_rows())
    assert alpha["sp"] >= 0.4 and abs(alpha["mup"]) <= 0.1, alpha

    # The same runs recorded by muscale.Recorder (the example's probe is mup's batch): mup's
    # l1 at t is the recorder's act_l1 at step t − 1 (DESIGN.md, fact 2).
    ours = tmp_path / "recorded"
    for mode in ("sp", "mup"):
        for width in WIDTHS:
            for seed in (0, 1):
                example["train"](width, mode, seed, str(ours), steps=4, lr=1e-2)
    columns = ["mode", "width", "seed", "step", "module"]
    theirs = recorded.read(runs)[0].filter(metric="act_l1").select(*columns, "value")
    mine = recorded.read(ours)[0].filter(metric="act_l1").select(*columns, "value")
    both = theirs.join(mine, on=columns, suffix="_recorder")
    assert both.height == theirs.height == 2 * len(WIDTHS) * 2 * 4 * 3
    assert (both["value"] - both["value_recorder"]).abs().max() < 1e-5 * both["value"].abs().max()
    assert '"lr": 0.01' in (runs / "mup-w64-s0" / "run.json").read_text()


def nanogpt_mup_logs(root: Path, widths=(64, 128, 256), seeds=(0, 1), iters=4):
    """The example GPT trained as nanoGPT-mup's coordinate check trains it, its hooks' mean
    |output| per iteration written where and how nanoGPT-mup writes them."""
    gpt = runpy.run_path(str(ROOT / "examples" / "nanogpt_train.py"))["GPT"]
    data = torch.randint(0, 256, (4, 33), generator=torch.Generator().manual_seed(0))
    for width in widths:
        for seed in seeds:
            torch.manual_seed(seed)
            model = gpt(width)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
            hooked = {"transformer.wte": "token_embedding", "lm_head": "lm_head"}
            hooked |= {f"transformer.h.{i}.{part}": part for i in range(2) for part in ("attn", "mlp")}
            rows = []
            for it in range(iters):
                seen = {}
                handles = [
                    module.register_forward_hook(
                        lambda m, a, out, key=hooked[name]: seen.setdefault(key, []).append(out.abs().mean().item())
                    )
                    for name, module in model.named_modules()
                    if name in hooked
                ]
                _, loss = model(data[:, :-1], data[:, 1:])
                for h in handles:
                    h.remove()
                opt.zero_grad()
                loss.backward()
                opt.step()
                row = {"iter": it, "train/loss": loss.item(), "val/loss": loss.item(), "lr": 1e-2, "mfu": -100.0}
                rows.append(row | {f"{k}_act_abs_mean": sum(v) / len(v) for k, v in seen.items()})
            folder = root / f"width{width}_depth2_seed{seed}"
            folder.mkdir(parents=True)
            pl.DataFrame(rows).write_csv(folder / "log.csv")


def imported_nanogpt_mup(tmp_path, monkeypatch, capsys, widths=(64, 128, 256), seeds=(0, 1), iters=4) -> Path:
    """nanoGPT-mup logs under tmp_path/out, imported as SP runs into tmp_path/runs."""
    nanogpt_mup_logs(tmp_path / "out", widths, seeds, iters)
    runs = tmp_path / "runs"
    code, out, _ = run_cli(
        monkeypatch, capsys, "import", "nanogpt-mup", str(tmp_path / "out"), "--out", str(runs), "--mode", "sp"
    )
    assert code == 0 and f"{len(widths) * len(seeds)} runs" in out
    return runs


def test_nanogpt_mup_csvs_are_read_as_runs_and_fitted(tmp_path, monkeypatch, capsys):
    runs = imported_nanogpt_mup(tmp_path, monkeypatch, capsys)
    records, notes = recorded.read(runs)
    assert not notes
    assert sorted(records["width"].unique()) == [64, 128, 256] and sorted(records["step"].unique()) == [0, 1, 2, 3]
    roles = dict(records.select("module", "role").unique().iter_rows())
    assert roles == {
        "transformer.wte": "embed",
        "transformer.h.attn": "attn_out",
        "transformer.h.mlp": "mlp_down",
        "lm_head": "head",
        "loss": "loss",
    }
    # The values are the log's, step by iteration.
    log = pl.read_csv(tmp_path / "out" / "width128_depth2_seed1" / "log.csv")
    head = records.filter(run_id="sp-width128_depth2_seed1", module="lm_head").sort("step")["value"]
    assert head.to_list() == log["lm_head_act_abs_mean"].to_list()
    meta = (runs / "sp-width128_depth2_seed1" / "run.json").read_text()
    assert '"depth": 2' in meta and '"optimizer": "adamw"' in meta
    assert run_cli(monkeypatch, capsys, "fit", str(runs))[0] == 0
    fitted = pl.read_csv(runs / "exponents.csv").filter(metric="act_l1")
    assert set(fitted["module"]) == {"transformer.wte", "transformer.h.attn", "transformer.h.mlp", "lm_head"}


def test_an_import_refuses_what_it_cannot_read_and_writes_nothing(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "coords.csv"
    pl.DataFrame({"width": [64], "layer": ["fc"], "t": [1], "l1": [0.5]}).write_csv(bad)
    out = tmp_path / "runs"
    assert_input_error(
        monkeypatch, capsys, out, "no column 'module'", "import", "mup", str(bad), "--out", str(out), "--mode", "mup"
    )
    assert_input_error(
        monkeypatch,
        capsys,
        out,
        "holds no width<W>_depth<L>_seed<S>/log.csv",
        "import",
        "nanogpt-mup",
        str(tmp_path),
        "--out",
        str(out),
        "--mode",
        "sp",
    )


def test_an_import_into_runs_already_there_writes_none_of_its_runs(tmp_path, monkeypatch, capsys):
    runs = imported_nanogpt_mup(tmp_path, monkeypatch, capsys, widths=(64, 128), seeds=(0,), iters=2)
    (runs / "sp-width64_depth2_seed0" / "run.json").unlink()  # one target free, the other taken
    code, _, err = run_cli(
        monkeypatch, capsys, "import", "nanogpt-mup", str(tmp_path / "out"), "--out", str(runs), "--mode", "sp"
    )
    assert code == 2 and "sp-width128_depth2_seed0 already holds a run" in err
    assert not (runs / "sp-width64_depth2_seed0" / "run.json").exists()


def test_records_exported_to_tensorboard_read_back_as_the_same_runs(tmp_path, monkeypatch, capsys):
    runs = imported_nanogpt_mup(tmp_path, monkeypatch, capsys, widths=(64, 128), seeds=(0, 1), iters=3)
    code, out, _ = run_cli(monkeypatch, capsys, "export", "tensorboard", str(runs))
    assert code == 0 and "4 runs" in out
    back = tmp_path / "back"
    code, _, _ = run_cli(
        monkeypatch, capsys, "import", "tensorboard", str(runs / "tensorboard"), "--out", str(back), "--mode", "sp"
    )
    assert code == 0
    # Roles travel as module names: read again from them (nanoGPT-mup's "attn" was named by the importer).
    columns = ["width", "seed", "step", "module", "metric"]
    before = recorded.read(runs)[0].select(*columns, "value")
    after = recorded.read(back)[0].select(*columns, "value")
    both = before.join(after, on=columns, suffix="_back")
    assert both.height == before.height == after.height
    # TensorBoard keeps float32.
    assert ((both["value"] - both["value_back"]).abs() <= 1e-6 * both["value"].abs()).all()
    assert '"depth": 2' in (back / "sp-width64_depth2_seed1" / "run.json").read_text()


def test_a_loop_logging_its_own_norms_to_tensorboard_is_fitted(tmp_path, monkeypatch, capsys):
    """The documented tags, written by a user's SummaryWriter, one folder per run."""
    from torch.utils.tensorboard import SummaryWriter

    for width in (32, 64, 128):
        torch.manual_seed(0)
        layer = torch.nn.Linear(16, width)
        writer = SummaryWriter(str(tmp_path / "tb" / f"w{width}-s0"))
        for step in range(3):
            writer.add_scalar("norms/fc1/act_rms", layer(torch.ones(4, 16)).square().mean().sqrt().item(), step)
            writer.add_scalar("norms/fc1/weight_fro", layer.weight.norm().item(), step)
            writer.add_scalar("train/loss", 1.0, step)  # not a norms/ tag: not muscale's
        writer.close()
    runs = tmp_path / "runs"
    assert (
        run_cli(monkeypatch, capsys, "import", "tensorboard", str(tmp_path / "tb"), "--out", str(runs), "--mode", "sp")[
            0
        ]
        == 0
    )
    records = recorded.read(runs)[0]
    assert set(records["metric"]) == {"act_rms", "weight_fro"} and set(records["role"]) == {"mlp_up"}
    assert run_cli(monkeypatch, capsys, "fit", str(runs))[0] == 0
    fro = pl.read_csv(runs / "exponents.csv").filter(metric="weight_fro", step=0)["alpha"].item()
    assert abs(fro - 0.5) < 0.05  # ‖W‖_F of a (d, 16) matrix at PyTorch's init: d^½


def test_a_tensorboard_folder_that_names_no_width_is_refused(tmp_path, monkeypatch, capsys):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "tb" / "baseline-run"))
    writer.add_scalar("norms/fc/act_rms", 1.0, 0)
    writer.close()
    out = tmp_path / "runs"
    assert_input_error(
        monkeypatch,
        capsys,
        out,
        "baseline-run does not name a width and a seed",
        "import",
        "tensorboard",
        str(tmp_path / "tb"),
        "--out",
        str(out),
        "--mode",
        "sp",
    )
