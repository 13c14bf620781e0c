"""ProcessedDataset layout, the session (counterfactual) table, and the atomic, fingerprinted cache."""
import json

import numpy as np
import pandas as pd
import pytest

from datamodules import dataset as D
from datamodules.dataset import DataError, DatasetConfig, build_dataset, load_dataset, prepare_dataset
from datamodules.schema import (AUTHOR_HISTORY_DEFAULTS, FEATURE_NAMES, I_COLUMNS, LABEL_COLUMNS, RAW_FILES,
                                SESSION_COLUMNS)
from handmade_raw import make_raw


def test_interactions_layout_and_dtypes():
    ds = build_dataset(make_raw())
    it = ds.interactions
    assert list(it.columns[:12]) == D.BASE_COLUMNS
    assert list(it.columns[12:16]) == list(LABEL_COLUMNS)
    assert set(FEATURE_NAMES) <= set(it.columns) and ds.feature_names == FEATURE_NAMES
    assert len(it.columns) == 12 + 4 + 62
    assert it["split"].dtype == np.int8 and all(it[c].dtype == np.int8 for c in LABEL_COLUMNS)
    assert all(it[c].dtype == np.int64 for c in ["session", "session_key", "burst_id", "sess_rank", "sess_len"])
    assert all(it[c].dtype == np.float32 for c in FEATURE_NAMES[2:])
    assert not np.isinf(it[FEATURE_NAMES].to_numpy(np.float64)).any()
    assert it.index.tolist() == list(range(len(it)))
    assert it[["user_id", "timestamp"]].equals(it.sort_values(["user_id", "timestamp"])[["user_id", "timestamp"]]
                                               .reset_index(drop=True))


def test_session_table_is_first_row_with_counterfactual_author_defaults():
    ds = build_dataset(make_raw(seed=7))
    s, it = ds.sessions, ds.interactions
    assert s.index.name == "session_key" and len(s) == it["session_key"].nunique()
    assert set(SESSION_COLUMNS) <= set(s.columns)
    for c in ["user_id", "session", "split", "sess_len", "start_ts"]:
        assert c in s.columns
    first = it.groupby("session_key").head(1).set_index("session_key")
    keep = [c for c in SESSION_COLUMNS if c not in AUTHOR_HISTORY_DEFAULTS]
    np.testing.assert_array_equal(s[keep].to_numpy(np.float64), first[keep].to_numpy(np.float64))
    for c, val in AUTHOR_HISTORY_DEFAULTS.items():
        assert (s[c] == val).all()
    assert (s["start_ts"].to_numpy() == first["timestamp"].to_numpy()).all()
    valid = ds.valid_test_sessions()
    assert len(valid) == ds.manifest["counts"]["valid_test_sessions"]
    assert ((valid["split"] == 2) & (valid["sess_len"] >= 5)).all()


# ---------------------------------------------------------------- cache
def _fake_folder(tmp_path):
    d = tmp_path / "KuaiRec 2.0" / "data"
    d.mkdir(parents=True)
    for name in RAW_FILES:
        (d / name).write_text(f"header of {name}\n1\n")
    return d


@pytest.fixture
def fake_source(tmp_path, monkeypatch):
    """A data folder of placeholder CSVs whose loader returns a hand-built RawTables; counts loads."""
    data_dir = _fake_folder(tmp_path)
    calls = []

    def load(d, matrix):
        calls.append(matrix)
        return make_raw(seed=11)

    monkeypatch.setattr(D, "_load_raw", load)
    return data_dir, calls, tmp_path / "cache"


def test_cache_reused_and_rebuilt_on_change(fake_source, monkeypatch):
    data_dir, calls, cache = fake_source
    p1 = prepare_dataset(data_dir, cache_root=cache)
    assert p1.parent == cache and len(calls) == 1
    assert prepare_dataset(data_dir, cache_root=cache) == p1 and len(calls) == 1  # reused
    m = json.loads((p1 / "manifest.json").read_text())
    assert m["dataset_id"] == p1.name and m["code_version"] == D.code_version()
    assert set(m["inputs"]) == set(RAW_FILES) - {"small_matrix.csv"}
    assert len(m["inputs"]["big_matrix.csv"]["sha256"]) == 64 and m["config"]["session_gap_s"] == 1800.0
    assert m["counts"]["interactions"] > 0 and "big_matrix.exact_duplicates_dropped" in m["repairs"]

    p2 = prepare_dataset(data_dir, cache_root=cache, config=DatasetConfig(neg_ratio=0.25))  # config
    (data_dir / "user_features.csv").write_text("changed\n")                                 # input
    p3 = prepare_dataset(data_dir, cache_root=cache)
    monkeypatch.setattr(D, "code_version", lambda: "other-code")                             # code
    p4 = prepare_dataset(data_dir, cache_root=cache)
    assert len({p1, p2, p3, p4}) == 4 and len(calls) == 4
    assert p1.exists()  # older caches are left alone

    ds = load_dataset(p4)
    fresh = build_dataset(make_raw(seed=11))
    pd.testing.assert_frame_equal(ds.interactions, fresh.interactions)
    pd.testing.assert_frame_equal(ds.sessions, fresh.sessions)
    pd.testing.assert_frame_equal(ds.item_features, fresh.item_features)
    pd.testing.assert_frame_equal(ds.user_features, fresh.user_features)
    assert ds.n_users == fresh.n_users and ds.dataset_id == p4.name
    assert list(load_dataset(p4, columns=["user_id", "split"]).interactions.columns) == ["user_id", "split"]


