"""Raw reading: folder resolution, schema checks, every DATA_FACTS trap, and the real side files."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from datamodules import schema
from datamodules.raw import (DataError, load_kuairec, parse_int_lists, parse_tag_lists, read_caption,
                             read_item_tags, read_users, resolve_data_dir, yyyymmdd_of_timestamp)

HEADER = ",".join(schema.MATRIX_COLUMNS)


@pytest.fixture()
def world_copy(tiny_world, tmp_path):
    """A writable copy of the tiny world's data folder."""
    d = tmp_path / "KuaiRec 2.0" / "data"
    shutil.copytree(tiny_world, d)
    return d


def test_resolve_data_dir(tiny_world):
    root = tiny_world.parents[1]
    assert resolve_data_dir(root) == tiny_world
    assert resolve_data_dir(tiny_world.parent) == tiny_world
    assert resolve_data_dir(tiny_world) == tiny_world
    with pytest.raises(DataError, match="no KuaiRec 2.0 data folder"):
        resolve_data_dir(root / "nowhere")


def test_missing_file_names_it(world_copy):
    (world_copy / "item_categories.csv").unlink()
    with pytest.raises(DataError, match="item_categories.csv: file missing"):
        load_kuairec(world_copy)


def test_missing_and_extra_column_named(world_copy):
    users = pd.read_csv(world_copy / "user_features.csv")
    users.drop(columns=["register_days"]).to_csv(world_copy / "user_features.csv", index=False)
    with pytest.raises(DataError, match=r"user_features.csv: missing column\(s\) \['register_days'\]"):
        load_kuairec(world_copy)
    users.assign(extra=1).to_csv(world_copy / "user_features.csv", index=False)
    with pytest.raises(DataError, match=r"user_features.csv: unexpected column\(s\) \['extra'\]"):
        load_kuairec(world_copy)


def test_matrix_traps(world_copy):
    rows = [
        "0,1,5000,10000,2020-07-05 10:00:00.000,20200705,1593914400.0,0.5",
        "0,1,5000,10000,2020-07-05 10:00:00.000,20200705,1593914400.0,0.5",   # exact duplicate: dropped
        "0,1,5001,10000,2020-07-05 10:00:00.000,20200705,1593914400.0,0.5001",  # same time, other play: kept
        "0,1,5000,10000,2020-07-05 10:00:00.000,20200705,1593914400.0,0.5",   # duplicate after a non-duplicate
        "0,1,9000,10000,2020-07-06 10:00:00.000,20200706,1594000800.0,0.9",   # genuine re-watch: kept
        "1,2,60000,10000,2020-07-05 00:01:00.000,20200704,1593878460.0,6.0",  # date lags timestamp; ratio > 5
        "1,3,0,10000,,,,0.0",                                                  # no timestamp: dropped
    ]
    (world_copy / "big_matrix.csv").write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    raw = load_kuairec(world_copy)
    r = raw.repairs
    assert len(raw.interactions) == 4 and list(raw.interactions.columns) == [
        "user_id", "video_id", "play_duration", "video_duration", "timestamp", "watch_ratio"]
    assert r["big_matrix.exact_duplicates_dropped"] == 2
    assert r["big_matrix.rows_without_timestamp_dropped"] == 1
    assert r["big_matrix.date_label_differs_from_timestamp"] == 1
    assert r["big_matrix.watch_ratio_gt5_kept"] == 1
    assert raw.interactions["timestamp"].dtype == np.float64
    assert raw.interactions["user_id"].tolist() == [0, 0, 0, 1]


def test_bad_matrix_values_named(world_copy):
    (world_copy / "big_matrix.csv").write_text(HEADER + "\n0,1,abc,10000,2020-07-05 10:00:00.000,20200705,1.0,0.5\n")
    with pytest.raises(DataError, match="big_matrix.csv"):
        load_kuairec(world_copy)
    (world_copy / "big_matrix.csv").write_text(HEADER + "\n0,1,5,10000,2020-07-05 10:00:00.000,2020-07-05,1.0,0.5\n")
    with pytest.raises(DataError, match="column date"):
        load_kuairec(world_copy)
    (world_copy / "big_matrix.csv").write_text(HEADER + "\n99999,1,5,10000,2020-07-05 10:00:00.000,20200705,1593914400.,.5\n")
    with pytest.raises(DataError, match=r"big_matrix.csv: column user_id .* not in user_features.csv.*99999"):
        load_kuairec(world_copy)


def test_small_matrix_float_dates(world_copy):
    rows = ["0,1,5000,10000,2020-07-05 10:00:00.000,20200705.0,1593914400.0,0.5", "0,2,5000,10000,,,,0.5"]
    (world_copy / "small_matrix.csv").write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    raw = load_kuairec(world_copy, matrix="small")
    assert len(raw.interactions) == 1 and raw.repairs["small_matrix.rows_without_timestamp_dropped"] == 1


