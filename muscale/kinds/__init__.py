"""The study kinds, registered here and only here: a kind is one folder under muscale/kinds/
(its study reader, analysis, report and template, with a KIND in its __init__) and one line
below. Everything else looks a kind up by the name its plan.json or study file gives."""

from ..study.kind import StudyKind
from . import coord_check, depth_profile, equilibrium, lr_transfer, width

KINDS: dict[str, StudyKind] = {
    k.name: k
    for k in (
        coord_check.KIND,
        lr_transfer.KIND,
        equilibrium.KIND,
        width.KIND,
        depth_profile.KIND,
    )
}
# What a study file without `kind` is, and what a directory without a plan.json holds
# (a coordinate check written before coordinate checks saved their plan).
STUDY_DEFAULT = lr_transfer.KIND
DIRECTORY_DEFAULT = coord_check.KIND
# What a study's parts (its coordinate checks beside the runs) are analysed as.
PART = coord_check.KIND
# The kinds a study file may ask for.
STUDY_FILE_KINDS = {name: k for name, k in KINDS.items() if k.read is not None}


def of_plan(plan: dict) -> StudyKind:
    return KINDS[plan.get("kind", STUDY_DEFAULT.name)]


def read(r, raw: dict):
    """A study file's kind reads the rest of it (`r`: studyfile.Reader, `raw`: its TOML)."""
    name = raw.pop("kind", STUDY_DEFAULT.name)
    if name not in STUDY_FILE_KINDS:
        raise r.error("kind", f"unknown kind {name!r}", f"use one of {', '.join(STUDY_FILE_KINDS)}")
    return STUDY_FILE_KINDS[name].read(r, raw)


__all__ = ["KINDS", "of_plan", "read"]
