"""Matched η·λ·t (kinds/width/clock.py): under LR-only μP each width relaxes on its own clock
τ = η_d·λ·t with η_d = η·base_width/d, so records built as d^-½·g(τ) show α = −½ only when
every width is read at the same τ; read at one step, the widths' different progress adds
to α. A family that is flat at matched τ (the broken one) must fail the d^-½ claim."""

import math

import polars as pl
import pytest
from studies_for_tests import assert_study_error, write_study

from muscale import api
from muscale.kinds import width

STUDY = """\
kind = "width"
families = ["transformer"]
modes = ["mup-lr-only", "sp"]
widths = [32, 64, 128]
seeds = 3
steps = 40
batch_size = 2
seq_len = 16
lr = 0.01
weight_decay = 5.0
eta_lambda_steps = 0.5
data = "synthetic"
matched_time = true

[[claim]]
name = "LR-only μP: per-entry size ∝ d^-½"
mode = "mup-lr-only"
metric = "weight_rms"
roles = ["mlp_up"]
alpha = -0.5
tolerance = 0.15
"""


def records(specs, exponent: float) -> pl.DataFrame:
    """weight_rms = d^exponent · (1 + 3·e^−τ), τ the hidden matrices' η·λ·t, seeds 0.3% apart."""
    rows = []
    for s in specs:
        eta = s.lr * (s.base_width / s.width if s.mode == "mup-lr-only" else 1)
        for step in s.record_steps:
            tau = eta * s.weight_decay * step
            value = s.width**exponent * (1 + 3 * math.exp(-tau)) * (1 + 0.003 * (s.seed - 1))
            rows.append(
                {
                    "run_id": s.run_id,
                    "family": s.family,
                    "mode": s.mode,
                    "optimizer": s.optimizer,
                    "lr": s.lr,
                    "weight_decay": s.weight_decay,
                    "width": s.width,
                    "seed": s.seed,
                    "horizon": s.horizon,
                    "step": step,
                    "module": "blocks.0.mlp.up",
                    "role": "mlp_up",
                    "metric": "weight_rms",
                    "value": value,
                }
            )
    return pl.DataFrame(rows)


@pytest.fixture
def study(tmp_path):
    return api.load(write_study(tmp_path, STUDY))


def test_matched_runs_train_steps_times_width_over_base_width(study):
    """The base width is the narrowest unless the study names one."""
    steps = {(s.mode, s.width): s.steps for s in study.specs}
    assert steps == {
        ("mup-lr-only", 32): 40,
        ("mup-lr-only", 64): 80,
        ("mup-lr-only", 128): 160,
        ("sp", 32): 40,
        ("sp", 64): 40,
        ("sp", 128): 40,
    }
    assert study.settings()["clock"] == 40


def status(plan: dict, specs, exponent: float) -> str:
    analysis = width.analyse(plan, list(specs), records(specs, exponent))
    return analysis.tables["claims.csv"]["status"].item()


def test_d_to_the_minus_half_at_matched_time_is_reproduced_and_not_at_one_step(study):
    assert status(study.settings(), study.specs, -0.5) == "reproduced"
    one_step = {k: v for k, v in study.settings().items() if k != "clock"}
    assert status(one_step, study.specs, -0.5) != "reproduced"


def test_teeth_a_family_flat_at_matched_time_fails_the_claim(study):
    assert status(study.settings(), study.specs, 0.0) == "not reproduced"


def test_matched_time_needs_a_mode_whose_eta_lambda_falls_with_width(monkeypatch, capsys, tmp_path):
    text = (
        STUDY.replace('modes = ["mup-lr-only", "sp"]', 'modes = ["lrm", "sp"]')
        .replace('mode = "mup-lr-only"', 'mode = "lrm"')
        .replace("weight_decay = 5.0\n", "weight_decay = 5.0\nmult_lr = 0.01\n")
    )
    assert_study_error(monkeypatch, capsys, tmp_path, text, "matched_time", 14)


def test_matched_steps_must_be_whole(monkeypatch, capsys, tmp_path):
    text = STUDY.replace("steps = 40", "steps = 41\nbase_width = 64")
    assert_study_error(monkeypatch, capsys, tmp_path, text, "steps", 6)
