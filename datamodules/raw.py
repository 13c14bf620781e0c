"""Read and validate a KuaiRec 2.0 folder (real download or planted world) into typed tables.

Why: the raw files carry traps (see ../shared/DATA_FACTS.md): bare CRs in captions, list columns in three
spellings, -124/UNKNOWN/empty missing markers, NaN in integer-coded user columns, time-less small-matrix rows,
exact duplicate rows next to genuine re-watches, a `date` partition label that is not the event time, and
YYYYMMDD dates that float32 or numeric datetime parsing silently corrupt. Everything is read with explicit types;
each repair is counted in `RawTables.repairs`; anything we cannot repair raises a one-line `DataError` naming the
file, the column, a few offending values and what to do.

Watch-ratio outliers (ratio > 5, 0.9% of the real big matrix, max ~573) are kept: they are real logged plays and
only change labels through the thresholds of CONTRACTS 7; they are counted as `<matrix>.watch_ratio_gt5`.
"""
from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from datamodules import schema

log = logging.getLogger(__name__)

SIDE_FILES = ("social_network.csv", "item_categories.csv", "item_daily_features.csv", "user_features.csv",
              "kuairec_caption_category.csv")
MATRICES = ("big", "small")
INTERACTION_COLUMNS = ["user_id", "video_id", "play_duration", "video_duration", "timestamp", "watch_ratio"]
CATEGORY_COLUMNS = ["video_id", "cat_level1_id", "cat_level1_name", "cat_level2_id", "cat_level2_name",
                    "cat_level3_id", "cat_level3_name"]
RATIO_OUTLIER = 5.0
TIMESTAMP_RANGE = (946684800.0, 4102444800.0)  # Unix seconds of 2000-01-01 and 2100-01-01 (UTC)


COVERAGE_WARN = 0.5  # warn when the big matrix touches fewer than this share of the side files' users or videos


class DataError(Exception):
    """A raw file cannot be used as is; the message names file, column, offending values and what to do."""


@dataclass
class RawTables:
    interactions: pd.DataFrame
    users: pd.DataFrame
    categories: pd.DataFrame
    item_tags: pd.DataFrame
    item_static: pd.DataFrame
    social: pd.DataFrame
    n_users: int
    n_videos: int
    repairs: dict[str, int] = field(default_factory=dict)
    source_files: dict[str, Path] = field(default_factory=dict)
    captions: pd.DataFrame | None = None  # video_id, manual_cover_text, caption, topic_tag (list[str]); None=missing


def _few(values, k: int = 5) -> str:
    vals = list(pd.unique(pd.Series(list(values)).astype(str)))[:k]
    return "[" + ", ".join(repr(v) for v in vals) + "]"


# --------------------------------------------------------------------------------------------------------------
# Locating the folder and checking headers
# --------------------------------------------------------------------------------------------------------------
def resolve_data_dir(path) -> Path:
    """The folder holding the CSVs: `path` itself, `path/data` or `path/KuaiRec 2.0/data`."""
    p = Path(path).expanduser()
    cands = [p, p / "data", p / "KuaiRec 2.0" / "data"]
    for c in cands:
        if c.is_dir() and any((c / f).is_file() for f in schema.RAW_FILES):
            return c.resolve()
    raise DataError(f"no KuaiRec 2.0 data folder at {p} (looked in {', '.join(str(c) for c in cands)}): pass "
                    f"--data-dir pointing at the folder with big_matrix.csv and user_features.csv")


def _require(data_dir: Path, name: str) -> Path:
    f = data_dir / name
    if not f.is_file():
        raise DataError(f"{name}: file missing in {data_dir}; a KuaiRec 2.0 folder needs "
                        f"{', '.join(schema.RAW_FILES)} (re-download or regenerate the world)")
    return f


