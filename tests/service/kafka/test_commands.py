"""Operator commands on the readings topic: what is sent is what is applied, and a
malformed one is a dead letter with the reason."""

from __future__ import annotations

import json

import pytest

from service.errors import InvalidMessageError
from service.kafka.commands import (
    COMMAND_HEADER,
    MAX_COMMISSION_S,
    command_name,
    command_record,
    decode_command,
)


@pytest.mark.parametrize("window", [None, 0.0, 3600.0, MAX_COMMISSION_S])
def test_a_baseline_command_round_trips(window: float | None) -> None:
    key, value, headers = command_record("baseline", "pump-7", 1_795_608_000_000, window)
    assert key == b"pump-7" and command_name(headers) == "baseline"
    assert headers == [(COMMAND_HEADER, b"baseline")]
    command = decode_command("baseline", value, key)
    assert (command.engine_id, command.ts_ms, command.commission_s) == (
        "pump-7", 1_795_608_000_000, window)


@pytest.mark.parametrize("window", [-1, MAX_COMMISSION_S + 1, "3600", True, None])
def test_a_bad_baseline_window_is_a_dead_letter(window: object) -> None:
    doc = {"engine_id": "pump-7", "ts": 1, "command": "baseline", "commission_s": window}
    if window is None:  # explicit null: the default window
        assert decode_command("baseline", json.dumps(doc).encode(), None).commission_s is None
        return
    with pytest.raises(InvalidMessageError) as err:
        decode_command("baseline", json.dumps(doc).encode(), None)
    assert err.value.reason == "bad_command" and "commission_s" in err.value.detail


def test_unknown_and_malformed_commands_are_dead_letters() -> None:
    with pytest.raises(InvalidMessageError, match="unknown command"):
        decode_command("reboot", b"{}", None)
    with pytest.raises(InvalidMessageError, match="not"):
        decode_command("baseline", b"not json", None)
    _, value, _ = command_record("baseline", "a", 1)
    with pytest.raises(InvalidMessageError) as err:
        decode_command("baseline", value, b"b")
    assert err.value.reason == "key_mismatch"
