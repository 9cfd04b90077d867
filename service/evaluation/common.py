"""What the evaluation commands share: the scoring options, output, detections, progress.

The scoring options are generated from ``ScoringSettings`` (one settings definition): every
field is a ``--flag`` with the service's default and description, so a command runs the
service's configuration unless told otherwise and a new setting needs no change here.
"""

from __future__ import annotations

import argparse
import sys
import typing
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from service.config import ScoringSettings, SettingError
from service.errors import VibewatchError
from service.evaluation.stream import Trace
from service.scoring.registry import SCORERS

FloatArray = npt.NDArray[np.float64]
ALARM = 3
WARNING = 2
T = TypeVar("T")


def out(line: str = "") -> None:
    """One line of command output on stdout."""
    sys.stdout.write(line + "\n")


class MissingDataError(VibewatchError):
    """A data path an evaluation needs does not exist; names it and the flag that sets it."""

    def __init__(self, path: Path, flag: str) -> None:
        super().__init__(f"no data at {path}: pass its location with {flag}")
        self.path = path
        self.flag = flag


def existing(path: Path, flag: str) -> Path:
    """``path`` if it exists, else :class:`MissingDataError` naming ``flag``."""
    if not path.exists():
        raise MissingDataError(path, flag)
    return path


def progress(items: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    """``items`` with a progress bar on stderr (redrawn every 30 s into a log file)."""
    from tqdm import tqdm

    yield from tqdm(items, desc=desc, total=total, unit="step",
                    mininterval=0.1 if sys.stderr.isatty() else 30.0)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_scoring_arguments(
    parser: argparse.ArgumentParser, overrides: Mapping[str, object] | None = None
) -> None:
    """One option per ``ScoringSettings`` field, defaulting to the service's settings (or
    ``overrides``, which a command must document)."""
    group = parser.add_argument_group("scoring (defaults: the service's ScoringSettings)")
    defaults = ScoringSettings().model_dump() | dict(overrides or {})
    for name, field in ScoringSettings.model_fields.items():
        kind: Any = field.annotation
        choices: list[str] | None = None
        if typing.get_origin(kind) is typing.Literal:
            choices = [str(c) for c in typing.get_args(kind)]
            kind = str
        if name == "scorer":
            choices = sorted(SCORERS)
        default = defaults[name]
        group.add_argument(
            _flag(name),
            dest=name,
            type=kind,
            choices=choices,
            default=default,
            help=f"{field.description} (default {default})",
        )


def scoring_settings(args: argparse.Namespace, **overrides: object) -> ScoringSettings:
    """The ``ScoringSettings`` chosen on the command line; a bad value exits naming its flag."""
    values = {name: getattr(args, name) for name in ScoringSettings.model_fields}
    values.update(overrides)
    try:
        return ScoringSettings(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        rule = first.get("ctx", {}).get("error")
        name = rule.setting if isinstance(rule, SettingError) else str(first["loc"][0])
        raise SystemExit(f"{_flag(name)}: {first['msg']}") from exc


def onsets(trace: Trace, level: int = ALARM) -> npt.NDArray[np.bool_]:
    """Rows where the status rose to ``level`` or above from below it."""
    prev = np.concatenate([[0], trace.status[:-1]])
    out_: npt.NDArray[np.bool_] = (trace.status >= level) & (prev < level)
    return out_


def event_scores(trace: Trace) -> FloatArray:
    """The anomaly events the service emits, as NAB detections: the score on rows where the
    status rises to warning or escalates to alarm, 0 elsewhere."""
    prev = np.concatenate([[0], trace.status[:-1]])
    rise = ((trace.status >= WARNING) & (prev < WARNING)) | (
        (trace.status == ALARM) & (prev == WARNING)
    )
    result: FloatArray = np.where(rise, trace.score, 0.0)
    return result
