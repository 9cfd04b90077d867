"""``vibewatch train``: fit the next-step model on a dataset and write an artifact.

The exact commands behind the shipped artifacts are in ``docs/model.md``. TensorFlow is
imported only when training starts, never at module level.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from models import data as data_mod
from models.artifact import series_predictor, write_artifact
from models.card import write_card
from models.evaluation import evaluate_parts, summary
from models.forecast import Scaler, level_shift_augment, windows
from models.network import ArchitectureConfig, build_model, seed_everything
from models.splits import METHODS, split_dataset

log = logging.getLogger(__name__)


def _ids(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``vibewatch train``."""
    d = parser.add_argument_group("data")
    d.add_argument("--data", required=True, help="dataset: [ims:|cmapss:|nab:|csv:]PATH")
    d.add_argument("--out", required=True, type=Path, help="artifact directory to write")
    d.add_argument("--name", help="model name used in the version (default: dataset name)")
    d.add_argument("--channels", type=_ids, help="comma-separated channels to model")
    d.add_argument("--engine-column", help="csv: column holding the engine id")
    d.add_argument("--time-column", help="csv: column holding the time (default: first)")
    s = parser.add_argument_group("split (no evaluation data is ever trained on)")
    s.add_argument("--split", choices=METHODS, default="engine", help="default: engine")
    s.add_argument("--val", type=_ids, default=[], help="validation engines/files (comma list)")
    s.add_argument("--test", type=_ids, default=[], help="test engines/files (comma list)")
    s.add_argument("--val-fraction", type=float, default=0.15, help="when --val/--test absent")
    s.add_argument("--test-fraction", type=float, default=0.15, help="when --val/--test absent")
    a = parser.add_argument_group("architecture")
    a.add_argument("--cell", choices=("lstm", "gru"), default="lstm")
    a.add_argument("--units", type=int, default=64)
    a.add_argument("--layers", type=int, default=1)
    a.add_argument("--dropout", type=float, default=0.0, help="between stacked layers")
    a.add_argument("--no-residual", action="store_true", help="predict the level, not the change")
    t = parser.add_argument_group("training")
    t.add_argument("--sequence-length", type=int, default=256)
    t.add_argument("--stride", type=int, help="window stride (default: sequence length / 4)")
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--epochs", type=int, default=60, help="upper bound; early stopping ends it")
    t.add_argument("--patience", type=int, default=10, help="early-stopping patience (epochs)")
    t.add_argument("--learning-rate", type=float, default=3e-3)
    t.add_argument("--augment", type=int, default=3, help="level-shifted copies per window")
    t.add_argument(
        "--level-jitter", type=float, default=5.0, help="largest level shift (scaled units)"
    )
    t.add_argument("--loss", choices=("mse", "huber"), default="mse", help="training loss")
    t.add_argument("--huber-delta", type=float, default=0.1, help="scaled units")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--verbose", type=int, choices=(0, 1, 2), default=2, help="Keras verbosity")


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Train and write the artifact; return its manifest."""
    started = time.monotonic()
    ds = data_mod.load(
        args.data,
        channels=args.channels,
        engine_column=args.engine_column,
        time_column=args.time_column,
    )
    split = split_dataset(
        ds,
        args.split,
        val=args.val,
        test=args.test,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        seed=args.seed,
        context=args.sequence_length,
    )
    if not split.val:
        raise data_mod.DataError(ds.name, "the split has no validation engines")
    length = args.sequence_length
    stride = args.stride or max(1, length // 4)
    scaler = Scaler.fit(split.train)
    x_tr, y_tr, w_tr = windows(split.train, scaler, length, stride)
    x_va, y_va, w_va = windows(split.val, scaler, length, stride)
    x_tr, y_tr, w_tr = level_shift_augment(
        x_tr, y_tr, w_tr, args.augment, args.level_jitter, args.seed
    )
    log.info(
        "%s: %d train / %d val / %d test engines; %d train and %d val windows of %d",
        ds.name, len(split.train), len(split.val), len(split.test), len(x_tr), len(x_va), length,
    )  # fmt: skip

    seed_everything(args.seed)
    import keras

    arch = ArchitectureConfig(
        args.cell, args.units, args.layers, args.dropout, not args.no_residual
    )
    model = build_model(len(ds.channels), arch)
    loss: Any = "mse" if args.loss == "mse" else keras.losses.Huber(args.huber_delta)
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate, clipnorm=1.0), loss=loss)
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=args.patience, restore_best_weights=True
        ),
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=0.5, patience=max(1, args.patience // 2)
        ),
    ]
    fit_started = time.monotonic()
    history = model.fit(
        x_tr,
        y_tr,
        sample_weight=w_tr,
        validation_data=(x_va, y_va, w_va),
        batch_size=args.batch_size,
        epochs=args.epochs,
        shuffle=True,
        callbacks=callbacks,
        verbose=args.verbose,
    )
    fit_seconds = time.monotonic() - fit_started
    losses = {k: [float(v) for v in vals] for k, vals in history.history.items()}

    predict = series_predictor(model, scaler, [*split.val, *split.test])
    parts = {"val": split.val, "test": split.test}
    ma_window, rows = evaluate_parts(ds.name, split.val, parts, predict)
    name = args.name or ds.name
    extra: dict[str, Any] = {
        "data": {
            "name": ds.name,
            "format": ds.kind,
            "files": [f.name for f in ds.files],
            "sha256": ds.sha256,
            "split": split.describe(),
        },
        "training": {
            "seed": args.seed,
            "stride": stride,
            "augment": {"copies": args.augment, "level_jitter": args.level_jitter},
            "batch_size": args.batch_size,
            "epochs_max": args.epochs,
            "epochs_run": len(losses.get("loss", [])),
            "best_epoch": int(np.argmin(losses["val_loss"])) + 1,
            "patience": args.patience,
            "learning_rate": args.learning_rate,
            "loss": args.loss if args.loss == "mse" else f"huber({args.huber_delta})",
            "train_windows": len(x_tr),
            "val_windows": len(x_va),
            "fit_seconds": round(fit_seconds, 1),
            "history": losses,
        },
        "metrics": {
            "moving_average_window": ma_window,
            "summary": summary(rows),
            "rows": [r.to_json() for r in rows],
        },
    }
    held_out = list(split.test) + list(split.val)
    manifest = write_artifact(
        args.out,
        model,
        name=name,
        channels=ds.channels,
        scaler=scaler,
        sequence_length=length,
        arch=arch,
        probe_series=held_out,
        extra=extra,
    )
    write_card(args.out, manifest, rows, held_out, predict)
    log.info("artifact %s written in %.0f s", args.out, time.monotonic() - started)
    return manifest


def run(args: argparse.Namespace) -> int:
    """Entry point of ``vibewatch train``; returns the exit code."""
    try:
        manifest = train(args)
    except (data_mod.DataError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    log.info("model %s", manifest["version"])
    return 0
