"""Equilibrium studies (kind = "equilibrium"): the study file is validated like any study
(exit 2, file:line: key, nothing written), the fit recovers known exponents and tells a
pinned norm from a free one, the gate passes and fails on the study's expectations, and
(slow) a scale-invariant matrix really settles at ‖W‖ ∝ sqrt(η/λ) while the same fit on
matrices the output sees misses it."""

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from clirun import run_cli
from studies_for_tests import TINY as LR_TINY
from studies_for_tests import assert_study_error
from studies_for_tests import write_study as write

from muscale import api
from muscale.analysis import gate
from muscale.kinds.equilibrium import analysis as equilibrium
from muscale.measure import invariance
from muscale.models.data import mlp_batch
from muscale.models.families import BUILTIN, Hooks
from muscale.run import store, sweep

TINY = """\
kind = "equilibrium"
title = "tiny equilibrium"
modes = ["sp"]
width = 32
batch_size = 8
eval_batches = 1
eta_lambda_steps = 6

[lr]
log2_min = -5
log2_max = -3
log2_step = 1

[wd]
log2_min = -1
log2_max = 1
log2_step = 1

[variants.ln]
family = "mlp"
options = { norm = "layernorm" }

[expect]
scale_invariant = { eta = 0.5, lambda = -0.5, tolerance = 0.15 }
"""


BAD = [
    # (replace this, with this, the key the error must name, the line it must point at)
    ('kind = "equilibrium"', 'kind = "equilibrum"', "kind", 1),
    ('modes = ["sp"]', 'modes = ["mup"]', "modes", 3),
    ("width = 32", "width = 0", "width", 4),
    ("width = 32", "widths = [32, 64]", "widths", 4),
    ("batch_size = 8", 'batch_size = 8\ndata = "stdlib"', "data", 6),  # the mlp brings its own data
    ("eta_lambda_steps = 6", "eta_lambda_steps = 6e6", "eta_lambda_steps", 7),  # over max_steps
    ("eta_lambda_steps = 6", "steady_fraction = 1.5", "steady_fraction", 7),
    ("[wd]", "[weight_decay]", "weight_decay", 14),
    ("log2_max = 1", "log2_max = 0", "wd.log2_max", 16),
    ("log2_step = 1\n\n[variants", "log2_step = 0\n\n[variants", "wd.log2_step", 17),
    ('family = "mlp"', 'family = "nope"', "variants.ln.family", 20),
    ('options = { norm = "layernorm" }', 'options = { colour = "red" }', "variants.ln.options", 21),
    ('options = { norm = "layernorm" }', 'options = { norm = "batchnorm" }', "variants.ln.options", 21),
    ('options = { norm = "layernorm" }', "options = {}", "expect.scale_invariant", 24),  # nothing invariant
    ("scale_invariant = {", "invariant = {", "expect.invariant", 24),
    ("eta = 0.5, ", "", "expect.scale_invariant.eta", 24),
    ("tolerance = 0.15", "tolerance = -0.15", "expect.scale_invariant.tolerance", 24),
]


@pytest.mark.parametrize("old,new,key,line", BAD, ids=[f"{k}-{i}" for i, (_, _, k, _) in enumerate(BAD)])
def test_malformed_study_exits_2_naming_key_and_line(monkeypatch, capsys, tmp_path, old, new, key, line):
    assert old in TINY
    assert_study_error(monkeypatch, capsys, tmp_path, TINY.replace(old, new, 1), key, line)


def test_two_variants_of_the_same_model_are_refused(tmp_path):
    path = write(tmp_path, TINY + '\n[variants.again]\nfamily = "mlp"\noptions = { norm = "layernorm" }\n')
    with pytest.raises(Exception, match=r"study.toml:26: variants.again: is the same model as variants.ln"):
        api.load(path)


def test_study_expands_grid_with_steps_from_eta_lambda(tmp_path):
    plan = api.load(write(tmp_path, TINY))
    assert plan.kind == "equilibrium" and len(plan.specs) == 9
    for s in plan.specs:
        assert s.optimizer == "adamw" and s.steps == math.ceil(6 / (s.lr * s.weight_decay))
    assert [s.steps for s in plan.specs] == sorted((s.steps for s in plan.specs), reverse=True)
    (variant,) = plan.variants
    assert variant.invariant == ("input", "hidden.0")  # the head is seen by the output
    rows = plan.baseline()
    assert {(r["module"], r["metric"], r["expected"]) for r in rows} == {
        (m, f"weight_fro~{v}", e) for m in ("input", "hidden.0") for v, e in (("eta", 0.5), ("lambda", -0.5))
    }


def test_a_study_without_kind_is_an_lr_transfer_sweep(tmp_path):
    assert api.load(write(tmp_path, LR_TINY)).kind == "lr_transfer"