def _check_header(path: Path, repairs: dict) -> list[str]:
    """Compare the header row to schema.RAW_FILES; missing or extra columns raise DataError."""
    with open(path, "rb") as fh:
        first = fh.readline().decode("utf-8", errors="replace")
    if not first.strip():
        raise DataError(f"{path.name}: no header line ({path.stat().st_size} bytes); file empty or truncated: "
                        f"re-download it")
    if first.startswith("\ufeff"):
        first = first[1:]
        repairs[f"{path.stem}.bom_stripped"] = 1
    cols = _split_header(first, path)
    want = schema.RAW_FILES[path.name]
    missing = [c for c in want if c not in cols]
    extra = [c for c in cols if c not in want]
    if missing:
        raise DataError(f"{path.name}: missing column(s) {missing} (header has {len(cols)} columns); expected "
                        f"the KuaiRec 2.0 columns {want[:4]}...: check the file is the original, unmodified one")
    if extra:
        raise DataError(f"{path.name}: unexpected column(s) {extra}; expected exactly {len(want)} KuaiRec 2.0 "
                        f"columns: remove the extra columns or use the original file")
    return cols


def _arrow_read(path: Path, types: dict, columns=None, repairs=None) -> pd.DataFrame:
    """pyarrow CSV read with explicit column types; conversion failures become DataError naming the file line."""
    conv = pacsv.ConvertOptions(column_types=types, include_columns=columns, strings_can_be_null=True,
                                null_values=[""], quoted_strings_can_be_null=False)
    try:
        table = pacsv.read_csv(path, read_options=pacsv.ReadOptions(use_threads=True, block_size=1 << 24),
                               parse_options=pacsv.ParseOptions(newlines_in_values=False), convert_options=conv)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise DataError(_arrow_error(path, str(e).splitlines()[0], types)) from None
    return table.to_pandas()


def _split_header(line: str, path: Path) -> list[str]:
    """Column names of a header line; a stray carriage return or quote in it is a DataError, not csv.Error."""
    try:
        return next(csv.reader([line.rstrip("\r\n")]), [])
    except csv.Error as e:
        raise DataError(f"{path.name}: line 1 (the header) is not plain CSV ({e}); the file is damaged: "
                        f"re-download it") from None


def _header(path: Path) -> list[str]:
    with open(path, "rb") as fh:
        return _split_header(fh.readline().decode("utf-8", "replace").lstrip("\ufeff"), path)


def _arrow_error(path: Path, msg: str, types: dict) -> str:
    """One line for a failed pyarrow read: the file line at fault when it can be found (the scan runs only on
    failure), else pyarrow's own words."""
    header = _header(path)
    m = re.search(r"Expected (\d+) columns, got (\d+)", msg)
    if m:
        found = _line_with_field_count(path, int(m.group(1)))
        if found and found[1] < 0:
            return (f"{path.name}: line {found[0]} is damaged (a stray quote or carriage return); re-download "
                    f"the file (or repair that line)")
        if found:
            return (f"{path.name}: line {found[0]} has {found[1]} of {m.group(1)} fields: file truncated or "
                    f"malformed; re-download it (or repair that line)")
    m = re.search(r"column #(\d+)", msg)
    col = header[int(m.group(1))] if m and int(m.group(1)) < len(header) else "?"
    v = re.search(r"invalid value '(.*)'$", msg)
    if m and v and col != "?":
        line = _line_of_value(path, int(m.group(1)), v.group(1))
        kind = {pa.int64(): "an integer", pa.float64(): "a number"}.get(types.get(col), f"of type {types.get(col)}")
        if line:
            return (f"{path.name}: line {line}, column {col}: {v.group(1)!r} is not {kind}; repair that line or "
                    f"re-download the file")
    return f"{path.name}: column {col} has unreadable values ({msg}); fix or re-download the file"


def _line_with_field_count(path: Path, expected: int) -> tuple[int, int] | None:
    """(1-based file line, its number of fields) of the first data line without `expected` fields."""
    with open(path, encoding="utf-8", errors="replace", newline="") as fh:
        next(fh, None)
        for i, line in enumerate(fh, start=2):
            line = line.rstrip("\r\n")
            if not line:
                continue
            try:
                n = len(next(csv.reader([line]))) if '"' in line else line.count(",") + 1
            except csv.Error:  # a stray carriage return or quote: this line is the damaged one
                return i, -1
            if n != expected:
                return i, n
    return None


