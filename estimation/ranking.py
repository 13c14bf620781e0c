"""Batched top-K: for every session and every weight vector, the K videos a recommender scoring p @ w would show.

Scores are exact: probabilities are taken as multiples of 2**-24 (exact for float16) and weights, scaled to
sum |w| = 1, are rounded to multiples of 2**-25 (a change below 3e-8), so every score p @ w is a float64 computed
without rounding error (see `scores`). A weight vector therefore gets the same top-K in any batch, and equal
scores are true ties.

Tie-breaking (documented contract): the top-K of a session is the first K videos in the order
(score descending, video id ascending): among equal scores the lower video id wins. Excluded (seen) videos and
padding get score -inf and are never returned; K_eff = min(K, number of candidates). `topk` returns the lists in
that same order (rank order); `chunks` does so only when asked (objectives need the sets only).

Sessions are processed in chunks of similar K and candidate count (little padding), which bounds
memory: about `chunk_elems` candidate slots per chunk and `batch_elems` scores at a time. `probs` may be a numpy
memmap; chunks are read on demand, or kept prepared (float64) in memory when they all fit `cache_bytes`.

Two outputs: `chunks` gives top-K id lists (`RankedChunk`); `masks` gives the top-K SET of each session as a
boolean mask over the chunk's candidate slots (`MaskChunk`), which is what the objectives need and is several
times cheaper: the K-th largest score per session comes from a partial partition of the scores (numpy's
introselect on CPU, torch.topk on other devices), and the set is {score > t} plus the lowest ids among ties at t.

Device: `device=None` means CUDA when available, else CPU; every tensor of a chunk lives there.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch


@dataclass
class RankedChunk:
    """Top-K lists of some sessions for every weight vector of a batch."""

    index: int              # chunk number (stable across calls: objectives cache per-chunk data by it)
    rows: np.ndarray        # int64 [cs]: session positions (0..S-1) of this chunk
    ids: torch.Tensor       # int64 [B, cs, kc]: video ids (rank order if asked), -1 beyond each session's K_eff
    valid: torch.Tensor     # bool [cs, kc]: position j < K_eff of the session
    k_eff: torch.Tensor     # int64 [cs]


@dataclass
class MaskChunk:
    """Top-K sets of some sessions for every weight vector of a batch, as masks over candidate slots."""

    index: int              # chunk number (stable across calls)
    rows: np.ndarray        # int64 [cs]: session positions (0..S-1) of this chunk
    mask: torch.Tensor      # bool [B, cs, width]: slot j of session r is in its top-K_eff set under W[b]
    k_eff: torch.Tensor     # int64 [cs]
    cand: torch.Tensor | None  # int64 [cs, width] video id of each slot (-1: padding); None: slot j is video j


@dataclass
class TopK:
    """Flat form: session s owns ids[:, indptr[s]:indptr[s+1]] (its K_eff videos in rank order)."""

    indptr: np.ndarray      # int64 [S+1]
    ids: np.ndarray         # int64 [B, N]

    def session(self, s: int, b: int = 0) -> np.ndarray:
        return self.ids[b, self.indptr[s] : self.indptr[s + 1]]


@dataclass
class _Chunk:
    rows: np.ndarray              # session positions
    kc: int                       # max K_eff in the chunk
    width: int                    # candidates per session (V, or the chunk's max candidate count)
    k_eff: torch.Tensor           # [cs]
    excl: torch.Tensor | None     # flat positions (row * width + col) scored -inf
    cand: torch.Tensor | None     # int64 [cs, width] video ids of candidate slots (-1 pad), None = identity
    data: torch.Tensor | None     # cached float64 [4, cs * width]


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run a block with n torch threads (None: unchanged). On a small shared machine one thread is often far
    faster: oversubscribed OpenMP threads spin-wait (measured 20-40x slowdowns of small ops)."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def default_device(device=None) -> torch.device:
    """`device`, or CUDA when available, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _csr(pair, n: int) -> tuple[np.ndarray, np.ndarray]:
    indptr, values = (pair.indptr, pair.values) if hasattr(pair, "indptr") else pair
    indptr, values = np.asarray(indptr, dtype=np.int64), np.asarray(values, dtype=np.int64)
    if len(indptr) != n + 1:
        raise ValueError(f"CSR indptr has length {len(indptr)}, expected {n + 1} (one entry per session + 1)")
    return indptr, values


