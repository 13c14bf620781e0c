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
skyband decides exactly. Two vectorized passes per chunk of sessions: (1) count beaters among pivots (the top K
under a few weight vectors), which removes most videos; (2) count beaters among the survivors pairwise.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from estimation.ranking import P_SCALE, _csr
from estimation.search_space import simplex_grid

SIGNS = (1, 1, 1, -1)
_SENTINEL = -(2**30)  # benefit value of padding / excluded slots: beats nobody


@dataclass
class Candidates:
    """CSR of candidate video ids per session (sorted ascending), valid for weights with `signs`."""

    indptr: np.ndarray
    values: np.ndarray
    signs: tuple[int, ...] = SIGNS

    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)


def _benefit(p: np.ndarray) -> torch.Tensor:
    """int32 [.., 4] exact benefit coordinates in units of 2**-24."""
    q = np.rint(np.asarray(p, dtype=np.float64) * P_SCALE).astype(np.int32)
    q[..., 3] = -q[..., 3]
    return torch.from_numpy(q)


def _beats(bu: torch.Tensor, iu: torch.Tensor, bv: torch.Tensor, iv: torch.Tensor) -> torch.Tensor:
    """bool [cs, nv, nu]: u beats v. bu [cs, nu, 4], iu [cs, nu] ids; bv [cs, nv, 4], iv [cs, nv]."""
    ge = None
    gt = None
    for j in range(4):
        a, b = bu[:, None, :, j], bv[:, :, None, j]
        ge = (a >= b) if ge is None else ge & (a >= b)
        gt = (a > b) if gt is None else gt & (a > b)
    return ge & ((iu[:, None, :] < iv[:, :, None]) | gt)


def _count_beaters(bu, iu, bv, iv, budget: int) -> torch.Tensor:
    """int64 [cs, nv]: number of u beating each v, computed in slices of v to stay within `budget` elements."""
    cs, nv = bv.shape[:2]
    nu = bu.shape[1]
    step = max(1, budget // max(cs * nu, 1))
    out = torch.empty((cs, nv), dtype=torch.int64)
    for s in range(0, nv, step):
        out[:, s : s + step] = _beats(bu, iu, bv[:, s : s + step], iv[:, s : s + step]).sum(-1)
    return out


def _gather_rows(mask: torch.Tensor, b: torch.Tensor):
    """Pack the True slots of each row (ascending position) into [cs, n_max] ids and [cs, n_max, 4] benefits,
    padding with id V (largest) and the sentinel."""
    cs, V = mask.shape
    n = mask.sum(1)
    n_max = max(int(n.max()) if cs else 0, 1)
    ids = torch.full((cs, n_max), V, dtype=torch.int64)
    r, c = mask.nonzero(as_tuple=True)
    slot = mask.cumsum(1) - 1
    ids[r, slot[r, c]] = c
    bb = torch.full((cs, n_max, 4), _SENTINEL, dtype=torch.int32)
    bb[r, slot[r, c]] = b[r, c]
    return ids, bb, n


def skyband(probs, k, seen=None, pivot_resolution: int = 2, work_elems: int = 1 << 24,
            chunk_sessions: int | None = None) -> Candidates:
    """K-skyband per session (K = k[s]) among the candidates (all videos minus `seen`), as a `Candidates` CSR.

    probs [S, V, 4] (array or memmap), k [S], seen: optional CSR of excluded ids. Pivots: the top K under
    the simplex lattice of `pivot_resolution` (benefit weights). `work_elems` bounds the comparison tensors.
    """
    S, V, _ = probs.shape
    k = np.asarray(k, dtype=np.int64)
    s_ptr = s_ids = None
    if seen is not None:
        s_ptr, s_ids = _csr(seen, S)
    Wp = torch.from_numpy(simplex_grid(pivot_resolution))                 # [G, 4] >= 0 on benefit coords
    out_lists: list[np.ndarray] = [None] * S  # type: ignore[list-item]
    kmax = int(k.max()) if S else 0
    cs = chunk_sessions or max(1, work_elems // max(V * max(len(Wp) * min(kmax, V), 1), 1))
    for s0 in range(0, S, cs):
        rows = np.arange(s0, min(S, s0 + cs))
        b = _benefit(np.asarray(probs[rows]))                             # [cs, V, 4]
        n = len(rows)
        allowed = torch.ones((n, V), dtype=torch.bool)
        if s_ptr is not None:
            for r, s in enumerate(rows):
                allowed[r, torch.from_numpy(s_ids[s_ptr[s]:s_ptr[s + 1]])] = False
        b[~allowed] = _SENTINEL
        kr = torch.from_numpy(k[rows])
        # pass 1: pivots = top-K under each lattice weight (scores need not be exact to choose pivots)
        kc = int(min(kr.max(), V)) if n else 0
        pivot = torch.zeros((n, V), dtype=torch.bool)
        if kc > 0:
            sc = torch.einsum("svj,gj->sgv", b.to(torch.float64), Wp)       # [cs, G, V]
            top = torch.topk(sc, kc, dim=2).indices                        # [cs, G, kc]
            rank_ok = torch.arange(kc)[None, None, :] < kr[:, None, None]
            rr = torch.arange(n)[:, None, None].expand_as(top)
            pivot[rr[rank_ok.expand_as(top)], top[rank_ok.expand_as(top)]] = True
        pivot &= allowed
        pid, pb, _ = _gather_rows(pivot, b)
        vid = torch.arange(V).expand(n, V)
        cnt1 = _count_beaters(pb, pid, b, vid, work_elems)
        survive = allowed & (cnt1 < kr[:, None])
        # pass 2: exact counts among the survivors (a superset of the skyband)
        sid, sb, ns = _gather_rows(survive, b)
        cnt2 = _count_beaters(sb, sid, sb, sid, work_elems)
        slot_ok = torch.arange(sid.shape[1])[None, :] < ns[:, None]
        keep = slot_ok & (cnt2 < kr[:, None])
        for r, s in enumerate(rows):
            out_lists[s] = sid[r][keep[r]].numpy()
    lens = np.array([len(x) for x in out_lists], dtype=np.int64)
    indptr = np.zeros(S + 1, dtype=np.int64)
    np.cumsum(lens, out=indptr[1:])
    values = np.concatenate(out_lists).astype(np.int64) if S else np.zeros(0, np.int64)
    return Candidates(indptr, values)
