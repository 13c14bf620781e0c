"""The 64 features: hand-computed history values, no leakage from later rows, static tables, local time."""
import numpy as np
import pandas as pd
import pytest

from datamodules.dataset import build_dataset
from datamodules.features import encode, segmented_ema
from datamodules.schema import FEATURE_NAMES, U_COLUMNS
from handmade_raw import T0, make_raw


def four_row_raw():
    """User 0 watches videos 0..3: cat1 (1, 2, 1, 1), cat2 (10, 20, 10, 11), authors (5, 6, 5, 5)."""
    inter = pd.DataFrame({
        "user_id": [0, 0, 0, 0], "video_id": [0, 1, 2, 3],
        "timestamp": T0 + np.array([0.0, 60.0, 120.0, 4000.0]),
        "watch_ratio": [0.5, 0.1, 2.5, 0.5], "play_duration": [12000, 1000, 30000, 5000],
        "video_duration": [24000, 10000, 12000, 10000]})
    raw = make_raw(n_users=2, n_videos=6, interactions=inter)
    raw.categories.loc[:3, "cat_level1_id"] = [1, 2, 1, 1]
    raw.categories.loc[:3, "cat_level2_id"] = [10, 20, 10, 11]
    raw.item_static.loc[:3, "author_id"] = [5, 6, 5, 5]
    return raw


def test_history_features_by_hand():
    it = build_dataset(four_row_raw()).interactions
    nan = np.nan
    expect = {
        "hist_ema_watchratio": [nan, 0.5, 0.1 * 0.1 + 0.9 * 0.5, 0.1 * 2.5 + 0.9 * 0.46],
        "hist_ema_y_complete": [nan, 0.0, 0.0, 0.1],
        "hist_ema_y_long": [nan, 1.0, 0.9, 0.91],
        "hist_ema_y_rewatch": [nan, 0.0, 0.0, 0.1],
        "hist_ema_y_neg": [nan, 0.0, 0.1, 0.09],
        "hist_cat_ema_complete": [nan, nan, 0.0, 0.1],
        "hist_cat_entropy_l2": [0.0, 0.0, np.log(2), np.log(3) - 2 * np.log(2) / 3],
        "hist_has_author_history": [0, 0, 1, 1],
        "hist_author_recency_days": [nan, nan, 120 / 86400, 3880 / 86400],
        "hist_last_complete_author": [nan, nan, 0, 1],
        "hist_prev_sess_len": [0, 0, 0, 3],
        "hist_intersess_gap_h": [0, 0, 0, 3880 / 3600],
        "session": [1, 1, 1, 2], "burst_id": [1, 1, 1, 2],
        "ctx_hour": [0, 0, 0, 1], "ctx_dow": [6, 6, 6, 6], "ctx_is_weekend": [1, 1, 1, 1],
    }
    for col, vals in expect.items():
        np.testing.assert_allclose(it[col].to_numpy(np.float64), vals, rtol=1e-6, atol=1e-7, err_msg=col)


def test_segmented_ema_restarts_per_group():
    x = np.array([1.0, 0.0, 0.0, 5.0, 3.0, 1.0])
    start = np.array([1, 0, 0, 1, 0, 1], dtype=bool)
    np.testing.assert_allclose(segmented_ema(x, start, 0.1), [1, 0.9, 0.81, 5, 4.8, 1])


def _later_rows_changed(raw, seed):
    rng = np.random.default_rng(seed)
    inter = raw.interactions.copy()
    pos = inter.groupby("user_id").cumcount().to_numpy()
    size = inter.groupby("user_id")["user_id"].transform("size").to_numpy()
    cut_at = rng.integers(1, size)  # per row: the cut of its user (same draw for all rows of a user)
    cut = pd.Series(cut_at).groupby(inter["user_id"]).transform("first").to_numpy()
    later = pos >= cut
    n = int(later.sum())
    inter.loc[later, "watch_ratio"] = rng.gamma(1.0, 1.0, n)
    inter.loc[later, "play_duration"] = rng.integers(0, 40000, n)
    inter.loc[later, "video_id"] = rng.integers(0, raw.n_videos, n)
    return inter, ~later


def test_no_leakage_from_later_interactions():
    raw = make_raw(n_users=8, n_videos=30, per_user=70, seed=5)
    raw.item_static["video_duration"] = raw.item_static["video_duration"].fillna(9000.0)
    base = build_dataset(raw).interactions
    changed_inter, earlier = _later_rows_changed(raw, seed=9)
    raw.interactions = changed_inter
    other = build_dataset(raw).interactions
    assert (base.loc[~earlier, "watch_ratio"].to_numpy() != other.loc[~earlier, "watch_ratio"].to_numpy()).any()
    cols = FEATURE_NAMES + ["y_complete", "y_long", "y_rewatch", "y_neg", "sess_rank"]
    a = base.loc[earlier, cols].to_numpy(np.float64)
    b = other.loc[earlier, cols].to_numpy(np.float64)
    np.testing.assert_array_equal(a, b)  # NaN == NaN here
    # and the history really changes afterwards (the test can fail)
    hist = [c for c in FEATURE_NAMES if c.startswith("hist_ema")]
    assert not np.array_equal(base.loc[~earlier, hist].to_numpy(), other.loc[~earlier, hist].to_numpy(),
                              equal_nan=True)


