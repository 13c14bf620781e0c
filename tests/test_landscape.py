"""Landscape heat maps and profiles: values on a hand-made objective, figures logged to an MLflow run."""
from __future__ import annotations

import mlflow
import numpy as np
import pytest

from estimation.landscape import landscape_figures, log_landscapes, parse_axes, profiles, signs_of
from estimation.tracking import setup_mlflow

W0 = np.array([0.4, 0.3, 0.1, -0.2])


def bowl(W):
    """|w| distance to |W0| (L1); +inf on the w_rewatch = 1 vertex."""
    W = np.asarray(W, dtype=np.float64).reshape(-1, 4)
    out = np.abs(np.abs(W) - np.abs(W0)).sum(1)
    out[np.abs(W[:, 2]) > 0.999] = np.inf
    return out


def test_profiles_bottom_out_at_the_point_and_keep_signs():
    seen = []

    def obj(W):
        seen.append(np.asarray(W))
        return bowl(W)

    t, Z = profiles(obj, W0, resolution=11)
    assert Z.shape == (4, 11) and np.isnan(Z[2, -1])  # the +inf vertex is NaN on the plot
    for h in range(4):
        assert t[np.nanargmin(Z[h])] == pytest.approx(np.abs(W0)[h], abs=0.05)
    W = np.vstack(seen)
    assert np.allclose(np.abs(W).sum(1), 1) and (W[:, 3] <= 0).all() and (W[:, :3] >= 0).all()
    assert signs_of([0.5, 0.5, 0.0, 0.0]) == (1, 1, 1, -1)


def test_parse_axes():
    assert parse_axes("complete-long, rewatch-neg") == ((0, 1), (2, 3))
    assert parse_axes("0-3") == ((0, 3),)
    with pytest.raises(ValueError):
        parse_axes("long-long")


def test_landscape_figures_are_logged_to_the_run(tmp_path):
    uri = setup_mlflow(tmp_path)
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("head-weight-estimation")
    run = client.create_run(exp.experiment_id).info.run_id
    w_star = np.array([0.35, 0.25, 0.15, -0.25])
    paths = log_landscapes(client, run, bowl, W0, w_star, axes=((0, 1), (2, 3)), resolution=7, title="bowl")
    logged = {a.path for a in client.list_artifacts(run, "figures/landscape")}
    assert set(paths) == logged and len(logged) == 6  # 2 points x (2 slices + 1 profile)
    assert "figures/landscape/landscape_w_star_rewatch-neg.png" in logged
    assert "figures/landscape/profile_estimate.png" in logged


def test_landscape_without_truth_has_only_the_estimate(tmp_path):
    paths = landscape_figures(bowl, {"estimate": W0, "w_star": None}, axes=((0, 1),), resolution=5,
                              out_dir=tmp_path, profile=False)
    assert [p.name for p in paths] == ["landscape_estimate_complete-long.png"] and paths[0].stat().st_size > 0
