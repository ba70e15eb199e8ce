"""Records on disk: one parquet file per run, written atomically, so an interrupted sweep
loses at most the run in flight and a re-run skips what is done."""

import os
from pathlib import Path

import polars as pl

from .spec import RunSpec


def record_path(out: Path, spec: RunSpec) -> Path:
    return Path(out) / "records" / f"{spec.run_id}.parquet"


def is_done(out: Path, spec: RunSpec) -> bool:
    return record_path(out, spec).exists()


def write_run(out: Path, spec: RunSpec, records: pl.DataFrame) -> Path:
    path = record_path(out, spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    records.write_parquet(tmp)
    os.replace(tmp, path)
    return path


def read_records(out: Path) -> pl.DataFrame:
    files = sorted((Path(out) / "records").glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no records under {Path(out) / 'records'}")
    return pl.concat([pl.read_parquet(f) for f in files], how="vertical_relaxed")


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
