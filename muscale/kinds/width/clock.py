"""Matched η·λ·t (a width study's `matched_time`): where η·λ on the hidden matrices falls with
width (`mup-lr-only`: η / width_mult with λ fixed), a fixed number of steps leaves each width
at a different point of its relaxation towards the weight-decay equilibrium, e⁻⁸ of its
start left at width 32 and e⁻¹ at width 256 in the bundled study, so α read at one step mixes
the width exponent with how far each width has come. Trained for steps × width / base_width,
every width reaches the base width's η·λ·t; its records are read on the base width's clock
(step × base_width / width), at the clock's recorded steps."""

import polars as pl

from ...config.spec import RunSpec, fixed_weight_decay, record_steps

# A run's step counts at a clock step it lands within this fraction of; powers of two land
# exactly, the settle window's log-spaced steps within ceil's rounding (≤ 0.2% at 500 steps).
LANDS_WITHIN = 0.01


def matched(spec: RunSpec) -> bool:
    """Whether matched η·λ·t changes this run's steps: η·λ falls with width only where the
    mode divides η by width_mult and leaves λ as given."""
    return fixed_weight_decay(spec.mode)


def steps(clock: int, spec: RunSpec) -> int | None:
    """The run's steps for `clock` steps at the base width; None when not whole."""
    total = clock * spec.width
    return total // spec.base_width if total % spec.base_width == 0 else None


def on_base_clock(records: pl.DataFrame, specs: list[RunSpec], clock: int) -> pl.DataFrame:
    """`records` with each matched run's steps moved to the base width's clock; a recorded step
    that lands on none of the clock's recorded steps is dropped (the fit needs every width at a
    step)."""
    ticks = pl.DataFrame({"tick": list(record_steps(clock, "long"))}, schema={"tick": pl.Int64}).sort("tick")
    scale = {s.run_id: s.base_width / s.width for s in specs if matched(s)}
    if not scale:
        return records
    moved = (
        records.filter(pl.col("run_id").is_in(list(scale)))
        .with_columns(at=pl.col("step") * pl.col("run_id").replace_strict(scale, return_dtype=pl.Float64))
        .sort("at")
        .join_asof(ticks.with_columns(at=pl.col("tick").cast(pl.Float64)), on="at", strategy="nearest")
        .filter((pl.col("at") - pl.col("tick")).abs() <= LANDS_WITHIN * pl.col("tick").clip(lower_bound=1))
        .with_columns(step=pl.col("tick").cast(records.schema["step"]))
        .select(records.columns)
    )
    return pl.concat([records.filter(~pl.col("run_id").is_in(list(scale))), moved])
