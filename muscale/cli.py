"""The `muscale` command. Errors a user can cause end in one line and exit code 2."""

import dataclasses
import importlib
import math
import os
import sys
from collections import Counter
from pathlib import Path

import click
import polars as pl
import torch
from tqdm import tqdm

from . import api
from .analysis import divergence, gate
from .config.options import HORIZON_FIELDS, OPTIONS, Option
from .config.spec import LONG_MODES, SHORT_MODES, default_horizon
from .errors import DIVERGED, FAIL, OK, USAGE, InputError, RunFailed
from .run import checkpoint, coordcheck, importers, launch, store, sweep, tensorboard

STATUS_SHOWN = 20


# What the coordinate check's help says of the defaults that come from its horizons.
SHORT, LONG = default_horizon("mup", "transformer"), default_horizon("lrm", "transformer")
OTHER_FAMILIES = ("mlp", "mamba2", "hybrid")


def _shown(o: Option, value) -> str:
    if value is None or value == ():
        return o.unset or "none"
    if isinstance(value, tuple):
        pairs = isinstance(value[0], tuple)
        return ", ".join(f"{k}={v}" for k, v in value) if pairs else ",".join(map(str, value))
    return str(value)


def _defaults(o: Option) -> str:
    """The help's `Default:` sentence: from the horizons for what they set, else RunSpec's."""
    if o.name in HORIZON_FIELDS:
        text = (
            f"Default: {_shown(o, getattr(SHORT, o.name))} short ({', '.join(SHORT_MODES)}), "
            f"{_shown(o, getattr(LONG, o.name))} long ({', '.join(LONG_MODES)})."
        )
        for family in OTHER_FAMILIES:
            short, long = (getattr(default_horizon(m, family), o.name) for m in ("mup", "lrm"))
            differ = [
                f"{_shown(o, v)} {h}"
                for v, base, h in ((short, SHORT, "short"), (long, LONG, "long"))
                if v != getattr(base, o.name)
            ]
            if differ:
                text += f" The {family} family takes {' and '.join(differ)}."
        return text
    if o.check is not None:
        return f"Default: {o.check}."
    if o.default is dataclasses.MISSING or o.kind is bool or o.pairs and not o.unset:
        return ""
    return f"Default: {_shown(o, o.default)}."


def _axis(ctx, param, value):
    if value is None:
        return None
    try:
        return tuple(int(w) for w in value.split(",") if w.strip())
    except ValueError:
        raise InputError(
            f"--{param.name}", f"'{value}' is not a comma list of whole numbers", "write it like 64,128,256"
        ) from None


def _pairs(o: Option):
    k, v = o.example

    def parse(ctx, param, items) -> dict:
        out = {}
        for item in items:
            key, sep, val = item.partition("=")
            try:
                if not sep or not key:
                    raise ValueError
                out[key] = o.pairs(val)
            except ValueError:
                raise InputError(
                    o.flag, f"'{item}' is not KEY=VALUE with a {o.pairs.__name__} value", f"write it like {k}={v}"
                ) from None
        return out

    return parse


def _keys(o: Option) -> str:
    if o.keys is None:
        return ""
    module, _, name = o.keys.partition(":")
    return f"{'Keys' if o.pairs else 'Names'}: {', '.join(getattr(importlib.import_module(module), name))}."


def _click(o: Option) -> dict:
    """How click takes an option. Nothing has a default but the check's own choices (mode and
    family): None means not given, and coordcheck.plan fills in the horizon's or RunSpec's."""
    help_ = " ".join(filter(None, (o.help, _keys(o), _defaults(o))))
    if o.kind is bool:
        return {"is_flag": True, "help": help_}
    if o.pairs:
        k, v = o.example
        return {
            "multiple": True,
            "callback": _pairs(o),
            "metavar": "KEY=VALUE",
            "help": f"{help_} Repeatable, e.g. {o.flag} {k}={v}.",
        }
    if o.axis == "both":
        return {"callback": _axis, "help": f"Comma list. {help_}"}
    if o.axis == "study":
        return {"type": o.value, "default": o.check, "help": help_}
    if o.kind is list:
        return {"multiple": True, "help": f"{help_} Repeatable."}
    return {"type": o.kind, "default": o.check, "metavar": o.metavar, "help": help_}


