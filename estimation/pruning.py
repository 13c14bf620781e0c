"""Exact candidate pruning: per session keep only the videos that can enter the top K for SOME w in the
constrained space (w_complete, w_long, w_rewatch >= 0, w_neg <= 0, sum |w| = 1): the K-skyband.

In benefit coordinates b = (p_complete, p_long, p_rewatch, -p_neg) (quantized exactly as the ranker does), say
u BEATS v when b_u >= b_v in every coordinate and either id(u) < id(v) or b_u > b_v in every coordinate. Then for
every w of the space u comes before v in the ranking order (score desc, id asc): weak dominance gives
score(u) >= score(v) exactly (scores are exact), a tie goes to the lower id, and strictness in all four
coordinates makes score(u) > score(v) because some weight is non-zero. (Weak dominance with one strict
coordinate is not enough: a w with zero weight there makes a tie, which the lower id v wins.) A video beaten
by >= K candidates is never in the top K, so dropping it leaves every top-K set unchanged.

BEATS is a strict partial order, so (listing a video's beaters in score order) a video beaten by >= K
candidates is beaten by >= K members of the skyband. Hence counting beaters only among any superset of the
skyband decides exactly. Vectorized passes per chunk of sessions: (0) a video strictly below the componentwise
minimum of the top K under some weight is beaten by those K (O(V) per weight); (1) count beaters among pivots
(the top K under a few weight vectors), which removes most of the rest; (2) count beaters among the survivors
pairwise.

The pruned candidates carry their own head probabilities (`Candidates.probs`), so a Ranker built on them never
reads the [S, V, 4] array again; `cached_skyband` stores them on disk (atomically, .npz) beside the heads cache.
`workers > 1` splits the sessions over processes (each reads its range of a memory-mapped probs file; `estimation.parallel`).
"""
from __future__ import annotations

import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from estimation.ranking import P_SCALE, _csr, torch_threads
from estimation.search_space import simplex_grid

log = logging.getLogger(__name__)

SIGNS = (1, 1, 1, -1)
_SENTINEL = -(2**30)  # benefit value of padding / excluded slots: beats nobody


@dataclass
class Candidates:
    """CSR of candidate video ids per session (sorted ascending), valid for weights with `signs`."""

    indptr: np.ndarray
    values: np.ndarray
    signs: tuple[int, ...] = SIGNS
    probs: np.ndarray | None = None   # [nnz, 4] head probabilities of the candidates (dtype of the input)

    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)


def _benefit(p: np.ndarray) -> torch.Tensor:
    """int32 [.., 4] exact benefit coordinates in units of 2**-24."""
    q = np.rint(np.asarray(p, dtype=np.float64) * P_SCALE).astype(np.int32)
    q[..., 3] = -q[..., 3]
    return torch.from_numpy(q)


def _beats(bu: torch.Tensor, iu: torch.Tensor, bv: torch.Tensor, iv: torch.Tensor) -> torch.Tensor:
    """bool [cs, nv, nu]: u beats v. bu [cs, 4, nu] (coordinate-major), iu [cs, nu] ids; bv [cs, 4, nv], iv."""
    ge = gt = None
    for j in range(4):
        a, b = bu[:, j, None, :], bv[:, j, :, None]
        ge = (a >= b) if ge is None else ge.logical_and_(a >= b)
        gt = (a > b) if gt is None else gt.logical_and_(a > b)
    return ge.logical_and_(gt.logical_or_(iu[:, None, :] < iv[:, :, None]))


