"""Study files: a TOML file that expands into the runs of a study.

A study's `kind` (KINDS, at the end) says what its runs are for and how its file reads:
`lr_transfer` (the default) sweeps learning rates across widths; `equilibrium`
(equilibrium_study.py) sweeps learning rate × weight decay at one width; `width`
(width_study.py) trains schemes across widths and judges claims about their exponents.

Every error names the file, the line and the key, because a study is written by hand and
read long after. `tomllib` keeps no positions, so a key's line is looked up in the text."""

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from . import coordcheck, equilibrium_study
from .data import resolve_source
from .errors import InputError
from .families import resolve
from .probes import METRICS
from .spec import MODES, MULT_WEIGHT_DECAY, OPTIMIZERS, RunSpec, canonical_mode, has_mup, has_mup_lr, multiplier_kind

# key: (type, default; None = required, help)
TOP = {
    "title": (str, "", "a heading for the report"),
    "families": (list, None, "families to sweep, e.g. [\"transformer\"]"),
    "modes": (list, None, f"parametrizations among {', '.join(MODES)}"),
    "optimizers": (list, ["adam"], f"optimizers among {', '.join(OPTIMIZERS)}"),
    "widths": (list, None, "widths, increasing, e.g. [32, 64, 128]"),
    "seeds": (int, 1, "runs seeds 0…N−1"),
    "steps": (int, 200, "optimizer steps per run"),
    "batch_size": (int, 8, "sequences per batch"),
    "seq_len": (int, 64, "tokens per sequence"),
    "weight_decay": (float, 0.0, "weight decay on matrices"),
    "mult_weight_decay": (float, MULT_WEIGHT_DECAY, "weight decay on learnable multipliers"),
    "multipliers": (dict, {}, "lrm modes: learnable multipliers by role, e.g. {attn_k = \"scalar\", head = \"none\"}"),
    "mult_init": (float, 1.0, "the learnable multipliers' start value"),
    "base_width": (int, None, "μP base width; default: the smallest width"),
    "data": (str, "stdlib", "synthetic, stdlib, text:PATH or tokens:PATH"),
    "metrics": (list, [], f"probe metrics to record besides the losses, among {', '.join(METRICS)}"),
    "eval_batches": (int, 4, "held-out batches behind each evaluation loss"),
    "options": (dict, {}, "family options, e.g. {layers = 2}"),
    "mup_multipliers": (dict, {}, "fixed μP multipliers (mup modes), e.g. {embed = 2.0}"),
    "clip": (float, None, "the largest global gradient norm, multipliers left out; default: no clipping"),
    "clip_multipliers": (bool, False, "count and clip the multipliers' gradients too (lrm modes)"),
    "muon_adjust_lr": (str, None, "torch Muon's lr adjustment for the muon runs: original or match_rms_adamw"),
    "adam_eps_scaling": (bool, False, "ε / width_mult for each Adam parameter (μP modes, Adam-family runs)"),
    "weight_decay_kind": (str, "decoupled", "decoupled (W ← W − η·λ·W) or spectral (top singular value only)"),
    "lrm_impl": (str, None, "how learnable multipliers are computed for the lrm runs: autograd or fused"),
    "lr": (dict, None, "the learning-rate grid: [lr] log2_min, log2_max, log2_step"),
    "transfer": (dict, {}, "[transfer] tolerance, diverge_factor"),
    "expect": (dict, {}, "[expect] MODE = {alpha = …, tolerance = …}: the drift exponent `muscale gate` checks"),
    "coord_check": (dict, None, "[coord_check] modes, widths, steps, seeds: coordinate checks run beside the "
                    "sweep and linked from its report"),
}
COORD_CHECK = {"modes": (list, None, "modes to check; default: the study's"),
               "widths": (list, None, "widths; default: the short horizon's"),
               "steps": (int, None, "Adam steps; default: the short horizon's"),
               "seeds": (int, None, "seeds; default: the short horizon's")}
LR = {"log2_min": (float, None, "the smallest log2 learning rate"),
      "log2_max": (float, None, "the largest log2 learning rate"),
      "log2_step": (float, 1.0, "the grid spacing in log2 units")}
TRANSFER = {"tolerance": (float, 0.25, "|α| of the optimum's drift that still counts as transfer"),
            "diverge_factor": (float, 1.5, "held-out loss above this multiple of its start is divergence")}
# The study key behind each command-line option a shared validation may name.
FIELD_KEYS = {"--widths": "widths", "--base-width": "base_width", "--option": "options", "--family": "families",
              "--batch": "families", "data": "data", "--clip": "clip", "--clip-multipliers": "clip_multipliers",
              "--muon-adjust-lr": "muon_adjust_lr", "--adam-eps-scaling": "adam_eps_scaling",
              "--weight-decay-kind": "weight_decay_kind", "--lrm-impl": "lrm_impl",
              "--multiplier": "multipliers", "--mult-init": "mult_init"}
