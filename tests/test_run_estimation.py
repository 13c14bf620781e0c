"""End to end: the CLI on a tiny planted world, checked through MLflow's API; bad input gets one-line errors."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / "experiments" / "run_estimation.py"


def _cli(*args, cwd=ROOT, timeout=600):
    return subprocess.run([sys.executable, str(CLI), *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout)


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    root = tmp_path_factory.mktemp("project")
    proc = _cli("--root", root, "--world-size", "tiny", "--epochs", "2", "--max-evals", "40",
                "--optimizers", "nelder-mead,grid", "--grid-resolution", "6",
                "--bootstrap", "30", "--bootstrap-resolution", "4", "--landscape-resolution", "6")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, proc


def test_cli_prints_summary_and_mlflow_command(e2e):
    root, proc = e2e
    out = proc.stdout
    assert "cat_ce" in out and "emb_l2" in out and "planted w*" in out
    assert "litlogger" not in out and "-0.0000" not in out        # review 1, #21: no advert, no negative zero
    assert f"mlflow ui --backend-store-uri sqlite:///{root.resolve()}/mlruns/mlflow.db" in out
    import re

    m = re.search(r"total ([\d.]+)s \(data ([\d.]+)s, GNN ([\d.]+)s, heads ([\d.]+)s, pruning \+ ranker ([\d.]+)s, "
                  r"estimation ([\d.]+)s\)", out)
    assert m, out[-1500:]                                                     # review 3, #17: the time broken down
    total, *parts = map(float, m.groups())
    assert parts[-1] > 0 and sum(parts) <= total + 0.5


def test_runs_steps_weights_and_figures_are_in_mlflow(e2e):
    root, _ = e2e
    client = mlflow.MlflowClient(f"sqlite:///{root.resolve()}/mlruns/mlflow.db")
    exp = client.get_experiment_by_name("head-weight-estimation")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(r.data.tags["objective"] + "/" + r.data.tags["optimizer"] for r in children) == [
        "cat_ce/grid", "cat_ce/nelder-mead", "emb_l2/grid", "emb_l2/nelder-mead"]
    w_star = np.array([parents[0].data.metrics[f"w_star_w_{h}"] for h in ("complete", "long", "rewatch", "neg")])
    assert np.isclose(np.abs(w_star).sum(), 1.0)
    for child in children:
        n = int(child.data.metrics["n_evals"])
        budget = 84 + 4 * 124 if child.data.tags["optimizer"] == "grid" else 40  # grid: lattice + refinement
        assert 1 < n <= budget
        hist = client.get_metric_history(child.info.run_id, "w_complete")
        assert len(hist) == n and sorted(m.step for m in hist) == list(range(n))
        w = np.array([child.data.metrics[f"final_w_{h}"] for h in ("complete", "long", "rewatch", "neg")])
        assert np.isclose(np.abs(w).sum(), 1.0) and w[3] <= 0 <= w[:3].min()  # constrained space signs
        losses = [m.value for m in client.get_metric_history(child.info.run_id, "loss")]
        assert np.isclose(min(losses), child.data.metrics["final_loss"])
        assert np.isclose(child.data.metrics["l1_error"], np.abs(w - w_star).sum())
        arts = [a.path for a in client.list_artifacts(child.info.run_id, "figures")]
        assert "figures/loss_curve.png" in arts and "figures/landscape" in arts
        maps = {a.path for a in client.list_artifacts(child.info.run_id, "figures/landscape")}
        assert "figures/landscape/landscape_estimate_complete-long.png" in maps
        assert "figures/landscape/profile_w_star.png" in maps
        # bootstrap: 90% interval per weight around the estimate, and its coverage of w*
        m = child.data.metrics
        lo = np.array([m[f"ci90_low_w_{h}"] for h in ("complete", "long", "rewatch", "neg")])
        hi = np.array([m[f"ci90_high_w_{h}"] for h in ("complete", "long", "rewatch", "neg")])
        assert (lo <= hi).all() and m["boot_n"] == 30
        assert np.array_equal(np.array([m[f"ci90_covers_w_{h}"] for h in ("complete", "long", "rewatch", "neg")]),
                              ((lo - 1e-9 <= w_star) & (w_star <= hi + 1e-9)).astype(float))
        assert {"mn_ci90_low_w_neg", "mn_ci90_high_w_neg", "boot_std_w_neg"} <= set(m)
        assert "uncertainty.json" in {a.path for a in client.list_artifacts(child.info.run_id)}
    parent_arts = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"results.csv", "results.json", "figures"} <= parent_arts
    gnn = client.get_experiment_by_name("gnn-training")
    assert len(client.search_runs([gnn.experiment_id])) == 1


def test_second_invocation_reuses_the_gnn_run(e2e):
    root, _ = e2e
    proc = _cli("--root", root, "--world-size", "tiny", "--max-evals", "10", "--objectives", "cat_ce",
                "--epochs", "5")
    assert proc.returncode == 0, proc.stderr[-2000:]
    client = mlflow.MlflowClient(f"sqlite:///{root.resolve()}/mlruns/mlflow.db")
    gnn = client.get_experiment_by_name("gnn-training")
    assert len(client.search_runs([gnn.experiment_id])) == 1
    # review 3, #9: --epochs without --retrain was silently ignored
    assert "--epochs 5 has no effect" in proc.stderr and "--retrain" in proc.stderr


def test_readme_search_runs_snippet_lists_the_children(e2e):
    """The README's `mlflow.search_runs` example, run as printed in the project root of a finished job."""
    root, _ = e2e
    text = (ROOT / "README.md").read_text()
    start = text.index("```python\nimport mlflow\nmlflow.set_tracking_uri")
    code = text[start + len("```python\n"):text.index("```", start + 10)]
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "cat_ce" in proc.stdout and "nelder-mead" in proc.stdout and "final_loss" in proc.stdout


