"""Processed dataset (CONTRACTS section 3): raw tables -> sessions, labels, 64 features, split; cached as parquet.

`build_dataset` does the work in memory on a RawTables; `prepare_dataset` adds the cache: the folder
`cache_root/<dataset_id>/` where dataset_id hashes the input files (full sha256), the config and the code version,
so any change gives a new folder and an unchanged setup reuses the old one. A folder is built beside its final
place and renamed at the end, so a crash never leaves a half-written cache behind.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import numbers
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from datamodules import features as F
from datamodules import sessions as S
from datamodules.schema import (AUTHOR_HISTORY_DEFAULTS, CTX_COLUMNS, FEATURE_NAMES, HIST_COLUMNS, I_COLUMNS,
                                LABEL_COLUMNS, RAW_FILES, SESSION_COLUMNS, U_COLUMNS)

from datamodules.raw import DataError, load_kuairec, resolve_data_dir

log = logging.getLogger(__name__)
DEFAULT_CACHE_ROOT = Path(__file__).resolve().parents[1] / "data" / "processed"  # git-ignored
FORMAT_VERSION = 1
CODE_FILES = ["schema.py", "raw.py", "sessions.py", "features.py", "dataset.py"]  # what the output depends on
FILES = ["interactions.parquet", "sessions.parquet", "user_features.parquet", "item_features.parquet"]
BASE_COLUMNS = ["user_id", "video_id", "timestamp", "play_duration", "video_duration", "watch_ratio",
                "session", "session_key", "burst_id", "sess_rank", "sess_len", "split"]


@dataclass(frozen=True)
class DatasetConfig:
    """Definitions of CONTRACTS section 7 (sessions, split, labels) and the feature settings."""
    session_gap_s: float = 1800.0   # a new session after more than 30 min without activity
    burst_gap_s: float = 300.0      # a new burst after more than 5 min
    train_quantile: float = 0.7     # sessions starting before this quantile of start times are train
    val_quantile: float = 0.8       # ... then val up to this one, test after
    complete_ratio: float = 1.0     # y_complete = watch_ratio >= this
    long_play_ms: float = 10_000.0  # y_long = play_duration >= this
    rewatch_ratio: float = 2.0      # y_rewatch = watch_ratio >= this
    neg_ratio: float = 0.2          # y_neg = watch_ratio < this
    ema_alpha: float = 0.1          # smoothing of the hist_* moving averages
    min_sess_len: int = 5           # valid test session: split == test and sess_len >= this
    exclude_seen: bool = True       # candidates exclude videos seen before the session (used downstream)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def check(self) -> None:
        """DataError naming the option (as prepare_data spells it) for a value that breaks the definitions."""
        def bad(name, value, need):
            raise DataError(f"--{name.replace('_', '-')} {value!r}: must be {need}")

        for name in ("session_gap_s", "burst_gap_s", "complete_ratio", "long_play_ms", "rewatch_ratio", "neg_ratio",
                     "train_quantile", "val_quantile", "ema_alpha"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                bad(name, v, "a finite number")
        for name in ("session_gap_s", "burst_gap_s", "complete_ratio", "long_play_ms", "rewatch_ratio", "neg_ratio"):
            if getattr(self, name) <= 0:
                bad(name, getattr(self, name), "> 0")
        if self.burst_gap_s > self.session_gap_s:
            raise DataError(f"--burst-gap-s {self.burst_gap_s} is longer than --session-gap-s {self.session_gap_s}: "
                            f"bursts split sessions, so the burst gap must not exceed the session gap")
        if not 0 < self.train_quantile < self.val_quantile < 1:
            raise DataError(f"--train-quantile {self.train_quantile} and --val-quantile {self.val_quantile}: need "
                            f"0 < train < val < 1 (train before the first, val up to the second, test after)")
        if not 0 < self.ema_alpha <= 1:
            bad("ema_alpha", self.ema_alpha, "in (0, 1]")
        k = self.min_sess_len
        if isinstance(k, bool) or not isinstance(k, numbers.Real) or not math.isfinite(k) or int(k) != k or k < 1:
            bad("min_sess_len", self.min_sess_len, "a positive integer")
        if not isinstance(self.exclude_seen, bool):
            bad("exclude_seen", self.exclude_seen, "true or false")


@dataclass
class ProcessedDataset:
    dataset_id: str
    interactions: pd.DataFrame   # BASE_COLUMNS, y_*, then the 64 features (burst_id, session shared with base)
    feature_names: list[str]
    user_features: pd.DataFrame  # index user_id 0..n_users-1, U_COLUMNS
    item_features: pd.DataFrame  # index video_id 0..n_videos-1, I_COLUMNS
    sessions: pd.DataFrame       # index session_key; user_id, session, split, sess_len, start_ts, end_ts, ...
    n_users: int
    n_videos: int
    manifest: dict = field(default_factory=dict)

    def valid_test_sessions(self, min_sess_len: int | None = None) -> pd.DataFrame:
        """Sessions we estimate on: test split and at least `min_sess_len` interactions."""
        k = self.manifest.get("config", {}).get("min_sess_len", 5) if min_sess_len is None else min_sess_len
        s = self.sessions
        return s[(s["split"] == 2) & (s["sess_len"] >= k)]


# ---------------------------------------------------------------- in-memory build
def _checked_interactions(raw, repairs: dict) -> pd.DataFrame:
    inter = raw.interactions
    need = ["user_id", "video_id", "play_duration", "video_duration", "timestamp", "watch_ratio"]
    missing = [c for c in need if c not in inter.columns]
    if missing:
        raise DataError(f"interactions table lacks columns {missing}; expected {need} (CONTRACTS section 1)")
    if len(inter) == 0:
        raise DataError("interactions table is empty: nothing to split into sessions; the matrix file is empty or "
                        "truncated: re-download it")
    if inter["timestamp"].isna().any():
        raise DataError(f"interactions.timestamp has {int(inter['timestamp'].isna().sum())} empty values; "
                        "load_kuairec should drop them")
    for col, n in (("user_id", raw.n_users), ("video_id", raw.n_videos)):
        ids = inter[col].to_numpy()
        if len(ids) and (ids.min() < 0 or ids.max() >= n):
            raise DataError(f"interactions.{col} outside 0..{n - 1} (min {ids.min()}, max {ids.max()}); "
                            f"the {col.split('_')[0]} tables do not cover the matrix")
    u, t = inter["user_id"].to_numpy(), inter["timestamp"].to_numpy()
    if len(u) > 1 and not ((np.diff(u) > 0) | ((np.diff(u) == 0) & (np.diff(t) >= 0))).all():
        repairs["dataset.resorted_by_user_time"] = 1
        inter = inter.sort_values(["user_id", "timestamp", "video_id"], kind="stable")
    return inter.reset_index(drop=True)


def _author_codes(author_per_video: np.ndarray, video: np.ndarray) -> np.ndarray:
    """Dense non-negative author code per row; -1 where the video's author is unknown."""
    a = author_per_video.astype(np.float64)
    known = ~np.isnan(a)
    code = np.full(len(a), -1, dtype=np.int64)
    code[known] = np.unique(a[known], return_inverse=True)[1]
    return code[video]