# Optimizer keys that apply to some runs only: a study sets them on the runs they apply to,
# and refuses them, as the command line does, when they apply to none.
SCOPED = {"clip_multipliers": lambda mode, optimizer: multiplier_kind(mode) is not None,
          "muon_adjust_lr": lambda mode, optimizer: optimizer == "muon",
          "adam_eps_scaling": lambda mode, optimizer: optimizer != "sgd" and has_mup_lr(mode),
          "lrm_impl": lambda mode, optimizer: multiplier_kind(mode) is not None}
TRAINING = ("clip", "clip_multipliers", "muon_adjust_lr", "adam_eps_scaling", "weight_decay_kind", "lrm_impl")
EXPECT = {"alpha": (float, None, "the expected drift exponent of η* ∝ d^α"),
          "tolerance": (float, None, "how far α may stray; default: [transfer] tolerance")}
# Keys whose absence means "derive it" (None), not an error.
OPTIONAL = ("base_width", "tolerance", "coord_check", "clip", "muon_adjust_lr", "lrm_impl", *COORD_CHECK)
MIN_GRID = 3  # a quadratic around the best point needs both neighbours


@dataclass(frozen=True)
class Study:
    path: Path
    title: str
    specs: tuple[RunSpec, ...]
    lrs_log2: tuple[float, ...]
    tolerance: float
    # mode → (expected α, tolerance) of the optimum's drift, for `muscale gate`.
    expect: dict[str, tuple[float, float]]
    # Coordinate checks beside the sweep, by part name (family-mode), each its own report.
    parts: dict[str, tuple[RunSpec, ...]]
    kind: ClassVar[str] = "lr_transfer"

    def settings(self) -> dict:
        """What the analysis needs besides the runs, saved in plan.json."""
        return {"tolerance": self.tolerance}

    def baseline(self) -> list[dict]:
        """The expectations as gate rows, one per family × optimizer × expected mode."""
        settings = sorted({(s.family, s.optimizer, s.steps) for s in self.specs})
        return [{"mode": mode, "family": family, "optimizer": optimizer, "module": "lr_opt", "metric": "lr_opt",
                 "step": steps, "expected": alpha, "tolerance": tol}
                for mode, (alpha, tol) in self.expect.items() for family, optimizer, steps in settings]


class _Reader:
    def __init__(self, path: Path, text: str):
        self.path, self.lines = path, text.splitlines()

    def where(self, key: str) -> str:
        """`file:line: key` for a dotted key such as lr.log2_min."""
        line = self._line(key)
        return f"{self.path}:{line}: {key}" if line else f"{self.path}: {key}"

    def _line(self, key: str) -> int | None:
        """The line of `key` = …, of its [header], or failing both (an inline table) its parent's."""
        table, _, name = key.rpartition(".")
        current = ""
        for number, line in enumerate(self.lines, 1):
            header = re.match(r"\s*\[\s*([^\]]+?)\s*\]", line)
            if header:
                current = header.group(1)
                if current == key:
                    return number
            elif current == table and re.match(rf"\s*\"?{re.escape(name)}\"?\s*=", line):
                return number
        return self._line(table) if table else None

    def error(self, key: str, problem: str, fix: str) -> InputError:
        return InputError(self.where(key), problem, fix)

    def table(self, raw: dict, schema: dict, prefix: str = "") -> dict:
        for key in raw:
            if key not in schema:
                raise self.error(prefix + key, "unknown key", f"use one of {', '.join(schema)}")
        out = {}
        for key, (kind, default, help_) in schema.items():
            if key not in raw:
                if default is None and key not in OPTIONAL:
                    raise self.error(prefix + key, "missing", f"add {key} = … ({help_})")
                out[key] = default
                continue
            value = raw[key]
            ok = (isinstance(value, float | int) and not isinstance(value, bool) if kind is float
                  else isinstance(value, int) and not isinstance(value, bool) if kind is int
                  else isinstance(value, kind))
            if not ok:
                raise self.error(prefix + key, f"{value!r} is not a{'n' if kind is int else ''} {kind.__name__}",
                                 f"write {key} as {help_}")
            out[key] = float(value) if kind is float else value
        return out

    def log2_grid(self, key: str, raw: dict, schema: dict, what: str) -> tuple[float, ...]:
        """The [key] table (log2_min, log2_max, log2_step) as its grid of at least MIN_GRID log2 values."""
        g = self.table(raw, schema, f"{key}.")
        if g["log2_step"] <= 0:
            raise self.error(f"{key}.log2_step", f"{g['log2_step']} is not positive", "give a step > 0, e.g. 1")
        values = grid(g["log2_min"], g["log2_max"], g["log2_step"])
        if len(values) < MIN_GRID:
            raise self.error(f"{key}.log2_max", f"the grid {list(values)} has fewer than {MIN_GRID} {what}",
                             f"make log2_max ≥ log2_min + {MIN_GRID - 1}·log2_step")
        return values

    def listed(self, key: str, values: list, kind: type, allowed: tuple | None = None) -> list:
        if not values:
            raise self.error(key, "is empty", "list at least one value")
        for v in values:
            if not isinstance(v, kind) or isinstance(v, bool):
                raise self.error(key, f"{v!r} is not a{'n' if kind is int else ''} {kind.__name__}",
                                 f"list {kind.__name__} values only")
            if allowed is not None and v not in allowed:
                raise self.error(key, f"unknown value '{v}'", f"use one of {', '.join(allowed)}")
        return values

    def check(self, fn, *args, key: str | None = None, context: str = "", fields: dict[str, str] | None = None):
        """Run a coord-check validation and re-aim its error at the study key: the one
        `fields` gives for the command-line option the check names, else `key`, else the
        study-wide key of that option."""
        try:
            return fn(*args)
        except InputError as exc:
            target = (fields or {}).get(exc.field) or key or FIELD_KEYS.get(exc.field, "families")
            raise self.error(target, context + exc.problem, exc.fix) from None


