"""``vibewatch evaluate forecast``: next-value RMSE and MAE of a model beside naive baselines.

For each ``--data`` the held-out part is scored: when the data is the model's training data
(same sha256) its recorded split is rebuilt and its test engines are scored (the moving-average
window is chosen on its validation engines); any other data is unseen as a whole, and a seeded
third of its engines chooses the moving-average window while the rest are scored. Output is a
table, or JSON with ``--json``. With the default loader TensorFlow is imported only when the
command runs; ``vibewatch evaluate forecast`` runs the NumPy kernel and never imports it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from models import data as data_mod
from models.artifact import load_keras, read_manifest, series_predictor
from models.data import Dataset, Series
from models.evaluation import Row, evaluate_parts, format_table
from models.forecast import Scaler
from models.splits import split_dataset

log = logging.getLogger(__name__)
PARTS = ("test", "val", "all")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``vibewatch evaluate forecast``."""
    parser.add_argument("--model", required=True, type=Path, help="artifact directory")
    parser.add_argument(
        "--data",
        required=True,
        action="append",
        help="dataset [ims:|cmapss:|nab:|csv:]PATH; repeat for several",
    )
    parser.add_argument(
        "--part",
        choices=PARTS,
        default="test",
        help="which held-out part to score (default test; 'all' = val and test)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--engine-column", help="csv: column holding the engine id")
    parser.add_argument("--time-column", help="csv: column holding the time")
    parser.add_argument("--seed", type=int, default=0, help="seed of the unseen-data split")
    parser.add_argument(
        "--channel-map",
        action="append",
        default=[],
        metavar="FROM=TO",
        help="read data channel FROM as model channel TO (e.g. value=vibration); repeatable",
    )


def channel_map(pairs: list[str]) -> dict[str, str]:
    """``["value=vibration"]`` -> ``{"value": "vibration"}``."""
    out = {}
    for pair in pairs:
        src, sep, dst = pair.partition("=")
        if not sep or not src or not dst:
            raise ValueError(f"--channel-map wants FROM=TO, got {pair!r}")
        out[src] = dst
    return out


def held_out(ds: Dataset, manifest: dict[str, Any], seed: int) -> tuple[str, Any]:
    """(how, split): the training split when ``ds`` is the training data, else an unseen split."""
    info = manifest.get("data", {})
    split = info.get("split")
    if info.get("sha256") == ds.sha256 and isinstance(split, dict):
        method = split["method"]
        if method == "time":
            return "training split (time)", split_dataset(
                ds,
                "time",
                val_fraction=split["val_fraction"],
                test_fraction=split["test_fraction"],
                context=split["context"],
            )
        return f"training split ({method})", split_dataset(
            ds, method, val=split["val"], test=split["test"]
        )
    if len(ds.series) >= 3:
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(ds.series))
        n_val = max(1, len(ds.series) // 3)
        val = [ds.series[i].engine_id for i in order[:n_val]]
        test = [ds.series[i].engine_id for i in order[n_val:]]
        return "unseen data (engines)", split_dataset(
            ds, "engine", val=val, test=test, require_train=False
        )
    # Too few engines to hold some back for the window choice: cut each one in time instead.
    return "unseen data (time)", split_dataset(
        ds, "time", val_fraction=0.3, test_fraction=0.69, context=0
    )


#: Loads an artifact's model: anything with Keras' ``predict(z, batch_size=, verbose=)``
#: over scaled (n, T, C) sequences. ``vibewatch evaluate forecast`` passes the NumPy
#: streaming kernel's (service.evaluation.forecast), so evaluating needs no TensorFlow.
ModelLoader = Callable[[Path], Any]


def evaluate(args: argparse.Namespace, load_model: ModelLoader = load_keras) -> dict[str, Any]:
    """Score every ``--data`` and return the JSON-ready report."""
    manifest = read_manifest(args.model)
    channels = list(manifest["channels"])
    scaler = Scaler(tuple(manifest["scaler"]["mean"]), tuple(manifest["scaler"]["scale"]))
    model = load_model(args.model)

    report: dict[str, Any] = {"model": manifest["version"], "datasets": []}
    for spec in args.data:
        ds = data_mod.load(
            spec,
            channels=channels,
            engine_column=args.engine_column,
            time_column=args.time_column,
            rename=channel_map(args.channel_map),
        )
        how, split = held_out(ds, manifest, args.seed)
        parts: dict[str, tuple[Series, ...]] = {}
        if args.part in ("val", "all"):
            parts["val"] = split.val
        if args.part in ("test", "all"):
            parts["test"] = split.test
        predict = series_predictor(model, scaler, [*split.val, *split.test])
        window, rows = evaluate_parts(ds.name, split.val, parts, predict)
        report["datasets"].append(
            {
                "name": ds.name,
                "spec": spec,
                "sha256": ds.sha256,
                "held_out": how,
                "moving_average_window": window,
                "engines": {p: [s.engine_id for s in ss] for p, ss in parts.items()},
                "rows": [r.to_json() for r in rows],
            }
        )
    return report


def run(args: argparse.Namespace, load_model: ModelLoader = load_keras) -> int:
    """Entry point of ``vibewatch evaluate forecast``; returns the exit code."""
    try:
        report = evaluate(args, load_model)
    except (data_mod.DataError, ValueError, KeyError) as exc:
        log.error("%s", exc)
        return 2
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return 0
    rows = [Row(**r) for d in report["datasets"] for r in d["rows"]]
    sys.stdout.write(f"model {report['model']}\n")
    for d in report["datasets"]:
        sys.stdout.write(
            f"{d['name']}: {d['held_out']}; moving-average window {d['moving_average_window']} "
            f"chosen on validation engines\n"
        )
    sys.stdout.write(format_table(rows) + "\n")
    return 0
