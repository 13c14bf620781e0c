"""Recovery study: plant w* in N worlds, estimate it with every objective and optimizer, report the error.

    python experiments/recovery_study.py                                   # 10 small worlds, oracle heads
    python experiments/recovery_study.py --heads both --epochs 8           # also with a GNN trained per world
    python experiments/recovery_study.py --n-worlds 2 --size tiny --out /tmp/rs --bootstrap 50

Resumable: worlds already in <out>/results.jsonl are skipped. Writes <out>/recovery_table.md (+ .csv),
identification.csv, global_vs_nm.csv, recovery.png, figures/, and a run in the MLflow experiment
'recovery-study' of <out>/mlruns (see estimation/recovery.py).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from estimation.recovery import StudyConfig, markdown_table, run_study, summary_table  # noqa: E402


def field_help(cls) -> dict[str, str]:
    """The comment after each field of a config dataclass, as its --help text."""
    import inspect
    import re

    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^\s+(\w+):[^#\n]*#(.*)$", inspect.getsource(cls), re.M)}


def parse_args(argv: list[str] | None = None) -> StudyConfig:
    defaults = StudyConfig()
    helps = field_help(StudyConfig)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(StudyConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if isinstance(default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=f"{helps.get(f.name, '')} (default: {default})")
        else:
            kind = {int: int, float: float}.get(type(default), str)
            p.add_argument(flag, type=kind, default=default, help=f"{helps.get(f.name, '')} (default: {default})")
    return StudyConfig(**vars(p.parse_args(argv)))


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import mlflow  # noqa: F401

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    cfg = parse_args(argv)
    from estimation.runner import UsageError

    try:
        res = run_study(cfg)
    except (UsageError, ValueError) as e:
        print(f"error: {str(e).splitlines()[0] if str(e) else e.__class__.__name__}", file=sys.stderr)
        return 2
    print()
    print(markdown_table(summary_table(res["rows"])))
    print(f"\ntables and figure: {res['paths']['table_md']}  {res['paths']['figure']}")
    print(f"MLflow: mlflow ui --backend-store-uri {res['tracking_uri']} --port 5000")
    return 0


if __name__ == "__main__":
    sys.exit(main())
