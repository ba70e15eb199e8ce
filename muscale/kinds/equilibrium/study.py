"""Equilibrium studies (`kind = "equilibrium"`): AdamW over a learning-rate × weight-decay grid at one width.

A matrix whose scale the loss cannot see settles where weight decay's pull balances the
growth that gradient noise drives, ‖W‖ ∝ sqrt(η/λ) (DESIGN.md, fact 4). Weight decay
relaxes a norm in about 1/(η·λ) steps, so each run trains ceil(eta_lambda_steps / (η·λ))
steps: every corner of the grid ends equally deep in its equilibrium. A study trains one
or more variants (a family with its options, e.g. the mlp with and without a gainless
LayerNorm); which of their matrices are scale-invariant is measured on each variant's
model when the study is read (invariance.py) and saved in the plan, for the fit
(analysis.py), the report and the gate."""

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ...config.options import study_keys
from ...config.spec import RunSpec
from ...measure import invariance
from ...models.data import PROBE_INDEX, resolve_source
from ...models.families import Hooks, resolve
from ...models.roles import role_of
from ...run.validate import check_family, check_positive
from .analysis import OPTIMIZER, exponent_name

# Modes whose effective matrix has a norm the records give: ‖W‖ (sp) and |s|·‖W‖ (lrm-scalar).
MODES = ("sp", "lrm-scalar")
METRICS = ("weight_fro", "mult_scalar")

# key: (type, default; None = required, help), read by studyfile.Reader. Small batches, so that
# gradient noise dominates; multipliers free of weight decay, to ask whether a free multiplier
# escapes the equilibrium (a decayed one would have its own).
TOP = (
    {
        "title": (str, "", "a heading for the report"),
        "modes": (list, None, f"parametrizations among {', '.join(MODES)}"),
        "width": (int, None, "the one width every run has, e.g. 128"),
    }
    | study_keys(
        "seeds",
        "batch_size",
        "seq_len",
        "data",
        "eval_batches",
        "mult_weight_decay",
        seeds=1,
        seq_len=64,
        eval_batches=4,
        mult_weight_decay=0.0,
    )
    | {
        "eta_lambda_steps": (float, 6.0, "η·λ·steps of every run, e.g. 6: steps = ceil(6 / (η·λ))"),
        "max_steps": (int, 50_000, "the most steps one run may take"),
        "steady_fraction": (float, 0.25, "the last part of each run whose recorded norms make its steady state"),
    }
    | study_keys("diverge_factor")
    | {
        "lr": (dict, None, "the learning-rate grid: [lr] log2_min, log2_max, log2_step"),
        "wd": (dict, None, "the weight-decay grid: [wd] log2_min, log2_max, log2_step"),
        "variants": (dict, None, "[variants.NAME] tables: family = …, options = {…}"),
        "expect": (dict, {}, "[expect] scale_invariant = {eta = 0.5, lambda = -0.5, tolerance = 0.15}"),
    }
)
LR = {
    "log2_min": (float, None, "the smallest log2 learning rate"),
    "log2_max": (float, None, "the largest log2 learning rate"),
    "log2_step": (float, 1.0, "the grid spacing in log2 units"),
}
WD = {
    "log2_min": (float, None, "the smallest log2 weight decay"),
    "log2_max": (float, None, "the largest log2 weight decay"),
    "log2_step": (float, 1.0, "the grid spacing in log2 units"),
}
VARIANT = {
    "family": (str, None, "a built-in family name or package.module:function"),
    "options": (dict, {}, 'family options, e.g. {norm = "layernorm"}'),
}
# [expect] tables: which matrices an expectation is about.
EXPECTATIONS = {"scale_invariant": "the matrices whose scale the output cannot see (invariance.py)"}
# How near ±½ counts as "follows sqrt(η/λ)": an [expect] table's default, and the report's
# band when the study has none.
TOLERANCE = 0.15
EXPECT = {
    "eta": (float, None, "the expected exponent p in ‖W‖ ∝ η^p"),
    "lambda": (float, None, "the expected exponent q in ‖W‖ ∝ λ^q"),
    "tolerance": (float, TOLERANCE, "how far p and q may stray"),
}


