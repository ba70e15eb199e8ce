"""Study files: a TOML file a person writes by hand and reads long after, so every error
names the file, the line and the key. `tomllib` keeps no positions, so a key's line is
looked up in the text."""

import re
import tomllib
from pathlib import Path

from ..config.options import STUDY_KEYS
from ..errors import InputError

# Keys whose absence means "derive it" (None), not an error, or that a kind requires only in some
# studies (mult_lr: a width study with learnable multipliers); the last four: a [coord_check] table's.
OPTIONAL = (
    "base_width",
    "mult_lr",
    "tolerance",
    "coord_check",
    "clip",
    "muon_adjust_lr",
    "lrm_impl",
    "beta2",
    "base_depth",
    "depth_alpha",
    "modes",
    "widths",
    "steps",
    "seeds",
)


MIN_GRID = 3  # a quadratic around the best point needs both neighbours


class Reader:
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
                    raise self.error(prefix + key, "missing", f"add {key} = … ({help_.rstrip('.')})")
                out[key] = default
                continue
            value = raw[key]
            ok = (
                isinstance(value, float | int) and not isinstance(value, bool)
                if kind is float
                else isinstance(value, int) and not isinstance(value, bool)
                if kind is int
                else isinstance(value, kind)
            )
            if not ok:
                article = "an" if kind is int else "a"
                raise self.error(
                    prefix + key,
                    f"{value!r} is not {article} {kind.__name__}",
                    f"write {key} as {article} {kind.__name__} ({help_.rstrip('.')})",
                )
            out[key] = float(value) if kind is float else value
        return out

    def log2_grid(self, key: str, raw: dict, schema: dict, what: str) -> tuple[float, ...]:
        """The [key] table (log2_min, log2_max, log2_step) as its grid of at least MIN_GRID log2 values."""
        g = self.table(raw, schema, f"{key}.")
        if g["log2_step"] <= 0:
            raise self.error(f"{key}.log2_step", f"{g['log2_step']} is not positive", "give a step > 0, e.g. 1")
        values = grid(g["log2_min"], g["log2_max"], g["log2_step"])
        if len(values) < MIN_GRID:
            raise self.error(
                f"{key}.log2_max",
                f"the grid {list(values)} has fewer than {MIN_GRID} {what}",
                f"make log2_max ≥ log2_min + {MIN_GRID - 1}·log2_step",
            )
        return values

    def listed(self, key: str, values: list | None, kind: type, allowed: tuple | None = None) -> list:
        """`values` None: the key is missing (OPTIONAL keys may come as None)."""
        if values is None:
            raise self.error(key, "missing", f"add {key} = [...]")
        if not values:
            raise self.error(key, "is empty", "list at least one value")
        for v in values:
            if not isinstance(v, kind) or isinstance(v, bool):
                raise self.error(
                    key,
                    f"{v!r} is not a{'n' if kind is int else ''} {kind.__name__}",
                    f"list {kind.__name__} values only",
                )
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
            target = (fields or {}).get(exc.field) or key or STUDY_KEYS.get(exc.field, "families")
            raise self.error(target, context + exc.problem, exc.fix) from None


def grid(log2_min: float, log2_max: float, log2_step: float) -> tuple[float, ...]:
    count = int((log2_max - log2_min) / log2_step + 1e-9) + 1 if log2_step > 0 else 0
    return tuple(round(log2_min + i * log2_step, 6) for i in range(max(count, 0)))


def parse(path: Path | str) -> tuple[Reader, dict]:
    """The study file at `path` as a Reader over its text and its parsed TOML."""
    path = Path(path)
    if not path.is_file():
        raise InputError("STUDY", f"{path} is not a file", "give the path of a study TOML file")
    text = path.read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(str(path), f"not valid TOML ({exc})", "fix the syntax at that line") from None
    return Reader(path, text), raw
