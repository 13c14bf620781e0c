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

from estimation.cli import parse_config  # noqa: E402
from estimation.runner import EstimationConfig, UsageError, format_summary, run  # noqa: E402


def parse_args(argv: list[str] | None = None) -> EstimationConfig:
    return parse_config(EstimationConfig, argv, __doc__)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import mlflow  # noqa: F401  (configures its loggers on import; quiet them after)

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    config = parse_args(argv)
    from datamodules.raw import DataError
    from lightning_modules.checkpoints import IncompatibleCheckpointError

    try:
        summary = run(config)
    except (UsageError, DataError, FileNotFoundError, IncompatibleCheckpointError) as e:
        msg = str(e).splitlines()[0] if str(e) else e.__class__.__name__
        print(f"error: {msg}", file=sys.stderr)
        return 2
    print()
    print(format_summary(summary))
    t = summary["timings"]
    print(f"\n{summary['n_sessions']} valid test sessions; total {t.get('total_s', 0):.1f}s "
          f"(data {t.get('data_s', 0):.1f}s, GNN {t.get('gnn_s', 0):.1f}s, heads {t.get('heads_s', 0):.1f}s)")
    heads = f"GNN run {summary['gnn_run_id']}" if summary.get("heads", "gnn") == "gnn" else "oracle heads (no GNN)"
    print(f"parent run {summary['parent_run_id']}; {heads}")
    print(f"\nSee the runs:  mlflow ui --backend-store-uri {summary['tracking_uri']} --port 5000")
    return 0


if __name__ == "__main__":
    sys.exit(main())
