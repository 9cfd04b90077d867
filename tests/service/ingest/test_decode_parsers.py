"""orjson (the fast path) and the standard library (its fallback) decode alike."""

from __future__ import annotations

import random

import orjson
import pytest

from service.errors import InvalidMessageError
from service.ingest import MessageDecoder

ATOMS = [
    "1795608000001", "1.5", "-0.0", "1e999", "NaN", "Infinity", "true", "null", '""',
    '"2026-01-01T00:00:00Z"', "1" + "0" * 30, "9223372036854775808", '"\\ud800"', "{}",
    "[]", "0.1", "3", '"e1"',
]
KEYS = ['"ts"', '"values"', '"engine_id"', '"readings"', '"rms"', '"temp"', '"x"']


def _messages(n: int, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)

    def value(depth: int = 0) -> str:
        r = rng.random()
        if depth > 3 or r < 0.5:
            return rng.choice(ATOMS)
        if r < 0.8:
            items = (f"{rng.choice(KEYS)}:{value(depth + 1)}" for _ in range(rng.randint(0, 4)))
            return "{" + ",".join(items) + "}"
        return "[" + ",".join(value(depth + 1) for _ in range(rng.randint(0, 3))) + "]"

    out = []
    for _ in range(n):
        ts = rng.choice(["1795608000001", '"2026-11-26T00:00:00+00:00"', value()])
        kind = rng.random()
        if kind < 0.4:
            channels = rng.sample(KEYS, rng.randint(0, 3))
            values = ",".join(f"{k}:{rng.choice([*ATOMS[:6], value()])}" for k in channels)
            text = '{"engine_id":"e1","ts":' + ts + ',"values":{' + values + "}}"
        elif kind < 0.7:
            items = ",".join(
                '{"ts":' + rng.choice(["1795608000001", "1795608000002", ts])
                + ',"values":{"rms":' + rng.choice(ATOMS[:6])
                + ',"temp":' + rng.choice(ATOMS[:6]) + "}}"
                for _ in range(rng.randint(1, 4))
            )
            text = '{"engine_id":"e1","readings":[' + items + "]}"
        else:
            text = value()
        raw = text.encode("utf-8", "surrogatepass")
        out.append(b"\xef\xbb\xbf" + raw if rng.random() < 0.05 else raw)
    return out


def _outcome(decoder: MessageDecoder, message: bytes) -> str:
    try:
        return repr(decoder.decode(message, b"e1"))
    except InvalidMessageError as exc:
        return f"rejected: {exc.reason}"


def test_orjson_and_the_standard_library_give_the_same_outcome(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decoder = MessageDecoder(["rms", "temp"])
    messages = _messages(5000)
    fast = [_outcome(decoder, m) for m in messages]

    def refuse(value: bytes) -> None:
        raise orjson.JSONDecodeError("forced fallback", "", 0)

    monkeypatch.setattr(orjson, "loads", refuse)  # the module the decoder calls through
    slow = [_outcome(decoder, m) for m in messages]
    assert fast == slow
    # The corpus exercises both outcomes and both parsers.
    assert sum(o.startswith("rejected") for o in fast) > 1000
    assert sum(not o.startswith("rejected") for o in fast) > 100
