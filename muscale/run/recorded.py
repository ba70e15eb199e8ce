"""A directory of recorder runs (recorder.py) read as the records of one coordinate check.

Runs are grouped by what they were recorded as (family, mode, optimizer, learning rate, weight
decay, horizon, depth rule, probe); width and depth are the axes fitted within a group. Within
a group, only the steps every run recorded are kept, so that a fit at a step never mixes
widths seen at different points of training. Whatever is left out is said in one line per run
or group: a run still in progress or stopped, steps some runs lack, schedules that differ, a
group with one width and one depth."""

import json
from pathlib import Path

import polars as pl

from ..errors import InputError
from .recorder import RUN_FILE

# What tells two groups apart beyond the fit's own keys (mode, family, optimizer, lr): where
# two groups share those, their family is labelled with these so that no fit mixes them.
SPLIT_BY = ("weight_decay", "horizon", "depth_rule", "probe")
SHOWN = 6


def holds_runs(out: Path) -> bool:
    return any(Path(out).rglob(RUN_FILE))


def _steps(steps) -> str:
    steps = sorted(steps)
    shown = ", ".join(map(str, steps[:SHOWN]))
    return shown + (f" and {len(steps) - SHOWN} more" if len(steps) > SHOWN else "")


def _runs(out: Path) -> tuple[list[tuple[str, dict, pl.DataFrame]], list[str]]:
    runs, notes = [], []
    for path in sorted(out.rglob(RUN_FILE)):
        name = path.parent.relative_to(out).as_posix()
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            notes.append(f"{name}: {RUN_FILE} is not JSON; left out")
            continue
        files = sorted((path.parent / "records").glob("steps-*.parquet"))
        if not files:
            notes.append(f"{name}: no step recorded yet; left out")
            continue
        frame = pl.concat([pl.read_parquet(f) for f in files]).with_columns(run_id=pl.lit(name))
        if meta.get("status") != "done":
            how = (
                "stopped by an error"
                if meta.get("status") == "stopped"
                else "not closed (still running, or ended without rec.close())"
            )
            notes.append(f"{name}: {how}; recorded up to step {frame['step'].max()}")
        runs.append((name, meta, frame))
    return runs, notes


def _label(meta: dict) -> str:
    lr = "" if meta["lr"] is None else f" lr={meta['lr']:g}"
    return f"{meta['mode']} {meta['family']} {meta['optimizer']}{lr}"


def read(out: Path) -> tuple[pl.DataFrame, list[str]]:
    """The records of every run under `out` that can be fitted, and what was left out, one line each."""
    out = Path(out)
    runs, notes = _runs(out)
    groups: dict[tuple, list] = {}
    for run in runs:
        meta = run[1]
        groups.setdefault(tuple(meta.get(k) for k in ("mode", "family", "optimizer", "lr", *SPLIT_BY)), []).append(run)
    families = _families(groups)
    frames = []
    for key, members in groups.items():
        label = _label(members[0][1])
        _unique(members, label)
        members, matched = _by_tokens(members, label, notes)
        common = set.intersection(*(set(frame["step"].unique()) for _, _, frame in members))
        schedules = sorted({meta["schedule"] for _, meta, _ in members})
        if len(schedules) > 1:
            notes.append(
                f"{label}: schedules differ ({'; '.join(schedules)}); fitted at the {len(common)} steps all runs share"
            )
        for name, _, frame in members:
            if extra := set(frame["step"].unique()) - common:
                what = "token counts" if matched else "steps"
                notes.append(f"{name}: {what} {_steps(extra)} not recorded by every run of {label}; left out")
        if (
            len({meta["width"] for _, meta, _ in members}) < 2
            and len({meta.get("depth") for _, meta, _ in members}) < 2
        ):
            notes.append(f"{label}: one width ({members[0][1]['width']}); nothing to fit across width")
        for _, _, frame in members:
            frames.append(frame.filter(pl.col("step").is_in(list(common))).with_columns(family=pl.lit(families[key])))
    if not frames:
        raise InputError(
            "DIR", f"{out} holds no recorded step of any run", "record with muscale.Recorder into DIR/<run>/"
        )
    # Runs recorded before a column existed (depth, depth_rule) lack it: null there.
    return pl.concat(frames, how="diagonal_relaxed"), notes


def _families(groups: dict[tuple, list]) -> dict[tuple, str]:
    """Each group's family label: its family, and where groups share the fit's keys, the
    settings that tell them apart."""
    shared: dict[tuple, list[tuple]] = {}
    for key in groups:
        shared.setdefault(key[:4], []).append(key)
    labels = {}
    for keys in shared.values():
        differ = [i for i, k in enumerate(SPLIT_BY) if len({key[4 + i] for key in keys}) > 1]
        for key in keys:
            extra = ", ".join(f"{SPLIT_BY[i]} {key[4 + i]}" for i in differ)
            labels[key] = f"{key[1]} ({extra})" if extra else key[1]
    return labels


def _unique(members: list, label: str) -> None:
    seen: dict[tuple, str] = {}
    for name, meta, _ in members:
        at = (meta["width"], meta.get("depth"), meta["seed"])
        if at in seen:
            depth = "" if at[1] is None else f" depth {at[1]}"
            raise InputError(
                "DIR",
                f"{seen[at]} and {name} are both width {at[0]}{depth} seed {at[2]} of {label}",
                "keep one of them in the directory (or record them with different seeds)",
            )
        seen[at] = name


def _by_tokens(members: list, label: str, notes: list[str]) -> tuple[list, bool]:
    """Where the runs of a group took different batch sizes, match them by tokens seen: the
    step column then counts tokens."""
    tokens = {meta.get("tokens_per_step") for _, meta, _ in members}
    if len(tokens) < 2:
        return members, False
    if None in tokens:
        notes.append(f"{label}: tokens_per_step given for some runs only; matched by step")
        return members, False
    notes.append(f"{label}: batch sizes differ across runs; matched by tokens seen (the step column counts tokens)")
    return [
        (name, meta, frame.with_columns(step=pl.col("step") * meta["tokens_per_step"])) for name, meta, frame in members
    ], True
