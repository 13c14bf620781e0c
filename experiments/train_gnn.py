"""Train the GNN head model with Lightning, logged to MLflow (experiment 'gnn-training') with its checkpoints.

    python experiments/train_gnn.py                          # the embedded small planted world
    python experiments/train_gnn.py --data-dir "/path/to/KuaiRec 2.0" --epochs 30 --hidden-dim 128

The run gets tags dataset_id and data_dir, the config as params, per-epoch train/val metrics, test AUC per head
(best checkpoint) and the artifacts checkpoints/best.ckpt (best val/auc_mean) and checkpoints/last.ckpt.
``train(config) -> run_id`` is the entry point for other code.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint  # noqa: E402
from pytorch_lightning.loggers import MLFlowLogger  # noqa: E402

from datamodules.datamodule import KuaiRecDataModule  # noqa: E402
from datamodules.schema import HEADS  # noqa: E402
from lightning_modules.checkpoints import CHECKPOINT_ARTIFACT_DIR  # noqa: E402
from lightning_modules.head_model import HeadModel  # noqa: E402
from lightning_modules.tracking import TRAINING_EXPERIMENT, artifact_location, setup_mlflow, tracking_uri  # noqa: E402

log = logging.getLogger("train_gnn")


@dataclass
class TrainConfig:
    data_dir: str | None = None      # KuaiRec 2.0 folder; None: the embedded small planted world
    matrix: str = "big"              # which interaction matrix to learn from
    epochs: int = 30                 # maximum epochs (early stopping on val/auc_mean)
    patience: int = 3                # early-stopping patience in epochs
    hidden_dim: int = 64             # node embedding / GCN width (the notebook's checkpoint used 128)
    batch_size: int = 4096           # supervision edges per step (the full graph is propagated every step)
    lr: float = 2e-3                 # Adam learning rate
    weight_decay: float = 0.0        # Adam weight decay
    emb_lr_mult: float = 10.0        # node-embedding learning rate = lr x this
    emb_init_std: float = 0.1        # node-embedding init N(0, std) (nn.Embedding's default is 1)
    residual: int = 0                # 1: GCN layers add their input (not the notebook's network; keeps node identity)
    seed: int = 0                    # seed for weights, shuffling and the embedded world
    devices: str = "1"               # Lightning devices (an int, a list like "0,1", or "auto")
    accelerator: str = "cpu"         # cpu, gpu, auto
    strategy: str = "auto"           # auto, ddp, ...
    num_workers: int = 0             # DataLoader workers
    root: str = str(ROOT)            # project root holding mlruns/ and data/
    experiment: str = TRAINING_EXPERIMENT
    run_name: str | None = None
    world_size: str = "small"        # embedded world size when data_dir is None
    predict_out: str | None = None   # also write best-checkpoint probabilities of every interaction (.npy, rows
                                     # of the processed interactions), predicted sharded across the devices

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _devices(value: str) -> Any:
    v = str(value).strip()
    if v == "auto":
        return v
    if "," in v:
        return [int(x) for x in v.split(",") if x]
    return int(v)


def resolve_data_dir(config: TrainConfig) -> str:
    if config.data_dir:
        return str(config.data_dir)
    from datamodules.world import ensure_world

    return str(ensure_world(config.world_size, config.seed))


def load_training_dataset(config: TrainConfig):
    from datamodules.dataset import load_dataset, prepare_dataset

    data_dir = resolve_data_dir(config)
    processed = prepare_dataset(data_dir, matrix=config.matrix, cache_root=Path(config.root) / "data" / "processed")
    return load_dataset(processed), data_dir


def _quiet() -> None:
    for msg in (".*Sparse CSR tensor support is in beta.*", ".*Sparse invariant checks.*",
                ".*does not have many workers.*", ".*LeafSpec.*", ".*is deprecated.*"):
        warnings.filterwarnings("ignore", message=msg)


@dataclass
class TrainResult:
    run_id: str | None          # None on non-zero ranks under DDP
    model: HeadModel            # holds the best checkpoint's weights (restored for testing)
    test_metrics: dict[str, float]
    best_score: float | None
    datamodule: KuaiRecDataModule


def train(config: TrainConfig, dataset: Any = None, data_dir: str | None = None) -> str | None:
    """Train, test and log one run; returns the MLflow run id (None on non-zero ranks under DDP).
    ``dataset``: an already loaded ProcessedDataset (then ``data_dir`` only tags the run)."""
    return fit_and_log(config, dataset, data_dir).run_id


def fit_and_log(config: TrainConfig, dataset: Any = None, data_dir: str | None = None,
                callbacks: list[pl.Callback] | tuple = ()) -> TrainResult:
    """:func:`train` with everything it made; ``callbacks`` are added to the Trainer."""
    _quiet()
    pl.seed_everything(config.seed, workers=True, verbose=False)
    if dataset is None:
        dataset, data_dir = load_training_dataset(config)
    dm = KuaiRecDataModule(dataset, batch_size=config.batch_size, num_workers=config.num_workers)
    dm.setup()
    model = HeadModel.from_graph(dm.graph, dataset_id=str(dataset.dataset_id), hidden_dim=config.hidden_dim,
                                 lr=config.lr, weight_decay=config.weight_decay, emb_lr_mult=config.emb_lr_mult,
                                 emb_init_std=config.emb_init_std, residual=bool(config.residual))

    n_batches = math.ceil(len(dm.split_rows("train")) / config.batch_size)
    setup_mlflow(config.root, config.experiment)
    logger = MLFlowLogger(
        experiment_name=config.experiment, run_name=config.run_name, tracking_uri=tracking_uri(config.root),
        artifact_location=artifact_location(config.root, config.experiment),
        tags={"dataset_id": str(dataset.dataset_id), "data_dir": str(data_dir or ""), "stage": "gnn-training"})
    writer = None
    if config.predict_out:
        from lightning_modules.prediction import EdgePredictionWriter

        shard_dir = Path(config.predict_out).with_suffix(".shards")
        if int(os.environ.get("LOCAL_RANK", "0")) == 0:
            shutil.rmtree(shard_dir, ignore_errors=True)
        writer = EdgePredictionWriter(shard_dir)
        callbacks = [*callbacks, writer]
    best_cb = ModelCheckpoint(monitor="val/auc_mean", mode="max", save_top_k=1, save_last=True,
                              filename="best-{epoch:03d}", auto_insert_metric_name=False)
    stop_cb = EarlyStopping(monitor="val/auc_mean", mode="max", patience=config.patience, check_finite=False)
    trainer = pl.Trainer(
        max_epochs=config.epochs, accelerator=config.accelerator, devices=_devices(config.devices),
        strategy=config.strategy, logger=logger, callbacks=[best_cb, stop_cb, *callbacks], deterministic=True,
        default_root_dir=str(Path(config.root) / "mlruns" / "lightning"), enable_progress_bar=False,
        enable_model_summary=False, log_every_n_steps=max(1, min(50, n_batches)), num_sanity_val_steps=0)
    logger.log_hyperparams({f"config/{k}": v for k, v in config.to_dict().items()})
    trainer.fit(model, datamodule=dm)
    # read these now: test/predict with ckpt_path restore the callback's state as it was in that checkpoint
    best_path, last_path = best_cb.best_model_path, best_cb.last_model_path
    best = None if best_cb.best_model_score is None else float(best_cb.best_model_score)
    tested = trainer.test(model, datamodule=dm, ckpt_path=best_path or None,
                          verbose=False)
    test_metrics = {k: float(v) for k, v in (tested[0] if tested else {}).items()}
    if writer is not None:
        trainer.predict(model, datamodule=dm, ckpt_path=best_path or None,
                        return_predictions=False)
        trainer.strategy.barrier()
        if trainer.global_rank == 0:
            from lightning_modules.prediction import merge_predictions

            merged = merge_predictions(writer.out_dir, rows=dm.split_rows(dm.predict_split).numpy())
            np.save(config.predict_out, merged)
            shutil.rmtree(writer.out_dir, ignore_errors=True)
    if trainer.global_rank != 0:
        return TrainResult(None, model, test_metrics, best, dm)
    run_id = logger.run_id
    client = logger.experiment
    ckpt_dir = Path(best_path or last_path).parent
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp) / CHECKPOINT_ARTIFACT_DIR
        stage.mkdir()
        for name, src in (("best", best_path or last_path), ("last", last_path)):
            shutil.copyfile(src, stage / f"{name}.ckpt")
        info = {"best_source": Path(best_path).name if best_path else None,
                "best_score": best,
                "epochs_trained": int(trainer.current_epoch), "dataset_id": str(dataset.dataset_id),
                "config": config.to_dict()}
        (stage / "info.json").write_text(json.dumps(info, indent=2))
        client.log_artifacts(run_id, str(stage), CHECKPOINT_ARTIFACT_DIR)
    client.set_tag(run_id, "best_val_auc_mean", str(info["best_score"]))
    oracle = log_oracle_auc(client, run_id, model, dm, data_dir, config.matrix)
    if oracle:
        test_metrics.update(oracle)
    staging = (Path(config.root) / "mlruns" / "lightning").resolve()
    if ckpt_dir.name == "checkpoints" and staging in ckpt_dir.resolve().parents:
        shutil.rmtree(ckpt_dir.parent, ignore_errors=True)  # the MLflow artifacts are the copies that count
    return TrainResult(run_id, model, test_metrics, best, dm)


def log_oracle_auc(client, run_id: str, model: HeadModel, dm: KuaiRecDataModule, data_dir: str | None,
                   matrix: str) -> dict[str, float]:
    """On a planted world (ground truth beside the data), log per head the oracle AUC of the true probabilities
    on the same test edges and the model's share of the oracle's lift over chance; {} on real data."""
    if not data_dir:
        return {}
    from datamodules.world import load_truth
    from lightning_modules.oracle import flat_metrics, oracle_report, true_head_probs

    truth = load_truth(data_dir)
    if truth is None:
        return {}
    g = dm.graph
    rows = dm.split_rows("test")
    model = model.eval().cpu()
    with torch.no_grad():
        probs = model(g.user[rows], g.video[rows], g.edge_attr[rows]).numpy()
    interactions = dm.dataset.interactions.iloc[rows.numpy()]
    report = oracle_report(g.y[rows].numpy(), probs, true_head_probs(interactions, truth["truth_dir"], matrix))
    metrics = flat_metrics(report, "test/")
    for k, v in metrics.items():
        client.log_metric(run_id, k, v)
    log.info("oracle AUC share per head: %s", {h: report[h]["share"] for h in HEADS})
    return metrics


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    defaults = TrainConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        kind = {int: int, float: float}.get(type(default), str)
        p.add_argument(flag, type=kind, default=default, help=f"(default: {default})")
    return TrainConfig(**vars(p.parse_args(argv)))


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_float32_matmul_precision("high")
    config = parse_args(argv)
    run_id = train(config)
    if run_id is not None and int(os.environ.get("LOCAL_RANK", "0")) == 0:
        print(f"run_id {run_id}")
        print(f"mlflow ui --backend-store-uri {tracking_uri(config.root)}")


if __name__ == "__main__":
    main()