def _command_options(command):
    """Give a click command one option per RunSpec option that has a flag, in field order."""
    for o in reversed(OPTIONS.values()):
        if o.flag:
            command = click.option(o.flag, o.name, **_click(o))(command)
    return command


def _out_dir(value: str) -> Path:
    out = Path(value)
    if out.exists() and not out.is_dir():
        raise InputError("--out", f"{out} is a file", "point --out at a directory (it is created if missing)")
    return out


def _print(result: api.Result) -> int:
    """Print what a result's kind says of it; the exit code says whether runs failed."""
    counts = result.counts()
    if result.kind.swept:
        click.echo(" ".join(f"{s}={counts.get(s, 0)}" for s in sweep.STATES))
        if result.analysis is None:
            click.echo(f"no finished runs to fit; see {result.out / 'failed'}", err=True)
            return FAIL
    click.echo(result.kind.summary(result.analysis))
    click.echo(f"report: {result.out / 'report.html'}")
    if counts.get("failed"):
        click.echo(
            f"{counts['failed']} runs failed; see {result.out / 'failed'} and run the same command again", err=True
        )
        return FAIL
    return OK


def _write(result: api.Result, device: str) -> int:
    if result.analysis is not None:
        api.write(result, device)
    return _print(result)


@click.group()
@click.version_option(package_name="muscale")
def cli():
    """Width-scaling and μP transfer analysis: coordinate checks with fitted exponents."""


@cli.command("coord-check")
@_command_options
@click.option(
    "--save-models",
    is_flag=True,
    help="Also write each run's trained model to OUT/models/<run_id>.pt (for muscale merge).",
)
@click.option("--out", default=None, help="Output directory. Default: out/<family>-<mode>.")
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="auto takes CUDA when present.",
)
@click.option(
    "--jobs", type=int, default=None, help="Runs in parallel processes. Default: one per CPU core on CPU, 1 on a GPU."
)
def coord_check_cmd(save_models, out, device, jobs, **given):
    """Train a family at several widths, fit the width exponent of every layer's metrics,
    write OUT/records/*.parquet, OUT/exponents.csv and OUT/report.html. Exits 3 when some
    run diverged (the rest are fitted and reported)."""
    mode, family = given.pop("mode"), given.pop("family")
    out = _out_dir(out or f"out/{family.replace(':', '_')}-{mode}")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device", "cuda was asked for but no CUDA device is visible", "use --device auto or cpu")
    if jobs is not None and jobs < 1:
        raise InputError("--jobs", f"{jobs} is not positive", "give --jobs a whole number ≥ 1")
    specs = coordcheck.plan(mode, family, **given)
    study = coordcheck.CoordCheck(f"{mode} {family}", tuple(specs))
    # No bar where stderr is no terminal: logs, and the one line of an error, stay clean.
    with tqdm(total=len(specs), desc=study.title, unit="run", file=sys.stderr, disable=None) as bar:

        def tick(spec):
            bar.set_postfix_str(f"width {spec.width} seed {spec.seed}")
            bar.update()

        result = api.run(study, out, device, jobs or launch.default_jobs(device), tick, save_models=save_models)
    _write(result, device)
    if diverged := divergence.diverged_runs(result.analysis.detail.records):
        click.echo(f"{len(diverged)} runs diverged: {', '.join(diverged)}", err=True)
        sys.exit(DIVERGED)


@cli.command("merge")
@click.argument("source", metavar="CHECKPOINT")
@click.option("-o", "--output", required=True, help="Merged checkpoint to write (.pt).")
def merge_cmd(source, output):
    """Fold the learnable multipliers of a checkpoint (from coord-check --save-models) into
    its matrices: a plain model with the same outputs, for inference. The merged file
    loads into the model of the same spec in mode sp (mup for mup+lrm)."""
    checkpoint.merge(Path(source), Path(output))
    click.echo(f"merged → {output}")


