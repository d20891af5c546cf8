"""Command-line options generated from the configuration models of :mod:`scribble_unet.config`.

Each option takes its help text from the field's description, its "(default ...)" from the field's
default, its choices from a ``Literal`` type and its check from the field's bounds, so the command line
never states a default or a limit of its own. Options default to ``None`` ("not given"): the
configuration model fills in its own default, or the caller one from elsewhere (an initial model).
"""

from __future__ import annotations

import argparse
import math
import typing
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel

from ..config import field_bounds, field_choices, must_text


def _base_type(cls: type[BaseModel], name: str) -> Any:
    tp = cls.model_fields[name].annotation
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if args and typing.get_origin(tp) is not typing.Literal else tp


def value_type(cls: type[BaseModel], name: str) -> Callable[[str], Any]:
    """An argparse ``type``: parses the text as the field's type and checks the field's bounds."""
    base = _base_type(cls, name)
    bounds = field_bounds(cls, name)

    def parse(text: str) -> Any:
        try:
            v = base(text)
        except ValueError:
            what = "a whole number" if base is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        ok = (not isinstance(v, float) or math.isfinite(v)) and all(
            {"ge": v >= b, "gt": v > b, "le": v <= b, "lt": v < b}[k] for k, b in bounds.items()
        )
        if not ok:
            raise argparse.ArgumentTypeError(f"must be {must_text(cls, name)}, got {text}")
        return v

    parse.__name__ = base.__name__  # argparse names the type in its messages
    return parse


def default_text(cls: type[BaseModel], name: str) -> str:
    """The field's default as the help text shows it."""
    d = cls.model_fields[name].default
    if d is None:
        return "none"
    if isinstance(d, bool):
        return "on" if d else "off"
    return f"{d:g}" if isinstance(d, float) else str(d)


def help_text(cls: type[BaseModel], name: str, default: str | None = None) -> str:
    """Description plus "(default ...)"; ``default`` replaces the default's wording."""
    desc = (cls.model_fields[name].description or "").rstrip(".")
    return f"{desc} (default: {default if default is not None else default_text(cls, name)})"


def add_options(
    parser: argparse.ArgumentParser,
    cls: type[BaseModel],
    names: Iterable[str],
    flags: dict[str, str] | None = None,
    defaults: dict[str, str] | None = None,
) -> None:
    """Add ``--field-name`` options for the fields ``names`` of ``cls``.

    ``flags`` renames options (``{"in_channels": "--channels"}``); ``defaults`` rewords the default
    shown in the help (when the caller fills it in from elsewhere). Booleans whose default is off
    become switches; those on by default get ``--no-...`` too.
    """
    for name in names:
        flag = (flags or {}).get(name, "--" + name.replace("_", "-"))
        help_ = help_text(cls, name, (defaults or {}).get(name))
        choices = field_choices(cls, name)
        if _base_type(cls, name) is bool:
            if cls.model_fields[name].default is False:
                parser.add_argument(flag, dest=name, action="store_const", const=True, default=None, help=help_)
            else:  # on by default: --name and --no-name
                parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None,
                                    help=help_)
        elif choices is not None:
            parser.add_argument(flag, dest=name, choices=list(choices), default=None, help=help_)
        else:
            parser.add_argument(flag, dest=name, type=value_type(cls, name), default=None, help=help_)


def given(args: argparse.Namespace, names: Iterable[str]) -> dict[str, Any]:
    """The options among ``names`` given on the command line (not ``None``)."""
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
