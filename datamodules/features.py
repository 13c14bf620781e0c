"""The 64 edge features of the reference notebook (schema.FEATURE_NAMES): u_*, i_*, ctx_*, hist_*.

u_* and i_* are static tables indexed by id (broadcast to interactions by a take); ctx_* come from the event
time; hist_* are causal: a row's value uses only strictly earlier rows of the same user, so nothing about an
interaction or its future can leak into its own features. All work is whole-array numpy (plus one short Python
loop over positions-in-group for the exponential moving averages, vectorized across groups).
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from datamodules.schema import I_COLUMNS, MISSING_ID, U_COLUMNS, USER_COLUMNS
from datamodules.sessions import group_starts, rank_in_runs

LOCAL_OFFSET_S = 8 * 3600  # KuaiRec's local time is Beijing, UTC+8
_CODED_USER_COLUMNS = {"user_active_degree", "follow_user_num_range", "fans_user_num_range",
                       "friend_user_num_range", "register_days_range"}
_LOG1P_USER_COLUMNS = ["follow_user_num", "fans_user_num", "friend_user_num", "register_days"]
_ACTIVE_ORDER = ["UNKNOWN", "low_active", "middle_active", "high_active", "full_active"]


# ---------------------------------------------------------------- static tables
def _bucket_key(s: str):
    """Order range buckets like '0', '(0,10]', '[1k,5k)', '181-365', '500+' by their bounds, then text.

    KuaiRec writes thousands as 'k' and ten-thousands as 'w' (wan, 万), e.g. '[5k,1w)'.
    """
    scale = {"": 1.0, "k": 1e3, "w": 1e4}
    nums = [float(x) * scale[u.lower()] for x, u in re.findall(r"(\d+(?:\.\d+)?)\s*([kKwW]?)", s)]
    lo = nums[0] if nums else np.inf
    hi = nums[1] if len(nums) > 1 else (np.inf if s.strip().endswith("+") else lo)
    return (lo, hi, s)


def encode(values: pd.Series, order: list[str] | None = None, key=None) -> np.ndarray:
    """Integer codes (as float64) of a categorical column; NaN stays NaN.

    Codes follow `order` for the listed values, then the remaining values sorted by `key` (default: text), so
    they depend only on the set of values present, never on row order.
    """
    vals = values.astype(object).where(values.notna(), None)
    present = sorted({str(v) for v in vals if v is not None}, key=key)
    ordered = [v for v in (order or []) if v in present] + [v for v in present if v not in (order or [])]
    mapping = {v: float(i) for i, v in enumerate(ordered)}
    return np.array([np.nan if v is None else mapping[str(v)] for v in vals], dtype=np.float64)


def _numeric_or_codes(values: pd.Series) -> np.ndarray:
    """Numbers as float64; a column with non-numeric text is integer-coded instead."""
    num = pd.to_numeric(values, errors="coerce")
    if (num.isna() & values.notna()).any():
        return encode(values)
    return num.to_numpy(dtype=np.float64, na_value=np.nan)


def user_feature_table(users: pd.DataFrame, n_users: int) -> pd.DataFrame:
    """[n_users, 34] u_* table indexed by user_id 0..n_users-1 (users absent from the file get NaN)."""
    users = users.drop_duplicates("user_id").set_index("user_id")
    out = {}
    for col in USER_COLUMNS[1:]:
        if col == "user_active_degree":
            out[f"u_{col}"] = encode(users[col], order=_ACTIVE_ORDER)
        elif col in _CODED_USER_COLUMNS:
            out[f"u_{col}"] = encode(users[col], key=_bucket_key)
        else:
            out[f"u_{col}"] = _numeric_or_codes(users[col])
    for col in _LOG1P_USER_COLUMNS:
        out[f"u_{col}_log1p"] = np.log1p(np.clip(out[f"u_{col}"], 0, None))
    table = pd.DataFrame(out, index=users.index.astype(np.int64))
    table = table.reindex(pd.RangeIndex(n_users, name="user_id"))
    return table[U_COLUMNS].astype(np.float32)


def item_feature_table(item_static: pd.DataFrame, categories: pd.DataFrame, n_videos: int,
                       reference_day: pd.Timestamp, duration_fallback: pd.Series | None = None,
                       repairs: dict | None = None) -> pd.DataFrame:
    """[n_videos, 13] i_* table indexed by video_id 0..n_videos-1.

    aspect_ratio = width / height; text columns as integer codes; ids as numbers; video_duration (ms) from the
    static table, else the median duration logged in the interactions (`duration_fallback`, counted in `repairs`);
    age_since_upload_days = reference_day - upload_dt; category ids with -124 (missing) kept, -124 also for videos
    absent from the caption file.
    """
    idx = pd.RangeIndex(n_videos, name="video_id")
    st = item_static.drop_duplicates("video_id").set_index("video_id").reindex(idx)
    width = pd.to_numeric(st["video_width"], errors="coerce").to_numpy(np.float64, na_value=np.nan)
    height = pd.to_numeric(st["video_height"], errors="coerce").to_numpy(np.float64, na_value=np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        aspect = np.where(height > 0, width / height, np.nan)
    duration = pd.to_numeric(st["video_duration"], errors="coerce")
    if duration_fallback is not None:
        fill = duration.isna() & duration_fallback.reindex(idx).notna()
        if repairs is not None and fill.any():
            repairs["items.video_duration_from_interactions"] = int(fill.sum())
        duration = duration.where(~fill, duration_fallback.reindex(idx))
    upload = pd.to_datetime(st["upload_dt"], format="%Y-%m-%d", errors="coerce")
    age = (pd.Timestamp(reference_day) - upload).dt.total_seconds().to_numpy(np.float64, na_value=np.nan) / 86400
    cats = categories.drop_duplicates("video_id").set_index("video_id").reindex(idx)
    out = {
        "i_aspect_ratio": aspect,
        "i_author_id": _numeric_or_codes(st["author_id"]),
        "i_video_type": encode(st["video_type"]),
        "i_upload_type": encode(st["upload_type"]),
        "i_visible_status": encode(st["visible_status"]),
        "i_music_id": _numeric_or_codes(st["music_id"]),
        "i_video_tag_id": _numeric_or_codes(st["video_tag_id"]),
        "i_video_tag_name": encode(st["video_tag_name"]),
        "i_video_duration": duration.to_numpy(np.float64, na_value=np.nan),
        "i_age_since_upload_days": age,
    }
    for lvl in (1, 2, 3):
        ids = pd.to_numeric(cats[f"cat_level{lvl}_id"], errors="coerce").fillna(MISSING_ID)
        out[f"i_cat_level{lvl}_id"] = ids.to_numpy(np.float64)
    return pd.DataFrame(out, index=idx)[I_COLUMNS].astype(np.float32)


# ---------------------------------------------------------------- context
def ctx_columns(ts: np.ndarray) -> dict:
    """Local (UTC+8) hour 0..23, day of week 0=Monday..6, weekend flag, from the unix timestamp."""
    local = np.floor(ts + LOCAL_OFFSET_S)
    day = np.floor_divide(local, 86400)
    hour = np.floor_divide(local - day * 86400, 3600)
    dow = np.mod(day + 3, 7)  # 1970-01-01 was a Thursday
    return {"ctx_hour": hour, "ctx_dow": dow, "ctx_is_weekend": (dow >= 5).astype(np.float64)}


def reference_day(ts: np.ndarray) -> pd.Timestamp:
    """Local calendar date of the first event: the fixed origin of i_age_since_upload_days."""
    t0 = float(np.nanmin(ts)) if len(ts) else 0.0
    return pd.Timestamp(np.floor((t0 + LOCAL_OFFSET_S) / 86400) * 86400, unit="s").normalize()


# ---------------------------------------------------------------- causal history
def group_order(user_id: np.ndarray, code: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Permutation making (user, code) groups contiguous with time order kept inside, and its group-start mask.

    Rows are already sorted by (user, time), so a stable sort on the combined key keeps time order.
    """
    if code is None:
        perm = np.arange(len(user_id))
        return perm, group_starts(user_id)
    code = np.asarray(code, dtype=np.int64)
    span = int(code.max() - code.min() + 1) if len(code) else 1
    key = user_id.astype(np.int64) * span + (code - (code.min() if len(code) else 0))
    perm = np.argsort(key, kind="stable")
    return perm, group_starts(key[perm])


