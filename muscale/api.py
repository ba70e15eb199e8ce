"""muscale's Python API, what the command line, notebooks and the tests call: `load` a study
file, `run` a study of any kind, `analyse` a result directory, `write` its tables and report,
and `gate` its exponents. Kinds are looked up in the registry (kinds/__init__.py) by the name
a plan.json or a study file gives; nothing here knows one kind from another."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from . import kinds
from .analysis import gate as gates
from .config.spec import RunSpec
from .errors import InputError
from .run import coordcheck, provenance, recorded, store, sweep
from .study import studyfile
from .study.kind import Analysis, StudyKind

# Columns of the exponent tables kinds write (exponents.csv, transfer.csv, equilibrium.csv) that hold names.
TEXT_COLUMNS = (
    "family",
    "mode",
    "optimizer",
    "module",
    "role",
    "metric",
    "verdict",
    "variant",
    "invariant",
    "depth_rule",
)


def load(path: Path | str):
    """Parse and validate a study file of any kind, resolving every family against its data,
    before any run starts or any file is written."""
    return kinds.read(*studyfile.parse(path))


@dataclass(frozen=True)
class Result:
    out: Path
    kind: StudyKind
    plan: dict
    specs: list[RunSpec] | None  # None: a directory without a plan.json
    # One row per planned run and its state (kinds run by `muscale sweep`), else None.
    states: pl.DataFrame | None
    analysis: Analysis | None  # None when no planned run has finished

    def counts(self) -> dict[str, int]:
        return dict(self.states.group_by("state").len().iter_rows()) if self.states is not None else {}


def read_plan(out: Path) -> tuple[dict, list[RunSpec] | None]:
    """DIR/plan.json and its runs; a directory without one holds a coordinate check of old,
    or the runs of a user's own loop (muscale.Recorder), fitted as a coordinate check."""
    if sweep.plan_path(out).is_file():
        return sweep.read_plan(out)
    return {"kind": kinds.DIRECTORY_DEFAULT.name, "expect": [], "recorder": recorded.holds_runs(out)}, None


def run(
    study,
    out: Path,
    device: str = "auto",
    jobs: int = 1,
    on_run: Callable[[RunSpec], None] = lambda s: None,
    launcher: str = "local",
    slurm: dict | None = None,
    save_models: bool = False,
) -> Result:
    """Train every run of `study` that has no record in `out` yet, then analyse them. A kind
    run by `muscale sweep` records failed runs and goes on; a coordinate check stops at the
    first crash."""
    out = Path(out)
    kind = kinds.of_plan({"kind": study.kind})
    if kind.swept:
        sweep.run(study, out, device, jobs, launcher, slurm or {}, on_run)
        return analyse(out)
    sweep.write_plan(out, study)
    return analyse(out, coordcheck.execute(list(study.specs), out, device, jobs, on_run, save_models))


def analyse(out: Path, records: pl.DataFrame | None = None) -> Result:
    """What `out`'s kind makes of its records: of its planned runs that finished (a kind run
    by `muscale sweep`), or of every record in it (a coordinate check), or of `records`."""
    out = Path(out)
    plan, specs = read_plan(out)
    kind = kinds.of_plan(plan)
    states = sweep.status(out, specs) if kind.swept else None
    if records is None:
        if kind.swept:
            counts = dict(states.group_by("state").len().iter_rows())
            if not counts.get("done") and not counts.get("diverged"):
                return Result(out, kind, plan, specs, states, None)
        records, notes = _records(out, plan, specs)
        plan = plan | ({"notes": notes} if notes else {})
    return Result(out, kind, plan, specs, states, kind.analyse(plan, specs, records))


def _records(out: Path, plan: dict, specs) -> tuple[pl.DataFrame, list[str]]:
    """The records a directory holds, whatever wrote it, and what a recorder directory left
    out of them (recorded.py)."""
    if kinds.of_plan(plan).swept:
        return sweep.records(out, specs), []
    if plan.get("recorder"):
        return recorded.read(out)
    try:
        return store.read_records(out), []
    except FileNotFoundError as exc:
        raise InputError("OUT", str(exc), "point at a directory written by muscale coord-check") from None


