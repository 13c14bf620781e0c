"""Command-line plumbing shared by the experiment scripts.

- `parse_config`: one flag per field of a config dataclass, its --help text from the comment after the field and
  its allowed values from `choice(...)` field metadata (or the `choices` argument);
- `OneLineParser`: argparse whose usage errors are one line on stderr, `error: ...`, exit status 2;
- `error`: print such a line (for errors found after parsing); `setup_logging`: progress to stdout, problems
  to stderr;
- `interruptible`: SIGINT and SIGTERM raise `Interrupted`, which unwinds like Ctrl-C; code that owns an MLflow run
  ends it KILLED and notes it with `note_killed`, and the script prints one line and exits 128 + signal.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import inspect
import logging
import os
import re
import signal
import sys
from pathlib import Path


def choice(*values: str, many: bool = False) -> dict:
    """Field metadata: the allowed values of a config field; many=True for a comma list of them."""
    return {"choices": tuple(values), "many": many}


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line on stderr (`error: argument --x: ...; see --help`) and exit status 2."""

    def error(self, message: str):  # noqa: D401 (argparse API)
        self.exit(2, f"error: {message}; see --help\n")


def error(message, status: int = 2) -> int:
    """Print the first line of `message` (an exception or text) as `error: ...` on stderr; return `status`."""
    text = str(message).strip()
    if isinstance(message, BaseException) and not text:
        text = message.__class__.__name__
    print(f"error: {text.splitlines()[0] if text else 'failed'}", file=sys.stderr)
    return status


def folder_problem(path) -> str | None:
    """Why files cannot be created under `path` (a file in the way, a folder without write permission), or None.
    Checks the nearest existing folder on the way up, so a path that does not exist yet is fine."""
    p = Path(path)  # not expanded: the scripts use the path as given (a quoted '~' is a folder named '~')
    for q in (p, *p.parents):
        try:
            if not q.exists():
                continue
        except OSError as e:  # a parent that cannot be searched
            return f"{q} cannot be accessed ({e.strerror})"
        if not q.is_dir():
            return f"{q} is a file, not a folder"
        if not os.access(q, os.W_OK | os.X_OK):
            return f"{q} is not writable"
        return None
    return None


