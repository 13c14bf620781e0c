"""Bad command-line input to every script: one `error:` line on stderr naming the flag, file or value and what to
do, exit status 2, no traceback, and nothing written (no MLflow run, no output folder). Real scripts in
subprocesses, real files, a real MLflow sqlite store (newcomer review, findings 3, 4, 12-16, 18)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "experiments"


def _run(script: str, *args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(EXP / script), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=timeout, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit 2, stderr exactly one line `error: ...` holding every needle, no traceback; returns the line."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def one_line_error_in_process(main, argv, capsys, *needles: str) -> str:
    """The same checks on a script's main() called in this process (no interpreter start: for the long lists of
    bad values; every script also has a subprocess test above or below)."""
    try:
        status = main([str(a) for a in argv])
    except SystemExit as e:  # argparse's exit
        status = e.code
    err = capsys.readouterr().err
    return one_line_error(subprocess.CompletedProcess(argv, status, "", err), *needles)


# ------------------------------------------------------------------------------------------------ run_estimation
def test_landscape_axes_message_names_the_bad_axis_and_the_allowed_names(tmp_path, capsys):
    """Finding 3: was `tuple.index(x): x not in tuple` / `not enough values to unpack`."""
    from experiments.run_estimation import main

    line = one_line_error(_run("run_estimation.py", "--root", tmp_path, "--landscape-axes", "complete-foo"),
                          "--landscape-axes", "'foo'", "complete,long,rewatch,neg", "e.g. complete-long")
    assert "tuple" not in line
    for value, needle in (("complete", "'complete'"), ("long-long", "must differ"), ("0-9", "'9'")):
        line = one_line_error_in_process(main, ["--root", tmp_path, "--landscape-axes", value], capsys,
                                         "--landscape-axes", needle, "complete,long,rewatch,neg")
        assert "unpack" not in line
    assert not (tmp_path / "mlruns").exists()


def test_unknown_choices_are_one_line_errors_listing_the_choices(tmp_path, capsys):
    from experiments.run_estimation import main

    one_line_error(_run("run_estimation.py", "--root", tmp_path, "--objectives", "cat_ce,foo"), "--objectives",
                   "'foo'", "choose from cat_ce, cat_ce_smooth")
    for flag, value in (("--optimizers", "nelder-mead,simplex"), ("--space", "free"), ("--heads", "true"),
                        ("--precision", "fp8"), ("--checkpoint", "first"), ("--world-size", "huge")):
        one_line_error_in_process(main, ["--root", tmp_path, flag, value], capsys, flag, "choose from")
    for flag, value in (("--grid-max-evals", "-1"), ("--landscape-resolution", "1")):  # finding 1, the rest
        line = one_line_error_in_process(main, ["--root", tmp_path, flag, value], capsys, flag)
        assert line.startswith(f"error: {flag} must be"), line                # review 3b: the flag at fault first
    assert not (tmp_path / "mlruns").exists()


def test_help_lists_the_allowed_values():
    """Finding 18: --help showed only the defaults."""
    from datamodules.schema import WORLD_SIZES
    from estimation.runner import HEAD_SOURCES, OBJECTIVES, OPTIMIZERS, SPACES

    assert WORLD_SIZES == ("tiny", "small", "medium", "kuairec")

    text = " ".join(_run("run_estimation.py", "--help").stdout.split())
    for v in (*OBJECTIVES, *OPTIMIZERS):
        assert v in text
    for group in (SPACES, HEAD_SOURCES, ("auto", "fp32", "bf16"), ("big", "small"), WORLD_SIZES,
                  ("best", "last")):
        assert "{" + ",".join(group) + "}" in text, group
    text = " ".join(_run("train_gnn.py", "--help").stdout.split())
    assert "{cpu,gpu,cuda,mps,auto}" in text and "{big,small}" in text and "{" + ",".join(WORLD_SIZES) + "}" in text
    text = " ".join(_run("recovery_study.py", "--help").stdout.split())
    assert "{oracle,gnn,both}" in text and "{" + ",".join(WORLD_SIZES) + "}" in text and "cat_ce_smooth" in text
    assert "--force" in text


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A project root with a real MLflow store (created once: its schema migration takes seconds)."""
    from estimation.tracking import setup_mlflow

    root = tmp_path_factory.mktemp("store")
    return root, setup_mlflow(root)