@dataclass(frozen=True)
class Variant:
    """A model the study trains: a family with its options, and what invariance.py measured on it."""

    name: str
    family: str
    options: tuple[tuple[str, str], ...]
    roles: dict[str, str]
    # module → largest relative change of the output when that matrix alone is scaled by 2 or ½
    change: dict[str, float]

    @property
    def invariant(self) -> tuple[str, ...]:
        return tuple(m for m, c in self.change.items() if c < invariance.TOLERANCE)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "family": self.family,
            "options": dict(self.options),
            "roles": self.roles,
            "change": self.change,
            "invariant": list(self.invariant),
        }


@dataclass(frozen=True)
class EquilibriumStudy:
    path: Path
    title: str
    specs: tuple[RunSpec, ...]
    variants: tuple[Variant, ...]
    eta_lambda_steps: float
    steady_fraction: float
    # (p, q, tolerance) every scale-invariant matrix is held to, or None.
    expect: tuple[float, float, float] | None
    parts: dict = field(default_factory=dict)  # no coordinate checks beside this kind
    kind = "equilibrium"

    def settings(self) -> dict:
        """What the fit and the report need besides the runs, saved in plan.json."""
        return {
            "equilibrium": {
                "eta_lambda_steps": self.eta_lambda_steps,
                "steady_fraction": self.steady_fraction,
                "invariance_tolerance": invariance.TOLERANCE,
                "variants": [v.to_dict() for v in self.variants],
            }
        }

    def baseline(self) -> list[dict]:
        """Gate rows: the η and λ exponents of ‖W‖ of every scale-invariant matrix, in every mode."""
        if self.expect is None:
            return []
        p, q, tol = self.expect
        modes = list(dict.fromkeys(s.mode for s in self.specs))
        return [
            {
                "mode": mode,
                "family": v.name,
                "optimizer": OPTIMIZER,
                "module": module,
                "metric": exponent_name("weight_fro", variable),
                "step": 0,
                "expected": expected,
                "tolerance": tol,
            }
            for mode in modes
            for v in self.variants
            for module in v.invariant
            for variable, expected in (("eta", p), ("lambda", q))
        ]


def read(r, raw: dict) -> EquilibriumStudy:
    """Validate an equilibrium study (`r`: studyfile.Reader over its file) and expand it into runs."""
    top = r.table(raw, TOP)
    modes = r.listed("modes", top["modes"], str, MODES)
    for key in ("width", "seeds", "batch_size", "seq_len", "eval_batches", "max_steps"):
        r.check(check_positive, key, top[key], True, key=key)
    for key in ("eta_lambda_steps", "diverge_factor"):
        r.check(check_positive, key, top[key], key=key)
    if top["mult_weight_decay"] < 0:
        raise r.error("mult_weight_decay", f"{top['mult_weight_decay']} is negative", "give it a value ≥ 0")
    if not 0 < top["steady_fraction"] <= 1:
        raise r.error(
            "steady_fraction",
            f"{top['steady_fraction']} is not in (0, 1]",
            "give the fraction of the run to average over, e.g. 0.25",
        )
    lrs = r.log2_grid("lr", top["lr"], LR, "learning rates")
    wds = r.log2_grid("wd", top["wd"], WD, "weight decays")
    steps = {(a, b): math.ceil(round(top["eta_lambda_steps"] / 2.0 ** (a + b), 6)) for a in lrs for b in wds}
    (a, b), longest = max(steps.items(), key=lambda kv: kv[1])
    if longest > top["max_steps"]:
        raise r.error(
            "eta_lambda_steps",
            f"the run at η = 2^{a:g}, λ = 2^{b:g} would take {longest} steps, more than max_steps = {top['max_steps']}",
            "raise lr.log2_min or wd.log2_min, lower eta_lambda_steps, or raise max_steps",
        )
    if not top["variants"]:
        raise r.error("variants", "is empty", "add a [variants.NAME] table with family = …")
    variants = tuple(_variant(r, name, raw_variant, top) for name, raw_variant in top["variants"].items())
    seen = {}
    for v in variants:
        other = seen.setdefault((v.family, v.options), v.name)
        if other != v.name:
            raise r.error(
                f"variants.{v.name}",
                f"is the same model as variants.{other}",
                "give the variants different families or options",
            )
    expect = _expect(r, top["expect"], variants)
    specs = [
        RunSpec(
            family=v.family,
            mode=mode,
            optimizer=OPTIMIZER,
            lr=2.0**a,
            width=top["width"],
            seed=seed,
            steps=n,
            horizon="sweep",
            weight_decay=2.0**b,
            batch_size=top["batch_size"],
            seq_len=top["seq_len"],
            mult_weight_decay=top["mult_weight_decay"],
            family_options=v.options,
            data=top["data"],
            metrics=METRICS,
            eval_batches=top["eval_batches"],
            diverge_factor=top["diverge_factor"],
        )
        for v in variants
        for mode in modes
        for (a, b), n in steps.items()
        for seed in range(top["seeds"])
    ]
    # Longest runs first, so that parallel workers drain together.
    specs.sort(key=lambda s: -s.steps)
    return EquilibriumStudy(
        r.path,
        top["title"] or r.path.stem,
        tuple(specs),
        variants,
        top["eta_lambda_steps"],
        top["steady_fraction"],
        expect,
    )


