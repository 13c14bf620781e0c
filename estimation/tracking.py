"""MLflow helpers: the project's store (sqlite + artifacts inside <root>/mlruns), fast per-evaluation logging.

An estimation invocation is a parent run; each (objective, optimizer) is a child run logging, per evaluation
step, the metrics `loss`, `w_complete`, `w_long`, `w_rewatch`, `w_neg`, so MLflow's chart view overlays them.
A non-finite loss is not logged as `loss` (MLflow's SQL store would store +inf as 1.8e308, a fake real value);
that step gets `nonfinite_loss` = 1 instead, and its weights as usual.
"""
from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import mlflow
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from datamodules.schema import WEIGHT_KEYS

EXPERIMENTS = ("head-weight-estimation", "gnn-training")
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
MAX_PARAM_LEN = 6000


def setup_mlflow(root: str | Path = ".") -> str:
    """Point MLflow at sqlite:///<root>/mlruns/mlflow.db, artifacts under <root>/mlruns/artifacts/<experiment>;
    create both experiments if missing. Returns the tracking URI."""
    root = Path(root).resolve()
    art = root / "mlruns" / "artifacts"
    art.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    # one process at a time creates the schema and the experiments: two jobs starting together on a new root
    # otherwise race in MLflow's database migration ("Online migration expected to match one row")
    with open(root / "mlruns" / ".setup.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        client = MlflowClient(uri)
        for name in EXPERIMENTS:
            if client.get_experiment_by_name(name) is None:
                client.create_experiment(name, artifact_location=(art / name).as_uri())
        for run_id in sweep_dead_runs(client):  # a SIGKILLed training leaves Lightning's staged checkpoints
            for staged in (root / "mlruns" / "lightning").glob(f"*/{run_id}"):
                shutil.rmtree(staged, ignore_errors=True)
    return uri


def process_tags() -> dict[str, str]:
    """Tags naming the process that owns a run, so that a later job can tell a run whose process died."""
    return {"host": socket.gethostname(), "pid": str(os.getpid())}


def sweep_dead_runs(client: MlflowClient) -> list[str]:
    """Mark KILLED every RUNNING run of this store whose owning process (host and pid tags) no longer runs on
    this host: what a SIGKILL or a power cut leaves behind. Returns their run ids."""
    from datamodules.dataset import _pid_alive

    host = socket.gethostname()
    exps = [e.experiment_id for e in client.search_experiments()]
    if not exps:
        return []
    dead = []
    for run in client.search_runs(exps, filter_string="attributes.status = 'RUNNING'", max_results=1000):
        tags = run.data.tags
        pid = tags.get("pid", "")
        if tags.get("host") == host and pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            client.set_terminated(run.info.run_id, "KILLED")
            dead.append(run.info.run_id)
    if dead:
        logging.getLogger(__name__).warning("marked %d run(s) KILLED whose process had died: %s", len(dead),
                                            ", ".join(r[:8] for r in dead))
    return dead


def experiment_id(name: str = "head-weight-estimation", client: MlflowClient | None = None) -> str:
    client = client or MlflowClient()
    exp = client.get_experiment_by_name(name)
    if exp is None:
        raise ValueError(f"MLflow experiment {name!r} missing; call setup_mlflow(root) first")
    return exp.experiment_id


def start_child_run(parent_run_id: str, run_name: str, tags: dict[str, Any] | None = None,
                    client: MlflowClient | None = None) -> str:
    """Create a child run (tag mlflow.parentRunId) in the parent's experiment; returns its run id."""
    client = client or MlflowClient()
    parent = client.get_run(parent_run_id)
    t = {"mlflow.parentRunId": parent_run_id, **process_tags(), **{k: str(v) for k, v in (tags or {}).items()}}
    return client.create_run(parent.info.experiment_id, tags=t, run_name=run_name).info.run_id


class StepLogger:
    """`log(step, w, loss)` callback that buffers metrics and writes them with log_batch, 1000 at a time.

    MLflow's SQL store spends ~0.3 ms per metric (ORM objects), i.e. ~1.5 ms per step; with asynchronous=True
    the writes run in MLflow's background logging thread, overlapping the objective; `close()` (or leaving the
    `with` block) waits for them."""

    def __init__(self, run_id: str, client: MlflowClient | None = None, buffer_steps: int = 2000,
                 asynchronous: bool = False):
        self.run_id, self.client = run_id, client or MlflowClient()
        self.buffer_steps = buffer_steps
        self.asynchronous = asynchronous
        self._pending: list = []
        self._buf: list[Metric] = []
        self.n_steps = 0
        self.n_nonfinite = 0

    def __call__(self, step: int, w, loss: float) -> None:
        ts = int(time.time() * 1000)
        if math.isfinite(loss):
            self._buf.append(Metric("loss", float(loss), ts, int(step)))
        else:
            self._buf.append(Metric("nonfinite_loss", 1.0, ts, int(step)))
            self.n_nonfinite += 1
        for key, v in zip(WEIGHT_KEYS, np.asarray(w, dtype=np.float64).reshape(4)):
            self._buf.append(Metric(key, float(v), ts, int(step)))
        self.n_steps += 1
        if len(self._buf) >= 5 * self.buffer_steps:
            self.flush()

    def flush(self) -> None:
        for i in range(0, len(self._buf), MAX_METRICS_PER_BATCH):
            op = self.client.log_batch(self.run_id, metrics=self._buf[i : i + MAX_METRICS_PER_BATCH],
                                       synchronous=not self.asynchronous)
            if op is not None and self.asynchronous:
                self._pending.append(op)
        self._buf = []

    def close(self) -> None:
        """Write what is buffered and wait for background writes."""
        self.flush()
        for op in self._pending:
            op.wait()
        self._pending = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _flatten(d: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            s = v if isinstance(v, str) else json.dumps(v, default=str) if isinstance(v, (list, tuple)) else str(v)
            out[key] = s[:MAX_PARAM_LEN]
    return out


def log_params(run_id: str, params: dict, client: MlflowClient | None = None) -> None:
    """Log a (nested) dict as params: keys dotted, values as strings (lists as JSON), in batches of 100."""
    client = client or MlflowClient()
    items = [Param(k, v) for k, v in _flatten(params).items()]
    for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
        client.log_batch(run_id, params=items[i : i + MAX_PARAMS_PER_BATCH])


def log_final(run_id: str, w, loss: float, n_evals: int | None = None, client: MlflowClient | None = None,
              prefix: str = "final_") -> None:
    """Summary metrics of an optimisation: final_loss (skipped if not finite), final_w_*, n_evals."""
    client = client or MlflowClient()
    ts = int(time.time() * 1000)
    ms = [Metric(prefix + k, float(v), ts, 0) for k, v in zip(WEIGHT_KEYS, np.asarray(w, dtype=np.float64))
          if math.isfinite(float(v))]
    if math.isfinite(loss):
        ms.append(Metric(prefix + "loss", float(loss), ts, 0))
    if n_evals is not None:
        ms.append(Metric("n_evals", float(n_evals), ts, 0))
    client.log_batch(run_id, metrics=ms)
