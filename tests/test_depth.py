"""Depth as a second axis: checks over depths, the depth rules, and the α a model behaves like."""

import math
from pathlib import Path

import polars as pl
import pytest
import torch
from clirun import assert_input_error, run_cli
from families_for_tests import residual_lm
from studies_for_tests import assert_study_error, write_study
from test_width_study import TINY

import muscale
from muscale.analysis import depth_rule, positions
from muscale.analysis.fit import fit_exponents
from muscale.config import depth
from muscale.kinds.coord_check import analysis
from muscale.kinds.lr_transfer import analysis as transfer
from muscale.models import data, modes, optim
from muscale.models.depth import blocks
from muscale.models.families import resolve

USER = "families_for_tests:residual_lm"
ROOT = Path(__file__).resolve().parents[1]


def _check(family="transformer", **kwargs) -> analysis.CoordCheck:
    options = dict(widths=(128,), depths=(2, 4, 8, 16), seeds=3, steps=1) | kwargs
    return analysis.analyse(muscale.coord_check("sp", family, **options))


def _row(frame: pl.DataFrame, module: str, metric: str, step: int = 0) -> dict:
    return frame.filter(module=module, metric=metric, step=step).row(0, named=True)


def test_a_depth_check_runs_every_depth_at_every_width_and_names_its_runs_by_depth():
    specs = muscale.plan("sp", "transformer", widths=(32, 64), depths=(2, 4, 8), seeds=2)
    assert len(specs) == 12
    assert {(s.width, s.depth) for s in specs} == {(w, d) for w in (32, 64) for d in (2, 4, 8)}
    assert "-w32-L4-s1-" in next(s.run_id for s in specs if (s.width, s.depth, s.seed) == (32, 4, 1))
    assert all(s.base_depth == 2 for s in specs)
    # Without --depths nothing changes: no depth in the run id, the family's own depth.
    plain = muscale.plan("sp", "transformer", widths=(32, 64), seeds=1)[0]
    assert plain.depth is None and "-L" not in plain.run_id


@pytest.mark.parametrize(
    ("family", "count"),
    [("transformer", lambda m: len(m.blocks)), (USER, lambda m: len(m.blocks)), ("mamba2", lambda m: len(m.blocks))],
)
def test_every_family_is_built_at_the_depth_asked_for(family, count):
    spec = muscale.plan("sp", family, widths=(32,), depths=(3, 5), seeds=1)[1]
    model, _ = modes.build(spec, resolve(spec.family))
    assert count(model) == 5
    assert len(blocks(model)) == 5


def test_hf_llama_is_built_at_the_depth_asked_for():
    pytest.importorskip("transformers")
    spec = muscale.plan("sp", "hf:llama", widths=(32, 64), depths=(3,), seeds=1)[0]
    model, _ = modes.build(spec, resolve(spec.family))
    assert model.config.num_hidden_layers == 3
    assert [name for name, _ in blocks(model)] == ["model.layers.0", "model.layers.1", "model.layers.2"]
    # Every block of both depths is probed, its laziness too (the decoder layer is handed
    # rotary cos, sin as a tuple); a depth rule reaches o_proj and down_proj (the role seam).
    records = muscale.coord_check(
        "sp", "hf:llama", widths=(32,), depths=(2, 8), seeds=1, steps=1, depth_param="completep"
    )
    rule = muscale.plan("sp", "hf:llama", widths=(32,), depths=(2, 8), seeds=1, depth_param="completep")[1]
    scaled, _ = modes.build(rule, resolve(rule.family))
    for layer in (scaled.model.layers[7].self_attn.o_proj, scaled.model.layers[7].mlp.down_proj):
        x = torch.randn(3, layer.in_features)
        assert torch.allclose(layer(x), 0.25 * torch.nn.functional.linear(x, layer.weight), atol=1e-6)
    assert records.filter(metric="nonlin_rel", step=1).height == 2 + 8


