"""The one wiring point: settings -> model, scoring, store, processor, pipeline thread.

The API factory receives a :class:`Runtime`; tests build one without Kafka
(``start_pipeline=False``) and feed its processor directly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from kafka import KafkaProducer
from prometheus_client import CollectorRegistry

from service.api.engine_index import EngineIndex
from service.api.event_index import EventIndex
from service.api.page_cache import PageCache
from service.config import Settings
from service.domain import Contributions, contributions
from service.errors import ArtifactError, BrokerUnavailableError
from service.ingest import MessageDecoder
from service.kafka import clients
from service.kafka.commands import command_record
from service.kafka.event_log import EventLog
from service.kafka.fleet_view import FleetView
from service.kafka.pipeline import Pipeline
from service.logs import log_status_changes
from service.memory import MemoryTrimmer
from service.metrics import Metrics
from service.model import StreamingModel, load_streaming_model
from service.processor import BatchProcessor, StepModel
from service.scoring import STATUS_ORDER, EngineScoring
from service.state import EngineStore
from service.views import StoreEngines

log = logging.getLogger(__name__)


class Runtime:
    """Everything one service instance runs; built once at start-up from the settings."""

    def __init__(
        self,
        settings: Settings,
        registry: CollectorRegistry | None = None,
        model: StepModel | None = None,
    ) -> None:
        """Load the model (unless ``model`` is given: unit tests) and wire the stages.

        Raises ArtifactError when the configured artifact is unusable.
        """
        self.settings = settings
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = Metrics(self.registry, settings.api.max_engine_series)
        self.artifact_dir = settings.model.artifact_dir
        self.model: StepModel = (
            model if model is not None else load_streaming_model(self.artifact_dir)
        )
        self.scoring = EngineScoring(settings.scoring, len(self.model.channels))
        self.store = EngineStore(
            window=settings.state.window,
            channels=len(self.model.channels),
            model_state_size=self.model.state_size,
            score_state_size=self.scoring.state_size,
        )
        # Engines owned by other instances, as of their last commit (see service.kafka.fleet_view).
        self.fleet_store = EngineStore(
            window=settings.state.window,
            channels=len(self.model.channels),
            model_state_size=self.model.state_size,
            score_state_size=self.scoring.state_size,
        )
        self.fleet_view = FleetView(
            settings.kafka, self.fleet_store, self.scoring.init_state(1)[0]
        )
        self.metrics.fleet_view_engines.set_function(lambda: len(self.fleet_store))
        self.processor = BatchProcessor(
            self.model, self.scoring, self.store, STATUS_ORDER,
            max_gap_ms=settings.state.max_gap_ms,
        )
        self.decoder = MessageDecoder(
            self.model.channels,
            max_bytes=settings.kafka.max_message_bytes,
            max_batch=settings.kafka.max_batch_readings,
        )
        self.pipeline = Pipeline(
            settings, self.decoder, self.processor, self.metrics,
            on_events=log_status_changes,
            ownership=self.fleet_view if settings.api.fleet_view else None,
        )
        # GET /engines: the list, kept up to date from the stores' change journals.
        self.engine_index = EngineIndex(self.store, self.fleet_store, len(self.model.channels))
        self._ready_seen: float | None = None  # when readiness() first saw the pipeline ready
        self.page_cache = PageCache()
        self.metrics.engines_stale.set_function(
            lambda: self.engine_index.count_stale(self.stale_before_ms())
        )
        # GET /anomalies: the committed anomalies topic's newest events.
        self.event_index = EventIndex(settings.api.max_events)
        self.event_log = EventLog(settings.kafka, settings.api.max_events, self.event_index.add)
        self.metrics.engines.attach(
            StoreEngines(self.store, lambda: self.model.channels, self.explain)
        )
        self.trimmer = MemoryTrimmer(settings.state.trim_interval_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Operator commands go out through their own producer, made when first needed.
        self._commands: KafkaProducer | None = None
        self._command_lock = threading.Lock()
        self._set_model_info()
        for level in ("warning", "alarm", "clear"):
            self.metrics.scoring_level.labels(level).set(
                getattr(settings.scoring, f"{level}_score")
            )

    def _set_model_info(self) -> None:
        self.metrics.model_info.info({
            "version": self.model.version,
            "channels": ",".join(self.model.channels),
            "artifact": str(self.artifact_dir),
        })

    @property
    def ready(self) -> bool:
        return self.readiness()[0]

    def stale_before_ms(self) -> int:
        """Engines last seen before this wall-clock time (epoch ms) are stale."""
        return int((time.time() - self.settings.api.stale_after_s) * 1000)

    def start_views(self) -> None:
        """Start what the API reads (the engine list's refresh; idempotent): no Kafka needed.
        :meth:`start` starts it too (readiness waits for the list)."""
        self.engine_index.start(self.settings.api.index_interval_ms / 1000)

    def readiness(self) -> tuple[bool, str]:
        """Whether the instance is ready (it owns partitions and has restored them, or the
        group gave it none, and GET /engines lists what it restored) and what it is doing or
        waiting for, in words."""
        ready, detail = self.pipeline.readiness()
        if not ready:
            self._ready_seen = None
            return ready, detail
        if self._ready_seen is None:  # just restored: list the engines now, not in 500 ms
            self._ready_seen = time.monotonic()
            self.engine_index.wake()
        if self.engine_index.refreshed_from < self._ready_seen:
            return False, "listing the restored engines"
        return ready, detail

    @property
    def failure(self) -> str | None:
        """Why the pipeline gave up (fatal failures in a row), or None while it runs."""
        return self.pipeline.failure

    def start(self, on_failure: Callable[[], None] | None = None) -> None:
        """Start the pipeline thread and the anomaly event log (idempotent).
        ``on_failure`` is called (from that thread) if the pipeline gives up: the process
        should then exit non-zero."""
        self.start_views()
        if self._thread is None:
            self._stop.clear()

            def run() -> None:
                self.pipeline.run(self._stop)
                if self.pipeline.failure is not None and on_failure is not None:
                    on_failure()

            self._thread = threading.Thread(target=run, name="pipeline", daemon=True)
            self._thread.start()
            if self.settings.api.fleet_view:
                self.fleet_view.start()
            self.event_log.start()
            self.trimmer.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the current batch, commit, leave the group; wait up to ``timeout`` s."""
        self._stop.set()
        self.fleet_view.stop()
        self.event_log.stop()
        self.engine_index.stop()
        self.trimmer.stop()
        if self._thread is not None:
            deadline = time.monotonic() + timeout
            while self._thread.is_alive() and time.monotonic() < deadline:
                self._thread.join(0.1)
                if not self.pipeline.connected:
                    # still connecting (a broker that does not answer): nothing to commit,
                    # so no reason to wait out the client's bootstrap timeout
                    break
            self._thread = None
        with self._command_lock:
            if self._commands is not None:
                self._commands.close(timeout=5)
                self._commands = None

    def tracks(self, engine_id: str) -> bool:
        """Whether this instance knows ``engine_id`` (owned here or in the fleet view)."""
        return engine_id in self.store.index or engine_id in self.fleet_store.index

    def explain(self, actual: np.ndarray, scored: np.ndarray, state: np.ndarray) -> np.ndarray:
        """Each channel's share of the error of engines' latest readings ``actual`` scored
        against predictions ``scored`` with scoring rows ``state``: ``(n, C)``, NaN rows for
        engines not scored yet (:meth:`EngineScoring.explain`)."""
        residual = self.model.scaled_residual(actual, scored)
        return self.scoring.explain(residual, state)

    def contributions(self, engine_id: str) -> Contributions:
        """Which channels drive the engine's latest score (see ``EngineScoring.explain``),
        from the store that has it (local or fleet view); ``()`` when it has no scored
        reading or is not tracked."""
        for store in (self.store, self.fleet_store):
            with store.lock:
                slot = store.index.get(engine_id)
                if slot is None or store.count[slot] == 0:
                    continue
                pos = int((store.count[slot] - 1) % store.window)
                actual = store.ring[slot : slot + 1, pos].astype(np.float64)
                scored = store.scored_pred[slot : slot + 1]
                state = store.score_state[slot : slot + 1].copy()
            return contributions(self.model.channels, self.explain(actual, scored, state)[0])
        return ()

    def request_baseline(self, engine_id: str, commission_s: float | None = None,
                         timeout_s: float = 10.0) -> int:
        """Ask the engine's owner to re-baseline it (see :mod:`service.kafka.commands`):
        a command on the readings topic, applied in order with the engine's readings and
        committed exactly once. Returns the request time (epoch ms). Raises
        BrokerUnavailableError when the command cannot be sent."""
        ts_ms = int(time.time() * 1000)
        key, value, headers = command_record("baseline", engine_id, ts_ms, commission_s)
        with self._command_lock:
            if self._commands is None:
                self._commands = clients.producer(self.settings.kafka, "commands", acks="all",
                                                  enable_idempotence=True)
            future = self._commands.send(self.settings.kafka.readings_topic, key=key,
                                         value=value, headers=headers)
        try:
            future.get(timeout=timeout_s)
        except Exception as exc:
            raise BrokerUnavailableError(f"the baseline command could not be sent: {exc}") from exc
        return ts_ms

    def reload_model(self, artifact_dir: Path) -> StreamingModel:
        """Switch to another artifact without losing per-engine state.

        The new model must read the same channels. Every engine's recurrent state is
        re-warmed from its window; scoring statistics are kept. Raises ArtifactError when the
        artifact cannot be loaded or does not fit.
        """
        new = load_streaming_model(artifact_dir)
        if new.channels != self.model.channels:
            raise ArtifactError(
                str(artifact_dir / "manifest.json"),
                f"channels {list(new.channels)} differ from the running model's "
                f"{list(self.model.channels)}",
            )
        with self.pipeline.processing_lock, self.store.lock:
            self.store.resize_model_state(new.state_size)
            self.fleet_store.resize_model_state(new.state_size)
            self.model = new
            self.processor.model = new
            self.artifact_dir = artifact_dir
            slots = self.store.active_slots()
            self.processor.rewarm(slots)
            self.store.touch(slots)  # their predictions changed: the engine list shows them
        self._set_model_info()
        log.info("model %s loaded from %s; %d engines re-warmed",
                 new.version, artifact_dir, len(slots))
        return new
