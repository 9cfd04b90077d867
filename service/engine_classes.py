"""The engine classes one instance runs: per class a model, its scoring, stores, processor
and decoder, built from ``model.*`` at start-up (see :mod:`service.classes` for how an
engine's class is decided and what a changelog row of another model becomes)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from service.classes import ClassResolver, ClassStores, layout_fingerprint, model_fingerprint
from service.config import Settings
from service.errors import ArtifactError, ConfigError
from service.ingest import MessageDecoder
from service.ingest.routing import ClassRouter
from service.processor import BatchProcessor, StepModel
from service.scoring import STATUS_ORDER, EngineScoring
from service.state import EngineStore


@dataclass
class EngineClass:
    """One class's model and everything sized by it. Mutable: a reload swaps the model."""

    name: str
    artifact_dir: Path
    model: StepModel
    scoring: EngineScoring
    store: EngineStore  #: engines owned here
    fleet_store: EngineStore  #: engines of other instances (the fleet view)
    processor: BatchProcessor
    decoder: MessageDecoder
    id_pattern: str | None = None
    #: why the last reload requested for this class failed here (None: it did not fail)
    reload_error: str | None = None

    @property
    def fingerprint(self) -> bytes:
        return self.store.fingerprint


class EngineClasses:
    """The classes of an instance, the default one first."""

    def __init__(self, classes: list[EngineClass], resolver: ClassResolver) -> None:
        self.classes = classes
        self.by_name = {c.name: c for c in classes}
        self.default = classes[0]
        self.resolver = resolver
        self.stores = ClassStores([c.store for c in classes],
                                  [c.scoring.init_state(1)[0] for c in classes])
        self.fleet = ClassStores([c.fleet_store for c in classes],
                                 [c.scoring.init_state(1)[0] for c in classes])
        self.router = ClassRouter({c.name: c.decoder for c in classes}, resolver, self.stores)

    def __iter__(self) -> Iterator[EngineClass]:
        return iter(self.classes)

    def __len__(self) -> int:
        return len(self.classes)

    def of_engine(self, engine_id: str) -> EngineClass | None:
        """The class of an engine owned here, or None."""
        name = self.stores.class_of(engine_id)
        return None if name is None else self.by_name[name]

    @property
    def max_channels(self) -> int:
        return max(len(c.model.channels) for c in self.classes)


def build_class(
    settings: Settings, name: str, artifact_dir: Path, model: StepModel,
    id_pattern: str | None = None,
) -> EngineClass:
    """Everything of one class around ``model``."""
    scoring = EngineScoring(settings.scoring, len(model.channels))

    def store() -> EngineStore:
        return EngineStore(
            window=settings.state.window, channels=len(model.channels),
            model_state_size=model.state_size, score_state_size=scoring.state_size,
            class_name=name, fingerprint=model_fingerprint(model),
            layout=layout_fingerprint(model),
        )

    own = store()
    processor = BatchProcessor(model, scoring, own, STATUS_ORDER,
                               max_gap_ms=settings.state.max_gap_ms)
    decoder = MessageDecoder(model.channels, max_bytes=settings.kafka.max_message_bytes,
                             max_batch=settings.kafka.max_batch_readings)
    return EngineClass(name, artifact_dir, model, scoring, own, store(), processor, decoder,
                       id_pattern)


def build_classes(
    settings: Settings, load: Callable[[Path], StepModel],
    models: Mapping[str, StepModel] | None = None,
) -> EngineClasses:
    """The default class (``model.artifact_dir``) and every ``model.classes`` entry, their
    models loaded with ``load`` unless given in ``models`` (by class name: tests). Raises
    ArtifactError when the default class's artifact is unusable, ConfigError naming
    ``model.classes.<i>.artifact_dir`` when another class's is."""
    m = settings.model
    given = dict(models or {})
    specs = [("model.artifact_dir", m.default_class, m.artifact_dir, None),
             *((f"model.classes.{i}.artifact_dir", c.name, c.artifact_dir, c.id_pattern)
               for i, c in enumerate(m.classes))]
    classes = []
    for setting, name, where, pattern in specs:
        try:
            model = given[name] if name in given else load(where)
        except ArtifactError as exc:
            if setting == "model.artifact_dir":
                raise  # names the file, as it always has
            raise ConfigError(setting, f"the {name} class's artifact is unusable: {exc}") \
                from exc
        classes.append(build_class(settings, name, where, model, pattern))
    resolver = ClassResolver(
        m.default_class, [c.name for c in m.classes],
        [(c.name, c.id_pattern) for c in m.classes if c.id_pattern is not None],
    )
    return EngineClasses(classes, resolver)