def _line_of_value(path: Path, col_index: int, value: str) -> int | None:
    """1-based file line of the first row whose column `col_index` reads `value`."""
    try:
        text = pd.read_csv(path, usecols=[col_index], dtype=str, keep_default_na=False, encoding="utf-8-sig").iloc[:, 0]
    except (ValueError, pd.errors.ParserError, OSError):
        return None
    hit = np.flatnonzero(text.to_numpy() == value)
    return _file_line(hit[0]) if len(hit) else None


def _file_line(row_index) -> int:
    """The 1-based file line of a 0-based data row (line 1 is the header; one line per row in these files)."""
    return int(row_index) + 2


def _lines(mask, k: int = 5) -> str:
    """'line 12' or 'lines 12, 40, ...': the first k file lines where `mask` (over data rows) holds."""
    rows = np.flatnonzero(np.asarray(mask))
    text = ", ".join(str(_file_line(i)) for i in rows[:k]) + (", ..." if len(rows) > k else "")
    return f"line{'s' if len(rows) > 1 else ''} {text}"


# --------------------------------------------------------------------------------------------------------------
# Lists and small helpers
# --------------------------------------------------------------------------------------------------------------
def parse_int_lists(s: pd.Series, fname: str, col: str) -> list[list[int]]:
    """Parse `[8]`, `[27, 9]`, `[]` into lists of int; anything else raises DataError."""
    text = s.fillna("[]").astype(str).str.strip()
    bad = ~(text.str.startswith("[") & text.str.endswith("]"))
    inner = text.str.slice(1, -1).str.strip()
    ok = inner.str.fullmatch(r"(-?\d+\s*(,\s*-?\d+\s*)*)?")
    bad |= ~ok.fillna(False).astype(bool)
    if bad.any():
        raise DataError(f"{fname}: column {col} has values that are not integer lists, e.g. {_few(text[bad])}; "
                        f"expected the form [1, 2]")
    return [[int(x) for x in t.split(",")] if t else [] for t in inner.tolist()]


def parse_tag_lists(s: pd.Series) -> list[list[str]]:
    """Parse topic_tag `[tag1,tag2]` (neither JSON nor a Python literal) into lists of str."""
    out = []
    for t in s.fillna("[]").astype(str).tolist():
        t = t.strip()
        inner = t[1:-1] if t.startswith("[") and t.endswith("]") else t
        out.append([x.strip() for x in inner.split(",") if x.strip()])
    return out


def yyyymmdd_of_timestamp(ts: np.ndarray) -> np.ndarray:
    """Beijing (UTC+8) calendar date of Unix seconds as int YYYYMMDD (integer arithmetic, no float32)."""
    days = np.floor((np.asarray(ts, dtype=np.float64) + 8 * 3600) / 86400).astype("int64").astype("datetime64[D]")
    y = days.astype("datetime64[Y]").astype(np.int64) + 1970
    m = days.astype("datetime64[M]").astype(np.int64) % 12 + 1
    d = (days - days.astype("datetime64[M]")).astype(np.int64) + 1
    return (y * 10000 + m * 100 + d).astype(np.int64)


def _bump(repairs: dict, key: str, n) -> None:
    n = int(n)
    if n:
        repairs[key] = repairs.get(key, 0) + n


# --------------------------------------------------------------------------------------------------------------
# File readers
# --------------------------------------------------------------------------------------------------------------
# `time` is not read: it is the Beijing rendering of `timestamp` (so rows equal on the other seven columns are exact
# duplicates) and event time comes from `timestamp`. `date` is read as float64, which holds YYYYMMDD exactly
# (float32 would not), then checked to be an integral 2020xxxx label.
_MATRIX_TYPES = {"user_id": pa.int64(), "video_id": pa.int64(), "play_duration": pa.int64(),
                 "video_duration": pa.int64(), "date": pa.float64(), "timestamp": pa.float64(),
                 "watch_ratio": pa.float64()}


