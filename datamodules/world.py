"""Planted synthetic worlds: KuaiRec 2.0-shaped folders whose serving policy ranks by true heads @ w_star.

Why: the estimator must be tested where the answer is known. `make_world` writes the seven raw CSV files exactly
like a real download (see ../shared/DATA_FACTS.md) plus `ground_truth/` (w_star, true heads per row, the true head
model). Outcomes are drawn from a per-(user, video, hour) mixture and the four heads are its closed-form event
probabilities, so empirical label rates match the heads (CONTRACTS section 7 labels):
  with prob pi the user skips: watch_ratio ~ U(0, 0.2); otherwise log(watch_ratio) ~ Logistic(mu, sigma)
(logistic rather than normal: same shape, heavier tails like the real ratios, and a CDF (expit) that is cheap
enough to score the whole catalog for every user at kuairec size).
`hour` is the Beijing hour of the session's first event (the serving context); every row of a session uses it.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from scipy.special import expit

from datamodules import schema

log = logging.getLogger(__name__)
DEFAULT_W_STAR = (0.35, 0.25, 0.15, -0.25)
PROJECT_ROOT = Path(__file__).resolve().parents[1]
DATA_SUBDIR = Path("KuaiRec 2.0") / "data"
TRUTH_SUBDIR = "ground_truth"
BEIJING = np.timedelta64(8, "h")
LOG2, LOG02 = float(np.log(2.0)), float(np.log(0.2))
SKIP_MAX_RATIO = 0.2
LONG_MS = 10_000.0

# Collection windows of big_matrix (Beijing dates, inclusive) and the small matrix's span.
BIG_WINDOWS = (("2020-07-05", "2020-07-12"), ("2020-08-01", "2020-08-10"), ("2020-08-27", "2020-09-05"))
SMALL_SPAN = ("2020-07-05", "2020-09-05")

SIZES: dict[str, dict] = {
    # rows_per_user: mean distinct big rows per user; small block = users x videos of the dense small matrix.
    "tiny": dict(n_users=80, n_videos=300, rows_per_user=75, min_rows=10, small_users=16, small_videos=40),
    "small": dict(n_users=1000, n_videos=1500, rows_per_user=150, min_rows=20, small_users=100, small_videos=200),
    # medium: KuaiRec's data per video (~1,000 rows; real: 1,168) on the small world's catalog
    "medium": dict(n_users=3000, n_videos=1500, rows_per_user=500, min_rows=50, small_users=300, small_videos=300),
    "kuairec": dict(n_users=7176, n_videos=10728, rows_per_user=1620, min_rows=100, small_users=1411,
                    small_videos=3327),
}

assert tuple(SIZES) == schema.WORLD_SIZES
# Bump when the generator's output changes for the same (size, seed, w*, params): ensure_world then regenerates
# worlds made by an older generator instead of silently reusing them.
GENERATOR_VERSION = 2

DEFAULT_PARAMS: dict = dict(
    # watch-ratio mixture: mu = mu0 + traits + beta_dur*(log dur - logdur_ref) + hour; logistic scale
    # exp(log_sigma0 + spread); skip logit skip0 + traits - skip_aff*affinity - hour_skip*hour
    latent_dim=4, mu0=-0.6, beta_dur=-0.35, logdur_ref=9.2, log_sigma0=-1.05, skip0=-1.6, skip_aff=0.8,
    hour_amp=0.08, hour_skip=1.0, trait_scale=0.5, spread_scale=1.2,
    # serving policy: Gumbel noise scale on probs @ w_star; session length K ~ round(lognormal), 1..max
    policy_noise=0.02, session_len_logmean=2.7, session_len_logsd=0.8, max_session_len=200,
    # exploration: each shown slot is, with this probability, a uniformly random unseen video instead of the
    # policy's pick (real platforms explore; without it most of the catalog is never shown and no head model
    # can learn the heads of the videos the estimator must rank)
    explore=0.25,
    # logging artefacts of the real files
    dup_fraction=0.0772, small_timeless_fraction=0.0389, small_missing_fraction=0.004, date_lag_minutes=2,
    duration_jitter_fraction=0.02,
)
# Hour effect on mu: a smooth evening peak, constant over 4-hour dayparts (6 levels; keeps the policy cheap).
_DAYPART_CURVE = np.cos(2 * np.pi * (np.arange(24) // 4 * 4 + 2 - 21) / 24)


# --------------------------------------------------------------------------------------------------------------
# True head model
# --------------------------------------------------------------------------------------------------------------
@dataclass
class TrueHeadModel:
    """The planted heads: probs(user, video, hour) -> [N, 4] in HEADS order; policy score = probs @ w_star."""

    user_factors: np.ndarray   # [U, d]
    user_bias: np.ndarray      # [U] shift of mu
    user_skip: np.ndarray      # [U] shift of the skip logit
    video_factors: np.ndarray  # [V, d]
    video_quality: np.ndarray  # [V] shift of mu
    video_spread: np.ndarray   # [V] log-sigma shift
    video_skip: np.ndarray     # [V] skip logit shift
    video_duration: np.ndarray  # [V] int64 ms (the duration written to the matrices)
    hour_effect: np.ndarray    # [24] shift of mu by Beijing hour
    params: dict
    w_star: np.ndarray = field(default_factory=lambda: np.array(DEFAULT_W_STAR))

    _ARRAYS = ("user_factors", "user_bias", "user_skip", "video_factors", "video_quality", "video_spread",
               "video_skip", "video_duration", "hour_effect", "w_star")

    def components(self, user_id, video_id, hour):
        """mu, sigma (logistic scale), pi (skip probability), duration (ms) of the watch-ratio mixture."""
        p = self.params
        u, v, h = np.asarray(user_id), np.asarray(video_id), np.asarray(hour)
        aff = np.einsum("...d,...d->...", self.user_factors[u], self.video_factors[v])
        dur = self.video_duration[v].astype(np.float64)
        he = self.hour_effect[h]
        mu = (p["mu0"] + self.video_quality[v] + self.user_bias[u] + aff
              + p["beta_dur"] * (np.log(dur) - p["logdur_ref"]) + he)
        sigma = np.exp(p["log_sigma0"] + self.video_spread[v])
        pi = expit(p["skip0"] + self.video_skip[v] + self.user_skip[u] - p["skip_aff"] * aff - p["hour_skip"] * he)
        return mu, sigma, pi, dur

    @staticmethod
    def heads_from(mu, sigma, pi, dur) -> np.ndarray:
        """Closed-form P(complete), P(long), P(rewatch), P(neg) of the mixture (labels of CONTRACTS 7)."""
        keep = 1.0 - pi
        p_complete = keep * expit(mu / sigma)
        p_rewatch = keep * expit((mu - LOG2) / sigma)
        p_neg = pi + keep * expit((LOG02 - mu) / sigma)
        skip_long = np.clip(1.0 - LONG_MS / (SKIP_MAX_RATIO * dur), 0.0, 1.0)
        p_long = pi * skip_long + keep * expit((mu - np.log(LONG_MS / dur)) / sigma)
        return np.stack([p_complete, p_long, p_rewatch, p_neg], axis=-1)

    def probs(self, user_id, video_id, hour) -> np.ndarray:
        """True head probabilities, float64 [N, 4] (complete, long, rewatch, neg)."""
        return self.heads_from(*self.components(user_id, video_id, hour))

    def score(self, user_id, video_id, hour) -> np.ndarray:
        """The serving policy's noiseless score probs @ w_star."""
        return self.probs(user_id, video_id, hour) @ self.w_star

    def save(self, truth_dir: Path) -> None:
        np.savez_compressed(Path(truth_dir) / "true_heads.npz", **{k: getattr(self, k) for k in self._ARRAYS})

    @classmethod
    def load(cls, world_root) -> "TrueHeadModel":
        """Load from a world root, its data folder, or its ground_truth folder."""
        truth_dir = _find_truth_dir(world_root)
        if truth_dir is None:
            raise FileNotFoundError(f"no {TRUTH_SUBDIR}/true_heads.npz at or above {world_root}")
        arrays = dict(np.load(truth_dir / "true_heads.npz"))
        params = json.loads((truth_dir / "truth.json").read_text())["params"]
        return cls(params=params, **arrays)


