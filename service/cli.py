"""The ``vibewatch`` command line.

Each subcommand lives in its own module, which provides ``add_arguments(parser)`` and
``run(args) -> int`` (the exit code). Modules are imported only when their subcommand is
chosen, so ``vibewatch serve`` never pays for importing TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Protocol, cast

from service.errors import VibewatchError

#: name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("service.runner", "run the streaming service: consume, score, serve the API"),
    "simulate": ("service.simulator", "publish synthetic vibration readings to Kafka"),
    "replay": ("service.replay", "publish a dataset (NAB, IMS, C-MAPSS, CSV) to Kafka"),
    "train": ("models.train", "train the LSTM and write a model artifact"),
    "tune": ("models.tune", "search the architecture and sequence length, write the best"),
}
#: Libraries of the ``train`` extra (pip install 'vibewatch[train]'): only training and
#: tuning import them; a command that needs one says so in one line when it is missing.
TRAINING_MODULES = frozenset({"tensorflow", "keras", "matplotlib", "optuna"})
#: vibewatch evaluate <name>
EVALUATE: dict[str, tuple[str, str]] = {
    "forecast": ("service.evaluation.forecast", "next-value RMSE/MAE against naive baselines"),
    "nab": ("service.evaluation.nab", "stream a NAB-layout directory and score it with NAB"),
    "labeled": ("service.evaluation.labeled", "point-wise and NAB-style scores on labelled CSVs"),
    "lead-time": ("service.evaluation.lead_time", "alarm lead time on run-to-failure data"),
    "simulated": ("service.evaluation.simulated",
                  "the service's defaults on simulator data: faults caught, healthy quiet"),
    "select": ("service.evaluation.selection",
               "the selection procedure: choose the scoring defaults out of sample"),
    "cut-cmapss": ("service.evaluation.cut_cmapss",
                   "make a C-MAPSS test set and RUL file from a training file"),
}


class _Command(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def _load(module: str) -> _Command:
    return cast(_Command, importlib.import_module(module))


def _add(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    module: str,
    help_text: str,
    chosen: str | None,
) -> None:
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(_module=module)
    # Only the chosen subcommand's module is imported; the others show their one-line help.
    if name == chosen:
        _load(module).add_arguments(parser)


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """Build the parser; ``argv`` decides which subcommand's module gets imported."""
    positional = [a for a in argv if not a.startswith("-")]
    chosen = positional[0] if positional else None
    chosen_eval = positional[1] if chosen == "evaluate" and len(positional) > 1 else None

    parser = argparse.ArgumentParser(
        prog="vibewatch",
        description="Streaming predictive maintenance on Kafka with a per-engine LSTM.",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        _add(sub, name, module, help_text, chosen)
    evaluate = sub.add_parser(
        "evaluate", help="evaluate a model or the scoring", description="Evaluation commands."
    )
    eval_sub = evaluate.add_subparsers(title="evaluations", metavar="EVALUATION", required=True)
    for name, (module, help_text) in EVALUATE.items():
        _add(eval_sub, name, module, help_text, chosen_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``vibewatch``; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args_list)
    args = parser.parse_args(args_list)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # kafka-python logs every connection at INFO; keep its warnings and errors.
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        return _load(args._module).run(args)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in TRAINING_MODULES:
            raise
        words = [a for a in args_list if not a.startswith("-")]
        command = " ".join(words[:2] if words[:1] == ["evaluate"] else words[:1])
        print(f"vibewatch {command}: needs {exc.name}, which the serving install leaves out: "
              "pip install 'vibewatch[train]'", file=sys.stderr)
        return 2
    except VibewatchError as exc:
        print(f"vibewatch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
