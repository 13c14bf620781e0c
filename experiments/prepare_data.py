"""Build (or reuse) the processed dataset of a KuaiRec 2.0 folder and print its counts and data repairs.

    python experiments/prepare_data.py --data-dir "path/to/KuaiRec 2.0" --matrix big --out data/processed
Every DatasetConfig field is an option (--session-gap-s, --neg-ratio, ...); see --help for the defaults.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datamodules.dataset import DataError, DatasetConfig, load_dataset, prepare_dataset  # noqa: E402
from estimation.cli import OneLineParser, error, folder_problem, setup_logging  # noqa: E402


def _boolean(text: str) -> bool:
    v = text.strip().lower()
    if v in ("1", "true", "yes"):
        return True
    if v in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def parse_args(argv=None) -> argparse.Namespace:
    ap = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True, help="folder with the CSVs, or a parent holding (KuaiRec 2.0/)data/")
    ap.add_argument("--matrix", choices=["big", "small"], default="big", help="interaction matrix (default big)")
    ap.add_argument("--out", default=None,
                    help="cache root; the dataset goes to OUT/<dataset_id>/ (default <project>/data/processed)")
    ap.add_argument("--force", action="store_true", help="rebuild even if an identical cache exists")
    cfg = ap.add_argument_group("DatasetConfig")
    for f in dataclasses.fields(DatasetConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in (bool, "bool"):
            cfg.add_argument(flag, type=_boolean, default=f.default, help=f"true or false (default {f.default})")
        else:
            kind = int if f.type in (int, "int") else float
            cfg.add_argument(flag, type=kind, default=f.default, help=f"(default {f.default})")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging(fmt="%(message)s")
    config = DatasetConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(DatasetConfig)})
    problem = folder_problem(args.out) if args.out else None
    if problem:
        return error(f"--out {args.out}: {problem}; pass a folder for the processed datasets")
    t = time.time()
    try:
        out = prepare_dataset(args.data_dir, args.matrix, config, cache_root=args.out, force=args.force)
    except (DataError, OSError) as e:  # bad data; a folder we may not write, a full disk
        return error(e)
    manifest = json.loads((out / "manifest.json").read_text())
    print(f"processed dataset: {out}  ({time.time() - t:.1f} s)")
    print("counts:", json.dumps(manifest["counts"], indent=2))
    print("repairs:", json.dumps(manifest["repairs"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
