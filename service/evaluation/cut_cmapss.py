"""``vibewatch evaluate cut-cmapss``: a C-MAPSS test set with its RUL file, from a training
file, the way NASA's test sets are made: each unit cut at a random cycle (seeded)."""

from __future__ import annotations

import argparse
from pathlib import Path

from service.evaluation.common import existing, out
from service.evaluation.datasets import cut_cmapss


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="train_FD00x.txt")
    parser.add_argument("--out", type=Path, required=True, help="folder for the two files")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def run(args: argparse.Namespace) -> int:
    test, rul = cut_cmapss(existing(args.data, "--data"), args.out, args.seed)
    out(f"wrote {test} and {rul}; evaluate with: vibewatch evaluate lead-time "
        f"--cmapss {test} --rul {rul}")
    return 0
