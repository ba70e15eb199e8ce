"""Frame helpers every kind's report shares: settings that label rows, their order, the
spread over seeds, and the two panels more than one kind draws (α over training, the loss)."""

from collections.abc import Iterable

import polars as pl

from ..config.spec import MODES
from ..errors import InputError
from ..models.roles import ROLES
from . import figures


def require(df: pl.DataFrame, columns: Iterable[str], name: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(
            name, f"missing column(s) {', '.join(missing)}", "pass records/exponents written by this version of muscale"
        )


def ordered(values: Iterable[str], canonical: tuple[str, ...]) -> list[str]:
    rank = {v: i for i, v in enumerate(canonical)}
    return sorted(set(values), key=lambda v: (rank.get(v, len(rank)), v))


def with_setting(df: pl.DataFrame, extra_keys: tuple[str, ...]) -> pl.DataFrame:
    """Label rows by mode, plus any other run key that varies, so runs that differ are never averaged together."""
    varying = [k for k in extra_keys if k in df.columns and df[k].n_unique() > 1]
    parts = [pl.col("mode")] + [pl.lit(f"{k}=") + pl.col(k).cast(pl.String) for k in varying]
    return df.with_columns(setting=pl.concat_str(parts, separator=" · "))


def setting_order(df: pl.DataFrame) -> list[str]:
    rank = {m: i for i, m in enumerate(MODES)}
    pairs = df.select("mode", "setting").unique().rows()
    return [s for _, s in sorted(pairs, key=lambda p: (rank.get(p[0], len(rank)), p[0], p[1]))]


def over_seeds(df: pl.DataFrame, *keys: str) -> pl.DataFrame:
    """Mean line and min–max band over seeds (seaborn's errorbar=("pi", 100))."""
    value = pl.col("value")
    return df.group_by(*keys).agg(value.mean().alias("mean"), value.min().alias("lo"), value.max().alias("hi"))


def alpha_trajectories(
    exponents: pl.DataFrame,
    colors: dict = figures.TRAJECTORY_COLORS,
    settle_from: float | None = None,
    ylabel: str = "α  (value ∝ width^α)",
) -> list[dict]:
    """α against step per setting, for the metrics `colors` names; with `settle_from` (a share
    of the run) the window that `settled` compares is shaded."""
    metrics = list(colors)
    alpha = pl.col("alpha").fill_nan(None)
    data = (
        exponents.filter(pl.col("metric").is_in(metrics) & alpha.is_not_null())
        .with_columns(
            lo=pl.col("ci_low").fill_nan(None).fill_null(alpha), hi=pl.col("ci_high").fill_nan(None).fill_null(alpha)
        )
        .group_by("setting", "mode", "role", "metric", "step")
        .agg(alpha.mean().alias("mean"), pl.col("lo").min(), pl.col("hi").max())
    )
    out = []
    for setting in setting_order(data):
        part = data.filter(pl.col("setting") == setting)
        roles = ordered(part["role"], ROLES)
        settle = None if settle_from is None else settle_from * part["step"].max()
        out.append({"setting": setting, "png": figures.alpha_trajectory(part, roles, colors, settle, ylabel)})
    return out


def loss_panel(records: pl.DataFrame, log_steps: bool) -> str | None:
    loss = records.filter((pl.col("metric") == "loss") & pl.col("value").is_finite()).pipe(
        over_seeds, "setting", "mode", "step", "width"
    )
    if loss.is_empty():
        return None
    return figures.loss_curves(loss, setting_order(loss), log_steps)
