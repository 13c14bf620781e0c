"""MLflow store helpers for training (CONTRACTS section 6), delegating to the project's one layout in
``estimation/tracking.py``: sqlite database ``<root>/mlruns/mlflow.db``, artifacts under
``<root>/mlruns/artifacts/<experiment>``."""
from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TRAINING_EXPERIMENT = "gnn-training"


def _root(root=None) -> Path:
    return Path(root or PROJECT_ROOT).resolve()


def tracking_uri(root=None) -> str:
    return f"sqlite:///{_root(root) / 'mlruns' / 'mlflow.db'}"


def artifact_location(root=None, experiment: str = TRAINING_EXPERIMENT) -> str:
    return (_root(root) / "mlruns" / "artifacts" / experiment).as_uri()


def setup_mlflow(root=None, experiment: str = TRAINING_EXPERIMENT) -> str:
    """Create the store and the project's experiments (estimation.tracking.setup_mlflow), and ``experiment``
    if it is another one; returns the experiment id."""
    import mlflow

    from estimation.tracking import setup_mlflow as _setup

    uri = _setup(_root(root))
    assert uri == tracking_uri(root), (uri, tracking_uri(root))
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(experiment, artifact_location=artifact_location(root, experiment))
    except Exception:  # created concurrently by another process
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            raise
        return exp.experiment_id
