"""Decode and validate readings-topic messages (the contract in DESIGN.md).

A message is either one reading::

    {"engine_id": "engine-042", "ts": "2026-11-25T12:00:00.000Z", "values": {"rms": 0.061}}

or a batch for one engine::

    {"engine_id": "engine-042", "readings": [{"ts": ..., "values": {...}}, ...]}

Anything else raises :class:`~service.errors.InvalidMessageError` with a reason from
:data:`REASONS`; the pipeline turns it into a dead letter. Validation is hand-written rather
than pydantic because it runs for every message on the hot path.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson

from service.domain import Reading
from service.errors import InvalidMessageError
from service.ingest.columns import ReadingColumns

#: Every reason the decoder rejects a message for; a dead-letter header and a metric label.
DECODER_REASONS: tuple[str, ...] = (
    "oversize",
    "empty",
    "not_json",
    "not_object",
    "missing_field",
    "too_many_fields",
    "bad_engine_id",
    "key_mismatch",
    "bad_timestamp",
    "bad_values",
    "non_finite",
    "missing_channel",
    "empty_batch",
    "batch_too_large",
    "bad_reading",
)
#: Reasons the pipeline gives rather than the decoder's checks: an unexpected exception
#: while decoding a message, one while processing its readings, a new engine beyond
#: ``state.max_engines``, an operator command it does not know or cannot read, a class
#: with no model here, a class other than the engine's and a malformed ``class`` field
#: (see ``service.classes``).
PIPELINE_REASONS: tuple[str, ...] = (
    "decode_failed", "processing_failed", "engine_limit", "bad_command", "unknown_class",
    "class_mismatch", "bad_class",
)
#: Every reason a dead letter can carry.
REASONS = DECODER_REASONS + PIPELINE_REASONS

_ENGINE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_TOP_FIELDS = frozenset({"engine_id", "ts", "values", "readings", "class"})
_READING_FIELDS = frozenset({"ts", "values"})
# Epoch-millisecond bounds: 2000-01-01 .. 2100-01-01. Anything outside is a unit mistake
# (seconds or microseconds sent as milliseconds), not a real event time.
_MIN_TS_MS = 946_684_800_000
_MAX_TS_MS = 4_102_444_800_000


def _parse_ts(raw: object) -> int:
    if isinstance(raw, bool):
        raise InvalidMessageError("bad_timestamp", "ts must be RFC 3339 text or epoch milliseconds")
    if isinstance(raw, int):
        ts = raw
    elif isinstance(raw, float) and raw.is_integer():
        ts = int(raw)
    elif isinstance(raw, str):
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            raise InvalidMessageError("bad_timestamp", f"ts {raw[:40]!r} is not RFC 3339") from None
        if parsed.tzinfo is None:
            raise InvalidMessageError("bad_timestamp", f"ts {raw[:40]!r} has no UTC offset")
        ts = round(parsed.timestamp() * 1000)
    else:
        raise InvalidMessageError("bad_timestamp", "ts must be RFC 3339 text or epoch milliseconds")
    if not _MIN_TS_MS <= ts < _MAX_TS_MS:
        raise InvalidMessageError("bad_timestamp", f"ts {ts} ms is outside 2000..2100")
    return ts


class MessageDecoder:
    """Validates messages for a model that needs ``channels``.

    Extra channels in ``values`` and unknown top-level fields are tolerated up to
    ``max_extra_fields`` each (forward compatibility), beyond that the message is rejected.
    """

    def __init__(
        self,
        channels: Sequence[str],
        *,
        max_bytes: int = 1_048_576,
        max_batch: int = 10_000,
        max_extra_fields: int = 16,
    ) -> None:
        if not channels:
            raise ValueError("a decoder needs at least one channel")
        self.channels = tuple(channels)
        self.max_bytes = max_bytes
        self.max_batch = max_batch
        self.max_extra_fields = max_extra_fields
        self._max_values = len(self.channels) + max_extra_fields
        # Engine ids repeat on every message: remember the valid ones (bounded).
        self._valid_ids: set[str] = set()

    def decode(self, value: bytes | None, key: bytes | None = None) -> list[Reading]:
        """Decode one message; returns its readings in message order.

        Raises :class:`InvalidMessageError` when any part of the message is invalid (a batch is
        accepted or rejected whole, so a dead letter always holds a complete message).
        """
        out = ReadingColumns(self.channels)
        self.decode_into(out, value, key)
        return out.readings()

    def decode_into(
        self, out: ReadingColumns, value: bytes | None, key: bytes | None = None,
        partition: int = 0,
    ) -> int:
        """:meth:`decode`, appending the message to ``out`` as columns; returns its readings.

        What the pipeline calls: no :class:`Reading` objects. Nothing is appended when the
        message is invalid (the same :class:`InvalidMessageError` as :meth:`decode`).
        """
        doc, engine_id = self.parse(value, key)
        return self.decode_doc_into(out, doc, engine_id, partition)

    def parse(self, value: bytes | None, key: bytes | None = None) -> tuple[dict[str, Any], str]:
        """The message's JSON object and its checked engine id (the first half of
        :meth:`decode_into`, which does not depend on the channels: the class router reads
        the ``class`` field in between). Raises InvalidMessageError."""
        if not value:
            raise InvalidMessageError("empty", "message has no value")
        if len(value) > self.max_bytes:
            raise InvalidMessageError("oversize", f"{len(value)} bytes > limit {self.max_bytes}")
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError:
            doc = _loads(value)
        if not isinstance(doc, dict):
            raise InvalidMessageError("not_object", f"top level is {type(doc).__name__}")
        engine_id = self._engine_id(doc, key)
        # A document with few keys cannot have too many unknown ones: skip the set difference.
        if len(doc) > self.max_extra_fields:
            extra = len(doc.keys() - _TOP_FIELDS)
            if extra > self.max_extra_fields:
                raise InvalidMessageError("too_many_fields", f"{extra} unknown fields")
        return doc, engine_id

    def decode_doc_into(
        self, out: ReadingColumns, doc: dict[str, Any], engine_id: str, partition: int = 0
    ) -> int:
        r"""The second half of :meth:`decode_into`: check a :meth:`parse`\ d message's
        readings against this decoder's channels and append them to ``out``."""
        if "readings" in doc:
            if "ts" in doc or "values" in doc:
                raise InvalidMessageError("bad_reading", "both readings and ts/values")
            batch = doc["readings"]
            if not isinstance(batch, list):
                raise InvalidMessageError("bad_reading", "readings must be a list")
            if not batch:
                raise InvalidMessageError("empty_batch", "readings is empty")
            if len(batch) > self.max_batch:
                raise InvalidMessageError("batch_too_large", f"{len(batch)} > {self.max_batch}")
            ts, values = self._columns(batch)
            out.add(engine_id, partition, ts, values)
            return len(ts)
        t, row = self._fast(doc) or self._reading(doc, None)
        out.add_one(engine_id, partition, t, row)
        return 1

    def _columns(self, batch: list[Any]) -> tuple[list[int], list[list[float]]]:
        """The timestamps and per-channel values of a batch's items (all valid, or raise)."""
        common = self._common_columns(batch)
        if common is not None:
            return common
        ts: list[int] = []
        values: list[list[float]] = [[] for _ in self.channels]
        # Items with more fields than this may have too many unknown ones: full checks.
        small = self.max_extra_fields
        fast = self._fast
        for i, item in enumerate(batch):
            got = fast(item) if type(item) is dict and len(item) <= small else None
            t, row = got or self._reading(item, i)
            ts.append(t)
            for column, v in zip(values, row, strict=True):
                column.append(v)
        return ts, values

    def _common_columns(self, batch: list[Any]) -> tuple[list[int], list[list[float]]] | None:
        """:meth:`_columns` when every item has the common shape, checked a column at a time.

        The checks run in C (``set(map(type, ...))``, ``min``/``max``, ``sum``), not per item
        in Python. None when any item is unusual (text ts, integer values, a missing field,
        a non-finite value, a sum that overflows): :meth:`_columns` then checks item by item.
        """
        if set(map(type, batch)) != {dict} or max(map(len, batch)) > self.max_extra_fields:
            return None
        try:
            ts = [item["ts"] for item in batch]
            raws = [item["values"] for item in batch]
        except KeyError:
            return None
        if (
            set(map(type, ts)) != {int}
            or min(ts) < _MIN_TS_MS
            or max(ts) >= _MAX_TS_MS
            or set(map(type, raws)) != {dict}
            or max(map(len, raws)) > self._max_values
        ):
            return None
        values = []
        for channel in self.channels:
            try:
                column = [raw[channel] for raw in raws]
            except KeyError:
                return None
            # A non-finite value makes the sum non-finite (NaN or inf).
            if set(map(type, column)) != {float} or not math.isfinite(sum(column)):
                return None
            values.append(column)
        return ts, values

    def _fast(self, item: dict[str, Any]) -> tuple[int, list[float]] | None:
        """The common shape (integer ms ``ts``, float values) checked cheaply; None if not.

        Accepts only what :meth:`_reading` accepts with the same result; anything else
        (text timestamps, integer values, a missing or bad field) goes to :meth:`_reading`,
        which decides, with the reason when it rejects.
        """
        ts = item.get("ts")
        raw = item.get("values")
        if (
            type(ts) is not int
            or not _MIN_TS_MS <= ts < _MAX_TS_MS
            or type(raw) is not dict
            or len(raw) > self._max_values
        ):
            return None
        row = []
        for channel in self.channels:
            v = raw.get(channel)
            if type(v) is not float or not math.isfinite(v):
                return None
            row.append(v)
        return ts, row

    def _engine_id(self, doc: Mapping[str, Any], key: bytes | None) -> str:
        engine_id = doc.get("engine_id")
        if engine_id is None:
            raise InvalidMessageError("missing_field", "engine_id is missing")
        # A list or object is unhashable: check the type before the set lookup.
        if type(engine_id) is not str or engine_id not in self._valid_ids:
            if not isinstance(engine_id, str) or not _ENGINE_ID.fullmatch(engine_id):
                raise InvalidMessageError(
                    "bad_engine_id", "engine_id must be 1-64 characters of [A-Za-z0-9._:-]"
                )
            if len(self._valid_ids) >= 1_000_000:
                self._valid_ids.clear()
            self._valid_ids.add(engine_id)
        if key is not None and key != engine_id.encode():
            raise InvalidMessageError(
                "key_mismatch", f"message key {key[:64]!r} differs from engine_id {engine_id!r}"
            )
        return engine_id

    def _reading(self, item: object, index: int | None) -> tuple[int, list[float]]:
        # The hot path builds no strings: error prefixes are made only when raising.
        if not isinstance(item, dict):
            raise InvalidMessageError("bad_reading", f"{_at(index)}reading is not an object")
        if (
            index is not None
            and len(item) > self.max_extra_fields
            and len(item.keys() - _READING_FIELDS) > self.max_extra_fields
        ):
            raise InvalidMessageError("too_many_fields", f"{_at(index)}too many unknown fields")
        if "ts" not in item or "values" not in item:
            missing = "ts" if "ts" not in item else "values"
            raise InvalidMessageError("missing_field", f"{_at(index)}{missing} is missing")
        ts = _parse_ts(item["ts"])
        raw = item["values"]
        if not isinstance(raw, dict):
            raise InvalidMessageError("bad_values", f"{_at(index)}values must be an object")
        if len(raw) > self._max_values:
            raise InvalidMessageError(
                "too_many_fields", f"{_at(index)}{len(raw)} channels in values"
            )
        values: list[float] = []
        for channel in self.channels:
            if channel not in raw:
                raise InvalidMessageError(
                    "missing_channel", f"{_at(index)}no channel {channel!r}"
                )
            v = raw[channel]
            if type(v) is not float and (isinstance(v, bool) or not isinstance(v, int)):
                raise InvalidMessageError("bad_values", f"{_at(index)}{channel} is not a number")
            try:
                fv = float(v)
            except OverflowError:  # an integer beyond float range: as infinite as 1e400
                fv = math.inf
            if not math.isfinite(fv):
                raise InvalidMessageError("non_finite", f"{_at(index)}{channel} is {v!r}")
            values.append(fv)
        return ts, values


def _loads(value: bytes) -> Any:
    """``json.loads``, for what orjson rejects (NaN and Infinity, lone surrogates, a BOM,
    malformed JSON), so that the decoder accepts and rejects exactly what it did with the
    standard library alone; raises ``not_json``.

    orjson parses everything else 3-6x faster with the same result, but for one case: an
    integer beyond 64 bits becomes a float there, which the checks reject the same way
    (out-of-range timestamp) or turn into the same float (a value).
    """
    try:
        # What json.loads(bytes) does, without its encoding detection for the usual
        # case: an object ('{' then a non-NUL byte) is UTF-8 there too.
        if value[:1] == b"{" and value[1:2] != b"\x00":
            return json.loads(value.decode("utf-8", "surrogatepass"))
        return json.loads(value)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidMessageError("not_json", str(exc)[:200]) from None
    except RecursionError:  # a deeply nested document (orjson refuses it first)
        raise InvalidMessageError("not_json", "nested too deeply to parse") from None


def _at(index: int | None) -> str:
    """Where in a message an error is: '' for a single reading, 'readings[i]: ' in a batch."""
    return "" if index is None else f"readings[{index}]: "
