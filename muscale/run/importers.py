"""What other tools already log, read into recorder runs (recorder.py's directory format), so
that `muscale fit` fits, reports and gates it like a sweep recorded by muscale: mup's
`get_coord_data` DataFrame and nanoGPT-mup's coordinate-check CSVs.

An import writes every run or none: all target directories are checked before the first is
written, and one that already holds a run is refused in one line."""

import re
from pathlib import Path

import polars as pl

from ..errors import InputError
from ..models.roles import role_of
from .recorder import held_by, write_meta, write_records
from .train import RUN_KEYS, SCHEMA

# mup's FDICT statistics that are muscale metrics under the same definition (DESIGN.md, fact
# 2); its others (mean, std, cov…) keep their names behind a `mup_` prefix.
MUP_METRICS = {"l1": "act_l1", "l2": "act_rms"}
MUP_KEYS = ("width", "module", "t")
# The run's settings get_coord_data adds as columns, read as the runs' keys unless given.
MUP_SETTINGS = ("optimizer", "lr")
# nanoGPT-mup logs output.abs().mean() of four hooked places, averaged over the blocks and
# micro-steps of an iteration, as `<key>_act_abs_mean` in OUT_DIR/log.csv, one directory per
# run named width<W>_depth<L>_seed<S>.
NANOGPT_MODULES = {
    "token_embedding": ("transformer.wte", "embed"),
    "attn": ("transformer.h.attn", "attn_out"),
    "mlp": ("transformer.h.mlp", "mlp_down"),
    "lm_head": ("lm_head", "head"),
}
NANOGPT_LOSSES = {"train/loss": "loss", "val/loss": "eval_loss"}
NANOGPT_RUN = re.compile(r"width(\d+)_depth(\d+)_seed(\d+)$")


def _read(source, field: str) -> pl.DataFrame:
    if isinstance(source, pl.DataFrame):
        return source
    if hasattr(source, "to_dict") and hasattr(source, "columns"):  # a pandas DataFrame
        return pl.from_pandas(source)
    path = Path(source)
    if not path.is_file():
        raise InputError(field, f"{path} is not a file", "pass the CSV or parquet file the DataFrame was saved to")
    try:
        return pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path)
    except pl.exceptions.PolarsError as exc:
        raise InputError(field, f"{path} does not read as a table ({exc})", "save it with df.to_csv(path)") from None


def _meta(width: int, seed: int, depth: int | None, rows: pl.DataFrame, source: str, **run) -> dict:
    """A run's run.json, as the recorder writes it, for `rows` read from `source`."""
    return {
        "width": int(width),
        "seed": int(seed),
        "depth": depth,
        "depth_rule": None,
        "horizon": "short",
        "weight_decay": None,
        "schedule": f"imported ({source})",
        "probe": False,
        "tokens_per_step": None,
        "world_size": 1,
        "tags": {"source": source},
        "status": "done",
        "recorded": sorted(rows["step"].unique().to_list()),
        **run,
    }


def _write(out: Path, runs: dict[str, tuple[dict, pl.DataFrame]]) -> list[Path]:
    """Every run into OUT/<name>/, once every target is known to be free."""
    for name in runs:
        if problem := held_by(out / name):
            raise InputError("--out", problem, "import into a new directory, or delete the runs there")
    for name, (meta, frame) in runs.items():
        meta = meta | {"run_id": name}
        keys = {k: [meta[k]] * frame.height for k in RUN_KEYS}
        columns = {k: frame[k].to_list() for k in ("step", "module", "role", "metric", "value")}
        write_records(out / name, pl.DataFrame([pl.Series(k, v, dtype=SCHEMA[k]) for k, v in (keys | columns).items()]))
        write_meta(out / name, meta)
    return [out / name for name in runs]


