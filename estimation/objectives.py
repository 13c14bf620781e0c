"""Objectives: how far the simulated top-K lists under w are from what users actually watched.

Each objective is called with a batch of weight vectors, `objective(W [B, 4]) -> float64 [B]`, ranks every
session once per weight vector (`ranking.Ranker`), and returns the mean over sessions of a per-session loss;
+inf where a weight vector is non-finite or the loss is not finite (so it never wins an argmin).

Sessions enter the mean when the user watched something and the session has at least one candidate
(K_eff >= 1); the others carry no information about w.

- `CategoryCrossEntropy`: cross-entropy -sum_c q_c log p_c between the observed category distribution q
  (counts among the watched videos / their number) and the simulated one p (counts among the top-K_eff / K_eff),
  for any per-video category code array (level 1, 2 or 3). `smoothing=None` is the notebook's version, with p
  clipped to [eps, 1] (eps = 1e-8). Each observed category that the list misses then costs q_c * 18.4 nats,
  which swamps the O(1) differences among covered categories: the loss becomes a count of misses whose scale is
  set by the arbitrary eps, flat in most directions. `smoothing="dirichlet"` uses instead the posterior-predictive
  p_c = (n_c + alpha * pi_c) / (K_eff + alpha): the list's counts n_c plus alpha pseudo-videos spread by a base
  distribution pi (the catalog's category shares by default, or uniform), i.e. a miss costs -log(alpha pi_c /
  (K + alpha)), finite and eps-free, and covered categories still matter.
- `EmbeddingL2`: squared L2 distance between the mean embedding of the watched videos and of the top-K_eff
  (embeddings rounded to a fixed-point grid so that sums are exact: ~1e-13 relative change).

Both read the top-K SETS as masks over each chunk's candidate slots (`Ranker.masks`, the fast path): a category
count is a bincount of the slots' precomputed (session, observed category) pair numbers, an embedding sum an
embedding_bag over the selected slots. `per_session(W, path="ids")` uses the id lists instead (`Ranker.chunks`);
both give identical values. Tensors live on the ranker's device.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from estimation import ranking
from estimation.ranking import MaskChunk, RankedChunk, Ranker, torch_threads


def _csr(observed, n: int) -> tuple[np.ndarray, np.ndarray]:
    indptr, values = (observed.indptr, observed.values) if hasattr(observed, "indptr") else observed
    indptr, values = np.asarray(indptr, dtype=np.int64), np.asarray(values, dtype=np.int64)
    if len(indptr) != n + 1:
        raise ValueError(f"observed CSR indptr has length {len(indptr)}, expected {n + 1}")
    return indptr, values


class Objective:
    """Base: batched mean of a per-session loss over the ranker's sessions; subclasses define `_chunk_loss`."""

    name = "objective"

    def __init__(self, ranker: Ranker, observed):
        self.ranker = ranker
        self.obs_indptr, self.obs_ids = _csr(observed, ranker.n_sessions)
        if len(self.obs_ids) and (self.obs_ids.min() < 0 or self.obs_ids.max() >= ranker.n_videos):
            raise ValueError("observed video ids must lie in 0..V-1")
        self.n_obs = np.diff(self.obs_indptr)
        self.used = (self.n_obs > 0) & (ranker.k_eff > 0)
        self.n_used = int(self.used.sum())
        self.device = getattr(ranker, "device", torch.device("cpu"))
        self._cache: dict[int, object] = {}
        self._mask_cache: dict[int, object] = {}
        self.n_calls = 0
        self.n_evals = 0

    def per_session(self, W, path: str = "mask") -> np.ndarray:
        """float64 [B, S] per-session losses; NaN for unused sessions and for non-finite weight rows.
        path: "mask" (top-K sets as slot masks, fast) or "ids" (top-K id lists); same values."""
        W = np.asarray(W, dtype=np.float64).reshape(-1, 4)
        out = np.full((len(W), self.ranker.n_sessions), np.nan)
        ok = np.isfinite(W).all(1)
        if path not in ("mask", "ids"):
            raise ValueError(f"path must be 'mask' or 'ids', got {path!r}")
        if ok.any():
            if path == "mask" and hasattr(self.ranker, "masks"):
                parts = ((ch, self._mask_loss) for ch in self.ranker.masks(W[ok]))
            else:
                parts = ((ch, self._chunk_loss) for ch in self.ranker.chunks(W[ok]))
            full = bool(ok.all())
            for ch, fn in parts:
                with torch_threads(self.ranker.threads):
                    loss = fn(ch).cpu().numpy()                # [B_ok, cs]
                if full:
                    out[:, ch.rows] = loss
                else:
                    out[np.ix_(ok, ch.rows)] = loss
        out[:, ~self.used] = np.nan
        return out

    def __call__(self, W, session_weights=None) -> np.ndarray:
        """float64 [B]: (weighted) mean per-session loss over used sessions; +inf where not finite."""
        per = self.per_session(W)
        self.n_calls += 1
        self.n_evals += len(per)
        u = self.used
        # row by row: a 1-D sum's order does not depend on how many rows the batch has
        if session_weights is None:
            loss = np.array([np.ascontiguousarray(row[u]).sum() for row in per]) / max(self.n_used, 1)
        else:
            sw = np.asarray(session_weights, dtype=np.float64)[u]
            loss = np.array([np.ascontiguousarray(row[u] * sw).sum() for row in per]) / max(sw.sum(), 1e-300)
        loss = loss.reshape(len(per))
        loss[~np.isfinite(loss)] = np.inf
        if self.n_used == 0:
            loss[:] = np.inf
        return loss

    def _chunk_data(self, ch: RankedChunk):
        if ch.index not in self._cache:
            self._cache[ch.index] = self._prepare(ch.rows)
        return self._cache[ch.index]

    def _prepare(self, rows: np.ndarray):
        raise NotImplementedError

    def _chunk_loss(self, ch: RankedChunk) -> torch.Tensor:
        raise NotImplementedError

    def _mask_loss(self, ch: MaskChunk) -> torch.Tensor:
        raise NotImplementedError

    @staticmethod
    def _slot_videos(ch: MaskChunk) -> torch.Tensor:
        """int64 [cs, width]: video id of every slot of a chunk (-1: padding)."""
        if ch.cand is not None:
            return ch.cand
        cs, width = ch.mask.shape[1:]
        return torch.arange(width, device=ch.mask.device).expand(cs, width)


