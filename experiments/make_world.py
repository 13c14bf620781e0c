"""Generate a planted synthetic KuaiRec 2.0 world (raw CSVs + ground truth) from the command line."""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datamodules.world import SIZES, load_truth, make_world  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", choices=sorted(SIZES), default="small", help="world size (default small)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument("--out", type=Path, required=True,
                    help="world root to create: gets 'KuaiRec 2.0/data/' and 'ground_truth/'")
    ap.add_argument("--w-star", default=None,
                    help="planted weights a,b,c,d for (complete, long, rewatch, neg); normalised to sum|w|=1 "
                         "(default 0.35,0.25,0.15,-0.25)")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(asctime)s %(message)s")
    w = None
    if args.w_star:
        try:
            w = [float(x) for x in args.w_star.split(",")]
        except ValueError:
            ap.error(f"--w-star must be four comma-separated numbers, got {args.w_star!r}")
        if len(w) != 4:
            ap.error(f"--w-star needs 4 numbers (complete, long, rewatch, neg), got {len(w)}")
    t0 = time.perf_counter()
    data_dir = make_world(args.out, size=args.size, seed=args.seed, w_star=w)
    truth = load_truth(data_dir)
    print(f"world written to {data_dir} in {time.perf_counter() - t0:.1f}s")
    print(json.dumps({"w_star": truth["w_star"], "rows": truth["rows"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
