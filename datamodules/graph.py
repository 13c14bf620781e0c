"""Graph tensors for the GNN head model (CONTRACTS section 4).

Nodes: users ``0..n_users-1`` and videos ``n_users + video_id``.
Message passing uses TRAINING interactions only, both directions, duplicate (user, video) pairs coalesced.
Supervision edges are every kept interaction with its raw (unnormalized) features, its 4 labels and its split.
Normalization statistics ``mu``/``std`` come from the training split (NaN ignored); the model applies them and
zero-fills NaN after normalization (a missing value sits at the training mean). ``std < 1e-6`` becomes 1.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from datamodules.schema import LABEL_COLUMNS

SPLITS = {"train": 0, "val": 1, "test": 2}
STD_FLOOR = 1e-6


class GraphError(ValueError):
    """A one-line description of why the interactions cannot be turned into a graph."""


@dataclass
class GraphTensors:
    n_users: int
    n_videos: int
    feature_names: list[str]
    edge_index: torch.Tensor   # int64 [2, E_mp]: message passing, training only, undirected, coalesced
    mu: torch.Tensor           # float32 [F]
    std: torch.Tensor          # float32 [F]
    user: torch.Tensor         # int64 [N]: user id of every supervision edge (= interaction row)
    video: torch.Tensor        # int64 [N]: video id (NOT offset) of every supervision edge
    edge_attr: torch.Tensor    # float32 [N, F]: raw features, NaN allowed
    y: torch.Tensor            # float32 [N, 4]: labels in HEADS order
    split: torch.Tensor        # int8 [N]: 0 train, 1 val, 2 test
    split_index: dict[str, torch.Tensor] = field(default_factory=dict)  # split name -> int64 row positions

    @property
    def num_nodes(self) -> int:
        return self.n_users + self.n_videos

    @property
    def num_edges(self) -> int:
        return int(self.user.numel())

    def normalize(self, edge_attr_raw: torch.Tensor) -> torch.Tensor:
        return normalize_features(edge_attr_raw, self.mu, self.std)


def normalize_features(edge_attr_raw: torch.Tensor, mu: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(x - mu) / std, then NaN -> 0 (a missing value is placed at the training mean)."""
    z = (edge_attr_raw.to(mu.dtype) - mu) / std
    return torch.nan_to_num(z, nan=0.0)


