"""GNN runs that estimation may (not) use, and run names (newcomer review, findings 5, 7 and 17): a real training
on the tiny planted world, a real MLflow sqlite store, a training that loses its checkpoints, a second world."""
from __future__ import annotations

import logging
import shutil

import mlflow
import pytest
import pytorch_lightning as pl

from estimation.runner import EstimationConfig, UsageError, find_gnn_run, run
from experiments.train_gnn import TrainConfig, TrainingError, fit_and_log


@pytest.fixture(scope="module")
def trained(tiny_world, tmp_path_factory):
    root = tmp_path_factory.mktemp("gnnruns")
    cfg = TrainConfig(data_dir=str(tiny_world), root=str(root), epochs=1, hidden_dim=8, batch_size=1024)
    result = fit_and_log(cfg)
    client = mlflow.MlflowClient(f"sqlite:///{root.resolve()}/mlruns/mlflow.db")
    return root, result, client


class LoseCheckpoints(pl.Callback):
    """Deletes the checkpoints when fitting ends, as a full disk or a cleaner would."""

    def on_train_end(self, trainer, pl_module):
        for cb in trainer.checkpoint_callbacks:
            shutil.rmtree(cb.dirpath, ignore_errors=True)


def test_run_name_says_dataset_width_and_epochs(trained):
    """Finding 17: seeding made every GNN run 'overjoyed-slug-911'."""
    root, result, client = trained
    ds = result.datamodule.dataset.dataset_id
    assert client.get_run(result.run_id).info.run_name == f"gnn-{ds[:8]}-h8-e1"


def test_training_without_checkpoints_fails_clearly_and_is_never_reused(trained, tiny_world):
    """Finding 5: such a run stayed FINISHED and blocked every later estimation on the dataset."""
    root, good, client = trained
    cfg = TrainConfig(data_dir=str(tiny_world), root=str(root), epochs=1, hidden_dim=8, batch_size=1024)
    with pytest.raises(TrainingError, match="without its checkpoints.*marked FAILED"):
        fit_and_log(cfg, callbacks=[LoseCheckpoints()])
    exp = client.get_experiment_by_name("gnn-training")
    newest = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)[0]
    assert newest.info.run_id != good.run_id
    assert newest.info.status == "FAILED" and "best_val_auc_mean" not in newest.data.tags
    ds = good.datamodule.dataset.dataset_id
    uri = f"sqlite:///{root.resolve()}/mlruns/mlflow.db"
    assert find_gnn_run(client, ds, None, uri) == good.run_id  # the complete run, not the newer broken one
    with pytest.raises(UsageError, match="ended FAILED without checkpoints.*--retrain"):
        find_gnn_run(client, ds, newest.info.run_id, uri)
    assert not list((root / "mlruns" / "lightning").glob(f"*/{newest.info.run_id}"))


def test_gnn_run_of_another_dataset_warns_and_tags_the_parent(trained, tiny_world, tmp_path, caplog):
    """Finding 7: a --gnn-run-id trained on other data (same shapes) was used silently. Also finding 17: the
    parent run gets a name that tells invocations apart."""
    from datamodules.world import make_world

    root, good, client = trained
    other = make_world(tmp_path / "other", size="tiny", seed=5)  # same catalog size, different data
    cfg = EstimationConfig(data_dir=str(other), gnn_run_id=good.run_id, root=str(root), objectives="cat_ce",
                           max_evals=5, bootstrap=0, landscape=False)
    with caplog.at_level(logging.WARNING, logger="run_estimation"):
        summary = run(cfg)
    trained_on = good.datamodule.dataset.dataset_id
    assert summary["dataset_id"] != trained_on
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(good.run_id in w and trained_on in w and "gnn_dataset_mismatch" in w for w in warnings), warnings
    parent = client.get_run(summary["parent_run_id"])
    assert parent.data.tags["gnn_dataset_mismatch"] == "true" and parent.data.tags["gnn_dataset_id"] == trained_on
    assert parent.info.run_name == f"{summary['dataset_id'][:8]} cat_ce nelder-mead"
    # the same run on its own dataset: no mismatch tag
    same = run(EstimationConfig(data_dir=str(tiny_world), gnn_run_id=good.run_id, root=str(root),
                                objectives="cat_ce", max_evals=5, bootstrap=0, landscape=False))
    tags = client.get_run(same["parent_run_id"]).data.tags
    assert "gnn_dataset_mismatch" not in tags and tags["gnn_dataset_id"] == trained_on
