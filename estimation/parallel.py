"""Run a function over jobs in separate Python processes (one single-threaded torch per process).

Why processes and not torch threads: on a small shared machine, oversubscribed OpenMP threads spin-wait (measured
20-40x slowdowns); independent processes degrade gracefully. Why subprocesses and not multiprocessing: 'spawn'
re-imports the caller's main script (a script without a `__main__` guard then fails), and 'fork' after torch has
started its OpenMP pool can hang. Each job and each result travels as a pickle file in a temporary folder.
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_BOOT = (
    "import pickle, sys, importlib\n"
    "mod, fn, job, out = sys.argv[1:5]\n"
    "f = getattr(importlib.import_module(mod), fn)\n"
    "with open(job, 'rb') as fh: arg = pickle.load(fh)\n"
    "res = f(arg)\n"
    "with open(out + '.part', 'wb') as fh: pickle.dump(res, fh, protocol=pickle.HIGHEST_PROTOCOL)\n"
    "import os; os.replace(out + '.part', out)\n"
)


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def run_jobs(module: str, function: str, jobs: list, workers: int | None = None) -> list:
    """[module.function(job) for job in jobs], at most `workers` processes at a time, results in job order.
    A failing job raises RuntimeError with the worker's stderr tail."""
    workers = max(1, workers or default_workers())
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    with tempfile.TemporaryDirectory(prefix="hw-jobs-") as tmp:
        tmp = Path(tmp)
        results: list = [None] * len(jobs)
        pending = list(range(len(jobs)))
        running: dict[int, tuple[subprocess.Popen, Path, object]] = {}
        try:
            while pending or running:
                while pending and len(running) < workers:
                    i = pending.pop(0)
                    job_file, out_file = tmp / f"job{i}.pkl", tmp / f"out{i}.pkl"
                    with open(job_file, "wb") as fh:
                        pickle.dump(jobs[i], fh, protocol=pickle.HIGHEST_PROTOCOL)
                    err = open(tmp / f"err{i}.txt", "wb")
                    proc = subprocess.Popen([sys.executable, "-c", _BOOT, module, function, str(job_file),
                                             str(out_file)], env=env, stdout=subprocess.DEVNULL, stderr=err)
                    running[i] = (proc, out_file, err)
                done = None
                for i, (proc, _, _) in running.items():
                    if proc.poll() is not None:
                        done = i
                        break
                if done is None:
                    time.sleep(0.05)
                    continue
                proc, out_file, err = running.pop(done)
                err.close()
                if proc.returncode != 0 or not out_file.exists():
                    tail = (tmp / f"err{done}.txt").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"worker for {module}.{function} job {done} failed "
                                       f"(exit {proc.returncode}):\n{tail}")
                with open(out_file, "rb") as fh:
                    results[done] = pickle.load(fh)
                out_file.unlink()
        finally:
            for proc, _, err in running.values():
                proc.kill()
                proc.wait()
                err.close()
    return results
