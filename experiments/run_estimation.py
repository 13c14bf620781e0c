"""Estimate the head weights of the value model: data -> GNN -> heads -> objectives x optimizers -> MLflow.

    python experiments/run_estimation.py                                  # the embedded planted small world
    python experiments/run_estimation.py --data-dir "/path/to/KuaiRec 2.0" --optimizers nelder-mead,grid,cmaes

    python experiments/run_estimation.py --heads oracle --objectives cat_ce_smooth --optimizers grid   # true heads
    python experiments/run_estimation.py --bootstrap 0 --no-landscape                    # skip the extras

Reuses the newest finished GNN training run for the dataset (or --gnn-run-id), training one when there is none
(--heads oracle: a planted world's true head probabilities instead, no GNN). Per child run, a bootstrap over
users (--bootstrap N replicates, 90% intervals; m-out-of-n check) and landscape figures (--landscape) are on by
default: both reuse cached per-session losses and cost seconds on the small world.
Prints a summary table and the `mlflow ui` command that shows the runs.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from datamodules.schema import WORLD_SIZES  # noqa: E402
from estimation.cli import (DISK_FULL, choice, disk_full, error, interrupted_message, interruptible,  # noqa: E402
                            is_interrupt, parse_config, setup_logging)
from estimation.runner import (HEAD_SOURCES, OBJECTIVES, OPTIMIZERS, SPACES, EstimationConfig,  # noqa: E402
                               UsageError, check_config, format_summary, run)

CHOICES = {"objectives": choice(*OBJECTIVES, many=True), "optimizers": choice(*OPTIMIZERS, many=True),
           "space": choice(*SPACES), "heads": choice(*HEAD_SOURCES), "precision": choice("auto", "fp32", "bf16"),
           "matrix": choice("big", "small"), "world_size": choice(*WORLD_SIZES),
           "checkpoint": choice("best", "last")}


def parse_args(argv: list[str] | None = None) -> EstimationConfig:
    return parse_config(EstimationConfig, argv, __doc__, CHOICES)


def _reportable(e: BaseException) -> bool:
    """Bad input (one line, exit 2) rather than a bug (traceback): usage, data, graph and checkpoint errors. The
    classes of modules not loaded yet cannot have been raised, so they are not imported for this."""
    from datamodules.raw import DataError

    kinds = [UsageError, DataError, FileNotFoundError, PermissionError]
    for module, name in (("datamodules.graph", "GraphError"), ("lightning_modules.checkpoints",
                                                               "IncompatibleCheckpointError"),
                         ("lightning_fabric.utilities.exceptions", "MisconfigurationException")):
        if module in sys.modules:
            kinds.append(getattr(sys.modules[module], name))
    return isinstance(e, tuple(kinds))


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    from datamodules.raw import DataError, resolve_data_dir

    try:  # before the slow imports: bad options and a missing data folder fail in a second
        check_config(config)
        if config.data_dir:
            resolve_data_dir(config.data_dir)
    except (UsageError, DataError) as e:
        return error(e)
    setup_logging()
    import mlflow  # noqa: F401  (configures its loggers on import; quiet them after)

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    try:
        with interruptible():
            summary = run(config)
    except Exception as e:
        if disk_full(e):
            return error(DISK_FULL)
        if not _reportable(e):
            raise
        return error(e)
    except BaseException as e:  # Ctrl-C or SIGTERM: the runs are marked KILLED; one line, exit 128 + signal
        if not is_interrupt(e):
            raise
        msg, status = interrupted_message(e)
        print(msg, file=sys.stderr)
        return status
    print()
    print(format_summary(summary))
    t = summary["timings"]
    print(f"\n{summary['n_sessions']} valid test sessions; total {t.get('total_s', 0):.1f}s "
          f"(data {t.get('data_s', 0):.1f}s, GNN {t.get('gnn_s', 0):.1f}s, heads {t.get('heads_s', 0):.1f}s, "
          f"pruning + ranker {t.get('ranker_s', 0):.1f}s, "
          f"estimation {t.get('estimation_s', 0):.1f}s)")
    heads = f"GNN run {summary['gnn_run_id']}" if summary.get("heads", "gnn") == "gnn" else "oracle heads (no GNN)"
    print(f"parent run {summary['parent_run_id']}; {heads}")
    print(f"\nSee the runs:  mlflow ui --backend-store-uri {summary['tracking_uri']} --port 5000")
    return 0


if __name__ == "__main__":
    sys.exit(main())