def build_dataset(raw, config: DatasetConfig = DatasetConfig(), dataset_id: str = "") -> ProcessedDataset:
    """All of CONTRACTS section 3 in memory from a RawTables (section 1)."""
    t_start = time.time()
    repairs = dict(getattr(raw, "repairs", {}) or {})
    inter = _checked_interactions(raw, repairs)
    u = inter["user_id"].to_numpy(np.int64)
    v = inter["video_id"].to_numpy(np.int64)
    ts = inter["timestamp"].to_numpy(np.float64)
    wr = inter["watch_ratio"].to_numpy(np.float64)
    play = inter["play_duration"].to_numpy(np.float64)

    cols = S.session_columns(u, ts, config.session_gap_s, config.burst_gap_s)
    sess = S.session_table(u, ts, cols)
    split, t_train, t_val = S.split_sessions(sess["start_ts"].to_numpy(), config.train_quantile,
                                             config.val_quantile)
    sess.insert(2, "split", split)
    y = S.labels(wr, play, config)

    users = F.user_feature_table(raw.users, raw.n_users)
    ref_day = F.reference_day(ts)
    dur_fallback = inter.groupby("video_id")["video_duration"].median()
    items = F.item_feature_table(raw.item_static, raw.categories, raw.n_videos, ref_day, dur_fallback, repairs)

    cat = {lvl: items[f"i_cat_level{lvl}_id"].to_numpy(np.int64)[v] for lvl in (1, 2)}
    author = _author_codes(items["i_author_id"].to_numpy(), v)
    ctx = F.ctx_columns(ts)
    hist = F.hist_columns(u, ts, wr, y, cat[1], cat[2], author, cols["session_key"], sess, config.ema_alpha)

    data = {c: inter[c].to_numpy() for c in ["user_id", "video_id", "timestamp", "play_duration",
                                                "video_duration", "watch_ratio"]}
    data.update(cols)
    data["split"] = split[cols["session_key"]]
    data.update(y)
    for c in U_COLUMNS:
        data[c] = users[c].to_numpy()[u]
    for c in I_COLUMNS:
        data[c] = items[c].to_numpy()[v]
    for c in CTX_COLUMNS + HIST_COLUMNS:
        data[c] = (ctx[c] if c in ctx else hist[c]).astype(np.float32)
    order = BASE_COLUMNS + list(LABEL_COLUMNS) + [c for c in FEATURE_NAMES if c not in BASE_COLUMNS]
    interactions = pd.DataFrame({c: data[c] for c in order}, copy=False)

    first = sess["first_row"].to_numpy()
    for c in SESSION_COLUMNS:
        if c != "session":
            sess[c] = data[c][first]
    for c, val in AUTHOR_HISTORY_DEFAULTS.items():
        sess[c] = np.float32(val)

    n_split = np.bincount(split, minlength=3)
    counts = {
        "interactions": len(interactions), "users": raw.n_users, "videos": raw.n_videos,
        "users_with_interactions": int(len(np.unique(u))), "videos_with_interactions": int(len(np.unique(v))),
        "sessions": len(sess), "bursts": int((S.group_starts(u) | S.group_starts(cols["burst_id"])).sum()),
        "sessions_per_split": {"train": int(n_split[0]), "val": int(n_split[1]), "test": int(n_split[2])},
        "interactions_per_split": dict(zip(["train", "val", "test"],
                                           np.bincount(data["split"], minlength=3).tolist())),
        "valid_test_sessions": int(((split == 2) & (sess["sess_len"].to_numpy() >= config.min_sess_len)).sum()),
        "label_rate": {c: float(y[c].mean()) if len(u) else float("nan") for c in LABEL_COLUMNS},
    }
    manifest = {
        "dataset_id": dataset_id, "format_version": FORMAT_VERSION, "config": config.to_dict(),
        "counts": counts, "repairs": repairs, "feature_names": list(FEATURE_NAMES),
        "split_times": {"train_before_ts": t_train, "test_from_ts": t_val},
        "reference_day": str(ref_day.date()), "build_seconds": round(time.time() - t_start, 2),
    }
    return ProcessedDataset(dataset_id, interactions, list(FEATURE_NAMES), users, items, sess,
                            int(raw.n_users), int(raw.n_videos), manifest)


