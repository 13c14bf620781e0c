"""MLflow helpers against a real sqlite store in a temporary root."""
import time
from pathlib import Path

import numpy as np
from mlflow.tracking import MlflowClient

from estimation.tracking import StepLogger, log_final, log_params, setup_mlflow, start_child_run


def test_store_steps_and_summaries(tmp_path):
    uri = setup_mlflow(tmp_path)
    assert uri == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"
    assert setup_mlflow(tmp_path) == uri  # idempotent
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("head-weight-estimation")
    assert client.get_experiment_by_name("gnn-training") is not None
    assert exp.artifact_location.startswith((tmp_path.resolve() / "mlruns" / "artifacts").as_uri())

    parent = client.create_run(exp.experiment_id, run_name="estimate").info.run_id
    child = start_child_run(parent, "cat_ce/grid", tags={"objective": "cat_ce"}, client=client)
    assert client.get_run(child).data.tags["mlflow.parentRunId"] == parent

    n = 600  # 3000 metrics: several log_batch chunks of 1000
    rng = np.random.default_rng(0)
    W = rng.normal(size=(n, 4))
    losses = rng.random(n)
    losses[[5, 77]] = np.inf
    t0 = time.perf_counter()
    with StepLogger(child, client) as log:
        for step in range(n):
            log(step, W[step], float(losses[step]))
    elapsed = time.perf_counter() - t0
    assert elapsed < 60, elapsed  # batched writes

    other = start_child_run(parent, "cat_ce/nm", client=client)
    with StepLogger(other, client, asynchronous=True, buffer_steps=100) as alog:
        for step in range(250):
            alog(step, W[step], float(losses[step]))
    assert len(client.get_metric_history(other, "w_long")) == 250

    hist = client.get_metric_history(child, "loss")
    assert len(hist) == n - 2
    got = {m.step: m.value for m in hist}
    assert 5 not in got and 77 not in got and got[6] == losses[6]
    nonfinite = client.get_metric_history(child, "nonfinite_loss")
    assert sorted(m.step for m in nonfinite) == [5, 77]
    wneg = {m.step: m.value for m in client.get_metric_history(child, "w_neg")}
    assert len(wneg) == n and wneg[5] == W[5, 3]

    log_params(child, {"objective": "cat_ce", "space": {"name": "constrained", "x0": [0.25, 0.25, 0.25]}},
               client=client)
    log_final(child, [0.5, 0.1, 0.15, -0.25], 1.25, n_evals=n, client=client)
    data = client.get_run(child).data
    assert data.params["space.name"] == "constrained" and data.params["space.x0"] == "[0.25, 0.25, 0.25]"
    assert data.metrics["final_loss"] == 1.25 and data.metrics["final_w_neg"] == -0.25
    assert data.metrics["n_evals"] == n


def test_runs_of_dead_processes_are_marked_killed_at_the_next_start(tmp_path):
    """A SIGKILLed job leaves its runs RUNNING; the next job on the same store marks those KILLED (owner's pid tag
    dead on this host) and leaves runs of live processes and of other hosts alone."""
    import subprocess

    from estimation.tracking import process_tags, setup_mlflow

    uri = setup_mlflow(tmp_path)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("head-weight-estimation").experiment_id
    gone = subprocess.Popen(["true"])
    gone.wait()                                              # a pid that no longer runs
    mine = process_tags()
    dead = client.create_run(exp, tags={**mine, "pid": str(gone.pid)}).info.run_id
    alive = client.create_run(exp, tags=mine).info.run_id
    elsewhere = client.create_run(exp, tags={"host": "another-host", "pid": str(gone.pid)}).info.run_id
    untagged = client.create_run(exp).info.run_id
    setup_mlflow(tmp_path)
    status = {r: client.get_run(r).info.status for r in (dead, alive, elsewhere, untagged)}
    assert status == {dead: "KILLED", alive: "RUNNING", elsewhere: "RUNNING", untagged: "RUNNING"}


def test_a_sigkilled_trainings_staged_checkpoints_go_with_its_run(tmp_path):
    """Review 3b, #8: after SIGKILL, mlruns/lightning/<exp>/<run>/checkpoints/*.ckpt stayed for good; the job
    that marks the run KILLED now removes them (and leaves a live run's staging alone)."""
    import subprocess

    from estimation.tracking import process_tags, setup_mlflow

    uri = setup_mlflow(tmp_path)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("gnn-training").experiment_id
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = client.create_run(exp, tags={**process_tags(), "pid": str(gone.pid)}).info.run_id
    alive = client.create_run(exp, tags=process_tags()).info.run_id
    staged = {}
    for run in (dead, alive):
        d = tmp_path / "mlruns" / "lightning" / exp / run / "checkpoints"
        d.mkdir(parents=True)
        (d / "last.ckpt").write_bytes(b"x" * 100)
        staged[run] = d
    setup_mlflow(tmp_path)
    assert not staged[dead].parent.exists() and (staged[alive] / "last.ckpt").exists()


def test_jobs_starting_together_on_a_new_root_share_one_store(tmp_path):
    """Review 3b, #1: two jobs started at once on a fresh --root raced in MLflow's schema migration (traceback in
    one of them). Four processes set the store up at the same moment; all succeed, with one set of experiments."""
    import subprocess
    import sys

    code = ("import sys, time; from estimation.tracking import setup_mlflow; "
            "t = float(sys.argv[2]); time.sleep(max(0.0, t - time.time())); setup_mlflow(sys.argv[1])")
    import time

    start = time.time() + 6  # after every interpreter has imported MLflow
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path), str(start)], stderr=subprocess.PIPE,
                              text=True, cwd=Path(__file__).resolve().parents[1]) for _ in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [e[-800:] for e in errors]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    names = sorted(e.name for e in client.search_experiments())
    assert names.count("gnn-training") == 1 and names.count("head-weight-estimation") == 1