def test_bundled_study_classifies_its_variants():
    plan = api.load(Path(__file__).parents[1] / "studies" / "noise_wd_equilibrium.toml")
    assert {v.name: v.invariant for v in plan.variants} == {"mlp-layernorm": ("input", "hidden.0"), "mlp-plain": ()}
    assert min(s.lr * s.weight_decay * s.steps for s in plan.specs) >= 5  # every run reaches its equilibrium


def test_invariance_is_measured_not_declared():
    """A gainless LayerNorm after a matrix makes it invariant; without the norm nothing is."""
    x = mlp_batch(-1, 8)[0]
    with_norm = invariance.output_change(BUILTIN["mlp"].make(64, Hooks(), {"norm": "layernorm"}), x)
    plain = invariance.output_change(BUILTIN["mlp"].make(64, Hooks(), {}), x)
    assert max(with_norm["input"], with_norm["hidden.0"]) < invariance.TOLERANCE < with_norm["head"]
    assert min(plain.values()) > 100 * invariance.TOLERANCE


# ---------------------------------------------------------------- the fit, on synthetic norms

ETAS, LAMBDAS = [2.0**-10, 2.0**-8, 2.0**-6], [2.0**-2, 1.0, 4.0]


def synthetic(exponents: dict[str, tuple[float, float]], seeds: int = 2, noise: float = 0.02):
    """Steady norms ‖W‖ = 3·η^p·λ^q·(1 + noise) per module, and the matching run states."""
    rng = np.random.default_rng(0)
    rows, state = [], []
    for seed in range(seeds):
        for eta in ETAS:
            for lam in LAMBDAS:
                run = f"r-{eta}-{lam}-{seed}"
                state.append(
                    {
                        "run_id": run,
                        "variant": "v",
                        "mode": "sp",
                        "lr": eta,
                        "weight_decay": lam,
                        "seed": seed,
                        "loss": 1.0,
                        "diverged": False,
                    }
                )
                for module, (p, q) in exponents.items():
                    value = 3 * eta**p * lam**q * math.exp(noise * rng.standard_normal())
                    rows.append(
                        {
                            "run_id": run,
                            "variant": "v",
                            "mode": "sp",
                            "lr": eta,
                            "weight_decay": lam,
                            "seed": seed,
                            "module": module,
                            "role": "hidden",
                            "weight_fro": value,
                            "effective_fro": value,
                        }
                    )
    return pl.DataFrame(rows), pl.DataFrame(state)


def test_fit_recovers_known_exponents_with_intervals():
    norms, state = synthetic({"pinned": (0.5, -0.5), "free": (-0.2, -0.3)})
    fits = equilibrium.wide(equilibrium.fit(norms, state, {"v": ["pinned"]}), "weight_fro")
    for module, (p, q) in {"pinned": (0.5, -0.5), "free": (-0.2, -0.3)}.items():
        row = fits.filter(pl.col("module") == module).row(0, named=True)
        assert row["p"] == pytest.approx(p, abs=0.02) and row["q"] == pytest.approx(q, abs=0.02)
        assert row["p_low"] < p < row["p_high"] and row["q_low"] < q < row["q_high"]
        assert row["r2"] > 0.99 and row["n_seeds"] == 2 and row["n_points"] == 9
    assert fits.filter(pl.col("module") == "pinned")["r"][0] == pytest.approx(0.5, abs=0.02)
    assert fits.filter(pl.col("module") == "pinned")["invariant"][0]


def test_gate_passes_a_pinned_norm_and_fails_a_free_one():
    """The teeth: the same ±½ expectation on a matrix whose norm is not pinned must fail."""
    norms, state = synthetic({"pinned": (0.5, -0.5), "free": (-0.2, -0.3)})
    fits = equilibrium.fit(norms, state, {"v": ["pinned", "free"]})
    expect = [
        {
            "mode": "sp",
            "family": "v",
            "optimizer": "adamw",
            "module": m,
            "metric": f"weight_fro~{v}",
            "step": 0,
            "expected": e,
            "tolerance": 0.15,
        }
        for m in ("pinned", "free")
        for v, e in (("eta", 0.5), ("lambda", -0.5))
    ]
    status = {(c.module, c.metric): c.status for c in gate.check(fits, expect)}
    assert status[("pinned", "weight_fro~eta")] == status[("pinned", "weight_fro~lambda")] == "pass"
    assert status[("free", "weight_fro~eta")] == status[("free", "weight_fro~lambda")] == "fail"


