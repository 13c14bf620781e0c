"""Generate a planted synthetic KuaiRec 2.0 world (raw CSVs + ground truth) from the command line.

    python experiments/make_world.py --size tiny --seed 1 --out /tmp/w1
    python experiments/make_world.py --size small --out /tmp/w2 --w-star 0.4,0.3,0.1,-0.2
    python experiments/make_world.py --size small --out /tmp/w3 --w-star=-0.1,0.5,0.2,-0.2   # note the '='

A w* that starts with a minus sign is best written --w-star=-0.1,... (the form with a space works here too); such
a w* lies outside the constrained space that run_estimation searches by default (signs +, +, +, -), so only
--space reference can recover it: make_world warns.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datamodules.raw import DataError  # noqa: E402
from datamodules.world import SIZES, load_truth, make_world  # noqa: E402
from estimation.cli import OneLineParser, error, folder_problem, interruptible, is_interrupt, setup_logging  # noqa: E402
from estimation.landscape import outside_constrained  # noqa: E402  (the default --space of run_estimation)


def parse_w_star(ap: argparse.ArgumentParser, text: str) -> list[float]:
    """Four finite numbers, not all zero; ap.error (one line, exit 2) otherwise."""
    try:
        w = [float(x) for x in text.split(",")]
    except ValueError:
        ap.error(f"--w-star must be four comma-separated numbers (complete, long, rewatch, neg), got {text!r}")
    if len(w) != 4:
        ap.error(f"--w-star needs 4 numbers (complete, long, rewatch, neg), got {len(w)} in {text!r}")
    if not all(math.isfinite(x) for x in w) or sum(abs(x) for x in w) == 0:
        ap.error(f"--w-star must be finite and not all zero (it is scaled to sum|w| = 1), got {text!r}")
    return w


def _join_negative_w_star(argv: list[str]) -> list[str]:
    """`--w-star -0.5,0.2,...` -> `--w-star=-0.5,0.2,...` (argparse would take '-0.5,...' for an option)."""
    out = list(argv)
    for i, a in enumerate(out[:-1]):
        nxt = out[i + 1]
        if a == "--w-star" and nxt.startswith("-") and (nxt[1:2].isdigit() or nxt[1:2] == "."):
            out[i:i + 2] = [f"--w-star={nxt}"]
            break
    return out


def main(argv=None) -> int:
    ap = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=list(SIZES), default="small", help="world size (default small)")
    ap.add_argument("--seed", type=int, default=0, help="random seed, >= 0 (default 0)")
    ap.add_argument("--out", type=Path, required=True,
                    help="world root to create: gets 'KuaiRec 2.0/data/' and 'ground_truth/' (an existing world there "
                         "is replaced)")
    ap.add_argument("--w-star", default=None,
                    help="planted weights a,b,c,d for (complete, long, rewatch, neg); scaled to sum|w|=1 "
                         "(default 0.35,0.25,0.15,-0.25); a value starting with '-': --w-star=-0.1,...")
    ap.add_argument("--side-dir", type=Path, default=None,
                    help="folder with real KuaiRec side files (user_features.csv, item_categories.csv, "
                         "kuairec_caption_category.csv): copied byte for byte, users/videos/categories taken from "
                         "them, only the interactions synthesized (e.g. ../shared/kuairec-side)")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    args = ap.parse_args(_join_negative_w_star(sys.argv[1:] if argv is None else list(argv)))
    w = parse_w_star(ap, args.w_star) if args.w_star else None
    if args.seed < 0:
        ap.error(f"--seed must be >= 0, got {args.seed}")
    problem = folder_problem(args.out)
    if problem:
        ap.error(f"--out {args.out}: {problem}; pass a new folder (or an old world's root)")
    if args.side_dir is not None and not args.side_dir.is_dir():
        ap.error(f"--side-dir {args.side_dir}: not a folder; pass the folder holding user_features.csv, "
                 f"item_categories.csv and kuairec_caption_category.csv")
    if w is not None:
        off = [f"{h} {x:+g}" for h, x in outside_constrained(w)]
        if off:
            print(f"warning: --w-star signs {', '.join(off)} fall outside the constrained space (+,+,+,-) that "
                  f"run_estimation searches by default (--space constrained cannot recover this w*)", file=sys.stderr)
    setup_logging(logging.WARNING if args.quiet else logging.INFO, fmt="%(asctime)s %(message)s")
    t0 = time.perf_counter()
    try:
        with interruptible():
            data_dir = make_world(args.out, size=args.size, seed=args.seed, w_star=w, side_dir=args.side_dir)
    except DataError as e:  # only the side files are read
        return error(f"--side-dir {args.side_dir}: {e}")
    except (OSError, ValueError) as e:  # a folder we may not write, a full disk, a folder that is not ours
        return error(f"--out {args.out}: {e}")
    except BaseException as e:  # Ctrl-C / SIGTERM: the temporary folder is gone, an old world there untouched
        if not is_interrupt(e):
            raise
        print(f"interrupted ({'SIGINT' if isinstance(e, KeyboardInterrupt) else e}); no partial world left "
              f"in {args.out}", file=sys.stderr)
        return 130 if isinstance(e, KeyboardInterrupt) else getattr(e, "exit_status", 130)
    truth = load_truth(data_dir)
    print(f"world written to {data_dir} in {time.perf_counter() - t0:.1f}s")
    print(json.dumps({"w_star": [round(x, 12) + 0.0 for x in truth["w_star"]], "rows": truth["rows"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
