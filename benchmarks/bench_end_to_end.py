"""End-to-end run time of the default job, and time + peak memory of a KuaiRec-size estimation.

default: `python experiments/run_estimation.py` with every default (embedded small planted world, GNN trained if
  none, cat_ce + emb_l2, Nelder-Mead, bootstrap, landscapes) in a child process on a fresh --root (so it includes
  world generation, dataset preparation and GNN training), then a second run on the same root (GNN, heads and
  skyband reused from their caches). Wall time, peak RSS of the child, and the job's own stage timings.
kuairec: the estimation stage at KuaiRec size in a child process: synthetic heads [66,423 x 10,728 x 4] float16
  memmap (benchmarks/synth.py; a full GNN training at this size needs a GPU, see docs/STATUS-model.md), cached
  K-skyband, Ranker, cat_ce + emb_l2 (random 64-d video embeddings), then `estimation.runner.estimate` with the
  default EstimationConfig (Nelder-Mead 300 evaluations, bootstrap 200, landscapes) logging to MLflow in a
  temporary root. Peak RSS (goal <= 16 GB) and time per stage. Head prediction's own peak is reported by
  bench_heads.py --full.

Usage: python benchmarks/bench_end_to_end.py [default|kuairec|both] [--max-evals N] [--sessions N]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))


def _peak_children_gb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 ** 2


def run_default(extra: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        for label in ("first run (fresh root)", "second run (caches)"):
            t = time.perf_counter()
            proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "run_estimation.py"), "--root", tmp,
                                   *extra], capture_output=True, text=True, cwd=ROOT)
            wall = time.perf_counter() - t
            lines = [ln for ln in proc.stdout.splitlines() if "time" in ln.lower() or "data " in ln or "GNN" in ln]
            print(f"default job, {label}: exit {proc.returncode}, {wall / 60:.1f} min wall, peak RSS of children so "
                  f"far {_peak_children_gb():.2f} GB", flush=True)
            for ln in lines[:6]:
                print("   ", ln.strip(), flush=True)
            if proc.returncode != 0:
                print(proc.stderr[-3000:], flush=True)
                return


def kuairec_child(args) -> dict:
    """Runs in the child: the estimation stage at KuaiRec size; returns timings and peak RSS."""
    import types

    import numpy as np
    import torch

    torch.set_num_threads(1)
    from synth import synth_heads

    from estimation.objectives import CategoryCrossEntropy, EmbeddingL2
    from estimation.pruning import cached_skyband
    from estimation.ranking import Ranker
    from estimation.runner import EstimationConfig, Inputs, estimate
    from estimation.tracking import setup_mlflow
    from estimation.uncertainty import RecordingObjective
    import mlflow

    timings = {}
    t = time.perf_counter()
    d = synth_heads(args.sessions)
    S, V = d.probs.shape[:2]
    cand = cached_skyband(d.probs, d.k, cache_path=d.path.with_name(d.path.stem + "-skyband.npz"),
                          workers=args.workers)
    timings["inputs_and_skyband_s"] = time.perf_counter() - t
    t = time.perf_counter()
    ranker = Ranker(d.probs, d.k, candidates=cand)
    obs = (d.obs_indptr, d.obs_ids)
    emb = np.random.default_rng(0).normal(size=(V, 64))
    objectives = {"cat_ce": RecordingObjective(CategoryCrossEntropy(ranker, obs, d.codes)),
                  "emb_l2": RecordingObjective(EmbeddingL2(ranker, obs, emb))}
    timings["ranker_s"] = time.perf_counter() - t
    dataset = types.SimpleNamespace(dataset_id=f"synth-kuairec-{S}", n_videos=V, manifest={})
    users = (np.arange(S) // 9).astype(np.int64)           # ~9 sessions per user, as in KuaiRec's test split
    inputs = Inputs(d.path.parent, dataset, np.arange(S), users, objectives, None, False, "synthetic", None, timings)
    with tempfile.TemporaryDirectory(prefix="bench-kuairec-est-") as root:
        cfg = EstimationConfig(root=root, max_evals=args.max_evals)
        uri = setup_mlflow(root)
        t = time.perf_counter()
        summary = estimate(cfg, inputs, mlflow.MlflowClient(uri), uri)
        timings["estimate_s"] = time.perf_counter() - t
    res = [{"objective": r.objective, "optimizer": r.optimizer, "n_evals": r.n_evals, "seconds": r.seconds,
            "loss": r.loss, "w": [float(x) for x in r.w]} for r in summary["results"]]
    evals = {k: int(o.n_computed) for k, o in objectives.items()}
    return {"timings": timings, "results": res, "evaluations": evals,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2,
            "candidates_per_session": float(cand.lengths().mean())}


def run_kuairec(args) -> None:
    t = time.perf_counter()
    cmd = [sys.executable, __file__, "_child", "--sessions", str(args.sessions), "--max-evals", str(args.max_evals),
           "--workers", str(args.workers)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        print(f"kuairec-size estimation failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}", flush=True)
        return
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"kuairec-size estimation ({args.sessions} sessions, {out['candidates_per_session']:.0f} candidates/session, "
          f"default config, max_evals {args.max_evals}): {wall / 60:.1f} min wall; peak RSS {out['peak_rss_gb']:.2f} GB "
          f"(goal <= 16 GB); stages {json.dumps({k: round(v, 1) for k, v in out['timings'].items()})}; objective "
          f"evaluations incl. bootstrap + landscapes {out['evaluations']}", flush=True)
    for r in out["results"]:
        print(f"    {r['objective']} / {r['optimizer']}: {r['n_evals']} evals in {r['seconds']:.0f} s, loss "
              f"{r['loss']:.5f}, w {[round(x, 3) for x in r['w']]}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="?", default="both", choices=["default", "kuairec", "both", "_child"])
    ap.add_argument("--sessions", type=int, default=66_423)
    ap.add_argument("--max-evals", type=int, default=300)
    ap.add_argument("--workers", type=int, default=2, help="processes for the skyband if not cached")
    ap.add_argument("--default-args", default="", help="extra CLI flags for the default job (quoted)")
    args = ap.parse_args(argv)
    if args.what == "_child":
        print(json.dumps(kuairec_child(args)), flush=True)
        return 0
    if args.what in ("default", "both"):
        run_default(args.default_args.split())
    if args.what in ("kuairec", "both"):
        run_kuairec(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