@cli.command("baseline")
@click.argument("out", metavar="DIR", type=click.Path(file_okay=False))
@click.option("-o", "--output", required=True, help="Baseline file to write (TOML).")
@click.option(
    "--tol", type=float, default=gate.DEFAULT_TOL, show_default=True, help="Tolerance on every stored exponent."
)
@click.option("--metric", "metrics", multiple=True, help="Keep only these metrics (repeatable). Default: all.")
@click.option("--last-step", is_flag=True, help="Keep only each setting's last recorded step.")
def baseline_cmd(out, output, tol, metrics, last_step):
    """Store DIR's fitted exponents, with a tolerance, as the baseline `muscale gate` compares against."""
    if tol < 0:
        raise InputError("--tol", f"{tol} is negative", "give --tol a value ≥ 0")
    if Path(output).is_dir():
        raise InputError("--output", f"{output} is a directory", "name a file such as baseline.toml")
    rows = gate.baseline_rows(api.exponents(Path(out)), tol, metrics, last_step)
    if not rows:
        raise InputError("--metric", "no fitted exponent matches", "drop --metric or name recorded metrics")
    gate.write_baseline(Path(output), rows)
    click.echo(f"{len(rows)} exponents → {output}")


@cli.command("gate")
@click.argument("out", metavar="DIR", type=click.Path(file_okay=False))
@click.option(
    "--baseline",
    "baseline_path",
    default=None,
    help="Baseline file from `muscale baseline`. Default for a sweep: the [expect] table of its study.",
)
@click.option("--tol", type=float, default=None, help="Override every tolerance in the baseline.")
@click.option("--junit", type=click.Path(dir_okay=False), help="Also write a JUnit XML file here.")
def gate_cmd(out, baseline_path, tol, junit):
    """Compare DIR's exponents with a baseline: exit 0 when all pass, 1 on a regression or a
    missing exponent, 2 on a usage error."""
    if tol is not None and tol < 0:
        raise InputError("--tol", f"{tol} is negative", "give --tol a value ≥ 0")
    checks = api.gate(Path(out), baseline_path and Path(baseline_path), tol)
    for c in checks:
        click.echo(c.line())
    counts = Counter("failed" if c.failed else c.status for c in checks)
    undecided = "".join(f", {counts[s]} {s}" for s in ("warn", "inconclusive", "unsettled") if counts[s])
    click.echo(f"{counts['pass']} passed, {counts['failed']} failed{undecided}")
    if junit:
        store.write_atomic(Path(junit), gate.junit_xml(checks))
    if os.environ.get("GITHUB_ACTIONS") == "true":
        for line in gate.github_annotations(checks):
            click.echo(line)
    sys.exit(gate.exit_code(checks))


@cli.command("fit")
@click.argument("out", type=click.Path(file_okay=False))
def fit_cmd(out):
    """Fit exponents and re-render the report from OUT/records without training again (for a
    sweep directory: the transfer fit and the sweep report). A directory of runs recorded by
    muscale.Recorder in a training loop of one's own is fitted as a coordinate check; what
    is left out of the fit (runs in progress, steps some runs lack) is said one line each."""
    result = api.analyse(Path(out))
    for note in result.plan.get("notes", []):
        click.echo(f"left out: {note}", err=True)
    sys.exit(_write(result, "as recorded (re-fit)"))


@cli.group("import")
def import_group():
    """Read what other tools logged into runs that `muscale fit DIR` fits, reports and gates."""


def _run_keys(command):
    """The keys an import cannot read from the file: the parametrization and its setting."""
    for option in reversed(
        (
            click.option("--out", required=True, help="Directory to write the runs into (one folder each)."),
            click.option("--mode", required=True, help="The runs' parametrization (sp, mup, …)."),
            click.option("--family", default=None, help="The runs' family name. Default: the tool's name."),
            click.option("--optimizer", default=None, help="The runs' optimizer name. Default: the tool's usual one."),
            click.option("--lr", type=float, default=None, help="The runs' learning rate."),
        )
    ):
        command = option(command)
    return command


