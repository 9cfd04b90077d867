"""The one wiring point: settings -> model, scoring, store, processor, pipeline thread.

The API factory receives a :class:`Runtime`; tests build one without Kafka
(``start_pipeline=False``) and feed its processor directly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from kafka import KafkaProducer
from prometheus_client import CollectorRegistry

from service.api.engine_index import EngineIndex
from service.api.event_index import EventIndex
from service.api.page_cache import PageCache
from service.classes import layout_fingerprint, model_fingerprint
from service.config import Settings
from service.domain import Contributions, contributions
from service.engine_classes import EngineClass, build_classes
from service.errors import ArtifactError, BrokerUnavailableError
from service.kafka import clients
from service.kafka.commands import command_record
from service.kafka.control import ModelControl
from service.kafka.event_log import EventLog
from service.kafka.fleet_view import FleetView
from service.kafka.pipeline import Pipeline
from service.logs import log_status_changes
from service.memory import MemoryTrimmer
from service.metrics import Metrics
from service.model import StreamingModel, load_streaming_model
from service.processor import BatchProcessor, StepModel
from service.scoring import EngineScoring
from service.state import EngineStore
from service.views import ClassEngines, Explain, StoreEngines

log = logging.getLogger(__name__)


class Runtime:
    """Everything one service instance runs; built once at start-up from the settings."""

    def __init__(
        self,
        settings: Settings,
        registry: CollectorRegistry | None = None,
        model: StepModel | None = None,
        *,
        models: Mapping[str, StepModel] | None = None,
    ) -> None:
        """Load the models of every engine class (unless given: ``model`` for the default
        class, ``models`` by class name: unit tests) and wire the stages.

        Raises ArtifactError when a configured artifact is unusable.
        """
        self.settings = settings
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = Metrics(self.registry, settings.api.max_engine_series)
        given = dict(models or {})
        if model is not None:
            given[settings.model.default_class] = model
        self.classes = build_classes(settings, load_streaming_model, given)
        self.fleet_view = FleetView(settings.kafka, self.classes.fleet)
        self.metrics.fleet_view_engines.set_function(lambda: len(self.classes.fleet))
        self.pipeline = Pipeline(
            settings, self.classes, self.metrics,
            on_events=log_status_changes,
            ownership=self.fleet_view if settings.api.fleet_view else None,
        )
        # GET /engines: the list, kept up to date from the stores' change journals.
        self.engine_index = EngineIndex(self.classes.stores, self.classes.fleet,
                                        self.classes.max_channels)
        self._ready_seen: float | None = None  # when readiness() first saw the pipeline ready
        self.page_cache = PageCache()
        self.metrics.engines_stale.set_function(
            lambda: self.engine_index.count_stale(self.stale_before_ms())
        )
        # GET /anomalies: the committed anomalies topic's newest events.
        self.event_index = EventIndex(settings.api.max_events)
        self.event_log = EventLog(settings.kafka, settings.api.max_events, self.event_index.add)
        self.metrics.engines.attach(ClassEngines([
            StoreEngines(c.store, lambda c=c: c.model.channels,  # type: ignore[misc]
                         self.explainer(c))
            for c in self.classes
        ]))
        self.trimmer = MemoryTrimmer(settings.state.trim_interval_s)
        # Model reloads for the whole group (service.kafka.control), read by a thread.
        self.control = ModelControl(settings.kafka, self._apply_reload)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Operator commands go out through their own producer, made when first needed.
        self._commands: KafkaProducer | None = None
        self._command_lock = threading.Lock()
        for c in self.classes:
            self._set_model_info(c)
        for level in ("warning", "alarm", "clear"):
            self.metrics.scoring_level.labels(level).set(
                getattr(settings.scoring, f"{level}_score")
            )

    # The default class's parts, under the names they had before engine classes.
    @property
    def default(self) -> EngineClass:
        return self.classes.default

    @property
    def model(self) -> StepModel:
        return self.classes.default.model

    @property
    def artifact_dir(self) -> Path:
        return self.classes.default.artifact_dir

    @property
    def store(self) -> EngineStore:
        return self.classes.default.store

    @property
    def fleet_store(self) -> EngineStore:
        return self.classes.default.fleet_store

    @property
    def processor(self) -> BatchProcessor:
        return self.classes.default.processor

    @property
    def scoring(self) -> EngineScoring:
        return self.classes.default.scoring

    def _set_model_info(self, c: EngineClass) -> None:
        self.metrics.model_info.labels(c.name).info({
            "version": c.model.version,
            "fingerprint": c.fingerprint.hex(),
            "channels": ",".join(c.model.channels),
            "artifact": str(c.artifact_dir),
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

            self.control.start()

            def run() -> None:
                # Apply the group's model reloads before processing: a restart after a
                # reload then runs the reloaded model, as the rows it restores expect.
                self.control.wait_caught_up(self.settings.kafka.timeout_ms / 1000, self._stop)
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
        self.control.stop()
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
        return (self.classes.stores.find(engine_id) is not None
                or self.classes.fleet.find(engine_id) is not None)

    def class_of(self, engine_id: str) -> EngineClass | None:
        """The class of an engine this instance knows (owned or in the fleet view)."""
        store = self.classes.stores.find(engine_id) or self.classes.fleet.find(engine_id)
        return None if store is None else self.classes.by_name[store.class_name]

    def explain(self, actual: np.ndarray, scored: np.ndarray, state: np.ndarray) -> np.ndarray:
        """:meth:`explainer` of the default class."""
        return self.explainer(self.classes.default)(actual, scored, state)

    @staticmethod
    def explainer(c: EngineClass) -> Explain:
        """For engines of class ``c``: each channel's share of the error of their latest
        readings ``actual`` scored against predictions ``scored`` with scoring rows
        ``state``: ``(n, C)``, NaN rows for engines not scored yet
        (:meth:`EngineScoring.explain`). Uses the class's model at call time (reloads)."""

        def explain(actual: np.ndarray, scored: np.ndarray, state: np.ndarray) -> np.ndarray:
            residual = c.model.scaled_residual(actual, scored)
            return c.scoring.explain(residual, state)

        return explain

    def contributions(self, engine_id: str) -> Contributions:
        """Which channels drive the engine's latest score (see ``EngineScoring.explain``),
        from the store that has it (local or fleet view, of its class); ``()`` when it has
        no scored reading or is not tracked."""
        c = self.class_of(engine_id)
        if c is None:
            return ()
        for store in (c.store, c.fleet_store):
            with store.lock:
                slot = store.index.get(engine_id)
                if slot is None or store.count[slot] == 0:
                    continue
                pos = int((store.count[slot] - 1) % store.window)
                actual = store.ring[slot : slot + 1, pos].astype(np.float64)
                scored = store.scored_pred[slot : slot + 1]
                state = store.score_state[slot : slot + 1].copy()
            return contributions(c.model.channels, self.explainer(c)(actual, scored, state)[0])
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

    def reload_model(self, artifact_dir: Path, class_name: str | None = None) -> StreamingModel:
        """Switch a class (default: the default class) to another artifact, on every
        instance of the group, without losing per-engine state.

        The artifact is loaded and checked here first (it must read the same channels as
        the class's model). While the pipeline runs, the reload then goes to the control
        topic (:mod:`service.kafka.control`), which every instance reads and applies; this
        instance applies it at once. Every engine's recurrent state is re-warmed from its
        window; scoring statistics are kept. Raises ArtifactError when the artifact cannot
        be loaded or does not fit, KeyError for an unknown class, BrokerUnavailableError
        when the reload cannot be published (nothing changed then).
        """
        c = self.classes.by_name[class_name or self.classes.default.name]
        new = self._check_artifact(c, artifact_dir)
        if self._thread is not None:  # the group shares the reload
            self.control.publish(c.name, artifact_dir)
        self._swap(c, new, artifact_dir)
        return new

    def _check_artifact(self, c: EngineClass, artifact_dir: Path) -> StreamingModel:
        new = load_streaming_model(artifact_dir)
        if new.channels != c.model.channels:
            raise ArtifactError(
                str(artifact_dir / "manifest.json"),
                f"channels {list(new.channels)} differ from the {c.name} class's model's "
                f"{list(c.model.channels)}",
            )
        return new

    def _apply_reload(self, class_name: str, artifact_dir: Path) -> None:
        """A reload from the control topic (the control thread calls this): load and swap,
        or, when the artifact is unusable here, keep the class's model and say so (log,
        ``vibewatch_model_reload_failures_total``, ``GET /model``'s ``reload_error``)."""
        c = self.classes.by_name.get(class_name)
        if c is None:
            log.error("model reload for class %r ignored: this instance has no such class "
                      "(model.classes)", class_name)
            self.metrics.model_reload_failures.labels(class_name[:32]).inc()
            return
        try:
            new = self._check_artifact(c, artifact_dir)
        except (ArtifactError, OSError, ValueError) as exc:
            c.reload_error = f"{artifact_dir}: {exc}"[:1000]
            self.metrics.model_reload_failures.labels(c.name).inc()
            log.error("model reload of class %s from %s failed here: %s; keeping model %s",
                      c.name, artifact_dir, exc, c.model.version)
            return
        if model_fingerprint(new) == c.fingerprint and artifact_dir == c.artifact_dir:
            c.reload_error = None
            return
        self._swap(c, new, artifact_dir)

    def _swap(self, c: EngineClass, new: StreamingModel, artifact_dir: Path) -> None:
        with self.pipeline.processing_lock, c.store.lock:
            c.store.set_model(model_fingerprint(new), layout_fingerprint(new), new.state_size)
            c.fleet_store.set_model(model_fingerprint(new), layout_fingerprint(new),
                                    new.state_size)
            c.model = new
            c.processor.model = new
            c.artifact_dir = artifact_dir
            c.reload_error = None
            slots = c.store.active_slots()
            c.processor.rewarm(slots)
            c.store.touch(slots)  # their predictions changed: the engine list shows them
            self.pipeline.rewrite(c.name, slots)
        self._set_model_info(c)
        log.info("class %s: model %s loaded from %s; %d engines re-warmed",
                 c.name, new.version, artifact_dir, len(slots))