def test_planted_w_star_outside_the_constrained_signs_warns(tmp_path):
    """Review 3, #14: make_world warned, the estimation (which cannot recover it) did not."""
    from datamodules.world import make_world

    data = make_world(tmp_path / "w", size="tiny", seed=2, w_star=[0.3, 0.3, 0.2, 0.2])
    proc = _cli("--root", tmp_path, "--data-dir", data, "--heads", "oracle", "--objectives", "cat_ce",
                "--max-evals", "5", "--bootstrap", "0", "--no-landscape")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "neg +0.200, outside the constrained space" in proc.stderr and "--space reference" in proc.stderr


def _one_line_error(proc, *needles):
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), proc.stderr[-2000:]
    for n in needles:
        assert n in err[0]


def test_missing_data_dir_is_a_one_line_error(tmp_path):
    missing = tmp_path / "nowhere"
    _one_line_error(_cli("--root", tmp_path, "--data-dir", missing), str(missing))


def test_incomplete_data_dir_names_the_missing_file(tmp_path, tiny_world):
    import shutil

    broken = tmp_path / "KuaiRec 2.0" / "data"
    shutil.copytree(tiny_world, broken)
    (broken / "user_features.csv").unlink()
    _one_line_error(_cli("--root", tmp_path, "--data-dir", broken), "user_features.csv")


def test_unknown_gnn_run_id_is_a_one_line_error(tmp_path):
    _one_line_error(_cli("--root", tmp_path, "--gnn-run-id", "0123456789abcdef0123456789abcdef"),
                    "0123456789abcdef0123456789abcdef")


@pytest.mark.parametrize("flag,value", [("--max-evals", "0"), ("--min-sess-len", "-3"), ("--grid-resolution", "0"),
                                        ("--world-size", "huge"), ("--matrix", "foo")])
def test_bad_numeric_and_choice_options_are_one_line_errors(tmp_path, flag, value):
    """Found by the newcomer review: these were accepted (NaN weights) or ended in a traceback."""
    _one_line_error(_cli("--root", tmp_path, flag, value), flag)


def test_finished_gnn_run_without_checkpoints_is_not_reused(tmp_path):
    """A training that crashed after MLflow marked the run finished must not block estimation."""
    from estimation.runner import find_gnn_run
    from estimation.tracking import setup_mlflow

    uri = setup_mlflow(tmp_path)
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("gnn-training")
    broken = client.create_run(exp.experiment_id, tags={"dataset_id": "d1", "stage": "gnn-training"})
    client.set_terminated(broken.info.run_id, "FINISHED")
    assert find_gnn_run(client, "d1", None, uri) is None
    good = client.create_run(exp.experiment_id, tags={"dataset_id": "d1", "stage": "gnn-training",
                                                       "best_val_auc_mean": "0.7"})
    client.set_terminated(good.info.run_id, "FINISHED")
    assert find_gnn_run(client, "d1", None, uri) == good.info.run_id
