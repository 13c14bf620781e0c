"""One GNN training epoch at KuaiRec scale: time and peak memory per stage, and the message-passing ratio.

    python benchmarks/bench_gnn_epoch.py                         # synthetic KuaiRec-size interactions, CPU
    python benchmarks/bench_gnn_epoch.py --max-steps 0           # the full epoch (slow on a small CPU box)
    python benchmarks/bench_gnn_epoch.py --data-dir "/path/to/KuaiRec 2.0" --accelerator gpu

Without --data-dir it builds a ProcessedDataset-shaped table in memory: 7,176 users, 10,728 videos, 12.5 M
interactions (lognormal rows per user, Zipf-like video popularity, 64 float32 features with 5% NaN), split
70/10/20 -- the shapes of the real big matrix. With --max-steps N > 0 it times N training steps and
extrapolates the epoch (printed as such). It also times one GCN layer forward + backward with the
symmetric sparse path (what training uses) against PyG's GCNConv(normalize=True) on the edge_index (the
notebook's path) and prints the ratio.

Measured 2026-12-04 on a 2-core AMD EPYC with AVX512-BF16, idle: the kuairec-size planted world below with
`--max-steps 0 --no-pyg`: ONE FULL EPOCH in 160.4 s, peak RSS 10.63 GB at its end (11.14 GB for the process;
dataset 52.4 s, graph 22.3 s, adjacency 5.1 s).
Measured on session 2's 2-core box (AMD EPYC, AVX2), nearly idle, 2026-12-03:
- the kuairec-size planted world (`python experiments/make_world.py --size kuairec --seed 0 --out /tmp/kw`;
  7,176 x 10,728, 11.76 M interactions, 8.25 M training rows, 16.5 M message-passing edges),
  `--data-dir "/tmp/kw/KuaiRec 2.0" --max-steps 0`: ONE FULL EPOCH (126 steps of batch 65,536) in 299 s,
  peak RSS 10.95 GB up to the end of the epoch (dataset preparation + load 47 s, graph 24 s, adjacency 10 s). The
  PyG-GCNConv comparison that follows peaks the process at 20 GB (PyG materialises per-edge messages);
  `--no-pyg` skips it.
- synthetic in memory, `--max-steps 5`: 407 s per epoch extrapolated, 8.6 GB.
Batch size matters: every step propagates the whole graph (3 sparse layers, ~0.2-0.4 s forward + backward), so
an epoch costs ~steps x 2.4 s; at KuaiRec scale train with `--batch-size 65536` (the default 4,096 suits the
small world and would make an epoch of ~2,000 steps).
"""
from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from datamodules.schema import FEATURE_NAMES, LABEL_COLUMNS  # noqa: E402

warnings.filterwarnings("ignore")


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