class CategoryCrossEntropy(Objective):
    """Mean over sessions of -sum_c q_c log p_c (observed q, simulated p) for per-video category `codes` [V].

    smoothing=None: p clipped to [eps, 1] (the notebook). smoothing="dirichlet": p_c = (n_c + alpha pi_c) /
    (K_eff + alpha) with pi = catalog category shares (prior="catalog") or uniform (prior="uniform").
    """

    def __init__(self, ranker: Ranker, observed, codes, eps: float = 1e-8, smoothing: str | None = None,
                 alpha: float = 1.0, prior: str = "catalog", name: str | None = None):
        super().__init__(ranker, observed)
        codes = np.asarray(codes)
        if codes.shape != (ranker.n_videos,):
            raise ValueError(f"codes must have one entry per video ({ranker.n_videos}), got {codes.shape}")
        self.categories, dense = np.unique(codes, return_inverse=True)
        C = len(self.categories)
        self.n_categories = C
        self.codes = torch.from_numpy(np.append(dense, C).astype(np.int64))  # index -1 (padding) -> C
        if smoothing not in (None, "dirichlet"):
            raise ValueError(f"smoothing must be None or 'dirichlet', got {smoothing!r}")
        self.eps, self.smoothing, self.alpha = eps, smoothing, float(alpha)
        if prior == "catalog":
            pi = np.bincount(dense, minlength=C) / len(dense)
        elif prior == "uniform":
            pi = np.full(C, 1.0 / C)
        else:
            raise ValueError(f"prior must be 'catalog' or 'uniform', got {prior!r}")
        self.prior = torch.from_numpy(pi)
        self.name = name or ("cat_ce" if smoothing is None else f"cat_ce_dirichlet{alpha:g}")
        self._codes_dev = self.codes.to(self.device)
        self._prior_dev = self.prior.to(self.device)

    def _prepare(self, rows):
        """Observed (local session, category, q) triples of a chunk's sessions."""
        r_list, c_list, q_list = [], [], []
        codes = self.codes.numpy()
        for r, s in enumerate(rows):
            vids = self.obs_ids[self.obs_indptr[s]:self.obs_indptr[s + 1]]
            if len(vids) == 0:
                continue
            cats, cnt = np.unique(codes[vids], return_counts=True)
            r_list.append(np.full(len(cats), r))
            c_list.append(cats)
            q_list.append(cnt / len(vids))
        if not r_list:
            return torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.float64)
        return (torch.from_numpy(np.concatenate(r_list).astype(np.int64)),
                torch.from_numpy(np.concatenate(c_list).astype(np.int64)),
                torch.from_numpy(np.concatenate(q_list).astype(np.float64)))

    def _mask_data(self, ch: MaskChunk):
        """Per chunk (cached): observed pairs (r, c, q) on the device and, for every slot, the number of the
        pair (its session, its video's category), or P (the pair count) when that category is unobserved."""
        if ch.index not in self._mask_cache:
            r, c, q = self._prepare(ch.rows)
            P = len(r)
            C1 = self.n_categories + 1
            vid = self._slot_videos(ch).cpu()
            cs, width = vid.shape
            cat = self.codes[torch.where(vid < 0, torch.full_like(vid, len(self.codes) - 1), vid)]
            slot_key = (torch.arange(cs)[:, None] * C1 + cat).reshape(-1)
            pair_key = r * C1 + c                                      # ascending (r, then c)
            pos = torch.searchsorted(pair_key, slot_key).clamp(max=max(P - 1, 0))
            hit = (pair_key[pos] == slot_key) if P else torch.zeros_like(slot_key, dtype=torch.bool)
            slot_pair = torch.where(hit, pos, torch.full_like(pos, P)).to(torch.int32)
            dev = self.device
            self._mask_cache[ch.index] = (r.to(dev), c.to(dev), q.to(dev), slot_pair.to(dev))
        return self._mask_cache[ch.index]

    def _mask_loss(self, ch: MaskChunk):
        r, c, q, slot_pair = self._mask_data(ch)
        B, cs, width = ch.mask.shape
        out = torch.zeros((B, cs), dtype=torch.float64, device=ch.mask.device)
        P = len(r)
        if P == 0:
            return out
        if ch.mask.device.type == "cpu" and ranking.NUMPY_ON_CPU:  # numpy's boolean indexing: ~5x faster here
            mask, sp = ch.mask.numpy().reshape(B, cs * width), slot_pair.numpy()
            if B == 1:
                key = sp[mask[0]].astype(np.int64)
            else:
                b_idx, slot = np.nonzero(mask)
                key = b_idx * (P + 1) + sp[slot]
            n = np.bincount(key, minlength=B * (P + 1)).reshape(B, P + 1)[:, :P]
            n = torch.from_numpy(n.astype(np.float64))
        else:
            nz = ch.mask.view(B, cs * width).nonzero()                 # [M, 2]: (b, slot)
            key = nz[:, 0] * (P + 1) + slot_pair[nz[:, 1]].long()
            n = torch.bincount(key, minlength=B * (P + 1)).view(B, P + 1)[:, :P].to(torch.float64)
        k_eff = ch.k_eff.to(torch.float64)[r]
        if self.smoothing is None:
            p = (n / k_eff.clamp(min=1)).clamp(self.eps, 1.0)
        else:
            p = (n + self.alpha * self._prior_dev[c]) / (k_eff + self.alpha)
        return out.index_add_(1, r, -q * torch.log(p))

    def _chunk_loss(self, ch):
        r, c, q = self._chunk_data(ch)
        B, cs, kc = ch.ids.shape
        C1 = self.n_categories + 1
        dev = ch.ids.device
        k_eff = ch.k_eff.to(torch.float64)
        out = torch.zeros((B, cs), dtype=torch.float64, device=dev)
        if len(r) == 0 or kc == 0:
            return out
        r, c, q = r.to(dev), c.to(dev), q.to(dev)
        cats = self._codes_dev[ch.ids]                              # [B, cs, kc], padding -> C
        step = max(1, (1 << 22) // max(cs * C1, 1))
        for b0 in range(0, B, step):
            cb = cats[b0 : b0 + step]
            nb = len(cb)
            base = (torch.arange(nb * cs, device=dev) * C1).view(nb, cs, 1)
            counts = torch.bincount((cb + base).reshape(-1), minlength=nb * cs * C1).view(nb, cs, C1)
            n = counts[:, r, c].to(torch.float64)                   # [nb, pairs]
            if self.smoothing is None:
                p = (n / k_eff[r].clamp(min=1)).clamp(self.eps, 1.0)
            else:
                p = (n + self.alpha * self._prior_dev[c]) / (k_eff[r] + self.alpha)
            out[b0 : b0 + nb].index_add_(1, r, -q * torch.log(p))
        return out


class EmbeddingL2(Objective):
    """Mean over sessions of ||mean emb(watched) - mean emb(top-K_eff)||^2 for video embeddings `emb` [V, d]."""

    def __init__(self, ranker: Ranker, observed, emb, name: str = "emb_l2"):
        super().__init__(ranker, observed)
        emb = np.asarray(emb, dtype=np.float64)
        if emb.ndim != 2 or emb.shape[0] != ranker.n_videos:
            raise ValueError(f"emb must be [V={ranker.n_videos}, d], got {emb.shape}")
        if not np.isfinite(emb).all():
            raise ValueError("emb must be finite")
        # fixed point: multiples of 2**-q small enough that any sum of up to max K rows is exact in float64,
        # so the simulated mean does not depend on the order of a top-K list (nor on the batch)
        top = max(float(np.abs(emb).max()), 1e-300) * max(int(ranker.k_eff.max(initial=1)), 1)
        q = min(60, 52 - int(np.ceil(np.log2(top))) - 1)
        emb = np.round(emb * 2.0**q) / 2.0**q
        self.emb = torch.from_numpy(np.vstack([emb, np.zeros((1, emb.shape[1]))]))  # row V: padding
        self.name = name
        self._emb_dev = self.emb.to(self.device)

    def _prepare(self, rows):
        e = self.emb.numpy()
        mu = np.zeros((len(rows), e.shape[1]))
        for r, s in enumerate(rows):
            vids = self.obs_ids[self.obs_indptr[s]:self.obs_indptr[s + 1]]
            if len(vids):
                mu[r] = e[vids].mean(0)
        return torch.from_numpy(mu)

    def _chunk_loss(self, ch):
        mu_obs = self._chunk_data(ch).to(ch.ids.device)             # [cs, d]
        B, cs, kc = ch.ids.shape
        if kc == 0:
            return torch.zeros((B, cs), dtype=torch.float64, device=ch.ids.device)
        V = self.emb.shape[0] - 1
        ids = torch.where(ch.ids < 0, torch.full_like(ch.ids, V), ch.ids).view(B * cs, kc)
        summed = F.embedding_bag(ids, self._emb_dev, mode="sum").view(B, cs, -1)
        mu_sim = summed / ch.k_eff.clamp(min=1).to(torch.float64)[None, :, None]
        return ((mu_obs[None] - mu_sim) ** 2).sum(-1)

    def _mask_loss(self, ch: MaskChunk):
        if ch.index not in self._mask_cache:
            self._mask_cache[ch.index] = self._chunk_data(ch).to(self.device)
        mu_obs = self._mask_cache[ch.index]                         # [cs, d]
        B, cs, width = ch.mask.shape
        nz = ch.mask.view(B * cs, width).nonzero()                  # (row, slot), row-major: bags in order
        vid = self._slot_videos(ch)[nz[:, 0] % cs, nz[:, 1]]
        counts = torch.bincount(nz[:, 0], minlength=B * cs)
        offsets = torch.cumsum(counts, 0) - counts
        summed = F.embedding_bag(vid, self._emb_dev, offsets, mode="sum").view(B, cs, -1)
        mu_sim = summed / ch.k_eff.clamp(min=1).to(torch.float64)[None, :, None]
        return ((mu_obs[None] - mu_sim) ** 2).sum(-1)
