"""The job every peer runs, framework-free: one engine's state, advanced one reading at a time.

This is what a user of a per-message state API writes: for each message, read the engine's
state from the framework's store, step the project's NumPy kernel (``load_streaming_model``)
and score the error with ``EngineScoring`` (the service's default ``ScoringSettings``) once
per reading, append the reading to the window (256), write the state back, and return the
status changes to publish. The model and scoring are the service's own; only the batching
differs: a per-message API hands over one engine at a time, so every step is a batch of one.

The state goes into the stores as bytes (:meth:`EngineState.to_bytes`, the arrays' raw
contents one after another): every peer's store accepts bytes, and it is what a competent
user would pick over JSON lists of 256 floats. Imported in the peers' virtualenvs (numpy,
h5py, pydantic and kafka-python; no framework) and by the scenario, which decodes the peers'
changelog records with it.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import numpy.typing as npt

from bench.machine import rss_kib
from service.config import ScoringSettings
from service.domain import AnomalyEvent
from service.kafka.outputs import event_record
from service.model import load_streaming_model
from service.scoring import STATUS_ORDER, EngineScoring

WINDOW = 256
_HEAD = 4  # int64 count, last_ts, has_pred, status code (index into STATUS_ORDER)

Reading = tuple[int, npt.NDArray[np.float64]]  # (ts ms, values in the model's channel order)


class BadMessageError(ValueError):
    """A readings message the job cannot use (it is counted and skipped)."""


@dataclass(frozen=True)
class Dims:
    """The sizes of one engine's state: fixed by the model, the scoring and the window."""

    channels: int
    model: int
    score: int
    window: int = WINDOW

    @property
    def nbytes(self) -> int:
        c, w = self.channels, self.window
        return 8 * _HEAD + 8 * c + 4 * self.model + 8 * self.score + 4 * w * c + 8 * w


class EngineState:
    """One engine: recurrent state, next prediction, scoring row and the window of readings.

    Mutable and private to the call that decoded it; ``to_bytes`` is what goes to the store.
    Memory: ``Dims.nbytes`` (3,704 bytes for LSTM(64), one channel, window 256) plus the
    arrays' object overhead while decoded.
    """

    __slots__ = ("count", "has_pred", "last_ts", "model", "pred", "ring", "ring_ts", "score",
                 "status")

    def __init__(self, dims: Dims, model: npt.NDArray[np.float32],
                 score: npt.NDArray[np.float64]) -> None:
        self.count = 0
        self.last_ts = -(2**63)
        self.has_pred = False
        self.status = 0  # warmup, as EngineScoring.init_state starts every engine
        self.pred = np.zeros(dims.channels, np.float64)
        self.model = model
        self.score = score
        self.ring = np.zeros((dims.window, dims.channels), np.float32)
        self.ring_ts = np.zeros(dims.window, np.int64)

    def push(self, ts: int, x: npt.NDArray[np.float64]) -> None:
        """Append a reading to the window (a ring: the oldest is overwritten)."""
        pos = self.count % len(self.ring_ts)
        self.ring[pos] = x
        self.ring_ts[pos] = ts
        self.count += 1
        self.last_ts = ts

    def window_ts(self) -> npt.NDArray[np.int64]:
        """Timestamps of the readings in the window, oldest first."""
        w = len(self.ring_ts)
        n = min(self.count, w)
        order = (np.arange(self.count - n, self.count)) % w
        out: npt.NDArray[np.int64] = self.ring_ts[order]
        return out

    def to_bytes(self) -> bytes:
        head = np.array([self.count, self.last_ts, int(self.has_pred), self.status], np.int64)
        return b"".join((head.tobytes(), self.pred.tobytes(), self.model.tobytes(),
                         self.score.tobytes(), self.ring.tobytes(), self.ring_ts.tobytes()))

    @classmethod
    def from_bytes(cls, data: bytes, dims: Dims) -> EngineState:
        """Decode :meth:`to_bytes`; raises ValueError when the size does not fit ``dims``."""
        if len(data) != dims.nbytes:
            raise ValueError(f"engine state of {len(data)} bytes, expected {dims.nbytes}")
        buf = np.frombuffer(data, np.uint8)
        at = 0

        def take(dtype: Any, n: int) -> Any:
            nonlocal at
            size = np.dtype(dtype).itemsize * n
            arr = buf[at : at + size].view(dtype).copy()
            at += size
            return arr

        head = take(np.int64, _HEAD)
        pred = take(np.float64, dims.channels)
        model = take(np.float32, dims.model)
        score = take(np.float64, dims.score)
        st = cls(dims, model, score)
        st.count, st.last_ts, st.has_pred = int(head[0]), int(head[1]), bool(head[2])
        st.status = int(head[3])
        st.pred = pred
        st.ring = take(np.float32, dims.window * dims.channels).reshape(dims.window, -1)
        st.ring_ts = take(np.int64, dims.window)
        return st