def test_the_depth_rules_scale_the_branches_and_the_blocks_learning_rates():
    """m_L = L / L_base: depth-μP multiplies branches by m_L^−½ and the blocks' Adam lr by m_L^−½;
    CompleteP branches by m_L^−1, the lr unchanged, Adam's ε by m_L^−1; SGD's lr by m_L^(2α−1).
    The embedding and the head keep the base learning rate."""
    assert depth.branch_multiplier("depth-mup", None, 8, 2) == pytest.approx(0.5)
    assert depth.lr_factor("depth-mup", None, 8, 2, "adam") == pytest.approx(0.5)
    assert depth.lr_factor("completep", None, 8, 2, "adamw") == 1.0
    assert depth.lr_factor("completep", None, 8, 2, "sgd") == pytest.approx(4.0)
    assert depth.lr_factor("alpha", 0.75, 16, 2, "adam") == pytest.approx(8**-0.25)
    assert depth.eps_factor("completep", None, 8, 2) == pytest.approx(0.25)
    assert depth.eps_factor("depth-mup", None, 8, 2) == 1.0
    spec = muscale.plan("sp", "transformer", widths=(32,), depths=(2, 8), seeds=1, depth_param="depth-mup", lr=0.01)[1]
    model, mults = modes.build(spec, resolve(spec.family))
    opt = optim.build(spec, model, mults)
    lr = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert lr[id(model.blocks[7].attn.q.weight)] == pytest.approx(0.005)
    assert lr[id(model.blocks[0].mlp_norm.weight)] == pytest.approx(0.005)
    assert lr[id(model.head.weight)] == lr[id(model.embed.weight)] == pytest.approx(0.01)
    cp = muscale.plan("sp", "transformer", widths=(32,), depths=(2, 8), seeds=1, depth_param="completep")[1]
    model, mults = modes.build(cp, resolve(cp.family))
    eps = {id(p): g["eps"] for g in optim.build(cp, model, mults).param_groups for p in g["params"]}
    assert eps[id(model.blocks[3].mlp.down.weight)] == pytest.approx(optim.ADAM_EPS / 4)
    assert eps[id(model.head.weight)] == optim.ADAM_EPS


@pytest.mark.parametrize(("family", "branch"), [("transformer", "blocks.0.attn.o"), (USER, "blocks.0")])
def test_a_depth_rule_multiplies_what_each_branch_adds_to_the_stream(family, branch):
    """The first block is the same at every depth with the same seed, so its first branch's
    output at init is exactly the rule's multiplier times the base depth's: through the role
    seam (the transformer's attention output) and through muscale.Residual (the user's
    one-branch block)."""
    records = muscale.coord_check("sp", family, widths=(32,), depths=(2, 8), seeds=1, steps=1, depth_param="completep")
    metric = "contrib_rms" if branch == "blocks.0" else "act_rms"
    first = records.filter(module=branch, metric=metric, step=0).sort("depth")["value"].to_list()
    assert first[1] / first[0] == pytest.approx(2 / 8, rel=1e-4)


def test_positions_name_the_first_middle_and_last_block_at_every_depth():
    records = pl.DataFrame(
        {
            "depth": [4, 4, 4, 4, 2],
            "module": ["blocks.0.attn.o", "blocks.2.attn.o", "blocks.3", "head", "blocks.1.mlp.down"],
        }
    )
    placed = set(positions.by_position(records).select("depth", "module").iter_rows())
    assert placed == {
        (4, "blocks.first.attn.o"),
        (4, "blocks.middle.attn.o"),
        (4, "blocks.last"),
        (4, "head"),
        (2, "blocks.middle.mlp.down"),
        (2, "blocks.last.mlp.down"),
    }


def test_sp_builds_a_stream_that_grows_like_sqrt_depth_and_completep_keeps_it_flat():
    """At init: under sp the blocks' uncorrelated contributions build a stream part ∝ L^½;
    under CompleteP each contribution shrinks like L^−1 and the stream is flat; the α each
    behaves like is read back from the contributions. (Under sp the deeper blocks' own
    contributions grow a little with depth, +0.10 at widths 128, depths 2…16, so their
    depth-free claim is inconclusive there: a measurement, left as it is.)"""
    sp, cp = _check(), _check(depth_param="completep")
    assert sp.claims.filter(metric="built_rms")["verdict"].to_list() == ["pass"]
    assert _row(sp.depth_exponents, "blocks.last", "built_rms")["alpha"] == pytest.approx(0.5, abs=0.15)
    at_init = cp.claims.filter(pl.col("metric") != "nonlin_rel")  # after init: the laziness test
    assert at_init.height == 3 and set(at_init["verdict"]) == {"pass"}, cp.claims
    for check, alpha in ((sp, 0.0), (cp, 1.0)):
        (found,) = check.inferred.iter_rows(named=True)
        assert abs(found["alpha"] - alpha) < 0.15 and found["ci_high"] - found["ci_low"] < 0.3
        assert found["behaves_like"] == depth.named(alpha) and not found["counted_twice"]


