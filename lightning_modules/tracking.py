"""MLflow store helpers (CONTRACTS section 6): sqlite database and artifacts inside ``<root>/mlruns``.

Kept tiny and dependency-free so training and estimation agree on one layout; if ``estimation/tracking.py``
grows the same helpers, both must return the same URI for the same root.
"""
from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TRAINING_EXPERIMENT = "gnn-training"


def store_dir(root=None) -> Path:
    d = Path(root or PROJECT_ROOT).resolve() / "mlruns"
    d.mkdir(parents=True, exist_ok=True)
    return d


def tracking_uri(root=None) -> str:
    return f"sqlite:///{store_dir(root) / 'mlflow.db'}"


def artifact_location(root=None) -> str:
    return str(store_dir(root) / "artifacts")


def setup_mlflow(root=None, experiment: str = TRAINING_EXPERIMENT) -> str:
    """Point the mlflow client at the store under ``root`` and make sure ``experiment`` exists; returns its id."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(root))
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(experiment, artifact_location=f"{artifact_location(root)}")
    except Exception:  # created concurrently by another process
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            raise
        return exp.experiment_id