def records(out: Path) -> pl.DataFrame:
    """Every record `out` holds: a sweep's finished runs, a coordinate check's, the runs of a
    recorder (what `muscale fit` would fit of them)."""
    out = Path(out)
    return _records(out, *read_plan(out))[0]


def write(result: Result, device: str) -> Path:
    """The analysis's tables, its parts (each a coordinate check with its own report) and its
    report, in `result.out`; `device` is what the report's metadata says the runs ran on."""
    parts = []
    for name, specs in sweep.read_parts(result.plan).items():
        folder = sweep.part_dir(result.out, name)
        if not all(store.is_done(folder, s) for s in specs):
            continue
        records = pl.concat([pl.read_parquet(store.record_path(folder, s)) for s in specs])
        part = kinds.PART.analyse({}, specs, records)
        _write(folder, kinds.PART, {}, specs, part, device, [])
        parts.append({"name": name, "href": f"parts/{name}/report.html", "verdicts": part.verdicts})
    return _write(result.out, result.kind, result.plan, result.specs, result.analysis, device, parts)


def _write(out: Path, kind: StudyKind, plan: dict, specs, analysis: Analysis, device: str, parts: list) -> Path:
    for name, table in analysis.tables.items():
        store.write_atomic(out / name, table.write_csv())
    meta = provenance.environment(device) | kind.describe(specs, analysis)
    if notes := plan.get("notes"):
        meta["left out of the fit"] = "; ".join(notes)
    path = out / "report.html"
    store.write_atomic(path, kind.render(plan, analysis, meta, parts))
    return path


def exponents(out: Path) -> pl.DataFrame:
    """The exponents `out`'s kind wrote for the gate, else fitted afresh from its records;
    a depth check's depth exponents with them, told apart by `axis` (gate.py)."""
    out = Path(out)
    kind = kinds.of_plan(read_plan(out)[0])
    if (out / kind.exponents_file).is_file():
        # Names stay text: an nn.Sequential's modules are called 0, 2, 4.
        found = pl.read_csv(out / kind.exponents_file, schema_overrides=dict.fromkeys(TEXT_COLUMNS, pl.String))
        depth = out / gates.DEPTH_EXPONENTS
        if not depth.is_file():
            return found
        by_depth = pl.read_csv(depth, schema_overrides=dict.fromkeys(TEXT_COLUMNS, pl.String))
        # One width fits nothing across width: that file has a header and no rows to type it.
        parts = [found] if found.height else []
        return pl.concat([*parts, by_depth.with_columns(axis=pl.lit("depth"))], how="diagonal_relaxed")
    try:
        result = analyse(out)
    except InputError:
        result = None
    if result is None or result.analysis is None:
        raise InputError(
            "DIR",
            f"{out} holds neither {kind.exponents_file} nor records",
            "point at a directory written by muscale coord-check or muscale sweep",
        )
    return result.analysis.exponents


def gate(out: Path, baseline: Path | None = None, tol: float | None = None) -> list[gates.Check]:
    """`out`'s exponents checked against a baseline file, or without one against what its
    study expects (an [expect] table, gated claims)."""
    out = Path(out)
    if baseline is not None:
        rows = gates.read_baseline(Path(baseline))
    else:
        plan, _ = read_plan(out)
        rows = kinds.of_plan(plan).expectations(plan, exponents(out)) if sweep.plan_path(out).is_file() else []
        if not rows:
            raise InputError(
                "--baseline",
                f"none given and {out} holds no study with expectations (an [expect] "
                "table, or claims with gate = true)",
                "pass --baseline FILE (write one with `muscale baseline DIR -o FILE`)",
            )
    return gates.check(exponents(out), rows, tol)


def status(out: Path) -> tuple[list[RunSpec], pl.DataFrame, dict[str, tuple[int, int]]]:
    """A plan's runs, their states, and per coordinate-check part how many of its runs are done."""
    out = Path(out)
    if not sweep.plan_path(out).is_file():
        raise InputError("DIR", f"{out} holds no plan.json", "point at a directory written by muscale sweep")
    plan, specs = sweep.read_plan(out)
    parts = {
        name: (sum(store.is_done(sweep.part_dir(out, name), s) for s in part), len(part))
        for name, part in sweep.read_parts(plan).items()
    }
    return specs, sweep.status(out, specs), parts
