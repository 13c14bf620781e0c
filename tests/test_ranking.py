"""Batched top-K against a brute-force full sort (stable: score desc, video id asc), with ties and exclusions."""
import numpy as np
import pytest

from estimation.ranking import Ranker


def brute_topk(probs, k, W, seen=None, cand=None):
    """Per (weight, session): exact integer scores (p in units of 2**-24, w/sum|w| in units of 2**-25), full
    lexsort (score desc, id asc), first K_eff allowed videos."""
    S, V, _ = probs.shape
    p = np.rint(probs.astype(np.float64) * 2**24).astype(np.int64)
    out = []
    W = np.asarray(W, dtype=np.float64)
    for w in np.rint(W / np.abs(W).sum(1, keepdims=True) * 2**25).astype(np.int64):
        rows = []
        for s in range(S):
            sc = p[s] @ w
            allowed = np.ones(V, bool)
            if seen is not None:
                allowed[seen[1][seen[0][s]:seen[0][s + 1]]] = False
            if cand is not None:
                allowed[:] = False
                allowed[cand[1][cand[0][s]:cand[0][s + 1]]] = True
            ids = np.arange(V)[allowed]
            order = np.lexsort((ids, -sc[allowed]))
            rows.append(ids[order[: min(k[s], allowed.sum())]])
        out.append(rows)
    return out


def random_case(rng, S=13, V=40, levels=4, dtype=np.float16):
    probs = (rng.integers(0, levels + 1, size=(S, V, 4)) / levels).astype(dtype)  # coarse values: many ties
    probs[:, 5] = probs[:, 3]  # identical rows
    k = rng.integers(0, 12, size=S)
    k[0] = V + 3  # K larger than the candidate count
    n_seen = rng.integers(0, 8, size=S)
    indptr = np.concatenate([[0], np.cumsum(n_seen)])
    seen_ids = np.concatenate([rng.choice(V, size=n, replace=False) for n in n_seen])
    return probs, k, (indptr, seen_ids)


def weights(rng, n=12):
    W = rng.normal(size=(n, 4))
    W[0] = [1, 0, 0, 0]
    W[1] = [0, 0, 0, -1]
    W[2] = [0.25, 0.25, 0.25, -0.25]
    W[3] = [0.5, 0.5, 0, 0]
    return W / np.abs(W).sum(1, keepdims=True)


@pytest.mark.parametrize("chunk_elems", [1, 100, 1 << 20])
def test_matches_brute_force_with_ties_and_exclusions(chunk_elems):
    rng = np.random.default_rng(0)
    probs, k, seen = random_case(rng)
    W = weights(rng)
    r = Ranker(probs, k, seen=seen, chunk_elems=chunk_elems)
    top = r.topk(W)
    ref = brute_topk(probs, k, W, seen=seen)
    for b in range(len(W)):
        for s in range(len(k)):
            np.testing.assert_array_equal(top.session(s, b), ref[b][s])


def test_float32_and_no_exclusion_and_batch_consistency():
    rng = np.random.default_rng(1)
    probs = rng.random((9, 50, 4)).astype(np.float32)
    probs[:, 10:20] = probs[:, 0:1]  # a block of identical videos
    k = rng.integers(1, 30, size=9)
    W = weights(rng, 7)
    r = Ranker(probs, k, chunk_elems=120, cache_bytes=0)  # uncached: reads per chunk
    top = r.topk(W)
    ref = brute_topk(probs, k, W)
    for b in range(len(W)):
        single = r.topk(W[b : b + 1])
        for s in range(len(k)):
            np.testing.assert_array_equal(top.session(s, b), ref[b][s])
            np.testing.assert_array_equal(single.session(s, 0), ref[b][s])


def test_candidates_mode_matches_restricted_brute_force():
    rng = np.random.default_rng(2)
    probs, k, _ = random_case(rng, S=8, V=30)
    lists = [np.sort(rng.choice(30, size=rng.integers(0, 30), replace=False)) for _ in range(8)]
    cand = (np.concatenate([[0], np.cumsum([len(x) for x in lists])]), np.concatenate(lists))
    W = weights(rng, 6)
    top = Ranker(probs, k, candidates=cand, chunk_elems=64).topk(W)
    ref = brute_topk(probs, k, W, cand=cand)
    for b in range(len(W)):
        for s in range(8):
            np.testing.assert_array_equal(top.session(s, b), ref[b][s])


