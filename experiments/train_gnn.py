"""Train the GNN head model with Lightning, logged to MLflow (experiment 'gnn-training') with its checkpoints.

    python experiments/train_gnn.py                          # the embedded small planted world
    python experiments/train_gnn.py --data-dir "/path/to/KuaiRec 2.0" --epochs 30 --hidden-dim 128

The run gets tags dataset_id and data_dir, the config as params, per-epoch train/val metrics, test AUC per head
(best checkpoint) and the artifacts checkpoints/best.ckpt (best val/auc_mean) and checkpoints/last.ckpt.
``train(config) -> run_id`` is the entry point for other code.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from datamodules.schema import WORLD_SIZES  # noqa: E402
from estimation.cli import (DISK_FULL, choice, disk_full, end_status, error, folder_problem,  # noqa: E402
                            interrupted_message, interruptible, is_interrupt, note_killed, parse_config,
                            setup_logging)
from estimation.runner import UsageError  # noqa: E402
from lightning_modules.tracking import TRAINING_EXPERIMENT  # noqa: E402

if TYPE_CHECKING:  # torch and Lightning load in seconds: imported where used, so bad options fail at once
    import pytorch_lightning as pl

    from datamodules.datamodule import KuaiRecDataModule
    from lightning_modules.head_model import HeadModel

log = logging.getLogger("train_gnn")


ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "auto")


class TrainingError(RuntimeError):
    """Training ended without what a run must hold (a checkpoint); the run is marked FAILED."""


@dataclass
class TrainConfig:
    data_dir: str | None = None      # KuaiRec 2.0 folder; None: the embedded small planted world
    matrix: str = field(default="big", metadata=choice("big", "small"))  # which interaction matrix to learn from
    epochs: int = 30                 # maximum epochs (early stopping on val/auc_mean)
    patience: int = 3                # early-stopping patience in epochs
    hidden_dim: int = 64             # node embedding / GCN width (the notebook's checkpoint used 128)
    batch_size: int = 4096           # supervision edges per step (the full graph is propagated every step)
    lr: float = 2e-3                 # Adam learning rate
    weight_decay: float = 0.0        # Adam weight decay
    emb_lr_mult: float = 3.0         # learning rate of the per-node parameters (embeddings, biases) = lr x this
    emb_init_std: float = 0.1        # node-embedding init N(0, std) (nn.Embedding's default is 1)
    residual: int = 0                # 1: GCN layers add their input (not the notebook's network; keeps node identity)
    node_bias: int = 1               # 1: a learned logit offset per user and per video and head (0: the notebook's network)
    seed: int = 0                    # seed for weights, shuffling and the embedded world
    devices: str = "1"               # Lightning devices (a count, a list of indices like "0,1", or "auto")
    accelerator: str = field(default="cpu", metadata=choice(*ACCELERATORS))  # where to train
    strategy: str = "auto"           # Lightning strategy: auto, ddp, ...
    num_workers: int = 0             # DataLoader workers
    root: str = str(ROOT)            # project root holding mlruns/ and data/
    experiment: str = TRAINING_EXPERIMENT
    run_name: str | None = None      # MLflow run name; default gnn-<dataset id>-h<hidden dim>-e<epochs>
    world_size: str = field(default="small", metadata=choice(*WORLD_SIZES))  # embedded world size
    predict_out: str | None = None   # also write the best checkpoint's head probabilities of every interaction to this .npy file (rows: the processed interactions), predicted sharded across the devices

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _devices(value: str) -> Any:
    v = str(value).strip()
    try:
        if v == "auto":
            return v
        if "," in v:
            out = [int(x) for x in v.split(",") if x.strip()]
            if not out or min(out) < 0:
                raise ValueError
            return out
        out = int(v)
        if out == 0 or out < -1:
            raise ValueError
        return out
    except ValueError:
        raise UsageError(f"--devices {value!r}: expected a count (2; -1 for all), a list of device indices "
                         f"(0,1) or auto") from None


def check_train_config(config: TrainConfig) -> None:
    """Reject bad options in one line (UsageError) before any data work or MLflow run."""
    for name, value, low in (("epochs", config.epochs, 1), ("hidden-dim", config.hidden_dim, 1),
                             ("batch-size", config.batch_size, 1), ("patience", config.patience, 0),
                             ("num-workers", config.num_workers, 0), ("seed", config.seed, 0)):
        if value < low:
            raise UsageError(f"--{name} must be >= {low}, got {value}")
    for name, value in (("lr", config.lr), ("emb-lr-mult", config.emb_lr_mult)):
        if not (math.isfinite(value) and value > 0):
            raise UsageError(f"--{name} must be a positive number, got {value}")
    for name, value in (("weight-decay", config.weight_decay), ("emb-init-std", config.emb_init_std)):
        if not (math.isfinite(value) and value >= 0):
            raise UsageError(f"--{name} must be >= 0, got {value}")
    for name, value in (("residual", config.residual), ("node-bias", config.node_bias)):
        if value not in (0, 1):
            raise UsageError(f"--{name} must be 0 or 1, got {value}")
    for name, value, allowed in (("matrix", config.matrix, ("big", "small")),
                                 ("world-size", config.world_size, WORLD_SIZES),
                                 ("accelerator", config.accelerator, ACCELERATORS)):
        if value not in allowed:
            raise UsageError(f"--{name}: unknown value {value!r}; choose from {', '.join(allowed)}")
    _devices(config.devices)
    problem = folder_problem(config.root)
    if problem:
        raise UsageError(f"--root {config.root}: {problem}; pass a folder where mlruns/ and data/ may be created")
    if config.predict_out:  # checked now, not after an hour of training
        out = Path(config.predict_out)
        if out.is_dir():
            raise UsageError(f"--predict-out {out} is a folder; pass a file name such as {out / 'pred.npy'}")
        problem = folder_problem(out.parent)
        if problem:
            raise UsageError(f"--predict-out {out}: {problem}; pass a file in a writable folder")
    if config.accelerator in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UsageError(f"--accelerator {config.accelerator}: no CUDA GPU is visible to torch "
                             f"{torch.__version__} (a CPU build, or no driver); use --accelerator cpu")
    if config.accelerator == "mps":
        import torch

        if not torch.backends.mps.is_available():
            raise UsageError("--accelerator mps: MPS is not available here; use --accelerator cpu")


def resolve_data_dir(config: TrainConfig) -> str:
    if config.data_dir:
        return str(config.data_dir)
    from datamodules.world import ensure_world

    return str(ensure_world(config.world_size, config.seed, root=Path(config.root) / "data" / "worlds"))


def load_training_dataset(config: TrainConfig):
    from datamodules.dataset import load_dataset, prepare_dataset

    data_dir = resolve_data_dir(config)
    processed = prepare_dataset(data_dir, matrix=config.matrix, cache_root=Path(config.root) / "data" / "processed")
    return load_dataset(processed), data_dir


def _quiet() -> None:
    for msg in (".*Sparse CSR tensor support is in beta.*", ".*Sparse invariant checks.*",
                ".*does not have many workers.*", ".*LeafSpec.*", ".*is deprecated.*"):
        warnings.filterwarnings("ignore", message=msg)
    rank_zero = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if not any(isinstance(f, _NoAdverts) for f in rank_zero.filters):
        rank_zero.addFilter(_NoAdverts())


class _NoAdverts(logging.Filter):
    """Drop Lightning's start-up advertisement ('Tip: ... litlogger'); keep its GPU/TPU lines and warnings."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage().lower()


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
    """:func:`train` with everything it made; ``callbacks`` are added to the Trainer.

    A run that does not end with its checkpoints logged is marked FAILED (KILLED after Ctrl-C or SIGTERM), never
    FINISHED, and carries no best_val_auc_mean tag, so estimation never picks it up."""
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
    from pytorch_lightning.loggers import MLFlowLogger

    from datamodules.datamodule import KuaiRecDataModule
    from lightning_modules.head_model import HeadModel
    from estimation.tracking import process_tags
    from lightning_modules.tracking import artifact_location, setup_mlflow, tracking_uri

    check_train_config(config)
    _quiet()
    pl.seed_everything(config.seed, workers=True, verbose=False)
    if dataset is None:
        dataset, data_dir = load_training_dataset(config)
    dm = KuaiRecDataModule(dataset, batch_size=config.batch_size, num_workers=config.num_workers)
    dm.setup()
    model = HeadModel.from_graph(dm.graph, dataset_id=str(dataset.dataset_id), hidden_dim=config.hidden_dim,
                                 lr=config.lr, weight_decay=config.weight_decay, emb_lr_mult=config.emb_lr_mult,
                                 emb_init_std=config.emb_init_std, residual=bool(config.residual),
                                 node_bias=bool(config.node_bias))

    n_batches = math.ceil(len(dm.split_rows("train")) / config.batch_size)
    setup_mlflow(config.root, config.experiment)
    run_name = config.run_name or f"gnn-{str(dataset.dataset_id)[:8]}-h{config.hidden_dim}-e{config.epochs}"
    logger = MLFlowLogger(
        experiment_name=config.experiment, run_name=run_name, tracking_uri=tracking_uri(config.root),
        artifact_location=artifact_location(config.root, config.experiment),
        tags={"dataset_id": str(dataset.dataset_id), "data_dir": str(data_dir or ""), "stage": "gnn-training",
              **process_tags()})  # the launching process: a later job marks the run KILLED if it dies
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
    staging = (Path(config.root) / "mlruns" / "lightning").resolve()
    try:
        return _fit_test_log(config, dataset, data_dir, dm, model, trainer, logger, best_cb, writer)
    except BaseException as e:
        run_id = getattr(logger, "_run_id", None)  # None: the run was never created (reading run_id creates it)
        if run_id and trainer.global_rank == 0:
            try:
                logger.experiment.set_terminated(run_id, end_status(e))
            except Exception:  # the store is gone too: keep the original error
                log.warning("could not mark run %s %s", run_id, end_status(e))
            note_killed(e, run_id)
        if best_cb.dirpath:
            _drop_staging(Path(best_cb.dirpath), staging)  # this run will never be reused
        raise


