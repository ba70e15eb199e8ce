"""Hugging Face architectures as families (`hf:MODEL_TYPE`, the `hf` extra): built from their
config at every width with nothing downloaded, roles read from their module names (GPT-2's
fused c_attn and its Conv1D layers included), every mode that can apply, and μP where muscale
can make it μP: a MuReadout head and 1/head_dim attention through the module's `scaling`."""

import math
import sys

import polars as pl
import pytest
import torch

pytest.importorskip("transformers")

from clirun import assert_input_error, run_cli

import muscale
from muscale.analysis.derived import DERIVED
from muscale.measure.probes import Probes
from muscale.models import lrm, modes
from muscale.models.families import resolve

ROLES = {
    "llama": {
        "embed",
        "attn_q",
        "attn_k",
        "attn_v",
        "attn_qk",
        "attn_out",
        "mlp_gate",
        "mlp_up",
        "mlp_down",
        "head",
        "norm",
    },
    "gpt2": {"embed", "attn_qkv", "attn_qk", "attn_out", "mlp_up", "mlp_down", "head", "norm"},
}


@pytest.mark.integration
@pytest.mark.parametrize("model_type", ["llama", "gpt2"])
@pytest.mark.parametrize("mode,steps", [("sp", 2), ("lrm", 4)])
def test_hf_coord_check(monkeypatch, capsys, tmp_path, model_type, mode, steps):
    code, _, stderr = run_cli(
        monkeypatch,
        capsys,
        "coord-check",
        "--family",
        f"hf:{model_type}",
        "--mode",
        mode,
        "--widths",
        "32,64",
        "--steps",
        str(steps),
        "--seeds",
        "1",
        "--device",
        "cpu",
        "--jobs",
        "1",
        "--out",
        str(tmp_path),
    )
    assert code == 0, stderr
    ex = pl.read_csv(tmp_path / "exponents.csv")
    assert ROLES[model_type] <= set(ex["role"]), set(ex["role"])
    assert "head_dim = d / heads" in (tmp_path / "report.html").read_text()
    fitted = ex.filter(pl.col("metric").is_in(["act_rms", "weight_spec"]))
    assert fitted.height and fitted["alpha"].is_finite().all()
    if mode == "lrm":
        mults = ex.filter(pl.col("metric").str.starts_with("mult_") & ~pl.col("metric").is_in(DERIVED))
        placed = {role for role, kind in lrm.DEFAULT_PLACEMENT.items() if kind != "none"}
        assert (ROLES[model_type] - {"embed"}) & placed == set(mults["role"]) - {"optimizer"}, set(mults["role"])


@pytest.mark.parametrize("model_type", ["llama", "gpt2"])
@pytest.mark.parametrize("mode", ["mup-lr", "lrm-scalar", "mup+lrm", "mup"])
def test_every_other_mode_trains(model_type, mode):
    records = muscale.coord_check(
        mode, f"hf:{model_type}", widths=(32, 64), steps=1, seeds=1, device="cpu", metrics=["act_rms"]
    )
    assert records.filter(pl.col("metric") == "loss")["value"].is_finite().all()
    assert records.filter(pl.col("role") == "attn_qk").height > 0


def _model(mode: str, model_type: str, width: int, multipliers: dict | None = None, **options):
    spec = muscale.plan(
        mode,
        f"hf:{model_type}",
        widths=(width, 2 * width),
        seeds=1,
        steps=1,
        options={k: str(v) for k, v in options.items()},
        multipliers=multipliers,
    )[0]
    return spec, modes.build(spec, resolve(spec.family))[0]


def test_config_follows_the_width_rules_and_the_data():
    _, model = _model("sp", "llama", 64, layers=3, heads=2)
    cfg = model.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.vocab_size) == (64, 3, 2, 256)
    assert cfg.intermediate_size == int(64 * 11008 / 4096)  # the config's own MLP ratio
    assert not cfg.tie_word_embeddings and cfg.attention_dropout == 0.0
    _, gpt2 = _model("sp", "gpt2", 64)
    assert gpt2.config.n_inner == 256 and gpt2.config.resid_pdrop == 0.0 and gpt2.config.n_layer == 2


def test_gpt2_conv1d_is_a_matrix_layer_to_probes_and_multipliers():
    """Conv1D stores its weight (fan_in, fan_out): the probes' fans and a row multiplier (one
    per output feature) must follow the layout, not the shape."""
    _, model = _model("sp", "gpt2", 32)
    fans = {name: (fan_out, fan_in) for name, _, _, fan_out, fan_in in Probes(model).matrices.layers}
    assert fans["transformer.h.0.attn.c_attn"] == (96, 32) and fans["transformer.h.0.mlp.c_proj"] == (32, 128)
    _, model = _model("lrm", "gpt2", 32, multipliers={"mlp_up": "both"})
    c_fc = model.transformer.h[0].mlp.c_fc
    x = torch.randn(3, 32)
    before = c_fc(x)
    mult = c_fc.parametrizations.weight[0]
    outputs = mult.col if mult.col is not None and mult.col.numel() == 128 else mult.row
    assert outputs.numel() == 128
    with torch.no_grad():
        outputs[0] = math.log(2.0) if mult.log else 2.0  # log multipliers store θ, s = e^θ
    after = c_fc(x)
    bias = c_fc.bias
    assert torch.allclose(after[:, 0] - bias[0], 2 * (before[:, 0] - bias[0]), atol=1e-6)
    assert torch.allclose(after[:, 1:], before[:, 1:])


