"""Ctrl-C and SIGTERM (newcomer review, finding 8): the scripts run in a subprocess on the tiny planted world; once
their MLflow run exists (polled in the real sqlite store) the signal is sent. They must print one line
`interrupted (...); run X ... marked KILLED`, exit 130 (SIGINT) or 143 (SIGTERM) without a traceback, and leave
every run they opened KILLED (never RUNNING or FAILED), with no staging checkpoints behind."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """One project root for the module: the store's schema migration and the dataset build are paid once."""
    from estimation.tracking import setup_mlflow

    r = tmp_path_factory.mktemp("interrupts")
    setup_mlflow(r)
    return r


def _start(script: str, *args) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(ROOT / "experiments" / script), *map(str, args)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for_run(proc: subprocess.Popen, root: Path, experiment: str, child: bool, known: set, timeout=180) -> str:
    """Poll the sqlite store until a new RUNNING run of `experiment` (a child run if `child`) exists."""
    db = root / "mlruns" / "mlflow.db"
    query = ("select r.run_uuid from runs r join experiments e on r.experiment_id = e.experiment_id "
             "where e.name = ? and r.status = 'RUNNING' and "
             f"{'' if child else 'not '}exists (select 1 from tags t where t.run_uuid = r.run_uuid "
             "and t.key = 'mlflow.parentRunId')")
    t0 = time.time()
    while time.time() - t0 < timeout:
        assert proc.poll() is None, f"ended before its run existed: {proc.stderr.read()[-3000:]}"
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
                new = [r for (r,) in con.execute(query, (experiment,)) if r not in known]
        except sqlite3.Error:  # locked or not there yet
            new = []
        if new:
            return new[0]
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"no RUNNING {experiment} run after {timeout}s")


def _interrupt(proc: subprocess.Popen, sig: int) -> tuple[int, list[str]]:
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert "Traceback" not in err, err[-3000:]
    return proc.returncode, err.strip().splitlines()


def _status(root: Path, run_id: str) -> str:
    return mlflow.MlflowClient(f"sqlite:///{root.resolve()}/mlruns/mlflow.db").get_run(run_id).info.status


def test_sigterm_during_estimation_marks_parent_and_child_killed(root, tiny_world):
    """Before: SIGTERM left the parent and the child RUNNING forever."""
    proc = _start("run_estimation.py", "--root", root, "--data-dir", tiny_world, "--heads", "oracle",
                  "--objectives", "cat_ce,emb_l2", "--optimizers", "grid", "--grid-resolution", "40",
                  "--bootstrap", "0", "--no-landscape")
    child = _wait_for_run(proc, root, "head-weight-estimation", child=True, known=set())
    status, err = _interrupt(proc, signal.SIGTERM)
    client = mlflow.MlflowClient(f"sqlite:///{root.resolve()}/mlruns/mlflow.db")
    parent = client.get_run(child).data.tags["mlflow.parentRunId"]
    assert status == 143
    assert err[-1] == f"interrupted (SIGTERM); run {parent} (and 1 child run) marked KILLED", err[-5:]
    assert _status(root, parent) == "KILLED" and _status(root, child) == "KILLED"


def test_ctrl_c_during_gnn_training_inside_the_main_job_marks_the_gnn_run_killed(root, tiny_world):
    """Before: Lightning's 'graceful shutdown' marked the run FAILED and the main job printed a traceback."""
    proc = _start("run_estimation.py", "--root", root, "--data-dir", tiny_world, "--retrain", "--epochs", "500",
                  "--bootstrap", "0", "--no-landscape")
    gnn = _wait_for_run(proc, root, "gnn-training", child=False, known=set())
    time.sleep(0.3)  # into the epochs
    status, err = _interrupt(proc, signal.SIGINT)
    assert status == 130
    assert err[-1] == f"interrupted (SIGINT); run {gnn} marked KILLED", err[-5:]
    assert _status(root, gnn) == "KILLED"
    assert not list((root / "mlruns" / "lightning").glob(f"*/{gnn}"))  # staging checkpoints removed
    # nothing reuses it: the next estimation on this dataset would train anew
    from estimation.runner import find_gnn_run

    client = mlflow.MlflowClient(f"sqlite:///{root.resolve()}/mlruns/mlflow.db")
    ds = client.get_run(gnn).data.tags["dataset_id"]
    assert find_gnn_run(client, ds, None, "") is None


def test_sigterm_during_train_gnn_marks_the_run_killed(root, tiny_world):
    """Lightning installs its own SIGTERM handler while fitting; ours still ends the run KILLED."""
    client = mlflow.MlflowClient(f"sqlite:///{root.resolve()}/mlruns/mlflow.db")
    exp = client.get_experiment_by_name("gnn-training")
    known = {r.info.run_id for r in client.search_runs([exp.experiment_id])}
    proc = _start("train_gnn.py", "--root", root, "--data-dir", tiny_world, "--epochs", "500", "--patience", "500",
                  "--hidden-dim", "8")
    run = _wait_for_run(proc, root, "gnn-training", child=False, known=known)
    time.sleep(0.3)
    status, err = _interrupt(proc, signal.SIGTERM)
    assert status == 143
    assert err[-1] == f"interrupted (SIGTERM); run {run} marked KILLED", err[-5:]
    assert _status(root, run) == "KILLED"
    assert "best_val_auc_mean" not in client.get_run(run).data.tags


def test_ctrl_c_during_make_world_is_one_line_and_keeps_the_old_world(tmp_path):
    """Review 3b, #3: make_world printed a KeyboardInterrupt traceback. The small world's serving loop takes
    seconds; the signal lands once its temporary folder exists. The old world at --out stays as it was."""
    from datamodules.world import make_world

    out = tmp_path / "w"
    make_world(out, size="tiny", seed=5)
    before = (out / "ground_truth" / "truth.json").read_text()
    proc = _start("make_world.py", "--size", "small", "--seed", "1", "--out", out)
    t0 = time.time()
    while not list(tmp_path.glob(".w.tmp-*")) and time.time() - t0 < 60:
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        time.sleep(0.05)
    time.sleep(0.5)
    status, err = _interrupt(proc, signal.SIGINT)
    assert status == 130 and err == [f"interrupted (SIGINT); no partial world left in {out}"], err
    assert (out / "ground_truth" / "truth.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w"]                 # the temporary folder is gone
