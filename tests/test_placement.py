"""Where learnable multipliers go, per role: the paper's default, overrides from the command
line and from a study, their start value, their own optimizer group at every width, and
one clear error for every placement that cannot be."""

import polars as pl
import pytest
import torch
from clirun import run_cli
from studies_for_tests import TINY
from torch.nn.utils import parametrize

import muscale
from muscale import api
from muscale.config.spec import MULT_WEIGHT_DECAY
from muscale.models import lrm, modes, optim
from muscale.models.families import resolve
from muscale.models.roles import role_of


def kinds(model) -> dict[str, set[str]]:
    """Role → the kinds of multiplier its linear layers carry, read off the modules."""
    out = {}
    for name, m in model.named_modules():
        if not isinstance(m, torch.nn.Linear):
            continue
        kind = "none"
        if parametrize.is_parametrized(m, "weight"):
            mult = m.parametrizations.weight[0]
            kind = (
                "scalar"
                if isinstance(mult, lrm.ScalarMultiplier)
                else {(True, True): "both", (True, False): "row", (False, True): "col"}[
                    mult.row is not None, mult.col is not None
                ]
            )
        out.setdefault(role_of(name, m), set()).add(kind)
    return out


def build(mode, family="transformer", **kw):
    spec = muscale.plan(mode, family, widths=(32, 64), seeds=1, **kw)[0]
    return spec, *modes.build(spec, resolve(family))


def test_default_placement():
    _, model, _ = build("lrm")
    assert kinds(model) == {
        "attn_q": {"scalar"},
        "attn_k": {"none"},
        "attn_v": {"none"},
        "attn_out": {"row"},
        "mlp_gate": {"none"},
        "mlp_up": {"none"},
        "mlp_down": {"row"},
        "head": {"scalar"},
    }
    _, model, _ = build("lrm", multipliers=lrm.PAPER_PLACEMENT)
    assert kinds(model) == {
        "attn_q": {"scalar"},
        "attn_k": {"none"},
        "attn_v": {"both"},
        "attn_out": {"both"},
        "mlp_gate": {"both"},
        "mlp_up": {"both"},
        "mlp_down": {"both"},
        "head": {"row"},
    }
    _, model, _ = build("lrm-scalar", family="hybrid")
    assert set().union(*kinds(model).values()) == {"scalar"}


def test_overrides_win_and_none_removes_a_multiplier():
    _, model, mults = build("mup+lrm", multipliers={"attn_k": "scalar", "head": "none", "mlp_down": "col"})
    got = kinds(model)
    assert got["attn_k"] == {"scalar"} and got["head"] == {"none"} and got["mlp_down"] == {"col"}
    assert got["attn_out"] == {"row"}  # untouched roles keep the default


def test_multipliers_start_at_their_init_value_and_scale_the_matrix():
    _, plain, _ = build("sp")
    _, model, mults = build("lrm", mult_init=0.5)
    assert all(torch.allclose(v, torch.tensor(0.5)) for v in lrm.values(model))
    q = dict(model.named_modules())["blocks.0.attn.q"]
    down = dict(model.named_modules())["blocks.0.mlp.down"]
    assert torch.allclose(q.weight, 0.5 * dict(plain.named_modules())["blocks.0.attn.q"].weight)
    # mlp_down carries a row vector alone by default: one factor 0.5 (the paper's `both` gave 0.25).
    assert torch.allclose(down.weight, 0.5 * dict(plain.named_modules())["blocks.0.mlp.down"].weight)


@pytest.mark.parametrize("width", [128, 512])
def test_multipliers_keep_their_own_lr_and_decay_at_every_width_under_mup(width):
    """Never width-scaled by μP rules: the point is that they learn the width dependence."""
    spec = muscale.plan("mup+lrm", "transformer", widths=(32, width), seeds=1, mult_lr=0.02)[1]
    model, mults = modes.build(spec, resolve("transformer"))
    opt = optim.build(spec, model, mults)
    group = next(g for g in opt.param_groups if any(p is mults[0] for p in g["params"]))
    assert {id(p) for p in group["params"]} == {id(p) for p in mults}
    assert group["lr"] == 0.02 and group["mult_decay"] == MULT_WEIGHT_DECAY > 0 and group["weight_decay"] == 0
    matrix_lrs = {g["lr"] for g in opt.param_groups if g is not group}
    assert min(matrix_lrs) == pytest.approx(spec.lr * spec.base_width / width)  # μP scales the matrices' alone


@pytest.mark.integration
def test_placement_from_the_command_line_reaches_the_records(monkeypatch, capsys, tmp_path):
    out = tmp_path / "out"
    code, _, stderr = run_cli(
        monkeypatch,
        capsys,
        "coord-check",
        "--mode",
        "lrm",
        "--widths",
        "16,32",
        "--steps",
        "2",
        "--seeds",
        "1",
        "--device",
        "cpu",
        "--jobs",
        "1",
        "--multiplier",
        "attn_k=scalar",
        "--multiplier",
        "head=none",
        "--out",
        str(out),
    )
    assert code == 0, stderr
    records = pl.read_parquet(out / "records")
    scalar_roles = set(records.filter(pl.col("metric") == "mult_scalar")["role"])
    assert scalar_roles == {"attn_q", "attn_k"}
    assert records.filter((pl.col("role") == "head") & pl.col("metric").str.starts_with("mult_")).is_empty()


def test_placement_from_a_study(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text(
        TINY.replace('modes = ["sp", "mup"]', 'modes = ["sp", "lrm"]').replace(
            "eval_batches = 1", 'eval_batches = 1\nmultipliers = { head = "col" }\nmult_init = 2.0'
        )
    )
    specs = api.load(path).specs
    assert {s.multipliers for s in specs if s.mode == "lrm"} == {(("head", "col"),)}
    assert {s.mult_init for s in specs if s.mode == "lrm"} == {2.0}
    assert {(s.multipliers, s.mult_init) for s in specs if s.mode == "sp"} == {((), 1.0)}


BAD = [
    (["--multiplier", "attn_z=scalar"], "--multiplier"),
    (["--multiplier", "head=diagonal"], "--multiplier"),
    (["--multiplier", "head"], "--multiplier"),
    (["--mode", "mup", "--multiplier", "head=row"], "--multiplier"),  # no multipliers in mup
    (["--mult-init", "0"], "--mult-init"),
    (["--mode", "sp", "--mult-init", "2"], "--multiplier"),
]


@pytest.mark.parametrize("args,option", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_placement_is_one_line_exit_2_and_writes_nothing(monkeypatch, capsys, tmp_path, args, option):
    out = tmp_path / "out"
    code, _, stderr = run_cli(monkeypatch, capsys, "coord-check", "--out", str(out), *args)
    assert code == 2 and option in stderr and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert not out.exists()


@pytest.mark.parametrize(
    "line,key",
    [
        ('multipliers = { head = "diag" }', "multipliers"),
        ('multipliers = { mlp = "row" }', "multipliers"),
        ("mult_init = -1.0", "mult_init"),
    ],
)
def test_bad_placement_in_a_study_names_the_key_and_line(monkeypatch, capsys, tmp_path, line, key):
    path = tmp_path / "study.toml"
    path.write_text(
        TINY.replace('modes = ["sp", "mup"]', 'modes = ["sp", "lrm"]').replace(
            "eval_batches = 1", f"eval_batches = 1\n{line}"
        )
    )
    out = tmp_path / "out"
    code, _, stderr = run_cli(monkeypatch, capsys, "sweep", str(path), "--out", str(out))
    assert code == 2 and f"{path}:9: {key}:" in stderr, stderr
    assert not out.exists()