def test_teeth_a_model_whose_branches_shrink_like_depth_to_the_minus_half_fails_a_completep_claim():
    """The user's model scales its own branches by L^−½ (depth-μP) and its records claim
    CompleteP: the contributions' exponent is −½, not −1."""
    records = muscale.coord_check(
        "sp", USER, widths=(32,), depths=(2, 4, 8, 16), seeds=3, steps=1, options={"own_alpha": 0.5}
    )
    claimed = records.with_columns(depth_rule=pl.lit("completep"))
    check = analysis.analyse(claimed)
    contrib = check.claims.filter(metric="contrib_rms").row(0, named=True)
    assert contrib["verdict"] == "fail"
    (found,) = check.inferred.iter_rows(named=True)
    assert found["behaves_like"] == "depth-mup"
    # Honest under its own name: the same records as depth-μP pass.
    honest = analysis.analyse(records.with_columns(depth_rule=pl.lit("depth-mup")))
    assert honest.claims.filter(metric="contrib_rms")["verdict"].to_list() == ["pass"]


def test_teeth_depth_counted_twice_is_flagged():
    """A GPT-2-style init (projections at std ∝ 1/sqrt(L)) under muscale's CompleteP multiplier:
    branches shrink like L^−1.5 at init where the rule gives L^−1."""
    check = _check(USER, depth_param="completep", options={"depth_init": 1})
    (found,) = check.inferred.iter_rows(named=True)
    assert found["counted_twice"] and found["alpha"] == pytest.approx(1.5, abs=0.15)
    assert "depth counted twice" in depth_rule.sentence(found)
    clean = _check(USER, depth_param="completep")
    assert not clean.inferred["counted_twice"].item()


def test_a_width_by_depth_grid_fits_both_exponents():
    records = muscale.coord_check("mup", "transformer", widths=(32, 64), depths=(2, 4), seeds=2, steps=1)
    width = fit_exponents(records)
    assert set(width["depth"]) == {2, 4} and width["n_widths"].max() == 2
    by_depth = fit_exponents(records, axis="depth")
    assert set(by_depth["width"]) == {32, 64} and by_depth["n_depths"].max() == 2
    assert not math.isnan(by_depth.filter(module="blocks.last", metric="contrib_rms", step=0)["alpha"][0])


def test_the_depth_check_prints_the_alpha_it_infers_and_writes_its_exponents(monkeypatch, capsys, tmp_path):
    out = tmp_path / "check"
    args = ["--mode", "sp", "--depths", "2,4", "--widths", "32", "--seeds", "2", "--steps", "1", "--out", str(out)]
    code, stdout, _ = run_cli(monkeypatch, capsys, "coord-check", *args, "--depth-param", "completep")
    assert code == 0
    assert "behaves like α = " in stdout and "(depth rule completep, width 32)" in stdout
    assert (out / "depth_exponents.csv").exists()
    assert "<h2>Depth</h2>" in (out / "report.html").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("needle", "args"),
    [
        ("--depths", ["--depth-param", "completep", "--widths", "32,64"]),
        ("--depth-alpha", ["--depth-param", "alpha", "--depths", "2,4", "--widths", "32"]),
        ("--depth-alpha", ["--depth-alpha", "0.5", "--depths", "2,4", "--widths", "32"]),
        ("--depth-param", ["--depth-param", "deep", "--depths", "2,4", "--widths", "32"]),
        ("--depths", ["--depths", "4,2", "--widths", "32"]),
        ("--depths", ["--depths", "2,x", "--widths", "32"]),
        ("--depths", ["--depths", "2,4", "--widths", "32", "--option", "layers=3"]),
        ("--widths", ["--widths", "32"]),
        (
            "takes no depth parameter",
            ["--family", "families_for_tests:no_depth_lm", "--depths", "2,4", "--widths", "32"],
        ),
        (
            "no residual branch",
            ["--family", USER, "--option", "seam=0", "--depths", "2,4", "--widths", "32", "--depth-param", "completep"],
        ),
        ("no residual branch", ["--family", "mlp", "--depths", "2,4", "--widths", "32", "--depth-param", "completep"]),
    ],
)
def test_bad_depth_input_is_one_line_naming_the_option(monkeypatch, capsys, tmp_path, needle, args):
    out = tmp_path / "never"
    assert_input_error(monkeypatch, capsys, out, needle, "coord-check", "--mode", "sp", "--out", str(out), *args)