class SyntheticDataset:
    def __init__(self, n_users: int, n_videos: int, n_rows: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        per_user = rng.lognormal(0.0, 0.8, n_users)
        per_user = np.maximum(1, np.round(per_user / per_user.sum() * n_rows)).astype(np.int64)
        user = np.repeat(np.arange(n_users, dtype=np.int64), per_user)[:n_rows]
        n = len(user)
        pop = 1.0 / np.arange(1, n_videos + 1) ** 0.8
        video = rng.choice(n_videos, size=n, p=pop / pop.sum()).astype(np.int64)
        split = np.where(rng.random(n) < 0.7, 0, np.where(rng.random(n) < 1 / 3, 1, 2)).astype(np.int8)
        cols: dict[str, np.ndarray] = {"user_id": user, "video_id": video, "split": split}
        for c in LABEL_COLUMNS:
            cols[c] = (rng.random(n) < 0.3).astype(np.int8)
        for c in FEATURE_NAMES:
            x = rng.standard_normal(n, dtype=np.float32)
            x[rng.random(n) < 0.05] = np.nan
            cols[c] = x
        self.interactions = pd.DataFrame(cols, copy=False)
        self.feature_names = list(FEATURE_NAMES)
        self.n_users, self.n_videos = n_users, n_videos
        self.dataset_id = f"synthetic-{n_users}x{n_videos}x{n}"
        self.sessions = pd.DataFrame(columns=["user_id", "split", "sess_len"])


def message_passing_ratio(model, repeats: int = 1) -> tuple[float, float]:
    """Seconds per forward+backward of ONE GCN layer: (symmetric sparse path, PyG GCNConv on edge_index, which
    re-normalizes and materializes per-edge messages every call)."""
    from torch_geometric.nn import GCNConv

    from lightning_modules.gnn import _SymmetricSpmm

    gnn = model.gnn
    adj = model.adjacency()
    ei = model.edge_index
    ref = GCNConv(gnn.hidden_dim, gnn.hidden_dim).to(ei.device)
    ref.load_state_dict(gnn.gcn1.state_dict())
    conv = gnn.gcn1

    def ours():
        return torch.relu(_SymmetricSpmm.apply(adj, conv.lin(gnn.node_emb.weight)) + conv.bias)

    def pyg():
        return torch.relu(ref(gnn.node_emb.weight, ei))

    def timed(f):
        best = float("inf")
        for _ in range(repeats):
            gnn.zero_grad(set_to_none=True)
            t = time.perf_counter()
            f().sum().backward()
            if ei.is_cuda:
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t)
        return best

    return timed(ours), timed(pyg)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=None, help="a KuaiRec 2.0 folder (default: synthetic, in memory)")
    p.add_argument("--users", type=int, default=7176)
    p.add_argument("--videos", type=int, default=10728)
    p.add_argument("--rows", type=int, default=12_530_806)
    p.add_argument("--hidden-dim", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=65536)
    p.add_argument("--max-steps", type=int, default=10, help="0: the whole epoch; N: time N steps, extrapolate")
    p.add_argument("--accelerator", default="cpu")
    p.add_argument("--devices", default="1")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--pyg", action=argparse.BooleanOptionalAction, default=True,
                   help="also time PyG's GCNConv on the edge_index (peaks at ~20 GB at KuaiRec size)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)

    import pytorch_lightning as pl

    from datamodules.datamodule import KuaiRecDataModule
    from lightning_modules.head_model import HeadModel

    rows: list[tuple[str, float, float]] = []
    t = time.perf_counter()
    if a.data_dir:
        from datamodules.dataset import load_dataset, prepare_dataset

        ds = load_dataset(prepare_dataset(a.data_dir, cache_root=ROOT / "data" / "processed"))
    else:
        ds = SyntheticDataset(a.users, a.videos, a.rows)
    rows.append(("dataset in memory", time.perf_counter() - t, peak_rss_gb()))

    t = time.perf_counter()
    dm = KuaiRecDataModule(ds, batch_size=a.batch_size)
    dm.setup()
    if not a.data_dir:
        ds.interactions = None  # the graph holds what training needs; drop the frame's copy
        gc.collect()
    g = dm.graph
    rows.append(("build graph", time.perf_counter() - t, peak_rss_gb()))
    n_train = len(dm.split_rows("train"))
    n_steps = -(-n_train // a.batch_size)

    pl.seed_everything(0, verbose=False)
    model = HeadModel.from_graph(g, hidden_dim=a.hidden_dim)
    t = time.perf_counter()
    model.adjacency()
    rows.append(("normalized adjacency", time.perf_counter() - t, peak_rss_gb()))

    limit = a.max_steps if a.max_steps > 0 else 1.0
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=limit, limit_val_batches=0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         accelerator=a.accelerator, devices=int(a.devices) if a.devices.isdigit() else a.devices,
                         num_sanity_val_steps=0)
    t = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    fit_s = time.perf_counter() - t
    done = n_steps if a.max_steps <= 0 else min(a.max_steps, n_steps)
    label = "one epoch" if done == n_steps else f"{done} steps (epoch extrapolated below)"
    rows.append((f"train {label}", fit_s, peak_rss_gb()))

    model = model.to("cuda" if a.accelerator in ("gpu", "cuda") and torch.cuda.is_available() else "cpu")
    fast, ref = message_passing_ratio(model) if a.pyg else (None, None)

    print(f"\ngraph: {g.n_users:,} users + {g.n_videos:,} videos, {g.num_edges:,} interactions "
          f"({n_train:,} train), {g.edge_index.shape[1]:,} message-passing edges; "
          f"hidden {a.hidden_dim}, batch {a.batch_size:,} -> {n_steps:,} steps/epoch; "
          f"torch threads {torch.get_num_threads()}, accelerator {a.accelerator}")
    print(f"{'stage':45s} {'seconds':>10s} {'peak RSS GB':>12s}")
    for name, s, gb in rows:
        print(f"{name:45s} {s:10.1f} {gb:12.2f}")
    if done < n_steps:
        print(f"{'one epoch (extrapolated: fit time x steps)':45s} {fit_s / done * n_steps:10.1f}")
    if fast is not None:
        print(f"\none GCN layer fwd+bwd: symmetric sparse {fast:.3f} s, PyG GCNConv on edge_index "
              f"{ref:.3f} s, ratio PyG / ours = {ref / fast:.2f}")


if __name__ == "__main__":
    main()
