"""Width studies (`kind = "width"`): every scheme (mode) × family × width × seed trained once
on the long horizon, streamed batches and AdamW, and the study's claims about the width
exponents (analysis.py) judged from the fits.

The weight-decay equilibrium ‖W‖ ∝ sqrt(η/λ) settles in about 1/(η·λ) steps, so the
study refuses fewer than `eta_lambda_steps` of them; an interval over seeds needs two
seeds at least. The learnable multipliers' learning rate (`mult_lr`) is the study's explicit
choice where a scheme has them, and refused where none has: it would reach no run."""

import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path

from ...analysis.derived import DERIVED, SOURCES
from ...config.options import study_keys
from ...config.spec import RunSpec, canonical_mode
from ...measure.metrics import METRICS
from ...models.roles import ROLES
from ...study.across_widths import LONG, across_widths, on_long_horizon
from ...study.studyfile import Reader
from . import clock
from .analysis import Claim

# A width study's keys: the long horizon's (across_widths.LONG), with every metric recorded by
# default, the equilibrium's clock for LR-only μP and the claims.
TOP = (
    LONG
    | study_keys("metrics", metrics=list(METRICS))
    | {
        "matched_time": (
            bool,
            False,
            "true: schemes whose η·λ falls with width (mup-lr-only) train steps × width / base_width, "
            "so every width reaches the base width's η·λ·t, and are read on its clock",
        ),
        "claim": (list, [], "[[claim]] tables: name, mode, metric, roles, alpha, tolerance, gate"),
    }
)
CLAIM = {
    "name": (str, None, 'what the claim says, e.g. "multipliers ≈ d^-1 on projectors"'),
    "mode": (str, None, "the scheme it is about, one of the study's modes"),
    "metric": (str, None, f"a recorded metric, or one derived from them: {', '.join(DERIVED)}"),
    "roles": (list, [], f"the roles it covers among {', '.join(ROLES)}; default: every role with the metric"),
    "alpha": (float, None, "the expected width exponent"),
    "tolerance": (float, None, "how far α may stray, e.g. 0.2"),
    "gate": (bool, False, "true: `muscale gate` fails when the claim is not reproduced"),
    "note": (str, "", "a line for the report"),
    "control": (bool, False, "true: a must-fail control, the scheme where the claim must not be reproduced"),
}


@dataclass(frozen=True)
class WidthStudy:
    path: Path
    title: str
    specs: tuple[RunSpec, ...]
    claims: tuple[Claim, ...]
    parts: dict
    # The base width's steps, on whose clock matched runs are read (clock.py); None: one clock.
    clock: int | None = None
    kind = "width"

    def settings(self) -> dict:
        """The claims, for the fit, the report and the gate, and the clock (plan.json)."""
        claims = {"claims": [vars(c) | {"roles": list(c.roles)} for c in self.claims]}
        return claims | ({"clock": self.clock} if self.clock else {})

    def baseline(self) -> list[dict]:
        """No rows before the runs: the gated claims become gate rows once the fits say which
        modules they cover (analysis.baseline)."""
        return []


def read(r: Reader, raw: dict) -> WidthStudy:
    """Validate a width study (`r`: studyfile.Reader over its file) and expand it into runs."""
    top = r.table(raw, TOP)
    runs = across_widths(r, top)
    metrics = r.listed("metrics", top["metrics"], str, METRICS)
    # Every metric is None: a metric added later leaves the run ids of such a study alone.
    specs = on_long_horizon(r, top, runs, None if set(metrics) == set(METRICS) else tuple(metrics))
    claims = tuple(_claim(r, i, c, runs.modes, metrics) for i, c in enumerate(top["claim"]))
    if top["matched_time"]:
        specs = _matched(r, specs, top["steps"])
    return WidthStudy(
        r.path, top["title"] or r.path.stem, specs, claims, {}, top["steps"] if top["matched_time"] else None
    )


def _matched(r: Reader, specs: tuple[RunSpec, ...], steps: int) -> tuple[RunSpec, ...]:
    """The runs with matched η·λ·t: steps × width / base_width wherever η·λ falls with width."""
    if not any(clock.matched(s) for s in specs):
        raise r.error(
            "matched_time",
            "no mode of the study lets η·λ fall with width",
            "add mode mup-lr-only, or drop matched_time",
        )
    out = []
    for s in specs:
        if not clock.matched(s):
            out.append(s)
            continue
        own = clock.steps(steps, s)
        if own is None:
            whole = math.lcm(*(t.base_width // math.gcd(t.base_width, t.width) for t in specs if clock.matched(t)))
            raise r.error(
                "steps",
                f"{steps} steps × width {s.width} / base_width {s.base_width} is not a whole number of steps",
                f"give steps a multiple of {whole}",
            )
        out.append(dataclasses.replace(s, steps=own))
    return tuple(out)


def _claim(r: Reader, index: int, raw, modes: list[str], metrics: list[str]) -> Claim:
    """The index-th [[claim]] table; errors name it as claim.N.KEY (N from 1) at its line."""
    at = _ClaimReader(r, index)
    if not isinstance(raw, dict):
        raise at.error("", f"{raw!r} is not a table", "write each claim as a [[claim]] table")
    c = at.table(raw, CLAIM)
    if c["mode"] not in modes:
        raise at.error("mode", f"'{c['mode']}' is not one of the study's modes", f"use one of {', '.join(modes)}")
    if c["metric"] not in (*metrics, *DERIVED):
        raise at.error(
            "metric",
            f"'{c['metric']}' is neither recorded by the study nor derived",
            f"use one of {', '.join((*metrics, *DERIVED))}",
        )
    if c["metric"] in DERIVED and not set(SOURCES[c["metric"]]) & set(metrics):
        raise at.error(
            "metric",
            f"{c['metric']} is derived from {', '.join(SOURCES[c['metric']])}, none recorded",
            "add them to metrics",
        )
    if c["roles"]:
        at.listed("roles", c["roles"], str, ROLES)
    if c["tolerance"] is None:
        raise at.error("tolerance", "missing", f"add tolerance = … ({CLAIM['tolerance'][2]})")
    if not c["tolerance"] > 0:
        raise at.error("tolerance", f"{c['tolerance']} is not positive", "give a tolerance > 0, e.g. 0.2")
    if c["control"] and c["gate"]:
        raise at.error(
            "gate", "a control claim is judged in the report, not by the gate", "drop gate = true, or control = true"
        )
    return Claim(
        c["name"],
        canonical_mode(c["mode"]),
        c["metric"],
        c["alpha"],
        c["tolerance"],
        tuple(c["roles"]),
        c["gate"],
        c["note"],
        c["control"],
    )


class _ClaimReader(Reader):
    """A Reader whose keys are those of one [[claim]] table: `file:line: claim.N.key`, the
    line found within that table."""

    def __init__(self, r: Reader, index: int):
        self.path, self.lines, self.index = r.path, r.lines, index

    def where(self, key: str) -> str:
        headers = [n for n, line in enumerate(self.lines, 1) if re.match(r"\s*\[\[\s*claim\s*\]\]", line)]
        start = headers[self.index] if self.index < len(headers) else None
        line = start
        if start is not None and key:
            end = next(
                (n for n, text in enumerate(self.lines, 1) if n > start and text.lstrip().startswith("[")),
                len(self.lines) + 1,
            )
            line = next((n for n in range(start, end) if self.lines[n - 1].split("=")[0].strip(' "') == key), start)
        name = f"claim.{self.index + 1}" + (f".{key}" if key else "")
        return f"{self.path}:{line}: {name}" if line else f"{self.path}: {name}"