def mup(source, out, *, mode: str, family: str | None = None, optimizer: str | None = None, lr: float | None = None):
    """mup's get_coord_data DataFrame (or the CSV or parquet file it was saved to) as one run
    per width and seed. mup's t = 1 is the forward at init, so t is step t − 1; its rows carry
    no seed but arrive seed by seed, so a module's n-th row at one width and t is seed n. The
    whole model's row (module '') is left out, as mup's own plots do. The optimizer and
    learning rate are the DataFrame's own columns unless given."""
    frame = _read(source, "FILE")
    if missing := [k for k in MUP_KEYS if k not in frame.columns]:
        raise InputError(
            "FILE", f"it has no column {missing[0]!r}", "pass the DataFrame mup.coord_check.get_coord_data returned"
        )
    stats = [c for c in frame.columns if c not in (*MUP_KEYS, *MUP_SETTINGS, "seed") and frame[c].dtype.is_numeric()]
    given = {"optimizer": optimizer, "lr": lr}
    found = {k: frame[k].drop_nulls().unique().to_list() for k in MUP_SETTINGS if k in frame.columns}
    optimizer, lr = (given[k] if given[k] is not None else (found.get(k) or [None])[0] for k in MUP_SETTINGS)
    if not stats:
        raise InputError("FILE", "it holds no statistic column (l1, l2, …)", "record one with get_coord_data")
    frame = frame.filter(pl.col("module").cast(pl.String).fill_null("") != "").with_columns(
        module=pl.col("module").cast(pl.String)
    )
    if "seed" not in frame.columns:
        frame = frame.with_columns(seed=pl.int_range(pl.len()).over("width", "module", "t"))
    roles = {m: role_of(m.partition(":")[0], None) for m in frame["module"].unique()}  # fc1:in[0] is fc1's
    long = frame.unpivot(stats, index=["width", "seed", "module", "t"], variable_name="stat").with_columns(
        step=pl.col("t") - 1,
        metric=pl.col("stat").replace_strict(MUP_METRICS, default="mup_" + pl.col("stat")),
        role=pl.col("module").replace_strict(roles),
    )
    runs = {}
    for (width, seed), rows in long.sort("width", "seed", "t").group_by("width", "seed", maintain_order=True):
        meta = _meta(
            width,
            seed,
            None,
            rows,
            "mup get_coord_data",
            family=family or "mup",
            mode=mode,
            optimizer=optimizer or "adam",
            lr=lr,
        )
        runs[f"{mode}-w{width}-s{seed}"] = (meta, rows)
    return _write(Path(out), runs)


def nanogpt_mup(
    root, out, *, mode: str, family: str | None = None, optimizer: str | None = None, lr: float | None = None
):
    """nanoGPT-mup's coordinate-check runs below `root` (each width<W>_depth<L>_seed<S>/log.csv),
    one run each. An iteration's row measured the forwards of that iteration, which saw the
    weights after `iter` steps: iter is muscale's step. The learning rate is the largest the
    log shows unless given."""
    root = Path(root)
    logs = sorted(p for p in root.rglob("log.csv") if NANOGPT_RUN.search(p.parent.name))
    if not logs:
        raise InputError(
            "DIR",
            f"{root} holds no width<W>_depth<L>_seed<S>/log.csv",
            "point at the out/ of nanoGPT-mup's coord check",
        )
    runs = {}
    for log in logs:
        width, depth, seed = (int(g) for g in NANOGPT_RUN.search(log.parent.name).groups())
        table = _read(log, "DIR")
        found = {k: v for k, v in NANOGPT_MODULES.items() if f"{k}_act_abs_mean" in table.columns}
        if "iter" not in table.columns or not found:
            raise InputError(
                "DIR",
                f"{log} has no iter or *_act_abs_mean column",
                "run train.py with --csv_log and coord-check logging",
            )
        parts = [
            table.select(step="iter", value=f"{key}_act_abs_mean").with_columns(
                module=pl.lit(module), role=pl.lit(role), metric=pl.lit("act_l1")
            )
            for key, (module, role) in found.items()
        ] + [
            table.select(step="iter", value=column).with_columns(
                module=pl.lit("loss"), role=pl.lit("loss"), metric=pl.lit(metric)
            )
            for column, metric in NANOGPT_LOSSES.items()
            if column in table.columns
        ]
        rows = pl.concat([p.with_columns(pl.col("value").cast(pl.Float64)) for p in parts]).drop_nulls("value")
        rate = lr if lr is not None else (table["lr"].max() if "lr" in table.columns else None)
        meta = _meta(
            width,
            seed,
            depth,
            rows,
            "nanoGPT-mup log.csv",
            family=family or "nanogpt",
            mode=mode,
            optimizer=optimizer or "adamw",
            lr=rate,
        )
        runs[f"{mode}-{log.parent.name}"] = (meta, rows)
    return _write(Path(out), runs)


