"""Depth-profile studies (`kind = "depth_profile"`): every scheme (mode) × family × depth ×
seed trained once on the long horizon at one width, each run recording what its blocks add
to the stream, its branch outputs and its multipliers, so that their profile along the
depth can be compared between schemes (analysis.py). `sp` is the contrast and must be among
the modes, with at least one scheme that has learnable multipliers."""

from dataclasses import dataclass
from pathlib import Path

from ...config.spec import RunSpec, canonical_mode, multiplier_kind
from ...models import depth, modes
from ...models.families import resolve
from ...study.across_widths import LONG, across_widths, on_long_horizon
from ...study.studyfile import Reader
from .analysis import CONTRAST

TOP = LONG
# What the analysis reads: the blocks' contributions, the branch outputs and the multipliers.
METRICS = ("contrib_rms", "act_rms", "mult_scalar", "mult_row_rms", "mult_col_rms")


@dataclass(frozen=True)
class DepthProfileStudy:
    path: Path
    title: str
    specs: tuple[RunSpec, ...]
    parts: dict
    kind = "depth_profile"

    def settings(self) -> dict:
        return {}

    def baseline(self) -> list[dict]:
        """No rows before the runs: the claims are one-sided (analysis.py), which a gate row's
        expected ± tolerance cannot say; `muscale baseline` stores the measured profile."""
        return []


def read(r: Reader, raw: dict) -> DepthProfileStudy:
    """Validate a depth-profile study (`r`: studyfile.Reader over its file) and expand it into runs."""
    top = r.table(raw, TOP)
    if not top["depths"]:
        raise r.error("depths", "missing", "list the depths to profile, e.g. depths = [2, 4, 8]")
    shallow = [d for d in top["depths"] if isinstance(d, int) and d < 2]
    if shallow:
        raise r.error("depths", f"{shallow[0]} block has no profile", "give depths of 2 blocks or more")
    runs = across_widths(r, top, depth_sweep=True)
    if len(runs.widths) > 1:
        raise r.error("widths", "a depth profile runs at one width", "list one width")
    schemes = [canonical_mode(m) for m in runs.modes]
    if CONTRAST not in schemes:
        raise r.error("modes", f"lacks {CONTRAST}, the contrast every claim is read against", f"add {CONTRAST}")
    if not any(multiplier_kind(m) for m in schemes):
        raise r.error(
            "modes", "no scheme has learnable multipliers, whose profile the claims are about", "add lrm or lrm-scalar"
        )
    specs = on_long_horizon(r, top, runs, METRICS)
    for family in runs.families:
        spec = next(s for s in specs if s.family == family)
        model, _ = modes.build(spec, resolve(family, spec.batch, spec.data))
        if not depth.blocks(model):
            raise r.error(
                "families",
                f"{family} has no list of residual blocks whose profile could be read",
                "profile a family built of blocks (transformer, mamba2, hybrid, hf:…, a model with an nn.ModuleList of blocks)",
            )
    return DepthProfileStudy(r.path, top["title"] or r.path.stem, specs, {})
