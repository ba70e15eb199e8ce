"""The noise–weight-decay equilibrium: steady-state norms and their exponents in η and λ.

A run's steady state is the mean over its recorded steps in the last `steady_fraction` of
the run, per matrix, of ‖W‖_F (weight_fro, the trained matrix) and of the effective norm
‖s·W‖_F = |s|·‖W‖_F (mult_scalar × weight_fro; ‖W‖_F itself where there is no
multiplier), and per run of the held-out loss. Per (variant, mode, module, quantity) the
least-squares fit log y = a + p·log η + q·log λ over the grid gives p and q, and
log y = a + r·log(η/λ) says how much η/λ alone explains (its R²). As fit.py does for width
exponents, the fit is of the seed-mean value, its 95% interval a t-interval over the
per-seed fits (one seed: the regression's own standard errors). Diverged runs are left out.

The fits come out long, one row per exponent, named like width exponents (family = the
variant, metric = `quantity~variable`, step 0), so `muscale gate` checks them as it checks
any exponent."""

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from ...analysis.divergence import fate
from ...analysis.intervals import ols, over_seeds

OPTIMIZER = "adamw"
QUANTITIES = ("weight_fro", "effective_fro")
RUN_KEYS = ["run_id", "variant", "mode", "lr", "weight_decay", "seed"]
GROUP = ["variant", "mode", "module", "role"]


def exponent_name(quantity: str, variable: str) -> str:
    return f"{quantity}~{variable}"


def run_table(plan: dict, specs) -> pl.DataFrame:
    """What the records lack, per planned run: its variant and its length."""
    names = {(v["family"], tuple(sorted(v["options"].items()))): v["name"] for v in plan["equilibrium"]["variants"]}
    return pl.DataFrame(
        [{"run_id": s.run_id, "variant": names[s.family, s.family_options], "steps": s.steps} for s in specs],
        schema={"run_id": pl.String, "variant": pl.String, "steps": pl.Int64},
    )


def _window(records: pl.DataFrame, runs: pl.DataFrame, fraction: float) -> pl.DataFrame:
    return records.join(runs, on="run_id").filter(pl.col("step") >= (1 - fraction) * pl.col("steps"))


def runs_state(records: pl.DataFrame, runs: pl.DataFrame, fraction: float) -> pl.DataFrame:
    """One row per run: its steady-state held-out loss and whether it diverged."""
    loss = (
        _window(records, runs, fraction)
        .filter(pl.col("metric") == "eval_loss")
        .group_by("run_id")
        .agg(loss=pl.col("value").mean())
    )
    keys = records.join(runs, on="run_id").select(*RUN_KEYS).unique()
    return (
        keys.join(loss, on="run_id", how="left")
        .join(fate(records), on="run_id", how="left")
        .sort("variant", "mode", "lr", "weight_decay", "seed")
    )


def steady_norms(records: pl.DataFrame, runs: pl.DataFrame, fraction: float) -> pl.DataFrame:
    """One row per (run, matrix): steady-state weight_fro and effective_fro."""
    window = _window(records, runs, fraction)
    w = window.filter(pl.col("metric") == "weight_fro").select(*RUN_KEYS, "module", "role", "step", w="value")
    s = window.filter(pl.col("metric") == "mult_scalar").select("run_id", "module", "step", s=pl.col("value").abs())
    return (
        w.join(s, on=["run_id", "module", "step"], how="left")
        .group_by(*RUN_KEYS, "module", "role")
        .agg(weight_fro=pl.col("w").mean(), effective_fro=(pl.col("w") * pl.col("s").fill_null(1.0)).mean())
        .sort(*GROUP, "lr", "weight_decay", "seed")
    )


def trajectories(records: pl.DataFrame, runs: pl.DataFrame, norms: pl.DataFrame) -> pl.DataFrame:
    """‖W‖_F of every recorded step over its run's steady state, against η·λ·step."""
    return (
        records.filter(pl.col("metric") == "weight_fro")
        .join(runs, on="run_id")
        .join(norms.select("run_id", "module", "weight_fro"), on=["run_id", "module"])
        .select(
            *RUN_KEYS,
            "module",
            "role",
            "step",
            eta_lambda_step=pl.col("lr") * pl.col("weight_decay") * pl.col("step"),
            relative=pl.col("value") / pl.col("weight_fro"),
        )
        .sort(*RUN_KEYS, "module", "step")
    )


def _regressors(frame: pl.DataFrame, joint: bool) -> np.ndarray:
    """log η and log λ as two columns, or log(η/λ) as one."""
    eta, lam = np.log(frame["lr"].to_numpy()), np.log(frame["weight_decay"].to_numpy())
    return np.column_stack([eta, lam]) if joint else (eta - lam)[:, None]