# TensorBoard scalars muscale reads and writes (tensorboard.py): one TensorBoard run per
# muscale run, a tag per module and metric.
TENSORBOARD_TAG = re.compile(r"^norms/(?P<module>.+)/(?P<metric>[^/]+)$")
# How a TensorBoard run's folder names its width and seed (w256-s0, width256_depth2_seed1, …).
RUN_NAME = r"w(?:idth)?(?P<width>\d+)(?:\D+?depth(?P<depth>\d+))?\D+?s(?:eed)?(?P<seed>\d+)"


def tensorboard(
    root,
    out,
    *,
    mode: str,
    pattern: str = RUN_NAME,
    family: str | None = None,
    optimizer: str | None = None,
    lr: float | None = None,
):
    """Every TensorBoard run below `root` whose scalars are tagged norms/<module>/<metric>
    (muscale's metric names; `loss/loss` the loss), one run each, its width and seed (and
    depth) read from its folder's path by `pattern`, a regular expression with named groups."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        raise InputError(
            "import tensorboard", "tensorboard is not installed", "pip install 'muscale[tensorboard]'"
        ) from None
    try:
        name = re.compile(pattern)
    except re.error as exc:
        raise InputError(
            "--pattern",
            f"{pattern!r} is not a regular expression ({exc})",
            "write one like w(?P<width>\\d+)-s(?P<seed>\\d+)",
        ) from None
    root = Path(root)
    folders = sorted({p.parent for p in root.rglob("events.out.tfevents.*")})
    if not folders:
        raise InputError("DIR", f"{root} holds no TensorBoard event file", "point at the log directory of your runs")
    runs = {}
    for folder in folders:
        relative = folder.relative_to(root).as_posix() if folder != root else folder.name
        found = name.search(relative)
        if found is None or not {"width", "seed"} <= set(found.groupdict()):
            raise InputError(
                "--pattern",
                f"{relative} does not name a width and a seed by {pattern!r}",
                "name run folders like w256-s0, or pass --pattern",
            )
        events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        events.Reload()
        tags = [t for t in events.Tags()["scalars"] if TENSORBOARD_TAG.match(t)]
        if not tags:
            raise InputError(
                "DIR",
                f"{relative} has no scalar tagged norms/<module>/<metric>",
                "log your statistics under those tags",
            )
        rows = []
        for tag in tags:
            module, metric = TENSORBOARD_TAG.match(tag).group("module", "metric")
            role = "loss" if module == "loss" else role_of(module, None)
            rows += [(e.step, module, role, metric, float(e.value)) for e in events.Scalars(tag)]
        frame = pl.DataFrame(rows, schema=["step", "module", "role", "metric", "value"], orient="row")
        width, seed, depth = (found.groupdict().get(k) for k in ("width", "seed", "depth"))
        meta = _meta(
            int(width),
            int(seed),
            depth and int(depth),
            frame,
            "TensorBoard",
            family=family or "tensorboard",
            mode=mode,
            optimizer=optimizer or "unknown",
            lr=lr,
        )
        runs[relative.replace("/", "-")] = (meta, frame)
    return _write(Path(out), runs)
