"""The options a person sets on runs, each declared once, as a RunSpec field with its default
and help (spec.option). The study files' keys, the keywords of coordcheck.plan and
`muscale coord-check`'s options (cli.py) are made from this table, so no two can drift apart."""

import dataclasses
import json
import types
from dataclasses import dataclass

from .spec import Horizon, RunSpec


@dataclass(frozen=True)
class Option:
    field: str  # the RunSpec field
    name: str  # coordcheck.plan's keyword, the command's parameter, the study key's stem
    flag: str | None  # the command-line option; None: not on the command line
    key: str | None  # the study-file key; None: not in study files
    help: str
    kind: type  # its type as a study file writes it
    value: type  # one value's type (an axis is a list of them in a study file)
    axis: str | None  # "study": a study file lists values, one run each; "both": the command line too
    default: object  # RunSpec's default; dataclasses.MISSING where it has none
    pairs: type | None  # KEY=VALUE entries with values of this type, or None
    example: tuple | None  # one KEY=VALUE pair, for messages and help
    keys: str | None  # "module:NAME" of the names a KEY or a list entry may take
    unset: str | None  # what leaving it out means, where its default is None
    check: object  # the coordinate check's default where RunSpec has none
    metavar: str | None


def _study_kind(annotation) -> type:
    """A field's type as TOML writes it: a tuple of pairs is a table, any other tuple a list."""
    if isinstance(annotation, types.UnionType):
        annotation = next(a for a in annotation.__args__ if a is not type(None))
    kind = getattr(annotation, "__origin__", annotation)
    if kind is tuple:
        return dict if getattr(annotation.__args__[0], "__origin__", None) is tuple else list
    return kind


def _option(f: dataclasses.Field) -> Option:
    m = f.metadata
    name = m.get("name", f.name)
    flag = m.get("flag", "--" + name.replace("_", "-"))
    key = m.get("key", name)
    value = _study_kind(f.type)
    return Option(
        f.name,
        name,
        flag,
        key,
        m["help"],
        list if m.get("axis") else value,
        value,
        m.get("axis"),
        f.default,
        m.get("pairs"),
        m.get("example"),
        m.get("keys"),
        m.get("unset"),
        m.get("check"),
        m.get("metavar"),
    )


OPTIONS = {o.name: o for o in (_option(f) for f in dataclasses.fields(RunSpec) if "help" in f.metadata)}
# The study key behind each command-line option, so that a shared validation's error (which names
# the option) can be re-aimed at the key a study file spells it with (studyfile.Reader.check).
STUDY_KEYS = {o.flag: o.key for o in OPTIONS.values() if o.flag and o.key}


def study_keys(*names: str, **defaults) -> dict[str, tuple[type, object, str]]:
    """Study-file keys (studyfile.Reader's schema: type, default, help) for the options `names`.
    `defaults`, by study key, where a kind's default is not RunSpec's; None means required,
    or derived where studyfile.OPTIONAL says so."""
    schema = {}
    for name in names:
        o = OPTIONS[name]
        if o.key in defaults:
            default = defaults[o.key]
        elif o.default is dataclasses.MISSING:
            default = None
        else:
            default = {} if o.pairs else list(o.default) if isinstance(o.default, tuple) else o.default
        help_ = f"A list, one run per entry. {o.help}" if o.axis else o.help
        if o.pairs:
            k, v = o.example
            help_ += f" A table, e.g. {{{k} = {json.dumps(v)}}}."
        schema[o.key] = (o.kind, default, help_)
    return schema


def as_field(name: str, value):
    """A KEY=VALUE option's dict as its RunSpec field holds it: pairs sorted by key (their order
    carries no meaning, and the run id must not depend on it), values of the option's type.
    Any other option's value is its field's as given."""
    o = OPTIONS[name]
    if o.pairs:
        return tuple(sorted((k, o.pairs(v)) for k, v in (value or {}).items()))
    return value


# The options the horizons set a default of (spec.default_horizon), and coordcheck.plan with them.
HORIZON_FIELDS = {f.name for f in dataclasses.fields(Horizon)} - {"name"}