def disk_full(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it: MLflow wraps sqlite's error) is a full disk."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or \
                any(s in str(exc) for s in ("database or disk is full", "No space left on device")):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


DISK_FULL = ("the disk is full: free space under --root (data/cache/heads holds the largest files; they can be "
             "deleted) and rerun: caches are written atomically and the next job marks this one's runs KILLED")


def setup_logging(level: int = logging.INFO, fmt: str = "%(asctime)s %(name)s %(message)s") -> None:
    """Progress (below WARNING) to stdout, warnings and errors to stderr: stderr carries only problems, so a
    failing command shows one `error:` line there."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    out = logging.StreamHandler(sys.stdout)
    out.addFilter(lambda r: r.levelno < logging.WARNING)
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.WARNING)
    for h in (out, err):
        h.setFormatter(logging.Formatter(fmt))
        root.addHandler(h)
    root.setLevel(level)


def field_help(cls) -> dict[str, str]:
    """The comment after each field of a config dataclass, as its --help text."""
    return {m.group(1): m.group(2).strip()
            for m in re.finditer(r"^\s+(\w+):[^#\n]*#(.*)$", inspect.getsource(cls), re.M)}


def field_choices(cls, extra: dict | None = None) -> dict[str, dict]:
    """field name -> choice(...) metadata, from the dataclass fields and then `extra` (name -> choice(...))."""
    out = {f.name: dict(f.metadata) for f in dataclasses.fields(cls) if "choices" in f.metadata}
    out.update(extra or {})
    return out


def build_parser(cls, description: str | None, choices: dict | None = None) -> OneLineParser:
    """The parser of `parse_config` (exposed for scripts that add options of their own)."""
    defaults = cls()
    helps = field_help(cls)
    allowed = field_choices(cls, choices)
    p = OneLineParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        text = helps.get(f.name, "")
        kwargs = {}
        if f.name in allowed:
            values = allowed[f.name]["choices"]
            if allowed[f.name].get("many"):  # a comma list: listed in the help, checked after parsing
                text = re.sub(r"^comma list from [A-Z_]+$", "", text)  # names a constant: say its values
                text = f"{text}; " if text else ""
                text += f"a comma list of {', '.join(values)}"
                kwargs["metavar"] = "A,B"
            else:  # argparse lists them in the option line ({a,b}) and rejects others
                kwargs["choices"] = values
        text = f"{text} (default: {default})".strip()
        if isinstance(default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=text)
        else:
            kind = {int: int, float: float}.get(type(default), str)
            p.add_argument(flag, type=kind, default=default, help=text, **kwargs)
    return p


def parse_config(cls, argv: list[str] | None, description: str | None, choices: dict | None = None):
    """Build `cls` from the command line: --field-name per field, typed by its default, booleans as --x/--no-x;
    fields with `choice(...)` metadata (or named in `choices`) only take the allowed values (a comma list of them
    when many=True: checked by the caller, listed in --help)."""
    p = build_parser(cls, description, choices)
    args = vars(p.parse_args(argv))
    for name, meta in field_choices(cls, choices).items():
        if meta.get("many") and args.get(name) is not None:
            items = [s.strip() for s in str(args[name]).split(",") if s.strip()]
            bad = [s for s in items if s not in meta["choices"]]
            if bad or not items:
                p.error(f"argument --{name.replace('_', '-')}: unknown value "
                        f"{bad[0] if bad else '(empty)'!r}; choose from {', '.join(meta['choices'])}")
    return cls(**args)


# ------------------------------------------------------------------------------------------------ interrupts
class Interrupted(BaseException):
    """SIGINT/SIGTERM arrived. A BaseException but not a KeyboardInterrupt: Lightning's Trainer re-raises it
    (a KeyboardInterrupt it would turn into sys.exit(1)) and `except Exception` blocks let it pass."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.killed_runs: list[str] = []

    @property
    def exit_status(self) -> int:
        return 128 + int(self.signum)


def is_interrupt(exc: BaseException) -> bool:
    """Ctrl-C or a signal turned into `Interrupted`: the runs it unwinds end KILLED, not FAILED."""
    return isinstance(exc, (KeyboardInterrupt, Interrupted))


def end_status(exc: BaseException | None) -> str:
    """The MLflow status of a run that ended by `exc` (None: normally)."""
    if exc is None:
        return "FINISHED"
    return "KILLED" if is_interrupt(exc) else "FAILED"


def note_killed(exc: BaseException, run_id: str | None) -> None:
    """Record on the exception that `run_id` was ended KILLED (innermost first; the script names the last)."""
    if run_id and is_interrupt(exc):
        runs = exc.__dict__.setdefault("killed_runs", [])
        if run_id not in runs:
            runs.append(run_id)


@contextlib.contextmanager
def interruptible():
    """While inside: the first SIGINT or SIGTERM raises `Interrupted`; later ones are ignored so the runs can be
    ended cleanly. Previous handlers are restored on exit."""
    fired = []

    def handler(signum, frame):
        if fired:
            return
        fired.append(signum)
        raise Interrupted(signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def interrupted_message(exc: BaseException) -> tuple[str, int]:
    """The one line to print after an interrupt and the exit status (130 for SIGINT, 143 for SIGTERM)."""
    runs = list(getattr(exc, "killed_runs", []))
    what = "SIGINT" if isinstance(exc, KeyboardInterrupt) else str(exc)
    status = exc.exit_status if isinstance(exc, Interrupted) else 130
    if not runs:
        return f"interrupted ({what}); no MLflow run was open", status
    more = f" (and {len(runs) - 1} child run{'s' if len(runs) > 2 else ''})" if len(runs) > 1 else ""
    return f"interrupted ({what}); run {runs[-1]}{more} marked KILLED", status
