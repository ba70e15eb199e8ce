"""lr_transfer studies (a study file's default kind): family × mode × optimizer × width ×
learning rate × seed, each run on the sweep horizon, with coordinate checks beside it."""

from dataclasses import dataclass
from pathlib import Path

from ...config.options import study_keys
from ...config.spec import MODES, RunSpec, canonical_mode, has_mup, multiplier_kind
from ...measure.metrics import METRICS
from ...run import coordcheck
from ...run.validate import check_positive
from ...study.across_widths import KEYS, across_widths
from ...study.studyfile import Reader

TOP = KEYS | {
    "lr": (dict, None, "the learning-rate grid: [lr] log2_min, log2_max, log2_step"),
    "transfer": (dict, {}, "[transfer] tolerance, diverge_factor"),
    "expect": (
        dict,
        {},
        "[expect] MODE = {alpha = …, tolerance = …}: the drift exponent `muscale gate` checks; over depths, "
        "keyed by depth rule (completep = {…})",
    ),
    "coord_check": (
        dict,
        None,
        "[coord_check] modes, widths, steps, seeds: coordinate checks run beside the sweep and linked from its report",
    ),
}
# Left out, a [coord_check] key takes the study's modes, or the coordinate check's horizon.
COORD_CHECK = study_keys("mode", "widths", "steps", "seeds", modes=None, widths=None, steps=None, seeds=None)
LR = {
    "log2_min": (float, None, "the smallest log2 learning rate"),
    "log2_max": (float, None, "the largest log2 learning rate"),
    "log2_step": (float, 1.0, "the grid spacing in log2 units"),
}
TRANSFER = {"tolerance": (float, 0.25, "|α| of the optimum's drift that still counts as transfer")} | study_keys(
    "diverge_factor"
)
EXPECT = {
    "alpha": (float, None, "the expected drift exponent of η* ∝ d^α"),
    "tolerance": (float, None, "how far α may stray; default: [transfer] tolerance"),
}


@dataclass(frozen=True)
class TransferStudy:
    path: Path
    title: str
    specs: tuple[RunSpec, ...]
    lrs_log2: tuple[float, ...]
    tolerance: float
    # mode (over depths: depth rule) → (expected α, tolerance) of the optimum's drift, for `muscale gate`.
    expect: dict[str, tuple[float, float]]
    # Coordinate checks beside the sweep, by part name (family-mode), each its own report.
    parts: dict[str, tuple[RunSpec, ...]]
    kind = "lr_transfer"

    def settings(self) -> dict:
        """What the analysis needs besides the runs, saved in plan.json."""
        return {"tolerance": self.tolerance}

    def baseline(self) -> list[dict]:
        """The expectations as gate rows, one per expected mode × family × optimizer; over
        depths, one per expected depth rule × family × mode × optimizer, at the sweep's width."""
        over_depths = len({s.depth for s in self.specs}) > 1
        rows = []
        for key, (alpha, tol) in self.expect.items():
            if over_depths:
                chosen = [s for s in self.specs if s.depth_rule == key]
                settings = sorted({(s.family, s.mode, s.optimizer, s.steps, s.width) for s in chosen})
            else:
                settings = sorted({(s.family, key, s.optimizer, s.steps, None) for s in self.specs})
            for family, mode, optimizer, steps, width in settings:
                at = {"axis": "depth", "depth_rule": key, "width": width} if over_depths else {}
                rows.append(
                    {
                        "mode": mode,
                        "family": family,
                        "optimizer": optimizer,
                        "module": "lr_opt",
                        "metric": "lr_opt",
                        "step": steps,
                        "expected": alpha,
                        "tolerance": tol,
                    }
                    | at
                )
        return rows


def read(r: Reader, raw: dict) -> TransferStudy:
    """A learning-rate transfer sweep: family × mode × optimizer × width × learning rate × seed."""
    path = r.path
    top = r.table(raw, TOP)
    transfer = r.table(top["transfer"], TRANSFER, "transfer.")
    runs = across_widths(r, top, depth_sweep=True)
    over_depths = len(runs.depths) > 1
    rules = sorted(
        {f["depth_param"] if f["depth_param"] != "alpha" else f"alpha={f['depth_alpha']:g}" for f in runs.fields}
    )
    if top["metrics"]:
        r.listed("metrics", top["metrics"], str, METRICS)
    r.check(check_positive, "eval_batches", top["eval_batches"], True, key="eval_batches")
    lrs = r.log2_grid("lr", top["lr"], LR, "learning rates")
    for key in ("tolerance", "diverge_factor"):
        r.check(check_positive, key, transfer[key], key=f"transfer.{key}")
    expect = {}
    keys = rules if over_depths else runs.modes
    for mode, raw_expect in top["expect"].items():
        if mode not in keys:
            what = "depth rules (a sweep over depths)" if over_depths else "modes"
            raise r.error(f"expect.{mode}", f"is not one of the study's {what}", f"use one of {', '.join(keys)}")
        if not isinstance(raw_expect, dict):
            raise r.error(f"expect.{mode}", f"{raw_expect!r} is not a table", "write it as {alpha = …, tolerance = …}")
        e = r.table(raw_expect, EXPECT, f"expect.{mode}.")
        tol = transfer["tolerance"] if e["tolerance"] is None else e["tolerance"]
        r.check(check_positive, "tolerance", tol, key=f"expect.{mode}.tolerance")
        expect[mode if over_depths else canonical_mode(mode)] = (e["alpha"], tol)
    specs = tuple(
        RunSpec(
            **fields,
            lr=2.0**e,
            width=width,
            depth=depth,
            seed=seed,
            horizon="sweep",
            metrics=tuple(top["metrics"]),
            eval_batches=top["eval_batches"],
            diverge_factor=transfer["diverge_factor"],
        )
        for fields in runs.fields
        for width in runs.widths
        for depth in runs.depths
        for e in lrs
        for seed in range(top["seeds"])
    )
    return TransferStudy(
        path,
        top["title"] or path.stem,
        specs,
        lrs,
        transfer["tolerance"],
        expect,
        _parts(r, top, runs.families, runs.modes, runs.options, runs.base_width),
    )


def _parts(
    r: Reader, top: dict, families: list[str], modes: list[str], options: dict, base_width: int
) -> dict[str, tuple[RunSpec, ...]]:
    """The [coord_check] table as coordinate-check run specs, validated like the command's."""
    if top["coord_check"] is None:
        return {}
    raw = top["coord_check"]
    cc = r.table(raw, COORD_CHECK, "coord_check.")
    part_modes = r.listed("coord_check.modes", cc["modes"], str, MODES) if "modes" in raw else modes
    widths = tuple(r.listed("coord_check.widths", cc["widths"], int)) if "widths" in raw else None
    parts = {}
    for family in families:
        for mode in part_modes:
            multipliers = top["mup_multipliers"] if has_mup(mode) else None
            parts[f"{family.replace(':', '_')}-{mode}"] = tuple(
                r.check(
                    lambda: coordcheck.plan(
                        mode,
                        family,
                        widths=widths,
                        steps=cc["steps"],
                        seeds=cc["seeds"],
                        options=options,
                        base_width=base_width,
                        mup_multipliers=multipliers,
                        multipliers=top["multipliers"] if multiplier_kind(mode) else None,
                        mult_init=top["mult_init"] if multiplier_kind(mode) else 1.0,
                    ),
                    key="coord_check",
                )
            )
    return parts