def grid(log2_min: float, log2_max: float, log2_step: float) -> tuple[float, ...]:
    count = int((log2_max - log2_min) / log2_step + 1e-9) + 1 if log2_step > 0 else 0
    return tuple(round(log2_min + i * log2_step, 6) for i in range(max(count, 0)))


def load(path: Path | str) -> "Study | equilibrium_study.EquilibriumStudy":
    """Parse and validate a study of any kind, resolving every family against its data,
    before any run starts or any file is written."""
    path = Path(path)
    if not path.is_file():
        raise InputError("STUDY", f"{path} is not a file", "give the path of a study TOML file")
    text = path.read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(str(path), f"not valid TOML ({exc})", "fix the syntax at that line") from None
    r = _Reader(path, text)
    kind = raw.pop("kind", "lr_transfer")
    if kind not in KINDS:
        raise r.error("kind", f"unknown kind {kind!r}", f"use one of {', '.join(KINDS)}")
    return KINDS[kind](r, raw)


def _lr_transfer(r: _Reader, raw: dict) -> Study:
    """A learning-rate transfer sweep: family × mode × optimizer × width × learning rate × seed."""
    path = r.path
    top = r.table(raw, TOP)
    transfer = r.table(top["transfer"], TRANSFER, "transfer.")
    runs = across_widths(r, top)
    if top["metrics"]:
        r.listed("metrics", top["metrics"], str, METRICS)
    r.check(coordcheck.check_positive, "eval_batches", top["eval_batches"], True, key="eval_batches")
    lrs = r.log2_grid("lr", top["lr"], LR, "learning rates")
    for key in ("tolerance", "diverge_factor"):
        r.check(coordcheck.check_positive, key, transfer[key], key=f"transfer.{key}")
    expect = {}
    for mode, raw_expect in top["expect"].items():
        if mode not in runs.modes:
            raise r.error(f"expect.{mode}", "is not one of the study's modes", f"use one of {', '.join(runs.modes)}")
        if not isinstance(raw_expect, dict):
            raise r.error(f"expect.{mode}", f"{raw_expect!r} is not a table", "write it as {alpha = …, tolerance = …}")
        e = r.table(raw_expect, EXPECT, f"expect.{mode}.")
        tol = transfer["tolerance"] if e["tolerance"] is None else e["tolerance"]
        r.check(coordcheck.check_positive, "tolerance", tol, key=f"expect.{mode}.tolerance")
        expect[canonical_mode(mode)] = (e["alpha"], tol)
    specs = tuple(
        RunSpec(**fields, lr=2.0**e, width=width, seed=seed, horizon="sweep", metrics=tuple(top["metrics"]),
                eval_batches=top["eval_batches"], diverge_factor=transfer["diverge_factor"])
        for fields in runs.fields for width in runs.widths for e in lrs for seed in range(top["seeds"]))
    return Study(path, top["title"] or path.stem, specs, lrs, transfer["tolerance"], expect,
                 _parts(r, top, runs.families, runs.modes, runs.options, runs.base_width))


