"""Time and peak memory of generating a planted world (default: kuairec size; target <= 15 min, <= 12 GB).

Runs make_world in a child process and reads its peak RSS (ru_maxrss of children), then prints the figures and the
world-against-facts table. Usage: python benchmarks/bench_world.py [--size kuairec] [--out DIR] [--keep]
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from datamodules.schema import WORLD_SIZES  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", default="kuairec", choices=list(WORLD_SIZES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="world root (default: a temp dir, removed unless --keep)")
    ap.add_argument("--keep", action="store_true", help="keep the generated world")
    ap.add_argument("--facts", action="store_true", help="also print the world-vs-facts table")
    args = ap.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix=f"bench-world-{args.size}-"))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "experiments" / "make_world.py"), "--size", args.size, "--seed",
                    str(args.seed), "--out", str(out)], check=True)
    wall = time.perf_counter() - t0
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 ** 2
    truth = json.loads((out / "ground_truth" / "truth.json").read_text())
    size_gb = sum(f.stat().st_size for f in (out / "KuaiRec 2.0" / "data").iterdir()) / 1024 ** 3
    print(f"size={args.size} wall={wall:.0f}s (target <= 900) peak_rss={peak_gb:.2f}GB (target <= 12) "
          f"csv={size_gb:.2f}GB rows={truth['rows']} stages={truth['seconds']}")
    if args.facts:
        subprocess.run([sys.executable, str(ROOT / "experiments" / "world_vs_facts.py"), "--data-dir", str(out)],
                       check=True)
    if not args.keep and args.out is None:
        shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
