"""Operator commands, carried on the readings topic so they are exactly-once like readings.

A command for an engine (today: ``baseline``, re-baseline after maintenance) is a message
on the readings topic keyed by the engine id, so it reaches the instance that owns the
engine, in order with its readings, and its effect (the engine's new state row and an
anomaly event with ``cause: baseline``) is committed in the same transaction as its
offset: applied once whatever crashes. It is told apart from a reading by the
:data:`COMMAND_HEADER` header; its value is JSON ``{"engine_id", "ts", "command"}``.

Who may send commands: anyone who may write to the readings topic. The API sends them
only for bearer-token holders; restrict writes to the readings topic accordingly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from service.errors import InvalidMessageError

COMMAND_HEADER = "vibewatch.command"
COMMANDS = ("baseline",)


#: Longest baseline window an operator may set (``commission_s``): 30 days.
MAX_COMMISSION_S = 30 * 86_400.0


@dataclass(frozen=True)
class Command:
    name: str
    engine_id: str
    ts_ms: int
    #: baseline: the operator's window, seconds of commissioning from the next reading
    commission_s: float | None = None


def command_name(headers: Sequence[tuple[str, bytes | None]] | None) -> str | None:
    """The command a message carries (its :data:`COMMAND_HEADER`), or None for a reading."""
    if not headers:
        return None
    for key, value in headers:
        if key == COMMAND_HEADER:
            return (value or b"").decode("utf-8", "replace")
    return None


def command_record(
    name: str, engine_id: str, ts_ms: int, commission_s: float | None = None
) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """``(key, value, headers)`` of a command message for ``KafkaProducer.send``."""
    doc: dict[str, object] = {"engine_id": engine_id, "ts": ts_ms, "command": name}
    if commission_s is not None:
        doc["commission_s"] = commission_s
    return engine_id.encode(), json.dumps(doc).encode(), [(COMMAND_HEADER, name.encode())]


def decode_command(name: str, value: bytes | None, key: bytes | None) -> Command:
    """Check a command message; raises InvalidMessageError (a dead letter) when it is not
    one this version knows or is malformed."""
    if name not in COMMANDS:
        raise InvalidMessageError("bad_command", f"unknown command {name[:40]!r}")
    try:
        doc = json.loads(value or b"")
        engine_id, ts = doc["engine_id"], doc["ts"]
    except (ValueError, KeyError, TypeError):
        raise InvalidMessageError("bad_command", "command value is not "
                                  '{"engine_id": ..., "ts": ..., "command": ...}') from None
    if not isinstance(engine_id, str) or not isinstance(ts, int) or isinstance(ts, bool):
        raise InvalidMessageError("bad_command", "engine_id must be text and ts integer ms")
    if key is not None and key != engine_id.encode():
        raise InvalidMessageError("key_mismatch", "command key differs from its engine_id")
    window = doc.get("commission_s")
    if window is not None and (
        isinstance(window, bool) or not isinstance(window, int | float)
        or not 0 <= window <= MAX_COMMISSION_S
    ):
        raise InvalidMessageError("bad_command", "commission_s must be a number of seconds "
                                  f"from 0 to {MAX_COMMISSION_S:.0f}")
    return Command(name, engine_id, ts, None if window is None else float(window))