def _imported(paths: list[Path], out: str):
    click.echo(f"{len(paths)} runs → {out}; fit them with: muscale fit {out}")


@import_group.command("mup")
@click.argument("source", metavar="FILE")
@_run_keys
def import_mup_cmd(source, out, mode, family, optimizer, lr):
    """mup's get_coord_data DataFrame, saved with df.to_csv (or to parquet): one run per
    width and seed; mup's l1 and l2 are act_l1 and act_rms, its t is step t − 1."""
    _imported(importers.mup(source, _out_dir(out), mode=mode, family=family, optimizer=optimizer, lr=lr), out)


@import_group.command("nanogpt-mup")
@click.argument("source", metavar="DIR")
@_run_keys
def import_nanogpt_cmd(source, out, mode, family, optimizer, lr):
    """nanoGPT-mup's coordinate-check runs (DIR/width<W>_depth<L>_seed<S>/log.csv, written
    with --csv_log and coord-check logging): one run each, its *_act_abs_mean as act_l1."""
    _imported(importers.nanogpt_mup(source, _out_dir(out), mode=mode, family=family, optimizer=optimizer, lr=lr), out)


@import_group.command("tensorboard")
@click.argument("source", metavar="DIR")
@_run_keys
@click.option(
    "--pattern",
    default=importers.RUN_NAME,
    show_default=True,
    help="How a run's folder names its width and seed (and depth): a regular expression with those named groups.",
)
def import_tensorboard_cmd(source, out, mode, family, optimizer, lr, pattern):
    """TensorBoard runs (the `tensorboard` extra) whose scalars are tagged
    norms/<module>/<metric> with muscale's metric names: one run per event folder."""
    _imported(
        importers.tensorboard(
            source, _out_dir(out), mode=mode, family=family, optimizer=optimizer, lr=lr, pattern=pattern
        ),
        out,
    )


@cli.group("export")
def export_group():
    """Write muscale's records where other tools read them."""


@export_group.command("tensorboard")
@click.argument("out", metavar="DIR", type=click.Path(file_okay=False))
@click.option("-o", "--output", default=None, help="Folder of TensorBoard runs to write. Default: DIR/tensorboard.")
def export_tensorboard_cmd(out, output):
    """DIR's records (a coordinate check, a sweep, recorder runs) as TensorBoard scalars, one
    run per muscale run, tagged norms/<module>/<metric>: `tensorboard --logdir` on the output."""
    folder = Path(output) if output else Path(out) / "tensorboard"
    runs = tensorboard.export(api.records(Path(out)), folder)
    click.echo(f"{len(runs)} runs → {folder}")


