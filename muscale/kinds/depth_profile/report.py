"""One self-contained HTML report per depth-profile study: the claims with the rows behind
them, each family's profile along its depth at the end of training (what each block adds,
the branch outputs, the multipliers), the statistics against step (whether they settled),
the loss and the metadata. analysis.py decides; this module only words and draws."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl
import seaborn as sns

from ...config.spec import MODES, SETTLE_FROM, SETTLE_TOLERANCE
from ...models.roles import ROLES
from ...report import figures
from ...report.frames import loss_panel, ordered, over_seeds, with_setting
from ...report.templates import environment
from ...report.text import interval, signed
from .analysis import BRANCH_ROLES, CLAIMS, CONTRAST, Profile

__all__ = ["render"]

OUTCOME_OF_STATUS = {"reproduced": "pass", "not reproduced": "fail", "inconclusive": "warn", "unsettled": "unsettled"}


def render(title: str, records: pl.DataFrame, profile: Profile, meta: Mapping[str, str]) -> str:
    families = ordered(profile.layers["family"], ())
    return (
        environment(Path(__file__).parent)
        .get_template("template.html.j2")
        .render(
            title=title,
            banner=_banner(profile),
            claims=_claims(profile.claims),
            details=_details(profile.statistics),
            profiles=[{"family": f, "png": _profile_figure(profile.layers, f)} for f in families],
            trajectories=[{"family": f, "png": _trajectory_figure(profile.trajectories, f)} for f in families],
            loss=loss_panel(with_setting(records, ("family", "depth")), log_steps=True),
            meta=meta,
            settle=(SETTLE_TOLERANCE, round(100 * (1 - SETTLE_FROM))),
            contrast=CONTRAST,
        )
    )


def _banner(profile: Profile) -> dict:
    counts = {s: int((profile.claims["status"] == s).sum()) for s in OUTCOME_OF_STATUS}
    total = profile.claims.height
    line = (
        f"{counts['reproduced']} of {total} claims reproduced, {counts['not reproduced']} not"
        if total
        else "the study makes no claims"
    )
    return {"overall": profile.verdict, "line": line, "counts": list(counts.items())}


def _claims(claims: pl.DataFrame) -> list[dict]:
    return [
        {
            "name": c["claim"],
            "mode": c["mode"],
            "family": c["family"],
            "statistic": c["metric"] + (f" − {CONTRAST}'s" if CLAIMS[c["claim"]][1] else ""),
            "depths": ", ".join(str(d) for d in c["depths"]),
            "modules": ", ".join(c["modules"]),
            "range": f"{signed(c['alpha_min'], 2)} … {signed(c['alpha_max'], 2)}",
            "envelope": interval(c["ci_low"], c["ci_high"]),
            "status": c["status"],
            "kind": OUTCOME_OF_STATUS[c["status"]],
        }
        for c in claims.iter_rows(named=True)
    ]


def _details(table: pl.DataFrame) -> list[dict]:
    return [
        {
            "mode": r["mode"],
            "family": r["family"],
            "depth": r["depth"],
            "statistic": r["metric"] + (f" − {r['against']}'s" if r["against"] else ""),
            "module": r["module"],
            "step": r["step"],
            "value": signed(r["alpha"], 3),
            "ci": interval(r["ci_low"], r["ci_high"]),
            "seeds": r["n_seeds"],
            "settled": "yes" if r["settled"] else "no",
            "claim": r["claim"] or "",
            "verdict": r["verdict"],
        }
        for r in table.iter_rows(named=True)
    ]


def _palette(lines: list[str], roles: list[str] = ()) -> dict:
    """A colour per mode (or contrast), and one per role for the multiplier panels, which draw
    roles only."""
    return dict(zip(lines, sns.color_palette("tab10", len(lines)))) | dict(
        zip(roles, sns.color_palette("husl", len(roles)))
    )


def _profile_figure(layers: pl.DataFrame, family: str) -> str:
    """Per depth (a row): what each block adds, each branch output by mode, and each multiplier
    mode's multipliers by role, against the block index at the last step, mean and seed range."""
    data = layers.filter((pl.col("family") == family) & (pl.col("step") == pl.col("step").max().over("run_id")))
    modes = ordered(data["mode"], MODES)
    column = (
        pl.when(pl.col("metric") == "mult_scale")
        .then(pl.lit("multipliers, ") + pl.col("mode"))
        .when(pl.col("metric") == "act_rms")
        .then(pl.col("role") + pl.lit(" output"))
        .otherwise(pl.lit("block contribution"))
    )
    line = pl.when(pl.col("metric") == "mult_scale").then(pl.col("role")).otherwise(pl.col("mode"))
    drawn = data.with_columns(row=pl.lit("depth ") + pl.col("depth").cast(pl.String), column=column, line=line)
    multiplied = drawn.filter(pl.col("metric") == "mult_scale")
    roles = ordered(multiplied["role"], ROLES)
    branches = [f"{r} output" for r in BRANCH_ROLES if r in set(data["role"].to_list())]
    columns = ["block contribution", *branches, *(f"multipliers, {m}" for m in ordered(multiplied["mode"], MODES))]
    depths = sorted(data["depth"].unique().to_list())
    frame = over_seeds(drawn, "row", "column", "line", "block")
    return figures.grid_lines(
        frame, [f"depth {d}" for d in depths], columns, "block", _palette(modes, roles), "block index"
    )


def _trajectory_figure(table: pl.DataFrame, family: str) -> str:
    """Each judged statistic against step, a row per depth, a line per mode (and contrast), with
    its 95% interval: whether it had stopped moving when it was judged."""
    data = table.filter(pl.col("family") == family)
    drawn = data.with_columns(
        row=pl.lit("depth ") + pl.col("depth").cast(pl.String),
        column=pl.concat_str("metric", pl.lit(" · ") + pl.col("module"), ignore_nulls=True).str.strip_suffix(
            " · blocks"
        ),
        line=pl.concat_str("mode", pl.lit(" − ") + pl.col("against"), ignore_nulls=True),
        mean=pl.col("alpha"),
        lo=pl.col("ci_low").fill_null(pl.col("alpha")),
        hi=pl.col("ci_high").fill_null(pl.col("alpha")),
        **{"step + 1": pl.col("step") + 1},
    ).filter(pl.col("step") > 0)
    depths = sorted(data["depth"].unique().to_list())
    columns = sorted(set(drawn["column"].to_list()))
    lines = sorted(set(drawn["line"].to_list()))
    return figures.grid_lines(
        drawn, [f"depth {d}" for d in depths], columns, "step + 1", _palette(lines), figures.STEP_LOG_LABEL, log_y=False
    )
