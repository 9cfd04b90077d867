"""Apply a batch of decoded readings to the per-engine state: step, score, detect changes.

No Kafka here: the processor is driven by :mod:`service.kafka.pipeline` in production and by
plain lists in unit tests. Readings of one engine are applied in order; the readings of
all engines are applied in rounds, each round one array call for every engine that still
has a reading, so the per-reading cost is one batched LSTM step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from service.domain import AnomalyEvent, Reading, Status, contributions
from service.ingest.columns import ReadingColumns
from service.state import F32, F64, I64, EngineStore


class StepModel(Protocol):
    """What the processor needs of a streaming model (see ``service.model``)."""

    @property
    def version(self) -> str: ...

    @property
    def channels(self) -> tuple[str, ...]: ...

    @property
    def state_size(self) -> int: ...

    def zero_state(self, n: int) -> F32: ...

    def step(self, x: F64, state: F32) -> tuple[F64, F32]: ...

    def scaled_residual(self, actual: F64, predicted: F64) -> F64: ...


class ScoreBatchLike(Protocol):
    @property
    def error(self) -> F64: ...

    @property
    def threshold(self) -> F64: ...

    @property
    def score(self) -> F64: ...

    @property
    def status(self) -> npt.NDArray[np.int8]: ...

    @property
    def changed(self) -> npt.NDArray[np.bool_]: ...

    @property
    def contributions(self) -> F64: ...


class Scorer(Protocol):
    """What the processor needs of the scoring (see ``service.scoring``)."""

    @property
    def state_size(self) -> int: ...

    def init_state(self, n: int) -> F64: ...

    def rebaseline(self, state: F64, commission_s: float | None = None) -> F64: ...

    def update(self, residuals: F64, state: F64, ts_ms: I64) -> tuple[ScoreBatchLike, F64]: ...

    def explain(self, residuals: F64, state: F64) -> F64: ...


@dataclass(slots=True)
class BatchResult:
    """What one :meth:`BatchProcessor.process` call did."""

    processed: int = 0
    duplicate: int = 0
    late: int = 0
    gaps: int = 0
    events: list[AnomalyEvent] = field(default_factory=list)
    dirty: set[int] = field(default_factory=set)  # store rows changed by this batch
    event_ts_ms: list[int] = field(default_factory=list)  # of processed readings


class BatchProcessor:
    """Owns the stepping and scoring of one instance's engines.

    ``statuses`` maps the scorer's status codes to :class:`Status`. ``max_gap_ms`` (0 = no
    limit): a reading more than that after the engine's previous one starts the engine
    afresh (zero recurrent state, warm-up again), because the recurrent state no longer
    describes the machine.
    """

    def __init__(
        self,
        model: StepModel,
        scorer: Scorer,
        store: EngineStore,
        statuses: Sequence[Status],
        *,
        max_gap_ms: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.model = model
        self.scorer = scorer
        self.store = store
        self.statuses = tuple(statuses)
        self.max_gap_ms = max_gap_ms
        self.clock = clock
        self._init_score = scorer.init_state(1)[0]

    def process(self, readings: Sequence[Reading], partitions: Sequence[int]) -> BatchResult:
        """Apply ``readings`` (``partitions[i]`` is the source partition of reading i)."""
        return self.process_columns(
            ReadingColumns.from_readings(self.model.channels, readings, partitions)
        )

    def process_columns(self, cols: ReadingColumns) -> BatchResult:
        """Apply the readings of ``cols`` (what the pipeline's decoder built)."""
        result = BatchResult()
        n = len(cols)
        if not n:
            return result
        if cols.channels != self.model.channels:
            raise ValueError(f"columns {cols.channels} are not the model's {self.model.channels}")
        with self.store.lock:
            # Everything per reading is gathered once, into arrays; the rounds only index.
            msg_slots, _ = self.store.slots_for(
                cols.engine_ids, cols.partitions, self._init_score
            )
        slots = msg_slots if len(msg_slots) == n else np.repeat(msg_slots, cols.counts)
        ts = np.array(cols.ts, dtype=np.int64)
        x = np.ascontiguousarray(np.array(cols.values, dtype=np.float64).T)
        # Round k holds the k-th reading of every engine: ordinal of each reading within its
        # engine, by a stable sort on the row number.
        by_slot = np.argsort(slots, kind="stable")
        sorted_slots = slots[by_slot]
        starts = np.flatnonzero(np.r_[True, sorted_slots[1:] != sorted_slots[:-1]])
        group_start = np.repeat(starts, np.diff(np.r_[starts, n]))
        ordinal = np.empty(n, dtype=np.intp)
        ordinal[by_slot] = np.arange(n) - group_start
        by_round = np.argsort(ordinal, kind="stable")
        bounds = np.searchsorted(ordinal[by_round], np.arange(int(ordinal.max()) + 2))
        for k in range(len(bounds) - 1):
            idx = by_round[bounds[k] : bounds[k + 1]]
            with self.store.lock:
                self._round(slots[idx], ts[idx], x[idx], result)
        return result

    def _round(
        self, slots: npt.NDArray[np.intp], ts: I64, x: F64, result: BatchResult
    ) -> None:
        """One reading for each engine in ``slots`` (each engine at most once)."""
        store = self.store
        last = store.last_ts[slots]
        fresh = ts > last
        if not fresh.all():
            result.duplicate += int((ts == last).sum())
            result.late += int((ts < last).sum())
            slots, ts, last, x = slots[fresh], ts[fresh], last[fresh], x[fresh]
            if not slots.size:
                return
        if self.max_gap_ms:
            gap = (last != np.iinfo(np.int64).min) & (ts - last > self.max_gap_ms)
            if gap.any():
                self._restart(slots[gap])
                result.gaps += int(gap.sum())

        has = store.has_pred[slots]
        scored = slots[has]
        if scored.size:
            residuals = self.model.scaled_residual(x[has], store.last_pred[scored])
            ts_scored = ts[has]
            batch, new_state = self.scorer.update(residuals, store.score_state[scored], ts_scored)
            store.score_state[scored] = new_state
            store.error[scored] = batch.error
            store.threshold[scored] = batch.threshold
            store.score[scored] = batch.score
            previous = store.status[scored]
            store.status[scored] = batch.status
            changed = np.flatnonzero(batch.changed)
            if changed.size:
                store.status_since[scored[changed]] = ts_scored[changed]
                for j in changed:
                    slot = int(scored[j])
                    result.events.append(
                        AnomalyEvent(
                            engine_id=store.ids[slot],
                            ts_ms=int(ts_scored[j]),
                            previous=self.statuses[int(previous[j])],
                            status=self.statuses[int(batch.status[j])],
                            score=float(batch.score[j]),
                            model_version=self.model.version,
                            contributions=contributions(self.model.channels,
                                                        batch.contributions[j]),
                        )
                    )
        first = store.count[slots] == 0
        if first.any():
            store.status_since[slots[first]] = ts[first]

        store.scored_pred[scored] = store.last_pred[scored]
        pred, state = self.model.step(x, store.model_state[slots])
        store.model_state[slots] = state
        store.last_pred[slots] = pred
        store.has_pred[slots] = True
        store.push(slots, x, ts)
        store.last_seen[slots] = int(self.clock() * 1000)
        store.changed_seq[slots] = store.seq
        result.processed += int(slots.size)
        result.dirty.update(slots.tolist())
        result.event_ts_ms.extend(ts.tolist())

    def _restart(self, slots: npt.NDArray[np.intp]) -> None:
        """Start engines afresh after a gap: zero state, no prediction, scoring warm-up."""
        store = self.store
        store.model_state[slots] = self.model.zero_state(len(slots))
        store.has_pred[slots] = False
        store.score_state[slots] = self.scorer.init_state(len(slots))
        store.status[slots] = 0
        store.score[slots] = 0.0
        store.resets[slots] += 1

    def rebaseline(self, engine_id: str, ts_ms: int,
                   commission_s: float | None = None) -> AnomalyEvent | None:
        """An operator re-baselined ``engine_id`` (after maintenance) at ``ts_ms``: its
        scoring starts commissioning afresh (``Scorer.rebaseline``; for ``commission_s``
        from its next reading when given), its status becomes warm-up. Returns the event, or
        None when the engine is not tracked here."""
        store = self.store
        with store.lock:
            slot = store.index.get(engine_id)
            if slot is None:
                return None
            previous = self.statuses[int(store.status[slot])]
            store.score_state[slot] = self.scorer.rebaseline(
                store.score_state[slot : slot + 1], commission_s
            )[0]
            store.status[slot] = 0
            store.score[slot] = 0.0
            store.status_since[slot] = ts_ms
            store.changed_seq[slot] = store.seq
            store.touch(np.array([slot], dtype=np.intp))  # the engine list shows the change
        return AnomalyEvent(
            engine_id=engine_id, ts_ms=ts_ms, previous=previous, status=self.statuses[0],
            score=0.0, model_version=self.model.version, cause="baseline",
        )

    def rewarm(self, slots: npt.NDArray[np.intp]) -> None:
        """Recompute the recurrent state and next prediction of ``slots`` from their windows.

        Called after a model swap: the new model starts from zero state and is stepped over
        each engine's window (right-aligned, so every engine ends on its latest reading).
        Scoring statistics are kept.
        """
        store = self.store
        with store.lock:
            n = np.minimum(store.count[slots], store.window)
            store.model_state[slots] = self.model.zero_state(len(slots))
            depth = int(n.max(initial=0))
            for k in range(depth):
                active = slots[n >= depth - k]
                pos = (store.count[active] - (depth - k)) % store.window
                x = store.ring[active, pos].astype(np.float64)
                pred, state = self.model.step(x, store.model_state[active])
                store.model_state[active] = state
                store.last_pred[active] = pred
