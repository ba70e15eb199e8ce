"""A user's `package.module:function`: how muscale names a callable so that a run spec stays
plain data, and how it imports one back (families, batches, losses)."""

import importlib
import inspect
from collections.abc import Callable

from ..errors import InputError


def unknown_options(fn: Callable, options: dict, skip: int) -> str | None:
    """Why `fn` cannot take `options` as keywords (its first `skip` parameters are muscale's), or None."""
    params = list(inspect.signature(fn).parameters.values())
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    names = [p.name for p in params[skip:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = sorted(set(options) - set(names))
    if not unknown:
        return None
    return f"{', '.join(unknown)} (its parameters after the width: {', '.join(names) or 'none'})"


def reference(obj, option: str) -> str | None:
    """A callable given to the Python API as the `package.module:function` string that names
    it, so that a run spec stays plain data that worker processes import the function from."""
    if obj is None or isinstance(obj, str):
        return obj
    module, name = getattr(obj, "__module__", None), getattr(obj, "__qualname__", "")
    fix = "define it at module level (worker processes import it by module and name), or pass package.module:function"
    if not callable(obj) or not module or not name.isidentifier():
        raise InputError(option, f"{obj!r} is not a module-level function", fix)
    ref = f"{module}:{name}"
    if getattr(importlib.import_module(module), name, None) is not obj:
        raise InputError(option, f"{ref} does not import back as the function given", fix)
    return ref


def load(ref: str, option: str, builtin: tuple[str, ...] = ()) -> Callable:
    """The function `package.module:function` names; `builtin` lists the other names `option` takes."""
    mod_name, _, fn_name = ref.partition(":")
    if not mod_name or not fn_name:
        names = ", ".join(builtin) + (", " if builtin else "")
        raise InputError(
            option,
            f"'{ref}' is neither a built-in name nor package.module:function",
            f"use {names}package.module:function",
        )
    try:
        fn = getattr(importlib.import_module(mod_name), fn_name)
    except (ImportError, AttributeError) as exc:
        raise InputError(
            option, f"cannot import '{ref}' ({exc})", "check the module is on PYTHONPATH and defines the function"
        ) from None
    if not callable(fn):
        raise InputError(option, f"'{ref}' is not callable", "point at a function")
    return fn