def _fit(points: pl.DataFrame, quantity: str) -> list[dict]:
    """The exponents of one matrix's `quantity`: (η, λ) jointly and η/λ alone."""
    points = points.filter(pl.col(quantity).is_finite() & (pl.col(quantity) > 0))
    means = points.group_by("lr", "weight_decay").agg(pl.col(quantity).mean()).sort("lr", "weight_decay")
    seeds = points.partition_by("seed", as_dict=False)
    identifiable = means["lr"].n_unique() >= 2 and means["weight_decay"].n_unique() >= 2
    rows = []
    for variables in (("eta", "lambda"), ("eta/lambda",)):
        joint = len(variables) == 2
        if means.height < 2 + len(variables) or (joint and not identifiable):
            rows += [{"variable": v, "exponent": math.nan, "half": math.nan, "r2": math.nan} for v in variables]
            continue
        y = np.log(means[quantity].to_numpy())
        coef, half, r2 = ols(_regressors(means, joint), y)
        per_seed = [
            ols(_regressors(s, joint), np.log(s[quantity].to_numpy()))[0]
            for s in seeds
            if s.height >= 2 + len(variables)
        ]
        if len(per_seed) >= 2:
            half = over_seeds(np.std(per_seed, axis=0, ddof=1), len(per_seed))
        rows += [
            {"variable": v, "exponent": float(c), "half": float(h), "r2": r2} for v, c, h in zip(variables, coef, half)
        ]
    return [row | {"quantity": quantity, "n_points": means.height, "n_seeds": len(seeds)} for row in rows]


def fit(norms: pl.DataFrame, state: pl.DataFrame, invariant: dict[str, list[str]]) -> pl.DataFrame:
    """Exponents of every matrix's steady-state norms, one row per (…, quantity, variable).

    `state`: runs_state (diverged runs are left out); `invariant`: variant → its scale-invariant modules."""
    alive = norms.join(state.filter(~pl.col("diverged")).select("run_id"), on="run_id")
    rows = []
    for (variant, mode, module, role), points in alive.group_by(*GROUP, maintain_order=True):
        for quantity in QUANTITIES:
            rows += [
                {
                    "variant": variant,
                    "mode": mode,
                    "module": module,
                    "role": role,
                    "invariant": module in invariant.get(variant, ()),
                }
                | row
                for row in _fit(points, quantity)
            ]
    schema = {
        "variant": pl.String,
        "mode": pl.String,
        "module": pl.String,
        "role": pl.String,
        "invariant": pl.Boolean,
        "variable": pl.String,
        "exponent": pl.Float64,
        "half": pl.Float64,
        "r2": pl.Float64,
        "quantity": pl.String,
        "n_points": pl.Int64,
        "n_seeds": pl.Int64,
    }
    table = pl.DataFrame(rows, schema=schema)
    return table.with_columns(
        ci_low=pl.col("exponent") - pl.col("half"),
        ci_high=pl.col("exponent") + pl.col("half"),
        family=pl.col("variant"),
        optimizer=pl.lit(OPTIMIZER),
        step=pl.lit(0),
        metric=pl.col("quantity") + "~" + pl.col("variable"),
        alpha=pl.col("exponent"),
    ).select(
        "variant",
        "mode",
        "module",
        "role",
        "invariant",
        "quantity",
        "variable",
        "exponent",
        "ci_low",
        "ci_high",
        "r2",
        "n_points",
        "n_seeds",
        "family",
        "optimizer",
        "metric",
        "step",
        "alpha",
    )


def wide(fits: pl.DataFrame, quantity: str) -> pl.DataFrame:
    """One row per (variant, mode, matrix) for `quantity`: p and q with their intervals and R²,
    then r, the exponent of η/λ alone, with its interval and R²."""
    part = fits.filter(pl.col("quantity") == quantity)
    keys = [*GROUP, "invariant"]

    def one(variable: str, name: str, r2: str | None) -> pl.DataFrame:
        cols = [
            pl.col("exponent").alias(name),
            pl.col("ci_low").alias(f"{name}_low"),
            pl.col("ci_high").alias(f"{name}_high"),
        ] + ([pl.col("r2").alias(r2)] if r2 else [])
        return part.filter(pl.col("variable") == variable).select(*keys, *cols)

    counts = part.group_by(keys).agg(pl.col("n_points").max(), pl.col("n_seeds").max())
    return (
        one("eta", "p", None)
        .join(one("lambda", "q", "r2"), on=keys)
        .join(one("eta/lambda", "r", "r2_ratio"), on=keys)
        .join(counts, on=keys)
        .sort("variant", "mode", "module")
    )


@dataclass(frozen=True)
class Analysis:
    norms: pl.DataFrame  # steady_norms
    state: pl.DataFrame  # runs_state
    fits: pl.DataFrame  # fit, long
    wide: dict[str, pl.DataFrame]  # quantity → wide(fits, quantity)
    trajectories: pl.DataFrame


def analyse(records: pl.DataFrame, plan: dict, specs) -> Analysis:
    """Everything the report and the gate read, from the records of a study's planned runs."""
    settings = plan["equilibrium"]
    runs = run_table(plan, specs)
    norms = steady_norms(records, runs, settings["steady_fraction"])
    state = runs_state(records, runs, settings["steady_fraction"])
    invariant = {v["name"]: v["invariant"] for v in settings["variants"]}
    fits = fit(norms, state, invariant)
    return Analysis(norms, state, fits, {q: wide(fits, q) for q in QUANTITIES}, trajectories(records, runs, norms))
