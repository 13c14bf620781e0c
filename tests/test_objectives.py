"""Objectives against hand-computed values and against a notebook-style (per-session, pandas) reference."""
import numpy as np
import pandas as pd
import pytest

from estimation.objectives import CategoryCrossEntropy, EmbeddingL2
from estimation.ranking import Ranker

LN_EPS = np.log(1e-8)


def tiny():
    """2 sessions, 5 videos, 3 categories (10, 20, 30); session 1 excludes video 4."""
    probs = np.zeros((2, 5, 4), dtype=np.float32)
    probs[0, :, 0] = [0.9, 0.1, 0.8, 0.3, 0.2]
    probs[1, :, 0] = [0.1, 0.2, 0.3, 0.4, 0.5]
    k = np.array([2, 3])
    seen = (np.array([0, 0, 1]), np.array([4]))
    observed = (np.array([0, 2, 5]), np.array([0, 3, 1, 1, 2]))
    codes = np.array([10, 10, 20, 30, 20])
    emb = np.array([[1, 0], [0, 1], [1, 1], [2, 0], [0, 2]], dtype=float)
    return Ranker(probs, k, seen=seen), observed, codes, emb


def test_category_ce_by_hand():
    ranker, observed, codes, _ = tiny()
    ce = CategoryCrossEntropy(ranker, observed, codes)
    # w = complete only: s0 top2 = {0, 2} -> p = (.5, .5, 0) vs q = (.5, 0, .5); s1 top3 = {3, 2, 1} -> p = 1/3 each
    s0 = -(0.5 * np.log(0.5) + 0.5 * LN_EPS)
    s1 = np.log(3.0)
    # w = -neg only: all scores 0, lowest ids win: s0 {0, 1} -> p = (1, 0, 0); s1 {0, 1, 2} -> p = q
    t0 = -0.5 * LN_EPS
    t1 = -(2 / 3 * np.log(2 / 3) + 1 / 3 * np.log(1 / 3))
    got = ce(np.array([[1.0, 0, 0, 0], [0, 0, 0, -1.0], [np.nan, 0, 0, 0]]))
    np.testing.assert_allclose(got[:2], [(s0 + s1) / 2, (t0 + t1) / 2], rtol=1e-12)
    assert got[2] == np.inf
    np.testing.assert_allclose(ce.per_session([[1.0, 0, 0, 0]])[0], [s0, s1], rtol=1e-12)


def test_category_ce_dirichlet_by_hand():
    ranker, observed, codes, _ = tiny()
    pi = {10: 0.4, 20: 0.4, 30: 0.2}  # catalog shares
    ce = CategoryCrossEntropy(ranker, observed, codes, smoothing="dirichlet", alpha=1.0)
    s0 = -(0.5 * np.log((1 + pi[10]) / 3) + 0.5 * np.log((0 + pi[30]) / 3))
    s1 = -(2 / 3 * np.log((1 + pi[10]) / 4) + 1 / 3 * np.log((1 + pi[20]) / 4))
    np.testing.assert_allclose(ce([[1.0, 0, 0, 0]]), [(s0 + s1) / 2], rtol=1e-12)
    uni = CategoryCrossEntropy(ranker, observed, codes, smoothing="dirichlet", alpha=2.0, prior="uniform")
    u0 = -(0.5 * np.log((1 + 2 / 3) / 4) + 0.5 * np.log((2 / 3) / 4))
    u1 = -(2 / 3 * np.log((1 + 2 / 3) / 5) + 1 / 3 * np.log((1 + 2 / 3) / 5))
    np.testing.assert_allclose(uni([[1.0, 0, 0, 0]]), [(u0 + u1) / 2], rtol=1e-12)


def test_embedding_l2_by_hand():
    ranker, observed, _, emb = tiny()
    obj = EmbeddingL2(ranker, observed, emb)
    # s0: obs mean (1.5, 0), sim (e0 + e2)/2 = (1, .5) -> .5; s1: obs (1/3, 1), sim (e3+e2+e1)/3 = (1, 2/3) -> 5/9
    np.testing.assert_allclose(obj([[1.0, 0, 0, 0], [np.inf, 0, 0, 0]]), [(0.5 + 5 / 9) / 2, np.inf], rtol=1e-12)


# ---- notebook-style reference (per-session loop, pandas), adapted from the prototype ----

def nb_recommend(weights, heads, sess_len_map):
    w = np.asarray(weights, dtype=float)
    recs = {}
    for key, d in heads.items():
        scores = d["probs"] @ w
        K_eff = min(int(sess_len_map.loc[key]), scores.shape[0])
        top = np.argpartition(-scores, K_eff - 1)[:K_eff]
        recs[key] = d["video_ids"][top[np.argsort(-scores[top])]]
    return recs


