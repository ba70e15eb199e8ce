"""A sweep on disk: the plan of a study, what has run, and what is left.

DIR/plan.json lists every run of the study, so `muscale status` can tell pending runs
from finished ones; records and failures are written by the runs themselves. A study's
coordinate-check parts run after the sweep, each into DIR/parts/<family>-<mode>/ as a
`muscale coord-check` would write it."""

import json
import math
from collections.abc import Callable
from pathlib import Path

import polars as pl

from ..config.spec import RunSpec
from . import coordcheck, launch, store

STATES = ("done", "diverged", "failed", "pending")


def plan_path(out: Path) -> Path:
    return Path(out) / "plan.json"


def write_plan(out: Path, study) -> None:
    """`study`: any kind's (kinds/*/study.py, coordcheck.CoordCheck); with a file behind it,
    that file is kept beside the plan."""
    plan = {
        "study": study.path and str(study.path),
        "kind": study.kind,
        "title": study.title,
        **study.settings(),
        "expect": study.baseline(),
        "runs": [s.to_dict() for s in study.specs],
        "parts": {name: [s.to_dict() for s in specs] for name, specs in study.parts.items()},
    }
    store.write_atomic(plan_path(out), json.dumps(plan, indent=1))
    if study.path:
        store.write_atomic(Path(out) / "study.toml", study.path.read_text(encoding="utf-8"))


def read_plan(out: Path) -> tuple[dict, list[RunSpec]]:
    plan = json.loads(plan_path(out).read_text(encoding="utf-8"))
    return plan, [RunSpec.from_dict(d) for d in plan["runs"]]


def part_dir(out: Path, name: str) -> Path:
    return Path(out) / "parts" / name


def read_parts(plan: dict) -> dict[str, list[RunSpec]]:
    return {name: [RunSpec.from_dict(d) for d in specs] for name, specs in plan.get("parts", {}).items()}


def status(out: Path, specs: list[RunSpec]) -> pl.DataFrame:
    """One row per planned run with its state: done, diverged, failed or pending."""
    done = {s for s in specs if store.is_done(out, s)}
    fate = {}
    if done:
        rows = (
            pl.scan_parquet([store.record_path(out, s) for s in specs if s in done])
            .filter(pl.col("metric") == "diverged")
            .select("run_id", "value")
            .collect()
        )
        fate = dict(rows.iter_rows())

    def state(spec):
        if spec in done:
            return "diverged" if fate.get(spec.run_id, 0.0) > 0 else "done"
        return "failed" if store.failure_path(out, spec).exists() else "pending"

    return pl.DataFrame(
        [
            {
                "run_id": s.run_id,
                "family": s.family,
                "mode": s.mode,
                "optimizer": s.optimizer,
                "width": s.width,
                "log2_lr": round(math.log2(s.lr), 6),
                "seed": s.seed,
                "state": state(s),
            }
            for s in specs
        ]
    )


def run(
    study, out: Path, device: str, jobs: int, launcher: str, slurm: dict, on_run: Callable[[RunSpec], None]
) -> None:
    """Run every planned run that has no record yet; failed runs are tried again."""
    write_plan(out, study)
    todo = [s for s in study.specs if not store.is_done(out, s)]
    for spec in study.specs:
        if spec not in todo:
            on_run(spec)
    if launcher == "local":
        launch.local(todo, out, device, jobs, on_run, keep_going=True)
    else:
        launch.submitit(todo, out, device, "slurm" if launcher == "slurm" else "local", slurm, on_run)
    for name, specs in study.parts.items():
        coordcheck.execute(list(specs), part_dir(out, name), device, jobs, on_run)


def records(out: Path, specs: list[RunSpec]) -> pl.DataFrame:
    """The records of the planned runs only: a directory may hold runs of an older plan."""
    files = [store.record_path(out, s) for s in specs if store.is_done(out, s)]
    return pl.concat([pl.read_parquet(f) for f in files], how="vertical_relaxed")