def test_unknown_gnn_run_id_names_the_store_command_and_newest_runs(store):
    """Finding 13: the hint was a bare `mlflow runs list --experiment-id <id>` (wrong store from elsewhere)."""
    from estimation.runner import UsageError, find_gnn_run

    root, uri = store
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("gnn-training")
    good = client.create_run(exp.experiment_id, run_name="gnn-good",
                             tags={"dataset_id": "d1", "stage": "gnn-training", "best_val_auc_mean": "0.7"})
    client.set_terminated(good.info.run_id, "FINISHED")
    broken = client.create_run(exp.experiment_id, tags={"dataset_id": "d1", "stage": "gnn-training"})
    client.set_terminated(broken.info.run_id, "FINISHED")
    # (the CLI prints this as one line: tests/test_run_estimation.py::test_unknown_gnn_run_id_is_a_one_line_error)
    with pytest.raises(UsageError) as e:
        find_gnn_run(client, "d1", "deadbeef" * 4, uri)
    line = str(e.value)
    for needle in ("deadbeef" * 4, f"MLFLOW_TRACKING_URI={uri} mlflow runs list --experiment-id {exp.experiment_id}",
                   good.info.run_id, "or omit --gnn-run-id"):
        assert needle in line
    assert broken.info.run_id not in line and "\n" not in line  # no checkpoints: not offered
    # a run without checkpoints named explicitly: says so and what to do instead (finding 5)
    with pytest.raises(UsageError, match="without checkpoints.*--gnn-run-id.*--retrain"):
        find_gnn_run(client, "d1", broken.info.run_id, uri)


def test_small_matrix_without_sessions_gives_counts_and_the_way_out(tiny_world, store):
    """Finding 12: the small matrix is not session-shaped; the message said only 'no valid test sessions'."""
    from estimation.runner import EstimationConfig, UsageError, run

    with pytest.raises(UsageError) as e:
        run(EstimationConfig(data_dir=str(tiny_world), matrix="small", heads="oracle", root=str(store[0])))
    msg = str(e.value)
    assert "--matrix small gives" in msg and "sessions from" in msg and "the longest of length" in msg
    assert "use --matrix big or lower --min-sess-len" in msg and "\n" not in msg


# ------------------------------------------------------------------------------------------------ train_gnn
def test_train_gnn_bad_options_fail_before_any_run(tmp_path, capsys):
    """Finding 4: each of these was a traceback, or (hidden-dim 0, epochs -1) a FINISHED run."""
    from experiments.train_gnn import main

    one_line_error(_run("train_gnn.py", "--root", tmp_path, "--lr", "-1"), "--lr", "positive")
    for flag, value, needle in (("--epochs", "0", ">= 1"), ("--epochs", "-1", ">= 1"), ("--hidden-dim", "0", ">= 1"),
                                ("--batch-size", "0", ">= 1"), ("--lr", "nan", "positive"),
                                ("--patience", "-1", ">= 0"), ("--matrix", "foo", "choose from"),
                                ("--world-size", "huge", "choose from"), ("--devices", "two", "expected a count"),
                                ("--accelerator", "tpu", "choose from")):
        one_line_error_in_process(main, ["--root", tmp_path, flag, value], capsys, flag, needle)
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "data").exists()


