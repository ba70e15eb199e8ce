"""Launchers: where runs execute. Each run writes its own record (or its failure) from
the worker that ran it, so a launcher only hands out specs and the disk is the truth:
killing any of them loses at most the runs in flight.

`local` is a process pool on this machine; `slurm` hands the runs to Slurm as one job
array through submitit, and `submitit-local` is submitit's local mode, which exercises
that same path without a cluster."""

import multiprocessing
import os
import signal
import traceback
from collections.abc import Callable
from multiprocessing import connection
from pathlib import Path

import polars as pl
import torch

from ..config.spec import RunSpec
from ..errors import RunFailed
from . import store, train

LAUNCHERS = ("local", "slurm", "submitit-local")


def default_jobs(device: str) -> int:
    """One process per core on CPU: small-width runs are bound by per-op overhead, not
    FLOPs, so separate processes beat threads inside one. One process per GPU."""
    kind = train.pick_device(device).type
    if kind == "cuda":
        return torch.cuda.device_count()
    if kind != "cpu":
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_one(
    spec: RunSpec, device: str, out: Path | None, keep_going: bool = False, save_models: bool = False
) -> pl.DataFrame | None:
    """Run a spec and store what happened, with `save_models` its trained model too (before
    the record, so a recorded run has its model). With `keep_going` a crash is stored as
    the run's failure and None returned, so one bad run does not stop a sweep."""
    try:
        records = train.run(spec, device, store.model_path(out, spec) if save_models and out is not None else None)
    except Exception as exc:
        exc.add_note(f"muscale: in run {spec.run_id} (width {spec.width}, seed {spec.seed})")
        if not keep_going or out is None:
            raise
        store.write_failure(out, spec, "".join(traceback.format_exception(exc)))
        return None
    if out is not None:
        store.write_run(out, spec, records)
    return records


def _pin(slot: int, threads: int, gpus: int):
    """Give this worker its share of CPU threads, or one GPU of its own."""
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(slot % gpus)
    torch.set_num_threads(threads)


def _serve(conn, slot: int, threads: int, gpus: int):
    """A worker process: pinned, then the runs sent down `conn` one at a time until None
    comes. An error comes back as data; one that does not pickle, as its formatted traceback."""
    _pin(slot, threads, gpus)
    while (task := conn.recv()) is not None:
        try:
            reply = ("ok", run_one(*task))
        except Exception as exc:
            reply = ("error", exc)
        try:
            conn.send(reply)
        except Exception:
            conn.send(("error", RuntimeError("".join(traceback.format_exception(reply[1])))))


class _Worker:
    def __init__(self, ctx, slot: int, threads: int, gpus: int):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, slot, threads, gpus), daemon=True)
        self.process.start()
        child.close()
        self.slot, self.spec = slot, None

    def death(self) -> str:
        """Why the worker's process ended, for the record of the run it had."""
        self.process.join()
        code = self.process.exitcode
        how = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
        return f"the worker process running this run died ({how}): out of memory, a crash or a kill"


def local(
    specs: list[RunSpec],
    out: Path | None,
    device: str,
    jobs: int,
    on_run: Callable[[RunSpec], None],
    keep_going: bool = False,
    save_models: bool = False,
) -> dict[RunSpec, pl.DataFrame | None]:
    """Runs on `jobs` worker processes of our own rather than a ProcessPoolExecutor, which a
    single worker killed outright (out of memory, a segfault, kill -9) breaks for every run:
    here that run is stored as failed with its cause (with `keep_going`) and a fresh worker
    takes the next one."""
    jobs = max(1, min(jobs, len(specs)))
    results: dict[RunSpec, pl.DataFrame | None] = {}
    if jobs == 1:
        for spec in specs:
            results[spec] = run_one(spec, device, out, keep_going, save_models)
            on_run(spec)
        return results
    gpus = torch.cuda.device_count() if train.pick_device(device).type == "cuda" else 0
    ctx = multiprocessing.get_context("spawn")
    threads = max(1, torch.get_num_threads() // jobs)
    # Widest first: the longest runs start early and the workers drain evenly.
    pending = sorted(specs, key=lambda s: -s.width)
    workers = [_Worker(ctx, slot, threads, gpus) for slot in range(jobs)]
    try:
        while pending or any(w.spec for w in workers):
            for w in workers:
                if w.spec is None and pending:
                    w.spec = pending.pop(0)
                    w.conn.send((w.spec, device, out, keep_going, save_models))
            busy = [w for w in workers if w.spec is not None]
            ready = set(connection.wait([w.conn for w in busy] + [w.process.sentinel for w in busy]))
            for i, w in enumerate(workers):
                if w.spec is None or not ready & {w.conn, w.process.sentinel}:
                    continue
                spec, w.spec = w.spec, None
                try:
                    kind, value = w.conn.recv()
                except EOFError:
                    kind, value = "died", w.death()
                    workers[i] = _Worker(ctx, w.slot, threads, gpus)
                if kind == "error":
                    raise value
                if kind == "died":
                    if not keep_going or out is None:
                        raise RunFailed(f"run {spec.run_id} (width {spec.width}, seed {spec.seed}): {value}")
                    store.write_failure(out, spec, value)
                    value = None
                results[spec] = value
                on_run(spec)
    finally:
        for w in workers:  # idle workers are told to stop, busy ones (after an error) killed
            if w.spec is None and w.process.is_alive():
                w.conn.send(None)
            else:
                w.process.kill()
            w.process.join()
    return results


def submitit(
    specs: list[RunSpec], out: Path, device: str, cluster: str, slurm: dict, on_run: Callable[[RunSpec], None]
) -> None:
    """Submit every spec as one job array and wait for it; records land in `out` from
    the jobs themselves. A job that dies outright (killed, timed out) is stored as failed."""
    import submitit as engine

    executor = engine.AutoExecutor(folder=out / "submitit", cluster=cluster)
    executor.update_parameters(name="muscale", **slurm)
    jobs = executor.map_array(run_one, specs, [device] * len(specs), [out] * len(specs), [True] * len(specs))
    for spec, job in zip(specs, jobs):
        try:
            job.result()
        except Exception as exc:
            if not store.is_done(out, spec):
                store.write_failure(out, spec, f"{type(exc).__name__}: {exc}")
        on_run(spec)