def test_one_seed_interval_is_the_regressions_and_diverged_runs_are_left_out():
    norms, state = synthetic({"m": (0.5, -0.5)}, seeds=1, noise=0.05)
    bad = state["run_id"][0]
    norms = norms.with_columns(weight_fro=pl.when(pl.col("run_id") == bad).then(1e6).otherwise("weight_fro"))
    state = state.with_columns(diverged=pl.col("run_id") == bad)
    row = equilibrium.wide(equilibrium.fit(norms, state, {}), "weight_fro").row(0, named=True)
    assert row["n_points"] == 8 and row["n_seeds"] == 1
    assert 0 < row["p_high"] - row["p_low"] < 0.5 and row["p_low"] < 0.5 < row["p_high"]


def test_steady_state_is_the_mean_over_the_last_part_with_the_multiplier():
    steps = list(range(0, 101, 10))
    rows = [
        {"run_id": "a", "step": s, "module": "m", "role": "hidden", "metric": metric, "value": value}
        for s in steps
        for metric, value in (("weight_fro", 1.0 + s), ("mult_scalar", -0.5))
    ]
    records = pl.DataFrame(rows).with_columns(
        mode=pl.lit("lrm-scalar"), lr=pl.lit(0.1), weight_decay=pl.lit(1.0), seed=pl.lit(0)
    )
    runs = pl.DataFrame({"run_id": ["a"], "variant": ["v"], "steps": [100]})
    row = equilibrium.steady_norms(records, runs, 0.25).row(0, named=True)
    assert row["weight_fro"] == pytest.approx(np.mean([81, 91, 101]))  # steps 80, 90, 100
    assert row["effective_fro"] == pytest.approx(0.5 * row["weight_fro"])


# ---------------------------------------------------------------- real runs


def test_tiny_study_runs_reports_and_gates(monkeypatch, capsys, tmp_path, one_thread):
    """A few seconds of training: the plumbing from study to report and gate, and the one
    thing even a tiny run shows: an invariant matrix's norm grows with η at fixed λ."""
    out = tmp_path / "out"
    code, stdout, _ = run_cli(
        monkeypatch, capsys, "sweep", str(write(tmp_path, TINY)), "--out", str(out), "--jobs", "1"
    )
    assert code == 0 and "‖W‖_F ∝ η^p · λ^q" in stdout
    plan, specs = sweep.read_plan(out)
    assert plan["kind"] == "equilibrium" and all(store.is_done(out, s) for s in specs)
    html = (out / "report.html").read_text()
    assert "<title>tiny equilibrium</title>" in html and "What was and was not reproduced" in html
    steady = pl.read_csv(out / "steady.csv").filter((pl.col("module") == "hidden.0") & (pl.col("weight_decay") == 1))
    assert steady.sort("lr")["weight_fro"].is_sorted()
    fits = pl.read_csv(out / "equilibrium.csv")
    expected = gate.exit_code(gate.check(fits, plan["expect"]))
    code, stdout, _ = run_cli(monkeypatch, capsys, "gate", str(out))
    assert code == expected and stdout.count("weight_fro~") == 4
    with_wrong = tmp_path / "wrong.toml"
    gate.write_baseline(with_wrong, [r | {"expected": -r["expected"], "tolerance": 0.05} for r in plan["expect"]])
    code, _, _ = run_cli(monkeypatch, capsys, "gate", str(out), "--baseline", str(with_wrong))
    assert code == gate.FAIL


SLOW = (
    TINY.replace("width = 32", "width = 128").replace("log2_min = -5\nlog2_max = -3", "log2_min = -8\nlog2_max = -6")
    + '\n[variants.plain]\nfamily = "mlp"\n'
)


@pytest.mark.slow
def test_scale_invariant_norm_settles_at_sqrt_eta_over_lambda(monkeypatch, capsys, tmp_path):
    """DESIGN.md fact 4 on a reduced grid: the LayerNorm mlp's input and hidden matrices come
    within 0.15 of +½ and −½; the plain mlp's (seen by the output) do not."""
    out = tmp_path / "out"
    code, _, _ = run_cli(monkeypatch, capsys, "sweep", str(write(tmp_path, SLOW)), "--out", str(out))
    assert code == 0
    fits = equilibrium.wide(pl.read_csv(out / "equilibrium.csv"), "weight_fro")

    def within(row):
        return abs(row["p"] - 0.5) <= 0.15 and abs(row["q"] + 0.5) <= 0.15

    for variant, module, pinned in (
        ("ln", "input", True),
        ("ln", "hidden.0", True),
        ("plain", "input", False),
        ("plain", "hidden.0", False),
    ):
        row = fits.filter((pl.col("variant") == variant) & (pl.col("module") == module)).row(0, named=True)
        assert within(row) == pinned, row
    code, _, _ = run_cli(monkeypatch, capsys, "gate", str(out))
    assert code == gate.OK
