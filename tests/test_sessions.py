"""Sessions, bursts, ranks, the time split and labels (CONTRACTS section 7)."""
import numpy as np
import pandas as pd
import pytest

from datamodules import sessions as S
from datamodules.dataset import DataError, DatasetConfig, build_dataset
from handmade_raw import T0, make_raw


def test_sessions_and_bursts_cut_strictly_above_the_gap():
    user = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    gaps = [0, 300, 300.5, 1800, 1800.5, 0, 10, 5000]  # user 1 starts fresh
    ts = T0 + np.array([0, 300, 600.5, 2400.5, 4201.0, 0, 10, 5010.0])
    assert np.allclose(np.diff(ts)[:4], gaps[1:5])
    cols = S.session_columns(user, ts, 1800, 300)
    assert cols["session"].tolist() == [1, 1, 1, 1, 2, 1, 1, 2]
    assert cols["burst_id"].tolist() == [1, 1, 2, 3, 4, 1, 1, 2]
    assert cols["session_key"].tolist() == [0, 0, 0, 0, 1, 2, 2, 3]
    assert cols["sess_rank"].tolist() == [1, 2, 3, 4, 1, 1, 2, 1]
    assert cols["sess_len"].tolist() == [4, 4, 4, 4, 1, 2, 2, 1]
    table = S.session_table(user, ts, cols)
    assert table["first_row"].tolist() == [0, 4, 5, 7]
    assert table["end_ts"].iloc[0] == ts[3] and table["start_ts"].iloc[2] == ts[5]


def test_split_by_start_quantiles_keeps_sessions_whole():
    ds = build_dataset(make_raw(n_users=15, per_user=80, seed=3))
    it, ss = ds.interactions, ds.sessions
    assert (it.groupby("session_key")["split"].nunique() == 1).all()
    assert (ss["split"].to_numpy() == it.groupby("session_key")["split"].first().to_numpy()).all()
    q70, q80 = np.quantile(ss["start_ts"], [0.7, 0.8])
    assert (ss.loc[ss["split"] == 0, "start_ts"] < q70).all()
    assert ((ss.loc[ss["split"] == 1, "start_ts"] >= q70) & (ss.loc[ss["split"] == 1, "start_ts"] < q80)).all()
    assert (ss.loc[ss["split"] == 2, "start_ts"] >= q80).all()
    frac = np.bincount(ss["split"], minlength=3) / len(ss)
    assert frac[0] == pytest.approx(0.7, abs=0.02) and frac[2] == pytest.approx(0.2, abs=0.02)
    # session numbering restarts per user and session_key is global, ordered (user, session)
    assert (it.groupby("user_id")["session"].min() == 1).all()
    assert (ss["session"] == ss.groupby("user_id").cumcount() + 1).all()
    assert ss.index.tolist() == list(range(len(ss)))
    assert (ss["sess_len"].to_numpy() == it.groupby("session_key").size().to_numpy()).all()


def test_labels_at_thresholds():
    wr = np.array([0.0, 0.1999, 0.2, 0.9999, 1.0, 1.9999, 2.0, 7.0])
    play = np.array([0, 9999, 10000, 10001, 5, 5, 5, 10**6])
    y = S.labels(wr, play, DatasetConfig())
    assert y["y_neg"].tolist() == [1, 1, 0, 0, 0, 0, 0, 0]
    assert y["y_complete"].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert y["y_rewatch"].tolist() == [0, 0, 0, 0, 0, 0, 1, 1]
    assert y["y_long"].tolist() == [0, 0, 1, 1, 0, 0, 0, 1]
    assert all(v.dtype == np.int8 for v in y.values())


def test_config_changes_the_definitions():
    raw = make_raw(seed=1)
    a = build_dataset(raw)
    b = build_dataset(raw, DatasetConfig(session_gap_s=600, neg_ratio=0.5))
    assert b.manifest["counts"]["sessions"] > a.manifest["counts"]["sessions"]
    wr = b.interactions["watch_ratio"]
    assert (b.interactions["y_neg"] == (wr < 0.5)).all()


def test_empty_interactions_are_handled():
    raw = make_raw(n_users=3, per_user=2)
    raw.interactions = raw.interactions.iloc[:0]
    with pytest.raises(DataError, match="empty"):
        build_dataset(raw)  # nothing to split: refuse rather than write an empty dataset
