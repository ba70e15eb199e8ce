"""Records on disk: durable (fsynced before and after the rename) and trusted only when whole."""

import os

import polars as pl

import muscale
from muscale.run import store


def test_records_are_fsynced_file_then_directory_around_the_rename(monkeypatch, tmp_path):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(
        store.os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))), real_fsync(fd))[1]
    )
    monkeypatch.setattr(store.os, "replace", lambda a, b: (events.append(("replace", str(b))), real_replace(a, b))[1])
    path = tmp_path / "records" / "r.txt"
    store.write_atomic(path, "x")
    kinds = [kind for kind, _ in events]
    assert kinds == ["fsync", "replace", "fsync"]
    assert events[0][1].endswith(".tmp") and events[2][1] == str(path.parent)


def _specs():
    return muscale.plan("sp", "mlp", widths=(16, 32), steps=1, seeds=1, metrics=["act_rms"])


def test_a_truncated_or_foreign_record_is_not_done_and_resume_runs_it_again(tmp_path):
    specs = _specs()
    muscale.coord_check("sp", "mlp", widths=(16, 32), steps=1, seeds=1, metrics=["act_rms"], out=tmp_path, device="cpu")
    assert all(store.is_done(tmp_path, s) for s in specs)
    truncated, kept = (store.record_path(tmp_path, s) for s in specs)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    stamp = kept.stat().st_mtime_ns
    assert not store.is_done(tmp_path, specs[0]) and store.is_done(tmp_path, specs[1])
    muscale.coord_check("sp", "mlp", widths=(16, 32), steps=1, seeds=1, metrics=["act_rms"], out=tmp_path, device="cpu")
    assert store.is_done(tmp_path, specs[0]) and kept.stat().st_mtime_ns == stamp
    assert set(pl.read_parquet(truncated)["run_id"]) == {specs[0].run_id}
    # A whole parquet file holding another run's records is not this run's record.
    truncated.write_bytes(kept.read_bytes())
    assert not store.is_done(tmp_path, specs[0])