def segmented_ema(x: np.ndarray, start: np.ndarray, alpha: float) -> np.ndarray:
    """EMA inclusive of each row, restarting at every group start: ema_1 = x_1, ema_t = a*x_t + (1-a)*ema_{t-1}.

    Loops over the position inside a group (at most the longest group), each step vectorized over all groups
    that are that long, so the Python overhead is O(max group length), not O(rows).
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    n = len(x)
    if n == 0:
        return out
    starts = np.flatnonzero(start)
    lens = np.diff(np.append(starts, n))
    order = np.argsort(-lens, kind="stable")
    starts_s, lens_s = starts[order], lens[order]
    out[starts] = x[starts]
    # active[t] = number of groups longer than t (groups sorted by decreasing length)
    active = np.searchsorted(-lens_s, -np.arange(int(lens_s[0])), side="left")
    for t in range(1, int(lens_s[0])):
        idx = starts_s[: active[t]] + t
        out[idx] = alpha * x[idx] + (1.0 - alpha) * out[idx - 1]
    return out


def shift_in_group(values: np.ndarray, start: np.ndarray, fill=np.nan) -> np.ndarray:
    """Value of the previous row of the same group (`fill` on each group's first row)."""
    out = np.empty_like(values, dtype=np.float64)
    out[1:] = values[:-1]
    out[start] = fill
    return out


def _entropy_of_earlier(user_id: np.ndarray, code: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of the counts of `code` over each user's earlier rows; 0 with no history.

    With N earlier rows and S = sum_k c_k log c_k, H = log N - S / N; S grows by f(c+1) - f(c) (f = c log c)
    when a row of a category already seen c times is added, so both are exclusive prefix sums.
    """
    perm, gstart = group_order(user_id, code)
    seen = np.empty(len(code), dtype=np.float64)
    seen[perm] = rank_in_runs(gstart)  # earlier rows of this (user, code)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = lambda c: np.where(c > 0, c * np.log(np.maximum(c, 1)), 0.0)  # noqa: E731
        delta = f(seen + 1) - f(seen)
    ustart = group_starts(user_id)
    incl = pd.Series(delta).groupby(np.cumsum(ustart)).cumsum().to_numpy()
    s_before = incl - delta
    n_before = rank_in_runs(ustart).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.where(n_before > 0, np.log(np.maximum(n_before, 1)) - s_before / np.maximum(n_before, 1), 0.0)
    return np.maximum(h, 0.0)


def hist_columns(user_id: np.ndarray, ts: np.ndarray, watch_ratio: np.ndarray, y: dict, cat1: np.ndarray,
                 cat2: np.ndarray, author: np.ndarray, session_key: np.ndarray, sessions: pd.DataFrame,
                 alpha: float) -> dict:
    """The 12 hist_* features; every value on row t depends only on rows < t of the same user.

    cat1, cat2: category ids of each row's video (-124 = missing, a category of its own); author: author id
    per row, negative = unknown (never matches). `sessions`: session table (user_id, sess_len, start_ts, end_ts)
    indexed by session_key.
    """
    ustart = group_starts(user_id)
    out = {}
    xs = np.column_stack([y["y_complete"], y["y_long"], y["y_rewatch"], y["y_neg"], watch_ratio]).astype(np.float64)
    ema = segmented_ema(xs, ustart, alpha)
    for j, name in enumerate(["hist_ema_y_complete", "hist_ema_y_long", "hist_ema_y_rewatch", "hist_ema_y_neg",
                              "hist_ema_watchratio"]):
        out[name] = shift_in_group(ema[:, j], ustart)

    perm, gstart = group_order(user_id, cat1)
    cat_ema = segmented_ema(y["y_complete"][perm].astype(np.float64), gstart, alpha)
    out["hist_cat_ema_complete"] = np.empty(len(ts))
    out["hist_cat_ema_complete"][perm] = shift_in_group(cat_ema, gstart)

    out["hist_cat_entropy_l2"] = _entropy_of_earlier(user_id, cat2)

    author = np.asarray(author, dtype=np.int64)
    perm, gstart = group_order(user_id, np.where(author < 0, -1, author))
    prev_ts = np.empty(len(ts))
    prev_ts[perm] = shift_in_group(ts[perm], gstart)
    prev_c = np.empty(len(ts))
    prev_c[perm] = shift_in_group(y["y_complete"][perm].astype(np.float64), gstart)
    unknown = author < 0
    prev_ts[unknown] = np.nan
    prev_c[unknown] = np.nan
    out["hist_author_recency_days"] = (ts - prev_ts) / 86400.0
    out["hist_last_complete_author"] = prev_c
    out["hist_has_author_history"] = (~np.isnan(prev_ts)).astype(np.float64)

    s_user = sessions["user_id"].to_numpy()
    first_sess = group_starts(s_user)
    prev_len = shift_in_group(sessions["sess_len"].to_numpy(np.float64), first_sess, fill=0.0)
    gap_h = (sessions["start_ts"].to_numpy() - shift_in_group(sessions["end_ts"].to_numpy(), first_sess)) / 3600.0
    gap_h[first_sess] = 0.0
    out["hist_prev_sess_len"] = prev_len[session_key]
    out["hist_intersess_gap_h"] = gap_h[session_key]
    return out