# ---------------------------------------------------------------- fingerprints
def code_version() -> str:
    """sha256 (16 hex) of the datamodules source files the processed output depends on."""
    h = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for name in CODE_FILES:
        p = here / name
        if p.exists():
            h.update(name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def file_fingerprint(path: Path, memo: dict | None = None) -> dict:
    """size, mtime_ns and the full-content sha256 of a file; `memo` skips rehashing an unchanged (size, mtime)."""
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    if memo is not None and key in memo:
        digest = memo[key]
    else:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        digest = h.hexdigest()
        if memo is not None:
            memo[key] = digest
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}


def input_files(data_dir: Path, matrix: str) -> dict[str, Path]:
    """The CSVs a `matrix` build reads: that interaction matrix and the five side files."""
    if matrix not in ("big", "small"):
        raise DataError(f"--matrix {matrix!r}: expected big or small")
    other = "small_matrix.csv" if matrix == "big" else "big_matrix.csv"
    files = {name: data_dir / name for name in RAW_FILES if name != other}
    missing = [n for n, p in files.items() if not p.is_file()]
    if missing:
        raise DataError(f"{data_dir}: missing {', '.join(missing)}; a KuaiRec 2.0 data folder holds all seven CSVs: "
                        f"re-download the dataset or regenerate the world (experiments/make_world.py)")
    return files


def _load_raw(data_dir: Path, matrix: str):
    return load_kuairec(data_dir, matrix=matrix)


# ---------------------------------------------------------------- cache
def _write_parquet(df: pd.DataFrame, path: Path, index: bool, chunk_rows: int = 1_000_000) -> None:
    """Write in row groups so a 12.5M-row table never exists twice in memory."""
    writer = None
    try:
        for lo in range(0, max(len(df), 1), chunk_rows):
            table = pa.Table.from_pandas(df.iloc[lo:lo + chunk_rows], preserve_index=index)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