def _find_truth_dir(path) -> Path | None:
    p = Path(path).resolve()
    for cand in [p, *p.parents][:4]:
        for d in (cand, cand / TRUTH_SUBDIR):
            if (d / "truth.json").is_file() and d.name == TRUTH_SUBDIR:
                return d
    return None


def load_truth(world_root_or_data_dir) -> dict | None:
    """The ground truth dict (w_star, seed, size, params, ...) of a planted world, or None for real data."""
    d = _find_truth_dir(world_root_or_data_dir)
    if d is None:
        return None
    truth = json.loads((d / "truth.json").read_text())
    truth["truth_dir"] = str(d)
    return truth


# --------------------------------------------------------------------------------------------------------------
# Side tables: users, categories, tags, social network
# --------------------------------------------------------------------------------------------------------------
def _alloc(n: int, weights) -> np.ndarray:
    """Largest-remainder integer allocation of n over weights (exact mixes even for tiny worlds)."""
    w = np.asarray(weights, dtype=np.float64)
    raw = n * w / w.sum()
    out = np.floor(raw).astype(np.int64)
    out[np.argsort(-(raw - out), kind="stable")[: n - out.sum()]] += 1
    return out


def _shuffled_labels(rng, n, labels, weights) -> np.ndarray:
    arr = np.repeat(np.asarray(labels, dtype=object), _alloc(n, weights))
    return arr[rng.permutation(n)]


_CHARS = np.array(list("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产"
                       "种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把"
                       "性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第"
                       "向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特"
                       "件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南"
                       "给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权收证改清美再采转更单风切打白"
                       "教速花带安场身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今集温传土许步群广石"
                       "记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连断深难近矿千周委素技备半办青省列习响约支般"
                       "史感劳便团往酸历市克何除消构府称太准精值号率族维划选标写存候毛亲快效斯院查江型眼王按格养易置派层片始却专状"
                       "育厂京识适属圆包火住调满县局照参红细引听该铁价严"))


def _text(rng, n, lo, hi) -> np.ndarray:
    lens = rng.integers(lo, hi + 1, n)
    flat = _CHARS[rng.integers(0, len(_CHARS), lens.sum())]
    cuts = np.cumsum(lens)[:-1]
    return np.array(["".join(s) for s in np.split(flat, cuts)], dtype=object)


