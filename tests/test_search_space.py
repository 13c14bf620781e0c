"""Search spaces: the notebook's maps reproduce its printed weights; round trips; grids."""
from math import comb

import numpy as np
import pytest

from estimation.search_space import get_space, simplex_grid


def test_reference_maps_reproduce_notebook_printouts():
    ce = get_space("reference-ce")
    np.testing.assert_allclose(ce.to_w([0.25, 0.25, 0.25]), [0.25, 0.25, 0.25, 0.25])
    np.testing.assert_allclose(ce.to_w([0.2625, 0.25, 0.25]), [0.2625, 0.25, 0.25, 0.2375])
    emb = get_space("reference-emb")
    x0 = [0.14549531, 0.08109316, 0.2734943]
    np.testing.assert_allclose(emb.to_w(x0), [0.14549531, 0.08109316, 0.2734943, -0.49991723], atol=1e-8)
    np.testing.assert_allclose(emb.to_w([0.15277007, 0.08109316, 0.2734943]),
                               [0.15277007, 0.08109316, 0.2734943, -0.49264247], atol=1e-8)
    # notebook's reference-ce with x far out: w_raw = (2, 0, 0, -1) -> (2/3, 0, 0, -1/3)
    np.testing.assert_allclose(ce.to_w([2.0, 0, 0]), [2 / 3, 0, 0, -1 / 3])


@pytest.mark.parametrize("name", ["constrained", "reference-ce", "reference-emb"])
def test_round_trip_and_normalisation(name):
    sp = get_space(name)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    W = sp.to_w(X)
    np.testing.assert_allclose(np.abs(W).sum(1), 1.0)
    np.testing.assert_allclose(sp.to_w(sp.to_x(W)), W, atol=1e-12)
    assert sp.initial_simplex(sp.start()).shape == (4, 3)
    G = sp.grid(4)
    np.testing.assert_allclose(np.abs(G).sum(1), 1.0)
    np.testing.assert_allclose(sp.to_w(sp.to_x(G)), G, atol=1e-12)


def test_constrained_signs_fold_and_grid():
    sp = get_space("constrained")
    rng = np.random.default_rng(1)
    W = sp.to_w(rng.normal(scale=3, size=(500, 3)))
    assert (W[:, :3] >= 0).all() and (W[:, 3] <= 0).all()
    x = np.array([0.1, 0.2, 0.3])
    np.testing.assert_allclose(sp.to_w(x), [0.1, 0.2, 0.3, -0.4])  # identity on the simplex
    np.testing.assert_allclose(sp.to_w([1.2, 0, 0]), [1.2 / 1.4, 0, 0, -0.2 / 1.4])  # folds back
    np.testing.assert_allclose(sp.to_w([1.0, 0, 0]), [1, 0, 0, 0])  # reaches the vertex exactly
    G = sp.grid(10)
    assert len(G) == comb(13, 3) and len(np.unique(G, axis=0)) == len(G)
    assert not np.signbit(G[:, 3][G[:, 3] == 0]).any()
    with pytest.raises(ValueError):
        sp.to_x([0.5, 0, 0, 0.5])  # positive weight on negatives: outside


def test_simplex_grid_and_reference_grid():
    g = simplex_grid(3)
    assert len(g) == comb(6, 3)
    np.testing.assert_allclose(g.sum(1), 1.0)
    G = get_space("reference-ce").grid(2)
    assert (G.sum(1) > 0).all() and len(np.unique(G, axis=0)) == len(G)
    with pytest.raises(ValueError):
        get_space("nope")


def test_simplex_slice_contains_point():
    from estimation.search_space import simplex_slice
    w0 = np.array([0.2, 0.3, 0.1, -0.4])
    u, v, W = simplex_slice(w0, axes=(0, 3), resolution=11)
    assert W.shape == (11, 11, 4)
    iu, iv = 2, 4  # u = 0.2 = a0[0], v = 0.4 = a0[3]
    np.testing.assert_allclose(W[iv, iu], w0)
    inside = np.isfinite(W).all(-1)
    np.testing.assert_allclose(np.abs(W[inside]).sum(-1), 1.0)
    assert (W[inside][:, 3] <= 0).all() and not inside[10, 10]
