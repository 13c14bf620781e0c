"""Sessions, bursts, the time split and the four labels (CONTRACTS section 7).

Every function takes columns of the interactions table sorted by (user_id, timestamp) and returns numpy arrays
aligned with it, so the 12.5M-row KuaiRec log is processed with whole-array operations only.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def group_starts(keys: np.ndarray) -> np.ndarray:
    """Boolean mask: True on the first row of each run of equal consecutive keys."""
    start = np.ones(len(keys), dtype=bool)
    if len(keys) > 1:
        start[1:] = keys[1:] != keys[:-1]
    return start


def rank_in_runs(start: np.ndarray) -> np.ndarray:
    """0-based position of each row inside its run (runs begin where `start` is True)."""
    n = len(start)
    idx = np.arange(n, dtype=np.int64)
    first = np.maximum.accumulate(np.where(start, idx, 0)) if n else idx
    return idx - first


def cut_at_gaps(user_id: np.ndarray, ts: np.ndarray, gap_s: float) -> np.ndarray:
    """1-based counter per user that increments where the gap to the previous event exceeds `gap_s` seconds."""
    new_user = group_starts(user_id)
    cut = new_user.copy()
    if len(ts) > 1:
        cut[1:] |= np.diff(ts) > gap_s
    counter = np.cumsum(cut, dtype=np.int64)
    # subtract the counter value just before each user's first row
    base = np.maximum.accumulate(np.where(new_user, counter - 1, 0)) if len(ts) else counter
    return counter - base


def session_columns(user_id: np.ndarray, ts: np.ndarray, session_gap_s: float, burst_gap_s: float) -> dict:
    """session (1-based per user), session_key (global 0..S-1), burst_id (1-based per user), sess_rank, sess_len."""
    session = cut_at_gaps(user_id, ts, session_gap_s)
    burst = cut_at_gaps(user_id, ts, burst_gap_s)
    sess_start = group_starts(user_id) | group_starts(session)
    session_key = np.cumsum(sess_start, dtype=np.int64) - 1
    rank = rank_in_runs(sess_start) + 1
    lengths = np.bincount(session_key) if len(session_key) else np.zeros(0, dtype=np.int64)
    return {
        "session": session,
        "session_key": session_key,
        "burst_id": burst,
        "sess_rank": rank.astype(np.int64),
        "sess_len": lengths[session_key].astype(np.int64),
    }


def session_table(user_id: np.ndarray, ts: np.ndarray, cols: dict) -> pd.DataFrame:
    """One row per session_key: user_id, session, sess_len, start_ts, end_ts, first_row (row index of its start)."""
    key = cols["session_key"]
    first = np.flatnonzero(group_starts(key))
    last = np.append(first[1:] - 1, len(key) - 1) if len(first) else first
    return pd.DataFrame(
        {
            "user_id": user_id[first].astype(np.int64),
            "session": cols["session"][first],
            "sess_len": cols["sess_len"][first],
            "start_ts": ts[first].astype(np.float64),
            "end_ts": ts[last].astype(np.float64),
            "first_row": first.astype(np.int64),
        },
        index=pd.RangeIndex(len(first), name="session_key"),
    )


def split_sessions(start_ts: np.ndarray, train_q: float, val_q: float) -> tuple[np.ndarray, float, float]:
    """Split code per session (0 train, 1 val, 2 test) by quantiles of session start times; returns (split, t70, t80).

    train: start < q(train_q); val: q(train_q) <= start < q(val_q); test: start >= q(val_q). A session is whole on
    one side because the split is decided per session.
    """
    if len(start_ts) == 0:
        return np.zeros(0, dtype=np.int8), float("nan"), float("nan")
    t_train, t_val = np.quantile(start_ts, [train_q, val_q])
    split = np.where(start_ts < t_train, 0, np.where(start_ts < t_val, 1, 2)).astype(np.int8)
    return split, float(t_train), float(t_val)


def labels(watch_ratio: np.ndarray, play_duration: np.ndarray, cfg) -> dict:
    """The four heads (int8): complete, long, rewatch, neg, with thresholds from the DatasetConfig `cfg`."""
    return {
        "y_complete": (watch_ratio >= cfg.complete_ratio).astype(np.int8),
        "y_long": (play_duration >= cfg.long_play_ms).astype(np.int8),
        "y_rewatch": (watch_ratio >= cfg.rewatch_ratio).astype(np.int8),
        "y_neg": (watch_ratio < cfg.neg_ratio).astype(np.int8),
    }