class Ranker:
    """Top-K per session for batches of weight vectors.

    probs: [S, V, 4] float16/float32 (numpy array or memmap); k: [S] session lengths.
    seen: optional CSR (indptr [S+1], video ids) of videos excluded per session (or an object with
    .indptr/.values). candidates: optional CSR of the only videos to consider per session, each row sorted
    ascending (e.g. from `pruning.skyband`); already excludes seen videos, so `seen` is then ignored.
    If `candidates` also carries `probs` (its videos' head probabilities [nnz, 4], aligned with its values, as
    `pruning.skyband` returns them), `probs` is only used for its shape and never read.
    threads: torch threads while ranking (default 1, see `torch_threads`; None leaves torch's setting).
    device: where scores are computed (None: CUDA if available, else CPU).
    """

    def __init__(self, probs, k, seen=None, candidates=None, chunk_elems: int = 1 << 18,
                 batch_elems: int = 1 << 22, cache_bytes: int = 1 << 30, check_finite: bool = True,
                 threads: int | None = 1, min_elems: int = 1 << 15, device=None):
        self.threads = threads
        self.device = default_device(device)
        if probs.ndim != 3 or probs.shape[2] != 4:
            raise ValueError(f"probs must be [S, V, 4], got shape {probs.shape}")
        self.probs = probs
        S, V, _ = probs.shape
        self.n_sessions, self.n_videos = S, V
        k = np.asarray(k, dtype=np.int64)
        if k.shape != (S,) or (k < 0).any():
            raise ValueError(f"k must be [S]={S} non-negative ints, got shape {k.shape}")
        self._cand_probs = None
        if candidates is not None:
            c_ptr, c_ids = _csr(candidates, S)
            if len(c_ids) and (c_ids.min() < 0 or c_ids.max() >= V):
                raise ValueError("candidate video ids must lie in 0..V-1")
            step = np.diff(c_ids)
            inner = np.ones(len(step), dtype=bool)
            inner[c_ptr[1:-1][(c_ptr[1:-1] > 0) & (c_ptr[1:-1] < len(c_ids))] - 1] = False  # row boundaries
            if len(step) and (step[inner] <= 0).any():
                bad = int(np.searchsorted(c_ptr, np.flatnonzero(inner & (step <= 0))[0], side="right") - 1)
                raise ValueError(f"candidates of session {bad} must be sorted ascending and distinct")
            cp = getattr(candidates, "probs", None)
            if cp is not None:
                cp = np.asarray(cp)
                if cp.shape != (len(c_ids), 4):
                    raise ValueError(f"candidates.probs must be [{len(c_ids)}, 4], got {cp.shape}")
                self._cand_probs = cp
            n_cand = np.diff(c_ptr)
            width_of = n_cand
            seen = None
        else:
            c_ptr = c_ids = None
            width_of = np.full(S, V, dtype=np.int64)
            n_cand = np.full(S, V, dtype=np.int64)
            if seen is not None:
                s_ptr, s_ids = _csr(seen, S)
                if len(s_ids) and (s_ids.min() < 0 or s_ids.max() >= V):
                    raise ValueError("seen video ids must lie in 0..V-1")
                # count distinct excluded ids per session
                n_excl = np.array([len(np.unique(s_ids[s_ptr[s]:s_ptr[s + 1]])) for s in range(S)], dtype=np.int64)
                n_cand = V - n_excl
        self.k = k
        self.k_eff = np.minimum(k, n_cand)
        self.candidates = None if c_ptr is None else (c_ptr, c_ids)
        # pruned candidates (pruning.Candidates) are exact only for weights with their sign pattern
        self.signs = getattr(candidates, "signs", None)
        # chunks: sessions sorted by (K_eff bucket, width); a chunk is cut where the bucket changes, the width
        # grows by half (padding waste) once the chunk has min_elems slots, or cs * width would exceed chunk_elems
        bucket = np.floor(np.log(np.maximum(self.k_eff, 1)) / np.log(1.25)).astype(np.int64)
        order = np.lexsort((width_of, bucket))
        self._chunks: list[_Chunk] = []
        dev = self.device
        i = 0
        while i < S:
            j, w = i, 0
            w0 = int(width_of[order[i]])
            while j < S and (j == i or (
                    (w * (j - i) < min_elems or (bucket[order[j]] == bucket[order[i]]
                                                 and width_of[order[j]] <= 1.5 * w0 + 16))
                    and max(w, width_of[order[j]]) * (j - i + 1) <= chunk_elems)):
                w = max(w, int(width_of[order[j]]))
                j += 1
            rows = np.sort(order[i:j])  # sorted rows: sequential reads from a memmap
            w = max(w, 1)
            excl = cand = None
            if c_ptr is not None:
                r_idx, col, src = _ragged(c_ptr, rows)
                cand_np = np.full((len(rows), w), -1, dtype=np.int64)
                cand_np[r_idx, col] = c_ids[src]
                cand = torch.from_numpy(cand_np)
                pad = (cand < 0).reshape(-1).nonzero().reshape(-1)
                excl = pad.to(dev) if len(pad) else None
                cand = cand.to(dev)
            elif seen is not None:
                parts = [r * w + s_ids[s_ptr[s]:s_ptr[s + 1]] for r, s in enumerate(rows)]
                flat = np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
                excl = torch.from_numpy(flat).to(dev) if len(flat) else None
            kc = int(self.k_eff[rows].max()) if len(rows) else 0
            self._chunks.append(_Chunk(rows, kc, w, torch.from_numpy(self.k_eff[rows].copy()).to(dev), excl, cand,
                                       None))
            i = j
        self.batch_elems = batch_elems
        # pruned candidates: padding slots get benefit -2 in every coordinate (probabilities -2 * signs), so they
        # score exactly -2 * sum|w| = -2 for every allowed w, below any real candidate (>= -1): masks need no -inf fill
        self._pad_probs = None if self.signs is None else -2.0 * np.asarray(self.signs, dtype=np.float64)
        self.check_finite = check_finite
        prepared = sum(4 * 8 * len(c.rows) * c.width for c in self._chunks)
        self._cache = prepared <= cache_bytes
        if self._cache or check_finite:
            for c in self._chunks:
                data = self._load(c)
                if self._cache:
                    c.data = data

    @property
    def n_chunks(self) -> int:
        return len(self._chunks)

    def _load(self, c: _Chunk) -> torch.Tensor:
        """float64 [4, cs * width] head-major copy of the chunk's candidate probabilities (quantized; pads 0,
        masked later), on the ranker's device."""
        if c.cand is None:
            p = np.asarray(self.probs[c.rows])                    # [cs, V, 4]
        elif self._cand_probs is not None:  # the pruned candidates carry their probabilities: no memmap reads
            c_ptr = self.candidates[0]
            r_idx, col, src = _ragged(c_ptr, c.rows)
            p = np.zeros((len(c.rows), c.width, 4), dtype=self._cand_probs.dtype)
            p[r_idx, col] = self._cand_probs[src]
        else:  # row by row: only [cs, width, 4] in memory; pads (id -1 -> 0) are masked later
            idx = c.cand.clamp(min=0).cpu().numpy()
            p = np.stack([np.asarray(self.probs[s])[idx[r]] for r, s in enumerate(c.rows)])
        q = quantize_probs(p)
        if self.check_finite and not bool(((q >= 0) & (q <= 1)).all()):
            raise ValueError(f"probs must be finite and in [0, 1]; not so in sessions {c.rows[:5]}...")
        if c.cand is not None and self._pad_probs is not None:
            q[(c.cand < 0).cpu().numpy()] = self._pad_probs
        return torch.from_numpy(np.ascontiguousarray(q.transpose(2, 0, 1).reshape(4, -1))).to(self.device)

    def _weights(self, W) -> torch.Tensor:
        Wq = torch.from_numpy(quantize_weights(W))
        if self.signs is not None:
            ok = ((Wq * torch.tensor(self.signs, dtype=Wq.dtype)) >= 0).all(1) & (Wq.abs().sum(1) > 0)
            if not bool(ok.all()):
                raise ValueError(f"these candidates were pruned for weights with signs {self.signs}; got {W}")
        return Wq.to(self.device)

    def masks(self, W) -> Iterator[MaskChunk]:
        """Yield, chunk by chunk, each session's exact top-K_eff set under every weight vector of W [B, 4]
        (finite) as a mask over the chunk's candidate slots; the same sets as `chunks`, computed faster."""
        Wq = self._weights(W)
        for ci, c in enumerate(self._chunks):
            data = c.data if c.data is not None else self._load(c)
            with torch_threads(self.threads):
                mask = _mask_chunk(data, c, Wq, self.batch_elems, fill=self._pad_probs is None)
            yield MaskChunk(ci, c.rows, mask, c.k_eff, c.cand)

    def chunks(self, W, ordered: bool = False) -> Iterator[RankedChunk]:
        """Yield the top-K lists chunk by chunk for weights W [B, 4] (finite). The set of each list is exact;
        ordered=True also puts it in rank order (two extra sorts), else its order is unspecified."""
        Wq = self._weights(W)
        for ci, c in enumerate(self._chunks):
            data = c.data if c.data is not None else self._load(c)
            with torch_threads(self.threads):
                ranked = _rank_chunk(data, c, Wq, self.batch_elems, ordered)
            yield RankedChunk(ci, c.rows, *ranked)

    def topk(self, W) -> TopK:
        """All sessions' top-K lists in flat form (session order 0..S-1)."""
        W = np.asarray(W, dtype=np.float64).reshape(-1, 4)
        indptr = np.zeros(self.n_sessions + 1, dtype=np.int64)
        np.cumsum(self.k_eff, out=indptr[1:])
        out = np.full((len(W), indptr[-1]), -1, dtype=np.int64)
        for ch in self.chunks(W, ordered=True):
            ids = ch.ids.cpu().numpy()
            for r, s in enumerate(ch.rows):
                ke = self.k_eff[s]
                out[:, indptr[s]:indptr[s] + ke] = ids[:, r, :ke]
        return TopK(indptr, out)


