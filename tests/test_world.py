"""Planted worlds: exact raw format, coherent heads, the planted policy, atomic generation."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from datamodules import schema
from datamodules.raw import load_kuairec
from datamodules.world import DEFAULT_W_STAR, TrueHeadModel, ensure_world, load_truth, make_world


def _labels(df: pd.DataFrame) -> np.ndarray:
    r = df["watch_ratio"].to_numpy()
    return np.stack([r >= 1.0, df["play_duration"].to_numpy() >= 10_000, r >= 2.0, r < 0.2], axis=1)


def test_seven_files_with_exact_headers(tiny_world):
    for name, cols in schema.RAW_FILES.items():
        with open(tiny_world / name, encoding="utf-8") as fh:
            assert fh.readline().rstrip("\n") == ",".join(cols), name


def test_types_as_real_files(tiny_world):
    big = pd.read_csv(tiny_world / "big_matrix.csv")
    assert [str(t) for t in big.dtypes] == ["int64"] * 4 + ["str", "int64", "float64", "float64"]
    assert big["time"].str.fullmatch(r"2020-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}").all()
    local = pd.to_datetime(big["timestamp"], unit="s") + pd.Timedelta(hours=8)
    assert (local.dt.strftime("%Y-%m-%d %H:%M:%S") == big["time"].str.slice(0, 19)).all()
    assert np.allclose(big["watch_ratio"], big["play_duration"] / big["video_duration"], rtol=1e-12)
    small = pd.read_csv(tiny_world / "small_matrix.csv")
    assert small["date"].dtype == np.float64 and small["timestamp"].isna().any()  # time-less rows
    users = pd.read_csv(tiny_world / "user_features.csv")
    assert list(users.columns) == schema.USER_COLUMNS and users["onehot_feat4"].dtype == np.float64
    daily = pd.read_csv(tiny_world / "item_daily_features.csv")
    assert daily.shape[1] == 58 and daily["date"].dtype == np.int64
    assert daily.loc[daily["date"] < 20200728, "collect_cnt"].isna().all()
    cap = pd.read_csv(tiny_world / "kuairec_caption_category.csv", lineterminator="\n")
    assert len(cap) == 300 and cap["video_id"].dtype == np.int64
    assert len(pd.read_csv(tiny_world / "kuairec_caption_category.csv")) > 300  # the bare-CR trap is there
    assert set(cap["first_level_category_id"]) <= set(schema.LEVEL1_CATEGORIES)
    miss2 = cap["second_level_category_id"] == schema.MISSING_ID
    assert (cap.loc[miss2, "third_level_category_id"] == schema.MISSING_ID).all()


def test_counts_read_back(tiny_world):
    truth = load_truth(tiny_world)
    raw = load_kuairec(tiny_world)
    assert raw.n_users == truth["n_users"] and raw.n_videos == truth["n_videos"]
    assert len(raw.interactions) == truth["rows"]["big_distinct_events"]
    assert raw.repairs["big_matrix.exact_duplicates_dropped"] == truth["rows"]["big_matrix"] - len(raw.interactions)
    assert 5_000 <= len(raw.interactions) <= 8_000


def test_heads_are_coherent_with_labels(tiny_world, tiny_world_root):
    heads = pd.read_parquet(tiny_world_root / "ground_truth" / "heads.parquet")
    assert list(heads.columns[:7]) == ["user_id", "video_id", "timestamp"] + [f"p_{h}" for h in schema.HEADS]
    raw = load_kuairec(tiny_world)
    hb = heads[heads["matrix"] == "big"]
    m = raw.interactions.merge(hb, on=["user_id", "video_id", "timestamp"], how="left", validate="one_to_one")
    p = m[[f"p_{h}" for h in schema.HEADS]].to_numpy()
    assert not np.isnan(p).any()
    gap = _labels(m).mean(0) - p.mean(0)
    assert np.all(np.abs(gap) < 0.025), gap
    # binned calibration of the complete head: labels follow heads across its range
    bins = pd.qcut(p[:, 0], 4, labels=False)
    y = _labels(m)[:, 0]
    for b in range(4):
        assert abs(y[bins == b].mean() - p[bins == b, 0].mean()) < 0.05
    # the small (dense) matrix too
    small = pd.read_csv(tiny_world / "small_matrix.csv")
    hs = heads[heads["matrix"] == "small"]
    assert len(hs) == len(small)
    assert np.all(np.abs(_labels(small).mean(0) - hs[[f"p_{h}" for h in schema.HEADS]].to_numpy().mean(0)) < 0.06)


def test_true_head_model_reproduces_heads(tiny_world_root):
    model = TrueHeadModel.load(tiny_world_root)
    heads = pd.read_parquet(tiny_world_root / "ground_truth" / "heads.parquet")
    p = model.probs(heads["user_id"].to_numpy(), heads["video_id"].to_numpy(), heads["hour"].to_numpy())
    assert p.shape == (len(heads), 4)
    assert np.allclose(p, heads[[f"p_{h}" for h in schema.HEADS]].to_numpy())
    assert np.allclose(model.w_star, DEFAULT_W_STAR)


def test_policy_shows_high_scores_and_sessions_match_contract(tiny_world, tiny_world_root):
    model = TrueHeadModel.load(tiny_world_root)
    heads = pd.read_parquet(tiny_world_root / "ground_truth" / "heads.parquet")
    hb = heads[heads["matrix"] == "big"].sort_values(["user_id", "timestamp"])
    u, v, h = hb["user_id"].to_numpy(), hb["video_id"].to_numpy(), hb["hour"].to_numpy()
    shown = model.score(u, v, h)
    rand = model.score(u, np.random.default_rng(1).integers(0, len(model.video_duration), len(u)), h)
    explore = float(load_truth(tiny_world_root)["params"].get("explore", 0.0))  # share of random slots, if any
    assert shown.mean() > rand.mean() + (1 - explore) * rand.std() / 2
    # sessions cut at 30 min gaps (CONTRACTS 7) are exactly the generator's sessions; no video repeats per user
    gap = np.diff(hb["timestamp"].to_numpy(), prepend=-np.inf)
    new = (gap > 1800) | (np.diff(u, prepend=-1) != 0)
    sess = pd.Series(new.astype(int)).groupby(u).cumsum().to_numpy()
    assert np.array_equal(sess, hb["session"].to_numpy())
    assert not hb.duplicated(["user_id", "video_id"]).any()
    hours = (np.floor(hb["timestamp"] / 3600).astype(int) + 8) % 24
    first = hb.groupby(["user_id", "session"]).head(1)
    assert np.array_equal(hours[first.index], first["hour"])  # hour = session's first event


def test_weights_change_category_mix(tiny_world, tiny_world_root):
    model = TrueHeadModel.load(tiny_world_root)
    cat = pd.read_csv(tiny_world / "kuairec_caption_category.csv", lineterminator="\n")["first_level_category_id"]
    n_v = len(model.video_duration)
    uu, vv = np.repeat(np.arange(80), n_v), np.tile(np.arange(n_v), 80)
    p = model.probs(uu, vv, np.full(len(uu), 20))
    mixes = []
    for w in ([1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, -1]):
        s = (p @ np.array(w, float)).reshape(80, n_v)
        top = np.argsort(-s, axis=1)[:, :20].ravel()
        mixes.append(cat.to_numpy()[top])
    tv = [0.5 * np.abs(pd.Series(a).value_counts(normalize=True).sub(
        pd.Series(b).value_counts(normalize=True), fill_value=0)).sum() for a, b in
        [(mixes[0], mixes[1]), (mixes[0], mixes[2]), (mixes[1], mixes[2])]]
    assert min(tv) > 0.1, tv


def test_w_star_and_atomic_regeneration(tmp_path):
    data = make_world(tmp_path / "w", size="tiny", seed=3, w_star=[2, 1, 1, -1])
    truth = load_truth(data.parents[1])
    assert truth["seed"] == 3 and np.allclose(truth["w_star"], [0.4, 0.2, 0.2, -0.2])
    stamp = (data / "big_matrix.csv").stat().st_mtime_ns
    data2 = make_world(tmp_path / "w", size="tiny", seed=4)  # replaces the world in place
    assert load_truth(data2)["seed"] == 4 and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert (data2 / "big_matrix.csv").stat().st_mtime_ns != stamp
    with pytest.raises(ValueError):
        make_world(tmp_path / "bad", size="tiny", w_star=[1, 2, 3])
    assert not (tmp_path / "bad").exists()


def test_ensure_world_generates_once(tmp_path):
    d1 = ensure_world("tiny", seed=1, root=tmp_path)
    assert d1 == tmp_path / "tiny-seed1" / "KuaiRec 2.0" / "data"
    stamp = (d1 / "big_matrix.csv").stat().st_mtime_ns
    assert ensure_world("tiny", seed=1, root=tmp_path) == d1
    assert (d1 / "big_matrix.csv").stat().st_mtime_ns == stamp
    assert json.loads((tmp_path / "tiny-seed1" / "ground_truth" / "truth.json").read_text())["size"] == "tiny"


def test_world_marginals_match_facts(tiny_world):
    from experiments.world_vs_facts import facts_table

    df = facts_table(tiny_world)
    # a tiny world's users see a quarter of its 300 videos, so its watch ratios run lower than the real ones
    loose = df["fact"].str.contains("watch_ratio|play_duration") | df["fact"].str.startswith("users:")
    df.loc[loose, "tol"] *= 2
    bad = df[(df["world"] - df["real"]).abs() > df["tol"]]
    assert bad.empty, bad.to_string()


def test_side_dir_mode(side_dir, tmp_path):
    """Real side files (cut to 200 users / 2,000 videos to stay fast, keeping two bare-CR captions)."""
    from datamodules.world import SIZES

    cut = tmp_path / "side"
    cut.mkdir()
    for name, n in (("user_features.csv", 200), ("item_categories.csv", 2000), ("kuairec_caption_category.csv", 2000)):
        lines = (side_dir / name).read_bytes().split(b"\n")
        (cut / name).write_bytes(b"\n".join(lines[: n + 1]) + b"\n")
    SIZES["side-test"] = dict(n_users=0, n_videos=0, rows_per_user=30, min_rows=5, small_users=10, small_videos=40)
    try:
        data = make_world(tmp_path / "w", size="side-test", seed=0, side_dir=cut)
    finally:
        del SIZES["side-test"]
    for f in ("user_features.csv", "item_categories.csv", "kuairec_caption_category.csv"):
        assert (data / f).read_bytes() == (cut / f).read_bytes()
    raw = load_kuairec(data)
    assert (raw.n_users, raw.n_videos) == (200, 2000)
    assert raw.repairs["kuairec_caption_category.bare_cr_inside_text_kept"] == 2
    assert raw.interactions["user_id"].nunique() == 200


def test_ensure_world_regenerates_a_world_of_an_older_generator(tmp_path):
    """A world on disk made by an older generator (or with other params) is not reused silently: ensure_world
    regenerates it in place; a current one is reused as is."""
    import json

    from datamodules.world import GENERATOR_VERSION, ensure_world

    data = ensure_world("tiny", seed=4, root=tmp_path)
    truth_file = data.parents[1] / "ground_truth" / "truth.json"
    big = data / "big_matrix.csv"
    assert json.loads(truth_file.read_text())["generator_version"] == GENERATOR_VERSION
    stamp = big.stat().st_mtime_ns
    assert ensure_world("tiny", seed=4, root=tmp_path) == data and big.stat().st_mtime_ns == stamp  # reused

    for change in ({"generator_version": GENERATOR_VERSION - 1}, {"params": {"explore": 0.0}}):
        truth = json.loads(truth_file.read_text())
        truth.update(change)
        truth_file.write_text(json.dumps(truth))
        big.write_text("stale")                         # what an old generator left
        assert ensure_world("tiny", seed=4, root=tmp_path) == data
        fresh = json.loads(truth_file.read_text())
        assert fresh["generator_version"] == GENERATOR_VERSION and fresh["params"]["explore"] == 0.25
        assert big.read_text().startswith("user_id,video_id")
