"""Time and peak memory of the dataset stage at KuaiRec scale (12.5M rows) on in-memory RawTables.

Why: the real big_matrix has 12.5M rows; the stage must stay within ~15 min and 12 GB on 2 cores. CSV reading is
raw.py's job and not measured here (use --data-dir to time the whole prepare_dataset on a folder instead).
    python benchmarks/bench_prepare.py --rows 12500000          # build + write, synthetic KuaiRec-shaped tables
    python benchmarks/bench_prepare.py --data-dir data/worlds/kuairec-seed0 --matrix big
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from datamodules import dataset as D  # noqa: E402


def synthetic_raw(rows: int, n_users: int = 7176, n_videos: int = 10728, seed: int = 0):
    """KuaiRec-shaped RawTables: skewed rows per user, sessions of minutes-apart events, days between them."""
    from handmade_raw import HandRaw, side_tables
    rng = np.random.default_rng(seed)
    per = rng.lognormal(0, 0.8, n_users)
    per = np.maximum(1, np.round(per / per.sum() * rows)).astype(np.int64)
    per[0] += rows - per.sum()
    user = np.repeat(np.arange(n_users, dtype=np.int64), per)
    gaps = np.where(rng.random(rows) < 0.06, rng.exponential(20 * 3600, rows), rng.exponential(60, rows))
    start = np.repeat(1593878400.0 + rng.uniform(0, 86400, n_users), per)
    ts = np.cumsum(gaps)
    first = np.concatenate([[0], np.cumsum(per)[:-1]])
    ts = ts - np.repeat(ts[first], per) + start
    dur = rng.integers(3000, 30000, rows)
    wr = rng.gamma(1.5, 0.6, rows)
    inter = pd.DataFrame({"user_id": user, "video_id": rng.integers(0, n_videos, rows),
                          "play_duration": (wr * dur).astype(np.int64), "video_duration": dur.astype(np.int64),
                          "timestamp": ts, "watch_ratio": wr})
    side = side_tables(n_users, n_videos, seed)
    side["item_static"]["author_id"] = rng.integers(0, 7000, n_videos)
    return HandRaw(interactions=inter, n_users=n_users, n_videos=n_videos, **side)


def write_kuairec_folder(raw, out: Path, side_dir: Path, seed: int = 0) -> Path:
    """Write `raw` as a KuaiRec 2.0 folder (big matrix with ~7.7% exact duplicates; real side files copied)."""
    import shutil

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    from datamodules.schema import ITEM_DAILY_COLUMNS, MATRIX_COLUMNS
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("user_features.csv", "item_categories.csv", "kuairec_caption_category.csv"):
        shutil.copyfile(side_dir / name, out / name)
    inter = raw.interactions
    dup = rng.random(len(inter)) < 0.077
    m = pd.concat([inter, inter[dup]], ignore_index=True)
    local = pa.array((m["timestamp"].to_numpy() * 1000 + 8 * 3600_000).astype("datetime64[ms]"))
    m["time"] = pc.strftime(local, format="%Y-%m-%d %H:%M:%S").to_numpy(zero_copy_only=False)
    m["date"] = pc.strftime(local, format="%Y%m%d").to_numpy(zero_copy_only=False).astype(np.int64)
    pacsv.write_csv(pa.Table.from_pandas(m[MATRIX_COLUMNS], preserve_index=False), out / "big_matrix.csv")
    m.iloc[:1000][MATRIX_COLUMNS].to_csv(out / "small_matrix.csv", index=False)
    st = raw.item_static.copy()
    st["date"] = 20200705
    for c in ITEM_DAILY_COLUMNS:
        if c not in st.columns:
            st[c] = 0
    st[ITEM_DAILY_COLUMNS].to_csv(out / "item_daily_features.csv", index=False)
    pd.DataFrame({"user_id": [0, 1], "friend_list": ["[1, 2]", "[0]"]}).to_csv(out / "social_network.csv",
                                                                               index=False)
    return out


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--data-dir", default=None, help="time prepare_dataset on a real/synthetic KuaiRec folder")
    ap.add_argument("--matrix", default="big")
    ap.add_argument("--keep", default=None, help="with --csv: write the folder here and keep it")
    ap.add_argument("--csv", action="store_true", help="write the synthetic tables as CSVs (real side files from "
                    "../shared/kuairec-side) and time the whole prepare_dataset, reading included")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.data_dir:
            t = time.time()
            out = D.prepare_dataset(args.data_dir, args.matrix, cache_root=tmp)
            print(f"prepare_dataset: {time.time() - t:.1f} s, peak RSS {peak_rss_gb():.2f} GB -> {out.name}")
            print("phases (s):", D.load_dataset(out, columns=["user_id"]).manifest["timings_s"])
            t = time.time()
            D.load_dataset(out)
            print(f"load_dataset: {time.time() - t:.1f} s, peak RSS {peak_rss_gb():.2f} GB")
            return
        t = time.time()
        raw = synthetic_raw(args.rows)
        print(f"synthetic raw {len(raw.interactions):,} rows: {time.time() - t:.1f} s, RSS {peak_rss_gb():.2f} GB")
        if args.csv:
            side = Path(__file__).resolve().parents[2] / "shared" / "kuairec-side"
            t = time.time()
            folder = write_kuairec_folder(raw, Path(args.keep or tmp) / "KuaiRec 2.0" / "data", side)
            print(f"wrote CSVs ({(folder / 'big_matrix.csv').stat().st_size / 1e9:.2f} GB big_matrix): "
                  f"{time.time() - t:.1f} s; now timing prepare_dataset in a fresh process")
            del raw
            import subprocess
            subprocess.run([sys.executable, __file__, "--data-dir", str(folder)], check=True)
            return
        t = time.time()
        ds = D.build_dataset(raw)
        t_build = time.time() - t
        c = ds.manifest["counts"]
        print(f"build_dataset: {t_build:.1f} s ({t_build / len(raw.interactions) * 1e6:.2f} us/row), "
              f"peak RSS {peak_rss_gb():.2f} GB, sessions {c['sessions']:,}")
        t = time.time()
        D.write_dataset(ds, Path(tmp) / "out")
        print(f"write parquet: {time.time() - t:.1f} s, peak RSS {peak_rss_gb():.2f} GB")
        del ds, raw
        t = time.time()
        D.load_dataset(Path(tmp) / "out")
        print(f"load_dataset: {time.time() - t:.1f} s")


if __name__ == "__main__":
    main()
