"""Command-line parsing shared by the experiment scripts: one flag per field of a config dataclass."""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import re


def field_help(cls) -> dict[str, str]:
    """The comment after each field of a config dataclass, as its --help text."""
    return {m.group(1): m.group(2).strip()
            for m in re.finditer(r"^\s+(\w+):[^#\n]*#(.*)$", inspect.getsource(cls), re.M)}


def parse_config(cls, argv: list[str] | None, description: str | None):
    """Build `cls` from the command line: --field-name per field, typed by its default, booleans as --x/--no-x."""
    defaults = cls()
    helps = field_help(cls)
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        text = f"{helps.get(f.name, '')} (default: {default})"
        if isinstance(default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=text)
        else:
            kind = {int: int, float: float}.get(type(default), str)
            p.add_argument(flag, type=kind, default=default, help=text)
    return cls(**vars(p.parse_args(argv)))