def read_matrix(path: Path, repairs: dict) -> pd.DataFrame:
    """A matrix CSV -> interactions (6 columns): time-less rows and exact duplicates dropped, counted."""
    _check_header(path, repairs)
    df = _arrow_read(path, _MATRIX_TYPES, columns=list(_MATRIX_TYPES))
    stem = path.stem
    if len(df) == 0:
        raise DataError(f"{path.name}: no data rows, only the header; file empty or truncated: re-download it")
    for col in ("user_id", "video_id", "play_duration", "video_duration", "watch_ratio"):
        if df[col].isna().any():
            raise DataError(f"{path.name}: column {col} is empty or NaN in {int(df[col].isna().sum())} row(s) (file "
                            f"{_lines(df[col].isna())}); only time/date/timestamp may be empty: repair or "
                            f"re-download the file")
    for col in ("user_id", "video_id", "play_duration", "video_duration", "watch_ratio"):
        neg = df[col] < 0
        if neg.any():
            raise DataError(f"{path.name}: column {col} has negative values, e.g. {_few(df.loc[neg, col])} (file "
                            f"{_lines(neg)}): repair or re-download the file")
    inf = ~np.isfinite(df["watch_ratio"].to_numpy())
    if inf.any():
        raise DataError(f"{path.name}: column watch_ratio is infinite in {int(inf.sum())} row(s) (file "
                        f"{_lines(inf)}): repair or re-download the file")
    ts = df["timestamp"].to_numpy()
    bad_ts = ~np.isnan(ts) & ~((ts >= TIMESTAMP_RANGE[0]) & (ts < TIMESTAMP_RANGE[1]))  # also +-inf
    if bad_ts.any():
        raise DataError(f"{path.name}: column timestamp holds {int(bad_ts.sum())} value(s) that are not Unix seconds "
                        f"between 2000 and 2100, e.g. {_few(df.loc[bad_ts, 'timestamp'])} (file "
                        f"{_lines(bad_ts)}): repair or re-download the file")
    # date: a YYYYMMDD label (or YYYYMMDD.0 as pandas writes floats); never parsed as a number-datetime
    date = df["date"]
    bad = date.notna() & ~((date >= 20000101) & (date <= 20991231) & (date == np.floor(date)))
    if bad.any():
        raise DataError(f"{path.name}: column date has values that are not YYYYMMDD, e.g. {_few(date[bad])} (file "
                        f"{_lines(bad)})")
    # Order by (user_id, timestamp, video_id) with two stable integer sorts (np.lexsort is ~10x slower at 12.5M
    # rows); rows without timestamp go last per user. Exact duplicates then sit in runs of equal
    # (user, timestamp, video); only rows in such runs are compared on every column.
    keys = ["user_id", "timestamp", "video_id", "play_duration", "video_duration", "watch_ratio", "date"]
    arr = {c: df[c].to_numpy() for c in keys}
    order = _interaction_order(arr["user_id"], arr["timestamp"], arr["video_id"])
    u, t, v = arr["user_id"][order], arr["timestamp"][order], arr["video_id"][order]
    run = (u[1:] == u[:-1]) & (v[1:] == v[:-1]) & ((t[1:] == t[:-1]) | (np.isnan(t[1:]) & np.isnan(t[:-1])))
    in_run = np.zeros(len(order), bool)
    in_run[1:] |= run
    in_run[:-1] |= run
    cand = order[in_run]
    dup = pd.DataFrame({c: arr[c][cand] for c in keys}).duplicated(keep="first").to_numpy()
    drop = np.zeros(len(order), bool)
    drop[np.flatnonzero(in_run)[dup]] = True
    keep = order[~drop]
    _bump(repairs, f"{stem}.exact_duplicates_dropped", drop.sum())
    has_ts = ~np.isnan(arr["timestamp"][keep])
    _bump(repairs, f"{stem}.rows_without_timestamp_dropped", (~has_ts).sum())
    keep = keep[has_ts]
    if len(keep) == 0:
        raise DataError(f"{path.name}: no usable rows ({len(df)} data rows, {int(np.isnan(ts).sum())} without "
                        f"timestamp); file empty or truncated: re-download it")
    out = pd.DataFrame({c: arr[c][keep] for c in INTERACTION_COLUMNS})
    date = arr["date"][keep]
    _bump(repairs, f"{stem}.rows_without_date_kept", np.isnan(date).sum())
    _bump(repairs, f"{stem}.date_label_differs_from_timestamp",
          (~np.isnan(date) & (date != yyyymmdd_of_timestamp(out["timestamp"].to_numpy()))).sum())
    zero = out["video_duration"].to_numpy() == 0
    if zero.any():
        raise DataError(f"{path.name}: column video_duration is 0 in {int(zero.sum())} rows (video_ids "
                        f"{_few(out.loc[zero, 'video_id'])}); watch_ratio is undefined there: drop those rows")
    ratio = out["play_duration"].to_numpy() / out["video_duration"].to_numpy()
    _bump(repairs, f"{stem}.watch_ratio_mismatch_kept",
          (np.abs(ratio - out["watch_ratio"].to_numpy()) > 1e-6 * np.maximum(1.0, ratio)).sum())
    _bump(repairs, f"{stem}.watch_ratio_gt5_kept", (out["watch_ratio"].to_numpy() > RATIO_OUTLIER).sum())
    return out


