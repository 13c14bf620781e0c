"""One objective evaluation on KuaiRec-size head predictions: notebook style against ours, one process, same inputs.

Inputs (benchmarks/synth.py): correlated synthetic heads [66,423 sessions, 10,728 videos, 4] float16 memory-mapped
(5.7 GB, like the heads cache), K >= 5 (mean ~20), observed videos, level-1 categories. No seen-video exclusion
(the notebook has none).

Notebook style (seed notebook, "recommend_for_all_sessions" + "cat_distribution_from_recs" +
"cat_cross_entropy_loss"): a dict of per-session float32 arrays, a per-session loop with p @ w, numpy argpartition
and argsort, a sess_len lookup in a MultiIndex Series, a pandas category lookup per session, a DataFrame of
category distributions, then the aligned cross-entropy. It is timed on --nb-sessions sessions and scaled linearly
to all sessions (it is a per-session loop; said so in the output); a batch of B weight vectors costs B times one.

Ours: exact K-skyband candidates (computed once, cached on disk beside the heads; --workers processes), a Ranker
on them and CategoryCrossEntropy (top-K sets as masks), all sessions, for one weight vector and for a batch of 64.
Reported next to the memory-bandwidth bound: the bytes the evaluation must read (prepared candidate data,
float64 x 4 per slot) over a streaming-read bandwidth measured in the same process.

Usage: python benchmarks/bench_objective.py [--sessions 66423] [--nb-sessions 2000] [--workers 2]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synth import KUAIREC_SESSIONS, KUAIREC_VIDEOS, synth_heads  # noqa: E402


class NotebookObjective:
    """The notebook's objective on the same inputs (float32 per-session dict, as its precomputed heads)."""

    def __init__(self, probs, k, obs_indptr, obs_ids, codes, sessions):
        V = probs.shape[1]
        self.keys = [(int(s) // 9, int(s) % 9) for s in sessions]     # (user_id, session)
        self.heads = {key: {"video_ids": np.arange(V), "probs": np.asarray(probs[s], dtype=np.float32)}
                      for key, s in zip(self.keys, sessions)}
        idx = pd.MultiIndex.from_tuples(self.keys, names=["user_id", "session"])
        self.sess_len_map = pd.Series(k[sessions], index=idx)
        self.item_feats = pd.DataFrame({"i_cat_level1_id": codes}, index=pd.RangeIndex(V, name="video_id"))
        self.all_cats = np.sort(np.unique(codes))
        rows = []
        for s in sessions:
            c = codes[obs_ids[obs_indptr[s]:obs_indptr[s + 1]]]
            cnt = np.array([(c == a).sum() for a in self.all_cats], dtype=float)
            rows.append(cnt / cnt.sum())
        self.obs = pd.DataFrame(rows, index=idx, columns=self.all_cats)

    def recommend(self, weights):
        w = np.asarray(weights, dtype=float).reshape(-1)
        recs = {}
        for (user_id, sess), data in self.heads.items():
            vids, probs = data["video_ids"], data["probs"]
            scores = probs @ w
            K = int(self.sess_len_map.loc[(user_id, sess)])
            K_eff = min(K, scores.shape[0])
            top_idx = np.argpartition(-scores, K_eff - 1)[:K_eff]
            top_idx = top_idx[np.argsort(-scores[top_idx])]
            recs[(user_id, sess)] = {"video_ids": vids[top_idx], "scores": scores[top_idx]}
        return recs

    def cat_distribution(self, recs, level_col="i_cat_level1_id"):
        all_cats = self.all_cats
        cat_to_pos = {c: i for i, c in enumerate(all_cats)}
        rows, idx = [], []
        for (user_id, sess), d in recs.items():
            cats = self.item_feats.loc[d["video_ids"], level_col].to_numpy()
            cats = cats[~pd.isna(cats)]
            cat_pos = np.fromiter((cat_to_pos[c] for c in cats), dtype=np.int64, count=len(cats))
            counts = np.bincount(cat_pos, minlength=len(all_cats)).astype(float)
            rows.append(counts / counts.sum() if counts.sum() > 0 else np.zeros(len(all_cats)))
            idx.append((user_id, sess))
        return pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(idx, names=["user_id", "session"]),
                            columns=all_cats)

    def __call__(self, weights, eps=1e-8):
        sim = self.cat_distribution(self.recommend(weights))
        obs, sim = self.obs.align(sim, join="inner", axis=0)
        sim = sim[obs.columns]
        P = np.clip(sim.to_numpy(dtype=float), eps, 1.0)
        return float((-(obs.to_numpy(dtype=float) * np.log(P)).sum(axis=1)).mean())


def read_bandwidth(n_bytes: int = 1 << 28) -> float:
    """GB/s of a streaming float64 sum over n_bytes (the scan's bound, measured now)."""
    a = np.ones(n_bytes // 8)
    a.sum()
    t = time.perf_counter()
    for _ in range(3):
        a.sum()
    return 3 * n_bytes / (time.perf_counter() - t) / 1e9


def timed(f, reps: int):
    f()
    t, c = time.perf_counter(), time.process_time()
    for _ in range(reps):
        out = f()
    return (time.perf_counter() - t) / reps, (time.process_time() - c) / reps, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=KUAIREC_SESSIONS)
    ap.add_argument("--videos", type=int, default=KUAIREC_VIDEOS)
    ap.add_argument("--nb-sessions", type=int, default=2000, help="sessions timed in notebook style")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes for the skyband")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    ap.add_argument("--root", default=None, help="where synthetic inputs and caches go (default data/bench)")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from estimation.objectives import CategoryCrossEntropy
    from estimation.pruning import cached_skyband
    from estimation.ranking import Ranker

    t = time.perf_counter()
    d = synth_heads(args.sessions, args.videos, root=args.root)
    S, V = d.probs.shape[:2]
    print(f"inputs: {S} sessions x {V} videos float16 memmap ({d.probs.nbytes / 1e9:.2f} GB), K mean "
          f"{d.k.mean():.1f} (min {d.k.min()}) ({time.perf_counter() - t:.0f} s)", flush=True)
    t = time.perf_counter()
    cand = cached_skyband(d.probs, d.k, cache_path=d.path.with_name(d.path.stem + "-skyband.npz"),
                          workers=args.workers)
    print(f"skyband: {cand.lengths().mean():.0f} candidates per session kept of {V} "
          f"({time.perf_counter() - t:.0f} s incl. cache read or computation)", flush=True)
    t = time.perf_counter()
    ranker = Ranker(d.probs, d.k, candidates=cand, device=args.device)
    ce = CategoryCrossEntropy(ranker, (d.obs_indptr, d.obs_ids), d.codes)
    slots = sum(len(c.rows) * c.width for c in ranker._chunks)
    print(f"ranker + objective setup: {time.perf_counter() - t:.1f} s ({ranker.n_chunks} chunks, {slots / 1e6:.1f}M "
          f"slots, device {ranker.device})", flush=True)
    rng = np.random.default_rng(0)
    w1 = np.array([[0.3, 0.3, 0.2, -0.2]])
    WB = np.abs(rng.normal(size=(args.batch, 4)))
    WB[:, 3] *= -1
    WB /= np.abs(WB).sum(1, keepdims=True)
    o1_wall, o1_cpu, _ = timed(lambda: ce(w1), args.reps)
    ob_wall, ob_cpu, _ = timed(lambda: ce(WB), max(1, args.reps // 2))

    n_nb = min(args.nb_sessions, S)
    sessions = np.linspace(0, S - 1, n_nb).astype(np.int64)
    t = time.perf_counter()
    nb = NotebookObjective(d.probs, d.k, d.obs_indptr, d.obs_ids, d.codes, sessions)
    nb_setup = time.perf_counter() - t
    nb_wall, nb_cpu, nb_loss = timed(lambda: nb(w1[0]), 1)
    scale = S / n_nb
    # the same sessions with ours: the two losses agree (up to top-K ties, none with continuous heads)
    ours_sub = np.nanmean(ce.per_session(w1)[0, sessions])
    bw = read_bandwidth()
    bytes_eval = slots * 4 * 8
    print(f"notebook style: {nb_wall:.2f} s wall, {nb_cpu:.2f} s CPU for {n_nb} sessions (setup {nb_setup:.0f} s) "
          f"-> SCALED to {S} sessions: {nb_wall * scale:.1f} s wall, {nb_cpu * scale:.1f} s CPU per weight vector; "
          f"loss on those sessions {nb_loss:.6f} (ours {ours_sub:.6f})", flush=True)
    print(f"ours, B=1: {o1_wall * 1e3:.0f} ms wall, {o1_cpu * 1e3:.0f} ms CPU per evaluation ({S} sessions)", flush=True)
    print(f"ours, B={args.batch}: {ob_wall:.2f} s wall, {ob_cpu:.2f} s CPU per batch = "
          f"{ob_wall / args.batch * 1e3:.1f} ms wall, {ob_cpu / args.batch * 1e3:.1f} ms CPU per weight vector", flush=True)
    print(f"bandwidth bound: {bytes_eval / 1e9:.2f} GB of prepared candidate data per evaluation at {bw:.1f} GB/s "
          f"streaming read now = {bytes_eval / bw / 1e6:.0f} ms (B=1 is at {bytes_eval / bw / 1e9 / o1_wall:.0%} of it)",
          flush=True)
    print(f"RATIO objective B=1 (notebook / ours): {nb_wall * scale / o1_wall:.0f}x wall, "
          f"{nb_cpu * scale / o1_cpu:.0f}x CPU (goal >= 100x)", flush=True)
    print(f"RATIO objective B={args.batch} (notebook x {args.batch} / ours): "
          f"{nb_wall * scale * args.batch / ob_wall:.0f}x wall, {nb_cpu * scale * args.batch / ob_cpu:.0f}x CPU "
          f"(goal >= 100x)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