@cli.command("sweep")
@click.argument("study_path", metavar="STUDY")
@click.option("--out", default=None, help="Output directory. Default: out/<study file name>.")
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="auto takes CUDA when present.",
)
@click.option(
    "--jobs",
    type=int,
    default=None,
    help="Local worker processes, each with its share of CPU "
    "threads or one GPU of its own. Default: one per CPU core, or one per GPU.",
)
@click.option(
    "--launcher",
    type=click.Choice(launch.LAUNCHERS),
    default="local",
    show_default=True,
    help="local: processes on this machine; slurm: one Slurm job array through submitit; "
    "submitit-local: submitit's local mode (the slurm path without a cluster).",
)
@click.option("--slurm-partition", default=None, help="Slurm partition (slurm launcher).")
@click.option("--slurm-minutes", type=int, default=60, show_default=True, help="Time limit per run (slurm).")
@click.option(
    "--slurm-parallel", type=int, default=64, show_default=True, help="Most array tasks running at once (slurm)."
)
@click.option("--gpus-per-run", type=int, default=0, show_default=True, help="GPUs per array task (slurm).")
def sweep_cmd(study_path, out, device, jobs, launcher, slurm_partition, slurm_minutes, slurm_parallel, gpus_per_run):
    """Train every run of a study and analyse them as its kind asks. lr_transfer (widths ×
    learning rates × modes × seeds): each width's optimal learning rate and its drift with
    width, OUT/transfer.csv and OUT/optima.csv; equilibrium (learning rate × weight decay at
    one width): steady-state norms against η and λ, OUT/equilibrium.csv and OUT/steady.csv;
    width (schemes × widths × seeds on the long horizon): width exponents of every metric and
    the study's claims judged from them, OUT/exponents.csv and OUT/claims.csv.
    Running the same command again skips finished runs. Writes OUT/records and OUT/report.html."""
    plan = api.load(study_path)
    out = _out_dir(out or f"out/{Path(study_path).stem}")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device", "cuda was asked for but no CUDA device is visible", "use --device auto or cpu")
    if jobs is not None and jobs < 1:
        raise InputError("--jobs", f"{jobs} is not positive", "give --jobs a whole number ≥ 1")
    slurm = {"timeout_min": slurm_minutes, "gpus_per_node": gpus_per_run}
    if launcher == "slurm":
        slurm.update(
            slurm_array_parallelism=slurm_parallel, **({"slurm_partition": slurm_partition} if slurm_partition else {})
        )
    # The bar names a finished run by the fields that tell this study's runs apart.
    varying = [
        f
        for f in ("family", "mode", "width", "lr", "weight_decay", "seed")
        if len({getattr(spec, f) for spec in plan.specs}) > 1
    ]
    with tqdm(total=len(plan.specs), desc=plan.title[:40], unit="run", file=sys.stderr, disable=None) as bar:

        def tick(spec):
            bar.set_postfix_str(" ".join(_run_field(f, getattr(spec, f)) for f in varying))
            bar.update()

        result = api.run(plan, out, device, jobs or launch.default_jobs(device), tick, launcher, slurm)
    sys.exit(_write(result, device))


def _run_field(field: str, value) -> str:
    if field in ("lr", "weight_decay"):
        name = "lr" if field == "lr" else "wd"
        return f"{name} 2^{math.log2(value):.3g}" if value > 0 else f"{name} 0"
    return str(value) if field in ("family", "mode") else f"{field} {value}"


@cli.command("status")
@click.argument("out", metavar="DIR", type=click.Path(file_okay=False))
def status_cmd(out):
    """List the runs of a sweep by state: done, diverged, failed, pending."""
    out = Path(out)
    specs, states, parts = api.status(out)
    counts = dict(states.group_by("state").len().iter_rows())
    click.echo(f"{len(specs)} runs: " + " ".join(f"{s}={counts.get(s, 0)}" for s in sweep.STATES))
    for name, (done, total) in parts.items():
        click.echo(f"coordinate check {name}: {done} of {total} runs done")
    with pl.Config(
        tbl_rows=STATUS_SHOWN,
        tbl_cols=-1,
        tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=True,
        tbl_width_chars=140,
        fmt_str_lengths=60,
    ):
        for state in ("failed", "pending", "diverged"):
            rows = states.filter(pl.col("state") == state)
            if rows.height:
                click.echo(f"{state}:")
                click.echo(rows.drop("state").head(STATUS_SHOWN))
    if counts.get("failed"):
        click.echo(f"why they failed: {out / 'failed'}/<run_id>.txt")


def main():
    try:
        cli.main(standalone_mode=False)
    except InputError as exc:
        click.echo(f"muscale: error: {exc}", err=True)
        sys.exit(USAGE)
    except click.UsageError as exc:
        click.echo(f"muscale: error: {exc.format_message()}", err=True)
        sys.exit(USAGE)
    except RunFailed as exc:
        click.echo(f"muscale: error: {exc}", err=True)
        sys.exit(FAIL)
    except click.Abort:
        click.echo("muscale: aborted", err=True)
        sys.exit(FAIL)