def test_crash_while_writing_leaves_no_broken_cache(fake_source, monkeypatch):
    data_dir, calls, cache = fake_source
    real = D._write_parquet

    def crash_on_sessions(df, path, index, **kw):
        if path.name == "sessions.parquet":
            raise RuntimeError("simulated crash")
        return real(df, path, index, **kw)

    monkeypatch.setattr(D, "_write_parquet", crash_on_sessions)
    with pytest.raises(RuntimeError, match="simulated"):
        prepare_dataset(data_dir, cache_root=cache)
    assert [p.name for p in cache.iterdir() if not p.name.startswith(".hash_memo")] == []

    monkeypatch.setattr(D, "_write_parquet", real)
    good = prepare_dataset(data_dir, cache_root=cache)
    before = {p.name: p.read_bytes() for p in good.iterdir()}

    monkeypatch.setattr(D, "_write_parquet", crash_on_sessions)
    with pytest.raises(RuntimeError):
        prepare_dataset(data_dir, cache_root=cache, force=True)  # a failed forced rebuild keeps the old one
    assert {p.name: p.read_bytes() for p in good.iterdir()} == before
    assert load_dataset(good).manifest["dataset_id"] == good.name

    # a crashed process's leftover temp folder is cleaned by the next build
    (cache / ".tmp-abc-999999999-dead").mkdir()
    monkeypatch.setattr(D, "_write_parquet", real)
    prepare_dataset(data_dir, cache_root=cache, force=True)
    assert not (cache / ".tmp-abc-999999999-dead").exists()


def test_bad_inputs_name_the_culprit(tmp_path, fake_source):
    with pytest.raises(DataError, match="nowhere"):
        prepare_dataset(tmp_path / "nowhere", cache_root=tmp_path / "c")
    data_dir, _, cache = fake_source
    (data_dir / "item_daily_features.csv").unlink()
    with pytest.raises(DataError, match="item_daily_features.csv"):
        prepare_dataset(data_dir, cache_root=cache)
    with pytest.raises(DataError, match="matrix"):
        prepare_dataset(data_dir, matrix="medium", cache_root=cache)
    with pytest.raises(DataError, match="manifest"):
        load_dataset(tmp_path)
    raw = make_raw()
    raw.interactions.loc[0, "video_id"] = raw.n_videos + 3
    with pytest.raises(DataError, match="video_id"):
        build_dataset(raw)
    raw = make_raw()
    raw.interactions = raw.interactions.drop(columns=["watch_ratio"])
    with pytest.raises(DataError, match="watch_ratio"):
        build_dataset(raw)


# ---------------------------------------------------------------- integration with raw.py / world.py
def test_prepare_on_tiny_world_and_cli(tiny_world, tmp_path, capsys):
    from datamodules.raw import load_kuairec
    import experiments.prepare_data as cli

    raw = load_kuairec(tiny_world, "big")
    out = prepare_dataset(tiny_world, cache_root=tmp_path)
    ds = load_dataset(out)
    assert len(ds.interactions) == len(raw.interactions) and ds.n_users == raw.n_users
    assert ds.user_features.shape == (raw.n_users, 34) and ds.item_features.shape == (raw.n_videos, 13)
    assert (ds.interactions["video_id"].to_numpy() == raw.interactions["video_id"].to_numpy()).all()
    cats = raw.categories.set_index("video_id")["cat_level1_id"].reindex(range(raw.n_videos))
    assert (ds.item_features["i_cat_level1_id"].to_numpy() == cats.to_numpy()).all()
    assert ds.manifest["counts"]["valid_test_sessions"] > 0 and ds.manifest["repairs"] == {
        **raw.repairs, **{k: v for k, v in ds.manifest["repairs"].items() if k not in raw.repairs}}
    assert set(np.unique(ds.interactions["split"])) == {0, 1, 2}

    assert cli.main(["--data-dir", str(tiny_world.parent.parent), "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and '"valid_test_sessions"' in printed and "repairs" in printed
    assert cli.main(["--data-dir", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
