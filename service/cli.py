"""The ``vibewatch`` command line.

Each subcommand lives in its own module, which provides ``add_arguments(parser)`` and
``run(args) -> int`` (the exit code). Modules are imported only when their subcommand is
chosen, so ``vibewatch serve`` never pays for importing TensorFlow.

For every command: ``--log-level`` and ``--log-format`` are accepted before or after the
subcommand; every ``--help`` shows each option's default; a user error (a bad option, a
missing file, an invalid setting, an unreachable broker) prints one line naming the problem
and exits 2, with the traceback only at ``--log-level DEBUG``. The settings
(``VIBEWATCH_*``) are read once here and passed to the command as ``args._settings``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn, Protocol, cast

import service
from service.errors import VibewatchError

log = logging.getLogger("vibewatch")

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
    "live": ("service.evaluation.live",
             "the live acceptance scenario: a simulated fleet through the real service"),
    "simulated": ("service.evaluation.simulated",
                  "the service's defaults on simulator data: faults caught, healthy quiet"),
    "select": ("service.evaluation.selection",
               "the selection procedure: choose the scoring defaults out of sample"),
    "select-skab": ("service.evaluation.skab",
                    "SKAB's protocol, settings chosen leaving one fault type out"),
    "cut-cmapss": ("service.evaluation.cut_cmapss",
                   "make a C-MAPSS test set and RUL file from a training file"),
}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class _Command(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (exit 2), pointing at ``--help``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _load(module: str) -> _Command:
    return cast(_Command, importlib.import_module(module))


def _global_options(parser: argparse.ArgumentParser, *, here: bool) -> None:
    """``--log-level``/``--log-format``; after a subcommand they default to "not given" so
    that the value given before it (or the setting) stands."""
    default = None if here else argparse.SUPPRESS
    parser.add_argument(
        "--log-level", type=str.upper, choices=LOG_LEVELS, default=default, metavar="LEVEL",
        help="log level: " + ", ".join(LOG_LEVELS) + " (default: log.level, INFO)",
    )
    parser.add_argument(
        "--log-format", choices=("text", "json"), default=default,
        help="log lines as text or JSON objects (default: log.format, text)",
    )


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Append ``(default: X)`` to every option's help that does not state it already
    (``not set`` for an optional option without a default)."""
    for action in parser._actions:
        if not action.option_strings or action.default is argparse.SUPPRESS or action.required:
            continue
        if isinstance(action, argparse._HelpAction | argparse._VersionAction):
            continue
        if action.nargs == 0 and action.default is False:  # a flag
            continue
        text = action.help or ""
        if "default" in text.lower():
            continue
        default = "not set" if action.default is None else action.default
        if isinstance(default, list):
            default = ",".join(map(str, default)) or "none"
        action.help = f"{text} (default: {default})".strip()


def _add(
    subparsers: argparse._SubParsersAction[Parser],
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
        _global_options(parser, here=False)
        _show_defaults(parser)


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """Build the parser; ``argv`` decides which subcommand's module gets imported."""
    positional = [a for a in argv if not a.startswith("-")]
    chosen = positional[0] if positional else None
    chosen_eval = positional[1] if chosen == "evaluate" and len(positional) > 1 else None

    parser = Parser(
        prog="vibewatch",
        description="Streaming predictive maintenance on Kafka with a per-engine LSTM. "
        "Settings come from VIBEWATCH_<SECTION>__<NAME> environment variables (README).",
    )
    parser.add_argument("--version", action="version", version=f"vibewatch {service.__version__}")
    _global_options(parser, here=True)
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


def _fail(message: str, exc: BaseException) -> int:
    print(f"vibewatch: error: {message}", file=sys.stderr)
    log.debug("traceback", exc_info=exc)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``vibewatch``; returns the exit code."""
    from service import logs
    from service.config import load_settings

    args_list = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(args_list).parse_args(args_list)
    try:
        settings = load_settings()
    except VibewatchError as exc:
        return _fail(str(exc), exc)
    logs.configure(args.log_level or settings.log.level,
                   args.log_format or settings.log.format)
    args._settings = settings  # "_": not an option (reports that dump the options skip it)
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
        return _fail(str(exc), exc)
    except (OSError, ValueError) as exc:  # a file that is not there, data that is not data
        return _fail(str(exc) or type(exc).__name__, exc)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
