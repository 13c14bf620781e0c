"""A small ProcessedDataset-shaped object (CONTRACTS section 3) for the model tests: random interactions whose
labels depend on user/video latents and on a few features, so a GNN can learn them."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from datamodules.schema import FEATURE_NAMES, LABEL_COLUMNS


@dataclass
class FakeDataset:
    dataset_id: str
    interactions: pd.DataFrame
    feature_names: list[str]
    user_features: pd.DataFrame
    item_features: pd.DataFrame
    sessions: pd.DataFrame
    n_users: int
    n_videos: int
    manifest: dict = field(default_factory=dict)


def make_fake_dataset(n_users: int = 40, n_videos: int = 60, per_user: int = 30, seed: int = 0,
                      dataset_id: str = "fake0000") -> FakeDataset:
    rng = np.random.default_rng(seed)
    rows = []
    zu = rng.normal(size=(n_users, 4))
    zv = rng.normal(size=(n_videos, 4))
    for u in range(n_users):
        vids = rng.choice(n_videos, size=per_user, replace=True)  # repeats: duplicate pairs for coalescing
        ts = np.sort(rng.uniform(0, 10 * 86400, size=per_user))
        for v, t in zip(vids, ts):
            rows.append((u, int(v), float(t)))
    df = pd.DataFrame(rows, columns=["user_id", "video_id", "timestamp"])
    df = df.sort_values(["user_id", "timestamp"], kind="stable").reset_index(drop=True)
    n = len(df)
    gap = df.groupby("user_id")["timestamp"].diff().fillna(np.inf) > 3 * 3600
    df["session"] = gap.groupby(df["user_id"]).cumsum().astype(np.int64)
    df["session_key"] = df.groupby(["user_id", "session"]).ngroup().astype(np.int64)
    df["burst_id"] = df["session"]
    df["sess_rank"] = df.groupby("session_key").cumcount().astype(np.int64) + 1
    df["sess_len"] = df.groupby("session_key")["user_id"].transform("size").astype(np.int64)
    starts = df.groupby("session_key")["timestamp"].transform("min")
    q70, q80 = np.quantile(df.groupby("session_key")["timestamp"].min(), [0.7, 0.8])
    df["split"] = np.where(starts < q70, 0, np.where(starts < q80, 1, 2)).astype(np.int8)
    df["video_duration"] = rng.integers(3000, 30000, size=n)
    df["watch_ratio"] = rng.gamma(2.0, 0.5, size=n)
    df["play_duration"] = (df["watch_ratio"] * df["video_duration"]).astype(np.int64)

    other = FEATURE_NAMES[2:]                           # burst_id and session are the structural columns
    feats = rng.normal(size=(n, len(other))).astype(np.float32)
    feats[:, 10] = 7.0                                  # a constant column (std -> 1)
    feats[rng.random(size=(n, len(other))) < 0.05] = np.nan
    affinity = (zu[df["user_id"].to_numpy()] * zv[df["video_id"].to_numpy()])  # [n, 4]
    x0 = np.nan_to_num(feats[:, :4])
    logits = 1.5 * affinity + 0.8 * x0 + np.array([0.0, 0.3, -1.0, -0.5])
    y = (rng.random(size=(n, 4)) < 1 / (1 + np.exp(-logits))).astype(np.int8)
    for j, c in enumerate(LABEL_COLUMNS):
        df[c] = y[:, j]
    df = pd.concat([df, pd.DataFrame(feats, columns=other)], axis=1)
    sessions = df.groupby("session_key").agg(
        user_id=("user_id", "first"), session=("session", "first"), split=("split", "first"),
        sess_len=("sess_len", "first"), start_ts=("timestamp", "min"))
    return FakeDataset(
        dataset_id=dataset_id, interactions=df, feature_names=list(FEATURE_NAMES),
        user_features=pd.DataFrame(index=pd.RangeIndex(n_users, name="user_id")),
        item_features=pd.DataFrame(index=pd.RangeIndex(n_videos, name="video_id")),
        sessions=sessions, n_users=n_users, n_videos=n_videos, manifest={"fake": True},
    )
