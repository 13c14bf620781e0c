"""Head probabilities for every (valid test session, catalog video): the input of every objective.

A candidate's edge features are counterfactual, as in the notebook: the session's first-row session features
(author history set to defaults), the user's features and the candidate video's features. The edge MLP's first
layer is linear in [h_user, h_video, features], and the features split into a session+user part and a video
part, so we compute that layer once per session and once per video and only run the rest of the MLP per pair.
Results go to a float16 .npy file, memory-mapped, keyed by checkpoint and dataset, written atomically.
"""
from __future__ import annotations

import copy
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from datamodules.schema import FEATURE_NAMES, I_COLUMNS, SESSION_COLUMNS, U_COLUMNS


@dataclass
class SessionHeads:
    """probs[s, v, h]: head h of video v for session session_keys[s]; k[s] = the session's length."""

    probs: np.ndarray  # [S, V, 4] float16 (memory-mapped) or float32
    session_keys: np.ndarray  # int64 [S]
    user_ids: np.ndarray  # int64 [S]
    k: np.ndarray  # int64 [S]


def _feature_positions(feature_names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pos = {n: i for i, n in enumerate(feature_names)}
    missing = [n for n in FEATURE_NAMES if n not in pos]
    if missing:
        raise ValueError(f"model features lack {missing[:3]}: retrain the GNN on this dataset")
    return (
        np.array([pos[c] for c in SESSION_COLUMNS]),
        np.array([pos[c] for c in U_COLUMNS]),
        np.array([pos[c] for c in I_COLUMNS]),
    )


def _normalize(raw: torch.Tensor, mu: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return torch.nan_to_num((raw - mu) / std, nan=0.0)


class HeadPredictor:
    """Scores sessions x catalog with a trained HeadModel, reusing the per-session and per-video parts."""

    def __init__(self, model, dataset, dtype: torch.dtype = torch.float32):
        self.model = model.eval()
        self.dataset = dataset
        self.dtype = dtype
        self.sess_pos, self.user_pos, self.item_pos = _feature_positions(list(model.feature_names))
        mlp = model.gnn.edge_mlp
        first = mlp[0]
        self.rest = copy.deepcopy(mlp[1:]).to(dtype)  # a private copy: casting must not touch the model
        hidden = (first.in_features - len(model.feature_names)) // 2
        mu, std = model.mu.reshape(-1).float(), model.std.reshape(-1).float()
        w = first.weight.detach().float()
        w_user, w_video, w_feat = w[:, :hidden], w[:, hidden : 2 * hidden], w[:, 2 * hidden :]
        with torch.no_grad():
            x = model.node_embeddings().float()
        self.n_users = int(model.n_users)
        self.h_user = x[: self.n_users]
        items = torch.tensor(dataset.item_features[I_COLUMNS].to_numpy(np.float32))
        e_item = _normalize(items, mu[self.item_pos], std[self.item_pos])
        # per-video part of the first layer: [V, 128]
        self.video_part = x[self.n_users :] @ w_video.T + e_item @ w_feat[:, self.item_pos].T
        self.w_user = w_user
        self.w_sess = w_feat[:, self.sess_pos]
        self.w_ufeat = w_feat[:, self.user_pos]
        self.bias = first.bias.detach().float()
        self.mu, self.std = mu, std
        users = torch.tensor(dataset.user_features[U_COLUMNS].to_numpy(np.float32))
        self.e_user = _normalize(users, mu[self.user_pos], std[self.user_pos])

    def session_part(self, user_ids: np.ndarray, session_keys: np.ndarray) -> torch.Tensor:
        """The first layer's per-session part: user embedding, user features and session features."""
        sess = self.dataset.sessions.loc[session_keys, SESSION_COLUMNS].to_numpy(np.float32)
        e_sess = _normalize(torch.tensor(sess), self.mu[self.sess_pos], self.std[self.sess_pos])
        u = torch.as_tensor(user_ids, dtype=torch.long)
        return self.h_user[u] @ self.w_user.T + self.e_user[u] @ self.w_ufeat.T + e_sess @ self.w_sess.T + self.bias

    @torch.no_grad()
    def predict(self, user_ids: np.ndarray, session_keys: np.ndarray, out: np.ndarray, chunk: int = 16) -> None:
        """Fill out[s, v, :] with head probabilities for the given sessions, `chunk` sessions at a time."""
        n_videos = self.video_part.shape[0]
        vp = self.video_part.to(self.dtype)
        for lo in range(0, len(session_keys), chunk):
            hi = min(lo + chunk, len(session_keys))
            sp = self.session_part(user_ids[lo:hi], session_keys[lo:hi]).to(self.dtype)
            pre = torch.relu(sp[:, None, :] + vp[None, :, :]).reshape(-1, vp.shape[1])
            probs = torch.sigmoid(self.rest(pre).float()).reshape(hi - lo, n_videos, -1)
            out[lo:hi] = probs.numpy().astype(out.dtype, copy=False)


@torch.no_grad()
def predict_pairs_reference(model, dataset, user_id: int, session_key: int, video_ids: np.ndarray) -> np.ndarray:
    """Straightforward path (full 64-column feature rows through the whole MLP): the check for HeadPredictor."""
    sess = dataset.sessions.loc[session_key]
    frame = dataset.item_features.loc[video_ids, I_COLUMNS].copy()
    for c in U_COLUMNS:
        frame[c] = dataset.user_features.loc[user_id, c]
    for c in SESSION_COLUMNS:
        frame[c] = sess[c]
    raw = torch.tensor(frame[list(model.feature_names)].to_numpy(np.float32))
    x = model.node_embeddings()
    users = torch.full((len(video_ids),), int(user_id), dtype=torch.long)
    videos = torch.as_tensor(video_ids, dtype=torch.long)
    return torch.sigmoid(model.head_logits(x, users, videos, raw)).numpy()


def heads_cache_key(checkpoint_path: Path, dataset_id: str, session_keys: np.ndarray, dtype: str) -> str:
    h = hashlib.sha256()
    with open(checkpoint_path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    h.update(dataset_id.encode())
    h.update(np.ascontiguousarray(session_keys, dtype=np.int64).tobytes())
    h.update(dtype.encode())
    return h.hexdigest()[:16]


def predict_session_heads(
    model,
    dataset,
    session_keys: np.ndarray,
    cache_dir: Path | None = None,
    cache_key: str | None = None,
    dtype: torch.dtype = torch.float32,
    progress=None,
) -> SessionHeads:
    """Head probabilities of every catalog video for each session; cached as float16 when cache_dir is given."""
    session_keys = np.asarray(session_keys, dtype=np.int64)
    sessions = dataset.sessions.loc[session_keys]
    user_ids = sessions["user_id"].to_numpy().astype(np.int64)
    k = sessions["sess_len"].to_numpy().astype(np.int64)
    shape = (len(session_keys), int(dataset.n_videos), 4)
    if cache_dir is not None and cache_key is not None:
        path = Path(cache_dir) / f"heads-{cache_key}.npy"
        if path.exists():
            probs = np.load(path, mmap_mode="r")
            if probs.shape == shape:
                return SessionHeads(probs, session_keys, user_ids, k)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape)
        try:
            _fill(model, dataset, user_ids, session_keys, out, dtype, progress)
            out.flush()
            del out
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        return SessionHeads(np.load(path, mmap_mode="r"), session_keys, user_ids, k)
    out = np.empty(shape, dtype=np.float32)
    _fill(model, dataset, user_ids, session_keys, out, dtype, progress)
    return SessionHeads(out, session_keys, user_ids, k)


def _fill(model, dataset, user_ids, session_keys, out, dtype, progress) -> None:
    predictor = HeadPredictor(model, dataset, dtype=dtype)
    step = 256
    for lo in range(0, len(session_keys), step):
        hi = min(lo + step, len(session_keys))
        predictor.predict(user_ids[lo:hi], session_keys[lo:hi], out[lo:hi])
        if progress is not None:
            progress(hi, len(session_keys))


def video_embeddings(model) -> np.ndarray:
    """The GNN's video node embeddings [n_videos, H], used by the embedding objective."""
    with torch.no_grad():
        x = model.node_embeddings().float()
    return x[int(model.n_users) :].numpy()


def sessions_frame(heads: SessionHeads) -> pd.DataFrame:
    return pd.DataFrame({"session_key": heads.session_keys, "user_id": heads.user_ids, "k": heads.k})