def make_categories(rng, n_videos: int) -> pd.DataFrame:
    """Caption file (10 columns): level-1 mix of the real file, level 2/3 nested, -124/UNKNOWN markers."""
    l1_ids = np.array(list(schema.LEVEL1_CATEGORIES), dtype=np.int64)
    l1_counts = np.array([c for _, c in schema.LEVEL1_CATEGORIES.values()], dtype=np.float64)
    l1 = _shuffled_labels(rng, n_videos, l1_ids, l1_counts).astype(np.int64)
    # Level-2/3 taxonomy nested under level 1 (ids in the real ranges 110..749 and 1051..2676).
    l2_pool = rng.permutation(np.arange(110, 750))
    l3_pool = rng.permutation(np.arange(1051, 2677))
    tax2: dict[int, list[int]] = {}
    tax3: dict[int, list[int]] = {}
    i2 = i3 = 0
    for k in l1_ids[l1_ids != schema.MISSING_ID]:
        n2 = int(rng.integers(1, 8))
        tax2[int(k)] = [int(x) for x in l2_pool[i2:i2 + n2]]
        i2 += n2
        for c2 in tax2[int(k)]:
            n3 = int(rng.choice(4, p=[0.15, 0.35, 0.3, 0.2]))
            tax3[c2] = [int(x) for x in l3_pool[i3:i3 + n3]]
            i3 += n3
    name2 = {c: n for c, n in zip(l2_pool[:i2], _text(rng, i2, 2, 5))}
    name3 = {c: n for c, n in zip(l3_pool[:i3], _text(rng, i3, 2, 4))}
    l2 = np.full(n_videos, schema.MISSING_ID, np.int64)
    l3 = np.full(n_videos, schema.MISSING_ID, np.int64)
    u2, u3 = rng.random(n_videos), rng.random(n_videos)
    for i in np.flatnonzero(l1 != schema.MISSING_ID):
        if u2[i] < 0.3315:  # 3,543 of 10,688 known level-1 videos lack level 2
            continue
        l2[i] = tax2[int(l1[i])][int(u2[i] * 1e6) % len(tax2[int(l1[i])])]
        opts = tax3[int(l2[i])]
        if opts and u3[i] >= 0.36:  # with 15% of level-2 ids lacking level 3: 3,249 of 7,145 videos lack it
            l3[i] = opts[int(u3[i] * 1e6) % len(opts)]
    names1 = {k: n for k, (n, _) in schema.LEVEL1_CATEGORIES.items()}
    unk = "UNKNOWN"
    cover = np.where(rng.random(n_videos) < 0.624, unk, _text(rng, n_videos, 3, 14))
    caption = _text(rng, n_videos, 4, 40).astype(object)
    caption[rng.random(n_videos) < 0.126] = ""
    comma = rng.random(n_videos) < 0.05
    caption[comma] = [c[: len(c) // 2] + "，" + "," + c[len(c) // 2:] for c in caption[comma]]
    ntag = np.where(_shuffled_labels(rng, n_videos, [0, 1], [4611, 6117]) == 0, 0, rng.integers(1, 6, n_videos))
    tags = _text(rng, int(ntag.sum()), 2, 8)
    cuts = np.cumsum(ntag)[:-1]
    topic = np.array(["[" + ",".join(t) + "]" for t in np.split(tags, cuts)], dtype=object)
    return pd.DataFrame({
        "video_id": np.arange(n_videos, dtype=np.int64), "manual_cover_text": cover, "caption": caption,
        "topic_tag": topic,
        "first_level_category_id": l1, "first_level_category_name": [names1[int(k)] for k in l1],
        "second_level_category_id": l2,
        "second_level_category_name": [name2.get(int(k), unk) for k in l2],
        "third_level_category_id": l3,
        "third_level_category_name": [name3.get(int(k), unk) for k in l3],
    })[schema.CAPTION_COLUMNS]


def make_item_tags(rng, categories: pd.DataFrame) -> pd.DataFrame:
    """item_categories.csv: 1-4 tag ids in 0..30 per video, first tag tied to level-1 category."""
    n = len(categories)
    l1 = categories["first_level_category_id"].to_numpy()
    first = np.where(l1 > 0, l1 % 31, rng.integers(0, 31, n))
    k = np.repeat(np.arange(1, 5), _alloc(n, [8970, 1562, 185, 11]))[rng.permutation(n)]
    others = np.argsort(rng.random((n, 30)), axis=1)[:, :3]  # distinct offsets 1..30 from the first tag
    feats = ["[" + ", ".join(str(int(t)) for t in [first[i], *((first[i] + 1 + others[i, : k[i] - 1]) % 31)]) + "]"
             for i in range(n)]
    return pd.DataFrame({"video_id": categories["video_id"].to_numpy(), "feat": feats})


_RANGES = {
    "follow_user_num": ([0, 1, 11, 51, 101, 151, 251, 501],
                        ["0", "(0,10]", "(10,50]", "(50,100]", "(100,150]", "(150,250]", "(250,500]", "500+"]),
    "fans_user_num": ([0, 1, 10, 100, 1000, 5000, 10000],
                      ["0", "[1,10)", "[10,100)", "[100,1k)", "[1k,5k)", "[5k,1w)", "[1w,10w)"]),
    "friend_user_num": ([0, 1, 5, 30, 60, 120, 250],
                        ["0", "[1,5)", "[5,30)", "[30,60)", "[60,120)", "[120,250)", "250+"]),
    "register_days": ([0, 31, 61, 91, 181, 366, 731],
                      ["15-30", "31-60", "61-90", "91-180", "181-365", "366-730", "730+"]),
}
_ONEHOT_CARD = [2, 8, 30, 1076, 12, 10, 3, 47, 340, 7, 5, 3]
_ONEHOT_BIN_P = [0.299, 0.105, 0.095, 0.0186, 0.0179, 0.0145]


def make_users(rng, n_users: int) -> pd.DataFrame:
    """user_features.csv (31 columns) with the real marginals, NaNs in onehot_feat4 and 12..17."""
    df = pd.DataFrame({"user_id": np.arange(n_users, dtype=np.int64)})
    df["user_active_degree"] = _shuffled_labels(rng, n_users,
                                                ["full_active", "high_active", "UNKNOWN", "middle_active"],
                                                [6092, 938, 118, 28])
    df["is_lowactive_period"] = (rng.random(n_users) < 0.0004).astype(np.int64)
    df["is_live_streamer"] = (rng.random(n_users) < 0.0068).astype(np.int64)
    df["is_video_author"] = (rng.random(n_users) < 0.17).astype(np.int64)
    nums = {
        "follow_user_num": np.clip(np.round(np.exp(rng.normal(np.log(33), 2.0, n_users))), 0, 2100),
        "fans_user_num": np.where(rng.random(n_users) < 0.3, 0, np.maximum(1, np.round(np.exp(
            rng.normal(np.log(4), 1.5, n_users))))),
        "friend_user_num": np.where(rng.random(n_users) < 0.6, 0, np.maximum(1, np.round(np.exp(
            rng.normal(np.log(3), 1.2, n_users))))),
        "register_days": np.clip(np.round(np.exp(rng.normal(np.log(225), 0.65, n_users))), 15, 2245),
    }
    for col, vals in nums.items():
        edges, labels = _RANGES[col]
        idx = np.searchsorted(edges, vals, side="right") - 1
        off = rng.random(n_users) < 0.04  # the real file's range columns disagree with the numbers for hundreds
        idx[off] = np.clip(idx[off] + rng.choice([-1, 1], off.sum()), 0, len(labels) - 1)
        df[col] = vals.astype(np.int64)
        df[f"{col}_range"] = np.asarray(labels, dtype=object)[idx]
    for i, card in enumerate(_ONEHOT_CARD):
        z = rng.zipf(1.6, n_users) - 1 if card > 12 else rng.geometric(0.55, n_users) - 1
        vals = (z + rng.integers(0, card, n_users) * (rng.random(n_users) < 0.6)) % card
        df[f"onehot_feat{i}"] = vals.astype(np.int64)
    nan4 = rng.random(n_users) < 201 / 7176
    df["onehot_feat4"] = pd.array(np.where(nan4, np.nan, df["onehot_feat4"]), dtype="Int64")
    nan_bin = rng.random(n_users) < 74 / 7176
    for j, p in enumerate(_ONEHOT_BIN_P):
        extra = rng.random(n_users) < (3 / 7176 if j < 3 else 0.0)
        vals = (rng.random(n_users) < p).astype(np.float64)
        vals[nan_bin | extra] = np.nan
        df[f"onehot_feat{12 + j}"] = pd.array(vals, dtype="Int64")  # written as 0/1 or empty, read back as float
    return df[schema.USER_COLUMNS]


def make_social(rng, n_users: int) -> pd.DataFrame:
    """social_network.csv: ~6.6% of users with 1-5 friends, lists written like [4202, 7126]."""
    users = np.sort(rng.choice(n_users, max(1, round(n_users * 472 / 7176)), replace=False))
    lists = []
    for u in users:
        k = int(min(rng.integers(1, 6), n_users - 1))
        fr = rng.choice(np.setdiff1d(np.arange(n_users), [u]), k, replace=False)
        lists.append("[" + ", ".join(str(int(f)) for f in fr) + "]")
    return pd.DataFrame({"user_id": users.astype(np.int64), "friend_list": lists})


# --------------------------------------------------------------------------------------------------------------
# Planted model, serving policy, outcomes
# --------------------------------------------------------------------------------------------------------------
def make_model(rng, categories: pd.DataFrame, n_users: int, w_star, params: dict) -> TrueHeadModel:
    """Latent traits with level-1 category means, so heads (and w) favour visibly different category mixes."""
    n_videos, d = len(categories), params["latent_dim"]
    _, ci = np.unique(categories["first_level_category_id"].to_numpy(), return_inverse=True)
    n_cat = ci.max() + 1
    ts = params["trait_scale"]  # heterogeneity of the mu / skip / spread traits (not of durations)
    center = rng.normal(0, 0.4, (n_cat, d)) * np.sqrt(ts)
    cat_q, cat_r = rng.normal(0, 0.3 * ts, n_cat), rng.normal(0, 0.3 * params["spread_scale"], n_cat)
    cat_z, cat_dur = rng.normal(0, 0.7 * ts, n_cat), rng.normal(0, 0.2, n_cat)
    cat_tail = rng.uniform(0.02, 0.25, n_cat)
    logdur = 9.17 + cat_dur[ci] + rng.normal(0, 0.25, n_videos)
    tail = rng.random(n_videos) < cat_tail[ci]
    logdur[tail] += 0.4 + np.abs(rng.normal(0, 1.0, tail.sum()))
    return TrueHeadModel(
        user_factors=rng.normal(0, 0.4, (n_users, d)) * np.sqrt(ts),
        user_bias=rng.normal(0, 0.25, n_users),
        user_skip=rng.normal(0, 0.5, n_users),
        video_factors=center[ci] + rng.normal(0, 0.3, (n_videos, d)) * np.sqrt(ts),
        video_quality=cat_q[ci] + rng.normal(0, 0.25 * ts, n_videos),
        video_spread=cat_r[ci] + rng.normal(0, 0.15 * params["spread_scale"], n_videos),
        video_skip=cat_z[ci] + rng.normal(0, 0.4 * ts, n_videos),
        video_duration=np.clip(np.round(np.exp(logdur)), 140, 315_072).astype(np.int64),
        hour_effect=params["hour_amp"] * _DAYPART_CURVE,
        params=params,
        w_star=np.asarray(w_star, dtype=np.float64),
    )


def draw_play(rng, mu, sigma, pi, dur) -> np.ndarray:
    """play_duration (int ms) from the mixture; floor keeps ratio>=1, >=2 and play>=10 s exact label events."""
    skip = rng.random(len(mu)) < pi
    u = np.clip(rng.random(len(mu)), 1e-12, 1 - 1e-12)
    ratio = np.where(skip, rng.random(len(mu)) * SKIP_MAX_RATIO, np.exp(mu + sigma * np.log(u / (1 - u))))
    return np.floor(np.minimum(ratio, 5000.0) * dur).astype(np.int64)


_HOUR_W = np.array([3, 2, 1.2, .8, .6, .7, 1.2, 2, 3, 3.5, 4, 4.5, 5.5, 5.5, 4.5, 4.5, 4.5, 5, 5.5, 6.5, 7, 7, 6.5, 5])
_MS_MIN = 60_000


def _epoch_ms(day: str) -> int:
    """Unix ms of Beijing midnight of a 'YYYY-MM-DD' day."""
    return int((np.datetime64(day, "ms") - BEIJING).astype(np.int64))


def _window_days(windows) -> np.ndarray:
    return np.concatenate([np.arange(_epoch_ms(a), _epoch_ms(b) + 1, 86_400_000) for a, b in windows])


def _beijing_hour(ms) -> np.ndarray:
    return ((np.asarray(ms) // 3_600_000 + 8) % 24).astype(np.int64)


def policy_scores(model: TrueHeadModel, users: np.ndarray, hour: int) -> np.ndarray:
    """probs @ w_star for users x all videos at one hour, float32 [n, V] (a fast path of TrueHeadModel.probs)."""
    p = model.params
    f32 = np.float32
    dur = model.video_duration.astype(np.float64)
    he = float(model.hour_effect[hour])
    aff = (model.user_factors[users] @ model.video_factors.T).astype(f32)
    mu = aff + (p["mu0"] + model.video_quality + p["beta_dur"] * (np.log(dur) - p["logdur_ref"]) + he).astype(f32)
    mu += model.user_bias[users, None].astype(f32)
    inv_sigma = np.exp(-(p["log_sigma0"] + model.video_spread)).astype(f32)
    logit = (p["skip0"] + model.video_skip - p["hour_skip"] * he).astype(f32) + \
        model.user_skip[users, None].astype(f32) - f32(p["skip_aff"]) * aff
    pi = expit(logit)
    keep = 1 - pi
    w = model.w_star.astype(f32)
    skip_long = np.clip(1.0 - LONG_MS / (SKIP_MAX_RATIO * dur), 0.0, 1.0).astype(f32)
    s = keep * (w[0] * expit(mu * inv_sigma) + w[2] * expit((mu - f32(LOG2)) * inv_sigma)
                + w[1] * expit((mu - np.log(LONG_MS / dur).astype(f32)) * inv_sigma)
                + w[3] * expit((f32(LOG02) - mu) * inv_sigma))
    s += pi * (w[1] * skip_long + w[3])
    return s


def _plan_sessions(rng, cfg: dict, params: dict, avail: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Session lengths K [U, S] (0 = none) and planned start times (unix ms) per user."""
    n_users = len(avail)
    mult = np.clip(rng.normal(1.0, 0.5, n_users), 0.06, None)
    target = np.minimum((0.8 * avail).astype(int), np.maximum(cfg["min_rows"], np.round(cfg["rows_per_user"] * mult)))
    ks_list = []
    for t in target.astype(int):
        ks = np.clip(np.round(np.exp(rng.normal(params["session_len_logmean"], params["session_len_logsd"],
                                                  t // 4 + 8))), 1, params["max_session_len"]).astype(np.int64)
        ks = ks[: np.searchsorted(np.cumsum(ks), t) + 1]
        ks[-1] -= max(0, ks.sum() - t)
        ks_list.append(ks[ks > 0])
    n_s = max(len(k) for k in ks_list)
    ks = np.zeros((n_users, n_s), np.int64)
    for u, k in enumerate(ks_list):
        ks[u, : len(k)] = k
    days = _window_days(BIG_WINDOWS)
    planned = (rng.choice(days, ks.shape) + rng.choice(24, ks.shape, p=_HOUR_W / _HOUR_W.sum()) * 3_600_000
               + rng.integers(0, 3_600_000, ks.shape))
    planned = np.where(ks > 0, planned, np.iinfo(np.int64).max)
    return ks, np.sort(planned, axis=1)


def _explore(rng, idx: np.ndarray, key: np.ndarray, k: np.ndarray, explore: float) -> np.ndarray:
    """Replace a Binomial(K, explore) share of each session's policy picks by uniformly random unseen videos.

    idx [n, kmax]: the policy's ranked picks (first k[i] valid); key: finite for unseen videos. The policy keeps
    its best K - E picks; the E explored videos are drawn without replacement from the other unseen videos; the
    session's order is then shuffled so that explored videos are not always last."""
    n, kmax = idx.shape
    e = rng.binomial(k, explore)
    rows = np.arange(n)[:, None]
    u = rng.random(key.shape, dtype=np.float32)
    u[~np.isfinite(key)] = np.inf  # seen or blocked
    keep = np.arange(kmax)[None, :] < (k - e)[:, None]
    u[np.broadcast_to(rows, idx.shape)[keep], idx[keep]] = np.inf  # the policy's kept picks
    emax = int(e.max()) if len(e) else 0
    out = idx.copy()
    if emax > 0:
        ex = np.argpartition(u, emax - 1, axis=1)[:, :emax]
        ex = np.take_along_axis(ex, np.argsort(np.take_along_axis(u, ex, 1), axis=1, kind="stable"), 1)
        slot = np.arange(kmax)[None, :] - (k - e)[:, None]  # position among the explored slots
        take = (slot >= 0) & (slot < e[:, None])
        out[take] = ex[np.nonzero(take)[0], slot[take]]
    valid = np.arange(kmax)[None, :] < k[:, None]
    perm = np.argsort(np.where(valid, rng.random(idx.shape), np.inf), axis=1, kind="stable")
    return np.take_along_axis(out, perm, 1)


def serve_big(rng, model: TrueHeadModel, cfg: dict, params: dict, small_users: np.ndarray,
              small_videos: np.ndarray, chunk: int = 512) -> dict:
    """Sessions per user: rank unseen videos by probs @ w_star + Gumbel noise, show the top K, draw outcomes.

    Vectorised over users: step j serves every user's j-th session at once. Top-K of s + beta*Gumbel equals
    bottom-K of Exp(1) * exp((max s - s) / beta) (exponent clamped at 80: such videos are never shown anyway).
    """
    beta = float(params["policy_noise"])
    if beta <= 0:
        raise ValueError("policy_noise must be > 0")
    explore = float(params.get("explore", 0.0))
    if not 0.0 <= explore < 1.0:
        raise ValueError("explore must be in [0, 1)")
    n_users, n_videos = len(model.user_bias), len(model.video_duration)
    blocked = np.zeros(n_users, bool)
    blocked[small_users] = True
    ks, planned = _plan_sessions(rng, cfg, params, n_videos - blocked * len(small_videos))
    out = {k: [] for k in ("user_id", "video_id", "play_duration", "ts_ms", "hour", "session")}
    cols = np.arange(params["max_session_len"])
    for c0 in range(0, n_users, chunk):
        log.info("serving users %d..%d of %d", c0, min(c0 + chunk, n_users), n_users)
        us = np.arange(c0, min(c0 + chunk, n_users))
        n = len(us)
        wgt = np.empty((n, 6, n_videos), np.float32)
        for part in range(6):
            s = policy_scores(model, us, 4 * part + 2)
            wgt[:, part] = np.exp(np.minimum((s.max(1, keepdims=True) - s) / np.float32(beta), 80.0))
        wgt[np.ix_(blocked[us], np.arange(6), small_videos)] = np.inf  # shown or blocked: never again
        n_seen = blocked[us] * len(small_videos)
        prev_end = np.full(n, -1e18)
        for j in range(ks.shape[1]):
            act = np.flatnonzero(ks[us, j] > 0)
            if not len(act):
                break
            k = np.minimum(ks[us[act], j], n_videos - n_seen[act])
            t0 = np.maximum(planned[us[act], j], prev_end[act] + 31 * _MS_MIN
                            + rng.exponential(40 * _MS_MIN, len(act))).astype(np.int64)
            hour = _beijing_hour(t0)
            key = rng.standard_exponential((len(act), n_videos), dtype=np.float32)
            with np.errstate(invalid="ignore"):  # inf for seen videos (nan for a 0 draw): sorts last either way
                key *= wgt[act, hour // 4]
            kmax = int(k.max())
            idx = np.argpartition(key, kmax - 1, axis=1)[:, :kmax]
            idx = np.take_along_axis(idx, np.argsort(np.take_along_axis(key, idx, 1), axis=1, kind="stable"), 1)
            if explore > 0:
                idx = _explore(rng, idx, key, k, explore)
            valid = cols[None, :kmax] < k[:, None]
            ru, rv = np.repeat(act, k), idx[valid]
            wgt[ru, :, rv] = np.inf
            n_seen[act] += k
            rh = np.repeat(hour, k)
            play = draw_play(rng, *model.components(us[ru], rv, rh))
            step = np.minimum(play, 28 * _MS_MIN) + (1000 + rng.exponential(4000, len(play))).astype(np.int64)
            brk = rng.random(len(play)) < 0.04
            step[brk] += rng.integers(5 * _MS_MIN + 30_000, 25 * _MS_MIN, brk.sum())
            step2 = np.zeros(valid.shape, np.int64)
            step2[valid] = step
            times = t0[:, None] + np.cumsum(step2, axis=1) - step2
            prev_end[act] = t0 + step2.sum(1)
            for name, val in (("user_id", us[ru]), ("video_id", rv), ("play_duration", play),
                              ("ts_ms", times[valid]), ("hour", rh), ("session", np.full(len(rv), j + 1))):
                out[name].append(val)
    ev = {k: np.concatenate(v).astype(np.int64) for k, v in out.items()}
    order = np.lexsort((ev["ts_ms"], ev["user_id"]))
    return {k: v[order] for k, v in ev.items()}


def serve_small(rng, model: TrueHeadModel, users: np.ndarray, videos: np.ndarray, params: dict) -> dict:
    """Dense small block: outcomes for (almost) every pair, times spread over the span, hour = row's own hour."""
    uu, vv = (a.ravel() for a in np.meshgrid(users, videos, indexing="ij"))
    keep = rng.random(len(uu)) >= params["small_missing_fraction"]
    uu, vv = uu[keep], vv[keep]
    lo, hi = _epoch_ms(SMALL_SPAN[0]), _epoch_ms(SMALL_SPAN[1]) + 86_400_000
    ts = rng.integers(lo, hi, len(uu))
    order = np.lexsort((ts, uu))
    uu, vv, ts = uu[order], vv[order], ts[order]
    hour = _beijing_hour(ts)
    mu, sigma, pi, dur = model.components(uu, vv, hour)
    play = draw_play(rng, mu, sigma, pi, dur)
    timeless = rng.random(len(uu)) < params["small_timeless_fraction"]
    return dict(user_id=uu, video_id=vv, play_duration=play, ts_ms=ts, hour=hour,
                session=np.zeros(len(uu), np.int64), timeless=timeless)


# --------------------------------------------------------------------------------------------------------------
# Item daily features
# --------------------------------------------------------------------------------------------------------------
def make_item_daily(rng, model: TrueHeadModel, categories: pd.DataFrame) -> pd.DataFrame:
    """item_daily_features.csv: 58 columns, one row per (video, date); static columns repeat per video."""
    n = len(categories)
    start, end = np.datetime64("2020-07-05"), np.datetime64("2020-09-05")
    span = int((end - start).astype(int)) + 1
    upload = start + rng.integers(-90, span - 1, n).astype("timedelta64[D]")
    first = np.maximum(upload, start)
    left = (end - first).astype(int) + 1
    n_days = np.minimum(left, np.maximum(1, rng.geometric(1 / 56, n)))  # ~32 days per video
    vid = np.repeat(np.arange(n), n_days)
    off = np.arange(n_days.sum()) - np.repeat(np.cumsum(n_days) - n_days, n_days)
    day = first[vid] + off.astype("timedelta64[D]")
    m = len(vid)
    author = rng.integers(0, int(n * 0.75) + 1, n)
    l1 = categories["first_level_category_id"].to_numpy()
    tag_id = np.where(l1 > 0, l1 * 37 % 997, -124)
    tag_names = dict(zip(np.unique(tag_id), _text(rng, len(np.unique(tag_id)), 2, 4)))
    tag_names[-124] = "UNKNOWN"
    dur = model.video_duration.astype(np.float64)
    vdur = np.where(rng.random(n) < 0.01, np.nan, dur)
    portrait = rng.random(n) < 0.8
    df = pd.DataFrame({
        "video_id": vid.astype(np.int64),
        "date": day.astype("datetime64[D]").astype(str).astype(object),
        "author_id": author[vid],
        "video_type": np.where(rng.random(n) < 0.02, "AD", "NORMAL").astype(object)[vid],
        "upload_dt": upload.astype(str).astype(object)[vid],
        "upload_type": rng.choice(["ShortImport", "LongImport", "ShortCamera", "LongPicture", "Web", "PictureSet"],
                                  n, p=[.45, .15, .3, .04, .03, .03]).astype(object)[vid],
        "visible_status": np.where(rng.random(n) < 0.97, "public", "friend").astype(object)[vid],
        "video_duration": vdur[vid],
        "video_width": np.where(portrait, 720, 1280)[vid].astype(np.int64),
        "video_height": np.where(portrait, 1280, 720)[vid].astype(np.int64),
        "music_id": rng.integers(0, n * 2, n)[vid].astype(np.int64),
        "video_tag_id": tag_id[vid].astype(np.int64),
        "video_tag_name": np.array([tag_names[t] for t in tag_id], dtype=object)[vid],
    })
    df["date"] = df["date"].str.replace("-", "", regex=False).astype(np.int64)
    pop = np.exp(rng.normal(6, 1.5, n))[vid] * rng.uniform(0.3, 1.7, m)
    show = np.round(pop).astype(np.int64) + 1
    cnt = {"show_cnt": show, "show_user_num": np.round(show * rng.uniform(.8, 1, m))}
    play = np.round(show * rng.uniform(.3, .95, m))
    cnt.update(play_cnt=play, play_user_num=np.round(play * rng.uniform(.8, 1, m)))
    cnt["play_duration"] = np.round(play * dur[vid] * rng.uniform(.4, 1.2, m))
    for name, lo, hi in (("complete_play", .15, .5), ("valid_play", .5, .9), ("long_time_play", .2, .6),
                         ("short_time_play", .1, .4)):
        c = np.round(play * rng.uniform(lo, hi, m))
        cnt[f"{name}_cnt"], cnt[f"{name}_user_num"] = c, np.round(c * rng.uniform(.85, 1, m))
    cnt["play_progress"] = np.round(rng.uniform(0.3, 1.1, m), 6)
    cnt["comment_stay_duration"] = np.round(play * rng.exponential(300, m))
    rest = [c for c in schema.ITEM_DAILY_COLUMNS if c not in df.columns and c not in cnt]
    for c in rest:
        rate = 0.03 if c.startswith(("like", "click_like")) else 0.003
        cnt[c] = rng.binomial(play.astype(np.int64), rate)
    for c, v in cnt.items():
        df[c] = v if c == "play_progress" else np.asarray(v).astype(np.int64)
    early = df["date"].to_numpy() < 20200728
    for c in ("collect_cnt", "collect_user_num", "cancel_collect_cnt", "cancel_collect_user_num"):
        df[c] = df[c].astype(np.float64).where(~early)
    return df[schema.ITEM_DAILY_COLUMNS]


# --------------------------------------------------------------------------------------------------------------
# Writing the raw files
# --------------------------------------------------------------------------------------------------------------
def matrix_table(rng, ev: dict, model: TrueHeadModel, params: dict, dup_fraction: float = 0.0) -> pa.Table:
    """The 8 matrix columns in file order, with the logging artefacts: exact duplicate rows (placed next to
    their original), time-less rows (ev['timeless']), a `date` label lagging midnight, slight duration jitter."""
    n = len(ev["user_id"])
    ts_ms = ev["ts_ms"]
    dur = model.video_duration[ev["video_id"]].copy()
    jit = rng.random(n) < params["duration_jitter_fraction"]
    dur[jit] = np.maximum(1, dur[jit] + rng.choice([-40, -20, -1, 1, 20, 40], jit.sum()))
    local_ms = ts_ms + 8 * 3_600_000
    day = local_ms // 86_400_000
    day -= (local_ms - day * 86_400_000) < params["date_lag_minutes"] * _MS_MIN  # partition label lags midnight
    d64 = day.astype("datetime64[D]")
    ymd = ((d64.astype("datetime64[Y]").astype(np.int64) + 1970) * 10000
           + (d64.astype("datetime64[M]").astype(np.int64) % 12 + 1) * 100
           + (d64 - d64.astype("datetime64[M]")).astype(np.int64) + 1)
    gone = ev.get("timeless", np.zeros(n, bool))
    time_s = _time_strings(local_ms)
    table = pa.table({
        "user_id": ev["user_id"], "video_id": ev["video_id"], "play_duration": ev["play_duration"],
        "video_duration": dur,
        "time": pc.if_else(pa.array(gone), pa.scalar(None, pa.string()), time_s),
        "date": pa.array(ymd, pa.int64(), mask=gone),
        "timestamp": pa.array(ts_ms / 1000.0, pa.float64(), mask=gone),
        "watch_ratio": ev["play_duration"] / dur,
    })
    if dup_fraction > 0 and n:
        n_dup = int(round(n * dup_fraction / (1 - dup_fraction)))
        heavy = max(2, int(round(n_dup * 2224 / 968_004)))  # the real file has one pair repeated 2,224 times
        src = np.concatenate([np.full(heavy, rng.integers(n)), rng.integers(0, n, max(0, n_dup - heavy))])
        table = table.take(np.sort(np.concatenate([np.arange(n), src]), kind="stable"))
    return table


def _time_strings(local_ms: np.ndarray) -> pa.Array:
    """'YYYY-MM-DD HH:MM:SS.mmm' of local ms, built digit by digit (arrow strftime is ~100x slower)."""
    d64 = (local_ms // 86_400_000).astype("datetime64[D]")
    rest = local_ms % 86_400_000
    fields = [(d64.astype("datetime64[Y]").astype(np.int64) + 1970, 4, 0),
              (d64.astype("datetime64[M]").astype(np.int64) % 12 + 1, 2, 5),
              ((d64 - d64.astype("datetime64[M]")).astype(np.int64) + 1, 2, 8),
              (rest // 3_600_000, 2, 11), (rest // 60_000 % 60, 2, 14), (rest // 1000 % 60, 2, 17),
              (rest % 1000, 3, 20)]
    buf = np.empty((len(local_ms), 23), np.uint8)
    for val, width, pos in fields:
        for i in range(width):
            buf[:, pos + i] = val // 10 ** (width - 1 - i) % 10 + 48
    buf[:, [4, 7]], buf[:, 10], buf[:, [13, 16]], buf[:, 19] = ord("-"), ord(" "), ord(":"), ord(".")
    arr = pa.FixedSizeBinaryArray.from_buffers(pa.binary(23), len(local_ms), [None, pa.py_buffer(buf.ravel())])
    return arr.cast(pa.string())


def write_plain(table: pa.Table, path: Path) -> None:
    """Unquoted CSV (no field holds a comma or quote); floats in shortest round-trip form, empty for nulls."""
    with open(path, "wb") as fh:
        fh.write((",".join(table.column_names) + "\n").encode())
        pacsv.write_csv(table, fh, pacsv.WriteOptions(include_header=False, quoting_style="none",
                                                      batch_size=1 << 16))


_CR_MARK = "\u2063CR\u2063"


def write_caption_file(path: Path, categories: pd.DataFrame, rng) -> None:
    """Caption file like the real one: four captions hold a bare (unquoted) carriage return."""
    cap = categories["caption"].copy()
    pos = [min(len(cap) - 1, round(p * len(cap) / 10_728)) for p in (1378, 1613, 5910, 6331)]
    for p in sorted(set(pos)):
        text = str(cap.iat[p] or "说").replace(",", "").replace('"', "")
        cap.iat[p] = text[: max(1, len(text) // 2)] + _CR_MARK + text[max(1, len(text) // 2):]
    out = categories.assign(caption=cap)
    text = out.to_csv(index=False, lineterminator="\n")
    path.write_bytes(text.replace(_CR_MARK, "\r").encode("utf-8"))


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    df.to_csv(path, index=False, lineterminator="\n", na_rep="")


def _sub_rngs(seed: int, n: int = 10):
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n)]


def _normalize_w(w_star) -> np.ndarray:
    w = np.asarray(DEFAULT_W_STAR if w_star is None else w_star, dtype=np.float64)
    if w.shape != (4,) or not np.all(np.isfinite(w)) or np.abs(w).sum() == 0:
        raise ValueError(f"w_star must be 4 finite numbers, not all zero (heads {schema.HEADS}); got {w_star!r}")
    return w / np.abs(w).sum()


SIDE_COPY = ("user_features.csv", "item_categories.csv", "kuairec_caption_category.csv")


def _side_tables(side_dir: Path) -> tuple[pd.DataFrame, int]:
    """Caption table (CAPTION_COLUMNS names) and n_users from real side files; validated by raw.py."""
    from datamodules import raw  # local import: raw does not depend on world

    side_dir = Path(side_dir)
    missing = [f for f in SIDE_COPY if not (side_dir / f).is_file()]
    if missing:
        raise raw.DataError(f"{side_dir} lacks {', '.join(missing)}; a side folder holds {', '.join(SIDE_COPY)} "
                            f"(e.g. a download's 'KuaiRec 2.0/data')")
    cat, _ = raw.read_caption(side_dir / "kuairec_caption_category.csv", {})
    users = raw.read_users(side_dir / "user_features.csv", {})
    tags = raw.read_item_tags(side_dir / "item_categories.csv", {})
    for name, ids in (("kuairec_caption_category.csv", cat["video_id"]), ("user_features.csv", users["user_id"]),
                      ("item_categories.csv", tags["video_id"])):
        if not np.array_equal(ids.to_numpy(), np.arange(len(ids))):
            raise raw.DataError(f"{name}: ids must be 0..n-1 without gaps to build a world on them")
    if len(tags) != len(cat):
        raise raw.DataError(f"item_categories.csv has {len(tags)} videos but the caption file {len(cat)}")
    categories = cat.rename(columns={"cat_level1_id": "first_level_category_id"})
    return categories, len(users)


def _generate(tmp: Path, size: str, seed: int, w_star, params: dict, side_dir=None) -> dict:
    """Write the whole world into tmp (data folder + ground_truth); returns the truth dict."""
    cfg = dict(SIZES[size])
    r = _sub_rngs(seed)
    t0 = time.perf_counter()
    if side_dir is None:
        n_users, n_videos = cfg["n_users"], cfg["n_videos"]
        categories = make_categories(r[0], n_videos)
        users = make_users(r[1], n_users)
        tags = make_item_tags(r[2], categories)
    else:
        categories, n_users = _side_tables(side_dir)
        n_videos = len(categories)
        cfg.update(n_users=n_users, n_videos=n_videos, small_users=min(cfg["small_users"], n_users // 5),
                   small_videos=min(cfg["small_videos"], n_videos // 3))
    social = make_social(r[3], n_users)
    model = make_model(r[4], categories, n_users, w_star, params)
    small_u = np.sort(r[5].choice(n_users, cfg["small_users"], replace=False))
    small_v = np.sort(r[5].choice(n_videos, cfg["small_videos"], replace=False))
    big = serve_big(r[6], model, cfg, params, small_u, small_v)
    small = serve_small(r[7], model, small_u, small_v, params)
    daily = make_item_daily(r[8], model, categories)
    t_gen = time.perf_counter() - t0

    log.info("generated in %.1fs; writing", t_gen)
    data = tmp / DATA_SUBDIR
    truth_dir = tmp / TRUTH_SUBDIR
    data.mkdir(parents=True)
    truth_dir.mkdir()
    big_t = matrix_table(r[9], big, model, params, dup_fraction=params["dup_fraction"])
    write_plain(big_t, data / "big_matrix.csv")
    small_t = matrix_table(r[9], small, model, params)
    write_plain(small_t, data / "small_matrix.csv")
    _write_csv(social, data / "social_network.csv")
    write_plain(pa.Table.from_pandas(daily, preserve_index=False), data / "item_daily_features.csv")
    if side_dir is None:
        _write_csv(tags, data / "item_categories.csv")
        _write_csv(users, data / "user_features.csv")
        write_caption_file(data / "kuairec_caption_category.csv", categories, r[9])
    else:
        for f in SIDE_COPY:
            shutil.copyfile(Path(side_dir) / f, data / f)

    heads = []
    for name, ev in (("big", big), ("small", small)):
        p = model.probs(ev["user_id"], ev["video_id"], ev["hour"])
        ts = np.where(ev.get("timeless", False), np.nan, ev["ts_ms"] / 1000.0)
        heads.append(pd.DataFrame({
            "user_id": ev["user_id"], "video_id": ev["video_id"], "timestamp": ts,
            **{f"p_{h}": p[:, i] for i, h in enumerate(schema.HEADS)},
            "hour": ev["hour"].astype(np.int8),
            "matrix": pd.Categorical.from_codes(np.full(len(ts), name == "small", np.int8), ["big", "small"]),
            "session": ev["session"].astype(np.int32),
        }))
    pd.concat(heads, ignore_index=True).to_parquet(truth_dir / "heads.parquet", index=False)
    model.save(truth_dir)
    truth = {
        "generator_version": GENERATOR_VERSION,
        "w_star": [float(x) for x in model.w_star], "heads": list(schema.HEADS), "seed": seed, "size": size,
        "params": params, "size_config": cfg, "n_users": n_users, "n_videos": n_videos,
        "side_dir": None if side_dir is None else str(side_dir),
        "rows": {"big_matrix": big_t.num_rows, "big_distinct_events": len(big["user_id"]),
                 "small_matrix": small_t.num_rows, "small_timeless": int(small["timeless"].sum()),
                 "item_daily_features": len(daily)},
        "small_block": {"users": small_u.tolist(), "n_videos": len(small_v)},
        "hour_note": "hour = Beijing hour of the session's first event (big) / of the row (small)",
        "seconds": {"generate": round(t_gen, 2), "total": round(time.perf_counter() - t0, 2)},
    }
    (truth_dir / "truth.json").write_text(json.dumps(truth, indent=1, ensure_ascii=False))
    return truth


def _check_size_seed(size: str, seed: int) -> None:
    if size not in SIZES:
        raise ValueError(f"world size must be one of {', '.join(SIZES)}, got {size!r}")
    if int(seed) < 0:
        raise ValueError(f"world seed must be >= 0, got {seed}")


def _refuse_foreign_data(out_dir: Path) -> None:
    """A 'KuaiRec 2.0' folder in out_dir that no generator wrote (no ground_truth/ beside it) may be a real download:
    replacing it would delete it, so refuse before generating anything."""
    data_root = out_dir / DATA_SUBDIR.parts[0]
    if data_root.exists() and not (out_dir / TRUTH_SUBDIR).is_dir():
        raise ValueError(f"{data_root} exists and is not a planted world (no {TRUTH_SUBDIR}/ beside it; a real "
                         f"download?); it would be replaced: pass a new --out folder, or move it away first")


def _install(tmp: Path, out_dir: Path) -> None:
    """Move the finished world into out_dir; an existing world there is replaced (data folder last)."""
    if not out_dir.exists() or (out_dir.is_dir() and not any(out_dir.iterdir())):
        os.replace(tmp, out_dir)
        return
    trash = Path(tempfile.mkdtemp(prefix=".old-", dir=tmp))
    for name in (TRUTH_SUBDIR, DATA_SUBDIR.parts[0]):
        if (out_dir / name).exists():
            os.replace(out_dir / name, trash / name)
        os.replace(tmp / name, out_dir / name)


def make_world(out_dir, size: str = "small", seed: int = 0, w_star=None, params: dict | None = None,
               side_dir=None, replace_foreign: bool = False) -> Path:
    """Generate a planted world into out_dir atomically; returns out_dir/'KuaiRec 2.0'/data.

    side_dir: a folder with real user_features.csv, item_categories.csv and kuairec_caption_category.csv; they are
    copied byte for byte and only the rest is synthesized (users/videos/categories then come from them).
    A 'KuaiRec 2.0' folder already in out_dir without ground_truth/ beside it (a real download?) is refused unless
    replace_foreign (for folders this code manages, such as ensure_world's)."""
    _check_size_seed(size, seed)
    unknown = set(params or {}) - set(DEFAULT_PARAMS)
    if unknown:
        raise ValueError(f"unknown world params {sorted(unknown)}; known: {sorted(DEFAULT_PARAMS)}")
    params = {**DEFAULT_PARAMS, **(params or {})}
    w = _normalize_w(w_star)
    out_dir = Path(out_dir).resolve()
    if not replace_foreign:
        _refuse_foreign_data(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-{os.getpid()}-", dir=out_dir.parent))
    try:
        os.chmod(tmp, 0o755)
        _generate(tmp, size, int(seed), w, params, side_dir=side_dir)
        # no Ctrl-C between the renames: a world is replaced whole or not at all
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            _install(tmp, out_dir)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir / DATA_SUBDIR


def _remove_stale_tmp(out_dir: Path) -> None:
    """Remove `.<name>.tmp-<pid>-*` folders beside out_dir left by a generator that was killed (pid gone)."""
    from datamodules.dataset import _pid_alive  # one liveness check for every atomic cache

    prefix = f".{out_dir.name}.tmp-"
    for p in out_dir.parent.glob(f"{prefix}*"):
        pid = p.name[len(prefix):].split("-")[0]
        if p.is_dir() and pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


def world_complete(world_root: Path) -> bool:
    data = Path(world_root) / DATA_SUBDIR
    return all((data / f).is_file() for f in schema.RAW_FILES) and \
        (Path(world_root) / TRUTH_SUBDIR / "true_heads.npz").is_file()


def world_current(world_root: Path, size: str, seed: int) -> bool:
    """Complete, and made by this generator version with the default params, size, seed and w*."""
    if not world_complete(world_root):
        return False
    try:
        truth = json.loads((Path(world_root) / TRUTH_SUBDIR / "truth.json").read_text())
    except (OSError, ValueError):
        return False
    return (truth.get("generator_version") == GENERATOR_VERSION and truth.get("params") == DEFAULT_PARAMS
            and truth.get("size") == size and truth.get("seed") == seed
            and np.allclose(truth.get("w_star", []), DEFAULT_W_STAR))


def ensure_world(size: str = "small", seed: int = 0, root=None) -> Path:
    """Generate data/worlds/<size>-seed<seed>/ once (file-locked) and reuse it; returns its data folder. A world
    left by an older generator (or other params) is regenerated in place, atomically."""
    _check_size_seed(size, seed)  # before the lock file is created
    root = PROJECT_ROOT / "data" / "worlds" if root is None else Path(root)
    target = root / f"{size}-seed{seed}"
    if world_current(target, size, seed):
        return target / DATA_SUBDIR
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not world_current(target, size, seed):
            if world_complete(target):
                log.warning("world %s was made by an older generator or other params: regenerating it", target)
            make_world(target, size=size, seed=seed, replace_foreign=True)  # our own folder, whatever is left
    return target / DATA_SUBDIR