def _drop_staging(ckpt_dir: Path, staging: Path) -> None:
    """Remove Lightning's checkpoint folder of a run (and its experiment folder once empty) under `staging`."""
    if ckpt_dir.name != "checkpoints" or staging not in ckpt_dir.resolve().parents:
        return
    shutil.rmtree(ckpt_dir.parent, ignore_errors=True)
    with contextlib.suppress(OSError):
        ckpt_dir.parent.parent.rmdir()  # fails while another run stages there: fine


def _fit_test_log(config, dataset, data_dir, dm, model, trainer, logger, best_cb, writer) -> TrainResult:
    """Fit, test, log checkpoints and tags: the part of :func:`fit_and_log` after the run exists."""
    logger.log_hyperparams({f"config/{k}": v for k, v in config.to_dict().items()})
    trainer.fit(model, datamodule=dm)
    # read these now: test/predict with ckpt_path restore the callback's state as it was in that checkpoint
    best_path, last_path = best_cb.best_model_path, best_cb.last_model_path
    best = None if best_cb.best_model_score is None else float(best_cb.best_model_score)
    if trainer.global_rank == 0:
        missing = [p or "(none)" for p in (best_path or last_path, last_path) if not p or not Path(p).is_file()]
        if missing:
            raise TrainingError(f"training run {logger.run_id} ended after {trainer.current_epoch} epoch(s) without "
                                f"its checkpoints ({', '.join(missing)} missing); the run is marked FAILED: "
                                f"train again (see --epochs, --root)")
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
    from lightning_modules.checkpoints import CHECKPOINT_ARTIFACT_DIR

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
    oracle = log_oracle_auc(client, run_id, model, dm, data_dir, config.matrix)
    if oracle:
        test_metrics.update(oracle)
    # last: the tag is what makes the run reusable (estimation.runner.find_gnn_run), so only a complete run has it
    client.set_tag(run_id, "best_val_auc_mean", str(info["best_score"]))
    client.set_terminated(run_id, "FINISHED")
    # the MLflow artifacts are the copies that count
    _drop_staging(ckpt_dir, (Path(config.root) / "mlruns" / "lightning").resolve())
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
    import torch

    from datamodules.schema import HEADS

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
    return parse_config(TrainConfig, argv, __doc__)


