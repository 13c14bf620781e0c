"""Optimizers: every evaluation logged, non-finite values never win, plateaus left, planted weights found."""
import numpy as np
import pytest

from estimation.objectives import EmbeddingL2
from estimation.optimizers import optimize
from estimation.ranking import Ranker
from estimation.search_space import get_space

W_STAR = np.array([0.5, 0.1, 0.15, -0.25])


def plateau_objective(W):
    """Piecewise constant bowl around W_STAR, +inf (or NaN) in a forbidden corner."""
    W = np.atleast_2d(W)
    d = np.abs(W - W_STAR).sum(1)
    loss = np.floor(d * 20) / 20
    loss[W[:, 1] > 0.6] = np.inf
    loss[W[:, 2] > 0.6] = np.nan
    return loss


class Recorder:
    def __init__(self):
        self.steps, self.ws, self.losses = [], [], []

    def __call__(self, step, w, loss):
        self.steps.append(step)
        self.ws.append(np.array(w))
        self.losses.append(loss)


@pytest.mark.parametrize("method,opts", [
    ("nelder-mead", {}),
    ("grid", {"resolution": 10}),
    ("grid", {"resolution": 8, "refine": "nm"}),
    ("cmaes", {"seed": 3, "max_evals": 400}),
])
def test_finds_plateau_minimum_and_logs_every_eval(method, opts):
    rec = Recorder()
    res = optimize(method, plateau_objective, get_space("constrained"), None, rec, **opts)
    assert res.loss == 0.0, (method, res.loss, res.w)
    assert np.abs(res.w - W_STAR).sum() < 0.05
    assert rec.steps == list(range(res.n_evals)) == list(range(len(res.history.loss)))
    np.testing.assert_array_equal(np.array(rec.ws), res.history.w)
    assert all(np.isfinite(x) or x == np.inf for x in rec.losses)  # NaN from the objective arrives as +inf
    assert np.isfinite(res.history.best_so_far()[-1])
    np.testing.assert_allclose(np.abs(res.history.w).sum(1), 1.0)


def test_nonfinite_everywhere_never_wins_and_budget():
    res = optimize("nelder-mead", lambda W: np.full(len(np.atleast_2d(W)), np.nan), get_space("constrained"),
                   max_evals=30)
    assert res.loss == np.inf and res.n_evals == 30 and np.isnan(res.w).all()
    res = optimize("cmaes", lambda W: np.full(len(W), np.inf), get_space("constrained"), max_evals=50)
    assert res.loss == np.inf and res.n_evals <= 50


def test_planted_ranking_objective_recovered():
    """Observed lists = top-K under w* (no noise): the embedding loss is 0 at w*, and the grid finds 0."""
    rng = np.random.default_rng(0)
    S, V = 30, 80
    probs = rng.random((S, V, 4)).astype(np.float16)
    k = rng.integers(5, 10, size=S)
    ranker = Ranker(probs, k)
    top = ranker.topk(W_STAR[None])
    observed = (top.indptr, top.ids[0])
    obj = EmbeddingL2(ranker, observed, rng.normal(size=(V, 6)))
    sp = get_space("constrained")
    assert obj(W_STAR[None])[0] == 0.0
    at_start = obj(sp.to_w(sp.start())[None])[0]
    res = optimize("grid", obj, sp, resolution=12, refine_rounds=3)
    assert res.loss < 0.05 * at_start and np.abs(res.w - W_STAR).sum() < 0.05
    nm = optimize("nelder-mead", obj, sp, max_evals=300)
    assert nm.loss < at_start


def test_grid_coarsens_to_fit_budget():
    res = optimize("grid", plateau_objective, get_space("constrained"), resolution=20, max_evals=300)
    assert res.n_evals <= 300 and res.info["resolution"] < 20 and res.info["n_grid"] <= 150
    assert np.abs(res.w - W_STAR).sum() < 0.15


def test_unknown_method():
    with pytest.raises(ValueError):
        optimize("sgd", plateau_objective, get_space("constrained"))


def test_plots_render(tmp_path):
    from estimation.plots import landscape, landscape_values, loss_curve, runs_overlay
    a = optimize("grid", plateau_objective, get_space("constrained"), resolution=6, refine=None)
    b = optimize("nelder-mead", plateau_objective, get_space("constrained"), max_evals=60)
    loss_curve(a.history.loss, "grid", tmp_path / "a.png")
    runs_overlay({"grid": a.history.loss, "nm": b.history.loss}, tmp_path / "o.png")
    u, v, Z = landscape_values(plateau_objective, W_STAR, axes=(0, 1), resolution=11)
    assert np.nanmin(Z) == 0.0 and np.isnan(Z[-1, -1])
    landscape(u, v, Z, W_STAR, path=tmp_path / "l.png", marks={"best": a.w})
    assert all((tmp_path / f).stat().st_size > 1000 for f in ["a.png", "o.png", "l.png"])
