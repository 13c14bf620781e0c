"""Compare a KuaiRec 2.0-shaped folder (a planted world) with facts measured on the real KuaiRec 2.0 download.

    python experiments/world_vs_facts.py --data-dir data/worlds/small-seed0   # made by the first run_estimation
    python experiments/world_vs_facts.py --data-dir /tmp/w2                  # or by make_world.py --out /tmp/w2

Prints one line per fact: the real value, the world's value, the tolerance and whether it holds. Count-like
facts are compared as shares or quantiles, so worlds of any size can be checked. The real values are written
into `facts_table` below (measured once on the full download; docs/DATA.md describes the files).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datamodules import schema  # noqa: E402
from datamodules.raw import DataError, load_kuairec, resolve_data_dir  # noqa: E402
from estimation.cli import OneLineParser, error  # noqa: E402

_L1_REAL = pd.Series({k: n for k, (_, n) in schema.LEVEL1_CATEGORIES.items()}, dtype=float)
_WINDOWS = [(20200705, 20200712), (20200801, 20200810), (20200827, 20200905)]


def _tv(a: pd.Series, b: pd.Series) -> float:
    """Total-variation distance between two count vectors."""
    a, b = a / a.sum(), b / b.sum()
    return float(0.5 * a.sub(b, fill_value=0).abs().sum())


def facts_table(data_dir, matrix: str = "big") -> pd.DataFrame:
    """Rows: fact, real, world, tol (absolute), ok."""
    d = resolve_data_dir(data_dir)
    raw = load_kuairec(d, matrix=matrix)
    big_rows = sum(1 for _ in open(d / "big_matrix.csv", "rb")) - 1
    small = pd.read_csv(d / "small_matrix.csv", usecols=["timestamp"])
    users, cat, it = raw.users, raw.categories, raw.interactions
    r = it["watch_ratio"]
    dates = pd.read_csv(d / "big_matrix.csv", usecols=["date"])["date"].to_numpy()
    in_win = np.zeros(len(dates), bool)
    for a, b in _WINDOWS:
        in_win |= (dates >= a) & (dates <= b)
    per_user = it.groupby("user_id").size()
    caps = raw.captions
    rows = [
        ("users: share full_active", 6092 / 7176, (users["user_active_degree"] == "full_active").mean(), 0.06),
        ("users: share high_active", 938 / 7176, (users["user_active_degree"] == "high_active").mean(), 0.05),
        ("users: share is_video_author", 0.1696, users["is_video_author"].mean(), 0.06),
        ("users: median follow_user_num", 33, users["follow_user_num"].median(), 15),
        ("users: share fans_user_num == 0", 2146 / 7176, (users["fans_user_num"] == 0).mean(), 0.08),
        ("users: share friend_user_num == 0", 4338 / 7176, (users["friend_user_num"] == 0).mean(), 0.08),
        ("users: median register_days", 225, users["register_days"].median(), 40),
        ("users: share NaN onehot_feat4", 201 / 7176, users["onehot_feat4"].isna().mean(), 0.025),
        ("users: share NaN onehot_feat12", 77 / 7176, users["onehot_feat12"].isna().mean(), 0.02),
        ("videos: level-1 mix TV distance", 0.0, _tv(_L1_REAL, cat["cat_level1_id"].value_counts().astype(float)),
         0.05),
        ("videos: share level1 missing", 40 / 10728, (cat["cat_level1_id"] == schema.MISSING_ID).mean(), 0.006),
        ("videos: share level2 missing", 3583 / 10728, (cat["cat_level2_id"] == schema.MISSING_ID).mean(), 0.07),
        ("videos: share level3 missing", 6832 / 10728, (cat["cat_level3_id"] == schema.MISSING_ID).mean(), 0.07),
        ("videos: share cover text UNKNOWN", 0.624, caps["manual_cover_text"].isna().mean(), 0.07),
        ("videos: share caption empty", 0.126, caps["caption"].isna().mean(), 0.05),
        ("videos: share topic_tag []", 4611 / 10728, (caps["topic_tag"].map(len) == 0).mean(), 0.07),
        ("big: share exact duplicate rows", 968004 / 12530806, 1 - len(it) / big_rows if matrix == "big" else
         np.nan, 0.01),
        ("big: watch_ratio q25", 0.31, r.quantile(0.25), 0.08),
        ("big: watch_ratio median", 0.72, r.median(), 0.12),
        ("big: watch_ratio q75", 1.16, r.quantile(0.75), 0.25),
        ("big: watch_ratio p99", 4.8, r.quantile(0.99), 2.0),
        ("big: share watch_ratio <= 5", 0.991, (r <= 5).mean(), 0.01),
        ("big: mean watch_ratio (ratio <= 5)", 0.85, r[r <= 5].mean(), 0.12),
        ("big: video_duration q25 (ms)", 7434, it["video_duration"].quantile(0.25), 1200),
        ("big: video_duration median (ms)", 9636, it["video_duration"].median(), 1200),
        ("big: video_duration q75 (ms)", 12179, it["video_duration"].quantile(0.75), 1800),
        ("big: video_duration mean (ms)", 14622, it["video_duration"].mean(), 4000),
        ("big: play_duration median (ms)", 7300, it["play_duration"].median(), 1500),
        ("big: share rows inside collection windows", 0.995, in_win.mean(), 0.02),
        ("big: rows per user median / mean", 1850 / (12530806 / 7176), per_user.median() / per_user.mean(), 0.2),
        ("small: share rows without timestamp", 181992 / 4676570, small["timestamp"].isna().mean(), 0.01),
        ("big: share date label != timestamp date", 0.001,
         raw.repairs.get("big_matrix.date_label_differs_from_timestamp", 0) / max(1, len(it)), 0.004),
    ]
    df = pd.DataFrame(rows, columns=["fact", "real", "world", "tol"])
    df["ok"] = (df["world"] - df["real"]).abs() <= df["tol"]
    return df


def main(argv=None) -> int:
    ap = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True, help="world root or its 'KuaiRec 2.0/data' folder")
    args = ap.parse_args(argv)
    try:
        df = facts_table(args.data_dir)
    except (DataError, OSError, ValueError) as e:  # a missing folder or file, a CSV the reader rejects
        return error(e if isinstance(e, DataError) else f"--data-dir {args.data_dir}: {e.__class__.__name__}: {e}")
    with pd.option_context("display.width", 160, "display.max_rows", 200, "display.float_format", "{:.4g}".format):
        print(df.to_string(index=False))
    print(f"{int(df['ok'].sum())}/{len(df)} facts within tolerance")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
