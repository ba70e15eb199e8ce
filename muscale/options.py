"""The options a person sets on runs, each declared once, as a RunSpec field with its default
and help (spec.option). `muscale coord-check`'s options, the study files' keys and the keywords
of coordcheck.plan are made from those declarations here, so no two of them can drift apart."""

import dataclasses
import importlib
import json
import types
from dataclasses import dataclass

import click

from .errors import InputError
from .spec import LONG_MODES, SHORT_MODES, Horizon, RunSpec, default_horizon


@dataclass(frozen=True)
class Option:
    field: str  # the RunSpec field
    name: str  # coordcheck.plan's keyword, the command's parameter, the study key's stem
    flag: str | None  # the command-line option; None: not on the command line
    key: str | None  # the study-file key; None: not in study files
    help: str
    kind: type  # its type as a study file writes it
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
    options = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)] \
        if isinstance(annotation, types.UnionType) else [annotation]
    kind = getattr(options[0], "__origin__", options[0])
    if kind is tuple:
        inner = options[0].__args__[0]
        return dict if getattr(inner, "__origin__", None) is tuple else list
    return kind


def _option(f: dataclasses.Field) -> Option:
    m = f.metadata
    name = m.get("name", f.name)
    flag = m.get("flag", "--" + name.replace("_", "-"))
    key = m.get("key", name)
    kind = list if m.get("axis") else _study_kind(f.type)
    return Option(f.name, name, flag, key, m["help"], kind, m.get("axis"), f.default, m.get("pairs"),
                  m.get("example"), m.get("keys"), m.get("unset"), m.get("check"), m.get("metavar"))


OPTIONS = {o.name: o for o in (_option(f) for f in dataclasses.fields(RunSpec) if "help" in f.metadata)}
# The study key behind each command-line option, so that a shared validation's error (which names
# the option) can be re-aimed at the key a study file spells it with (studyfile.Reader.check).
STUDY_KEYS = {o.flag: o.key for o in OPTIONS.values() if o.flag and o.key}


def _toml(value) -> str:
    return json.dumps(value) if isinstance(value, str) else str(value)


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
        help_ = o.help
        if o.pairs:
            k, v = o.example
            help_ += f" A table, e.g. {{{k} = {_toml(v)}}}."
        schema[o.key] = (o.kind, default, help_)
    return schema


def to_fields(name: str, value):
    """A value as a person gives it (a dict for KEY=VALUE options, any iterable for a list) as
    the RunSpec field holds it, sorted where order carries no meaning."""
    o = OPTIONS[name]
    if o.pairs:
        return tuple(sorted((k, o.pairs(v)) for k, v in (value or {}).items()))
    return value


# What the coordinate check's help says of the defaults that come from its horizons.
SHORT, LONG = default_horizon("mup", "transformer"), default_horizon("lrm", "transformer")
HORIZON_FIELDS = {f.name for f in dataclasses.fields(Horizon)} - {"name"}
OTHER_FAMILIES = ("mlp", "mamba2", "hybrid")


def _shown(o: Option, value) -> str:
    if value is None or value == ():
        return o.unset or "none"
    if isinstance(value, tuple):
        pairs = isinstance(value[0], tuple)
        return ", ".join(f"{k}={v}" for k, v in value) if pairs else ",".join(map(str, value))
    return str(value)


def _defaults(o: Option) -> str:
    """The help's `Default:` sentence: from the horizons for what they set, else RunSpec's."""
    if o.name in HORIZON_FIELDS:
        text = (f"Default: {_shown(o, getattr(SHORT, o.name))} short ({', '.join(SHORT_MODES)}), "
                f"{_shown(o, getattr(LONG, o.name))} long ({', '.join(LONG_MODES)}).")
        for family in OTHER_FAMILIES:
            short, long = (getattr(default_horizon(m, family), o.name) for m in ("mup", "lrm"))
            differ = [f"{_shown(o, v)} {h}" for v, base, h in ((short, SHORT, "short"), (long, LONG, "long"))
                      if v != getattr(base, o.name)]
            if differ:
                text += f" The {family} family takes {' and '.join(differ)}."
        return text
    if o.check is not None:
        return f"Default: {o.check}."
    if o.default is dataclasses.MISSING or o.kind is bool or o.pairs and not o.unset:
        return ""
    return f"Default: {_shown(o, o.default)}."


def _widths(ctx, param, value):
    if value is None:
        return None
    try:
        return tuple(int(w) for w in value.split(",") if w.strip())
    except ValueError:
        raise InputError("--widths", f"'{value}' is not a comma list of whole numbers",
                         "write it like 64,128,256") from None


def _pairs(o: Option):
    k, v = o.example

    def parse(ctx, param, items) -> dict:
        out = {}
        for item in items:
            key, sep, val = item.partition("=")
            try:
                if not sep or not key:
                    raise ValueError
                out[key] = o.pairs(val)
            except ValueError:
                raise InputError(o.flag, f"'{item}' is not KEY=VALUE with a {o.pairs.__name__} value",
                                 f"write it like {k}={v}") from None
        return out
    return parse


def _keys(o: Option) -> str:
    if o.keys is None:
        return ""
    module, _, name = o.keys.partition(":")
    return f"{'Keys' if o.pairs else 'Names'}: {', '.join(getattr(importlib.import_module(module), name))}."


def _click(o: Option) -> dict:
    """How click takes an option. Nothing has a default but the check's own choices (mode and
    family): None means not given, and coordcheck.plan fills in the horizon's or RunSpec's."""
    help_ = " ".join(filter(None, (o.help, _keys(o), _defaults(o))))
    if o.kind is bool:
        return {"is_flag": True, "help": help_}
    if o.pairs:
        k, v = o.example
        return {"multiple": True, "callback": _pairs(o), "metavar": "KEY=VALUE",
                "help": f"{help_} Repeatable, e.g. {o.flag} {k}={v}."}
    if o.axis == "both":
        return {"callback": _widths, "help": f"Comma list. {help_}"}
    if o.axis == "study":
        return {"type": _study_kind(RunSpec.__dataclass_fields__[o.field].type), "default": o.check, "help": help_}
    if o.kind is list:
        return {"multiple": True, "help": f"{help_} Repeatable."}
    return {"type": o.kind, "default": o.check, "metavar": o.metavar, "help": help_}


def command_options(command):
    """Give a click command one option per RunSpec option that has a flag, in field order."""
    for o in reversed(OPTIONS.values()):
        if o.flag:
            command = click.option(o.flag, o.name, **_click(o))(command)
    return command
