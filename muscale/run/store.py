"""Records on disk: one parquet file per run, written atomically and durably (the file and
its directory fsynced around the rename), so an interrupted sweep, even a power loss, loses
at most the runs in flight, and a re-run skips what is done."""

import contextlib
import os
import secrets
from pathlib import Path

import polars as pl

from ..config.spec import RunSpec


def record_path(out: Path, spec: RunSpec) -> Path:
    return Path(out) / "records" / f"{spec.run_id}.parquet"


def model_path(out: Path, spec: RunSpec) -> Path:
    """The trained model of a run (checkpoint.py), when it was asked to be saved."""
    return Path(out) / "models" / f"{spec.run_id}.pt"


def is_done(out: Path, spec: RunSpec) -> bool:
    """A run is done when its record reads back as a whole parquet file of that run alone:
    a truncated or foreign file is run again, not skipped forever."""
    path = record_path(out, spec)
    if not path.is_file():
        return False
    try:
        ids = pl.read_parquet(path, columns=["run_id"])["run_id"].unique().to_list()
    except (pl.exceptions.PolarsError, OSError):
        return False
    return ids == [spec.run_id]


def failure_path(out: Path, spec: RunSpec) -> Path:
    return Path(out) / "failed" / f"{spec.run_id}.txt"


def write_failure(out: Path, spec: RunSpec, text: str) -> None:
    """Keep why a run crashed; a later record of the same run supersedes it."""
    write_atomic(failure_path(out, spec), text)


@contextlib.contextmanager
def atomic_path(path: Path):
    """A temporary sibling of `path` to write to; swapped in only when the block succeeds,
    removed when it fails, so a reader sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    """Flush a file's data, or a directory's entries, to the disk: a rename can otherwise
    reach the disk before the bytes it points at."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_run(out: Path, spec: RunSpec, records: pl.DataFrame) -> Path:
    path = record_path(out, spec)
    with atomic_path(path) as tmp:
        records.write_parquet(tmp)
    return path


def read_records(out: Path) -> pl.DataFrame:
    files = sorted((Path(out) / "records").glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no records under {Path(out) / 'records'}")
    return pl.concat([pl.read_parquet(f) for f in files], how="vertical_relaxed")


def write_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
