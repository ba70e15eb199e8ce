"""The recorder inside other people's trainers, through its callbacks (muscale.integrations):
the Hugging Face Trainer on hf:llama configs and Lightning on the plain-loop MLP, each the
example of the guide (examples/hf_trainer.py, examples/lightning_module.py), fitted by
`muscale fit`: SP's hidden activation change grows with width, μP's stays flat, and the gate
fails a μP run that lost its μP but kept the name."""

import json
import runpy
from pathlib import Path

import polars as pl
import pytest
from clirun import run_cli

from muscale import api

pytestmark = pytest.mark.science
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
STEPS = 4
LLAMA_HIDDEN = ("attn_q", "attn_k", "attn_v", "mlp_up", "mlp_gate")


def hidden_alpha(out: Path, roles, step: int) -> dict[str, float]:
    """Each mode's median α of the hidden matrices' activation change at `step`."""
    exponents = api.analyse(out).analysis.exponents
    rows = exponents.filter((pl.col("metric") == "dact_rms") & (pl.col("step") == step) & pl.col("role").is_in(roles))
    return dict(rows.group_by("mode").agg(pl.col("alpha").median()).iter_rows())


def test_a_hugging_face_trainer_with_the_callback_on_llama_configs(tmp_path, monkeypatch, capsys):
    example = runpy.run_path(str(EXAMPLES / "hf_trainer.py"))
    runs, mup_only, broken = tmp_path / "runs", tmp_path / "mup", tmp_path / "broken"
    for width in example["WIDTHS"]:
        for seed in (0, 1):
            example["train"](str(runs), "sp", width, seed)
            example["train"](str(runs), "mup", width, seed)
            example["train"](str(mup_only), "mup", width, seed + 2)
            example["train"](str(broken), "sp", width, seed + 2, label="mup")
    # The callback read width, depth, family, seed and learning rate from the model and the arguments.
    meta = json.loads((runs / "mup-w256-s1" / "run.json").read_text())
    assert {k: meta[k] for k in ("width", "depth", "family", "seed", "lr", "optimizer")} == {
        "width": 256,
        "depth": 2,
        "family": "llama",
        "seed": 1,
        "lr": 0.01,
        "optimizer": "adam",
    }
    alpha = hidden_alpha(runs, LLAMA_HIDDEN, STEPS - 1)
    # μP's first Adam steps shrink zero-mean inputs' projections slightly at these widths
    # (DESIGN.md, fact 1): muscale's own loop on the same model gives a median of −0.10 too.
    assert alpha["sp"] >= 0.4 and abs(alpha["mup"]) <= 0.15 and alpha["sp"] - alpha["mup"] >= 0.5, alpha

    baseline = tmp_path / "baseline.toml"
    for out in (mup_only, broken):
        assert run_cli(monkeypatch, capsys, "fit", str(out))[0] == 0
    assert run_cli(monkeypatch, capsys, "baseline", str(mup_only), "-o", str(baseline), "--metric", "dact_rms")[0] == 0
    code, output, _ = run_cli(monkeypatch, capsys, "gate", str(broken), "--baseline", str(baseline))
    assert code == 1 and "FAIL    mup llama adam model.layers.0.mlp.up_proj dact_rms" in output
    assert "missing" not in output


def test_a_lightning_trainer_with_the_callback(tmp_path):
    example = runpy.run_path(str(EXAMPLES / "lightning_module.py"))
    runs = tmp_path / "runs"
    for mode in ("sp", "mup"):
        for width in example["WIDTHS"]:
            for seed in (0, 1):
                example["train"](str(runs), mode, width, seed)
    records = api.analyse(runs).analysis.detail.records
    assert sorted(records["step"].unique()) == list(range(STEPS))
    # One loss per run and step: the training step's, not one per micro-batch.
    assert records.filter(pl.col("metric") == "loss").height == 2 * len(example["WIDTHS"]) * 2 * STEPS
    assert json.loads((runs / "mup-w64-s0" / "run.json").read_text())["optimizer"] == "adam"
    alpha = hidden_alpha(runs, ("hidden",), STEPS - 1)
    assert alpha["sp"] >= 0.4 and abs(alpha["mup"]) <= 0.1, alpha