def quantize_weights(W) -> np.ndarray:
    """Rows scaled to sum |w| = 1 and rounded to multiples of 2**-25 (float64 [B, 4]); see `scores`."""
    W = np.asarray(W, dtype=np.float64).reshape(-1, 4)
    if not np.isfinite(W).all():
        raise ValueError("weights must be finite")
    norm = np.abs(W).sum(1, keepdims=True)
    W = np.divide(W, norm, out=np.zeros_like(W), where=norm > 0)
    return np.round(W * W_SCALE) / W_SCALE


def quantize_probs(p: np.ndarray) -> np.ndarray:
    """Probabilities rounded to multiples of 2**-24 (exact for float16 input, < 3e-8 change for float32)."""
    p = np.asarray(p)
    if p.dtype == np.float16:
        return p.astype(np.float64)
    return np.round(p.astype(np.float64) * P_SCALE) / P_SCALE


def scores(p_q: torch.Tensor, W_q: torch.Tensor) -> torch.Tensor:
    """Exact scores W_q @ p_q (float64): with p a multiple of 2**-24 in [0, 1] and w a multiple of 2**-25 with
    |w| <= 1, every product is an integer multiple of 2**-49 below 2**0 and every partial sum stays below 2**53
    units, so float64 holds them exactly, in any summation order. Hence BLAS blocking, FMA use and batch size
    cannot change a score, ties are true ties, and dominance between videos carries over to scores exactly."""
    return W_q @ p_q