def feature_stats(x: np.ndarray, rows: np.ndarray | None = None, block: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """NaN-aware mean and sample std (ddof=1, as torch.std) per column of ``x[rows]``, accumulated in float64 a few
    columns at a time (bounded memory at KuaiRec scale); std < 1e-6 or undefined -> 1, all-NaN column -> mu 0."""
    if x.ndim != 2:
        raise GraphError(f"feature matrix must be 2-D, got shape {x.shape}")
    n_cols = x.shape[1]
    mu = np.zeros(n_cols, dtype=np.float64)
    std = np.ones(n_cols, dtype=np.float64)
    for j0 in range(0, n_cols, block):
        xb = (x[:, j0:j0 + block] if rows is None else x[rows, j0:j0 + block]).astype(np.float64)
        valid = ~np.isnan(xb)
        n = valid.sum(axis=0)
        np.nan_to_num(xb, copy=False, nan=0.0)
        m = xb.sum(axis=0) / np.maximum(n, 1)
        xb -= m
        xb *= valid
        ss = np.einsum("ij,ij->j", xb, xb)
        with np.errstate(invalid="ignore", divide="ignore"):
            s = np.sqrt(np.where(n > 1, ss / np.maximum(n - 1, 1), 1.0))
        mu[j0:j0 + block] = np.where(n > 0, m, 0.0)
        std[j0:j0 + block] = s
    std[~np.isfinite(std) | (std < STD_FLOOR)] = 1.0
    return torch.from_numpy(mu.astype(np.float32)), torch.from_numpy(std.astype(np.float32))


def _ids(values: Any, name: str, upper: int) -> torch.Tensor:
    arr = np.asarray(values)
    if arr.dtype.kind == "f":
        if np.isnan(arr).any() or (arr != np.round(arr)).any():
            raise GraphError(f"{name} has missing or non-integer values; expected int ids in [0, {upper})")
    elif arr.dtype.kind not in "iu":
        raise GraphError(f"{name} has dtype {arr.dtype}; expected integer ids in [0, {upper})")
    arr = arr.astype(np.int64)
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= upper:
            bad = arr[(arr < 0) | (arr >= upper)][:5].tolist()
            raise GraphError(f"{name} out of range [0, {upper}): e.g. {bad}; check n_users/n_videos of the dataset")
    return torch.from_numpy(arr)


def message_passing_edges(user: torch.Tensor, video: torch.Tensor, n_users: int, n_videos: int) -> torch.Tensor:
    """Undirected, coalesced int64 edge_index over users (0..n_users-1) and videos (n_users + video_id)."""
    n_nodes = n_users + n_videos
    pair = torch.unique(user.to(torch.int64) * n_videos + video.to(torch.int64))  # sorted, unique (u, v) pairs
    u = pair // n_videos
    v = pair % n_videos + n_users
    src = torch.cat([u, v])
    dst = torch.cat([v, u])
    key = torch.unique(src * n_nodes + dst)  # coalesce: sort by (row, col)
    return torch.stack([key // n_nodes, key % n_nodes]).contiguous()


def build_graph(dataset: Any) -> GraphTensors:
    """Graph tensors from a ProcessedDataset (CONTRACTS section 3)."""
    df = dataset.interactions
    feature_names = list(dataset.feature_names)
    n_users, n_videos = int(dataset.n_users), int(dataset.n_videos)
    if n_users <= 0 or n_videos <= 0:
        raise GraphError(f"n_users={n_users}, n_videos={n_videos}: both must be positive")
    if (n_users + n_videos) ** 2 >= 2**63:
        raise GraphError(f"n_users + n_videos = {n_users + n_videos} too large for int64 edge keys")
    missing = [c for c in ["user_id", "video_id", "split", *LABEL_COLUMNS, *feature_names] if c not in df.columns]
    if missing:
        raise GraphError(f"interactions lack columns {missing[:8]} (see CONTRACTS section 3)")

    user = _ids(df["user_id"].to_numpy(), "interactions.user_id", n_users)
    video = _ids(df["video_id"].to_numpy(), "interactions.video_id", n_videos)
    split_np = np.asarray(df["split"].to_numpy(), dtype=np.int64)
    bad_split = np.setdiff1d(np.unique(split_np), [0, 1, 2])
    if bad_split.size:
        raise GraphError(f"interactions.split has values {bad_split[:5].tolist()}; expected 0 train, 1 val, 2 test")
    split = torch.from_numpy(split_np.astype(np.int8))

    x = df[feature_names].to_numpy(dtype=np.float32)
    if np.isinf(x).any():
        cols = [feature_names[j] for j in np.where(np.isinf(x).any(axis=0))[0]]
        raise GraphError(f"features {cols[:5]} contain +-inf; only finite values or NaN are allowed")
    y_np = df[list(LABEL_COLUMNS)].to_numpy(dtype=np.float32)
    if np.isnan(y_np).any() or not np.isin(y_np, (0.0, 1.0)).all():
        raise GraphError(f"labels {list(LABEL_COLUMNS)} must be 0/1 without missing values")

    train_mask = split_np == 0
    if not train_mask.any():
        raise GraphError("no training interactions (split == 0): cannot build the message-passing graph")
    mu, std = feature_stats(x, np.flatnonzero(train_mask))
    train_rows = torch.from_numpy(np.flatnonzero(train_mask))
    edge_index = message_passing_edges(user[train_rows], video[train_rows], n_users, n_videos)

    split_index = {name: torch.from_numpy(np.flatnonzero(split_np == code)) for name, code in SPLITS.items()}
    split_index["all"] = torch.arange(len(df), dtype=torch.int64)
    return GraphTensors(
        n_users=n_users, n_videos=n_videos, feature_names=feature_names, edge_index=edge_index,
        mu=mu, std=std, user=user, video=video, edge_attr=torch.from_numpy(x), y=torch.from_numpy(y_np),
        split=split, split_index=split_index,
    )
