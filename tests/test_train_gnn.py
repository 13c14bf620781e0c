"""End to end: a real Trainer run logged to a real sqlite MLflow store; checkpoints reload from the run."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from datamodules.datamodule import KuaiRecDataModule
from datamodules.schema import HEADS
from experiments.train_gnn import TrainConfig, fit_and_log, parse_args
from fake_dataset import make_fake_dataset
from lightning_modules.checkpoints import (IncompatibleCheckpointError, checkpoint_artifact, check_compatible,
                                           latest_training_run, load_head_model)
from lightning_modules.tracking import tracking_uri

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


@torch.no_grad()
def _predict(model, ds):
    from datamodules.graph import build_graph

    g = build_graph(ds)
    model = model.eval()
    return model(g.user, g.video, g.edge_attr)


class LastPredictions(pl.Callback):
    """Predictions of the weights as they are when fitting ends (= last.ckpt)."""

    preds = None

    def on_train_end(self, trainer, pl_module):
        was_training = pl_module.training
        self.preds = _predict(pl_module, trainer.datamodule.dataset)
        pl_module.train(was_training)


@pytest.fixture(scope="module")
def trained(tiny_world, tmp_path_factory):
    """The real pipeline on the tiny planted world: prepare_dataset -> datamodule -> Trainer -> MLflow."""
    root = tmp_path_factory.mktemp("proj")
    cb = LastPredictions()
    cfg = TrainConfig(data_dir=str(tiny_world), root=str(root), epochs=2, hidden_dim=8, batch_size=512, seed=3)
    result = fit_and_log(cfg, callbacks=[cb])
    return root, result, cb.preds


@pytest.fixture(scope="module")
def ds(trained):
    return trained[1].datamodule.dataset


def test_run_logged_with_checkpoints(trained, ds, tiny_world):
    root, result, _ = trained
    assert (root / "mlruns" / "mlflow.db").is_file()
    assert (root / "data" / "processed" / ds.dataset_id).is_dir()
    client = mlflow.MlflowClient(tracking_uri(root))
    run = client.get_run(result.run_id)
    assert client.get_experiment(run.info.experiment_id).name == "gnn-training"
    assert run.data.tags["dataset_id"] == ds.dataset_id and run.data.tags["data_dir"] == str(tiny_world)
    arts = {a.path for a in client.list_artifacts(result.run_id, "checkpoints")}
    assert {"checkpoints/best.ckpt", "checkpoints/last.ckpt"} <= arts
    for h in HEADS:
        assert 0.0 <= run.data.metrics[f"test/auc_{h}"] <= 1.0
    assert len(client.get_metric_history(result.run_id, "val/auc_mean")) == 2  # one per epoch
    assert run.data.params["config/epochs"] == "2"
    assert run.info.artifact_uri.startswith((root / "mlruns" / "artifacts" / "gnn-training").as_uri())
    assert run.info.status == "FINISHED"
    assert latest_training_run(ds.dataset_id, root=root) == result.run_id
    assert latest_training_run("no-such-dataset", root=root) is None


def test_reload_by_run_id_and_path_predicts_the_same(trained, ds):
    root, result, last_preds = trained
    best_preds = _predict(result.model, ds)  # the in-memory model holds the best weights after testing
    by_best = load_head_model(result.run_id, "best", root=root)
    by_last = load_head_model(result.run_id, "last", root=root)
    path = checkpoint_artifact(result.run_id, "best", root=root)
    by_path = load_head_model(path)
    torch.testing.assert_close(_predict(by_best, ds), best_preds, rtol=0, atol=0)
    torch.testing.assert_close(_predict(by_path, ds), best_preds, rtol=0, atol=0)
    torch.testing.assert_close(_predict(by_last, ds), last_preds, rtol=0, atol=0)
    ckpt = torch.load(path)  # torch's default (weights_only=True) safe loading works
    assert ckpt["hyper_parameters"]["feature_names"] == ds.feature_names
    check_compatible(by_best, ds)


def test_checkpoint_with_other_catalog_or_features_fails_clearly(trained):
    root, result, _ = trained
    model = load_head_model(result.run_id, "last", root=root)
    other = make_fake_dataset(n_users=81, n_videos=300, per_user=3, seed=5)
    with pytest.raises(IncompatibleCheckpointError, match="n_users 80 != dataset 81; retrain"):
        check_compatible(model, other)
    renamed = make_fake_dataset(n_users=80, n_videos=300, per_user=3, seed=5)
    renamed.feature_names = [*renamed.feature_names[:-1], "hist_new_feature"]
    with pytest.raises(IncompatibleCheckpointError, match="only in dataset: \\['hist_new_feature'\\]"):
        check_compatible(model, renamed)
    with pytest.raises(FileNotFoundError, match="no MLflow run"):
        load_head_model("0" * 32, root=root)
    with pytest.raises(FileNotFoundError, match="neither a checkpoint file nor an MLflow run id"):
        load_head_model(str(root / "missing.ckpt"))


def test_cli_arguments():
    cfg = parse_args(["--epochs", "3", "--hidden-dim", "16", "--lr", "0.01", "--devices", "2", "--strategy", "ddp"])
    assert (cfg.epochs, cfg.hidden_dim, cfg.lr, cfg.devices, cfg.strategy) == (3, 16, 0.01, "2", "ddp")
    assert cfg.data_dir is None


def test_ddp_two_cpu_processes_train_and_predict(tiny_world, tmp_path):
    """The CLI with --strategy ddp --devices 2 on CPU (gloo): trains, logs one run, and predicts every
    interaction sharded over both processes; the merged predictions equal single-process ones."""
    out = tmp_path / "preds.npy"
    cmd = [sys.executable, str(ROOT / "experiments" / "train_gnn.py"), "--data-dir", str(tiny_world),
           "--root", str(tmp_path), "--epochs", "1", "--hidden-dim", "8", "--batch-size", "512",
           "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--predict-out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=env, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-4000:]
    run_ids = re.findall(r"^run_id (\w+)$", proc.stdout, flags=re.M)
    assert len(run_ids) == 1, proc.stdout  # only rank 0 reports (and logs)
    client = mlflow.MlflowClient(tracking_uri(tmp_path))
    run = client.get_run(run_ids[0])
    assert run.data.params["config/strategy"] == "ddp"
    assert {"checkpoints/best.ckpt", "checkpoints/last.ckpt"} <= {
        a.path for a in client.list_artifacts(run_ids[0], "checkpoints")}
    assert "test/auc_mean" in run.data.metrics

    from datamodules.dataset import load_dataset
    from lightning_modules.prediction import predict_rows

    ds = load_dataset(tmp_path / "data" / "processed" / run.data.tags["dataset_id"])
    model = load_head_model(run_ids[0], "best", root=tmp_path)
    merged = np.load(out)
    assert merged.shape == (len(ds.interactions), 4)
    np.testing.assert_allclose(merged, _predict(model, ds).numpy(), rtol=0, atol=1e-6)
    single = predict_rows(model, KuaiRecDataModule(ds, eval_batch_size=700), tmp_path / "single",
                          dict(accelerator="cpu", devices=1))
    np.testing.assert_allclose(single, merged, rtol=0, atol=1e-6)


def test_oracle_report_hand_computed():
    """AUC, oracle AUC and share of lift on a case worked by hand; single-class heads are undefined."""
    from lightning_modules.oracle import flat_metrics, oracle_report

    y = np.array([[0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1]], dtype=float)
    y[:, 3] = 0.0                                             # neg: a single class -> undefined
    model = np.array([[0.1, .5, .5, .5], [0.3, .5, .5, .5], [0.35, .5, .5, .5], [0.8, .5, .5, .5], [0.2, .5, .5, .5]])
    true = np.array([[0.2, .5, .5, .5], [0.6, .5, .5, .5], [0.3, .5, .5, .5], [0.9, .5, .5, .5], [0.1, .5, .5, .5]])
    r = oracle_report(y, model, true)
    # complete: positives (rows 1, 3) score 0.3, 0.8 against negatives 0.1, 0.35, 0.2: 5 of 6 pairs ordered
    assert r["complete"]["auc"] == pytest.approx(5 / 6)
    assert r["complete"]["oracle_auc"] == pytest.approx(1.0)  # 0.6, 0.9 above 0.2, 0.3, 0.1
    assert r["complete"]["share"] == pytest.approx((5 / 6 - 0.5) / 0.5)
    assert r["long"]["auc"] == pytest.approx(0.5) and r["long"]["oracle_auc"] == pytest.approx(0.5)
    assert r["long"]["share"] is None                         # oracle at chance: no lift to share
    assert r["neg"]["auc"] is None and r["neg"]["share"] is None
    assert r["rewatch"]["share"] is None
    assert r["share_mean"] == pytest.approx(r["complete"]["share"])   # the mean over defined shares only
    m = flat_metrics(r)
    assert "test/oracle_share_neg" not in m and m["test/oracle_share_complete"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="covers only 80.0%"):
        oracle_report(y, model, np.where(np.arange(5)[:, None] == 0, np.nan, true))


def test_planted_world_run_logs_oracle_auc_and_share(trained):
    """The run on a planted world logs per head the oracle AUC of the true probabilities on the test edges and
    share = (auc - 0.5) / (oracle - 0.5), consistent with the torchmetrics test AUC of the Lightning loop."""
    root, result, _ = trained
    metrics = mlflow.MlflowClient(tracking_uri(root)).get_run(result.run_id).data.metrics
    shares = []
    for h in HEADS:
        oracle = metrics[f"test/oracle_auc_{h}"]
        assert 0.5 < oracle <= 1.0                            # the true probabilities beat chance on every head
        share = metrics[f"test/oracle_share_{h}"]
        assert share == pytest.approx((metrics[f"test/auc_{h}"] - 0.5) / (oracle - 0.5), abs=1e-4)
        shares.append(share)
    assert metrics["test/oracle_share_mean"] == pytest.approx(np.mean(shares))
    assert metrics["test/oracle_coverage"] >= 0.99


def test_early_stopping_on_validation_mean_auc(tiny_world, tmp_path):
    """With a learning rate too small to move any weight, val/auc_mean never improves: training stops after
    patience + 1 epochs of the 6 allowed."""
    cfg = TrainConfig(data_dir=str(tiny_world), root=str(tmp_path), epochs=6, patience=1, lr=1e-30,
                      hidden_dim=8, batch_size=1024, seed=3)
    result = fit_and_log(cfg)
    history = mlflow.MlflowClient(tracking_uri(tmp_path)).get_metric_history(result.run_id, "val/auc_mean")
    assert len(history) == 2
    assert history[0].value == history[1].value