def _interaction_order(user, ts, video) -> np.ndarray:
    """Row order by (user_id, timestamp, video_id), NaN timestamps last within a user."""
    o1 = np.argsort(video, kind="stable")
    ts_ms = np.where(np.isnan(ts), np.inf, np.round(ts * 1000))
    finite = np.isfinite(ts_ms)
    lo = ts_ms[finite].min() if finite.any() else 0.0
    span = (ts_ms[finite].max() - lo + 2) if finite.any() else 2.0
    if len(user) and user.max() < 2 ** 62 / span and user.min() >= 0:
        rel = np.where(finite, ts_ms - lo, span - 1).astype(np.int64)
        key = user.astype(np.int64) * np.int64(span) + rel
        return o1[np.argsort(key[o1], kind="stable")]
    o2 = o1[np.argsort(ts_ms[o1], kind="stable")]  # generic fallback: two more stable passes
    return o2[np.argsort(user[o2], kind="stable")]


def read_caption(path: Path, repairs: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Caption file -> (categories, captions). Read with lineterminator='\\n' so bare CRs stay inside captions."""
    _check_header(path, repairs)
    str_cols = [c for c in schema.CAPTION_COLUMNS if not c.endswith("_id")]
    try:
        df = pd.read_csv(path, lineterminator="\n", dtype={c: str for c in str_cols}, keep_default_na=False,
                         encoding="utf-8-sig")
    except (ValueError, pd.errors.ParserError) as e:
        raise DataError(f"{path.name}: unreadable ({str(e).splitlines()[0]}); re-download the file") from None
    df.columns = [c.strip() for c in df.columns]
    last = schema.CAPTION_COLUMNS[-1]
    crlf = df[last].str.endswith("\r")
    if crlf.any():  # CRLF line ends: strip the CR left on the last column
        df[last] = df[last].str.rstrip("\r")
        _bump(repairs, f"{path.stem}.crlf_line_ends_stripped", crlf.sum())
    _bump(repairs, f"{path.stem}.bare_cr_inside_text_kept",
          sum(df[c].str.contains("\r", regex=False).sum() for c in str_cols))
    for c in [c for c in schema.CAPTION_COLUMNS if c.endswith("_id")]:
        num = pd.to_numeric(df[c], errors="coerce")
        bad = num.isna() | (num != np.floor(num))
        if bad.any():
            raise DataError(f"{path.name}: column {c} has non-integer values, e.g. {_few(df.loc[bad, c])} (a bare "
                            f"carriage return read as a line end?); read with lineterminator='\\n'")
        df[c] = num.astype(np.int64)
    _unique_ids(df["video_id"], path.name)
    cat = pd.DataFrame({
        "video_id": df["video_id"],
        "cat_level1_id": df["first_level_category_id"], "cat_level1_name": df["first_level_category_name"],
        "cat_level2_id": df["second_level_category_id"], "cat_level2_name": df["second_level_category_name"],
        "cat_level3_id": df["third_level_category_id"], "cat_level3_name": df["third_level_category_name"],
    }).sort_values("video_id").reset_index(drop=True)
    gap = ((cat["cat_level1_id"] == schema.MISSING_ID) & (cat["cat_level2_id"] != schema.MISSING_ID)) | \
          ((cat["cat_level2_id"] == schema.MISSING_ID) & (cat["cat_level3_id"] != schema.MISSING_ID))
    _bump(repairs, f"{path.stem}.deeper_level_without_parent", gap.sum())
    caps = pd.DataFrame({
        "video_id": df["video_id"],
        "manual_cover_text": df["manual_cover_text"].where(df["manual_cover_text"] != "UNKNOWN"),
        "caption": df["caption"].where(df["caption"] != ""),
        "topic_tag": parse_tag_lists(df["topic_tag"]),
    }).sort_values("video_id").reset_index(drop=True)
    return cat, caps


def _unique_ids(ids: pd.Series, fname: str) -> None:
    dup = ids.duplicated()
    if dup.any():
        raise DataError(f"{fname}: column {ids.name} repeats ids, e.g. {_few(ids[dup])}; one row per id expected")


def read_item_tags(path: Path, repairs: dict) -> pd.DataFrame:
    _check_header(path, repairs)
    df = _arrow_read(path, {"video_id": pa.int64(), "feat": pa.string()})
    _unique_ids(df["video_id"], path.name)
    df["feat"] = parse_int_lists(df["feat"], path.name, "feat")
    return df.sort_values("video_id").reset_index(drop=True)


def read_social(path: Path, repairs: dict) -> pd.DataFrame:
    _check_header(path, repairs)
    df = _arrow_read(path, {"user_id": pa.int64(), "friend_list": pa.string()})
    df["friend_list"] = parse_int_lists(df["friend_list"], path.name, "friend_list")
    return df.reset_index(drop=True)


_USER_STR = {"user_active_degree", "follow_user_num_range", "fans_user_num_range", "friend_user_num_range",
             "register_days_range"}


def read_users(path: Path, repairs: dict) -> pd.DataFrame:
    """user_features.csv: strings as str, numbers as int64, or float64 where NaN occur (onehot_feat4, 12..17)."""
    _check_header(path, repairs)
    types = {c: (pa.string() if c in _USER_STR else pa.float64()) for c in schema.USER_COLUMNS}
    df = _arrow_read(path, types)[schema.USER_COLUMNS]
    for c in schema.USER_COLUMNS:
        if c in _USER_STR:
            df[c] = df[c].astype(object).where(df[c].notna(), None)
            continue
        v = df[c].to_numpy()
        if not np.isnan(v).any() and np.all(v == np.floor(v)):
            df[c] = v.astype(np.int64)
        else:
            _bump(repairs, f"{path.stem}.{c}.nan_kept", np.isnan(v).sum())
    if df["user_id"].dtype != np.int64:
        raise DataError(f"{path.name}: column user_id has empty or non-integer values; one row per user expected")
    _unique_ids(df["user_id"], path.name)
    return df.sort_values("user_id").reset_index(drop=True)


def read_item_static(path: Path, repairs: dict) -> pd.DataFrame:
    """First row per video of item_daily_features.csv, static columns only; date kept as int YYYYMMDD."""
    _check_header(path, repairs)
    types = {"video_id": pa.int64(), "date": pa.int64(), "author_id": pa.int64(), "video_type": pa.string(),
             "upload_dt": pa.string(), "upload_type": pa.string(), "visible_status": pa.string(),
             "video_duration": pa.float64(), "video_width": pa.float64(), "video_height": pa.float64(),
             "music_id": pa.float64(), "video_tag_id": pa.float64(), "video_tag_name": pa.string()}
    df = _arrow_read(path, types, columns=list(types))
    df = df.sort_values(["video_id", "date"], kind="stable").drop_duplicates("video_id", keep="first")
    for c in ("video_width", "video_height", "music_id", "video_tag_id"):
        v = df[c].to_numpy()
        if not np.isnan(v).any() and np.all(v == np.floor(v)):
            df[c] = v.astype(np.int64)
    return df[["video_id", *schema.ITEM_STATIC_COLUMNS]].reset_index(drop=True)


def _check_refs(ids: pd.Series, known: np.ndarray, fname: str, col: str, table: str) -> None:
    unknown = ~np.isin(ids.to_numpy(), known)
    if unknown.any():
        raise DataError(f"{fname}: column {col} has {int(pd.Series(ids[unknown]).nunique())} ids not in {table}, "
                        f"e.g. {_few(ids[unknown])}; the folder mixes files of different downloads")


def load_kuairec(data_dir, matrix: str = "big") -> RawTables:
    """Read, validate and lightly repair a KuaiRec 2.0 folder (CONTRACTS section 1)."""
    if matrix not in MATRICES:
        raise DataError(f"matrix must be one of {MATRICES}, got {matrix!r}")
    d = resolve_data_dir(data_dir)
    mname = f"{matrix}_matrix.csv"
    files = {name: _require(d, name) for name in (mname, *SIDE_FILES)}
    repairs: dict[str, int] = {}
    users = read_users(files["user_features.csv"], repairs)
    categories, captions = read_caption(files["kuairec_caption_category.csv"], repairs)
    tags = read_item_tags(files["item_categories.csv"], repairs)
    static = read_item_static(files["item_daily_features.csv"], repairs)
    social = read_social(files["social_network.csv"], repairs)
    for name, table in (("user_features.csv", users), ("kuairec_caption_category.csv", categories),
                        ("item_categories.csv", tags)):
        if len(table) == 0:
            raise DataError(f"{files[name]}: no data rows (only a header?); copy the file again from the download")
    inter = read_matrix(files[mname], repairs)
    uid, vid = users["user_id"].to_numpy(), categories["video_id"].to_numpy()
    _check_refs(inter["user_id"], uid, mname, "user_id", "user_features.csv")
    _check_refs(inter["video_id"], vid, mname, "video_id", "kuairec_caption_category.csv")
    _check_refs(inter["video_id"], tags["video_id"].to_numpy(), mname, "video_id", "item_categories.csv")
    _check_refs(social["user_id"], uid, "social_network.csv", "user_id", "user_features.csv")
    _check_refs(static["video_id"], vid, "item_daily_features.csv", "video_id", "kuairec_caption_category.csv")
    if matrix == "big":  # KuaiRec's big matrix covers every user and video; far fewer means mixed downloads
        for what, n_side, n_seen, side in (("videos", len(vid), inter["video_id"].nunique(),
                                            "kuairec_caption_category.csv"),
                                           ("users", len(uid), inter["user_id"].nunique(), "user_features.csv")):
            if n_seen < COVERAGE_WARN * n_side:
                log.warning("warning: %s lists %d %s but %s has interactions of only %d of them: every listed "
                            "one is a candidate; are the side files from another download?", side, n_side, what,
                            mname, n_seen)
    return RawTables(
        interactions=inter, users=users, categories=categories, item_tags=tags, item_static=static, social=social,
        n_users=int(uid.max()) + 1 if len(uid) else 0, n_videos=int(vid.max()) + 1 if len(vid) else 0,
        repairs=repairs, source_files=files, captions=captions,
    )