def write_dataset(ds: ProcessedDataset, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_parquet(ds.interactions, out_dir / "interactions.parquet", index=False)
    _write_parquet(ds.sessions, out_dir / "sessions.parquet", index=True)
    _write_parquet(ds.user_features, out_dir / "user_features.parquet", index=True)
    _write_parquet(ds.item_features, out_dir / "item_features.parquet", index=True)
    (out_dir / "manifest.json").write_text(json.dumps(ds.manifest, indent=2, ensure_ascii=False, default=str))


def _is_complete(folder: Path, dataset_id: str) -> bool:
    try:
        m = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return m.get("dataset_id") == dataset_id and all((folder / f).is_file() for f in FILES)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_stale(cache_root: Path) -> None:
    """Remove temp folders left by builds that crashed (their process is gone)."""
    for p in cache_root.glob(".tmp-*"):
        try:
            pid = int(p.name.split("-")[2])
        except (IndexError, ValueError):
            continue
        if not _pid_alive(pid):
            shutil.rmtree(p, ignore_errors=True)


def prepare_dataset(data_dir, matrix: str = "big", config: DatasetConfig = DatasetConfig(),
                    cache_root=None, force: bool = False) -> Path:
    """Build (or reuse) the processed dataset of a KuaiRec 2.0 folder; returns `cache_root/<dataset_id>`.

    cache_root None means `<project root>/data/processed`, wherever the command runs from.
    """
    config.check()
    data_dir = Path(resolve_data_dir(data_dir))
    files = input_files(data_dir, matrix)
    cache_root = DEFAULT_CACHE_ROOT if cache_root is None else Path(cache_root)
    cache_root.mkdir(parents=True, exist_ok=True)
    memo_path = cache_root / ".hash_memo.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    t0 = time.time()
    inputs = {name: file_fingerprint(p, memo) for name, p in files.items()}
    timings = {"fingerprint": time.time() - t0}
    tmp_memo = memo_path.with_name(f".hash_memo.{os.getpid()}.{uuid.uuid4().hex}")
    tmp_memo.write_text(json.dumps(memo))
    os.replace(tmp_memo, memo_path)

    code = code_version()
    ident = {"matrix": matrix, "inputs": {n: f["sha256"] for n, f in inputs.items()}, "config": config.to_dict(),
             "code_version": code, "format_version": FORMAT_VERSION}
    dataset_id = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]
    out = cache_root / dataset_id
    if not force and _is_complete(out, dataset_id):
        log.info("reusing processed dataset %s", out)
        return out

    _clean_stale(cache_root)
    log.info("building processed dataset %s from %s (%s matrix)", dataset_id, data_dir, matrix)
    t0 = time.time()
    raw = _load_raw(data_dir, matrix)
    timings["load_raw"] = time.time() - t0
    t0 = time.time()
    ds = build_dataset(raw, config, dataset_id)
    del raw
    timings["build"] = time.time() - t0
    timings = {k: round(v, 2) for k, v in timings.items()}
    ds.manifest.update({
        "matrix": matrix, "data_dir": str(data_dir), "inputs": inputs, "input_hash": "sha256 of full file content",
        "code_version": code, "code_files": CODE_FILES,
        "versions": {"pandas": pd.__version__, "numpy": np.__version__, "pyarrow": pa.__version__},
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "timings_s": timings,
    })
    tmp = cache_root / f".tmp-{dataset_id}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        t0 = time.time()
        write_dataset(ds, tmp)
        _install(tmp, out, dataset_id)
        log.info("dataset %s: fingerprint %.1f s, load %.1f s, build %.1f s, write %.1f s", dataset_id,
                 timings["fingerprint"], timings["load_raw"], timings["build"], time.time() - t0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _install(tmp: Path, out: Path, dataset_id: str) -> None:
    """Atomically put the finished folder `tmp` at `out` (replacing an old or broken one)."""
    old = None
    if out.exists():
        old = out.with_name(f".tmp-old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        os.rename(out, old)
    try:
        os.rename(tmp, out)
    except OSError:
        if not _is_complete(out, dataset_id):  # not a concurrent identical build: give the old one back
            if old is not None:
                os.rename(old, out)
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def load_dataset(processed_dir, columns: list[str] | None = None) -> ProcessedDataset:
    """Read a folder written by prepare_dataset; `columns` limits the interaction columns read (memory)."""
    d = Path(processed_dir)
    try:
        manifest = json.loads((d / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{d}: no readable manifest.json ({e.__class__.__name__}); run prepare_dataset") from None
    missing = [f for f in FILES if not (d / f).is_file()]
    if missing:
        raise DataError(f"{d}: missing {missing}; delete the folder and run prepare_dataset again")

    def read(name, cols=None):
        return pq.read_table(d / name, columns=cols).to_pandas(split_blocks=True, self_destruct=True)

    return ProcessedDataset(
        dataset_id=manifest["dataset_id"], interactions=read("interactions.parquet", columns),
        feature_names=list(manifest["feature_names"]), user_features=read("user_features.parquet"),
        item_features=read("item_features.parquet"), sessions=read("sessions.parquet"),
        n_users=int(manifest["counts"]["users"]), n_videos=int(manifest["counts"]["videos"]), manifest=manifest)