def test_a_users_loop_recorded_at_several_depths_is_fitted_across_depth(monkeypatch, capsys, tmp_path):
    """A model that scales its own branches by (2/L)^1 and says so (depth_rule completep),
    recorded by muscale.Recorder at depths 2…8: `muscale fit` fits β and names the rule."""

    x = data.token_batch(data.PROBE_INDEX, 2, 16)[0]
    for depth_ in (2, 4, 8):
        for seed in range(3):
            torch.manual_seed(seed)
            model = residual_lm(32, depth=depth_, own_alpha=1.0)
            opt = torch.optim.Adam(model.parameters(), lr=1e-2)
            rec = muscale.Recorder(
                model,
                tmp_path / f"L{depth_}-s{seed}",
                width=32,
                depth=depth_,
                seed=seed,
                depth_rule="completep",
                optimizer=opt,
                probe=x,
                steps=(0, 1),
            )
            loss = model(x).logsumexp(-1).mean()
            loss.backward()
            opt.step()
            rec.step(0, loss=loss)
            rec.close()
    code, stdout, _ = run_cli(monkeypatch, capsys, "fit", str(tmp_path))
    assert code == 0
    assert "(depth rule completep, width 32): behaves like α = 1.0" in stdout
    fits = pl.read_csv(tmp_path / "depth_exponents.csv")
    assert fits.filter(module="blocks.last", metric="contrib_rms", step=0)["verdict"].to_list() == ["pass"]


def test_depth_exponents_go_into_a_baseline_and_the_gate_fails_when_one_drifts(monkeypatch, capsys, tmp_path):
    """A CompleteP check's baseline holds its depth exponents apart from its width ones; the
    same model run under depth-μP moves what each block adds from L^−1 to L^−½ and fails."""
    base = ["--mode", "sp", "--depths", "2,4,8", "--widths", "64", "--seeds", "3", "--steps", "1"]
    cp, dm, baseline = tmp_path / "cp", tmp_path / "dm", tmp_path / "baseline.toml"
    assert run_cli(monkeypatch, capsys, "coord-check", *base, "--depth-param", "completep", "--out", str(cp))[0] == 0
    assert run_cli(monkeypatch, capsys, "baseline", str(cp), "-o", str(baseline), "--metric", "contrib_rms")[0] == 0
    assert 'axis = "depth"' in baseline.read_text(encoding="utf-8")
    code, stdout, _ = run_cli(monkeypatch, capsys, "gate", str(cp), "--baseline", str(baseline), "--tol", "0.25")
    assert code == 0, stdout
    assert run_cli(monkeypatch, capsys, "coord-check", *base, "--depth-param", "depth-mup", "--out", str(dm))[0] == 0
    # The same baseline names the rule it was written under: rename it to compare the runs.
    baseline.write_text(baseline.read_text(encoding="utf-8").replace('"completep"', '"depth-mup"'), encoding="utf-8")
    code, stdout, _ = run_cli(monkeypatch, capsys, "gate", str(dm), "--baseline", str(baseline), "--tol", "0.25")
    assert code == 1
    assert (
        "FAIL    sp transformer adam blocks.last contrib_rms step 0 (depth exponent, depth_rule depth-mup, width 64)"
        in stdout
    )


@pytest.mark.science
def test_completep_keeps_every_block_non_lazy_and_depth_mup_does_not():
    """CompleteP's criterion on the default depth check (docs/guide/depth.md): a block's
    nonlinear share of its change since init follows its parameters' step, m_L^(α−1) under
    Adam: flat under CompleteP, L^−½ under depth-μP. Teeth: the depth-μP run claimed as
    CompleteP fails."""
    cp, dm = (
        muscale.coord_check("sp", "transformer", widths=(128,), depths=(2, 4, 8, 16, 32), depth_param=r)
        for r in ("completep", "depth-mup")
    )
    for records, expected in ((cp, 0.0), (dm, -0.5)):
        claim = analysis.analyse(records).claims.filter(metric="nonlin_rel").row(0, named=True)
        assert claim["verdict"] == "pass" and claim["expected"] == expected, claim
    claimed = analysis.analyse(dm.with_columns(depth_rule=pl.lit("completep")))
    assert claimed.claims.filter(metric="nonlin_rel")["verdict"].to_list() == ["fail"]