def test_caption_bare_cr_and_crlf(world_copy):
    raw = load_kuairec(world_copy)
    assert len(raw.categories) == raw.n_videos == 300
    assert raw.repairs["kuairec_caption_category.bare_cr_inside_text_kept"] == 4
    assert raw.categories["cat_level1_id"].dtype == np.int64
    path = world_copy / "kuairec_caption_category.csv"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    cat, _ = read_caption(path, repairs := {})
    assert len(cat) == 300 and repairs["kuairec_caption_category.crlf_line_ends_stripped"] == 300
    assert "\r" not in "".join(cat["cat_level3_name"])


def test_lists_parsed():
    assert parse_int_lists(pd.Series(["[8]", "[27, 9]", "[]"]), "f", "feat") == [[8], [27, 9], []]
    with pytest.raises(DataError, match="f: column feat .*'oops'"):
        parse_int_lists(pd.Series(["[1]", "oops"]), "f", "feat")
    assert parse_tag_lists(pd.Series(["[]", "[a,b c]", "[x]"])) == [[], ["a", "b c"], ["x"]]


def test_dates_never_through_float32():
    ts = np.array([1593878903.438, 1593878399.0])  # 2020-07-05 00:08 and 2020-07-04 23:59:59 Beijing
    assert yyyymmdd_of_timestamp(ts).tolist() == [20200705, 20200704]
    assert int(np.float32(20200705)) == 20200704  # the trap the reader avoids


def test_loaded_tables_types(tiny_world):
    raw = load_kuairec(tiny_world)
    assert list(raw.users.columns) == schema.USER_COLUMNS and raw.users["onehot_feat0"].dtype == np.int64
    assert all(isinstance(x, list) for x in raw.item_tags["feat"])
    assert all(isinstance(x, list) for x in raw.social["friend_list"])
    assert list(raw.item_static.columns) == ["video_id", *schema.ITEM_STATIC_COLUMNS]
    assert raw.interactions.index.equals(pd.RangeIndex(len(raw.interactions)))
    assert raw.interactions.sort_values(["user_id", "timestamp", "video_id"]).index.is_monotonic_increasing


# ---- the real side files (../shared/kuairec-side) --------------------------------------------------------------
def test_real_users(side_dir):
    users = read_users(side_dir / "user_features.csv", {})
    assert users.shape == (7176, 31)
    assert users["user_active_degree"].value_counts().to_dict() == {
        "full_active": 6092, "high_active": 938, "UNKNOWN": 118, "middle_active": 28}
    nan = users.isna().sum()
    assert nan["onehot_feat4"] == 201 and all(74 <= nan[f"onehot_feat{i}"] <= 77 for i in range(12, 18))
    assert users["onehot_feat4"].dtype == np.float64 and users["onehot_feat3"].dtype == np.int64
    card = [users[f"onehot_feat{i}"].nunique() for i in range(12)]
    assert card == [2, 8, 30, 1076, 12, 10, 3, 47, 340, 7, 5, 3]


def test_real_caption_file(side_dir):
    repairs = {}
    cat, caps = read_caption(side_dir / "kuairec_caption_category.csv", repairs)
    assert len(cat) == 10728 and cat["video_id"].tolist() == list(range(10728))
    assert repairs["kuairec_caption_category.bare_cr_inside_text_kept"] == 4
    assert all("\r" in caps.loc[v, "caption"] for v in (1378, 1613, 5910, 6331))
    known = lambda c: cat.loc[cat[c] != schema.MISSING_ID, c].nunique()  # noqa: E731
    assert (known("cat_level1_id"), known("cat_level2_id"), known("cat_level3_id")) == (38, 137, 219)
    missing = [(cat[c] == schema.MISSING_ID).sum() for c in ("cat_level1_id", "cat_level2_id", "cat_level3_id")]
    assert missing == [40, 3583, 6832]
    counts = cat["cat_level1_id"].value_counts().to_dict()
    assert counts == {k: n for k, (_, n) in schema.LEVEL1_CATEGORIES.items()}
    assert caps["topic_tag"].map(len).max() >= 2 and (caps["topic_tag"].map(len) == 0).sum() == 4611


def test_real_item_tags(side_dir):
    tags = read_item_tags(side_dir / "item_categories.csv", {})
    assert len(tags) == 10728
    lens = tags["feat"].map(len)
    assert lens.min() == 1 and lens.max() == 4
    assert min(min(f) for f in tags["feat"]) >= 0 and max(max(f) for f in tags["feat"]) <= 30
