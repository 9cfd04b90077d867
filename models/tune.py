"""``vibewatch tune``: a hyper-parameter search, then the chosen model written as an artifact.

Searches the recurrent cell, units, layers, the convolutional front-end (none or a kernel
size) and the training-sequence length with Optuna's TPE sampler. Every trial is fitted on
the training engines and scored on the validation engines (next-value RMSE in scaled units,
each validation engine run whole from a zero state, as the service runs it); the test
engines are used only once, to report the chosen model beside the baselines. The search
(space, every trial, the chosen one) is recorded in the manifest and the model card.
TensorFlow and Optuna are imported only when the command runs.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from models import data as data_mod
from models.artifact import code_version
from models.evaluation import Row, format_table
from models.fitting import FitResult, fit, validation_score
from models.forecast import Scaler
from models.network import ArchitectureConfig, build_model, import_keras, seed_everything
from models.train import (
    LEARNING_RATE,
    add_data_arguments,
    add_fit_arguments,
    fit_settings,
    load_data,
    make_split,
    publish,
)

log = logging.getLogger(__name__)

OBJECTIVE = (
    "next-value RMSE in scaled units, mean over channels, of the validation engines run "
    "whole from a zero state"
)


def _list(kind: type) -> Any:
    def parse(text: str) -> list[Any]:
        try:
            out = [kind(t.strip()) for t in text.split(",") if t.strip()]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(
                f"not a comma list of {kind.__name__}: {text!r}"
            ) from exc
        if not out:
            raise argparse.ArgumentTypeError("empty list")
        return out

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``vibewatch tune``."""
    add_data_arguments(parser)
    s = parser.add_argument_group("search (comma lists are the choices)")
    s.add_argument("--trials", type=int, default=12, help="trials to run (default 12)")
    s.add_argument(
        "--startup-trials",
        type=int,
        help="random trials before TPE takes over (default: a third of --trials, at least 1)",
    )
    s.add_argument("--cells", type=_list(str), default=["lstm", "gru"], help="default lstm,gru")
    s.add_argument(
        "--units-choices", type=_list(int), default=[16, 32, 64], help="default 16,32,64"
    )
    s.add_argument("--layers-choices", type=_list(int), default=[1, 2], help="default 1,2")
    s.add_argument(
        "--conv-kernels",
        type=_list(int),
        default=[0, 3, 5],
        help="convolution kernel sizes, 0 = no convolution (default 0,3,5)",
    )
    s.add_argument(
        "--sequence-lengths",
        type=_list(int),
        default=[64, 128, 256],
        help="training-sequence lengths (default 64,128,256)",
    )
    s.add_argument("--conv-filters", type=int, default=16, help="default 16")
    s.add_argument(
        "--conv-activation", choices=("linear", "relu", "tanh"), default="relu", help="default relu"
    )
    add_fit_arguments(parser, epochs=30, patience=5, verbose=0, fine_tune=False)


def _check(args: argparse.Namespace) -> None:
    bad = [c for c in args.cells if c not in ("lstm", "gru")]
    if bad:
        raise ValueError(f"--cells: unknown cell(s) {bad}; known: lstm, gru")
    if args.trials < 1:
        raise ValueError("--trials must be at least 1")
    for name in ("units_choices", "layers_choices", "sequence_lengths"):
        if min(getattr(args, name)) < 1:
            raise ValueError(f"--{name.replace('_', '-')}: every choice must be >= 1")
    if min(args.conv_kernels) < 0:
        raise ValueError("--conv-kernels: sizes must be >= 0 (0 = no convolution)")


