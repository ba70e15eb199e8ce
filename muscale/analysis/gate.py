"""The gate: fitted exponents against a baseline, as a small pure function with named exit codes.

Each row is judged by the one rule (verdicts.py). A row regresses (`fail`) when it is
settled and its whole confidence interval lies outside expected ± tolerance, so seed noise
alone cannot fail a build; a row the baseline expects but the results lack is a failure,
never a silent pass. A row that is inconclusive (an interval wider than the band), warned
(its estimate outside, its interval reaching in) or unsettled (still moving) does not fail
the build, and is printed and annotated as what it is."""

import functools
import tomllib
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import tomli_w

from ..errors import FAIL, OK, InputError
from ..run.store import write_atomic
from .verdicts import combine, judge_one

KEY = ("mode", "family", "optimizer", "module", "metric", "step")
# Keys a row has only on a depth grid: the fit's axis (absent: width), the depth rule, and the
# value of the other axis it was fitted at. A baseline row without them matches rows without them.
GRID = ("axis", "depth_rule", "depth", "width")
# Where a coordinate check over depths writes its depth exponents (kinds/coord_check).
DEPTH_EXPONENTS = "depth_exponents.csv"
DEFAULT_TOL = 0.1


def _grid(row: dict) -> tuple:
    return tuple(row.get(k) or ("width" if k == "axis" else None) for k in GRID)


@dataclass(frozen=True)
class Check:
    mode: str
    family: str
    optimizer: str
    module: str
    metric: str
    step: int
    expected: float
    tolerance: float
    alpha: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    settled: bool | None = None
    grid: tuple = (None,) * len(GRID)  # _grid: where on a depth grid the row was fitted

    @functools.cached_property
    def status(self) -> str:
        """verdicts.judge_one's verdict, or `missing`; judged once, read by every output."""
        if self.alpha is None or self.alpha != self.alpha:
            return "missing"
        return judge_one(self.alpha, self.ci_low, self.ci_high, self.expected, self.tolerance, self.settled)

    @property
    def failed(self) -> bool:
        return self.status in ("fail", "missing")

    @property
    def name(self) -> str:
        at = ", ".join(f"{k} {v}" for k, v in zip(GRID[1:], self.grid[1:]) if v is not None)
        axis = f" (depth exponent{', ' + at if at else ''})" if self.grid[0] == "depth" else f" ({at})" if at else ""
        return f"{self.mode} {self.family} {self.optimizer} {self.module} {self.metric} step {self.step}{axis}"

    def line(self) -> str:
        measured = (
            "missing from the results"
            if self.status == "missing"
            else (
                f"α={self.alpha:+.3f}"
                + (f" [{self.ci_low:+.3f}, {self.ci_high:+.3f}]" if self.ci_low is not None else "")
            )
        )
        return f"{self.status.upper():7} {self.name}: {measured}, expected {self.expected:+.3f} ± {self.tolerance:.3f}"


def baseline_rows(exponents: pl.DataFrame, tol: float = DEFAULT_TOL, metrics=None, last_step_only=False) -> list[dict]:
    rows = exponents.filter(pl.col("alpha").is_finite())
    if metrics:
        rows = rows.filter(pl.col("metric").is_in(list(metrics)))
    if last_step_only:
        rows = rows.filter(pl.col("step") == pl.col("step").max().over("mode", "family", "optimizer"))
    grid = [k for k in GRID if k in rows.columns]
    return [
        dict(zip(KEY, r))
        | {k: v for k, v in zip(grid, r[len(KEY) : -1]) if v is not None}
        | {"expected": round(r[-1], 6), "tolerance": tol}
        for r in rows.select(*KEY, *grid, "alpha").iter_rows()
    ]


def write_baseline(path: Path, rows: list[dict]) -> None:
    write_atomic(Path(path), tomli_w.dumps({"muscale": {"baseline": 1}, "exponent": rows}))


def read_baseline(path: Path) -> list[dict]:
    """Rows of a baseline file; anything unreadable is a usage error naming the fix."""
    fix = "write one with `muscale baseline DIR -o FILE`"
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError("--baseline", f"cannot read {path} ({exc})", fix) from None
    rows = data.get("exponent")
    if not isinstance(rows, list) or not rows:
        raise InputError("--baseline", f"{path} has no [[exponent]] entries", fix)
    for i, row in enumerate(rows):
        missing = [k for k in (*KEY, "expected", "tolerance") if k not in row]
        if missing:
            raise InputError("--baseline", f"{path}: exponent {i + 1} lacks {', '.join(missing)}", fix)
    return rows


def check(exponents: pl.DataFrame, baseline: list[dict], tol: float | None = None) -> list[Check]:
    """One Check per baseline row, measured against the results' exponents."""
    measured = {(*(r[k] for k in KEY), *_grid(r)): r for r in exponents.iter_rows(named=True)}
    checks = []
    for row in baseline:
        got = measured.get((*(row[k] for k in KEY), *_grid(row)), {})
        checks.append(
            Check(
                **{k: row[k] for k in KEY},
                grid=_grid(row),
                expected=float(row["expected"]),
                tolerance=float(row["tolerance"] if tol is None else tol),
                alpha=got.get("alpha"),
                ci_low=got.get("ci_low"),
                ci_high=got.get("ci_high"),
                settled=got.get("settled"),
            )
        )
    return checks


def outcome(checks: list[Check]) -> str:
    """The checks' one verdict: fail when any fails or is missing, pass when all pass, info
    when there are none, else the worst of what is left (unsettled, warn, inconclusive)."""
    if not checks:
        return "info"
    return combine(["fail" if c.failed else c.status for c in checks])


def exit_code(checks: list[Check]) -> int:
    return FAIL if outcome(checks) == "fail" else OK


def junit_xml(checks: list[Check]) -> str:
    """Failures fail their test case; an undecided row (inconclusive, warn, unsettled) is a
    skipped one, with the reason, so a CI page shows it without going red."""
    failures = sum(c.failed for c in checks)
    suite = ET.Element("testsuite", name="muscale gate", tests=str(len(checks)), failures=str(failures))
    for c in checks:
        case = ET.SubElement(
            suite, "testcase", classname=f"muscale.{c.mode}.{c.family}.{c.module}", name=f"{c.metric} step {c.step}"
        )
        if c.failed:
            ET.SubElement(case, "failure", message=c.line()).text = c.line()
        elif c.status != "pass":
            ET.SubElement(case, "skipped", message=c.line())
    root = ET.Element("testsuites")
    root.append(suite)
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


def github_annotations(checks: list[Check]) -> list[str]:
    return [
        f"::{'error' if c.failed else 'warning'} title=muscale gate::{c.line()}" for c in checks if c.status != "pass"
    ]
