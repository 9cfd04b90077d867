"""``vibewatch train``: fit the next-step model on a dataset and write an artifact.

The exact commands behind the shipped artifacts are in ``docs/model.md``. TensorFlow is
imported only when training starts, never at module level. ``--init-from ARTIFACT`` fine-tunes
an existing model (same channels, same architecture, its scaling) on new data, e.g. one engine
class's healthy readings.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from models import data as data_mod
from models.artifact import (
    code_version,
    load_keras,
    read_manifest,
    series_predictor,
    write_artifact,
)
from models.card import write_card
from models.data import Dataset, Series
from models.evaluation import evaluate_parts, summary
from models.fitting import FitResult, FitSettings, fit
from models.forecast import Scaler
from models.network import ArchitectureConfig, build_model, seed_everything
from models.splits import METHODS, Split, split_dataset

log = logging.getLogger(__name__)

#: Learning rates when none is given: a new model, and fine-tuning a trained one.
LEARNING_RATE = 3e-3
FINE_TUNE_LEARNING_RATE = 1e-3
#: Options that describe the architecture (``--init-from`` takes them from the artifact).
ARCH_OPTIONS = {
    "cell": "cell",
    "units": "units",
    "layers": "layers",
    "dropout": "dropout",
    "no_residual": "residual",
    "conv_kernel": "conv_kernel",
    "conv_filters": "conv_filters",
    "conv_activation": "conv_activation",
}


CONV_HELP = "causal Conv1D over the last K readings before the cell (default 0: none)"


def _ids(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _pairs(text: str) -> dict[str, str]:
    out = {}
    for item in text.split(","):
        name, sep, unit = item.partition("=")
        if not sep or not name.strip():
            raise argparse.ArgumentTypeError(f"want CHANNEL=UNIT[,CHANNEL=UNIT...], got {text!r}")
        out[name.strip()] = unit.strip()
    return out


class _Explicit(argparse.Action):
    """Store the value and remember that the option was given (``args.explicit``)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, True if self.nargs == 0 else values)
        explicit = set(getattr(namespace, "explicit", set()))
        namespace.explicit = explicit | {self.dest}


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Data and split options, shared by ``train`` and ``tune``."""
    d = parser.add_argument_group("data")
    d.add_argument(
        "--data", required=True, help="dataset: [ims:|ims-multi:|cmapss:|skab:|nab:|csv:]PATH"
    )
    d.add_argument("--out", required=True, type=Path, help="artifact directory to write")
    d.add_argument("--name", help="model name used in the version (default: dataset name)")
    d.add_argument("--channels", type=_ids, help="comma-separated channels to model (default: all)")
    d.add_argument(
        "--channel-units",
        type=_pairs,
        default={},
        metavar="CH=UNIT,...",
        help="units of channels the format does not define, e.g. rms=g,temp=degC",
    )
    d.add_argument("--engine-column", help="csv: column holding the engine id")
    d.add_argument("--time-column", help="csv: column holding the time (default: first)")
    s = parser.add_argument_group("split (no evaluation data is ever trained on)")
    s.add_argument("--split", choices=METHODS, default="engine", help="default: engine")
    s.add_argument("--val", type=_ids, default=[], help="validation engines/files (comma list)")
    s.add_argument("--test", type=_ids, default=[], help="test engines/files (comma list)")
    s.add_argument(
        "--val-fraction", type=float, default=0.15, help="when --val/--test absent (default 0.15)"
    )
    s.add_argument(
        "--test-fraction", type=float, default=0.15, help="when --val/--test absent (default 0.15)"
    )


def add_fit_arguments(
    parser: argparse.ArgumentParser,
    *,
    epochs: int = 60,
    patience: int = 10,
    verbose: int = 2,
    fine_tune: bool = True,
) -> argparse._ArgumentGroup:
    """Training options, shared by ``train`` and ``tune``; returns the group."""
    t = parser.add_argument_group("training")
    t.add_argument("--stride", type=int, help="window stride (default: sequence length / 4)")
    t.add_argument("--batch-size", type=int, default=32, help="default 32")
    t.add_argument(
        "--epochs",
        type=int,
        default=epochs,
        help=f"upper bound; early stopping ends it (default {epochs})",
    )
    t.add_argument(
        "--patience",
        type=int,
        default=patience,
        help=f"early-stopping patience (default {patience})",
    )
    t.add_argument(
        "--learning-rate",
        type=float,
        help=f"default {LEARNING_RATE:g}"
        + (f", or {FINE_TUNE_LEARNING_RATE:g} with --init-from" if fine_tune else ""),
    )
    t.add_argument(
        "--augment", type=int, default=3, help="level-shifted copies per window (default 3)"
    )
    t.add_argument(
        "--level-jitter",
        type=float,
        default=5.0,
        help="largest level shift, scaled units (default 5)",
    )
    t.add_argument("--loss", choices=("mse", "huber"), default="mse", help="default mse")
    t.add_argument("--huber-delta", type=float, default=0.1, help="scaled units (default 0.1)")
    t.add_argument("--seed", type=int, default=0, help="seeds the split and training (default 0)")
    t.add_argument(
        "--verbose",
        type=int,
        choices=(0, 1, 2),
        default=verbose,
        help=f"Keras verbosity per epoch (default {verbose})",
    )
    return t


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``vibewatch train``."""
    add_data_arguments(parser)
    a = parser.add_argument_group(
        "architecture (with --init-from: taken from the artifact; a different value is an error)"
    )
    for flag, kwargs in (
        ("--cell", {"choices": ("lstm", "gru"), "default": "lstm", "help": "default lstm"}),
        ("--units", {"type": int, "default": 64, "help": "default 64"}),
        ("--layers", {"type": int, "default": 1, "help": "default 1"}),
        ("--dropout", {"type": float, "default": 0.0, "help": "between layers (default 0)"}),
        ("--no-residual", {"nargs": 0, "default": False, "help": "predict the level"}),
        ("--conv-kernel", {"type": int, "default": 0, "help": CONV_HELP}),
        ("--conv-filters", {"type": int, "default": 16, "help": "default 16"}),
        (
            "--conv-activation",
            {"choices": ("linear", "relu", "tanh"), "default": "relu", "help": "default relu"},
        ),
    ):
        a.add_argument(flag, action=_Explicit, **kwargs)
    a.add_argument(
        "--init-from",
        type=Path,
        metavar="ARTIFACT",
        help="fine-tune this artifact's model (same channels and architecture, its scaling)",
    )
    t = add_fit_arguments(parser)
    t.add_argument("--sequence-length", type=int, default=256, help="default 256")