class PeerJob:
    """The model, the scoring and the message format: built once per peer process.

    ``apply`` is called once per message with that engine's state (None for a new engine);
    it returns the new state and the anomaly-event records (key, value) to publish.
    Readings at or before the engine's last timestamp are skipped (duplicates or late), as
    the service does; a reading with a missing or non-finite channel makes the message a
    :class:`BadMessageError`.
    """

    def __init__(self, artifact: Path, window: int = WINDOW) -> None:
        self.model = load_streaming_model(artifact)
        self.scoring = EngineScoring(ScoringSettings(), len(self.model.channels))
        self._init_score = self.scoring.init_state(1)[0]
        self.dims = Dims(len(self.model.channels), self.model.state_size,
                         self.scoring.state_size, window)
        self.skipped = 0

    def new_state(self) -> EngineState:
        return EngineState(self.dims, self.model.zero_state(1)[0], self._init_score.copy())

    def decode_state(self, data: bytes | None) -> EngineState:
        return self.new_state() if data is None else EngineState.from_bytes(data, self.dims)

    def readings(self, doc: Any) -> list[Reading]:
        """The readings of one decoded JSON message (single or batch form)."""
        if not isinstance(doc, dict):
            raise BadMessageError("message is not a JSON object")
        items = doc.get("readings", [doc])
        if not isinstance(items, list):
            raise BadMessageError("readings is not a list")
        out: list[Reading] = []
        for item in items:
            try:
                values = item["values"]
                x = np.array([float(values[c]) for c in self.model.channels], np.float64)
                ts = _ts_ms(item["ts"])
            except (KeyError, TypeError, ValueError) as exc:
                raise BadMessageError(f"bad reading: {exc!r}") from exc
            if not np.isfinite(x).all():
                raise BadMessageError("non-finite value")
            out.append((ts, x))
        return out

    def apply(self, engine_id: str, state: EngineState | None,
              readings: Iterable[Reading]) -> tuple[EngineState, list[tuple[bytes, bytes]]]:
        """Advance one engine over ``readings`` (in order); the state and the events."""
        st = state if state is not None else self.new_state()
        events: list[tuple[bytes, bytes]] = []
        model, scoring = self.model, self.scoring
        for ts, x in readings:
            if ts <= st.last_ts:
                self.skipped += 1
                continue
            x2 = x[None, :]
            if st.has_pred:
                residual = model.scaled_residual(x2, st.pred[None, :])
                batch, new_score = scoring.update(residual, st.score[None, :],
                                                   np.array([ts], dtype=np.int64))
                previous, st.status = st.status, int(batch.status[0])
                st.score = new_score[0]
                if batch.changed[0]:
                    event = AnomalyEvent(engine_id, ts, STATUS_ORDER[previous],
                                         STATUS_ORDER[st.status],
                                         float(batch.score[0]), model.version)
                    key, value, _ = event_record(event)
                    events.append((key or b"", value))
            pred, new_model = model.step(x2, st.model[None, :])
            st.model, st.pred, st.has_pred = new_model[0], pred[0], True
            st.push(ts, x)
        return st, events


def _ts_ms(ts: Any) -> int:
    if isinstance(ts, bool):
        raise ValueError("ts is a boolean")
    if isinstance(ts, int | float):
        if not math.isfinite(ts):
            raise ValueError("ts is not finite")
        return int(ts)
    if isinstance(ts, str):
        return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)
    raise ValueError(f"ts of type {type(ts).__name__}")


class Progress:
    """Markers on stdout that the scenario times a peer by (the peer's own clock and RSS).

    ``BOOT t rss`` before the framework starts, ``FIRST t rss`` when the first message has
    been processed, ``DONE t rss`` when ``expect`` readings have been (0: never), and
    ``COUNT t rss readings`` about once a second while messages come.
    """

    EVERY_S = 1.0

    def __init__(self, expect: int = 0, out: TextIO = sys.stdout) -> None:
        self.expect = expect
        self.out = out
        self.readings = 0
        self.bad = 0
        self._first = False
        self._next = 0.0

    def mark(self, name: str, *extra: int) -> None:
        tail = "".join(f" {x}" for x in extra)
        self.out.write(f"{name} {time.time():.6f} {rss_kib()}{tail}\n")
        self.out.flush()

    def add(self, readings: int) -> None:
        """Count a processed message with ``readings`` readings."""
        before = self.readings
        self.readings += readings
        if not self._first:
            self._first = True
            self.mark("FIRST", self.readings)
            self._next = time.monotonic() + self.EVERY_S
        elif time.monotonic() >= self._next:
            self._next += self.EVERY_S
            self.mark("COUNT", self.readings)
        if self.expect and before < self.expect <= self.readings:
            self.mark("DONE", self.readings)