def tune(args: argparse.Namespace) -> dict[str, Any]:
    """Run the search and write the chosen model's artifact; return its manifest."""
    _check(args)
    started = time.monotonic()
    code_version()  # the code that trains, recorded as it is now
    ds = load_data(args)
    # One context for every trial, so each one is scored on exactly the same readings.
    split = make_split(args, ds, max(args.sequence_lengths))
    scaler = Scaler.fit(split.train)
    lr = args.learning_rate or LEARNING_RATE
    keras = import_keras()
    import optuna
    from tqdm.contrib.logging import logging_redirect_tqdm

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    startup = args.startup_trials or max(1, args.trials // 3)
    sampler = optuna.samplers.TPESampler(seed=args.seed, n_startup_trials=startup)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    log.info(
        "%s: %d train / %d val / %d test engines, %d channels; %d trials",
        ds.name, len(split.train), len(split.val), len(split.test), len(ds.channels), args.trials,
    )  # fmt: skip

    results: dict[int, FitResult] = {}
    with tempfile.TemporaryDirectory(prefix="vibewatch-tune-") as tmp:
        best_path = Path(tmp) / "best.keras"

        def objective(trial: Any) -> float:
            params = {
                "cell": trial.suggest_categorical("cell", args.cells),
                "units": trial.suggest_categorical("units", args.units_choices),
                "layers": trial.suggest_categorical("layers", args.layers_choices),
                "conv_kernel": trial.suggest_categorical("conv_kernel", args.conv_kernels),
                "sequence_length": trial.suggest_categorical(
                    "sequence_length", args.sequence_lengths
                ),
            }
            # TPE may propose a combination again; training is deterministic, so the earlier
            # value stands and the budget's time goes to new combinations.
            for earlier in study.trials:
                if earlier.params == trial.params and earlier.value is not None:
                    trial.set_user_attr("repeat_of", earlier.number)
                    log.info("trial %d: repeats trial %d", trial.number, earlier.number)
                    return float(earlier.value)
            arch = _arch(args, params)
            settings = fit_settings(args, params["sequence_length"], lr)
            keras.backend.clear_session()
            seed_everything(args.seed)
            model = build_model(len(ds.channels), arch)
            result = fit(model, split, scaler, settings)
            value = validation_score(model, scaler, split.val)
            results[trial.number] = result
            for key, v in (
                ("epochs_run", result.epochs_run),
                ("best_epoch", result.best_epoch),
                ("fit_seconds", round(result.fit_seconds, 1)),
            ):
                trial.set_user_attr(key, v)
            done = [t.value for t in study.trials if t.value is not None]
            if not done or value < min(done):
                model.save(best_path)
            log.info(
                "trial %d: %s -> validation RMSE %.5f (scaled), %d epochs, %.0f s",
                trial.number, arch.label + f" seq {params['sequence_length']}", value,
                result.epochs_run, result.fit_seconds,
            )  # fmt: skip
            return value

        with logging_redirect_tqdm():
            study.optimize(objective, n_trials=args.trials, show_progress_bar=True)
        best = study.best_trial
        # A repeated combination points at the trial that was fitted (and saved).
        chosen = study.trials[best.user_attrs.get("repeat_of", best.number)]
        model = keras.saving.load_model(best_path, safe_mode=True)
        params = dict(chosen.params)
        arch = _arch(args, params)
        settings = fit_settings(args, params["sequence_length"], lr)
        seed_everything(args.seed)  # the final evaluation's predictions, as in train
        tuning = {
            "library": "optuna",
            "library_version": optuna.__version__,
            "sampler": "TPESampler",
            "startup_trials": startup,
            "seed": args.seed,
            "objective": OBJECTIVE,
            "space": {
                "cell": args.cells,
                "units": args.units_choices,
                "layers": args.layers_choices,
                "conv_kernel": args.conv_kernels,
                "sequence_length": args.sequence_lengths,
            },
            "fixed": {
                "conv_filters": args.conv_filters,
                "conv_activation": args.conv_activation,
                "learning_rate": lr,
                "epochs_max": args.epochs,
                "patience": args.patience,
                "augment": args.augment,
            },
            "trials": [
                {
                    "number": t.number,
                    "state": t.state.name.lower(),
                    "params": t.params,
                    "value": t.value,
                    **t.user_attrs,
                }
                for t in study.trials
            ],
            "chosen": chosen.number,
            "search_seconds": round(time.monotonic() - started, 1),
        }
        log.info("chosen: trial %d %s", chosen.number, params)
        manifest = publish(
            args.out,
            model,
            name=args.name or f"{ds.name}-tuned",
            ds=ds,
            split=split,
            scaler=scaler,
            arch=arch,
            settings=settings,
            result=results[chosen.number],
            manifest_extra={"tuning": tuning},
        )
    log.info("search and artifact %s in %.0f s", args.out, time.monotonic() - started)
    return manifest


def _arch(args: argparse.Namespace, params: dict[str, Any]) -> ArchitectureConfig:
    return ArchitectureConfig(
        cell=params["cell"],
        units=params["units"],
        layers=params["layers"],
        conv_kernel=params["conv_kernel"],
        conv_filters=args.conv_filters,
        conv_activation=args.conv_activation,
    )


def run(args: argparse.Namespace) -> int:
    """Entry point of ``vibewatch tune``; returns the exit code."""
    try:
        manifest = tune(args)
    except (data_mod.DataError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    rows = [Row(**r) for r in manifest["metrics"]["rows"] if r["part"] == "test"]
    sys.stdout.write(f"model {manifest['version']} (trial {manifest['tuning']['chosen']})\n")
    sys.stdout.write(format_table(rows) + "\n")
    return 0
