"""Head predictions for interaction rows, sharded across processes with a BasePredictionWriter.

Under DDP each rank predicts a disjoint share of the rows (Lightning's unrepeated distributed sampler) and
writes ``<out_dir>/rank<r>.pt`` (row positions + probabilities); :func:`merge_predictions` puts them back in row
order and checks that every row was predicted exactly once.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter


class EdgePredictionWriter(BasePredictionWriter):
    """Collects (row, probabilities) per batch; at the end of the predict epoch saves this rank's shard."""

    def __init__(self, out_dir):
        super().__init__(write_interval="batch")
        self.out_dir = Path(out_dir)
        self._rows: list[torch.Tensor] = []
        self._probs: list[torch.Tensor] = []

    def on_predict_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._rows, self._probs = [], []

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        self._rows.append(batch["row"].detach().cpu())
        self._probs.append(prediction.detach().float().cpu())

    def on_predict_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        rows = torch.cat(self._rows) if self._rows else torch.zeros(0, dtype=torch.long)
        probs = torch.cat(self._probs) if self._probs else torch.zeros(0, 4)
        tmp = self.out_dir / f".rank{trainer.global_rank}.pt.tmp"
        torch.save({"row": rows, "probs": probs, "world_size": trainer.world_size}, tmp)
        tmp.replace(self.out_dir / f"rank{trainer.global_rank}.pt")
        self._rows, self._probs = [], []


def merge_predictions(out_dir, n_rows: int | None = None, rows: np.ndarray | None = None) -> np.ndarray:
    """float32 [n, 4] probabilities in row order from the rank shards in ``out_dir``. ``rows``: the expected row
    positions (default 0..n_rows-1); raises if a row is missing or predicted twice."""
    shards = sorted(Path(out_dir).glob("rank*.pt"))
    if not shards:
        raise FileNotFoundError(f"no prediction shards rank*.pt in {out_dir}")
    parts = [torch.load(p, weights_only=True) for p in shards]
    world = {int(p["world_size"]) for p in parts}
    if len(world) != 1 or len(parts) != world.pop():
        raise ValueError(f"{out_dir}: {len(parts)} shards do not match the world size they were written with")
    got_rows = torch.cat([p["row"] for p in parts]).numpy()
    probs = torch.cat([p["probs"] for p in parts]).numpy()
    expected = np.arange(n_rows) if rows is None else np.asarray(rows)
    order = np.argsort(got_rows, kind="stable")
    if len(got_rows) != len(expected) or not np.array_equal(got_rows[order], np.sort(expected)):
        raise ValueError(f"{out_dir}: shards cover {len(np.unique(got_rows))} distinct rows "
                         f"({len(got_rows)} predictions) but {len(expected)} were expected")
    sorted_probs = probs[order]
    # back into the order of `expected`
    pos = np.searchsorted(np.sort(expected), expected)
    return sorted_probs[pos].astype(np.float32)


def predict_rows(model, datamodule, out_dir, trainer_kwargs: dict[str, Any] | None = None,
                 ckpt_path: str | None = None) -> np.ndarray | None:
    """Run ``Trainer.predict`` with an EdgePredictionWriter and return merged probabilities for the
    datamodule's predict split (None on non-zero ranks)."""
    writer = EdgePredictionWriter(out_dir)
    kw = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    kw.update(trainer_kwargs or {})
    kw["callbacks"] = [*kw.get("callbacks", []), writer]
    trainer = pl.Trainer(**kw)
    trainer.predict(model, datamodule=datamodule, return_predictions=False, ckpt_path=ckpt_path)
    trainer.strategy.barrier()
    if trainer.global_rank != 0:
        return None
    return merge_predictions(out_dir, rows=datamodule.split_rows(datamodule.predict_split).numpy())