def test_memmap_input_and_validation(tmp_path):
    rng = np.random.default_rng(3)
    probs, k, seen = random_case(rng, S=5, V=20)
    mm = np.lib.format.open_memmap(tmp_path / "p.npy", mode="w+", dtype=probs.dtype, shape=probs.shape)
    mm[:] = probs
    mm.flush()
    mm = np.load(tmp_path / "p.npy", mmap_mode="r")
    W = weights(rng, 5)
    a = Ranker(mm, k, seen=seen, cache_bytes=0).topk(W)
    b = Ranker(probs, k, seen=seen).topk(W)
    np.testing.assert_array_equal(a.ids, b.ids)
    bad = probs.astype(np.float32)
    bad[1, 2, 3] = np.nan
    with pytest.raises(ValueError):
        Ranker(bad, k)
    with pytest.raises(ValueError):
        Ranker(probs, k).topk(np.array([[np.inf, 0, 0, 0]]))


# ---- exact candidate pruning (K-skyband) ----

def brute_skyband(probs, k, seen):
    """Per session: candidates beaten (weakly dominated and lower id, or strictly dominated in all four
    benefit coordinates) by fewer than K other candidates."""
    S, V, _ = probs.shape
    out = []
    for s in range(S):
        b = np.rint(probs[s].astype(np.float64) * 2**24)
        b[:, 3] *= -1
        allowed = np.ones(V, bool)
        allowed[seen[1][seen[0][s]:seen[0][s + 1]]] = False
        ids = np.arange(V)[allowed]
        bb = b[allowed]
        ge = (bb[None, :, :] >= bb[:, None, :]).all(-1)   # [v, u]: u >= v
        gt = (bb[None, :, :] > bb[:, None, :]).all(-1)
        beats = ge & ((ids[None, :] < ids[:, None]) | gt)
        out.append(ids[beats.sum(1) < k[s]])
    return out


def test_skyband_matches_brute_force_and_keeps_every_top_k():
    from estimation.pruning import skyband
    from estimation.search_space import get_space
    rng = np.random.default_rng(5)
    probs, k, seen = random_case(rng, S=10, V=60, levels=6)
    probs[:, 20:25] = probs[:, 7:8]  # identical videos
    probs[:, 30, :] = probs[:, 31, :]
    probs[:, 30, 0] = min(1.0, float(probs[0, 31, 0]) + 1 / 6)  # weakly better in one coordinate, higher id
    k = np.maximum(k, 1)
    cand = skyband(probs, k, seen=seen, work_elems=5000)
    ref = brute_skyband(probs, k, seen)
    for s in range(len(k)):
        np.testing.assert_array_equal(cand.values[cand.indptr[s]:cand.indptr[s + 1]], ref[s])
    assert cand.lengths().sum() < sum(60 - np.diff(seen[0]))  # something was pruned
    sp = get_space("constrained")
    W = np.vstack([sp.grid(6), sp.to_w(rng.normal(size=(300, 3))), sp.to_w(rng.random((50, 3)) * [1, 0, 1])])
    full = Ranker(probs, k, seen=seen).topk(W)
    pruned = Ranker(probs, k, candidates=cand, chunk_elems=300).topk(W)
    np.testing.assert_array_equal(pruned.indptr, full.indptr)
    np.testing.assert_array_equal(pruned.ids, full.ids)
    with pytest.raises(ValueError):
        Ranker(probs, k, candidates=cand).topk(np.array([[0.5, 0.0, 0.0, 0.5]]))  # positive w_neg: not exact


def test_skyband_continuous_probs_float32():
    from estimation.pruning import skyband
    from estimation.search_space import get_space
    rng = np.random.default_rng(6)
    S, V = 6, 120
    probs = rng.random((S, V, 4)).astype(np.float32)
    k = rng.integers(3, 12, size=S)
    cand = skyband(probs, k)
    none = (np.zeros(S + 1, dtype=np.int64), np.zeros(0, dtype=np.int64))
    ref = brute_skyband(probs, k, none)
    for s in range(S):
        np.testing.assert_array_equal(cand.values[cand.indptr[s]:cand.indptr[s + 1]], ref[s])
    W = get_space("constrained").to_w(rng.normal(size=(200, 3)))
    np.testing.assert_array_equal(Ranker(probs, k, candidates=cand).topk(W).ids, Ranker(probs, k).topk(W).ids)