def _reportable(e: BaseException) -> bool:
    """A problem with the input or the setup (one line, exit 2), not a bug (traceback). Lightning's exception class
    is looked up only if Lightning was loaded: the options and the data are checked before it is."""
    from datamodules.raw import DataError

    kinds = [UsageError, DataError, TrainingError, ValueError, FileNotFoundError, PermissionError]  # GraphError is a ValueError
    fabric = sys.modules.get("lightning_fabric.utilities.exceptions")
    if fabric is not None:
        kinds.append(fabric.MisconfigurationException)
    return isinstance(e, tuple(kinds))


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    try:
        check_train_config(config)  # before torch and Lightning load and before any MLflow run exists
    except UsageError as e:
        return error(e)
    setup_logging()
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    try:
        with interruptible():
            dataset, data_dir = load_training_dataset(config)  # bad data fails here, before Lightning loads
            import torch

            torch.set_float32_matmul_precision("high")
            run_id = train(config, dataset, data_dir)
    except Exception as e:
        if disk_full(e):
            return error(DISK_FULL)
        if not _reportable(e):
            raise
        return error(e)
    except BaseException as e:  # Ctrl-C or SIGTERM: the run is marked KILLED; one line, exit 128 + signal
        if not is_interrupt(e):
            raise
        msg, status = interrupted_message(e)
        print(msg, file=sys.stderr)
        return status
    if run_id is not None and int(os.environ.get("LOCAL_RANK", "0")) == 0:
        from lightning_modules.tracking import tracking_uri

        print(f"run_id {run_id}")
        print(f"mlflow ui --backend-store-uri {tracking_uri(config.root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
