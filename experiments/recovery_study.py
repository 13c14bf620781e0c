"""Recovery study: plant w* in N worlds, estimate it with every objective and optimizer, report the error.

    python experiments/recovery_study.py                                   # 10 small worlds, oracle heads
    python experiments/recovery_study.py --heads both --epochs 8           # also with a GNN trained per world
    python experiments/recovery_study.py --n-worlds 2 --size tiny --out /tmp/rs --bootstrap 50

Resumable: worlds already in <out>/results.jsonl are skipped. Writes <out>/recovery_table.md (+ .csv),
identification.csv, global_vs_nm.csv, recovery.png, figures/, and a run in the MLflow experiment
'recovery-study' of <out>/mlruns (see estimation/recovery.py).
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from estimation.cli import (error, interrupted_message, interruptible, is_interrupt, parse_config,  # noqa: E402
                            setup_logging)
from estimation.recovery import StudyConfig, check_study, markdown_table, run_study, summary_table  # noqa: E402
from estimation.runner import UsageError  # noqa: E402


def parse_args(argv: list[str] | None = None) -> StudyConfig:
    return parse_config(StudyConfig, argv, __doc__)


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    try:
        check_study(cfg)  # bad options and a resume with other options fail here, before anything is written
    except UsageError as e:
        return error(e)
    setup_logging()
    import mlflow  # noqa: F401

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    from datamodules.raw import DataError

    try:
        with interruptible():
            res = run_study(cfg)
    except (UsageError, DataError, ValueError) as e:
        return error(e)
    except BaseException as e:  # Ctrl-C or SIGTERM: the open runs end KILLED; finished worlds stay in results.jsonl
        if not is_interrupt(e):
            raise
        msg, status = interrupted_message(e)
        print(msg, file=sys.stderr)
        return status
    print()
    print(markdown_table(summary_table(res["rows"])))
    print(f"\ntables and figure: {res['paths']['table_md']}  {res['paths']['figure']}")
    print(f"MLflow: mlflow ui --backend-store-uri {res['tracking_uri']} --port 5000")
    return 0


if __name__ == "__main__":
    sys.exit(main())
