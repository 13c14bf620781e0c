"""KuaiRecDataModule: serves supervision edges of a ProcessedDataset in mini-batches, plus the graph and sessions.

Each batch is a dict of tensors: ``user`` [B] user ids, ``video`` [B] video ids (not offset), ``x`` [B, F] raw
features (NaN allowed; the model normalizes), ``y`` [B, 4] labels, ``row`` [B] interaction row positions.
The model propagates on the full training graph (``graph.edge_index``) each step; only edges are batched.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from datamodules.graph import GraphTensors, build_graph


class EdgeDataset(Dataset):
    """Supervision edges ``rows`` (positions into the graph's edge arrays); fetched a whole batch at a time."""

    def __init__(self, graph: GraphTensors, rows: torch.Tensor):
        self.graph = graph
        self.rows = rows.long()

    def __len__(self) -> int:
        return int(self.rows.numel())

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        r = self.rows[torch.as_tensor(indices, dtype=torch.long)]
        g = self.graph
        return {"user": g.user[r], "video": g.video[r], "x": g.edge_attr[r], "y": g.y[r], "row": r}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([index]).items()}


def collate_edges(batch: Any) -> dict[str, torch.Tensor]:
    if isinstance(batch, dict):  # already batched by EdgeDataset.__getitems__
        return batch
    return {k: torch.stack([b[k] for b in batch]) for k in batch[0]}


class KuaiRecDataModule(pl.LightningDataModule):
    """``dataset``: a ProcessedDataset (or a processed folder for ``datamodules.dataset.load_dataset``).
    ``predict_split``: 'all' (every interaction, aligned with ``interactions`` rows), 'train', 'val' or 'test'."""

    def __init__(self, dataset: Any, batch_size: int = 4096, eval_batch_size: int | None = None,
                 num_workers: int = 0, predict_split: str = "all"):
        super().__init__()
        self._dataset_arg = dataset
        self.dataset: Any = None
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or 4 * batch_size)
        self.num_workers = int(num_workers)
        self.predict_split = predict_split
        self.graph: GraphTensors | None = None

    def _ensure(self) -> GraphTensors:
        if self.graph is None:
            if isinstance(self._dataset_arg, (str, Path)):
                from datamodules.dataset import load_dataset
                self.dataset = load_dataset(self._dataset_arg)
            else:
                self.dataset = self._dataset_arg
            self.graph = build_graph(self.dataset)
        return self.graph

    def setup(self, stage: str | None = None) -> None:
        self._ensure()

    # -------------------------------------------------------------------------------------- properties
    @property
    def dataset_id(self) -> str:
        self._ensure()
        return str(getattr(self.dataset, "dataset_id", ""))

    @property
    def sessions(self) -> pd.DataFrame:
        self._ensure()
        return self.dataset.sessions

    def valid_test_sessions(self, min_sess_len: int = 5) -> pd.DataFrame:
        s = self.sessions
        return s[(s["split"] == 2) & (s["sess_len"] >= min_sess_len)]

    def split_rows(self, split: str) -> torch.Tensor:
        g = self._ensure()
        if split not in g.split_index:
            raise ValueError(f"unknown split {split!r}; expected one of {sorted(g.split_index)}")
        return g.split_index[split]

    # ------------------------------------------------------------------------------------- dataloaders
    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(EdgeDataset(self._ensure(), self.split_rows(split)), batch_size=batch_size,
                          shuffle=shuffle, num_workers=self.num_workers, collate_fn=collate_edges,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_split, self.eval_batch_size, shuffle=False)
