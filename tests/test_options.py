"""One declaration per training option (spec.option): the command line, the study files and
coordcheck.plan must all take the options the RunSpec fields declare, with the same meaning."""

import dataclasses
import tomllib

import click
import pytest

from muscale import api
from muscale.cli import cli
from muscale.config import options
from muscale.config.spec import RunSpec
from muscale.run import coordcheck
from muscale.study.across_widths import KEYS

# Run fields a person does not set: the horizon follows from the mode (spec.default_horizon).
NOT_OPTIONS = {"horizon"}
# Values other than every default, each valid on a transformer in mode mup+lrm with AdamW.
GIVEN = {
    "optimizer": "adamw",
    "lr": 0.02,
    "steps": 3,
    "weight_decay": 0.1,
    "batch_size": 4,
    "seq_len": 8,
    "mult_weight_decay": 0.05,
    "multipliers": {"attn_k": "scalar"},
    "mult_init": 2.0,
    "base_width": 16,
    "options": {"layers": "1", "heads": "2"},
    "mup_multipliers": {"embed": 2.0},
    "data": "stdlib",
    "metrics": ["act_rms", "mult_scalar"],
    "clip": 1.5,
    "clip_multipliers": True,
    "adam_eps_scaling": True,
    "weight_decay_kind": "spectral",
    "lrm_impl": "fused",
    "mult_param": "log",
    "beta2": 0.9,
    "loss": "cross_entropy",
}


def test_every_run_field_is_declared_as_an_option_or_derived():
    undeclared = {f.name for f in dataclasses.fields(RunSpec) if "help" not in f.metadata}
    assert undeclared == NOT_OPTIONS


def test_the_command_takes_every_option_with_a_flag_and_its_declared_help():
    command = cli.commands["coord-check"]
    params = {p.name: p for p in command.params}
    for o in options.OPTIONS.values():
        if o.flag is None:
            assert o.name not in params
            continue
        assert o.flag in params[o.name].opts
        assert o.help in params[o.name].help


def test_study_keys_carry_the_declared_help_and_type():
    for o in options.OPTIONS.values():
        if o.key in KEYS:
            kind, _, help_ = KEYS[o.key]
            assert o.help in help_ and kind is o.kind


def test_plan_refuses_an_option_nobody_declared():
    with pytest.raises(TypeError, match="mult_lrr"):
        coordcheck.plan("sp", "mlp", mult_lrr=0.1)


def _command_line(given: dict) -> list[str]:
    args = []
    for name, value in given.items():
        o = options.OPTIONS[name]
        if isinstance(value, bool):
            args += [o.flag]
        elif isinstance(value, dict):
            args += [a for k, v in value.items() for a in (o.flag, f"{k}={v}")]
        elif isinstance(value, list):
            args += [a for v in value for a in (o.flag, v)]
        else:
            args += [o.flag, str(value)]
    return args


def _toml(value) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(map(_toml, value)) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    return f'"{value}"' if isinstance(value, str) else repr(value)


def test_an_option_means_the_same_on_the_command_line_in_a_study_file_and_in_python(tmp_path):
    """Each option set once on `coord-check`, once in an lr_transfer study and once as a
    keyword of plan reaches the run specs as the same field value."""
    mode, widths, seeds = "mup+lrm", [16, 32], 1
    ctx = cli.commands["coord-check"].make_context(
        "coord-check",
        ["--mode", mode, "--widths", ",".join(map(str, widths)), "--seeds", str(seeds), *_command_line(GIVEN)],
    )
    given = {k: v for k, v in ctx.params.items() if k in options.OPTIONS}
    from_cli = coordcheck.plan(given.pop("mode"), given.pop("family"), **given)[0]
    from_python = coordcheck.plan(mode, "transformer", widths=widths, seeds=seeds, **GIVEN)[0]
    assert from_cli == from_python
    for name, value in GIVEN.items():
        field = options.OPTIONS[name].field
        expected = tuple(value) if isinstance(value, list) else options.as_field(name, value)
        assert getattr(from_python, field) == expected, name
    study = {
        "families": ["transformer"],
        "modes": [mode],
        "optimizers": [GIVEN["optimizer"]],
        "widths": widths,
        "seeds": seeds,
    } | {options.OPTIONS[k].key: v for k, v in GIVEN.items() if k not in ("optimizer", "lr")}
    text = "\n".join(f"{k} = {_toml(v)}" for k, v in study.items()) + "\n[lr]\nlog2_min = -6\nlog2_max = -4\n"
    tomllib.loads(text)
    path = tmp_path / "study.toml"
    path.write_text(text)
    from_study = api.load(path).specs[0]
    # What a sweep sets for itself: the learning-rate grid, its horizon and its evaluations.
    own = {"lr", "horizon", "eval_batches"}
    differ = {
        f.name
        for f in dataclasses.fields(RunSpec)
        if f.name not in own and getattr(from_study, f.name) != getattr(from_cli, f.name)
    }
    assert differ == set()


def test_a_kind_overrides_a_default_but_not_the_declaration():
    """The sweep's defaults differ from RunSpec's where a study needs them to; the help stays the one declared."""
    assert KEYS["seq_len"][1] == 64 != RunSpec.seq_len
    assert KEYS["seq_len"][2] == options.OPTIONS["seq_len"].help
    with pytest.raises(click.BadParameter):
        cli.commands["coord-check"].make_context("coord-check", ["--lr", "fast"])
