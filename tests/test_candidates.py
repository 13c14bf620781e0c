"""Valid test sessions, observed lists and seen-before exclusion on a hand-made log."""
import numpy as np
import pandas as pd

from estimation.candidates import observed_videos, seen_before, valid_test_sessions


def _log():
    # user 0: session 0 (train) videos 1,2 ; session 1 (test) videos 3,1,4,5,6
    # user 1: session 2 (test) videos 2,2,7,8,9 ; session 3 (test, short) video 0
    inter = pd.DataFrame(
        {
            "user_id": [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1],
            "video_id": [1, 2, 3, 1, 4, 5, 6, 2, 2, 7, 8, 9, 0],
            "timestamp": [0, 10, 5000, 5010, 5020, 5030, 5040, 100, 110, 120, 130, 140, 9000.0],
            "session_key": [0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3],
        }
    )
    sessions = pd.DataFrame(
        {
            "user_id": [0, 0, 1, 1],
            "split": [0, 2, 2, 2],
            "sess_len": [2, 5, 5, 1],
            "start_ts": [0.0, 5000.0, 100.0, 9000.0],
        },
        index=pd.Index([0, 1, 2, 3], name="session_key"),
    )
    return inter, sessions


def test_valid_test_sessions_keeps_test_sessions_of_length_at_least_five():
    _, sessions = _log()
    assert valid_test_sessions(sessions, 5).tolist() == [1, 2]
    assert valid_test_sessions(sessions, 1).tolist() == [1, 2, 3]


def test_observed_videos_are_the_sessions_rows_in_time_order():
    inter, _ = _log()
    obs = observed_videos(inter, np.array([1, 2]))
    assert obs.row(0).tolist() == [3, 1, 4, 5, 6]
    assert obs.row(1).tolist() == [2, 2, 7, 8, 9]
    assert obs.lengths().tolist() == [5, 5]


def test_seen_before_lists_distinct_earlier_videos_only():
    inter, sessions = _log()
    seen = seen_before(inter, sessions, np.array([1, 2, 3]))
    assert seen.row(0).tolist() == [1, 2]  # user 0 watched 1 and 2 before session 1
    assert seen.row(1).tolist() == []  # user 1's first session
    assert seen.row(2).tolist() == [2, 7, 8, 9]  # distinct, from session 2