@dataclass(frozen=True)
class Runs:
    """What the keys every study across widths shares say (across_widths)."""

    families: list[str]
    modes: list[str]
    widths: tuple[int, ...]
    base_width: int
    options: dict[str, str]
    # Per family × mode × optimizer, the RunSpec fields those keys give.
    fields: list[dict]


def across_widths(r: _Reader, top: dict) -> Runs:
    """Validate the keys a study across widths shares (families, modes, optimizers, widths,
    seeds, steps, batches, weight decays, multipliers, options, training keys)."""
    families = r.listed("families", top["families"], str)
    modes = r.listed("modes", top["modes"], str, MODES)
    optimizers = r.listed("optimizers", top["optimizers"], str, OPTIMIZERS)
    widths = tuple(r.listed("widths", top["widths"], int))
    r.check(coordcheck.check_widths, widths, key="widths")
    for key in ("seeds", "steps", "batch_size", "seq_len", "base_width"):
        r.check(coordcheck.check_positive, key, top[key], True, key=key)
    for key in ("weight_decay", "mult_weight_decay"):
        if top[key] < 0:
            raise r.error(key, f"{top[key]} is negative", f"give {key} a value ≥ 0")
    base_width = top["base_width"] or widths[0]
    options = {k: str(v) for k, v in top["options"].items()}
    for mode in modes:
        if has_mup(mode):
            r.check(coordcheck.check_multipliers, top["mup_multipliers"], mode, key="mup_multipliers")
    training = _training(r, top, modes, optimizers)
    placement = tuple(sorted(top["multipliers"].items()))
    r.check(coordcheck.check_placement, top["multipliers"], next((m for m in modes if multiplier_kind(m)), modes[0]),
            top["mult_init"])
    for family in families:
        fam = r.check(resolve, family, None, top["data"])
        for mode in modes:
            r.check(coordcheck.check_family, fam, widths, base_width, options, mode, context=f"{family}: ")
        if family != "mlp":
            r.check(resolve_source(top["data"]).check, top["seq_len"], key="seq_len")
    fields = [dict(family=family, mode=canonical_mode(mode), optimizer=optimizer, steps=top["steps"],
                   weight_decay=top["weight_decay"], batch_size=top["batch_size"], seq_len=top["seq_len"],
                   mult_weight_decay=top["mult_weight_decay"], base_width=base_width,
                   multipliers=placement if multiplier_kind(mode) else (),
                   mult_init=top["mult_init"] if multiplier_kind(mode) else 1.0,
                   family_options=tuple(sorted(options.items())), data=top["data"],
                   mup_multipliers=tuple(sorted(top["mup_multipliers"].items())) if has_mup(mode) else (),
                   **training[mode, optimizer])
              for family in families for mode in modes for optimizer in optimizers]
    return Runs(families, modes, widths, base_width, options, fields)


def _training(r: _Reader, top: dict, modes: list[str], optimizers: list[str]) -> dict[tuple[str, str], dict]:
    """The optimizer keys of each mode × optimizer, validated as coord-check validates them."""
    runs = {}
    for mode in modes:
        for optimizer in optimizers:
            fields = {key: top[key] if SCOPED.get(key, lambda m, o: True)(mode, optimizer) else TOP[key][1]
                      for key in TRAINING}
            r.check(lambda: coordcheck.check_optimizer(mode, optimizer, top["weight_decay"], **fields))
            runs[mode, optimizer] = {key: value for key, value in fields.items() if value is not None}
    for key, applies in SCOPED.items():
        if top[key] != TOP[key][1] and not any(applies(m, o) for m in modes for o in optimizers):
            fields = runs[modes[0], optimizers[0]] | {key: top[key]}
            r.check(lambda: coordcheck.check_optimizer(modes[0], optimizers[0], top["weight_decay"], **fields))
    return runs


def _parts(r: _Reader, top: dict, families: list[str], modes: list[str], options: dict,
           base_width: int) -> dict[str, tuple[RunSpec, ...]]:
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
            parts[f"{family.replace(':', '_')}-{mode}"] = tuple(r.check(
                lambda: coordcheck.plan(mode, family, widths, steps=cc["steps"], seeds=cc["seeds"], options=options,
                                        base_width=base_width, mup_multipliers=multipliers,
                                        multipliers=top["multipliers"] if multiplier_kind(mode) else None,
                                        mult_init=top["mult_init"] if multiplier_kind(mode) else 1.0),
                key="coord_check"))
    return parts


# A study's `kind` → its reader: (_Reader, the parsed TOML less `kind`) → a study with
# `specs`, `parts`, `kind`, `settings()` and `baseline()` (what sweep.write_plan saves).
from . import width_study  # noqa: E402  (it builds on the readers above)

KINDS = {"lr_transfer": _lr_transfer, "equilibrium": equilibrium_study.load, "width": width_study.load}