def _count_beaters(bu, iu, bv, iv, budget: int) -> torch.Tensor:
    """int64 [cs, nv]: number of u beating each v, computed in slices of v to stay within `budget` elements."""
    cs, _, nv = bv.shape
    nu = bu.shape[2]
    step = max(1, budget // max(cs * nu, 1))
    out = torch.empty((cs, nv), dtype=torch.int64)
    for s in range(0, nv, step):
        out[:, s : s + step] = _beats(bu, iu, bv[:, :, s : s + step], iv[:, s : s + step]).sum(-1)
    return out


def _gather_rows(mask: torch.Tensor, ids_in: torch.Tensor, b: torch.Tensor):
    """Pack the True slots of each row (in order) into ids [cs, n_max] and benefits [cs, 4, n_max], padding
    with id V_big (larger than any id) and the sentinel. ids_in [cs, n], b [cs, 4, n]."""
    cs = mask.shape[0]
    n = mask.sum(1)
    n_max = max(int(n.max()) if cs else 0, 1)
    ids = torch.full((cs, n_max), 2**62, dtype=torch.int64)
    r, c = mask.nonzero(as_tuple=True)
    slot = (mask.cumsum(1) - 1)[r, c]
    ids[r, slot] = ids_in[r, c]
    bb = torch.full((cs, 4, n_max), _SENTINEL, dtype=torch.int32)
    bb.permute(0, 2, 1)[r, slot] = b.permute(0, 2, 1)[r, c]
    return ids, bb, n


def skyband(probs, k, seen=None, pivot_resolution: int = 2, work_elems: int = 1 << 22,
            chunk_sessions: int | None = None, threads: int | None = 1, workers: int = 1) -> Candidates:
    """K-skyband per session (K = k[s]) among the candidates (all videos minus `seen`), as a `Candidates` CSR
    with the candidates' probabilities.

    probs [S, V, 4] (array or memmap), k [S], seen: optional CSR of excluded ids. Pivots: the top K under
    the simplex lattice of `pivot_resolution` (benefit weights). `work_elems` bounds the comparison tensors.
    Runs with `threads` torch threads (default 1: see ranking.torch_threads). workers > 1 (only for a memmap
    loaded by np.load, which every worker reopens) splits the sessions into that many processes.
    """
    S = probs.shape[0]
    path = getattr(probs, "filename", None)
    if workers > 1 and path is not None and S >= 2 * workers and _is_npy_view(probs):
        k = np.asarray(k, dtype=np.int64)
        s_ptr = s_ids = None
        if seen is not None:
            s_ptr, s_ids = _csr(seen, S)
        bounds = np.linspace(0, S, workers + 1).astype(np.int64)
        jobs = []
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            sub_seen = None if s_ptr is None else (s_ptr[lo:hi + 1] - s_ptr[lo], s_ids[s_ptr[lo]:s_ptr[hi]])
            jobs.append((str(path), int(lo), int(hi), k[lo:hi], sub_seen, pivot_resolution, work_elems,
                         chunk_sessions, threads))
        from estimation.parallel import run_jobs

        return _concat(run_jobs("estimation.pruning", "_skyband_job", jobs, workers))
    with torch_threads(threads):
        return _skyband(probs, k, seen, pivot_resolution, work_elems, chunk_sessions)


def _is_npy_view(probs) -> bool:
    """True when probs is the whole array of its .npy file (so a worker can reopen it)."""
    try:
        full = np.load(probs.filename, mmap_mode="r")
    except Exception:
        return False
    return full.shape == probs.shape and full.dtype == probs.dtype


def _skyband_job(job) -> Candidates:
    path, lo, hi, k, seen, pivot_resolution, work_elems, chunk_sessions, threads = job
    probs = np.load(path, mmap_mode="r")[lo:hi]
    with torch_threads(threads):
        return _skyband(probs, k, seen, pivot_resolution, work_elems, chunk_sessions)


def _concat(parts: list[Candidates]) -> Candidates:
    indptr = [np.zeros(1, dtype=np.int64)]
    off = 0
    for c in parts:
        indptr.append(c.indptr[1:] + off)
        off += int(c.indptr[-1])
    probs = [c.probs for c in parts]
    return Candidates(np.concatenate(indptr), np.concatenate([c.values for c in parts]),
                      parts[0].signs if parts else SIGNS,
                      None if any(p is None for p in probs) else np.concatenate(probs))


# ----------------------------------------------------------------------------------------------- disk cache
PRUNING_VERSION = "skyband-v1"


def save_candidates(path, cand: Candidates) -> None:
    """Write candidates to `path` (.npz) atomically: a temporary file in the same folder, then a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}.npz")
    try:
        arrays = {"indptr": cand.indptr, "values": cand.values, "signs": np.asarray(cand.signs, dtype=np.int64)}
        if cand.probs is not None:
            arrays["probs"] = cand.probs
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_candidates(path) -> Candidates:
    with np.load(path) as z:
        return Candidates(z["indptr"], z["values"], tuple(int(x) for x in z["signs"]),
                          z["probs"] if "probs" in z.files else None)


def skyband_cache_path(cache_dir, heads_key: str, exclude_seen: bool) -> Path:
    """File of the pruned candidates for a heads cache key and the exclude-seen setting."""
    tag = "seen" if exclude_seen else "all"
    return Path(cache_dir) / f"skyband-{heads_key}-{tag}-{PRUNING_VERSION}.npz"


PARALLEL_MIN_PAIRS = 20_000_000   # below this, worker start-up (~5-20 s) is not worth it


def cached_skyband(probs, k, seen=None, cache_path=None, workers: int | None = None, **kwargs) -> Candidates:
    """`skyband`, read from / written to `cache_path` when given. A file that does not fit these sessions
    (wrong session count or ids out of range) is recomputed. workers=None: all cores for a memory-mapped probs
    file of at least PARALLEL_MIN_PAIRS pairs, else 1."""
    if cache_path is not None and Path(cache_path).exists():
        try:
            cand = load_candidates(cache_path)
            S, V = probs.shape[:2]
            if (len(cand.indptr) == S + 1 and int(cand.indptr[-1]) == len(cand.values)
                    and (len(cand.values) == 0 or int(cand.values.max()) < V)
                    and (cand.probs is None or cand.probs.shape == (len(cand.values), 4))):
                return cand
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:  # cut short: recompute
            log.warning("warning: skyband cache %s is unreadable (%s): recomputing it", cache_path, e)
    if workers is None:
        from estimation.parallel import default_workers

        big = probs.shape[0] * probs.shape[1] >= PARALLEL_MIN_PAIRS
        workers = default_workers() if big and getattr(probs, "filename", None) is not None else 1
    cand = skyband(probs, k, seen=seen, workers=workers, **kwargs)
    if cache_path is not None:
        save_candidates(cache_path, cand)
    return cand


def _skyband(probs, k, seen, pivot_resolution, work_elems, chunk_sessions) -> Candidates:
    S, V, _ = probs.shape
    k = np.asarray(k, dtype=np.int64)
    s_ptr = s_ids = None
    if seen is not None:
        s_ptr, s_ids = _csr(seen, S)
    Wp = torch.from_numpy(simplex_grid(pivot_resolution))                 # [G, 4] >= 0 on benefit coords
    out_lists: list[np.ndarray] = [None] * S  # type: ignore[list-item]
    out_probs: list[np.ndarray] = [None] * S  # type: ignore[list-item]
    kmax = int(k.max()) if S else 0
    cs = chunk_sessions or max(1, work_elems // max(V * max(len(Wp) * min(kmax, V), 1), 1))
    for s0 in range(0, S, cs):
        rows = np.arange(s0, min(S, s0 + cs))
        n = len(rows)
        chunk_probs = np.asarray(probs[s0:s0 + n])
        b = _benefit(chunk_probs)                                         # [cs, V, 4]
        allowed = torch.ones((n, V), dtype=torch.bool)
        if s_ptr is not None:
            for r, s in enumerate(rows):
                allowed[r, torch.from_numpy(s_ids[s_ptr[s]:s_ptr[s + 1]])] = False
        b[~allowed] = _SENTINEL
        kr = torch.from_numpy(k[rows])
        kc = int(min(kr.max(), V)) if n else 0
        if kc == 0:
            for s in rows:
                out_lists[s] = np.zeros(0, np.int64)
                out_probs[s] = np.zeros((0, 4), dtype=chunk_probs.dtype)
            continue
        # pivots: top K under each lattice weight (scores need not be exact to choose pivots)
        sc = torch.einsum("svj,gj->sgv", b.to(torch.float64), Wp)           # [cs, G, V]
        top = torch.topk(sc, kc, dim=2).indices                            # [cs, G, kc]
        in_top = torch.arange(kc)[None, None, :] < kr[:, None, None]       # rank < K of the session
        # pass 0: a video strictly below, in all coordinates, the componentwise minimum of some top-K set is
        # beaten by those K videos (sentinels in a top-K set make the minimum the sentinel: no pruning)
        tb = torch.gather(b[:, None].expand(n, len(Wp), V, 4), 2, top[..., None].expand(-1, -1, -1, 4))
        tb = torch.where(in_top[..., None], tb, torch.full_like(tb, 2**30))
        corner = tb.min(2).values                                          # [cs, G, 4]
        below = (b[:, None, :, :] < corner[:, :, None, :]).all(-1).any(1)  # [cs, V]
        cand0 = allowed & ~below
        # pass 1: beaters among the pivots
        pivot = torch.zeros((n, V), dtype=torch.bool)
        rr = torch.arange(n)[:, None, None].expand_as(top)
        sel = in_top.expand_as(top)
        pivot[rr[sel], top[sel]] = True
        pivot &= allowed
        vid = torch.arange(V).expand(n, V)
        bT = b.permute(0, 2, 1).contiguous()                               # [cs, 4, V]
        pid, pb, _ = _gather_rows(pivot, vid, bT)
        cid, cb, _ = _gather_rows(cand0, vid, bT)
        cnt1 = _count_beaters(pb, pid, cb, cid, work_elems)
        survive = (cid < V) & (cnt1 < kr[:, None])
        # pass 2: exact counts among the survivors (a superset of the skyband)
        sid, sb, ns = _gather_rows(survive, cid, cb)
        cnt2 = _count_beaters(sb, sid, sb, sid, work_elems)
        keep = (sid < V) & (cnt2 < kr[:, None])
        for r, s in enumerate(rows):
            out_lists[s] = sid[r][keep[r]].numpy()
            out_probs[s] = chunk_probs[r][out_lists[s]]
    lens = np.array([len(x) for x in out_lists], dtype=np.int64)
    indptr = np.zeros(S + 1, dtype=np.int64)
    np.cumsum(lens, out=indptr[1:])
    values = np.concatenate(out_lists).astype(np.int64) if S else np.zeros(0, np.int64)
    cprobs = (np.concatenate(out_probs) if S else np.zeros((0, 4), dtype=np.asarray(probs[:0]).dtype))
    return Candidates(indptr, values, SIGNS, cprobs)
