"""Decoded readings of many messages as columns: what the processor applies.

The decoder appends each valid message whole (:meth:`ReadingColumns.add`); the processor
turns the columns into arrays once per poll. Nothing is built per reading except its
timestamp and values in plain lists, so a batch message of 50 readings costs one engine
lookup, not 50.
"""

from __future__ import annotations

from collections.abc import Sequence

from service.domain import Reading


class ReadingColumns:
    """Readings of many messages, in message order.

    Per message: ``engine_ids``, ``partitions`` and ``counts`` (its number of readings);
    per reading: ``ts`` (epoch ms) and ``values[c]`` for channel ``c`` (in ``channels``
    order). A message's readings are consecutive and in message order.
    """

    __slots__ = ("channels", "counts", "engine_ids", "partitions", "ts", "values")

    def __init__(self, channels: Sequence[str]) -> None:
        self.channels = tuple(channels)
        self.engine_ids: list[str] = []
        self.partitions: list[int] = []
        self.counts: list[int] = []
        self.ts: list[int] = []
        self.values: list[list[float]] = [[] for _ in self.channels]

    def __len__(self) -> int:
        """Number of readings."""
        return len(self.ts)

    def add(
        self, engine_id: str, partition: int, ts: list[int], values: Sequence[list[float]]
    ) -> None:
        """Append one message's readings: ``ts`` and one value list per channel."""
        self.engine_ids.append(engine_id)
        self.partitions.append(partition)
        self.counts.append(len(ts))
        self.ts.extend(ts)
        for column, new in zip(self.values, values, strict=True):
            column.extend(new)

    def add_one(self, engine_id: str, partition: int, ts: int, values: Sequence[float]) -> None:
        """Append a message of one reading (``values`` one per channel)."""
        self.engine_ids.append(engine_id)
        self.partitions.append(partition)
        self.counts.append(1)
        self.ts.append(ts)
        for column, v in zip(self.values, values, strict=True):
            column.append(v)

    def pop_last(self) -> None:
        """Remove the last message added (the pipeline refused it after decoding)."""
        n = self.counts.pop()
        self.engine_ids.pop()
        self.partitions.pop()
        del self.ts[len(self.ts) - n :]
        for column in self.values:
            del column[len(column) - n :]

    @classmethod
    def from_readings(
        cls, channels: Sequence[str], readings: Sequence[Reading], partitions: Sequence[int]
    ) -> ReadingColumns:
        """Columns of ``readings`` (each its own message; ``partitions[i]`` is reading i's)."""
        out = cls(channels)
        out.engine_ids = [r.engine_id for r in readings]
        out.partitions = list(partitions)
        if len(out.partitions) != len(out.engine_ids):
            raise ValueError("one partition per reading")
        out.counts = [1] * len(readings)
        out.ts = [r.ts_ms for r in readings]
        out.values = [[r.values[c] for r in readings] for c in out.channels]
        return out

    def readings(self) -> list[Reading]:
        """The readings as :class:`Reading` objects (tests and tools; not the hot path)."""
        out: list[Reading] = []
        k = 0
        for engine_id, count in zip(self.engine_ids, self.counts, strict=True):
            for i in range(k, k + count):
                values = {c: col[i] for c, col in zip(self.channels, self.values, strict=True)}
                out.append(Reading(engine_id, self.ts[i], values))
            k += count
        return out
