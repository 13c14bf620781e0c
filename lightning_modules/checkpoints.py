"""Load a trained HeadModel from a checkpoint file or from an MLflow training run, and check it fits a dataset.

Training runs (experiments/train_gnn.py) carry two artifacts: ``checkpoints/best.ckpt`` (best val/auc_mean)
and ``checkpoints/last.ckpt``. Checkpoints hold only plain types and tensors, so they load with torch's safe
default (``weights_only=True``).
"""
from __future__ import annotations

import os
import re
from urllib.parse import unquote, urlparse
from pathlib import Path
from typing import Any

import torch

from lightning_modules.head_model import HeadModel

CHECKPOINT_ARTIFACT_DIR = "checkpoints"
WHICH = ("best", "last")
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


class IncompatibleCheckpointError(ValueError):
    """The model was trained on a different feature layout or catalog than the dataset at hand."""


def load_checkpoint_file(path, map_location: Any = "cpu") -> HeadModel:
    """A HeadModel (eval mode) from a Lightning checkpoint written by training."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise ValueError(f"{path} is not a HeadModel checkpoint (no state_dict/hyper_parameters)")
    model = HeadModel(**dict(ckpt["hyper_parameters"]))
    model.load_state_dict(ckpt["state_dict"], strict=True)
    return model.eval()


def checkpoint_artifact(run_id: str, which: str = "best", tracking_uri: str | None = None, root=None,
                        dst_dir=None) -> Path:
    """Download ``checkpoints/<which>.ckpt`` of an MLflow run; returns the local file."""
    import mlflow

    from lightning_modules.tracking import tracking_uri as _uri

    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")
    uri = tracking_uri or _uri(root)
    rel = f"{CHECKPOINT_ARTIFACT_DIR}/{which}.ckpt"
    try:
        run = mlflow.MlflowClient(uri).get_run(run_id)
    except Exception as e:
        raise FileNotFoundError(f"no MLflow run {run_id} at {uri} ({e.__class__.__name__})") from None
    art = run.info.artifact_uri
    parsed = urlparse(art)
    if dst_dir is None and parsed.scheme in ("", "file"):
        local = Path(unquote(parsed.path) if parsed.scheme == "file" else art) / rel
        if local.is_file():
            return local  # a local artifact store: read in place, no copy
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=rel, tracking_uri=uri,
                                                    dst_path=None if dst_dir is None else str(dst_dir))
    except Exception as e:  # a run without checkpoints
        raise FileNotFoundError(f"MLflow run {run_id} at {uri} has no artifact {rel} ({e.__class__.__name__}): its "
                                f"training did not finish; use --retrain or another --gnn-run-id") from None
    return Path(local)


def load_head_model(source, which: str = "best", tracking_uri: str | None = None, root=None,
                    map_location: Any = "cpu") -> HeadModel:
    """``source``: a checkpoint file path, or an MLflow run id (then ``which`` is 'best' or 'last')."""
    p = Path(str(source))
    if p.is_file():
        return load_checkpoint_file(p, map_location)
    if _RUN_ID.match(str(source)):
        return load_checkpoint_file(checkpoint_artifact(str(source), which, tracking_uri, root), map_location)
    raise FileNotFoundError(f"{source!r} is neither a checkpoint file nor an MLflow run id")


def check_compatible(model: HeadModel, dataset: Any) -> None:
    """Raise IncompatibleCheckpointError (one line) unless the model's features (names and order) and catalog
    (n_users, n_videos) equal the dataset's."""
    problems = []
    mf, df = list(model.feature_names), list(dataset.feature_names)
    if mf != df:
        if sorted(mf) == sorted(df):
            i = next(i for i, (a, b) in enumerate(zip(mf, df)) if a != b)
            problems.append(f"feature order differs at position {i} (model {mf[i]!r}, dataset {df[i]!r})")
        else:
            extra, lack = sorted(set(mf) - set(df)), sorted(set(df) - set(mf))
            problems.append(f"features differ (model has {len(mf)}, dataset {len(df)}; only in model: "
                            f"{extra[:3]}, only in dataset: {lack[:3]})")
    if int(model.n_users) != int(dataset.n_users):
        problems.append(f"n_users {model.n_users} != dataset {dataset.n_users}")
    if int(model.n_videos) != int(dataset.n_videos):
        problems.append(f"n_videos {model.n_videos} != dataset {dataset.n_videos}")
    if problems:
        trained = getattr(model, "hparams", {}).get("dataset_id", "") or "?"
        raise IncompatibleCheckpointError(
            f"checkpoint (trained on dataset {trained}) does not fit dataset "
            f"{getattr(dataset, 'dataset_id', '?')}: {'; '.join(problems)}; retrain the GNN on this dataset")


def latest_training_run(dataset_id: str, tracking_uri: str | None = None, root=None,
                        experiment: str = "gnn-training") -> str | None:
    """Run id of the newest FINISHED training run for ``dataset_id`` that has a best checkpoint, or None."""
    import mlflow

    from lightning_modules.tracking import tracking_uri as _uri

    client = mlflow.MlflowClient(tracking_uri or _uri(root))
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    runs = client.search_runs([exp.experiment_id],
                              filter_string=f"tags.dataset_id = '{dataset_id}' and attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=20)
    for run in runs:
        if any(a.path == f"{CHECKPOINT_ARTIFACT_DIR}/best.ckpt"
               for a in client.list_artifacts(run.info.run_id, CHECKPOINT_ARTIFACT_DIR)):
            return run.info.run_id
    return None