def architecture(args: argparse.Namespace) -> ArchitectureConfig:
    """The architecture the options describe."""
    return ArchitectureConfig(
        args.cell,
        args.units,
        args.layers,
        args.dropout,
        not args.no_residual,
        args.conv_kernel,
        args.conv_filters,
        args.conv_activation,
    )


def load_data(args: argparse.Namespace, channels: Sequence[str] | None = None) -> Dataset:
    """The ``--data`` dataset, restricted to ``channels`` (default ``--channels``)."""
    return data_mod.load(
        args.data,
        channels=channels if channels is not None else args.channels,
        engine_column=args.engine_column,
        time_column=args.time_column,
        units=args.channel_units or None,
    )


def make_split(args: argparse.Namespace, ds: Dataset, context: int) -> Split:
    """The train/val/test split the options describe; raises ``DataError`` without val."""
    split = split_dataset(
        ds,
        args.split,
        val=args.val,
        test=args.test,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        seed=args.seed,
        context=context,
    )
    if not split.val:
        raise data_mod.DataError(ds.name, "the split has no validation engines")
    return split


def fit_settings(
    args: argparse.Namespace, sequence_length: int, learning_rate: float
) -> FitSettings:
    """The training settings the options describe, at ``sequence_length``."""
    return FitSettings(
        sequence_length=sequence_length,
        stride=args.stride or max(1, sequence_length // 4),
        batch_size=args.batch_size,
        epochs=args.epochs,
        patience=args.patience,
        learning_rate=learning_rate,
        augment=args.augment,
        level_jitter=args.level_jitter,
        loss=args.loss,
        huber_delta=args.huber_delta,
        seed=args.seed,
        verbose=args.verbose,
    )


def publish(
    out: Path,
    model: Any,
    *,
    name: str,
    ds: Dataset,
    split: Split,
    scaler: Scaler,
    arch: ArchitectureConfig,
    settings: FitSettings,
    result: FitResult,
    training_extra: Mapping[str, Any] | None = None,
    manifest_extra: Mapping[str, Any] | None = None,
    others: Mapping[str, Callable[[Series], Any]] | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` on the held-out parts beside the baselines (and ``others``), write
    the artifact and its card into ``out``; return the manifest."""
    predict = series_predictor(model, scaler, [*split.val, *split.test])
    parts = {"val": split.val, "test": split.test}
    ma_window, rows = evaluate_parts(ds.name, split.val, parts, predict, others)
    extra: dict[str, Any] = {
        "data": {
            "name": ds.name,
            "format": ds.kind,
            "files": [f.name for f in ds.files],
            "sha256": ds.sha256,
            "split": split.describe(),
        },
        "training": {**settings.to_json(), **result.to_json(), **(training_extra or {})},
        "metrics": {
            "moving_average_window": ma_window,
            "summary": summary(rows),
            "rows": [r.to_json() for r in rows],
        },
        **(manifest_extra or {}),
    }
    manifest = write_artifact(
        out,
        model,
        name=name,
        channels=ds.channels,
        units=ds.channel_units,
        scaler=scaler,
        sequence_length=settings.sequence_length,
        arch=arch,
        extra=extra,
    )
    held_out = list(split.test) + list(split.val)
    write_card(out, manifest, rows, held_out, predict)
    return manifest


def _parent(args: argparse.Namespace) -> tuple[dict[str, Any], ArchitectureConfig]:
    """The ``--init-from`` artifact's manifest and architecture; raises ``ValueError`` naming
    every architecture option given with a value different from the artifact's."""
    manifest = read_manifest(args.init_from)
    arch = ArchitectureConfig.from_json(manifest["architecture"])
    mine = architecture(args)
    differ = []
    for dest, field in ARCH_OPTIONS.items():
        if dest in getattr(args, "explicit", set()) and getattr(mine, field) != getattr(
            arch, field
        ):
            option = "--" + dest.replace("_", "-")
            differ.append(f"{option} {getattr(args, dest)} (artifact: {getattr(arch, field)})")
    if differ:
        raise ValueError(
            f"--init-from {args.init_from}: fine-tuning keeps the artifact's architecture, but "
            + "; ".join(differ)
        )
    return manifest, arch


def _check_channels(args: argparse.Namespace, ds: Dataset, manifest: dict[str, Any]) -> None:
    want = list(manifest["channels"])
    if list(ds.channels) != want:
        raise ValueError(
            f"--init-from {args.init_from}: the artifact models channels {want}, "
            f"the data gives {list(ds.channels)}"
        )


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Train (or, with ``--init-from``, fine-tune) and write the artifact; return its manifest.

    Raises ``DataError``/``ValueError`` for unusable data or options (the CLI exits 2).
    """
    started = time.monotonic()
    parent: dict[str, Any] | None = None
    code_version()  # the code that trains, recorded as it is now
    if args.init_from is not None:
        parent, arch = _parent(args)
        ds = load_data(args, args.channels or parent["channels"])
        _check_channels(args, ds, parent)
    else:
        arch = architecture(args)
        ds = load_data(args)
    split = make_split(args, ds, args.sequence_length)
    lr = args.learning_rate or (LEARNING_RATE if parent is None else FINE_TUNE_LEARNING_RATE)
    settings = fit_settings(args, args.sequence_length, lr)
    log.info(
        "%s: %d train / %d val / %d test engines, %d channels",
        ds.name, len(split.train), len(split.val), len(split.test), len(ds.channels),
    )  # fmt: skip

    seed_everything(args.seed)
    training_extra: dict[str, Any] = {}
    others: dict[str, Callable[[Series], Any]] = {}
    if parent is None:
        scaler = Scaler.fit(split.train)
        model = build_model(len(ds.channels), arch)
    else:
        scaler = Scaler(tuple(parent["scaler"]["mean"]), tuple(parent["scaler"]["scale"]))
        model = load_keras(args.init_from)
        before = load_keras(args.init_from)
        others["before_fine_tuning"] = series_predictor(before, scaler, [*split.val, *split.test])
        training_extra["init_from"] = {
            "artifact": str(args.init_from),
            "version": parent["version"],
            "data": {k: parent.get("data", {}).get(k) for k in ("name", "sha256")},
        }
    result = fit(model, split, scaler, settings)
    log.info(
        "fit: %d epochs (best %d) in %.0f s", result.epochs_run, result.best_epoch,
        result.fit_seconds,
    )  # fmt: skip
    manifest = publish(
        args.out,
        model,
        name=args.name or ds.name,
        ds=ds,
        split=split,
        scaler=scaler,
        arch=arch,
        settings=settings,
        result=result,
        training_extra=training_extra,
        others=others,
    )
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
