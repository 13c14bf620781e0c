"""Synthetic KuaiRec-size inputs for the benchmarks (no GNN training needed).

`synth_heads(S, V)` writes correlated head probabilities [S, V, 4] float16 (memory-mapped .npy, like the heads
cache), session lengths K (>= 5, mean ~20, long tail), observed videos (drawn from the top of a noisy ranking
under a planted w*, so the objective is informative) and level-1 category codes (39 codes incl. -124, Zipf-like
shares). Heads: logits = video effects (quality, shortness, per-head noise) + session effects + a low-rank
user-taste term shared across heads with head-specific loadings; complete/long/rewatch are positively and neg
negatively correlated with quality, as in KuaiRec. Deterministic in (S, V, seed); cached by those under `root`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
KUAIREC_SESSIONS = 66_423     # valid test sessions of the notebook (len >= 5)
KUAIREC_VIDEOS = 10_728
W_STAR = np.array([0.3, 0.3, 0.2, -0.2])


@dataclass
class SynthInputs:
    probs: np.ndarray          # [S, V, 4] float16 memmap
    k: np.ndarray              # int64 [S]
    obs_indptr: np.ndarray     # int64 [S+1]
    obs_ids: np.ndarray        # int64 [N]
    codes: np.ndarray          # int64 [V] level-1 category ids (-124 = missing)
    path: Path


def session_lengths(rng, S: int) -> np.ndarray:
    """K >= 5 with mean ~20 and a long tail (5 + negative binomial, capped at 400)."""
    return np.minimum(5 + rng.negative_binomial(1.2, 1.2 / 16.2, size=S), 400).astype(np.int64)


def category_codes(rng, V: int, n_cat: int = 38) -> np.ndarray:
    shares = 1.0 / np.arange(1, n_cat + 1) ** 1.1
    codes = rng.choice(n_cat, size=V, p=shares / shares.sum()).astype(np.int64)
    codes[rng.random(V) < 0.01] = -124
    return codes


def _head_logits(rng, S, V, lo, hi, video, sess, taste_u, taste_v):
    n = hi - lo
    quality, short, vnoise = video
    base = np.array([-0.6, 0.1, -2.6, -1.6], dtype=np.float32)
    load_q = np.array([1.0, 0.9, 1.1, -1.0], dtype=np.float32)
    load_s = np.array([0.8, -0.9, 0.7, 0.3], dtype=np.float32)
    load_t = np.array([0.7, 0.6, 0.8, -0.6], dtype=np.float32)
    taste = taste_u[lo:hi] @ taste_v.T                                   # [n, V]
    logit = (base + quality[:, None] * load_q + short[:, None] * load_s + vnoise)[None]   # [1, V, 4]
    logit = logit + sess[lo:hi, None, :] + taste[:, :, None] * load_t[None, None, :]
    logit += 0.25 * rng.standard_normal((n, V, 4), dtype=np.float32)
    return logit


def synth_heads(S: int = KUAIREC_SESSIONS, V: int = KUAIREC_VIDEOS, seed: int = 0, root: Path | None = None,
                chunk: int = 256, progress: bool = False) -> SynthInputs:
    root = Path(root or ROOT / "data" / "bench")
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"synth-heads-S{S}-V{V}-seed{seed}.npy"
    meta = path.with_suffix(".meta.npz")
    rng = np.random.default_rng(seed)
    k = session_lengths(rng, S)
    codes = category_codes(rng, V)
    video = (rng.standard_normal(V).astype(np.float32), rng.standard_normal(V).astype(np.float32),
             0.5 * rng.standard_normal((V, 4)).astype(np.float32))
    sess = (0.4 * rng.standard_normal((S, 4))).astype(np.float32)
    taste_u = (0.5 * rng.standard_normal((S, 8))).astype(np.float32)
    taste_v = (0.5 * rng.standard_normal((V, 8))).astype(np.float32)
    if path.exists() and meta.exists():
        m = np.load(meta)
        return SynthInputs(np.load(path, mmap_mode="r"), k, m["obs_indptr"], m["obs_ids"], codes, path)
    tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(S, V, 4))
    obs: list[np.ndarray] = []
    w = W_STAR.astype(np.float32)
    for lo in range(0, S, chunk):
        hi = min(S, lo + chunk)
        logit = _head_logits(rng, S, V, lo, hi, video, sess, taste_u, taste_v)
        p = 1.0 / (1.0 + np.exp(-logit))
        out[lo:hi] = p.astype(np.float16)
        # observed: K videos among the top 3K of a noisy ranking under w*
        score = p @ w + 0.05 * rng.standard_normal((hi - lo, V), dtype=np.float32)
        for r in range(hi - lo):
            kk = int(k[lo + r])
            top = np.argpartition(-score[r], 3 * kk)[: 3 * kk]
            obs.append(np.sort(rng.choice(top, size=kk, replace=False)))
        if progress:
            print(f"  synth heads {hi}/{S}", flush=True)
    out.flush()
    del out
    lens = np.array([len(o) for o in obs], dtype=np.int64)
    obs_indptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    obs_ids = np.concatenate(obs).astype(np.int64)
    np.savez(meta.with_suffix(f".tmp{os.getpid()}.npz"), obs_indptr=obs_indptr, obs_ids=obs_ids)
    os.replace(meta.with_suffix(f".tmp{os.getpid()}.npz"), meta)
    os.replace(tmp, path)
    return SynthInputs(np.load(path, mmap_mode="r"), k, obs_indptr, obs_ids, codes, path)


# ------------------------------------------------------------------------------------ head-model inputs
@dataclass
class SynthDataset:
    """The parts of a ProcessedDataset that head prediction reads (CONTRACTS section 3), with random values."""

    dataset_id: str
    user_features: "object"
    item_features: "object"
    sessions: "object"
    n_users: int
    n_videos: int
    feature_names: list


def synth_feature_dataset(n_users: int, n_videos: int, n_sessions: int, seed: int = 0) -> SynthDataset:
    """Random user / item / session feature tables of the real column names (some NaN), sessions 0..n-1."""
    import pandas as pd

    from datamodules.schema import FEATURE_NAMES, I_COLUMNS, SESSION_COLUMNS, U_COLUMNS

    rng = np.random.default_rng(seed)

    def table(n, cols, name):
        x = rng.normal(size=(n, len(cols))).astype(np.float32)
        x[rng.random(x.shape) < 0.02] = np.nan
        return pd.DataFrame(x, columns=cols, index=pd.RangeIndex(n, name=name))

    sessions = table(n_sessions, SESSION_COLUMNS, "session_key")
    sessions["user_id"] = rng.integers(0, n_users, n_sessions)
    sessions["sess_len"] = session_lengths(rng, n_sessions)
    return SynthDataset(f"synth-{n_users}-{n_videos}-{n_sessions}-{seed}", table(n_users, U_COLUMNS, "user_id"),
                        table(n_videos, I_COLUMNS, "video_id"), sessions, n_users, n_videos, list(FEATURE_NAMES))


def random_head_model(ds: SynthDataset, hidden: int = 64, n_edges: int = 0, seed: int = 0, node_bias: bool = True):
    """A randomly initialised HeadModel with the real architecture (edge MLP 2H+64 -> 128 -> 128 -> 64 -> 4, node
    biases N(0, 0.5) as a trained model has them) and a random message-passing graph of n_edges user-video edges
    (both directions)."""
    import torch

    from lightning_modules.head_model import HeadModel

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    u = rng.integers(0, ds.n_users, n_edges)
    v = ds.n_users + rng.integers(0, ds.n_videos, n_edges)
    ei = torch.from_numpy(np.unique(np.stack([np.concatenate([u, v]), np.concatenate([v, u])]), axis=1))
    m = HeadModel(ds.feature_names, ds.n_users, ds.n_videos, hidden_dim=hidden, edge_index=ei,
                  mu=torch.zeros(64), std=torch.ones(64), node_bias=node_bias)
    if node_bias:
        with torch.no_grad():
            m.gnn.node_bias.weight.normal_(0.0, 0.5)
    return m.eval()
