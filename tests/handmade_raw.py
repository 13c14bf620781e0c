"""Hand-built RawTables (CONTRACTS section 1) for the dataset tests: small, random, every column present."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from datamodules.raw import RawTables
from datamodules.schema import ITEM_STATIC_COLUMNS, USER_COLUMNS

T0 = 1593878400.0  # 2020-07-05 00:00 Beijing = 2020-07-04 16:00 UTC


HandRaw = RawTables  # the real dataclass of CONTRACTS section 1


def side_tables(n_users: int, n_videos: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    users = pd.DataFrame({"user_id": np.arange(n_users)})
    users["user_active_degree"] = rng.choice(["full_active", "high_active", "UNKNOWN", "middle_active"], n_users)
    for c in ["is_lowactive_period", "is_live_streamer", "is_video_author"]:
        users[c] = rng.integers(0, 2, n_users)
    for c, buckets in [("follow_user_num", ["0", "(0,10]", "(10,50]", "500+"]),
                       ("fans_user_num", ["0", "[1,10)", "[10,100)"]),
                       ("friend_user_num", ["0", "[1,5)", "[5,30)"]),
                       ("register_days", ["15-30", "181-365", "730+"])]:
        users[c] = rng.integers(0, 800, n_users)
        users[f"{c}_range"] = rng.choice(buckets, n_users)
    for i in range(18):
        col = rng.integers(0, 5, n_users).astype(float)
        if i in (4, 12):
            col[rng.random(n_users) < 0.2] = np.nan
        users[f"onehot_feat{i}"] = col
    users = users[USER_COLUMNS]
    cat1 = rng.choice([1, 2, 3, -124], n_videos, p=[0.4, 0.3, 0.2, 0.1])
    cat2 = np.where(cat1 == -124, -124, cat1 * 10 + rng.integers(0, 3, n_videos))
    cat3 = np.where(cat2 == -124, -124, rng.choice([-124, 500, 501], n_videos))
    categories = pd.DataFrame({
        "video_id": np.arange(n_videos), "cat_level1_id": cat1, "cat_level1_name": [f"c{c}" for c in cat1],
        "cat_level2_id": cat2, "cat_level2_name": [f"c{c}" for c in cat2],
        "cat_level3_id": cat3, "cat_level3_name": [f"c{c}" for c in cat3]})
    static = pd.DataFrame({
        "video_id": np.arange(n_videos), "author_id": rng.integers(0, max(n_videos // 3, 1), n_videos),
        "video_type": rng.choice(["NORMAL", "AD"], n_videos), "upload_dt": rng.choice(
            ["2020-06-01", "2020-07-01", "2020-07-05"], n_videos),
        "upload_type": rng.choice(["ShortImport", "LongImport"], n_videos), "visible_status": "public",
        "video_duration": rng.integers(5000, 20000, n_videos).astype(float),
        "video_width": 720, "video_height": rng.choice([1280, 720, 0], n_videos), "music_id": rng.integers(0, 9, n_videos),
        "video_tag_id": rng.integers(0, 5, n_videos), "video_tag_name": rng.choice(["a", "b", "c"], n_videos)})
    static.loc[0, "video_duration"] = np.nan  # one missing duration: falls back to the logged one
    static = static[["video_id"] + ITEM_STATIC_COLUMNS]
    tags = pd.DataFrame({"video_id": np.arange(n_videos), "feat": [[int(c) % 31] for c in cat1]})
    social = pd.DataFrame({"user_id": [0], "friend_list": [[1]]})
    return dict(users=users, categories=categories, item_tags=tags, item_static=static, social=social)


def make_raw(n_users: int = 12, n_videos: int = 40, per_user: int = 60, seed: int = 0,
             interactions: pd.DataFrame | None = None) -> HandRaw:
    """Random interactions with a mix of short (< 5 min), medium and long (> 30 min) gaps."""
    rng = np.random.default_rng(seed)
    if interactions is None:
        rows = []
        for u in range(n_users):
            gaps = rng.choice([30.0, 200.0, 900.0, 4000.0, 86400.0], per_user, p=[0.5, 0.2, 0.1, 0.15, 0.05])
            ts = T0 + rng.uniform(0, 5 * 86400) + np.cumsum(gaps) + rng.random(per_user)
            vids = rng.integers(0, n_videos, per_user)
            for v, t in zip(vids, ts):
                rows.append((u, int(v), float(t)))
        inter = pd.DataFrame(rows, columns=["user_id", "video_id", "timestamp"])
        inter["video_duration"] = rng.integers(3000, 30000, len(inter)).astype(np.int64)
        inter["watch_ratio"] = rng.gamma(1.5, 0.6, len(inter))
        inter["play_duration"] = (inter["watch_ratio"] * inter["video_duration"]).astype(np.int64)
        interactions = inter
    inter = interactions.sort_values(["user_id", "timestamp", "video_id"], kind="stable").reset_index(drop=True)
    inter = inter[["user_id", "video_id", "play_duration", "video_duration", "timestamp", "watch_ratio"]]
    inter = inter.astype({"user_id": np.int64, "video_id": np.int64, "play_duration": np.int64,
                          "video_duration": np.int64, "timestamp": np.float64, "watch_ratio": np.float64})
    return HandRaw(interactions=inter, n_users=n_users, n_videos=n_videos,
                   repairs={"big_matrix.exact_duplicates_dropped": 0},
                   source_files={"big_matrix.csv": Path("big_matrix.csv")}, **side_tables(n_users, n_videos, seed))