def _width_study(tmp_path, extra: str):
    return TINY.replace("[options]\nlayers = 1\n", "").replace('data = "synthetic"\n', f'data = "synthetic"\n{extra}')


def test_study_files_take_a_depth_and_depth_rules(tmp_path):
    text = _width_study(tmp_path, 'depths = [4]\nbase_depth = 2\ndepth_params = ["sp", "completep"]\n')
    plan = muscale.api.load(write_study(tmp_path, text))
    assert {(s.depth, s.base_depth, s.depth_param) for s in plan.specs} == {(4, 2, "sp"), (4, 2, "completep")}
    assert len(plan.specs) == 2 * 3 * 3 * 2
    assert next(s for s in plan.specs if s.depth_param == "completep").branch_multiplier == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("extra", "key", "line"),
    [
        ("depths = [2, 4]\n", "depths", 15),
        ("depths = [4]\ndepth_alpha = 0.5\n", "depth_alpha", 16),
        ('depth_params = ["completep"]\n', "depths", None),
        ('depths = [4]\ndepth_params = ["deep"]\n', "depth_params", 16),
    ],
)
def test_a_study_files_bad_depth_keys_are_named(monkeypatch, capsys, tmp_path, extra, key, line):
    assert_study_error(monkeypatch, capsys, tmp_path, _width_study(tmp_path, extra), key, line)


def test_a_depth_sweeps_drift_is_fitted_per_depth_rule_and_gated_by_rule():
    """η* ∝ L^β per depth rule at the sweep's one width; the study's expectations, keyed by
    depth rule, are checked against the right rule only (teeth: sp's drift fails a flat claim)."""
    rows = [
        {
            "family": "f",
            "mode": "sp",
            "optimizer": "adam",
            "depth_rule": rule,
            "width": 64,
            "depth": depth_,
            "seed": s,
            "log2_lr_opt": -6.0 + slope * (depth_.bit_length() - 1) + 0.01 * s,
            "loss_opt": 1.0,
            "bracketed": True,
            "n_diverged": 0,
            "step": 10,
        }
        for rule, slope in (("sp", -1.0), ("completep", 0.0))
        for depth_ in (2, 4, 8, 16)
        for s in range(2)
    ]
    drift = transfer.drift(pl.DataFrame(rows), tolerance=0.25, axis="depth")
    alpha = dict(drift.select("depth_rule", "alpha").iter_rows())
    assert alpha["sp"] == pytest.approx(-1.0) and alpha["completep"] == pytest.approx(0.0, abs=1e-9)
    assert set(drift["n_depths"]) == {4} and set(drift["axis"]) == {"depth"}
    expect = [
        {
            "mode": "sp",
            "family": "f",
            "optimizer": "adam",
            "module": "lr_opt",
            "metric": "lr_opt",
            "step": 10,
            "expected": 0.0,
            "tolerance": 0.25,
            "axis": "depth",
            "depth_rule": rule,
            "width": 64,
        }
        for rule in ("sp", "completep")
    ]
    checked = dict(transfer.checks(drift, expect, "depth").select("depth_rule", "status").iter_rows())
    assert checked == {"sp": "fail", "completep": "pass"}


def test_a_depth_transfer_study_expands_over_depths_and_rules_and_refuses_a_grid(monkeypatch, capsys, tmp_path):
    text = (ROOT / "studies" / "depth_transfer.toml").read_text(encoding="utf-8")
    plan = muscale.api.load(write_study(tmp_path, text))
    assert {(s.depth, s.depth_param) for s in plan.specs} == {
        (d, r) for d in (2, 4, 8, 16) for r in ("sp", "depth-mup", "completep")
    }
    assert {row["depth_rule"] for row in plan.baseline()} == {"sp", "depth-mup", "completep"}
    lines = text.splitlines()
    widths = lines.index("widths = [64]") + 1
    rule = next(i for i, t in enumerate(lines) if t.startswith("depth-mup")) + 1
    grid = text.replace("widths = [64]", "widths = [64, 128]")
    assert_study_error(monkeypatch, capsys, tmp_path, grid, "widths", widths)
    assert_study_error(monkeypatch, capsys, tmp_path, text.replace("depth-mup = {", "mup = {"), "expect.mup", rule)
