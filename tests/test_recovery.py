"""Recovery study: world specs, tables computed right on hand-made rows, and a real study on two tiny worlds."""
from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest

from estimation.recovery import (StudyConfig, global_vs_nm, head_geometry, identification_table, run_study,
                                 summary_table, world_specs)


def test_world_specs_cover_edges_and_zero_penalty():
    specs = world_specs(10, seed0=100)
    assert len({s["name"] for s in specs}) == 10 and [s["seed"] for s in specs] == list(range(100, 110))
    for s in specs:
        w = np.array(s["w_star"])
        assert np.isclose(np.abs(w).sum(), 1) and (w[:3] >= 0).all() and w[3] <= 0
    kinds = [s["kind"] for s in specs]
    assert {"default", "random", "edge", "w4_zero", "vertex"} <= set(kinds)
    assert all(s["w_star"][3] == 0 for s in specs if s["kind"] == "w4_zero")
    assert all(np.isclose(np.abs(s["w_star"]).min(), 0.02) for s in specs if s["kind"] == "edge")
    assert specs == world_specs(10, seed0=100)  # deterministic


def _row(world, opt, l1, loss, covers, low=(0, 0, 0, -1), high=(1, 1, 1, 0)):
    return {"world": world, "kind": "random", "seed": 0, "heads": "oracle", "objective": "cat_ce", "optimizer": opt,
            "loss": loss, "n_evals": 10, "seconds": 1.0, "l1_error": l1, "w_star": [0.25, 0.25, 0.25, -0.25],
            "w_hat": [0.25 + l1 / 2, 0.25 - l1 / 2, 0.25, -0.25], "boot_low": list(low), "boot_high": list(high),
            "boot_covers": list(covers), "mn_low": list(low), "mn_high": list(high), "mn_covers": [1, 1, 1, 1]}


def test_tables_by_hand():
    rows = [_row("a", "grid", 0.02, 1.0, [1, 1, 1, 1]), _row("b", "grid", 0.10, 2.0, [1, 0, 1, 1]),
            _row("c", "grid", 0.04, 3.0, [1, 1, 1, 1]), _row("a", "nelder-mead", 0.3, 1.5, [0, 0, 0, 0]),
            _row("b", "nelder-mead", 0.1, 1.9, [1, 1, 1, 1])]
    t = summary_table(rows).set_index("optimizer")
    assert t.loc["grid", "worlds"] == 3 and t.loc["grid", "median_l1"] == pytest.approx(0.04)
    assert t.loc["grid", "worst_l1"] == pytest.approx(0.10) and t.loc["grid", "mean_l1"] == pytest.approx(0.16 / 3)
    assert t.loc["grid", "boot_cover_weight"] == pytest.approx(11 / 12)   # 11 of 12 weights covered
    assert t.loc["grid", "boot_cover_all4"] == pytest.approx(2 / 3)       # 2 of 3 worlds fully covered
    assert t.loc["nelder-mead", "boot_cover_weight"] == pytest.approx(0.5)
    assert t.loc["grid", "boot_width"] == pytest.approx(1.0)
    g = global_vs_nm(rows).set_index("world")
    assert g.loc["a", "grid_minus_nm"] == pytest.approx(-0.5) and g.loc["b", "grid_minus_nm"] == pytest.approx(0.1)
    assert np.isnan(g.loc["c", "grid_minus_nm"])
    ident = identification_table(rows).iloc[0]
    assert ident["err_w_rewatch"] == 0 and ident["ci_width_w_complete"] == pytest.approx(1.0)
    assert ident["err_w_complete"] == pytest.approx(0.05)   # median of |l1/2| over 0.01, 0.05, 0.02, 0.15, 0.05


def test_head_geometry_finds_collinear_heads():
    class Ranker:
        rng = np.random.default_rng(0)
        a = rng.random((6, 40, 1))
        probs = np.concatenate([a, rng.random((6, 40, 1)), 0.5 * a + 0.1, rng.random((6, 40, 1))], axis=2)
        candidates = (np.arange(7) * 20, np.tile(np.arange(0, 40, 2), 6))  # even ids only

    g = head_geometry(Ranker())
    d = np.array(g["eigvecs"][0])  # p_rewatch = p_complete / 2 + c: d = (1, 0, -2, 0) / sqrt(5) moves no score
    assert np.allclose(np.abs(d), np.array([1, 0, 2, 0]) / np.sqrt(5), atol=1e-6)
    assert g["eigvals"][0] < 1e-12 and g["n_pairs"] == 6 * 20 and g["candidates"] == "skyband"
    assert np.isclose(g["corr"][0][2], 1.0)


def test_study_on_two_tiny_worlds_writes_table_figure_and_mlflow_run(tmp_path):
    out = tmp_path / "study"
    cfg = StudyConfig(n_worlds=2, size="tiny", objectives="cat_ce_smooth", optimizers="nelder-mead,grid",
                      max_evals=30, grid_resolution=5, bootstrap=20, bootstrap_resolution=4, landscape_worlds=0,
                      profiles=False, out=str(out))
    res = run_study(cfg)
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and {r["world"] for r in rows} == {s["name"] for s in world_specs(2, 100)}
    for r in rows:
        assert r["l1_error"] == pytest.approx(np.abs(np.array(r["w_hat"]) - np.array(r["w_star"])).sum())
        lo, hi, w = (np.array(r[k]) for k in ("boot_low", "boot_high", "w_star"))
        assert r["boot_covers"] == ((lo - 1e-9 <= w) & (w <= hi + 1e-9)).astype(int).tolist()
    md = (out / "recovery_table.md").read_text()
    assert "cat_ce_smooth" in md and "median_l1" in md and "grid_minus_nm" in md and "Head geometry" in md
    assert len((out / "geometry.jsonl").read_text().splitlines()) == 2
    assert (out / "recovery.png").stat().st_size > 0 and (out / "recovery_table.csv").exists()
    client = mlflow.MlflowClient(res["tracking_uri"])
    exp = client.get_experiment_by_name("recovery-study")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1 and "oracle.cat_ce_smooth.grid.median_l1" in runs[0].data.metrics
    assert {"recovery.png", "recovery_table.md"} <= {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    est = client.get_experiment_by_name("head-weight-estimation")
    parents = [r for r in client.search_runs([est.experiment_id]) if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 2 and all(p.data.tags["heads"] == "oracle" for p in parents)
    # resumed: nothing is estimated again
    run_study(cfg)
    assert len((out / "results.jsonl").read_text().splitlines()) == 4
    assert len([r for r in client.search_runs([est.experiment_id]) if "mlflow.parentRunId" not in r.data.tags]) == 2
    (out / "recovery.png").unlink()
    rep = run_study(StudyConfig(**{**cfg.__dict__, "report_only": True}))
    assert len(rep["rows"]) == 4 and (out / "recovery.png").exists() and "<= NM in" in (out / "recovery_table.md").read_text()