def nb_cat_ce(recs, item_feats, obs_cat_df, eps=1e-8):
    all_cats = obs_cat_df.columns
    pos = {c: i for i, c in enumerate(all_cats)}
    rows, idx = [], []
    for key, vids in recs.items():
        cats = item_feats.loc[vids, "cat"].to_numpy()
        counts = np.bincount([pos[c] for c in cats], minlength=len(all_cats)).astype(float)
        rows.append(counts / counts.sum())
        idx.append(key)
    sim = pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(idx), columns=all_cats)
    obs, sim = obs_cat_df.align(sim, join="inner", axis=0)
    return float((-(obs.to_numpy() * np.log(np.clip(sim.to_numpy(), eps, 1.0))).sum(1)).mean())


def nb_emb(recs, emb, obs_emb):
    return float(np.mean([np.sum((obs_emb[key] - emb[v].mean(0)) ** 2) for key, v in recs.items()]))


def test_against_notebook_reference():
    rng = np.random.default_rng(0)
    S, V = 12, 60
    probs = rng.random((S, V, 4)).astype(np.float32)  # continuous: no ties, where the notebook is arbitrary
    k = rng.integers(5, 15, size=S)
    codes = rng.choice([-124, 1, 2, 3, 5, 8], size=V)
    emb = rng.normal(size=(V, 8))
    seen_lists = [rng.choice(V, size=rng.integers(0, 10), replace=False) for _ in range(S)]
    obs_lists = [rng.choice(V, size=k[s]) for s in range(S)]
    seen = (np.concatenate([[0], np.cumsum([len(x) for x in seen_lists])]), np.concatenate(seen_lists))
    observed = (np.concatenate([[0], np.cumsum(k)]), np.concatenate(obs_lists))

    keys = [(100 + s, 1) for s in range(S)]
    heads = {}
    for s, key in enumerate(keys):
        cand = np.setdiff1d(np.arange(V), seen_lists[s])
        heads[key] = {"video_ids": cand, "probs": probs[s, cand].astype(np.float64)}
    sess_len_map = pd.Series(k, index=pd.MultiIndex.from_tuples(keys))
    item_feats = pd.DataFrame({"cat": codes})
    long = pd.DataFrame([(key, codes[v]) for key, vids in zip(keys, obs_lists) for v in vids], columns=["key", "cat"])
    cnt = long.groupby(["key", "cat"]).size().rename("n").reset_index()
    cnt["p"] = cnt["n"] / cnt["key"].map(dict(zip(keys, k)))
    obs_cat = cnt.pivot_table(index="key", columns="cat", values="p", fill_value=0.0)
    obs_cat.index = pd.MultiIndex.from_tuples(obs_cat.index)
    obs_cat = obs_cat.reindex(columns=np.sort(np.unique(codes)), fill_value=0.0)
    obs_emb = {key: emb[v].mean(0) for key, v in zip(keys, obs_lists)}

    ranker = Ranker(probs, k, seen=seen, chunk_elems=200)
    ce = CategoryCrossEntropy(ranker, observed, codes)
    el2 = EmbeddingL2(ranker, observed, emb)
    W = rng.normal(size=(6, 4))
    W /= np.abs(W).sum(1, keepdims=True)
    got_ce, got_emb = ce(W), el2(W)
    for b, w in enumerate(W):
        recs = nb_recommend(w, heads, sess_len_map)
        assert got_ce[b] == pytest.approx(nb_cat_ce(recs, item_feats, obs_cat), rel=1e-12)
        assert got_emb[b] == pytest.approx(nb_emb(recs, emb, obs_emb), rel=1e-10)
        assert ce(W[b : b + 1])[0] == got_ce[b]  # batch-independent, bit for bit
        assert el2(W[b : b + 1])[0] == got_emb[b]


def test_level_codes_and_unused_sessions():
    ranker, observed, codes, emb = tiny()
    # a session without observed videos is left out of the mean
    obs = (np.array([0, 2, 2]), np.array([0, 3]))
    ce = CategoryCrossEntropy(ranker, obs, codes)
    s0 = -(0.5 * np.log(0.5) + 0.5 * LN_EPS)
    np.testing.assert_allclose(ce([[1.0, 0, 0, 0]]), [s0])
    assert np.isnan(ce.per_session([[1.0, 0, 0, 0]])[0, 1])
    # level-3-like codes: every video its own category
    fine = CategoryCrossEntropy(ranker, observed, np.arange(5) * 7)
    f1 = -(2 / 3 * np.log(1 / 3) + 1 / 3 * np.log(1 / 3))  # s1 obs {1:2/3, 2:1/3}; sim {3,2,1} 1/3 each
    np.testing.assert_allclose(fine([[1.0, 0, 0, 0]]), [(s0 + f1) / 2])  # s0: obs {0, 3}, sim {0, 2}, as level 1
