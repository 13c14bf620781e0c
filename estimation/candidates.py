"""Which sessions are estimated, what their users watched, and which videos are not candidates for them.

Everything here is a ragged per-session list stored as CSR (indptr [S+1], values [nnz]), in the order of the
session keys asked for, so that objectives and ranking can work on flat arrays.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class SessionLists:
    """A ragged list of video ids per session: session i owns values[indptr[i]:indptr[i+1]]."""

    indptr: np.ndarray  # int64 [S+1]
    values: np.ndarray  # int64 [nnz]

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def row(self, i: int) -> np.ndarray:
        return self.values[self.indptr[i] : self.indptr[i + 1]]

    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)


def valid_test_sessions(sessions: pd.DataFrame, min_sess_len: int = 5) -> np.ndarray:
    """Session keys (sorted) of test sessions with at least `min_sess_len` interactions: the ones we estimate on."""
    mask = (sessions["split"].to_numpy() == 2) & (sessions["sess_len"].to_numpy() >= min_sess_len)
    return np.sort(sessions.index.to_numpy()[mask]).astype(np.int64)


def observed_videos(interactions: pd.DataFrame, session_keys: np.ndarray) -> SessionLists:
    """The videos each session's user actually watched, in time order (K = their count = sess_len)."""
    keys = interactions["session_key"].to_numpy()
    want = np.isin(keys, session_keys)
    sub_keys = keys[want]
    sub_videos = interactions["video_id"].to_numpy()[want].astype(np.int64)
    order = np.argsort(sub_keys, kind="stable")  # interactions are time-sorted per user: stable keeps time order
    sub_keys, sub_videos = sub_keys[order], sub_videos[order]
    pos = np.searchsorted(session_keys, sub_keys)
    counts = np.bincount(pos, minlength=len(session_keys))
    indptr = np.zeros(len(session_keys) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return SessionLists(indptr, sub_videos)


def seen_before(interactions: pd.DataFrame, sessions: pd.DataFrame, session_keys: np.ndarray) -> SessionLists:
    """Per session, the distinct videos its user interacted with strictly before the session started (any split).

    A recommender does not show a user what they have already watched, so these are no candidates.
    """
    users = interactions["user_id"].to_numpy()
    ts = interactions["timestamp"].to_numpy()
    videos = interactions["video_id"].to_numpy().astype(np.int64)
    order = np.lexsort((ts, users))
    users, ts, videos = users[order], ts[order], videos[order]
    user_start = np.searchsorted(users, np.arange(users.max() + 2 if len(users) else 1))

    s_users = sessions.loc[session_keys, "user_id"].to_numpy()
    s_start = sessions.loc[session_keys, "start_ts"].to_numpy()
    chunks: list[np.ndarray] = []
    lengths = np.zeros(len(session_keys), dtype=np.int64)
    for i, (u, t0) in enumerate(zip(s_users, s_start)):
        lo = user_start[u]
        hi = lo + np.searchsorted(ts[lo : user_start[u + 1]], t0, side="left")
        seen = np.unique(videos[lo:hi])
        chunks.append(seen)
        lengths[i] = len(seen)
    indptr = np.zeros(len(session_keys) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    values = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)
    return SessionLists(indptr, values)
