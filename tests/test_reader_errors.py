"""Broken matrix files give one DataError line naming the file, the 1-based file line and what to do (newcomer
review, findings 10 and 11): copies of the tiny planted world with one defect each, read by the real reader; the
CLI prints the same as one `error:` line."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from datamodules.raw import DataError, load_kuairec

ROOT = Path(__file__).resolve().parents[1]


def _field(line: str, i: int, value: str) -> str:
    parts = line.split(",")
    parts[i] = value
    return ",".join(parts)


# matrix columns: user_id, video_id, play_duration, video_duration, time, date, timestamp, watch_ratio
# each case edits the data lines (index 0 = file line 2) and names what the message must hold
CASES = {
    "inf_watch_ratio": (lambda L: L[:8] + [_field(L[8], 7, "inf")] + L[9:],
                        ["column watch_ratio is infinite", "file line 10"]),
    "nan_watch_ratio": (lambda L: L[:8] + [_field(L[8], 7, "nan")] + L[9:],
                        ["column watch_ratio is empty or NaN", "file line 10"]),
    "huge_timestamp": (lambda L: L[:3] + [_field(L[3], 6, "1e30")] + L[4:],
                       ["column timestamp", "between 2000 and 2100", "file line 5"]),
    "inf_timestamp": (lambda L: L[:3] + [_field(L[3], 6, "inf")] + L[4:], ["column timestamp", "file line 5"]),
    "timestamp_1970": (lambda L: L[:3] + [_field(L[3], 6, "12345")] + L[4:], ["column timestamp", "file line 5"]),
    "header_only": (lambda L: [], ["no data rows", "file empty or truncated: re-download"]),
    "no_timestamps": (lambda L: [_field(x, 6, "") for x in L],
                      ["no usable rows", "without timestamp", "file empty or truncated: re-download"]),
    "cut_mid_line": (lambda L: L[:-1] + [",".join(L[-1].split(",")[:5])],
                     ["line {n} has 5 of 8 fields: file truncated or malformed"]),
    "cut_after_comma": (lambda L: L[:-1] + [",".join(L[-1].split(",")[:7]) + ","],
                        ["column watch_ratio is empty or NaN in 1 row(s) (file line {n})"]),
    "text_in_user_id": (lambda L: L[:3] + [_field(L[3], 0, "abc")] + L[4:],
                        ["line 5, column user_id: 'abc' is not an integer"]),
    "text_in_timestamp": (lambda L: L[:5] + [_field(L[5], 6, "yesterday")] + L[6:],
                          ["line 7, column timestamp: 'yesterday' is not a number"]),
    "negative_ratio": (lambda L: L[:6] + [_field(L[6], 7, "-0.5")] + L[7:],
                       ["column watch_ratio has negative values", "file line 8"]),
    "zero_bytes": (None, ["no header line", "file empty or truncated: re-download"]),
}


def _broken(tiny_world: Path, dest: Path, edit) -> tuple[Path, int]:
    """A copy of the world's data folder whose big_matrix.csv is edited; returns it and the file's line count."""
    shutil.copytree(tiny_world, dest)
    path = dest / "big_matrix.csv"
    header, *lines = path.read_text().splitlines()
    if edit is None:
        path.write_bytes(b"")
        return dest, 0
    new = edit(lines)
    path.write_text("\n".join([header, *new]) + "\n")
    return dest, len(new) + 1


@pytest.mark.parametrize("case", sorted(CASES))
def test_broken_matrix_names_file_and_line(tiny_world, tmp_path, case):
    edit, needles = CASES[case]
    data, n_lines = _broken(tiny_world, tmp_path / case, edit)
    with pytest.raises(DataError) as e:
        load_kuairec(data)
    msg = str(e.value)
    assert msg.startswith("big_matrix.csv: ") and "\n" not in msg, msg
    assert "np.int64" not in msg and "rows [" not in msg, msg  # plain file line numbers, no numpy reprs
    for n in needles:
        assert n.format(n=n_lines) in msg, (n, msg)


def test_prepare_data_prints_it_as_one_line(tiny_world, tmp_path):
    data, n_lines = _broken(tiny_world, tmp_path / "cut", CASES["cut_mid_line"][0])
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "prepare_data.py"), "--data-dir", str(data),
                           "--out", str(tmp_path / "processed")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: big_matrix.csv: line {n_lines} has 5 of 8 fields: file truncated or malformed; re-download it (or "
        f"repair that line)"]
    assert not [p for p in (tmp_path / "processed").iterdir() if not p.name.startswith(".")]  # no dataset written


def test_missing_csv_says_what_to_do(tiny_world, tmp_path):
    from datamodules.dataset import prepare_dataset

    shutil.copytree(tiny_world, tmp_path / "d")
    (tmp_path / "d" / "item_categories.csv").unlink()
    with pytest.raises(DataError, match="missing item_categories.csv.*re-download the dataset or regenerate the world"):
        prepare_dataset(tmp_path / "d", cache_root=tmp_path / "c")


def test_carriage_return_inside_the_header_is_one_line(tiny_world, tmp_path):
    """Review 3b, #2: `user_id,video\\r_id,...` raised csv.Error (a traceback) from the header check."""
    shutil.copytree(tiny_world, tmp_path / "d")
    path = tmp_path / "d" / "big_matrix.csv"
    header, rest = path.read_bytes().split(b"\n", 1)
    path.write_bytes(header.replace(b"video_id", b"video\r_id") + b"\n" + rest)
    with pytest.raises(DataError, match=r"big_matrix\.csv: line 1 \(the header\) is not plain CSV.*re-download"):
        load_kuairec(tmp_path / "d")
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "prepare_data.py"), "--data-dir",
                           str(tmp_path / "d"), "--out", str(tmp_path / "p")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