def test_train_gnn_gpu_without_cuda_is_a_clear_error(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible: --accelerator gpu is valid here")
    one_line_error(_run("train_gnn.py", "--root", tmp_path, "--accelerator", "gpu"),
                   "--accelerator gpu", "no CUDA GPU", "use --accelerator cpu")
    assert not (tmp_path / "mlruns").exists()


def test_train_gnn_bad_data_is_one_line(tmp_path, tiny_world):
    one_line_error(_run("train_gnn.py", "--root", tmp_path, "--data-dir", tmp_path / "nope"), str(tmp_path / "nope"))
    broken = tmp_path / "broken"
    import shutil

    shutil.copytree(tiny_world, broken)
    lines = (broken / "big_matrix.csv").read_text().splitlines()
    (broken / "big_matrix.csv").write_text("\n".join(lines[:-1] + [lines[-1][:12]]) + "\n")
    one_line_error(_run("train_gnn.py", "--root", tmp_path, "--data-dir", broken), "big_matrix.csv",
                   f"line {len(lines)}", "file truncated or malformed")
    assert not (tmp_path / "mlruns").exists()


# ------------------------------------------------------------------------------------------------ make_world
def test_make_world_bad_values(tmp_path, capsys):
    """Finding 14: these were ValueError tracebacks."""
    from experiments.make_world import main

    one_line_error(_run("make_world.py", "--size", "tiny", "--out", tmp_path / "w", "--w-star", "nan,0.2,0.2,-0.2"),
                   "--w-star", "finite")
    for args, needle in ((["--w-star", "0,0,0,0"], "not all zero"), (["--w-star", "inf,1,1,-1"], "finite"),
                         (["--w-star", "1,2"], "needs 4 numbers"), (["--seed", "-1"], "--seed must be >= 0")):
        one_line_error_in_process(main, ["--size", "tiny", "--out", tmp_path / "w", *args], capsys, needle)
    assert not list(tmp_path.iterdir())


def test_make_world_out_is_a_file(tmp_path, capsys):
    from experiments.make_world import main

    f = tmp_path / "a_file"
    f.write_text("x")
    one_line_error(_run("make_world.py", "--size", "tiny", "--out", f), "--out", f"{f} is a file")
    one_line_error_in_process(main, ["--size", "tiny", "--out", f / "sub"], capsys, "--out", f"{f} is a file")
    assert f.read_text() == "x"


def test_make_world_negative_w_star_with_a_space_works_and_warns_outside_the_constrained_signs(tmp_path):
    proc = _run("make_world.py", "--size", "tiny", "--out", tmp_path / "w", "--w-star", "-0.5,0.2,0.2,0.1",
                "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "warning: --w-star signs complete -0.5, neg +0.1 fall outside the constrained space (+,+,+,-) that "
        "run_estimation searches by default (--space constrained cannot recover this w*)"]
    truth = json.loads((tmp_path / "w" / "ground_truth" / "truth.json").read_text())
    assert truth["w_star"] == pytest.approx([-0.5, 0.2, 0.2, 0.1])
    assert "--w-star=" in _run("make_world.py", "--help").stdout


# ------------------------------------------------------------------------------------------------ world_vs_facts
def test_world_vs_facts_bad_data_is_one_line(tmp_path, tiny_world):
    """Finding 16: DataError traceback."""
    one_line_error(_run("world_vs_facts.py", "--data-dir", tmp_path / "nope"), "no KuaiRec 2.0 data folder",
                   "--data-dir")
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_world, broken)
    (broken / "user_features.csv").unlink()
    one_line_error(_run("world_vs_facts.py", "--data-dir", broken), "user_features.csv", "re-download")


# ------------------------------------------------------------------------------------------------ recovery_study
def test_recovery_study_bad_options_write_nothing(tmp_path, capsys):
    """Finding 15: --n-worlds 0 was a KeyError traceback; bad --size/--objectives failed after writing."""
    from experiments.recovery_study import main

    out = tmp_path / "study"
    one_line_error(_run("recovery_study.py", "--out", out, "--n-worlds", "0"), "--n-worlds must be >= 1")
    for args, needle in ((["--size", "huge"], "--size"), (["--objectives", "foo"], "--objectives"),
                         (["--max-evals", "0"], "--max-evals"), (["--report-only"], "no results in")):
        one_line_error_in_process(main, ["--out", out, *args], capsys, needle)
    assert not out.exists()
    f = tmp_path / "a_file"  # review 3b, #6: the message named --root, which recovery_study does not have
    f.write_text("x")
    line = one_line_error_in_process(main, ["--out", f], capsys, "--out", f"{f} is a file")
    assert "--root" not in line


