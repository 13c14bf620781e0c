"""Bootstrap over users on hand-made objectives whose answer is known; the recording wrapper on a real objective."""
from __future__ import annotations

import numpy as np
import pytest

from estimation.search_space import get_space
from estimation.uncertainty import (RecordingObjective, bootstrap, bootstrap_objective, bootstrap_user_weights,
                                    candidate_weights, covers, replicate_argmins)

W_C = np.array([0.3, 0.3, 0.2, -0.2])
DIR = np.array([0.1, -0.1, 0.0, 0.0])  # moves mass from w_long to w_complete, stays on the simplex


class LineObjective:
    """Per-session loss (theta(w) - t_s)^2 with theta(w) = (w - W_C) . DIR / |DIR|^2: the weighted argmin over
    candidates on the line W_C + theta * DIR is the candidate nearest to the weighted mean of t."""

    def __init__(self, t, used=None):
        self.t = np.asarray(t, dtype=np.float64)
        self.used = np.ones(len(t), bool) if used is None else np.asarray(used)
        self.n_used = int(self.used.sum())
        self.calls = 0

    def per_session(self, W):
        self.calls += 1
        W = np.asarray(W, dtype=np.float64).reshape(-1, 4)
        theta = (W - W_C) @ DIR / (DIR @ DIR)
        out = (theta[:, None] - self.t[None, :]) ** 2
        out[:, ~self.used] = np.nan
        return out


def line_candidates(step=0.002, half=0.2):
    theta = np.arange(-half, half + step / 2, step)
    return W_C[None] + theta[:, None] * DIR[None], theta


def test_recording_objective_matches_mean_and_computes_each_w_once():
    t = np.linspace(-1, 1, 9)
    used = np.ones(9, bool)
    used[3] = False
    obj = LineObjective(t, used)
    rec = RecordingObjective(obj)
    W, theta = line_candidates(0.1, 0.3)
    got = rec(W)
    want = np.array([np.mean((th - t[used]) ** 2) for th in theta])
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert rec.n_computed == len(W) and rec.n_used == 8  # attributes pass through to the objective
    rec(W[:3])
    rec.rows(np.vstack([W[:2], W[:2]]))
    assert rec.n_computed == len(W)  # nothing evaluated twice
    Wt, Lt = rec.table()
    assert Wt.shape == (len(W), 4) and Lt.shape == (len(W), 8)


def test_bootstrap_over_users_matches_the_known_sampling_distribution():
    rng = np.random.default_rng(1)
    n_users, per_user = 300, 2
    users = np.repeat(np.arange(n_users), per_user)
    t = 0.05 + rng.normal(0, 0.25, n_users * per_user)
    W, theta = line_candidates()
    L = LineObjective(t).per_session(W)
    w_hat = W[np.argmin(L.mean(1))]
    unc = bootstrap(W, L, users, w_hat, n_boot=400, level=0.9, rate=0.5, signs=(1, 1, 1, -1), seed=0)
    # the estimator is (the grid point nearest to) the mean of t; its sd under user resampling:
    user_dev = np.bincount(users, t - t.mean())
    sd_theta = np.sqrt((user_dev ** 2).sum()) / len(t)
    boot_theta = (unc.boot_w - W_C) @ DIR / (DIR @ DIR)
    assert abs(boot_theta.mean() - t.mean()) < 0.004
    assert 0.75 < boot_theta.std() / sd_theta < 1.25
    # w_complete moves by 0.1 per unit theta: its interval is the mean -+ 1.645 sd
    assert abs(unc.boot_std[0] / (0.1 * sd_theta) - 1) < 0.25
    half = (unc.ci_high[0] - unc.ci_low[0]) / 2
    assert abs(half / (1.645 * 0.1 * sd_theta) - 1) < 0.3
    assert unc.ci_low[0] <= w_hat[0] <= unc.ci_high[0]
    assert unc.ci_low[2] == unc.ci_high[2] == pytest.approx(0.2)  # w_rewatch never moves on the line
    # m-out-of-n with the mean's rate 1/2 estimates the same spread
    assert unc.m == int(np.ceil(n_users ** 0.7))
    mn_half = (unc.mn_high[0] - unc.mn_low[0]) / 2
    assert 0.6 < mn_half / half < 1.6
    m = unc.metrics()
    assert {"ci90_low_w_complete", "ci90_high_w_neg", "boot_std_w_long", "mn_ci90_low_w_rewatch",
            "mn_std_w_complete", "boot_n", "boot_m"} <= set(m)