def _variant(r, name: str, raw: dict, top: dict) -> Variant:
    """One [variants.NAME] table, its family resolved and built once to classify its matrices."""
    key = f"variants.{name}"
    if not isinstance(raw, dict):
        raise r.error(key, f"{raw!r} is not a table", f"write it as [{key}] with family = …")
    v = r.table(raw, VARIANT, f"{key}.")
    options = {k: str(value) for k, value in v["options"].items()}
    fields = {"data": "data", "--option": f"{key}.options", "--widths": "width"}
    family = r.check(resolve, v["family"], None, top["data"], key=f"{key}.family", fields=fields)
    r.check(check_family, family, (top["width"],), top["width"], options, "sp", key=f"{key}.family", fields=fields)
    if not (family.builtin and family.vocab is None):
        r.check(resolve_source(top["data"]).check, top["seq_len"], key=f"{key}.family", fields=fields)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = family.make(top["width"], Hooks(), options)  # check_family built it already
    inputs = family.batch(PROBE_INDEX, top["batch_size"], top["seq_len"])[0]
    change = invariance.output_change(model, inputs)
    roles = {n: role_of(n, m) for n, m in model.named_modules() if n in change}
    return Variant(name, v["family"], tuple(sorted(options.items())), roles, change)


def _expect(r, raw: dict, variants: tuple[Variant, ...]) -> tuple[float, float, float] | None:
    for key, value in raw.items():
        if key not in EXPECTATIONS:
            raise r.error(f"expect.{key}", "unknown expectation", f"use one of {', '.join(EXPECTATIONS)}")
        if not isinstance(value, dict):
            raise r.error(
                f"expect.{key}", f"{value!r} is not a table", "write it as {eta = 0.5, lambda = -0.5, tolerance = 0.15}"
            )
    if "scale_invariant" not in raw:
        return None
    e = r.table(raw["scale_invariant"], EXPECT, "expect.scale_invariant.")
    r.check(check_positive, "tolerance", e["tolerance"], key="expect.scale_invariant.tolerance")
    if not any(v.invariant for v in variants):
        smallest = min((c, v.name, m) for v in variants for m, c in v.change.items())
        raise r.error(
            "expect.scale_invariant",
            f"no variant has a scale-invariant matrix (the smallest change of "
            f"the output when one is scaled: {smallest[0]:.2g}, {smallest[1]} {smallest[2]})",
            'add a variant with one, e.g. options = {norm = "layernorm"} for the mlp, or drop it',
        )
    return e["eta"], e["lambda"], e["tolerance"]