def test_local_time_matches_beijing_clock():
    it = build_dataset(make_raw(seed=2)).interactions
    local = pd.to_datetime(it["timestamp"], unit="s", utc=True).dt.tz_convert("Asia/Shanghai")
    assert (it["ctx_hour"].to_numpy() == local.dt.hour.to_numpy()).all()
    assert (it["ctx_dow"].to_numpy() == local.dt.dayofweek.to_numpy()).all()
    assert (it["ctx_is_weekend"].to_numpy() == (local.dt.dayofweek >= 5).to_numpy()).all()


def test_static_tables_cover_all_ids_and_encode():
    raw = make_raw(n_users=10, n_videos=50, per_user=20, seed=4)
    raw.interactions = raw.interactions[raw.interactions["user_id"] < 6]  # users 6..9 never seen
    ds = build_dataset(raw)
    uf, itf = ds.user_features, ds.item_features
    assert uf.shape == (10, 34) and list(uf.columns) == U_COLUMNS and uf.index.tolist() == list(range(10))
    assert itf.shape == (50, 13) and itf.index.tolist() == list(range(50))
    users = raw.users.set_index("user_id")
    np.testing.assert_allclose(uf["u_fans_user_num_log1p"], np.log1p(users["fans_user_num"]), rtol=1e-6)
    assert uf["u_onehot_feat4"].isna().sum() == users["onehot_feat4"].isna().sum() > 0
    st = raw.item_static.set_index("video_id")
    ratio = np.where(st["video_height"] > 0, st["video_width"] / st["video_height"].replace(0, np.nan), np.nan)
    np.testing.assert_allclose(itf["i_aspect_ratio"], ratio, rtol=1e-6)
    assert (itf["i_cat_level1_id"] == raw.categories["cat_level1_id"]).all()  # -124 kept
    assert (itf["i_cat_level1_id"] == -124).any()
    # per-row features are the table rows of that user / video
    it = ds.interactions
    np.testing.assert_array_equal(it[U_COLUMNS].to_numpy(), uf.to_numpy()[it["user_id"]])


def test_encode_orders_buckets_and_keeps_nan():
    s = pd.Series(["500+", "(0,10]", None, "0", "(10,50]", "(50,100]"])
    from datamodules.features import _bucket_key
    codes = encode(s, key=_bucket_key)
    assert codes[3] < codes[1] < codes[4] < codes[5] < codes[0] and np.isnan(codes[2])
    assert encode(pd.Series(["full_active", "UNKNOWN", "high_active"]), order=["UNKNOWN", "high_active"]).tolist() \
        == [2.0, 0.0, 1.0]


def test_real_user_and_category_files_encode(side_dir):
    from datamodules.features import item_feature_table
    from datamodules.raw import read_caption, read_users
    users = read_users(side_dir / "user_features.csv", {})
    from datamodules.features import user_feature_table
    uf = user_feature_table(users, 7176)
    assert uf.shape == (7176, 34)
    assert uf["u_onehot_feat4"].isna().sum() == 201 and 74 <= uf["u_onehot_feat12"].isna().sum() <= 77
    assert uf.drop(columns=[f"u_onehot_feat{i}" for i in (4, *range(12, 18))]).notna().all().all()
    fans = users.set_index("user_id")["fans_user_num_range"]
    order = ["0", "[1,10)", "[10,100)", "[100,1k)", "[1k,5k)", "[5k,1w)", "[1w,10w)"]
    assert (uf["u_fans_user_num_range"].to_numpy() == fans.map(order.index).to_numpy()).all()
    degree = users.set_index("user_id")["user_active_degree"]
    rank = {"UNKNOWN": 0, "middle_active": 1, "high_active": 2, "full_active": 3}
    assert (uf["u_user_active_degree"].to_numpy() == degree.map(rank).to_numpy()).all()
    cats, _ = read_caption(side_dir / "kuairec_caption_category.csv", {})
    static = pd.DataFrame({"video_id": [0], "author_id": [1], "video_type": ["NORMAL"], "upload_dt": ["2020-07-01"],
                           "upload_type": ["ShortImport"], "visible_status": ["public"], "video_duration": [1.0],
                           "video_width": [720], "video_height": [1280], "music_id": [1], "video_tag_id": [1],
                           "video_tag_name": ["x"]})
    itf = item_feature_table(static, cats, 10728, pd.Timestamp("2020-07-05"))
    assert (itf["i_cat_level1_id"] == -124).sum() == 40 and (itf["i_cat_level3_id"] == -124).sum() == 6832
    assert itf.loc[0, "i_age_since_upload_days"] == 4 and itf.loc[1:, "i_author_id"].isna().all()
