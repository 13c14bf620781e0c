"""GPU self-check: the same code on CUDA gives the CPU's results (run by benchmarks/device_check.sh).

1. Head prediction, fp32: CUDA within 1e-5 of CPU; split bf16 on CUDA within 0.01 of fp32 and the same top-K sets
   on >= 99% of sessions.
2. Ranking and objectives: top-K lists on CUDA IDENTICAL to CPU (scores are exact in float64 on any device; ties
   are resolved explicitly), cat_ce / emb_l2 per-session losses equal to 1e-12 (log may differ by an ulp), for
   the full catalog and for pruned candidates.
Exits 1 on any mismatch. Usage: python benchmarks/gpu_selfcheck.py
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synth import random_head_model, synth_feature_dataset, synth_heads  # noqa: E402


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 0
    from estimation.heads import bf16_is_fast, predict_session_heads
    from estimation.objectives import CategoryCrossEntropy, EmbeddingL2
    from estimation.pruning import skyband
    from estimation.ranking import Ranker
    from estimation.search_space import get_space

    print(f"device: {torch.cuda.get_device_name(0)}; bf16 fast: {bf16_is_fast('cuda')}", flush=True)
    ok = True
    t = time.perf_counter()
    S, V = 200, 2000
    ds = synth_feature_dataset(300, V, S, seed=3)
    m = random_head_model(ds, hidden=64, n_edges=20000, seed=3)
    with torch.no_grad():
        for layer in m.gnn.edge_mlp:
            if isinstance(layer, torch.nn.Linear):
                layer.weight.mul_(3.0)
    keys = np.arange(S)
    cpu = predict_session_heads(m, ds, keys, dtype="fp32", device="cpu").probs
    gpu = predict_session_heads(m, ds, keys, dtype="fp32", device="cuda").probs
    bf = predict_session_heads(m, ds, keys, dtype="bf16", device="cuda").probs
    d32, d16 = float(np.abs(gpu - cpu).max()), float(np.abs(bf - cpu).max())
    k = ds.sessions.loc[keys, "sess_len"].to_numpy()
    W = get_space("constrained").to_w(np.random.default_rng(0).normal(size=(16, 3)))
    a, b = Ranker(cpu, k, device="cpu").topk(W), Ranker(bf, k, device="cpu").topk(W)
    agree = min(np.mean([set(a.session(s, i)) == set(b.session(s, i)) for s in range(S)]) for i in range(len(W)))
    print(f"heads: |cuda fp32 - cpu fp32| max {d32:.2e} (<= 1e-5), |cuda split-bf16 - cpu fp32| max {d16:.2e} "
          f"(<= 0.01), top-K sets equal on >= {agree:.1%} of sessions (>= 99%) ({time.perf_counter() - t:.1f} s)",
          flush=True)
    ok &= d32 <= 1e-5 and d16 <= 0.01 and agree >= 0.99

    t = time.perf_counter()
    d = synth_heads(400, 3000, seed=1)
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(3000, 16))
    cand = skyband(d.probs, d.k)
    Wc = get_space("constrained").to_w(rng.normal(size=(70, 3)))
    for name, kw in (("full", {}), ("pruned", {"candidates": cand})):
        rc, rg = Ranker(d.probs, d.k, device="cpu", **kw), Ranker(d.probs, d.k, device="cuda", **kw)
        same_topk = np.array_equal(rc.topk(Wc).ids, rg.topk(Wc).ids)
        obs = (d.obs_indptr, d.obs_ids)
        same = [same_topk]
        for make in (lambda r: CategoryCrossEntropy(r, obs, d.codes), lambda r: EmbeddingL2(r, obs, emb)):
            x, y = make(rc).per_session(Wc), make(rg).per_session(Wc)
            same.append(np.allclose(x, y, rtol=1e-12, atol=0, equal_nan=True))  # log() may differ by an ulp
        print(f"ranking/objectives {name}: top-K identical {same[0]}, cat_ce equal {same[1]}, emb_l2 "
              f"equal {same[2]} (rtol 1e-12)", flush=True)
        ok &= all(same)
    print(f"({time.perf_counter() - t:.1f} s) {'OK' if ok else 'MISMATCH'}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