def test_recovery_study_resume_with_other_options_refuses_unless_force(tmp_path):
    """Finding 15: a resume with --size small reused the tiny results and overwrote study.json."""
    from estimation.recovery import StudyConfig, run_study

    out = tmp_path / "study"
    common = ["--n-worlds", "1", "--objectives", "cat_ce", "--optimizers", "nelder-mead", "--bootstrap", "0",
              "--landscape-worlds", "0", "--no-profiles", "--no-geometry", "--out", out]
    cfg = StudyConfig(n_worlds=1, size="tiny", objectives="cat_ce", optimizers="nelder-mead", max_evals=10,
                      bootstrap=0, landscape_worlds=0, profiles=False, geometry=False, out=str(out))
    run_study(cfg)
    study, results = (out / "study.json").read_text(), (out / "results.jsonl").read_text()
    worlds = sorted(p.name for p in (out / "worlds").iterdir())
    one_line_error(_run("recovery_study.py", *common, "--size", "small", "--max-evals", "10"),
                   f"--out {out}", "--size tiny (now small)", "--force")
    one_line_error(_run("recovery_study.py", *common, "--size", "tiny", "--max-evals", "12"),
                   "--max-evals 10 (now 12)", "--force")
    assert (out / "study.json").read_text() == study and (out / "results.jsonl").read_text() == results
    assert sorted(p.name for p in (out / "worlds").iterdir()) == worlds
    # --force with other options moves the old results aside and starts afresh
    run_study(StudyConfig(**{**cfg.__dict__, "max_evals": 12, "force": True}))
    old = list(out.glob("superseded-*/results.jsonl"))
    assert len(old) == 1 and old[0].read_text() == results
    assert len((out / "results.jsonl").read_text().splitlines()) == 1
    assert json.loads((out / "study.json").read_text())["config"]["max_evals"] == 12