P_SCALE = float(2**24)
W_SCALE = float(2**25)


def _rank_chunk(data: torch.Tensor, c: _Chunk, Wq: torch.Tensor, max_elems: int, ordered: bool):
    cs, width, kc = len(c.rows), c.width, c.kc
    B = len(Wq)
    kw = max(kc, 1)
    dev = data.device
    ids_out = torch.full((B, cs, kw), -1, dtype=torch.int64, device=dev)
    valid = torch.arange(kw, device=dev)[None, :] < c.k_eff[:, None]
    if kc == 0:
        return ids_out[:, :, :0], valid[:, :0], c.k_eff
    kq = min(kc + 1, width)
    neg_inf = float("-inf")
    step = max(1, max_elems // (cs * width))
    for b0 in range(0, B, step):
        Wb = Wq[b0 : b0 + step]
        nb = len(Wb)
        s = scores(data, Wb)                                   # [nb, cs * width]
        if c.excl is not None:
            s.index_fill_(1, c.excl, neg_inf)
        s2 = s.view(nb * cs, width)
        vals, pos = torch.topk(s2, kq, dim=1, largest=True, sorted=True)
        if kq < kc + 1:  # every candidate slot returned; pad so that vals[:, k_eff] exists
            vals = torch.cat([vals, torch.full((nb * cs, kc + 1 - kq), neg_inf, dtype=vals.dtype, device=dev)], 1)
            pos = torch.cat([pos, torch.zeros((nb * cs, kc + 1 - kq), dtype=torch.int64, device=dev)], 1)
        k_eff = c.k_eff.repeat(nb)
        ar = torch.arange(nb * cs, device=dev)
        t = vals[ar, (k_eff - 1).clamp(min=0)]
        tie = (k_eff > 0) & (vals[ar, k_eff] == t)
        if bool(tie.any()):
            rows = tie.nonzero().reshape(-1)
            pos[rows, :kc] = _resolve_ties(s2[rows], t[rows], k_eff[rows], kc)
            vals[rows, :kc] = torch.gather(s2[rows], 1, pos[rows, :kc])
        pos, vals = pos[:, :kc], vals[:, :kc]
        vb = valid.repeat(nb, 1)
        if ordered:  # rank order: score desc, then position (= video id order) asc; beyond K_eff: last
            vals = torch.where(vb, vals, torch.full_like(vals, neg_inf))
            p_sorted, o1 = torch.sort(torch.where(vb, pos, torch.full_like(pos, width)), dim=1)
            _, o2 = torch.sort(torch.gather(vals, 1, o1), dim=1, descending=True, stable=True)
            pos = torch.gather(p_sorted, 1, o2)
        pos = torch.where(vb, pos, torch.zeros_like(pos))
        ids = pos if c.cand is None else c.cand[torch.arange(cs, device=dev).repeat(nb)[:, None], pos]
        ids_out[b0 : b0 + nb] = torch.where(vb, ids, torch.full_like(ids, -1)).view(nb, cs, kc)
    return ids_out, valid, c.k_eff


def _resolve_ties(s2: torch.Tensor, t: torch.Tensor, k: torch.Tensor, kc: int) -> torch.Tensor:
    """Exact top-k positions of rows whose k-th and (k+1)-th scores tie: all scores > t, then the lowest
    positions among scores == t. Returns [T, kc] (entries beyond each row's k are 0)."""
    gt = s2 > t[:, None]
    eq = s2 == t[:, None]
    need = k - gt.sum(1)
    sel = gt | (eq & (eq.cumsum(1) <= need[:, None]))
    slot = sel.cumsum(1) - 1
    r, col = sel.nonzero(as_tuple=True)
    out = torch.zeros((len(t), kc), dtype=torch.int64, device=s2.device)
    out[r, slot[r, col]] = col
    return out


def _ragged(indptr: np.ndarray, rows: np.ndarray):
    """For CSR rows `rows`: (local row, column, flat source position) of every entry, vectorized."""
    lens = indptr[rows + 1] - indptr[rows]
    r_idx = np.repeat(np.arange(len(rows)), lens)
    start = np.repeat(indptr[rows], lens)
    col = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
    return r_idx, col, start + col


NUMPY_ON_CPU = True  # CPU: numpy selection / indexing where faster; False runs the torch path used on GPUs


def _kth_values(s2: torch.Tensor, k: torch.Tensor, kc: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row r of s2 [R, width]: the k[r]-th largest value t (k[r] >= 1) and the (k[r]+1)-th (-inf if none),
    for k <= kc. CPU: numpy's partition (introselect, ~3x faster than torch.topk on short rows) keeps the
    kc + 1 largest, which are then sorted; other devices: torch.topk."""
    R, width = s2.shape
    m = min(kc + 1, width)
    if s2.device.type == "cpu" and NUMPY_ON_CPU:
        a = s2.numpy()
        part = np.partition(a, width - m, axis=1)[:, width - m:] if width > m else a.copy()
        part.sort(axis=1)                                      # ascending: j-th largest at column m - j
        idx = m - k.numpy()
        ar = np.arange(R)
        t = part[ar, np.minimum(idx, m - 1)]
        nxt = np.where(idx >= 1, part[ar, np.maximum(idx - 1, 0)], -np.inf)
        return torch.from_numpy(t), torch.from_numpy(nxt)
    top = torch.topk(s2, m, dim=1, largest=True, sorted=True).values
    if m < kc + 1:
        top = torch.cat([top, torch.full((R, kc + 1 - m), float("-inf"), dtype=top.dtype, device=top.device)], 1)
    ar = torch.arange(R, device=s2.device)
    return top[ar, (k - 1).clamp(min=0)], top[ar, k]


def _mask_chunk(data: torch.Tensor, c: _Chunk, Wq: torch.Tensor, max_elems: int, fill: bool = True) -> torch.Tensor:
    """bool [B, cs, width]: the exact top-K_eff set of each session (ties at the K-th score to the lowest slots,
    i.e. the lowest video ids, as slots are in id order) under every weight vector. fill=False: padding slots
    already score below every candidate (sentinel data), only excluded slots need -inf."""
    cs, width, kc = len(c.rows), c.width, c.kc
    B = len(Wq)
    dev = data.device
    if kc == 0:
        return torch.zeros((B, cs, width), dtype=torch.bool, device=dev)
    step = max(1, max_elems // (cs * width))
    out = None if step >= B else torch.empty((B, cs, width), dtype=torch.bool, device=dev)
    k_full = c.k_eff.clamp(min=1)
    for b0 in range(0, B, step):
        Wb = Wq[b0 : b0 + step]
        nb = len(Wb)
        s = torch.mv(data.T, Wb[0]).view(1, -1) if nb == 1 else scores(data, Wb)   # [nb, cs * width]
        if fill and c.excl is not None:
            s.index_fill_(1, c.excl, float("-inf"))
        s2 = s.view(nb * cs, width)
        k_eff = c.k_eff.repeat(nb) if nb > 1 else c.k_eff
        t, nxt = _kth_values(s2, k_full.repeat(nb) if nb > 1 else k_full, kc)
        t = t.to(dev).masked_fill_(k_eff == 0, float("inf"))  # K_eff = 0: nothing selected
        m = s2 >= t[:, None]                                   # exactly K_eff slots unless a tie crosses K_eff
        tie = (k_eff > 0) & (nxt.to(dev) == t)
        if bool(tie.any()):
            rows = tie.nonzero().reshape(-1)
            sr, tr = s2[rows], t[rows, None]
            eq = sr == tr
            need = k_eff[rows] - (sr > tr).sum(1)
            m[rows] = (sr > tr) | (eq & (eq.cumsum(1) <= need[:, None]))
        if out is None:
            return m.view(B, cs, width)
        out[b0 : b0 + nb] = m.view(nb, cs, width)
    return out