def test_resampling_is_by_user():
    """Duplicating every session (each user twice as many identical sessions) changes nothing: users, not
    sessions, are drawn."""
    rng = np.random.default_rng(2)
    users = np.repeat(np.arange(50), 3)
    t = rng.normal(0, 0.3, len(users))
    W, _ = line_candidates(0.01)
    L = LineObjective(t).per_session(W)
    a = bootstrap(W, L, users, W[0], n_boot=50, seed=3)
    b = bootstrap(W, np.hstack([L, L]), np.concatenate([users, users]), W[0], n_boot=50, seed=3)
    np.testing.assert_allclose(a.boot_w, b.boot_w)
    np.testing.assert_allclose(a.mn_w, b.mn_w)
    cnt = bootstrap_user_weights(50, 7, np.random.default_rng(0))
    assert cnt.shape == (7, 50) and (cnt.sum(1) == 50).all()


def test_identical_sessions_give_a_point_interval():
    t = np.full(40, 0.06)
    W, theta = line_candidates(0.02)
    L = LineObjective(t).per_session(W)
    users = np.arange(40) // 2
    w_hat = W[np.argmin(L.mean(1))]
    unc = bootstrap(W, L, users, w_hat, n_boot=30)
    np.testing.assert_allclose(unc.ci_low, w_hat, atol=1e-12)
    np.testing.assert_allclose(unc.ci_high, w_hat, atol=1e-12)
    np.testing.assert_allclose(unc.mn_low, w_hat, atol=1e-12)
    assert unc.covers(w_hat).all() and not unc.covers(w_hat + [0.01, -0.01, 0, 0]).all()


def test_estimate_gap_flags_a_better_candidate():
    t = np.full(10, 0.0)
    W, theta = line_candidates(0.05)
    L = LineObjective(t).per_session(W)
    best = W[np.argmin(L.mean(1))]
    unc = bootstrap(W, L, np.arange(10), best, n_boot=5)
    assert unc.estimate_gap == 0 and np.allclose(unc.cand_best_w, best)
    off = W[0]  # an optimizer that stopped at theta = -0.2: loss 0.04, the candidate minimum is 0
    unc = bootstrap(W, L, np.arange(10), off, n_boot=5)
    assert unc.estimate_gap == pytest.approx(0.04) and unc.metrics()["boot_estimate_gap"] == pytest.approx(0.04)
    assert not unc.covers(off).all()  # the intervals sit at the better candidate


def test_ties_average_and_nonfinite_candidates_never_win():
    W = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, -1.0]])
    L = np.array([[1.0, 1.0], [1.0, 1.0], [0.0, np.nan], [5.0, 5.0]])
    w, loss = replicate_argmins(W, L, np.ones((1, 2)))
    np.testing.assert_allclose(w[0], [0.5, 0.5, 0, 0])  # the NaN row is out; rows 0 and 1 tie
    assert loss[0] == 1.0


def test_covers_by_hand():
    low, high = np.array([0.1, 0.2, 0.0, -0.3]), np.array([0.3, 0.2, 0.1, -0.1])
    w = np.array([0.3, 0.25, 0.0, -0.35])
    assert covers(low, high, w).tolist() == [True, False, True, False]


def test_candidates_lie_in_the_space_and_include_the_estimate():
    sp = get_space("constrained")
    w_hat = np.array([0.5, 0.0, 0.3, -0.2])
    C = candidate_weights(sp, w_hat, resolution=4, radius=1)
    assert np.allclose(np.abs(C).sum(1), 1) and (C[:, :3] >= 0).all() and (C[:, 3] <= 0).all()
    assert any(np.allclose(c, w_hat) for c in C)
    assert len(C) >= len(sp.grid(4)) and len(np.unique(np.round(C, 12), axis=0)) == len(C)


def test_bootstrap_objective_adds_only_missing_candidates():
    users = np.arange(20) // 2
    obj = RecordingObjective(LineObjective(np.linspace(-0.1, 0.1, 20)))
    sp = get_space("constrained")
    obj(sp.grid(3))
    n0 = obj.n_computed
    unc = bootstrap_objective(obj, sp, W_C, users, n_boot=20, resolution=3)
    assert obj.n_computed - n0 == unc.n_candidates - n0  # the lattice was there already
    assert unc.n_candidates == len(obj.table()[0])


def test_recording_wrapper_is_exact_on_a_real_objective(tmp_path, tiny_world):
    """The wrapper returns bit-for-bit what the objective returns (prepared with oracle heads on a tiny world)."""
    from estimation.runner import EstimationConfig, prepare_inputs

    config = EstimationConfig(data_dir=str(tiny_world), heads="oracle", objectives="cat_ce,emb_l2",
                              root=str(tmp_path))
    inputs = prepare_inputs(config)
    W = get_space("constrained").grid(3)
    for rec in inputs.objectives.values():
        assert isinstance(rec, RecordingObjective)
        np.testing.assert_array_equal(rec(W), rec.objective(W))
    assert len(inputs.session_users) == len(inputs.session_keys)
