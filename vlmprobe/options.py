"""Options declared once: a method's options are one dataclass whose fields carry their default,
help, flag, choices and check (``option(...)``). From it derive:

- the command-line flags (``add_arguments(parser, Options)``; a flag that several methods
  declare, e.g. ``--prompt``, is added once by ``add_option_groups``: same flag, same meaning);
- the object from parsed arguments (``from_args(Options, args)``);
- validation (``validate(opts)``, run by ``__post_init__`` of ``Options`` subclasses): a value
  outside ``choices`` or failing ``check`` raises ``VlmprobeError`` naming the flag;
- the JSON view (``as_dict``);
- values read from YAML files and ``--field VALUE`` overrides (``coerce``, used by the
  fine-tuning config).

Example (a new method's options)::

    @dataclass
    class MyOptions(Options):
        temperature: float = option(1.0, "softmax temperature", check=lambda t: t > 0)
        mode: str = option("fast", "how to score", choices=("fast", "slow"))
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass
from typing import Callable

from .errors import VlmprobeError


def option(default, help: str, *, flag: str | None = None, choices=None, check: Callable | None = None,
           requirement: str = "", metavar: str | None = None, type: Callable | None = None,
           negative: str | None = None, negative_help: str = "", factory: Callable | None = None):
    """A dataclass field with its command-line form. ``flag`` defaults to ``--field-name``;
    a bool defaulting to False is a switch; ``negative`` adds the opposite switch (``--no-x``)
    as a mutually exclusive pair; ``check(value) -> bool`` with ``requirement`` as the error text."""
    meta = {"help": help, "flag": flag, "choices": choices, "check": check, "requirement": requirement,
            "metavar": metavar, "type": type, "negative": negative, "negative_help": negative_help}
    if factory is not None:  # a mutable default (list, dict)
        return dataclasses.field(default_factory=factory, metadata={"option": meta})
    return dataclasses.field(default=default, metadata={"option": meta})


def help_of(f: dataclasses.Field) -> str:
    return _meta(f)["help"]


def _meta(f: dataclasses.Field) -> dict:
    return f.metadata["option"]


def flag_of(f: dataclasses.Field) -> str:
    return _meta(f)["flag"] or "--" + f.name.replace("_", "-")


def validate(opts) -> None:
    """Check every field against its ``choices`` and ``check`` (one-line errors naming the flag)."""
    for f in dataclasses.fields(opts):
        m, value = _meta(f), getattr(opts, f.name)
        if m["choices"] is not None and value not in m["choices"]:
            raise VlmprobeError(f"{flag_of(f)} {value!r}: choose from {', '.join(map(str, m['choices']))}")
        if m["check"] is not None and value is not None and not m["check"](value):
            raise VlmprobeError(f"{flag_of(f)} {value}: {m['requirement'] or 'invalid value'}")


@dataclass
class Options:
    """Base class: validated on construction."""

    def __post_init__(self):
        validate(self)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _add(parser, f: dataclasses.Field) -> None:
    m = _meta(f)
    flag = flag_of(f)
    if isinstance(f.default, bool):
        if m["negative"]:
            pair = parser.add_mutually_exclusive_group()
            pair.add_argument(flag, dest=f.name, action="store_true", default=f.default, help=m["help"])
            pair.add_argument(m["negative"], dest=f.name, action="store_false", default=f.default,
                              help=m["negative_help"])
        else:
            parser.add_argument(flag, dest=f.name, action="store_true", default=f.default, help=m["help"])
        return
    kw = {"dest": f.name, "default": f.default, "help": m["help"]}
    if m["choices"] is not None:
        kw["choices"] = list(m["choices"])
    if m["metavar"]:
        kw["metavar"] = m["metavar"]
    if m["type"] is not None:
        kw["type"] = m["type"]
    elif isinstance(f.default, (int, float)) and not isinstance(f.default, bool):
        kw["type"] = type(f.default)
    parser.add_argument(flag, **kw)


def add_arguments(parser, cls, skip: set[str] = frozenset()) -> set[str]:
    """Add ``cls``'s flags (except those in ``skip``) to ``parser`` (a parser or a group);
    returns the flags added."""
    added = set()
    for f in dataclasses.fields(cls):
        if flag_of(f) not in skip:
            _add(parser, f)
            added.add(flag_of(f))
    return added


def add_option_groups(parser: argparse.ArgumentParser, groups: dict[str, type]) -> None:
    """One argument group per ``{title: Options class}``; a flag declared by several classes is
    added once (in the first group that declares it)."""
    seen: set[str] = set()
    for title, cls in groups.items():
        seen |= add_arguments(parser.add_argument_group(title), cls, skip=seen)


def reject_foreign_options(args, groups: dict[str, type], chosen: str) -> None:
    """One-line ``VlmprobeError`` when ``args`` sets (to a non-default value) a flag that only
    other entries of ``groups`` (``{title: Options class}``, as given to ``add_option_groups``)
    declare, e.g. ``--cot`` with ``--method zeroshot``: an option that would be silently ignored."""
    own = {f.name for f in dataclasses.fields(groups[chosen])}
    for title, cls in groups.items():
        for f in dataclasses.fields(cls):
            if f.name in own or not hasattr(args, f.name):
                continue
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            if getattr(args, f.name) != default:
                owners = [t for t, c in groups.items() if f.name in {g.name for g in dataclasses.fields(c)}]
                raise VlmprobeError(f"{flag_of(f)} is an option of {' / '.join(owners)}, not of {chosen}: "
                                    "drop it or choose that method")


def from_args(cls, args, **override):
    """``cls`` built from parsed arguments (fields whose flag was not added keep their default)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    return cls(**{**values, **override})


def field_types(cls) -> dict:
    """{field name: resolved annotation} of a dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def coerce(value, annotation, where: str):
    """``value`` read from YAML or a command line, checked/converted to ``annotation`` (bool, int,
    float, str, list, each optionally ``| None``); int -> float allowed; "1e-4" (YAML 1.1 reads it
    as a string) -> float; a comma string -> list. ``where`` names the file/flag in errors."""
    args = typing.get_args(annotation)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), annotation) if args else annotation
    if value is None:
        if optional:
            return None
        raise VlmprobeError(f"{where}: may not be null")
    if base is bool:
        if isinstance(value, bool):
            return value
    elif base is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif base is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif base is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    elif base is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list):
            return list(value)
    raise VlmprobeError(f"{where}: expected {getattr(base, '__name__', base)}, got {value!r}")