def test_make_world_after_sigkill_removes_the_dead_generators_temp_folder(tmp_path):
    """Finding 9: a killed make_world left `.<name>.tmp-*` beside the world for good."""
    import signal
    import time

    out = tmp_path / "w"
    proc = subprocess.Popen([sys.executable, str(EXP / "make_world.py"), "--size", "small", "--out", str(out),
                             "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while not list(tmp_path.glob(".w.tmp-*")) and time.time() - t0 < 60:
        assert proc.poll() is None, "make_world ended before writing"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (stale,) = tmp_path.glob(".w.tmp-*")
    assert stale.name.startswith(f".w.tmp-{proc.pid}-") and not out.exists()
    other = tmp_path / f".w.tmp-{os.getpid()}-alive"  # a live generator's folder stays
    other.mkdir()
    proc = _run("make_world.py", "--size", "tiny", "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([other.name, "w"])


# ------------------------------------------------------------------------------------------------ review 3
def test_make_world_refuses_to_replace_a_folder_it_did_not_write(tmp_path, capsys):
    """Review 3, #1 (severe): `make_world --out DIR` deleted an existing 'KuaiRec 2.0' that was no planted world
    (a real download, say). Now: one line, nothing touched; a planted world there is still replaced."""
    from experiments.make_world import main

    out = tmp_path / "download"
    data = out / "KuaiRec 2.0" / "data"
    data.mkdir(parents=True)
    (data / "big_matrix.csv").write_text("the user's own file\n")
    one_line_error(_run("make_world.py", "--size", "tiny", "--out", out), "--out", "is not a planted world",
                   "pass a new --out folder")
    assert (data / "big_matrix.csv").read_text() == "the user's own file\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["download"]                     # no temp folder left
    planted = tmp_path / "planted"
    assert main(["--size", "tiny", "--out", str(planted), "--quiet"]) == 0
    stale = planted / "KuaiRec 2.0" / "data" / "stale.txt"
    stale.write_text("x")
    assert main(["--size", "tiny", "--seed", "1", "--out", str(planted), "--quiet"]) == 0      # a world: replaced
    assert not stale.exists() and json.loads((planted / "ground_truth" / "truth.json").read_text())["seed"] == 1
    capsys.readouterr()
    one_line_error_in_process(main, ["--size", "tiny", "--out", tmp_path, "--side-dir", tmp_path / "nope"], capsys,
                              "--side-dir", "not a folder")


def test_a_root_that_is_a_file_is_one_line_for_every_script(tmp_path, capsys):
    """Review 3, #2: a --root / --out that is a file (or lies under one) gave tracebacks."""
    from experiments.prepare_data import main as prepare
    from experiments.run_estimation import main as estimate
    from experiments.train_gnn import main as train

    f = tmp_path / "a_file"
    f.write_text("x")
    one_line_error(_run("run_estimation.py", "--root", f), "--root", f"{f} is a file")
    one_line_error_in_process(estimate, ["--root", f / "sub"], capsys, "--root", f"{f} is a file")
    one_line_error_in_process(train, ["--root", f], capsys, "--root", f"{f} is a file")
    one_line_error_in_process(prepare, ["--data-dir", tmp_path, "--out", f], capsys, "--out", f"{f} is a file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder: permissions cannot be tested here")
def test_a_root_without_write_permission_is_one_line(tmp_path, capsys):
    from experiments.run_estimation import main

    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        one_line_error_in_process(main, ["--root", locked / "proj"], capsys, "--root", "not writable")
    finally:
        locked.chmod(0o700)


def test_run_estimation_negative_world_seed_is_one_line_and_writes_nothing(tmp_path):
    """Review 3, #4: a traceback, and a lock file left in data/worlds."""
    one_line_error(_run("run_estimation.py", "--root", tmp_path, "--world-seed", "-1"), "--world-seed", ">= 0")
    assert not list(tmp_path.iterdir())
    from datamodules.world import ensure_world

    with pytest.raises(ValueError, match="seed must be >= 0"):
        ensure_world("tiny", -1, root=tmp_path / "worlds")
    assert not (tmp_path / "worlds").exists()


def test_train_gnn_checks_predict_out_and_seed_before_training(tmp_path, capsys):
    """Review 3, #5 and #11: --predict-out under a file failed only after training; --seed -1 did not name it."""
    from experiments.train_gnn import main

    f = tmp_path / "a_file"
    f.write_text("x")
    one_line_error(_run("train_gnn.py", "--root", tmp_path, "--predict-out", f / "pred.npy"), "--predict-out",
                   f"{f} is a file")
    one_line_error_in_process(main, ["--root", tmp_path, "--predict-out", tmp_path], capsys, "--predict-out",
                              "is a folder", "pred.npy")
    one_line_error_in_process(main, ["--root", tmp_path, "--seed", "-1"], capsys, "--seed", ">= 0")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_prepare_data_rejects_values_that_break_the_definitions(tmp_path, tiny_world, capsys):
    """Review 3, #6: train quantile >= val quantile, a zero session gap, a negative ratio, nan, and
    `--exclude-seen maybe` (read as false) were all accepted and built a dataset."""
    from datamodules.dataset import DataError, DatasetConfig, prepare_dataset
    from experiments.prepare_data import main

    out = tmp_path / "processed"
    one_line_error(_run("prepare_data.py", "--data-dir", tiny_world, "--out", out, "--train-quantile", "0.9"),
                   "--train-quantile 0.9", "--val-quantile 0.8", "0 < train < val < 1")
    for flag, value, needle in (("--session-gap-s", "0", "> 0"), ("--neg-ratio", "-1", "> 0"),
                                ("--ema-alpha", "nan", "finite"), ("--ema-alpha", "1.5", "(0, 1]"),
                                ("--min-sess-len", "0", "positive integer"), ("--val-quantile", "1", "< 1"),
                                ("--burst-gap-s", "5000", "must not exceed the session gap"),
                                ("--exclude-seen", "maybe", "true or false")):
        one_line_error_in_process(main, ["--data-dir", tiny_world, "--out", out, flag, value], capsys, flag, needle)
    assert not out.exists()
    with pytest.raises(DataError, match="--burst-gap-s"):
        prepare_dataset(tiny_world, config=DatasetConfig(burst_gap_s=-5), cache_root=out)
    assert main(["--data-dir", str(tiny_world), "--out", str(out), "--exclude-seen", "no"]) == 0      # a spelled-out false
    manifest = json.loads(next(out.glob("*/manifest.json")).read_text())
    assert manifest["config"]["exclude_seen"] is False


def test_side_files_without_rows_or_far_beyond_the_matrix(tmp_path, tiny_world, caplog):
    """Review 3, #12: a header-only user_features.csv was blamed on big_matrix.csv; #10: side files listing far
    more videos than the big matrix touches (another download's) were accepted silently: now a warning."""
    import shutil

    from datamodules.raw import DataError, load_kuairec

    bad = tmp_path / "bad"
    shutil.copytree(tiny_world, bad)
    header = (bad / "user_features.csv").read_text().splitlines()[0]
    (bad / "user_features.csv").write_text(header + "\n")
    with pytest.raises(DataError, match=r"user_features\.csv: no data rows") as e:
        load_kuairec(bad)
    assert "big_matrix" not in str(e.value)

    few = tmp_path / "few"
    shutil.copytree(tiny_world, few)
    lines = (few / "big_matrix.csv").read_text().splitlines()
    kept = [ln for ln in lines[1:] if int(ln.split(",")[1]) < 100]
    (few / "big_matrix.csv").write_text("\n".join([lines[0], *kept]) + "\n")
    raw = load_kuairec(few)
    assert raw.n_videos == 300 and raw.interactions["video_id"].nunique() <= 100
    assert "lists 300 videos but big_matrix.csv has interactions of only" in caplog.text
    caplog.clear()
    load_kuairec(tiny_world)
    assert "interactions of only" not in caplog.text


def test_make_world_bad_side_dir_is_one_line_and_ensure_world_repairs_its_own_folder(tmp_path, capsys):
    """Review of review 3: a side folder missing a file was a DataError traceback; ensure_world must still rebuild
    its own world folder when ground_truth/ was deleted (the refusal is for folders the user owns)."""
    from datamodules.world import ensure_world
    from experiments.make_world import main

    side = tmp_path / "side"
    side.mkdir()
    (side / "user_features.csv").write_text("user_id\n0\n")
    line = one_line_error_in_process(main, ["--size", "tiny", "--out", tmp_path / "w", "--side-dir", side], capsys,
                                     "--side-dir", "lacks item_categories.csv, kuairec_caption_category.csv")
    assert "big_matrix" not in line and "DataError" not in line
    data = ensure_world("tiny", 3, root=tmp_path / "worlds")
    import shutil

    shutil.rmtree(data.parents[1] / "ground_truth")
    assert ensure_world("tiny", 3, root=tmp_path / "worlds") == data
    assert (data.parents[1] / "ground_truth" / "truth.json").is_file()


def test_a_full_disk_is_one_line_saying_what_to_do(tmp_path, capsys, monkeypatch):
    """A full disk during a job (seen in session 3: sqlite's 'database or disk is full' inside an MlflowException)
    was a traceback. The failing call is replaced here by one raising what a full disk raises."""
    import errno
    import sqlite3

    import experiments.run_estimation as est
    import experiments.train_gnn as trn

    def mlflow_full(config):
        try:
            raise sqlite3.OperationalError("database or disk is full")
        except sqlite3.OperationalError as e:
            raise RuntimeError("(raised as a result of Query-invoked autoflush)") from e

    def os_full(config):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.npy"))

    monkeypatch.setattr(est, "run", mlflow_full)
    one_line_error_in_process(est.main, ["--root", tmp_path], capsys, "the disk is full", "free space", "rerun")
    monkeypatch.setattr(trn, "load_training_dataset", os_full)
    one_line_error_in_process(trn.main, ["--root", tmp_path], capsys, "the disk is full", "free space", "rerun")
    monkeypatch.setattr(est, "run", lambda config: (_ for _ in ()).throw(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):                     # other errors keep their traceback
        est.main(["--root", str(tmp_path)])
