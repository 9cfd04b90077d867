"""The command line: one-line user errors with exit 2, --version, global options after the
subcommand, defaults in every --help."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess

import pytest

from service import __version__
from service.cli import COMMANDS, EVALUATE, build_parser
from tests.support import VIBEWATCH

#: every subcommand, as argv prefixes
SUBCOMMANDS = [[c] for c in COMMANDS] + [["evaluate", e] for e in EVALUATE]


def _run(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VIBEWATCH, *argv], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_version() -> None:
    out = _run("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"vibewatch {__version__}"


@pytest.mark.parametrize(("argv", "env", "names"), [
    (["replay", "no/such/file.csv"], {}, "no/such/file.csv"),
    (["replay", "nab:no/such/dir"], {}, "no/such/dir"),
    (["replay", "models/data/ims", "--rename", "value"], {}, "--rename"),
    (["replay", "cmapss:models/data/ims", "--speed", "0"], {}, "train_FD"),
    (["replay", "models/data/ims", "--batch", "0"], {}, "--batch"),
    (["simulate", "--fault", "engine-9999:wear", "--ticks", "1"], {}, "engine-9999"),
    (["simulate", "--fault", "engine-0001:melt", "--ticks", "1"], {}, "melt"),
    (["simulate", "--engines", "0"], {}, "--engines"),
    (["simulate", "--rate", "fast"], {}, "--rate"),
    (["serve", "--log-level", "verbose"], {}, "--log-level"),
    (["--log-level", "verbose", "serve"], {}, "--log-level"),
    (["serve", "--no-such-option"], {}, "--no-such-option"),
    (["frobnicate"], {}, "frobnicate"),
    (["serve"], {"VIBEWATCH_API__PORT": "eighty"}, "api.port"),
    (["simulate", "--ticks", "1"], {"VIBEWATCH_LOG__FORMAT": "xml"}, "log.format"),
    (["simulate", "--ticks", "1", "--bootstrap", "127.0.0.1:9"],
     {"VIBEWATCH_KAFKA__TIMEOUT_MS": "1000"}, "127.0.0.1:9"),
    (["evaluate", "forecast", "--model", "no/such/model", "--data", "models/data/ims"], {},
     "no/such/model"),
])
def test_user_errors_are_one_line_and_exit_2(
    argv: list[str], env: dict[str, str], names: str
) -> None:
    out = _run(*argv, **env)
    assert out.returncode == 2, (out.stdout, out.stderr)
    # log lines (a timestamp first) may come before it; the error is one line (printed, or
    # logged at ERROR)
    lines = [x for x in out.stderr.strip().splitlines()
             if not re.match(r"\d{4}-\d\d-", x) or " ERROR " in x]
    assert "Traceback" not in out.stderr
    assert len(lines) == 1, out.stderr
    assert names in lines[0] and "error" in lines[0].lower()


def test_global_options_after_the_subcommand_and_json_logs() -> None:
    """``--log-level``/``--log-format`` after the subcommand apply (the simulator logs its
    start at INFO), and JSON lines carry the record's fields."""
    out = _run("simulate", "--log-level", "info", "--log-format", "json", "--ticks", "1",
               "--bootstrap", "127.0.0.1:9", VIBEWATCH_KAFKA__TIMEOUT_MS="1000")
    assert out.returncode == 2
    first, *_, last = out.stderr.strip().splitlines()
    record = json.loads(first)
    assert record["level"] == "INFO" and record["logger"] == "service.simulator"
    assert "simulating 20 engines" in record["message"] and record["ts"].endswith("Z")
    assert last.startswith("vibewatch: error: cannot reach Kafka at 127.0.0.1:9")
    quiet = _run("simulate", "--ticks", "1", "--bootstrap", "127.0.0.1:9",
                 VIBEWATCH_KAFKA__TIMEOUT_MS="1000", VIBEWATCH_LOG__LEVEL="warning")
    assert len(quiet.stderr.strip().splitlines()) == 1  # the setting, without the option


def _parser_of(argv: list[str]) -> argparse.ArgumentParser:
    parser = build_parser([*argv, "--help"])
    for name in argv:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return parser


@pytest.mark.parametrize("argv", SUBCOMMANDS, ids=" ".join)
def test_every_help_shows_the_defaults(argv: list[str]) -> None:
    parser = _parser_of(argv)
    missing = [
        a.option_strings[0] for a in parser._actions
        if a.option_strings and not a.required and a.default is not False
        and not isinstance(a, argparse._HelpAction | argparse._VersionAction)
        and "default" not in (a.help or "").lower()
    ]
    assert not missing, f"vibewatch {' '.join(argv)} --help hides the default of {missing}"


def test_help_runs_for_every_command() -> None:
    for argv in SUBCOMMANDS[:3]:
        out = _run(*argv, "--help")
        assert out.returncode == 0 and "(default: " in out.stdout, argv