def test_mup_swaps_the_head_and_sets_the_attention_scale_to_one_over_head_dim():
    from mup import MuReadout

    spec, model = _model("mup", "llama", 256)
    attn = model.model.layers[0].self_attn
    head_dim = 256 // 4
    assert isinstance(model.lm_head, MuReadout)
    assert attn.scaling == pytest.approx(math.sqrt(head_dim * spec.base_width / 256) / head_dim)
    assert attn.qk.scale == attn.scaling
    _, kept = _model("mup", "llama", 256, attn_scale="model")
    assert kept.model.layers[0].self_attn.scaling == pytest.approx(head_dim**-0.5)


WIDTHS = (64, 128, 256, 512)


def qk_change(options: dict, widths=WIDTHS, seeds: int = 2) -> pl.DataFrame:
    records = muscale.coord_check("mup", "hf:llama", widths=widths, steps=5, seeds=seeds, options=options, device="cpu")
    ex = muscale.fit_exponents(records)
    return ex.filter((pl.col("step") >= 1) & (pl.col("role") == "attn_qk") & (pl.col("metric") == "dact_rms")).select(
        "module", "step", "alpha"
    )


def assert_mup_flat_and_sqrt_grows(widths, seeds):
    """As tests/test_attention_ssm_science.py for the built-in transformer: the QK-logit change
    stays flat under 1/head_dim (median |α| over layers and steps 1…5), and the same μP model
    with its own 1/sqrt(head_dim) left in place grows at least 0.3 faster at every layer and step."""
    mup, kept = qk_change({}, widths, seeds), qk_change({"attn_scale": "model"}, widths, seeds)
    both = mup.join(kept, on=["module", "step"], suffix="_sqrt")
    assert both.height == 2 * 5
    assert mup["alpha"].abs().median() < 0.35, both
    assert (both["alpha_sqrt"] - both["alpha"]).min() >= 0.3, both


@pytest.mark.slow
def test_mup_qk_logit_change_is_flat_over_64_to_512_and_sqrt_head_dim_is_not():
    assert_mup_flat_and_sqrt_grows(WIDTHS, seeds=2)


@pytest.mark.science
def test_mup_qk_logit_change_is_flat_and_sqrt_head_dim_is_not_small():
    assert_mup_flat_and_sqrt_grows(WIDTHS[:3], seeds=1)


BAD = [
    (("--family", "hf:nope"), "hf:llama"),
    (("--family", "hf:llama", "--option", "colour=red"), "colour"),
    (("--family", "hf:llama", "--option", "layers=two"), "layers"),
    (("--family", "hf:llama", "--widths", "30,60"), "heads=4"),
    (("--family", "hf:llama", "--batch", "families_for_tests:mlp_batch"), "--batch"),
    (("--family", "hf:llama", "--mode", "mup", "--option", "attn_scale=half"), "attn_scale"),
    (("--family", "hf:gpt2", "--mode", "mup", "--option", "scale_attn_weights=false"), "1/sqrt(head_dim)"),
]


@pytest.mark.parametrize("args,needle", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_hf_input_is_one_line_exit_2_and_writes_nothing(monkeypatch, capsys, tmp_path, args, needle):
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
        "32,64",
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


def test_without_the_extra_hf_is_one_line_naming_it(monkeypatch, capsys, tmp_path):
    import muscale.models.families

    monkeypatch.setitem(sys.modules, "transformers", None)
    monkeypatch.delitem(sys.modules, "muscale.models.families.hf", raising=False)
    monkeypatch.delattr(muscale.models.families, "hf", raising=False)
    code, _, stderr = run_cli(
        monkeypatch, capsys, "coord-check", "--family", "hf:llama", "--out", str(tmp_path / "out")
    )
    assert code == 2 and "muscale[hf]" in stderr and len(stderr.strip().splitlines()) == 1


def test_gpt2_conv1d_multipliers_are_recorded_and_paired_by_the_layers_side():
    """A row multiplier on a Conv1D (stored as the matrix's column vector) is recorded as
    mult_row_*, one value per output feature, and pairs with the next layer's column vector
    as the same placement on nn.Linear layers does."""
    _, model = _model(
        "lrm",
        "gpt2",
        32,
        multipliers={"mlp_up": "row", "mlp_down": "col", "attn_out": "none", "head": "none", "attn_q": "none"},
    )
    c_fc = model.transformer.h[0].mlp.c_fc
    mult = c_fc.parametrizations.weight[0]
    assert mult.col is not None and mult.row is None and set(mult.sides()) == {"row"}
    with torch.no_grad():
        mult.col[0] = math.log(3.0) if mult.log else 3.0
    probes = Probes(model)
    x = resolve("hf:gpt2").batch(0, 2, 8)[0]
    with probes.watch(0):
        model(x)
    rows = probes.collect(0)
    got = {(m, metric): v for m, metric, v in zip(rows["module"], rows["metric"], rows["value"])}
    name = "transformer.h.0.mlp.c_fc"
    assert (name, "mult_row_max") in got and not any(k == (name, "mult_col_max") for k in got)
    assert got[name, "mult_row_max"] == pytest.approx(3.0)
    assert ("transformer.h.0.mlp[mlp_up~mlp_down]", "mult_path") in got
