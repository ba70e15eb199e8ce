"""Launchers: where runs execute. Each run writes its own record (or its failure) from
the worker that ran it, so a launcher only hands out specs and the disk is the truth:
killing any of them loses at most the runs in flight.

`local` is a process pool on this machine; `slurm` hands the runs to Slurm as one job
array through submitit, and `submitit-local` is submitit's local mode, which exercises
that same path without a cluster."""

import multiprocessing
import os
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Callable

import polars as pl
import torch

from . import store, train
from .spec import RunSpec

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


def run_one(spec: RunSpec, device: str, out: Path | None, keep_going: bool = False,
            save_models: bool = False) -> pl.DataFrame | None:
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


def _pin(slots, threads: int, gpus: int):
    """Give this worker its share of CPU threads, or one GPU of its own."""
    slot = slots.get()
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(slot % gpus)
    torch.set_num_threads(threads)


def local(specs: list[RunSpec], out: Path | None, device: str, jobs: int,
          on_run: Callable[[RunSpec], None], keep_going: bool = False,
          save_models: bool = False) -> dict[RunSpec, pl.DataFrame | None]:
    jobs = max(1, min(jobs, len(specs)))
    results: dict[RunSpec, pl.DataFrame | None] = {}
    if jobs == 1:
        for spec in specs:
            results[spec] = run_one(spec, device, out, keep_going, save_models)
            on_run(spec)
        return results
    gpus = torch.cuda.device_count() if train.pick_device(device).type == "cuda" else 0
    ctx = multiprocessing.get_context("spawn")
    slots = ctx.Queue()
    for slot in range(jobs):
        slots.put(slot)
    threads = max(1, torch.get_num_threads() // jobs)
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_pin, initargs=(slots, threads, gpus)) as pool:
        # Widest first: the longest runs start early and the pool drains evenly.
        ordered = sorted(specs, key=lambda s: -s.width)
        futures = {pool.submit(run_one, s, device, out, keep_going, save_models): s for s in ordered}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            on_run(futures[future])
    return results


def submitit(specs: list[RunSpec], out: Path, device: str, cluster: str, slurm: dict,
             on_run: Callable[[RunSpec], None]) -> None:
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
